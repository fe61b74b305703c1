"""``curate clean --executor ray``: the clean stage on a Ray cluster, with the local executor's result.

Per kind, three passes over Ray Data blocks (see docs/scale.md):

A. ``map_batches(_rules_block)``: every rule except the duplicate rules runs on each block through the
   same ``_clean_kind`` as the local executor (a block is a frame; rules look at one row at a time).
   Out: the kept rows (with the hits they collected, ``_hits``, and their duplicate keys, computed
   here once by :func:`curate.dedupe.row_keys`, the local executor's own compiled pass: the exact
   key ``_h1, _h2, _n`` and the LSH band keys ``_bk``), the block's quarantine entries (``_q``, as
   the rows of ``quarantine.parquet``, so the driver only concatenates them) and its
   rule counts (``_stats``). Each task writes its whole block (those columns and the kept rows with
   their texts) as an Arrow IPC side file beside the output, which the driver reads (no second Ray
   pass over the blocks) and the finish pass takes the kept rows from: through Ray's object store
   goes only each block's first position (the kept rows took ~1 GB of it per million rows until
   the finish). A dry run (no output beside which to write) and keys too many for the driver
   (grouped by Ray shuffles over the blocks) keep the kept rows and keys in the blocks,
   materialized in the object store, and write only the small columns (``_small``: quarantine
   entries, stats, keys) to side files, if any.
B. Duplicates over every block, as the local executor finds them in one frame. The keys (28 bytes
   + 4 per band a row) are grouped on the driver while they fit (``CURATE_RAY_DRIVER_KEYS_MB``, 2 GB:
   about 13M rows at threshold 0.8; beyond, by two Ray Data hash shuffles, the exact keys then the
   band keys): exact groups by the exact key; among the groups' first rows, the rows sharing a band key with another (:func:`curate.dedupe.shared_rows`) are the
   only near-duplicate candidates, so the near-duplicate pass run on the driver over the
   candidates alone gives the same verified edges and clusters as over all rows. With side files,
   pass A also wrote the rest of each row's sketch (estimator bytes, shingle count), so the
   driver verifies the candidates from those (:func:`curate.dedupe.near_duplicates_of`) without
   sketching them again; otherwise ``dedupe.find_duplicates`` over the candidates. The rows named
   (candidates and exact duplicates) are read back while the driver gathers the candidates'
   sketches and starts their near-duplicate pass (which waits for the texts at its first verified
   pair): with side files, from them (pass A also wrote each kept row's text, id, source and line
   there: a take of memory-mapped Arrow, :func:`_read_rows`); otherwise by one Ray pass
   (``_rows_of``: a binary search, then a take in Arrow). The side files are
   read as pass A writes them (:class:`_SideReader`). The kept row of a cluster is the first in
   input order, as locally.
C. ``map_batches(_finish_block)``: drop the duplicates (quarantined with the same entry the local
   executor writes), write the kept rows (from the block's side file, memory-mapped, or the block)
   as parquet shards ``<kind>/part-<pos>.parquet`` into the
   output's staging directory.

Quarantine entries are written in input order per kind; report.json has the same figures.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import orjson
import polars as pl

from curate import dedupe, io, schemas
from curate.clean.config import CleanConfig
from curate.clean import quarantine as qfile
from curate.clean.engine import (BOTH_DUPS_NOTE, HIT_SCHEMA, _clean_kind, _examples, _quarantine, _short, _Stats, active_rules,
                                 row_text_expr)
from curate.clean.rules import language
from curate.clean.rules.duplicates import evidence_expr
from curate.errors import UserError
from curate.executors import ray_data
from curate.executors.ray_data import POS, from_arrow, to_arrow

DUP_CODES = ("exact_duplicate", "near_duplicate")
KEYS = ("_h1", "_h2", "_n", "_bk", "_est", "_len")  # duplicate keys (and sketches) pass A adds to the kept rows
EST = "_est"  # read from the side files for the candidates only
TEXT = "_text"  # a kept row's text (row_text_expr), in the side files: read back for the rows pass B names
ROW_COLS = (TEXT, "id", "source", "line")  # what the driver reads back of a row (with its position)
INTERNAL = (POS, "_hits", "_q", "_stats", TEXT, *KEYS)
SNIPPET = 120


@dataclass
class RayCleanResult:
    report: dict[str, Any]
    quarantine: pl.DataFrame  # the clean's entries (quarantine.parquet's rows, the reader's entries excluded)


# --------------------------------------------------------------------------- pass A (workers)
def _rules_block(batch, kind: str, config: CleanConfig, side: str | None, keys: dict[str, Any] | None = None,
                whole: bool = False):
    """Every rule but the duplicate rules on one block, read here from its input piece (``batch``:
    one piece; read straight into polars, no Arrow round trip). With ``keys`` (the duplicate rules are on),
    the kept rows also get their duplicate keys (:func:`_with_keys`; the band keys with
    ``keys["near"] = (threshold, measure)``; with ``keys["est"]`` also the rest of each row's sketch,
    so the driver never sketches the candidates again); null for a row whose normalized text is
    empty (it has no duplicates). The small columns the driver needs next (:func:`_small`) are also written to the
    directory ``side`` (:func:`_write_side`), so no second Ray pass reads them out of the blocks
    (``side`` None: a dry run, which has no output directory the driver shares with the workers).
    With ``whole``, the side file holds every column of the block (its kept rows first) and the
    block returned is one row, its first position: the finish pass reads the rows from the file
    (:func:`_finish_block`); without, the block keeps its kept rows (the Ray shuffles of too many
    keys for the driver read the keys and rows from the blocks)."""
    first_pos = int(batch["pos"][0].as_py())
    df = ray_data.read_frame(batch, kind)
    pos = df[POS]
    df = df.drop(POS)
    active = active_rules(config)
    stats = _Stats(active, config.examples)
    extras: dict[str, Any] = {}
    language.keep_models()  # this worker's next block wants lingua again: not loaded once per block
    kept, q = _clean_kind(df, kind, [a for a in active if a.rule.code not in DUP_CODES], config, stats,
                          extras=extras)
    kept_rows = extras["kept_rows"]
    hits = pl.concat(extras["hits"]) if extras["hits"] else pl.DataFrame(schema=HIT_SCHEMA)
    per_row = (hits.filter(pl.col("_row").is_in(kept_rows.implode()))
               .group_by("_row", maintain_order=True).agg(pl.struct("rule", "field", "evidence").alias("_hits")))
    kept = (kept.with_columns(kept_rows.alias("_row"), pos.gather(kept_rows).alias(POS))
            .join(per_row, on="_row", how="left", maintain_order="left").drop("_row"))
    if keys is not None:
        text = kept.select(row_text_expr(kind).fill_null(""))[:, 0]
        kept = _with_keys(kept, kind, keys.get("near"), bool(keys.get("est")), text)
        if side is not None and keys.get("rows"):
            kept = kept.with_columns(text.alias(TEXT))  # for the side file only: the rows the driver reads back
    parts = [kept]
    if q.height:
        parts.append(_entries(pos.gather(extras["gone_rows"]), q))
    out = pl.concat(parts, how="diagonal_relaxed") if len(parts) > 1 else kept.with_columns(
        pl.lit(None, qfile.ENTRY).alias("_q"))
    block_stats = orjson.dumps({"rules": stats.rules, "engine": stats.engine}).decode()
    out = out.with_columns(pl.Series("_stats", [block_stats] + [None] * (out.height - 1), dtype=pl.String))
    if side is not None and whole:
        # the whole block in its side file, not in Ray's object store (which held ~95 MB a block
        # until the finish pass: ~1 GB per million rows, spilled past its size on a big input); the
        # finish pass reads the kept rows from the file (memory-mapped), so Ray Data only carries
        # the block's first position
        _write_side(out, Path(side), first_pos)
        return to_arrow(pl.DataFrame({POS: [first_pos]}, schema={POS: pl.Int64}))
    if side is not None:
        small = _small(out.columns, keys is not None and keys["side_keys"])
        rows = [c for c in ROW_COLS if TEXT in out.columns]
        _write_side(out.select(small + rows), Path(side), first_pos)
        # the block keeps what passes B and C read of it: the driver has the stats, keys and texts now
        out = out.drop([c for c in small if c not in (POS, "_q")] + [c for c in rows if c == TEXT])
    return to_arrow(out)


def _with_keys(kept: pl.DataFrame, kind: str, near: tuple[float, str] | None, est: bool = False,
               text: pl.Series | None = None) -> pl.DataFrame:
    """``_h1, _h2, _n`` (the exact key: two hashes and the length of the normalized text) and the
    band keys ``_bk`` of each row, from :func:`curate.dedupe.row_keys`; with ``est`` also its
    estimator bytes ``_est`` and shingle count ``_len`` (the rest of its sketch); null without text.
    ``text``: the rows' texts (:func:`row_text_expr`), when the caller has them already."""
    if kept.height == 0:
        return kept
    measure = near[1] if near else dedupe.DEFAULT_MEASURE
    text = kept.select(row_text_expr(kind))[:, 0] if text is None else text
    k = dedupe.row_keys(text, threshold=near[0] if near else 0.8,
                        near=near is not None, measure=measure, est=est)
    some = pl.Series(k.norm_len > 0)
    cols = [pl.when(some).then(pl.Series(k.hashes[:, i])).alias(f"_h{i + 1}") for i in (0, 1)]
    cols.append(pl.when(some).then(pl.Series(k.norm_len.astype(np.uint32))).alias("_n"))
    if k.keys is not None:
        bk = pl.Series("_bk", k.keys, dtype=pl.Array(pl.UInt32, k.keys.shape[1]))
        cols.append(pl.when(some).then(bk).alias("_bk"))
    if k.est is not None:
        cols.append(pl.when(some).then(pl.Series(k.est, dtype=pl.Array(pl.UInt8, k.est.shape[1]))).alias(EST))
        cols.append(pl.when(some).then(pl.Series(k.lengths.astype(np.uint32))).alias("_len"))
    return kept.with_columns(cols)


