"""Start and stop redis-server and the argilla-server launcher as subprocesses (stdlib only).

Used by ``curate argilla serve`` and by the test fixture (tests/servers/argilla_fixture.py). Each
child runs in a session of its own so a terminal's Ctrl-C reaches only the parent, which then stops
the server first (a graceful uvicorn shutdown, which removes its temp files) and redis second.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Callable, Optional

from curate.argilla_local import LAUNCHER
from curate.argilla_local.launcher import KEY_ENV, PASSWORD_ENV

STATUS_PATH = "/api/v1/status"


class ServerError(Exception):
    """A child process failed to start; the message carries its log's tail."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is not "busy"
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


def spawn(cmd: list, log_path: Path, env: Optional[dict] = None) -> subprocess.Popen:
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)


def stop(proc: Optional[subprocess.Popen], grace: float = 15) -> None:
    """SIGTERM the child's process group, SIGKILL it after ``grace`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)  # the child leads its own group (start_new_session)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_until(ready: Callable[[], bool], proc: subprocess.Popen, what: str, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"{what} exited with code {proc.returncode}; its log ({log_path}) ends with:\n"
                              f"{tail(log_path)}")
        if ready():
            return
        time.sleep(0.2)
    raise ServerError(f"{what} not ready after {timeout:.0f}s; its log ({log_path}) ends with:\n{tail(log_path)}")


def redis_ready(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def http_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def start_redis(redis_bin: str, port: int, workdir: Path, log_path: Path, timeout: float = 15) -> subprocess.Popen:
    """A throwaway redis-server on 127.0.0.1:PORT (no persistence: argilla keeps its data in SQLite)."""
    Path(workdir).mkdir(parents=True, exist_ok=True)
    proc = spawn([redis_bin, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                  "--dir", str(workdir)], log_path)
    try:
        wait_until(lambda: redis_ready(port), proc, "redis-server", log_path, timeout)
    except BaseException:
        stop(proc)
        raise
    return proc


def launcher_env(api_key: Optional[str], password: Optional[str]) -> dict:
    """The environment for the launcher: secrets go through it, never through argv (``ps`` shows argv)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", KEY_ENV, PASSWORD_ENV)}
    if api_key:
        env[KEY_ENV] = api_key
    if password:
        env[PASSWORD_ENV] = password
    return env


def start_argilla(python: Path, *, home: Path, host: str, port: int, redis_url: str, username: str,
                  api_key: Optional[str], password: Optional[str], log_path: Path,
                  timeout: float = 90, log_level: str = "warning") -> subprocess.Popen:
    """Start the launcher with the server venv's python and wait until /api/v1/status answers."""
    cmd = [str(python), str(LAUNCHER), "--host", host, "--port", str(port), "--home", str(home),
           "--redis-url", redis_url, "--username", username, "--log-level", log_level]
    proc = spawn(cmd, log_path, env=launcher_env(api_key, password))
    probe = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    try:
        wait_until(lambda: http_ready(f"http://{probe}:{port}{STATUS_PATH}"), proc, "argilla-server", log_path, timeout)
    except BaseException:
        stop(proc)
        raise
    return proc
