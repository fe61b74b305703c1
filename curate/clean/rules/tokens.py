"""Token limits: rows longer than a model's context, counted with a SentencePiece model (curate.tokens)."""

from __future__ import annotations

import polars as pl

from curate.clean.base import ROW_MATCH_SCHEMA, Rule, fmt, with_text


class TooManyTokens(Rule):
    code = "too_many_tokens"
    description = ("a row with more than max_tokens tokens (all its text; SentencePiece model= path, else "
                   "characters/4); max_tokens 0 = off")
    default_action = "drop"
    scope = "row"
    stage = 60
    params = {"max_tokens": 0, "model": ""}

    def __init__(self, **params):
        super().__init__(**params)
        self._counter = None

    def counter(self):
        if self._counter is None:
            from curate import tokens

            self._counter = tokens.load_model(self.p["model"] or None)
        return self._counter

    def match_rows(self, rows, ctx):
        limit = int(self.p["max_tokens"])
        if limit <= 0 or rows.height == 0:
            return pl.DataFrame(schema=ROW_MATCH_SCHEMA)
        counter = self.counter()
        rows = with_text(rows, ctx)
        maybe = rows
        if counter.method == "chars/4":
            # the heuristic never gives more tokens than characters: count only rows that could be over
            maybe = rows.filter(pl.col("text").fill_null("").str.len_chars() > limit)
            if maybe.height == 0:
                return pl.DataFrame(schema=ROW_MATCH_SCHEMA)
        n = counter.count(maybe["text"].fill_null(""))
        over = maybe.with_columns(n.alias("_tokens")).filter(pl.col("_tokens") > limit)
        return over.select("_row", fmt("{} tokens > {} ({})", pl.col("_tokens"), pl.lit(limit),
                                       pl.lit(counter.method)).alias("evidence")).cast(ROW_MATCH_SCHEMA)
