"""Run a throwaway argilla-server 2.8 with SQLite and the in-memory search engine.

Run it with the SERVER venv's python (see scripts/argilla-server-setup.sh):

    .argilla-venv/bin/python tests/servers/argilla_launcher.py \
        --port 6900 --home /tmp/argilla-home --redis-url redis://127.0.0.1:6379/0

It migrates the SQLite database in --home, creates an owner user whose API key
is --api-key (default: env ARGILLA_TEST_API_KEY) and serves on 127.0.0.1:PORT
until killed. Redis must be reachable at start-up (rq workers are not needed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

ENGINE_NAME = "memory"  # must match memory_search.ENGINE_NAME


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--home", required=True, help="directory for the SQLite database and server files")
    p.add_argument("--redis-url", required=True)
    p.add_argument("--api-key", default=os.environ.get("ARGILLA_TEST_API_KEY"), help="owner API key (>= 8 chars)")
    p.add_argument("--username", default="owner")
    p.add_argument("--password", default="owner-password-1234")
    p.add_argument("--log-level", default="warning")
    args = p.parse_args(argv)
    if not args.api_key or len(args.api_key) < 8:
        p.error("an API key of at least 8 characters is required (--api-key or ARGILLA_TEST_API_KEY)")
    return args


def configure_env(args: argparse.Namespace) -> None:
    # argilla_server reads its settings from the environment when it is first imported.
    home = Path(args.home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        ARGILLA_HOME_PATH=str(home),
        ARGILLA_DATABASE_URL=f"sqlite+aiosqlite:///{home / 'argilla.db'}",
        ARGILLA_SEARCH_ENGINE=ENGINE_NAME,
        ARGILLA_REDIS_URL=args.redis_url,
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
    )


async def create_owner(args: argparse.Namespace) -> None:
    from argilla_server.cli.database.users.create import _create
    from argilla_server.database import async_engine
    from argilla_server.models import UserRole

    try:
        await _create(
            first_name="Owner",
            username=args.username,
            role=UserRole.owner,
            password=args.password,
            api_key=args.api_key,
        )
    finally:
        await async_engine.dispose()  # its connections belong to this event loop, not uvicorn's


def main(argv=None) -> None:
    args = parse_args(argv)
    configure_env(args)

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import memory_search  # noqa: F401  (registers the "memory" search engine)

    assert memory_search.ENGINE_NAME == ENGINE_NAME

    from argilla_server.cli.database.migrate import migrate_db

    migrate_db(revision="head")
    asyncio.run(create_owner(args))

    import uvicorn

    uvicorn.run("argilla_server:app", host="127.0.0.1", port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
