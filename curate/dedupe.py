"""Exact and near-duplicate detection (used by the clean stage's ``exact_duplicate`` and
``near_duplicate`` rules).

``find_duplicates(df, text)`` returns one row per input row (same order)::

    row         UInt32   0-based index of the input row
    cluster     Int64    cluster id (= ``row`` of the cluster's kept row); null when unique
    keep        Boolean  True for unique rows and for exactly one row per cluster (the first in
                         input order); False for the duplicates to drop
    similarity  Float64  Jaccard similarity to the kept row of the cluster (1.0 for exact
                         duplicates and for the kept row itself); null when unique
    dup_kind    String   'exact' | 'near' for dropped rows, null for kept and unique rows

Algorithm
---------
1. **Normalize** (polars expressions): case-fold (lowercase, ß -> ss, final sigma, ligatures),
   every run of characters that are not letters, digits or combining marks (punctuation,
   symbols, whitespace) becomes one space, strip.
   Rows whose normalized text is empty (or null) are never clustered.
2. **Exact duplicates**: rows with the same normalized text (polars window ``min().over()`` on the
   string, so equality is exact, not just a hash) form a cluster; the first row is kept.
3. **Near duplicates** run on one representative per exact group:

   * shingles are the overlapping **5-byte windows** of the normalized UTF-8 text (character
     5-grams for Latin script), read straight from the Arrow buffer with numpy (one unaligned
     ``uint64`` view per window, masked to 40 bits: the shingle *is* its bytes, no collisions);
     texts shorter than 5 bytes are padded. Character shingles keep short instructions
     comparable (a word 3-gram set of a 10-word prompt loses a third of its shingles per edit)
     and tolerate word swaps, typos and Malay affix variants;
   * **one-permutation MinHash** (Li, Owen & Zhang 2012): each shingle is hashed once
     (xor-shift-multiply mixer); the top bits choose one of ``num_perm`` (256) bins and the row's
     signature keeps the minimum of the low 32 bits per bin (``np.minimum.at``). Empty bins are
     filled by optimal densification (Shrivastava 2017: a fixed pseudo-random probe sequence per
     bin), so densified bins are not copies of their neighbours. Cost is O(shingles), not
     O(shingles x permutations);
   * **LSH banding**: ``b`` bands of ``r`` bins (bins ``j, j+b, j+2b, ...``), ``r`` the largest
     value whose collision probability at the threshold, ``1 - (1 - t**r)**b``, is >= 0.995
     (threshold 0.8 and 256 bins give 32 bands of 8: a pair at Jaccard 0.8 becomes a candidate
     with probability 0.997, at 0.85 0.99996, at 0.3 0.002). Rows sharing a band key are
     candidates (all pairs in buckets of up to ``_CLIQUE`` rows, star + chain in bigger ones);
   * **prefilter**: the share of equal bins (low 8 bits of up to 256 bins) estimates each candidate's
     Jaccard; pairs more than 4.5 standard errors below the threshold are dropped;
   * **verification**: the exact Jaccard of the shingle *sets* of every remaining pair (numpy:
     one sort of ``pair | shingle | side`` keys per batch); only pairs >= threshold become edges;
   * **clustering**: connected components of the edges (vectorized union-find: root hooking +
     pointer jumping in numpy), so a cluster is transitive; the first row in input order is kept
     and every member's exact Jaccard *to the kept row* is reported (it can be below the
     threshold for a member reached through a chain).

Everything is deterministic for the same input and ``seed``, on any machine: the hashing is
numpy integer arithmetic on the text's bytes (no dependence on polars' or Python's hash).
"""

from __future__ import annotations

import functools
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import polars as pl

