"""Parquet and CSV/TSV files as inputs: curate's own canonical files, or exports (e.g. from the
Hugging Face Hub) whose columns are those of a known source format (Alpaca, ShareGPT, messages, ...).

An export's rows are turned into the same records the JSON readers yield (one per row, ``line``
= the 1-based row number), so they go through the same format conversion and quarantine.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import orjson
import polars as pl

from curate import schemas
from curate.io.files import DatasetError

if TYPE_CHECKING:  # the ingest package (its compiled line scan) is imported only by a reader of raw rows
    from curate.ingest.readers import Item

BLOCK = 10_000
TABLE_SUFFIXES = {".parquet": "parquet", ".csv": "csv", ".tsv": "tsv"}
# columns a CSV holds as JSON text (lists of turns, completions, ranks)
_JSON_COLUMNS = {"messages", "conversations", "completions", "ranks", "instances", "conversation"}


def check_parquet(path: Path, name: str) -> pl.Schema:
    """The schema of a Parquet file, or a one-line refusal for a truncated or corrupt one."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(4)
            fh.seek(max(0, size - 4))
            tail = fh.read(4)
    except OSError as exc:
        raise DatasetError(f"{name}: cannot read ({exc.strerror}).") from None
    if head != b"PAR1" or tail != b"PAR1" or size < 12:
        what = "truncated (no Parquet footer)" if head == b"PAR1" else "not a Parquet file"
        raise DatasetError(f"{name}: {what}; re-create or re-download it.")
    try:
        return pl.read_parquet_schema(path)
    except Exception as exc:  # polars/arrow raise several types for a corrupt footer
        raise DatasetError(f"{name}: corrupt Parquet file ({str(exc).splitlines()[0][:200]}); "
                           "re-create or re-download it.") from None


def canonical_kind(names: list[str] | set[str]) -> str | None:
    """The kind when the columns are curate's canonical ones: ``id``, ``kind`` (curate writes both
    on every row) and a kind's content columns. Missing common columns are filled with nulls by
    :func:`curate.schemas.conform`. A source file that merely has an ``id`` beside its content (an
    Alpaca export with ids, say) is raw: it is ingested, so its rows get content ids, kind, lang and
    provenance, and its own id is kept in meta."""
    names = set(names)
    if not {"id", "kind"} <= names:
        return None
    for kind in ("chat", "rm", "sft", "ppo"):
        if set(schemas.CONTENT[kind]) <= names:
            return kind
    return None


def is_corrupt_parquet_error(exc: BaseException) -> bool:
    """An error polars or pyarrow raise while decoding a damaged Parquet file (a data page that
    does not decompress or decode): found only when the data is read, long after the file was opened."""
    low = str(exc).lower()
    if "io error" in low or "os error" in low:  # the disk failed the read or write (full, file too large)
        return False
    return ("parquet" in low and ("out of specification" in low or "corrupt" in low)) \
        or "decompression failed" in low or "deserialize thrift" in low


def is_parquet(path: Path) -> bool:
    """Whether ``path`` starts with Parquet's magic bytes (False if it cannot be read)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"PAR1"
    except OSError:
        return False


def find_corrupt_parquet(paths: Iterable[str | Path]) -> Path | None:
    """The first Parquet file among ``paths`` (files, or directories searched recursively) whose
    data does not decode, reading one row group at a time; None if all decode. Used after a
    decoding error, to name the file."""
    import pyarrow.parquet as pq

    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():  # hidden directories below it are skipped, as a directory walk skips them
            files += sorted(f for f in p.rglob("*.parquet")
                            if not any(x.startswith(".") for x in f.relative_to(p).parts))
        elif p.is_file():
            files.append(p)
    for f in files:
        if not is_parquet(f):
            continue
        try:
            pf = pq.ParquetFile(f)
            for i in range(pf.num_row_groups):
                pf.read_row_group(i)
        except Exception:  # noqa: BLE001 - any failure to decode is what is looked for
            return f
    return None


def read_table(path: Path, name: str, fmt: str) -> pl.LazyFrame:
    """A table file as a LazyFrame of its raw columns (CSV/TSV: every column as text)."""
    if fmt == "parquet":
        check_parquet(path, name)
        return pl.scan_parquet(path)
    sep = "\t" if fmt == "tsv" else ","
    quotes = ['"', None] if fmt == "tsv" else ['"']  # TSV: quoted as pandas/polars write it, else raw
    for i, quote in enumerate(quotes):
        try:
            return pl.read_csv(path, separator=sep, infer_schema=False, encoding="utf8", quote_char=quote).lazy()
        except Exception as exc:  # polars raises ComputeError/NoDataError/... for a broken CSV
            if i == len(quotes) - 1:
                where = _csv_problem(path, sep, quotes[0])
                raise DatasetError(f"{name}:{where}; fix that row and re-run (a field holding the separator or a "
                                   "newline is quoted, a quote inside it doubled)."
                                   if where else f"{name}: not a readable {fmt.upper()} file "
                                   f"({str(exc).splitlines()[0][:200]}).") from None
    raise AssertionError("unreachable")


def _csv_problem(path: Path, sep: str, quote: str) -> str | None:
    """``line: what`` of the first row that makes a CSV unreadable, found with Python's csv module
    (polars only says "found more fields than defined in 'Schema'", without the line): a row of
    more fields than the header, or a quote that breaks the row. None when it finds none."""
    import csv

    start = 1
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = csv.reader(fh, delimiter=sep, quotechar=quote, strict=True)
            header = next(rows, None)
            if header is None:
                return None
            start = rows.line_num  # the last line of the previous row: this row starts on the next
            for row in rows:
                if len(row) > len(header):
                    spans = f" (lines {start + 1}-{rows.line_num})" if rows.line_num > start + 1 else ""
                    return f"{start + 1}: a row of {len(row)} fields{spans} under a header of {len(header)}"
                start = rows.line_num
    except csv.Error as exc:
        return f"{start + 1}: {exc} (a quote never closed, or text after a closing quote?)"
    except (OSError, UnicodeDecodeError):
        return None
    return None


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if value is None:
            continue
        if key in _JSON_COLUMNS and isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError:
                pass  # the format's convert rejects it with a reason
        out[key] = value
    return out


def table_items(lf: pl.LazyFrame) -> Iterator[Item]:
    """One record per row (null cells left out, JSON text in list columns parsed)."""
    from curate.ingest.readers import Item

    n = lf.select(pl.len()).collect().item()
    for off in range(0, n, BLOCK):
        block = lf.slice(off, BLOCK).collect()
        for i, row in enumerate(block.iter_rows(named=True)):
            yield Item(off + i + 1, _clean(row))


def sample(lf: pl.LazyFrame, n: int = 64) -> list[dict[str, Any]]:
    return [_clean(row) for row in lf.head(n).collect().iter_rows(named=True)]
