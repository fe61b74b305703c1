"""``curate decontaminate``: drop training rows that hold evaluation-set items (curate.decontaminate)."""

from __future__ import annotations

from pathlib import Path

import click

from curate.llm.options import config_from_options, llm_options, pop_llm_options

@click.command()
@click.argument("inp", metavar="IN...", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--against", "against", multiple=True, required=True, metavar="EVAL",
              type=click.Path(exists=True, path_type=Path),
              help="Eval set (JSONL, JSON, Parquet, CSV, or a curate dataset); repeatable.")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output directory: kept <kind>.parquet, quarantine.jsonl, hits.jsonl, report.json.")
@click.option("--eval-fields", metavar="A,B",
              help="Eval columns holding the text; every string in them (list elements, object values such as "
                   "ARC's question.stem) is checked on its own [default: those present, any case, of question, "
                   "answer, prompt, instruction, input, output, problem, solution, completion(s), messages, "
                   "conversations; with none of them, every column holding text].")
@click.option("--ngram", type=click.IntRange(1, 64), default=13, show_default=True,
              help="n-gram size (words; characters for Chinese/Japanese/Thai).")
@click.option("--min-ngram", type=click.IntRange(1, 64), default=5, show_default=True,
              help="Shortest n, for short fields (n = tokens // 2 between the two); shorter fields are not checked.")
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True), default=0.5, show_default=True,
              help="Share of an eval field's n-grams a row must hold to be contaminated.")
@click.option("--max-count", type=click.IntRange(0), default=10, show_default=True,
              help="Ignore n-grams found in more than this many training rows that do not hold the item (0: off).")
@click.option("--translate-eval", "translate_to", metavar="LANG",
              help="Also match the eval set translated into LANG (e.g. ms) through the LLM endpoint (cached).")
@llm_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
def decontaminate(inp, against, out_dir, eval_fields, ngram, min_ngram, threshold, max_count, translate_to, quiet,
                  **kwargs):
    """Find evaluation-set items in the training rows and move those rows to quarantine.

    Every text field of every eval item is cut into normalized word n-grams (13 for ordinary
    questions, shorter for short ones; numbers count as one token kind, punctuation and case are
    ignored; Chinese/Japanese/Thai by character, Korean/Malay/English by word) and hashed once; the
    training rows (SFT, every chat turn, RM/PPO prompts and completions) are streamed in batches.
    A row holding at least --threshold of a field's n-grams is contaminated: it goes to
    quarantine.jsonl with the eval file, item index, field, share and the overlapping span, and
    report.json counts the hits per eval set. --translate-eval ms also matches the eval set's
    Malay translation (one LLM pass, cached: a re-run pays nothing).

    \b
    Example:
      curate decontaminate datasets/clean --against evals/gsm8k_test.jsonl -o datasets/decon
      curate decontaminate datasets/clean --against mmlu.parquet --eval-fields question,choices \\
          --against gsm8k_test.jsonl --translate-eval ms --base-url http://127.0.0.1:8000/v1 -o out/
    """
    from curate import decontaminate as dc
    from curate.llm import Engine

    if min_ngram > ngram:
        raise click.UsageError(f"--min-ngram {min_ngram} is larger than --ngram {ngram}")
    params = dc.Params(ngram=ngram, min_ngram=min_ngram, threshold=threshold, max_count=max_count)
    engine = None
    if translate_to:
        opts = pop_llm_options(kwargs)
        cfg = config_from_options(opts, default_batch_out=out_dir / "batch" / "translate-eval-requests.jsonl",
                                  inputs=[*inp, *against],
                                  progress=False if quiet else None)
        engine = Engine(cfg, description=f"translate eval -> {translate_to}")
    fields = eval_fields.split(",") if eval_fields else None
    index = dc.load_index(against, fields=fields, params=params, translate_to=translate_to, engine=engine)
    outcome = dc.decontaminate_dir(list(inp), out_dir, index, progress=False if quiet else None)
    if not quiet:
        from curate.progress import console

        r = outcome.report
        console.print(f"decontaminate: {r['rows_in']:,} rows in, {r['rows_out']:,} kept, {r['rows_dropped']:,} "
                      f"contaminated ({r['seconds']:.1f} s)")
        for s in r["eval_sets"]:
            tr = f", translated fields {s['translated']['fields_translated']}" if s.get("translated") else ""
            console.print(f"  {s['eval']}: {s['items']:,} items, {s['items_found']:,} found in {s['rows_hit']:,} rows"
                          f" ({s['fields_unchecked_too_short']:,} fields too short to check{tr})")
        console.print(f"outputs in {out_dir}/ (quarantine.jsonl, hits.jsonl, report.json)")
