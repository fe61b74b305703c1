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
