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
        n = pl.col("text").str.len_chars()
        parts = []
        for f in FIELDS:
            lo, hi = int(self.p[f"{f}_min"]), int(self.p[f"{f}_max"])
            if lo <= 0 and hi <= 0:
                continue
            cond = pl.lit(False)
            if lo > 0:
                cond = cond | (n < lo)
            if hi > 0:
                cond = cond | (n > hi)
            sub = cells.filter((pl.col("field") == f) & cond)
            if sub.height:
                parts.append(sub.select("_cell", fmt("{} has {} characters (limits {}..{})", pl.col("field"), n,
                                                           pl.lit(lo), pl.lit(hi if hi > 0 else "none"))
                                        .alias("evidence")))
        return pl.concat(parts) if parts else empty_matches()
