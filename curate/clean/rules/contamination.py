"""Rows that hold an evaluation-set item, via :mod:`curate.decontaminate` (off unless eval files are given)."""

from __future__ import annotations

import polars as pl

from curate.clean.base import ROW_MATCH_SCHEMA, Rule, row_text


class Contaminated(Rule):
    code = "contaminated"
    description = ("holds an evaluation item: at least `threshold` of an eval field's n-grams "
                   "(on with --against EVAL; see `curate decontaminate`)")
    default_action = "off"
    switch = "against"          # setting it turns the rule on (drop)
    scope = "row"
    stage = 88                  # after language id, before duplicates: a contaminated row is never a kept copy
    params = {"against": "", "eval_fields": "", "ngram": 13, "min_ngram": 5, "threshold": 0.5, "max_count": 10,
              "translate_eval": ""}

    def __init__(self, **params):
        super().__init__(**params)   # CleanConfig.load refuses the rule switched on without eval files
        self._index = None
        self.report_extra: dict = {}

    def index(self):
        if self._index is None:
            from curate import decontaminate as dc

            params = dc.Params(ngram=int(self.p["ngram"]), min_ngram=int(self.p["min_ngram"]),
                               threshold=float(self.p["threshold"]), max_count=int(self.p["max_count"]))
            fields = _paths(self.p["eval_fields"]) or None
            self._index = dc.load_index(_paths(self.p["against"]), fields=fields, params=params,
                                        translate_to=self.p["translate_eval"] or None)
        return self._index

    def match_rows(self, rows, ctx):
        from curate import decontaminate as dc

        if not _paths(self.p["against"]):
            self.report_extra = {"note": "no eval files given: nothing checked"}
            return pl.DataFrame(schema=ROW_MATCH_SCHEMA)
        index = self.index()
        texts = rows.select(row_text(rows, ctx))
        texts = texts.to_series()
        described = dc.describe_hits(dc.scan(texts, index), texts, index)
        sets = dc.per_set_counts(described, index)
        prev = {s["eval"]: s for s in self.report_extra.get("eval_sets", [])}
        for s in sets:  # one rule instance serves every kind: add up
            if s["eval"] in prev:
                for k in ("rows_hit", "items_found", "hits"):
                    s[k] += prev[s["eval"]][k]
        self.report_extra = {"eval_sets": sets}
        if described.height == 0:
            return pl.DataFrame(schema=ROW_MATCH_SCHEMA)
        best = described.unique("_g", keep="first", maintain_order=True)   # highest share first
        return pl.DataFrame({"_row": rows["_row"].gather(best["_g"]),
                             "evidence": best.select(dc.evidence_expr()).to_series()}).cast(ROW_MATCH_SCHEMA)


def _paths(value) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [v.strip() for v in str(value or "").split(",") if v.strip()]
