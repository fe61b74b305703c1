"""``curate clean --executor ray``: the clean stage on a Ray cluster, with the local executor's result.

Per kind, three passes over Ray Data blocks (see docs/scale.md):

A. ``map_batches(_rules_block)``: every rule except the duplicate rules runs on each block through the
   same ``_clean_kind`` as the local executor (a block is a frame; rules look at one row at a time).
   Out: the kept rows (with the hits they collected, ``_hits``, and their duplicate keys, computed
   here once from the normalized text: ``_h1, _h2`` and the band keys ``_bk``), the block's
   quarantine lines (``_q``) and its rule counts (``_stats``). The result is materialized (object
   store, spilled if big); later passes convert only the columns they read.
B. Duplicates over every block, as the local executor finds them in one frame:
   * exact: the normalized text's 128-bit hash, hash-partitioned (``repartition(keys=...)``, a Ray
     Data shuffle); each partition groups its rows -> ``(row, representative = first row)``;
   * near: the MinHash LSH band keys of the representatives (:mod:`curate.dedupe`, from pass A),
     the ``(band, key)`` pairs are hash-partitioned, and a row whose band key
     another row shares is a candidate. Rows that share no band key with anyone cannot be near
     duplicates, so ``dedupe.find_duplicates`` run on the driver over the candidates alone gives the
     same verified edges and clusters as over all rows (the driver holds the candidates' texts).
   The kept row of a cluster is the first in input order, as locally.
C. ``map_batches(_finish_block)``: drop the duplicates (quarantined with the same entry the local
   executor writes), write the kept rows as parquet shards ``<kind>/part-<pos>.parquet`` into the
   output's staging directory.

Quarantine lines are written in input order per kind; report.json has the same figures.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import polars as pl

from curate import dedupe, io, schemas
from curate.clean.config import CleanConfig
from curate.clean import quarantine as qfile
from curate.clean.engine import (BOTH_DUPS_NOTE, HIT_SCHEMA, _clean_kind, _examples, _quarantine, _short, _Stats, active_rules,
                                 row_text_expr)
from curate.clean.rules.duplicates import evidence_expr
from curate.errors import UserError
from curate.executors import ray_data
from curate.executors.ray_data import POS, from_arrow, to_arrow

DUP_CODES = ("exact_duplicate", "near_duplicate")
KEYS = ("_h1", "_h2", "_bk")  # duplicate keys pass A adds to the kept rows
INTERNAL = (POS, "_hits", "_q", "_stats", *KEYS)
SNIPPET = 120


@dataclass
class RayCleanResult:
    report: dict[str, Any]
    quarantine_lines: list[bytes]


# --------------------------------------------------------------------------- pass A (workers)
def _rules_block(table, kind: str, config: CleanConfig, keys: dict[str, Any] | None = None):
    """Every rule but the duplicate rules on one block. With ``keys`` (the duplicate rules are on),
    the kept rows also get their duplicate keys, computed here once from the normalized text: the
    exact key ``_h1, _h2`` (two 64-bit hashes) and, with ``keys["near"] = (threshold, measure)``,
    the MinHash LSH band keys ``_bk`` (band << 32 | key); null for a row whose normalized text is
    empty (it has no duplicates)."""
    df = from_arrow(table)
    pos = df[POS]
    df = df.drop(POS)
    active = active_rules(config)
    stats = _Stats(active, config.examples)
    extras: dict[str, Any] = {}
    kept, q = _clean_kind(df, kind, [a for a in active if a.rule.code not in DUP_CODES], config, stats,
                          extras=extras)
    kept_rows = extras["kept_rows"]
    hits = pl.concat(extras["hits"]) if extras["hits"] else pl.DataFrame(schema=HIT_SCHEMA)
    per_row = (hits.filter(pl.col("_row").is_in(kept_rows.implode()))
               .group_by("_row", maintain_order=True).agg(pl.struct("rule", "field", "evidence").alias("_hits")))
    kept = (kept.with_columns(kept_rows.alias("_row"), pos.gather(kept_rows).alias(POS))
            .join(per_row, on="_row", how="left", maintain_order="left").drop("_row"))
    if keys is not None:
        kept = _with_keys(kept, kind, keys.get("near"))
    parts = [kept]
    if q.height:
        lines = q.write_ndjson().splitlines()
        parts.append(pl.DataFrame({POS: pos.gather(extras["gone_rows"]), "_q": lines}))
    out = pl.concat(parts, how="diagonal_relaxed") if len(parts) > 1 else kept.with_columns(
        pl.lit(None, pl.String).alias("_q"))
    block_stats = orjson.dumps({"rules": stats.rules, "engine": stats.engine}).decode()
    out = out.with_columns(pl.Series("_stats", [block_stats] + [None] * (out.height - 1), dtype=pl.String))
    return to_arrow(out)


def _with_keys(kept: pl.DataFrame, kind: str, near: tuple[float, str] | None) -> pl.DataFrame:
    norm = kept.select(dedupe.normalize(row_text_expr(kind).fill_null("")).alias("_norm"))["_norm"]
    some = norm != ""
    kept = kept.with_columns(*(pl.when(some).then(norm.hash(seed=seed)).alias(f"_h{seed}") for seed in (1, 2)))
    if near is None:
        return kept
    texts = norm.filter(some)
    if texts.len() == 0:
        return kept
    keys = dedupe.sketch(texts, threshold=near[0], measure=near[1]).keys.astype(np.uint64)
    keys |= np.arange(keys.shape[1], dtype=np.uint64)[None, :] << np.uint64(32)  # as dedupe.buckets
    bk = pl.Series("_bk", keys, dtype=pl.Array(pl.UInt64, keys.shape[1]))
    if texts.len() < kept.height:  # null for the rows without text (an Array column has no scatter)
        bk = (pl.DataFrame({"_r": pl.int_range(kept.height, dtype=pl.UInt32, eager=True)})
              .join(pl.DataFrame({"_r": some.arg_true(), "_bk": bk}), on="_r", how="left", maintain_order="left")["_bk"])
    return kept.with_columns(bk)


def _columns(table, names) -> pl.DataFrame:
    """Only ``names`` of an Arrow block, as polars (the other columns are never converted)."""
    return from_arrow(table.select([n for n in names if n in table.column_names]))


def _without_keys(table) -> pl.DataFrame:
    return from_arrow(table.drop_columns([k for k in KEYS if k in table.column_names]))


def _side(table):
    """The small columns of pass A's output: quarantine lines and block stats."""
    df = _columns(table, (POS, "_q", "_stats"))
    return to_arrow(df.filter(pl.col("_q").is_not_null() | pl.col("_stats").is_not_null()))


