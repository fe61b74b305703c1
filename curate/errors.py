"""Errors a user can act on, and the exit codes every command uses.

The CLI prints a :class:`UserError` as one clear message, never a traceback, and exits with its
``exit_code``. Exit codes (documented in the README):

* ``0`` (:data:`EXIT_OK`): the stage finished and every row came out.
* ``1``: a user error (bad input, bad option, missing file); nothing was written.
* ``2``: a usage error (Click's own code for unknown options and missing arguments).
* ``3`` (:data:`EXIT_MODEL`): the stage finished, but some rows were quarantined because of the
  model's replies (invalid JSON, wrong language, lost placeholders...): see ``quarantine.jsonl``.
* ``4`` (:data:`EXIT_ENV`): stopped, or rows lost, because of the environment: the endpoint refused
  the credentials, the model does not exist, the server is unreachable or keeps failing, the
  request budget ran out, or the fail-fast breaker saw the same failure on every request of a
  window. Everything answered so far is in the reply cache: fix the cause and re-run.
"""

EXIT_OK = 0
EXIT_USER = 1
EXIT_MODEL = 3
EXIT_ENV = 4


class UserError(Exception):
    """Something the user can fix: a bad path, an unknown format, a missing setting."""

    exit_code = EXIT_USER


class StageStopped(UserError):
    """A stage stopped because of its environment (endpoint, model, budget): exit code :data:`EXIT_ENV`."""

    exit_code = EXIT_ENV
