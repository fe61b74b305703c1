"""Where a stage runs: ``local`` (this process, the default) or ``ray`` (a Ray cluster via Ray Data).

Every stage is a frame-in/frame-out function; an executor only decides how the input is split,
where the function runs and how the output is put back together. ``--executor ray`` connects to
the cluster named by ``--ray-address`` or Ray's own ``RAY_ADDRESS``, and starts a local Ray
instance when neither is given (``pip install 'curate[ray]'``). The results are the same rows,
quarantine and report as ``local`` (tests/test_ray.py checks it).
"""

from __future__ import annotations

import functools
from typing import Any

import click

from curate.errors import UserError

EXECUTORS = ("local", "ray")
INSTALL_HINT = "--executor ray needs Ray: pip install 'curate[ray]' (or pip install 'ray[data]')"


def require_ray() -> None:
    """Raise a one-line :class:`UserError` saying how to install Ray when it is missing."""
    from curate.executors.ray_session import env_defaults

    import importlib.util

    env_defaults()  # before the first import of ray.data
    try:  # ray.data is found, not imported: connect imports it while Ray starts
        found = importlib.util.find_spec("ray") is not None and importlib.util.find_spec("ray.data") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise UserError(INSTALL_HINT)


def executor_options(f):
    """``--executor local|ray`` and ``--ray-address`` for a stage command (popped by :func:`pop_executor`)."""
    f = click.option("--ray-address", metavar="ADDRESS", default=None,
                     help="Ray cluster to use with --executor ray (default: $RAY_ADDRESS, else a local "
                          "Ray instance is started), e.g. ray://head:10001 or auto.")(f)
    f = click.option("--executor", "executor", type=click.Choice(EXECUTORS), default="local", show_default=True,
                     help="Run here (local) or on a Ray cluster (ray; pip install 'curate[ray]'). "
                          "Both give the same rows, quarantine and report.")(f)
    return f


def pop_executor(kwargs: dict[str, Any]) -> "Executor":
    return get_executor(kwargs.pop("executor", "local"), kwargs.pop("ray_address", None))


class Executor:
    """The local executor: the stage functions run in this process."""

    name = "local"

    @property
    def is_ray(self) -> bool:
        return self.name == "ray"


class RayExecutor(Executor):
    """Runs the stage functions on a Ray cluster (see :mod:`curate.executors.ray_session`)."""

    name = "ray"

    def __init__(self, address: str | None = None):
        require_ray()
        self.address = address

    def connect(self, *, quiet: bool = False, preload: tuple[str, ...] = ()) -> None:
        """Connect (:func:`curate.executors.ray_session.connect`), importing ``preload`` meanwhile."""
        from curate.executors.ray_session import connect

        connect(self.address, quiet=quiet, preload=preload)


@functools.cache
def _local() -> Executor:
    return Executor()


def get_executor(name: str = "local", address: str | None = None) -> Executor:
    if name == "local":
        if address:
            raise UserError("--ray-address needs --executor ray")
        return _local()
    if name == "ray":
        return RayExecutor(address)
    raise UserError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