def _kept(df: pl.DataFrame) -> pl.DataFrame:
    return df.filter(pl.col("_q").is_null())


# --------------------------------------------------------------------------- pass B (workers)
def _exact_keys(table):
    """``_pos, _h1, _h2`` of the block's kept rows that have a normalized text."""
    if "_h1" not in table.column_names:  # every row of the block was quarantined
        return to_arrow(pl.DataFrame(schema={POS: pl.Int64, "_h1": pl.UInt64, "_h2": pl.UInt64}))
    return to_arrow(_columns(table, (POS, "_h1", "_h2")).filter(pl.col("_h1").is_not_null()))


def _exact_groups(table):
    """One hash partition: rows whose normalized text another row has -> (row, first row)."""
    df = from_arrow(table)
    g = ["_h1", "_h2"]
    return to_arrow(df.filter(pl.len().over(g) > 1).select(POS, pl.col(POS).min().over(g).alias("_rep")))


def _band_keys(table, skip):
    """The band keys of the block's representatives, one row per (row, band): ``_pos, _bk``. Rows in
    ``skip`` (exact duplicates of an earlier row) have none."""
    if "_bk" not in table.column_names:
        return to_arrow(pl.DataFrame(schema={POS: pl.Int64, "_bk": pl.UInt64}))
    df = _columns(table, (POS, "_bk")).filter(pl.col("_bk").is_not_null())
    skip = ray_data.resolve(skip)
    if skip is not None and len(skip):
        df = df.filter(~pl.col(POS).is_in(pl.Series(skip).implode()))
    if df.height == 0:
        return to_arrow(pl.DataFrame(schema={POS: pl.Int64, "_bk": pl.UInt64}))
    keys = df["_bk"].to_numpy()
    return to_arrow(pl.DataFrame({POS: np.repeat(df[POS].to_numpy(), keys.shape[1]), "_bk": keys.ravel()}))


