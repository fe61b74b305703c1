from __future__ import annotations

from pathlib import Path

import click

from curate.progress import console, quiet_option


@click.command()
@click.argument("inp", metavar="IN", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output dataset: the restored rows as <kind>.parquet, quarantine.jsonl (entries that hold "
                   "no row), report.json.")
@click.option("--code", "codes", multiple=True, metavar="CODE",
              help="Restore only entries with this code (repeatable; `curate info IN` lists the codes).")
@quiet_option
def restore(inp, out_dir, codes):
    """Give quarantined rows back: a stage's quarantine as a dataset of the rows it dropped.

    IN is a stage output (its quarantine.parquet or quarantine.jsonl) or a quarantine file. Each row
    comes back as the stage saw it (a clean's fixes applied and listed in meta.fixes), with its id
    and provenance; entries that hold no row (raw records a reader could not parse: their text is in
    the entry) stay in the new quarantine.jsonl as they were. The result is an ordinary dataset:
    inspect it, clean it again with other rules, or merge it back.

    \b
    Example:
      curate restore datasets/clean --code near_duplicate -o rescued
      curate clean rescued -o rescued_clean --rule near_duplicate=off
      curate restore datasets/translated/quarantine.jsonl -o retry
    """
    from curate import io
    from curate.clean import quarantine as qfile

    io.check_output(out_dir, [inp])
    got = qfile.split(inp, codes or None)
    if not got.entries and not codes:
        raise io.DatasetError(f"{inp}: the quarantine holds no entry; nothing to restore.")
    if codes and not got.entries:
        raise click.UsageError(f"no entry in {inp} has the code(s) {', '.join(codes)}; `curate info {inp}` "
                               "lists the codes it holds")
    rows = {k: f.height for k, f in got.frames.items()}
    report = {"stage": "restore", "input": str(inp), "codes": list(codes) or None, "entries": got.entries,
              "restored": sum(rows.values()), "rows": rows, "restored_by_code": got.restored_by_code,
              "not_restored_by_code": got.left_by_code}
    io.write_stage(out_dir, stage="restore", frames=got.frames, quarantine=got.left, report=report, inputs=[inp],
                   params={"codes": list(codes)})
    console.print(f"{report['restored']:,} of {got.entries:,} quarantined rows restored to {out_dir}/"
                  + (f" ({len(got.left):,} entries hold no row: {out_dir}/quarantine.jsonl)" if got.left else ""))
