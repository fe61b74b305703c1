"""The reply cache: SQLite in WAL mode, one row per answered request, committed as it arrives.

Durability: :meth:`Cache.put` commits in the caller's thread (autocommit, one short transaction,
tens of microseconds with ``synchronous=NORMAL``) the moment a reply has been read, before anything
checks or parses it, so a ``kill -9`` at any point loses only replies not yet read off the socket.

The key is a hash of the full request body (model, messages, every parameter), so a changed input,
prompt, model or parameter is a different request, and the same request is never paid for twice.
Only successful HTTP replies are stored (whether or not the stage later accepts them: the stage's
validator runs again on every run). Transport failures are never stored, so a re-run retries them.
Errors from Batch API result files are stored apart (``batch_errors``) so a stage can quarantine
them. Neither table holds anything secret: no API key, no headers.

Several processes may share one cache file (WAL allows concurrent readers and one writer).
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import orjson

from curate.errors import UserError

SCHEMA = """
CREATE TABLE IF NOT EXISTS replies (
    key TEXT PRIMARY KEY,
    model TEXT,
    text TEXT,
    finish TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    origin TEXT,
    created REAL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT
);
CREATE TABLE IF NOT EXISTS batch_errors (
    key TEXT PRIMARY KEY,
    error TEXT,
    created REAL
);
"""


def request_key(body: dict[str, Any]) -> str:
    """Stable hash of a request body (canonical JSON, sorted keys): the cache key and custom_id."""
    return hashlib.blake2b(orjson.dumps(body, option=orjson.OPT_SORT_KEYS), digest_size=16).hexdigest()


@dataclass(slots=True)
class Reply:
    """One model reply: its text, why it stopped, token usage, and whether it came from the cache."""

    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    origin: str = "live"  # live | batch


def _set_wal(db: sqlite3.Connection, wait: float = 60.0) -> None:
    """Switch to WAL. Several processes opening one cache at once (Ray actors) can get "database is
    locked" here without SQLite's busy handler waiting, so wait and retry as the busy timeout would."""
    deadline = time.monotonic() + wait
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


_TABLES = {"replies", "meta", "batch_errors"}


def _check_is_cache(db: sqlite3.Connection, path: Path) -> None:
    """Refuse a file that is not a reply cache before anything is written to it: not SQLite at all
    (sqlite3.DatabaseError), or another program's database (its tables, none of a cache's)."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if tables and not tables & _TABLES:
        raise UserError(f"{path}: an SQLite database of something else (tables {', '.join(sorted(tables)[:5])}), "
                        "not a curate reply cache; give another --cache path")


class Cache:
    """``get(key) -> Reply | None``, ``put(key, model, reply)``; a no-op cache when ``path`` is None."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self._db: sqlite3.Connection | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, timeout=60, check_same_thread=False)
            try:
                _check_is_cache(db, self.path)
                _set_wal(db)
                db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a committed reply survives kill -9
                db.executescript(SCHEMA)
                self._has_errors = db.execute("SELECT 1 FROM batch_errors LIMIT 1").fetchone() is not None
            except sqlite3.DatabaseError as exc:
                db.close()
                if "locked" in str(exc):
                    raise
                raise UserError(f"{self.path}: the reply cache cannot be used ({exc}); give another --cache "
                                "path, or move this file away to start an empty cache (its replies would "
                                "be paid for again)") from None
            self._db = db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @staticmethod
    def _reply(row) -> Reply:
        return Reply(text=row[1], finish_reason=row[2], prompt_tokens=row[3] or 0,
                     completion_tokens=row[4] or 0, cached=True, origin=row[5] or "live")

    def get(self, key: str) -> Reply | None:
        if self._db is None:
            return None
        row = self._db.execute("SELECT key, text, finish, prompt_tokens, completion_tokens, origin "
                               "FROM replies WHERE key = ?", (key,)).fetchone()
        return self._reply(row) if row else None

    def get_many(self, keys: Iterable[str]) -> dict[str, Reply]:
        if self._db is None:
            return {}
        keys = list(dict.fromkeys(keys))
        found: dict[str, Reply] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._db.execute("SELECT key, text, finish, prompt_tokens, completion_tokens, origin "
                                        f"FROM replies WHERE key IN ({marks})", chunk):
                found[row[0]] = self._reply(row)
        return found

    def put(self, key: str, model: str, reply: Reply) -> None:
        if self._db is None:
            return
        self._db.execute("INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (key, model, reply.text, reply.finish_reason, reply.prompt_tokens,
                          reply.completion_tokens, reply.origin, time.time()))
        if self._has_errors:  # one statement (one commit) per reply on the common path
            self._db.execute("DELETE FROM batch_errors WHERE key = ?", (key,))

    def put_error(self, key: str, error: str) -> None:
        if self._db is None:
            return
        self._db.execute("INSERT OR REPLACE INTO batch_errors VALUES (?, ?, ?)", (key, error, time.time()))
        self._has_errors = True

    def get_error(self, key: str) -> str | None:
        if self._db is None or not self._has_errors:
            return None
        row = self._db.execute("SELECT error FROM batch_errors WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def count(self) -> int:
        if self._db is None:
            return 0
        return self._db.execute("SELECT count(*) FROM replies").fetchone()[0]

    def get_meta(self, key: str) -> str | None:
        """A small fact remembered across runs (e.g. that a server rejects ``response_format``)."""
        if self._db is None:
            return None
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        if self._db is not None:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
