"""``pull``: the annotators' answers in Argilla -> curate rows, merged, with agreement and a report.

For each record the answers of every annotator are read over the REST API (the SDK drops ranking
ranks on read). What happens to the record:

* at least one **submitted** answer, and no more discards than submissions: the submitted answers
  are merged (rules in :mod:`curate.label.merge`) and applied to the row that was pushed (kept
  whole in the record's ``curate_row`` metadata, so the id and provenance are unchanged):
  - review (SFT/chat): the merged correction replaces the output (for chats the last assistant
    answer); the original is kept in ``meta.annotation.original``; quality, labels and
    agreement go to ``meta.annotation``.
  - ranking: the Borda ranks become the row's ``ranks`` (the pushed ranks are kept in
    ``meta.annotation.original_ranks``), Kendall's W and pairwise agreement in ``meta.annotation``.
  - reflect: the preference vote decides the RM row (new answer over old, old over new, or a tie);
    a reflected SFT row is kept when the new answer won or tied, else written to ``rejected.jsonl``.
  - with ``min_quality``, a reviewed row whose merged quality is below it and that nobody
    corrected goes to ``rejected.jsonl`` too.
* more discards than submissions, or only discards: **discarded**, written to ``discarded.jsonl``.
* only drafts: **draft**, written to ``drafts.jsonl``. Records nobody answered are **pending**.
* a merged row whose text was changed by a later ``curate push`` after some of its answers were
  submitted gets ``meta.stale_annotation`` (how many answers, by whom) and is counted as ``stale``
  (see :mod:`curate.label.stale`); the answers are still applied, to the new text.

The prompts of the merged RM rows become PPO rows, so ``curate export`` gives RM pairs and PPO
prompts from the pulled directory.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Callable

import orjson
import polars as pl

from curate import io, schemas
from curate.errors import UserError
from curate.label import merge as M
from curate.label import settings as S
from curate.label import stale as ST
from curate.label.client import client_errors
from curate.label.records import fetch_records, record_total

# records set aside, each written to <name>.jsonl by write_pulled
SIDE_FILES = ("drafts", "discarded", "rejected")


def find_datasets(client, name: str, workspace: str | None = None) -> list:
    """The dataset ``name``, or the ``name-<kind>`` datasets one push of several kinds made."""
    candidates = [name] + [f"{name}-{k}" for k in ("sft", "chat", "rm")]
    # the bare listings (the SDK's datasets.list() also fetches every dataset's settings)
    spaces_by_id = {w["id"]: w["name"] for w in _items(client, "/api/v1/me/workspaces")}
    found = [d for d in _items(client, "/api/v1/me/datasets")
             if d["name"] in candidates and (workspace is None or spaces_by_id.get(d["workspace_id"]) == workspace)]
    exact = [d for d in found if d["name"] == name]
    found = [client.datasets(id=d["id"]).get() for d in (exact or found)]   # .get() loads the settings
    spaces = {d.workspace.name for d in found}
    if len(spaces) > 1:
        raise UserError(f"dataset {name!r} exists in several workspaces ({', '.join(sorted(spaces))}); "
                        "choose one with --workspace.")
    if not found:
        where = f" in workspace {workspace!r}" if workspace else ""
        raise UserError(f"no Argilla dataset {name!r}{where}. Push one first: curate push IN --dataset {name}")
    return sorted(found, key=lambda d: d.name)


def _items(client, path: str) -> list[dict[str, Any]]:
    resp = client.http_client.get(path)
    resp.raise_for_status()
    return resp.json().get("items", [])


def _users(client) -> dict[str, str]:
    resp = client.http_client.get("/api/v1/users")
    if resp.status_code != 200:
        return {}
    return {u["id"]: u["username"] for u in resp.json().get("items", [])}


def _value(response: dict[str, Any], question: str) -> Any:
    values = response.get("values") or {}
    v = values.get(question)
    return v.get("value") if isinstance(v, dict) else None


def _outcome(responses: list[dict[str, Any]]) -> str:
    n = {s: sum(1 for r in responses if r.get("status") == s) for s in ("submitted", "draft", "discarded")}
    if n["submitted"] and n["discarded"] <= n["submitted"]:
        return "merged"
    if n["discarded"]:
        return "discarded"
    if n["draft"]:
        return "draft"
    return "pending"


def _annotators(responses: list[dict[str, Any]], users: dict[str, str]) -> list[str]:
    return [users.get(str(r.get("user_id")), str(r.get("user_id"))) for r in responses]


def _ranks_of(response: dict[str, Any], n: int) -> list[int] | None:
    """One annotator's ranks for the row's ``n`` completions (fields past ``n`` did not exist)."""
    value = _value(response, "ranking")
    if not isinstance(value, list):
        return None
    by_field = {}
    for item in value:
        if isinstance(item, dict) and item.get("rank") is not None:
            by_field[item["value"]] = int(item["rank"])
    if not all(f"completion_{i}" in by_field for i in range(1, n + 1)):
        return None
    return [by_field[f"completion_{i}"] for i in range(1, n + 1)]


def _merge_review(row, kind, subs, users) -> tuple[dict, dict]:
    quality = [float(q) for q in (_value(r, "quality") for r in subs) if q is not None]
    texts = [(_value(r, "correction"), str(r.get("updated_at") or "")) for r in subs]
    labels = [list(_value(r, "flags") or []) for r in subs]
    ann: dict[str, Any] = {"annotators": _annotators(subs, users)}
    if quality:
        q = M.merge_ratings(quality)
        ann.update(quality=q["median"], quality_mean=q["mean"], quality_votes=q["values"],
                   quality_agreement=q["agreement"])
    lab = M.merge_multilabels(labels)
    ann.update(labels=lab["labels"], label_votes=lab["votes"], label_agreement=lab["agreement"])
    fix = M.merge_texts(texts)
    if fix["text"] is not None:
        ann.update(corrected=True, correction_candidates=fix["candidates"], correction_agreement=fix["agreement"])
        if kind == "chat":
            messages = [dict(m) for m in row["messages"]]
            last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
            if last is None:
                messages.append({"role": "assistant", "content": fix["text"]})
                ann["original"] = None
            else:
                ann["original"] = messages[last]["content"]
                messages[last] = {"role": "assistant", "content": fix["text"]}
            row["messages"] = messages
        else:
            ann["original"] = row.get("output")
            row["output"] = fix["text"]
    else:
        ann["corrected"] = False
    return row, ann


def _merge_ranking(row, subs, users) -> tuple[dict, dict] | None:
    n = len(row.get("completions") or [])
    rankings = [r for r in (_ranks_of(s, n) for s in subs) if r is not None]
    if not rankings:
        return None
    m = M.merge_rankings(rankings)
    ann = {"annotators": _annotators(subs, users), "original_ranks": row.get("ranks"), "borda": m["borda"],
           "kendalls_w": m["kendalls_w"], "pairwise_agreement": m["pairwise_agreement"],
           "rankings": [M.dense_ranks(x, higher_is_better=False) for x in rankings]}
    row["ranks"] = m["ranks"]
    return row, ann


def _pair_ranks(winner: str | None, new_i: int) -> list[int]:
    if winner == "new":
        return [0, 1] if new_i == 0 else [1, 0]
    if winner == "old":
        return [1, 0] if new_i == 0 else [0, 1]
    return [0, 0]


def _merge_reflect(row, kind, subs, users) -> tuple[dict | None, dict | None, dict, str | None]:
    """``(sft row or None, rm row, annotation, winner)`` of a reflected row."""
    votes = [v for v in (_value(r, "preference") for r in subs) if v is not None]
    vote = M.merge_label(votes, tie_label="tie") if votes else {"label": None, "votes": {}, "agreement": None}
    winner = vote["label"]
    ann = {"annotators": _annotators(subs, users), "preference": winner, "preference_votes": vote["votes"],
           "preference_agreement": vote["agreement"]}
    prompt, new, old, new_i = S.reflect_pair(kind, row)
    if kind == "rm":
        rm = dict(row)
        ann["original_ranks"] = row.get("ranks")
        rm["ranks"] = _pair_ranks(winner, new_i)
        return None, rm, ann, winner
    completions = [new, old]
    meta = schemas.meta_of(row.get("meta"))
    rm = {"kind": "rm", "lang": row.get("lang"), "source": row.get("source"), "format": row.get("format"),
          "line": row.get("line"), "prompt": prompt, "completions": completions,
          "ranks": _pair_ranks(winner, 0)}
    rm["id"] = schemas.content_id("rm", rm)
    rm_meta = {"from_id": row["id"]}
    if "critique" in meta:
        rm_meta["critique"] = meta["critique"]
    rm["meta"] = schemas.meta_json(rm_meta)
    sft = row if winner in ("new", "tie") else None
    return sft, rm, ann, winner


def _with_annotation(row: dict, ann: dict, dataset: str, stale: dict | None = None) -> dict:
    row = dict(row)
    extra = {"stale_annotation": stale} if stale else {}
    row["meta"] = schemas.merge_meta(row.get("meta"), annotation={"dataset": dataset, **ann}, **extra)
    return row


def _stale(rec: dict, subs: list[dict], users: dict[str, str]) -> dict | None:
    """``meta.stale_annotation`` when some submitted answers were given to text pushed over since."""
    old = ST.stale_answers(rec, subs)
    if not old:
        return None
    return {"answers": len(old), "of": len(subs), "annotators": _annotators(old, users),
            "reason": "the record's text changed (curate push) after these answers were submitted"}


def _side(row: dict | None, rec: dict, outcome: str, users: dict[str, str], dataset: str) -> dict:
    return {"dataset": dataset, "id": rec.get("external_id"), "status": outcome, "record_status": rec.get("status"),
            "responses": [{"user": users.get(str(r.get("user_id")), str(r.get("user_id"))),
                           "status": r.get("status"), "values": r.get("values"),
                           "updated_at": r.get("updated_at")} for r in rec.get("responses") or []],
            "row": row}


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return round(statistics.fmean(vals), 4) if vals else None


def pull_dataset(client, ds, users: dict[str, str], on_progress=None, min_quality: float | None = None
                 ) -> tuple[dict[str, list[dict]], dict, dict]:
    task, row_kind = S.task_of_dataset(ds)
    records = fetch_records(client, ds, on_progress)
    rows: dict[str, list[dict]] = {}
    drafts, discarded, rejected = [], [], []
    counts = {"records": len(records), "merged": 0, "pending": 0, "draft": 0, "discarded": 0, "not_curate": 0,
              "unusable_answers": 0, "corrected": 0, "rejected_rewrites": 0, "low_quality": 0, "stale": 0}
    agreement: dict[str, list] = {}
    responses_by_status: dict[str, int] = {}
    annotators: set[str] = set()
    for rec in records:
        resps = rec.get("responses") or []
        for r in resps:
            responses_by_status[r.get("status")] = responses_by_status.get(r.get("status"), 0) + 1
            annotators.add(users.get(str(r.get("user_id")), str(r.get("user_id"))))
        raw = (rec.get("metadata") or {}).get(S.ROW_KEY)
        if not raw:
            counts["not_curate"] += 1
            continue
        row = orjson.loads(raw)
        kind = row.get("kind") or row_kind
        outcome = _outcome(resps)
        if outcome in ("draft", "discarded"):
            counts[outcome] += 1
            (drafts if outcome == "draft" else discarded).append(_side(row, rec, outcome, users, ds.name))
            continue
        if outcome == "pending":
            counts["pending"] += 1
            continue
        subs = [r for r in resps if r.get("status") == "submitted"]
        stale = _stale(rec, subs, users)
        if task == "review":
            original = dict(row)
            row, ann = _merge_review(row, kind, subs, users)
            counts["corrected"] += bool(ann.get("corrected"))
            if (min_quality is not None and not ann.get("corrected") and ann.get("quality") is not None
                    and ann["quality"] < min_quality):
                # rated below the bar and nobody fixed it: set aside, not trained on
                counts["low_quality"] += 1
                side = _side(original, rec, "low_quality", users, ds.name)
                side["annotation"] = ann
                rejected.append(side)
                continue
            for key in ("quality_agreement", "label_agreement", "correction_agreement"):
                agreement.setdefault(key, []).append(ann.get(key))
            rows.setdefault(kind, []).append(_with_annotation(row, ann, ds.name, stale))
        elif task == "ranking":
            merged = _merge_ranking(row, subs, users)
            if merged is None:
                counts["unusable_answers"] += 1
                continue
            row, ann = merged
            agreement.setdefault("kendalls_w", []).append(ann["kendalls_w"])
            agreement.setdefault("pairwise_agreement", []).append(ann["pairwise_agreement"])
            rows.setdefault("rm", []).append(_with_annotation(row, ann, ds.name, stale))
        else:
            sft, rm, ann, winner = _merge_reflect(row, kind, subs, users)
            if winner is None:
                counts["unusable_answers"] += 1
                continue
            agreement.setdefault("preference_agreement", []).append(ann["preference_agreement"])
            rows.setdefault("rm", []).append(_with_annotation(rm, ann, ds.name, stale))
            if kind == "sft":
                if sft is not None:
                    rows.setdefault("sft", []).append(_with_annotation(sft, ann, ds.name, stale))
                else:
                    counts["rejected_rewrites"] += 1
                    rejected.append(_side(row, rec, "old_answer_preferred", users, ds.name))
        counts["merged"] += 1
        counts["stale"] += bool(stale)
    report = {"dataset": ds.name, "workspace": ds.workspace.name, "task": task, **counts,
              "responses": responses_by_status, "annotators": sorted(annotators),
              "mean_agreement": {k: _mean(v) for k, v in agreement.items()}}
    return rows, report, {"drafts": drafts, "discarded": discarded, "rejected": rejected}


def _ppo_rows(rm_rows: list[dict]) -> list[dict]:
    out, seen = [], set()
    for r in rm_rows:
        prompt = r.get("prompt")
        if not prompt or not prompt.strip():
            continue
        row = {"kind": "ppo", "lang": r.get("lang"), "source": r.get("source"), "format": r.get("format"),
               "line": r.get("line"), "prompt": prompt, "meta": schemas.meta_json({"from_id": r["id"]})}
        row["id"] = schemas.content_id("ppo", row)
        if row["id"] not in seen:
            seen.add(row["id"])
            out.append(row)
    return out


def pull(client, dataset: str, workspace: str | None = None, *, ppo: bool = True, min_quality: float | None = None,
         on_progress: Callable[[int], None] | None = None,
         on_total: Callable[[int], None] | None = None) -> tuple[dict[str, pl.DataFrame], dict[str, Any]]:
    """Read the answers of ``dataset`` (or the ``dataset-<kind>`` datasets of one push) back as rows.

    Returns ``({kind: DataFrame}, report)``. The report has per-dataset counts (merged, pending,
    draft, discarded), mean agreement figures, and under ``drafts`` / ``discarded`` / ``rejected``
    the records set aside (with every annotator's answer), which :func:`write_pulled` writes to
    side files.
    """
    with client_errors(client, "pulling"):
        me = client.me
        if me.role == "annotator":
            raise UserError(f"pull needs an owner or admin API key: {me.username!r} is an annotator, whose key "
                            "sees only their own answers. Use the key of the user who pushed the dataset.")
        datasets = find_datasets(client, dataset, workspace)
        users = _users(client)
        if on_total:
            on_total(sum(record_total(client, ds) for ds in datasets))
        all_rows: dict[str, list[dict]] = {}
        reports, side = [], {name: [] for name in SIDE_FILES}
        for ds in datasets:
            rows, rep, aside = pull_dataset(client, ds, users, on_progress, min_quality)
            for k, v in rows.items():
                all_rows.setdefault(k, []).extend(v)
            reports.append(rep)
            for name in SIDE_FILES:
                side[name] += aside[name]
    duplicates = 0
    if all_rows.get("rm"):
        # a pair can come back twice (a reflected SFT row and its RM row both pushed): the RM record,
        # annotated as a pair, wins over the pair derived from the SFT record
        kept: dict[str, dict] = {}
        for row in sorted(all_rows["rm"], key=lambda r: "from_id" in schemas.meta_of(r.get("meta"))):
            if row["id"] in kept:
                duplicates += 1
                continue
            kept[row["id"]] = row
        all_rows["rm"] = list(kept.values())
    if ppo and all_rows.get("rm"):
        all_rows["ppo"] = _ppo_rows(all_rows["rm"])
    frames = {k: schemas.from_rows(k, v) for k, v in all_rows.items() if v}
    total = {key: sum(r[key] for r in reports) for key in
             ("records", "merged", "pending", "draft", "discarded", "not_curate", "unusable_answers", "corrected",
              "rejected_rewrites", "low_quality", "stale")}
    total["duplicate_pairs"] = duplicates
    report = {"stage": "pull", "dataset": dataset, "datasets": reports, "total": total,
              "rows_by_kind": {k: f.height for k, f in frames.items()}, "merge_rules": MERGE_RULES,
              **side}
    return frames, report


MERGE_RULES = {
    "ranking": "Borda count (1 point per item ranked below, 0.5 per tie), dense ranks of the totals; "
               "agreement: Kendall's W (tie-corrected) and pairwise order agreement",
    "rating": "median (mean kept); agreement: share of annotators within 1 point of the median",
    "labels": "a label is kept when more than half of the annotators chose it; agreement: mean share on "
              "the majority side over the labels anyone chose",
    "preference": "plurality; a tie between top labels gives 'tie'; agreement: share voting for the winner",
    "correction": "most frequent non-blank correction (whitespace-normalised), ties to the latest submission",
    "status": "merged when at least one submitted answer and no more discards than submissions; "
              "otherwise discarded (any discard), draft (only drafts) or pending (no answer)",
}


def write_pulled(frames: dict[str, pl.DataFrame], report: dict[str, Any], out_dir: str | Path) -> dict[str, Any]:
    """Write a curate dataset directory: ``<kind>.parquet``, ``drafts.jsonl``, ``discarded.jsonl``,
    ``rejected.jsonl`` (reflected rows whose old answer won, reviewed rows rated below
    ``min_quality`` and not corrected) and ``report.json`` (counts, without
    the side records themselves). Returns the report as written."""
    out_dir = Path(out_dir)
    written = {k: v for k, v in report.items() if k not in SIDE_FILES}
    written["side_files"] = {}
    with io.DatasetWriter(out_dir, stage="pull", params={"dataset": report.get("dataset")}) as w:
        for kind in schemas.KINDS:  # the whole directory is replaced: a kind gone now does not linger
            if kind in frames:
                w.write_frame(kind, frames[kind])
        for name in SIDE_FILES:
            w.write_jsonl(f"{name}.jsonl", report.get(name) or [])
            written["side_files"][name] = {"path": (out_dir / f"{name}.jsonl").as_posix(),
                                           "records": len(report.get(name) or [])}
        w.write_json("report.json", written)
    return written
