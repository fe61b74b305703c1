"""Progress bars for long work (rich), quiet when output is not a terminal or when asked.

rich is imported on first use (a bar that is shown, or ``console``): a quiet command (``-q``, or
output to a file) never loads it.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from typing import Any, Iterator


@functools.lru_cache(maxsize=1)
def _console():
    from rich.console import Console

    # Wide enough for the tables when output goes to a file or a CI log.
    return Console(stderr=True, width=None if sys.stderr.isatty() else 140)


def __getattr__(name: str) -> Any:
    if name == "console":  # ``from curate.progress import console``: made on first use
        return _console()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _show(enabled: bool | None) -> bool:
    """Whether a bar is drawn: as asked, else on a terminal unless ``-q`` silenced the console."""
    if enabled is None:
        return sys.stderr.isatty() and not _console().quiet
    return enabled


def quiet_option(f):
    """``-q/--quiet`` for a command that only reports on what it wrote: no progress bar, no summary
    (errors still print: they go through click, not this console)."""
    import click

    def silence(ctx, param, value):
        if value:
            console = _console()
            console.quiet = True
            ctx.call_on_close(lambda: setattr(console, "quiet", False))  # one invocation, not the process
        return value

    return click.option("-q", "--quiet", is_flag=True, expose_value=False, callback=silence,
                        help="No progress bar or summary (errors still print).")(f)


def _columns() -> list:
    from rich.progress import (BarColumn, MofNCompleteColumn, ProgressColumn, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Items per second."""

        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.0f}/s" if speed else "", style="progress.data.speed")

    return [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
            TimeElapsedColumn(), TimeRemainingColumn()]


class _Bar:
    def __init__(self, progress: Any, task):
        self._progress, self._task = progress, task

    def advance(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def update(self, **kw) -> None:
        if self._progress is not None:
            self._progress.update(self._task, **kw)


@contextlib.contextmanager
def bar(description: str, total: int | None = None, enabled: bool | None = None) -> Iterator[_Bar]:
    """``with bar("ingest", total=n) as b: b.advance(k)``: shows rate and ETA on a terminal."""
    if not _show(enabled):
        yield _Bar(None, None)
        return
    from rich.progress import Progress

    with Progress(*_columns(), console=_console(), transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield _Bar(progress, task)


class Stages:
    """Several bars in one display, one per stage of a command, each counting rows (rate, ETA)."""

    def __init__(self, progress: Any):
        self._progress = progress

    def stage(self, description: str, total: int | None) -> _Bar:
        if self._progress is None:
            return _Bar(None, None)
        return _Bar(self._progress, self._progress.add_task(description, total=total))


@contextlib.contextmanager
def stages(enabled: bool | None = None) -> Iterator[Stages]:
    """``with stages() as s: b = s.stage("rules", total=rows); b.advance(k)``: a bar per stage."""
    if not _show(enabled):
        yield Stages(None)
        return
    from rich.progress import Progress

    with Progress(*_columns(), console=_console(), transient=False) as progress:
        yield Stages(progress)