def _entries(pos: pl.Series, q: pl.DataFrame) -> pl.DataFrame:
    """``_pos, _q``: the quarantine frame ``q`` as ``quarantine.parquet``'s rows, one struct a row."""
    return pl.DataFrame({POS: pos}).with_columns(qfile.to_frame([q]).to_struct("_q"))


def _small(columns: list[str], keys: bool) -> list[str]:
    """The small columns of pass A's output, the only ones the driver needs before the finish pass:
    quarantine entries, block stats and (``keys``) the duplicate keys."""
    return [c for c in (POS, "_q", "_stats", *(KEYS if keys else ())) if c in columns]


def _small_pass(table, keys: bool):
    """:func:`_small` of a materialized block, Arrow only (a dry run's pass: no side files)."""
    return table.select(_small(table.column_names, keys))


def _write_side(df: pl.DataFrame, side: Path, first_pos: int) -> None:
    """Write a block's small columns as ``side/<first pos>.arrow`` (Arrow IPC, uncompressed: 156
    bytes a row, 420 with the estimator bytes), atomically: a retried task rewrites the same file.
    ``side`` is beside the output (shared storage on a cluster, as the shards)."""
    with io.atomic_path(side / f"{first_pos:012d}.arrow") as tmp:
        df.write_ipc(tmp, compression="uncompressed")


@dataclass
class _Keys:
    """The duplicate keys of the kept rows that have a normalized text, as numpy arrays (row i's:
    ``pos[i]``, ``h1[i]``...): the exact key ``h1, h2, n``, the band keys ``bk`` (rows, bands; None
    without the near-duplicate rule) and, with the estimator bytes in the side files, the shingle
    counts ``length``. Numpy rather than a polars frame: the driver's pass B reads them as arrays
    (the compiled kernels), and a ``filter(...)["_bk"].to_numpy()`` of the frame made of every
    block's side file took ~0.4-0.6 s of the driver's 1M-row pass B, while every worker waited."""

    pos: np.ndarray
    h1: np.ndarray
    h2: np.ndarray
    n: np.ndarray
    bk: np.ndarray | None = None
    length: np.ndarray | None = None

    @staticmethod
    def of(table) -> "_Keys | None":
        """The keys of a block's small columns (an Arrow table: a side file, or a dry run's
        :func:`_small_pass`); None when it has none (no key columns: keys off, or every row of the
        block quarantined)."""
        cols = _KeyColumns(table.num_rows)
        cols.add(table)
        return cols.keys() if cols.cols is not None else None

    @staticmethod
    def concat(parts: "list[_Keys | None]") -> "_Keys":
        """The blocks' keys in input order (blocks without keys skipped; none: no rows)."""
        parts = [k for k in parts if k is not None]
        if not parts:
            return _Keys(np.empty(0, np.int64), np.empty(0, np.uint64), np.empty(0, np.uint64), np.empty(0, np.uint32))

        def cat(name: str) -> np.ndarray | None:
            got = [getattr(k, name) for k in parts]
            return None if any(g is None for g in got) else got[0] if len(got) == 1 else np.concatenate(got)

        keys = _Keys(*(cat(f) for f in ("pos", "h1", "h2", "n", "bk", "length")))
        if len(keys.pos) > 1 and not (np.diff(keys.pos) > 0).all():  # in input order, as pass B wants them
            order = np.argsort(keys.pos, kind="stable")
            keys = _Keys(*(None if a is None else a[order] for a in (keys.pos, keys.h1, keys.h2, keys.n, keys.bk,
                                                                       keys.length)))
        return keys


_KEY_FIELDS = (("pos", POS), ("h1", "_h1"), ("h2", "_h2"), ("n", "_n"), ("bk", "_bk"), ("length", "_len"))


class _KeyColumns:
    """The kept rows' duplicate keys of pass A's blocks (:class:`_Keys`), taken out of each block's
    small columns as they are read, in input order, straight into arrays sized for every row of the
    kind (``rows``): once pass A is done there is nothing to concatenate (joining the blocks' keys
    took ~0.35 s of the driver's 1M-row pass B, while every worker waited)."""

    def __init__(self, rows: int):
        self.rows, self.n = rows, 0
        self.cols: dict[str, np.ndarray] | None = None

    def add(self, table) -> None:
        """Append the keys of a block's kept rows that have a text (the next block in input order)."""
        import pyarrow.compute as pc

        if "_h1" not in table.column_names:  # keys off, or every row of the block quarantined
            return
        mine = pc.and_(pc.is_null(table["_q"]), pc.is_valid(table["_h1"])).to_numpy(zero_copy_only=False)
        src = {f: _np_values(table[c]) for f, c in _KEY_FIELDS if c in table.column_names}
        k = int(mine.sum())
        if self.cols is None:
            self.cols = {f: np.empty((self.rows, *a.shape[1:]), dtype=a.dtype) for f, a in src.items()}
        if self.n + k > self.rows:
            raise RuntimeError(f"pass A's blocks hold keys of more than the kind's {self.rows} rows")
        for f, a in src.items():
            np.compress(mine, a, axis=0, out=self.cols[f][self.n:self.n + k])
        self.n += k

    def keys(self) -> "_Keys":
        if self.cols is None:
            return _Keys.concat([])
        return _Keys(**{f: a[:self.n] for f, a in self.cols.items()})


