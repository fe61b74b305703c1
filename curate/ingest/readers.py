"""Tolerant, streaming readers for JSON containers.

They yield :class:`Item` objects, one per record, each with the 1-based line where the record
starts. A line that is not valid JSON is repaired where the damage is a known one (two objects
glued on one line, a missing closing brace) and the repair is recorded; otherwise it is yielded
with an ``error`` so the caller can quarantine it. Nothing is skipped silently.
"""

from __future__ import annotations

import json
import mmap
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import orjson

from curate.ingest.encoding import decode_line

_DECODER = json.JSONDecoder()
CHUNK = 1 << 20
MAX_ELEMENT = 64 << 20
#: A record (one JSONL line) larger than this goes to quarantine instead of becoming a row.
MAX_RECORD = 16 << 20


@dataclass(slots=True)
class Item:
    line: int
    obj: Any = None
    raw: str | None = None
    error: str | None = None
    recovered: list[str] = field(default_factory=list)
    last: int = 0  # the last line the record spans (0: same as ``line``)


def sniff_container(path: Path, head: str) -> str:
    """'array' (one JSON array, whatever the file is called), 'jsonl' (a value per line) or 'text'."""
    stripped = head.lstrip("\ufeff \t\r\n")
    if stripped.startswith("["):
        return "array"
    if stripped.startswith("{"):
        return "jsonl" if _first_line_is_object(path) else "object"
    return "jsonl" if _mostly_objects(head) else "text"


def _mostly_objects(head: str) -> bool:
    """Whether most lines of ``head`` (its last, maybe cut, excluded) are JSON objects: JSON Lines
    whose first line is something else (a ``//`` or ``#`` comment, a stray header). Read as text,
    every line became a prompt of the question list, JSON and all; as JSON Lines, that line goes
    to the quarantine with its reason."""
    lines = [line for line in head.splitlines()[:-1] if line.strip()][:100]
    objects = 0
    for line in lines:
        try:
            objects += isinstance(orjson.loads(line), dict)
        except orjson.JSONDecodeError:
            pass
    return bool(lines) and objects * 2 > len(lines)


def _first_line_is_object(path: Path) -> bool:
    """JSON Lines start with a complete object on the first non-blank line; a pretty-printed JSON
    document (``{`` alone, or an object spread over lines) does not, so it is never read as JSONL."""
    with open(path, "rb") as fh:
        for raw in fh:
            raw = raw.removeprefix(b"\xef\xbb\xbf").strip()
            if not raw:
                continue
            if raw == b"{":
                return False
            if len(raw) > MAX_RECORD:
                return True  # one huge line: a JSONL record (it goes to quarantine for its size)
            try:
                return isinstance(orjson.loads(raw), dict)
            except orjson.JSONDecodeError:
                # a broken first line of a JSONL file still ends like a record on the same line
                return not raw.endswith((b"{", b"[", b","))
    return True


def read_head(path: Path, size: int = 1 << 16) -> str:
    with open(path, "rb") as fh:
        return fh.read(size).decode("utf-8", errors="replace")


def _decode_all(text: str) -> list[Any]:
    """Decode one or more JSON values written back to back (``{...}{...}``)."""
    values, pos, end = [], 0, len(text)
    while pos < end:
        while pos < end and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= end:
            break
        value, pos = _DECODER.raw_decode(text, pos)
        values.append(value)
    return values


def repair_line(text: str) -> tuple[list[Any], list[str]]:
    """Try the known repairs on a broken JSON line. Returns (values, what was done) or raises."""
    try:
        values = _decode_all(text)
        if len(values) > 1:
            return values, [f"split {len(values)} JSON values written on one line"]
        if values:
            return values, []
    except json.JSONDecodeError:
        pass
    except RecursionError:
        raise ValueError("nested too deeply") from None
    stripped = text.rstrip()
    for n in range(1, 4):
        try:
            values = _decode_all(stripped + "}" * n)
        except (json.JSONDecodeError, RecursionError):
            continue
        return values, [f"added {n} missing closing brace{'s' if n > 1 else ''}"]
    raise ValueError("unrepairable JSON")


