"""Benchmark: token counting, tokenizer training and the HTML report, each next to its floor.

Builds an SFT corpus of N rows from the real Malay fixtures (malay_alpaca, malay_chatdoctor,
malay_seed_tasks, malay_gpt4all, malay_kochatgpt_sft: the rows repeated, with the row number
appended so rows differ), then times in this one process:

* ``sp.encode`` of every field, as one Python list per field: the floor for exact counts;
* ``tokens.token_counts`` (per-field counts through polars) with the same model;
* ``tokens.token_counts`` without a model (chars/4 heuristic, pure polars);
* ``tokens.train`` (unigram, vocab 8000, byte fallback, 2 threads) on the corpus;
* ``report_html.write_report`` of the corpus written as a dataset, with and without the model;
  the floor is reading the parquet back with polars.

    .venv/bin/python bench/tokens.py               # 200k rows
    .venv/bin/python bench/tokens.py --rows 50000

Note the machine's load when you quote the figures (2 cores shared).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curate import io, report_html, tokens  # noqa: E402
from curate.ingest import ingest  # noqa: E402

FIXTURES = ROOT / "tests" / "data" / "fixtures"
SOURCES = ("malay_alpaca.json", "malay_chatdoctor.jsonl", "malay_seed_tasks.jsonl", "malay_gpt4all.jsonl",
           "malay_kochatgpt_sft.jsonl")


def corpus(rows: int) -> pl.DataFrame:
    base = ingest([FIXTURES / s for s in SOURCES], detect_lang=False).frames["sft"]
    reps = -(-rows // base.height)
    df = pl.concat([base] * reps).head(rows).with_row_index("_n")
    return df.with_columns(
        (pl.col("output").fill_null("") + pl.lit(" #") + pl.col("_n").cast(pl.String)).alias("output"),
        pl.lit("ms").alias("lang"),
        (pl.col("id") + pl.col("_n").cast(pl.String)).alias("id"),
    ).drop("_n")


def timed(label: str, fn, rows: int, floor: float | None = None):
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    vs = f"  ({dt / floor:.2f}x the floor)" if floor else ""
    print(f"{label:<48} {dt:8.2f} s  {rows / dt:>12,.0f} rows/s{vs}", flush=True)
    return out, dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--vocab", type=int, default=8000)
    args = ap.parse_args()
    print(f"load average: {os.getloadavg()[0]:.2f} (2 cores)")
    df = corpus(args.rows)
    n = df.height
    chars = df.select(pl.sum_horizontal(pl.col(c).fill_null("").str.len_chars() for c in
                                        ("instruction", "input", "output")).sum()).item()
    print(f"corpus: {n:,} sft rows, {chars / 1e6:,.1f}M characters")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = tmp / "ms.model"
        summary, _ = timed(f"train (unigram, vocab {args.vocab}, 2 threads)",
                           lambda: tokens.train({"sft": df}, model, args.vocab), n)
        print(f"  -> {summary['lines']:,} lines, vocab {summary['vocab_size']:,}")
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=str(model))

        def floor():
            total = 0
            for c in ("instruction", "input", "output"):
                texts = [t for t in df[c].to_list() if t]
                total += sum(len(x) for x in sp.encode(texts))
            return total

        want, t_floor = timed("floor: sp.encode of every field (lists)", floor, n)
        got, _ = timed("tokens.token_counts (model)", lambda: tokens.token_counts(df, sp), n, t_floor)
        assert int(got["tokens"].sum()) == want, (int(got["tokens"].sum()), want)
        heur, _ = timed("tokens.token_counts (chars/4, no model)", lambda: tokens.token_counts(df), n, t_floor)
        print(f"  tokens: model {want:,}, heuristic {int(heur['tokens'].sum()):,} "
              f"({int(heur['tokens'].sum()) / want:.2f}x)")
        ds = tmp / "ds"
        with io.DatasetWriter(ds, stage="bench") as w:
            w.write_frame("sft", df)
        _, t_read = timed("floor: polars reads the dataset back", lambda: pl.read_parquet(ds / "sft.parquet"), n)
        timed("report_html.write_report (no model)", lambda: report_html.write_report(ds, tmp / "r.html"), n, t_read)
        timed("report_html.write_report (with model)",
              lambda: report_html.write_report(ds, tmp / "rt.html", model=model), n, t_read)
        print(f"  report size: {(tmp / 'rt.html').stat().st_size / 1024:,.0f} KiB")
    print(f"load average: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
