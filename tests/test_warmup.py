"""curate.warmup: what `make install` pays once so that no command pays it again."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import curate
from curate import warmup


def test_byte_compile_writes_every_module_bytecode_even_when_python_is_told_not_to(monkeypatch):
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    modules = sorted(Path(curate.__file__).parent.rglob("*.py"))
    assert len(modules) > 50
    for m in modules[:5]:  # a few removed first: they are written again
        pyc = Path(importlib.util.cache_from_source(str(m)))
        if pyc.exists():
            pyc.unlink()
    warmup.byte_compile()
    missing = [m for m in modules if not os.path.exists(importlib.util.cache_from_source(str(m)))]
    assert missing == []


def test_in_background_runs_the_steps_in_turn_and_leaves_an_error_to_the_pass_that_meets_it():
    done = []

    def fails() -> None:
        raise RuntimeError("a kernel that does not load")

    t = warmup.in_background(lambda: done.append(1), fails, lambda: done.append(2), name="test-kernels")
    t.join()
    assert done == [1] and t.name == "test-kernels" and not t.daemon


def test_load_duplicates_loads_every_kernel_the_duplicate_pass_runs_from_the_cache_alone():
    """load_duplicates (a big input's clean, in a thread while polars reads) leaves loaded every
    kernel that running the duplicate pass on 20k rows (warm_duplicates) loads, from numba's cache
    index, without running the pass (fresh processes: nothing loaded before)."""
    import json
    import subprocess
    import sys

    def loaded(call: str) -> list[str]:
        code = ("import json; from numba.core.registry import CPUDispatcher; "
                "from curate import warmup, minhash_jit as m, row_text_jit as r; "
                f"{call}; print(json.dumps(sorted(k for k, v in [*vars(m).items(), *vars(r).items()] "
                "if isinstance(v, CPUDispatcher) and v.signatures)))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    ran = loaded("warmup.warm_duplicates()")  # (compiles and caches them if nothing is cached yet)
    assert "normalize_sketch" in ran and "jaccard_rows" in ran and "_join" in ran  # (the text columns joined)
    assert set(ran) <= set(loaded("assert warmup.load_cached(m) + warmup.load_cached(r) >= len(" + repr(ran) + ")"))
    assert set(ran) <= set(loaded("warmup.load_duplicates()"))