SHINGLE = 5              # shingle width in bytes of normalized UTF-8 text
DEFAULT_PERM = 256       # MinHash bins (one-permutation hashing)
_THREADS = max(1, min(2, os.cpu_count() or 1))  # signature threads (each holds one chunk)
_EST_BINS = 256          # bins kept (8 bits each) to estimate the Jaccard of candidates
_NORM_ROWS = 131_072     # rows normalized per slice
_SPAN_ROWS = 16_384      # representatives read from polars at a time
_CHUNK_ROWS = 1_024      # representatives hashed per chunk (cache-sized temporaries)
_CLIQUE = 32             # buckets up to this size give all pairs; bigger ones star + chain
_VERIFY_WINDOWS = 4_000_000  # shingles sorted per verification batch
_SENT = np.uint32(0xFFFFFFFF)
_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)
_MASK = np.uint64((1 << (8 * SHINGLE)) - 1)

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

def _buffers(texts: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(UTF-8 bytes of all texts back to back, padded with 8 zero bytes; int64 offsets)."""
    lens = texts.str.len_bytes().fill_null(0).to_numpy().astype(np.int64)
    offsets = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    joined = texts.fill_null("").str.join("").cast(pl.Binary).item() if len(texts) else b""
    data = np.zeros(len(joined) + 8, dtype=np.uint8)
    data[: len(joined)] = np.frombuffer(joined, dtype=np.uint8)
    return data, offsets


def _windows(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(shingle uint64 at every byte position, bool: the window lies inside its text).

    Texts are padded to >= SHINGLE bytes by the caller, so the invalid windows are exactly the
    last SHINGLE - 1 positions of each text."""
    total = int(offsets[-1])
    v = np.ndarray(shape=(total,), dtype="<u8", buffer=data, offset=0, strides=(1,)) & _MASK
    valid = np.ones(total, dtype=bool)
    if total:
        valid[(offsets[1:, None] - np.arange(1, SHINGLE, dtype=np.int64)).ravel()] = False
    return v, valid


def _row_ids(offsets: np.ndarray, shift: int = 0) -> np.ndarray:
    """Row index (shifted left by ``shift``) of every byte."""
    n = len(offsets) - 1
    return np.repeat(np.arange(n, dtype=np.int64) << shift, np.diff(offsets))


def _mix(v: np.ndarray, seed: int) -> np.ndarray:
    """64-bit mixer (multiply / xor-shift, as in murmur3's finalizer) of 40-bit shingles."""
    h = v ^ np.uint64((seed * 0x632BE59BD9B4E019 + 0x2545F4914F6CDD1D) & 0xFFFFFFFFFFFFFFFF)
    h *= _M2
    h ^= h >> np.uint64(32)
    h *= _M3
    h ^= h >> np.uint64(29)
    return h


def _prepare(texts: pl.Series) -> pl.Series:
    return texts.str.pad_end(SHINGLE, " ")


def signatures(texts: pl.Series, num_perm: int = DEFAULT_PERM, seed: int = 0) -> np.ndarray:
    """One-permutation MinHash signatures (n, num_perm) uint32, densified, of normalized texts;
    the share of equal bins of two rows estimates the Jaccard of their shingle sets."""
    data, offsets = _buffers(_prepare(texts))
    return _signatures_of(data, offsets, num_perm, seed)


def _signatures_of(data: np.ndarray, offsets: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """Signatures of the texts at ``offsets`` (from 0) in ``data`` (followed by >= 8 more bytes)."""
    n = len(offsets) - 1
    bits = int(math.log2(num_perm))
    sig = np.full(n * num_perm, _SENT, dtype=np.uint32)
    v, valid = _windows(data, offsets)
    h = _mix(v, seed)
    del v
    key = (h >> np.uint64(64 - bits)).astype(np.int64)
    key += _row_ids(offsets, bits)
    val = h.astype(np.uint32)
    del h
    np.minimum(val, _SENT - np.uint32(1), out=val)
    val[~valid] = _SENT  # windows running into the next text change nothing
    np.minimum.at(sig, key, val)
    del key, val
    sig = sig.reshape(n, num_perm)
    # Densification (Shrivastava 2017, "optimal densification"): an empty bin j takes the value of
    # bin g(j, 1), g(j, 2), ... (a fixed pseudo-random probe sequence, the same for every row),
    # the first non-empty one. Two rows agree on a densified bin with probability = Jaccard, and,
    # unlike copying the next bin to the right, neighbouring empty bins are not copies of one
    # another, so the bins of a band stay nearly independent even for short texts.
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


@functools.lru_cache(maxsize=1024)
def _probe(num_perm: int, attempt: int, seed: int) -> np.ndarray:
    """Bin probed by every bin at this attempt (the same for every row)."""
    bins = np.arange(num_perm, dtype=np.uint64)
    h = _mix(bins * np.uint64(0x100000001B3) + np.uint64(attempt + 1), seed + 1)
    return (h & np.uint64(num_perm - 1)).astype(np.int64)


def _band_keys(sig: np.ndarray, bands: int, r: int, seed: int) -> np.ndarray:
    """32-bit key of each band; band j hashes bins j, j+b, j+2b, ... (no two neighbours)."""
    n = sig.shape[0]
    grid = sig[:, : bands * r].reshape(n, r, bands)  # grid[:, i, j] = bin i * bands + j
    h = np.empty((n, bands), dtype=np.uint64)
    h[:] = np.array([(seed * 0x9E3779B97F4A7C15 + j * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
                     for j in range(bands)], dtype=np.uint64)
    for i in range(r):
        h ^= grid[:, i, :]
        h *= _M1
        h ^= h >> np.uint64(32)
    return (h >> np.uint64(32)).astype(np.uint32)


# --------------------------------------------------------------------------- candidates & verification

def _candidates(bandkeys: np.ndarray) -> pl.DataFrame:
    """Candidate pairs (a < b, local indices) of rows sharing a band key, band by band.

    Buckets of up to ``_CLIQUE`` rows give all their pairs; a bigger bucket (many rows sharing a
    template, say) gives each member paired with the bucket's first row and with its predecessor,
    enough to connect a cluster without a quadratic blow-up. A 32-bit key collision between two
    unrelated rows only adds a candidate, which the checks below throw away."""
    n, bands = bandkeys.shape
    rows = pl.Series("r", np.arange(n, dtype=np.uint32))
    pairs: list[pl.DataFrame] = []
    slots = 1 << max(10, min(22, (2 * n).bit_length()))
    shift = np.uint32(32 - slots.bit_length() + 1)
    for j in range(bands):
        key = np.ascontiguousarray(bandkeys[:, j])
        # cheap first pass: only keys whose top bits are shared by another row can be duplicates
        slot = key >> shift
        maybe = np.bincount(slot, minlength=slots)[slot] > 1
        bk = pl.DataFrame([rows.filter(maybe), pl.Series("k", key[maybe])])
        buckets = (
            bk.filter(pl.col("k").is_duplicated())
            .group_by("k").agg(pl.col("r").sort())
            .with_columns(pl.col("r").list.len().alias("size"))
        )
        if buckets.height == 0:
            continue
        buckets = buckets.with_row_index("g")
        small = buckets.filter(pl.col("size") <= _CLIQUE).select("g", "r").explode("r")
        pairs.append(small.join(small, on="g", suffix="_b").filter(pl.col("r") < pl.col("r_b"))
                     .select(pl.col("r").alias("a"), pl.col("r_b").alias("b")))
        big = buckets.filter(pl.col("size") > _CLIQUE)
        if big.height:
            m = big.select("g", "r").explode("r").with_columns(
                pl.col("r").first().over("g").alias("first"),
                pl.col("r").shift(1).over("g").alias("prev"),
            )
            pairs.append(m.filter(pl.col("r") != pl.col("first"))
                         .select(pl.col("first").alias("a"), pl.col("r").alias("b")))
            pairs.append(m.filter(pl.col("prev").is_not_null() & (pl.col("prev") != pl.col("first")))
                         .select(pl.col("prev").alias("a"), pl.col("r").alias("b")))
        if len(pairs) > 8:
            pairs = [pl.concat(pairs).unique()]
    if not pairs:
        return pl.DataFrame(schema={"a": pl.UInt32, "b": pl.UInt32})
    return pl.concat(pairs).unique().sort("a", "b")


def _jaccard(pairs: pl.DataFrame, texts: pl.Series) -> pl.DataFrame:
    """Exact Jaccard of the shingle sets of pairs (a, b) of indices into ``texts``; adds ``j``.

    Per batch of pairs: the windows of A (tagged side 0) and B (side 1) of every pair are keyed
    ``pair << 41 | shingle << 1 | side`` and sorted once; a run of equal ``(pair, shingle)`` is one
    distinct shingle, in A if its first key has side 0, in B if its last has side 1."""
    if pairs.height == 0:
        return pairs.with_columns(pl.lit(None, dtype=pl.Float64).alias("j"))
    a_all, b_all = pairs["a"].to_numpy(), pairs["b"].to_numpy()
    lens = texts.str.len_bytes().to_numpy().astype(np.int64)
    wins = np.maximum(lens, SHINGLE) - SHINGLE + 1
    cost = np.cumsum(wins[a_all] + wins[b_all])
    out = np.empty(len(a_all), dtype=np.float64)
    spans = []
    start = 0
    while start < len(a_all):
        stop = int(np.searchsorted(cost, (cost[start - 1] if start else 0) + _VERIFY_WINDOWS, "right"))
        stop = max(stop, start + 1)
        spans.append((start, stop))
        start = stop

    def batch(span: tuple[int, int]) -> None:
        lo, hi = span
        out[lo:hi] = _jaccard_batch(a_all[lo:hi], b_all[lo:hi], texts)

    with ThreadPoolExecutor(_THREADS) as pool:
        list(pool.map(batch, spans))
    return pairs.with_columns(pl.Series("j", out))


def _jaccard_batch(a: np.ndarray, b: np.ndarray, texts: pl.Series) -> np.ndarray:
    ids, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
    la, lb = inv[: len(a)], inv[len(a):]
    data, offsets = _buffers(_prepare(texts.gather(ids)))
    v, valid = _windows(data, offsets)
    starts = offsets[:-1]
    nwin = np.diff(offsets) - (SHINGLE - 1)  # valid windows are the first nwin of each text
    p = len(a)
    keys = []
    for side, loc in ((0, la), (1, lb)):
        cnt = nwin[loc]
        pair = np.repeat(np.arange(p, dtype=np.uint64), cnt)
        pos = np.arange(int(cnt.sum()), dtype=np.int64) + np.repeat(starts[loc] - (np.cumsum(cnt) - cnt), cnt)
        keys.append((pair << np.uint64(41)) | (v[pos] << np.uint64(1)) | np.uint64(side))
    del v, valid
    k = np.concatenate(keys)
    del keys
    k.sort(kind="stable")  # timsort: the keys come in long pair-major runs
    body = k >> np.uint64(1)
    first = np.empty(len(k), dtype=bool)
    first[0] = True
    np.not_equal(body[1:], body[:-1], out=first[1:])
    last = np.empty(len(k), dtype=bool)
    last[-1] = True
    last[:-1] = first[1:]
    pf = (k[first] >> np.uint64(41)).astype(np.int64)
    in_a = (k[first] & np.uint64(1)) == 0
    in_b = (k[last] & np.uint64(1)) == 1
    size_a = np.bincount(pf, weights=in_a, minlength=p)
    size_b = np.bincount(pf, weights=in_b, minlength=p)
    inter = np.bincount(pf, weights=in_a & in_b, minlength=p)
    return inter / (size_a + size_b - inter)


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected components over nodes 0..n-1: label = smallest node of the component."""
    lab = np.arange(n, dtype=np.int64)
    if len(a) == 0:
        return lab
    a = a.astype(np.int64)
    b = b.astype(np.int64)
    while True:
        ra, rb = lab[a], lab[b]
        diff = ra != rb
        if not diff.any():
            return lab
        lo, hi = np.minimum(ra[diff], rb[diff]), np.maximum(ra[diff], rb[diff])
        np.minimum.at(lab, hi, lo)  # hook the larger root under the smaller
        while True:  # pointer jumping until every node points at its root
            nxt = lab[lab]
            if np.array_equal(nxt, lab):
                break
            lab = nxt


# --------------------------------------------------------------------------- public API

def near_pairs(texts: pl.Series, *, threshold: float = 0.8, num_perm: int = DEFAULT_PERM,
               seed: int = 0, stats: dict | None = None) -> pl.DataFrame:
    """Verified near-duplicate edges (a < b, indices into ``texts``, normalized text) with their
    exact shingle Jaccard ``j`` >= threshold. ``stats`` (if given) receives candidate counts."""
    n = len(texts)
    if n < 2:
        return pl.DataFrame(schema={"a": pl.UInt32, "b": pl.UInt32, "j": pl.Float64})
    if num_perm < 8 or num_perm & (num_perm - 1):
        raise ValueError(f"num_perm must be a power of two >= 8, got {num_perm}")
    bands, r = lsh_params(threshold, num_perm)
    clock = [(time.perf_counter(), time.process_time())]

    def lap(name: str) -> None:  # wall and CPU seconds of each step, for the bench
        clock.append((time.perf_counter(), time.process_time()))
        if stats is not None:
            stats[f"s_{name}"] = (round(clock[-1][0] - clock[-2][0], 3), round(clock[-1][1] - clock[-2][1], 3))
    keys = np.empty((n, bands), dtype=np.uint32)
    est_bins = min(num_perm, _EST_BINS)
    small = np.empty((n, est_bins), dtype=np.uint8)  # low byte of some bins, for the estimate

    def span(s: int) -> None:  # numpy releases the GIL in its loops: spans run in parallel
        data, offsets = _buffers(_prepare(texts.slice(s, _SPAN_ROWS)))
        m = len(offsets) - 1
        for c in range(0, m, _CHUNK_ROWS):
            d = min(m, c + _CHUNK_ROWS)
            lo = int(offsets[c])
            sig = _signatures_of(data[lo: int(offsets[d]) + 8], offsets[c: d + 1] - lo, num_perm, seed)
            keys[s + c: s + d] = _band_keys(sig, bands, r, seed)
            small[s + c: s + d] = sig[:, :est_bins].astype(np.uint8)

    with ThreadPoolExecutor(_THREADS) as pool:
        list(pool.map(span, range(0, n, _SPAN_ROWS)))
    lap("signatures")
    cand = _candidates(keys)
    del keys
    lap("candidates")
    # Cheap filter before the exact check: the share of equal signature bins estimates the
    # Jaccard (an 8-bit bin collides by chance 1/256 of the time, a tiny upward bias). A pair is
    # dropped only when its estimate is more than 4.5 standard errors below the threshold; the
    # error is that of min(est_bins, shingles of the shorter text) independent bins.
    nshingles = np.maximum(texts.str.len_bytes().to_numpy().astype(np.int64) - SHINGLE + 1, 1)
    a, b = cand["a"].to_numpy(), cand["b"].to_numpy()
    keep = np.zeros(len(a), dtype=bool)
    for s in range(0, len(a), 65_536):
        aa, bb = a[s:s + 65_536], b[s:s + 65_536]
        est = (small[aa] == small[bb]).mean(axis=1)
        k_eff = np.minimum(est_bins, np.minimum(nshingles[aa], nshingles[bb]))
        margin = 4.5 * np.sqrt(threshold * (1 - threshold) / k_eff) + 0.02
        keep[s:s + 65_536] = est >= threshold - margin
    del small
    lap("prefilter")
    verified = _jaccard(cand.filter(pl.Series(keep)), texts)
    edges = verified.filter(pl.col("j") >= threshold).sort("a", "b")
    lap("verify")
    if stats is not None:
        stats.update(bands=bands, rows_per_band=r, candidates=cand.height,
                     verified=int(keep.sum()), edges=edges.height)
    return edges


def find_duplicates(df: pl.DataFrame, text: pl.Expr | str, *, threshold: float = 0.8, near: bool = True,
                    num_perm: int = DEFAULT_PERM, seed: int = 0) -> pl.DataFrame:
    """Exact and near-duplicate clusters of ``df`` by ``text`` (see the module docstring).

    ``text``: a column name or a row-wise expression (e.g. ``pl.concat_str([...])``).
    ``threshold``: Jaccard of the character 5-gram shingle sets at or above which two rows are
    near duplicates. ``near=False``: exact duplicates only. ``num_perm``: MinHash bins (a power of
    two; more bins -> sharper LSH, fewer candidates, more hashing). ``seed`` changes the hash
    functions (results may differ only for pairs close to the threshold).

    Returns one row per input row, in input order: ``row``, ``cluster`` (= ``row`` of the kept row,
    null when unique), ``keep``, ``similarity``, ``dup_kind``."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    # Normalized in slices so the intermediate copies (joined fields, lowercase...) of only one slice
    # are alive at a time; ``text`` must be a row-wise expression.
    norm = pl.concat([
        df.slice(s, _NORM_ROWS).lazy().select(normalize(text).alias("norm")).collect()
        for s in range(0, max(df.height, 1), _NORM_ROWS)
    ])
    base = norm.with_row_index("row").with_columns(
        pl.when(pl.col("norm") != "").then(pl.col("row").min().over("norm")).alias("rep"),
    )
    del norm
    n = base.height
    reps = base.filter(pl.col("rep") == pl.col("row")).select("row", "norm")

    # near duplicates between exact-group representatives
    kept_of_rep = pl.DataFrame(schema={"rep": pl.UInt32, "kept": pl.UInt32, "sim": pl.Float64})
    if near and reps.height > 1:
        texts = reps["norm"]
        edges = near_pairs(texts, threshold=threshold, num_perm=num_perm, seed=seed)
        if edges.height:
            lab = _components(reps.height, edges["a"].to_numpy(), edges["b"].to_numpy())
            members = np.flatnonzero(lab != np.arange(reps.height))
            pairs = pl.DataFrame({"a": lab[members].astype(np.uint32), "b": members.astype(np.uint32)})
            known = pairs.join(edges, on=["a", "b"], how="left")
            missing = known.filter(pl.col("j").is_null()).select("a", "b")
            sims = pl.concat([known.filter(pl.col("j").is_not_null()), _jaccard(missing, texts)])
            rep_rows = reps["row"]
            kept_of_rep = sims.select(
                rep_rows.gather(sims["b"]).alias("rep"),
                rep_rows.gather(sims["a"]).alias("kept"),
                pl.col("j").alias("sim"),
            )

    in_cluster = pl.col("root").is_not_null() & (pl.len().over("root") > 1)
    is_kept = pl.col("row") == pl.col("root")
    out = (
        base.select("row", "rep")
        .join(kept_of_rep, on="rep", how="left")
        .with_columns(pl.coalesce("kept", "rep").alias("root"))
        .with_columns(in_cluster.alias("_in"))
        .select(
            "row",
            pl.when(pl.col("_in")).then(pl.col("root").cast(pl.Int64)).alias("cluster"),
            (~pl.col("_in") | is_kept).alias("keep"),
            pl.when(~pl.col("_in")).then(None)
            .when(is_kept | (pl.col("rep") == pl.col("root"))).then(1.0)
            .otherwise(pl.col("sim")).alias("similarity"),
            pl.when(~pl.col("_in") | is_kept).then(None)
            .when(pl.col("rep") == pl.col("root")).then(pl.lit("exact"))
            .otherwise(pl.lit("near")).alias("dup_kind"),
        )
        .sort("row")
    )
    assert out.height == n
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
    info = df.lazy().select(cols).with_row_index("row").collect()
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
        .join(info, on="row", how="left")
        .sort(["cluster", "keep", "row"], descending=[False, True, False])
        .with_columns(pl.int_range(pl.len()).over("cluster").alias("_rank"))
        .filter(pl.col("_rank") < members)
    )
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
