"""``curate batch submit|status|fetch``: the OpenAI Batch API for the files LLM stages write with
``--batch-out`` (or with no endpoint configured), through the official openai client."""

from __future__ import annotations

import json
from pathlib import Path

import click


def _endpoint(f):
    for opt in reversed([
        click.option("--base-url", envvar="OPENAI_BASE_URL", show_envvar=True,
                     help="OpenAI-compatible endpoint with the Files and Batches APIs [default: api.openai.com]."),
        click.option("--api-key", envvar="OPENAI_API_KEY", show_envvar=True, show_default=False,
                     help="API key (better: the environment variable). Never printed or stored."),
        click.option("--llm-config", type=click.Path(dir_okay=False, path_type=Path),
                     help="TOML file with base_url and api_key_env."),
        click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text."),
    ]):
        f = opt(f)
    return f


def _config(base_url, api_key, llm_config):
    from curate.llm.config import resolve

    return resolve(base_url=base_url, api_key=api_key, config_file=llm_config, cache_path=None)


@click.group()
def batch():
    """Submit Batch API request files, watch them, fetch the results.

    \b
    Example:
      curate translate data/ -o out/ --batch-out out/batch/requests.jsonl
      curate batch submit out/batch/requests.jsonl
      curate batch status batch_abc123
      curate batch fetch batch_abc123 -o results.jsonl --wait 3600
      curate translate data/ -o out/ --batch-in results.jsonl
    """


@batch.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--metadata", multiple=True, metavar="KEY=VALUE", help="Metadata stored with each batch.")
@_endpoint
def submit(files, metadata, base_url, api_key, llm_config, as_json):
    """Upload Batch API request files (purpose "batch") and create one batch for each.

    \b
    Example:
      curate batch submit out/batch/translate-requests.jsonl
    """
    from curate.errors import UserError
    from curate.llm import batch_api

    meta = {}
    for item in metadata:
        if "=" not in item:
            raise UserError(f"--metadata {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        meta[k] = v
    out = batch_api.submit(files, _config(base_url, api_key, llm_config), meta or None)
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    for b in out:
        click.echo(f"{b['batch_id']}  {b['status']:<11} {b['requests']} requests from {b['file']}")
    click.echo(f"Next: curate batch fetch {out[0]['batch_id']} -o results.jsonl --wait 86400, then re-run the stage "
               "with --batch-in results.jsonl")


@batch.command()
@click.argument("ids", nargs=-1, required=True)
@_endpoint
def status(ids, base_url, api_key, llm_config, as_json):
    """Show the status and request counts of batches.

    \b
    Example:
      curate batch status batch_abc123 batch_def456
    """
    from curate.llm import batch_api

    out = batch_api.status(ids, _config(base_url, api_key, llm_config))
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    for b in out:
        n = b["requests"] or {}
        click.echo(f"{b['batch_id']}  {b['status']:<11} {n.get('completed', 0)}/{n.get('total', 0)} done, "
                   f"{n.get('failed', 0)} failed")


@batch.command()
@click.argument("batch_id")
@click.option("-o", "--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Results file (output lines, then error lines) for --batch-in.")
@click.option("--wait", type=click.FloatRange(0), default=0, show_default=True,
              help="Seconds to wait for the batch to finish, polling.")
@click.option("--poll", type=click.FloatRange(0.01), default=30, show_default=True, help="Seconds between polls.")
@_endpoint
def fetch(batch_id, out, wait, poll, base_url, api_key, llm_config, as_json):
    """Download a finished batch's results into one file for --batch-in.

    \b
    Example:
      curate batch fetch batch_abc123 -o results.jsonl --wait 3600
    """
    from curate.llm import batch_api

    res = batch_api.fetch(batch_id, out, _config(base_url, api_key, llm_config), wait=wait, poll=poll)
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return
    click.echo(f"{batch_id} {res['status']}: {res['lines']} result lines -> {out}\n"
               f"Next: re-run the stage with --batch-in {out}")
