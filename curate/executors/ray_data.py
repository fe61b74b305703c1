"""Datasets in and out of Ray Data: the one place the Ray executor reads inputs and publishes outputs.

**In.** A dataset's rows of one kind are cut into *pieces* of at most ``block_rows`` rows (a piece is
a slice of one parquet file; big files give many pieces), and ``ray.data.from_items(pieces)`` ->
``map_batches(read_pieces)`` reads each piece on a worker into one Ray Data block (Arrow). Every row
carries ``_pos``, its position among the kind's rows, so results can be put back in input order and
a block's output file gets a name that a retried task reproduces exactly.

**Out.** Workers write parquet shards ``<kind>/part-<pos>.parquet`` straight into the output's
staging directory (shared storage on a real cluster); the driver registers them with
``DatasetWriter.add_part`` and the writer publishes the whole dataset in one atomic step.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import polars as pl

from curate import io, schemas
from curate.io.writer import parquet_options

POS = "_pos"
DEFAULT_BLOCK_ROWS = 100_000


def block_rows(default: int = DEFAULT_BLOCK_ROWS) -> int:
    """Rows per Ray Data block (``CURATE_RAY_BLOCK_ROWS`` overrides; tests use tiny blocks)."""
    return int(os.environ.get("CURATE_RAY_BLOCK_ROWS") or default)


def resolve(value):
    """A value passed to workers by reference (``ray.put``, for big arrays) -> the value."""
    import ray

    return ray.get(value) if isinstance(value, ray.ObjectRef) else value


def to_arrow(df: pl.DataFrame):
    """A polars frame as an Arrow table Ray Data moves around (plain large_string, no view types)."""
    return df.to_arrow(compat_level=pl.CompatLevel.oldest())


def from_arrow(table) -> pl.DataFrame:
    """An Arrow batch as a polars frame (zero-copy where the types allow)."""
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    return df


# ------------------------------------------------------------------------------------------- in
def open_input(inputs: list, fmt: str | None, spill_dir: Path) -> tuple[io.Input, dict[str, list[Path]]]:
    """The one way in, for Ray: ``io.read_input`` (its quarantine and report, exactly as the local
    executor gets them) plus the parquet files the workers read, ``{kind: [files]}`` in input order.

    Datasets and canonical parquet files are read by the workers where they are; raw sources are
    parsed here by ``read_input`` and spilled to ``spill_dir`` (run ``curate ingest --executor ray``
    first for big raw inputs)."""
    data = io.read_input(inputs, format=fmt)
    files = _parquet_files(inputs, fmt)
    if files is None:
        files = {}
        spill_dir.mkdir(parents=True, exist_ok=True)
        for kind, lf in data.frames.items():
            p = spill_dir / f"{kind}.parquet"
            lf.sink_parquet(p)
            files[kind] = [p]
    return data, files


def _parquet_files(inputs: list, fmt: str | None) -> dict[str, list[Path]] | None:
    """``{kind: [parquet files]}`` when every input is a dataset or a canonical parquet file, else None."""
    from curate.io import manifest as mf

    out: dict[str, list[Path]] = {}
    with io.open_input(inputs, format=fmt) as plan:
        for part in plan.parts:
            if part.what == "dataset":
                for kind, fl in mf.files_of(part.path, part.manifest).items():
                    out.setdefault(kind, []).extend(fl)
            elif part.what == "canonical" and part.reader == "parquet":
                out.setdefault(part.kind, []).append(part.path)
            else:
                return None
    return {k: out[k] for k in schemas.KINDS if k in out}


def _rows_in(f: Path) -> int:
    return pl.scan_parquet(f).select(pl.len()).collect().item()


def pieces(files: list[Path], rows_per_block: int) -> list[dict[str, Any]]:
    """Slices of at most ``rows_per_block`` rows over ``files`` (in order), with their position."""
    out, pos = [], 0
    for f in files:
        n = _rows_in(f)
        for off in range(0, n, rows_per_block):
            length = min(rows_per_block, n - off)
            out.append({"file": str(f), "offset": off, "length": length, "pos": pos + off})
        pos += n
    return out


def read_frame(batch, kind: str) -> pl.DataFrame:
    """The rows of the pieces of ``batch`` (one per row, Arrow) plus ``_pos``, as one polars frame."""
    frames = []
    for f, off, length, pos in zip(*(batch[c].to_pylist() for c in ("file", "offset", "length", "pos"))):
        df = pl.scan_parquet(f).slice(off, length).collect()
        df = schemas.conform(df, kind).with_columns(pl.int_range(pos, pos + df.height, dtype=pl.Int64).alias(POS))
        frames.append(df)
    return pl.concat(frames) if len(frames) > 1 else frames[0]


def read_pieces(batch, kind: str):
    """map_batches function: read the pieces of ``batch`` (one per row) -> their rows plus ``_pos``."""
    return to_arrow(read_frame(batch, kind))


def piece_dataset(items: list[dict[str, Any]]):
    """:func:`pieces` as a Ray Dataset of one piece a block (None without rows): map it with
    ``batch_size=1`` and :func:`read_frame` to read each piece where its task runs."""
    import ray.data

    if not items:
        return None
    return ray.data.from_items(items, override_num_blocks=len(items))


def read_kind(files: list[Path], kind: str, rows_per_block: int):
    """The rows of one kind as a Ray Dataset of blocks of at most ``rows_per_block`` rows (+ ``_pos``)."""
    ds = piece_dataset(pieces(files, rows_per_block))
    return None if ds is None else ds.map_batches(read_pieces, batch_size=1, batch_format="pyarrow",
                                                  fn_kwargs={"kind": kind})


# ------------------------------------------------------------------------------------------- out
def write_part(df: pl.DataFrame, root: Path, kind: str, first_pos: int, compression: str) -> str:
    """Write one shard atomically (a retried task rewrites the same name); returns its relative path."""
    rel = f"{kind}/part-{first_pos:012d}.parquet"
    rewrite_part(df, root, rel, compression)
    return rel


def rewrite_part(df: pl.DataFrame, root: Path, rel: str, compression: str) -> None:
    """Write ``df`` as the shard ``root/rel`` atomically (a temporary file renamed over it), with the
    settings of the local executor's writer (``io.writer.parquet_options``). ``compression``: the
    output's (``DatasetWriter.compression``, chosen on the driver: a worker does not see its setting)."""
    target = Path(root) / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        df.write_parquet(tmp, **parquet_options(compression))
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
