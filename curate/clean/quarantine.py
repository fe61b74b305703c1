"""The clean stage's quarantine file, ``quarantine.parquet`` (zstd): every dropped row, restorable.

One row per quarantine entry: ``stage, code, reason, evidence, id, source, line, where, kind`` as
columns, and as JSON text ``matches`` (every rule that matched the row), ``row`` (the full row as the
rules saw it, fixes applied, ``meta.fixes`` listing them) and ``entry`` (the other keys of an entry the
input reader quarantined: ``raw`` text, ...). Parquet's dictionary encoding and zstd take the
repetition out (the same reason on every line; 1,000 fills of one template): the file is a fraction
of the input where ``quarantine.jsonl`` could be twice its size.

:func:`read` gives the entries as dicts (what a line of ``quarantine.jsonl`` held), :func:`restore`
the dropped rows as frames of their kinds, :func:`read_any` either file.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Iterable, NamedTuple

import orjson
import polars as pl

from curate import schemas
from curate.io.tables import is_parquet
from curate.io.writer import PAGE_BYTES

NAME = "quarantine.parquet"
_COLS = {"stage": pl.String, "code": pl.String, "reason": pl.String, "evidence": pl.String, "id": pl.String,
         "source": pl.String, "line": pl.Int64, "where": pl.String, "kind": pl.String, "matches": pl.String,
         "row": pl.String, "entry": pl.String}
ENTRY = pl.Struct(_COLS)  # one entry as a struct value (how the Ray executor's blocks carry them)
_LEVEL = 3  # zstd level: 9 took 4x the CPU (3.7 s vs 0.9 s for 138k dropped rows at 1M) for a 15% smaller file


def to_frame(dropped: Iterable[pl.DataFrame], entries: Iterable[dict] = ()) -> pl.DataFrame:
    """The file's frame from the clean stage's per-kind quarantine frames and the input reader's entries."""
    parts = []
    for q in dropped:
        if q.height:
            parts.append(q.select(
                *(pl.col(c).cast(t) for c, t in _COLS.items() if c in q.columns and c not in ("matches", "row")),
                pl.struct("matches").struct.json_encode().alias("matches"),
                pl.col("row").struct.json_encode().alias("row"),
            ))
    rows = []
    for e in entries:
        rows.append({**{c: _cell(e.get(c), t) for c, t in _COLS.items() if c not in ("matches", "row", "entry")},
                     "entry": orjson.dumps({k: v for k, v in e.items() if k not in _COLS}, default=str).decode()})
    if rows:
        parts.insert(0, pl.DataFrame(rows, schema={c: t for c, t in _COLS.items() if c not in ("matches", "row")},
                                     strict=False))
    if not parts:
        return pl.DataFrame(schema=_COLS)
    both = pl.concat(parts, how="diagonal_relaxed")
    return both.select(*(pl.col(c).cast(t) if c in both.columns else pl.lit(None, t).alias(c)
                         for c, t in _COLS.items()))


def _cell(value: Any, dtype) -> Any:
    """A reader entry's value for a String column: a record it quotes as evidence (a dict or list)
    as its JSON text."""
    if dtype == pl.String and value is not None and not isinstance(value, str):
        return orjson.dumps(value, default=str).decode()
    return value


#: Columns that hold few distinct values (a rule's code and reason, the input file): dictionary
#: encoded. The others are near unique (ids, where, the rows as JSON): a dictionary of them is
#: built and dropped for nothing.
_FEW_VALUES = ["stage", "code", "reason", "source", "kind", "entry"]
#: Columns with min/max statistics (short values a reader may filter on), not the long texts.
_STATISTICS = [*_FEW_VALUES, "id", "line"]


