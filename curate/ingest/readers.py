"""Tolerant, streaming readers for JSON containers.

They yield :class:`Item` objects, one per record, each with the 1-based line where the record
starts. A line that is not valid JSON is repaired where the damage is a known one (two objects
glued on one line, a missing closing brace) and the repair is recorded; otherwise it is yielded
with an ``error`` so the caller can quarantine it. Nothing is skipped silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import orjson

_DECODER = json.JSONDecoder()
CHUNK = 1 << 20
MAX_ELEMENT = 64 << 20


@dataclass(slots=True)
class Item:
    line: int
    obj: Any = None
    raw: str | None = None
    error: str | None = None
    recovered: list[str] = field(default_factory=list)


def sniff_container(path: Path, head: str) -> str:
    """'array' (one JSON array, whatever the file is called), 'jsonl' (a value per line) or 'text'."""
    stripped = head.lstrip("\ufeff \t\r\n")
    if stripped.startswith("["):
        return "array"
    if stripped.startswith("{"):
        return "jsonl"
    return "text"


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
    stripped = text.rstrip()
    for n in range(1, 4):
        try:
            values = _decode_all(stripped + "}" * n)
        except json.JSONDecodeError:
            continue
        return values, [f"added {n} missing closing brace{'s' if n > 1 else ''}"]
    raise ValueError("unrepairable JSON")


def parse_line(lineno: int, raw: bytes) -> list[Item]:
    """The record(s) on one JSONL line: normally one; several if objects were glued together;
    one Item with an ``error`` if the line can't be repaired."""
    try:
        return [Item(lineno, orjson.loads(raw))]
    except orjson.JSONDecodeError as exc:
        err = str(exc)
    text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
    try:
        values, how = repair_line(text)
    except ValueError:
        return [Item(lineno, raw=text, error=f"invalid JSON: {err}")]
    return [Item(lineno, value, raw=text, recovered=list(how)) for value in values]


def iter_jsonl_lines(path: Path, size: int) -> Iterator[tuple[list[int], list[bytes]]]:
    """Non-blank lines in chunks of ``size``: (line numbers, raw lines). A leading BOM is removed."""
    nums: list[int] = []
    lines: list[bytes] = []
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
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


def iter_jsonl_blocks(path: Path, size: int = 16 << 20) -> Iterator[tuple[int, bytes]]:
    """Blocks of whole lines: (1-based number of the block's first line, bytes ending in a newline).
    A leading BOM is removed."""
    lineno, rest, first = 1, b"", True
    with open(path, "rb") as fh:
        while True:
            data = fh.read(size)
            if first:
                data = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
                first = False
            if not data:
                if rest.strip():
                    yield lineno, rest + b"\n"
                return
            buf = rest + data
            cut = buf.rfind(b"\n")
            if cut < 0:
                rest = buf
                continue
            block, rest = buf[:cut + 1], buf[cut + 1:]
            yield lineno, block
            lineno += block.count(b"\n")


def iter_jsonl(path: Path) -> Iterator[Item]:
    """One JSON value per line; blank lines are skipped (they hold no record)."""
    loads = orjson.loads
    for nums, lines in iter_jsonl_lines(path, 4096):
        for lineno, raw in zip(nums, lines):
            try:
                yield Item(lineno, loads(raw))
            except orjson.JSONDecodeError:
                yield from parse_line(lineno, raw)


def iter_json_array(path: Path) -> Iterator[Item]:
    """Stream the elements of a top-level JSON array without loading the whole file.

    An element that fails to parse is reported with its line and the parser resynchronises at the
    next element that starts at the same indentation.
    """
    with open(path, "r", encoding="utf-8-sig", errors="replace") as fh:
        buf = fh.read(CHUNK)
        pos = buf.find("[")
        if pos < 0:
            yield Item(1, raw=buf[:200], error="expected a JSON array")
            return
        line = 1 + buf.count("\n", 0, pos)
        pos += 1
        eof = False
        while True:
            # skip separators
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n,":
                    if buf[pos] == "\n":
                        line += 1
                    pos += 1
                if pos < len(buf) or eof:
                    break
                buf, pos, eof = _refill(fh, buf, pos)
            if pos >= len(buf):
                yield Item(line, raw="", error="JSON array is not closed (file truncated?)")
                return
            if buf[pos] == "]":
                return
            indent = buf[buf.rfind("\n", 0, pos) + 1:pos]  # to resynchronise after a broken element
            while True:
                try:
                    value, end = _DECODER.raw_decode(buf, pos)
                    break
                except json.JSONDecodeError as exc:
                    # The element may just be cut by the buffer: read more, up to a sane bound.
                    if not eof and len(buf) - pos < MAX_ELEMENT:
                        buf, pos, eof = _refill(fh, buf, pos, grow=True)
                        continue
                    end = _resync(buf, pos, indent)
                    raw = buf[pos:end]
                    yield Item(line, raw=raw[:2000], error=f"invalid JSON element: {exc.msg}")
                    line += raw.count("\n")
                    pos = end
                    value = _SKIP
                    break
            if value is _SKIP:
                continue
            yield Item(line, value)
            line += buf.count("\n", pos, end)
            pos = end


_SKIP = object()


def _refill(fh, buf: str, pos: int, grow: bool = False) -> tuple[str, int, bool]:
    more = fh.read(CHUNK if not grow else max(CHUNK, len(buf)))
    return buf[pos:] + more, 0, not more


def _resync(buf: str, pos: int, indent: str) -> int:
    """Index of the next array element after a broken one: a '{' at the indentation it started at."""
    nxt = buf.find("\n" + indent + "{", pos + 1)
    return len(buf) if nxt < 0 else nxt + 1


def iter_text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without newline) of a UTF-8 text file, BOM removed."""
    with open(path, "r", encoding="utf-8-sig", errors="replace", newline="") as fh:
        for lineno, line in enumerate(fh, 1):
            yield lineno, line.rstrip("\r\n")


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
