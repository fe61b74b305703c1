"""Compiled (numba) kernels for :mod:`curate.dedupe`: one pass over each row's bytes.

:func:`curate.dedupe.sketch` builds, per row, the one-permutation MinHash signature, its LSH band
keys and the estimator bytes. The numpy version (``dedupe._signatures_of`` + ``dedupe.band_keys``)
makes a dozen whole-array passes over every shingle (values, mixes, bin keys, ``np.minimum.at``,
densification), each through memory; these kernels do the same arithmetic shingle by shingle in
registers, row by row, and give bit-identical results (tests/test_dedupe.py compares them), about
6x faster. :func:`normalize_sketch` also normalizes and hashes each row in the same pass (no
normalized copy of the texts is kept), :func:`jaccard_chars` is the exact check of candidate pairs. numba compiles them on first use and caches the machine code beside this file
(``cache=True``), so only the first run on a machine pays the compilation (a few seconds).

When numba cannot be imported, :data:`AVAILABLE` is False and dedupe keeps its numpy path.
"""

from __future__ import annotations

import numpy as np

try:  # numba is a dependency; the numpy path stays for platforms without its wheels
    import numba
except ImportError:  # pragma: no cover - exercised only without numba
    numba = None

AVAILABLE = numba is not None

_SENT = 0xFFFFFFFF


