"""Export canonical frames in the formats trainers read.

* SFT and chat: ``messages`` (TRL conversational; also what OpenAI chat fine-tuning reads),
  ``prompt_completion`` (TRL standard prompt/completion), ``alpaca`` (a JSON array).
* RM: ``pairs`` (TRL DPO/reward ``prompt/chosen/rejected``: every ordered pair a ranking implies,
  ties skipped) and ``ranked`` (completions best first).
* PPO: ``prompt``.

Splits are decided by the row id (a content hash): ``test`` when the id's first 32 bits, read as
a fraction, fall below ``test_size``. The same rows land in the same split on every re-export.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from curate import io
from curate.card import write_card
from curate.errors import UserError

FORMATS: dict[str, tuple[str, ...]] = {
    "sft": ("messages", "prompt_completion", "alpaca"),
    "chat": ("messages", "prompt_completion", "alpaca"),
    "rm": ("pairs", "ranked"),
    "ppo": ("prompt",),
}
ALL_FORMATS = sorted({f for fs in FORMATS.values() for f in fs})


def split_expr(test_size: float) -> pl.Expr:
    """``"test"`` or ``"train"`` from the id hash, stable across machines and runs."""
    frac = pl.col("id").str.slice(0, 8).str.to_integer(base=16).cast(pl.Float64) / float(1 << 32)
    return pl.when(frac < test_size).then(pl.lit("test")).otherwise(pl.lit("train")).alias("split")


def sft_prompt_expr() -> pl.Expr:
    """Instruction and input joined the usual way (a blank line between them when input is set)."""
    has_input = pl.col("input").fill_null("").str.strip_chars() != ""
    return (pl.when(has_input)
            .then(pl.concat_str([pl.col("instruction"), pl.lit("\n\n"), pl.col("input")]))
            .otherwise(pl.col("instruction")))


def _msg(role: str, content: pl.Expr) -> pl.Expr:
    return pl.struct(pl.lit(role).alias("role"), content.alias("content"))


def sft_records(df: pl.DataFrame, fmt: str) -> pl.DataFrame:
    if fmt == "messages":
        return df.select(pl.concat_list([_msg("user", sft_prompt_expr()), _msg("assistant", pl.col("output"))])
                         .alias("messages"))
    if fmt == "prompt_completion":
        return df.select(sft_prompt_expr().alias("prompt"), pl.col("output").alias("completion"))
    if fmt == "alpaca":
        return df.select("instruction", pl.col("input").fill_null(""), "output")
    raise UserError(f"SFT rows cannot be exported as {fmt!r}; choose from {', '.join(FORMATS['sft'])}")


def chat_records(df: pl.DataFrame, fmt: str) -> tuple[pl.DataFrame, int]:
    """Chats as records; returns (records, rows skipped because the format can't hold them)."""
    if fmt == "messages":
        return df.select("messages"), 0
    # single-answer formats: the last assistant answer, everything before it as the prompt
    rows, skipped = [], 0
    for messages in df["messages"].to_list():
        last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
        if last is None or last == 0:
            skipped += 1
            continue
        history = messages[:last]
        if fmt == "prompt_completion":
            rows.append({"prompt": history, "completion": [messages[last]]})
        elif len(history) == 1 and history[0]["role"] == "user":
            rows.append({"instruction": history[0]["content"], "input": "", "output": messages[last]["content"]})
        else:
            skipped += 1  # alpaca has no place for several turns
    return pl.DataFrame(rows) if rows else pl.DataFrame(), skipped


def rm_pairs(df: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Every (chosen, rejected) pair a ranking implies; returns (pairs, unranked rows skipped)."""
    ranked = df.filter(pl.col("ranks").is_not_null() & (pl.col("ranks").list.len() >= 2))
    skipped = df.height - ranked.height
    if ranked.height == 0:
        return pl.DataFrame(schema={"id": pl.String, "prompt": pl.String, "chosen": pl.String,
                                    "rejected": pl.String}), skipped
    long = (ranked.select("id", "prompt", "completions", "ranks")
            .with_columns(pl.int_ranges(pl.col("completions").list.len()).alias("i"))
            .explode("completions", "ranks", "i"))
    pairs = (long.join(long, on="id", suffix="_b")
             .filter(pl.col("ranks") < pl.col("ranks_b"))
             .sort("id", "ranks", "ranks_b", "i", "i_b")
             .select("id", "prompt", pl.col("completions").alias("chosen"), pl.col("completions_b").alias("rejected")))
    return pairs, skipped


def rm_ranked(df: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    ranked = df.filter(pl.col("ranks").is_not_null())
    out = ranked.select(
        "prompt",
        pl.col("completions").list.gather(pl.col("ranks").list.eval(pl.element().arg_sort())).alias("completions"),
        pl.col("ranks").list.sort().alias("ranks"),
    )
    return out, df.height - ranked.height


def records_for(kind: str, df: pl.DataFrame, fmt: str) -> tuple[pl.DataFrame, int]:
    """Exported records of one format for one kind, and how many rows that format could not take."""
    if fmt not in FORMATS[kind]:
        raise UserError(f"{kind} rows cannot be exported as {fmt!r}; choose from {', '.join(FORMATS[kind])}")
    if kind == "sft":
        return sft_records(df, fmt), 0
    if kind == "chat":
        return chat_records(df, fmt)
    if kind == "rm":
        if fmt == "pairs":
            pairs, skipped = rm_pairs(df)
            return pairs.drop("id"), skipped
        return rm_ranked(df)
    return df.select("prompt"), 0


def export(frames: dict[str, pl.DataFrame | pl.LazyFrame], out_dir: str | Path, formats: list[str] | None = None,
           test_size: float = 0.0, *, inputs: list[str | Path] = (), input_manifests: list[str] = (),
           quarantine: list[dict] = ()) -> dict[str, Any]:
    """Write every requested format of every kind, split into train/test, and commit ``out_dir`` as
    a whole (:class:`curate.io.DatasetWriter`). The listing of the files (returned, and written as
    ``export.json``) is also in ``manifest.json`` under ``"export"``. ``quarantine``: records the
    input could not turn into rows (raw input), written as ``quarantine.jsonl``."""
    if not 0.0 <= test_size < 1.0:
        raise UserError(f"--test-size must be in [0, 1), got {test_size}")
    out_dir = Path(out_dir)
    manifest: dict[str, Any] = {"test_size": test_size, "files": []}
    writer = io.DatasetWriter(out_dir, stage="export", inputs=inputs, input_manifests=input_manifests,
                              params={"formats": formats or "all", "test_size": test_size})
    with writer as w:
        for kind, frame in frames.items():
            df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
            wanted = [f for f in (formats or FORMATS[kind]) if f in FORMATS[kind]]
            if formats and not wanted:
                manifest.setdefault("not_exported", []).append(
                    {"kind": kind, "rows": df.height, "reason": f"none of {formats} applies to {kind}"})
                continue
            df = df.with_columns(split_expr(test_size))
            for fmt in wanted:
                splits = ("train", "test") if test_size > 0 else ("train",)
                for split in splits:
                    part = df.filter(pl.col("split") == split)
                    records, skipped = records_for(kind, part, fmt)
                    ext = "json" if fmt == "alpaca" else "jsonl"
                    name = f"{kind}_{fmt}_{split}.{ext}"
                    if fmt == "alpaca":
                        w.write_json(name, records.to_dicts())
                    else:
                        records.write_ndjson(w.file(name))
                    manifest["files"].append({"kind": kind, "format": fmt, "split": split,
                                              "path": (out_dir / name).as_posix(), "rows_in": part.height,
                                              "records": records.height, "skipped": skipped})
        if quarantine:
            manifest["quarantined"] = w.write_jsonl("quarantine.jsonl", quarantine)
        w.write_json("export.json", manifest)
        w.extra["export"] = manifest
        write_card(frames, w.path, manifest)
    return manifest