def _shared_keys(table):
    """One hash partition of band keys: the rows sharing a band key with another row (candidates)."""
    df = from_arrow(table)
    return to_arrow(df.filter(pl.col("_bk").is_duplicated()).select(POS).unique())


def _texts_of(table, kind: str, want, snippet: bool):
    """``_pos, id, source, line, text`` of the kept rows in ``want`` (texts cut for a report)."""
    df = _kept(_without_keys(table)).filter(pl.col(POS).is_in(pl.Series(ray_data.resolve(want)).implode()))
    text = row_text_expr(kind).fill_null("")
    return to_arrow(df.select(POS, "id", "source", "line", (text.str.slice(0, SNIPPET) if snippet else text).alias("text")))


# --------------------------------------------------------------------------- pass C (workers)
def _finish_block(table, kind: str, config: CleanConfig, drops, root: str | None):
    """Drop the block's duplicates (quarantine entries as the local executor makes them), write the
    kept rows as one shard. Out: ``_file``, ``_rows`` and the quarantine lines ``_pos, _q``."""
    df = _without_keys(table)
    drops = ray_data.resolve(drops)
    first_pos = int(df[POS].min())
    rows = _kept(df).with_row_index("_row")
    content = [c for c in rows.columns if c not in INTERNAL and c != "_row"]
    stats = _Stats(active_rules(config), config.examples)
    gone_hits = rows.select("_row", POS).join(drops, on=POS, how="inner").sort("_row")
    out = []
    if gone_hits.height:
        dup_hits = gone_hits.select("_row", pl.col("rule"), pl.lit("row").alias("field"), "evidence").cast(HIT_SCHEMA)
        prior = (rows.filter(pl.col("_row").is_in(gone_hits["_row"].implode())).select("_row", "_hits")
                 .explode("_hits").filter(pl.col("_hits").is_not_null()).unnest("_hits"))
        prior = prior.cast(HIT_SCHEMA) if prior.height else pl.DataFrame(schema=HIT_SCHEMA)
        gone = rows.filter(pl.col("_row").is_in(gone_hits["_row"].implode())).select("_row", *content)
        q = _quarantine(gone, [dup_hits], [prior, dup_hits], kind, stats)
        out.append(pl.DataFrame({POS: gone_hits[POS], "_q": q.write_ndjson().splitlines()}))
        rows = rows.filter(~pl.col("_row").is_in(gone_hits["_row"].implode()))
    kept = rows.select(content)
    files = []
    if kept.height and root is not None:
        files.append(ray_data.write_part(kept, Path(root), kind, first_pos))
    block_stats = orjson.dumps({"rules": stats.rules, "engine": {}}).decode()
    res = pl.DataFrame({"_file": files or [None], "_rows": [kept.height], "_stats": [block_stats]})
    if out:
        res = pl.concat([res, out[0]], how="diagonal_relaxed")
    return to_arrow(res)


# --------------------------------------------------------------------------- driver
def _collect(ds) -> pl.DataFrame:
    frames = [from_arrow(t) for t in ds.iter_batches(batch_format="pyarrow", batch_size=None)]
    frames = [f for f in frames if f.width]
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def _merge_stats(stats: _Stats, block: dict[str, Any]) -> None:
    for code, rule in block["rules"].items():
        mine = stats.rules[code]
        for key, value in rule.items():
            if key == "examples":
                room = stats.examples - len(mine["examples"])
                mine["examples"].extend(value[:max(room, 0)])
            elif key == "seconds":
                mine[key] = round(mine.get(key, 0.0) + value, 3)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                mine[key] = mine.get(key, 0) + value
            elif key == "clusters":  # as locally: the last kind with clusters names them
                mine[key] = value
            else:
                mine.setdefault(key, value)
    for key, value in block.get("engine", {}).items():
        stats.engine[key] = round(stats.engine.get(key, 0.0) + value, 3)


def _lap(stats: _Stats, name: str, t0: float) -> None:
    """Wall seconds of a Ray pass, in the report's engine_seconds (summed over kinds, which overlap)."""
    stats.engine[name] = round(stats.engine.get(name, 0.0) + time.perf_counter() - t0, 3)


