"""What a source format is, and the shared checks every JSON record goes through."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar, Iterator

from curate.ingest.readers import Item
from curate.text import fix_literal_newlines


class Reject(Exception):
    """A record that cannot become a row; it goes to quarantine with this reason and evidence."""

    def __init__(self, code: str, reason: str, evidence: Any = None):
        super().__init__(reason)
        self.code, self.reason, self.evidence = code, reason, evidence


class Record:
    """Accumulates what a format's ``convert`` learns about one record besides its content."""

    __slots__ = ("recovered", "extra", "info")

    def __init__(self, recovered: list[str] | None = None):
        self.recovered = list(recovered or [])
        self.extra: dict[str, Any] = {}
        self.info: dict[str, Any] = {}

    def meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = dict(self.info)
        if self.recovered:
            meta["recovered"] = self.recovered
        if self.extra:
            meta["extra"] = self.extra
        return meta


class SourceFormat:
    """One source format: how to recognise it and how to turn one record into canonical rows.

    Subclasses set ``name``, ``kind`` and ``summary`` and implement ``score`` and ``convert``
    (JSON formats) or ``items`` (text formats, ``container = "text"``).
    """

    name: ClassVar[str]
    kind: ClassVar[str]
    summary: ClassVar[str]
    container: ClassVar[str] = "json"

    # -- detection -------------------------------------------------------------------------
    def score(self, sample: list[Any]) -> float:
        """0..1: how well a sample of parsed records (or, for text formats, the head text) fits."""
        raise NotImplementedError

    # -- conversion ------------------------------------------------------------------------
    #: Optional fast path for flat JSONL formats: given a chunk parsed by polars, a Boolean Series
    #: of the rows that need nothing but reading (no repair, no extra key), or None if the chunk's
    #: columns don't fit. ``fast_content`` then maps those rows to the content columns; the result
    #: must equal what ``convert`` gives for the same rows.
    fast_columns = None
    #: The polars schema the fast path parses with (every key the format knows, as String).
    fast_schema: ClassVar[dict] = {}

    def fast_content(self, df):
        raise NotImplementedError

    def convert(self, obj: dict[str, Any], rec: Record) -> list[dict[str, Any]]:
        """Content fields of the row(s) this record becomes; raise :class:`Reject` if none."""
        raise NotImplementedError

    def items(self, path: Path) -> Iterator[Item]:
        """Text formats: yield one Item per record with ``obj`` already structured."""
        raise NotImplementedError


# -- helpers formats share -----------------------------------------------------------------

def data_objects(sample: list[Any]) -> list[dict]:
    """The records of a sample that carry data (not ``{}``, not ``{"message": ...}``)."""
    return [o for o in sample if isinstance(o, dict) and o and set(o) != {"message"}]


def key_score(sample: list[Any], required: set[str], forbidden: set[str] = frozenset()) -> float:
    objs = data_objects(sample)
    if not objs:
        return 0.0
    hits = sum(1 for o in objs if required <= o.keys() and not (forbidden & o.keys()))
    return hits / len(objs)


def precheck(obj: Any) -> dict[str, Any]:
    """Checks common to every JSON format. Returns the object to convert, or raises Reject."""
    if not isinstance(obj, dict):
        raise Reject("not_an_object", f"expected a JSON object, got {type(obj).__name__}", obj)
    if not obj:
        raise Reject("empty_object", "empty object {}", "{}")
    if set(obj) == {"message"}:
        raise Reject("message_row", "a {\"message\": ...} row (refusal or note), not data", obj["message"])
    return obj


def unwrap_nested(obj: dict[str, Any], keys: set[str], rec: Record) -> dict[str, Any]:
    """``{"prompt": {"prompt": ..., "response": ...}}``: the real record was nested in a field."""
    if len(obj) == 1:
        (key, inner), = obj.items()
        if isinstance(inner, dict) and keys & inner.keys():
            rec.recovered.append(f"unwrapped the record nested inside '{key}'")
            return inner
    return obj


def text(obj: dict[str, Any], key: str, rec: Record, *, required: bool = True, default: str = "") -> str:
    """A string field, with literal ``\\n`` repaired (and recorded)."""
    value = obj.get(key)
    if value is None:
        if required:
            raise Reject(f"missing_{key}", f"missing '{key}'", sorted(obj))
        return default
    if not isinstance(value, str):
        if isinstance(value, float) and not math.isfinite(value):
            raise Reject(f"bad_{key}", f"'{key}' is {value} (NaN/Infinity), not text", str(value))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
            rec.recovered.append(f"'{key}' was a number; kept as text")
        else:
            raise Reject(f"bad_{key}", f"'{key}' is {type(value).__name__}, not text", value)
    fixed, n = fix_literal_newlines(value)
    if n:
        rec.recovered.append(f"'{key}': {n} literal \\n turned into newlines")
    return fixed


#: A regex (polars) for text that :func:`curate.text.fix_literal_newlines` may change: a backslash
#: before ``n`` or ``t``. tests/test_ingest.py checks that it changes no other text.
LITERAL_ESCAPE = r"\\[nt]"
#: What else sends a fast row to the general path: a NUL, which polars also makes of a lone UTF-16
#: surrogate escape (``"\ud800"`` reads as ``"\x00"``), a record the general path quarantines.
_GENERAL = LITERAL_ESCAPE + r"|\x00"


def plain_text_rows(df, required: tuple[str, ...], optional: tuple[str, ...] = ()):
    """For fast paths: rows whose fields are all plain strings needing no repair, or None when the
    chunk has other columns or types. A backslash before ``n`` or ``t`` anywhere sends the row to
    the general path, which knows about literal ``\\n`` (:func:`curate.text.fix_literal_newlines`
    changes no text without one; other backslashes, e.g. ``C:\\dir`` or ``\\frac``, stay fast), and
    so does a NUL (see :data:`_GENERAL`)."""
    import polars as pl

    allowed = set(required) | set(optional)
    if not set(required) <= set(df.columns) or not set(df.columns) <= allowed:
        return None
    if any(df.schema[c] != pl.String for c in df.columns):
        return None
    ok = pl.all_horizontal([pl.col(c).is_not_null() for c in required])
    ok = ok & ~pl.any_horizontal([pl.col(c).str.contains(_GENERAL).fill_null(False) for c in df.columns])
    return df.select(ok.alias("ok"))["ok"]


def keep_extra(obj: dict[str, Any], known: set[str], rec: Record) -> None:
    for key, value in obj.items():
        if key not in known:
            rec.extra[key] = value
