from __future__ import annotations

from pathlib import Path

import click

from curate.executors import executor_options, pop_executor
from curate.llm.options import config_from_options, echo_summary, llm_options, pop_llm_options


def _summary(stage: str, report: dict, engine, out_dir: Path, quiet: bool) -> None:
    echo_summary(stage, report, engine, out_dir, quiet)


@click.command()
@click.argument("inp", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output dataset directory.")
@click.option("--to", "to", default="ms", show_default=True, help="Target language code (ms, en, id, ko).")
@click.option("--from", "src", default="auto", show_default=True, help="Source language code, or auto.")
@click.option("--glossary", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Required translations: JSON {term: translation} or 'term<TAB>translation' lines.")
@click.option("--localize", "localize", metavar="COUNTRY", help="Then adapt culture-specific references (MY).")
@click.option("--max-chars", type=click.IntRange(200), default=2500, show_default=True,
              help="Characters of source text per request (short fields are packed together).")
@llm_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
@executor_options
def translate(inp, out_dir, to, src, glossary, localize, max_chars, quiet, **kwargs):
    """Translate every text field (SFT, chat, RM, PPO) into the target language.

    Code, URLs, placeholders and math are protected and checked, numbers kept, the
    reply's language verified (Malay, not Indonesian); originals go to meta.orig.
    Replies are cached: a re-run pays for nothing twice. With no endpoint configured,
    the requests are written as OpenAI Batch API files instead.

    \b
    Examples:
      curate translate datasets/clean -o datasets/translated --to ms \\
          --base-url http://127.0.0.1:8000/v1 --model qwen2.5-7b-instruct
      OPENAI_API_KEY=... curate translate data/ -o out/ --glossary terms.tsv --localize MY
      curate translate data/ -o out/ --batch-out out/batch/requests.jsonl
      curate translate data/ -o out/ --batch-in batch_results.jsonl
      curate translate data/ -o out/ --executor ray --base-url http://vllm-0:8000/v1 \\
          --base-url http://vllm-1:8000/v1 --concurrency 256     # an actor pool on a Ray cluster
    """
    from curate.translate import translate_dataset

    executor = pop_executor(kwargs)
    opts = pop_llm_options(kwargs)
    cfg = config_from_options(opts, default_batch_out=out_dir / "batch" / "translate-requests.jsonl", inputs=[inp],
                              progress=False if quiet else None)
    if executor.is_ray:
        from curate.executors import ray_llm

        executor.connect(quiet=quiet)
        report, engine = ray_llm.translate(inp, out_dir, cfg, to=to, src=src, glossary=glossary,
                                           localize=localize, max_chars=max_chars)
    else:
        outcome, engine = translate_dataset(inp, out_dir, cfg, to=to, src=src, glossary=glossary,
                                            localize=localize, max_chars=max_chars)
        report = outcome.report
    _summary("translate", report, engine, out_dir, quiet)


@click.command()
@click.argument("inp", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output dataset directory.")
@click.option("--country", default="MY", show_default=True, help="Target country.")
@click.option("--lang", default="ms", show_default=True, help="Language the texts are (and stay) in.")
@llm_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
@executor_options
def localize(inp, out_dir, country, lang, quiet, **kwargs):
    """Adapt currency, names, places, institutions, holidays and units to a country.

    Only where the text depends on them; changed rows are flagged with the list of changes.

    \b
    Example:
      curate localize datasets/translated -o datasets/localized --country MY \\
          --base-url http://127.0.0.1:8000/v1 --model qwen2.5-7b-instruct
    """
    from curate.localize import localize_dataset

    executor = pop_executor(kwargs)
    opts = pop_llm_options(kwargs)
    cfg = config_from_options(opts, default_batch_out=out_dir / "batch" / "localize-requests.jsonl", inputs=[inp],
                              progress=False if quiet else None)
    if executor.is_ray:
        from curate.executors import ray_llm

        executor.connect(quiet=quiet)
        report, engine = ray_llm.localize(inp, out_dir, cfg, country=country, lang=lang)
    else:
        outcome, engine = localize_dataset(inp, out_dir, cfg, country=country, lang=lang)
        report = outcome.report
    _summary("localize", report, engine, out_dir, quiet)
