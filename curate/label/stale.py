"""What a push changed, and answers given to text that has changed since.

``push`` reads the records already in the dataset and compares each row with the one the record
holds (``curate_row``): new, changed or unchanged. When the text annotators read (the record's
fields) changes on a record that already has answers, push stores every such answer's id and
``updated_at`` in the record's extra metadata (``curate_answered_before``). ``pull`` then treats an
answer still listed there with the same ``updated_at`` as given to the old text: it marks the
row (``meta.stale_annotation``) and counts it. An annotator who answers again after the change
moves ``updated_at`` on, and that answer is current again. No clocks are compared.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from curate.label import settings as S

KEY = "curate_answered_before"   # extra metadata: JSON {response id: updated_at}


def digest(value: Any) -> str:
    """A short hash of a JSON value, independent of key order."""
    return hashlib.blake2b(orjson.dumps(value, option=orjson.OPT_SORT_KEYS), digest_size=16).hexdigest()


@dataclass
class Stored:
    """What one record in the dataset holds, for comparing with a row being pushed."""
    row: str                                   # digest of the row it was pushed from
    fields: str                                # digest of its fields (the text annotators read)
    answered_before: dict[str, str] = field(default_factory=dict)
    answers: dict[str, str] = field(default_factory=dict)   # its answers now: id -> updated_at


def answered_before(record: dict[str, Any]) -> dict[str, str]:
    raw = (record.get("metadata") or {}).get(KEY)
    try:
        value = orjson.loads(raw) if isinstance(raw, str) else raw
    except orjson.JSONDecodeError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def stored_records(records: list[dict[str, Any]], task: str, kind: str) -> dict[str, Stored]:
    """Record id (= row id) -> :class:`Stored`, for the records curate pushed."""
    out: dict[str, Stored] = {}
    for rec in records:
        raw = (rec.get("metadata") or {}).get(S.ROW_KEY)
        if not raw or rec.get("external_id") is None:
            continue
        row = orjson.loads(raw)
        out[str(rec["external_id"])] = Stored(
            row=digest(row), fields=digest(S.record_fields(task, row.get("kind") or kind, row)),
            answered_before=answered_before(rec),
            answers={str(r["id"]): str(r.get("updated_at")) for r in rec.get("responses") or []})
    return out


def compare(stored: Stored | None, row: dict[str, Any], fields: dict[str, Any]) -> tuple[str, dict[str, str], bool]:
    """``(created | changed | unchanged, answered-before map to keep, answers made stale now)``."""
    if stored is None:
        return "created", {}, False
    if digest(fields) != stored.fields:
        return "changed", {**stored.answered_before, **stored.answers}, bool(stored.answers)
    state = "unchanged" if digest(row) == stored.row else "changed"
    return state, stored.answered_before, False


def metadata(before: dict[str, str]) -> dict[str, str]:
    """The extra metadata that carries the map (nothing when it is empty)."""
    return {KEY: orjson.dumps(before).decode()} if before else {}


def stale_answers(record: dict[str, Any], answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The answers among ``answers`` that were given before the record's text last changed."""
    before = answered_before(record)
    return [r for r in answers if before.get(str(r.get("id"))) == str(r.get("updated_at"))]
