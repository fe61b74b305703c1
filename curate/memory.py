"""Hand memory the process has freed back to the operating system.

glibc's malloc keeps freed blocks in its arenas for reuse, so a process's resident size only grows:
the few hundred MB of lingua's models (Rust, on the C heap), numpy's and Python's scratch of a
language or duplicate pass stay counted in the peak of everything that runs after them. After such
a pass, :func:`release` asks glibc to return the free pages (``malloc_trim``); measured on a 1M-row
``curate clean``, the peak resident size falls by ~200-300 MB (see bench/clean.py). Where the C
library is not glibc (musl, macOS, Windows) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release() -> bool:
    """Return the heap's free pages to the OS; True when the C library could (glibc)."""
    trim = _trim()
    if trim is None:
        return False
    trim(0)
    return True