def parse_line(lineno: int, raw: bytes) -> list[Item]:
    """The record(s) on one JSONL line: normally one; several if objects were glued together;
    one Item with an ``error`` if the line can't be repaired or decoded, or is too big."""
    if len(raw) > MAX_RECORD:
        return [too_big(lineno, raw)]
    try:
        obj = orjson.loads(raw)
        dups = duplicate_keys(raw, obj)
        return [Item(lineno, obj, recovered=[_dup_note(dups)] if dups else [])]
    except orjson.JSONDecodeError as exc:
        err = str(exc)
    text, note = decode_line(raw)
    if text is None:  # neither UTF-8 nor provably cp1252: quarantined, never turned into U+FFFD
        return [Item(lineno, raw=raw.decode("utf-8", errors="replace").rstrip("\r\n")[:2000], error=note)]
    text = text.rstrip("\r\n")
    notes = [note] if note else []
    if note:
        try:
            return [Item(lineno, orjson.loads(text), raw=text, recovered=notes)]
        except orjson.JSONDecodeError as exc:
            err = str(exc)
    if "ecursion" in err:
        return [Item(lineno, raw=text[:2000], error="JSON nested too deeply (over 1,000 levels)")]
    try:
        values, how = repair_line(text)
    except ValueError as exc:
        if "deeply" in str(exc):
            return [Item(lineno, raw=text[:2000], error="JSON nested too deeply")]
        return [Item(lineno, raw=text, error=f"invalid JSON: {err}")]
    return [Item(lineno, value, raw=text, recovered=notes + list(how)) for value in values]


def too_big(lineno: int, raw: bytes | str) -> Item:
    size = len(raw)
    head = raw[:2000] if isinstance(raw, str) else raw[:2000].decode("utf-8", errors="replace")
    return Item(lineno, raw=head + "…", error=f"record of {size / 2**20:.1f} MB is over the "
                f"{MAX_RECORD / 2**20:.0f} MB limit for one record (the full text stays in the source file)")


@dataclass(frozen=True, slots=True)
class Span:
    """Bytes ``[start, end)`` of a JSON Lines file, both on line starts (``end``: a line start or the
    file's end), and the 1-based number of the line at ``start``: the part of a big file one task
    reads (see :func:`line_start`). Records keep the file's own line numbers."""
    start: int
    end: int
    first_line: int = 1


def line_start(fh, pos: int, size: int) -> int:
    """The first line start at or after byte ``pos`` of the open binary file ``fh`` (``size`` bytes):
    ``pos`` itself when a newline precedes it, else the byte after the next newline (or ``size``).
    Ranges cut at ``line_start`` of fixed offsets cover every line exactly once."""
    if pos <= 0:
        return 0
    if pos >= size:
        return size
    fh.seek(pos - 1)
    at = pos - 1
    while chunk := fh.read(1 << 16):
        nl = chunk.find(b"\n")
        if nl >= 0:
            return at + nl + 1
        at += len(chunk)
    return size


def _span_lines(fh, span: Span | None) -> Iterator[bytes]:
    """The lines of ``fh`` (of its span only; a span ends on a line start, so no line is cut)."""
    if span is None:
        yield from fh
        return
    fh.seek(span.start)
    left = span.end - span.start
    for raw in fh:
        if left <= 0:
            return
        left -= len(raw)
        yield raw


