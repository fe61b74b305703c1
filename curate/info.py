"""Row counts of a dataset by kind, source/format and language."""

from __future__ import annotations

from pathlib import Path

import polars as pl



def counts(frames: dict[str, pl.LazyFrame | pl.DataFrame]) -> pl.DataFrame:
    """One row per (kind, source, format, lang) with its row count."""
    parts = [f.lazy().select("kind", "source", "format", pl.col("lang").fill_null("und")) for f in frames.values()]
    if not parts:
        return pl.DataFrame(schema={"kind": pl.String, "source": pl.String, "format": pl.String,
                                    "lang": pl.String, "rows": pl.UInt32})
    return (pl.concat(parts).group_by("kind", "source", "format", "lang").agg(pl.len().alias("rows"))
            .sort("kind", "source", "lang").collect())


def frames_for(path: str | Path | list, *, detect_lang: bool = True) -> dict[str, pl.LazyFrame | pl.DataFrame]:
    """Any input (:func:`curate.io.read_input`): a dataset as it is, a raw source ingested in memory."""
    from curate import io

    return io.read_input(path, detect_lang=detect_lang).frames