def _dup_rules(config: CleanConfig) -> dict[str, Any]:
    out = {}
    for a in active_rules(config):
        if a.rule.code in DUP_CODES:
            if a.action != "drop":
                raise UserError(f"--executor ray runs {a.rule.code} as drop or off (not {a.action}); "
                                "use --executor local to flag duplicates")
            out[a.rule.code] = a
    return out


def _near_params(dups: dict[str, Any]) -> tuple[float, str] | None:
    """(threshold, measure) of the near-duplicate rule, None when it is off."""
    if "near_duplicate" not in dups:
        return None
    p = dups["near_duplicate"].rule.p
    return float(p["threshold"]), str(p.get("measure", dedupe.DEFAULT_MEASURE))


def _partitions() -> int:
    from curate.executors.ray_session import num_cpus

    return max(2, 2 * num_cpus())


def _duplicates(a, kind: str, config: CleanConfig, dups: dict[str, Any], gone_pos: np.ndarray,
                stats: _Stats) -> pl.DataFrame:
    """Pass B: ``_pos, rule, evidence`` of every duplicate to drop; fills the dup rules' stats."""
    import ray

    t0 = time.perf_counter()
    nparts = _partitions()
    exact = (a.map_batches(_exact_keys, batch_format="pyarrow", batch_size=None)
             .repartition(nparts, keys=["_h1", "_h2"]).map_batches(_exact_groups, batch_format="pyarrow", batch_size=None))
    members = _collect(exact)
    _lap(stats, "ray_exact_shuffle", t0)
    if members.width == 0:
        members = pl.DataFrame(schema={POS: pl.Int64, "_rep": pl.Int64})
    near = "near_duplicate" in dups
    threshold, measure = _near_params(dups) or (1.0, dedupe.DEFAULT_MEASURE)
    near_root = pl.DataFrame(schema={"_rep": pl.Int64, "_root": pl.Int64, "_sim": pl.Float64})
    if near:
        skip = members.filter(pl.col(POS) != pl.col("_rep"))[POS].to_numpy()
        bk = (a.map_batches(_band_keys, batch_format="pyarrow", batch_size=None, fn_kwargs={"skip": ray.put(skip)})
              .repartition(nparts, keys=["_bk"]).map_batches(_shared_keys, batch_format="pyarrow", batch_size=None))
        t1 = time.perf_counter()
        cand = _collect(bk)
        _lap(stats, "ray_band_shuffle", t1)
        t1 = time.perf_counter()
        if cand.height:
            want = np.unique(cand[POS].to_numpy())
            texts = _collect(a.map_batches(_texts_of, batch_format="pyarrow", batch_size=None,
                                           fn_kwargs={"kind": kind, "want": ray.put(want), "snippet": False})).sort(POS)
            res = dedupe.find_duplicates(texts, "text", threshold=threshold, near=True, measure=measure)
            clustered = res.filter(pl.col("cluster").is_not_null())
            pos = texts[POS]
            near_root = pl.DataFrame({"_rep": pos.gather(clustered["row"]),
                                      "_root": pos.gather(clustered["cluster"].cast(pl.UInt32)),
                                      "_sim": clustered["similarity"]})
        _lap(stats, "ray_candidates_on_driver", t1)
    involved = pl.concat([members.select(POS, "_rep"),
                          near_root.select(pl.col("_rep").alias(POS), "_rep")]).unique(POS)
    res = (involved.join(near_root, on="_rep", how="left")
           .with_columns(pl.coalesce("_root", "_rep").alias("_root"))
           .filter(pl.len().over("_root") > 1)
           .with_columns((pl.col(POS) == pl.col("_root")).alias("keep"))
           .with_columns(pl.when(pl.col("keep") | (pl.col("_rep") == pl.col("_root"))).then(1.0)
                         .otherwise(pl.col("_sim")).alias("similarity"),
                         pl.when(pl.col("keep")).then(None).when(pl.col("_rep") == pl.col("_root"))
                         .then(pl.lit("exact")).otherwise(pl.lit("near")).alias("dup_kind"))
           .sort(POS))
    # the local executor numbers rows among those still kept when the duplicate rules run
    def kidx(p: pl.Series) -> list[int]:
        return (p.to_numpy() - np.searchsorted(gone_pos, p.to_numpy())).tolist()

    info = pl.DataFrame(schema={POS: pl.Int64})
    if res.height:
        info = _collect(a.map_batches(_texts_of, batch_format="pyarrow", batch_size=None,
                                      fn_kwargs={"kind": kind, "want": ray.put(res[POS].to_numpy()),
                                                 "snippet": True})).sort(POS)
    drops = []
    seconds = time.perf_counter() - t0
    for code in ("exact_duplicate", "near_duplicate"):
        if code not in dups:
            continue
        dkind = code.split("_")[0]
        if code == "exact_duplicate" and near:
            stats.rules[code]["note"] = BOTH_DUPS_NOTE
        dropped = res.filter(~pl.col("keep") & (pl.col("dup_kind") == dkind))
        if dropped.height == 0:
            stats.add(code, "drop", 0, [], seconds if code == "exact_duplicate" else 0.0)
            continue
        kept = info.select(pl.col(POS).alias("_root"), "id", "source", "line")
        hit = (dropped.join(kept, on="_root", how="left", maintain_order="left")
               .select(POS, pl.lit(code).alias("rule"), pl.lit("row").alias("field"),
                       _short(evidence_expr().fill_null(""))))
        drops.append(hit.select(POS, "rule", "evidence"))
        # examples and cluster report through the local functions, on the rows involved (renumbered)
        first = hit.head(config.examples * 8)
        ex_df = first.select(pl.col(POS)).join(info, on=POS, how="left", maintain_order="left").select("id", "source", "line")
        examples = _examples(first.with_row_index("_row").select("_row", "rule", "field", "evidence"),
                             ex_df.with_row_index("_row"), config.examples)
        stats.add(code, "drop", dropped.height, examples, seconds if code == "exact_duplicate" else 0.0)
        rule = dups[code].rule
        mine = res.filter(pl.col("_root").is_in(dropped["_root"].unique().implode()))
        dense = {p: i for i, p in enumerate(info[POS].to_list())}
        result = mine.select(
            pl.col(POS).replace_strict(dense, return_dtype=pl.UInt32).alias("row"),
            pl.col("_root").replace_strict(dense, return_dtype=pl.Int64).alias("cluster"), "keep", "similarity",
            pl.when(pl.col("dup_kind").is_null() | (pl.col("dup_kind") == dkind)).then(pl.col("dup_kind")).alias("dup_kind"))
        report = dedupe.clusters_report(result, info, "text", limit=int(rule.p.get("report_clusters", 10)), members=5)
        back = kidx(info[POS])
        for c in report:
            c["cluster"] = back[c["cluster"]]
            for m in c["members"]:
                m["row"] = back[m["row"]]
        if report:
            stats.rules[code]["clusters"] = report
    if not drops:
        return pl.DataFrame(schema={POS: pl.Int64, "rule": pl.String, "evidence": pl.String})
    return pl.concat(drops)


