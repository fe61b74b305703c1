"""What every command does with its input: read it through :func:`curate.io.read_input` and tell
the user (on stderr) what was skipped or read twice, so nothing is dropped silently."""

from __future__ import annotations

from typing import Any

import click


def echo_notices(report: dict[str, Any], *, quarantined: bool = True) -> None:
    """Warnings, skipped files and (``quarantined``) the records that could not become rows."""
    for w in report.get("warnings", []):
        click.echo(f"warning: {w}", err=True)
    skipped = report.get("skipped", [])
    for s in skipped[:10]:
        click.echo(f"skipped: {s['path']}: {s['reason']}", err=True)
    if len(skipped) > 10:
        click.echo(f"skipped: ... and {len(skipped) - 10} more (listed in report.json)", err=True)
    total = report.get("total") or {}
    if quarantined and total.get("quarantined"):
        click.echo(f"read: {total['records']:,} records, {total['quarantined']:,} could not become rows (a stage "
                   "writes them to its quarantine with file:line and the reason; `curate ingest` too)", err=True)

