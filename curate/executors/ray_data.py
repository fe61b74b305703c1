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
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import polars as pl

from curate import io, schemas

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
def kind_files(inp: str | Path) -> dict[str, list[Path]]:
    """``{kind: [files]}`` of a dataset (a directory or one file); a kind may have several shards."""
    reader = getattr(io, "dataset_parts", None)  # the manifest reader (issue 11), when present
    if reader is not None:
        return {k: [Path(f) for f in v] for k, v in reader(inp).items()}
    found: dict[str, list[Path]] = {}
    p = Path(inp)
    if p.is_dir():
        for kind in schemas.KINDS:
            shards = sorted((p / kind).glob("part-*.parquet")) if (p / kind).is_dir() else []
            if shards:
                found[kind] = shards
    for kind, f in ({} if found else io.dataset_files(inp)).items():
        found[kind] = [f]
    return found


def _rows_in(f: Path) -> int:
    return io.scan_frame(f).select(pl.len()).collect().item()


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


def read_pieces(batch, kind: str):
    """map_batches function: read the pieces of ``batch`` (one per row) -> their rows plus ``_pos``."""
    tables = []
    for f, off, length, pos in zip(*(batch[c].to_pylist() for c in ("file", "offset", "length", "pos"))):
        df = io.scan_frame(f).slice(off, length).collect()
        df = schemas.conform(df, kind).with_columns(pl.int_range(pos, pos + df.height, dtype=pl.Int64).alias(POS))
        tables.append(df)
    return to_arrow(pl.concat(tables) if len(tables) > 1 else tables[0])


def read_kind(files: list[Path], kind: str, rows_per_block: int):
    """The rows of one kind as a Ray Dataset of blocks of at most ``rows_per_block`` rows (+ ``_pos``)."""
    import ray.data

    items = pieces(files, rows_per_block)
    if not items:
        return None
    return ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        read_pieces, batch_size=1, batch_format="pyarrow", fn_kwargs={"kind": kind})


# ------------------------------------------------------------------------------------------- out
def write_part(df: pl.DataFrame, root: Path, kind: str, first_pos: int) -> str:
    """Write one shard atomically (a retried task rewrites the same name); returns its relative path."""
    rel = f"{kind}/part-{first_pos:012d}.parquet"
    target = Path(root) / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        df.write_parquet(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return rel


class _StagingWriter:
    """Until ``io.DatasetWriter`` (issue 11) is there: a staging directory published by rename, shards
    concatenated into ``<kind>.parquet`` so today's readers read them."""

    def __init__(self, out_dir: Path):
        self.out = Path(out_dir)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.staging-", dir=self.out.parent))
        self.parts: dict[str, list[str]] = {}

    def add_part(self, kind: str, rel: str) -> None:
        self.parts.setdefault(kind, []).append(rel)

    def write_json(self, name: str, obj: Any) -> None:
        io.write_json(self.path / name, obj)

    def publish(self) -> None:
        for kind, rels in self.parts.items():
            files = [self.path / r for r in sorted(rels)]
            pl.scan_parquet(files).sink_parquet(self.path / f"{kind}.parquet")
            shutil.rmtree(self.path / kind)
        self.out.mkdir(parents=True, exist_ok=True)
        for kind in schemas.KINDS:  # kinds this run did not produce must not linger
            for ext in ("parquet", "jsonl"):
                (self.out / f"{kind}.{ext}").unlink(missing_ok=True)
        for f in sorted(self.path.iterdir()):
            os.replace(f, self.out / f.name)
        shutil.rmtree(self.path, ignore_errors=True)


@contextmanager
def dataset_writer(out_dir: Path, *, stage: str, params: dict, inputs: list) -> Iterator[Any]:
    """The output's writer: ``w.path`` (staging dir), ``w.add_part``, ``w.write_json``/``write_jsonl``."""
    if hasattr(io, "DatasetWriter"):
        with io.DatasetWriter(out_dir, stage=stage, params=params, inputs=[str(i) for i in inputs]) as w:
            yield w
        return
    w = _StagingWriter(out_dir)
    try:
        yield w
        w.publish()
    finally:
        shutil.rmtree(w.path, ignore_errors=True)
