"""Ingest: source files in any known format -> canonical frames + quarantine + a summary.

The work is streamed: records are read one at a time and turned into polars frames in batches, so
a file of several GB needs memory for one batch, not for the file.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import orjson
import polars as pl

from curate import schemas
from curate.ingest.base import Record, Reject, SourceFormat, data_objects, precheck, unwrap_nested
from curate.ingest.formats import BY_NAME, FORMATS
from curate.ingest.readers import (iter_json_array, iter_jsonl, iter_jsonl_blocks, parse_line, peek_objects, read_head,
                                   sniff_container)
from curate.io import DatasetError, atomic_path, write_json
from curate.rowlang import add_lang

BATCH = 50_000


@dataclass
class FileSummary:
    source: str
    format: str
    kind: str
    records: int = 0      # records found in the file (a line holding two objects counts two)
    kept: int = 0         # records that became rows
    rows: int = 0         # rows written (a seed task with several instances gives several)
    recovered: int = 0    # kept records that needed a repair (recorded in their meta)
    quarantined: int = 0  # records that went to quarantine
    reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def detect_format(path: str | os.PathLike) -> SourceFormat:
    """Pick the format of a file from its content (the file name is not trusted)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file.")
    head = read_head(path)
    if not head.strip():
        raise DatasetError(f"{path}: the file is empty.")
    container = sniff_container(path, head)
    if container == "text":
        candidates = [(f.score(head), f) for f in FORMATS if f.container == "text"]
    else:
        sample = peek_objects(path, container)
        if sample and not data_objects(sample):
            # Only {} / {"message": ...} rows: every record goes to quarantine whatever the format,
            # so take the format the file name suggests (for the report) or plain Alpaca.
            named = [f for f in FORMATS if f.container == "json" and f.name.split("_")[0] in path.name.lower()]
            return named[0] if named else BY_NAME["alpaca"]
        candidates = [(f.score(sample), f) for f in FORMATS if f.container == "json"]
    best_score, best = max(candidates, key=lambda c: c[0])  # max keeps the first of equals
    if best_score <= 0.3:
        names = ", ".join(f.name for f in FORMATS)
        raise DatasetError(
            f"{path}: could not recognise the format (best guess {best.name} at {best_score:.0%}). "
            f"Pass --format with one of: {names}."
        )
    return best


def _format(path: Path, fmt: str | SourceFormat | None) -> SourceFormat:
    if fmt is None or fmt == "auto":
        return detect_format(path)
    if isinstance(fmt, SourceFormat):
        return fmt
    try:
        return BY_NAME[fmt]
    except KeyError:
        raise DatasetError(f"unknown format {fmt!r}; choose one of: {', '.join(BY_NAME)}") from None


def _items(path: Path, fmt: SourceFormat):
    if fmt.container == "text":
        return fmt.items(path)
    container = sniff_container(path, read_head(path))
    if container == "text":
        raise DatasetError(f"{path}: format {fmt.name} expects JSON, but the file is plain text.")
    return iter_jsonl(path) if container == "jsonl" else iter_json_array(path)


# Keys that mark a dict as a record of some format (used to unwrap a record nested in a field).
RECORD_KEYS = {"instruction", "input", "output", "prompt", "response", "completion", "completion_0",
               "conversations", "messages", "instances"}


def iter_source(path: str | os.PathLike, fmt: str | SourceFormat | None = None,
                summary: FileSummary | None = None) -> Iterator[tuple[str, Any]]:
    """Events for one source file: ``("rows", (line, meta_json, [content, ...]))`` for a record
    that became rows, ``("quarantine", entry)`` for one that did not."""
    path = Path(path)
    fmt = _format(path, fmt)
    source = path.as_posix()
    summary = summary or FileSummary(source, fmt.name, fmt.kind)
    for item in _items(path, fmt):
        yield _convert(item, fmt, source, summary)


