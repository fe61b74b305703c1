"""The JSON and JSONL fixtures under ``tests/data/fixtures`` as plain Python values, for the tests
and benchmarks that want their texts rather than curate's reading of them (``bench/langid.py``,
``tests/test_langid.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

FIXTURES = Path(__file__).resolve().parent / "data" / "fixtures"


def values(path: Path) -> Iterator[Any]:
    """The JSON value of a ``.json`` file, or each line's of a ``.jsonl`` file (the anomaly fixtures'
    broken lines are skipped)."""
    raw = path.read_text(encoding="utf-8")
    try:
        yield json.loads(raw)
        return
    except json.JSONDecodeError:
        pass
    for line in raw.splitlines():
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            continue


def records(name: str) -> Iterator[dict]:
    """The records (objects) of one fixture file, a top-level list taken apart."""
    for value in values(FIXTURES / name):
        yield from (r for r in (value if isinstance(value, list) else [value]) if isinstance(r, dict))


def every_string() -> list[str]:
    """Every string of every JSON/JSONL fixture (real rows: ms, id, en, ko, code, markup), depth
    first, file by file."""
    out: list[str] = []
    for path in sorted(FIXTURES.glob("*.json*")):
        stack = list(values(path))
        while stack:
            x = stack.pop()
            if isinstance(x, dict):
                stack.extend(x.values())
            elif isinstance(x, list):
                stack.extend(x)
            elif isinstance(x, str):
                out.append(x)
    return out