if AVAILABLE:
    _u64 = numba.types.uint64

    @numba.njit(inline="always", cache=True)
    def _mix(v, salt):  # dedupe._mix with salt = (seed * 0x632B... + 0x2545...) mod 2**64
        h = _u64(v) ^ _u64(salt)
        h *= _u64(0xBF58476D1CE4E5B9)
        h ^= h >> _u64(32)
        h *= _u64(0x94D049BB133111EB)
        h ^= h >> _u64(29)
        return h

    @numba.njit(inline="always", cache=True)
    def _bin_min(raw, h, shift):
        """One-permutation hashing: bin = the top bits of ``h``, value = its low 32 bits (the
        sentinel value itself is taken as one less); branch-free minimum."""
        b = h >> shift
        val = min(np.uint32(h & _u64(0xFFFFFFFF)), np.uint32(_SENT - 1))
        raw[b] = min(raw[b], val)

    @numba.njit(inline="always", cache=True)
    def _finish(sig, raw, row, probe_salt, band_init, bands, r, keys, est, est_bins):
        """Densify ``sig`` (from ``raw``, the bins before densification: bin j probes the bins
        ``dedupe._probe(num_perm, attempt, seed)[j]``, attempt 0, 1, ...), then band keys and estimator bytes."""
        num_perm = sig.shape[0]
        for j in range(num_perm):
            if raw[j] == _SENT:
                a = 0
                while True:
                    q = _mix(_u64(j) * _u64(0x100000001B3) + _u64(a + 1), probe_salt) & _u64(num_perm - 1)
                    v = raw[q]
                    if v != _SENT:
                        sig[j] = v
                        break
                    a += 1
        for j in range(bands):
            h = band_init[j]
            for i in range(r):
                h ^= _u64(sig[i * bands + j])
                h *= _u64(0x9E3779B97F4A7C15)
                h ^= h >> _u64(32)
            keys[row, j] = np.uint32(h >> _u64(32))
        for j in range(est_bins):
            est[row, j] = np.uint8(sig[j] & 0xFF)

    @numba.njit(cache=True, nogil=True)
    def sketch_chars(data, offsets, n, pre_mix, pre_salt, salt, bits, probe_salt, band_init, bands, r,
                     keys, est, lengths, start):
        """Rows ``start..start+len(offsets)-2``: shingles are the ``n``-byte windows of each row's bytes
        ``data[offsets[i]:offsets[i+1]]`` (rows padded to ``n`` bytes by the caller; ``data`` has 8
        spare bytes at the end), mixed once more when ``pre_mix`` (char N > 5), cut to 40 bits."""
        num_perm = 1 << bits
        est_bins = est.shape[1]
        shift = _u64(64 - bits)
        raw = np.empty(num_perm, dtype=np.uint32)
        sig = np.empty(num_perm, dtype=np.uint32)
        top = _u64(8 * (n - 1))
        for i in range(len(offsets) - 1):
            lo, hi = offsets[i], offsets[i + 1]
            raw[:] = _SENT
            v = _u64(0)  # the window data[p - n + 1 : p + 1], little-endian, rolled one byte at a time
            for p in range(lo, lo + n - 1):
                v = (v >> _u64(8)) | (_u64(data[p]) << top)
            if pre_mix:
                for p in range(lo + n - 1, hi):
                    v = (v >> _u64(8)) | (_u64(data[p]) << top)
                    _bin_min(raw, _mix(_mix(v, pre_salt) & _u64(0xFFFFFFFFFF), salt), shift)
            else:
                for p in range(lo + n - 1, hi):
                    v = (v >> _u64(8)) | (_u64(data[p]) << top)
                    _bin_min(raw, _mix(v, salt), shift)
            sig[:] = raw
            row = start + i
            lengths[row] = hi - n + 1 - lo
            _finish(sig, raw, row, probe_salt, band_init, bands, r, keys, est, est_bins)

    @numba.njit(cache=True, nogil=True)
    def sketch_values(values, offsets, salt, bits, probe_salt, band_init, bands, r, keys, est, lengths, start):
        """The same from shingle values already computed (``values[offsets[i]:offsets[i+1]]``: row i)."""
        num_perm = 1 << bits
        est_bins = est.shape[1]
        shift = _u64(64 - bits)
        raw = np.empty(num_perm, dtype=np.uint32)
        sig = np.empty(num_perm, dtype=np.uint32)
        for i in range(len(offsets) - 1):
            raw[:] = _SENT
            for p in range(offsets[i], offsets[i + 1]):
                _bin_min(raw, _mix(values[p], salt), shift)
            sig[:] = raw
            row = start + i
            lengths[row] = offsets[i + 1] - offsets[i]
            _finish(sig, raw, row, probe_salt, band_init, bands, r, keys, est, est_bins)

    @numba.njit(inline="always", cache=True)
    def _shingle_at(v, pre_mix, pre_salt):
        return (_mix(v, pre_salt) & _u64(0xFFFFFFFFFF)) if pre_mix else v

    @numba.njit(inline="always", cache=True)
    def _insert(keys, stamps, v, stamp, bits):
        """Put ``v`` in the open-addressing set of this ``stamp`` (slots of other stamps are empty):
        True when it was not there yet."""
        mask = (1 << bits) - 1
        k = np.int64((_u64(v) * _u64(0x9E3779B97F4A7C15)) >> _u64(64 - bits))
        while True:
            if stamps[k] != stamp:
                stamps[k] = stamp
                keys[k] = v
                return True
            if keys[k] == v:
                return False
            k = (k + 1) & mask

    @numba.njit(inline="always", cache=True)
    def _contains(keys, stamps, v, stamp, bits):
        mask = (1 << bits) - 1
        k = np.int64((_u64(v) * _u64(0x9E3779B97F4A7C15)) >> _u64(64 - bits))
        while True:
            if stamps[k] != stamp:
                return False
            if keys[k] == v:
                return True
            k = (k + 1) & mask

    @numba.njit(cache=True, nogil=True)
    def jaccard_chars(data, offsets, n, pre_mix, pre_salt, a, b, out):
        """``out[k]``: the Jaccard of the shingle sets of rows ``a[k]`` and ``b[k]`` (the ``n``-byte
        windows of each row's bytes, as ``dedupe.shingles``). Pairs grouped by ``a``: each ``a``
        row's set is built once (a hash set), each ``b`` row's shingles are counted once each (a
        second hash set) and looked up in it."""
        m = len(a)
        longest = 1
        for k in range(m):
            longest = max(longest, offsets[a[k] + 1] - offsets[a[k]], offsets[b[k] + 1] - offsets[b[k]])
        bits = 4
        while (1 << bits) < 2 * longest:
            bits += 1
        ka = np.empty(1 << bits, dtype=np.uint64)
        sa = np.full(1 << bits, -1, dtype=np.int64)
        kb = np.empty(1 << bits, dtype=np.uint64)
        sb = np.full(1 << bits, -1, dtype=np.int64)
        top = _u64(8 * (n - 1))
        i = 0
        while i < m:
            lo, hi = offsets[a[i]], offsets[a[i] + 1]
            size_a = 0
            v = _u64(0)
            for p in range(lo, lo + n - 1):
                v = (v >> _u64(8)) | (_u64(data[p]) << top)
            for p in range(lo + n - 1, hi):
                v = (v >> _u64(8)) | (_u64(data[p]) << top)
                size_a += _insert(ka, sa, _shingle_at(v, pre_mix, pre_salt), i, bits)
            j = i
            while j < m and a[j] == a[i]:
                lo, hi = offsets[b[j]], offsets[b[j] + 1]
                size_b = 0
                inter = 0
                v = _u64(0)
                for p in range(lo, lo + n - 1):
                    v = (v >> _u64(8)) | (_u64(data[p]) << top)
                for p in range(lo + n - 1, hi):
                    v = (v >> _u64(8)) | (_u64(data[p]) << top)
                    x = _shingle_at(v, pre_mix, pre_salt)
                    if _insert(kb, sb, x, j, bits):
                        size_b += 1
                        inter += _contains(ka, sa, x, i, bits)
                out[j] = inter / (size_a + size_b - inter)
                j += 1
            i = j

    @numba.njit(cache=True, nogil=True)
    def normalize_sketch(data, offsets, lut, n, pre_mix, pre_salt, salt, bits, probe_salt, band_init, bands, r,
                         keys, est, lengths, hashes, norm_len, start, with_sketch):
        """:func:`dedupe.normalize` and :func:`sketch_chars` in one pass, for rows that are ASCII
        (normalized here: lower case, every run of other characters one space, stripped) or already
        normalized (unchanged by the same steps). ``lut[c]``: the lowered byte c of a word (ASCII
        letters and digits, every byte of a non-ASCII character), 0 for a separator. Also
        ``hashes[row]``: two independent 64-bit hashes of the normalized bytes (exact duplicates),
        ``norm_len[row]``: their length. ``with_sketch`` False: only the hashes and lengths."""
        num_perm = 1 << bits
        est_bins = est.shape[1]
        shift = _u64(64 - bits)
        raw = np.empty(num_perm, dtype=np.uint32)
        sig = np.empty(num_perm, dtype=np.uint32)
        longest = 0
        for i in range(len(offsets) - 1):
            longest = max(longest, offsets[i + 1] - offsets[i])
        buf = np.empty(longest + n + 8, dtype=np.uint8)
        top = _u64(8 * (n - 1))
        for i in range(len(offsets) - 1):
            m = 0
            gap = False
            chars = 0
            h1 = _u64(0x243F6A8885A308D3)
            h2 = _u64(0x13198A2E03707344)
            w = _u64(0)  # the normalized bytes 8 at a time, mixed into the two hashes
            for p in range(offsets[i], offsets[i + 1]):
                c = lut[data[p]]
                if c:
                    if gap and m:
                        w |= _u64(32) << _u64(8 * (m & 7))
                        if m & 7 == 7:
                            h1 = _mix(h1 ^ w, _u64(0xA4093822299F31D0))
                            h2 = _mix(h2 + w, _u64(0x082EFA98EC4E6C89))
                            w = _u64(0)
                        buf[m] = 32
                        m += 1
                        chars += 1
                    gap = False
                    w |= _u64(c) << _u64(8 * (m & 7))
                    if m & 7 == 7:
                        h1 = _mix(h1 ^ w, _u64(0xA4093822299F31D0))
                        h2 = _mix(h2 + w, _u64(0x082EFA98EC4E6C89))
                        w = _u64(0)
                    buf[m] = c
                    m += 1
                    chars += (c & 0xC0) != 0x80
                else:
                    gap = True
            row = start + i
            norm_len[row] = m
            hashes[row, 0] = _mix(h1 ^ w, _u64(m))
            hashes[row, 1] = _mix(h2 + w, _u64(m) ^ _u64(0x452821E638D01377))
            if not with_sketch:
                continue
            # pad to n characters (as str.pad_end), then the shingles as sketch_chars
            t = m
            while chars < n:
                buf[t] = 32
                t += 1
                chars += 1
            raw[:] = _SENT
            v = _u64(0)
            for p in range(0, n - 1):
                v = (v >> _u64(8)) | (_u64(buf[p]) << top)
            for p in range(n - 1, t):
                v = (v >> _u64(8)) | (_u64(buf[p]) << top)
                if pre_mix:
                    _bin_min(raw, _mix(_mix(v, pre_salt) & _u64(0xFFFFFFFFFF), salt), shift)
                else:
                    _bin_min(raw, _mix(v, salt), shift)
            sig[:] = raw
            lengths[row] = t - n + 1
            _finish(sig, raw, row, probe_salt, band_init, bands, r, keys, est, est_bins)

    # ------------------------------------------------------------------ star clustering rounds

    @numba.njit(cache=True)
    def round_pairs(bstart, mem, rstart, rbk, undecided, count, first, is_center):
        """One round of :func:`curate.dedupe.star_clusters` on buckets in CSR form (bucket ``g``'s
        rows ``mem[bstart[g]:bstart[g+1]]``, ascending; row ``r``'s buckets
        ``rbk[rstart[r]:rstart[r+1]]``; ``count[g]``: its undecided rows; a bucket with fewer than
        2 is out): ``first[g]`` its first (lowest) undecided row, ``is_center[r]`` for rows that are the
        first of every bucket they are in; returns the pairs (center, later undecided row of its
        buckets), not yet unique."""
        nb = len(bstart) - 1
        for g in range(nb):
            first[g] = -1
            if count[g] >= 2:
                for k in range(bstart[g], bstart[g + 1]):
                    x = mem[k]
                    if undecided[x] and (first[g] < 0 or x < first[g]):
                        first[g] = x
        n = len(rstart) - 1
        for r in range(n):
            is_center[r] = False
            if not undecided[r]:
                continue
            seen = False
            ok = True
            for k in range(rstart[r], rstart[r + 1]):
                g = rbk[k]
                if count[g] >= 2:
                    seen = True
                    if first[g] != r:
                        ok = False
                        break
            is_center[r] = seen and ok
        p = 0
        for g in range(nb):
            if first[g] >= 0 and is_center[first[g]]:
                p += count[g] - 1
        a = np.empty(p, dtype=np.int64)
        b = np.empty(p, dtype=np.int64)
        p = 0
        for g in range(nb):
            c = first[g]
            if c >= 0 and is_center[c]:
                for k in range(bstart[g], bstart[g + 1]):
                    x = mem[k]
                    if x != c and undecided[x]:
                        a[p] = c
                        b[p] = x
                        p += 1
        return a, b

    @numba.njit(cache=True)
    def round_finish(a, b, j, threshold, kept, sim, checks, max_checks, undecided, count, rstart, rbk, is_center):
        """The end of a round: each checked row joins its most similar center at or above the
        threshold (ties: the earliest center); a row checked ``max_checks`` times in vain retires;
        the centers, the joined and the retired rows are decided (their buckets' counts go down).
        Returns the rows retired."""
        for k in range(len(a)):
            x = b[k]
            checks[x] += 1
            if j[k] >= threshold and (kept[x] < 0 or j[k] > sim[x] or (j[k] == sim[x] and a[k] < kept[x])):
                kept[x] = a[k]
                sim[x] = j[k]
        retired = 0
        for k in range(len(a)):
            x = b[k]
            if undecided[x] and (kept[x] >= 0 or checks[x] >= max_checks):
                if kept[x] < 0:
                    checks[x] = -(1 << 30)
                    retired += 1
                undecided[x] = False
                for q in range(rstart[x], rstart[x + 1]):
                    count[rbk[q]] -= 1
        for x in range(len(is_center)):
            if is_center[x] and undecided[x]:
                undecided[x] = False
                for q in range(rstart[x], rstart[x + 1]):
                    count[rbk[q]] -= 1
        return retired

    @numba.njit(cache=True)
    def normalize_rows(data, offsets, lut, n, out, out_offsets):
        """The normalized bytes of each row (as ``dedupe.normalize`` for ASCII or already normalized
        rows; see :func:`normalize_sketch`) padded with spaces to ``n`` characters (``str.pad_end``),
        back to back in ``out`` (room: the input's bytes + ``n`` per row); ``out_offsets[i]``: row i's start."""
        t = 0
        for i in range(len(offsets) - 1):
            out_offsets[i] = t
            start = t
            gap = False
            chars = 0
            for p in range(offsets[i], offsets[i + 1]):
                c = lut[data[p]]
                if c:
                    if gap and t > start:
                        out[t] = 32
                        t += 1
                        chars += 1
                    gap = False
                    out[t] = c
                    t += 1
                    chars += (c & 0xC0) != 0x80
                else:
                    gap = True
            while chars < n:
                out[t] = 32
                t += 1
                chars += 1
        out_offsets[len(offsets) - 1] = t

    @numba.njit(cache=True)
    def bucket_csr(g, r, n):
        """The bucket table (``g`` bucket key, ``r`` row) in CSR form both ways, by counting sorts (no comparison sort): (bstart, mem, rstart, rbk)
        as :func:`round_pairs` reads them; buckets numbered in order of first appearance."""
        m = len(g)
        bits = 4
        while (1 << bits) < 2 * m:
            bits += 1
        mask = (1 << bits) - 1
        slot_key = np.empty(1 << bits, dtype=np.uint64)
        slot_id = np.full(1 << bits, -1, dtype=np.int64)
        bid = np.empty(m, dtype=np.int64)
        nb = 0
        for k in range(m):
            h = np.int64((_u64(g[k]) * _u64(0x9E3779B97F4A7C15)) >> _u64(64 - bits))
            while True:
                if slot_id[h] < 0:
                    slot_id[h] = nb
                    slot_key[h] = g[k]
                    bid[k] = nb
                    nb += 1
                    break
                if slot_key[h] == g[k]:
                    bid[k] = slot_id[h]
                    break
                h = (h + 1) & mask
        bstart = np.zeros(nb + 1, dtype=np.int64)
        for k in range(m):
            bstart[bid[k] + 1] += 1
        for b in range(nb):
            bstart[b + 1] += bstart[b]
        fill = bstart[:-1].copy()
        mem = np.empty(m, dtype=np.int64)
        for k in range(m):
            mem[fill[bid[k]]] = r[k]
            fill[bid[k]] += 1
        rstart = np.zeros(n + 1, dtype=np.int64)
        for k in range(m):
            rstart[r[k] + 1] += 1
        for x in range(n):
            rstart[x + 1] += rstart[x]
        fill = rstart[:-1].copy()
        rbk = np.empty(m, dtype=np.int64)
        for b in range(nb):
            for k in range(bstart[b], bstart[b + 1]):
                x = mem[k]
                rbk[fill[x]] = b
                fill[x] += 1
        return bstart, mem, rstart, rbk
