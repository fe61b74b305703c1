"""Session-scoped pytest fixture running a real argilla-server 2.8 on loopback.

Registered once for the whole run by ``pytest_plugins`` in tests/conftest.py, so a test only asks
for it by name:

    def test_x(argilla_server):
        client = rg.Argilla(api_url=argilla_server.api_url, api_key=argilla_server.api_key)

The fixture starts redis-server and the package's launcher (curate/argilla_local/launcher.py:
SQLite + the in-memory search engine, the same code ``curate argilla serve`` runs) as subprocesses
of their own. The server venv is the one ``curate argilla serve`` uses (env CURATE_ARGILLA_VENV,
default ~/.cache/curate/argilla-venv); when it is missing the fixture installs it (once: the same
code and lock as ``make test``, the setup script and ``serve``). Only a missing redis-server
skips the tests (one line saying how to install it; a failure under CURATE_NO_SKIP=1).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from curate.argilla_local import server as S
from curate.argilla_local import venv as V
from tests import debian

USERNAME = "owner"
START_TIMEOUT = float(os.environ.get("CURATE_ARGILLA_START_TIMEOUT", "60"))


@dataclass(frozen=True)
class ArgillaServer:
    api_url: str
    api_key: str
    username: str
    log_path: Path

    def log(self) -> str:
        return S.tail(self.log_path, 400)


def server_venv() -> Path:
    return V.default_venv()


def require_server_venv() -> tuple[Path, str]:
    """(the server venv's python, redis-server's path); installs the venv when missing."""
    redis_bin = debian.require("redis-server")
    try:
        python = V.ensure(server_venv(), log=lambda m: print(f"[argilla fixture] {m}", file=sys.stderr, flush=True))
    except V.VenvError as exc:
        pytest.fail(str(exc), pytrace=False)
    return python, redis_bin


@pytest.fixture(scope="session")
def argilla_server() -> Iterator[ArgillaServer]:
    python, redis_bin = require_server_venv()
    workdir = Path(tempfile.mkdtemp(prefix="curate-argilla-"))
    redis_proc = server_proc = None
    try:
        t0 = time.perf_counter()
        redis_port, api_port = S.free_port(), S.free_port()
        server_log = workdir / "server.log"
        redis_proc = S.start_redis(redis_bin, redis_port, workdir / "redis", workdir / "redis.log")
        api_key = "curate-test-owner-key"
        server_proc = S.start_argilla(
            python, home=workdir / "home", host="127.0.0.1", port=api_port,
            redis_url=f"redis://127.0.0.1:{redis_port}/0", username=USERNAME, api_key=api_key,
            password="owner-password-1234", log_path=server_log, timeout=START_TIMEOUT,
        )
        api_url = f"http://127.0.0.1:{api_port}"
        print(f"\n[argilla fixture] argilla-server started at {api_url} in {time.perf_counter() - t0:.1f}s",
              file=sys.stderr, flush=True)
        yield ArgillaServer(api_url=api_url, api_key=api_key, username=USERNAME, log_path=server_log)
    except S.ServerError as exc:
        pytest.fail(str(exc), pytrace=False)
    finally:
        S.stop(server_proc)
        S.stop(redis_proc)
        shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------- users and answers

ANNOTATOR_PASSWORD = "annotator-pass-123"


@pytest.fixture(scope="session")
def owner(argilla_server):
    """A curate client (``curate.label.connect``) with the owner's key."""
    from curate.label import connect

    return connect(argilla_server.api_url, argilla_server.api_key)


@pytest.fixture(scope="session")
def annotator(owner, argilla_server):
    """A second user (role annotator) with a client of their own; ``join`` adds it to a workspace."""
    import argilla as rg

    user = owner.users("ann2") or rg.User(username="ann2", password=ANNOTATOR_PASSWORD, role="annotator",
                                          client=owner).create()
    key = owner.http_client.get(f"/api/v1/users/{user.id}").json()["api_key"]
    return {"user": user, "client": rg.Argilla(api_url=argilla_server.api_url, api_key=key)}


def join(owner, annotator, workspace: str) -> None:
    """Make ``annotator`` a member of ``workspace`` (created when missing)."""
    import argilla as rg

    ws = owner.workspaces(workspace) or rg.Workspace(name=workspace, client=owner).create()
    if annotator["user"].username not in {u.username for u in ws.users}:
        ws.add_user(annotator["user"])


def raw_records(client, dataset_id, include=("responses", "suggestions")) -> dict[str, dict]:
    """Every record of a dataset as the REST API returns it, by external id (= row id)."""
    out, offset = {}, 0
    while True:
        items = client.http_client.get(f"/api/v1/datasets/{dataset_id}/records",
                                       params={"include": list(include), "offset": offset, "limit": 1000}).json()["items"]
        out.update({r["external_id"]: r for r in items})
        if len(items) < 1000:
            return out
        offset += len(items)


def respond(client, record_uuid: str, status: str, values: dict | None = None) -> None:
    """Answer a record as the client's user, through the REST API (what the UI does)."""
    body = {"status": status}
    if values is not None:
        body["values"] = {q: {"value": v} for q, v in values.items()}
    resp = client.http_client.post(f"/api/v1/records/{record_uuid}/responses", json=body)
    assert resp.status_code == 201, resp.text
