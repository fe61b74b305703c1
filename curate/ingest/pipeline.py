"""Ingest: source files in any known format -> canonical frames + quarantine + a summary.

The work is streamed: records are read one at a time and turned into polars frames in batches, so
a file of several GB needs memory for one batch, not for the file.
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import orjson
import polars as pl

from curate import lingua_worker, schemas
from curate.errors import UserError
from curate.ingest.base import Record, Reject, SourceFormat, data_objects, precheck, unwrap_nested
from curate.ingest.encoding import CP1252_NOTE, check_text_head, compression_of, decode_line, decompressed_name
from curate.ingest.formats import BY_NAME, FORMATS
from curate.ingest import lines_jit
from curate.ingest.readers import (MAX_RECORD, Span, iter_json_array, iter_jsonl, jsonl_blocks, parse_line,
                                   peek_objects, read_head, sniff_container)
from curate.io.files import DatasetError, require_file
from curate.rowlang import add_lang, start_lang

BATCH = 50_000
#: A format must fit a file at least this well (0..1) to be chosen without --format.
MIN_SCORE = 0.5


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
    encoding: str = "utf-8"  # what the file was decoded from (utf-16/32 are recoded first)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Source:
    """A source file ready to read: ``path`` holds UTF-8 (the file itself, or a recoded copy of a
    UTF-16/32 file or of a JSON array with Latin-1 lines); ``name`` is the file the user gave."""
    path: Path
    name: str
    encoding: str = "utf-8"
    recoded_lines: frozenset[int] = frozenset()  # lines decoded as cp1252 (JSON arrays)


@contextlib.contextmanager
def open_source(path: str | os.PathLike, name: str | None = None) -> Iterator[Source]:
    """Check a source file's bytes (binary refused, BOMs honoured) and yield it as a :class:`Source`.
    A recoded or decompressed temporary copy, if one was needed, is removed afterwards."""
    path = Path(path)
    name = name or path.as_posix()
    require_file(path, name)
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if not head.strip():
        raise DatasetError(f"{name}: the file is empty; nothing to read.")
    packed = compression_of(head)
    if packed is not None:
        with _temp_copy(decompressed_name(path)) as tmp:
            _decompress(path, tmp, name, *packed)
            with open_source(tmp, name) as src:
                yield Source(src.path, name, f"{packed[0]}, {src.encoding}", src.recoded_lines)
        return
    try:
        enc = check_text_head(Path(name), head)
    except UserError as exc:
        raise DatasetError(str(exc)) from None
    if enc.startswith(("utf-16", "utf-32")):
        with _temp_copy(path) as tmp:
            _recode(path, enc, tmp, name)
            yield Source(tmp, name, enc)
        return
    if sniff_container(path, head.decode("utf-8", errors="replace")) == "array" and not _valid_utf8(path):
        with _temp_copy(path) as tmp:
            lines = _recode_lines(path, tmp, name)
            yield Source(tmp, name, "utf-8+cp1252", frozenset(lines))
        return
    yield Source(path, name)


@contextlib.contextmanager
def _temp_copy(path: Path) -> Iterator[Path]:
    fd, tmp = tempfile.mkstemp(prefix="curate-recoded-", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _decompress(path: Path, dest: Path, name: str, what: str, module: str) -> None:
    """Write the decompressed stream of ``path`` to ``dest``; a damaged or cut stream is refused
    (a full disk while writing is the disk's error, not the file's)."""
    import importlib
    import lzma
    import zlib

    opener = importlib.import_module(module).open
    try:
        with opener(path, "rb") as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    except OSError as exc:
        if exc.errno is not None:  # the disk (full, read-only), not the stream
            raise
        broken: Exception = exc
    except (EOFError, zlib.error, lzma.LZMAError) as exc:
        broken = exc
    else:
        return
    raise DatasetError(f"{name}: the {what} stream is cut short or damaged ({broken}); download or compress it "
                       "again.")


def _recode(path: Path, enc: str, dest: Path, name: str) -> None:
    try:
        with open(path, "r", encoding=enc,
                  newline="") as src, open(dest, "w", encoding="utf-8", newline="") as out:
            first = True
            while chunk := src.read(1 << 20):
                if first:
                    chunk, first = chunk.removeprefix("\ufeff"), False
                out.write(chunk)
    except UnicodeError as exc:
        raise DatasetError(f"{name}: starts with a {enc.upper()} byte-order mark but byte {exc.start:,} of a "
                           f"block does not decode ({exc.reason}); convert it to UTF-8 and re-run.") from None


def _valid_utf8(path: Path) -> bool:
    dec = codecs.getincrementaldecoder("utf-8")()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 22):
                dec.decode(chunk)
        dec.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _recode_lines(path: Path, dest: Path, name: str) -> list[int]:
    """Copy a JSON array with some non-UTF-8 lines as UTF-8, decoding those lines as cp1252 where
    the bytes prove it; refuse the file when a line is neither (a JSON array can't lose a line)."""
    recoded = []
    with open(path, "rb") as src, open(dest, "wb") as out:
        for lineno, raw in enumerate(src, 1):
            text, note = decode_line(raw)
            if text is None:
                raise DatasetError(f"{name}:{lineno}: {note}; convert the file to UTF-8 and re-run.")
            if note:
                recoded.append(lineno)
            out.write(text.encode("utf-8"))
    return recoded


def detect_format(path: str | os.PathLike, name: str | None = None) -> SourceFormat:
    """Pick the format of a file from its content (the file name is not trusted)."""
    path = Path(path)
    name = name or path.as_posix()
    require_file(path, name)
    head = read_head(path)
    if not head.strip():
        raise DatasetError(f"{name}: the file is empty; nothing to read.")
    container = sniff_container(path, head)
    if container == "object":
        raise DatasetError(f"{name}: holds one JSON object, not a JSON array or JSON Lines of records. If the records "
                           "are inside a field, extract them first, e.g. jq '.data' FILE > records.json")
    if container == "text":
        candidates = [(f.score(head), f) for f in FORMATS if f.container == "text"]
    else:
        sample = peek_objects(path, container)
        if not sample:
            raise DatasetError(_no_records(path, container, name))
        if sample and not data_objects(sample):
            # Only {} / {"message": ...} rows: every record goes to quarantine whatever the format,
            # so take the format the file name suggests (for the report) or plain Alpaca.
            named = [f for f in FORMATS if f.container == "json" and f.name.split("_")[0] in path.name.lower()]
            return named[0] if named else BY_NAME["alpaca"]
        candidates = [(f.score(sample), f) for f in FORMATS if f.container == "json"]
    best_score, best = max(candidates, key=lambda c: c[0])  # max keeps the first of equals
    if best_score < MIN_SCORE:
        raise DatasetError(f"{name}: could not recognise the format (best guess {best.name}, fitting "
                           f"{best_score:.0%} of the sample). If that is right, {format_hint(best.name)}")
    return best


def _no_records(path: Path, container: str, name: str) -> str:
    """Why a JSON file gave no record to tell its format by: an empty array, or the first broken
    record (a truncated array, nesting too deep, every line invalid) with its line."""
    items = iter_jsonl(path) if container == "jsonl" else iter_json_array(path)
    broken = next((it for it in items if it.error), None)
    if broken is None:
        return f"{name}: an empty JSON array; there are no records to read."
    return (f"{name}:{broken.line}: {broken.error}; no record in the file could be read, so its format cannot be told. "
            "Repair the file, or name its format to keep each record in the quarantine with its reason: "
            + format_hint("FORMAT"))


def format_hint(name: str) -> str:
    """How to name the format on the command line (ingest/clean/export have their own option)."""
    return (f"pass --format {name} (any command: curate --input-format {name} COMMAND ...); "
            "curate ingest --list-formats lists the formats.")


def _format(path: Path, fmt: str | SourceFormat | None, name: str | None = None) -> SourceFormat:
    if fmt is None or fmt == "auto":
        return detect_format(path, name)
    if isinstance(fmt, SourceFormat):
        return fmt
    try:
        return BY_NAME[fmt]
    except KeyError:
        raise DatasetError(f"unknown format {fmt!r}; choose one of: {', '.join(BY_NAME)}") from None


def _items(path: Path, fmt: SourceFormat, name: str | None = None, recoded: frozenset[int] = frozenset(),
           span: Span | None = None):
    if span is not None:  # a byte range of a JSON Lines file (the caller checked the container)
        return iter_jsonl(path, span)
    if fmt.container == "text":
        return fmt.items(path)
    container = sniff_container(path, read_head(path))
    if container == "text":
        raise DatasetError(f"{name or path}: format {fmt.name} expects JSON, but the file is plain text.")
    if container == "object":
        raise DatasetError(f"{name or path}: holds one JSON object, not a JSON array or JSON Lines of records.")
    if container == "jsonl":
        return iter_jsonl(path)
    return _noted(iter_json_array(path), recoded) if recoded else iter_json_array(path)


def _noted(items, recoded: frozenset[int]):
    """Array elements spanning a line that was decoded as cp1252 carry the note."""
    for item in items:
        if any(n in recoded for n in range(item.line, max(item.line, item.last) + 1)):
            item.recovered.append(CP1252_NOTE)
        yield item


# Keys that mark a dict as a record of some format (used to unwrap a record nested in a field).
RECORD_KEYS = {"instruction", "input", "output", "prompt", "response", "completion", "completion_0",
               "conversations", "messages", "instances"}


def iter_source(path: str | os.PathLike, fmt: str | SourceFormat | None = None,
                summary: FileSummary | None = None, recoded: frozenset[int] = frozenset(),
                span: Span | None = None) -> Iterator[tuple[str, Any]]:
    """Events for one source file (of ``span`` of a JSON Lines file, when given):
    ``("rows", (line, meta_json, [content, ...]))`` for a record that became rows,
    ``("quarantine", entry)`` for one that did not."""
    path = Path(path)
    fmt = _format(path, fmt, summary.source if summary else None)
    summary = summary or FileSummary(path.as_posix(), fmt.name, fmt.kind)
    for item in _items(path, fmt, summary.source, recoded, span):
        yield _convert(item, fmt, summary.source, summary)


def _convert(item, fmt: SourceFormat, source: str, summary: FileSummary) -> tuple[str, Any]:
    """One record -> ``("rows", (line, meta_json, contents))`` or ``("quarantine", entry)``."""
    summary.records += 1
    if item.error is not None:
        summary.quarantined += 1
        code = _error_code(item.error)
        summary.reasons[code] = summary.reasons.get(code, 0) + 1
        return "quarantine", _qentry(source, fmt, item.line, code, item.error, item.raw, item.raw)
    rec = Record(item.recovered)
    try:
        obj = item.obj
        if fmt.container == "json":
            _check_surrogates(obj)
            obj = unwrap_nested(precheck(obj), RECORD_KEYS, rec)
        contents = fmt.convert(obj, rec)
    except Reject as rej:
        summary.quarantined += 1
        summary.reasons[rej.code] = summary.reasons.get(rej.code, 0) + 1
        raw = item.raw if item.raw is not None else (  # a lone surrogate's evidence is the whole record
            rej.evidence if rej.code == "lone_surrogate" else orjson.dumps(item.obj).decode())
        return "quarantine", _qentry(source, fmt, item.line, rej.code, rej.reason, rej.evidence, raw)
    summary.kept += 1
    summary.rows += len(contents)
    meta_text = None
    if rec.recovered or rec.extra or rec.info:
        if rec.recovered:
            summary.recovered += 1
        meta_text = orjson.dumps(rec.meta()).decode()
    return "rows", (item.line, meta_text, contents)


def _check_surrogates(obj: Any) -> None:
    """Refuse a record holding a lone UTF-16 surrogate (``"\\ud800"``: Python's JSON parser, which
    reads arrays and repairs broken lines, accepts it; it is not a Unicode character, so no row,
    id or output file can hold it)."""
    try:
        orjson.dumps(obj)
    except orjson.JSONEncodeError as exc:
        if "surrogates" not in str(exc):
            raise
        raise Reject("lone_surrogate", "text holds a lone UTF-16 surrogate escape (such as \\ud800), "
                     "which is not a Unicode character", json.dumps(obj)) from None


def _error_code(error: str) -> str:
    if error.startswith("invalid UTF-8"):
        return "encoding_error"
    if "nested too deeply" in error:
        return "too_deep"
    if "MB limit" in error:
        return "too_big"
    return "parse_error" if "JSON" in error else "bad_record"


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
        with open_source(path) as src:
            f = _format(src.path, fmt, src.name)
            summary = FileSummary(src.name, f.name, f.kind, encoding=src.encoding)
            if summaries is not None:
                summaries.append(summary)
            for df in iter_file(src, f, summary, batch_size=batch_size, detect_lang=detect_lang,
                                on_quarantine=on_quarantine, on_progress=on_progress):
                yield f.kind, df


def iter_file(src: Source, f: SourceFormat, summary: FileSummary, *, batch_size: int = BATCH,
              detect_lang: bool = True, on_quarantine: Callable[[dict], None] | None = None,
              on_progress: Callable[[int], None] | None = None, span: Span | None = None) -> Iterator[pl.DataFrame]:
    """Frames of one prepared source file (see :func:`open_source`) in format ``f``; with ``span``,
    of that byte range of a JSON Lines file only (rows and quarantine entries keep the file's line
    numbers: the ranges of a file together give the whole file's frames and entries, in order)."""
    if span is not None and (f.container != "json" or src.encoding != "utf-8"
                             or sniff_container(src.path, read_head(src.path)) != "jsonl"):
        raise DatasetError(f"{summary.source}: only a UTF-8 JSON Lines file is read by byte ranges")
    if f.container == "json" and f.fast_columns is not None and \
            sniff_container(src.path, read_head(src.path)) == "jsonl":
        frames = _fast_jsonl(src.path, f, summary, on_quarantine, on_progress, span)
    else:
        frames = _slow(src.path, f, summary, _Batcher(f.kind, summary.source, f.name, batch_size),
                       on_quarantine, on_progress, src.recoded_lines, span)
    if not detect_lang:
        yield from frames
        return
    from curate import langid

    big = span is None and src.path.stat().st_size >= LINGUA_WORKER_BYTES
    with (langid.lingua_worker() if big else contextlib.nullcontext()) as worker:
        yield from _lang_lagged(frames, f.kind, worker)


#: Files at least this big have lingua's share of language id done in a helper process
#: (:mod:`curate.lingua_worker`): its ~0.5 s of model loading is only worth hiding on a long job.
LINGUA_WORKER_BYTES = lingua_worker.BIG_INPUT_BYTES


#: Frames a frame's language id may lag behind the reading: a frame is yielded as soon as its
#: language id is done, and the reading waits for it only when this many frames are waiting. The
#: first frames' undecided texts wait for lingua's models (~0.5 s of CPU to load in the helper
#: process, see :mod:`curate.commands.early`), so the reading goes on meanwhile instead of leaving a
#: core idle; each waiting frame holds a 16 MB block's rows.
LANG_LAG = 12


def _lang_lagged(frames: Iterable[pl.DataFrame], kind: str, worker) -> Iterator[pl.DataFrame]:
    """The frames with their ``lang`` column, in order, up to :data:`LANG_LAG` frames behind the
    reading: a frame's undecided texts are with lingua (``worker``) while the next frames are
    read."""
    waiting: collections.deque = collections.deque()
    for df in frames:
        waiting.append(start_lang(df, kind, worker))
        while waiting and (len(waiting) > LANG_LAG or waiting[0].ready()):
            yield waiting.popleft()()
    while waiting:
        yield waiting.popleft()()


def iter_records(items: Iterable[Any], f: SourceFormat, summary: FileSummary, *, batch_size: int = BATCH,
                 detect_lang: bool = True, on_quarantine: Callable[[dict], None] | None = None,
                 on_progress: Callable[[int], None] | None = None) -> Iterator[pl.DataFrame]:
    """Frames from records already parsed elsewhere (e.g. the rows of a Parquet/CSV export), with
    the same conversion and quarantine as a JSON file of format ``f``."""
    events = (_convert(item, f, summary.source, summary) for item in items)
    for df in _batches(events, _Batcher(f.kind, summary.source, f.name, batch_size), on_quarantine, on_progress):
        yield add_lang(df, f.kind) if detect_lang else df


def _slow(path, fmt, summary, batcher, on_quarantine, on_progress, recoded=frozenset(),
          span: Span | None = None) -> Iterator[pl.DataFrame]:
    """The general path: every record through its format's Python ``convert``."""
    return _batches(iter_source(path, fmt, summary, recoded, span), batcher, on_quarantine, on_progress)


def _batches(events, batcher, on_quarantine, on_progress) -> Iterator[pl.DataFrame]:
    for n, (event, payload) in enumerate(events, 1):
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


_MIN_SPLIT = 256  # a block polars can't parse is halved until it is this small, then read per line


def _fast_jsonl(path, fmt, summary, on_quarantine, on_progress, span: Span | None = None) -> Iterator[pl.DataFrame]:
    """JSONL of a flat format: polars parses whole blocks of lines with the format's schema, and
    only the lines that need more than plain reading (repairs, extra keys, non-text values, empty or
    refusal rows, broken JSON) take the general path. Both give identical rows, in file order.

    A helper thread runs the compiled parts, which release the GIL: a block's line scan while
    polars parses it, and its content ids while the next block is read; so each block's frame is
    yielded once the next block has been read."""
    first = span.first_line if span else 1
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="curate-scan") as helper:
        waiting: list = []
        for block in jsonl_blocks(path, span=span):
            frames, count = _scanned_block(fmt, summary, on_quarantine, first, block, helper)
            first += count
            yield from _block_frame(waiting, on_progress)
            waiting = frames
        yield from _block_frame(waiting, on_progress)


