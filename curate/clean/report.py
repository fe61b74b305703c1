"""The clean report as a readable terminal table (rich)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from curate.progress import console


def _example(rule: dict[str, Any]) -> str:
    if not rule["examples"]:
        return ""
    ex = rule["examples"][0]
    if "before" in ex:
        before = (ex.get("before") or "")[:40].replace("\n", "\\n")
        after = (ex.get("after") or "")[:40].replace("\n", "\\n")
        return f"{ex['field']}: {before!r} -> {after!r}"
    return f"{ex['field']}: {(ex.get('evidence') or '')[:80]!r}"


def print_clean_report(report: dict[str, Any], *, dry_run: bool = False) -> None:
    title = "clean (dry run: nothing written)" if dry_run else "clean"
    table = Table(title=title)
    for col, justify in (("rule", "left"), ("action", "left"), ("fixed", "right"), ("flagged", "right"),
                         ("matched", "right"), ("dropped", "right"), ("s", "right"), ("example", "left")):
        table.add_column(col, justify=justify, overflow="fold")
    for r in report["rules"]:
        table.add_row(r["code"], r["action"], f"{r['fixed']:,}", f"{r['flagged']:,}", f"{r['matched']:,}",
                      f"{r['dropped']:,}", f"{r['seconds']:.2f}", _example(r))
    console.print(table)
    status = "every row accounted for" if report["accounted"] else "ACCOUNTING MISMATCH"
    read = (report.get("read") or {}).get("total") or {}
    if read.get("quarantined"):
        console.print(f"{read['records']:,} records read: {read['quarantined']:,} could not become rows "
                      f"(quarantined at read), {read['kept']:,} became {read['rows']:,} rows")
    console.print(f"rows in {report['rows_in']:,} = out {report['rows_out']:,} + dropped {report['rows_dropped']:,}"
                  f" ({status}); target language {report['target_lang']}; {report['seconds']:.1f} s")
    for r in report["rules"]:
        for c in (r.get("clusters") or [])[:3]:
            kept = (c.get("kept") or {}).get("text", "")
            console.print(f"  {r['code']}: cluster of {c['size']} (exact {c['exact']}, near {c['near']}) kept {kept[:70]!r}")
