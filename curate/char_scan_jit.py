"""Compiled (numba) per-character scans of a text column, read in place from polars' string views.

Two questions the clean rules ask of every cell, answered in one pass over its UTF-8 bytes instead
of a regex over all of them:

* :func:`letter_counts`: a text's length in characters (what ``str.len_chars`` counts) and a lower
  bound of its letters (``\\p{L}``): the ASCII letters and the characters of :data:`LETTERS`, ranges
  that are letters in every Unicode version polars' regex engine may use (a test checks each range
  against ``\\p{L}``). polars' ``str.replace_all(r"\\p{L}+", "")`` costs ~1.5 s of CPU per million
  prompts; a rule that only asks whether letters reach a share of a text keeps the few rows the
  bound cannot settle and counts those with the regex.
* :func:`has_control`: whether a text holds a character of :data:`curate.clean.rules.encoding`'s
  control pattern (C0 controls but tab and newline, CR, DEL, C1 controls, zero-width space, bidi
  marks, word joiner, BOM, line and paragraph separators): the same answer as
  ``str.contains(pattern)`` (a test checks every code point), 8 bytes at a time where a text is
  plain ASCII without control bytes.

The texts are read where polars keeps them (Arrow string views: a text of at most 12 bytes inside
its view, a longer one in a data buffer), so no copy of the column is made.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from curate.arrow_text import string_views

try:  # numba is a dependency; without it callers use the regex
    from curate.jit_import import numba
except ImportError:  # pragma: no cover - exercised only without numba
    numba = None

AVAILABLE = numba is not None

#: Ranges of code points (inclusive) that are all letters: Latin-1, Latin Extended A/B and IPA,
#: Greek, Cyrillic, Arabic, Devanagari, Thai, Latin Extended Additional (Vietnamese), kana, Hangul
#: compatibility jamo and syllables, CJK ideographs.
LETTERS = ((0x00C0, 0x00D6), (0x00D8, 0x00F6), (0x00F8, 0x02C1), (0x03A3, 0x03F5), (0x0400, 0x0481),
           (0x048A, 0x052F), (0x0620, 0x064A), (0x0671, 0x06D3), (0x0904, 0x0939), (0x0E01, 0x0E30),
           (0x1E00, 0x1F15), (0x3041, 0x3096), (0x30A1, 0x30FA), (0x3131, 0x318E), (0x3400, 0x4DB5),
           (0x4E00, 0x9FA5), (0xAC00, 0xD7A3), (0x20000, 0x2A6D6))

_BMP = np.zeros(0x10000, np.uint8)
for _lo, _hi in LETTERS:
    if _hi < 0x10000:
        _BMP[_lo:_hi + 1] = 1
for _c in range(ord("A"), ord("Z") + 1):
    _BMP[_c] = _BMP[_c + 32] = 1
_ASTRAL = np.array([r for r in LETTERS if r[0] >= 0x10000], np.int64).reshape(-1, 2)


def _views(texts: pl.Series):
    """(the string views, kept alive while a kernel reads them; the views as uint32 words, 4 a text;
    the views' own address; the data buffers' addresses) of a String column without nulls."""
    sv = string_views(texts)
    views = sv.own().reshape(-1)
    return sv, views, views.ctypes.data, np.ascontiguousarray(sv.buffers[:, 0])


def letter_counts(texts: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(characters, letters at least) of each text of a String column without nulls, as int64 arrays."""
    keep, views, at, data = _views(texts)
    n = len(views) // 4
    chars, letters = np.empty(n, np.int64), np.empty(n, np.int64)
    _letters(views, at, data, _BMP, _ASTRAL, chars, letters)
    del keep  # the kernel read its buffers by address: they lived until here
    return chars, letters


