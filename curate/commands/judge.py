"""``curate judge``: LLM scores for SFT rows, or a pairwise win rate on RM rows (curate.judge)."""

from __future__ import annotations

from pathlib import Path

import click

from curate.commands.reflect import summary
from curate.executors import executor_options, pop_executor
from curate.llm.options import config_from_options, llm_options, pop_llm_options


@click.command()
@click.argument("inp", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output dataset directory (rows with meta.judge, quarantine.jsonl, report.json).")
@click.option("--pairwise", is_flag=True,
              help="Compare each RM row's two best completions in both orders; report the win rate with a CI.")
@click.option("--min-score", type=click.FloatRange(1, 5),
              help="Drop SFT rows whose judge score (mean of correctness and helpfulness) is below this.")
@click.option("--drop-verdict", "drop_verdicts", multiple=True, type=click.Choice(["reject", "revise"]),
              help="Drop SFT rows with this verdict (repeatable).")
@click.option("--confidence", type=click.FloatRange(0.5, 0.999), default=0.95, show_default=True,
              help="Confidence level of the win-rate interval (Wilson score).")
@click.option("--temperature", type=float, default=0.0, show_default=True)
@llm_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
@executor_options
def judge(inp, out_dir, pairwise, min_score, drop_verdicts, confidence, temperature, quiet, **kwargs):
    """Ask a model whether each output is right for its instruction and input.

    Pointwise (default): every SFT row gets 1-5 correctness and helpfulness, a short rationale and
    a verdict (accept / revise / reject) in meta.judge; `curate push` shows them as suggestions.
    --min-score / --drop-verdict move rows to quarantine.jsonl with the reason.

    Pairwise (--pairwise): for each RM row (e.g. `curate reflect` output) the judge sees the prompt
    and the two best-ranked answers, unlabelled, in both orders; the report gives the win rate of
    the best-ranked (the reflected answer) over the other with a Wilson interval (a row wins only
    when both orders agree; ties and disagreements count half). In both modes rows of
    other kinds pass through unchanged.

    \b
    Example:
      curate judge datasets/reflected -o datasets/judged --min-score 3 \\
          --base-url http://127.0.0.1:8000/v1 --model qwen2.5-7b-instruct
      curate judge datasets/reflected -o datasets/judged-pairs --pairwise   # OPENAI_API_KEY set
      curate judge datasets/clean -o datasets/judged --executor ray --base-url http://vllm-0:8000/v1
      curate judge datasets/reflected -o datasets/judged-pairs --pairwise --executor ray   # pairs on Ray actors
    """
    from curate.judge import judge_dataset

    executor = pop_executor(kwargs)
    opts = pop_llm_options(kwargs)
    cfg = config_from_options(opts, default_batch_out=out_dir / "batch" / "judge-requests.jsonl", inputs=[inp],
                              progress=False if quiet else None)
    kw = (dict(confidence=confidence, temperature=temperature) if pairwise else
          dict(min_score=min_score, drop_verdicts=tuple(drop_verdicts), temperature=temperature))
    if executor.is_ray:
        from curate.executors import ray_llm

        executor.connect(quiet=quiet)
        r, engine = ray_llm.judge(inp, out_dir, cfg, pairwise=pairwise, **kw)
    else:
        outcome, engine = judge_dataset(inp, out_dir, cfg, pairwise=pairwise, **kw)
        r = outcome.report
    if pairwise:
        s = r["pairwise"]
        extra = (f"pairwise: {s['n']} rows, wins {s['wins']}, losses {s['losses']}, ties {s['ties']}; win rate "
                 + (f"{s['win_rate']:.3f} ({confidence:.0%} CI {s['ci'][0]:.3f}-{s['ci'][1]:.3f})"
                    if s["win_rate"] is not None else "n/a"))
    else:
        extra = f"scored {r['scored']} rows, mean score {r['mean_score']}, verdicts {r['verdicts']}"
    summary("judge", r, engine, out_dir, quiet, extra=extra)
