"""Token counts, tokenizer training and token/cost estimates (SentencePiece).

* :func:`train` trains a SentencePiece model on every text field of every kind of a dataset
  (SFT instruction/input/output, every chat message, RM prompt and completions, PPO prompt), with
  defaults that suit Malay and other Latin-script text: unigram, character coverage 0.9995, byte
  fallback (no unknown tokens, ever), digits split, NFKC normalization.
* :func:`token_counts` gives each row's tokens per field and in total; :func:`stats` summarizes
  them (min / median / p95 / max) and lists the rows over a limit.
* :func:`estimate_tokens` is what LLM stages call before they spend money: token totals of a
  dataset with a model, or a characters/4 heuristic (one token per Hangul/CJK character) without
  one; :func:`cost` turns an estimate into money.

Fields, per kind (``tokens_<field>`` columns of :func:`token_counts`):

* ``sft``:  ``instruction``, ``input``, ``output``
* ``chat``: ``system``, ``user``, ``assistant`` (all messages of that role in the conversation)
* ``rm``:   ``prompt``, ``completions`` (all completions together)
* ``ppo``:  ``prompt``
"""

from __future__ import annotations

import io as _io
import math
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import polars as pl

from curate import io, schemas
from curate.errors import UserError

# Fields whose tokens are counted, per kind; each expression gives a List(String) per row.
FIELDS: dict[str, tuple[str, ...]] = {
    "sft": ("instruction", "input", "output"),
    "chat": ("system", "user", "assistant"),
    "rm": ("prompt", "completions"),
    "ppo": ("prompt",),
}

# What an LLM stage reads as its prompt side vs. what it writes; used only for estimates.
WIDE_CHARS = r"[\p{Hangul}\p{Han}\p{Hiragana}\p{Katakana}]"

BATCH = 50_000
DEFAULT_MAX_SENTENCE = 4192  # bytes; SentencePiece skips longer lines, so we split long ones


def field_exprs(kind: str) -> dict[str, pl.Expr]:
    """``{field: expr}``: each expression evaluates to a ``List(String)`` of that field's texts."""
    schemas.check_kind(kind)
    if kind == "chat":
        out = {}
        for role in FIELDS["chat"]:
            out[role] = pl.col("messages").list.eval(
                pl.element().filter(pl.element().struct.field("role") == role).struct.field("content"))
        return out
    if kind == "rm":
        return {"prompt": pl.concat_list(pl.col("prompt")), "completions": pl.col("completions")}
    return {f: pl.concat_list(pl.col(f)) for f in FIELDS[kind]}


def text_exprs(kind: str) -> list[pl.Expr]:
    """Every text of a row, as ``List(String)`` expressions (used for training and char counts)."""
    if kind == "chat":
        return [pl.col("messages").list.eval(pl.element().struct.field("content"))]
    return list(field_exprs(kind).values())


# ----------------------------------------------------------------------------- models

class Counter:
    """Counts tokens of many texts at once: with a SentencePiece model, or by the heuristic."""

    method = "chars/4"

    def count(self, texts: pl.Series) -> pl.Series:
        """Token count of each text (a String series without nulls) as an Int64 series."""
        wide = texts.str.count_matches(WIDE_CHARS)
        narrow = texts.str.len_chars().cast(pl.Int64) - wide
        return ((narrow.cast(pl.Float64) / 4).ceil().cast(pl.Int64) + wide).alias("tokens")


class SentencePieceCounter(Counter):
    def __init__(self, processor, name: str):
        self.sp = processor
        self.method = f"sentencepiece:{name}"

    def count(self, texts: pl.Series) -> pl.Series:
        ids = self.sp.encode(texts.to_list())
        return pl.Series("tokens", [len(x) for x in ids], dtype=pl.Int64)