def has_control(texts: pl.Series) -> np.ndarray:
    """Whether each text of a String column without nulls holds a control character (see above)."""
    keep, views, at, data = _views(texts)
    out = np.empty(len(views) // 4, np.bool_)
    _control(views, at, data, out)
    del keep
    return out


if AVAILABLE:
    from curate.content_id_jit import _bytes_at, _load8
    from curate.utf8_jit import decode as _decode
    from numba.core import types as _types
    from numba.extending import intrinsic as _intrinsic

    _u64 = numba.types.uint64
    _HIGH = 0x8080808080808080
    _ONES = 0x0101010101010101

    @_intrinsic
    def _popcount(typingctx, x):
        def codegen(context, builder, signature, args):
            return builder.ctpop(args[0])
        return _types.uint64(x), codegen

    @numba.njit(inline="always", cache=True)
    def _text(views, at, data, i):
        """Text ``i``'s bytes, as an array over the memory where they are."""
        size = np.int64(views[4 * i])
        if size <= 12:
            return numba.carray(_bytes_at(at + 16 * i + 4), size)
        return numba.carray(_bytes_at(data[views[4 * i + 2]] + np.int64(views[4 * i + 3])), size)

    @numba.njit(inline="always", cache=True)
    def _ascii_letters8(w):
        """How many of the 8 bytes of ``w`` (all ASCII) are letters: (b | 0x20) - 0x61 < 26, SWAR."""
        t = w | _u64(0x2020202020202020)
        at_least_a = (t + _u64(0x1F1F1F1F1F1F1F1F)) & _u64(_HIGH)
        past_z = (t + _u64(0x0505050505050505)) & _u64(_HIGH)
        return np.int64(_popcount(at_least_a & ~past_z))

    @numba.njit(cache=True, nogil=True)
    def _letters(views, at, data, bmp, astral, chars, letters):
        for r in range(len(views) // 4):
            t = _text(views, at, data, r)
            size = len(t)
            p = 0
            c = 0
            k = 0
            while p + 8 <= size:
                w = _load8(t, p)
                if w & _u64(_HIGH):
                    break
                k += _ascii_letters8(w)
                c += 8
                p += 8
            while p < size:
                cp, p = _decode(t, p)
                if cp < 0x10000:
                    k += bmp[cp]
                else:
                    for j in range(astral.shape[0]):
                        if astral[j, 0] <= cp <= astral[j, 1]:
                            k += 1
                            break
                c += 1
            chars[r] = c
            letters[r] = k

    @numba.njit(inline="always", cache=True)
    def _zero_byte(v):
        """Nonzero (in some byte's top bit) when a byte of ``v`` is 0; exact for the lowest such
        byte, and never zero when one is (the bytes above it may be flagged too: looked at anyway)."""
        return (v - _u64(_ONES)) & ~v

    @numba.njit(inline="always", cache=True)
    def _control_at(t, p):
        """Whether the character starting at ``t[p]`` is a control character (see the module)."""
        b = t[p]
        if b < 0x20:
            return b != 0x09 and b != 0x0A
        if b < 0x7F:
            return False
        if b == 0x7F:
            return True
        if b == 0xC2:  # U+0080..U+009F
            return t[p + 1] <= 0x9F
        if b == 0xE2:
            b1, b2 = t[p + 1], t[p + 2]
            if b1 == 0x80:  # U+200B, U+200E, U+200F, U+2028..U+202E
                return b2 == 0x8B or b2 == 0x8E or b2 == 0x8F or 0xA8 <= b2 <= 0xAE
            return b1 == 0x81 and b2 == 0xA0  # U+2060
        if b == 0xEF:  # U+FEFF
            return t[p + 1] == 0xBB and t[p + 2] == 0xBF
        return False

    @numba.njit(cache=True, nogil=True)
    def _control(views, at, data, out):
        for r in range(len(views) // 4):
            t = _text(views, at, data, r)
            size = len(t)
            p = 0
            found = False
            while not found and p + 8 <= size:
                w = _load8(t, p)
                # a byte under 0x20, or DEL, or the first byte of a character that may be one
                # (C2, E2, EF): look at the 8 bytes one by one (a character they start may end in
                # the next word: it is read whole; its continuation bytes start no character)
                if (((w - _u64(0x2020202020202020)) & ~w) | _zero_byte(w ^ _u64(0x7F7F7F7F7F7F7F7F))
                        | _zero_byte(w ^ _u64(0xC2C2C2C2C2C2C2C2)) | _zero_byte(w ^ _u64(0xE2E2E2E2E2E2E2E2))
                        | _zero_byte(w ^ _u64(0xEFEFEFEFEFEFEFEF))) & _u64(_HIGH):
                    for j in range(8):
                        if _control_at(t, p + j):
                            found = True
                            break
                p += 8
            while not found and p < size:
                found = _control_at(t, p)
                p += 1
            out[r] = found
