from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import click
import orjson
import polars as pl
from rich.table import Table

from curate import langid
from curate.progress import console

DATASET_SUFFIXES = (".parquet", ".json", ".jsonl", ".ndjson", ".csv", ".tsv")


def _rows_of(path: Path, field: str | None) -> tuple[list[int], list[str]]:
    """(line or row number, text) pairs of a dataset, a raw source file or a plain text file."""
    from curate import rowlang
    from curate.info import frames_for

    if path.is_dir() or path.suffix.lower() in DATASET_SUFFIXES:
        lines, texts = [], []
        for kind, frame in frames_for(path).items():
            df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
            expr = pl.col(field) if field else rowlang.text_expr(kind)
            if field and field not in df.columns:
                raise click.UsageError(f"{path}: {kind} rows have no field {field!r} (columns: {', '.join(df.columns)})")
            lines += df["line"].to_list()
            texts += df.select(expr.cast(pl.String).fill_null("").alias("t"))["t"].to_list()
        return lines, texts
    return _plain_lines(_read_text(path))


def _read_text(path: Path) -> str:
    """A plain text file, decoded strictly (binary refused, BOMs honoured; never a silent U+FFFD)."""
    from curate.errors import UserError
    from curate.ingest.encoding import check_text_head, decode_line

    data = path.read_bytes()
    if not data.strip():
        raise UserError(f"{path}: the file is empty; nothing to read.")
    enc = check_text_head(path, data[:65536])
    if enc != "utf-8":
        return data.decode(enc).lstrip("\ufeff")
    text, note = decode_line(data.removeprefix(b"\xef\xbb\xbf"))
    if text is None:
        raise UserError(f"{path}: {note}; convert it to UTF-8.")
    return text


def _plain_lines(text: str) -> tuple[list[int], list[str]]:
    texts = text.splitlines()
    return list(range(1, len(texts) + 1)), texts


@click.command()
@click.argument("path", metavar="FILE", type=click.Path(exists=True, allow_dash=True, path_type=Path))
@click.option("--field", help="For datasets: the column to judge (default: all text of the row).")
@click.option("--json", "as_json", is_flag=True, help="JSON lines {line, lang, confidence, text} instead of TSV.")
@click.option("--summary-only", is_flag=True, help="Print only the summary.")
def lang(path, field, as_json, summary_only):
    """The language of each line or row: ms, id, en, ko, other or und, with a confidence.

    Tells Malay (ms) from Indonesian (id), which langdetect cannot. FILE is plain text with
    one sentence per line (or - for stdin), a curate dataset, or a raw source file. Output on
    stdout: one line per input line/row (TSV: line, lang, confidence, text), then a summary on
    stderr.

    \b
    Example:
      curate lang sentences.txt
      curate lang datasets/normalized --field output --json > langs.jsonl
      echo "Saya tidak tahu kerana dia tiada wang." | curate lang -
    """
    if str(path) == "-":
        lines, texts = _plain_lines(sys.stdin.read())
    else:
        lines, texts = _rows_of(path, field)
    res = langid.detect_column(texts)  # the undecided texts go to lingua in one parallel batch
    results = list(zip(res["lang"].to_list(), res["lang_conf"].to_list()))
    if not summary_only:
        out = sys.stdout
        if not as_json:
            out.write("line\tlang\tconfidence\ttext\n")
        for line, text, (code, conf) in zip(lines, texts, results):
            if as_json:
                out.write(orjson.dumps({"line": line, "lang": code, "confidence": conf, "text": text}).decode() + "\n")
            else:
                snippet = " ".join(text.split())[:120]
                out.write(f"{line}\t{code}\t{conf:.3f}\t{snippet}\n")
        out.flush()
    counts = Counter(code for code, _ in results)
    total = len(results)
    unit = "row" if path.is_dir() or path.suffix.lower() in DATASET_SUFFIXES else "line"
    table = Table(title=f"languages of {total:,} {unit}{'' if total == 1 else 's'}")
    for col in ("lang", "count", "share", "mean confidence"):
        table.add_column(col, justify="left" if col == "lang" else "right")
    for code in langid.LANGS:
        if counts.get(code):
            confs = [c for k, c in results if k == code]
            table.add_row(code, f"{counts[code]:,}", f"{counts[code] / total:.1%}", f"{sum(confs) / len(confs):.2f}")
    console.print(table)