def _block_frame(frames: list, on_progress) -> Iterator[pl.DataFrame]:
    """One block's frame from its parts (frames, or functions giving one once its ids are done)."""
    frames = [f() if callable(f) else f for f in frames]
    frames = [f for f in frames if f is not None and f.height]
    if frames:
        yield pl.concat(frames).sort("line", maintain_order=True) if len(frames) > 1 else frames[0]
    if on_progress:
        on_progress(sum(f.height for f in frames))


def _all_general(fmt, summary, on_quarantine, first: int, block: bytes) -> list[pl.DataFrame | None]:
    """A block that is not valid UTF-8: every line takes the general path."""
    raw_lines = block.split(b"\n")[:-1]
    return [_general_lines(fmt, summary, on_quarantine,
                           [(first + i, line) for i, line in enumerate(raw_lines) if line.strip()])]


@dataclass
class _Lines:
    """A block and what :func:`curate.ingest.lines_jit.scan` found in its lines."""
    block: bytes
    starts: Any
    ends: Any
    blank: Any
    keys: Any
    str_keys: Any

    def raw(self, i: int) -> bytes:
        return self.block[self.starts[i]:self.ends[i]]

    def data(self, lo: int, hi: int) -> bytes:
        """The bytes of lines ``lo..hi`` (with their newlines)."""
        return self.block[self.starts[lo]:self.starts[hi] if hi < len(self.starts) else len(self.block)]


