"""Compile curate's numba kernels into numba's cache, and its modules to bytecode, now, so that no
later run pays for it.

numba compiles a kernel the first time it is called after an install or a change of its source and
caches the machine code (``cache=True``: beside the module, or in numba's user cache directory when
the install is read-only); every later process loads it in well under a second. Compiling the
language-id kernels takes ~9 s of CPU, the MinHash ones more, ingest's a few seconds: ``make install`` (and so CI and
``make demo``) runs ``python -m curate.warmup`` once so that the first real ingest or clean does not.
"""

from __future__ import annotations

import threading
import time
from typing import Callable


def warm() -> dict[str, float]:
    """Call every compiled path once on a few rows; seconds per part."""
    took: dict[str, float] = {}
    t = time.perf_counter()
    byte_compile()
    took["bytecode"] = time.perf_counter() - t
    t = time.perf_counter()
    warm_language_id()
    took["language id"] = time.perf_counter() - t
    t = time.perf_counter()
    warm_ingest()
    took["ingest"] = time.perf_counter() - t
    t = time.perf_counter()
    warm_duplicates()
    took["duplicates"] = time.perf_counter() - t
    t = time.perf_counter()
    warm_rules()
    took["clean rules"] = time.perf_counter() - t
    return took


def in_background(*steps: Callable[[], object], name: str, daemon: bool = False) -> threading.Thread:
    """Start a thread calling ``steps`` in turn (the kernels a command will call, loaded from numba's
    cache while its main thread imports or reads): only a head start, so the first error ends it
    quietly and the pass that calls the kernel meets the error itself, with its context."""
    def run() -> None:
        try:
            for step in steps:
                step()
        except Exception:  # noqa: BLE001 - the pipeline's own call raises it again
            pass

    t = threading.Thread(target=run, name=name, daemon=daemon)
    t.start()
    return t


def warm_language_id() -> None:
    """Language id's compiled cheap steps once (the scan, its code point and vocabulary tables),
    without lingua."""
    from curate import langid

    langid.detect_column(["Saya tidak tahu kerana dia tiada wang.", "Ini `kode` di https://x.id", "한국어 문장입니다",
                          "The cat sat on the mat.", ""], fallback=False)


def warm_rules() -> None:
    """The clean rules' compiled paths once (letter counts, control characters)."""
    import polars as pl

    from curate import char_scan_jit

    if char_scan_jit.AVAILABLE:
        texts = pl.Series(["a", "é 한 漢 𠀀", "a text longer than twelve bytes\r\n"])
        char_scan_jit.letter_counts(texts)
        char_scan_jit.has_control(texts)


def byte_compile() -> None:
    """curate's modules compiled to bytecode now: an editable install has none, and where Python
    is told not to write it (``PYTHONDONTWRITEBYTECODE``, set in many containers) every command, and
    every Ray worker, would compile them from source again (~0.1 s of CPU a process). A read-only
    install is left as it is."""
    import compileall
    from pathlib import Path

    try:
        compileall.compile_dir(Path(__file__).parent, quiet=2)
    except OSError:
        pass


def warm_ingest() -> None:
    """Ingest's compiled paths once: the line scan of a JSONL block and the content ids."""
    import polars as pl

    from curate import row_text_jit, schemas
    from curate.ingest import lines_jit

    lines_jit.scan(b'{"instruction": "a", "output": "b"}\n\n')
    row_text_jit.join_cut([pl.Series(["a", None]), pl.Series(["a value longer than 12 bytes", "b"])], "\n", 600)
    schemas.frame_ids("sft", pl.DataFrame({"instruction": ["a"], "input": [None], "output": ["b\n"]},
                                          schema={"instruction": pl.String, "input": pl.String, "output": pl.String}))


def warm_duplicates() -> None:
    """The duplicate finder's compiled paths once (sketch, exact groups, buckets, rounds, exact check);
    nothing without numba (no kernel to load: the pass would run uncompiled)."""
    import polars as pl

    from curate import dedupe

    if dedupe._jit() is None:
        return

    rows = max(getattr(dedupe, "_JIT_MIN_ROWS", 0), 64)
    # distinct rows (enough for the compiled near-duplicate pass: buckets, rounds, exact checks),
    # near copies of one another, a few exact copies and non-ASCII rows
    texts = [f"row {i // 2} of a small warm-up corpus, kata {i % 5} dan kerana{', é' if i % 3 else ''}"
             for i in range(rows + 64)]
    dedupe.find_duplicates(pl.DataFrame({"text": texts}), "text")


def load_cached(module) -> int:
    """Load from numba's cache every kernel of ``module`` compiled for this machine and this source
    (the signatures its cache index lists), without calling one: what the first calls would load,
    without their work. Returns how many were loaded (0: nothing cached yet, or numba's cache
    layout changed)."""
    from numba.core.registry import CPUDispatcher

    loaded = 0
    for kernel in list(vars(module).values()):
        cache = getattr(kernel, "_cache", None) if isinstance(kernel, CPUDispatcher) else None
        index = getattr(cache, "_cache_file", None)
        if index is None:
            continue
        codegen = kernel.targetctx.codegen()
        for key in index._load_index():  # (signature, machine, hashes of the code): numba's own lookup key
            if cache._index_key(key[0], codegen) == key:
                kernel.compile(key[0])
                loaded += 1
    return loaded


def load_duplicates() -> None:
    """The duplicate pass's kernels from numba's cache (~0.5 s of CPU, numba's import included), for a
    big input's clean; :func:`warm_duplicates` (which also compiles them) when none is cached: it
    loads them by running the pass on 20k rows (~1.3 s of CPU)."""
    from curate import dedupe, row_text_jit

    jit = dedupe._jit()
    if jit is not None and not (load_cached(jit) and load_cached(row_text_jit)):  # (the pass joins the text columns)
        warm_duplicates()


def warm_duplicate_groups() -> None:
    """The compiled paths the Ray clean's driver runs when the blocks sketched the rows (exact
    groups, buckets, rounds, prefilter, exact check), without the sketch kernel: ~0.45 s of CPU
    less than :func:`warm_duplicates`."""
    import numpy as np
    import polars as pl

    from curate import dedupe

    n = max(getattr(dedupe, "_JIT_MIN_ROWS", 0), 64) + 64
    texts = pl.Series([f"row {i // 2} of a small warm-up corpus, kata {i % 5} dan kerana{', é' if i % 3 else ''}"
                       for i in range(n)])
    # rows 2i and 2i + 1 share every band key and every estimator byte: candidates checked exactly
    keys = np.repeat(np.arange(n // 2, dtype=np.uint32), 2)[:, None] * np.ones(32, dtype=np.uint32)
    h = np.arange(n, dtype=np.uint64)
    dedupe.exact_group_firsts(h, h, np.ones(n, dtype=np.int64))
    dedupe.shared_rows(keys)
    dedupe.near_duplicates_of(texts, dedupe.Sketch(keys.copy(), np.zeros((n, 256), dtype=np.uint8), np.full(n, 60)))


def main() -> None:
    took = warm()
    print("compiled and cached: " + ", ".join(f"{k} {v:.1f} s" for k, v in took.items()))


if __name__ == "__main__":
    main()
