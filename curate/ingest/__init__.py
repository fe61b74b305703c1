"""Ingest: read every known source format into the canonical schemas (see :mod:`curate.schemas`)."""

_PIPELINE = ("FileSummary", "IngestResult", "detect_format", "ingest", "ingest_to_dir", "iter_batches", "iter_source")
__all__ = list(_PIPELINE)


def __getattr__(name: str):
    # the pipeline (numpy, numba through its compiled line scanner) is imported when first used, not
    # by a command that only reads the format names (curate clean: its read then starts sooner)
    if name in _PIPELINE:
        from curate.ingest import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
