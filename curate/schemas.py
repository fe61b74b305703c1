"""The canonical schemas every stage reads and writes.

Four kinds of row, one polars schema each:

* ``sft``  single turn: ``instruction``, ``input``, ``output``
* ``chat`` multi-turn: ``messages`` (ordered ``{role, content}``; roles system/user/assistant)
* ``rm``   reward model: ``prompt``, ``completions`` and ``ranks`` (``ranks[i]`` is the rank of
  ``completions[i]``, 0 = best, ties allowed; null when nobody ranked them yet)
* ``ppo``  prompt only: ``prompt``

Every row also carries the common columns:

* ``id``     stable content id: blake2b-64 of the kind and content fields, hex. The same content
  gives the same id on any machine and in any run. It is computed once, at ingest, and then
  carried through every stage, so a translated or cleaned row keeps the id of its origin.
* ``lang``   language code of the row's text (``ms``, ``id``, ``en``, ``ko``, ``other``, ``und``)
* ``source`` the input file, ``format`` the source format, ``line`` the 1-based line where the
  record starts (for JSON arrays: the line of its opening brace)
* ``meta``   a JSON object (stored as a string) where stages add what they know: recoveries at
  ingest, fixes (before/after), flags, the original text before translation, critiques, scores.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable

import orjson
import polars as pl

KINDS = ("sft", "chat", "rm", "ppo")
#: Bumped when a column is added, removed or changes type; recorded in every dataset manifest.
SCHEMA_VERSION = 1

MESSAGE = pl.Struct({"role": pl.String, "content": pl.String})

COMMON: dict[str, pl.DataType] = {
    "id": pl.String,
    "kind": pl.String,
    "lang": pl.String,
    "source": pl.String,
    "format": pl.String,
    "line": pl.Int64,
    "meta": pl.String,
}

CONTENT: dict[str, dict[str, pl.DataType]] = {
    "sft": {"instruction": pl.String, "input": pl.String, "output": pl.String},
    "chat": {"messages": pl.List(MESSAGE)},
    "rm": {"prompt": pl.String, "completions": pl.List(pl.String), "ranks": pl.List(pl.Int64)},
    "ppo": {"prompt": pl.String},
}

# Fields whose value is the row's identity (ranks are a judgement about the content, not content).
ID_FIELDS: dict[str, tuple[str, ...]] = {
    "sft": ("instruction", "input", "output"),
    "chat": ("messages",),
    "rm": ("prompt", "completions"),
    "ppo": ("prompt",),
}

# The text a human would read first, used for language identification and reports.
MAIN_TEXT: dict[str, str] = {"sft": "output", "chat": "messages", "rm": "prompt", "ppo": "prompt"}


def schema(kind: str) -> pl.Schema:
    """The full polars schema (common + content columns) of a kind."""
    check_kind(kind)
    return pl.Schema({**COMMON, **CONTENT[kind]})


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")


def content_id(kind: str, row: dict[str, Any]) -> str:
    """Stable id of a row's content: blake2b-64 over canonical JSON of the kind and id fields."""
    payload = [kind]
    for field in ID_FIELDS[kind]:
        value = row.get(field)
        if field == "messages" and value is not None:
            value = [[m["role"], m["content"]] for m in value]
        payload.append(value)
    return hashlib.blake2b(orjson.dumps(payload), digest_size=8).hexdigest()


def content_ids(kind: str, cols: dict[str, list]) -> list[str]:
    """:func:`content_id` for whole columns at once (the same ids, faster)."""
    # polars-hash has no blake2b and its fastest hash saves ~0.6 s CPU per 1M rows: not worth
    # changing every id (docs/libraries.md, bench/libs.py ids).
    blake, dumps = hashlib.blake2b, orjson.dumps
    fields = [cols[f] for f in ID_FIELDS[kind]]
    if kind == "chat":
        fields = [[None if m is None else [[x["role"], x["content"]] for x in m] for m in fields[0]]]
    return [blake(dumps((kind, *values)), digest_size=8).hexdigest() for values in zip(*fields)]


def frame_ids(kind: str, df: pl.DataFrame) -> pl.Series:
    """:func:`content_ids` of a frame's rows (its id-field columns), as a String Series named ``id``.
    Kinds whose id fields are all strings (sft, ppo) are hashed by a compiled kernel straight from
    the columns' Arrow buffers (:mod:`curate.content_id_jit`: the same ids, no Python object per row)."""
    from curate import content_id_jit

    fields = ID_FIELDS[kind]
    if content_id_jit.AVAILABLE and all(df.schema[f] == pl.String for f in fields):
        arrays = [df[f].to_arrow(compat_level=pl.CompatLevel.newest()) for f in fields]
        return pl.Series("id", content_id_jit.ids(kind, arrays), dtype=pl.String)
    return pl.Series("id", content_ids(kind, {f: df[f].to_list() for f in fields}), dtype=pl.String)


def empty(kind: str) -> pl.DataFrame:
    return pl.DataFrame(schema=schema(kind))


def from_rows(kind: str, rows: Iterable[dict[str, Any]]) -> pl.DataFrame:
    """Build a frame of a kind from row dicts (missing columns become null, ids computed if absent)."""
    sch = schema(kind)
    cols: dict[str, list] = {name: [] for name in sch}
    for row in rows:
        if not row.get("id"):
            row = {**row, "id": content_id(kind, row)}
        row.setdefault("kind", kind)
        for name in sch:
            value = row.get(name)
            if name == "meta" and value is not None and not isinstance(value, str):
                value = orjson.dumps(value).decode()
            cols[name].append(value)
    return pl.DataFrame(cols, schema=sch)


def conform(df: pl.DataFrame | pl.LazyFrame, kind: str):
    """Select and cast a frame to the canonical schema of ``kind`` (extra columns are kept last)."""
    sch = schema(kind)
    names = df.collect_schema().names() if isinstance(df, pl.LazyFrame) else df.columns
    missing = [pl.lit(None, dtype=t).alias(n) for n, t in sch.items() if n not in names]
    if missing:
        df = df.with_columns(missing)
    extra = [n for n in names if n not in sch]
    return df.select([pl.col(n).cast(t) for n, t in sch.items()] + extra)


def kind_of(df: pl.DataFrame | pl.LazyFrame) -> str:
    """Infer the kind of a frame from its columns."""
    names = set(df.collect_schema().names() if isinstance(df, pl.LazyFrame) else df.columns)
    for kind in ("chat", "rm", "sft", "ppo"):
        if set(CONTENT[kind]) <= names:
            return kind
    raise ValueError(f"not a curate frame: columns {sorted(names)} match no kind of {KINDS}")


def meta_of(value: str | None) -> dict[str, Any]:
    """Parse a ``meta`` cell (None or JSON text) into a dict."""
    return orjson.loads(value) if value else {}


def meta_json(value: dict[str, Any]) -> str | None:
    return orjson.dumps(value).decode() if value else None


def merge_meta(current: str | None, **updates: Any) -> str | None:
    """Return ``current`` meta with ``updates`` merged in (list values are appended)."""
    meta = meta_of(current)
    for key, value in updates.items():
        if isinstance(value, list) and isinstance(meta.get(key), list):
            meta[key] = meta[key] + value
        else:
            meta[key] = value
    return meta_json(meta)


def describe() -> str:
    """Human-readable description of all schemas (used by ``curate schemas``)."""
    lines = []
    for kind in KINDS:
        lines.append(f"{kind}:")
        for name, dtype in schema(kind).items():
            lines.append(f"  {name:<12} {dtype}")
    return "\n".join(lines)
