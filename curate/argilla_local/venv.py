"""The argilla-server venv: a venv of its own with pinned versions (stdlib only).

argilla-server 2.8 pins click below 8.2 (with click 8.2+ its CLI fails with "Secondary flag is not
valid for non-boolean flag"), so it never shares curate's venv. There is ONE location,
:func:`default_venv` (env CURATE_ARGILLA_VENV, else ~/.cache/curate/argilla-venv), used by
``curate argilla serve``, ``make test``, ``scripts/argilla-server-setup.sh`` and the test fixture;
whoever needs it first installs it, once (a file lock beside the venv makes the others wait).
This module is imported by ``curate argilla serve`` and the fixture, and run as a script by the
Makefile and the setup script:

    python3 curate/argilla_local/venv.py [VENV_DIR]

It must not import curate (the setup script runs it before curate is installed).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import tempfile
from pathlib import Path

PINS = ("argilla-server==2.8.0", "argilla==2.8.0", "click<8.2")

CHECK = """import importlib.metadata as m, sys
click = tuple(int(x) for x in m.version("click").split(".")[:2])
ok = m.version("argilla-server") == "2.8.0" and m.version("argilla") == "2.8.0" and click < (8, 2)
sys.exit(0 if ok else 1)"""


class VenvError(Exception):
    """The server venv could not be created or is unusable (the message says what to do)."""


def default_venv() -> Path:
    """``$CURATE_ARGILLA_VENV`` or ``$XDG_CACHE_HOME/curate/argilla-venv`` (``~/.cache/...``)."""
    if os.environ.get("CURATE_ARGILLA_VENV"):
        return Path(os.environ["CURATE_ARGILLA_VENV"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "curate" / "argilla-venv"


def python_of(venv: Path) -> Path:
    return Path(venv) / "bin" / "python"


def manual_steps(venv: Path) -> str:
    pins = " ".join(f"'{p}'" for p in PINS)
    return f"python3 -m venv {venv} && {venv}/bin/python -m pip install {pins}"


def is_ready(venv: Path) -> bool:
    """True when VENV has argilla-server 2.8.0, argilla 2.8.0 and click < 8.2."""
    python = python_of(venv)
    if not python.exists():
        return False
    try:
        return subprocess.run([str(python), "-c", CHECK], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _base_python() -> str:
    """A python able to make venvs: the interpreter behind the current one (venv or not)."""
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    return str(base) if base.exists() else sys.executable


def ensure(venv: Path, python: str | None = None, log=None) -> Path:
    """Make VENV ready (create it and pip install the pins when needed); return its python.

    ``log(message)`` is told before the slow install. Raises VenvError with the pip output's tail
    and the manual steps when anything fails.
    """
    venv = Path(venv).expanduser().absolute()
    if is_ready(venv):
        return python_of(venv)
    with _install_lock(venv):
        if is_ready(venv):       # another process installed it while we waited
            return python_of(venv)
        if log:
            log(f"installing {' '.join(PINS)} into {venv} (once; about 2 minutes)")
        _install(venv, python)
    return python_of(venv)


@contextlib.contextmanager
def _install_lock(venv: Path):
    """An exclusive lock on ``<venv>.lock`` while installing (released when the process dies)."""
    try:
        venv.parent.mkdir(parents=True, exist_ok=True)
        fh = open(venv.parent / f"{venv.name}.lock", "w")
    except OSError as exc:
        raise _failure(venv, f"  cannot create {venv.parent}: {exc.strerror}") from None
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _install(venv: Path, python: str | None) -> None:
    with tempfile.TemporaryFile(mode="w+b") as out:
        def run(cmd: list) -> bool:
            try:
                return subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode == 0
            except OSError as exc:
                out.write(f"{cmd[0]}: {exc}\n".encode())
                return False

        ok = python_of(venv).exists() or run([python or _base_python(), "-m", "venv", str(venv)])
        ok = ok and run([str(python_of(venv)), "-m", "pip", "install", "-q", "--disable-pip-version-check", *PINS])
        if not ok or not is_ready(venv):
            out.seek(0)
            tail = out.read().decode(errors="replace").strip().splitlines()[-12:]
            raise _failure(venv, "\n".join("  " + line for line in tail) or "  (no output)")


def _failure(venv: Path, detail: str) -> VenvError:
    return VenvError(
        f"could not install the Argilla server into {venv}:\n{detail}\n"
        f"Fix what it says (network, pip configuration, disk space, permissions) and run again, "
        f"or make the venv yourself:\n"
        f"  {manual_steps(venv)}\nthen pass it with --venv (or CURATE_ARGILLA_VENV).")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) > 1 or (argv and argv[0] in ("-h", "--help")):
        print(__doc__)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    venv = Path(argv[0]) if argv else default_venv()
    try:
        ensure(venv, python=os.environ.get("PYTHON"), log=lambda m: print(f"argilla server venv: {m}", file=sys.stderr))
    except VenvError as exc:
        print(f"argilla server venv: {exc}", file=sys.stderr)
        return 1
    print(f"argilla server venv: ready ({venv})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
