"""A text column's bytes as numpy arrays, read in place from its Arrow buffers: what the compiled
kernels (MinHash in :mod:`curate.minhash_jit`, language id in :mod:`curate.langid_jit`) scan."""

from __future__ import annotations

import numpy as np
import polars as pl


def utf8_buffers(texts: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(the texts' UTF-8 bytes, int64 offsets: text i is ``data[offsets[i]:offsets[i+1]]``), read
    in place from the Arrow buffers (no nulls expected; no padding)."""
    import pyarrow as pa

    arr = texts.to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.type != pa.large_string():
        arr = arr.cast(pa.large_string())
    _, off, data = arr.buffers()
    offsets = np.frombuffer(off, dtype=np.int64)[arr.offset: arr.offset + len(arr) + 1]
    return (np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)), offsets
