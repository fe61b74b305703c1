"""Row counts of a dataset by kind, source/format and language."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from curate import io
from curate.ingest import ingest


def counts(frames: dict[str, pl.LazyFrame | pl.DataFrame]) -> pl.DataFrame:
    """One row per (kind, source, format, lang) with its row count."""
    parts = [f.lazy().select("kind", "source", "format", pl.col("lang").fill_null("und")) for f in frames.values()]
    if not parts:
        return pl.DataFrame(schema={"kind": pl.String, "source": pl.String, "format": pl.String,
                                    "lang": pl.String, "rows": pl.UInt32})
    return (pl.concat(parts).group_by("kind", "source", "format", "lang").agg(pl.len().alias("rows"))
            .sort("kind", "source", "lang").collect())


def frames_for(path: str | Path) -> dict[str, pl.LazyFrame | pl.DataFrame]:
    """A curate dataset is opened as it is; a raw source file is ingested in memory first."""
    path = Path(path)
    if path.is_dir() or path.suffix == ".parquet":
        return io.read_dataset(path)
    try:
        return io.read_dataset(path)
    except (io.DatasetError, pl.exceptions.PolarsError):
        return ingest([path]).frames
