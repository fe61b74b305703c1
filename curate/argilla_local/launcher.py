"""Run argilla-server 2.8 with SQLite and the in-memory search engine (no Elasticsearch, no Docker).

Run it with the SERVER venv's python (``curate argilla serve`` and the test fixture do):

    ~/.cache/curate/argilla-venv/bin/python curate/argilla_local/launcher.py \
        --port 6900 --home ~/.local/share/curate/argilla --redis-url redis://127.0.0.1:6379/0

Steps: migrate the SQLite database in --home; create the owner user once (its password and API
key come from the environment, CURATE_ARGILLA_OWNER_PASSWORD / CURATE_ARGILLA_OWNER_API_KEY, never
from the command line, and are never printed); rebuild the in-memory search index from the database
(datasets, records, responses, suggestions, vectors), so a restart loses nothing; serve
``argilla_server:app`` with uvicorn until SIGINT/SIGTERM. Redis must be reachable at start-up.

argilla_server copies its ~14 MB web app into a new temp folder at every import; the launcher
points Python's temp dir at --home/run/tmp-<pid> and removes it on exit (and stale ones of dead
launchers at start).

This file runs inside the server venv: it imports only the standard library, argilla_server and
memory_search.py next to it - never curate.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

ENGINE_NAME = "memory"  # must match memory_search.ENGINE_NAME
KEY_ENV = "CURATE_ARGILLA_OWNER_API_KEY"
PASSWORD_ENV = "CURATE_ARGILLA_OWNER_PASSWORD"
MIN_SECRET = 8


def log(message: str) -> None:
    print(f"[launcher] {message}", flush=True)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--home", required=True, help="directory for the SQLite database and server files")
    p.add_argument("--redis-url", required=True)
    p.add_argument("--username", default="owner", help="the owner user, created once")
    p.add_argument("--log-level", default="warning")
    return p.parse_args(argv)


def configure_env(home: Path, args: argparse.Namespace) -> None:
    # argilla_server reads its settings from the environment when it is first imported.
    os.environ.update(
        ARGILLA_HOME_PATH=str(home),
        ARGILLA_DATABASE_URL=f"sqlite+aiosqlite:///{home / 'argilla.db'}",
        ARGILLA_SEARCH_ENGINE=ENGINE_NAME,
        ARGILLA_REDIS_URL=args.redis_url,
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def private_tempdir(home: Path) -> Path:
    """Point tempfile (and TMPDIR) at home/run/tmp-<pid>, after removing those of dead launchers."""
    run = home / "run"
    run.mkdir(parents=True, exist_ok=True)
    for old in run.glob("tmp-*"):
        pid = old.name[4:]
        if not pid.isdigit() or not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    tmp = run / f"tmp-{os.getpid()}"
    tmp.mkdir(exist_ok=True)
    os.environ["TMPDIR"] = str(tmp)
    tempfile.tempdir = str(tmp)
    return tmp


async def create_owner(username: str, password: str | None, api_key: str | None) -> bool:
    """Create the owner unless a user of that name exists; True when created. Prints no secret."""
    from argilla_server.contexts import accounts
    from argilla_server.database import AsyncSessionLocal
    from argilla_server.models import User, UserRole

    async with AsyncSessionLocal() as db:
        if await accounts.get_user_by_username(db, username) is not None:
            return False
        if not password or len(password) < MIN_SECRET or not api_key or len(api_key) < MIN_SECRET:
            raise SystemExit(
                f"[launcher] the owner {username!r} does not exist yet: a password and an API key of at least "
                f"{MIN_SECRET} characters are needed in env {PASSWORD_ENV} / {KEY_ENV}"
            )
        if await accounts.get_user_by_api_key(db, api_key) is not None:
            raise SystemExit("[launcher] another user already has that API key; choose another one")
        await User.create(
            db,
            first_name=username,
            username=username,
            role=UserRole.owner,
            password_hash=accounts.hash_password(password),
            api_key=api_key,
        )
        return True


async def reindex() -> tuple[int, int]:
    """Rebuild the search index from the database with argilla_server's own reindexer."""
    from argilla_server.cli.search_engine.reindex import Reindexer
    from argilla_server.database import AsyncSessionLocal
    from argilla_server.search_engine import get_search_engine

    datasets = records = 0
    async with AsyncSessionLocal() as db:
        async for engine in get_search_engine():
            async for dataset in Reindexer.reindex_datasets(db, engine):
                datasets += 1
                async for batch in Reindexer.reindex_dataset_records(db, engine, dataset):
                    records += len(batch)
    return datasets, records


async def prepare(args: argparse.Namespace) -> None:
    from argilla_server.database import async_engine

    try:
        created = await create_owner(args.username, os.environ.get(PASSWORD_ENV), os.environ.get(KEY_ENV))
        log(f"owner {args.username!r} {'created' if created else 'exists'}")
        t0 = time.perf_counter()
        datasets, records = await reindex()
        log(f"search index rebuilt from the database: {datasets} datasets, {records} records "
            f"in {time.perf_counter() - t0:.1f}s")
    finally:
        await async_engine.dispose()  # its connections belong to this event loop, not uvicorn's


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def main(argv=None) -> None:
    args = parse_args(argv)
    home = Path(args.home).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    # SIGTERM unwinds through the finally below (uvicorn re-raises it after its graceful shutdown).
    signal.signal(signal.SIGTERM, _terminate)
    tmp = private_tempdir(home)
    try:
        configure_env(home, args)
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import memory_search  # noqa: F401  (registers the "memory" search engine)

        assert memory_search.ENGINE_NAME == ENGINE_NAME
        from argilla_server.cli.database.migrate import migrate_db

        migrate_db(revision="head")
        asyncio.run(prepare(args))

        import uvicorn

        log(f"serving on http://{args.host}:{args.port}")
        uvicorn.run("argilla_server:app", host=args.host, port=args.port, log_level=args.log_level)
    except KeyboardInterrupt:
        pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        log("stopped")


if __name__ == "__main__":
    main()
