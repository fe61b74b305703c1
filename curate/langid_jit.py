"""Compiled (numba) cheap steps of :mod:`curate.langid` for whole columns: one pass over each row's
UTF-8 bytes.

:meth:`curate.langid._Detector.cheap` decides a text in Python: a script count (``_script``), then a
sum over its whitespace chunks of per-word facts looked up in a chunk cache (ms/id weight, English
or ms/id vocabulary, lower-case first letter). Its cost is the cache misses: real data is full of
chunks never seen before (``"kerana,"``, ``"(2019)."``), and each miss runs a regex in Python.
:func:`scan` does the same per row in compiled code, with the same arithmetic in the same order, so
its verdicts are identical (``tests/test_langid.py`` compares both paths):

* code points are classified by tables built from Python's own ``re`` classes (``[^\\W\\d_]``
  letters, ``\\s``, ``\\w``, the Latin/Hangul/CJK ranges of ``langid``) and ``str.lower``/``islower``;
* a word of ASCII letters is read 8 bytes at a time (:func:`_letters8`: which bytes are letters, by
  bit arithmetic on the 8 bytes at once), its first 16 letters making its key as they are;
* words are looked up in an open-addressing table of the lower-cased vocabulary: a word of at most
  16 ASCII letters (nearly all words) by its bytes packed in two 64-bit integers, any other by a
  64-bit hash and then an exact comparison of its code points;
* a mid-sentence ``Anda`` becomes the pseudo-word ``andacap`` by the same rule as ``langid._ANDA_MID``.

What the kernel cannot reproduce it hands back (code :data:`PY`): a word holding a letter whose
lower case is not one code point, or a Greek capital sigma (context-dependent lower case); those rows
take the per-text path. Code removal (``langid._clean``) runs in Python before, on the rows holding
a trigger character only. numba compiles on first use and caches the machine code beside this file.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import sys
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

try:  # numba is a dependency; without it langid keeps its per-text path
    from curate.jit_import import numba
except ImportError:  # pragma: no cover - exercised only without numba
    numba = None

AVAILABLE = numba is not None

# result codes (index into CODES); PENDING: lingua's turn; PY: the per-text path's turn
CODES = ("ms", "id", "en", "ko", "other", "und")
MS, ID, EN, KO, OTHER, UND, PENDING, PY = range(8)

# code point flags
LETTER, LOWER, SPACE, WORD, LATIN, HANGUL, CJK, SPECIAL = (1 << i for i in range(8))
N_CODEPOINTS = 0x110000
_TABLES_VERSION = 1  # bump when the flags above change meaning


@lru_cache(maxsize=1)
def char_tables(latin: str, hangul: str, cjk: str) -> tuple[np.ndarray, np.ndarray]:
    """(flags per code point, lower case per code point) from Python's own ``re`` classes and
    ``str`` methods; ``latin``/``hangul``/``cjk`` are langid's character classes. Building them takes
    ~0.3 s, so they are kept beside numba's cache (keyed by the Unicode version and the classes)."""
    key = repr((sys.version_info[:2], unicodedata.unidata_version, latin, hangul, cjk, _TABLES_VERSION)).encode()
    saved = cached_arrays("langid_chars", key, lambda: dict(zip(("flags", "lower"), _build_char_tables(
        latin, hangul, cjk))))
    return saved["flags"], saved["lower"]


