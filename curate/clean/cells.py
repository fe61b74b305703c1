"""Cells: every text field of every row, in one long frame, so one rule covers all four kinds.

=======  ==========================================  ==========
kind     field (pos)                                 role
=======  ==========================================  ==========
sft      instruction / input / output                prompt / input / response
chat     messages (pos = message index)              user -> prompt, assistant -> response, system
rm       prompt / completions (pos = index)          prompt / response
ppo      prompt                                      prompt
=======  ==========================================  ==========

Columns: ``_cell`` (index in this frame), ``_row`` (index of the row in its kind's frame),
``field``, ``pos`` (null for a scalar field), ``role``, ``text`` (null read as ""), ``given``
(the sft input on sft prompt and response cells, "" elsewhere) and ``question`` (for response
cells: the text it answers: the sft instruction, the previous user message, or the rm prompt).
Columns taken from the frame are string views of its buffers, not copies.
"""

from __future__ import annotations

import polars as pl

CHAT_ROLE = {"user": "prompt", "assistant": "response", "system": "system"}
CELL_SCHEMA = {"_row": pl.UInt32, "field": pl.String, "pos": pl.Int32, "role": pl.String, "text": pl.String,
               "given": pl.String, "question": pl.String}


def _scalar(df: pl.DataFrame, field: str, role: str, given: pl.Expr | None = None,
            question: pl.Expr | None = None) -> pl.DataFrame:
    return df.select(
        pl.col("_row"),
        pl.lit(field).alias("field"),
        pl.lit(None, dtype=pl.Int32).alias("pos"),
        pl.lit(role).alias("role"),
        pl.col(field).fill_null("").alias("text"),
        (given if given is not None else pl.lit("")).alias("given"),
        (question if question is not None else pl.lit("")).alias("question"),
    )


def build(df: pl.DataFrame, kind: str) -> pl.DataFrame:
    """The cells of a frame that has a ``_row`` index column."""
    if kind == "sft":
        instr = pl.col("instruction").fill_null("")
        inp = pl.col("input").fill_null("")
        parts = [_scalar(df, "instruction", "prompt", given=inp),
                 _scalar(df, "input", "input"),
                 _scalar(df, "output", "response", given=inp, question=instr)]
    elif kind == "chat":
        m = (df.select("_row", pl.col("messages"))
             .with_columns(pl.int_ranges(0, pl.col("messages").list.len(), dtype=pl.Int32).alias("pos"))
             .explode("messages", "pos")
             .filter(pl.col("messages").is_not_null()))
        role = pl.col("messages").struct.field("role").replace_strict(CHAT_ROLE, default="prompt")
        text = pl.col("messages").struct.field("content").fill_null("")
        m = m.select("_row", pl.lit("messages").alias("field"), "pos", role.alias("role"), text.alias("text"))
        last_user = (pl.when(pl.col("role") == "prompt").then(pl.col("text")).otherwise(None)
                     .forward_fill().over("_row"))
        parts = [m.with_columns(pl.lit("").alias("given"),
                                pl.when(pl.col("role") == "response").then(last_user.fill_null(""))
                                .otherwise(pl.lit("")).alias("question"))]
    elif kind == "rm":
        comp = (df.select("_row", pl.col("prompt").fill_null("").alias("question"), pl.col("completions"))
                .with_columns(pl.int_ranges(0, pl.col("completions").list.len(), dtype=pl.Int32).alias("pos"))
                .explode("completions", "pos")
                .filter(pl.col("pos").is_not_null())
                .select("_row", pl.lit("completions").alias("field"), "pos", pl.lit("response").alias("role"),
                        pl.col("completions").fill_null("").alias("text"), pl.lit("").alias("given"),
                        "question"))
        parts = [_scalar(df, "prompt", "prompt"), comp]
    elif kind == "ppo":
        parts = [_scalar(df, "prompt", "prompt")]
    else:
        raise ValueError(f"unknown kind {kind!r}")
    if kind in ("chat", "rm"):
        # a conversation with no assistant message (or an rm row with no completion) gets one empty
        # response cell, so the empty-output rule sees it
        field = "messages" if kind == "chat" else "completions"
        has = pl.concat([p.filter(pl.col("role") == "response").select("_row") for p in parts])["_row"].unique()
        missing = df.select("_row").filter(~pl.col("_row").is_in(has.implode()))
        if missing.height:
            parts.append(missing.select("_row", pl.lit(field).alias("field"), pl.lit(None, dtype=pl.Int32).alias("pos"),
                                        pl.lit("response").alias("role"), pl.lit("").alias("text"),
                                        pl.lit("").alias("given"), pl.lit("").alias("question")))
    cells = pl.concat([p.cast(CELL_SCHEMA) for p in parts], how="vertical")
    return cells.with_row_index("_cell")


def rebuild(df: pl.DataFrame, kind: str, cells: pl.DataFrame, changed: pl.Series) -> pl.DataFrame:
    """Write the text of the ``changed`` cells (their ``_cell`` ids) back into ``df``'s content columns."""
    if changed.len() == 0:
        return df
    sub = cells.filter(pl.col("_cell").is_in(changed.implode()))
    if kind in ("sft", "ppo") or kind == "rm":
        for field in ("instruction", "input", "output", "prompt"):
            part = sub.filter((pl.col("field") == field))
            if part.height and field in df.columns:
                df = df.with_columns(df[field].scatter(part["_row"], part["text"]))
    if kind == "rm":
        part = sub.filter(pl.col("field") == "completions")
        if part.height:
            rows = part["_row"].unique()
            allc = (cells.filter((pl.col("field") == "completions") & pl.col("_row").is_in(rows.implode()))
                    .sort("_row", "pos").group_by("_row", maintain_order=True)
                    .agg(pl.col("text").alias("completions")))
            df = _replace_lists(df, allc, "completions")
    if kind == "chat":
        rows = sub["_row"].unique()
        mine = cells.filter(pl.col("_row").is_in(rows.implode())).select("_row", "pos", "text")
        orig = (df.filter(pl.col("_row").is_in(rows.implode())).select("_row", "messages")
                .with_columns(pl.int_ranges(0, pl.col("messages").list.len(), dtype=pl.Int32).alias("pos"))
                .explode("messages", "pos").filter(pl.col("pos").is_not_null())
                .join(mine, on=["_row", "pos"], how="left")
                .select("_row", "pos", pl.struct(pl.col("messages").struct.field("role").alias("role"),
                                                 pl.col("text").alias("content")).alias("m"))
                .sort("_row", "pos").group_by("_row", maintain_order=True).agg(pl.col("m").alias("messages")))
        df = _replace_lists(df, orig, "messages")
    return df


def _replace_lists(df: pl.DataFrame, new: pl.DataFrame, column: str) -> pl.DataFrame:
    dtype = df.schema[column]
    new = new.with_columns(pl.col(column).cast(dtype), pl.col("_row").cast(df.schema["_row"]))
    return df.update(new, on="_row", how="left")


def row_text(cells: pl.DataFrame) -> pl.DataFrame:
    """``_row, text``: each row's whole text (its cells joined by newlines, in field order)."""
    return cells.group_by("_row", maintain_order=True).agg(pl.col("text").str.join("\n")).sort("_row")