def _convert(item, fmt: SourceFormat, source: str, summary: FileSummary) -> tuple[str, Any]:
    """One record -> ``("rows", (line, meta_json, contents))`` or ``("quarantine", entry)``."""
    summary.records += 1
    if item.error is not None:
        summary.quarantined += 1
        code = "parse_error" if "JSON" in item.error else "bad_record"
        summary.reasons[code] = summary.reasons.get(code, 0) + 1
        return "quarantine", _qentry(source, fmt, item.line, code, item.error, item.raw, item.raw)
    rec = Record(item.recovered)
    try:
        obj = item.obj
        if fmt.container == "json":
            obj = unwrap_nested(precheck(obj), RECORD_KEYS, rec)
        contents = fmt.convert(obj, rec)
    except Reject as rej:
        summary.quarantined += 1
        summary.reasons[rej.code] = summary.reasons.get(rej.code, 0) + 1
        raw = item.raw if item.raw is not None else orjson.dumps(item.obj).decode()
        return "quarantine", _qentry(source, fmt, item.line, rej.code, rej.reason, rej.evidence, raw)
    summary.kept += 1
    summary.rows += len(contents)
    meta_text = None
    if rec.recovered or rec.extra or rec.info:
        if rec.recovered:
            summary.recovered += 1
        meta_text = orjson.dumps(rec.meta()).decode()
    return "rows", (item.line, meta_text, contents)


def _qentry(source, fmt, line, code, reason, evidence, raw) -> dict[str, Any]:
    return {"stage": "ingest", "source": source, "line": line, "where": f"{source}:{line}",
            "format": fmt.name, "code": code, "reason": reason, "evidence": _short(evidence),
            "raw": raw}


def _short(value: Any, limit: int = 500) -> Any:
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + "…"
    return value


class _Batcher:
    """Collects the rows of one source file column-wise and turns them into frames."""

    def __init__(self, kind: str, source: str, fmt: str, size: int):
        self.kind, self.source, self.fmt, self.size = kind, source, fmt, size
        self.fields = tuple(schemas.CONTENT[kind])
        self._reset()

    def _reset(self) -> None:
        self.content: list[list] = [[] for _ in self.fields]
        self.lines: list[int] = []
        self.metas: list[str | None] = []

    def add(self, line: int, meta: str | None, contents: list[dict[str, Any]]) -> pl.DataFrame | None:
        for content in contents:
            for col, name in zip(self.content, self.fields):
                col.append(content.get(name))
            self.lines.append(line)
            self.metas.append(meta)
        return self.flush() if len(self.lines) >= self.size else None

    def flush(self) -> pl.DataFrame | None:
        if not self.lines:
            return None
        n = len(self.lines)
        sch = schemas.schema(self.kind)
        cols = dict(zip(self.fields, self.content))
        df = pl.DataFrame({
            "id": schemas.content_ids(self.kind, cols),
            "kind": [self.kind] * n,
            "lang": pl.Series("lang", [None] * n, dtype=pl.String),
            "source": [self.source] * n,
            "format": [self.fmt] * n,
            "line": self.lines,
            "meta": pl.Series("meta", self.metas, dtype=pl.String),
            **cols,
        }, schema=sch)
        self._reset()
        return df


def iter_batches(paths: Iterable[str | os.PathLike], fmt: str | None = None, *, batch_size: int = BATCH,
                 detect_lang: bool = True, on_quarantine: Callable[[dict], None] | None = None,
                 summaries: list[FileSummary] | None = None,
                 on_progress: Callable[[int], None] | None = None) -> Iterator[tuple[str, pl.DataFrame]]:
    """Stream ``(kind, frame)`` batches from source files. Quarantine entries go to ``on_quarantine``.

    ``batch_size`` is the rows per frame on the per-record path; the JSONL fast path yields one
    frame per 16 MB block of lines."""
    for path in paths:
        path = Path(path)
        f = _format(path, fmt)
        summary = FileSummary(path.as_posix(), f.name, f.kind)
        if summaries is not None:
            summaries.append(summary)
        if f.container == "json" and f.fast_columns is not None and \
                sniff_container(path, read_head(path)) == "jsonl":
            frames = _fast_jsonl(path, f, summary, on_quarantine, on_progress)
        else:
            frames = _slow(path, f, summary, _Batcher(f.kind, summary.source, f.name, batch_size),
                           on_quarantine, on_progress)
        for df in frames:
            yield f.kind, (add_lang(df, f.kind) if detect_lang else df)


def _slow(path, fmt, summary, batcher, on_quarantine, on_progress) -> Iterator[pl.DataFrame]:
    """The general path: every record through its format's Python ``convert``."""
    for n, (event, payload) in enumerate(iter_source(path, fmt, summary), 1):
        if event == "quarantine":
            if on_quarantine:
                on_quarantine(payload)
        else:
            df = batcher.add(*payload)
            if df is not None:
                yield df
        if on_progress and n % 10_000 == 0:
            on_progress(10_000)
    df = batcher.flush()
    if df is not None:
        yield df


