"""The reply cache: SQLite in WAL mode, one row per answered request, committed as it arrives.

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
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import orjson

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


class Cache:
    """``get(key) -> Reply | None``, ``put(key, model, reply)``; a no-op cache when ``path`` is None."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self._db: sqlite3.Connection | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, timeout=60, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a committed reply survives kill -9
            db.executescript(SCHEMA)
            self._db = db
            self._has_errors = db.execute("SELECT 1 FROM batch_errors LIMIT 1").fetchone() is not None

    def close(self) -> None:
        self.flush()
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
            self._writer = None
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- writes off the event loop: a writer thread commits each reply as soon as it is queued
    #    (replies queued together share one transaction), so the loop never waits on the disk.
    _writer: threading.Thread | None = None

    def put_soon(self, key: str, model: str, reply: Reply) -> None:
        """Queue ``reply`` for a commit within milliseconds, from a writer thread."""
        if self._db is None:
            return
        if self._writer is None:
            self._queue: queue.Queue = queue.Queue()
            self._write_error: BaseException | None = None
            self._writer = threading.Thread(target=self._write_loop, name="curate-llm-cache", daemon=True)
            self._writer.start()
        self._queue.put((key, model, reply))

    def flush(self) -> None:
        """Wait until every queued reply is committed."""
        if self._writer is not None:
            self._queue.join()
            if self._write_error is not None:
                raise self._write_error

    def _write_loop(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, timeout=60)
        db.execute("PRAGMA synchronous=NORMAL")
        while True:
            item = self._queue.get()
            if item is None:
                self._queue.task_done()
                break
            items = [item]
            while True:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    self._queue.task_done()
                    break
                items.append(nxt)
            try:
                db.execute("BEGIN")
                db.executemany("INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                               [(k, m, r.text, r.finish_reason, r.prompt_tokens, r.completion_tokens, r.origin,
                                 time.time()) for k, m, r in items])
                if self._has_errors:
                    db.executemany("DELETE FROM batch_errors WHERE key = ?", [(k,) for k, _, _ in items])
                db.execute("COMMIT")
            except BaseException as exc:  # noqa: BLE001 - surfaced by flush()
                self._write_error = exc
            finally:
                for _ in items:
                    self._queue.task_done()
        db.close()

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