def _scanned_block(fmt, summary, on_quarantine, first: int, block: bytes, helper) -> tuple[list, int]:
    """A block's frames (or functions giving them: see :func:`_fast_frame`), and its number of
    lines, with its lines found by one compiled pass (:mod:`curate.ingest.lines_jit`, on the
    ``helper`` thread while polars parses the block).

    A line takes the fast path when its key counts (:data:`curate.ingest.lines_jit.KEY`,
    :data:`~curate.ingest.lines_jit.STR_KEY`) both equal the number of fields polars filled in: it
    has no other key and no non-string value (text that merely contains such characters only sends
    a line to the general path, never the other way round)."""
    scan = helper.submit(lines_jit.scan, block)
    try:
        parsed = pl.read_ndjson(io.BytesIO(block), schema=fmt.fast_schema)
    except pl.exceptions.PolarsError:
        parsed = None
    lines = _Lines(block, *scan.result())
    if parsed is None:
        try:
            block.decode("utf-8")
        except UnicodeDecodeError:
            return _all_general(fmt, summary, on_quarantine, first, block), len(lines.starts)
    return (_lines_block(fmt, summary, on_quarantine, first, lines, 0, len(lines.starts), parsed, helper),
            len(lines.starts))


_UNPARSED = object()
#: Rust's (polars') whitespace: ``str.strip_chars()`` removes these.
_WHITE_SPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
    "\u2028\u2029\u202f\u205f\u3000"


