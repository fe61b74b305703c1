"""Ingest: source files in any known format -> canonical frames + quarantine + a summary.

The work is streamed: records are read one at a time and turned into polars frames in batches, so
a file of several GB needs memory for one batch, not for the file.
"""

from __future__ import annotations

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
from curate.ingest.readers import iter_json_array, iter_jsonl, peek_objects, read_head, sniff_container
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
                summary: FileSummary | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``("row", row)`` and ``("quarantine", entry)`` events for one source file."""
    path = Path(path)
    fmt = _format(path, fmt)
    source = path.as_posix()
    summary = summary or FileSummary(source, fmt.name, fmt.kind)
    kind = fmt.kind
    for item in _items(path, fmt):
        summary.records += 1
        if item.error is not None:
            summary.quarantined += 1
            code = "parse_error" if "JSON" in item.error else "bad_record"
            summary.reasons[code] = summary.reasons.get(code, 0) + 1
            yield "quarantine", _qentry(source, fmt, item.line, code, item.error, item.raw, item.raw)
            continue
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
            yield "quarantine", _qentry(source, fmt, item.line, rej.code, rej.reason, rej.evidence, raw)
            continue
        summary.kept += 1
        if rec.recovered:
            summary.recovered += 1
        meta = rec.meta()
        meta_text = orjson.dumps(meta).decode() if meta else None
        for content in contents:
            summary.rows += 1
            content["id"] = schemas.content_id(kind, content)
            content["kind"] = kind
            content["source"] = source
            content["format"] = fmt.name
            content["line"] = item.line
            content["meta"] = meta_text
            yield "row", content


def _qentry(source, fmt, line, code, reason, evidence, raw) -> dict[str, Any]:
    return {"stage": "ingest", "source": source, "line": line, "where": f"{source}:{line}",
            "format": fmt.name, "code": code, "reason": reason, "evidence": _short(evidence),
            "raw": raw}


def _short(value: Any, limit: int = 500) -> Any:
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + "…"
    return value


class _Batcher:
    """Collects rows of one kind column-wise and turns them into frames of ``size`` rows."""

    def __init__(self, kind: str, size: int):
        self.kind, self.size = kind, size
        self.schema = schemas.schema(kind)
        self.cols: dict[str, list] = {n: [] for n in self.schema}

    def add(self, row: dict[str, Any]) -> pl.DataFrame | None:
        for name, col in self.cols.items():
            col.append(row.get(name))
        return self.flush() if len(self.cols["id"]) >= self.size else None

    def flush(self) -> pl.DataFrame | None:
        if not self.cols["id"]:
            return None
        df = pl.DataFrame(self.cols, schema=self.schema)
        self.cols = {n: [] for n in self.schema}
        return df


def iter_batches(paths: Iterable[str | os.PathLike], fmt: str | None = None, *, batch_size: int = BATCH,
                 detect_lang: bool = True, on_quarantine: Callable[[dict], None] | None = None,
                 summaries: list[FileSummary] | None = None,
                 on_progress: Callable[[int], None] | None = None) -> Iterator[tuple[str, pl.DataFrame]]:
    """Stream ``(kind, frame)`` batches from source files. Quarantine entries go to ``on_quarantine``."""
    batchers: dict[str, _Batcher] = {}
    for path in paths:
        path = Path(path)
        f = _format(path, fmt)
        summary = FileSummary(path.as_posix(), f.name, f.kind)
        if summaries is not None:
            summaries.append(summary)
        for n, (event, payload) in enumerate(iter_source(path, f, summary), 1):
            if event == "quarantine":
                if on_quarantine:
                    on_quarantine(payload)
                continue
            b = batchers.get(f.kind) or batchers.setdefault(f.kind, _Batcher(f.kind, batch_size))
            df = b.add(payload)
            if df is not None:
                yield f.kind, (add_lang(df) if detect_lang else df)
            if on_progress and n % 10_000 == 0:
                on_progress(10_000)
    for kind, b in batchers.items():
        df = b.flush()
        if df is not None:
            yield kind, (add_lang(df) if detect_lang else df)


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
                  detect_lang: bool = True, batch_size: int = BATCH,
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
        for kind, kind_parts in parts.items():
            target = out_dir / f"{kind}.parquet"
            with atomic_path(target) as tmp:
                if len(kind_parts) == 1:
                    shutil.move(kind_parts[0], tmp)
                else:
                    pl.scan_parquet(kind_parts).sink_parquet(tmp)
            rows_by_kind[kind] = pl.scan_parquet(target).select(pl.len()).collect().item()
        # kinds this run did not produce must not linger from an earlier run
        for kind in schemas.KINDS:
            if kind not in parts:
                (out_dir / f"{kind}.parquet").unlink(missing_ok=True)
        summary = summarize(files, rows_by_kind)
        write_json(out_dir / "report.json", {"stage": "ingest", **summary})
        return summary
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
