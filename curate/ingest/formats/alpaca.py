"""Stanford-Alpaca JSON: ``[{"instruction", "input", "output"}]``, extra keys kept in meta."""

from __future__ import annotations

import polars as pl

from curate.ingest.base import Record, SourceFormat, key_score, keep_extra, plain_text_rows, text

KEYS = {"instruction", "input", "output"}


class Alpaca(SourceFormat):
    name = "alpaca"
    kind = "sft"
    summary = "Stanford-Alpaca style {instruction, input, output} (also malay.json with similarity keys)"

    def score(self, sample):
        return key_score(sample, {"instruction", "output"}, {"instances", "messages", "conversations"})

    def convert(self, obj, rec: Record):
        row = {
            "instruction": text(obj, "instruction", rec),
            "input": text(obj, "input", rec, required=False),
            "output": text(obj, "output", rec),
        }
        keep_extra(obj, KEYS, rec)
        return [row]

    fast_schema = {"instruction": pl.String, "input": pl.String, "output": pl.String}

    def fast_columns(self, df):
        return plain_text_rows(df, ("instruction", "output"), ("input",))

    def fast_content(self, df):
        if "input" not in df.columns:
            df = df.with_columns(pl.lit("").alias("input"))
        return df.select("instruction", pl.col("input").fill_null(""), "output")
