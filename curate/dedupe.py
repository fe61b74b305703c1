"""Exact and near-duplicate detection (used by the clean stage's ``exact_duplicate`` and
``near_duplicate`` rules).

``find_duplicates(df, text)`` returns one row per input row (same order)::

    row         UInt32   0-based index of the input row
    cluster     Int64    cluster id (= ``row`` of the cluster's kept row); null when unique
    keep        Boolean  True for unique rows and for exactly one row per cluster (its first row in
                         input order); False for the duplicates to drop
    similarity  Float64  Jaccard similarity to the kept row of the cluster (1.0 for exact
                         duplicates and for the kept row itself); null when unique
    dup_kind    String   'exact' | 'near' for dropped rows, null for kept and unique rows

**No chaining**: every row dropped as a near duplicate is at or above the threshold to the kept row
of its cluster (``similarity`` is that exact Jaccard), never only to some other member.

The similarity measure
----------------------
Jaccard similarity of the *shingle sets* of the normalized texts (``measure``):

* ``"char5"`` (default): overlapping 5-byte windows of the normalized UTF-8 text (character
  5-grams for Latin script; ``charN`` for N in 1..8). Keeps short instructions comparable and
  tolerates word swaps, typos and Malay affix variants;
* ``"word3"`` (``wordN``, N >= 1): overlapping N-grams of the normalized words (a text with fewer
  than N words is one shingle). Stricter about reordered words.

Algorithm (each step a public function, so a cluster can run the per-row steps in parallel)
------------------------------------------------------------------------------------------
1. **Normalize** (:func:`normalize`, polars expressions): case-fold (lowercase, ß -> ss, final
   sigma, ligatures), every run of characters that are not letters, digits or combining marks
   becomes one space, strip. Rows whose normalized text is empty (or null) are never clustered.
2. **Exact duplicates**: rows with the same normalized text (polars window ``min().over()`` on the
   string, so equality is exact) form a cluster; the first row is kept. The near-duplicate steps
   run on one representative per exact group.
3. **Sketch** (:func:`sketch`, per row): shingles (:func:`shingles`, 40-bit values: the bytes
   themselves for char N <= 5, a 64-bit hash cut to 40 bits otherwise), a **one-permutation
   MinHash** of ``num_perm`` (256) bins with optimal densification (Shrivastava 2017), its **LSH
   band keys** (``b`` bands of ``r`` bins, ``r`` the largest whose collision probability at the
   threshold, ``1 - (1 - t**r)**b``, is >= 0.995: at 0.8, 32 bands of 8) and 8 bits of each bin for
   a cheap similarity estimate.
4. **Buckets** (:func:`buckets`): rows sharing a band key.
5. **Star clustering in rounds** (:func:`star_clusters`): a row is a *center* (a kept row) when no
   earlier undecided row shares a bucket with it. Each center is verified against the undecided
   later rows of its buckets (:func:`round_pairs`): never all pairs of a big bucket, so 1,000
   near-identical template fills cost about 1,000 checks, not 500,000. A row verified >= threshold
   to a center joins it (the most similar center of the round; ties: the earliest), is decided and
   never becomes a center itself; the centers are decided too; the next round starts over on the
   rows left. The first row of a cluster in input order is always its kept row, and the result is
   the same on every run and machine. A row checked against 16 centers in vain (rows sharing
   buckets by chance, all below the threshold to one another) is left unclustered, which bounds
   the work at 16 checks per row.
6. **Verification** (:func:`verify`): a cheap prefilter first (pairs whose share of equal 8-bit
   bins is more than 4.5 standard errors below the threshold are rejected), then the exact Jaccard
   of the two shingle sets (numpy: each center's distinct shingles sorted once, each member's
   shingles sorted and looked up in them; batches of 250k shingles stay in cache).

Everything is deterministic for the same input and ``seed``: the hashing is numpy integer
arithmetic on the text's bytes (no dependence on polars' or Python's hash).

Compiled path (char measures, from 20k rows on, when numba is installed): steps 1-3 run as one
compiled pass per row (:mod:`curate.minhash_jit`; non-ASCII characters are lowercased, folded or
made separators by a table of what :func:`normalize` makes of each code point, built by polars
itself; the rare rows holding a character the table leaves out are normalized by polars before the
pass reads them again), which keeps no normalized copy of the texts: exact groups compare two independent 64-bit hashes of the normalized text and its length.
The buckets are found band by band in compiled code straight to CSR form
(:func:`curate.minhash_jit.band_buckets`, half of the bands on each thread) and the rounds of step
5 scan only the buckets still in play (:func:`_round_pairs`). The prefilter is
compiled with the same arithmetic; the exact check (:func:`curate.minhash_jit.jaccard_rows`)
normalizes the rows it reads again, builds each center's shingle set once and reads a member's
common prefix and suffix with its center without hashing them (a near copy hashes only the windows
around its edits); a pair is dropped early once its Jaccard can no longer reach the threshold, so
every similarity at or above it is exact. Past 1M rows (``_EST_MEMORY``, 256 MB) the estimator bytes
are kept for the candidates only (rows in a bucket; the same pass run on them again) instead of 256
bytes for every row. The sketches and similarities are bit for bit those of the numpy path
(``CURATE_NO_JIT=1`` forces it; tests/test_dedupe.py compares the two), so the clusters are the same.
"""

from __future__ import annotations

import functools
import math
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import polars as pl

from curate import row_text_jit
from curate.arrow_text import utf8_buffers

SHINGLE = 5              # default shingle width in bytes of normalized UTF-8 text ("char5")
DEFAULT_MEASURE = "char5"
DEFAULT_PERM = 256       # MinHash bins (one-permutation hashing)
_THREADS = max(1, min(2, os.cpu_count() or 1))  # sketch/verification threads
_EST_BINS = 256          # bins kept (8 bits each) to estimate the Jaccard of candidates
_NORM_ROWS = 131_072     # rows normalized per slice
_SPAN_ROWS = 16_384      # rows read from polars at a time
_CHUNK_ROWS = 1_024      # rows hashed per chunk (cache-sized temporaries)
_VERIFY_SHINGLES = 250_000  # shingles per verification batch (cache-sized: 4x faster than 4M)
_JIT_MIN_ROWS = 20_000   # from this many rows the compiled sketch (its import: ~0.7 s CPU) pays off
_EST_MEMORY = 256 << 20  # estimator bytes of every row above this (past 1M rows): only the candidates' are kept (computed again)
_MAX_CHECKS = 16         # a row that failed this many checks against centers is left unclustered
_SENT = np.uint32(0xFFFFFFFF)
_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)
_MASK40 = np.uint64((1 << 40) - 1)

RESULT_SCHEMA = pl.Schema({
    "row": pl.UInt32, "cluster": pl.Int64, "keep": pl.Boolean,
    "similarity": pl.Float64, "dup_kind": pl.String,
})


# --------------------------------------------------------------------------- normalization

# A run of characters that are not letters, digits or combining marks, unless it is already a
# single space (matching every word gap would cost three times as much for the same result).
_SEPARATORS = r"[^\p{L}\p{N}\p{M}]*[^\p{L}\p{N}\p{M} ][^\p{L}\p{N}\p{M}]*| {2,}"
# Case folding beyond lowercase for the letters where they differ (Python's str.casefold).
_FOLD = (["ß", "ẞ", "ς", "ﬁ", "ﬂ", "ﬀ", "ﬃ", "ﬄ", "ﬅ", "ﬆ"], ["ss", "ss", "σ", "fi", "fl", "ff", "ffi", "ffl", "st", "st"])


def normalize(text: pl.Expr | str) -> pl.Expr:
    """Normalized text for duplicate detection: case-folded (lowercase plus ß -> ss, final sigma,
    ligatures), every run of punctuation, symbols and whitespace -> one space, stripped. Null
    becomes the empty string."""
    expr = pl.col(text) if isinstance(text, str) else text
    return (
        expr.cast(pl.String).fill_null("")
        .str.to_lowercase()
        .str.replace_many(*_FOLD)
        .str.replace_all(_SEPARATORS, " ")
        .str.strip_chars(" ")
    )


# --------------------------------------------------------------------------- LSH parameters

def lsh_params(threshold: float, num_perm: int, target: float = 0.995) -> tuple[int, int]:
    """(bands, rows per band): the longest band whose collision probability at ``threshold`` is
    still >= ``target``."""
    best = (num_perm, 1)
    for r in range(1, num_perm + 1):
        b = num_perm // r
        if b < 1:
            break
        if 1.0 - (1.0 - threshold ** r) ** b >= target:
            best = (b, r)
        else:
            break
    return best


