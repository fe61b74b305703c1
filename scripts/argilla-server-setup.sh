#!/usr/bin/env bash
# Install a self-contained argilla-server for the test suite.
#
#   scripts/argilla-server-setup.sh [VENV_DIR]      (default: <repo>/.argilla-venv)
#
# The server gets its own venv so that its pins (notably click<8.2, needed by
# argilla-server 2.8's CLI) never leak into the project venv. Redis is provided
# by Debian's redis-server, installed via apt-get when it is missing.
# Idempotent: does nothing when everything is already installed.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-${CURATE_ARGILLA_VENV:-$repo/.argilla-venv}}"
python="${PYTHON:-python3}"
pkgs=("argilla-server==2.8.0" "argilla==2.8.0" "click<8.2")

if ! command -v redis-server >/dev/null 2>&1; then
    echo "argilla-server-setup: installing redis-server (apt-get)" >&2
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq >/dev/null
    $sudo apt-get install -y -qq --no-install-recommends redis-server >/dev/null
    # The Debian package may start a system redis on 6379; the tests run their own.
fi
command -v redis-server >/dev/null || { echo "argilla-server-setup: redis-server still missing" >&2; exit 1; }

check='import importlib.metadata as m, sys
click = tuple(int(x) for x in m.version("click").split(".")[:2])
ok = m.version("argilla-server") == "2.8.0" and m.version("argilla") == "2.8.0" and click < (8, 2)
sys.exit(0 if ok else 1)'
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "$check" 2>/dev/null; then
    exit 0
fi

echo "argilla-server-setup: installing ${pkgs[*]} into $venv" >&2
log="$(mktemp)"; trap 'rm -f "$log"' EXIT
if ! { [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"; } >"$log" 2>&1 \
    || ! "$venv/bin/python" -m pip install -q --disable-pip-version-check "${pkgs[@]}" >>"$log" 2>&1; then
    cat "$log" >&2
    echo "argilla-server-setup: FAILED to install into $venv" >&2
    exit 1
fi
"$venv/bin/python" -c "$check" || { echo "argilla-server-setup: install check failed" >&2; exit 1; }
echo "argilla-server-setup: ready ($venv)" >&2
