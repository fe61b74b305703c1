"""Click options shared by every LLM stage: ``@llm_options`` on the command, then
``config_from_options(kwargs, default_batch_out=out_dir / "batch" / "<stage>-requests.jsonl")``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import click

from curate.llm.config import EngineConfig, resolve

OPTION_NAMES = ("base_url", "model", "api_key", "llm_config", "concurrency", "timeout", "max_requests",
                "max_retries", "cache", "no_cache", "batch_out", "batch_in", "retry_failed", "price_in",
                "price_out", "no_response_format", "fail_fast", "extra_budget")

# quarantine codes that are filters of the stage, not failed model replies (they do not change the exit code)
FILTER_CODES = frozenset({"too_long", "unchanged", "low_score", "verdict", "unranked"})
# quarantine codes caused by the environment (endpoint errors, spent budgets, Batch API errors)
ENV_CODES = frozenset({"llm_error", "batch_error", "pending"})


def llm_options(f):
    """Add the endpoint/engine options to a Click command (they arrive as keyword arguments)."""
    opts = [
        click.option("--base-url", envvar="OPENAI_BASE_URL", show_envvar=True, multiple=True,
                     help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 (vLLM, Ollama, llama.cpp). "
                          "Repeat for a fleet: requests spread over them, a failing server is left out for a while."),
        click.option("--model", envvar="CURATE_MODEL", show_envvar=True, help="Model name [default: gpt-4o-mini]."),
        click.option("--api-key", envvar="OPENAI_API_KEY", show_envvar=True, show_default=False,
                     help="API key (better: the environment variable). Never printed or stored."),
        click.option("--llm-config", type=click.Path(dir_okay=False, path_type=Path),
                     help="TOML file with base_url, model, api_key_env, concurrency, timeout, price_in/out."),
        click.option("--concurrency", type=click.IntRange(1, 1024), help="Requests in flight [default: 16]."),
        click.option("--timeout", type=click.FloatRange(0, min_open=True), help="Seconds per request [default: 120]."),
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
        click.option("--no-response-format", is_flag=True,
                     help="Never send response_format (some servers reject it; curate also drops it by itself "
                          "when a server does)."),
        click.option("--fail-fast", type=click.IntRange(0), metavar="K",
                     help="Stop when K requests in a row fail the same way (invalid replies, HTTP 4xx/5xx, "
                          "timeouts) [default: 20; 0 = never]."),
        click.option("--extra-budget", type=click.FloatRange(0), metavar="SHARE",
                     help="Retries and fix-ups may add at most this share of the first round's requests "
                          "[default: 0.25, at least 5]."),
        click.option("--price-in", type=click.FloatRange(0), help="USD per 1M input tokens (cost report)."),
        click.option("--price-out", type=click.FloatRange(0), help="USD per 1M output tokens (cost report)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def pop_llm_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Remove the engine options from a command's kwargs and return them."""
    return {name: kwargs.pop(name) for name in OPTION_NAMES if name in kwargs}


def config_from_options(opts: dict[str, Any], default_batch_out: Path | None = None,
                        progress: bool | None = None, inputs: Iterable[str | Path] = ()) -> EngineConfig:
    """An :class:`EngineConfig` from ``@llm_options`` values (env and config file fill the gaps).
    ``inputs``: what the stage reads; a --batch-out or --cache file that is one, or sits inside one,
    is refused before anything is written."""
    from curate.io import check_file_output

    for option in ("batch_out", "cache"):
        if opts.get(option):
            check_file_output(opts[option], inputs, "--" + option.replace("_", "-"))
    overrides: dict[str, Any] = {
        "concurrency": opts.get("concurrency"), "timeout": opts.get("timeout"),
        "max_requests": opts.get("max_requests"), "max_retries": opts.get("max_retries"),
        "price_in": opts.get("price_in"), "price_out": opts.get("price_out"),
        "retry_failed": opts.get("retry_failed") or None, "progress": progress,
        "batch_in": tuple(opts.get("batch_in") or ()) or None,
        "fail_fast": opts.get("fail_fast"), "extra_budget": opts.get("extra_budget"),
    }
    if opts.get("no_response_format"):
        overrides["response_format"] = False
    if opts.get("cache"):
        overrides["cache_path"] = opts["cache"]
    cfg = resolve(base_url=list(opts.get("base_url") or ()) or None, api_key=opts.get("api_key"), model=opts.get("model"),
                  config_file=opts.get("llm_config"), **overrides)
    if opts.get("no_cache"):
        cfg.cache_path = None
    if opts.get("batch_out"):
        cfg.batch_out = opts["batch_out"]
    elif not cfg.has_endpoint:
        cfg.batch_out = default_batch_out
    return cfg


