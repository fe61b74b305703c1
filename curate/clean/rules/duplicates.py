"""Exact and near duplicates, via :mod:`curate.dedupe` (one kept per cluster, the first in order)."""

from __future__ import annotations

import polars as pl

from curate.clean.base import ROW_MATCH_SCHEMA, Rule, fmt, row_text


def evidence_expr() -> pl.Expr:
    """A dropped duplicate's evidence from columns ``dup_kind``, ``similarity`` and the kept row's
    ``id``, ``source`` and ``line`` (shared with the Ray executor, which finds clusters across blocks)."""
    where = pl.when(pl.col("source").is_null()).then(pl.col("id")).otherwise(
        fmt("{} ({}:{})", pl.col("id").fill_null("?"), pl.col("source").str.split("/").list.last(), pl.col("line")))
    return fmt("{} duplicate of {} (similarity {})", pl.col("dup_kind"), where,
               pl.col("similarity").round(3)).alias("evidence")


def _dups(rule: Rule, rows: pl.DataFrame, ctx, *, near: bool, threshold: float, kind: str) -> pl.DataFrame:
    """Rows of ``kind`` ('exact' | 'near') that duplicate an earlier row, with the kept row as evidence.

    When both rules are on, one ``find_duplicates`` pass (exact groups, then near duplicates among
    their representatives) serves both: the exact rule computes it and the near rule reuses it."""
    from curate import dedupe

    rule.clusters = []
    rule.moved_seconds = {}
    measure = str(rule.p.get("measure", dedupe.DEFAULT_MEASURE))
    cached = getattr(ctx, "dups", None)
    if kind == "near" and cached is not None and cached[0] == (threshold, measure):
        _, rows, res = cached
    else:
        if rows.height < 2:
            return pl.DataFrame(schema=ROW_MATCH_SCHEMA)
        both = kind == "exact" and getattr(ctx, "near_threshold", None) is not None
        if both:
            threshold, near, measure = float(ctx.near_threshold), True, ctx.near_measure
        stats: dict = {}
        progress = getattr(ctx, "progress", None)
        what = "exact + near duplicates" if near else f"{kind} duplicates"
        bar = progress.stage(f"clean {ctx.kind}: {what} (rows normalized{', sketched' if near else ''})",
                             total=rows.height * (2 if near else 1)) if progress is not None else None
        try:
            res = dedupe.find_duplicates(rows, row_text(rows, ctx), threshold=threshold, near=near, measure=measure,
                                         stats=stats, on_rows=bar.advance if bar is not None else None)
        except ValueError as e:
            from curate.errors import UserError
            raise UserError(f"rule {rule.code}: {e}") from None
        if both:
            ctx.dups = ((threshold, measure), rows, res)
            # the near-duplicate part of the shared pass is timed under near_duplicate
            rule.moved_seconds = {"near_duplicate": sum(v for k, v in stats.items()
                                                        if k.startswith("s_") and k != "s_exact")}
    dropped = res.filter(~pl.col("keep") & (pl.col("dup_kind") == kind))
    if dropped.height == 0:
        return pl.DataFrame(schema=ROW_MATCH_SCHEMA)
    kept_idx = dropped["cluster"].cast(pl.UInt32)
    kept = rows.select("id", "source", "line").gather(kept_idx) if "source" in rows.columns else \
        rows.select(pl.col("_row").cast(pl.String).alias("id"), pl.lit(None, pl.String).alias("source"),
                    pl.lit(None, pl.Int64).alias("line")).gather(kept_idx)
    out = pl.DataFrame({
        "_row": rows["_row"].gather(dropped["row"]),
        "evidence": dropped.select("dup_kind", "similarity").hstack(kept).select(evidence_expr()).to_series(),
    })
    mine = res.filter(pl.col("cluster").is_in(dropped["cluster"].unique().implode()))
    rule.clusters = dedupe.clusters_report(mine.with_columns(
        pl.when(pl.col("dup_kind").is_null() | (pl.col("dup_kind") == kind)).then(pl.col("dup_kind"))),
        rows, row_text(rows, ctx), limit=int(rule.p.get("report_clusters", 10)), members=5)
    return out.cast(ROW_MATCH_SCHEMA)


class ExactDuplicate(Rule):
    code = "exact_duplicate"
    description = "same text as an earlier row (case, spacing and punctuation ignored); the first is kept"
    default_action = "drop"
    scope = "row"
    stage = 90
    params = {"report_clusters": 10}

    def match_rows(self, rows, ctx):
        return _dups(self, rows, ctx, near=False, threshold=1.0, kind="exact")


class NearDuplicate(Rule):
    code = "near_duplicate"
    description = "Jaccard of shingles (measure char5 or wordN) >= threshold to its cluster's kept row (MinHash LSH, verified)"
    default_action = "drop"
    scope = "row"
    stage = 95
    params = {"threshold": 0.8, "measure": "char5", "report_clusters": 10}

    def __init__(self, **params):
        super().__init__(**params)
        from curate import dedupe
        from curate.errors import UserError

        try:  # refuse a bad setting before any work
            dedupe.parse_measure(str(self.p["measure"]))
        except ValueError as e:
            raise UserError(f"rule {self.code}: {e}") from None
        threshold = float(self.p["threshold"])
        if not 0.0 < threshold <= 1.0:  # (nan fails this too)
            raise UserError(f"rule {self.code}: threshold must be in (0, 1], got {self.p['threshold']!r}")

    def match_rows(self, rows, ctx):
        return _dups(self, rows, ctx, near=True, threshold=float(self.p["threshold"]), kind="near")