# --------------------------------------------------------------------------- shingles

def parse_measure(measure: str) -> tuple[str, int]:
    """``"char5"`` -> ``("char", 5)``; ``"word3"`` -> ``("word", 3)``. ValueError otherwise."""
    m = re.fullmatch(r"(char|word)(\d+)", measure or "")
    if not m or int(m.group(2)) < 1 or (m.group(1) == "char" and int(m.group(2)) > 8):
        raise ValueError(f"unknown similarity measure {measure!r}: use charN (N 1..8, e.g. char5) or wordN (e.g. word3)")
    return m.group(1), int(m.group(2))


def _buffers(texts: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(UTF-8 bytes of all texts back to back, padded with 8 zero bytes; int64 offsets)."""
    lens = texts.str.len_bytes().fill_null(0).to_numpy().astype(np.int64)
    offsets = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    joined = texts.fill_null("").str.join("").cast(pl.Binary).item() if len(texts) else b""
    data = np.zeros(len(joined) + 8, dtype=np.uint8)
    data[: len(joined)] = np.frombuffer(joined, dtype=np.uint8)
    return data, offsets


def _u64_at(data: np.ndarray, total: int) -> np.ndarray:
    """The little-endian uint64 starting at every byte position (``data`` padded with 8 bytes)."""
    return np.ndarray(shape=(total,), dtype="<u8", buffer=data, offset=0, strides=(1,))


def _salt(seed: int) -> int:
    return (seed * 0x632BE59BD9B4E019 + 0x2545F4914F6CDD1D) & 0xFFFFFFFFFFFFFFFF


def _mix(v: np.ndarray, seed: int) -> np.ndarray:
    """64-bit mixer (multiply / xor-shift, as in murmur3's finalizer)."""
    h = v ^ np.uint64(_salt(seed))
    h *= _M2
    h ^= h >> np.uint64(32)
    h *= _M3
    h ^= h >> np.uint64(29)
    return h


@dataclass
class Shingles:
    """Shingles of n texts: ``values[offsets[i]:offsets[i+1]]`` (40-bit, repeats kept) are text i's."""
    values: np.ndarray   # uint64
    offsets: np.ndarray  # int64, n + 1

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)


def shingles(texts: pl.Series, measure: str = DEFAULT_MEASURE) -> Shingles:
    """Shingles of normalized texts (see the module docstring). Every text has at least one."""
    unit, n = parse_measure(measure)
    if unit == "char":
        data, offsets = _buffers(texts.fill_null("").str.pad_end(n, " "))
        total = int(offsets[-1])
        v = _u64_at(data, total) & np.uint64((1 << (8 * n)) - 1)
        if n > 5:
            v = _mix(v, 77) & _MASK40
        counts = np.diff(offsets) - (n - 1)
        valid = np.ones(total, dtype=bool)
        if total and n > 1:
            valid[(offsets[1:, None] - np.arange(1, n, dtype=np.int64)).ravel()] = False
        out = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=out[1:])
        return Shingles(v[valid], out)
    return _word_shingles(texts, n)


def _word_shingles(texts: pl.Series, n: int) -> Shingles:
    data, offsets = _buffers(texts.fill_null(""))
    total = int(offsets[-1])
    m = len(offsets) - 1
    lens = np.diff(offsets)
    b = data[:total]
    space = b == 32
    row_start = np.zeros(total + 1, dtype=bool)
    row_start[offsets[:-1][lens > 0]] = True
    prev_space = np.ones(total, dtype=bool)
    prev_space[1:] = space[:-1]
    starts = np.flatnonzero(~space & (prev_space | row_start[:total]))
    nxt_space = np.ones(total, dtype=bool)
    nxt_space[:-1] = space[1:]
    row_end = np.zeros(total, dtype=bool)
    row_end[offsets[1:][lens > 0] - 1] = True
    ends = np.flatnonzero(~space & (nxt_space | row_end)) + 1
    wrow = np.searchsorted(offsets, starts, side="right") - 1
    # hash each word 8 bytes at a time (only the words still longer than what was read)
    u = _u64_at(data, total)
    wlen = ends - starts
    h = wlen.astype(np.uint64) * _M1
    active = np.arange(len(starts))
    k = 0
    while len(active):
        rest = wlen[active] - k
        chunk = u[starts[active] + k]
        short = rest < 8
        if short.any():
            chunk[short] &= (np.uint64(1) << (rest[short].astype(np.uint64) * np.uint64(8))) - np.uint64(1)
        h[active] = _mix(h[active] ^ chunk, k)
        k += 8
        active = active[rest > 8]
    # n-grams of consecutive words of the same row; a row with fewer than n words is one shingle
    nw = np.bincount(wrow, minlength=m).astype(np.int64)
    g = h.copy()
    for j in range(1, n):
        same = np.zeros(len(h), dtype=bool)
        same[:-j] = wrow[j:] == wrow[:-j]
        g[same] = _mix(g[same] * _M1 ^ h[j:][same[:-j]], j)
    first = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(nw, out=first[1:])
    pos = np.arange(len(h)) - first[wrow]           # position of the word in its row
    keep = (pos <= nw[wrow] - n) | ((nw[wrow] < n) & (pos == 0))
    vals = _mix(g[keep], 99) & _MASK40
    counts = np.where(nw >= n, nw - n + 1, np.minimum(nw, 1))
    empty = counts == 0                              # empty text: one shingle, the empty word
    if empty.any():
        krow = wrow[keep]
        vals = np.insert(vals, np.searchsorted(krow, np.flatnonzero(empty)), np.uint64(0))
        counts[empty] = 1
    out = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return Shingles(vals, out)


# --------------------------------------------------------------------------- signatures

def signatures(texts: pl.Series, num_perm: int = DEFAULT_PERM, seed: int = 0,
               measure: str = DEFAULT_MEASURE) -> np.ndarray:
    """One-permutation MinHash signatures (n, num_perm) uint32, densified, of normalized texts;
    the share of equal bins of two rows estimates the Jaccard of their shingle sets."""
    return _signatures_of(shingles(texts, measure), num_perm, seed)


def _signatures_of(sh: Shingles, num_perm: int, seed: int) -> np.ndarray:
    n = len(sh.offsets) - 1
    bits = int(math.log2(num_perm))
    sig = np.full(n * num_perm, _SENT, dtype=np.uint32)
    h = _mix(sh.values, seed)
    key = (h >> np.uint64(64 - bits)).astype(np.int64)
    key += np.repeat(np.arange(n, dtype=np.int64) << bits, sh.counts)
    val = h.astype(np.uint32)
    del h
    np.minimum(val, _SENT - np.uint32(1), out=val)
    np.minimum.at(sig, key, val)
    del key, val
    sig = sig.reshape(n, num_perm)
    # Densification (Shrivastava 2017, "optimal densification"): an empty bin j takes the value of
    # bin g(j, 1), g(j, 2), ... (a fixed pseudo-random probe sequence, the same for every row),
    # the first non-empty one. Two rows agree on a densified bin with probability = Jaccard, and
    # neighbouring empty bins are not copies of one another.
    flat = sig.ravel()
    holes = np.flatnonzero(flat == _SENT)
    if len(holes):
        col = holes & (num_perm - 1)
        base = holes - col
        fill = np.empty(len(holes), dtype=np.uint32)
        todo = np.arange(len(holes))
        attempt = 0
        while len(todo):
            vals = flat[base[todo] + _probe(num_perm, attempt, seed)[col[todo]]]
            ok = vals != _SENT
            fill[todo[ok]] = vals[ok]
            todo = todo[~ok]
            attempt += 1
        flat[holes] = fill
    return sig


def _jit():
    """The compiled sketch kernels (:mod:`curate.minhash_jit`), or None (numpy path) without numba
    or with ``CURATE_NO_JIT=1`` (the two paths give identical sketches)."""
    if os.environ.get("CURATE_NO_JIT"):
        return None
    from curate import minhash_jit
    return minhash_jit if minhash_jit.AVAILABLE else None


@functools.lru_cache(maxsize=1024)
def _probe(num_perm: int, attempt: int, seed: int) -> np.ndarray:
    """Bin probed by every bin at this attempt (the same for every row)."""
    bins = np.arange(num_perm, dtype=np.uint64)
    h = _mix(bins * np.uint64(0x100000001B3) + np.uint64(attempt + 1), seed + 1)
    return (h & np.uint64(num_perm - 1)).astype(np.int64)


