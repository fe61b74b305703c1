"""``curate generate``: self-instruct from a seed file (see curate.generate)."""

from __future__ import annotations

from pathlib import Path

import click

from curate import seeds as S
from curate.errors import PendingRows, UserError
from curate.generate import generate as run_generate, write_outputs
from curate.io import check_output
from curate.io.files import read_text
from curate.llm import Engine
from curate.llm.options import config_from_options, llm_options, pop_llm_options
from curate.progress import console, quiet_option


@click.command()
@click.option("--seeds", "seeds_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Seed tasks (self-instruct JSONL), e.g. seeds/malay_seed_tasks.jsonl.")
@click.option("-n", "n", type=click.IntRange(1), required=True, help="How many new tasks to keep.")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output directory: generated.json (Alpaca, like malay.json), sft.parquet, quarantine.jsonl, report.json.")
@click.option("--lang", help="Target language (default: the seed file's `lang` in seeds.toml, else ms).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Sampling seed: the same seed gives the same requests, so a re-run is answered from the cache.")
@click.option("--prompt", "prompt_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Your own generation prompt (the numbered examples are appended to it).")
@click.option("--threshold", type=float, default=0.7, show_default=True,
              help="Drop a task whose ROUGE-L F against any seed or kept task is above this.")
@click.option("--temperature", type=float, default=1.0, show_default=True)
@click.option("--max-tokens", type=int, default=3072, show_default=True)
@click.option("--no-similarity-fields", is_flag=True,
              help="Skip most_similar_instructions/avg_similarity_score (pruned similarity check only; "
                   "for very large runs).")
@click.option("--no-lang-check", is_flag=True,
              help="Keep tasks that curate.langid reads as another language (by default dropped: "
                   "e.g. Indonesian when generating Malay).")
@quiet_option
@llm_options
def generate(seeds_file, n, out_dir, lang, seed, prompt_file, threshold, temperature, max_tokens,
             no_similarity_fields, no_lang_check, **kwargs):
    """Grow N new tasks from seed tasks with self-instruct, as Stanford Alpaca did, in any language.

    Each request shows 3 random seed tasks and asks for a list of 20; replies are parsed, the last
    item of a reply cut by length is dropped, and tasks are filtered (length, things a text model
    can't do, "Write a program", punctuation, wrong language, ROUGE-L > 0.7 against seeds and
    kept tasks).
    Replies are cached: re-running the same command sends nothing. Without an endpoint the
    requests are written as Batch API input; re-run with --batch-in RESULTS.jsonl.

    \b
    Example:
      curate generate --seeds seeds/malay_seed_tasks.jsonl -n 1000 -o datasets/generated \\
        --base-url http://127.0.0.1:8000/v1 --model qwen2.5-7b-instruct
      curate generate --seeds seeds/alpaca_seed_tasks.jsonl --lang ms -n 200 -o out/gen   # OPENAI_API_KEY set
    """
    llm = pop_llm_options(kwargs)
    out_dir = check_output(out_dir, [seeds_file])
    tasks = S.load_tasks(seeds_file)
    lang = lang or S.settings_for(seeds_file).get("lang") or "ms"
    prompt = read_text(prompt_file, what="prompt file").rstrip("\n") if prompt_file else None
    if prompt is not None and not prompt.strip():
        raise UserError(f"{prompt_file}: the prompt file is empty; leave --prompt out to use the built-in prompt")
    cfg = config_from_options(llm, default_batch_out=out_dir / "batch" / "generate-requests.jsonl", inputs=[seeds_file])
    engine = Engine(cfg, description="generate")
    result = run_generate(tasks, n, engine, lang=lang, seed=seed, threshold=threshold, prompt=prompt,
                          params={"temperature": temperature, "max_tokens": max_tokens},
                          similarity_fields=not no_similarity_fields, lang_check=not no_lang_check,
                          source=str(seeds_file))
    paths = write_outputs(result, out_dir, lang, str(seeds_file))
    rep = result.report
    console.print(f"kept {rep['kept']:,} of {rep['requested']:,} requested from {rep['requests']:,} requests "
                  f"({rep['parsed_items']:,} items parsed); dropped: {rep['dropped'] or 'none'}")
    console.print(f"wrote {paths['alpaca']} and {paths['sft']} ({paths['quarantine'].name}, {paths['report'].name})")
    if result.pending:
        console.print(engine.batch_notice("generate"))
        raise PendingRows(f"{result.pending:,} requests wait for Batch API results; re-run with --batch-in RESULTS "
                          "when the batch is done (the kept tasks are in the output already)")
    elif rep["kept"] < n and rep["llm_failures"].get("budget"):
        raise UserError(f"stopped at the request budget (--max-requests) with {rep['kept']} of {n} tasks; run the "
                        "same command again to continue: answered requests come from the cache")
    elif rep["kept"] < n:
        raise UserError(f"only {rep['kept']} of {n} tasks kept: the model stopped giving new tasks "
                        f"(see {paths['quarantine']}); re-run with another --seed to continue")
