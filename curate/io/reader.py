"""The one way in: :func:`read_input` turns whatever the user points at into canonical frames.

Accepted, in any mix: a committed dataset directory (``manifest.json``), a canonical
``.parquet``/``.jsonl`` written by curate, a stage's quarantine file (``quarantine.parquet`` or
``quarantine.jsonl``: the rows its entries hold; entries without one stay quarantined), a raw source file in a known format (the ingest
formats; UTF-8 with or without BOM, UTF-16/32 with BOM, provable Latin-1 lines with a note), a
Parquet/CSV/TSV export whose columns are those of a known format, or a directory of such files
(read recursively; files it can't read are skipped and listed in the report). Anything else is
refused with one line saying what to do. Raw records that cannot become rows are quarantined with
the same accounting as ``curate ingest``.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import orjson
import polars as pl

from curate import schemas
from curate.ingest.encoding import COMPRESSED_SUFFIXES, decompressed_name
from curate.io import manifest as mf
from curate.io.files import DatasetError
from curate.io.tables import TABLE_SUFFIXES, canonical_kind, check_parquet, read_table, sample, table_items

#: File suffixes a directory walk reads; anything else is skipped (and listed in the report).
SUFFIXES = {".json", ".jsonl", ".ndjson", ".txt", *TABLE_SUFFIXES}

#: The source format of raw inputs when a caller gives none (``curate --input-format NAME COMMAND``).
DEFAULT_FORMAT: contextvars.ContextVar[str | None] = contextvars.ContextVar("curate_input_format", default=None)
#: Called with the report of every :func:`read_input` (the CLI prints its warnings and skipped files).
NOTIFY: contextvars.ContextVar[Callable[[dict], None] | None] = contextvars.ContextVar("curate_notify", default=None)


@dataclass
class Input:
    """What :func:`read_input` read. ``frames`` are lazy; ``report`` has per-file accounting."""
    frames: dict[str, pl.LazyFrame]
    quarantine: list[dict]
    report: dict[str, Any]
    manifest_ids: list[str]
    paths: list[Path]
    manifests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        return self.report.get("warnings", [])

    @property
    def skipped(self) -> list[dict[str, str]]:
        return self.report.get("skipped", [])

    def rows(self) -> dict[str, int]:
        return {k: lf.select(pl.len()).collect().item() for k, lf in self.frames.items()}

    def collect(self) -> dict[str, pl.DataFrame]:
        return {k: lf.collect() for k, lf in self.frames.items()}


@dataclass
class _Part:
    what: str              # "dataset" | "canonical" | "quarantine" | "raw" | "table"
    path: Path
    name: str
    kind: str | None = None
    fmt: Any = None         # SourceFormat for raw/table parts
    src: Any = None         # ingest Source for raw parts
    table: pl.LazyFrame | None = None
    manifest: dict[str, Any] | None = None
    reader: str = "parquet"  # canonical parts: parquet | ndjson


class Plan:
    """The inputs resolved and probed (formats detected, encodings checked), ready to stream."""

    def __init__(self, paths: Iterable[str | os.PathLike], fmt: str | None, stack: contextlib.ExitStack):
        self.fmt = None if fmt in (None, "auto") else fmt
        self.stack = stack
        self.parts: list[_Part] = []
        self.skipped: list[dict[str, str]] = []
        self.warnings: list[str] = []
        self.paths: list[Path] = []
        self.summaries: list[Any] = []
        self.datasets: list[dict[str, Any]] = []
        seen: set[Path] = set()
        for p in paths:
            p = Path(p)
            if not os.path.lexists(p):
                raise DatasetError(f"{p}: no such file or directory.")
            r = p.resolve()
            if r in seen:
                self.warnings.append(f"{p} was given more than once; it is read once.")
                continue
            seen.add(r)
            self.paths.append(p)
            if p.is_dir():
                self._add_dir(p, seen, top=True)
            else:
                self._add_file(p, explicit=True)
        if not self.parts:
            shown = "; ".join(f"{s['path']}: {s['reason']}" for s in self.skipped[:3])
            raise DatasetError("nothing curate can read in " + ", ".join(str(p) for p in self.paths)
                               + (f" (skipped {len(self.skipped)} file(s): {shown})" if shown else "")
                               + ". Give dataset directories or files in a known format (curate ingest --list-formats).")

    # -- resolving -----------------------------------------------------------------------------------
    def _add_dir(self, d: Path, seen: set[Path], top: bool) -> None:
        if (d / mf.NAME).is_file() or (top and _looks_like_dataset(d)):
            data = mf.read(d)  # refuses an incomplete or foreign directory, saying what to re-run
            self.parts.append(_Part("dataset", d, d.as_posix(), manifest=data))
            stray = _unlisted(d, data)
            if stray:
                self.warnings.append(
                    f"{d}: {len(stray)} file(s) the stage that wrote this dataset did not write (not in its "
                    f"manifest.json) are not read: {', '.join(stray[:3])}{', ...' if len(stray) > 3 else ''}. "
                    "To read one, give it as an input of its own.")
            return
        for root, dirs, files in os.walk(d):
            root_p = Path(root)
            hidden = sorted(x for x in dirs if x.startswith("."))
            for x in hidden:
                self.skipped.append({"path": (root_p / x).as_posix() + "/", "reason": "hidden directory"})
            dirs[:] = sorted(x for x in dirs if not x.startswith("."))
            for x in list(dirs):
                sub = root_p / x
                if (sub / mf.NAME).is_file():
                    dirs.remove(x)
                    if sub.resolve() not in seen:
                        seen.add(sub.resolve())
                        self._add_dir(sub, seen, top=False)
            for name in sorted(files):
                f = root_p / name
                if name.startswith("."):
                    self.skipped.append({"path": f.as_posix(), "reason": "hidden file"})
                    continue
                if _data_suffix(f) not in SUFFIXES:
                    self.skipped.append({"path": f.as_posix(),
                                         "reason": f"not a format curate reads ({f.suffix or 'no extension'})"})
                    continue
                r = f.resolve()
                if r in seen:
                    self.warnings.append(f"{f} was given more than once; it is read once.")
                    continue
                seen.add(r)
                self._add_file(f, explicit=False)

    def _add_file(self, path: Path, explicit: bool) -> None:
        try:
            self.parts.append(self._probe(path))
        except DatasetError as exc:
            if explicit:
                raise
            self.skipped.append({"path": path.as_posix(), "reason": str(exc).removeprefix(f"{path.as_posix()}: ")})

    def _probe(self, path: Path) -> _Part:
        from curate.clean import quarantine as qfile  # (a module of the clean package: imported when used)
        from curate.ingest.pipeline import _format, open_source
        from curate.io.files import require_file
        from curate.ingest.readers import read_head, sniff_container

        name = path.as_posix()
        require_file(path, name)  # before opening: a FIFO in a directory would block the open for ever
        try:
            with open(path, "rb") as fh:
                head = fh.read(4)
        except OSError as exc:
            raise DatasetError(f"{name}: cannot read ({exc.strerror}).") from None
        suffix = path.suffix.lower()
        inner = _data_suffix(path)
        if suffix in COMPRESSED_SUFFIXES and inner in TABLE_SUFFIXES:
            raise DatasetError(f"{name}: a compressed {inner[1:].upper()} file; decompress it first "
                               "(curate decompresses JSON, JSON Lines and text files itself).")
        if suffix == ".parquet" or head == b"PAR1":
            names = check_parquet(path, name).names()
            kind = canonical_kind(names)
            if kind:
                return _Part("canonical", path, name, kind=kind)
            if qfile.is_quarantine_columns(names):
                return _Part("quarantine", path, name)
            return self._table(path, name, "parquet")
        if suffix in (".csv", ".tsv"):
            src = self.stack.enter_context(open_source(path, name))  # binary/encoding checks first
            if src.encoding != "utf-8":
                raise DatasetError(f"{name}: a {suffix[1:].upper()} file in {src.encoding}; convert it to UTF-8.")
            return self._table(path, name, suffix[1:])
        src = self.stack.enter_context(open_source(path, name))
        if sniff_container(src.path, read_head(src.path)) == "jsonl":
            first = _first_record(src.path)
            kind = _canonical_kind_of(first)
            if kind:
                return _Part("canonical", src.path, name, kind=kind, reader="ndjson")
            if qfile.is_entry(first):
                return _Part("quarantine", src.path, name, reader="ndjson")
        f = _format(src.path, self.fmt, name)
        return _Part("raw", path, name, kind=f.kind, fmt=f, src=src)

    def _table(self, path: Path, name: str, fmt: str) -> _Part:
        from curate.ingest.formats import BY_NAME, FORMATS
        from curate.ingest.pipeline import MIN_SCORE, format_hint

        lf = read_table(path, name, fmt)
        cols = lf.collect_schema().names()
        json_formats = [f for f in FORMATS if f.container == "json"]
        if self.fmt:
            f = BY_NAME.get(self.fmt)
            if f is None or f.container != "json":
                raise DatasetError(f"{name}: --format {self.fmt} does not apply to a {fmt} table; use one of: "
                                   + ", ".join(x.name for x in json_formats))
            return _Part("table", path, name, kind=f.kind, fmt=f, table=lf)
        rows = sample(lf)
        if not rows:
            raise DatasetError(f"{name}: the {fmt} file has no rows; nothing to read.")
        score, best = max(((f.score(rows), f) for f in json_formats), key=lambda c: c[0])
        if score < MIN_SCORE:
            raise DatasetError(f"{name}: its columns ({', '.join(cols[:8])}) match no known format (best guess "
                               f"{best.name}, fitting {score:.0%} of the sample). If that is right, "
                               f"{format_hint(best.name)}")
        return _Part("table", path, name, kind=best.kind, fmt=best, table=lf)

    # -- reading -------------------------------------------------------------------------------------
    def batches(self, *, detect_lang: bool = True, on_quarantine: Callable[[dict], None] | None = None,
                on_progress: Callable[[int], None] | None = None,
                batch_size: int | None = None) -> Iterator[tuple[str, pl.DataFrame | pl.LazyFrame]]:
        """``(kind, frame)`` for every part: lazy frames for datasets and canonical files, streamed
        DataFrame batches for raw files (quarantine entries go to ``on_quarantine``)."""
        for part in self.parts:
            if part.what == "dataset":
                data = part.manifest
                self.datasets.append(data)
                pending = (data.get("pending") or {}).get("rows", 0)
                if pending:
                    self.warnings.append(_pending_message(part.name, data))
                for kind, files in mf.files_of(part.path, data).items():
                    lf = _scan(files)
                    n = data["kinds"][kind].get("rows")
                    self.summaries.append(_passed(part.name, f"curate {data.get('stage')}", kind, n, data.get("id")))
                    yield kind, schemas.conform(lf, kind)
            elif part.what == "canonical":
                lf = _scan([part.path]) if part.reader == "parquet" else _read_ndjson(part.path, part.kind)
                n = lf.select(pl.len()).collect().item()
                self.summaries.append(_passed(part.name, "curate", part.kind, n, None))
                yield part.kind, schemas.conform(lf, part.kind)
            elif part.what == "quarantine":
                yield from self._quarantine(part, on_quarantine)
            else:  # (the ingest pipeline is imported here: a dataset's read does not wait for numba)
                from curate.ingest.pipeline import BATCH, FileSummary, iter_file, iter_records

                f = part.fmt
                enc = part.src.encoding if part.src is not None else part.what
                summary = FileSummary(part.name, f.name, f.kind, encoding=enc)
                self.summaries.append(summary)
                kw = dict(batch_size=batch_size or BATCH, detect_lang=detect_lang, on_quarantine=on_quarantine,
                          on_progress=on_progress)
                frames = (iter_file(part.src, f, summary, **kw) if part.what == "raw"
                          else iter_records(table_items(part.table), f, summary, **kw))
                for df in frames:
                    yield f.kind, df

    def _quarantine(self, part: _Part, on_quarantine: Callable[[dict], None] | None
                    ) -> Iterator[tuple[str, pl.DataFrame]]:
        """A quarantine file: the rows it holds, given back; its entries that hold none (records a
        reader could not turn into rows) stay quarantined as they are."""
        from curate.clean import quarantine as qfile

        got = qfile.split(part.path)
        if on_quarantine is not None:
            for entry in got.left:
                on_quarantine(entry)
        rows = sum(f.height for f in got.frames.values())
        self.summaries.append({"source": part.name, "format": qfile.FORMAT,
                               "kind": "+".join(got.frames) or None, "records": got.entries, "kept": rows,
                               "rows": rows, "recovered": 0, "quarantined": len(got.left), "reasons": got.left_by_code,
                               "manifest": None})
        for kind, frame in got.frames.items():
            yield kind, schemas.conform(frame.lazy(), kind)

    def report(self) -> dict[str, Any]:
        files = [s if isinstance(s, dict) else s.as_dict() for s in self.summaries]
        total = {k: sum(f.get(k) or 0 for f in files) for k in ("records", "kept", "rows", "recovered", "quarantined")}
        total["accounted"] = total["records"] == total["kept"] + total["quarantined"]
        return {"files": files, "total": total, "skipped": self.skipped, "warnings": self.warnings}


def _data_suffix(path: Path) -> str:
    """The suffix that says what a file holds: ``.jsonl`` for ``x.jsonl.gz`` (gzip, bzip2 and xz
    files are read decompressed: :func:`curate.ingest.pipeline.open_source`)."""
    return decompressed_name(path).suffix.lower() or path.suffix.lower()


def _unlisted(d: Path, data: dict[str, Any]) -> list[str]:
    """Files in the dataset directory ``d`` (hidden ones aside) its manifest does not list: copied
    in by hand, say. The manifest says what the dataset holds; these are not read, and are named."""
    listed = data.get("files")
    if not isinstance(listed, dict):  # a manifest from before curate listed its files
        return []
    out = []
    for root, dirs, files in os.walk(d):
        dirs[:] = sorted(x for x in dirs if not x.startswith("."))
        for name in sorted(files):
            rel = (Path(root) / name).relative_to(d).as_posix()
            if not name.startswith(".") and rel != mf.NAME and rel not in listed:
                out.append(rel)
    return sorted(out)


def _pending_message(name: str, data: dict[str, Any]) -> str:
    n, stage = data["pending"]["rows"], data["pending"].get("stage") or data.get("stage")
    return (f"{name}: {n:,} row(s) wait for Batch API results of `curate {stage}` (requests in {name}/batch/) and "
            f"are not in this dataset yet; finish that stage first: re-run `curate {stage} ... -o {name} --batch-in "
            "RESULTS` when the batch is done")


def _passed(source: str, fmt: str, kind: str, rows: int | None, manifest: str | None) -> dict[str, Any]:
    """The report line of an input that is already canonical: every row passes as it is."""
    return {"source": source, "format": fmt, "kind": kind, "records": rows, "kept": rows, "rows": rows,
            "recovered": 0, "quarantined": 0, "reasons": {}, "manifest": manifest}


def _scan(files: list[Path]) -> pl.LazyFrame:
    parquet = [f for f in files if f.suffix == ".parquet"]
    other = [f for f in files if f.suffix != ".parquet"]
    frames = []
    if parquet:
        frames.append(pl.scan_parquet(parquet))
    for f in other:
        frames.append(pl.scan_ndjson(f, infer_schema_length=None))
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")


def _read_ndjson(path: Path, kind: str) -> pl.LazyFrame:
    """A canonical JSONL file, read now (it may be a recoded temporary copy)."""
    data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    try:
        return pl.read_ndjson(data, schema=schemas.schema(kind)).lazy()
    except pl.exceptions.PolarsError as exc:
        raise DatasetError(f"{path}: a curate JSONL file that does not parse ({str(exc).splitlines()[0][:200]}); "
                           "re-create it, or ingest the source it came from.") from None


def _canonical_kind_of(obj: Any) -> str | None:
    """The kind when a JSONL file's first record ``obj`` is a canonical curate row (written by curate)."""
    if not isinstance(obj, dict):
        return None
    kind = canonical_kind(obj.keys())
    return kind if kind is not None and obj.get("kind", kind) == kind else None


