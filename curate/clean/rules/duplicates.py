"""Exact and near duplicates, via :mod:`curate.dedupe` (one kept per cluster, the first in order)."""

from __future__ import annotations

import polars as pl

from curate.clean.base import ROW_MATCH_SCHEMA, Rule, fmt


def _dups(rule: Rule, rows: pl.DataFrame, *, near: bool, threshold: float, kind: str) -> pl.DataFrame:
    from curate import dedupe

    rule.clusters = []
    if rows.height < 2:
        return pl.DataFrame(schema=ROW_MATCH_SCHEMA)
    res = dedupe.find_duplicates(rows, "text", threshold=threshold, near=near)
    ids = rows["id"].fill_null("") if "id" in rows.columns else rows["_row"].cast(pl.String)
    where = rows["where"].fill_null("") if "where" in rows.columns else rows["_row"].cast(pl.String)
    kept = fmt("{} ({})", pl.col("_kid"), pl.col("_kwhere"))
    res = res.with_columns(rows["_row"].gather(res["row"]).alias("_row"),
                           rows["_row"].gather(res["cluster"].fill_null(0)).alias("_krow"),
                           ids.gather(res["cluster"].fill_null(0)).alias("_kid"),
                           where.gather(res["cluster"].fill_null(0)).alias("_kwhere"))
    dropped = res.filter(~pl.col("keep") & (pl.col("dup_kind") == kind))
    if dropped.height:
        mine = res.filter(pl.col("cluster").is_in(dropped["cluster"].unique().implode()))
        rule.clusters = dedupe.clusters_report(mine.with_columns(
            pl.when(pl.col("dup_kind").is_null() | (pl.col("dup_kind") == kind)).then(pl.col("dup_kind"))),
            rows, "text", limit=rule.p.get("report_clusters", 10), members=5)
    return dropped.select(
        "_row", fmt("{} duplicate of {} (similarity {})", pl.col("dup_kind"), kept,
                          pl.col("similarity").round(3)).alias("evidence")).cast(ROW_MATCH_SCHEMA)


class ExactDuplicate(Rule):
    code = "exact_duplicate"
    description = "same text as an earlier row (case, spacing and punctuation ignored); the first is kept"
    default_action = "drop"
    scope = "row"
    stage = 90
    params = {"report_clusters": 10}

    def match_rows(self, rows, ctx):
        return _dups(self, rows, near=False, threshold=1.0, kind="exact")


class NearDuplicate(Rule):
    code = "near_duplicate"
    description = "Jaccard of character 5-gram shingles >= threshold with an earlier row (MinHash LSH, verified)"
    default_action = "drop"
    scope = "row"
    stage = 95
    params = {"threshold": 0.8, "report_clusters": 10}

    def match_rows(self, rows, ctx):
        return _dups(self, rows, near=True, threshold=float(self.p["threshold"]), kind="near")
