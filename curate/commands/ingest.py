from __future__ import annotations

from pathlib import Path

import click

from curate import io
from curate.executors import executor_options, pop_executor
from curate.ingest import ingest_to_dir
from curate.ingest.formats import BY_NAME, FORMATS
from curate.commands._input import echo_notices
from curate.progress import bar
from curate.report_table import print_ingest_summary


def _list_formats(ctx, _param, value):
    if not value or ctx.resilient_parsing:
        return
    for f in FORMATS:
        click.echo(f"{f.name:<24} {f.kind:<5} {f.summary}")
    ctx.exit()


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=True, path_type=Path))
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output directory (replaced as a whole): <kind>.parquet, quarantine.jsonl, report.json, manifest.json.")
@click.option("--format", "fmt", type=click.Choice(["auto", *BY_NAME]), default="auto", show_default=True,
              help="Source format; auto-detected from content by default.")
@click.option("--no-lang", is_flag=True, help="Skip language identification (the lang column stays empty).")
@click.option("--list-formats", is_flag=True, expose_value=False, is_eager=True, callback=_list_formats,
              help="List the formats curate reads and exit.")
@click.option("--output-format", type=click.Choice(["parquet", "jsonl"]), default="parquet", show_default=True,
              help="Parquet is the working format between stages; JSONL for reading by eye or other tools.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or table.")
@click.option("--report", "report_html", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write an HTML report of the output here (see `curate report`).")
@executor_options
def ingest(paths, out_dir, fmt, no_lang, output_format, quiet, report_html, **kwargs):
    """Read source files in any known format into the canonical schemas.

    Every record ends up either as a row (repairs recorded in its meta) or in
    quarantine.jsonl with file:line and a reason. Directories are read recursively; files
    there that curate can't read are skipped and listed in report.json; gzip, bzip2 and xz
    files (data.jsonl.gz) are read decompressed. The output directory is committed at once
    with a manifest.json (a killed run leaves the previous output).

    \b
    Example:
      curate ingest datasets/raw/*.json* datasets/raw/*.txt -o datasets/normalized
      curate ingest --list-formats
      curate ingest raw/ -o datasets/normalized --executor ray     # one Ray task per source file
    """
    executor = pop_executor(kwargs)
    if report_html:
        io.check_file_output(report_html, paths, "--report")
    summary = None
    if executor.is_ray:
        from curate.executors.ray_ingest import ingest_ray

        executor.connect(quiet=quiet)
        summary = ingest_ray(paths, out_dir, None if fmt == "auto" else fmt, detect_lang=not no_lang,
                             output_format=output_format)
    if summary is None:
        with bar("ingest", enabled=None if not quiet else False) as b:
            summary = ingest_to_dir(paths, out_dir, None if fmt == "auto" else fmt, detect_lang=not no_lang,
                                    output_format=output_format, on_progress=b.advance)
    if not quiet:
        print_ingest_summary(summary, out_dir)
    echo_notices(summary, quarantined=quiet)  # the table shows them otherwise
    if report_html:
        from curate.report_html import write_report

        write_report(out_dir, report_html)