def _lines_block(fmt, summary, on_quarantine, first: int, lines: _Lines, lo: int, hi: int,
                 parsed: Any, helper) -> list:
    """Rows of lines ``lo..hi`` of a scanned block (``parsed``: those lines read by polars, None if
    it could not)."""
    if parsed is _UNPARSED:
        try:
            parsed = pl.read_ndjson(io.BytesIO(lines.data(lo, hi)), schema=fmt.fast_schema)
        except pl.exceptions.PolarsError:
            parsed = None
    # polars skips blank lines; a block it parsed holds no other whitespace-only line
    nonblank = np.flatnonzero(~lines.blank[lo:hi]) + lo
    if parsed is None or parsed.height != len(nonblank):
        if hi - lo > _MIN_SPLIT:  # a broken line inside: halve the block to isolate it
            mid = lo + (hi - lo) // 2
            return (_lines_block(fmt, summary, on_quarantine, first, lines, lo, mid, _UNPARSED, helper)
                    + _lines_block(fmt, summary, on_quarantine, first, lines, mid, hi, _UNPARSED, helper))
        numbered = [(first + i, raw) for i in range(lo, hi)
                    if (raw := lines.raw(i)).decode("utf-8").strip(_WHITE_SPACE)]
        return [_general_lines(fmt, summary, on_quarantine, numbered)]
    present = parsed.select(pl.sum_horizontal(pl.all().is_not_null()).alias("n"))["n"].to_numpy()
    ok = (fmt.fast_columns(parsed).to_numpy() & (lines.keys[nonblank] == present)
          & (lines.str_keys[nonblank] == present) & (lines.ends[nonblank] - lines.starts[nonblank] <= MAX_RECORD))
    frames = [_general_lines(fmt, summary, on_quarantine, [(first + i, lines.raw(i)) for i in nonblank[~ok].tolist()])]
    n = int(ok.sum())
    if n:
        frames.append(_fast_frame(fmt, summary, parsed if n == len(ok) else parsed.filter(pl.Series(ok)),
                                  nonblank[ok] + first, helper))
    return frames


