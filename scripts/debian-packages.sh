#!/usr/bin/env bash
# The Debian packages the test suite needs besides what pip installs:
#   redis-server   the Argilla tests (argilla-server needs Redis at start-up)
#   chromium       the HTML report check renders the page headless (with fonts-liberation)
#
#   scripts/debian-packages.sh                    say in ONE line what is missing and how to install it
#   scripts/debian-packages.sh --install [NAME]   install what is missing (apt-get; root or sudo)
#
# Without --install it never fails: the tests that need a missing package skip with the same hint
# (`.ci/run` installs them and runs the tests with CURATE_NO_SKIP=1, so there a skip fails).
set -euo pipefail

install=0
if [ "${1:-}" = "--install" ]; then install=1; shift; fi
if (($#)); then wanted=("$@"); else wanted=(redis-server chromium); fi

have() {   # keep in step with tests/debian.py
    case "$1" in
        redis-server) command -v redis-server >/dev/null 2>&1 ;;
        chromium) command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
                  || command -v google-chrome >/dev/null 2>&1 || command -v google-chrome-stable >/dev/null 2>&1 ;;
        *) echo "debian-packages: unknown package $1 (known: redis-server chromium)" >&2; exit 2 ;;
    esac
}
packages() { case "$1" in chromium) echo "chromium fonts-liberation" ;; *) echo "$1" ;; esac; }

missing=() pkgs=()
for name in "${wanted[@]}"; do
    if ! have "$name"; then missing+=("$name"); read -r -a p <<<"$(packages "$name")"; pkgs+=("${p[@]}"); fi
done
((${#missing[@]})) || exit 0

if ((install == 0)); then
    echo "missing Debian packages (their tests skip): ${missing[*]}; install: sudo apt-get install -y --no-install-recommends ${pkgs[*]}"
    exit 0
fi
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "== apt-get install ${pkgs[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
$sudo apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
for name in "${missing[@]}"; do
    have "$name" || { echo "debian-packages: $name still missing after apt-get install" >&2; exit 1; }
done
