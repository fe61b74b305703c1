"""Shared test fixtures: paths to the real sample data in tests/data/fixtures (never modified).

The rows are real samples of every source format, broken rows included; their origins and licenses
are in tests/data/fixtures/NOTICE.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.servers.argilla_fixture"]  # the argilla_server session fixture, started once per run

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "data" / "fixtures"


@pytest.fixture(scope="session")
def fixtures() -> Path:
    assert FIXTURES.is_dir(), f"the test data is missing: expected {FIXTURES}"
    return FIXTURES
