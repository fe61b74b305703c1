"""Compiled (numba) content ids of whole string columns: :func:`curate.schemas.frame_ids`.

A row's id is blake2b-64 of ``orjson.dumps((kind, *values))`` (:func:`curate.schemas.content_id`).
For kinds whose id fields are all strings (``sft``, ``ppo``), :func:`ids` builds each row's
canonical JSON straight from the columns' Arrow buffers (string views, as polars holds them), with
orjson's escaping (``\\"``, ``\\\\``, ``\\b \\t \\n \\f \\r``, other control characters as
``\\u00xx``, everything else as its UTF-8 bytes; ``null`` for a null), hashes it with BLAKE2b
(RFC 7693, 8-byte digest) and writes the hex into an Arrow string buffer: no Python object per row.
The ids are identical to the Python ones (tests/test_content_ids.py checks every code point,
hostile strings and the fixtures).

numba compiles the kernel on first use and caches it beside this module (``cache=True``;
``python -m curate.warmup`` does it at install). Without numba, :data:`AVAILABLE` is False and
:func:`curate.schemas.frame_ids` keeps the Python path.
"""

from __future__ import annotations

import numpy as np

from curate.arrow_text import string_views

try:  # numba is a dependency; the Python path stays for platforms without its wheels
    from curate.jit_import import numba
except ImportError:  # pragma: no cover - exercised only without numba
    numba = None

AVAILABLE = numba is not None

_IV = np.array([0x6A09E667F3BCC908, 0xBB67AE8584CAA73B, 0x3C6EF372FE94F82B, 0xA54FF53A5F1D36F1,
                0x510E527FADE682D1, 0x9B05688C2B3E6C1F, 0x1F83D9ABFB41BD6B, 0x5BE0CD19137E2179], dtype=np.uint64)
