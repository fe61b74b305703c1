from __future__ import annotations

from pathlib import Path

import click

from curate import io
from curate.clean import CleanConfig, clean_dir, rule_rows
from curate.clean.config import LANGS
from curate.executors import executor_options, pop_executor
from curate.ingest.formats import NAMES as FORMAT_NAMES


def _list_rules(ctx, _param, value):
    if not value or ctx.resilient_parsing:
        return
    from rich.table import Table

    from curate.progress import console

    table = Table(title="clean rules (in the order they run)")
    for col in ("code", "default", "kinds", "applies to", "params", "description"):
        table.add_column(col, overflow="fold")
    for r in rule_rows():
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items())
        table.add_row(r["code"], r["default_action"], ",".join(r["kinds"]), ",".join(r["roles"]), params,
                      r["description"])
    console.print(table)
    ctx.exit()


@click.command()
@click.argument("inp", metavar="IN", type=click.Path(exists=True, path_type=Path))  # any input read_input takes
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Output directory (replaced as a whole): <kind>.parquet, quarantine.parquet, report.json, manifest.json.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="TOML file: target_lang, examples and [rules.CODE] tables (action = ..., params).")
@click.option("--rule", "rules", multiple=True, metavar="CODE=ACTION",
              help="Set a rule's action: fix, drop, flag or off (repeatable), e.g. --rule refusal=flag.")
@click.option("--set", "sets", multiple=True, metavar="CODE.PARAM=VALUE",
              help="Set a rule parameter (repeatable), e.g. --set near_duplicate.threshold=0.85.")
@click.option("--target-lang", type=click.Choice(LANGS), default=None,
              help="Language the dataset should be in (default ms, or the config file's); 'any' before "
                   "translation, so English/Korean/Indonesian rows are kept for `curate translate`.")
@click.option("--against", multiple=True, metavar="EVAL", type=click.Path(exists=True, path_type=Path),
              help="Eval set(s) to decontaminate against (turns the `contaminated` rule on; see "
                   "`curate decontaminate --help`); repeatable.")
@click.option("--dry-run", is_flag=True, help="Report what would happen; write nothing (except --report-json).")
@click.option("--report-json", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the report to this path.")
@click.option("--list-rules", is_flag=True, expose_value=False, is_eager=True, callback=_list_rules,
              help="List every rule (code, default action, kinds, parameters) and exit.")
@click.option("--format", "fmt", type=click.Choice(["auto", *FORMAT_NAMES]), default="auto", show_default=True,
              help="Source format of raw input files (auto-detected from content by default).")
@click.option("-q", "--quiet", is_flag=True, help="No table.")
@executor_options
def clean(inp, out_dir, config_path, rules, sets, target_lang, against, dry_run, report_json, fmt, quiet, **kwargs):
    """Fix, flag or drop rows by registered rules; dropped rows go to quarantine.parquet.

    Fixes are recorded before/after in each row's meta.fixes, flags in meta.flags; every
    dropped row is in quarantine.parquet (zstd) with the rule code, reason, evidence and the full row
    (Python: curate.clean.quarantine.read(path), .restore(path) gives the rows back).

    \b
    Example:
      curate clean datasets/normalized -o datasets/clean
      curate clean datasets/normalized -o datasets/clean --rule fix_indonesian=fix \\
          --rule indonesian=flag --set near_duplicate.threshold=0.85 --target-lang ms
      curate clean datasets/normalized --dry-run --config clean.toml
      curate clean datasets/normalized -o datasets/clean --against evals/gsm8k_test.jsonl
      curate clean datasets/normalized -o datasets/clean --executor ray   # on $RAY_ADDRESS or a local Ray
      curate clean --list-rules
    """
    if out_dir is None and not dry_run:
        raise click.UsageError("give -o OUT (or --dry-run to only report)")
    if report_json:
        io.check_file_output(report_json, [inp, *against], "--report-json")
    if against:
        sets = (*sets, "contaminated.against=" + ",".join(str(p) for p in against))
    executor = pop_executor(kwargs)
    config = CleanConfig.load(config_path, rules=rules, sets=sets, target_lang=target_lang)
    out = out_dir or Path(str(inp).rstrip("/") + ".clean-dry-run")
    if executor.is_ray:
        fmt_given = None if fmt == "auto" else fmt
        # an input curate cannot read (no manifest, unknown format, ...) says so before a Ray instance
        # starts (~5-10 s of start-up on a small machine), not after
        with io.open_input(inp, format=fmt_given):
            pass
        # ray_clean (and ray.data) imported while Ray starts
        executor.connect(quiet=quiet, preload=("curate.executors.ray_clean",))
        from curate.executors.ray_clean import clean_dir_ray, planned_blocks, warm_driver, warm_workers

        # the workers start and import while this process plans the passes
        warming = warm_workers(config, planned_blocks(inp, fmt_given))
        # after connecting, not before: the kernels' load (Python, under the GIL) slowed the imports of
        # ray and ray.data and so delayed the first pass by ~0.7-1.6 s; now it overlaps the workers' start
        warm_driver(config, dry_run)
        from curate.executors.ray_session import release

        # Ray stops (when the process ends with the command) while the quarantine and report are written
        result = clean_dir_ray(inp, out, config, dry_run=dry_run, report_json=report_json, fmt=fmt_given,
                               warming=warming, ray_done=release)
    else:
        result = clean_dir(inp, out, config, dry_run=dry_run, report_json=report_json,
                           progress=None if not quiet else False, fmt=None if fmt == "auto" else fmt)
    if not quiet:
        from curate.clean.report import print_clean_report

        print_clean_report(result.report, dry_run=dry_run)
        if not dry_run:
            from curate.progress import console

            unread = ((result.report.get("read") or {}).get("total") or {}).get("quarantined", 0)
            if unread:
                console.print(f"quarantine.parquet also holds the {unread:,} records that could not become rows")
            console.print(f"outputs in {out_dir}/ (quarantine.parquet holds the {result.report['rows_dropped']:,} "
                          f"dropped rows, report.json the figures)")