def exit_code(report: dict[str, Any], engine) -> int:
    """0 all rows done (or waiting in Batch API files); :data:`~curate.errors.EXIT_ENV` when rows were
    lost to the environment (endpoint errors, spent budgets); :data:`~curate.errors.EXIT_MODEL` when
    rows were quarantined because of the model's replies."""
    from curate.errors import EXIT_ENV, EXIT_MODEL, EXIT_OK, EXIT_PENDING

    codes = {c for c, n in (report.get("quarantine_codes") or {}).items() if n}
    pending = engine.batch_mode and "pending" in codes
    if engine.batch_mode:
        codes.discard("pending")  # written to Batch API files: the notice says how to go on
    if codes & ENV_CODES:
        return EXIT_ENV
    if codes - FILTER_CODES - ENV_CODES:
        return EXIT_MODEL
    if pending:  # rows wait for Batch API results: a pipeline (make) must stop here, not run on 0 rows
        return EXIT_PENDING
    return EXIT_OK


def budget_line(llm: dict[str, Any]) -> str:
    extra = llm.get("extra_requests") or {}
    if extra.get("budget") is None:
        return f"retries + fix-ups {extra.get('sent', 0)} (no budget)"
    return (f"retries + fix-ups {extra['sent']} of a budget of {extra['budget']} "
            f"({extra['share']:.0%} of {llm.get('first_round_requests', 0)} first-round requests, at least "
            f"{extra['minimum']}; 429 waits not counted)")


def echo_summary(stage: str, report: dict[str, Any], engine, out_dir: Path, quiet: bool = False,
                 extra: str = "") -> None:
    """Print a stage's summary (rows, quarantine codes, requests, cache hits, tokens, cost, the retry
    budget) and, when requests went to Batch API files, the two-line notice; then end the command with
    :func:`exit_code`. ``report`` needs ``rows_in``, ``rows_out``, ``quarantined``, optionally
    ``quarantine_codes`` and ``rows_by_kind``; the LLM part comes from ``engine.report()``."""
    notice = engine.batch_notice(stage)
    code = exit_code(report, engine)
    if not quiet:
        from curate.progress import console

        llm = engine.report()
        codes = ", ".join(f"{k}: {v}" for k, v in (report.get("quarantine_codes") or {}).items()) or "none"
        kinds = ", ".join(f"{k} {v}" for k, v in (report.get("rows_by_kind") or {}).items())
        console.print(f"{stage}: {report['rows_in']} rows in, {report['rows_out']} out"
                      + (f" ({kinds})" if kinds else "") + f", {report['quarantined']} quarantined ({codes})")
        if extra:
            console.print(extra)
        tokens, cost = llm["tokens"], llm.get("cost_usd")
        console.print(f"requests sent {llm['requests_sent']} (first round {llm.get('first_round_requests', 0)}), "
                      f"replies from cache {llm['replies_cached']}, tokens in/out {tokens['prompt']}/{tokens['completion']}"
                      + (f", cost ${cost['spent']:.4f}" if cost and llm["requests_sent"] else ""))
        if llm["requests_sent"]:
            console.print(budget_line(llm) + (f"; response_format {llm['response_format']}"
                                              if llm.get("response_format", "on") != "on" else ""))
        console.print(f"outputs in {out_dir}/ (report.json, quarantine.jsonl)")
    if notice:
        click.echo(notice, err=True)
    if code:
        n_pending = (report.get("quarantine_codes") or {}).get("pending", 0)
        why = {3: "some rows were quarantined because of the model's replies (see quarantine.jsonl)",
               4: "some rows were not answered because of the endpoint or a spent budget; re-run to retry them "
                  "(answered requests are cached)",
               5: f"{n_pending} rows wait for the Batch API results (see above); later stages would see none of "
                  f"them, so stop here and re-run with --batch-in RESULTS when the batch is done"}[code]
        click.echo(f"{stage}: exit {code}: {why}", err=True)
        causes = engine.report().get("failure_causes") or []
        if causes and code in (3, 4):
            top = causes[0]
            click.echo(f"{stage}: cause ({top['requests']} requests): {top['cause']}", err=True)
        raise SystemExit(code)
