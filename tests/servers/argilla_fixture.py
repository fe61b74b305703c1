"""Session-scoped pytest fixture running a real argilla-server 2.8 on loopback.

Use it from a conftest.py (or a test module):

    from tests.servers.argilla_fixture import argilla_server  # noqa: F401

    def test_x(argilla_server):
        client = rg.Argilla(api_url=argilla_server.api_url, api_key=argilla_server.api_key)

The fixture starts redis-server and tests/servers/argilla_launcher.py (SQLite +
in-memory search engine) as subprocesses of their own, using the server venv
from env CURATE_ARGILLA_VENV (default <repo>/.argilla-venv, made by
scripts/argilla-server-setup.sh). Without that venv the tests are skipped, or
fail when env CI is set, so that CI always exercises the real server.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = Path(__file__).resolve().with_name("argilla_launcher.py")
SETUP_SCRIPT = "scripts/argilla-server-setup.sh"
USERNAME = "owner"
START_TIMEOUT = float(os.environ.get("CURATE_ARGILLA_START_TIMEOUT", "60"))


@dataclass(frozen=True)
class ArgillaServer:
    api_url: str
    api_key: str
    username: str
    log_path: Path

    def log(self) -> str:
        return _tail(self.log_path)


def server_venv() -> Path:
    return Path(os.environ.get("CURATE_ARGILLA_VENV") or REPO / ".argilla-venv")


def _unavailable(reason: str) -> None:
    msg = f"{reason}; install it with: bash {SETUP_SCRIPT} {server_venv()}"
    if os.environ.get("CI"):
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, limit: int = 20000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return "<no log>"


def _spawn(cmd: list, log_path: Path, env: Optional[dict] = None) -> subprocess.Popen:
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def _stop(proc: Optional[subprocess.Popen]) -> None:
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)  # the process is its own group leader (start_new_session)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _wait_until(ready, proc: subprocess.Popen, what: str, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with code {proc.returncode}; log:\n{_tail(log_path)}", pytrace=False)
        if ready():
            return
        time.sleep(0.2)
    pytest.fail(f"{what} not ready after {timeout:.0f}s; log:\n{_tail(log_path)}", pytrace=False)


def _redis_ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _http_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def argilla_server() -> Iterator[ArgillaServer]:
    python = server_venv() / "bin" / "python"
    if not python.exists():
        _unavailable(f"argilla server venv not found at {server_venv()}")
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        _unavailable("redis-server not found on PATH")

    workdir = Path(tempfile.mkdtemp(prefix="curate-argilla-"))
    redis_proc = server_proc = None
    try:
        redis_port, api_port = _free_port(), _free_port()
        redis_log, server_log = workdir / "redis.log", workdir / "server.log"
        redis_proc = _spawn(
            [redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(workdir)],
            redis_log,
        )
        _wait_until(lambda: _redis_ready(redis_port), redis_proc, "redis-server", redis_log, 15)

        api_key = "curate-test-owner-key"
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        env["ARGILLA_TEST_API_KEY"] = api_key
        server_proc = _spawn(
            [str(python), str(LAUNCHER), "--port", str(api_port), "--home", str(workdir / "home"),
             "--redis-url", f"redis://127.0.0.1:{redis_port}/0", "--username", USERNAME],
            server_log,
            env=env,
        )
        api_url = f"http://127.0.0.1:{api_port}"
        _wait_until(
            lambda: _http_ready(f"{api_url}/api/v1/status"), server_proc, "argilla-server", server_log, START_TIMEOUT
        )
        yield ArgillaServer(api_url=api_url, api_key=api_key, username=USERNAME, log_path=server_log)
    finally:
        _stop(server_proc)
        _stop(redis_proc)
        shutil.rmtree(workdir, ignore_errors=True)
