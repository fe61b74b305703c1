"""``curate argilla serve`` as a function: a local argilla-server for labelling, no Docker, no Elasticsearch.

What runs: redis-server on a free loopback port (or the Redis at ``redis_url``) and
``launcher.py`` under the server venv's python (SQLite in ``home``, the in-memory search index
rebuilt from that database at start). Logs go to ``home/logs/``. The owner's password and API key
are stored only in the server's database; a generated API key is shown once, on a terminal, and
``owner_api_key`` reads it back (``curate argilla key``).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from curate.argilla_local import server as S
from curate.argilla_local import venv as V
from curate.errors import UserError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 6900
MIN_SECRET = 8


def default_home() -> Path:
    """``$CURATE_ARGILLA_HOME`` or ``$XDG_DATA_HOME/curate/argilla`` (``~/.local/share/...``)."""
    if os.environ.get("CURATE_ARGILLA_HOME"):
        return Path(os.environ["CURATE_ARGILLA_HOME"]).expanduser()
    data = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data / "curate" / "argilla"


def db_path(home: Path) -> Path:
    return Path(home) / "argilla.db"


def owner_api_key(home: Path, username: str) -> Optional[str]:
    """The API key of user ``username`` in the server database under ``home`` (None: no such user yet)."""
    db = db_path(home)
    if not db.exists():
        return None
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        row = con.execute("SELECT api_key FROM users WHERE username = ?", (username,)).fetchone()
    except sqlite3.OperationalError:  # not migrated yet
        return None
    except sqlite3.DatabaseError as exc:  # not SQLite, or damaged
        raise UserError(f"{db}: not a usable Argilla server database ({exc}); give the --home of a server "
                        "`curate argilla serve` started, or move this file away to start a new one") from None
    finally:
        con.close()
    return row[0] if row else None


@dataclass
class Running:
    api_url: str
    home: Path
    server: object
    redis: object  # None with an external Redis


def _check_secret(name: str, value: Optional[str]) -> None:
    if value is not None and len(value) < MIN_SECRET:
        raise UserError(f"the owner's {name} must have at least {MIN_SECRET} characters")


def _key_cmd(home: Path, username: str) -> str:
    cmd = "curate argilla key"
    if Path(home).resolve() != default_home().resolve():
        cmd += f" --home {home}"
    if username != "owner":
        cmd += f" --username {username}"
    return cmd


def serve(*, home: Path, venv: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          redis_url: Optional[str] = None, username: str = "owner", password: Optional[str] = None,
          api_key: Optional[str] = None, start_timeout: float = 120, echo: Callable[[str], None] = print,
          is_terminal: Optional[bool] = None, on_ready: Optional[Callable[[Running], None]] = None) -> None:
    """Run the server until Ctrl-C / SIGTERM, then stop it and redis. Raises UserError on any set-up failure.

    The API key is echoed only when it was generated here, for a new owner, and ``is_terminal``
    (default: stdout is a TTY); otherwise the output says how to read it.
    """
    home = Path(home).expanduser().absolute()
    is_terminal = sys.stdout.isatty() if is_terminal is None else is_terminal
    _check_secret("password", password)
    _check_secret("API key", api_key)

    # cheap checks first, the slow venv install last
    redis_bin = None
    if not redis_url:
        redis_bin = shutil.which("redis-server")
        if redis_bin is None:
            raise UserError("redis-server was not found on PATH (argilla-server needs Redis at start-up). "
                            "Install it (Debian/Ubuntu: sudo apt-get install redis-server) or pass "
                            "--redis-url redis://HOST:PORT/0 of a Redis you run.")
    if S.port_in_use(host, port):
        raise UserError(f"port {port} on {host} is already in use (another `curate argilla serve`?). "
                        f"Stop what uses it or pick another port, e.g. --port {port + 1}.")
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the server's home {home}: {exc.strerror}. Pass another --home.") from None
    try:
        python = V.ensure(Path(venv), log=echo)
    except V.VenvError as exc:
        raise UserError(str(exc)) from None

    existing = owner_api_key(home, username)
    generated_key = False
    if existing is None:
        if api_key is None:
            api_key, generated_key = secrets.token_urlsafe(24), True
        generated_password = password is None
        if generated_password:
            password = secrets.token_urlsafe(12)
    else:
        if api_key is not None and api_key != existing:
            echo(f"note: the owner {username!r} already exists; its API key is unchanged (--api-key ignored).")
        api_key = password = None  # the launcher creates nobody
        generated_password = False

    logs = home / "logs"
    redis_proc = server_proc = None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def _stop_signal(signum, frame):
        raise KeyboardInterrupt

    # SIGINT too: a shell starts background jobs with SIGINT ignored, and Ctrl-C must still stop us
    for sig in previous:
        signal.signal(sig, _stop_signal)
    try:
        t0 = time.perf_counter()
        if redis_bin is not None:
            redis_port = S.free_port()
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
            redis_proc = S.start_redis(redis_bin, redis_port, home / "redis", logs / "redis.log")
        echo(f"starting argilla-server (data in {home}, logs in {logs}) ...")
        server_proc = S.start_argilla(python, home=home, host=host, port=port, redis_url=redis_url,
                                      username=username, api_key=api_key, password=password,
                                      log_path=logs / "server.log", timeout=start_timeout)
        url_host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
        api_url = f"http://{url_host}:{port}"
        echo(f"Argilla is ready at {api_url} (web UI and API) after {time.perf_counter() - t0:.1f}s. "
             "Ctrl-C stops it.")
        if host != DEFAULT_HOST:
            echo(f"warning: listening on {host}, not only on this machine's loopback.")
        if existing is None:
            echo(f"Owner {username!r} created; its password and API key are stored only in the server's database.")
            if generated_password:
                echo(f"  Web UI login: {username} / {password}   (shown this once; write it down)"
                     if is_terminal else
                     "  A password was generated and is not shown (output is not a terminal); "
                     "pass --password on first start to choose it.")
        echo("Use it with curate push / pull:")
        echo(f"  export ARGILLA_API_URL={api_url}")
        if generated_key and is_terminal:
            echo(f"  export ARGILLA_API_KEY={api_key}   (shown this once; read it again with: "
                 f"{_key_cmd(home, username)})")
        else:
            echo(f"  export ARGILLA_API_KEY=$({_key_cmd(home, username)})")
        if on_ready is not None:
            on_ready(Running(api_url=api_url, home=home, server=server_proc, redis=redis_proc))
        while True:
            for proc, what, log in ((server_proc, "argilla-server", logs / "server.log"),
                                    (redis_proc, "redis-server", logs / "redis.log")):
                if proc is not None and proc.poll() is not None:
                    raise UserError(f"{what} stopped unexpectedly (exit code {proc.returncode}); "
                                    f"its log ({log}) ends with:\n{S.tail(log)}")
            time.sleep(0.5)
    except S.ServerError as exc:
        raise UserError(f"{exc}\nFix what the log says, then run the same command again.") from None
    except KeyboardInterrupt:
        echo("stopping ...")
    finally:
        S.stop(server_proc)
        S.stop(redis_proc)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    echo("stopped.")