def load_model(model: str | os.PathLike | Any | None) -> Counter:
    """A :class:`Counter` from a model path, a loaded ``SentencePieceProcessor``, or None (heuristic)."""
    if model is None:
        return Counter()
    if isinstance(model, Counter):
        return model
    import sentencepiece as spm

    if isinstance(model, spm.SentencePieceProcessor):
        return SentencePieceCounter(model, "loaded")
    path = Path(model)
    if not path.is_file():
        raise UserError(f"{path}: no such SentencePiece model. Train one with "
                        f"`curate tokens train DATASET --vocab-size 16000 -o {path}`.")
    sp = spm.SentencePieceProcessor()
    try:
        sp.Load(str(path))
    except (OSError, RuntimeError) as exc:
        raise UserError(f"{path}: not a SentencePiece model ({exc})") from None
    return SentencePieceCounter(sp, path.name)


# ----------------------------------------------------------------------------- counting

def _count_lists(df: pl.DataFrame, expr: pl.Expr, counter: Counter) -> pl.Series:
    """Sum of token counts of a ``List(String)`` expression, per row of ``df`` (0 for no text)."""
    long = (df.select(expr.alias("t")).with_row_index("_r").explode("t")
            .filter(pl.col("t").is_not_null() & (pl.col("t") != "")))
    if long.height == 0:
        return pl.Series(values=[0] * df.height, dtype=pl.Int64)
    long = long.with_columns(counter.count(long["t"]).alias("n"))
    per_row = long.group_by("_r").agg(pl.col("n").sum())
    full = pl.DataFrame({"_r": pl.arange(0, df.height, eager=True).cast(pl.UInt32)})
    return full.join(per_row, on="_r", how="left")["n"].fill_null(0).cast(pl.Int64)


def token_counts(df: pl.DataFrame | pl.LazyFrame, model: Any = None, kind: str | None = None) -> pl.DataFrame:
    """Per-row tokens: ``id`` + ``tokens_<field>`` per field of the kind + ``tokens`` (row total).

    ``model`` is a SentencePiece model path, a loaded processor, a :class:`Counter`, or None
    (characters/4 heuristic). Rows stay in input order.
    """
    kind = kind or schemas.kind_of(df)
    counter = load_model(model)
    if isinstance(df, pl.LazyFrame):
        df = df.collect()
    parts = []
    for start in range(0, max(df.height, 1), BATCH):
        chunk = df.slice(start, BATCH)
        cols = {"id": chunk["id"]} if "id" in chunk.columns else {}
        for field, expr in field_exprs(kind).items():
            cols[f"tokens_{field}"] = _count_lists(chunk, expr, counter)
        part = pl.DataFrame(cols)
        fields = [c for c in part.columns if c.startswith("tokens_")]
        parts.append(part.with_columns(pl.sum_horizontal(fields).cast(pl.Int64).alias("tokens")))
    return pl.concat(parts) if parts else pl.DataFrame()


def _summary(s: pl.Series) -> dict[str, Any]:
    if s.len() == 0:
        return {"count": 0, "sum": 0, "min": None, "median": None, "p95": None, "max": None, "mean": None}
    return {"count": s.len(), "sum": int(s.sum()), "min": int(s.min()), "median": float(s.median()),
            "p95": float(s.quantile(0.95, interpolation="nearest")), "max": int(s.max()),
            "mean": round(float(s.mean()), 2)}


def stats(frames: dict[str, pl.LazyFrame | pl.DataFrame], model: Any = None, max_tokens: int | None = None,
          top: int = 20) -> dict[str, Any]:
    """Token statistics of a dataset: per kind, per field and per row; rows over ``max_tokens``.

    Per field, only rows that have text in the field count (an empty SFT ``input`` is not a
    0-token sample). ``over_limit`` lists up to ``top`` of the longest rows over the limit.
    """
    counter = load_model(model)
    out: dict[str, Any] = {"method": counter.method, "max_tokens": max_tokens, "kinds": {}}
    total_over = 0
    for kind, frame in frames.items():
        df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
        counts = token_counts(df, counter, kind)
        fields = {}
        for field in FIELDS[kind]:
            col = counts[f"tokens_{field}"]
            fields[field] = _summary(col.filter(col > 0))
        entry: dict[str, Any] = {"rows": df.height, "fields": fields, "row": _summary(counts["tokens"])}
        if max_tokens is not None:
            over = (df.select("id", "source", "line").with_columns(counts["tokens"])
                    .filter(pl.col("tokens") > max_tokens).sort("tokens", descending=True))
            entry["over_limit"] = over.height
            entry["over_limit_rows"] = [
                {**r, "where": f"{r['source']}:{r['line']}"} for r in over.head(top).to_dicts()]
            total_over += over.height
        out["kinds"][kind] = entry
    out["rows"] = sum(k["rows"] for k in out["kinds"].values())
    out["tokens"] = sum(k["row"]["sum"] for k in out["kinds"].values())
    if max_tokens is not None:
        out["over_limit"] = total_over
    return out


