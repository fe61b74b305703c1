#!/usr/bin/env bash
# Install what the local argilla-server needs: Debian's redis-server (apt-get, when missing) and the
# server's own venv (argilla-server 2.8.0, click<8.2) at the ONE location `curate argilla serve`,
# `make test` and the test fixture use:
#
#   scripts/argilla-server-setup.sh [VENV_DIR]    (default: $CURATE_ARGILLA_VENV or ~/.cache/curate/argilla-venv)
#
# The server gets its own venv so that its pins (notably click<8.2, needed by argilla-server 2.8's
# CLI) never leak into the project venv. The venv logic (location, pins, check, lock, pip install)
# lives in curate/argilla_local/venv.py, the same code `curate argilla serve` runs, so whichever
# runs first installs it and the others find it. Idempotent: does nothing when all is installed.
# `make test` does the venv part by itself; only redis-server needs this script (or apt-get).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"

bash "$repo/scripts/debian-packages.sh" --install redis-server

# venv.py is stdlib only and does not import curate, so any python3 runs it.
PYTHON="$python" exec "$python" "$repo/curate/argilla_local/venv.py" "$@"