def _side_frame(table) -> pl.DataFrame:
    """``_pos, _q, _stats`` of a block's rows that carry a quarantine entry or the block's stats (its
    small columns: an Arrow table), as a copy: nothing keeps the table (a memory-mapped side file)
    alive, so its mapping goes as soon as it is read, while pass A runs (a quarantine frame still
    holding the mappings of every side file, ~900 MB per million rows, took ~0.3 s to unmap once the
    command was done). Gathered, not filtered: a filter keeps a record batch of the file whose rows
    all pass (the quarantined rows, after the kept ones) as it is, and its integers then stay views
    into the mapping through :func:`_owned`."""
    side = pl.from_arrow(table.select([c for c in (POS, "_q", "_stats") if c in table.column_names]))
    return _owned(side[side.select(pl.arg_where(pl.col("_q").is_not_null() | pl.col("_stats").is_not_null()))[:, 0]])


class _SideReader(threading.Thread):
    """Reads pass A's side files while pass A still runs, in input order, each as soon as its
    block's task has written it (``_write_side`` renames a complete file into place), so that after
    the pass only the last blocks' files are left to read (~0.4 s of the driver's 1M-row pass B was
    reading them all once pass A was done, while every worker waited). ``firsts``: the blocks' first
    positions (their files' names), ``rows``: the kind's rows. Each file is memory-mapped: the
    quarantine entries and stats are copied (:func:`_side_frame`), the keys taken into
    :class:`_KeyColumns`; the estimator bytes and texts are not read (:func:`_read_est`,
    :func:`_read_rows` take the rows pass B names). A daemon: :meth:`result` stops it and reads
    what is left (a file it could not read is read again there, its error raised)."""

    def __init__(self, side: Path, firsts: list[int], rows: int):
        super().__init__(name="curate-side-reader", daemon=True)
        self.side = side
        self.files = [side / f"{p:012d}.arrow" for p in firsts]
        self.frames: list[pl.DataFrame] = []
        self.keys = _KeyColumns(rows)
        self._done = threading.Event()
        self.start()

    def _read_next(self) -> None:
        table = _mapped(self.files[len(self.frames)])
        frame = _side_frame(table)
        self.keys.add(table)
        self.frames.append(frame)

    def run(self) -> None:
        while not self._done.wait(0.05):
            try:
                while (len(self.frames) < len(self.files) and not self._done.is_set()
                       and self.files[len(self.frames)].exists()):
                    self._read_next()
            except Exception:  # noqa: BLE001 - read again (and raised) by result
                return

    def stop(self) -> None:
        self._done.set()
        self.join()

    def result(self) -> tuple[pl.DataFrame, _Keys, list[Path]]:
        """Once pass A is done: the rows with a quarantine entry or stats of every block, the kept
        rows' keys (:class:`_Keys`), both in input order, and the side files."""
        self.stop()
        missing = [f.name for f in self.files[len(self.frames):] if not f.exists()]
        if missing:
            raise RuntimeError(f"pass A wrote no side file {missing[0]} in {self.side}")
        while len(self.frames) < len(self.files):
            self._read_next()
        return pl.concat(self.frames, how="diagonal_relaxed"), self.keys.keys(), self.files


def _mapped(f: Path):
    """A side file (Arrow IPC, as :func:`_write_side` writes them) as an Arrow table over its
    memory mapping: nothing is read until a column is."""
    import pyarrow as pa
    import pyarrow.ipc

    with pa.memory_map(str(f)) as src:
        return pa.ipc.open_file(src).read_all()


def _side_rows(files: list[Path], rows: np.ndarray):
    """For each side file holding some of the kept rows at positions ``rows`` (sorted): the file's
    columns (an Arrow table, memory-mapped: nothing is read but what is taken) and the indices of
    those rows in it, in position order."""
    for f in files:
        table = _mapped(f)
        pos = _np_values(table[POS])
        if not len(pos):
            continue
        mine = rows[np.searchsorted(rows, pos.min()):np.searchsorted(rows, pos.max(), side="right")]
        if not len(mine):
            continue
        order = np.argsort(pos, kind="stable")
        at = order[np.minimum(np.searchsorted(pos, mine, sorter=order), len(pos) - 1)]
        if not np.array_equal(pos[at], mine):
            raise RuntimeError(f"a row asked for is not among the kept rows of {f.name}")
        yield table, at


def _read_est(files: list[Path], rows: np.ndarray) -> np.ndarray:
    """The estimator bytes (rows, 256) of the kept rows at positions ``rows`` (sorted), from the side
    files (one file at a time: only those rows are kept). Each file is memory-mapped and its
    ``_est`` column viewed as one (rows, 256) byte array, from which those rows are taken: ~0.1 s
    for 342k of 1M rows, where a polars filter, sort and Array-to-numpy conversion took ~0.3 s."""
    out = [_np_values(table[EST])[at] for table, at in _side_rows(files, rows)]
    got = np.concatenate(out) if out else np.empty((0, dedupe.DEFAULT_PERM), dtype=np.uint8)
    if len(got) != len(rows):
        raise RuntimeError(f"the side files hold the estimator bytes of {len(got)} of {len(rows)} candidates")
    return got


def _read_rows(files: list[Path], rows: np.ndarray) -> pl.DataFrame:
    """``_pos, id, source, line, text`` of the kept rows at positions ``rows`` (sorted), from the side
    files (pass A wrote each kept row's text there: no Ray pass reads them back out of the blocks).
    The texts stay views into the memory-mapped files (polars reads Arrow's string views without a
    copy), paged in as the verification reads them."""
    got = [pl.from_arrow(table.select([POS, *ROW_COLS])).rename({TEXT: "text"})[at]
           for table, at in _side_rows(files, rows)]
    out = pl.concat(got) if got else pl.DataFrame(schema={POS: pl.Int64, "text": pl.String, "id": pl.String,
                                                          "source": pl.String, "line": pl.Int64})
    if out.height != len(rows):
        raise RuntimeError(f"the side files hold {out.height} of the {len(rows)} rows asked for")
    return out.select(POS, "id", "source", "line", "text")


def _np_values(col, dtype=None) -> np.ndarray:
    """The values of an Arrow column of a fixed-width type (numpy ``dtype``: the column's own by
    default) as a numpy view, no copy (null slots hold whatever the writer left there); a
    fixed-size list column as a (rows, width) array."""
    import pyarrow as pa

    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_fixed_size_list(arr.type):
        width = arr.type.list_size
        dtype = dtype or np.dtype(arr.type.value_type.to_pandas_dtype())
        if len(arr) == 0:
            return np.empty((0, width), dtype=dtype)
        child = arr.values
        flat = np.frombuffer(child.buffers()[1], dtype=dtype)
        start = child.offset + arr.offset * width
        return flat[start:start + len(arr) * width].reshape(len(arr), width)
    dtype = dtype or np.dtype(arr.type.to_pandas_dtype())
    if len(arr) == 0:
        return np.empty(0, dtype=dtype)
    return np.frombuffer(arr.buffers()[1], dtype=dtype)[arr.offset:arr.offset + len(arr)]


# --------------------------------------------------------------------------- pass B (driver, workers)
def _kept(table):
    """The kept rows of a pass-A block (``_q`` null), in input order, without a copy: pass A puts
    them first (the rows its rules quarantined come after), so they are the block's first rows
    however Ray Data slices the block (a block that is not so, were Ray Data to join blocks, is
    filtered)."""
    if "_q" not in table.column_names:
        return table
    q = table["_q"]
    kept = q.null_count
    if kept == table.num_rows:
        return table
    if q.slice(0, kept).null_count == kept:
        return table.slice(0, kept)
    import pyarrow.compute as pc

    return table.filter(pc.is_null(q))


