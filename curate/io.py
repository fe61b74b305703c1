"""Reading and writing datasets, always atomically.

A *dataset* is either one file (``.parquet`` or ``.jsonl``) holding rows of one kind, or a
directory holding up to one file per kind: ``sft.parquet``, ``chat.parquet``, ``rm.parquet`` and
``ppo.parquet`` (plus ``quarantine.jsonl`` and ``report.json`` that stages write beside them).

Every write goes to a temporary file in the destination directory and is renamed into place, so a
crash or Ctrl-C never leaves a half-written file that looks complete.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import orjson
import polars as pl

from curate import schemas
from curate.errors import UserError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


class DatasetError(UserError):
    """A user-facing problem with an input or output path (printed without a traceback)."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs are ordinary files
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_bytes(path, orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS) + b"\n")


def write_jsonl(path: str | os.PathLike, rows: list[dict] | Iterator[dict]) -> int:
    n = 0
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        for row in rows:
            fh.write(orjson.dumps(row, option=orjson.OPT_NON_STR_KEYS) + b"\n")
            n += 1
    return n


def write_frame(df: pl.DataFrame | pl.LazyFrame, path: str | os.PathLike) -> None:
    """Write a frame as parquet or JSONL (by extension), atomically; lazy frames are streamed."""
    path = Path(path)
    fmt = _format_of(path)
    with atomic_path(path) as tmp:
        if isinstance(df, pl.LazyFrame):
            if fmt == "parquet":
                df.sink_parquet(tmp)
            else:
                df.sink_ndjson(tmp)
        elif fmt == "parquet":
            df.write_parquet(tmp)
        else:
            df.write_ndjson(tmp)


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return "parquet"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    raise DatasetError(f"{path}: unknown output format {suffix!r}; use .parquet or .jsonl")


def scan_frame(path: str | os.PathLike) -> pl.LazyFrame:
    """Lazily scan one dataset file (parquet or JSONL written by curate)."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file. Run `curate ingest` first to create it.")
    fmt = _format_of(path)
    lf = pl.scan_parquet(path) if fmt == "parquet" else pl.scan_ndjson(path, infer_schema_length=None)
    try:
        kind = schemas.kind_of(lf)
    except ValueError as exc:
        raise DatasetError(f"{path}: {exc}") from None
    return schemas.conform(lf, kind)


def dataset_files(path: str | os.PathLike) -> dict[str, Path]:
    """Map kind -> file for a dataset (a directory of ``<kind>.parquet`` files or a single file)."""
    path = Path(path)
    if path.is_dir():
        found = {}
        for kind in schemas.KINDS:
            for ext in (".parquet", ".jsonl"):
                f = path / f"{kind}{ext}"
                if f.exists():
                    found[kind] = f
                    break
        if not found:
            raise DatasetError(
                f"{path}: no sft/chat/rm/ppo .parquet files here. Run `curate ingest FILES -o {path}` first."
            )
        return found
    if not path.exists():
        raise DatasetError(f"{path}: no such file or directory.")
    kind = schemas.kind_of(scan_frame(path))
    return {kind: path}


def read_dataset(path: str | os.PathLike) -> dict[str, pl.LazyFrame]:
    """Lazily open every kind of a dataset: ``{kind: LazyFrame}``."""
    return {kind: scan_frame(f) for kind, f in dataset_files(path).items()}


def write_dataset(frames: dict[str, pl.DataFrame | pl.LazyFrame], out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``{kind: frame}`` as ``out_dir/<kind>.parquet`` (atomic per file)."""
    out_dir = Path(out_dir)
    written = {}
    for kind, df in frames.items():
        target = out_dir / f"{kind}.parquet"
        write_frame(df, target)
        written[kind] = target
    return written


def output_dir_for(inp: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Refuse to let a stage overwrite its input."""
    inp, out = Path(inp).resolve(), Path(out).resolve()
    if inp == out:
        raise DatasetError(f"{out}: a stage never overwrites its input; choose another -o.")
    return out


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    with open(path, "rb") as fh:
        return [orjson.loads(line) for line in fh if line.strip()]
