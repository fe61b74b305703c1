"""Click options shared by every LLM stage: ``@llm_options`` on the command, then
``config_from_options(kwargs, default_batch_out=out_dir / "batch" / "<stage>-requests.jsonl")``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from curate.llm.config import EngineConfig, resolve

OPTION_NAMES = ("base_url", "model", "api_key", "llm_config", "concurrency", "timeout", "max_requests",
                "max_retries", "cache", "no_cache", "batch_out", "batch_in", "retry_failed", "price_in",
                "price_out")


def llm_options(f):
    """Add the endpoint/engine options to a Click command (they arrive as keyword arguments)."""
    opts = [
        click.option("--base-url", envvar="OPENAI_BASE_URL", show_envvar=True,
                     help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 (vLLM, Ollama, llama.cpp)."),
        click.option("--model", envvar="CURATE_MODEL", show_envvar=True, help="Model name [default: gpt-4o-mini]."),
        click.option("--api-key", envvar="OPENAI_API_KEY", show_envvar=True, show_default=False,
                     help="API key (better: the environment variable). Never printed or stored."),
        click.option("--llm-config", type=click.Path(dir_okay=False, path_type=Path),
                     help="TOML file with base_url, model, api_key_env, concurrency, timeout, price_in/out."),
        click.option("--concurrency", type=click.IntRange(1, 1024), help="Requests in flight [default: 16]."),
        click.option("--timeout", type=float, help="Seconds per request [default: 120]."),
        click.option("--max-requests", type=click.IntRange(0), help="Stop sending after this many requests."),
        click.option("--max-retries", type=click.IntRange(0), help="Retries on 5xx/timeouts [default: 8]."),
        click.option("--cache", type=click.Path(dir_okay=False, path_type=Path),
                     help="Reply cache (SQLite) [default: $CURATE_LLM_CACHE or ~/.cache/curate/llm.sqlite]."),
        click.option("--no-cache", is_flag=True, help="Do not read or write the reply cache."),
        click.option("--batch-out", type=click.Path(dir_okay=False, path_type=Path),
                     help="Write uncached requests as OpenAI Batch API input JSONL instead of calling."),
        click.option("--batch-in", type=click.Path(exists=True, dir_okay=False, path_type=Path), multiple=True,
                     help="Merge Batch API result files (any order) into the cache, then run."),
        click.option("--retry-quarantined", "retry_failed", is_flag=True,
                     help="Ask again for cached replies that failed validation and for batch errors."),
        click.option("--price-in", type=float, help="USD per 1M input tokens (cost report)."),
        click.option("--price-out", type=float, help="USD per 1M output tokens (cost report)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def pop_llm_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Remove the engine options from a command's kwargs and return them."""
    return {name: kwargs.pop(name) for name in OPTION_NAMES if name in kwargs}


def config_from_options(opts: dict[str, Any], default_batch_out: Path | None = None,
                        progress: bool | None = None) -> EngineConfig:
    """An :class:`EngineConfig` from ``@llm_options`` values (env and config file fill the gaps)."""
    overrides: dict[str, Any] = {
        "concurrency": opts.get("concurrency"), "timeout": opts.get("timeout"),
        "max_requests": opts.get("max_requests"), "max_retries": opts.get("max_retries"),
        "price_in": opts.get("price_in"), "price_out": opts.get("price_out"),
        "retry_failed": opts.get("retry_failed") or None, "progress": progress,
        "batch_in": tuple(opts.get("batch_in") or ()) or None,
    }
    if opts.get("cache"):
        overrides["cache_path"] = opts["cache"]
    cfg = resolve(base_url=opts.get("base_url"), api_key=opts.get("api_key"), model=opts.get("model"),
                  config_file=opts.get("llm_config"), **overrides)
    if opts.get("no_cache"):
        cfg.cache_path = None
    if opts.get("batch_out"):
        cfg.batch_out = opts["batch_out"]
    elif not cfg.has_endpoint:
        cfg.batch_out = default_batch_out
    return cfg


def echo_summary(stage: str, report: dict[str, Any], engine, out_dir: Path, quiet: bool = False) -> None:
    """Print a stage's summary (rows, quarantine codes, requests, cache hits, tokens, cost) and, when
    requests went to Batch API files, the two-line notice. ``report`` needs ``rows_in``, ``rows_out``,
    ``quarantined``, optionally ``quarantine_codes``; the LLM part comes from ``engine.report()``."""
    from curate.progress import console

    notice = engine.batch_notice(stage)
    if not quiet:
        llm = engine.report()
        codes = ", ".join(f"{k}: {v}" for k, v in (report.get("quarantine_codes") or {}).items()) or "none"
        console.print(f"{stage}: {report['rows_in']} rows in, {report['rows_out']} out, {report['quarantined']} "
                      f"quarantined ({codes})")
        tokens, cost = llm["tokens"], llm.get("cost_usd")
        console.print(f"requests sent {llm['requests_sent']} (retries {llm['retries']}), replies from cache "
                      f"{llm['replies_cached']}, tokens in/out {tokens['prompt']}/{tokens['completion']}"
                      + (f", cost ${cost['spent']:.4f}" if cost and llm["requests_sent"] else ""))
        console.print(f"outputs in {out_dir}/ (report.json, quarantine.jsonl)")
    if notice:
        click.echo(notice, err=True)
