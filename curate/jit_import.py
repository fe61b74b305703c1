"""numba for curate's compiled kernels, imported without the BLAS probe of its first compile.

numba's first compile or cache load imports ``numba.np.arraymath``, which checks once whether a BLAS
is at hand by importing ``scipy.linalg.cython_blas``: all of ``scipy.linalg``, ~0.3 s of CPU at the
start of every command that runs a kernel (``curate ingest`` waits for it before its first block).
The answer only picks how ``np.correlate`` / ``np.convolve`` are compiled (a plain loop without
BLAS), which no kernel here uses, so the check is skipped: ``numba.np.arraymath`` is imported here
with that scipy module marked absent, and the mark removed at once (``np.dot`` and ``np.linalg``,
which import it again when compiled, still get it). Kernel modules import numba from here:
``from curate.jit_import import numba``, an ImportError when numba is not installed.
"""

from __future__ import annotations

import sys

import numba

_BLAS = "scipy.linalg.cython_blas"


def _import_arraymath() -> None:
    if "numba.np.arraymath" in sys.modules or _BLAS in sys.modules:
        return  # imported already, or the probe costs nothing now
    sys.modules[_BLAS] = None  # type: ignore[assignment]  # `import` of it raises ImportError
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        if sys.modules.get(_BLAS, 0) is None:
            del sys.modules[_BLAS]


_import_arraymath()

__all__ = ["numba"]
