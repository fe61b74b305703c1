"""Shared test fixtures: paths to the real sample data in tests/data/fixtures (never modified).

The rows are real samples of every source format, broken rows included; their origins and licenses
are in tests/data/fixtures/NOTICE.md.

Skips: the only tests allowed to skip are those needing a missing Debian package (tests/debian.py:
redis-server, chromium). With ``CURATE_NO_SKIP=1`` (set by .ci/run) every skip is reported as a
failure, so CI never passes without having run everything.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.servers.argilla_fixture"]  # the argilla_server session fixture, started once per run

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "data" / "fixtures"


@pytest.fixture(scope="session")
def fixtures() -> Path:
    assert FIXTURES.is_dir(), f"the test data is missing: expected {FIXTURES}"
    return FIXTURES


NO_SKIP = os.environ.get("CURATE_NO_SKIP") == "1"


def _fail_skip(report) -> None:
    if NO_SKIP and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, and CURATE_NO_SKIP=1 makes every skip a failure: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_skip(outcome.get_result())
