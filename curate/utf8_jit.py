"""UTF-8 decoding for the compiled (numba) kernels that read text bytes (:mod:`curate.langid_jit`,
:mod:`curate.minhash_jit`, :mod:`curate.char_scan_jit`): one decoder, inlined where it is used."""

from __future__ import annotations

import numpy as np

try:  # numba is a dependency; without it the kernels' modules keep their Python paths
    from curate.jit_import import numba
except ImportError:  # pragma: no cover - exercised only without numba
    numba = None

if numba is not None:
    @numba.njit(inline="always", cache=True)
    def decode(data, i):
        """(code point, next byte index) of the UTF-8 sequence at ``data[i]`` (valid UTF-8). The
        bytes are read from ``data[i:]`` at constant offsets: no check for a negative index, whether
        ``i`` is signed or not."""
        d = data[i:]
        b = np.int32(d[0])
        if b < 0x80:
            return b, i + 1
        if b < 0xE0:
            return ((b & 0x1F) << 6) | (np.int32(d[1]) & 0x3F), i + 2
        if b < 0xF0:
            return ((b & 0x0F) << 12) | ((np.int32(d[1]) & 0x3F) << 6) | (np.int32(d[2]) & 0x3F), i + 3
        return (((b & 0x07) << 18) | ((np.int32(d[1]) & 0x3F) << 12)
                | ((np.int32(d[2]) & 0x3F) << 6) | (np.int32(d[3]) & 0x3F)), i + 4
