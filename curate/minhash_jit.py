"""Compiled (numba) kernels for :mod:`curate.dedupe`: one pass over each row's bytes.

:func:`curate.dedupe.sketch` builds, per row, the one-permutation MinHash signature, its LSH band
keys and the estimator bytes. The numpy version (``dedupe._signatures_of`` + ``dedupe.band_keys``)
makes a dozen whole-array passes over every shingle (values, mixes, bin keys, ``np.minimum.at``,
densification), each through memory; these kernels do the same arithmetic shingle by shingle in
registers, row by row, and give bit-identical results (tests/test_dedupe.py compares them), about
6x faster. :func:`normalize_sketch` also normalizes and hashes each row in the same pass (no
normalized copy of the texts is kept), :func:`jaccard_rows` is the exact check of candidate pairs (normalizing
the rows it reads again), :func:`band_buckets` and :func:`round_mark` (with :func:`round_emit`, :func:`round_clear`) the LSH buckets and the star
clustering rounds. numba compiles them on first use and caches the machine code beside this file
(``cache=True``), so only the first run on a machine pays the compilation (a few seconds).

When numba cannot be imported, :data:`AVAILABLE` is False and dedupe keeps its numpy path.
"""

from __future__ import annotations

import numpy as np

try:  # numba is a dependency; the numpy path stays for platforms without its wheels
    from curate.jit_import import numba
except ImportError:  # pragma: no cover - exercised only without numba
    numba = None

AVAILABLE = numba is not None

_SENT = 0xFFFFFFFF