def write(path: str | Path, frame: pl.DataFrame) -> None:
    """``frame`` (:func:`to_frame`) as ``path`` (pyarrow's writer: it takes per-column dictionary
    and statistics settings, which polars' does not; 114k dropped rows of the 1M clean: ~0.6 vs
    ~1.2 s of CPU, 20.0 vs 19.6 MB)."""
    import pyarrow.parquet as pq

    pq.write_table(frame.to_arrow(), path, compression="zstd", compression_level=_LEVEL,
                   use_dictionary=[c for c in _FEW_VALUES if c in frame.columns],
                   write_statistics=[c for c in _STATISTICS if c in frame.columns], data_page_size=PAGE_BYTES)


def read(path: str | Path) -> list[dict[str, Any]]:
    """The entries as dicts, ``matches`` and ``row`` decoded (the shape of a ``quarantine.jsonl`` line)."""
    return _decode(pl.read_parquet(path))


def _decode(frame: pl.DataFrame) -> list[dict[str, Any]]:
    out = []
    for r in frame.iter_rows(named=True):
        extra = orjson.loads(r.pop("entry")) if r.get("entry") else {}
        matches, row = r.pop("matches", None), r.pop("row", None)
        entry = {k: v for k, v in r.items() if v is not None}
        if matches:
            entry["matches"] = orjson.loads(matches)["matches"]
        if row:
            entry["row"] = orjson.loads(row)
        out.append({**entry, **extra})
    return out


JSONL = "quarantine.jsonl"  # the other stages' quarantine (and clean's before quarantine.parquet)
FORMAT = "curate quarantine"  # a quarantine file read as input: the format named in a reader's report


def file_of(path: str | Path) -> Path | None:
    """The quarantine file of a stage output directory (``quarantine.parquet`` or ``quarantine.jsonl``),
    or ``path`` itself when it is a file; None if a directory has none."""
    p = Path(path)
    if not p.is_dir():
        return p
    for name in (NAME, JSONL):
        if (p / name).is_file():
            return p / name
    return None


def read_any(directory: str | Path) -> list[dict[str, Any]] | None:
    """Entries of a stage output's quarantine (``quarantine.parquet`` or ``quarantine.jsonl``); None if none."""
    f = file_of(directory)
    return None if f is None else read_file(f)


def read_file(path: str | Path) -> list[dict[str, Any]]:
    """The entries of a quarantine file of either format; a line that is no entry is refused with
    its file and line (:class:`curate.io.files.DatasetError`)."""
    path = Path(path)
    if is_parquet(path):
        return read(path)
    out = []
    with open(path, "rb") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                _refuse(f"{path}:{n}: not a JSON line ({exc}); a quarantine file holds one entry per line")
            if not is_entry(entry):
                _refuse(f"{path}:{n}: not a quarantine entry (every entry is an object naming its stage and code)")
            out.append(entry)
    return out


def is_entry(obj: Any) -> bool:
    """A quarantine entry: an object naming the stage and the code, with a reason or a location."""
    return isinstance(obj, dict) and isinstance(obj.get("stage"), str) and isinstance(obj.get("code"), str) \
        and ("reason" in obj or "where" in obj)


def is_quarantine_columns(names: Iterable[str]) -> bool:
    """A Parquet file with these columns is a quarantine file (``quarantine.parquet``)."""
    return {"stage", "code", "row"} <= set(names)


def _refuse(message: str):
    from curate.io.files import DatasetError

    raise DatasetError(message) from None


def counts(directory: str | Path) -> pl.DataFrame | None:
    """Rows per (stage, code) of a stage output's quarantine file (either format), or of the
    quarantine file ``directory`` itself; None if none."""
    f = file_of(directory)
    if f is None:
        return None
    if is_parquet(f):
        q = pl.scan_parquet(f).select("stage", "code").collect()
    else:
        entries = read_file(f)
        q = pl.DataFrame({"stage": [str(e.get("stage") or "?") for e in entries],
                          "code": [str(e.get("code") or "?") for e in entries]},
                         schema={"stage": pl.String, "code": pl.String})
    return q.group_by("stage", "code").agg(pl.len().alias("rows")).sort("rows", "stage", "code",
                                                                         descending=[True, False, False])