def _clean_kind_ray(kind: str, kfiles: list[Path], config: CleanConfig, dups: dict[str, Any], nrows: int,
                    root: str | None):
    """Passes A, B and C over one kind: ``(kind, stats, rows kept, quarantine lines, shard paths)``."""
    import ray

    ds = ray_data.read_kind(kfiles, kind, nrows)
    if ds is None:
        return kind, None, 0, [], []
    stats = _Stats(active_rules(config), config.examples)
    t0 = time.perf_counter()
    keys = {"near": _near_params(dups)} if dups else None
    a = ds.map_batches(_rules_block, batch_format="pyarrow", batch_size=None,
                       fn_kwargs={"kind": kind, "config": config, "keys": keys}).materialize()
    side = _collect(a.map_batches(_side, batch_format="pyarrow", batch_size=None))
    _lap(stats, "ray_rules_pass", t0)
    for s in side["_stats"].drop_nulls().to_list():
        _merge_stats(stats, orjson.loads(s))
    quarantined = side.filter(pl.col("_q").is_not_null()).select(POS, "_q")
    gone_pos = np.sort(quarantined[POS].to_numpy())
    drops = _duplicates(a, kind, config, dups, gone_pos, stats) if dups else \
        pl.DataFrame(schema={POS: pl.Int64, "rule": pl.String, "evidence": pl.String})
    t0 = time.perf_counter()
    fin = _collect(a.map_batches(_finish_block, batch_format="pyarrow", batch_size=None,
                                 fn_kwargs={"kind": kind, "config": config, "drops": ray.put(drops), "root": root}))
    _lap(stats, "ray_finish_pass", t0)
    for s in fin["_stats"].drop_nulls().to_list():
        _merge_stats(stats, orjson.loads(s))
    if "_q" in fin.columns:
        quarantined = pl.concat([quarantined, fin.filter(pl.col("_q").is_not_null()).select(POS, "_q")])
    parts = sorted(fin["_file"].drop_nulls().to_list())
    if root is not None and not parts:  # every row dropped: an empty shard still carries the kind's schema
        parts = [ray_data.write_part(schemas.empty(kind), Path(root), kind, 0)]
    lines = [ln.encode() + b"\n" for ln in quarantined.sort(POS)["_q"].to_list()]
    return kind, stats, int(fin["_rows"].sum()), lines, parts


