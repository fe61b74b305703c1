#!/usr/bin/env bash
# Install a self-contained argilla-server (for the test suite, or for `curate argilla serve --venv`).
#
#   scripts/argilla-server-setup.sh [VENV_DIR]      (default: $CURATE_ARGILLA_VENV or <repo>/.argilla-venv)
#
# The server gets its own venv so that its pins (notably click<8.2, needed by argilla-server 2.8's
# CLI) never leak into the project venv. The venv logic (pins, check, pip install) lives in
# curate/argilla_local/venv.py, the same code `curate argilla serve` runs; this script adds
# Debian's redis-server via apt-get when it is missing (`curate argilla serve` only says so).
# Idempotent: does nothing when everything is already installed.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-${CURATE_ARGILLA_VENV:-$repo/.argilla-venv}}"
python="${PYTHON:-python3}"

if ! command -v redis-server >/dev/null 2>&1; then
    echo "argilla-server-setup: installing redis-server (apt-get)" >&2
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq >/dev/null
    $sudo apt-get install -y -qq --no-install-recommends redis-server >/dev/null
    # The Debian package may start a system redis on 6379; the tests run their own.
fi
command -v redis-server >/dev/null || { echo "argilla-server-setup: redis-server still missing" >&2; exit 1; }

# venv.py is stdlib only and does not import curate, so any python3 runs it.
PYTHON="$python" exec "$python" "$repo/curate/argilla_local/venv.py" "$venv"
