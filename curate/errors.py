"""Errors a user can act on, and the exit codes every command uses (one place; README documents them).

The CLI prints a :class:`UserError` as one clear message, never a traceback (``curate --debug``
shows one), and exits with its ``exit_code``:

* ``0`` (:data:`EXIT_OK`): the stage finished and every row came out (rows the rules dropped on
  purpose are in quarantine: still 0).
* ``1`` (:data:`EXIT_USER`): a user error (bad input, bad option value, missing file); nothing was written.
* ``2`` (:data:`EXIT_USAGE`): a usage error (Click's own code for unknown options and missing arguments).
* ``3`` (:data:`EXIT_MODEL`): the stage finished, but some rows were quarantined because of the
  model's replies (invalid JSON, wrong language, lost placeholders...): see ``quarantine.jsonl``.
* ``4`` (:data:`EXIT_ENV`): stopped, or rows quarantined, because of the environment: the endpoint
  refused the credentials, the model does not exist, the server is unreachable or keeps failing,
  the request budget ran out, the disk is full. Everything answered so far is in the reply cache:
  fix the cause and re-run.
* ``5`` (:data:`EXIT_PENDING`): the output was written, but rows wait for an earlier step (Batch API
  results, or an earlier stage that has not run): the message says what to run.
* ``70`` (:data:`EXIT_BUG`): an unexpected internal error (a bug; ``curate --debug`` shows the traceback).
* ``130`` (:data:`EXIT_INTERRUPTED`): Ctrl-C.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_USER = 1
EXIT_USAGE = 2
EXIT_MODEL = 3
EXIT_ENV = 4
EXIT_PENDING = 5
EXIT_BUG = 70
EXIT_INTERRUPTED = 130

EXIT_CODES = {
    EXIT_OK: "all rows done",
    EXIT_USER: "unusable input or setting; nothing written",
    EXIT_USAGE: "bad option or argument",
    EXIT_MODEL: "rows quarantined because the model's replies were unusable",
    EXIT_ENV: "stopped or rows quarantined because of the environment (endpoint, network, budget, disk)",
    EXIT_PENDING: "rows wait for an earlier step (Batch API results, an earlier stage)",
    EXIT_BUG: "internal error (a bug)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}


class UserError(Exception):
    """Something the user can fix: a bad path, an unknown format, a missing setting."""

    exit_code = EXIT_USER


class StageStopped(UserError):
    """A stage stopped because of its environment (endpoint, model, budget): exit code :data:`EXIT_ENV`."""

    exit_code = EXIT_ENV


class StageIncomplete(UserError):
    """The stage published its output, but some rows are not done for a reason outside the data.

    ``exit_code`` tells which (EXIT_ENV, EXIT_MODEL, EXIT_PENDING); the message names the cause and
    what to do."""

    def __init__(self, message: str, exit_code: int = EXIT_ENV):
        super().__init__(message)
        self.exit_code = exit_code


class PendingRows(StageIncomplete):
    """Rows wait for an earlier step (Batch API results, an earlier stage): exit code :data:`EXIT_PENDING`."""

    def __init__(self, message: str):
        super().__init__(message, EXIT_PENDING)
