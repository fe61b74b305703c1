"""Publishing a finished directory in one atomic step, and removing what killed runs left behind.

On Linux, ``renameat2(..., RENAME_EXCHANGE)`` swaps the new directory and the old one in one
system call: at every instant the output path holds either the complete old result or the complete
new one. Where the call is missing (old kernels, some filesystems) two renames are used; a run
killed between them leaves the old result under ``.<name>.old-<pid>-<token>``, which the next run
(or reader) puts back.
"""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
import shutil
from pathlib import Path

AT_FDCWD = -100
RENAME_EXCHANGE = 2
STAGING = "staging"
OLD = "old"

_renameat2 = None
_have_renameat2: bool | None = None


def _lookup():
    global _renameat2, _have_renameat2
    if _have_renameat2 is None:
        try:
            fn = ctypes.CDLL(None, use_errno=True).renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            fn.restype = ctypes.c_int
            _renameat2, _have_renameat2 = fn, True
        except (OSError, AttributeError):
            _have_renameat2 = False
    return _renameat2


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths; False when the system can't (the caller falls back)."""
    fn = _lookup()
    if fn is None or os.environ.get("CURATE_NO_RENAME_EXCHANGE"):
        return False
    if fn(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def sibling(target: Path, what: str) -> Path:
    """A hidden sibling of ``target`` owned by this process: ``.<name>.<what>-<pid>-<token>``."""
    return target.with_name(f".{target.name}.{what}-{os.getpid()}-{secrets.token_hex(4)}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner(path: Path, prefix: str) -> int | None:
    try:
        return int(path.name[len(prefix):].split("-")[0])
    except ValueError:
        return None


def recover(target: Path) -> list[Path]:
    """Put back an old result a killed two-rename publish left aside, and remove the staging and
    old directories of runs that are no longer alive. Returns what was removed."""
    parent = target.parent
    if not parent.is_dir():
        return []
    removed = []
    olds = []
    for what in (STAGING, OLD):
        prefix = f".{target.name}.{what}-"
        for p in parent.glob(f"{glob_escape(prefix)}*"):
            pid = _owner(p, prefix)
            if pid is not None and pid != os.getpid() and _pid_alive(pid):
                continue  # another run is writing there right now
            if what == OLD:
                olds.append(p)
            else:
                _remove(p)
                removed.append(p)
    for p in olds:
        if not target.exists() and (p / "manifest.json").is_file():
            os.rename(p, target)  # the killed run had moved the old result aside: restore it
        else:
            _remove(p)
            removed.append(p)
    return removed


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def durable() -> bool:
    """``CURATE_FSYNC=1``: fsync every file and directory before publishing (survives a power loss, at
    the cost of waiting for the disk). Without it a kill, Ctrl-C or full disk is still safe, and a file
    torn by a power loss fails the manifest's size check in every reader."""
    return os.environ.get("CURATE_FSYNC", "") not in ("", "0")


def fsync_dir(path: Path) -> None:
    if not durable():
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def publish(staging: Path, target: Path) -> None:
    """Make ``staging`` (a complete directory) appear at ``target`` in one step; the previous
    content of ``target`` is removed afterwards."""
    if not os.path.lexists(target):
        os.rename(staging, target)
        fsync_dir(target.parent)
        return
    if exchange(staging, target):
        fsync_dir(target.parent)
        _remove(staging)  # now holds the old result
        return
    old = sibling(target, OLD)
    os.rename(target, old)
    os.rename(staging, target)
    fsync_dir(target.parent)
    _remove(old)
