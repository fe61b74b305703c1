"""``curate reflect``: rewrite chat answers in hindsight into SFT rows and preference pairs (curate.reflect)."""

from __future__ import annotations

from pathlib import Path

import click

from curate.executors import executor_options, pop_executor
from curate.llm.options import config_from_options, echo_summary, llm_options, pop_llm_options


def summary(stage: str, rep: dict, engine, out_dir: Path, quiet: bool, extra: str = "") -> None:
    echo_summary(stage, rep, engine, out_dir, quiet, extra=extra)


@click.command()
@click.argument("inp", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output dataset directory (sft.parquet, rm.parquet, [chat.parquet], quarantine.jsonl, report.json).")
@click.option("--max-context", type=click.IntRange(0), default=6000, show_default=True,
              help="Prompt token budget (estimated); far later turns are cut first, then the oldest earlier "
                   "ones, and the cut is marked in the prompt. 0 = no limit.")
@click.option("--min-change", type=click.FloatRange(0, 1), default=0.05, show_default=True,
              help="Skip pairs whose new answer differs from the old by less than this (1 - word similarity).")
@click.option("--lang", help="Language of every new answer (default: the chat's lang, else detected).")
@click.option("--keep-indonesian", is_flag=True,
              help="Answer chats read as Indonesian in Indonesian (default: Malay-first, they get Malay answers).")
@click.option("--chat/--no-chat", "chat", default=False, show_default=True,
              help="Also write chat rows: the turns before K, K and the new answer.")
@click.option("--temperature", type=float, default=0.0, show_default=True)
@click.option("--max-tokens", type=click.IntRange(1), help="Reply token limit per request.")
@llm_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
@executor_options
def reflect(inp, out_dir, max_context, min_change, lang, keep_indonesian, chat, temperature, max_tokens, quiet,
            **kwargs):
    """Judge each chat answer in hindsight and rewrite it (SelfReflectionGPT's method).

    For every assistant answer L to a user turn K that has later turns, the model sees the whole
    conversation and returns a critique C of L in the light of what the user said afterwards and a
    new answer L' to K as if in a fresh chat. Checked: K unchanged, C and L' non-empty, L' in the
    chat's language (Malay, not Indonesian) and not a refusal; failures are re-asked with the error,
    then quarantined with the raw reply. Writes SFT rows (instruction K, input = the earlier turns,
    output L'; critique and old answer in meta) and RM rows ranking L' over L: only these new rows
    are in the output (the input's rows of other kinds are counted in report.json under
    rows_not_read). Replies are cached; without an endpoint the requests are written as Batch API
    files.

    \b
    Example:
      curate reflect datasets/translated -o datasets/reflected \\
          --base-url http://127.0.0.1:8000/v1 --model qwen2.5-7b-instruct
      OPENAI_API_KEY=... curate reflect chats.jsonl -o out/ --max-context 4000 --min-change 0.1
      curate reflect datasets/translated -o datasets/reflected --executor ray \\
          --base-url http://vllm-0:8000/v1 --base-url http://vllm-1:8000/v1   # chats spread over a Ray actor pool
    """
    from curate.reflect import reflect_dataset

    executor = pop_executor(kwargs)
    opts = pop_llm_options(kwargs)
    cfg = config_from_options(opts, default_batch_out=out_dir / "batch" / "reflect-requests.jsonl", inputs=[inp],
                              progress=False if quiet else None)
    kw = dict(max_context=max_context or None, min_change=min_change, keep_indonesian=keep_indonesian, lang=lang,
              chat=chat, temperature=temperature, max_tokens=max_tokens)
    if executor.is_ray:
        from curate.executors import ray_llm

        executor.connect(quiet=quiet)
        rep, engine = ray_llm.reflect(inp, out_dir, cfg, **kw)
    else:
        outcome, engine = reflect_dataset(inp, out_dir, cfg, **kw)
        rep = outcome.report
    not_read = ", ".join(f"{n} {k}" for k, n in rep.get("rows_not_read", {}).items() if n)
    summary("reflect", rep, engine, out_dir, quiet,
            extra=f"answers reviewed {rep['answers_reviewed']}, reflected {rep['answers_reflected']}"
                  + (f"; not chats, so not in the output: {not_read} rows" if not_read else ""))