def cached_arrays(name: str, key: bytes, build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """``build()``'s arrays, kept beside numba's cache in a file named for ``name`` and a hash of
    ``key`` (what they are built from): later processes load them instead of building them again."""
    digest = hashlib.blake2b(key, digest_size=8).hexdigest()
    path = Path(__file__).with_name("__pycache__") / f"{name}.{digest}.npz"
    try:
        with np.load(path) as saved:
            return {k: saved[k] for k in saved.files}
    except (OSError, KeyError, ValueError):
        pass
    arrays = build()
    try:  # atomic: a concurrent process reads a whole file or none
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except OSError:  # a read-only install: built again next time
        pass
    return arrays


def _build_char_tables(latin: str, hangul: str, cjk: str) -> tuple[np.ndarray, np.ndarray]:
    every = np.arange(N_CODEPOINTS, dtype=np.uint32).tobytes().decode("utf-32-le", "surrogatepass")
    flags = np.zeros(N_CODEPOINTS, np.uint8)
    # \w is [^\W\d_] plus \d plus "_" (scanning for \w itself is 10x slower: runs of ideographs)
    for pattern, bit in ((r"[^\W\d_]", LETTER | WORD), (r"\d", WORD), ("_", WORD), (r"\s", SPACE),
                         (latin, LATIN), (hangul, HANGUL), (cjk, CJK)):
        for m in re.finditer(f"(?:{pattern})+", every):
            flags[m.start():m.end()] |= bit
    lower = np.arange(N_CODEPOINTS, dtype=np.int32)
    letters = np.flatnonzero(flags & LETTER)
    chars = list(letters.astype(np.uint32).tobytes().decode("utf-32-le"))
    lows = "\0".join(chars).lower().split("\0")  # each letter lowered alone (no sigma context)
    single = np.fromiter(map(len, lows), np.int64, len(lows)) == 1
    lower[letters[single]] = np.fromiter(map(ord, (low for low, one in zip(lows, single) if one)), np.int32)
    flags[letters[~single]] |= SPECIAL
    flags[letters[np.fromiter(map(str.islower, chars), np.bool_, len(chars))]] |= LOWER
    flags[0x3A3] |= SPECIAL  # GREEK CAPITAL SIGMA: str.lower gives σ or ς by context
    return flags, lower


def word_table(words: list[str], weights: dict[str, float], fam: frozenset[str], eng: frozenset[str]):
    """The vocabulary as arrays for :func:`scan`: an open-addressing table of 32-byte slots (one
    cache line holds two: a looked-up word touches one line), the same table seen as floats, and the
    keys' code points. A slot holds the key, the weight and the key's place, length and flags (see
    :func:`_build`). A word of at most 16 ASCII letters is its own key (its bytes packed in two 64-bit
    integers, the second 0 for a word of at most 8: no hash, no second pass over its letters, no
    comparison of code points); a longer or non-ASCII word is keyed by a 64-bit hash and its code
    points are compared on a match."""
    cps = [np.frombuffer(w.encode("utf-32-le"), dtype=np.int32) for w in words]
    offsets = np.zeros(len(words) + 1, np.int64)
    np.cumsum([len(c) for c in cps], out=offsets[1:])
    key_cp = np.concatenate(cps) if cps else np.zeros(0, np.int32)
    weight = np.array([weights.get(w, 0.0) for w in words], np.float64)
    is_en = np.array([w in eng for w in words], np.bool_)
    is_fam = np.array([w in fam for w in words], np.bool_)
    size = 1 << max(4, (2 * len(words)).bit_length())
    slots = aligned_slots(np.zeros(_SLOT * (size + 1), np.uint64))  # + the empty slot (see scan)
    _build(key_cp, offsets, weight, is_en, is_fam, slots, slots.view(np.float64))
    return slots, slots.view(np.float64), key_cp


_SLOT = 4  # 64-bit words per slot (32 bytes)


def aligned_slots(slots: np.ndarray) -> np.ndarray:
    """``slots`` in memory aligned to 64 bytes (a slot never straddles two cache lines)."""
    if slots.ctypes.data % 64 == 0:
        return slots
    raw = np.empty(len(slots) + 8, np.uint64)
    start = (-raw.ctypes.data % 64) // 8
    out = raw[start:start + len(slots)]
    out[:] = slots
    return out


if AVAILABLE:
    from curate.utf8_jit import decode as _decode

    _u64 = numba.types.uint64
    _FNV_INIT = 0xCBF29CE484222325
    _FNV_PRIME = 0x100000001B3
    _GOLD = 0x9E3779B97F4A7C15
    _MIX = 0xC2B2AE3D27D4EB4F
    _ALL = 0xFFFFFFFFFFFFFFFF
    _PACK = 16  # an ASCII word of at most this many letters is its own key (two 64-bit integers)

    @numba.njit(inline="always", cache=True)
    def _step(h, cp):
        return (h ^ _u64(cp)) * _u64(_FNV_PRIME)

    @numba.njit(inline="always", cache=True)
    def _final(h):
        return h ^ (h >> _u64(29))

    _USED = 1 << 63
    _EN = 1 << 62
    _FAM = 1 << 61
    _PACKED = 1 << 60
    _ANDACAP = sum(ord(ch) << (8 * k) for k, ch in enumerate("andacap"))  # the pseudo-word, packed

    from llvmlite import ir as _ir
    from numba.core import types as _types
    from numba.extending import intrinsic as _intrinsic

    @_intrinsic
    def _load8(typingctx, arr, idx):
        """The 8 bytes of ``arr`` (uint8) at ``idx`` as a little-endian uint64 (an unaligned load)."""
        def codegen(context, builder, signature, args):
            ary = context.make_array(signature.args[0])(context, builder, args[0])
            ptr = builder.bitcast(builder.gep(ary.data, [args[1]]), _ir.IntType(64).as_pointer())
            return builder.load(ptr, align=1)
        return _types.uint64(arr, idx), codegen

    @_intrinsic
    def _ctz(typingctx, x):
        """The number of trailing zero bits of the uint64 ``x`` (not 0)."""
        def codegen(context, builder, signature, args):
            return builder.cttz(args[0], _ir.Constant(_ir.IntType(1), 1))
        return _types.uint64(x), codegen

    _HIGH = 0x8080808080808080
    _CASE = 0x2020202020202020

    @numba.njit(inline="always", cache=True)
    def _letters8(v):
        """How many of the 8 bytes of ``v`` (little-endian) are ASCII letters before the first
        that is not (8 if all are), SWAR: a byte b is a letter when (b | 0x20) - 0x61 < 26."""
        t = (v | _u64(_CASE)) & _u64(0x7F7F7F7F7F7F7F7F)
        at_least_a = (t + _u64(0x1F1F1F1F1F1F1F1F)) & _u64(_HIGH)
        past_z = (t + _u64(0x0505050505050505)) & _u64(_HIGH)
        other = ~(at_least_a & ~past_z & ~(v & _u64(_HIGH))) & _u64(_HIGH)
        return 8 if other == _u64(0) else np.int64(_ctz(other)) >> 3

    @numba.njit(inline="always", cache=True)
    def _geometry(slots):
        """(shift, mask) of a table of 2**k slots: a key's first slot is the top k bits of a
        multiplicative hash (``(key * GOLD) >> shift``)."""
        n = len(slots) // _SLOT - 1  # the last slot is the empty one after the table
        bits = 0
        while (1 << bits) < n:
            bits += 1
        return _u64(64 - bits), _u64(n - 1)

    @numba.njit(cache=True)
    def _build(key_cp, offsets, weight, is_en, is_fam, slots, slot_w):
        """Slot ``s`` (linear probing): ``slots[4s]`` the key (packed ASCII or hash, see
        :func:`word_table`), ``slot_w[4s+1]`` its weight, ``slots[4s+2]`` used/English/ms-id/packed
        bits, its length (bits 32-47) and its first code point's place in ``key_cp`` (bits 0-31),
        ``slots[4s+3]`` a packed word's 9th to 16th letters (0 for a shorter word or a hash)."""
        shift, mask = _geometry(slots)
        for k in range(len(offsets) - 1):
            n = offsets[k + 1] - offsets[k]
            packed = n <= _PACK
            key = key2 = _u64(0)
            for i in range(n):
                cp = key_cp[offsets[k] + i]
                if cp >= 128 or cp == 0:
                    packed = False
                elif i < 8:
                    key |= _u64(cp) << _u64(8 * i)
                elif i < _PACK:
                    key2 |= _u64(cp) << _u64(8 * (i - 8))
            if not packed:
                h = _u64(_FNV_INIT)
                for i in range(offsets[k], offsets[k + 1]):
                    h = _step(h, key_cp[i])
                key, key2 = _final(h), _u64(0)
            s = _first(key, key2, shift)
            while slots[_SLOT * s + 2] != 0:
                s = (s + _u64(1)) & mask
            slots[_SLOT * s] = key
            slots[_SLOT * s + 3] = key2
            slot_w[_SLOT * s + 1] = weight[k]
            info = _u64(_USED) | (_u64(n) << _u64(32)) | _u64(offsets[k])
            if packed:
                info |= _u64(_PACKED)
            if is_en[k]:
                info |= _u64(_EN)
            if is_fam[k]:
                info |= _u64(_FAM)
            slots[_SLOT * s + 2] = info

    @numba.njit(inline="always", cache=True)
    def _first(key, key2, shift):
        """A key's first slot: the top bits of a multiplicative hash (``key2``, the 9th to 16th
        letters of a packed word, is 0 for a shorter word or a hashed key)."""
        return ((key ^ (key2 * _u64(_MIX))) * _u64(_GOLD)) >> shift

    @numba.njit(inline="always", cache=True)
    def _find_packed(key, key2, slots, shift, mask):
        """The slot (``4s``) of the packed ASCII word ``key``, ``key2``, or -1."""
        s = _first(key, key2, shift)
        while True:
            info = slots[_SLOT * s + 2]
            if info == 0:
                return -1
            if slots[_SLOT * s] == key and slots[_SLOT * s + 3] == key2 and (info & _u64(_PACKED)):
                return _SLOT * s
            s = (s + _u64(1)) & mask

    @numba.njit(inline="always", cache=True)
    def _find(buf, n, h, slots, key_cp, shift, mask):
        """The slot (``4s``) of the hashed key equal to ``buf[:n]`` (hash ``h``), or -1."""
        s = _first(h, _u64(0), shift)
        while True:
            info = slots[_SLOT * s + 2]
            if info == 0:
                return -1
            if slots[_SLOT * s] == h and not (info & _u64(_PACKED)) and ((info >> _u64(32)) & _u64(0xFFFF)) == n:
                o = info & _u64(0xFFFFFFFF)
                same = True
                for i in range(n):
                    if key_cp[o + _u64(i)] != buf[i]:
                        same = False
                        break
                if same:
                    return _SLOT * s
            s = (s + _u64(1)) & mask

    @numba.njit(inline="always", cache=True)
    def _before(data, lo, i):
        """(code point, its start) of the character ending right before byte ``i`` (> ``lo``)."""
        j = i - 1
        while j > lo and (data[j] & 0xC0) == 0x80:
            j -= 1
        return _decode(data, j)[0], j

    @numba.njit(inline="always", cache=True)
    def _alnum(flags, c):  # [^\W_]
        return (flags[c] & WORD) != 0 and c != 95

    @numba.njit(cache=True)
    def _anda_mid(data, lo, start, flags):
        """``langid._ANDA_MID`` at a word ``Anda`` starting at byte ``start`` (the word boundary
        after it is checked by the caller): whitespace before it, then optionally one of ``,;:``,
        then a letter or digit."""
        if start <= lo:
            return False
        c, j = _before(data, lo, start)
        if not flags[c] & SPACE:
            return False
        while j > lo:
            c, j = _before(data, lo, j)
            if not flags[c] & SPACE:
                if _alnum(flags, c):
                    return True
                if (c == 44 or c == 59 or c == 58) and j > lo:  # , ; :
                    return _alnum(flags, _before(data, lo, j)[0])
                return False
        return False

    @numba.njit(inline="always", cache=True)
    def _script(hangul, cjk, latin, chunks, nonlatin, code, conf, r):
        """``langid._script`` of a row holding a non-Latin letter, from its counts (code points of
        the Hangul, CJK and Latin ranges, whitespace-separated chunks, non-Latin letters: counted by
        :func:`scan` on its one pass over the row): True when it decides the row."""
        h, k3 = hangul * 3, cjk * 3
        other = nonlatin - (h + k3) // 3
        tot = h + k3 + other + latin
        if tot == 0 or (h < max(k3 + other, latin) and k3 + other <= latin):
            return False
        if h >= k3 + other:
            code[r], share = KO, h
        else:
            code[r], share = OTHER, k3 + other
        conf[r] = min(1.0, 0.5 + share / tot / 2) * _length_factor(max(chunks, k3 // 6))
        return True

    @numba.njit(inline="always", cache=True)
    def _length_factor(n):
        return min(1.0, 0.3 + 0.7 * (n - 1) / 4) if n > 0 else 0.0

    @numba.njit(inline="always", cache=True)
    def _sigmoid(z):
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    @numba.njit(inline="always", cache=True)
    def _count(nk, keys, keys2, found, lower_chunk, slots, slot_w, shift, mask, none):
        """A row's counts from its words (see :func:`scan`): English, ms/id and counted words and
        the summed weight, chunk by chunk in order (the per-text path's float sums). The packed
        words are looked up here, one after another, apart from the scan of the bytes (the look-ups
        of a row overlap: ~15% faster than each at its word). A first pass reading only each word's
        first slot, to overlap the cache misses, made the scan 4-7% slower (2026-12-01, recombined 1M).

        Indexes are cast to unsigned where they are known not to be negative, here and in
        :func:`scan`: numba then drops the wraparound of a negative index (~10% of the scan)."""
        for t in range(nk):
            if keys[t] != _u64(0):
                k = _find_packed(keys[t], keys2[t], slots, shift, mask)
                found[t] = k if k >= 0 else none
        n_en = n_fam = n_cnt = 0
        total = chunk_w = 0.0
        last = -1
        for t in range(nk):
            chunk = lower_chunk[_u64(t)] >> 1
            new = chunk != last  # a new chunk: the last one's sum joins the total (no branch)
            total += chunk_w if new else 0.0
            chunk_w = 0.0 if new else chunk_w
            last = chunk
            k = found[_u64(t)]
            chunk_w += slot_w[_u64(k + 1)]  # the empty slot's weight is 0.0: the sum is unchanged
            info = slots[_u64(k + 2)]
            en = np.int64((info >> _u64(62)) & _u64(1))
            fam = np.int64((info >> _u64(61)) & _u64(1))
            n_en += en
            n_fam += fam
            n_cnt += en | fam | (lower_chunk[_u64(t)] & 1)
        return n_en, n_fam, n_cnt, total + chunk_w

    @numba.njit(cache=True, nogil=True)
    def scan(data, offsets, flags, lower, slots, slot_w, key_cp, hangul_keys, bias, family_share, code, conf, score,
             nwords, vocab, dirty):
        """Per row ``r`` (bytes ``data[offsets[r]:offsets[r+1]]``, cut): the code (:data:`MS` ...
        :data:`PY`), confidence before rounding, ms/id score, counted words and the English or ms/id
        vocabulary words among them (the last three are what lingua's turn needs: ``langid._Pending``),
        and ``dirty[r]``: the row holds what
        ``langid._clean`` removes (a backtick, ``~~~``, ``://``, ``www.``, ``@`` or ``<``), so its
        verdict stands only after cleaning in Python and scanning again. ``hangul_keys``: some key
        holds a Hangul letter; when none does (the vocabulary has none), a word holding one is
        known to be no key and is not looked up (a Korean row's words: ~18% of its scan)."""
        shift, mask = _geometry(slots)
        longest = 7
        nbytes = len(data)
        for r in range(len(offsets) - 1):
            longest = max(longest, offsets[r + 1] - offsets[r])
        buf = np.empty(longest, np.int32)  # a word has at most as many code points as its row bytes
        # a row's words: packed key (0: looked up already), slot, chunk and lower-case first letter
        keys = np.empty(longest + 1, np.uint64)
        keys2 = np.empty(longest + 1, np.uint64)
        found = np.empty(longest + 1, np.int64)
        lower_chunk = np.empty(longest + 1, np.int64)
        none = len(slots) - _SLOT  # the slot after the table: no word, weight 0, no flags
        for r in range(len(offsets) - 1):
            lo, hi = offsets[r], offsets[r + 1]
            score[r] = bias
            nwords[r] = 0
            vocab[r] = 0
            conf[r] = 0.0
            dirty[r] = False
            if hi == lo:
                code[r] = UND
                continue
            nk = chunk = nonlatin = 0  # words so far, chunks so far
            in_chunk = first_lower = special = unclean = hangul = False
            n_hangul = n_cjk = n_latin = 0  # what _script counts: code points of each script
            packable = True  # the word so far is ASCII once lower-cased (its key: the packed bytes)
            key = key2 = _u64(0)
            wlen = 0
            wstart = lo
            i = lo
            while True:
                start = i
                if i < hi:
                    b = data[_u64(i)]
                    if b < 0x80:
                        i += 1
                        if 97 <= b <= 122 or 65 <= b <= 90:  # an ASCII letter, and the run of them after it
                            if wlen == 0:
                                wstart = start
                                first_lower = b >= 97
                                packable = True
                                key = key2 = _u64(0)
                                if start + 16 <= nbytes:  # its first 16 letters, 8 bytes at a time
                                    v = _load8(data, start)
                                    n = min(_letters8(v), hi - start)
                                    key = (v | _u64(_CASE)) & (_u64(_ALL) >> _u64(64 - 8 * n))
                                    if n == 8 and hi - start > 8:
                                        v = _load8(data, start + 8)
                                        n2 = min(_letters8(v), hi - start - 8)
                                        if n2:
                                            key2 = (v | _u64(_CASE)) & (_u64(_ALL) >> _u64(64 - 8 * n2))
                                        n += n2
                                    wlen = n
                                    i = start + n
                                else:
                                    key = _u64(b | 32)
                                    wlen = 1
                            elif wlen < 8:
                                key |= _u64(b | 32) << _u64(8 * wlen)
                                wlen += 1
                            else:
                                if wlen < _PACK:
                                    key2 |= _u64(b | 32) << _u64(8 * (wlen - 8))
                                wlen += 1
                            while i < hi:
                                b = data[_u64(i)]
                                if not (97 <= b <= 122 or 65 <= b <= 90):
                                    break
                                if wlen < 8:
                                    key |= _u64(b | 32) << _u64(8 * wlen)
                                elif wlen < _PACK:
                                    key2 |= _u64(b | 32) << _u64(8 * (wlen - 8))
                                wlen += 1
                                i += 1
                            n_latin += i - start
                            in_chunk = True
                            continue
                        c = np.int32(b)  # not a letter: none of the script ranges (n_latin ...)
                        f = flags[_u64(c)]
                    else:
                        c, i = _decode(data, i)
                        f = flags[_u64(c)]
                        n_hangul += (f & HANGUL) != 0
                        n_cjk += (f & CJK) != 0
                        n_latin += (f & LATIN) != 0
                        if f & LETTER:
                            lc = lower[_u64(c)]
                            if wlen == 0:
                                wstart = start
                                first_lower = (f & LOWER) != 0
                                packable = True
                                key = key2 = _u64(0)
                            if f & HANGUL and not hangul_keys:
                                packable = False
                                hangul = True
                            elif lc >= 128:
                                packable = False
                            elif wlen < 8:
                                key |= _u64(lc) << _u64(8 * wlen)
                            elif wlen < _PACK:
                                key2 |= _u64(lc) << _u64(8 * (wlen - 8))
                            wlen += 1
                            if f & SPECIAL:
                                special = True
                            if not f & LATIN:
                                nonlatin += 1
                            in_chunk = True
                            continue
                else:
                    c, f = -1, np.uint8(SPACE)  # the end closes the last word and chunk
                if c == 96 or c == 64 or c == 60:  # ` @ <
                    unclean = True
                elif c == 126 or c == 58:  # ~~~ ://
                    nx = 126 if c == 126 else 47
                    unclean = unclean or (i + 1 < hi and data[i] == nx and data[i + 1] == nx)
                if wlen:  # a word ends before c
                    if c == 46 and wlen >= 3 and start - wstart >= 3 and data[start - 1] == 119 \
                            and data[start - 2] == 119 and data[start - 3] == 119:  # www.
                        unclean = True
                    if wlen == 4 and start - wstart == 4 and data[wstart] == 65 and data[wstart + 1] == 110 \
                            and data[wstart + 2] == 100 and data[wstart + 3] == 97 \
                            and (c < 0 or not f & WORD) and _anda_mid(data, lo, wstart, flags):
                        key, key2, wlen, packable, first_lower = _u64(_ANDACAP), _u64(0), 7, True, True
                    if packable and wlen <= _PACK:  # looked up after the row
                        keys[_u64(nk)] = key
                        keys2[_u64(nk)] = key2
                        found[_u64(nk)] = -1
                    elif hangul:  # no key holds a Hangul letter: no look-up
                        keys[_u64(nk)] = _u64(0)
                        found[_u64(nk)] = none
                    else:  # a long or non-ASCII word: its lower-cased code points again, hashed
                        h = _u64(_FNV_INIT)
                        j = wstart
                        for m in range(wlen):
                            if data[j] < 0x80:
                                cc = np.int32(data[j])
                                j += 1
                                lc = cc + 32 if 65 <= cc <= 90 else cc
                            else:
                                cc, j = _decode(data, j)
                                lc = lower[cc]
                            buf[m] = lc
                            h = _step(h, lc)
                        k = _find(buf, wlen, _final(h), slots, key_cp, shift, mask)
                        keys[nk] = _u64(0)
                        found[nk] = k if k >= 0 else none
                    lower_chunk[_u64(nk)] = (chunk << 1) | first_lower
                    nk += 1
                    wlen = 0
                    hangul = False
                if f & SPACE:
                    if in_chunk:
                        chunk += 1
                        in_chunk = False
                    if c < 0:
                        break
                else:
                    in_chunk = True
            n_en, n_fam, n_cnt, total = _count(nk, keys, keys2, found, lower_chunk, slots, slot_w, shift, mask, none)
            n_all = nk
            dirty[r] = unclean
            if nonlatin and _script(n_hangul, n_cjk, n_latin, chunk, nonlatin, code, conf, r):
                continue
            if special:
                code[r] = PY
                continue
            s = bias + total
            score[r] = s
            n = n_cnt
            if n == 0:
                if n_all == 0:
                    code[r] = UND
                    continue
                n = n_all
            nwords[r] = n
            vocab[r] = n_en + n_fam
            if n_fam >= family_share * n and n_fam >= 2 * n_en:
                p = _sigmoid(s)
                code[r] = MS if p >= 0.5 else ID
                conf[r] = (n_fam + 1) / (n_fam + n_en + 2) * _length_factor(n) * max(p, 1 - p)
            elif n_en >= family_share * n and n_en >= 2 * n_fam:
                code[r] = EN
                conf[r] = (n_en + 1) / (n_fam + n_en + 2) * _length_factor(n)
            else:
                code[r] = PENDING