def restore(path: str | Path, codes: Iterable[str] | None = None) -> dict[str, pl.DataFrame]:
    """The dropped rows (all, or those whose ``code`` is in ``codes``) as frames of their kinds, as the
    stage saw them (a clean's fixes applied, ``meta.fixes`` listing them). ``path``: a quarantine
    file of either format, or the stage output holding one."""
    return split(path, codes).frames


class Restored(NamedTuple):
    """A quarantine file taken apart: the ``frames`` of the rows it holds, by kind, and the ``left``
    entries that hold no row to give back (records a reader could not turn into rows: their raw
    text is in the entry), with ``entries``, the number read (after the ``codes`` filter), and how
    many of each code were restored and left."""
    frames: dict[str, pl.DataFrame]
    left: list[dict[str, Any]]
    entries: int
    restored_by_code: dict[str, int]
    left_by_code: dict[str, int]


def split(path: str | Path, codes: Iterable[str] | None = None) -> Restored:
    """:class:`Restored` of a quarantine file (either format) or of the stage output holding one,
    all entries or those whose ``code`` is in ``codes``."""
    f = file_of(path)
    if f is None:
        _refuse(f"{path}: no {NAME} or {JSONL} in this directory; give a stage output or a quarantine file")
    from curate.io.files import require_file
    from curate.io.tables import check_parquet

    require_file(f)
    wanted = None if codes is None else set(codes)
    if is_parquet(f):
        names = check_parquet(f, f.as_posix()).names()
        if not is_quarantine_columns(names):
            _refuse(f"{f}: a Parquet file, but not a quarantine file (no stage, code and row columns)")
        lf = pl.scan_parquet(f)
        if wanted is not None:
            lf = lf.filter(pl.col("code").is_in(sorted(wanted)))
        q = lf.collect().with_row_index("_i")
        ok = pl.col("row").is_not_null() & pl.col("kind").is_in(list(schemas.KINDS))
        rows = [(k, orjson.loads(r), c, i) for k, r, c, i in q.filter(ok).select("kind", "row", "code", "_i").iter_rows()]
        left_idx = q.filter(~ok.fill_null(False))["_i"].to_list()

        def entry_at(i: int) -> dict[str, Any]:
            return _decode(q.slice(i, 1).drop("_i"))[0]
        n = q.height
    else:
        entries = [e for e in read_file(f) if wanted is None or e["code"] in wanted]
        rows, left_idx = [], []
        for i, e in enumerate(entries):
            row = e.get("row")
            kind = row.get("kind") if isinstance(row, dict) else None
            if isinstance(row, dict) and (kind or e.get("kind")) in schemas.KINDS:
                rows.append((kind or e["kind"], row, e["code"], i))
            else:
                left_idx.append(i)
        entry_at, n = entries.__getitem__, len(entries)
    frames, bad = _frames(rows)
    left = [entry_at(i) for i in sorted([*left_idx, *bad])]
    bad_set = set(bad)
    restored = Counter(code for _, _, code, i in rows if i not in bad_set)
    return Restored(frames, left, n, dict(restored), dict(Counter(e["code"] for e in left)))


def _frames(rows: list[tuple[str, dict, str, int]]) -> tuple[dict[str, pl.DataFrame], list[int]]:
    """Frames by kind of ``(kind, row, code, index)``; the indices of rows that fit no frame of their
    kind (a hand-edited file: a list where text belongs) come back as unrestorable."""
    out, bad = {}, []
    for kind in schemas.KINDS:
        mine = [(r, i) for k, r, _, i in rows if k == kind]
        if not mine:
            continue
        try:
            out[kind] = schemas.from_rows(kind, (r for r, _ in mine))
        except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError):
            good = []
            for r, i in mine:
                try:
                    good.append(schemas.from_rows(kind, [r]))
                except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError):
                    bad.append(i)
            if good:
                out[kind] = pl.concat(good)
    return out, bad