def clean_dir_ray(inp: str | Path | list, out: str | Path, config: CleanConfig | None = None, *,
                  dry_run: bool = False, report_json: str | Path | None = None, fmt: str | None = None,
                  rows_per_block: int | None = None) -> RayCleanResult:
    """:func:`curate.clean.clean_dir` on Ray (connect first: ``RayExecutor.connect()``): the same
    output directory, quarantine and report."""
    config = config or CleanConfig()
    config.validate()
    dups = _dup_rules(config)
    inputs = list(inp) if isinstance(inp, (list, tuple)) else [inp]
    t0 = time.perf_counter()
    stats = _Stats(active_rules(config), config.examples)
    nrows = rows_per_block or ray_data.block_rows()
    by_kind: dict[str, dict[str, int]] = {}
    lines: list[bytes] = []
    writer = contextlib.nullcontext() if dry_run else io.DatasetWriter(
        out, stage="clean", inputs=inputs,
        params={"target_lang": config.target_lang, "actions": config.actions, "params": config.params})
    with writer as w, tempfile.TemporaryDirectory(prefix="curate-ray-") as tmp:
        # raw inputs are spilled beside the output (shared storage on a cluster), never published
        spill = Path(tmp) if w is None else w.path / ".input"
        data, files = ray_data.open_input(inputs, fmt, spill)
        root = None if w is None else str(w.path)
        # the kinds run at the same time (their Ray Data jobs overlap); results are merged in kind order
        with ThreadPoolExecutor(max(1, len(files))) as pool:
            done = list(pool.map(lambda kv: _clean_kind_ray(kv[0], kv[1], config, dups, nrows, root),
                                 files.items()))
        shutil.rmtree(spill, ignore_errors=True)
        for kind, kstats, n_kept, qlines, parts in done:
            if kstats is None:
                continue
            _merge_stats(stats, {"rules": kstats.rules, "engine": kstats.engine})
            by_kind[kind] = {"in": n_kept + len(qlines), "out": n_kept, "dropped": len(qlines)}
            lines += qlines
            if w is not None:
                for rel in parts:
                    w.add_part(kind, rel)
        n_in = sum(v["in"] for v in by_kind.values())
        n_out = sum(v["out"] for v in by_kind.values())
        n_dropped = sum(v["dropped"] for v in by_kind.values())
        report = {
            "stage": "clean", "target_lang": config.target_lang,
            "rows_in": n_in, "rows_out": n_out, "rows_dropped": n_dropped, "accounted": n_in == n_out + n_dropped,
            "by_kind": by_kind, "seconds": round(time.perf_counter() - t0, 3), "engine_seconds": stats.engine,
            "rules": list(stats.rules.values()), "input": ", ".join(str(p) for p in inputs), "read": data.report,
        }
        if w is not None:
            w.input_manifests = data.manifest_ids
            report["output"] = str(out)
            qfile.write(w.file(qfile.NAME), qfile.from_lines(lines, data.quarantine))
            w.write_json("report.json", report)
    if report_json:
        io.write_json(report_json, report)
    return RayCleanResult(report, lines)
