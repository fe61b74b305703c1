from __future__ import annotations

from pathlib import Path

import click

from curate import io
from curate.progress import console, quiet_option
from curate.report_html import write_report


@click.command()
@click.argument("inp", metavar="IN", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", "out_html", type=click.Path(dir_okay=False, path_type=Path),
              help="HTML file to write (default: IN/report.html for a dataset directory).")
@click.option("--compare", type=click.Path(exists=True, path_type=Path),
              help="An earlier stage of the same data (e.g. the ingest output) to show before/after.")
@click.option("-m", "--model", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="SentencePiece model: adds token-length distributions.")
@click.option("--title", help="Title of the report.")
@quiet_option
def report(inp, out_html, compare, model, title):
    """Write one self-contained HTML report of a dataset (opens offline; charts are inline SVG).

    Rows per source and kind, language mix, length distributions, what each clean rule did,
    duplicate clusters, the ingest accounting, the quarantine by reason, and before/after
    when --compare names the stage the data came from.

    \b
    Example:
      curate report datasets/clean --compare datasets/normalized -o clean.html
      curate report datasets/normalized --model malay.model -o normalized.html
    """
    if out_html is None:
        if not inp.is_dir():
            raise click.UsageError("-o report.html is required when IN is a single file")
        out_html = inp / "report.html"
    # (report.html beside the data is the report's own place, as without -o)
    io.check_file_output(out_html, [inp, *([compare] if compare else [])], "-o", may_sit_in_input=("report.html",))
    path = write_report(inp, out_html, compare=compare, model=model, title=title)
    console.print(f"report: {path}")
