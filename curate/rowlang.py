"""The ``lang`` column: the language of each row's text, from :mod:`curate.langid` (whole columns
at once: :func:`curate.langid.detect_column`)."""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from functools import lru_cache
from typing import Callable

import polars as pl

from curate import row_text_jit, schemas

SAMPLE_CHARS = 600  # enough text to decide; keeps language id fast on long rows


#: Kinds whose row text is plain text columns joined by a newline, and those columns.
JOINED_COLUMNS = {"sft": ("instruction", "input", "output"), "ppo": ("prompt",)}


def text_expr(kind: str) -> pl.Expr:
    """An expression giving the text that decides a row's language."""
    if kind == "sft":
        expr = pl.concat_str([pl.col(c) for c in JOINED_COLUMNS[kind]], separator="\n", ignore_nulls=True)
    elif kind == "chat":
        expr = pl.col("messages").list.eval(pl.element().struct.field("content")).list.join("\n")
    elif kind == "rm":
        expr = pl.concat_str([pl.col("prompt"), pl.col("completions").list.join("\n")],
                             separator="\n", ignore_nulls=True)
    else:
        expr = pl.col("prompt")
    return expr.str.slice(0, SAMPLE_CHARS)


def add_lang(df: pl.DataFrame, kind: str | None = None) -> pl.DataFrame:
    """Fill the ``lang`` column by language identification of each row's text."""
    return start_lang(df, kind)()


def start_lang(df: pl.DataFrame, kind: str | None = None, worker=None) -> Callable[[], pl.DataFrame]:
    """:func:`add_lang` in two steps: the cheap steps of language id run in a background thread
    (the compiled scan and polars release the GIL, so the caller goes on reading the next frame
    meanwhile) and hand the undecided texts to lingua (in ``worker``, a helper process, when given:
    :func:`curate.langid.start_detect_column`); the returned function waits for both and gives the
    frame, and its ``ready()`` tells whether it would wait. Frames are worked on in the order they
    are started."""
    kind = kind or schemas.kind_of(df)
    if df.height == 0:
        done = lambda: df  # noqa: E731
        done.ready = lambda: True  # type: ignore[attr-defined]
        return done
    job = _lang_thread().submit(_start_detect, df, kind, worker)

    def finish() -> pl.DataFrame:
        return df.with_columns(job.result()()["lang"])

    def ready() -> bool:
        """Whether ``finish()`` would give the frame without waiting (for the thread or for lingua)."""
        return job.done() and (job.exception() is not None or getattr(job.result(), "ready", lambda: True)())

    finish.ready = ready  # type: ignore[attr-defined]
    return finish


class _LangThread:
    """One daemon thread running jobs in the order they are submitted. A daemon, unlike a
    ``ThreadPoolExecutor``'s worker, does not keep the interpreter's normal exit waiting for it
    (``curate.cli`` ends a command without the slow teardown only when no other thread runs); every
    job's caller waits for its result before the command ends."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._run, name="curate-lang", daemon=True).start()

    def submit(self, fn: Callable, *args) -> Future:
        job: Future = Future()
        self.jobs.put((job, fn, args))
        return job

    def _run(self) -> None:
        while True:
            job, fn, args = self.jobs.get()
            if job.set_running_or_notify_cancel():
                try:
                    job.set_result(fn(*args))
                except BaseException as exc:  # handed to the caller of job.result()
                    job.set_exception(exc)


@lru_cache(maxsize=1)
def _lang_thread() -> _LangThread:
    return _LangThread()


def _start_detect(df: pl.DataFrame, kind: str, worker) -> Callable[[], pl.DataFrame]:
    from curate import langid

    columns = JOINED_COLUMNS.get(kind)
    if columns is not None and row_text_jit.AVAILABLE and all(df.schema[c] == pl.String for c in columns):
        # the texts' bytes made in one compiled pass from the columns' own (what text_expr gives)
        data, offsets = row_text_jit.join_cut([df.get_column(c) for c in columns], "\n", SAMPLE_CHARS)
        return langid.start_detect_utf8(data, offsets, worker=worker)
    texts = df.select(text_expr(kind).fill_null("").alias("t"))["t"]
    return langid.start_detect_column(texts, worker=worker)