_SIGMA = np.array([
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
    [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
    [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
    [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
    [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
    [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
    [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
    [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
    [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3]], dtype=np.uint64)
#: The parameter block of an unkeyed BLAKE2b with an 8-byte digest (fanout 1, depth 1), xored into h[0].
_PARAM = 0x01010008
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_NONE = bytes(16)
#: orjson's escape of each byte below 0x20 (a short form, else \\u00xx), as the byte after the backslash.
_SHORT = np.zeros(32, dtype=np.uint8)
for _b, _c in ((8, "b"), (9, "t"), (10, "n"), (12, "f"), (13, "r")):
    _SHORT[_b] = ord(_c)


if AVAILABLE:
    from llvmlite import ir
    from numba.extending import intrinsic

    _u64 = numba.types.uint64

    @intrinsic
    def _bytes_at(typingctx, address):
        """A pointer to the bytes at ``address`` (an int64: an Arrow buffer's address)."""
        sig = numba.types.CPointer(numba.types.uint8)(numba.types.int64)

        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], context.get_value_type(signature.return_type))

        return sig, codegen

    @intrinsic
    def _load8(typingctx, arr, at):
        """The 8 bytes ``arr[at:at + 8]`` of a uint8 array as one little-endian uint64 (one unaligned load)."""
        sig = numba.types.uint64(arr, at)

        def codegen(context, builder, signature, args):
            data = context.make_array(signature.args[0])(context, builder, args[0]).data
            ptr = builder.bitcast(builder.gep(data, [args[1]]), ir.IntType(64).as_pointer())
            return builder.load(ptr, align=1)

        return sig, codegen

    @intrinsic
    def _store8(typingctx, arr, at, value):
        """``arr[at:at + 8] = value``'s 8 bytes, little-endian (one unaligned store)."""
        sig = numba.types.void(arr, at, value)

        def codegen(context, builder, signature, args):
            data = context.make_array(signature.args[0])(context, builder, args[0]).data
            ptr = builder.bitcast(builder.gep(data, [args[1]]), ir.IntType(64).as_pointer())
            builder.store(args[2], ptr, align=1)
            return context.get_dummy_value()

        return sig, codegen

    @numba.njit(cache=True)
    def _rotr(x, n):
        return (x >> _u64(n)) | (x << _u64(64 - n))

    @numba.njit(cache=True)
    def _g(a, b, c, d, x, y):
        a = a + b + x
        d = _rotr(d ^ a, 32)
        c = c + d
        b = _rotr(b ^ c, 24)
        a = a + b + y
        d = _rotr(d ^ a, 16)
        c = c + d
        b = _rotr(b ^ c, 63)
        return a, b, c, d

    @numba.njit(cache=True)
    def _round(v, x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15):
        """One of BLAKE2b's 12 rounds of the state ``v``, the message words given in the round's order."""
        v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15 = v
        v0, v4, v8, v12 = _g(v0, v4, v8, v12, x0, x1)
        v1, v5, v9, v13 = _g(v1, v5, v9, v13, x2, x3)
        v2, v6, v10, v14 = _g(v2, v6, v10, v14, x4, x5)
        v3, v7, v11, v15 = _g(v3, v7, v11, v15, x6, x7)
        v0, v5, v10, v15 = _g(v0, v5, v10, v15, x8, x9)
        v1, v6, v11, v12 = _g(v1, v6, v11, v12, x10, x11)
        v2, v7, v8, v13 = _g(v2, v7, v8, v13, x12, x13)
        v3, v4, v9, v14 = _g(v3, v4, v9, v14, x14, x15)
        return v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15

    @numba.njit(cache=True)
    def _compress(h, m, o, t, last):  # o: uint64, so no index wraps around
        """BLAKE2b's compression of the message words ``m[o:o + 16]`` into ``h`` (``t``: bytes so far).
        The rounds are written out with the message schedule (RFC 7693's SIGMA) as fixed arguments,
        so the compiled code keeps the words in registers instead of looking them up each round:
        1.7x faster than a loop over ``SIGMA`` for a whole id."""
        m0, m1, m2, m3, m4, m5, m6, m7 = m[o], m[o + 1], m[o + 2], m[o + 3], m[o + 4], m[o + 5], m[o + 6], m[o + 7]
        m8, m9, m10, m11 = m[o + 8], m[o + 9], m[o + 10], m[o + 11]
        m12, m13, m14, m15 = m[o + 12], m[o + 13], m[o + 14], m[o + 15]
        v14 = ~_IV[6] if last else _IV[6]
        v = (h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7],
             _IV[0], _IV[1], _IV[2], _IV[3], _IV[4] ^ _u64(t), _IV[5], v14, _IV[7])
        v = _round(v, m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15)
        v = _round(v, m14, m10, m4, m8, m9, m15, m13, m6, m1, m12, m0, m2, m11, m7, m5, m3)
        v = _round(v, m11, m8, m12, m0, m5, m2, m15, m13, m10, m14, m3, m6, m7, m1, m9, m4)
        v = _round(v, m7, m9, m3, m1, m13, m12, m11, m14, m2, m6, m5, m10, m4, m0, m15, m8)
        v = _round(v, m9, m0, m5, m7, m2, m4, m10, m15, m14, m1, m11, m12, m6, m8, m3, m13)
        v = _round(v, m2, m12, m6, m10, m0, m11, m8, m3, m4, m13, m7, m5, m15, m14, m1, m9)
        v = _round(v, m12, m5, m1, m15, m14, m13, m4, m10, m0, m7, m6, m3, m9, m2, m8, m11)
        v = _round(v, m13, m11, m7, m14, m12, m1, m3, m9, m5, m0, m15, m4, m8, m6, m2, m10)
        v = _round(v, m6, m15, m14, m9, m11, m3, m0, m8, m12, m2, m13, m7, m1, m4, m10, m5)
        v = _round(v, m10, m2, m8, m4, m7, m6, m1, m5, m15, m11, m9, m14, m3, m12, m13, m0)
        v = _round(v, m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15)
        v = _round(v, m14, m10, m4, m8, m9, m15, m13, m6, m1, m12, m0, m2, m11, m7, m5, m3)
        for i in range(8):
            h[i] ^= v[i] ^ v[i + 8]

    # Indices are unsigned (uint64) in the byte loops: numba then skips the wrap-around of negative
    # indices, which made these loops several times slower.
    @numba.njit(cache=True)
    def _put_byte(buf, pos, c):
        """One byte of a string as orjson writes it at ``buf[pos]``; the new end."""
        if c >= 32 and c != 34 and c != 92:
            buf[pos] = c
            return pos + _u64(1)
        buf[pos] = 92
        if c == 34 or c == 92:
            buf[pos + _u64(1)] = c
            return pos + _u64(2)
        if _SHORT[c] != 0:
            buf[pos + _u64(1)] = _SHORT[c]
            return pos + _u64(2)
        buf[pos + _u64(1)] = 117  # u
        buf[pos + _u64(2)] = 48
        buf[pos + _u64(3)] = 48
        buf[pos + _u64(4)] = _HEX[c >> 4]
        buf[pos + _u64(5)] = _HEX[c & 15]
        return pos + _u64(6)

    @numba.njit(cache=True)
    def _put_string(buf, pos, data, lo, hi):
        """``data[lo:hi]`` (UTF-8) as a JSON string at ``buf[pos]``, escaped as orjson does; the new
        end. Eight bytes at a time: a word without a byte to escape (SWAR test for < 0x20, ``"``
        and ``\\``) is copied as it is."""
        ones, highs = _u64(0x0101010101010101), _u64(0x8080808080808080)
        buf[pos] = 34
        pos += _u64(1)
        i = lo
        while i + _u64(8) <= hi:
            x = _load8(data, i)
            low = (x - ones * _u64(0x20)) & ~x
            quote = x ^ (ones * _u64(0x22))
            slash = x ^ (ones * _u64(0x5C))
            if (low | ((quote - ones) & ~quote) | ((slash - ones) & ~slash)) & highs:
                for k in range(8):
                    pos = _put_byte(buf, pos, data[i + _u64(k)])
            else:
                _store8(buf, pos, x)
                pos += _u64(8)
            i += _u64(8)
        while i < hi:
            pos = _put_byte(buf, pos, data[i])
            i += _u64(1)
        buf[pos] = 34
        return pos + _u64(1)

    @numba.njit(cache=True)
    def _put_view(buf, pos, views, inline, data, i):
        """String ``i`` of an Arrow string-view array (``views``: its views as uint32 words, ``inline``:
        the same as bytes, ``data``: the addresses and sizes of its data buffers) as a JSON string at
        ``buf[pos]``; the new end."""
        size = _u64(views[4 * i])
        if size <= _u64(12):  # the string is inside its view
            at = _u64(16 * i + 4)
            return _put_string(buf, pos, inline, at, at + size)
        at = _u64(views[4 * i + 3])
        b = views[4 * i + 2]
        return _put_string(buf, pos, numba.carray(_bytes_at(data[b, 0]), data[b, 1]), at, at + size)

    @numba.njit(cache=True)
    def _valid(bits, has_bits, i):
        return not has_bits or (bits[i >> 3] >> (i & 7)) & 1 == 1

    @numba.njit(cache=True, nogil=True)
    def _ids(kind, n, ncols, views0, inline0, data0, bits0, has0, start0, views1, inline1, data1, bits1, has1,
             start1, views2, inline2, data2, bits2, has2, start2, out):
        """Hex blake2b-64 of ``["<kind>","<col0>",...]`` for rows ``0..n`` into ``out`` (16 bytes a row).
        Column j: an Arrow string-view array's views (as uint32 words and as bytes), its data buffers
        (address, size), validity bits (``has``: any null) and offset."""
        most = 0
        for r in range(n):
            size = np.int64(views0[4 * (start0 + r)])
            if ncols > 1:
                size += np.int64(views1[4 * (start1 + r)])
            if ncols > 2:
                size += np.int64(views2[4 * (start2 + r)])
            most = max(most, size)
        cap = (6 * most + kind.size + 8 * ncols + 16 + 127) // 128 * 128 + 128
        buf = np.zeros(cap, dtype=np.uint8)
        words = buf.view(np.uint64)
        h = np.empty(8, dtype=np.uint64)
        for r in range(n):
            buf[0] = 91  # [
            pos = _put_string(buf, _u64(1), kind, _u64(0), _u64(kind.size))
            for j in range(ncols):
                buf[pos] = 44  # ,
                pos += _u64(1)
                if j == 0 and _valid(bits0, has0, start0 + r):
                    pos = _put_view(buf, pos, views0, inline0, data0, start0 + r)
                elif j == 1 and _valid(bits1, has1, start1 + r):
                    pos = _put_view(buf, pos, views1, inline1, data1, start1 + r)
                elif j == 2 and _valid(bits2, has2, start2 + r):
                    pos = _put_view(buf, pos, views2, inline2, data2, start2 + r)
                else:
                    buf[pos] = 110  # null
                    buf[pos + _u64(1)] = 117
                    buf[pos + _u64(2)] = 108
                    buf[pos + _u64(3)] = 108
                    pos += _u64(4)
            buf[pos] = 93  # ]
            size = np.int64(pos) + 1
            blocks = (size + 127) // 128
            buf[size:blocks * 128] = 0
            for i in range(8):
                h[i] = _IV[i]
            h[0] ^= _u64(_PARAM)
            for b in range(blocks - 1):
                _compress(h, words, _u64(b * 16), (b + 1) * 128, False)
            _compress(h, words, _u64((blocks - 1) * 16), size, True)
            d = h[0]
            for k in range(8):
                byte = (d >> _u64(8 * k)) & _u64(255)
                out[16 * r + 2 * k] = _HEX[byte >> _u64(4)]
                out[16 * r + 2 * k + 1] = _HEX[byte & _u64(15)]


def ids(kind: str, columns: list) -> "pa.StringArray":  # noqa: F821
    """The content ids of rows given as 1 to 3 Arrow string columns (pyarrow arrays of equal
    length, in the kind's id-field order; string views are read without a copy), as an Arrow
    string array of 16-hex-digit ids."""
    import pyarrow as pa

    if not 1 <= len(columns) <= 3:
        raise ValueError("1 to 3 string columns")
    n = len(columns[0])
    columns = [string_views(col) for col in columns]
    parts = []
    for col in columns:
        if len(col.array) != n:
            raise ValueError("columns of different lengths")
        bits = col.array.buffers()[0]
        # every array read-only, as the buffers' own are: one compiled signature whatever the data
        inline = col.views.reshape(-1).view(np.uint8)
        has = bits is not None and col.array.null_count > 0
        bit = np.frombuffer(bits if has else _NONE, dtype=np.uint8)
        parts.append((col.views.reshape(-1), inline, col.buffers, bit, has, col.offset))
    while len(parts) < 3:
        parts.append(parts[0])
    out = np.empty(16 * n, dtype=np.uint8)
    _ids(np.frombuffer(kind.encode(), dtype=np.uint8), n, len(columns), *parts[0], *parts[1], *parts[2], out)
    del columns  # the kernel read their data buffers by address: they lived until here
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(np.arange(0, 16 * n + 1, 16, dtype=np.int32)),
                                                  pa.py_buffer(out)])
