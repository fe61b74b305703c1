"""Compiled (numba) counts of characters and of letters in a text column, read from its Arrow bytes.

Counting letters (``\\p{L}``) with polars' regex costs ~1.5 s of CPU per million prompts
(``str.replace_all(r"\\p{L}+", "")``: every letter run matched and the rest copied). :func:`counts`
reads each text's UTF-8 bytes once and gives its length in characters (what ``str.len_chars``
counts) and a lower bound of its letters: the ASCII letters and the characters of :data:`LETTERS`,
ranges that are letters in every Unicode version polars' regex engine may use (a test checks each
range against ``\\p{L}``). A rule that needs only to know whether letters reach a share of a text
keeps the rows the bound cannot settle and counts those exactly with the regex.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from curate.arrow_text import utf8_buffers

try:  # numba is a dependency; without it callers count with the regex
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


def counts(texts: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(characters, letters at least) of each text of a String column without nulls, as int64 arrays."""
    data, offsets = utf8_buffers(texts)
    n = len(offsets) - 1
    chars, letters = np.empty(n, np.int64), np.empty(n, np.int64)
    _counts(data, offsets, _BMP, _ASTRAL, chars, letters)
    return chars, letters


if AVAILABLE:
    @numba.njit(cache=True, nogil=True)
    def _counts(data, offsets, bmp, astral, chars, letters):
        for r in range(len(offsets) - 1):
            i, hi = offsets[r], offsets[r + 1]
            c = 0
            k = 0
            while i < hi:
                b = np.int64(data[i])
                if b < 0x80:
                    k += bmp[b]
                    i += 1
                elif b < 0xE0:  # two bytes
                    k += bmp[((b & 0x1F) << 6) | (np.int64(data[i + 1]) & 0x3F)]
                    i += 2
                elif b < 0xF0:  # three bytes
                    k += bmp[((b & 0x0F) << 12) | ((np.int64(data[i + 1]) & 0x3F) << 6)
                             | (np.int64(data[i + 2]) & 0x3F)]
                    i += 3
                else:  # four bytes
                    cp = (((b & 0x07) << 18) | ((np.int64(data[i + 1]) & 0x3F) << 12)
                          | ((np.int64(data[i + 2]) & 0x3F) << 6) | (np.int64(data[i + 3]) & 0x3F))
                    for j in range(astral.shape[0]):
                        if astral[j, 0] <= cp <= astral[j, 1]:
                            k += 1
                            break
                    i += 4
                c += 1
            chars[r] = c
            letters[r] = k
