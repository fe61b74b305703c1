"""Shared test fixtures: paths to the real sample data in ../shared/fixtures (never modified)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.servers.argilla_fixture"]  # the argilla_server session fixture, started once per run

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def fixtures() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"the shared fixtures are missing: expected {FIXTURES} (a sibling of the repo)")
    return FIXTURES
