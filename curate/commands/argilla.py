"""``curate argilla serve`` / ``curate argilla key``: a local Argilla server for labelling (see curate.argilla_local)."""

from __future__ import annotations

from pathlib import Path

import click

from curate.argilla_local import serve as SV
from curate.argilla_local import venv as V
from curate.errors import UserError

HOME_HELP = "Server data: the SQLite database, logs. [default: ~/.local/share/curate/argilla; env CURATE_ARGILLA_HOME]"


@click.group("argilla")
def argilla():
    """A local Argilla server for `curate push` / `curate pull`, without Docker or Elasticsearch.

    \b
    Example:
      curate argilla serve                       # http://127.0.0.1:6900, Ctrl-C stops it
      export ARGILLA_API_URL=http://127.0.0.1:6900
      export ARGILLA_API_KEY=$(curate argilla key)
      curate push datasets/clean --dataset review-ms
    """


@argilla.command()
@click.option("--host", default=SV.DEFAULT_HOST, show_default=True, help="Interface to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=SV.DEFAULT_PORT, show_default=True)
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), help=HOME_HELP)
@click.option("--venv", "venv_dir", type=click.Path(file_okay=False, path_type=Path),
              help="The server's own venv (argilla-server 2.8.0, click<8.2), created when missing. "
                   "[default: ~/.cache/curate/argilla-venv; env CURATE_ARGILLA_VENV]")
@click.option("--redis-url", help="Use this Redis instead of starting redis-server on a free loopback port.")
@click.option("--username", envvar="CURATE_ARGILLA_USERNAME", default="owner", show_default=True,
              help="The owner user, created at the first start. [env CURATE_ARGILLA_USERNAME]")
@click.option("--password", envvar="CURATE_ARGILLA_PASSWORD",
              help="The owner's web UI password at creation (>= 8 chars; generated and shown once when "
                   "omitted). [env CURATE_ARGILLA_PASSWORD]")
@click.option("--api-key", envvar="CURATE_ARGILLA_API_KEY",
              help="The owner's API key at creation (>= 8 chars; generated when omitted, shown once on a "
                   "terminal; `curate argilla key` reads it back). [env CURATE_ARGILLA_API_KEY]")
@click.option("--start-timeout", type=float, default=120, show_default=True,
              help="Seconds to wait for the server to answer.")
def serve(host, port, home, venv_dir, redis_url, username, password, api_key, start_timeout):
    """Run argilla-server 2.8 locally until Ctrl-C: SQLite, an in-memory search index, redis-server.

    The first start creates the server's venv (pip; about 2 minutes, once per machine:
    `make test` and the setup script use the same one) and the owner user. Every start rebuilds
    the search index from the database, so a restart loses nothing. Prints the
    `export ARGILLA_API_URL=... ARGILLA_API_KEY=...` lines for `curate push` / `curate pull`.
    Not a production deployment: no Elasticsearch (search scans memory: thousands of records,
    not millions), no rq workers (the UI's "Push to Hub" and "Import from Hugging Face" do not
    work), one process; for production use Argilla's official Docker deployment.

    \b
    Example:
      curate argilla serve
      curate argilla serve --port 6901 --home ./argilla-data --password 'choose-a-good-one'
    """
    SV.serve(home=home or SV.default_home(), venv=venv_dir or V.default_venv(), host=host, port=port,
             redis_url=redis_url, username=username, password=password, api_key=api_key,
             start_timeout=start_timeout, echo=lambda m: click.echo(m))


@argilla.command()
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), help=HOME_HELP)
@click.option("--username", envvar="CURATE_ARGILLA_USERNAME", default="owner", show_default=True)
def key(home, username):
    """Print the API key of the local server's owner (read from its database).

    \b
    Example:
      export ARGILLA_API_KEY=$(curate argilla key)
    """
    home = home or SV.default_home()
    found = SV.owner_api_key(home, username)
    if found is None:
        raise UserError(f"no user {username!r} in the local Argilla server at {home}: "
                        "start it once with `curate argilla serve` (or pass --home / --username).")
    click.echo(found)
