"""Ingest: read every known source format into the canonical schemas (see :mod:`curate.schemas`)."""

from curate.ingest.pipeline import (FileSummary, IngestResult, detect_format, ingest, ingest_to_dir,
                                    iter_batches, iter_source)

__all__ = ["FileSummary", "IngestResult", "detect_format", "ingest", "ingest_to_dir", "iter_batches",
           "iter_source"]