if AVAILABLE:
    from curate.utf8_jit import decode as _decode

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

    _PROBES = 16  # densification attempts whose probed bins are tabled (later ones are computed)

    @numba.njit(inline="always", cache=True)
    def _probe_table(num_perm, probe_salt):
        """``table[a, j]``: the bin that bin ``j`` probes at attempt ``a`` (``dedupe._probe``), the
        same for every row; plus the scratch arrays :func:`_finish` needs."""
        table = np.empty((_PROBES, num_perm), dtype=np.int32)
        for a in range(_PROBES):
            for j in range(num_perm):
                table[a, j] = np.int32(_mix(_u64(j) * _u64(0x100000001B3) + _u64(a + 1), probe_salt)
                                       & _u64(num_perm - 1))
        return table, np.empty(num_perm, dtype=np.int64), np.empty(num_perm, dtype=np.uint64)

    @numba.njit(inline="always", cache=True)
    def _finish(sig, raw, row, probe_salt, band_init, bands, r, keys, est, est_bins, probes):
        """Densify ``sig`` (from ``raw``, the bins before densification: bin j probes the bins
        ``dedupe._probe(num_perm, attempt, seed)[j]``, attempt 0, 1, ..., and takes the first
        non-empty one), then band keys and estimator bytes. ``probes``: :func:`_probe_table`.

        The empty bins are listed, then attempt by attempt each bin still empty reads its probed
        bin and stays listed only while that is empty too (no branch per bin, the first attempts'
        bins read from the table); the band hashes advance all bands a bin at a time (independent
        multiplies, not one chain of ``r`` per band)."""
        table, empty, h = probes
        num_perm = sig.shape[0]
        k = 0
        for j in range(num_perm):
            empty[k] = j
            k += raw[j] == _SENT
        a = 0
        while k:
            m = 0
            if a < _PROBES:
                for e in range(k):
                    j = empty[e]
                    v = raw[table[a, j]]
                    sig[j] = v
                    empty[m] = j
                    m += v == _SENT
            else:
                for e in range(k):
                    j = empty[e]
                    v = raw[_mix(_u64(j) * _u64(0x100000001B3) + _u64(a + 1), probe_salt) & _u64(num_perm - 1)]
                    sig[j] = v
                    empty[m] = j
                    m += v == _SENT
            k = m
            a += 1
        for j in range(bands):
            h[j] = band_init[j]
        for i in range(r):
            for j in range(bands):
                x = (h[j] ^ _u64(sig[i * bands + j])) * _u64(0x9E3779B97F4A7C15)
                h[j] = x ^ (x >> _u64(32))
        for j in range(bands):
            keys[row, j] = np.uint32(h[j] >> _u64(32))
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
        probes = _probe_table(num_perm, probe_salt)
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
            _finish(sig, raw, row, probe_salt, band_init, bands, r, keys, est, est_bins, probes)

    @numba.njit(cache=True, nogil=True)
    def sketch_values(values, offsets, salt, bits, probe_salt, band_init, bands, r, keys, est, lengths, start):
        """The same from shingle values already computed (``values[offsets[i]:offsets[i+1]]``: row i)."""
        num_perm = 1 << bits
        est_bins = est.shape[1]
        shift = _u64(64 - bits)
        raw = np.empty(num_perm, dtype=np.uint32)
        sig = np.empty(num_perm, dtype=np.uint32)
        probes = _probe_table(num_perm, probe_salt)
        for i in range(len(offsets) - 1):
            raw[:] = _SENT
            for p in range(offsets[i], offsets[i + 1]):
                _bin_min(raw, _mix(values[p], salt), shift)
            sig[:] = raw
            row = start + i
            lengths[row] = offsets[i + 1] - offsets[i]
            _finish(sig, raw, row, probe_salt, band_init, bands, r, keys, est, est_bins, probes)

    @numba.njit(inline="always", cache=True)
    def _shingle_at(v, pre_mix, pre_salt):
        return (_mix(v, pre_salt) & _u64(0xFFFFFFFFFF)) if pre_mix else v

    @numba.njit(inline="always", cache=True)
    def _slot(keys, stamps, v, stamp, bits):
        """The slot of ``v`` in the open-addressing set of this ``stamp``, or -1."""
        mask = (1 << bits) - 1
        k = np.int64((_u64(v) * _u64(0x9E3779B97F4A7C15)) >> _u64(64 - bits))
        while True:
            if stamps[k] != stamp:
                return -1
            if keys[k] == v:
                return k
            k = (k + 1) & mask

    @numba.njit(inline="always", cache=True)
    def _normalize_into(data, lo, hi, lut, out, t):
        """The normalized bytes of ``data[lo:hi]`` (see :func:`normalize_sketch`) written to ``out``
        from ``t`` on (``out`` needs 1 spare byte); returns the end. Branch-free: each byte is
        written where it would go and the end moves only for word bytes and the one space before a
        word that follows a separator. Unsigned indices: numba checks a signed index for a negative
        value on every access (2.6x slower here)."""
        p = np.uint64(lo)
        end = np.uint64(hi)
        while p < end and lut[data[p]] == 0:  # leading separators (strip)
            p += np.uint64(1)
        gap = np.uint64(0)
        u = np.uint64(t)
        for q in range(p, end):
            c = lut[data[q]]
            word = np.uint64(c != 0)
            out[u] = 32
            u += word & gap
            out[u] = c
            u += word
            gap = word ^ np.uint64(1)
        return np.int64(u)

    @numba.njit(inline="always", cache=True)
    def _space_if(out, t, cond):
        """A separator's one space written at ``out[t]`` when ``cond``; the new end."""
        if cond:
            out[t] = 32
            return t + _u64(1)
        return t

    @numba.njit(inline="always", cache=True)
    def _normalize_wide_into(data, lo, hi, lut, table, rdata, roff, out, t):
        """:func:`_normalize_into` for a text holding non-ASCII characters, one character at a time:
        ASCII bytes by ``lut``, a code point ``c`` by ``table[c]`` (see ``dedupe._wide_table``):
        0 a separator, 1 a word character kept as it is, ``k >= 2`` a word character written as
        ``rdata[roff[k - 2]:roff[k - 1]]`` (its lowercase, case-folded), -1 (or ``c`` past the
        table) a character only :func:`dedupe.normalize` handles. Returns the end, or -1 when the
        text holds such a character (nothing else is certain then). ``out`` needs twice the text's
        length (a mapped character is at most twice as long as it was) plus 1 spare byte."""
        t = _u64(t)  # unsigned indices throughout (see _normalize_into)
        begin = t
        gap = False
        p = _u64(lo)
        end = _u64(hi)
        size = _u64(len(table))
        while p < end:
            b = _u64(data[p])
            if b < _u64(0x80):
                c = lut[b]
                if c == 0:
                    gap = True
                else:
                    t = _space_if(out, t, gap and t > begin)
                    gap = False
                    out[t] = c
                    t += _u64(1)
                p += _u64(1)
                continue
            code, after = _decode(data, p)
            cp = _u64(code)
            k = _u64(after) - p
            if cp >= size:
                return -1
            e = table[cp]
            if e < 0:
                return -1
            if e == 0:
                gap = True
            else:
                t = _space_if(out, t, gap and t > begin)
                gap = False
                if e == 1:
                    for q in range(p, p + k):
                        out[t] = data[q]
                        t += _u64(1)
                else:
                    for q in range(_u64(roff[e - 2]), _u64(roff[e - 1])):
                        out[t] = rdata[q]
                        t += _u64(1)
            p += k
        return np.int64(t)

    @numba.njit(inline="always", cache=True)
    def _normalize_row(data, lo, hi, lut, table, rdata, roff, plain, out):
        """The normalized bytes of row ``data[lo:hi]`` at the start of ``out`` (see
        :func:`jaccard_rows`); returns their end."""
        if plain or not len(table):
            return _normalize_into(data, lo, hi, lut, out, 0)
        return _normalize_wide_into(data, lo, hi, lut, table, rdata, roff, out, 0)

    @numba.njit(cache=True, nogil=True)
    def outside_table(data, offsets, table):
        """Per text ``data[offsets[i]:offsets[i+1]]`` (valid UTF-8): True when it holds a character
        ``table`` leaves to polars (-1, or a code point past it; see :func:`_normalize_wide_into`)."""
        size = _u64(len(table))
        out = np.zeros(len(offsets) - 1, dtype=np.bool_)
        for i in range(len(offsets) - 1):
            p = _u64(offsets[i])
            hi = _u64(offsets[i + 1])
            while p < hi:
                b = _u64(data[p])
                if b < _u64(0x80):
                    p += _u64(1)
                    continue
                code, after = _decode(data, p)
                cp = _u64(code)
                if cp >= size or table[cp] < 0:
                    out[i] = True
                    break
                p = _u64(after)
        return out

    @numba.njit(inline="always", cache=True)
    def _chars_at_least(buf, lo, hi, n):
        """min(n, characters of the UTF-8 bytes buf[lo:hi]) (only short texts are counted)."""
        if hi - lo >= 4 * n:
            return n
        chars = 0
        for p in range(lo, hi):
            chars += (buf[p] & 0xC0) != 0x80
        return min(chars, n)

    @numba.njit(inline="always", cache=True)
    def _pad(buf, t, n):
        """``buf[:t]`` (UTF-8) padded with spaces to ``n`` characters (``str.pad_end``); returns the end."""
        for _ in range(_chars_at_least(buf, 0, t, n), n):
            buf[t] = 32
            t += 1
        return t

    @numba.njit(inline="always", cache=True)
    def _put(keys, stamps, v, stamp, bits):
        """(slot, new): ``v``'s slot in the open-addressing set of this ``stamp`` (slots of other
        stamps are empty), put there when it was not there yet (new True)."""
        mask = (1 << bits) - 1
        k = np.int64((_u64(v) * _u64(0x9E3779B97F4A7C15)) >> _u64(64 - bits))
        while True:
            if stamps[k] != stamp:
                stamps[k] = stamp
                keys[k] = v
                return k, True
            if keys[k] == v:
                return k, False
            k = (k + 1) & mask

    @numba.njit(cache=True, nogil=True)
    def jaccard_rows(data, offsets, lut, table, rdata, roff, plain, n, pre_mix, pre_salt, a, b, threshold, out):
        """``out[k]``: the Jaccard of the shingle sets of rows ``a[k]`` and ``b[k]`` (the ``n``-byte
        windows of each row normalized as :func:`normalize_sketch` does, padded to ``n``
        characters: ``dedupe.shingles``), exact for every pair at or above ``threshold``; a pair
        found below it early is -1. A row is normalized by ``lut`` when it is ASCII or already
        normalized (``plain[row]``; ``plain`` or ``table`` empty: every row), else by ``table``
        (:func:`_normalize_wide_into`), which must hold its every character.

        Pairs grouped by ``a``: each ``a`` row's set is built once (a hash set; per window its
        slot, per slot its first window, per window the distinct shingles before it). A ``b`` row
        (mostly a near copy) is compared with it byte for byte from both ends: its windows inside
        the common prefix are the ``a`` row's first ones (their distinct count is read, not
        hashed), those inside the common suffix are the ``a`` row's last ones (their slots are
        read); only the windows in between are looked up in the set, each shared shingle counted
        once (a stamp per slot) and the others put in a second set (few, for a near copy). The scan
        stops once even all the remaining windows shared could not reach ``threshold``."""
        m = len(a)
        longest = 1
        for k in range(m):
            longest = max(longest, offsets[a[k] + 1] - offsets[a[k]], offsets[b[k] + 1] - offsets[b[k]])
        if len(table):
            longest *= 2  # a mapped character grows at most 2x (dedupe._wide_table)
        room = (longest + n + 16) // 8 + 1
        cwords = np.zeros(room, dtype=np.uint64)
        cbuf = cwords.view(np.uint8)
        mwords = np.zeros(room, dtype=np.uint64)
        mbuf = mwords.view(np.uint8)
        bits = 4
        while (1 << bits) < 2 * (longest + n):
            bits += 1
        ka = np.empty(1 << bits, dtype=np.uint64)
        sa = np.full(1 << bits, -1, dtype=np.int64)
        first = np.empty(1 << bits, dtype=np.int64)     # a slot's first window in the a row
        shared = np.full(1 << bits, -1, dtype=np.int64)  # the last pair that counted this slot
        kb = np.empty(1 << bits, dtype=np.uint64)
        sb = np.full(1 << bits, -1, dtype=np.int64)
        slot_at = np.empty(8 * room, dtype=np.int64)     # the a row's window -> its slot
        distinct = np.empty(8 * room + 1, dtype=np.int64)  # distinct shingles of the a row's first k windows
        top = _u64(8 * (n - 1))
        i = 0
        while i < m:
            tc = _pad(cbuf, _normalize_row(data, offsets[a[i]], offsets[a[i] + 1], lut, table, rdata, roff,
                                           len(plain) == 0 or plain[a[i]], cbuf), n)
            size_a = 0
            distinct[0] = 0
            v = _u64(0)
            for p in range(0, n - 1):
                v = (v >> _u64(8)) | (_u64(cbuf[p]) << top)
            for p in range(n - 1, tc):
                v = (v >> _u64(8)) | (_u64(cbuf[p]) << top)
                q = p - n + 1
                s, new = _put(ka, sa, _shingle_at(v, pre_mix, pre_salt), i, bits)
                if new:
                    first[s] = q
                    size_a += 1
                slot_at[q] = s
                distinct[q + 1] = size_a
            j = i
            while j < m and a[j] == a[i]:
                tm = _pad(mbuf, _normalize_row(data, offsets[b[j]], offsets[b[j] + 1], lut, table, rdata, roff,
                                               len(plain) == 0 or plain[b[j]], mbuf), n)
                wm = tm - n + 1
                lim = min(tm, tc)
                pre = 0
                while pre + 8 <= lim and cwords[pre >> 3] == mwords[pre >> 3]:
                    pre += 8
                while pre < lim and cbuf[pre] == mbuf[pre]:
                    pre += 1
                suf = 0
                while suf < lim - pre and cbuf[tc - 1 - suf] == mbuf[tm - 1 - suf]:
                    suf += 1
                w0 = max(0, pre - n + 1)   # windows 0..w0-1: the a row's first ones
                ws = max(w0, tm - suf)     # windows ws..wm-1: the a row's last ones
                inter = distinct[w0]
                only = 0
                below = False
                v = _u64(0)
                if w0 < ws:
                    for p in range(w0, min(ws, wm) + n - 1):
                        v = (v >> _u64(8)) | (_u64(mbuf[p]) << top)
                        if p < w0 + n - 1:
                            continue
                        x = _shingle_at(v, pre_mix, pre_salt)
                        s = _slot(ka, sa, x, i, bits)
                        if s >= 0:
                            if first[s] >= w0 and shared[s] != j:
                                shared[s] = j
                                inter += 1
                        elif _put(kb, sb, x, j, bits)[1]:
                            only += 1
                            # at most every remaining window shared: J <= (inter + left) / (size_a + only)
                            if (inter + tm - 1 - p) / (size_a + only) < threshold:
                                below = True
                                break
                if not below:
                    for p in range(ws, wm):
                        s = slot_at[p - tm + tc]
                        if first[s] >= w0 and shared[s] != j:
                            shared[s] = j
                            inter += 1
                out[j] = -1.0 if below else inter / (size_a + only)
                j += 1
            i = j

    @numba.njit(cache=True, nogil=True)
    def normalize_sketch(data, offsets, rows, wide, lut, table, rdata, roff, n, pre_mix, pre_salt, salt, bits,
                         probe_salt, band_init, bands, r, keys, est, lengths, hashes, norm_len, with_sketch):
        """:func:`dedupe.normalize` and :func:`sketch_chars` in one pass, for rows that are ASCII
        (normalized here: lower case, every run of other characters one space, stripped) or already
        normalized (unchanged by the same steps); text i's results go to row ``rows[i]``. ``lut[c]``:
        the lowered byte c of a word (ASCII letters and digits, every byte of a non-ASCII
        character), 0 for a separator. Also ``hashes[row]``: two independent 64-bit hashes of the
        normalized bytes (exact duplicates), ``norm_len[row]``: their length. ``with_sketch`` False:
        only the hashes and lengths. With ``wide`` (one flag per text; empty: off) a text holding a
        non-ASCII byte is normalized here by ``table`` (:func:`_normalize_wide_into`; empty: none is), or,
        when it holds a character the table leaves out, skipped and flagged (it needs
        :func:`dedupe.normalize` first)."""
        num_perm = 1 << bits
        est_bins = est.shape[1]
        shift = _u64(64 - bits)
        raw = np.empty(num_perm, dtype=np.uint32)
        sig = np.empty(num_perm, dtype=np.uint32)
        probes = _probe_table(num_perm, probe_salt)
        longest = 0
        for i in range(len(offsets) - 1):
            longest = max(longest, offsets[i + 1] - offsets[i])
        if len(table):
            longest *= 2  # a mapped character grows at most 2x (dedupe._wide_table)
        words = np.zeros((longest + n + 16) // 8 + 1, dtype=np.uint64)
        buf = words.view(np.uint8)
        top = _u64(8 * (n - 1))
        for i in range(len(offsets) - 1):
            high = 0
            if len(wide):
                for p in range(np.uint64(offsets[i]), np.uint64(offsets[i + 1])):  # unsigned: vectorized
                    high |= data[p]
            if high & 0x80:
                m = _normalize_wide_into(data, offsets[i], offsets[i + 1], lut, table, rdata, roff, buf, 0) \
                    if len(table) else -1
                if m < 0:
                    wide[i] = True
                    continue
            else:
                m = _normalize_into(data, offsets[i], offsets[i + 1], lut, buf, 0)
            # the normalized bytes 8 at a time (little-endian words, the last one cut), into two hashes
            h1 = _u64(0x243F6A8885A308D3)
            h2 = _u64(0x13198A2E03707344)
            for k in range(m >> 3):
                w = words[k]
                h1 = _mix(h1 ^ w, _u64(0xA4093822299F31D0))
                h2 = _mix(h2 + w, _u64(0x082EFA98EC4E6C89))
            w = _u64(0)
            if m & 7:
                w = words[m >> 3] & ((_u64(1) << _u64(8 * (m & 7))) - _u64(1))
            row = rows[i]
            norm_len[row] = m
            hashes[row, 0] = _mix(h1 ^ w, _u64(m))
            hashes[row, 1] = _mix(h2 + w, _u64(m) ^ _u64(0x452821E638D01377))
            if not with_sketch:
                continue
            # pad to n characters (as str.pad_end), then the shingles as sketch_chars
            t = _pad(buf, m, n)
            raw[:] = _SENT
            v = _u64(0)
            for p in range(0, n - 1):
                v = (v >> _u64(8)) | (_u64(buf[p]) << top)
            if pre_mix:
                for p in range(_u64(n - 1), _u64(t)):
                    v = (v >> _u64(8)) | (_u64(buf[p]) << top)
                    _bin_min(raw, _mix(_mix(v, pre_salt) & _u64(0xFFFFFFFFFF), salt), shift)
            else:
                for p in range(_u64(n - 1), _u64(t)):  # unsigned: no negative-index check per byte
                    v = (v >> _u64(8)) | (_u64(buf[p]) << top)
                    _bin_min(raw, _mix(v, salt), shift)
            sig[:] = raw
            lengths[row] = t - n + 1
            _finish(sig, raw, row, probe_salt, band_init, bands, r, keys, est, est_bins, probes)

    # ------------------------------------------------------------------ star clustering rounds

    # One round of :func:`curate.dedupe.star_clusters` on the buckets in CSR form (bucket g's rows
    # mem[bstart[g]:bstart[g+1]], ascending), scanning only the buckets act[:nact] still in play: a
    # bucket leaves the list once fewer than 2 of its rows are undecided. A *center* is the first
    # (lowest) undecided row of a bucket that is the first of every bucket it is in (``blocked``:
    # all False between rounds). The round's pairs are (center, later undecided row of its
    # buckets), not yet sorted nor all unique (a pair met in a row's buckets one after another is
    # listed once: last[x] holds the center x was last paired with, -1 at first). Three scans,
    # each of which may run on a part of the buckets (``dedupe._round_pairs``: on both threads):
    # round_mark, then round_emit, then round_clear.

    @numba.njit(cache=True, nogil=True)
    def round_mark(bstart, mem, undecided, blocked, act, lo, hi):
        """``dedupe._round_pairs``' first scan, of the buckets ``act[lo:hi]``: those with 2 undecided
        rows or more are moved to ``act[lo:end]``, and their undecided rows but the first are marked
        no center (``blocked``). Returns ``(end, most)``: ``most`` bounds the pairs they give."""
        k = lo
        most = 0
        for i in range(lo, hi):
            g = act[i]
            c = 0
            for q in range(bstart[g], bstart[g + 1]):
                x = mem[q]
                if undecided[x]:
                    if c:
                        blocked[x] = True
                    c += 1
            if c >= 2:
                act[k] = g
                k += 1
                most += c - 1
        return k, most

    @numba.njit(cache=True, nogil=True)
    def round_emit(bstart, mem, undecided, blocked, last, act, lo, hi, a, b):
        """``dedupe._round_pairs``' pairs of the buckets ``act[lo:hi]`` (after :func:`round_mark` of
        all of them) into ``a``, ``b``; returns how many."""
        p = 0
        for i in range(lo, hi):
            g = act[i]
            c = -1
            for q in range(bstart[g], bstart[g + 1]):
                x = mem[q]
                if undecided[x]:
                    if c < 0:
                        c = x
                        if blocked[c]:
                            break
                    elif last[x] != c:
                        last[x] = c
                        a[p] = c
                        b[p] = x
                        p += 1
        return p

    @numba.njit(cache=True, nogil=True)
    def round_clear(bstart, mem, blocked, act, lo, hi):
        """Clear the marks :func:`round_mark` left in the buckets ``act[lo:hi]``."""
        for i in range(lo, hi):
            g = act[i]
            for q in range(bstart[g], bstart[g + 1]):
                blocked[mem[q]] = False

    @numba.njit(cache=True)
    def round_finish(a, b, j, threshold, kept, sim, checks, max_checks, undecided):
        """The end of a round: each checked row joins its most similar center at or above the
        threshold (ties: the earliest center); a row checked ``max_checks`` times in vain retires;
        the centers, the joined and the retired rows are decided. Returns the rows retired."""
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
        for k in range(len(a)):
            undecided[a[k]] = False
        return retired

    @numba.njit(cache=True, nogil=True)
    def prefilter(est, ea, eb, lengths, a, b, threshold, keep):
        """:func:`curate.dedupe.prefilter` (the same arithmetic, so the same pairs pass): ``keep[k]``
        when the share of equal estimator bytes of rows ``a[k]`` and ``b[k]`` (``est[ea[k]]``,
        ``est[eb[k]]``) is not more than 4.5 standard errors (+ 0.02) below ``threshold``."""
        bins = est.shape[1]
        for k in range(len(a)):
            x = est[ea[k]]
            y = est[eb[k]]
            same = 0
            for q in range(bins):
                same += x[q] == y[q]
            k_eff = min(bins, max(1, min(lengths[a[k]], lengths[b[k]])))
            margin = 4.5 * np.sqrt(threshold * (1 - threshold) / k_eff) + 0.02
            keep[k] = same / bins >= threshold - margin

    @numba.njit(cache=True)
    def exact_groups(hashes, norm_len):
        """``rep[i]``: the first row with row i's two hashes and length of the normalized text (an
        open-addressing table of the rows met so far), -1 for a row without text (length 0)."""
        n = len(norm_len)
        bits = 4
        while (1 << bits) < 2 * n:
            bits += 1
        mask = (1 << bits) - 1
        slot_row = np.full(1 << bits, -1, dtype=np.int64)
        rep = np.empty(n, dtype=np.int64)
        for i in range(n):
            if norm_len[i] == 0:
                rep[i] = -1
                continue
            k = np.int64((hashes[i, 0] * _u64(0x9E3779B97F4A7C15)) >> _u64(64 - bits))
            while True:
                x = slot_row[k]
                if x < 0:
                    slot_row[k] = i
                    rep[i] = i
                    break
                if hashes[x, 0] == hashes[i, 0] and hashes[x, 1] == hashes[i, 1] and norm_len[x] == norm_len[i]:
                    rep[i] = x
                    break
                k = (k + 1) & mask
        return rep

    @numba.njit(cache=True, nogil=True)
    def _group(of, values, groups):
        """Counting sort: (start, out), ``out[start[g]:start[g+1]]`` the ``values`` of the entries
        whose ``of`` is g, in entry order (no comparison sort)."""
        start = np.zeros(groups + 1, dtype=np.int64)
        for k in range(len(of)):
            start[of[k] + 1] += 1
        for g in range(groups):
            start[g + 1] += start[g]
        fill = start[:-1].copy()
        out = np.empty(len(of), dtype=values.dtype)
        for k in range(len(of)):
            out[fill[of[k]]] = values[k]
            fill[of[k]] += 1
        return start, out

    @numba.njit(cache=True)
    def bucket_csr(g, r):
        """The bucket table (``g`` bucket key, ``r`` row) in CSR form (bstart, mem) as
        :func:`round_pairs` reads it; buckets numbered in order of first appearance, rows in table order."""
        m = len(g)
        bits = 4
        while (1 << bits) < 2 * m:
            bits += 1
        mask = (1 << bits) - 1
        slot_key = np.empty(1 << bits, dtype=np.uint64)
        slot_id = np.full(1 << bits, -1, dtype=np.int64)
        bid = np.empty(m, dtype=np.int32)
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
        return _group(bid, r.astype(np.int32), nb)

    @numba.njit(cache=True, nogil=True)
    def band_buckets(keys):
        """The LSH buckets of the band keys ``keys`` (n, bands): every (band, key) shared by >= 2
        rows, in CSR form (bstart, mem) as :func:`round_pairs` reads it, each bucket's rows
        ascending; the same buckets as ``dedupe.buckets``. Per band the rows are split by the top
        bits of their key (a counting sort) into parts of a few hundred rows, whose keys are
        counted in a small hash table that stays in cache; a key's bucket gets its place in ``mem``
        when its first row is met."""
        n, bands = keys.shape
        pbits = 0
        while (n >> pbits) > 256:
            pbits += 1
        parts = 1 << pbits
        rows = np.arange(n, dtype=np.int32)
        part = np.empty(n, dtype=np.int32)
        cap = max(16, 2 * n)
        mem = np.empty(cap, dtype=np.int32)
        bstart = np.empty(max(16, n), dtype=np.int64)
        m = 0
        nb = 0
        tbits = 4
        tkey = np.empty(1 << tbits, dtype=np.uint32)
        tcnt = np.empty(1 << tbits, dtype=np.int64)
        tstamp = np.full(1 << tbits, -1, dtype=np.int64)
        stamp = 0
        block = 8  # bands copied out of the (n, bands) rows at a time
        cols = np.empty((block, n), dtype=np.uint32)
        pkey = np.empty(n, dtype=np.uint32)
        for j in range(bands):
            if j % block == 0:
                for x in range(n):
                    for i in range(min(block, bands - j)):
                        cols[i, x] = keys[x, j + i]
            col = cols[j % block]
            for x in range(n):
                part[x] = np.int32(col[x] >> np.uint32(32 - pbits)) if pbits else 0
            pstart, prow = _group(part, rows, parts)
            for k in range(n):
                pkey[k] = col[prow[k]]
            for q in range(parts):
                lo, hi = pstart[q], pstart[q + 1]
                if hi - lo < 2:
                    continue
                need = 4
                while (1 << need) < 2 * (hi - lo):
                    need += 1
                if need > tbits:
                    tbits = need
                    tkey = np.empty(1 << tbits, dtype=np.uint32)
                    tcnt = np.empty(1 << tbits, dtype=np.int64)
                    tstamp = np.full(1 << tbits, -1, dtype=np.int64)
                mask = (1 << need) - 1
                stamp += 1
                for k in range(lo, hi):  # count the keys
                    key = pkey[k]
                    h = np.int64((_u64(key) * _u64(0x9E3779B97F4A7C15)) >> _u64(32)) & mask
                    while tstamp[h] == stamp and tkey[h] != key:
                        h = (h + 1) & mask
                    if tstamp[h] != stamp:
                        tstamp[h] = stamp
                        tkey[h] = key
                        tcnt[h] = 0
                    tcnt[h] += 1
                for k in range(lo, hi):  # rows of keys seen twice or more, each to its bucket's place
                    key = pkey[k]
                    h = np.int64((_u64(key) * _u64(0x9E3779B97F4A7C15)) >> _u64(32)) & mask
                    while tkey[h] != key:
                        h = (h + 1) & mask
                    c = tcnt[h]
                    if c > 0 and c < 2:
                        continue
                    if c > 0:  # the key's first row: its bucket's rows go to mem[m:m+c]
                        if m + c > cap:
                            cap = max(2 * cap, m + c)
                            grown = np.empty(cap, dtype=np.int32)
                            grown[:m] = mem[:m]
                            mem = grown
                        if nb + 1 >= len(bstart):
                            grown64 = np.empty(2 * len(bstart), dtype=np.int64)
                            grown64[:nb] = bstart[:nb]
                            bstart = grown64
                        bstart[nb] = m
                        nb += 1
                        tcnt[h] = -m  # from now on: minus the next place
                        m += c
                    at = -tcnt[h]
                    mem[at] = prow[k]
                    tcnt[h] -= 1
        bstart[nb] = m
        return bstart[:nb + 1].copy(), mem[:m].copy()