# In a raw JSON line: every key is followed by `"<ws>:`, and every key holding a string by
# `"<ws>:<ws>"`. When both counts equal the number of fields polars filled in, the line has no
# other key and no non-string value (text that merely contains such characters only sends a line
# to the general path, never the other way round).
_KEY = r'"\s*:'
_STR_KEY = r'"\s*:\s*"'


_MIN_SPLIT = 256  # a block polars can't parse is halved until it is this small, then read per line


def _fast_jsonl(path, fmt, summary, on_quarantine, on_progress) -> Iterator[pl.DataFrame]:
    """JSONL of a flat format: polars parses whole blocks of lines with the format's schema, and
    only the lines that need more than plain reading (repairs, extra keys, non-text values, empty or
    refusal rows, broken JSON) take the general path. Both give identical rows, in file order."""
    for first, block in iter_jsonl_blocks(path):
        try:
            lines = pl.read_lines(io.BytesIO(block))["line"]
        except pl.exceptions.PolarsError:
            lines = None
        if lines is None:  # invalid UTF-8 somewhere: every line of the block takes the general path
            raw_lines = block.split(b"\n")[:-1]
            frames = [_general_lines(fmt, summary, on_quarantine,
                                     [(first + i, line) for i, line in enumerate(raw_lines) if line.strip()])]
        else:
            frames = _fast_block(fmt, summary, on_quarantine, first, lines, block)
        frames = [f for f in frames if f is not None and f.height]
        if frames:
            yield pl.concat(frames).sort("line", maintain_order=True) if len(frames) > 1 else frames[0]
        if on_progress:
            on_progress(sum(f.height for f in frames))


def _general_lines(fmt, summary, on_quarantine, numbered: list[tuple[int, bytes]]) -> pl.DataFrame | None:
    """The per-record path for the given (line number, raw line) pairs."""
    batcher = _Batcher(fmt.kind, summary.source, fmt.name, 1 << 62)  # one frame for these lines
    for lineno, raw in numbered:
        for item in parse_line(lineno, raw):
            event, payload = _convert(item, fmt, summary.source, summary)
            if event == "quarantine":
                if on_quarantine:
                    on_quarantine(payload)
            else:
                batcher.add(*payload)
    return batcher.flush()


def _numbered(raw: pl.Series, idx: pl.Series, first: int) -> list[tuple[int, bytes]]:
    return [(first + i, line.encode("utf-8")) for i, line in zip(idx.to_list(), raw.gather(idx).to_list())]


def _fast_block(fmt, summary, on_quarantine, first: int, raw: pl.Series,
                data: bytes | None = None) -> list[pl.DataFrame | None]:
    """Rows of a block of lines (``raw``, a String Series; ``data`` the same lines as bytes)."""
    if data is None:
        data = ("\n".join(raw.to_list()) + "\n").encode("utf-8")
    try:
        parsed = pl.read_ndjson(io.BytesIO(data), schema=fmt.fast_schema)
    except pl.exceptions.PolarsError:
        parsed = None
    # polars skips blank lines; find them only when there are some
    nonblank = (pl.int_range(raw.len(), dtype=pl.UInt32, eager=True)
                if parsed is not None and parsed.height == raw.len()
                else (raw.str.strip_chars() != "").arg_true())
    if parsed is None or parsed.height != nonblank.len():
        if raw.len() > _MIN_SPLIT:  # a broken line inside: halve the block to isolate it
            mid = raw.len() // 2
            return (_fast_block(fmt, summary, on_quarantine, first, raw.slice(0, mid))
                    + _fast_block(fmt, summary, on_quarantine, first + mid, raw.slice(mid)))
        return [_general_lines(fmt, summary, on_quarantine, _numbered(raw, nonblank, first))]
    body = raw.gather(nonblank)
    present = parsed.select(pl.sum_horizontal(pl.all().is_not_null()).alias("n"))["n"]
    ok = (fmt.fast_columns(parsed) & (body.str.count_matches(_KEY) == present)
          & (body.str.count_matches(_STR_KEY) == present))
    frames = [_general_lines(fmt, summary, on_quarantine, _numbered(raw, nonblank.filter(~ok), first))]
    n = int(ok.sum())
    if n:
        fields = list(schemas.CONTENT[fmt.kind])
        content = fmt.fast_content(parsed.filter(ok))
        summary.records += n
        summary.kept += n
        summary.rows += n
        cols = {name: content[name].to_list() for name in fields}
        frames.append(pl.DataFrame({
            "id": schemas.content_ids(fmt.kind, cols), "kind": [fmt.kind] * n,
            "lang": pl.Series([None] * n, dtype=pl.String), "source": [summary.source] * n,
            "format": [fmt.name] * n, "line": (nonblank.filter(ok) + first).cast(pl.Int64),
            "meta": pl.Series([None] * n, dtype=pl.String), **{f: content[f] for f in fields},
        }, schema=schemas.schema(fmt.kind)))
    return frames


