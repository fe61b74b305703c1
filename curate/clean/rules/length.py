"""Length limits in characters, per field (token limits come with the tokenizer stage)."""

from __future__ import annotations

import polars as pl

from curate.clean.base import Rule, empty_matches, fmt

FIELDS = ("instruction", "input", "output", "prompt", "messages", "completions")


class LengthLimit(Rule):
    code = "length_limit"
    description = "a field shorter than FIELD_min or longer than FIELD_max characters (0 = no limit)"
    default_action = "drop"
    roles = ("prompt", "input", "response", "system")
    params = {**{f"{f}_min": 0 for f in FIELDS}, **{f"{f}_max": 20_000 for f in FIELDS},
              "instruction_max": 8_000}

    def match(self, cells, ctx):
        lo = {f: int(self.p[f"{f}_min"]) for f in FIELDS}
        hi = {f: int(self.p[f"{f}_max"]) for f in FIELDS}
        n = pl.col("text").str.len_chars()
        lo_e = pl.col("field").replace_strict(lo, default=0, return_dtype=pl.Int64)
        hi_e = pl.col("field").replace_strict(hi, default=0, return_dtype=pl.Int64)
        # bytes bound chars from above (and from below by bytes/4): a cheap first cut
        max_hi = max([v for v in hi.values() if v > 0], default=0)
        min_lo = max(lo.values())
        b = pl.col("text").str.len_bytes()
        cand = cells.filter(((b > min(v for v in hi.values() if v > 0)) if max_hi else pl.lit(False))
                            | ((b < min_lo * 4) if min_lo else pl.lit(False)))
        bad = cand.with_columns(n.alias("_n"), lo_e.alias("_lo"), hi_e.alias("_hi")).filter(
            ((pl.col("_lo") > 0) & (pl.col("_n") < pl.col("_lo"))) | ((pl.col("_hi") > 0) & (pl.col("_n") > pl.col("_hi"))))
        if bad.height == 0:
            return empty_matches()
        return bad.select("_cell", fmt("{} has {} characters (limits {}..{})", pl.col("field"), pl.col("_n"),
                                       pl.col("_lo"), pl.when(pl.col("_hi") > 0).then(pl.col("_hi").cast(pl.String))
                                       .otherwise(pl.lit("none"))).alias("evidence"))
