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


def load(paths: Path | str | Iterable[Path | str], *, writes_quarantine: bool = False, **kw) -> io.Input:
    """``read_input`` plus the notices (skipped files, paths given twice, quarantined records).
    ``writes_quarantine``: the command writes them to its output's quarantine.jsonl."""
    inp = io.read_input(paths, **kw)  # the CLI prints its notices (io.reader.NOTIFY)
    if inp.quarantine:
        where = ("they are in the output's quarantine.jsonl (stage ingest)" if writes_quarantine else
                 "`curate ingest` writes them to quarantine.jsonl")
        click.echo(f"note: {len(inp.quarantine):,} source record(s) could not become rows; {where} with "
                   "file:line and the reason.", err=True)
    return inp