@dataclass
class IngestResult:
    frames: dict[str, pl.DataFrame]
    quarantine: list[dict]
    files: list[FileSummary]

    def summary(self) -> dict[str, Any]:
        return summarize(self.files, {k: v.height for k, v in self.frames.items()})


def ingest(paths: Iterable[str | os.PathLike], fmt: str | None = None, *, detect_lang: bool = True) -> IngestResult:
    """In-memory ingest for Python use: ``{kind: DataFrame}``, the quarantine and per-file summaries."""
    quarantine: list[dict] = []
    files: list[FileSummary] = []
    parts: dict[str, list[pl.DataFrame]] = {}
    for kind, df in iter_batches(paths, fmt, detect_lang=detect_lang, on_quarantine=quarantine.append,
                                 summaries=files):
        parts.setdefault(kind, []).append(df)
    frames = {k: pl.concat(v) for k, v in parts.items()}
    return IngestResult(frames, quarantine, files)


def summarize(files: list[FileSummary], rows_by_kind: dict[str, int]) -> dict[str, Any]:
    total = {k: sum(getattr(f, k) for f in files) for k in ("records", "kept", "rows", "recovered", "quarantined")}
    total["accounted"] = total["records"] == total["kept"] + total["quarantined"]
    return {"files": [f.as_dict() for f in files], "total": total, "rows_by_kind": rows_by_kind}


def ingest_to_dir(paths: Iterable[str | os.PathLike], out_dir: str | os.PathLike, fmt: str | None = None, *,
                  detect_lang: bool = True, batch_size: int = BATCH, output_format: str = "parquet",
                  on_progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Streaming ingest into ``out_dir/<kind>.parquet`` + ``quarantine.jsonl`` + ``report.json``.

    Batches go to part files in a private temp directory; each kind is then streamed into its
    final file and renamed into place. Returns the summary (also written as report.json).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [Path(p) for p in paths]
    for p in paths:
        if p.resolve().parent == out_dir.resolve() and p.stem in schemas.KINDS:
            raise DatasetError(f"{p}: input lies in the output directory; choose another -o.")
    files: list[FileSummary] = []
    tmp_dir = Path(tempfile.mkdtemp(prefix=".ingest-", dir=out_dir))
    try:
        parts: dict[str, list[Path]] = {}
        with atomic_path(out_dir / "quarantine.jsonl") as qtmp, open(qtmp, "wb") as qfh:
            def quarantine(entry: dict) -> None:
                qfh.write(orjson.dumps(entry) + b"\n")

            for kind, df in iter_batches(paths, fmt, batch_size=batch_size, detect_lang=detect_lang,
                                         on_quarantine=quarantine, summaries=files, on_progress=on_progress):
                part = tmp_dir / f"{kind}-{len(parts.get(kind, [])):05d}.parquet"
                df.write_parquet(part)
                parts.setdefault(kind, []).append(part)
            qfh.flush()
        rows_by_kind = {}
        if output_format not in ("parquet", "jsonl"):
            raise DatasetError(f"unknown output format {output_format!r}; use parquet or jsonl")
        for kind, kind_parts in parts.items():
            rows_by_kind[kind] = pl.scan_parquet(kind_parts).select(pl.len()).collect().item()
            target = out_dir / f"{kind}.{output_format}"
            with atomic_path(target) as tmp:
                if output_format == "jsonl":
                    pl.scan_parquet(kind_parts).sink_ndjson(tmp)
                elif len(kind_parts) == 1:
                    shutil.move(kind_parts[0], tmp)
                else:
                    pl.scan_parquet(kind_parts).sink_parquet(tmp)
        # files this run did not produce must not linger from an earlier run
        for kind in schemas.KINDS:
            for ext in ("parquet", "jsonl"):
                if not (kind in parts and ext == output_format):
                    (out_dir / f"{kind}.{ext}").unlink(missing_ok=True)
        summary = summarize(files, rows_by_kind)
        write_json(out_dir / "report.json", {"stage": "ingest", **summary})
        return summary
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