def _band_init(bands: int, seed: int) -> np.ndarray:
    """Each LSH band's starting hash, before its bins are folded in: the same for the numpy path
    (:func:`band_keys`) and every compiled pass, so their band keys agree."""
    return np.array([(seed * 0x9E3779B97F4A7C15 + j * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
                     for j in range(bands)], dtype=np.uint64)


def band_keys(sig: np.ndarray, bands: int, r: int, seed: int = 0) -> np.ndarray:
    """(n, bands) uint32 key of each band; band j hashes bins j, j+b, j+2b, ... (no two neighbours)."""
    n = sig.shape[0]
    grid = sig[:, : bands * r].reshape(n, r, bands)  # grid[:, i, j] = bin i * bands + j
    h = np.empty((n, bands), dtype=np.uint64)
    h[:] = _band_init(bands, seed)
    for i in range(r):
        h ^= grid[:, i, :]
        h *= _M1
        h ^= h >> np.uint64(32)
    return (h >> np.uint64(32)).astype(np.uint32)


@dataclass
class Sketch:
    """Per-row sketch: LSH band keys (n, bands) and 8 bits of the first bins (n, est_bins)."""
    keys: np.ndarray | None
    est: np.ndarray | None
    lengths: np.ndarray   # shingles per row (duplicates counted), for the estimate's error
    est_at: np.ndarray | None = None  # when set, row i's estimator bytes are est[est_at[i]]


def sketch(texts: pl.Series, *, threshold: float = 0.8, num_perm: int = DEFAULT_PERM, seed: int = 0,
           measure: str = DEFAULT_MEASURE, on_rows: Callable[[int], None] | None = None) -> Sketch:
    """Band keys and estimator bytes of every normalized text (rows are independent: any slice of
    ``texts`` can be sketched anywhere and the results concatenated)."""
    if num_perm < 8 or num_perm & (num_perm - 1):
        raise ValueError(f"num_perm must be a power of two >= 8, got {num_perm}")
    parse_measure(measure)
    n = len(texts)
    bands, r = lsh_params(threshold, num_perm)
    keys = np.empty((n, bands), dtype=np.uint32)
    est_bins = min(num_perm, _EST_BINS)
    est = np.empty((n, est_bins), dtype=np.uint8)
    lengths = np.empty(n, dtype=np.int64)

    jit = _jit() if n >= _JIT_MIN_ROWS else None
    unit, width = parse_measure(measure)
    bits = int(math.log2(num_perm))
    band_init = _band_init(bands, seed)

    def span(s: int) -> None:  # numpy and the compiled kernels release the GIL: spans run in parallel
        part = texts.slice(s, _SPAN_ROWS)
        if jit is not None:  # one compiled pass per row (same results as the numpy path below)
            common = (np.uint64(_salt(seed)), bits, np.uint64(_salt(seed + 1)), band_init, bands, r, keys, est, lengths)
            if unit == "char":
                data, offsets = utf8_buffers(part.fill_null("").str.pad_end(width, " "))
                jit.sketch_chars(data, offsets, width, width > 5, np.uint64(_salt(77)), *common, s)
            else:
                for c in range(0, len(part), _CHUNK_ROWS):
                    sh = shingles(part.slice(c, _CHUNK_ROWS), measure)
                    jit.sketch_values(sh.values, sh.offsets, *common, s + c)
            if on_rows:
                on_rows(len(part))
            return
        for c in range(0, len(part), _CHUNK_ROWS):
            sh = shingles(part.slice(c, _CHUNK_ROWS), measure)
            d = s + c + len(sh.offsets) - 1
            sig = _signatures_of(sh, num_perm, seed)
            keys[s + c: d] = band_keys(sig, bands, r, seed)
            est[s + c: d] = sig[:, :est_bins].astype(np.uint8)
            lengths[s + c: d] = sh.counts
        if on_rows:
            on_rows(len(part))

    with ThreadPoolExecutor(_THREADS) as pool:
        list(pool.map(span, range(0, n, _SPAN_ROWS)))
    return Sketch(keys, est, lengths)


# --------------------------------------------------------------------------- buckets & rounds

def buckets(keys: np.ndarray) -> pl.DataFrame:
    """``g`` (UInt64 bucket: band << 32 | key), ``r`` (UInt32 row) for every band key shared by >= 2 rows."""
    n, nb = keys.shape
    rows = pl.Series("r", np.arange(n, dtype=np.uint32))
    out = []
    slots = 1 << max(10, min(22, (2 * n).bit_length()))
    shift = np.uint32(32 - slots.bit_length() + 1)
    for j in range(nb):
        key = np.ascontiguousarray(keys[:, j])
        slot = key >> shift  # cheap first pass: only keys whose top bits another row shares
        maybe = np.bincount(slot, minlength=slots)[slot] > 1
        bk = pl.DataFrame([rows.filter(maybe), pl.Series("k", key[maybe])])
        bk = bk.filter(pl.col("k").is_duplicated())
        if bk.height:
            out.append(bk.select((pl.col("k").cast(pl.UInt64) | pl.lit(j << 32, pl.UInt64)).alias("g"), "r"))
    if not out:
        return pl.DataFrame(schema={"g": pl.UInt64, "r": pl.UInt32})
    return pl.concat(out)


def exact_group_firsts(h1: np.ndarray, h2: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Each row's exact group as the index of its first row with the same exact key (two hashes and
    the length of the normalized text, as :func:`row_keys` gives them; every length > 0). Compiled
    from 20k rows on (:func:`curate.minhash_jit.exact_groups`, a hash table), else a polars window."""
    n = len(length)
    jit = _jit() if n >= _JIT_MIN_ROWS else None
    if jit is not None:
        return jit.exact_groups(np.column_stack([h1, h2]).astype(np.uint64, copy=False), length)
    df = pl.DataFrame({"h1": h1, "h2": h2, "n": length}).with_row_index("i")
    return df.select(pl.col("i").min().over("h1", "h2", "n"))["i"].to_numpy().astype(np.int64)


def shared_rows(keys: np.ndarray) -> np.ndarray:
    """The rows (ascending) that share an LSH band key with another row, from the band keys ``keys``
    (n, bands): the only rows that can be near duplicates of any other (the Ray executor finds its
    candidates so). Compiled from 20k rows on (:func:`_band_buckets`, both threads)."""
    return shared_buckets(keys)[0]


def shared_buckets(keys: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """:func:`shared_rows` and the buckets it found, renumbered to those rows, in CSR form
    (``bstart, mem``: bucket g's rows ``mem[bstart[g]:bstart[g+1]]``, ascending, as indices into
    the shared rows). They are the very buckets :func:`near_duplicates_of` would build from the
    shared rows' own keys (a bucket is a band key of >= 2 rows, all of them shared rows, and
    renumbering keeps each bucket's rows ascending), so it is given them (``csr``) instead."""
    n = len(keys)
    jit = _jit() if n >= _JIT_MIN_ROWS else None
    if jit is not None:
        bstart, mem = _band_buckets(jit, np.ascontiguousarray(keys))
    else:
        bk = buckets(keys).sort("g", "r")
        g = bk["g"].to_numpy()
        mem = bk["r"].to_numpy().astype(np.int32)
        bstart = np.flatnonzero(np.concatenate(([True], g[1:] != g[:-1], [True]))) if len(g) else np.zeros(1, np.int64)
    rows = _distinct(mem, n)
    rank = np.empty(n, dtype=np.int32)
    rank[rows] = np.arange(len(rows), dtype=np.int32)
    return rows, (bstart.astype(np.int64, copy=False), rank[mem])


def round_pairs(bk: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series]:
    """One round: (pairs ``a`` = center, ``b`` = later row sharing a bucket with it, unique, sorted;
    the centers). A center is a row that is the first row of every bucket it is in."""
    bk = bk.with_columns(pl.col("r").min().over("g").alias("m"))
    centers = (bk.group_by("r").agg((pl.col("m") == pl.col("r")).all().alias("c"))
               .filter(pl.col("c"))["r"])
    pairs = (bk.filter((pl.col("m") != pl.col("r")) & pl.col("m").is_in(centers.implode()))
             .select(pl.col("m").alias("a"), pl.col("r").alias("b")).unique().sort("a", "b"))
    return pairs, centers


def _band_buckets(jit, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`curate.minhash_jit.band_buckets` of ``keys`` on both threads (half of the bands each),
    joined: the buckets of :func:`buckets` in CSR form (bstart, mem)."""
    half = keys.shape[1] // 2
    if _THREADS < 2 or half == 0:
        return jit.band_buckets(keys)
    with ThreadPoolExecutor(2) as pool:
        (b1, m1), (b2, m2) = pool.map(jit.band_buckets, [keys[:, :half], keys[:, half:]])
    return np.concatenate([b1[:-1], b2 + len(m1)]), np.concatenate([m1, m2])


def _distinct(rows: np.ndarray, n: int) -> np.ndarray:
    """The distinct values of ``rows`` (row numbers below ``n``), ascending (np.unique, without its sort)."""
    seen = np.zeros(n, dtype=bool)
    seen[rows] = True
    return np.flatnonzero(seen)


def star_clusters(n: int, bk: pl.DataFrame, verify_fn: Callable[[pl.DataFrame], np.ndarray],
                  threshold: float, stats: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(kept: int64 per row, the center it joined or -1; sim: float64, its Jaccard to that center).

    ``verify_fn(pairs)`` returns the similarity of each pair (a, b) (or -1 for a pair rejected
    without the exact check). From 20k rows on the rounds run compiled (the same rounds on the
    buckets in CSR form, :func:`_round_pairs`), else with polars (:func:`round_pairs`)."""
    jit = _jit() if n >= _JIT_MIN_ROWS else None
    if jit is not None:
        return _star_clusters_compiled(jit, n, bk, verify_fn, threshold, stats)
    kept = np.full(n, -1, dtype=np.int64)
    sim = np.full(n, np.nan)
    checks = np.zeros(n, dtype=np.int32)
    rounds = checked = retired = 0
    while bk.height:
        pairs, centers = round_pairs(bk)
        rounds += 1
        checked += pairs.height
        decided = centers
        if pairs.height:
            j = verify_fn(pairs)
            ok = pairs.with_columns(pl.Series("j", j)).filter(pl.col("j") >= threshold)
            best = ok.sort(["b", "j", "a"], descending=[False, True, False]).unique("b", keep="first")
            b = best["b"].to_numpy()
            kept[b] = best["a"].to_numpy()
            sim[b] = best["j"].to_numpy()
            decided = pl.concat([centers, best["b"]])
            # Many rows that share LSH buckets by chance but are below the threshold to one another
            # would cost a check per pair: a row checked against _MAX_CHECKS centers in vain stays
            # unclustered (it is kept), so the work is at most _MAX_CHECKS checks per row.
            np.add.at(checks, pairs["b"].to_numpy(), 1)
            tired = np.flatnonzero((checks >= _MAX_CHECKS) & (kept < 0))
            if len(tired):
                checks[tired] = -(1 << 30)
                retired += len(tired)
                decided = pl.concat([decided, pl.Series("r", tired.astype(np.uint32))])
        bk = bk.filter(~pl.col("r").is_in(decided.implode()))
        bk = bk.filter(pl.len().over("g") > 1)
    if stats is not None:
        stats.update(rounds=rounds, checked_pairs=checked, retired=retired)
    return kept, sim


def _star_clusters_compiled(jit, n: int, bk: pl.DataFrame, verify_fn: Callable[[pl.DataFrame], np.ndarray],
                            threshold: float, stats: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`star_clusters` with each round's bucket scans compiled: the same centers, pairs and
    clusters as the polars rounds, without re-grouping the bucket table every round."""
    bk = bk.sort("r")  # each bucket's rows ascending
    csr = jit.bucket_csr(bk["g"].to_numpy(), bk["r"].to_numpy()) if bk.height else None
    return _rounds_compiled(jit, n, csr, verify_fn, threshold, stats)


def _rounds_compiled(jit, n: int, csr: tuple | None, verify_fn: Callable[[pl.DataFrame], np.ndarray],
                     threshold: float, stats: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """The rounds of :func:`star_clusters` on the buckets in CSR form (``bstart, mem`` as
    :func:`_round_pairs` reads them; None: no bucket). Each round scans only the
    buckets still in play."""
    kept = np.full(n, -1, dtype=np.int64)
    sim = np.full(n, np.nan)
    checks = np.zeros(n, dtype=np.int32)
    rounds = checked = retired = 0
    if csr is not None and len(csr[1]):
        bstart, mem = csr
        undecided = np.zeros(n, dtype=bool)
        undecided[mem] = True
        blocked = np.zeros(n, dtype=bool)
        last = np.full(n, -1, dtype=np.int64)
        act = np.arange(len(bstart) - 1, dtype=np.int64)
        nact = len(act)
        mask32 = np.uint64(0xFFFFFFFF)
        pool = ThreadPoolExecutor(_THREADS) if _THREADS > 1 else None
        while True:
            a, b, nact = _round_pairs(jit, pool, bstart, mem, undecided, blocked, last, act, nact)
            if not nact:
                break
            rounds += 1
            j = np.empty(0)
            if len(a):
                key = (a.astype(np.uint64) << np.uint64(32)) | b.astype(np.uint64)
                key.sort()
                keep = np.empty(len(key), dtype=bool)
                keep[0] = True
                np.not_equal(key[1:], key[:-1], out=keep[1:])
                key = key[keep]
                a, b = (key >> np.uint64(32)).astype(np.int64), (key & mask32).astype(np.int64)
                checked += len(a)
                j = np.asarray(verify_fn(pl.DataFrame({"a": a, "b": b}, schema={"a": pl.UInt32, "b": pl.UInt32})),
                               dtype=np.float64)
            retired += jit.round_finish(a, b, j, threshold, kept, sim, checks, _MAX_CHECKS, undecided)
        if pool is not None:
            pool.shutdown()
    if stats is not None:
        stats.update(rounds=rounds, checked_pairs=checked, retired=retired)
    return kept, sim


_HALF_BUCKETS = 8_192  # buckets in play from which a round's scans run on both threads


def _round_pairs(jit, pool: ThreadPoolExecutor | None, bstart, mem, undecided, blocked, last, act,
                 nact: int) -> tuple[np.ndarray, np.ndarray, int]:
    """One round's pairs and the new length of the list of buckets in play (0: no round left), by
    the compiled scans (:mod:`curate.minhash_jit`: round_mark, round_emit, round_clear), each on
    both threads (``pool``), half of the buckets each, from _HALF_BUCKETS buckets on. A pair both
    halves meet is listed twice (and the halves may race on ``last``, which only ever lists a pair
    again): the caller makes the pairs unique, as it does any repeat, so the rounds check the same
    pairs either way."""
    parts = [(0, nact // 2), (nact // 2, nact)] if pool is not None and nact >= _HALF_BUCKETS else [(0, nact)]
    run = pool.map if len(parts) > 1 else map
    marked = list(run(lambda r: jit.round_mark(bstart, mem, undecided, blocked, act, *r), parts))
    kept, at = [], 0  # the buckets that stay, part after part, to the front of act
    for (lo, _), (end, _) in zip(parts, marked):
        if at != lo:
            act[at:at + end - lo] = act[lo:end]
        kept.append((at, at + end - lo))
        at += end - lo
    out = [(np.empty(most, dtype=np.int64), np.empty(most, dtype=np.int64)) for _, most in marked]
    got = list(run(lambda i: jit.round_emit(bstart, mem, undecided, blocked, last, act, *kept[i], *out[i]),
                   range(len(parts))))
    list(run(lambda i: jit.round_clear(bstart, mem, blocked, act, *kept[i]), range(len(parts))))
    if len(parts) == 1:
        return out[0][0][:got[0]], out[0][1][:got[0]], at
    return (np.concatenate([a[:p] for (a, _), p in zip(out, got)]),
            np.concatenate([b[:p] for (_, b), p in zip(out, got)]), at)


# --------------------------------------------------------------------------- verification

def prefilter(pairs: pl.DataFrame, sk: Sketch, threshold: float) -> np.ndarray:
    """True for pairs whose estimated Jaccard (share of equal 8-bit bins; a chance collision is 1/256)
    is not more than 4.5 standard errors below the threshold; the error is that of
    min(est_bins, shingles of the shorter text) independent bins."""
    a, b = pairs["a"].to_numpy(), pairs["b"].to_numpy()
    ea, eb = (a, b) if sk.est_at is None else (sk.est_at[a], sk.est_at[b])
    keep = np.zeros(len(a), dtype=bool)
    jit = _jit() if len(sk.lengths) >= _JIT_MIN_ROWS else None
    if jit is not None:  # in halves on both threads (the kernel releases the GIL)
        ea, eb, a, b = (x.astype(np.int64) for x in (ea, eb, a, b))
        cut = [0, len(a) // 2 if _THREADS > 1 and len(a) >= 4_096 else len(a), len(a)]

        def part(h: int) -> None:
            lo, hi = cut[h], cut[h + 1]
            jit.prefilter(sk.est, ea[lo:hi], eb[lo:hi], sk.lengths, a[lo:hi], b[lo:hi], float(threshold), keep[lo:hi])

        with ThreadPoolExecutor(_THREADS) as pool:
            list(pool.map(part, range(2)))
        return keep
    est_bins = sk.est.shape[1]
    step = 65_536
    for s in range(0, len(a), step):
        aa, bb = a[s:s + step], b[s:s + step]
        est = (sk.est[ea[s:s + step]] == sk.est[eb[s:s + step]]).mean(axis=1)
        k_eff = np.minimum(est_bins, np.maximum(1, np.minimum(sk.lengths[aa], sk.lengths[bb])))
        margin = 4.5 * np.sqrt(threshold * (1 - threshold) / k_eff) + 0.02
        keep[s:s + step] = est >= threshold - margin
    return keep


def _spans(cost: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) batches of pairs whose running shingle cost ``cost`` (a cumsum) stays within
    _VERIFY_SHINGLES per batch (at least one pair each)."""
    spans, start = [], 0
    while start < len(cost):
        stop = int(np.searchsorted(cost, (cost[start - 1] if start else 0) + _VERIFY_SHINGLES, "right"))
        stop = max(stop, start + 1)
        spans.append((start, stop))
        start = stop
    return spans


def verify(pairs: pl.DataFrame, texts: pl.Series, measure: str = DEFAULT_MEASURE,
           compiled: bool | None = None) -> np.ndarray:
    """Exact Jaccard of the shingle sets of pairs (a, b) of indices into normalized ``texts``
    (``compiled``: the numba kernel for char measures; default: from 20k texts on)."""
    if pairs.height == 0:
        return np.empty(0, dtype=np.float64)
    a_all, b_all = pairs["a"].to_numpy(), pairs["b"].to_numpy()
    lens = texts.str.len_bytes().fill_null(0).to_numpy().astype(np.int64) + 1
    spans = _spans(np.cumsum(lens[a_all] + lens[b_all]))
    out = np.empty(len(a_all), dtype=np.float64)

    unit, width = parse_measure(measure)
    if compiled is None:
        compiled = len(texts) >= _JIT_MIN_ROWS
    jit = _jit() if unit == "char" and compiled else None

    def batch(span: tuple[int, int]) -> None:
        lo, hi = span
        if jit is None:
            out[lo:hi] = _verify_batch(a_all[lo:hi], b_all[lo:hi], texts, measure)
            return
        # compiled: the rows of the span's pairs, each pair's sets built from the bytes and merged
        a, b = a_all[lo:hi], b_all[lo:hi]
        rows = np.unique(np.concatenate([a, b]))
        data, offsets = utf8_buffers(texts.gather(rows).fill_null(""))
        jit.jaccard_rows(data, offsets, _WORD_BYTES, *_NO_TABLE, _NO_ROWS, width, width > 5, np.uint64(_salt(77)),
                         np.searchsorted(rows, a), np.searchsorted(rows, b), 0.0, out[lo:hi])

    with ThreadPoolExecutor(_THREADS) as pool:
        list(pool.map(batch, spans))
    return out


def _verify_batch(a: np.ndarray, b: np.ndarray, texts: pl.Series, measure: str) -> np.ndarray:
    """Jaccard of pairs (a, b). The distinct shingles of each ``a`` row (a round's centers, few) are
    sorted once, tagged with the row; the shingles of every pair's ``b`` row are sorted tagged with
    the pair (its distinct ones counted) and looked up in the centers' sorted array."""
    centers, ca = np.unique(a, return_inverse=True)
    sc = shingles(texts.gather(centers), measure)
    kc = np.repeat(np.arange(len(centers), dtype=np.uint64) << np.uint64(40), sc.counts) | sc.values
    kc.sort()
    first = np.ones(len(kc), dtype=bool)
    first[1:] = kc[1:] != kc[:-1]
    kc = kc[first]
    size_a = np.bincount((kc >> np.uint64(40)).astype(np.int64), minlength=len(centers))[ca]
    sm = shingles(texts.gather(b), measure)
    p = len(b)
    pair = np.repeat(np.arange(p, dtype=np.uint64), sm.counts)
    km = (pair << np.uint64(40)) | sm.values
    km.sort()
    first = np.ones(len(km), dtype=bool)
    first[1:] = km[1:] != km[:-1]
    km = km[first]
    pm = (km >> np.uint64(40)).astype(np.int64)
    size_b = np.bincount(pm, minlength=p)
    q = (ca[pm].astype(np.uint64) << np.uint64(40)) | (km & _MASK40)
    at = np.searchsorted(kc, q)
    np.minimum(at, len(kc) - 1, out=at)
    inter = np.bincount(pm, weights=kc[at] == q, minlength=p)
    return inter / (size_a + size_b - inter)


# --------------------------------------------------------------------------- public API

def near_clusters(texts: pl.Series, *, threshold: float = 0.8, num_perm: int = DEFAULT_PERM, seed: int = 0,
                  measure: str = DEFAULT_MEASURE, stats: dict | None = None,
                  on_rows: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Near-duplicate star clusters of distinct normalized ``texts``: (kept row per row or -1,
    similarity to it). Sketch -> buckets -> rounds of verification against the centers."""
    n = len(texts)
    if n < 2:
        return np.full(n, -1, dtype=np.int64), np.full(n, np.nan)
    clock = [time.perf_counter()]

    def lap(name: str) -> None:
        clock.append(time.perf_counter())
        if stats is not None:
            stats[f"s_{name}"] = round(clock[-1] - clock[-2], 3)

    sk = sketch(texts, threshold=threshold, num_perm=num_perm, seed=seed, measure=measure, on_rows=on_rows)
    lap("sketch")
    return _near_clusters_of(sk, n, lambda rows: texts.gather(rows), threshold=threshold, measure=measure,
                             stats=stats)


def _near_clusters_of(sk: Sketch, n: int, texts_of: Callable[[np.ndarray], pl.Series], *, threshold: float,
                      measure: str, stats: dict | None,
                      est_of: Callable[[np.ndarray], np.ndarray] | None = None,
                      jaccard_of: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
                      csr: tuple[np.ndarray, np.ndarray] | None = None,
                      ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`near_clusters` from the sketches: buckets, then rounds; ``texts_of(rows)`` gives the
    normalized texts of those rows (sorted, distinct) for the exact check. Without ``sk.est``,
    ``est_of(rows)`` gives the estimator bytes of those rows (the candidates: rows in a bucket).
    ``csr``: the buckets of ``sk.keys`` found before (:func:`shared_buckets`)."""
    clock = [time.perf_counter()]

    def lap(name: str) -> None:
        clock.append(time.perf_counter())
        if stats is not None:
            stats[f"s_{name}"] = round(clock[-1] - clock[-2], 3)

    jit = _jit() if n >= _JIT_MIN_ROWS else None
    if jit is not None:  # compiled: the buckets in CSR form, for the compiled rounds
        csr = csr if csr is not None else _band_buckets(jit, sk.keys)
        bucket_rows = len(csr[1])
    elif csr is not None:  # a bucket's key only groups its rows: its number does as well
        bstart, mem = csr
        bk = pl.DataFrame({"g": np.repeat(np.arange(len(bstart) - 1, dtype=np.uint64), np.diff(bstart)),
                           "r": mem.astype(np.uint32)})
        bucket_rows = bk.height
    else:
        bk = buckets(sk.keys)
        bucket_rows = bk.height
    sk.keys = None
    if sk.est is None:  # the estimator bytes of the candidates only (the rows sharing a bucket)
        cand = _distinct(csr[1], n) if jit is not None else _distinct(bk["r"].to_numpy(), n)
        sk.est = est_of(cand) if len(cand) else np.zeros((0, _EST_BINS), dtype=np.uint8)
        sk.est_at = np.zeros(n, dtype=np.int64)
        sk.est_at[cand] = np.arange(len(cand))
        if stats is not None:
            stats["candidates"] = len(cand)
    lap("buckets")
    verified = [0]

    def verify_fn(pairs: pl.DataFrame) -> np.ndarray:
        j = np.full(pairs.height, -1.0)
        ok = prefilter(pairs, sk, threshold)
        verified[0] += int(ok.sum())
        if ok.any():
            sub = pairs.filter(pl.Series(ok))
            a, b = sub["a"].to_numpy(), sub["b"].to_numpy()
            rows = _distinct(np.concatenate([a, b]), n)
            if jaccard_of is not None:
                j[ok] = jaccard_of(rows, np.searchsorted(rows, a), np.searchsorted(rows, b))
                return j
            local = pl.DataFrame({"a": np.searchsorted(rows, a), "b": np.searchsorted(rows, b)},
                                 schema={"a": pl.UInt32, "b": pl.UInt32})
            j[ok] = verify(local, texts_of(rows), measure, compiled=n >= _JIT_MIN_ROWS)
        return j

    if jit is not None:
        kept, sim = _rounds_compiled(jit, n, csr, verify_fn, threshold, stats)
    else:
        kept, sim = star_clusters(n, bk, verify_fn, threshold, stats)
    lap("cluster")
    if stats is not None:
        stats.update(bucket_rows=bucket_rows, verified=verified[0], near=int((kept >= 0).sum()))
    return kept, sim


def find_duplicates(df: pl.DataFrame, text: pl.Expr | str, *, threshold: float = 0.8, near: bool = True,
                    num_perm: int = DEFAULT_PERM, seed: int = 0, measure: str = DEFAULT_MEASURE,
                    stats: dict | None = None, on_rows: Callable[[int], None] | None = None) -> pl.DataFrame:
    """Exact and near-duplicate clusters of ``df`` by ``text`` (see the module docstring).

    ``text``: a column name or a row-wise expression (e.g. ``pl.concat_str([...])``).
    ``threshold``: Jaccard of the shingle sets (``measure``: ``char5`` default, ``charN``,
    ``wordN``) at or above which a row is a near duplicate of its cluster's kept row.
    ``near=False``: exact duplicates only. ``num_perm``: MinHash bins (a power of two). ``seed``
    changes the hash functions (results may differ only for pairs close to the threshold).
    ``stats`` (if given) receives seconds per step (``s_exact`` for normalization and exact groups,
    ``s_sketch``, ``s_buckets``, ``s_cluster`` for the near pass) and counts. ``on_rows(k)`` is
    called as rows are normalized and sketched (progress; 2 x rows in all with ``near``).

    Returns one row per input row, in input order: ``row``, ``cluster`` (= ``row`` of the kept row,
    null when unique), ``keep``, ``similarity``, ``dup_kind``."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    unit, width = parse_measure(measure)
    t0 = time.perf_counter()
    jit = _jit() if unit == "char" and df.height >= _JIT_MIN_ROWS else None
    if jit is not None:
        return _find_duplicates_compiled(df, text, jit, threshold=threshold, near=near, num_perm=num_perm,
                                         seed=seed, width=width, stats=stats, on_rows=on_rows)
    # Normalized in slices so the intermediate copies (joined fields, lowercase...) of only one slice
    # are alive at a time; ``text`` must be a row-wise expression.
    parts = []
    for s in range(0, max(df.height, 1), _NORM_ROWS):
        parts.append(df.slice(s, _NORM_ROWS).lazy().select(normalize(text).alias("norm")).collect())
        if on_rows:
            on_rows(parts[-1].height)
    norm = pl.concat(parts)
    del parts
    base = norm.with_row_index("row").with_columns(
        pl.when(pl.col("norm") != "").then(pl.col("row").min().over("norm")).alias("rep"),
    )
    del norm
    n = base.height
    reps = base.filter(pl.col("rep") == pl.col("row")).select("row", "norm")
    if stats is not None:
        stats["s_exact"] = round(time.perf_counter() - t0, 3)

    # near duplicates between exact-group representatives
    rep = base["rep"].cast(pl.Int64).fill_null(-1).to_numpy()
    rep_rows = reps["row"].to_numpy().astype(np.int64)
    kept = sim = None
    if near and reps.height > 1:
        kept, sim = near_clusters(reps["norm"], threshold=threshold, num_perm=num_perm, seed=seed,
                                  measure=measure, stats=stats, on_rows=on_rows)
        if on_rows:
            on_rows(n - reps.height)  # rows not sketched (exact copies, empty texts)
    elif near and on_rows:
        on_rows(n)
    return _result(rep, rep_rows, kept, sim, stats)


# The normalized form of each byte of an ASCII (or already normalized) text: ASCII letters lowered,
# digits and every byte of a non-ASCII character kept, 0 for the rest (separators).
_WORD_BYTES = np.array([c + 32 if 65 <= c <= 90 else c if (c >= 128 or 48 <= c <= 57 or 97 <= c <= 122) else 0
                        for c in range(256)], dtype=np.uint8)

_WIDE_CODES = 0x20000  # code points the compiled pass normalizes itself (the BMP and plane 1); rows with others: polars


# No table: the compiled passes read every row as ASCII or already normalized (_NO_ROWS: no flags).
_NO_TABLE = (np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.uint8), np.zeros(1, dtype=np.int64))
_NO_ROWS = np.zeros(0, dtype=bool)


@functools.cache
def _wide_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What :func:`normalize` makes of each non-ASCII code point below ``_WIDE_CODES``, for the
    compiled pass (:func:`curate.minhash_jit.normalize_sketch`), computed by :func:`normalize`'s
    own polars steps on every code point, so polars' Unicode tables decide, not ours: (``table``
    int32 per code point: 0 a separator, 1 a word character kept as it is, ``k >= 2`` a word
    character that becomes ``rdata[roff[k - 2]:roff[k - 1]]``, -1 one the pass leaves to polars;
    ``rdata``, ``roff``).

    :func:`normalize` is per character but for the final sigma, which lowercasing writes as ``ς``
    or ``σ`` by context and case folding makes ``σ`` in both: a character's folded lowercase is
    taken alone and beside letters (before, after, both), and any that differed (none does) or
    whose result mixes word and separator characters, or grows more than twice in bytes, is -1.
    A text of such characters is the polars runs of separators made one space and stripped, which
    the pass does byte by byte."""
    codes = np.r_[np.arange(0x80, 0xD800), np.arange(0xE000, _WIDE_CODES)]

    def fold(e: pl.Expr) -> pl.Expr:  # normalize()'s steps before the separators
        return e.str.to_lowercase().str.replace_many(*_FOLD)

    c, f = pl.col("c"), pl.col("f")
    df = pl.DataFrame({"c": [chr(x) for x in codes]}).with_columns(f=fold(c)).select(
        f,
        same_ctx=(f == fold("a" + c + "a").str.slice(1).str.head(-1)) & (f == fold("A" + c).str.slice(1))
        & (f == fold(c + "A").str.head(-1)) & (f.str.len_bytes() <= 2 * c.str.len_bytes()),
        word=f.str.contains(r"^[\p{L}\p{N}\p{M}]+$"),
        sep=f.str.contains(r"^[^\p{L}\p{N}\p{M}]+$"),
        kept=f == c,
    )
    same, word, sep, kept = (df[k].to_numpy() for k in ("same_ctx", "word", "sep", "kept"))
    mapped = same & word & ~kept
    entry = np.full(len(codes), -1, dtype=np.int32)
    entry[same & sep] = 0
    entry[same & word & kept] = 1
    entry[mapped] = 2 + np.arange(int(mapped.sum()), dtype=np.int32)
    rdata, roff = utf8_buffers(df["f"].filter(pl.Series(mapped)))
    table = np.full(_WIDE_CODES, -1, dtype=np.int32)
    table[codes] = entry
    return table, rdata.copy(), roff - roff[0]


def _joined_columns(df: pl.DataFrame, text: pl.Expr) -> list[str] | None:
    """The String columns of ``df`` whose values that are not null ``text`` joins by a newline (the
    clean engine's row text, ``pl.concat_str(columns, separator="\\n", ignore_nulls=True)``; or one
    column), so the compiled pass reads them in place (:func:`curate.row_text_jit.join_cut`, the
    same bytes) instead of polars building the joined column and Arrow copying it again; None for
    any other expression (polars builds it)."""
    columns = text.meta.root_names()
    if not row_text_jit.AVAILABLE or not columns or any(df.schema.get(c) != pl.String for c in columns):
        return None
    joined = pl.concat_str([pl.col(c) for c in columns], separator="\n", ignore_nulls=True)
    forms = [joined] + ([pl.col(columns[0])] if len(columns) == 1 else [])
    return columns if any(text.meta.eq(f) or text.meta.eq(f.fill_null("")) for f in forms) else None


def _find_duplicates_compiled(df: pl.DataFrame, text: pl.Expr | str, jit, *, threshold: float, near: bool,
                              num_perm: int, seed: int, width: int, stats: dict | None,
                              on_rows: Callable[[int], None] | None) -> pl.DataFrame:
    """:func:`find_duplicates` for char measures on big inputs, the same result with one compiled pass
    per row (:func:`curate.minhash_jit.normalize_sketch`): the normalized text is never kept (the
    exact groups compare two 64-bit hashes of it, 128 bits, and verification normalizes the few rows
    it reads again); only the rows holding a character :func:`_wide_table` leaves out go through
    :func:`normalize` first."""
    if num_perm < 8 or num_perm & (num_perm - 1):
        raise ValueError(f"num_perm must be a power of two >= 8, got {num_perm}")
    t0 = time.perf_counter()
    n = df.height
    bands, r = lsh_params(threshold, num_perm)
    bits = int(math.log2(num_perm))
    m = n if near else 0  # exact duplicates only: no sketches
    keys = np.empty((m, bands), dtype=np.uint32)
    # the estimator bytes (256 per row: 256 MB at 1M rows): from _EST_MEMORY on, computed later for
    # the candidates only (the rows sharing a bucket), by the same pass on those rows again
    est_bins = min(num_perm, _EST_BINS)
    later = m * est_bins > _EST_MEMORY
    est = np.empty((0 if later else m, est_bins), dtype=np.uint8)
    no_est = np.empty((m, 0), dtype=np.uint8) if later else est
    lengths = np.empty(m, dtype=np.int64)
    hashes = np.empty((n, 2), dtype=np.uint64)
    norm_len = np.empty(n, dtype=np.int64)
    expr = (pl.col(text) if isinstance(text, str) else text).cast(pl.String).fill_null("")
    source = df.select(expr.meta.root_names() or df.columns)  # rows gathered later: only the columns read
    columns = _joined_columns(source, pl.col(text) if isinstance(text, str) else text)

    def texts_of_part(part: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, Callable[[np.ndarray], pl.Series]]:
        """(UTF-8 bytes, offsets) of the raw texts of the rows of ``part`` (the joined ``columns``
        read in place when the text is their join), and the texts of some of them as a Series."""
        def at(rows: np.ndarray) -> pl.Series:
            return part[rows].select(expr.alias("t"))["t"]

        if columns is None:
            return *utf8_buffers(part.select(expr.alias("t"))["t"]), at
        return *row_text_jit.join_cut([part.get_column(c) for c in columns], "\n"), at

    def sketch_span(part: pl.DataFrame, out: tuple, start: int, with_sketch: bool) -> int:
        """normalize_sketch of the rows of ``part`` into ``out`` (keys, est, lengths, hashes,
        norm_len) from row ``start`` on."""
        return _normalize_sketch(jit, *texts_of_part(part), out, start, with_sketch,
                                 width=width, seed=seed, bits=bits, bands=bands, r=r)

    def span(s: int) -> None:
        done = sketch_span(df.slice(s, _SPAN_ROWS), (keys, no_est, lengths, hashes, norm_len), s, near)
        if on_rows:
            on_rows(2 * done if near else done)

    with ThreadPoolExecutor(_THREADS) as pool:
        list(pool.map(span, range(0, n, _SPAN_ROWS)))
    t1 = time.perf_counter()
    rep = jit.exact_groups(hashes, norm_len)  # the first row of each exact group (-1: no text)
    rep_rows = np.flatnonzero(rep == np.arange(n))
    del hashes, norm_len
    if stats is not None:
        stats["s_exact"] = round(time.perf_counter() - t1, 3)
        stats["s_sketch"] = round(t1 - t0, 3)
    kept = sim = None
    if near and len(rep_rows) > 1:
        k = len(rep_rows)  # the representatives' keys moved to the front in place (no copy):
        for s in range(0, k, 65_536):  # rep_rows is increasing, so no row is overwritten before it is read
            idx = rep_rows[s:s + 65_536]
            keys[s:s + len(idx)], lengths[s:s + len(idx)] = keys[idx], lengths[idx]
        # the estimator bytes stay where the pass wrote them (moving them was ~0.1 s at 1M rows, on
        # one core): representative i's are est[rep_rows[i]]
        sk = Sketch(keys[:k], None if later else est, lengths[:k], None if later else rep_rows)
        del keys, lengths, est
        measure = f"char{width}"

        def texts_of(rows: np.ndarray) -> pl.Series:  # normalized texts of representatives
            return source[rep_rows[rows]].select(normalize(expr).alias("t"))["t"]

        def est_of(rows: np.ndarray) -> np.ndarray:  # the same pass again, on these representatives
            c = len(rows)
            est = np.empty((c, est_bins), dtype=np.uint8)
            out = (np.empty((c, bands), dtype=np.uint32), est, np.empty(c, dtype=np.int64),
                   np.empty((c, 2), dtype=np.uint64), np.empty(c, dtype=np.int64))

            def part(s: int) -> None:
                sketch_span(source[rep_rows[rows[s:s + _SPAN_ROWS]]], out, s, True)

            with ThreadPoolExecutor(_THREADS) as pool:
                list(pool.map(part, range(0, c, _SPAN_ROWS)))
            return est

        def jaccard_of(rows: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return _jaccard_rows(jit, *texts_of_part(source[rep_rows[rows]]), a, b, width, threshold)

        kept, sim = _near_clusters_of(sk, len(rep_rows), texts_of, threshold=threshold, measure=measure,
                                      stats=stats, est_of=est_of, jaccard_of=jaccard_of)
    return _result(rep, rep_rows, kept, sim, stats)


def _jaccard_rows(jit, data: np.ndarray, offsets: np.ndarray, texts_at: Callable[[np.ndarray], pl.Series],
                  a: np.ndarray, b: np.ndarray, width: int, threshold: float) -> np.ndarray:
    """Exact Jaccard (char ``width`` shingles) of pairs (a, b) of raw row texts (a sorted), given as
    UTF-8 bytes and offsets (``texts_at(rows)``: those rows' texts as a Series): the texts
    normalized by the compiled pass (polars first for the rows holding a character
    :func:`_wide_table` leaves out), then checked in
    spans of about _VERIFY_SHINGLES bytes on both threads; a pair is left early once it can no
    longer reach ``threshold`` (every similarity at or above it is exact)."""
    table = _wide_table()
    plain = jit.outside_table(data, offsets, table[0])
    if plain.any():  # rows holding a character the table leaves out: Unicode case folding and separators first
        at = np.flatnonzero(plain)
        t = texts_at(np.arange(len(offsets) - 1))
        t = t.scatter(at, t.gather(at).to_frame("t").select(normalize("t"))["t"])
        data, offsets = utf8_buffers(t)
    spans = _spans(np.cumsum(np.diff(offsets)[a] + np.diff(offsets)[b] + 2))
    out = np.empty(len(a), dtype=np.float64)

    def batch(span: tuple[int, int]) -> None:
        lo, hi = span
        jit.jaccard_rows(data, offsets, _WORD_BYTES, *table, plain, width, width > 5, np.uint64(_salt(77)),
                         a[lo:hi], b[lo:hi], threshold, out[lo:hi])

    with ThreadPoolExecutor(_THREADS) as pool:
        list(pool.map(batch, spans))
    return out


def _normalize_sketch(jit, data: np.ndarray, offsets: np.ndarray, texts_at: Callable[[np.ndarray], pl.Series],
                      out: tuple, start: int, with_sketch: bool, *, width: int, seed: int, bits: int, bands: int,
                      r: int) -> int:
    """The compiled normalize + sketch pass over raw row texts (not null) given as UTF-8 bytes and
    offsets (``texts_at(rows)``: those rows' texts as a Series) into ``out`` (keys, est, lengths,
    hashes, norm_len) from row ``start`` on: the pass normalizes non-ASCII rows itself by
    :func:`_wide_table` and skips the few holding a character the table leaves out, which go
    through :func:`normalize` (Unicode case folding and separators) and the pass again."""
    n = len(offsets) - 1
    wide = np.zeros(n, dtype=bool)
    args = (width, width > 5, np.uint64(_salt(77)), np.uint64(_salt(seed)), bits,
            np.uint64(_salt(seed + 1)), _band_init(bands, seed), bands, r, *out, with_sketch)
    jit.normalize_sketch(data, offsets, np.arange(start, start + n, dtype=np.int64), wide, _WORD_BYTES,
                         *_wide_table(), *args)
    if wide.any():
        at = np.flatnonzero(wide)
        data, offsets = utf8_buffers(texts_at(at).to_frame("t").select(normalize("t"))["t"])
        jit.normalize_sketch(data, offsets, at + start, _NO_ROWS, _WORD_BYTES, *_NO_TABLE, *args)
    return n


@dataclass
class RowKeys:
    """Per row: ``hashes`` (n, 2) uint64 and ``norm_len`` (n,) of the normalized text (rows with the
    same three are exact duplicates; ``norm_len`` 0: no text, never a duplicate), and the LSH band
    keys ``keys`` (n, bands) uint32 (None without ``near``); with ``est``, the rest of each row's
    sketch: its estimator bytes ``est`` (n, 256) uint8 and shingle count ``lengths`` (n,)."""
    hashes: np.ndarray
    norm_len: np.ndarray
    keys: np.ndarray | None
    est: np.ndarray | None = None
    lengths: np.ndarray | None = None


def row_keys(texts: pl.Series, *, threshold: float = 0.8, near: bool = True, num_perm: int = DEFAULT_PERM,
             seed: int = 0, measure: str = DEFAULT_MEASURE, est: bool = False) -> RowKeys:
    """The duplicate keys of raw row ``texts`` (any slice of a column can be keyed anywhere: a Ray
    block at a time), from one normalization of each row: for char measures the compiled pass of
    :func:`find_duplicates` (the same exact groups and band keys as its own on the whole column),
    else :func:`normalize`, a hash of the normalized text and :func:`sketch`. ``est`` (with
    ``near``): also the estimator bytes and shingle counts, from the same pass (for
    :func:`near_duplicates_of`, which then never sketches these rows again)."""
    unit, width = parse_measure(measure)
    n = len(texts)
    bands, r = lsh_params(threshold, num_perm)
    texts = texts.cast(pl.String).fill_null("")
    jit = _jit() if unit == "char" else None
    est = est and near
    if jit is None:
        norm = pl.DataFrame({"t": texts}).select(normalize("t"))["t"]
        hashes = np.stack([norm.hash(seed=1).to_numpy(), norm.hash(seed=2).to_numpy()], axis=1)
        sk = sketch(norm, threshold=threshold, num_perm=num_perm, seed=seed, measure=measure) if near else None
        return RowKeys(hashes, norm.str.len_bytes().to_numpy().astype(np.int64), sk and sk.keys,
                       sk.est if est else None, sk.lengths if est else None)
    m = n if near else 0
    out = (np.empty((m, bands), dtype=np.uint32), np.empty((m, min(num_perm, _EST_BINS) if est else 0), dtype=np.uint8),
           np.empty(m, dtype=np.int64), np.empty((n, 2), dtype=np.uint64), np.empty(n, dtype=np.int64))
    _normalize_sketch(jit, *utf8_buffers(texts), texts.gather, out, 0, near, width=width, seed=seed,
                      bits=int(math.log2(num_perm)), bands=bands, r=r)
    return RowKeys(out[3], out[4], out[0] if near else None, out[1] if est else None, out[2] if est else None)


def near_duplicates_of(texts: pl.Series | Callable[[], pl.Series], sk: Sketch, *, threshold: float = 0.8,
                       measure: str = DEFAULT_MEASURE,
                       csr: tuple[np.ndarray, np.ndarray] | None = None) -> pl.DataFrame:
    """:func:`find_duplicates` (with ``near``) of rows no two of which have the same normalized
    text, from their sketches computed before, anywhere (``sk``: :func:`row_keys` with ``est`` of
    the same rows, in the same order): the same clusters and similarities, without sketching the
    rows again. ``texts``: the raw row texts (read again by the exact check), or a function that
    gives them, called once, when the first candidate pair is verified (the buckets and estimates
    come before: the Ray driver reads the texts back meanwhile). ``csr``: the buckets of these rows,
    found before (:func:`shared_buckets`): ``sk.keys`` is then not read (it may be None)."""
    n = len(sk.lengths)
    unit, width = parse_measure(measure)
    @functools.cache
    def text() -> pl.Series:
        t = texts() if callable(texts) else texts
        if len(t) != n:
            raise ValueError(f"near_duplicates_of: {len(t)} texts for {n} sketches")
        return t.cast(pl.String).fill_null("")

    kept = sim = None
    if n > 1:
        jit = _jit() if unit == "char" and n >= _JIT_MIN_ROWS else None
        if jit is not None:  # as _find_duplicates_compiled checks its pairs
            def jaccard_of(rows: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
                t = text().gather(rows)
                return _jaccard_rows(jit, *utf8_buffers(t), t.gather, a, b, width, threshold)

            kept, sim = _near_clusters_of(sk, n, None, threshold=threshold, measure=measure, stats=None, csr=csr,
                                          jaccard_of=jaccard_of)
        else:  # as near_clusters checks them
            kept, sim = _near_clusters_of(sk, n, lambda rows: text().gather(rows).to_frame("t").select(normalize("t"))["t"],
                                          threshold=threshold, measure=measure, stats=None, csr=csr)
    rows = np.arange(n, dtype=np.int64)
    return _result(rows, rows, kept, sim, None)


def _result(rep: np.ndarray, rep_rows: np.ndarray, kept: np.ndarray | None, sim: np.ndarray | None,
            stats: dict | None) -> pl.DataFrame:
    """The result frame from ``rep`` (each row's exact group: its first row, -1 without text), the
    groups' first rows ``rep_rows`` and their near clusters (``kept``: index into ``rep_rows`` of the
    kept representative or -1, ``sim``: the similarity to it; None: no near pass)."""
    n = len(rep)
    t1 = time.perf_counter()
    rows = np.arange(n, dtype=np.int64)
    root_of = rows.copy()  # an exact group's kept row: its near cluster's, else its own first row
    sim_of = np.full(n, np.nan)
    if kept is not None:
        members = np.flatnonzero(kept >= 0)
        root_of[rep_rows[members]] = rep_rows[kept[members]]
        sim_of[rep_rows[members]] = sim[members]
    has = rep >= 0
    at = np.where(has, rep, 0)
    root = np.where(has, root_of[at], -1)
    size = np.bincount(root[has], minlength=n)
    inside = has & (size[np.where(has, root, 0)] > 1)
    is_kept = rows == root
    exact = rep == root  # the kept row's own exact group
    out = pl.DataFrame({
        "row": rows.astype(np.uint32), "root": root, "in": inside, "keep": ~inside | is_kept,
        "sim": np.where(is_kept | exact, 1.0, sim_of[at]),
        "kind": np.where(~inside | is_kept, 0, np.where(exact, 1, 2)).astype(np.int8),
    }).select(
        "row",
        pl.when(pl.col("in")).then(pl.col("root")).alias("cluster"),
        "keep",
        pl.when(pl.col("in")).then(pl.col("sim")).alias("similarity"),
        pl.when(pl.col("kind") == 1).then(pl.lit("exact")).when(pl.col("kind") == 2).then(pl.lit("near"))
        .alias("dup_kind"),
    )
    if stats is not None:
        stats["s_exact"] = round(stats.get("s_exact", 0.0) + time.perf_counter() - t1, 3)
    return out.cast(dict(RESULT_SCHEMA))


def clusters_report(result: pl.DataFrame, df: pl.DataFrame, text: pl.Expr | str, limit: int = 20,
                    *, members: int = 10, snippet: int = 120) -> list[dict[str, Any]]:
    """The ``limit`` biggest clusters (ties: lowest cluster id first), each as
    ``{"cluster", "size", "exact", "near", "kept": {...}, "members": [...]}``; a member is
    ``{"row", "id", "dup_kind", "similarity", "text"}`` (text cut to ``snippet`` characters), the
    kept row first, at most ``members`` of them."""
    expr = pl.col(text) if isinstance(text, str) else text
    cols = [expr.cast(pl.String).fill_null("").str.slice(0, snippet).alias("_text")]
    cols.append(pl.col("id") if "id" in df.columns else pl.lit(None, dtype=pl.String).alias("id"))
    clustered = result.filter(pl.col("cluster").is_not_null())
    if clustered.height == 0:
        return []
    top = (
        clustered.group_by("cluster").agg(
            pl.len().alias("size"),
            (pl.col("dup_kind") == "exact").sum().alias("exact"),
            (pl.col("dup_kind") == "near").sum().alias("near"),
        ).sort(["size", "cluster"], descending=[True, False]).head(limit)
    )
    rows = (
        clustered.join(top.select("cluster"), on="cluster", how="semi")
        .sort(["cluster", "keep", "row"], descending=[False, True, False])
        .with_columns(pl.int_range(pl.len()).over("cluster").alias("_rank"))
        .filter(pl.col("_rank") < members)
    )
    # the texts of the rows shown only (``text`` may join a row's fields: not every row's)
    at = rows["row"].unique().sort()
    info = df[at].select(cols).with_columns(at.alias("row"))
    rows = rows.join(info, on="row", how="left", maintain_order="left")
    by_cluster: dict[int, list[dict]] = {}
    for r in rows.iter_rows(named=True):
        by_cluster.setdefault(r["cluster"], []).append({
            "row": r["row"], "id": r["id"], "dup_kind": r["dup_kind"],
            "similarity": None if r["similarity"] is None else round(r["similarity"], 4),
            "text": r["_text"],
        })
    report = []
    for c in top.iter_rows(named=True):
        mem = by_cluster.get(c["cluster"], [])
        report.append({
            "cluster": c["cluster"], "size": c["size"], "exact": c["exact"], "near": c["near"],
            "kept": mem[0] if mem else None, "members": mem,
        })
    return report
