"""How long `curate argilla serve` takes to be ready: the first start (fresh server venv) and the next.

Runs the real command as a user does, twice, on a new venv directory and a new home in a temp
folder, and times each start from launch to its "Argilla is ready" line:

* first start: pip creates the server venv (argilla-server 2.8.0 and its dependencies), then the
  server migrates its new SQLite database, creates the owner and starts;
* second start: the venv is there; only the server starts.

By default pip's cache is disabled (PIP_NO_CACHE_DIR=1), so the first start fetches every wheel
as on a fresh machine; --pip-cache measures it with the cache this machine already has.
--pypi-only also ignores pip's configuration files and PIP_FIND_LINKS / PIP_INDEX_URL /
PIP_EXTRA_INDEX_URL (a machine with a local package mirror), so every wheel is downloaded from
pypi.org. The temp venv and home are removed at the end.

Rerun: flock /tmp/bench.lock .venv/bin/python bench/argilla_first_start.py [--pip-cache] [--pypi-only]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
READY = re.compile(r"Argilla is ready at (http://\S+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(venv: Path, home: Path, log: Path, env: dict, timeout: float) -> float:
    """Seconds from launch to the ready line; the server is stopped with Ctrl-C (SIGINT) after."""
    cmd = [sys.executable, "-m", "curate.cli", "argilla", "serve", "--venv", str(venv), "--home", str(home),
           "--port", str(free_port()), "--password", "bench-password-1", "--start-timeout", "300"]
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=ROOT, start_new_session=True)
    try:
        while time.perf_counter() - t0 < timeout:
            if READY.search(log.read_text(errors="replace")):
                return time.perf_counter() - t0
            if proc.poll() is not None:
                raise SystemExit(f"curate argilla serve exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        raise SystemExit(f"not ready after {timeout:.0f}s:\n{log.read_text()[-3000:]}")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pip-cache", action="store_true", help="let pip use its cache (default: download everything)")
    p.add_argument("--pypi-only", action="store_true",
                   help="ignore pip's config files and local indexes: download everything from pypi.org")
    p.add_argument("--timeout", type=float, default=1200)
    args = p.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARGILLA_", "CURATE_ARGILLA_"))}
    env["PYTHONPATH"] = str(ROOT)
    if not args.pip_cache:
        env["PIP_NO_CACHE_DIR"] = "1"
    if args.pypi_only:
        for key in ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
            env.pop(key, None)
        env["PIP_CONFIG_FILE"] = os.devnull
    work = Path(tempfile.mkdtemp(prefix="curate-argilla-bench-"))
    try:
        venv, home = work / "argilla-venv", work / "home"
        first = start(venv, home, work / "first.log", env, args.timeout)
        second = start(venv, home, work / "second.log", env, args.timeout)
        size = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file() and not f.is_symlink())
        print(f"pip cache: {'used' if args.pip_cache else 'disabled'}; package index: "
              f"{'pypi.org only' if args.pypi_only else 'as pip is configured here'}; {os.cpu_count()} cores")
        print(f"first start (fresh venv, {size / 2**20:.0f} MB installed): {first:.1f}s")
        print(f"second start (venv present):                   {second:.1f}s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
