"""LLM stages (translate, localize, reflect, judge) on Ray: a pool of actors, each running the async engine.

The input is cut into the same blocks as the local executor (``block_rows`` rows per kind, in
order), so every block sends exactly the requests it sends locally. ``ray.data.from_items(blocks)``
-> ``map_batches(_Worker, concurrency=N)`` gives each block to one of ``N`` actors; an actor reads
its block (polars, from the input's parquet files), runs the stage's block function with its own
:class:`~curate.llm.engine.Engine` and writes the block's rows as a shard ``<kind>/part-<pos>.parquet``
into the output's staging directory. The driver merges quarantine and reports in block order.

Every LLM stage is row-wise up to its report, so a block runs the local stage function on its rows:
``reflect`` maps over chats (an answer's prompt is its own chat), pairwise ``judge`` forms each RM
row's pair in its block. What is global is put together on the driver: the report's figures from
the blocks' counts (the pairwise win rate and interval from the summed wins/losses/ties), and
reflect's duplicate check (a row whose id an earlier block already wrote is dropped from its
shard and counted, as the local run drops it).

* **Concurrency**: ``--concurrency`` is split evenly across the actors (there are never more actors
  than that), so the whole run never has more requests in flight than asked for.
* **Budgets**: the retry/fix-up budget (``--extra-budget``) and ``--max-requests`` hold for the whole
  run, not per actor or block: one small actor holds the counters every engine draws from
  (:mod:`curate.executors.ray_budget`), so the extra requests are a share of the whole run's first
  round, as in one local engine.
* **Servers**: every actor's engine gets the whole ``--base-url`` fleet (requests spread, a failing
  server taken out and retried later, see curate/llm/engine.py).
* **Reply cache**: every actor opens the same SQLite cache file (``--cache`` or the default), and the
  engine commits each reply before using it. An actor that dies (a lost node, OOM, kill -9) is
  restarted by Ray and its block is run again: every reply it had received comes from the cache, so
  no paid request is repeated. On a multi-node cluster, put the cache on storage every node sees.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import orjson
import polars as pl

from curate import io, schemas
from curate.errors import UserError
from curate.executors import ray_budget, ray_data
from curate.executors.ray_session import user_error_in
from curate.llm.config import EngineConfig
from curate.llm.engine import Engine, extra_allowance

# report keys that describe the run (not counters): taken from the driver's engine, never summed
_WORST = {"event_loop_lag_ms"}
_KEEP = {"endpoint", "mode", "response_format", "price_per_1m", "share", "minimum", "budget", "batch_out"}


@dataclasses.dataclass
class Job:
    """What each block goes through: ``block(rows_by_kind, *engines) -> (frames, quarantine, report,
    sub-report or None)``, with one engine per entry of ``configs`` (translate + localize: two)."""
    stage: str
    block: Callable[..., tuple]
    configs: list[EngineConfig]
    descriptions: list[str]
    kinds: tuple[str, ...] | None = None  # the kinds the stage reads (None: every kind)
    # set: output ids are unique per kind across blocks (the first block's row is kept); called as
    # ``on_duplicates(report, {kind: rows dropped})`` to count the dropped rows in the report
    on_duplicates: Callable[[dict, dict[str, int]], dict] | None = None


def actors_for(blocks: int, concurrency: int | None = None) -> int:
    """Actors in the pool: ``CURATE_RAY_ACTORS``, else one per CPU of the cluster; at most one per
    block and one per request allowed in flight (``concurrency``)."""
    from curate.executors.ray_session import num_cpus

    n = int(os.environ.get("CURATE_RAY_ACTORS") or num_cpus())
    return max(1, min(n, blocks, concurrency or n))


def _share(config: EngineConfig, n: int) -> EngineConfig:
    """An actor's engine settings: its share of the concurrency (the budgets are shared, not split)."""
    return dataclasses.replace(config, concurrency=max(1, config.concurrency // n), progress=False)


class _Worker:
    """One actor of the pool (Ray restarts it if its process dies; its block then runs again)."""

    def __init__(self, job: Job, actors: int, root: str, compression: str, budgets: list):
        self.job = job
        self.configs = [_share(c, actors) for c in job.configs]
        self.budgets = budgets
        self.root = Path(root)
        self.compression = compression  # the output's (a worker does not see the driver's setting)

    def __call__(self, batch):
        import pyarrow as pa

        out: dict[str, list] = {"i": [], "files": [], "quarantine": [], "report": [], "sub": [], "llm": []}
        cols = ("i", "kind", "file", "offset", "length", "pos")
        for i, kind, f, off, length, pos in zip(*(batch[c].to_pylist() for c in cols)):
            if not kind:  # the input has no rows at all
                rows = {}
            else:
                df = schemas.conform(pl.scan_parquet(f).slice(off, length).collect(), kind) if length else schemas.empty(kind)
                rows = {kind: df.to_dicts()}
            engines = [Engine(cfg, description=d, shared=b)
                       for cfg, d, b in zip(self.configs, self.job.descriptions, self.budgets)]
            frames, quarantine, report, sub = self.job.block(rows, *engines)
            files = [[k, ray_data.write_part(fr, self.root, k, pos, self.compression), fr.height]
                     for k, fr in frames.items()]
            out["i"].append(i)
            out["files"].append(orjson.dumps(files).decode())
            out["quarantine"].append(orjson.dumps(quarantine, default=str, option=orjson.OPT_NON_STR_KEYS).decode())
            out["report"].append(orjson.dumps(report, default=str).decode())
            out["sub"].append(orjson.dumps(sub, default=str).decode())
            out["llm"].append(orjson.dumps([e.report() for e in engines], default=str).decode())
        return pa.table(out)


def add_llm(total: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    """Sum the counters of two engine reports (the run's settings stay those of ``total``)."""
    out = dict(total)
    for key, value in part.items():
        if key in _KEEP or key in ("seconds", "requests_per_second"):
            continue
        if key in _WORST:  # a latency figure of each block's engine: the run's worst block
            prev = out.get(key) or {}
            out[key] = {k: (prev.get(k, 0) + v) if k == "samples" else max(v, prev.get(k, v)) for k, v in value.items()}
            continue
        cur = out.get(key)
        if isinstance(value, dict):
            out[key] = add_llm(cur if isinstance(cur, dict) else {}, value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = round((cur or 0) + value, 6) if isinstance(value, float) else (cur or 0) + value
        elif value is not None and cur is None:
            out[key] = value
    return out


def merged_llm(config: EngineConfig, description: str, parts: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """The engine accounting of the whole run: the blocks' counters summed onto the run's settings."""
    total = Engine(config, description=description).report()
    for p in parts:
        total = add_llm(total, p)
    extra = total.get("extra_requests")
    if isinstance(extra, dict) and extra.get("share") is not None:  # of the whole run's first round
        extra["budget"] = int(extra_allowance(extra["share"], extra.get("minimum") or 0, total["first_round_requests"]))
    lags = [p["event_loop_lag_ms"] for p in parts if p.get("event_loop_lag_ms")]
    if lags:  # the worst actor's figures, not their sum
        total["event_loop_lag_ms"] = {**{k: max(lag[k] for lag in lags) for k in ("p50", "p99", "max")},
                                      "samples": sum(lag["samples"] for lag in lags)}
    total["seconds"] = round(seconds, 3)
    total["requests_per_second"] = round(total["requests_sent"] / seconds, 2) if seconds and total["requests_sent"] else None
    return total


def run(job: Job, inp: str | Path, out_dir: str | Path, *, block_rows: int = 20_000,
        finish: Callable[[dict | None, dict | None, list[dict], list[dict] | None], dict],
        add_reports: Callable[[dict | None, dict], dict], params: dict | None = None) -> tuple[dict, int]:
    """Run ``job`` over ``inp`` on the actor pool; commit ``out_dir``. Returns (report, rows written).

    ``add_reports`` sums two block reports, ``finish(report, sub_report, llm_reports, sub_llm_reports)``
    makes the stage report (the local stage's own functions)."""
    import time

    import ray

    for cfg in job.configs:
        if cfg.batch_out is not None or not cfg.has_endpoint:
            raise UserError(f"{job.stage} --executor ray calls a live endpoint (--base-url or OPENAI_API_KEY); "
                            "Batch API files are written with --executor local")
    t0 = time.perf_counter()
    with io.DatasetWriter(out_dir, stage=job.stage, inputs=[inp], params=params) as w:
        data, files = ray_data.open_input([inp], None, w.path / ".input")
        blocks = []
        for kind, kfiles in files.items():
            if job.kinds is not None and kind not in job.kinds:
                continue
            ps = ray_data.pieces(kfiles, block_rows) or [{"file": str(kfiles[0]), "offset": 0, "length": 0, "pos": 0}]
            blocks += [{"i": len(blocks) + j, "kind": kind, **p} for j, p in enumerate(ps)]
        if not blocks:  # no rows at all (as translate.iter_blocks): one empty block, so the report is whole
            blocks = [{"i": 0, "kind": "", "file": "", "offset": 0, "length": 0, "pos": 0}]
        n = actors_for(len(blocks), min(c.concurrency for c in job.configs))
        budgets = [ray_budget.start(c) for c in job.configs]
        # A lost actor is restarted and its block retried: Ray Data's actor pools default to
        # max_restarts=-1 and max_task_retries=-1 (passing them is deprecated since Ray 2.60).
        ds = ray.data.from_items(blocks, override_num_blocks=len(blocks)).map_batches(
            _Worker, fn_constructor_args=(job, n, str(w.path), w.compression, budgets), batch_size=1,
            batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=n), num_cpus=1)
        try:
            rows = sorted(ds.take_all(), key=lambda r: r["i"])
        except Exception as exc:  # an actor's StageStopped (endpoint down, budget spent): the user's message
            raise (user_error_in(exc) or exc) from None
        finally:
            for b in budgets:
                b.close()
        report = sub = None
        quarantine: list[dict] = list(data.quarantine)
        llm: list[list[dict]] = [[] for _ in job.configs]
        written = 0
        parts: list[tuple[str, str, int]] = []
        for r in rows:
            report = add_reports(report, orjson.loads(r["report"]))
            s = orjson.loads(r["sub"])
            if s is not None:
                sub = add_reports(sub, s)
            quarantine += orjson.loads(r["quarantine"])
            for k, rep in enumerate(orjson.loads(r["llm"])):
                llm[k].append(rep)
            parts += [tuple(f) for f in orjson.loads(r["files"])]
        clash = [rel for rel, n in Counter(rel for _, rel, _ in parts).items() if n > 1]
        if clash:  # two blocks wrote the same shard: one's rows would be lost
            raise RuntimeError(f"{job.stage}: blocks wrote the same output shard {clash[0]}")
        if job.on_duplicates is not None:
            parts, dropped = _drop_repeated_ids(w.path, parts, w.compression)
            report = job.on_duplicates(report or {}, dropped)
        for kind, rel, height in parts:
            w.add_part(kind, rel)
            written += height
        import shutil

        shutil.rmtree(w.path / ".input", ignore_errors=True)
        seconds = time.perf_counter() - t0
        reports = [merged_llm(c, d, parts, seconds) for c, d, parts in zip(job.configs, job.descriptions, llm)]
        report = finish(report, sub, reports[0], reports[1] if len(reports) > 1 else None)
        w.input_manifests = data.manifest_ids
        w.write_jsonl("quarantine.jsonl", quarantine)
        w.write_json("report.json", io.with_read(report, data))
    return report, written


def _drop_repeated_ids(root: Path, parts: list[tuple[str, str, int]],
                       compression: str) -> tuple[list, dict[str, int]]:
    """Drop from each shard (in block order) the rows whose id an earlier shard of the kind holds;
    returns the shards with their new heights and ``{kind: rows dropped}``. (The ids of one kind
    are held on the driver: 16 bytes a row.)"""
    seen: dict[str, set] = {}
    dropped: dict[str, int] = {}
    out = []
    for kind, rel, height in parts:
        ids = pl.read_parquet(root / rel, columns=["id"])["id"].to_list()
        had = seen.setdefault(kind, set())
        keep = [i not in had for i in ids]
        had.update(ids)
        if not all(keep):
            df = pl.read_parquet(root / rel).filter(pl.Series(keep))
            ray_data.rewrite_part(df, root, rel, compression)
            dropped[kind] = dropped.get(kind, 0) + height - df.height
            height = df.height
        out.append((kind, rel, height))
    return out, dropped


class RunView:
    """What the CLI summary reads from an engine, for a run done by the actor pool."""

    batch_mode = False
    batch_files: list = []

    def __init__(self, llm: dict[str, Any]):
        self._llm = llm

    def report(self) -> dict[str, Any]:
        return self._llm

    def batch_notice(self, stage: str = "") -> str:
        return ""


# ---- the stages -----------------------------------------------------------------------------------
def _localize_block(rows_by_kind, engine, *, country: str, lang: str):
    from curate.localize import localize_rows

    out = localize_rows(rows_by_kind, engine, country=country, lang=lang)
    return out.frames, out.quarantine, out.report, None


def translate(inp, out_dir, config: EngineConfig, *, to: str = "ms", src: str = "auto", glossary=None,
              localize: str | None = None, max_chars: int = 2500, max_units: int = 16,
              block_rows: int = 20_000) -> tuple[dict, RunView]:
    """:func:`curate.translate.translate_dataset` on the actor pool: the same output and report."""
    import functools

    from curate.translate import _add_reports, finish_report, load_glossary, translate_block

    block = functools.partial(translate_block, to=to, src=src, glossary=load_glossary(glossary), localize=localize,
                              max_chars=max_chars, max_units=max_units)
    configs, names = [config], [f"translate -> {to}"]
    if localize:
        configs.append(config)
        names.append(f"localize -> {localize}")
    report, _ = run(Job("translate", block, configs, names), inp, out_dir, block_rows=block_rows,
                    finish=finish_report, add_reports=_add_reports)
    return report, RunView(report["llm"])


def localize(inp, out_dir, config: EngineConfig, *, country: str = "MY", lang: str = "ms",
             block_rows: int = 20_000) -> tuple[dict, RunView]:
    """:func:`curate.localize.localize_dataset` on the actor pool: the same output and report."""
    import functools

    from curate.translate import _add_reports

    def finish(report, _sub, llm, _sub_llm):
        return {**(report or {}), "llm": llm}

    block = functools.partial(_localize_block, country=country, lang=lang)
    report, _ = run(Job("localize", block, [config], [f"localize -> {country}"]), inp, out_dir,
                    block_rows=block_rows, finish=finish, add_reports=_add_reports)
    return report, RunView(report["llm"])


def _add_reports_but_settings(total: dict | None, part: dict) -> dict:
    """Two block reports summed (:func:`curate.translate._add_reports`), the run's ``settings`` kept as they are."""
    from curate.translate import _add_reports

    return {**_add_reports(total, part), "settings": part["settings"]}


def _judge_block(rows_by_kind, engine, *, pairwise: bool = False, **kw):
    from curate.judge import judge_pairs_by_kind, judge_rows

    out = (judge_pairs_by_kind if pairwise else judge_rows)(rows_by_kind, engine, **kw)
    return out.frames, out.quarantine, out.report, None


def _need_kind(inp, kind: str, hint: str) -> io.Input:
    """The input read, when it holds rows of ``kind``; else a one-line error."""
    data = io.read_input(inp)
    if kind not in data.frames:
        raise UserError(f"{inp}: {hint} (found {', '.join(data.frames) or 'nothing'})")
    return data


def judge(inp, out_dir, config: EngineConfig, *, pairwise: bool = False, min_score: float | None = None,
          drop_verdicts: tuple = (), confidence: float = 0.95, temperature: float = 0.0,
          block_rows: int = 20_000) -> tuple[dict, RunView]:
    """:func:`curate.judge.judge_dataset` on the actor pool: the same output and report. Pointwise,
    each block scores its SFT rows (histogram and mean from the merged counts by :func:`curate.judge.score_summary`, as locally);
    pairwise, each block judges its RM rows' pairs and the win rate and its interval are computed
    from the summed outcomes."""
    import functools

    from curate.judge import pairwise_stats, score_summary

    if pairwise:
        _need_kind(inp, "rm", "--pairwise needs RM rows (rm.parquet, e.g. from `curate reflect`)")
    else:
        _need_kind(inp, "sft", "no SFT rows to score; use --pairwise for RM rows")

    def finish(report, _sub, llm, _sub_llm):
        report = dict(report or {})
        if pairwise:
            s, pb = report["pairwise"], report["pairwise"]["position_bias"]
            report["pairwise"] = pairwise_stats({"win": s["wins"], "loss": s["losses"], "tie": s["ties"]},
                                                pb["first_preferred"], pb["second_preferred"], pb["consistent_rows"],
                                                confidence)
        else:
            report.update(score_summary(report.get("score_histogram", {})))
            report["mode"] = "pointwise"
        report["stage"], report["llm"] = "judge", llm
        return report

    kw = ({"confidence": confidence, "temperature": temperature} if pairwise else
          {"min_score": min_score, "drop_verdicts": tuple(drop_verdicts), "temperature": temperature})
    block = functools.partial(_judge_block, pairwise=pairwise, **kw)
    name = "judge pairwise" if pairwise else "judge"
    job = Job("judge", block, [config], [name])
    report, _ = run(job, inp, out_dir, block_rows=block_rows, finish=finish, add_reports=_add_reports_but_settings)
    return report, RunView(report["llm"])


def _reflect_block(rows_by_kind, engine, **kw):
    from curate.reflect import reflect_rows

    out = reflect_rows(rows_by_kind.get("chat") or [], engine, **kw)
    return out.frames, out.quarantine, out.report, None


def reflect(inp, out_dir, config: EngineConfig, *, block_rows: int = 20_000, **kw) -> tuple[dict, RunView]:
    """:func:`curate.reflect.reflect_dataset` on the actor pool: each block reflects its chats; an
    answer row that an earlier block already wrote (the same id) is dropped and counted as a
    duplicate, as locally. The same output and report."""
    import functools

    data = _need_kind(inp, "chat", "no chat rows to reflect on; reflect needs multi-turn chats (ShareGPT, OpenAI "
                            "messages, KoChatGPT conversations)")

    def duplicates(report, dropped):
        counts = report.setdefault("counts", {})
        for kind, n in dropped.items():
            counts[f"duplicate_{kind}"] = counts.get(f"duplicate_{kind}", 0) + n
            report["rows_by_kind"][kind] -= n
            report["rows_out"] -= n
        return report

    from curate.reflect import rows_not_read

    not_read = rows_not_read(data)

    def finish(report, _sub, llm, _sub_llm):
        return {**(report or {}), "rows_not_read": not_read, "llm": llm}

    job = Job("reflect", functools.partial(_reflect_block, **kw), [config], ["reflect"], kinds=("chat",),
              on_duplicates=duplicates)
    report, _ = run(job, inp, out_dir, block_rows=block_rows, finish=finish, add_reports=_add_reports_but_settings)
    return report, RunView(report["llm"])
