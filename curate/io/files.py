"""Single files written atomically (temp file in the same directory, then rename).

Whole datasets are written with :class:`curate.io.DatasetWriter`, which commits a directory at
once; these helpers are for the files inside it and for single-file outputs (a report, a model).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import orjson
import polars as pl

from curate.errors import UserError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


class DatasetError(UserError):
    """A user-facing problem with an input or output path (printed without a traceback)."""


def require_file(path: Path, name: str | None = None, what: str = "file") -> None:
    """Refuse anything but a regular file before it is opened: a FIFO would block the open for
    ever, a device (``/dev/zero``) never end. ``what`` names it in the message (``eval file``)."""
    if not path.is_file():
        name = name or path.as_posix()
        raise DatasetError(f"{name}: " + ("not a regular file (a device, pipe or socket); save the data to a file "
                                          "and give that." if path.exists() else f"no such {what}."))



@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs are ordinary files
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_bytes(path, orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS) + b"\n")


def write_jsonl(path: str | os.PathLike, rows: list[dict] | Iterator[dict]) -> int:
    n = 0
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        for row in rows:
            fh.write(orjson.dumps(row, option=orjson.OPT_NON_STR_KEYS) + b"\n")
            n += 1
    return n


def write_frame(df: pl.DataFrame | pl.LazyFrame, path: str | os.PathLike) -> None:
    """Write a frame as parquet or JSONL (by extension), atomically; lazy frames are streamed."""
    path = Path(path)
    fmt = _format_of(path)
    with atomic_path(path) as tmp:
        if isinstance(df, pl.LazyFrame):
            if fmt == "parquet":
                df.sink_parquet(tmp)
            else:
                df.sink_ndjson(tmp)
        elif fmt == "parquet":
            df.write_parquet(tmp)
        else:
            df.write_ndjson(tmp)


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return "parquet"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    raise DatasetError(f"{path}: unknown output format {suffix!r}; use .parquet or .jsonl")


SMALL_FILE_BYTES = 256 * 1024 * 1024


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """A small text file the user names (a glossary, a config, a prompt) as text, or a one-line
    error: not a regular file, binary, UTF-16 without a byte-order mark, not UTF-8, too big.
    A byte-order mark is honoured and dropped."""
    from curate.ingest.encoding import check_text_head, magic_of

    path = Path(path)
    require_file(path, what=what)
    if path.stat().st_size > SMALL_FILE_BYTES:
        raise DatasetError(f"{path}: {path.stat().st_size:,} bytes is too big for a {what} "
                           f"(at most {SMALL_FILE_BYTES // 2**20} MB)")
    raw = path.read_bytes()
    kind = magic_of(raw[:64])
    if kind:  # (check_text_head's own message lists the data formats; this is not a data file)
        raise DatasetError(f"{path}: this is {kind}, not a text {what}")
    encoding = check_text_head(path, raw[:65536])
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text (byte {exc.start}); re-save the {what} as UTF-8") from None
    return text.removeprefix("\ufeff")


def load_toml(path: str | os.PathLike, what: str = "config file") -> dict[str, Any]:
    """A TOML file the user names, parsed, or a one-line error (see :func:`read_text`)."""
    import tomllib

    text = read_text(path, what)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DatasetError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise DatasetError(f"{path}: not valid TOML: nested too deeply") from None


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    with open(path, "rb") as fh:
        return [orjson.loads(line) for line in fh if line.strip()]