# ----------------------------------------------------------------------------- training

def iter_texts(frames: dict[str, pl.LazyFrame | pl.DataFrame], batch_size: int = BATCH) -> Iterator[str]:
    """Every text of every row of every kind, one at a time, streamed batch by batch."""
    for kind, frame in frames.items():
        exprs = text_exprs(kind)
        lf = frame.lazy().select(pl.concat_list(exprs).alias("t")).explode("t").filter(
            pl.col("t").is_not_null() & (pl.col("t").str.strip_chars() != ""))
        for batch in lf.collect_batches(chunk_size=batch_size):
            yield from batch["t"]


def training_lines(texts: Iterable[str], max_bytes: int = DEFAULT_MAX_SENTENCE) -> Iterator[str]:
    """Texts as the lines SentencePiece trains on: one per non-empty line, long lines cut at spaces."""
    for text in texts:
        for line in text.splitlines():
            line = line.strip()
            if not line:
                continue
            while len(line.encode("utf-8")) > max_bytes:
                cut = line[: max_bytes // 4]  # at most 4 bytes per char: always fits
                space = cut.rfind(" ")
                cut = cut[:space] if space > 0 else cut
                yield cut
                line = line[len(cut):].lstrip()
            if line:
                yield line


def train(frames: dict[str, pl.LazyFrame | pl.DataFrame], out_model: str | os.PathLike, vocab_size: int = 16000,
          *, model_type: str = "unigram", character_coverage: float = 0.9995,
          input_sentence_size: int = 2_000_000, byte_fallback: bool = True, split_digits: bool = True,
          normalization: str = "nmt_nfkc", num_threads: int = 2, user_symbols: Iterable[str] = (),
          verbose: bool = False, on_line: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train a SentencePiece model on every text of ``frames``; write it atomically to ``out_model``.

    Lines are streamed to the trainer (``sentence_iterator``), which keeps a random sample of at
    most ``input_sentence_size`` of them. The vocabulary size is a soft limit: on a small corpus
    the model may come out smaller (then the text is read twice). Returns a summary (lines, vocab
    size, settings).
    """
    import sentencepiece as spm

    out_model = Path(out_model)
    seen = {"lines": 0, "chars": 0}

    def lines() -> Iterator[str]:
        seen["lines"] = seen["chars"] = 0
        for line in training_lines(iter_texts(frames)):
            seen["lines"] += 1
            seen["chars"] += len(line)
            if on_line is not None and seen["lines"] % 10_000 == 0:
                on_line(10_000)
            yield line

    settings = dict(model_type=model_type, vocab_size=vocab_size, character_coverage=character_coverage,
                    byte_fallback=byte_fallback, split_digits=split_digits,
                    normalization_rule_name=normalization, input_sentence_size=input_sentence_size,
                    shuffle_input_sentence=True, hard_vocab_limit=True, num_threads=num_threads,
                    max_sentence_length=DEFAULT_MAX_SENTENCE, unk_surface=" \u2047 ")
    symbols = [s for s in user_symbols if s]
    if symbols:
        settings["user_defined_symbols"] = symbols
    buf = _io.BytesIO()
    try:
        try:
            spm.SentencePieceTrainer.Train(sentence_iterator=lines(), model_writer=buf,
                                           minloglevel=0 if verbose else 2, **settings)
        except RuntimeError as exc:
            if "Vocabulary size too high" not in str(exc):
                raise
            # a small corpus: the vocabulary size becomes a soft limit (the text is read again)
            settings["hard_vocab_limit"] = False
            buf = _io.BytesIO()
            spm.SentencePieceTrainer.Train(sentence_iterator=lines(), model_writer=buf,
                                           minloglevel=0 if verbose else 2, **settings)
    except RuntimeError as exc:
        if seen["lines"] == 0:
            raise UserError("no text to train on: the dataset has no non-empty text fields") from None
        raise UserError(_train_error(str(exc), seen["lines"], vocab_size, character_coverage)) from None
    data = buf.getvalue()
    if not data:
        raise UserError("SentencePiece returned no model (no text to train on?)")
    io.write_bytes(out_model, data)
    sp = spm.SentencePieceProcessor()
    sp.LoadFromSerializedProto(data)
    return {"model": out_model.as_posix(), "lines": seen["lines"], "chars": seen["chars"],
            "vocab_size": sp.GetPieceSize(), "requested_vocab_size": vocab_size,
            **{k: v for k, v in settings.items() if k not in ("vocab_size", "unk_surface")}}


def _train_error(msg: str, lines: int, vocab_size: int, coverage: float) -> str:
    """SentencePiece's failure as advice a user can act on."""
    m = re.search(r"smaller than required_chars\. (\d+) vs (\d+)", msg)
    if m:
        return (f"--vocab-size {vocab_size} is too small: covering {coverage} of the characters in this text "
                f"takes {m.group(2)} pieces (many distinct characters, e.g. Hangul or CJK). Use --vocab-size "
                f"{int(m.group(2)) + 300} or more, or a lower --character-coverage (e.g. 0.995).")
    m = re.search(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)", msg)
    if m:
        return f"--vocab-size {vocab_size} is too large for {lines:,} lines of text; use {m.group(2)} or less."
    last = msg.strip().splitlines()[-1] if msg.strip() else "unknown error"
    return f"SentencePiece could not train on {lines:,} lines: {last}"


# ----------------------------------------------------------------------------- estimates

def estimate_tokens(frames: dict[str, pl.LazyFrame | pl.DataFrame], model_path: Any = None, *,
                    prompt_overhead: int = 0, output_ratio: float = 1.0) -> dict[str, Any]:
    """Tokens an LLM stage will send and receive for ``frames``, before it pays for them.

    ``input_tokens`` = every text token + ``prompt_overhead`` per row (system prompt, instructions);
    ``output_tokens`` = ``output_ratio`` x text tokens (1.0 for a translation or a rewrite, small for
    a judge). Without a model, tokens are estimated as characters/4, one per Hangul/CJK character;
    real tokenizers of the paid model differ, so treat the result as an estimate (+-25%).
    """
    counter = load_model(model_path)
    by_kind = {}
    for kind, frame in frames.items():
        df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
        counts = token_counts(df, counter, kind)
        by_kind[kind] = {"rows": df.height, "tokens": int(counts["tokens"].sum() or 0),
                         "by_field": {f: int(counts[f"tokens_{f}"].sum() or 0) for f in FIELDS[kind]}}
    rows = sum(k["rows"] for k in by_kind.values())
    text = sum(k["tokens"] for k in by_kind.values())
    return {"method": counter.method, "rows": rows, "text_tokens": text,
            "input_tokens": text + prompt_overhead * rows, "output_tokens": int(math.ceil(text * output_ratio)),
            "prompt_overhead": prompt_overhead, "output_ratio": output_ratio, "by_kind": by_kind}


def cost(estimate: dict[str, Any], price_in: float, price_out: float) -> float:
    """Money for an estimate, with prices per million input / output tokens."""
    return estimate["input_tokens"] / 1e6 * price_in + estimate["output_tokens"] / 1e6 * price_out