def _rows_of(table, kind: str, want):
    """``_pos, id, source, line, text`` of the rows in ``want`` (kept rows' positions, sorted): found
    by a binary search among the block's kept rows (in input order) and taken in Arrow, so only those
    rows of the columns read are copied and converted."""
    import pyarrow as pa

    want = ray_data.resolve(want)
    table = _kept(table)
    pos = table[POS].to_numpy()
    cols = [POS, "id", "source", "line", *row_text_expr(kind).meta.root_names()]
    idx = np.empty(0, dtype=np.int64)
    if len(pos):
        w = want[np.searchsorted(want, pos.min()):np.searchsorted(want, pos.max(), side="right")]
        order = None if (np.diff(pos) > 0).all() else np.argsort(pos, kind="stable")
        ranked = pos if order is None else pos[order]
        at = np.searchsorted(ranked, w)
        if not np.array_equal(ranked[at], w):
            raise RuntimeError("a row asked for is not among its block's kept rows")
        idx = at if order is None else order[at]
    df = from_arrow(table.select(cols).take(pa.array(idx, type=pa.int64())))
    return to_arrow(df.select(POS, "id", "source", "line", row_text_expr(kind).fill_null("").alias("text")))


# --------------------------------------------------------------------------- pass C (workers)
def _finish_block(table, kind: str, config: CleanConfig, drops, root: str | None, compression: str,
                  side: str | None = None, blocks: str | None = None):
    """Drop the block's duplicates (quarantine entries as the local executor makes them), write the
    kept rows as one shard. Out: ``_file``, ``_rows`` (with ``blocks``, ``_block``: the first position,
    whose side file the driver may then delete) and the quarantine entries ``_pos, _q``; with
    ``side`` (a directory), the entries are written there instead (``<first pos>.arrow``, as pass A's
    side files: :func:`_read_entries`), not sent through Ray's object store. Only the rows pass A
    kept are converted to polars (a slice of the block: :func:`_kept`), their hits only for the
    duplicates. ``blocks``: the directory of pass A's side files, when they hold the whole blocks
    (``_rules_block(whole=True)``: ``table`` is then the block's first position only)."""
    import pyarrow.compute as pc

    drops = ray_data.resolve(drops)
    first_pos = pc.min(table[POS]).as_py()
    if blocks is not None:
        table = _mapped(Path(blocks) / f"{first_pos:012d}.arrow")
    table = _kept(table)
    content = [c for c in table.column_names if c not in INTERNAL]
    rows = from_arrow(table.select([POS, *content])).with_row_index("_row")
    stats = _Stats(active_rules(config), config.examples)
    gone_hits = rows.select("_row", POS).join(drops, on=POS, how="inner").sort("_row")
    out = []
    if gone_hits.height:
        dup_hits = gone_hits.select("_row", pl.col("rule"), pl.lit("row").alias("field"), "evidence").cast(HIT_SCHEMA)
        gone_at = gone_hits["_row"]
        # gathered in polars: Arrow has no take of the side files' string views
        prior = (from_arrow(table.select(["_hits"]))[gone_at].with_columns(gone_at)
                 .select("_row", "_hits").explode("_hits").filter(pl.col("_hits").is_not_null()).unnest("_hits"))
        prior = prior.cast(HIT_SCHEMA) if prior.height else pl.DataFrame(schema=HIT_SCHEMA)
        gone = rows.filter(pl.col("_row").is_in(gone_hits["_row"].implode())).select("_row", *content)
        q = _quarantine(gone, [dup_hits], [prior, dup_hits], kind, stats)
        out.append(_entries(gone_hits[POS], q))
        rows = rows.filter(~pl.col("_row").is_in(gone_hits["_row"].implode()))
    kept = rows.select(content)
    files = []
    if kept.height and root is not None:
        files.append(ray_data.write_part(kept, Path(root), kind, first_pos, compression))
    block_stats = orjson.dumps({"rules": stats.rules, "engine": {}}).decode()
    res = pl.DataFrame({"_file": files or [None], "_rows": [kept.height], "_stats": [block_stats]})
    if blocks is not None:  # the block's side file is read: the driver may delete it (_clean_kind_ray)
        res = res.with_columns(pl.lit(first_pos, pl.Int64).alias("_block"))
    if out and side is not None:
        _write_side(out[0], Path(side), first_pos)
    elif out:
        res = pl.concat([res, out[0]], how="diagonal_relaxed")
    return to_arrow(res)


def _read_entries(side: Path) -> pl.DataFrame:
    """``_pos, _q``: the quarantine entries the finish pass wrote into ``side`` (:func:`_finish_block`),
    memory-mapped: they never were in Ray's object store, so the driver needs no copy of them that
    outlives Ray (:func:`_owned`), and freeing them costs nothing (freeing the frame of the entries
    taken out of the finish pass's blocks took ~0.2 s of a 1M-row run's tail)."""
    got = [pl.from_arrow(_mapped(f)) for f in (sorted(side.glob("*.arrow")) if side.is_dir() else ())]
    return pl.concat(got) if got else pl.DataFrame(schema={POS: pl.Int64, "_q": qfile.ENTRY})