def _fast_frame(fmt, summary, parsed: pl.DataFrame, lines, helper):
    """The rows of the fast path's records (``parsed``: the records read by polars, ``lines``: their
    line numbers): a function giving their frame once the ``helper`` thread has computed the ids."""
    n = parsed.height
    fields = list(schemas.CONTENT[fmt.kind])
    content = fmt.fast_content(parsed)
    summary.records += n
    summary.kept += n
    summary.rows += n
    ids = helper.submit(schemas.frame_ids, fmt.kind, content)

    def frame() -> pl.DataFrame:
        return pl.DataFrame({
            "id": ids.result(),
            "kind": pl.repeat(fmt.kind, n, eager=True), "lang": pl.repeat(None, n, dtype=pl.String, eager=True),
            "source": pl.repeat(summary.source, n, eager=True), "format": pl.repeat(fmt.name, n, eager=True),
            "line": pl.Series("line", lines).cast(pl.Int64), "meta": pl.repeat(None, n, dtype=pl.String, eager=True),
            **{f: content[f] for f in fields},
        }, schema=schemas.schema(fmt.kind))

    return frame


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


def _parquet_writer(open_writers: dict[str, Any], files: contextlib.ExitStack, kind: str, path: Path,
                    df: pl.DataFrame, compression: str):
    """The pyarrow ParquetWriter of ``kind`` (opened on its first batch, with that batch's schema, the
    kind's canonical one; ``compression``: the output's, :func:`curate.io.writer.compression`), closed
    by ``files``. Columns are dictionary encoded but ``id`` and ``line``, whose values are a row's own
    (a dictionary of them is as long as the column: building it cost ~11% of the writing's CPU and the
    file ~12% of its size; dictionaries only for the short columns: no gain, uncompressed either).

    A kind without nested columns (sft, ppo) is handed over as polars holds it (:func:`_arrow`) and
    its file keeps Parquet's own types only, not an Arrow schema naming string views: every reader
    sees the same columns, strings as strings."""
    if kind not in open_writers:
        import pyarrow.parquet as pq

        schema = _arrow(df).schema
        open_writers[kind] = files.enter_context(pq.ParquetWriter(
            path, schema, compression=compression, use_dictionary=[c for c in schema.names if c not in ("id", "line")],
            store_schema=not _flat(df)))
    return open_writers[kind]