def iter_jsonl_lines(path: Path, size: int, span: Span | None = None) -> Iterator[tuple[list[int], list[bytes]]]:
    """Non-blank lines in chunks of ``size``: (line numbers, raw lines). A leading BOM is removed."""
    nums: list[int] = []
    lines: list[bytes] = []
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(_span_lines(fh, span), span.first_line if span else 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            nums.append(lineno)
            lines.append(raw)
            if len(lines) >= size:
                yield nums, lines
                nums, lines = [], []
    if lines:
        yield nums, lines


def jsonl_blocks(path: Path, size: int = 16 << 20, span: Span | None = None) -> Iterator[bytes]:
    """Blocks of whole lines (bytes ending in a newline), in order: each ends at the last newline
    before the next multiple of ``size`` bytes (a longer line makes its block longer). A leading
    BOM is removed. With ``span``, only the lines of that byte range. Each block is read once, into
    its own bytes (the file is mapped only to find the newlines)."""
    start = span.start if span else 0
    with open(path, "rb") as fh:
        fd = fh.fileno()
        stop = os.fstat(fd).st_size if span is None else span.end
        if stop <= start:
            return
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mm:
            pos = start + 3 if (span is None or span.first_line == 1) and mm[start:start + 3] == b"\xef\xbb\xbf" \
                else start
            window = start
            while window < stop:
                window = min(window + size, stop)
                cut = mm.rfind(b"\n", pos, window)
                if cut >= 0:
                    block = os.pread(fd, cut + 1 - pos, pos)
                    yield block if len(block) == cut + 1 - pos else mm[pos:cut + 1]  # (a read stops at 2 GB)
                    pos = cut + 1
            tail = mm[pos:stop]
            if tail.strip():
                yield tail + b"\n"


def iter_jsonl(path: Path, span: Span | None = None) -> Iterator[Item]:
    """One JSON value per line (of ``span`` only, when given); blank lines are skipped (they hold no record)."""
    loads = orjson.loads
    for nums, lines in iter_jsonl_lines(path, 4096, span):
        for lineno, raw in zip(nums, lines):
            if len(raw) > MAX_RECORD:
                yield too_big(lineno, raw)
                continue
            try:
                obj = loads(raw)
            except orjson.JSONDecodeError:
                yield from parse_line(lineno, raw)
                continue
            dups = duplicate_keys(raw, obj)
            yield Item(lineno, obj, recovered=[_dup_note(dups)] if dups else [])


_KEY_RE = re.compile(rb'"\s*:')


def _count_keys(obj: Any) -> int:
    if isinstance(obj, dict):
        return len(obj) + sum(_count_keys(v) for v in obj.values())
    if isinstance(obj, list):
        return sum(_count_keys(v) for v in obj)
    return 0


def duplicate_keys(raw: bytes | str, obj: Any) -> list[str]:
    """Keys written twice in one JSON object of ``raw`` (the parser kept the last value). A cheap
    count of ``":`` against the keys parsed decides whether the exact check is needed at all."""
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    if not isinstance(obj, dict) or len(_KEY_RE.findall(data)) <= _count_keys(obj):
        return []
    dups: list[str] = []

    def hook(pairs):
        seen = set()
        for k, _ in pairs:
            if k in seen and k not in dups:
                dups.append(k)
            seen.add(k)
        return dict(pairs)

    try:
        json.loads(data, object_pairs_hook=hook)
    except (ValueError, RecursionError):
        return []
    return dups


def _dup_note(keys: list[str]) -> str:
    return f"duplicate key(s) {', '.join(repr(k) for k in keys)} in the object: the last value was kept"


def iter_json_array(path: Path) -> Iterator[Item]:
    """Stream the elements of a top-level JSON array without loading the whole file.

    An element that fails to parse is reported with its line and the parser resynchronises at the
    next element that starts at the same indentation.
    """
    with open(path, "r", encoding="utf-8-sig") as fh:  # the pipeline recodes non-UTF-8 files first
        buf = fh.read(CHUNK)
        pos = buf.find("[")
        if pos < 0:
            yield Item(1, raw=buf[:200], error="expected a JSON array")
            return
        line = 1 + buf.count("\n", 0, pos)
        pos += 1
        eof = False
        while True:
            buf, pos, line, eof = _skip(fh, buf, pos, line, eof, " \t\r\n,")
            if pos >= len(buf):
                yield Item(line, raw="", error="JSON array is not closed (file truncated?)")
                return
            if buf[pos] == "]":
                # what follows: nothing, another array (files concatenated: cat a.json b.json), or
                # text that is reported, never ignored
                buf, pos, line, eof = _skip(fh, buf, pos + 1, line, eof, " \t\r\n")
                if pos >= len(buf):
                    return
                if buf[pos] == "[":
                    pos += 1
                    continue
                yield Item(line, raw=buf[pos:pos + 2000],
                           error="text after the end of the JSON array (only another array may follow it)")
                return
            indent = _line_before(buf, pos)  # to resynchronise after a broken element (before a refill moves pos)
            while True:
                try:
                    value, end = _DECODER.raw_decode(buf, pos)
                    break
                except (json.JSONDecodeError, RecursionError) as exc:
                    deep = isinstance(exc, RecursionError)
                    # The element may just be cut by the buffer: read more, up to a sane bound.
                    if not deep and not eof and len(buf) - pos < MAX_ELEMENT and _maybe_cut(buf, exc):
                        buf, pos, eof = _refill(fh, buf, pos, grow=True)
                        continue
                    end = _resync(buf, pos, indent)
                    raw = buf[pos:end]
                    if deep:
                        why = "JSON nested too deeply"
                    elif len(raw) >= MAX_ELEMENT:
                        why = f"element over the {MAX_ELEMENT >> 20} MB limit for one record, or broken JSON"
                    else:
                        why = f"invalid JSON element: {exc.msg}"
                    yield Item(line, raw=raw[:2000], error=why)
                    line += raw.count("\n")
                    pos = end
                    value = _SKIP
                    break
            if value is _SKIP:
                continue
            n = buf.count("\n", pos, end)
            dups = duplicate_keys(buf[pos:end], value)
            yield Item(line, value, last=line + n, recovered=[_dup_note(dups)] if dups else [])
            line += n
            pos = end


_SKIP = object()


def _skip(fh, buf: str, pos: int, line: int, eof: bool, chars: str) -> tuple[str, int, int, bool]:
    """Move ``pos`` past ``chars`` (reading on at the buffer's end), counting newlines."""
    while True:
        while pos < len(buf) and buf[pos] in chars:
            if buf[pos] == "\n":
                line += 1
            pos += 1
        if pos < len(buf) or eof:
            return buf, pos, line, eof
        buf, pos, eof = _refill(fh, buf, pos)


def _refill(fh, buf: str, pos: int, grow: bool = False) -> tuple[str, int, bool]:
    more = fh.read(CHUNK if not grow else max(CHUNK, len(buf)))
    return buf[pos:] + more, 0, not more


def _maybe_cut(buf: str, exc: json.JSONDecodeError) -> bool:
    """Whether a decode error may only mean that the buffer ends inside the element: a string not
    closed, or an error within a literal's length of the buffer's end (``tr|ue``, ``12|34``, ``{"a": |``).
    Any other error is the element's own: growing the buffer to 64 MB for it made every later
    error cost a scan of the whole buffer (``JSONDecodeError`` counts the lines before its
    position): a 15 MB minified array with 2,000 broken elements took 8.3 s to read, 3.9 s now."""
    return exc.msg.startswith("Unterminated string") or len(buf) - exc.pos <= 32


def _line_before(buf: str, pos: int, width: int = 256) -> str:
    """What precedes ``pos`` on its line, at most ``width`` characters back: the indentation of a
    pretty-printed element. Bounded: in a minified array (one line) an unbounded look back scanned
    the whole buffer for every element (quadratic: a 15 MB array of 200,000 elements took 8.5 s to
    ingest, 2.9 s now)."""
    lo = max(0, pos - width)
    return buf[buf.rfind("\n", lo, pos) + 1 or lo:pos]


def _resync(buf: str, pos: int, indent: str) -> int:
    """Index of the next array element after a broken one. Pretty-printed (the element starts a
    line): the next '{' at the indentation it started at. Minified (it starts mid-line, after
    ``[`` or ``,``): the next ``,`` or ``]`` outside its brackets and strings (:func:`_separator`);
    an indentation search would find no next line and swallow every element after it."""
    if indent.strip():
        end = _separator(buf, pos)
        if end is not None:
            return end
    nxt = buf.find("\n" + indent + "{", pos + 1)
    return len(buf) if nxt < 0 else nxt + 1


_STRUCTURE = re.compile(r'[{}\[\]",]')
_STRING_REST = re.compile(r'(?:[^"\\\n]|\\.)*["\n]')  # to the closing quote (a JSON string holds no newline)


def _separator(buf: str, pos: int) -> int | None:
    """Index of the first ``,`` or ``]`` after ``pos`` at the array's level: brackets counted,
    strings skipped (a broken literal inside an object, a stray word); None when the
    buffer ends first (an unterminated string or bracket)."""
    depth, i = 0, pos
    while (m := _STRUCTURE.search(buf, i)) is not None:
        c, i = m.group(), m.end()
        if c == '"':
            rest = _STRING_REST.match(buf, i)
            if rest is None:
                return None
            i = rest.end()
        elif c in "{[":
            depth += 1
        elif depth > 0 and c in "}]":
            depth -= 1
        elif depth == 0 and c in ",]":
            return m.start()
    return None


def iter_text_lines(path: Path) -> Iterator[tuple[int, str | None, str | None]]:
    """(1-based line number, line without newline, note) of a UTF-8 text file, BOM removed. A line
    in provable cp1252 is decoded with a note; an undecodable one comes as (lineno, None, reason)."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if lineno == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            text, note = decode_line(raw)
            yield lineno, (text.rstrip("\r\n") if text is not None else None), note


def peek_objects(path: Path, container: str, n: int = 64) -> list[Any]:
    """The first ``n`` parsed values (broken ones skipped), for format detection."""
    it = iter_jsonl(path) if container == "jsonl" else iter_json_array(path)
    out = []
    for item in it:
        if item.error is None:
            out.append(item.obj)
        if len(out) >= n:
            break
    return out
