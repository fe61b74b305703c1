from __future__ import annotations

from pathlib import Path

import click

from curate import io
from curate.export import ALL_FORMATS, export as export_frames
from curate.executors import executor_options, pop_executor
from curate.ingest.formats import NAMES as FORMAT_NAMES
from curate.progress import console, quiet_option


@click.command()
@click.argument("inp", metavar="IN", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output directory for the exported files and manifest.json.")
@click.option("--format", "formats", multiple=True, type=click.Choice(ALL_FORMATS),
              help="Formats to write (repeatable). Default: every format that fits each kind.")
@click.option("--test-size", type=float, default=0.0, show_default=True,
              help="Fraction of rows in the test split, chosen by id hash (stable across re-exports).")
@click.option("--input-format", "fmt", type=click.Choice(["auto", *FORMAT_NAMES]), default="auto", show_default=True,
              help="Source format of raw input files (auto-detected from content by default).")
@quiet_option
@executor_options
def export(inp, out_dir, formats, test_size, fmt, **kwargs):
    """Write SFT / chat / RM / PPO rows in the formats trainers use.

    \b
    sft, chat: messages (TRL conversational, OpenAI fine-tuning), prompt_completion, alpaca
    rm:        pairs (prompt/chosen/rejected, every pair the ranking implies), ranked
    ppo:       prompt

    \b
    Example:
      curate export datasets/clean -o datasets/export --test-size 0.05
      curate export datasets/normalized/rm.parquet -o out --format pairs
      curate export datasets/clean -o datasets/export --executor ray     # records built on a Ray cluster
    """
    executor = pop_executor(kwargs)
    io.check_output(out_dir, [inp])
    if executor.is_ray:
        from curate.executors.ray_export import export_ray

        executor.connect(quiet=console.quiet)  # -q: Ray's start-up notices are not printed either
        manifest = export_ray(inp, out_dir, list(formats) or None, test_size, fmt=None if fmt == "auto" else fmt)
    else:
        data = io.read_input(inp, format=None if fmt == "auto" else fmt)
        manifest = export_frames(data.frames, out_dir, list(formats) or None, test_size, inputs=[inp],
                                 input_manifests=data.manifest_ids, quarantine=data.quarantine)
    for f in manifest["files"]:
        skipped = f" ({f['skipped']} rows skipped: the format can't hold them)" if f["skipped"] else ""
        console.print(f"{f['records']:>8,}  {f['path']}{skipped}")
    for f in manifest.get("not_exported", []):
        console.print(f"{f['rows']:>8,}  {f['kind']} rows not exported: {f['reason']}")
    console.print(f"files listed in {out_dir / 'export.json'} (and manifest.json)")
