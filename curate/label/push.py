"""``push``: rows -> records of an Argilla dataset, idempotently (the record id is the row id)."""

from __future__ import annotations

import re
from typing import Any, Callable

import polars as pl

from curate import schemas
from curate.errors import UserError
from curate.label import settings as S
from curate.label import stale as ST
from curate.label.client import client_errors
from curate.label.records import fetch_records

DEFAULT_WORKSPACE = "curate"
BATCH = 200
TASK_KINDS = {"review": ("sft", "chat"), "ranking": ("rm",), "reflect": ("sft", "rm")}


def _frame(frame: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    return frame.collect() if isinstance(frame, pl.LazyFrame) else frame


def _metas(df: pl.DataFrame) -> list[dict[str, Any]]:
    return [schemas.meta_of(m) for m in df["meta"].to_list()]


def _reflected(kind: str, df: pl.DataFrame) -> list[bool]:
    """Per row: does it look like `curate reflect` output (critique and old answer in meta)?"""
    if kind not in ("sft", "rm"):
        return [False] * df.height
    lens = df["completions"].list.len().to_list() if kind == "rm" else [0] * df.height
    return [S.is_reflect_row(kind, {"meta": m, "completions": [None] * (n or 0)})
            for m, n in zip(df["meta"].to_list(), lens)]


def plan(frames: dict[str, pl.DataFrame | pl.LazyFrame], dataset: str, kind: str | None = None
         ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Which rows go to which dataset with which task: ``(jobs, skipped kinds)``.

    One kind of row -> the dataset ``dataset``; several -> ``dataset-<kind>`` each (an Argilla
    dataset has one set of fields and questions). Task inference: sft/chat -> review, rm -> ranking,
    and reflect when every row of the kind carries a critique and the old answer in ``meta``.
    """
    if kind is not None and kind not in S.TASKS:
        raise UserError(f"--kind {kind!r}: expected one of {', '.join(S.TASKS)}")
    jobs, skipped = [], []
    for row_kind, frame in frames.items():
        df = _frame(frame)
        if df.height == 0:
            continue
        reflected = _reflected(row_kind, df)
        task = kind or ("reflect" if all(reflected) and row_kind in ("sft", "rm")
                        else {"sft": "review", "chat": "review", "rm": "ranking"}.get(row_kind))
        if task is None or row_kind not in TASK_KINDS[task]:
            reason = ("PPO rows have no answer to review" if row_kind == "ppo"
                      else f"{row_kind} rows cannot be pushed as {task}")
            skipped.append({"kind": row_kind, "rows": df.height, "reason": reason})
            continue
        if task == "reflect" and not all(reflected):
            bad = [i for i, ok in enumerate(reflected) if not ok]
            raise UserError(
                f"--kind reflect: {len(bad)} of {df.height} {row_kind} rows have no critique and old "
                f"answer in meta (e.g. id {df['id'][bad[0]]}); push the output of `curate reflect`.")
        if task == "ranking":
            short = df.filter(pl.col("completions").list.len().fill_null(0) < 2)
            if short.height:
                skipped.append({"kind": row_kind, "rows": short.height,
                                "reason": "fewer than 2 completions: nothing to rank"})
                df = df.filter(pl.col("completions").list.len().fill_null(0) >= 2)
                if df.height == 0:
                    continue
        jobs.append({"kind": row_kind, "task": task, "frame": df})
    if not jobs:
        what = ", ".join(f"{s['rows']} {s['kind']} ({s['reason']})" for s in skipped) or "no rows"
        raise UserError(f"nothing to push: {what}.")
    for job in jobs:
        job["dataset"] = dataset if len(jobs) == 1 else f"{dataset}-{job['kind']}"
    return jobs, skipped


def _workspace(client, name: str):
    import argilla as rg
    ws = client.workspaces(name)
    if ws is None:
        ws = rg.Workspace(name=name, client=client).create()
    return ws


def _dataset(client, ws, job: dict[str, Any], overlap: int) -> tuple[Any, bool]:
    """The existing dataset (checked for compatibility) or a new one."""
    import argilla as rg
    df = job["frame"]
    width = int(df["completions"].list.len().max() or 0) if job["task"] == "ranking" else 0
    ds = client.datasets(job["dataset"], workspace=ws)
    if ds is not None:
        task, row_kind = S.task_of_dataset(ds)
        want = "reflect" if job["task"] == "reflect" else job["task"]
        if task != want or (task == "review" and row_kind != job["kind"]):
            raise UserError(f"dataset {job['dataset']!r} in workspace {ws.name!r} holds {task} records of "
                            f"{row_kind} rows, not {job['task']} of {job['kind']}; choose another --dataset.")
        if task == "ranking" and S.ranking_width(ds) < width:
            raise UserError(f"dataset {job['dataset']!r} ranks up to {S.ranking_width(ds)} completions, but a row "
                            f"has {width}; push these rows to a new --dataset.")
        return ds, False
    codes = None
    if job["task"] == "review":
        seen = {c for m in _metas(df) for c in S.flag_codes(m)}
        codes = sorted(set(S.rule_codes()) | seen)
    settings = S.build_settings(job["task"], job["kind"], completions=width, codes=codes, overlap=overlap)
    ds = rg.Dataset(name=job["dataset"], workspace=ws, settings=settings, client=client).create()
    return ds, True


def push(frames: dict[str, pl.DataFrame | pl.LazyFrame], dataset: str, client, kind: str | None = None,
         workspace: str | None = None, *, batch_size: int = BATCH, overlap: int = 1,
         on_progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Push every row of ``frames`` to Argilla; pushing the same rows again updates them in place.

    ``kind`` is the task (review / ranking / reflect; inferred from the rows when None).
    ``overlap`` is how many annotators must submit a record before it counts as done.
    Returns a summary: per dataset the task, rows, and how many records were ``created``,
    ``changed`` (the row differs from the one the record held) and ``unchanged``; and
    ``answered_then_changed``: records whose text changed after annotators answered them (``pull``
    marks those answers stale, see :mod:`curate.label.stale`).
    """
    jobs, skipped = plan(frames, dataset, kind)
    ws_name = workspace or DEFAULT_WORKSPACE
    summary: dict[str, Any] = {"workspace": ws_name, "datasets": [], "skipped": skipped}
    with client_errors(client, "pushing"):
        ws = _workspace(client, ws_name)
        for job in jobs:
            ds, created_dataset = _dataset(client, ws, job, overlap)
            labels = set(S.labels_of(ds, "flags"))
            width = S.ranking_width(ds)
            df = job["frame"].unique("id", keep="first", maintain_order=True)
            duplicates = job["frame"].height - df.height
            unknown_flags = sorted({c for m in _metas(df) for c in S.flag_codes(m)} - labels)
            stored = {} if created_dataset else ST.stored_records(fetch_records(client, ds), job["task"], job["kind"])
            counts = {"created": 0, "changed": 0, "unchanged": 0}
            stale = 0
            for start in range(0, df.height, batch_size):
                batch = df.slice(start, batch_size).to_dicts()
                records = []
                for row in batch:
                    fields = S.record_fields(job["task"], row.get("kind") or job["kind"], row)
                    state, before, made_stale = ST.compare(stored.get(row["id"]), row, fields)
                    counts[state] += 1
                    stale += made_stale
                    records.append(S.record_of(job["task"], job["kind"], row, labels=labels, width=width,
                                               extra_metadata=ST.metadata(before)))
                for rec in records:
                    rec.dataset = ds
                _upsert(client, ds, records, batch, done=start)
                if on_progress:
                    on_progress(len(batch))
            entry = {"dataset": job["dataset"], "task": job["task"], "kind": job["kind"], "rows": df.height,
                     **counts, "answered_then_changed": stale, "new_dataset": created_dataset,
                     "duplicate_ids": duplicates, "id": str(ds.id)}
            if unknown_flags:
                entry["flags_not_offered"] = unknown_flags
            summary["datasets"].append(entry)
    return summary


def _upsert(client, ds, records, batch: list[dict], done: int) -> None:
    """One bulk upsert; a refused record is named (id, source:line) instead of a batch position."""
    from argilla._exceptions import UnprocessableEntityError
    try:
        client.api.records.bulk_upsert(ds.id, [rec.api_model() for rec in records])
    except UnprocessableEntityError as exc:
        detail = str(exc).split("Details:", 1)[-1].strip()
        m = re.search(r"position (\d+)", detail)
        where = ""
        if m and int(m.group(1)) < len(batch):
            row = batch[int(m.group(1))]
            where = f" row {row['id']} ({row.get('source')}:{row.get('line')})"
        raise UserError(f"Argilla refused{where}: {detail[:400]}. The {done:,} rows before this batch were "
                        "pushed; fix or drop the row and push again (a second push updates, never duplicates).") from None


def count_rows(frames: dict[str, pl.DataFrame | pl.LazyFrame]) -> int:
    total = 0
    for kind, frame in frames.items():
        if kind == "ppo":
            continue
        total += (frame.select(pl.len()).collect().item() if isinstance(frame, pl.LazyFrame) else frame.height)
    return total
