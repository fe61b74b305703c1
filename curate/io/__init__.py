"""The data path: one way in (:func:`read_input`), one way out (:class:`DatasetWriter`).

* :mod:`curate.io.reader`   ``read_input(paths) -> Input``: datasets, canonical files, raw sources
* :mod:`curate.io.writer`   ``DatasetWriter``: staging dir, manifest written last, atomic publish
* :mod:`curate.io.manifest` what ``manifest.json`` holds and how it is checked
* :mod:`curate.io.publish`  ``renameat2(RENAME_EXCHANGE)`` swap, leftovers of killed runs
* :mod:`curate.io.tables`   Parquet/CSV/TSV exports as inputs
* :mod:`curate.io.files`    single files written atomically (reports, models)
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from curate.io.files import DatasetError, atomic_path, read_jsonl, write_bytes, write_frame, write_json, write_jsonl
from curate.io.manifest import read as read_manifest
from curate.io.reader import Input, open_input, read_input
from curate.io.writer import DatasetWriter, check_file_output, check_output, with_read, write_stage

__all__ = ["DatasetError", "DatasetWriter", "Input", "atomic_path", "check_file_output", "check_output", "open_input", "read_input",
           "read_jsonl", "read_manifest", "read_dataset", "write_dataset", "write_bytes", "write_frame", "write_json", "write_jsonl", "write_stage", "with_read"]


def read_dataset(path: str | os.PathLike) -> dict[str, pl.LazyFrame]:
    """``read_input(path).frames`` (kept for older callers; new code uses :func:`read_input`)."""
    return read_input(path).frames


def write_dataset(frames: dict[str, pl.DataFrame | pl.LazyFrame], out_dir: str | os.PathLike, *,
                  stage: str = "write_dataset", **kw) -> dict[str, Path]:
    """Commit ``{kind: frame}`` as a dataset directory (``<kind>.parquet`` + manifest) in one step;
    a convenience for Python use and tests over :class:`DatasetWriter` (``kw`` goes to it)."""
    with DatasetWriter(out_dir, stage=stage, **kw) as w:
        for kind in frames:
            w.write_frame(kind, frames[kind])
    return {kind: Path(out_dir) / f"{kind}.parquet" for kind in frames}
