"""What every command does with its input: read it through :func:`curate.io.read_input` and tell
the user (on stderr) what was skipped or read twice, so nothing is dropped silently."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import click

from curate import io


def echo_notices(report: dict[str, Any]) -> None:
    for w in report.get("warnings", []):
        click.echo(f"warning: {w}", err=True)
    skipped = report.get("skipped", [])
    for s in skipped[:10]:
        click.echo(f"skipped: {s['path']}: {s['reason']}", err=True)
    if len(skipped) > 10:
        click.echo(f"skipped: ... and {len(skipped) - 10} more (listed in report.json)", err=True)


def load(paths: Path | str | Iterable[Path | str], *, kinds: Iterable[str] | None = None, **kw) -> io.Input:
    """``read_input`` plus the notices; with ``kinds``, refuse an input holding none of them."""
    inp = io.read_input(paths, **kw)
    echo_notices(inp.report)
    if inp.quarantine:
        click.echo(f"note: {len(inp.quarantine):,} source record(s) could not become rows; they are in the "
                   "output's quarantine.jsonl (stage ingest) with file:line and the reason.", err=True)
    if kinds is not None:
        kinds = list(kinds)
        if not any(k in inp.frames for k in kinds):
            found = ", ".join(inp.frames) or "no rows"
            raise io.DatasetError(f"{_names(paths)}: holds {found}; this command needs {' or '.join(kinds)} rows.")
    return inp


def _names(paths) -> str:
    if isinstance(paths, (str, Path)):
        return str(paths)
    return ", ".join(str(p) for p in paths)
