"""Columns of text joined row by row and cut, in compiled code, read in place from polars' string views.

``pl.concat_str([a, b, c], separator="\\n", ignore_nulls=True).str.slice(0, n)`` and then the result's
bytes as one buffer (:func:`curate.arrow_text.utf8_buffers`, which copies polars' string views into an
Arrow ``large_string``) cost ~1.1 s of CPU per million Alpaca rows, a copy of every byte twice and of
the cut-off tails. :func:`join_cut` reads the columns' string views as they are (``to_arrow`` at
polars' newest compat level shares them) and writes each row's text once, the same bytes: the
values that are not null joined by the separator, cut after ``n`` characters (code points, what
``str.slice`` counts), a row of nulls only giving an empty text.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from curate.arrow_text import string_views

try:  # numba is a dependency; without it callers keep the polars expression
    from curate.jit_import import numba
except ImportError:  # pragma: no cover - exercised only without numba
    numba = None

AVAILABLE = numba is not None


_WHOLE = 1 << 60  # ``chars`` of a text never cut


def join_cut(columns: list[pl.Series], sep: str, chars: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(UTF-8 bytes, int64 offsets) of each row's text: the non-null values of ``columns`` (String,
    same length) joined by ``sep``, cut after ``chars`` characters (None: whole); row i is
    ``data[offsets[i]:offsets[i+1]]``."""
    chars = _WHOLE if chars is None else chars
    n = len(columns[0])
    arrays = [string_views(col) for col in columns]  # their buffers stay alive while the kernel reads them by address
    views = [sv.own().view(np.int32) for sv in arrays]
    valid = [col.is_not_null().to_numpy() if col.null_count() else np.ones(n, np.bool_) for col in columns]
    addresses = [sv.buffers[:, 0] for sv in arrays]
    k = len(columns)
    address = np.zeros((k, max(map(len, addresses))), np.int64)
    for j, a in enumerate(addresses):
        address[j, :len(a)] = a
    stacked = np.stack(views)
    sep_bytes = np.frombuffer(sep.encode("utf-8"), np.uint8)
    sizes = stacked[:, :, 0].astype(np.int64).sum(axis=0) + len(sep_bytes) * (k - 1)
    out = np.empty(int(np.minimum(sizes, 4 * chars).sum()) + len(sep_bytes) + 1, np.uint8)  # + a row's last separator
    offsets = np.empty(n + 1, np.int64)
    used = _join(stacked, stacked.view(np.uint8), np.stack(valid), address, sep_bytes, chars, out, offsets)
    return out[:used], offsets


if AVAILABLE:
    from llvmlite import ir as _ir
    from numba.core import cgutils as _cgutils, types as _types
    from numba.extending import intrinsic as _intrinsic

    @_intrinsic
    def _copy_from(typingctx, out, at, address, nbytes):
        """Copy ``nbytes`` bytes from memory address ``address`` to ``out[at:]`` (uint8)."""
        def codegen(context, builder, signature, args):
            ary = context.make_array(signature.args[0])(context, builder, args[0])
            dst = builder.gep(ary.data, [args[1]])
            src = builder.inttoptr(args[2], _ir.IntType(8).as_pointer())
            _cgutils.raw_memcpy(builder, dst, src, args[3], 1)
            return context.get_dummy_value()
        return _types.void(out, at, address, nbytes), codegen

    @numba.njit(inline="always", cache=True)
    def _chars(out, lo, hi):
        """Characters (UTF-8 lead bytes) in ``out[lo:hi]``."""
        n = 0
        for i in range(lo, hi):
            n += (out[i] & 0xC0) != 0x80
        return n

    @numba.njit(inline="always", cache=True)
    def _cut(out, lo, hi, room):
        """The end of the first ``room`` characters of ``out[lo:hi]`` (``hi`` if it holds fewer)."""
        for i in range(lo, hi):
            if (out[i] & 0xC0) != 0x80:
                if room == 0:
                    return i
                room -= 1
        return hi

    @numba.njit(cache=True, nogil=True)
    def _join(views, inline, valid, address, sep, chars, out, offsets):
        """Rows of ``views`` (columns x rows x 4 int32: Arrow string views; ``inline``, the same as
        bytes: a value of at most 12 bytes sits in its view, after its length) joined into ``out``;
        returns the bytes used. ``address[j, b]``: column j's data buffer b. Values are copied
        whole while the row's bytes stay within ``chars`` (a character is at least a byte); past
        that the row's characters are counted and it is cut (at most 4 bytes a character: no more
        than ``4 * chars`` bytes are ever copied for a row)."""
        k, n = views.shape[0], views.shape[1]
        limit = 4 * chars
        at = 0
        for r in range(n):
            lo = at
            offsets[r] = lo
            first = True
            for j in range(k):
                if not valid[j, r]:
                    continue
                if at - lo >= limit:
                    break
                if not first:
                    for s in range(len(sep)):
                        out[at] = sep[s]
                        at += 1
                first = False
                size = np.int64(views[j, r, 0])
                if size > limit - (at - lo):
                    size = max(limit - (at - lo), 0)
                if views[j, r, 0] <= 12:
                    for i in range(size):
                        out[at + i] = inline[j, r, 4 + i]
                else:
                    _copy_from(out, at, address[j, views[j, r, 2]] + np.int64(views[j, r, 3]), size)
                at += size
            if at - lo > chars:
                at = _cut(out, lo, at, chars)
        offsets[n] = at
        return at
