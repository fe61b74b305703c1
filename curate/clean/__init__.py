"""The clean stage: registered rules that fix, flag or drop rows (see ``docs/clean.md``).

``clean(frames, config) -> CleanResult`` and ``clean_dir(in, out, config, dry_run=...)``.
The names below load on first use (PEP 562), so reading a quarantine file
(:mod:`curate.clean.quarantine`) does not import every rule.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"CleanConfig": "config", "CleanResult": "engine", "clean": "engine", "clean_dir": "engine",
          "BY_CODE": "registry", "RULES": "registry", "rule_rows": "registry"}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