def _first_record(path: Path) -> Any:
    """A JSONL file's first record (None if it is empty or its first line does not parse)."""
    with open(path, "rb") as fh:
        for raw in fh:
            raw = raw.removeprefix(b"\xef\xbb\xbf").strip()
            if not raw:
                continue
            try:
                return orjson.loads(raw)
            except orjson.JSONDecodeError:
                return None
    return None


def _looks_like_dataset(d: Path) -> bool:
    """A directory an older curate (or an unfinished run) wrote: kind files or a stage report."""
    if any((d / f"{k}.{ext}").is_file() for k in schemas.KINDS for ext in ("parquet", "jsonl")):
        return True
    return mf.stage_hint(d) is not None


@contextlib.contextmanager
def open_input(paths: str | os.PathLike | Iterable[str | os.PathLike], *, format: str | None = None) -> Iterator[Plan]:
    """Resolve and probe the inputs; stream them with :meth:`Plan.batches` inside the block."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if format in (None, "auto"):
        format = DEFAULT_FORMAT.get()
    if format not in (None, "auto"):
        from curate.ingest.formats import BY_NAME

        if format not in BY_NAME:
            raise DatasetError(f"unknown format {format!r}; choose one of: {', '.join(BY_NAME)}")
    with contextlib.ExitStack() as stack:
        yield Plan(list(paths), format, stack)


def read_input(paths: str | os.PathLike | Iterable[str | os.PathLike], *, format: str | None = None,
               detect_lang: bool = True, on_progress: Callable[[int], None] | None = None) -> Input:
    """Every input as canonical frames ``{kind: LazyFrame}`` (see the module doc)."""
    quarantine: list[dict] = []
    parts: dict[str, list[pl.LazyFrame]] = {}
    with open_input(paths, format=format) as plan:
        for kind, frame in plan.batches(detect_lang=detect_lang, on_quarantine=quarantine.append,
                                        on_progress=on_progress):
            parts.setdefault(kind, []).append(frame.lazy())
        report = plan.report()
        datasets = plan.datasets
        given = plan.paths
    frames = {k: v[0] if len(v) == 1 else pl.concat(v, how="diagonal_relaxed") for k, v in parts.items()}
    frames = {k: frames[k] for k in schemas.KINDS if k in frames}
    notify = NOTIFY.get()
    if notify is not None:
        notify(report)
    pending = [d for d in datasets if (d.get("pending") or {}).get("rows")]
    if pending and sum(f.get("rows") or 0 for f in report["files"]) == 0:
        from curate.errors import PendingRows

        raise PendingRows(next(w for w in report["warnings"] if "Batch API" in w))
    return Input(frames, quarantine, report, [d["id"] for d in datasets if d.get("id")], given, datasets)
