"""A text column's bytes as numpy arrays, read in place from its Arrow buffers: what the compiled
kernels (MinHash in :mod:`curate.minhash_jit`, language id in :mod:`curate.langid_jit`) scan, or its
string views (:func:`string_views`: the row text joins, letter counts and content ids)."""

from __future__ import annotations

from typing import Any, NamedTuple

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


class StringViews(NamedTuple):
    """A String column's Arrow string views, read in place by a compiled kernel."""

    array: Any           #: the ``string_view`` pyarrow array: keep it alive while a kernel reads its buffers by address
    views: np.ndarray    #: uint32 (rows, 4), read-only: per text its length, then its bytes (at most 12) or a prefix, buffer and offset
    buffers: np.ndarray  #: int64 (data buffers, 2): each data buffer's address and size (0, 0 when there is none)
    offset: int          #: the array's first row in ``views`` (a sliced array's)

    def own(self) -> np.ndarray:
        """The views of the array's own rows (``views[offset:offset + len]``)."""
        return self.views[self.offset:self.offset + len(self.array)]


def string_views(texts: Any) -> StringViews:
    """The string views of a polars String Series or a pyarrow string array, read in place: polars
    shares its own at its newest compat level (``to_arrow``); any other layout is cast to Arrow's."""
    import pyarrow as pa

    if isinstance(texts, pl.Series):
        texts = texts.rechunk().to_arrow(compat_level=pl.CompatLevel.newest())
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if texts.type != pa.string_view():
        texts = texts.cast(pa.string_view())
    bufs = texts.buffers()
    views = np.frombuffer(bufs[1] if bufs[1] is not None else b"", dtype=np.uint32).reshape(-1, 4)
    buffers = np.array([(b.address, b.size) if b is not None else (0, 0) for b in bufs[2:]] or [(0, 0)],
                       dtype=np.int64)
    return StringViews(texts, views, buffers, texts.offset)
