"""The two Debian packages tests may skip without: redis-server and chromium.

They are the only skips the suite allows: anything pip can install is installed by ``make test``
(and by the Argilla fixture itself). ``require(name)`` returns the program's path, or skips with
one line saying how to install it; under ``CURATE_NO_SKIP=1`` (``.ci/run``) that skip is a
failure (tests/conftest.py). Keep in step with scripts/debian-packages.sh.
"""

from __future__ import annotations

import shutil

import pytest

PROGRAMS = {"redis-server": ("redis-server",),
            "chromium": ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")}
PACKAGES = {"redis-server": "redis-server", "chromium": "chromium fonts-liberation"}


def find(name: str) -> str | None:
    return next((path for path in map(shutil.which, PROGRAMS[name]) if path), None)


def require(name: str) -> str:
    path = find(name)
    if path is None:
        pytest.skip(f"{name} is not installed: sudo apt-get install -y --no-install-recommends {PACKAGES[name]}")
    return path
