"""``curate argilla serve`` as a user runs it: a subprocess on free ports with a home of its own.

The first start runs on a pseudo-terminal (the generated API key is shown there, once); real
fixture rows are pushed with ``curate push`` and one is answered; the server is stopped with
Ctrl-C (SIGINT) and started again on the same home. The records, the answer, text search and
progress are all still there, which proves the search index was rebuilt from the database; no
temp copy of the web app, no process and no copy of the key outside the server's database is left.
Uses the server venv of the argilla fixture (installed when missing; skips only without redis-server).
"""

from __future__ import annotations

import os
import pty
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from curate.argilla_local import server as S
from curate.cli import cli
from tests.servers.argilla_fixture import require_server_venv, server_venv

READY = re.compile(r"Argilla is ready at (http://\S+)")
DATASET, WORKSPACE = "serve-review", "serve-ws"


class Serve:
    """One ``curate argilla serve`` subprocess; its output goes to a pty (kept in memory) or a file."""

    def __init__(self, home: Path, port: int, tmpdir: Path, *, terminal: bool, out: Path | None = None,
                 extra: tuple = ()):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ARGILLA_", "CURATE_ARGILLA_"))}
        env.update(CURATE_ARGILLA_VENV=str(server_venv()), TMPDIR=str(tmpdir), COLUMNS="200")
        cmd = [sys.executable, "-m", "curate.cli", "argilla", "serve", "--home", str(home), "--port", str(port),
               "--start-timeout", "150", *extra]
        self.chunks: list[bytes] = []
        self.out = out
        if terminal:
            master, slave = pty.openpty()
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env,
                                         start_new_session=True)
            os.close(slave)
            self._reader = threading.Thread(target=self._read_pty, args=(master,), daemon=True)
            self._reader.start()
        else:
            with open(out, "wb") as f:
                self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                             env=env, start_new_session=True)

    def _read_pty(self, fd: int) -> None:
        try:
            while True:
                data = os.read(fd, 4096)
                if not data:
                    break
                self.chunks.append(data)
        except OSError:  # EIO once the child side is closed
            pass
        finally:
            os.close(fd)

    def output(self) -> str:
        if self.out is not None:
            return self.out.read_text(errors="replace")
        return b"".join(self.chunks).decode(errors="replace").replace("\r\n", "\n")

    def wait_ready(self, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = READY.search(self.output())
            if m:
                return m.group(1)
            if self.proc.poll() is not None:
                pytest.fail(f"curate argilla serve exited ({self.proc.returncode}):\n{self.output()}", pytrace=False)
            time.sleep(0.2)
        self.proc.kill()
        pytest.fail(f"curate argilla serve not ready after {timeout}s:\n{self.output()}", pytrace=False)

    def ctrl_c(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            assert self.proc.wait(timeout=40) == 0, self.output()
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self.out is None:
            self._reader.join(5)
        assert "stopped." in self.output()


def _launcher_redis_port(home: Path) -> int:
    """The redis port of the launcher serving HOME (read from its command line in /proc)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if str(S.LAUNCHER) in argv and str(home) in argv:
            return int(argv[argv.index("--redis-url") + 1].rsplit(":", 1)[1].split("/")[0])
    raise AssertionError(f"no launcher process for {home}")


def _launcher_alive(home: Path) -> bool:
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(home).encode() in cmdline.read_bytes() and str(S.LAUNCHER).encode() in cmdline.read_bytes():
                return True
        except OSError:
            continue
    return False


def _no_leftovers(home: Path, tmpdir: Path, redis_port: int) -> None:
    statics = [p for root in (home, tmpdir) for p in root.rglob("statics")]
    assert statics == [], f"temp copies of the web app left behind: {statics}"
    assert list((home / "run").iterdir()) == []
    assert not _launcher_alive(home)
    assert not S.redis_ready(redis_port), "redis-server still running"


def _client(url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"X-Argilla-Api-Key": key}, timeout=30)


def _state(c: httpx.Client, word: str) -> dict:
    """What the server says about the pushed dataset: records read back from the DB, and through search."""
    ds = next(d for d in c.get("/api/v1/me/datasets").json()["items"] if d["name"] == DATASET)
    records = c.get(f"/api/v1/datasets/{ds['id']}/records", params={"limit": 1000}).json()["items"]
    search = f"/api/v1/me/datasets/{ds['id']}/records/search"
    text = c.post(search, json={"query": {"text": {"q": word}}}, params={"limit": 1000})
    assert text.status_code == 200, text.text
    submitted = c.post(search, params={"limit": 1000}, json={"filters": {"and": [
        {"type": "terms", "scope": {"entity": "response", "property": "status"}, "values": ["submitted"]}]}})
    assert submitted.status_code == 200, submitted.text
    progress = c.get(f"/api/v1/datasets/{ds['id']}/progress").json()
    return {
        "dataset": ds["id"],
        "external_ids": sorted(r["external_id"] for r in records),
        "text_hits": sorted(i["record"]["external_id"] for i in text.json()["items"]),
        "submitted": sorted(i["record"]["external_id"] for i in submitted.json()["items"]),
        "progress": {k: progress[k] for k in ("total", "completed", "pending")},
    }


def test_serve_push_restart_keeps_records_and_search(fixtures, tmp_path):
    require_server_venv()
    t0 = time.perf_counter()
    home, tmpdir = tmp_path / "home", tmp_path / "systmp"
    tmpdir.mkdir()
    runner = CliRunner()
    norm = tmp_path / "norm"
    res = runner.invoke(cli, ["ingest", str(fixtures / "malay_alpaca.json"), "-o", str(norm), "--no-lang", "-q"])
    assert res.exit_code == 0, res.output
    import polars as pl

    sft = pl.read_parquet(norm / "sft.parquet")
    word = next(w for w in re.findall(r"[a-z]{6,}", sft["instruction"][0].lower()))

    # 1st start, on a terminal: the owner is created with a generated key, shown once
    first = Serve(home, S.free_port(), tmpdir, terminal=True)
    try:
        url = first.wait_ready()
        shown = re.search(r"export ARGILLA_API_KEY=(\S+)\s+\(shown this once", first.output())
        assert shown, first.output()
        key = shown.group(1)
        res = runner.invoke(cli, ["argilla", "key", "--home", str(home)])
        assert res.exit_code == 0 and res.output.strip() == key
        assert f"export ARGILLA_API_URL={url}" in first.output()
        login = re.search(r"Web UI login: owner / (\S+)", first.output())
        assert login, first.output()
        token = httpx.post(f"{url}/api/v1/token", data={"username": "owner", "password": login.group(1)})
        assert token.status_code == 201, token.text
        assert httpx.post(f"{url}/api/v1/token", data={"username": "owner", "password": "wrong-pass-1"}).status_code == 401
        redis_port = _launcher_redis_port(home)

        env = {"ARGILLA_API_URL": url, "ARGILLA_API_KEY": key}
        res = runner.invoke(cli, ["push", str(norm), "--dataset", DATASET, "--workspace", WORKSPACE], env=env)
        assert res.exit_code == 0, res.output
        assert f"{sft.height} created, 0 changed, 0 unchanged" in res.output
        with _client(url, key) as c:
            before = _state(c, word)
            answered = c.get(f"/api/v1/datasets/{before['dataset']}/records", params={"limit": 1}).json()["items"][0]
            resp = c.post(f"/api/v1/records/{answered['id']}/responses",
                          json={"status": "submitted", "values": {"quality": {"value": 4}}})
            assert resp.status_code == 201, resp.text
            before = _state(c, word)
    finally:
        first.ctrl_c()
    _no_leftovers(home, tmpdir, redis_port)

    assert len(before["external_ids"]) == sft.height == before["progress"]["total"]
    assert sorted(sft["id"].to_list()) == before["external_ids"]
    assert 0 < len(before["text_hits"]) < sft.height
    assert before["submitted"] == [answered["external_id"]]
    assert before["progress"]["completed"] == 1

    # 2nd start, output to a file (not a terminal), same home: nothing is lost, the key is not shown
    out = tmp_path / "serve2.out"
    second = Serve(home, S.free_port(), tmpdir, terminal=False, out=out, extra=("--api-key", "another-key-123"))
    try:
        url = second.wait_ready()
        assert "already exists; its API key is unchanged" in second.output()
        redis_port = _launcher_redis_port(home)
        with _client(url, key) as c:
            after = _state(c, word)
    finally:
        second.ctrl_c()
    _no_leftovers(home, tmpdir, redis_port)
    assert after == before
    assert "search index rebuilt from the database: 1 datasets, 200 records" in (home / "logs" / "server.log").read_text()

    # the key lives only in the server's database, the password nowhere (the database has its hash)
    for f in tmp_path.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert login.group(1).encode() not in data, f"the password was written to {f}"
            assert f.name.startswith("argilla.db") or key.encode() not in data, f"the API key was written to {f}"
    assert key not in second.output() and key not in res.output and login.group(1) not in second.output()
    assert second.output().count("Web UI login") == 0
    print(f"\n[serve test] two starts, push, restart: {time.perf_counter() - t0:.1f}s", file=sys.stderr)


def test_serve_errors_are_one_clear_message(tmp_path, monkeypatch):
    runner = CliRunner()
    home = str(tmp_path / "home")
    monkeypatch.delenv("CURATE_ARGILLA_API_KEY", raising=False)
    monkeypatch.delenv("CURATE_ARGILLA_PASSWORD", raising=False)

    # no redis-server binary
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    with monkeypatch.context() as m:
        m.setenv("PATH", str(empty))
        res = runner.invoke(cli, ["argilla", "serve", "--home", home, "--port", str(S.free_port())])
    assert res.exit_code == 1 and "redis-server was not found" in res.output and "apt-get install redis-server" in res.output
    assert "Traceback" not in res.output

    # port busy (checked before anything slow starts)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = runner.invoke(cli, ["argilla", "serve", "--home", home, "--port", str(port),
                                  "--redis-url", "redis://127.0.0.1:1/0"])
    assert res.exit_code == 1 and f"port {port} on 127.0.0.1 is already in use" in res.output
    assert f"--port {port + 1}" in res.output

    # the server venv cannot be created (its parent is a file): what failed, and the manual steps
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    res = runner.invoke(cli, ["argilla", "serve", "--home", home, "--port", str(S.free_port()),
                              "--redis-url", "redis://127.0.0.1:1/0", "--venv", str(blocker / "venv")])
    assert res.exit_code == 1 and f"could not install the Argilla server into {blocker / 'venv'}" in res.output
    assert "pip install 'argilla-server==2.8.0'" in res.output and "--venv" in res.output
    assert "Traceback" not in res.output

    # secrets too short for argilla-server
    res = runner.invoke(cli, ["argilla", "serve", "--home", home, "--api-key", "short"])
    assert res.exit_code == 1 and "at least 8 characters" in res.output

    # no server yet: `key` says how to start one
    res = runner.invoke(cli, ["argilla", "key", "--home", home])
    assert res.exit_code == 1 and "curate argilla serve" in res.output

    # a --home whose database is not SQLite (was an internal error): one line, the file untouched
    odd = tmp_path / "odd-home"
    odd.mkdir()
    (odd / "argilla.db").write_text("not a database")
    res = runner.invoke(cli, ["argilla", "key", "--home", str(odd)])
    assert res.exit_code == 1 and "not a usable Argilla server database" in res.output, res.output
    assert (odd / "argilla.db").read_text() == "not a database"
