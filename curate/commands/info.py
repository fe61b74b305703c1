from __future__ import annotations

from pathlib import Path

import click
import polars as pl
from rich.table import Table

from curate import schemas
from curate.info import counts
from curate.progress import console


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON lines instead of tables.")
def info(paths, as_json):
    """Row counts by schema (kind), source and language; a stage output's quarantined rows by code.

    Works on curate datasets (a directory with manifest.json, or one file), on a stage's
    quarantine file (the rows it holds, and its entries by code), and on raw source files or
    directories of them, which are ingested in memory first.

    \b
    Example:
      curate info datasets/normalized
      curate info datasets/clean/quarantine.parquet
      curate info tests/data/fixtures/malay_alpaca.json
    """
    from curate import io

    data = io.read_input(list(paths))
    df = counts(data.frames)
    if as_json:
        for row in df.iter_rows(named=True):
            click.echo(pl.DataFrame([row]).write_ndjson().strip())
        return
    for title, keys in (("by kind", ["kind"]), ("by source", ["kind", "source", "format"]), ("by language", ["lang"])):
        agg = df.group_by(keys).agg(pl.col("rows").sum()).sort(keys)
        table = Table(title=title)
        for k in keys:
            table.add_column(k)
        table.add_column("rows", justify="right")
        for row in agg.iter_rows():
            table.add_row(*[Path(str(v)).name if k == "source" else str(v) for k, v in zip(keys, row[:-1])],
                          f"{row[-1]:,}")
        console.print(table)
    console.print(f"total rows: {df['rows'].sum():,}")
    from curate.clean import quarantine as qfile

    qfiles = [f["source"] for f in data.report["files"] if f.get("format") == qfile.FORMAT]
    for p in [*(p for p in paths if p.is_dir()), *map(Path, qfiles)]:
        q = qfile.counts(p)
        if q is not None and q.height:
            table = Table(title=f"quarantined ({p.name})")
            for col in ("stage", "code", "rows"):
                table.add_column(col, justify="right" if col == "rows" else "left")
            for stage, code, n in q.iter_rows():
                table.add_row(stage, code, f"{n:,}")
            console.print(table)


@click.command("schemas")
def schemas_cmd():
    """Print the canonical schemas (columns and types of sft, chat, rm and ppo rows).

    \b
    Example:
      curate schemas
    """
    click.echo(schemas.describe())
