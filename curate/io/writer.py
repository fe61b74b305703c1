"""The one way out: :class:`DatasetWriter` commits a whole output directory at once.

Everything is written into a hidden staging directory beside the output; ``manifest.json`` is
written last; then the staging directory replaces the output in one atomic step
(:mod:`curate.io.publish`). A kill, a full disk or an exception at any moment leaves the complete
old output (or nothing) and never a mix. A stage refuses an output that is, contains or sits
inside one of its inputs before it writes anything.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Iterable, Iterator

import orjson
import polars as pl

from curate import schemas
from curate.io import manifest as mf
from curate.io import publish
from curate.io.files import DatasetError

#: Data pages of up to 8 MB (polars writes 1 MB by default): zstd sees more of a text column at once,
#: so a clean's sft.parquet is a fifth smaller (1M rows: 82 vs 105 MB) and written with ~8% less CPU
#: (1.85-1.92 vs 2.03-2.06 s); polars and pyarrow read it as fast.
PAGE_BYTES = 8 << 20

#: How stage outputs' Parquet files are compressed: ``none`` (the default), ``lz4`` or ``zstd``.
#: Uncompressed, a 1M-row ingest writes its sft.parquet with ~2 s less CPU (1M recombined rows:
#: ~0.9 vs ~2.9 s) and the next stage reads it without decompressing it, for a file about the size
#: of the JSONL it came from (485 vs 200 MB); the output of a stage is the next stage's input, read
#: once, so its size matters less than the time. ``zstd`` for outputs kept or shipped (``curate
#: --compression zstd ...`` or ``CURATE_COMPRESSION=zstd``); quarantine files are always zstd.
COMPRESSIONS = ("none", "lz4", "zstd")
COMPRESSION: ContextVar[str | None] = ContextVar("curate_compression", default=None)


def compression() -> str:
    """The compression of the Parquet files a stage writes: ``--compression`` (:data:`COMPRESSION`),
    else ``$CURATE_COMPRESSION``, else ``none``."""
    choice = COMPRESSION.get() or os.environ.get("CURATE_COMPRESSION") or "none"
    if choice not in COMPRESSIONS:
        raise DatasetError(f"CURATE_COMPRESSION={choice!r}: choose one of {', '.join(COMPRESSIONS)}.")
    return choice


def parquet_options(choice: str) -> dict[str, Any]:
    """polars ``write_parquet``/``sink_parquet`` settings of a stage output compressed as ``choice``
    (an output's :attr:`DatasetWriter.compression`)."""
    return {"compression": "uncompressed" if choice == "none" else choice, "data_page_size": PAGE_BYTES}


#: Names an output directory of an older curate (before manifests) may hold; such a directory
#: may be replaced. A directory holding anything else is not curate's to replace.
_LEGACY = {f"{k}.{ext}" for k in schemas.KINDS for ext in ("parquet", "jsonl")} | {
    "quarantine.jsonl", "report.json", "report.html", "manifest.json", "README.md", "export.json",
    "generated.json", "batch"}


def check_output(out: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> Path:
    """Refuse an output path that is, contains, or sits inside any input (before anything is
    touched). Returns the output path made absolute."""
    out_abs = Path(os.path.abspath(out))
    o = out_abs.resolve()
    checked = []
    for inp in inputs:
        i = Path(inp).resolve()
        checked.append((inp, i))
        if i.is_file() and (i.parent / mf.NAME).is_file():
            checked.append((i.parent, i.parent))  # a file of a committed dataset: the dataset is the input
    for inp, i in checked:
        if o == i:
            raise DatasetError(f"{out}: this is the input; a stage never overwrites its input. Choose another -o.")
        if i.is_relative_to(o):
            raise DatasetError(f"{out}: contains the input {inp}; a stage replaces its whole output directory, "
                               "so it must not hold the input. Choose another -o.")
        if o.is_relative_to(i):
            raise DatasetError(f"{out}: sits inside the input {inp}; choose an -o outside it.")
    return out_abs


def check_file_output(out: str | os.PathLike, inputs: Iterable[str | os.PathLike], option: str = "-o",
                      may_sit_in_input: tuple[str, ...] = ()) -> Path:
    """Refuse a single-file output (a report, a model, a Batch API file, the reply cache) that is
    an input file or sits inside an input directory (a dataset the stage reads, or the dataset of
    an input file), before anything is touched; ``may_sit_in_input``: file names allowed there
    (``report.html``, the report's own place beside the data). Returns the path made absolute."""
    out_abs = Path(os.path.abspath(out))
    o = out_abs.resolve()
    for inp in inputs:
        i = Path(inp).resolve()
        if o == i:
            raise DatasetError(f"{out}: this is the input; a stage never overwrites its input. Choose another {option}.")
        dirs = [i] if i.is_dir() else [i.parent] if (i.parent / mf.NAME).is_file() else []
        for d in dirs:
            if o.is_relative_to(d) and o.name not in may_sit_in_input:
                raise DatasetError(f"{out}: sits inside the input {d}; a stage never writes into its input. "
                                   f"Choose another {option}.")
    return out_abs


def _foreign(directory: Path) -> list[str]:
    """Entries of an existing output directory that curate did not write."""
    try:
        (directory / mf.NAME).read_bytes()
        if orjson.loads((directory / mf.NAME).read_bytes()).get("curate_dataset") is not None:
            return []
    except (OSError, orjson.JSONDecodeError, AttributeError):
        pass
    out = []
    for p in directory.iterdir():
        name = p.name
        if name in _LEGACY or name.startswith(".ingest-") or (name.startswith(".") and name.endswith(".tmp")):
            continue  # what an older curate (or one of its killed runs) left
        if _export_name(name):
            continue
        out.append(name)
    return out


def _export_name(name: str) -> bool:
    """Files `curate export` of an older version wrote: <kind>_<format>_<split>.<ext>."""
    stem, _, ext = name.rpartition(".")
    parts = stem.split("_")
    return ext in ("jsonl", "json", "parquet") and len(parts) >= 3 and parts[0] in schemas.KINDS \
        and parts[-1] in ("train", "test")


def _os_message(exc: OSError, where: Path) -> str:
    if exc.errno in (errno.EROFS,):
        return f"{where}: the file system is read-only; choose an -o on a writable disk."
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"{where}: permission denied; choose an -o you can write to."
    if exc.errno == errno.ENOSPC:
        return f"{where}: no space left on the device; free some space or choose another -o."
    return f"{where}: cannot write ({exc.strerror or exc})."


class DatasetWriter:
    """Write one output dataset; see the module doc and docs/ARCHITECTURE.md.

    >>> with DatasetWriter(out, stage="clean", params={...}, inputs=[inp], input_manifests=ids) as w:
    ...     w.write_frame("sft", frame)
    ...     w.write_jsonl("quarantine.jsonl", rows)
    ...     w.write_json("report.json", report)
    """

    def __init__(self, out_dir: str | os.PathLike, *, stage: str, params: dict[str, Any] | None = None,
                 inputs: Iterable[str | os.PathLike] = (), input_manifests: Iterable[str] = (),
                 manifest_extra: dict[str, Any] | None = None, carry: Iterable[str] = ("batch",)):
        self.out_dir = Path(out_dir)
        self.stage = stage
        self.params = params or {}
        self.inputs = [str(p) for p in inputs]
        self.input_manifests = list(input_manifests)
        self.extra = dict(manifest_extra or {})
        self.carry = list(carry)  # entries of the existing output kept (Batch API files written during the run)
        self.kinds: dict[str, list[str]] = {}
        self.path: Path | None = None
        self.manifest: dict[str, Any] | None = None
        self.id = mf.new_id()
        self.target = check_output(self.out_dir, self.inputs)
        #: the Parquet compression of this output (:func:`compression`), chosen once: a Ray stage's
        #: workers write their shards with it (they do not see the driver's setting)
        self.compression = compression()

    # -- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> "DatasetWriter":
        target = self.target
        try:
            if target.exists() and not target.is_dir():
                raise DatasetError(f"{self.out_dir}: exists and is a file; -o takes a directory.")
            target.parent.mkdir(parents=True, exist_ok=True)
            publish.recover(target)
            if target.is_dir():
                foreign = _foreign(target)
                if foreign:
                    shown = ", ".join(sorted(foreign)[:3]) + (", ..." if len(foreign) > 3 else "")
                    raise DatasetError(f"{self.out_dir}: exists and holds files curate did not write ({shown}); "
                                       "a stage replaces its whole output directory, so choose a new or empty -o.")
            self.path = publish.sibling(target, publish.STAGING)
            self.path.mkdir()
        except OSError as exc:
            raise DatasetError(_os_message(exc, self.out_dir)) from None
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.commit()
            except BaseException:
                self.discard()
                raise
        else:
            self.discard()

    def discard(self) -> None:
        if self.path is not None and self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)

    # -- writing -----------------------------------------------------------------------------------
    def file(self, name: str) -> Path:
        """The staging path for a file ``name`` (parent directories made); write it yourself."""
        assert self.path is not None, "use DatasetWriter as a context manager"
        p = self.path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write_frame(self, kind: str, frame: pl.DataFrame | pl.LazyFrame, *, fmt: str = "parquet") -> Path:
        """``frame`` (lazy frames are streamed) as ``<kind>.<fmt>``; its rows are counted in the manifest."""
        schemas.check_kind(kind)
        name = f"{kind}.{fmt}"
        p = self.file(name)
        if isinstance(frame, pl.LazyFrame):
            frame.sink_parquet(p, **parquet_options(self.compression)) if fmt == "parquet" else frame.sink_ndjson(p)
        elif fmt == "parquet":
            frame.write_parquet(p, **parquet_options(self.compression))
        else:
            frame.write_ndjson(p)
        self.kinds.setdefault(kind, []).append(name)
        return p

    def add_part(self, kind: str, relpath: str | os.PathLike) -> None:
        """Register a file already written under :attr:`path` (e.g. ``sft/part-00000.parquet``)."""
        schemas.check_kind(kind)
        rel = Path(relpath)
        if rel.is_absolute():
            rel = rel.relative_to(self.path)
        if not (self.path / rel).is_file():
            raise FileNotFoundError(self.path / rel)
        self.kinds.setdefault(kind, []).append(rel.as_posix())

    def write_bytes(self, name: str, data: bytes) -> Path:
        p = self.file(name)
        p.write_bytes(data)
        return p

    def write_json(self, name: str, obj: Any) -> Path:
        return self.write_bytes(name, orjson.dumps(obj, default=str, option=orjson.OPT_INDENT_2
                                                   | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY) + b"\n")

    def write_jsonl(self, name: str, rows: Iterable[dict]) -> int:
        n = 0
        with open(self.file(name), "ab") as fh:
            for row in rows:
                fh.write(orjson.dumps(row, default=str, option=orjson.OPT_NON_STR_KEYS) + b"\n")
                n += 1
        return n

    @contextlib.contextmanager
    def open(self, name: str, mode: str = "wb") -> Iterator[Any]:
        with open(self.file(name), mode) as fh:
            yield fh

    # -- commit ------------------------------------------------------------------------------------
    def _rows(self, files: list[str]) -> int:
        total = 0
        for f in files:
            p = self.path / f
            if f.endswith(".parquet"):
                total += pl.scan_parquet(p).select(pl.len()).collect().item()
            else:
                with open(p, "rb") as fh:
                    total += sum(1 for line in fh if line.strip())
        return total

    def commit(self) -> dict[str, Any]:
        """Write manifest.json (last) and publish; called on leaving the ``with`` block."""
        assert self.path is not None
        for name in self.carry:
            old = self.target / name
            if old.exists() and not (self.path / name).exists():
                if old.is_dir():
                    shutil.copytree(old, self.path / name)
                else:
                    shutil.copy2(old, self.path / name)
        kinds = {k: {"files": v, "rows": self._rows(v)} for k, v in self.kinds.items()}
        files = {}
        for p in sorted(self.path.rglob("*")):
            if p.is_file() and p.name != mf.NAME:
                files[p.relative_to(self.path).as_posix()] = {"bytes": p.stat().st_size}
                _fsync(p)  # only with CURATE_FSYNC=1 (see publish.durable)
        self.manifest = mf.build(stage=self.stage, params=self.params, inputs=self.inputs,
                                 input_manifests=self.input_manifests, kinds=kinds, files=files, ident=self.id,
                                 extra=self.extra)
        mpath = self.path / mf.NAME
        mpath.write_bytes(orjson.dumps(self.manifest, default=str,
                                       option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS) + b"\n")
        _fsync(mpath)
        publish.fsync_dir(self.path)
        publish.publish(self.path, self.target)
        self.path = None
        return self.manifest


def _fsync(p: Path) -> None:
    if not publish.durable():
        return
    fd = os.open(p, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def with_read(report: dict[str, Any] | None, data: Any) -> dict[str, Any] | None:
    """``report`` with what reading the input gave (``read``: records, rows and quarantined entries
    per file, as `curate clean` reports it), so the records a raw input lost before the stage are in
    the report as well as in the quarantine. ``data``: the :class:`curate.io.Input` read."""
    if report is None or data is None or "read" in report:
        return report
    return {**report, "read": data.report}


def write_stage(out_dir: str | os.PathLike, *, stage: str, frames: dict[str, pl.DataFrame | pl.LazyFrame],
                quarantine: Iterable[dict] = (), report: dict[str, Any] | None = None,
                inputs: Iterable[str | os.PathLike] = (), input_manifests: Iterable[str] | None = None,
                params: dict[str, Any] | None = None, data: Any = None) -> dict[str, Any]:
    """The usual stage output in one call: ``<kind>.parquet`` per frame, ``quarantine.jsonl``,
    ``report.json``, committed at once. Rows quarantined as ``pending`` (waiting for Batch API
    results) are counted in the manifest, so the next stage can say so. Returns the manifest.

    ``data``: the :class:`curate.io.Input` the stage read: its quarantine goes first in
    ``quarantine.jsonl``, its report under the report's ``read`` (:func:`with_read`), its manifests
    are the output's input manifests."""
    inputs = list(inputs)
    quarantine = [*(data.quarantine if data is not None else ()), *quarantine]
    report = with_read(report, data)
    if input_manifests is None and data is not None:
        input_manifests = data.manifest_ids
    if input_manifests is None:
        input_manifests = [m for m in (_manifest_id(p) for p in inputs) if m]
    pending = sum(1 for q in quarantine if q.get("code") == "pending")
    extra = {"pending": {"rows": pending, "stage": stage}} if pending else None
    with DatasetWriter(out_dir, stage=stage, params=params, inputs=inputs, input_manifests=input_manifests,
                       manifest_extra=extra) as w:
        for kind in schemas.KINDS:
            if kind in frames:
                w.write_frame(kind, frames[kind])
        w.write_jsonl("quarantine.jsonl", quarantine)
        if report is not None:
            w.write_json("report.json", report)
    return w.manifest


def _manifest_id(path: str | os.PathLike) -> str | None:
    p = Path(path)
    for d in (p, p.parent):
        try:
            return orjson.loads((d / mf.NAME).read_bytes()).get("id")
        except (OSError, orjson.JSONDecodeError, AttributeError):
            continue
    return None
