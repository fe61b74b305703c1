"""One compiled (numba) pass over a block of JSON Lines: where each line is and what the fast path's
check needs to know about it.

:func:`scan` gives, for every line of a block (bytes ending in a newline), its start and end (the
end excludes the newline and one ``\\r`` before it, as ``polars.read_lines`` cuts lines), whether it
is blank (only spaces, tabs and ``\\r``: JSON whitespace, which ``polars.read_ndjson`` skips) and
two counts over its bytes that equal polars' ``str.count_matches`` of the :data:`KEY`
(``"\\s*:``) and :data:`STR_KEY` (``"\\s*:\\s*"``) regexes: ``\\s`` is Unicode White_Space as in Rust's
regex crate, and :data:`STR_KEY`'s matches don't overlap (a match's closing quote never starts the
next one). :func:`scan_polars` computes the same arrays the polars way (the lines' bytes copied
into a Series, then two regex passes over every line); the compiled kernel is one pass over the
bytes, without copying them.

numba compiles the kernel on first use and caches it beside this module (``cache=True``;
``python -m curate.warmup`` does it at install). Without numba, :data:`AVAILABLE` is False and
:func:`scan` is :func:`scan_polars`, which the tests hold equal to the kernel.
"""

from __future__ import annotations

import numpy as np

try:  # numba is a dependency; the polars path stays for platforms without its wheels
    from curate.jit_import import numba
except ImportError:  # pragma: no cover - exercised only without numba
    numba = None

AVAILABLE = numba is not None

#: In a raw JSON line, every key is followed by `"<ws>:`, and every key holding a string by
#: `"<ws>:<ws>"` (``\\s``: Unicode White_Space, as polars' regex engine reads it).
KEY = r'"\s*:'
STR_KEY = r'"\s*:\s*"'


if AVAILABLE:
    _u64 = numba.types.uint64

    @numba.njit(cache=True)
    def _space(buf, i, end):
        """The length of the Unicode White_Space character at ``buf[i]`` (before ``end``), else 0.
        The newline never counts: a line's bytes stop before it."""
        c = buf[i]
        if c == 32 or 9 <= c <= 13 and c != 10:
            return 1
        if c == 0xC2 and i + 1 < end and (buf[i + 1] == 0x85 or buf[i + 1] == 0xA0):
            return 2
        if i + 2 >= end or c < 0xE1 or c > 0xE3:
            return 0
        c1, c2 = buf[i + 1], buf[i + 2]
        if c == 0xE1:
            return 3 if c1 == 0x9A and c2 == 0x80 else 0  # U+1680
        if c == 0xE3:
            return 3 if c1 == 0x80 and c2 == 0x80 else 0  # U+3000
        if c1 == 0x80:  # U+2000..U+200A, U+2028, U+2029, U+202F
            return 3 if c2 <= 0x8A or c2 == 0xA8 or c2 == 0xA9 or c2 == 0xAF else 0
        return 3 if c1 == 0x81 and c2 == 0x9F else 0  # U+205F

    @numba.njit(cache=True)
    def _skip_space(buf, i, end):
        """The first byte at or after ``i`` that does not start a White_Space character."""
        while i < end:
            k = _space(buf, i, end)
            if k == 0:
                return i
            i += k
        return i

    @numba.njit(cache=True, nogil=True)
    def _scan(buf, starts, ends, blank, keys, str_keys):
        """Fill the per-line arrays; returns the number of lines, or -1 if the arrays are too small."""
        n = buf.size
        line = 0
        start = 0
        str_end = -1  # where the last STR_KEY match ended (a match can't start at or before it)
        nkeys = 0
        nstr = 0
        ones, highs = _u64(0x0101010101010101), _u64(0x8080808080808080)
        i = 0
        while i < n:
            if i + 8 <= n:  # skip eight bytes at a time while none is a quote or a newline (SWAR)
                x = _u64(0)
                at = _u64(i)
                for k in range(8):
                    x |= _u64(buf[at + _u64(k)]) << _u64(8 * k)
                quote = x ^ (ones * _u64(0x22))
                newline = x ^ (ones * _u64(0x0A))
                if not (((quote - ones) & ~quote) | ((newline - ones) & ~newline)) & highs:
                    i += 8
                    continue
            c = buf[i]
            if line == starts.size:
                return -1
            if c == 34:  # (a block ends with a newline, so buf[i + 1] exists)
                j = i + 1 if buf[i + 1] == 58 else _skip_space(buf, i + 1, n)  # stops at a newline
                if buf[j] == 58:  # ':'
                    nkeys += 1
                    if i > str_end:
                        k = j + 1 if buf[j + 1] == 34 else _skip_space(buf, j + 1, n)
                        if buf[k] == 34:
                            nstr += 1
                            str_end = k
            elif c == 10:
                end = i - 1 if i > start and buf[i - 1] == 13 else i
                j = start
                while j < end and (buf[j] == 32 or buf[j] == 9 or buf[j] == 13):
                    j += 1
                starts[line] = start
                ends[line] = end
                blank[line] = j == end
                keys[line] = nkeys
                str_keys[line] = nstr
                line += 1
                start = i + 1
                nkeys = 0
                nstr = 0
            i += 1
        return line


def scan(block: bytes):
    """Per line of ``block`` (bytes ending in a newline): start, end, blank, key count and string-key
    count, as numpy arrays."""
    if not AVAILABLE:
        return scan_polars(block)
    buf = np.frombuffer(block, dtype=np.uint8)
    size = len(block) // 64 + 64  # lines are rarely shorter; if they are, count them and start again
    while True:
        arrays = (np.empty(size, dtype=np.int64), np.empty(size, dtype=np.int64), np.empty(size, dtype=np.bool_),
                  np.empty(size, dtype=np.int64), np.empty(size, dtype=np.int64))
        lines = _scan(buf, *arrays)
        if lines >= 0:
            return tuple(a[:lines] for a in arrays)
        size = block.count(b"\n")


def scan_polars(block: bytes):
    """:func:`scan` without numba: the lines found by numpy, the counts by polars' regexes. Bytes
    that are not UTF-8 are read as U+FFFD (never a newline: the lines stay those of the bytes;
    such a line's counts are never read, since polars parses no block holding one)."""
    import polars as pl

    buf = np.frombuffer(block, dtype=np.uint8)
    newlines = np.flatnonzero(buf == 10)
    starts = np.concatenate(([0], newlines + 1))[:len(newlines)].astype(np.int64)
    before = buf[np.maximum(newlines - 1, 0)]
    ends = (newlines - ((newlines > starts) & (before == 13))).astype(np.int64)
    lines = pl.Series(block.decode("utf-8", "replace").split("\n")[:-1], dtype=pl.String)
    blank = (lines.str.strip_chars(" \t\r") == "").to_numpy()
    keys = lines.str.count_matches(KEY).to_numpy().astype(np.int64)
    str_keys = lines.str.count_matches(STR_KEY).to_numpy().astype(np.int64)
    return starts, ends, blank, keys, str_keys