def _flat(df: pl.DataFrame) -> bool:
    return not any(dtype.is_nested() for dtype in df.dtypes)


def _arrow(df: pl.DataFrame):
    """``df`` as an Arrow table: a frame without nested columns shares polars' buffers (its strings
    as string views; the default conversion copies every string into a ``large_string`` first,
    ~0.3 s of CPU per 1M rows), one with nested columns is converted (pyarrow's Parquet writer
    cannot write string views inside lists)."""
    return df.to_arrow(compat_level=pl.CompatLevel.newest()) if _flat(df) else df.to_arrow()


def _write_row_group(out, df: pl.DataFrame) -> None:
    table = _arrow(df)
    out.write_table(table if table.schema == out.schema else table.cast(out.schema))


class _WriteBehind:
    """Row groups encoded and written by a thread while the next batch is read (pyarrow releases
    the GIL to compress and write): at most one write in flight, done in order; its error is
    raised at the next write or on leaving the block, and the block never leaves a write running."""

    def __init__(self):
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(1, thread_name_prefix="curate-write")
        self.pending = None

    def write(self, fn, *args) -> None:
        self.wait()
        self.pending = self.pool.submit(fn, *args)

    def wait(self) -> None:
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.result()

    def __enter__(self) -> "_WriteBehind":
        return self

    def __exit__(self, exc_type, *_) -> None:
        try:
            if exc_type is None:
                self.wait()
            elif self.pending is not None:
                self.pending.exception()  # the error being raised wins; just let the write end
        finally:
            self.pool.shutdown(wait=True)


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
    """Streaming ingest into a committed dataset ``out_dir``: ``<kind>.parquet``, ``quarantine.jsonl``,
    ``report.json`` and ``manifest.json``, published at once (:class:`curate.io.DatasetWriter`).

    Parquet: each batch is one row group of its kind's file, written as it comes (memory stays one
    batch; every row is encoded once). JSONL: batches go to part files in the staging directory, then
    each kind is streamed into its final file. Returns the summary (also written as report.json)."""
    from curate.io import DatasetWriter, open_input

    if output_format not in ("parquet", "jsonl"):
        raise DatasetError(f"unknown output format {output_format!r}; use parquet or jsonl")
    paths = [Path(p) for p in paths]
    writer = DatasetWriter(out_dir, stage="ingest", inputs=paths,
                           params={"format": fmt or "auto", "detect_lang": detect_lang, "output_format": output_format})
    with open_input(paths, format=fmt) as plan, writer as w, contextlib.ExitStack() as files:
        parts: dict[str, list[Path]] = {}
        parquet: dict[str, Any] = {}  # kind -> pyarrow ParquetWriter of <kind>.parquet
        rows_by_kind: dict[str, int] = {}
        with w.open("quarantine.jsonl") as qfh:
            def quarantine(entry: dict) -> None:
                qfh.write(orjson.dumps(entry) + b"\n")

            with _WriteBehind() as behind:
                for kind, df in plan.batches(batch_size=batch_size, detect_lang=detect_lang,
                                             on_quarantine=quarantine, on_progress=on_progress):
                    if isinstance(df, pl.LazyFrame):
                        df = df.collect()
                    rows_by_kind[kind] = rows_by_kind.get(kind, 0) + df.height
                    if output_format == "parquet":  # one row group per batch, each row encoded once
                        behind.write(_write_row_group,
                                     _parquet_writer(parquet, files, kind, w.file(f"{kind}.parquet"), df,
                                                     w.compression), df)
                        continue
                    part = w.file(f".parts/{kind}-{len(parts.get(kind, [])):05d}.parquet")
                    df.write_parquet(part)
                    parts.setdefault(kind, []).append(part)
        files.close()  # every <kind>.parquet complete before it is registered
        for kind in schemas.KINDS:
            if kind in parquet:
                w.add_part(kind, f"{kind}.parquet")
            elif kind in parts:
                w.write_frame(kind, pl.scan_parquet(parts[kind]), fmt="jsonl")
        rows_by_kind = {kind: rows_by_kind[kind] for kind in schemas.KINDS if kind in rows_by_kind}
        shutil.rmtree(w.path / ".parts", ignore_errors=True)
        w.input_manifests = [d["id"] for d in plan.datasets if d.get("id")]
        summary = {**plan.report(), "rows_by_kind": rows_by_kind}
        w.write_json("report.json", {"stage": "ingest", **summary})
    return summary
