"""``curate push`` and ``curate pull``: human review in Argilla."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from curate import io
from curate.progress import bar, console, quiet_option

_connection = [
    click.option("--api-url", envvar="ARGILLA_API_URL", show_envvar=True,
                 help="Argilla server URL, e.g. http://localhost:6900."),
    click.option("--api-key", envvar="ARGILLA_API_KEY", show_envvar=True, show_default=False,
                 help="Argilla API key (Argilla UI -> My settings). Never printed or stored."),
    click.option("--workspace", default=None,
                 help="Argilla workspace (push: created when missing; default 'curate')."),
]


def connection_options(fn):
    for opt in reversed(_connection):
        fn = opt(fn)
    return fn


def _quiet_sdk() -> None:
    # the SDK logs its own errors before raising them; ours say what to do, once
    logging.getLogger("argilla.sdk").setLevel(logging.CRITICAL)
    logging.getLogger("argilla").setLevel(logging.CRITICAL)


@click.command()
@click.argument("inp", metavar="IN", type=click.Path(exists=True, path_type=Path))
@click.option("--dataset", "dataset", required=True, help="Argilla dataset name (NAME-<kind> when IN has several kinds).")
@click.option("--kind", "task", type=click.Choice(["review", "ranking", "reflect"]), default=None,
              help="Labelling task. Default: sft/chat -> review, rm -> ranking, rows from `curate reflect` -> reflect.")
@click.option("--overlap", type=click.IntRange(1, 50), default=1, show_default=True,
              help="Annotators who must submit a record before it counts as done (new datasets only).")
@click.option("--batch-size", type=click.IntRange(1, 500), default=200, show_default=True,
              help="Records per request.")
@quiet_option
@connection_options
def push(inp, dataset, task, overlap, batch_size, api_url, api_key, workspace):
    """Push rows to Argilla for human review or ranking (again = update, never duplicate).

    \b
    review   SFT rows (instruction, input, output) or chats: a 1-5 quality rating, a corrected
             output, and the clean rule codes as labels (the rules that flagged the row come
             pre-filled, with their confidence, agent "curate clean")
    ranking  RM rows: the prompt and its completions, ranked (the existing ranks pre-filled,
             ties included)
    reflect  `curate reflect` rows: old and new answer side by side with the critique; pick one
    Source, format, language, rule flags and judge score are metadata to filter on in the UI;
    judge scores are suggestions. Records carry the row id, so pushing again updates them; the
    summary counts records created, changed and unchanged.

    \b
    Example:
      export ARGILLA_API_URL=http://localhost:6900 ARGILLA_API_KEY=...
      curate push datasets/clean --dataset review-ms
      curate push datasets/clean/rm.parquet --dataset rank-ms --kind ranking --overlap 2
    """
    from curate.label import connect
    from curate.label import push as push_rows
    from curate.label.push import count_rows

    _quiet_sdk()
    frames = io.read_input(inp).frames
    client = connect(api_url, api_key)
    with bar("push", total=count_rows(frames)) as b:
        summary = push_rows(frames, dataset, client, kind=task, workspace=workspace, batch_size=batch_size,
                            overlap=overlap, on_progress=b.advance)
    for d in summary["datasets"]:
        state = "new dataset" if d["new_dataset"] else "existing dataset"
        console.print(f"{d['rows']:>8,}  {d['kind']} rows -> {summary['workspace']}/{d['dataset']} ({d['task']}, {state}): "
                      f"{d['created']:,} created, {d['changed']:,} changed, {d['unchanged']:,} unchanged")
        if d.get("answered_then_changed"):
            console.print(f"          {d['answered_then_changed']:,} changed records already had answers: "
                          "`curate pull` marks those answers stale (meta.stale_annotation)")
        if d.get("duplicate_ids"):
            console.print(f"          {d['duplicate_ids']:,} rows repeated an id already pushed in this run (sent once)")
        if d.get("flags_not_offered"):
            console.print(f"          rule codes not offered as labels in this dataset: {', '.join(d['flags_not_offered'])}")
    for s in summary["skipped"]:
        console.print(f"{s['rows']:>8,}  {s['kind']} rows not pushed: {s['reason']}")


@click.command()
@click.option("--dataset", "dataset", required=True, help="Argilla dataset name (also finds NAME-sft/-chat/-rm).")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output curate dataset directory.")
@click.option("--no-ppo", is_flag=True, help="Do not write the RM prompts as ppo.parquet.")
@click.option("--min-quality", type=click.FloatRange(1, 5), default=None,
              help="Reviewed rows whose merged quality is below this and that nobody corrected go to "
                   "rejected.jsonl instead of the output. Default: keep every submitted row.")
@quiet_option
@connection_options
def pull(dataset, out_dir, no_ppo, min_quality, api_url, api_key, workspace):
    """Pull submitted answers from Argilla back into curate rows.

    \b
    review:  corrections replace the output (the original kept in meta.annotation), quality,
             labels and agreement in meta.annotation
    ranking: merged ranks into `ranks` (RM rows); their prompts also go to ppo.parquet
    reflect: the preference decides each RM pair; reflected SFT rows kept when the new answer won

    Several annotators are merged: rankings by Borda count (agreement: Kendall's W and pairwise
    agreement), ratings by median, labels by majority (agreement: share agreeing), corrections by
    the most frequent one. Drafts and discarded records are not mixed in: they are counted in
    report.json and written to drafts.jsonl / discarded.jsonl (reflected rows whose old answer
    won: rejected.jsonl). A row whose text a later `curate push` changed after it was answered
    keeps its answers but is marked meta.stale_annotation and counted as stale. Needs an owner
    or admin key.

    \b
    Example:
      curate pull --dataset review-ms -o datasets/labelled
      curate export datasets/labelled -o datasets/export --format pairs --format prompt
    """
    from curate.label import connect
    from curate.label import pull as pull_rows
    from curate.label import write_pulled

    _quiet_sdk()
    client = connect(api_url, api_key)
    with bar("pull") as b:
        frames, report = pull_rows(client, dataset, workspace, ppo=not no_ppo, min_quality=min_quality, on_progress=b.advance,
                                   on_total=lambda n: b.update(total=n))
    written = write_pulled(frames, report, out_dir)
    t = written["total"]
    console.print(f"{t['records']:,} records: {t['merged']:,} merged, {t['pending']:,} pending, "
                  f"{t['draft']:,} drafts, {t['discarded']:,} discarded"
                  + (f", {t['corrected']:,} corrected" if t["corrected"] else "")
                  + (f", {t['rejected_rewrites']:,} rewrites rejected" if t["rejected_rewrites"] else "")
                  + (f", {t['low_quality']:,} below --min-quality" if t["low_quality"] else "")
                  + (f", {t['stale']:,} stale (text changed after they were answered: meta.stale_annotation)"
                     if t["stale"] else ""))
    for rep in written["datasets"]:
        agree = ", ".join(f"{k} {v}" for k, v in rep["mean_agreement"].items() if v is not None)
        console.print(f"  {rep['workspace']}/{rep['dataset']} ({rep['task']}): {rep['merged']:,} merged"
                      + (f"; mean agreement: {agree}" if agree else ""))
    for kind, n in written["rows_by_kind"].items():
        console.print(f"{n:>8,}  {out_dir / (kind + '.parquet')}")
    for name, side in written["side_files"].items():
        if side["records"]:
            console.print(f"{side['records']:>8,}  {side['path']} (not mixed in)")
    console.print(f"report: {out_dir / 'report.json'}")