# --------------------------------------------------------------------------- driver
def _collect(ds, each: Callable[[pl.DataFrame], None] | None = None) -> pl.DataFrame:
    """The pass's output blocks as one frame; ``each`` is called with each block's as it comes out."""
    frames = []
    for t in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        frames.append(from_arrow(t))
        if each is not None:
            each(frames[-1])
    frames = [f for f in frames if f.width]
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def _owned(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` with every buffer its own (copied through Arrow): a frame made from a Ray object
    (:func:`_collect`) may keep the object store's memory (polars strings are views into the Arrow
    buffers they came from, even after a sort or a filter); measured: freeing such a frame after
    ``ray.shutdown`` took 0.19 s, an owned copy of it (0.1 s to make) no time."""
    return pl.from_arrow(df.to_arrow(compat_level=pl.CompatLevel.oldest()))


def _merge_stats(stats: _Stats, block: dict[str, Any]) -> None:
    for code, rule in block["rules"].items():
        mine = stats.rules[code]
        for key, value in rule.items():
            if key == "examples":
                room = stats.examples - len(mine["examples"])
                mine["examples"].extend(value[:max(room, 0)])
            elif key == "seconds":
                mine[key] = round(mine.get(key, 0.0) + value, 3)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                mine[key] = mine.get(key, 0) + value
            elif key == "clusters":  # as locally: the last kind with clusters names them
                mine[key] = value
            else:
                mine.setdefault(key, value)
    for key, value in block.get("engine", {}).items():
        stats.engine[key] = round(stats.engine.get(key, 0.0) + value, 3)


def _lap(stats: _Stats, name: str, t0: float) -> None:
    """Wall seconds of a Ray pass, in the report's engine_seconds (summed over kinds, which overlap)."""
    stats.engine[name] = round(stats.engine.get(name, 0.0) + time.perf_counter() - t0, 3)


def _dup_rules(config: CleanConfig) -> dict[str, Any]:
    out = {}
    for a in active_rules(config):
        if a.rule.code in DUP_CODES:
            if a.action != "drop":
                raise UserError(f"--executor ray runs {a.rule.code} as drop or off (not {a.action}); "
                                "use --executor local to flag duplicates")
            out[a.rule.code] = a
    return out


def _near_params(dups: dict[str, Any]) -> tuple[float, str] | None:
    """(threshold, measure) of the near-duplicate rule, None when it is off."""
    if "near_duplicate" not in dups:
        return None
    p = dups["near_duplicate"].rule.p
    return float(p["threshold"]), str(p.get("measure", dedupe.DEFAULT_MEASURE))


def _keys_fit(rows: int, near: tuple[float, str] | None) -> bool:
    """Whether the duplicate keys of ``rows`` rows are grouped on the driver (up to
    ``CURATE_RAY_DRIVER_KEYS_MB``, 2 GB: about 13M rows at threshold 0.8) rather than by Ray shuffles."""
    per_row = 8 + 16 + 4 + (4 * dedupe.lsh_params(near[0], dedupe.DEFAULT_PERM)[0] if near else 0)
    return rows * per_row <= float(os.environ.get("CURATE_RAY_DRIVER_KEYS_MB", 2048)) * 2**20


def _groups_on_driver(keys: _Keys, near: bool) -> tuple[pl.DataFrame, np.ndarray, tuple | None]:
    """``(members, candidates, buckets)`` from the keys of every kept row with a text, in input
    order (:class:`_Keys`): ``_pos, _rep`` (first row) of the rows in exact groups, the positions of
    the groups' first rows that share an LSH band key with another one, and the candidates' LSH
    buckets (:func:`curate.dedupe.shared_buckets`, for :func:`curate.dedupe.near_duplicates_of`;
    None without candidates)."""
    pos = keys.pos
    first = dedupe.exact_group_firsts(keys.h1, keys.h2, keys.n)
    multi = np.bincount(first, minlength=len(pos))[first] > 1
    members = pl.DataFrame({POS: pos[multi], "_rep": pos[first[multi]]}, schema={POS: pl.Int64, "_rep": pl.Int64})
    cand = np.empty(0, dtype=np.int64)
    csr = None
    if near:
        is_first = first == np.arange(len(pos))
        if is_first.sum() > 1:
            shared, csr = dedupe.shared_buckets(keys.bk[is_first])
            cand = pos[is_first][shared]
    return members, cand, csr


def _groups_by_shuffle(a, near: bool) -> tuple[pl.DataFrame, np.ndarray, None]:
    """:func:`_groups_on_driver` by two Ray Data hash shuffles (keys too many for the driver): the
    exact keys, then the band keys of the groups' first rows; each partition finds its groups (not
    their buckets: None)."""
    import ray

    from curate.executors.ray_session import num_cpus

    nparts = max(2, 2 * num_cpus())
    members = _collect(a.map_batches(_exact_keys, batch_format="pyarrow", batch_size=None)
                       .repartition(nparts, keys=["_h1", "_h2", "_n"])
                       .map_batches(_exact_groups, batch_format="pyarrow", batch_size=None))
    if members.width == 0:
        members = pl.DataFrame(schema={POS: pl.Int64, "_rep": pl.Int64})
    cand = np.empty(0, dtype=np.int64)
    if near:
        skip = members.filter(pl.col(POS) != pl.col("_rep"))[POS].to_numpy()
        shared = _collect(a.map_batches(_band_keys, batch_format="pyarrow", batch_size=None,
                                        fn_kwargs={"skip": ray.put(skip)})
                          .repartition(nparts, keys=["_bk"])
                          .map_batches(_shared_keys, batch_format="pyarrow", batch_size=None))
        if shared.height:
            cand = np.unique(shared[POS].to_numpy())
    return members, cand, None


def _exact_keys(table):
    """``_pos, _h1, _h2, _n`` of the block's kept rows that have a normalized text."""
    import pyarrow.compute as pc

    if "_h1" not in table.column_names:  # every row of the block was quarantined
        return to_arrow(pl.DataFrame(schema={POS: pl.Int64, "_h1": pl.UInt64, "_h2": pl.UInt64, "_n": pl.UInt32}))
    t = table.select([POS, "_h1", "_h2", "_n"])
    return t.filter(pc.is_valid(t["_h1"]))


def _exact_groups(table):
    """One hash partition: rows whose normalized text another row has -> (row, first row)."""
    df = from_arrow(table)
    g = ["_h1", "_h2", "_n"]
    return to_arrow(df.filter(pl.len().over(g) > 1).select(POS, pl.col(POS).min().over(g).alias("_rep")))


def _band_keys(table, skip):
    """One row per (row, band) of the band keys of the block's group-first rows: ``_pos, _bk``
    (band << 32 | key). Rows in ``skip`` (exact duplicates of an earlier row) have none."""
    empty = to_arrow(pl.DataFrame(schema={POS: pl.Int64, "_bk": pl.UInt64}))
    if "_bk" not in table.column_names:
        return empty
    df = from_arrow(table.select([POS, "_bk"])).filter(pl.col("_bk").is_not_null())
    skip = ray_data.resolve(skip)
    if len(skip):
        df = df.filter(~pl.col(POS).is_in(pl.Series(skip).implode()))
    if df.height == 0:
        return empty
    keys = df["_bk"].to_numpy().astype(np.uint64)
    keys |= np.arange(keys.shape[1], dtype=np.uint64)[None, :] << np.uint64(32)
    return to_arrow(pl.DataFrame({POS: np.repeat(df[POS].to_numpy(), keys.shape[1]), "_bk": keys.ravel()}))


def _shared_keys(table):
    """One hash partition of band keys: the rows sharing a band key with another row (candidates)."""
    df = from_arrow(table)
    return to_arrow(df.filter(pl.col("_bk").is_duplicated()).select(POS).unique())


def _rank_in(sorted_pos: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """The index of each of ``pos`` in ``sorted_pos`` (ascending, distinct), every one of which must
    be there (a binary search: a dict of the ~420k rows involved and ``replace_strict`` took ~0.1 s
    per duplicate rule on the 1M-row driver's path, while the workers waited)."""
    at = np.searchsorted(sorted_pos, pos)
    if len(pos) and (at.max() >= len(sorted_pos) or not np.array_equal(sorted_pos[at], pos)):
        raise RuntimeError("a duplicate cluster names a row that was not read back")
    return at


def _union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.union1d(a, b)`` (sorted, distinct), by a stable sort (Timsort: two sorted runs, as the
    driver's candidates and exact duplicates are, merge in linear time; ``union1d``'s quicksort took
    ~0.2 s for 420k positions); any order in, the same result."""
    both = np.concatenate([a, b]).astype(np.int64, copy=False)
    both.sort(kind="stable")
    if len(both) < 2:
        return both
    return both[np.concatenate(([True], both[1:] != both[:-1]))]


def _duplicates(a, keys: _Keys | None, kind: str, config: CleanConfig, dups: dict[str, Any],
                gone_pos: np.ndarray, stats: _Stats, side_files: list[Path] | None = None,
                side_rows: bool = False) -> pl.DataFrame:
    """Pass B: ``_pos, rule, evidence`` of every duplicate to drop; fills the dup rules' stats.

    ``keys``: the exact and band keys of every kept row with a normalized text (:class:`_Keys`, in
    input order), from pass A, grouped here on the driver; None: too many for the driver, grouped
    by Ray shuffles. Only the rows the groups name (near-duplicate candidates, exact duplicates) are
    read back: from the side files with ``side_rows`` (pass A wrote each kept row's text there),
    else from the blocks, by the workers. With the rest of the rows' sketches (``keys.length``,
    the estimator bytes in ``side_files``), the candidates are verified from pass A's sketches
    (:func:`curate.dedupe.near_duplicates_of`, given the buckets :func:`_groups_on_driver` found),
    not sketched again."""
    import ray

    t0 = time.perf_counter()
    near = "near_duplicate" in dups
    threshold, measure = _near_params(dups) or (1.0, dedupe.DEFAULT_MEASURE)
    near_root = pl.DataFrame(schema={"_rep": pl.Int64, "_root": pl.Int64, "_sim": pl.Float64})
    members, cand, csr = _groups_on_driver(keys, near) if keys is not None else _groups_by_shuffle(a, near)
    # every row named (candidates and exact groups' members) is read back in a thread, while this one
    # gathers the candidates' sketches and starts their near-duplicate pass (buckets, estimates),
    # which waits for the texts only when it first verifies a pair: from the side files (a take of
    # memory-mapped Arrow, no copy of the texts), else by one Ray pass back over the blocks (~0.6-1.2 s
    # on 2 CPUs, mostly Ray Data's dispatch, which the near-duplicate pass then waited for)
    want = _union(cand, members[POS].to_numpy())
    empty = pl.DataFrame(schema={POS: pl.Int64, "id": pl.String, "source": pl.String, "line": pl.Int64,
                                 "text": pl.String})
    rows_back = ThreadPoolExecutor(1, thread_name_prefix="curate-rows-back") if len(want) else None

    def read_back() -> pl.DataFrame:
        t = time.perf_counter()
        if side_rows and side_files:
            got = _read_rows(side_files, want)
        else:
            got = _collect(a.map_batches(_rows_of, batch_format="pyarrow", batch_size=None,
                                         fn_kwargs={"kind": kind, "want": ray.put(want)})).sort(POS)
        _lap(stats, "ray_rows_back", t)
        return got

    texts_of = rows_back.submit(read_back) if rows_back is not None else None

    def texts_now() -> pl.DataFrame:  # the Future keeps its result: no copy of it here
        return texts_of.result() if texts_of is not None else empty

    @functools.cache
    def ctexts() -> pl.DataFrame:  # the candidates' rows, in candidate (input) order
        return texts_now().filter(pl.col(POS).is_in(pl.Series(cand).implode()))

    try:
        sketches = None
        if len(cand) and keys is not None and keys.length is not None and side_files:
            at = np.searchsorted(keys.pos, cand)  # the keys are in input order
            # with the buckets found among the groups' first rows, the candidates' band keys are not needed
            sketches = dedupe.Sketch(None if csr is not None else keys.bk[at], _read_est(side_files, cand),
                                     keys.length[at].astype(np.int64))
        del keys
        _lap(stats, "ray_duplicate_keys", t0)
        t1 = time.perf_counter()
        if len(cand):
            if sketches is not None:  # the same result as find_duplicates over the candidates (they are distinct)
                res = dedupe.near_duplicates_of(lambda: ctexts()["text"], sketches, threshold=threshold,
                                                measure=measure, csr=csr)
            else:
                res = dedupe.find_duplicates(ctexts(), "text", threshold=threshold, near=True, measure=measure)
            clustered = res.filter(pl.col("cluster").is_not_null())
            pos = ctexts()[POS]
            near_root = pl.DataFrame({"_rep": pos.gather(clustered["row"]),
                                      "_root": pos.gather(clustered["cluster"].cast(pl.UInt32)),
                                      "_sim": clustered["similarity"]})
        texts = texts_now()
        ctexts.cache_clear()
    finally:
        if rows_back is not None:
            rows_back.shutdown(wait=True)
    _lap(stats, "ray_candidates_on_driver", t1)
    involved = pl.concat([members.select(POS, "_rep"),
                          near_root.select(pl.col("_rep").alias(POS), "_rep")]).unique(POS)
    res = (involved.join(near_root, on="_rep", how="left")
           .with_columns(pl.coalesce("_root", "_rep").alias("_root"))
           .filter(pl.len().over("_root") > 1)
           .with_columns((pl.col(POS) == pl.col("_root")).alias("keep"))
           .with_columns(pl.when(pl.col("keep") | (pl.col("_rep") == pl.col("_root"))).then(1.0)
                         .otherwise(pl.col("_sim")).alias("similarity"),
                         pl.when(pl.col("keep")).then(None).when(pl.col("_rep") == pl.col("_root"))
                         .then(pl.lit("exact")).otherwise(pl.lit("near")).alias("dup_kind"))
           .sort(POS))
    # the local executor numbers rows among those still kept when the duplicate rules run
    def kidx(p: pl.Series) -> list[int]:
        return (p.to_numpy() - np.searchsorted(gone_pos, p.to_numpy())).tolist()

    info = texts.filter(pl.col(POS).is_in(res[POS].implode()))
    info_pos = info[POS].to_numpy()  # ascending: the rows read back are sorted
    drops = []
    seconds = time.perf_counter() - t0
    for code in ("exact_duplicate", "near_duplicate"):
        if code not in dups:
            continue
        dkind = code.split("_")[0]
        if code == "exact_duplicate" and near:
            stats.rules[code]["note"] = BOTH_DUPS_NOTE
        dropped = res.filter(~pl.col("keep") & (pl.col("dup_kind") == dkind))
        if dropped.height == 0:
            stats.add(code, "drop", 0, [], seconds if code == "exact_duplicate" else 0.0)
            continue
        kept = info.select(pl.col(POS).alias("_root"), "id", "source", "line")
        hit = (dropped.join(kept, on="_root", how="left", maintain_order="left")
               .select(POS, pl.lit(code).alias("rule"), pl.lit("row").alias("field"),
                       _short(evidence_expr().fill_null(""))))
        drops.append(hit.select(POS, "rule", "evidence"))
        # examples and cluster report through the local functions, on the rows involved (renumbered)
        first = hit.head(config.examples * 8)
        ex_df = first.select(pl.col(POS)).join(info, on=POS, how="left", maintain_order="left").select("id", "source", "line")
        examples = _examples(first.with_row_index("_row").select("_row", "rule", "field", "evidence"),
                             ex_df.with_row_index("_row"), config.examples)
        stats.add(code, "drop", dropped.height, examples, seconds if code == "exact_duplicate" else 0.0)
        rule = dups[code].rule
        mine = res.filter(pl.col("_root").is_in(dropped["_root"].unique().implode()))
        result = mine.select(
            pl.Series("row", _rank_in(info_pos, mine[POS].to_numpy()), dtype=pl.UInt32),
            pl.Series("cluster", _rank_in(info_pos, mine["_root"].to_numpy()), dtype=pl.Int64), "keep", "similarity",
            pl.when(pl.col("dup_kind").is_null() | (pl.col("dup_kind") == dkind)).then(pl.col("dup_kind")).alias("dup_kind"))
        report = dedupe.clusters_report(result, info, "text", limit=int(rule.p.get("report_clusters", 10)), members=5)
        back = kidx(info[POS])
        for c in report:
            c["cluster"] = back[c["cluster"]]
            for m in c["members"]:
                m["row"] = back[m["row"]]
        if report:
            stats.rules[code]["clusters"] = report
    if not drops:
        return pl.DataFrame(schema={POS: pl.Int64, "rule": pl.String, "evidence": pl.String})
    return pl.concat(drops)


def _clean_kind_ray(kind: str, kfiles: list[Path], config: CleanConfig, dups: dict[str, Any], nrows: int,
                    root: str | None, compression: str, side_root: Path | None):
    """Passes A, B and C over one kind: ``(kind, stats, rows kept, quarantine entries, shard paths)``.
    ``root``: the output's staging directory (None: a dry run), its shards compressed as ``compression``.
    ``side_root``: where pass A's blocks write their small columns (beside the output; None: a dry
    run, one more Ray pass reads them out of the blocks)."""
    import ray

    items = ray_data.pieces(kfiles, nrows)
    ds = ray_data.piece_dataset(items)
    if ds is None:
        return kind, None, 0, [], []
    stats = _Stats(active_rules(config), config.examples)
    t0 = time.perf_counter()
    on_driver = bool(dups) and _keys_fit(sum(p["length"] for p in items), _near_params(dups))
    side_dir = None if side_root is None else side_root / kind
    # the finish pass's quarantine entries, beside (not in: it is deleted while the pass runs)
    entries_dir = None if side_root is None else side_root.with_name("entries") / kind
    # with side files, the blocks also write the rest of each row's sketch (the candidates' is read back)
    keys = {"near": _near_params(dups), "side_keys": on_driver,
            "est": on_driver and side_dir is not None and "near_duplicate" in dups,
            "rows": on_driver and side_dir is not None} if dups else None
    # with side files and the keys grouped here (or no duplicate rule), the blocks live in their side
    # files and only their first positions go through Ray's object store
    whole = side_dir is not None and (not dups or on_driver)
    reader = _SideReader(side_dir, [p["pos"] for p in items], sum(p["length"] for p in items)) \
        if side_dir is not None else None
    try:
        a = ds.map_batches(_rules_block, batch_format="pyarrow", batch_size=1,
                           fn_kwargs={"kind": kind, "config": config, "side": side_dir and str(side_dir),
                                      "keys": keys, "whole": whole}).materialize()
    finally:
        if reader is not None:
            reader.stop()
    if reader is not None:
        side, keys, side_files = reader.result()
    else:
        side_files = None
        small = _collect(a.map_batches(_small_pass, batch_format="pyarrow", batch_size=None,
                                       fn_kwargs={"keys": on_driver})).to_arrow()
        side, keys = _side_frame(small), _Keys.concat([_Keys.of(small)])
    _lap(stats, "ray_rules_pass", t0)
    if not on_driver:
        keys = None
    for s in side["_stats"].drop_nulls().to_list():
        _merge_stats(stats, orjson.loads(s))
    quarantined = side.filter(pl.col("_q").is_not_null()).select(POS, "_q")
    gone_pos = np.sort(quarantined[POS].to_numpy())
    drops = _duplicates(a, keys, kind, config, dups, gone_pos, stats, side_files,
                        side_rows=bool(keys is not None and side_files)) if dups else \
        pl.DataFrame(schema={POS: pl.Int64, "rule": pl.String, "evidence": pl.String})
    # the side files (~420 MB per million rows) are deleted while the finish pass runs, not before
    # it (~0.1 s of the kernel freeing their pages, on the driver's path while every worker waited);
    # those holding the whole blocks, which the finish pass reads, as their finish tasks are done (below)
    removed = None
    if side_dir is not None and not whole:
        removed = threading.Thread(target=shutil.rmtree, args=(side_dir,), kwargs={"ignore_errors": True},
                                   name="curate-side-files", daemon=True)
        removed.start()
    # the whole blocks' side files (~1.9 GB per million rows) are deleted one by one as their finish
    # tasks are done, beside the pass, not all at the command's end: this disk's filesystem discards
    # the blocks it frees, and unlinking them all took ~1 s there (1.0 s for 0.1 CPU s: waiting)
    unlinking = ThreadPoolExecutor(1, thread_name_prefix="curate-side-files") if whole else None

    def finished(block: pl.DataFrame) -> None:
        for first in block["_block"].to_list() if "_block" in block.columns else ():
            unlinking.submit(Path.unlink, side_dir / f"{first:012d}.arrow", missing_ok=True)

    t0 = time.perf_counter()
    try:
        fin = _collect(a.map_batches(_finish_block, batch_format="pyarrow", batch_size=None,
                                     fn_kwargs={"kind": kind, "config": config, "drops": ray.put(drops), "root": root,
                                                "compression": compression,
                                                "side": entries_dir and str(entries_dir),
                                                "blocks": str(side_dir) if whole else None},
                                     **_finish_cap(whole, len(items))),
                       each=finished if unlinking is not None else None)
    finally:
        if removed is not None:
            removed.join()
        if unlinking is not None:
            # what is left (the last block's file) goes with the spill directory, beside the quarantine's write
            unlinking.shutdown(wait=False, cancel_futures=True)
    _lap(stats, "ray_finish_pass", t0)
    for s in fin["_stats"].drop_nulls().to_list():
        _merge_stats(stats, orjson.loads(s))
    if entries_dir is not None:
        quarantined = pl.concat([quarantined, _read_entries(entries_dir)])
    elif "_q" in fin.columns:
        quarantined = pl.concat([quarantined, fin.filter(pl.col("_q").is_not_null()).select(POS, "_q")])
    parts = sorted(fin["_file"].drop_nulls().to_list())
    if root is not None and not parts:  # every row dropped: an empty shard still carries the kind's schema
        parts = [ray_data.write_part(schemas.empty(kind), Path(root), kind, 0, compression)]
    entries = quarantined.sort(POS)["_q"].struct.unnest()
    return kind, stats, int(fin["_rows"].sum()), entries, parts


def _finish_cap(whole: bool, blocks: int) -> dict[str, Any]:
    """``map_batches`` arguments of the finish pass: with the blocks in their side files
    (``whole``), at most one task per CPU of the cluster at a time (and no more than the
    ``blocks``: Ray Data warns of a cap above its inputs). Its input blocks are then a row each,
    and Ray Data sent more of their tasks at once than there are CPUs; the raylet started a worker
    process for the tasks queued beyond its idle workers (2-3 more, ~0.7 CPU s each to boot, never
    given a task: traced). Not capped when the blocks are in the object store, where the cap only
    delayed each next task (~0.15-0.3 s a pass)."""
    if not whole:
        return {}
    from curate.executors.ray_session import num_cpus

    return {"concurrency": max(1, min(num_cpus(), blocks))}


def _warm_worker(near: tuple[float, str] | None, keys: bool) -> None:
    """A Ray task, one per CPU, sent as soon as the driver is connected: the worker process starts
    and imports what every pass-A task needs first (``ray.data``, which Ray Data's tasks import:
    ~1 s of CPU; curate's clean) and, with a duplicate rule on, loads the compiled keys kernel
    from numba's cache, while the driver still plans the passes. Ray Data's tasks then run in
    these workers (idle workers of the job are reused), so none of that is on the first pass's
    path. Never fails: a worker it could not warm does it at its first block instead."""
    try:
        import ray.data  # noqa: F401

        if keys:
            dedupe.row_keys(pl.Series(["a warm-up row, kata kerana"] * 2), threshold=near[0] if near else 0.8,
                            near=near is not None, measure=near[1] if near else dedupe.DEFAULT_MEASURE,
                            est=near is not None)
    except Exception:  # noqa: BLE001 - a warm-up only
        pass


def warm_workers(config: CleanConfig, blocks: int | None = None) -> list:
    """Start one worker per CPU of the cluster, but no more than the ``blocks`` pass A has (when
    known: :func:`planned_blocks`; a worker never given a block would only have imported), and
    warm them up (:func:`_warm_worker`), without waiting for them: the workers' start-up (process,
    imports, kernels) overlaps the driver's. Returns the tasks' references, for
    :func:`clean_dir_ray` (``warming``)."""
    import ray

    from curate.executors.ray_session import num_cpus

    dups = _dup_rules(config)
    task = ray.remote(num_cpus=1, max_retries=0)(_warm_worker)
    refs = []
    for i in range(min(num_cpus(), blocks) if blocks is not None else num_cpus()):
        # each task a scheduling class of its own (a different, negligible logical memory request:
        # i + 1 bytes): the raylet starts one more worker whenever a lease request's backlog (the
        # tasks of its class queued) exceeds its idle and starting workers, which two tasks of one
        # class sent together did most of the time (the first one took an idle worker, the second
        # one's request counted both: a third worker booted, ~1 CPU s, never used)
        refs.append(task.options(memory=i + 1).remote(_near_params(dups), bool(dups)))
    return refs


def _wait_warm_up(refs: list | None, timeout: float = 60.0) -> None:
    """Wait until the warm-up tasks are done (never raises; gives up after ``timeout`` seconds).
    Pass A's tasks could not start before anyway (each warm-up task holds a CPU), but sent while
    every worker is busy warming up, their lease requests made the raylet boot one more worker
    (it starts one whenever a request's backlog exceeds its idle and starting workers), which then
    never ran a task: ~1 CPU s. Sent once the warm-up is done, they find the warmed workers idle."""
    if not refs:
        return
    import ray

    with contextlib.suppress(Exception):
        ray.wait(refs, num_returns=len(refs), timeout=timeout)


def planned_blocks(inp: str | Path | list, fmt: str | None = None, rows_per_block: int | None = None) -> int | None:
    """The number of pass-A blocks of ``inp``, all kinds (they run at once), from the parquet
    files' metadata; None when the input is not parquet datasets or files (raw sources are read by
    the driver first) or cannot be planned here (:func:`clean_dir_ray` then says why)."""
    inputs = list(inp) if isinstance(inp, (list, tuple)) else [inp]
    try:
        files = ray_data._parquet_files(inputs, fmt)
        if files is None:
            return None
        nrows = rows_per_block or ray_data.block_rows()
        return sum(len(ray_data.pieces(f, nrows)) for f in files.values())
    except Exception:  # noqa: BLE001 - only a hint for the warm-up
        return None


def warm_driver(config: CleanConfig, dry_run: bool = False) -> threading.Thread | None:
    """With a duplicate rule on, load the compiled kernels the driver runs in pass B (from numba's
    cache, ~1 s of CPU) in a thread now, while pass A runs, not on pass B's path (called once
    connected: the load would slow the imports of ray and ray.data, under the GIL). A wet run's
    blocks sketch the rows (side files), so its driver needs no sketch kernel
    (:func:`curate.warmup.warm_duplicate_groups`); a dry run's sketches the candidates again.
    A daemon: a run that fails before pass B exits at once instead of waiting for it (numba
    writes a cache file to a temporary name and renames it, so an interrupted load leaves none
    half-written)."""
    if not _dup_rules(config):
        return None
    from curate import warmup

    warm = warmup.warm_duplicates if dry_run else warmup.warm_duplicate_groups
    t = threading.Thread(target=warm, name="curate-warm-duplicates", daemon=True)
    t.start()
    return t


def clean_dir_ray(inp: str | Path | list, out: str | Path, config: CleanConfig | None = None, *,
                  dry_run: bool = False, report_json: str | Path | None = None, fmt: str | None = None,
                  rows_per_block: int | None = None, warming: list | None = None,
                  ray_done: Callable[[], None] | None = None) -> RayCleanResult:
    """:func:`curate.clean.clean_dir` on Ray (connect first: ``RayExecutor.connect()``): the same
    output directory, quarantine and report. ``warming``: the warm-up tasks of :func:`warm_workers`,
    waited for before pass A is sent (:func:`_wait_warm_up`). ``ray_done``: called (in this thread)
    once the last Ray pass is done, while the quarantine and report are written in another (the
    quarantine entries of a dry run first copied out of Ray's object store: :func:`_owned`); the CLI shuts Ray
    down there (:func:`curate.executors.ray_session.release`)."""
    config = config or CleanConfig()
    config.validate()
    dups = _dup_rules(config)
    inputs = list(inp) if isinstance(inp, (list, tuple)) else [inp]
    t0 = time.perf_counter()
    stats = _Stats(active_rules(config), config.examples)
    nrows = rows_per_block or ray_data.block_rows()
    by_kind: dict[str, dict[str, int]] = {}
    entries: list[pl.DataFrame] = []
    release_error: Exception | None = None
    writer = contextlib.nullcontext() if dry_run else io.DatasetWriter(
        out, stage="clean", inputs=inputs,
        params={"target_lang": config.target_lang, "actions": config.actions, "params": config.params})
    with writer as w, tempfile.TemporaryDirectory(prefix="curate-ray-") as tmp:
        # raw inputs are spilled beside the output (shared storage on a cluster), never published
        spill = Path(tmp) if w is None else w.path / ".input"
        data, files = ray_data.open_input(inputs, fmt, spill)
        root = None if w is None else str(w.path)
        compression = "none" if w is None else w.compression
        # the kinds run at the same time (their Ray Data jobs overlap); results are merged in kind order
        side_root = None if w is None else spill / "side"  # pass A's small columns, per kind and block
        _wait_warm_up(warming)
        with ThreadPoolExecutor(max(1, len(files))) as pool:
            done = list(pool.map(lambda kv: _clean_kind_ray(kv[0], kv[1], config, dups, nrows, root, compression,
                                                                side_root),
                                 files.items()))
        if ray_done is not None and side_root is None:
            # a dry run's entries' strings may be views into the finish pass's blocks, in the object
            # store (a wet run's are in files: _read_entries)
            done = [(kind, kstats, n_kept, _owned(kentries), parts) for kind, kstats, n_kept, kentries, parts in done]

        def finish() -> dict[str, Any]:
            """Stats merged, shards listed, quarantine and report written: no Ray object touched."""
            shutil.rmtree(spill, ignore_errors=True)
            for kind, kstats, n_kept, kentries, parts in done:
                if kstats is None:
                    continue
                _merge_stats(stats, {"rules": kstats.rules, "engine": kstats.engine})
                by_kind[kind] = {"in": n_kept + kentries.height, "out": n_kept, "dropped": kentries.height}
                entries.append(kentries)
                if w is not None:
                    for rel in parts:
                        w.add_part(kind, rel)
            n_in = sum(v["in"] for v in by_kind.values())
            n_out = sum(v["out"] for v in by_kind.values())
            n_dropped = sum(v["dropped"] for v in by_kind.values())
            report = {
                "stage": "clean", "target_lang": config.target_lang,
                "rows_in": n_in, "rows_out": n_out, "rows_dropped": n_dropped, "accounted": n_in == n_out + n_dropped,
                "by_kind": by_kind, "seconds": round(time.perf_counter() - t0, 3), "engine_seconds": stats.engine,
                "rules": list(stats.rules.values()), "input": ", ".join(str(p) for p in inputs), "read": data.report,
            }
            if w is not None:
                w.input_manifests = data.manifest_ids
                report["output"] = str(out)
                qfile.write(w.file(qfile.NAME), pl.concat([qfile.to_frame((), data.quarantine), *entries]))
                w.write_json("report.json", report)
            return report

        if ray_done is None:
            report = finish()
        else:
            # the quarantine and report (~0.4-0.7 s at 1M rows) are written in a thread while ray_done
            # (Ray's shutdown: ~0.55 s, mostly waiting for its processes) runs here: every call into Ray
            # stays in this thread (a Ray object freed in another thread during the shutdown ends the
            # process: "the core worker has already been shutdown"); its error is raised once the
            # output is published (the output does not depend on it), a write's error before
            with ThreadPoolExecutor(1, thread_name_prefix="curate-clean-write") as ex:
                writing = ex.submit(finish)
                try:
                    ray_done()
                except Exception as exc:  # noqa: BLE001 - raised below, after the output is published
                    release_error = exc
                report = writing.result()
    if report_json:
        io.write_json(report_json, report)
    if release_error is not None:
        raise release_error
    return RayCleanResult(report, pl.concat(entries) if entries else qfile.to_frame(()))
