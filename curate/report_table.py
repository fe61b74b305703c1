"""Readable terminal tables for stage summaries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from curate.progress import console


def print_ingest_summary(summary: dict[str, Any], out_dir: Path) -> None:
    table = Table(title="ingest", show_lines=False)
    for col in ("source", "format", "kind", "records", "rows", "recovered", "quarantined"):
        table.add_column(col, justify="right" if col in ("records", "rows", "recovered", "quarantined") else "left")
    for f in summary["files"]:
        table.add_row(Path(f["source"]).name, f["format"], f["kind"], str(f["records"]), str(f["rows"]),
                      str(f["recovered"]), str(f["quarantined"]))
    t = summary["total"]
    table.add_row("total", "", "", str(t["records"]), str(t["rows"]), str(t["recovered"]), str(t["quarantined"]),
                  style="bold")
    console.print(table)
    status = "every record accounted for" if t["accounted"] else "ACCOUNTING MISMATCH"
    kinds = ", ".join(f"{k}: {n}" for k, n in summary["rows_by_kind"].items())
    console.print(f"{status}; rows by kind: {kinds}")
    console.print(f"outputs in {out_dir}/ (quarantine.jsonl holds the {t['quarantined']} quarantined records)")
