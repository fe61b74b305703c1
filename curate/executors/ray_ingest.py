"""``curate ingest --executor ray``: every source file, and every byte range of a big JSON Lines file,
parsed by a Ray task.

The driver resolves and probes the inputs (formats detected, encodings checked, unreadable files
listed) with ``io.open_input``, exactly as the local executor. A UTF-8 JSON Lines file larger than
``range_bytes`` (``CURATE_RAY_RANGE_BYTES``, 128 MB) is cut into byte ranges aligned on line starts
(:func:`curate.ingest.readers.line_start`); a first, cheap Ray pass counts each range's lines, so each
range knows the number of its first line and every row and quarantine entry names the same
``file:line`` as a local run. ``from_items(tasks)`` -> ``map_batches(_ingest_task)`` then parses each
whole file or range on a worker with the local ingest functions (``open_source``, ``iter_file``:
repairs, quarantine, language) and writes its rows as one shard ``<kind>/part-<n>.parquet`` into the
output's staging directory. The driver writes the quarantine and the report in file and range order
(a file's ranges summed into its one report line), so both equal the local ones.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from curate import io, schemas
from curate.executors import ray_data

DEFAULT_RANGE_BYTES = 128 << 20


def range_bytes(default: int = DEFAULT_RANGE_BYTES) -> int:
    """Bytes per read task of a big JSON Lines file (``CURATE_RAY_RANGE_BYTES`` overrides)."""
    return max(1, int(os.environ.get("CURATE_RAY_RANGE_BYTES") or default))


def _splittable(part) -> bool:
    """A raw part read line by line from its own bytes: UTF-8 JSON Lines (not recoded, not an array)."""
    from curate.ingest.readers import read_head, sniff_container

    return (part.fmt.container == "json" and part.src is not None and part.src.encoding == "utf-8"
            and part.src.path == part.path and sniff_container(part.path, read_head(part.path)) == "jsonl")


def _count_lines(batch):
    """map_batches function: the aligned bytes ``[start, end)`` of each nominal range and its lines."""
    import pyarrow as pa

    from curate.ingest.readers import line_start

    out: dict[str, list] = {"i": [], "start": [], "end": [], "lines": []}
    for i, path, lo, hi in zip(*(batch[c].to_pylist() for c in ("i", "path", "lo", "hi"))):
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            start, end = line_start(fh, lo, size), line_start(fh, hi, size)
            fh.seek(start)
            left, lines = max(0, end - start), 0
            while left and (chunk := fh.read(min(left, 1 << 23))):
                lines += chunk.count(b"\n")
                left -= len(chunk)
        for key, value in (("i", i), ("start", start), ("end", end), ("lines", lines)):
            out[key].append(value)
    return pa.table(out)


def _tasks(parts: list, nbytes: int) -> list[dict[str, Any]]:
    """One read task per file, or per byte range of a big JSON Lines file (with its first line's number)."""
    import ray.data

    tasks, nominal = [], []
    for i, p in enumerate(parts):
        size = os.path.getsize(p.path)
        base = {"path": str(p.path), "name": p.name, "fmt": p.fmt.name}
        if size > nbytes and _splittable(p):
            nominal += [{"i": i, "path": str(p.path), "lo": lo, "hi": min(lo + nbytes, size)}
                        for lo in range(0, size, nbytes)]
            tasks.append({"i": i, **base, "split": True})
        else:
            tasks.append({"i": i, **base, "split": False, "start": -1, "end": -1, "first": 1})
    if not nominal:
        return tasks
    counted = ray.data.from_items(nominal, override_num_blocks=len(nominal)).map_batches(
        _count_lines, batch_size=1, batch_format="pyarrow").take_all()  # in input order
    ranges: dict[int, list[dict]] = {}
    for r in counted:
        ranges.setdefault(r["i"], []).append(r)
    out = []
    for t in tasks:
        if not t.pop("split"):
            out.append(t)
            continue
        first = 1
        for r in ranges[t["i"]]:
            if r["end"] > r["start"]:  # a range inside one long line has no line of its own
                out.append({**t, "start": r["start"], "end": r["end"], "first": first})
            first += r["lines"]
    return out


def _ingest_task(batch, detect_lang: bool, root: str, compression: str):
    import pyarrow as pa

    from curate.ingest.formats import BY_NAME
    from curate.ingest.pipeline import FileSummary, iter_file, open_source
    from curate.ingest.readers import Span

    cols = ("j", "path", "name", "fmt", "start", "end", "first")
    out: dict[str, list] = {"j": [], "i": [], "kind": [], "file": [], "rows": [], "quarantine": [], "summary": []}
    for (j, path, name, fmt, start, end, first), i in zip(zip(*(batch[c].to_pylist() for c in cols)),
                                                         batch["i"].to_pylist()):
        f = BY_NAME[fmt]
        lines: list[bytes] = []
        span = Span(start, end, first) if start >= 0 else None
        with open_source(Path(path), name) as src:
            summary = FileSummary(name, f.name, f.kind, encoding=src.encoding)
            frames = list(iter_file(src, f, summary, detect_lang=detect_lang, span=span,
                                    on_quarantine=lambda e: lines.append(orjson.dumps(e) + b"\n")))
        df = pl.concat(frames) if frames else schemas.empty(f.kind)
        out["j"].append(j)
        out["i"].append(i)
        out["kind"].append(f.kind)
        out["file"].append(ray_data.write_part(df, Path(root), f.kind, j, compression) if df.height else None)
        out["rows"].append(df.height)
        out["quarantine"].append(b"".join(lines))
        out["summary"].append(orjson.dumps(summary.as_dict()).decode())
    return pa.table(out)


def _merge_summaries(done: list[dict]) -> list[dict]:
    """One report line per file: its ranges' counts summed (reasons in first-seen order, as locally)."""
    out: dict[int, dict] = {}
    for r in done:
        s = orjson.loads(r["summary"])
        mine = out.get(r["i"])
        if mine is None:
            out[r["i"]] = s
            continue
        for key in ("records", "kept", "rows", "recovered", "quarantined"):
            mine[key] += s[key]
        for code, n in s["reasons"].items():
            mine["reasons"][code] = mine["reasons"].get(code, 0) + n
    return [out[i] for i in sorted(out)]


def ingest_ray(paths: list[str | Path], out_dir: str | Path, fmt: str | None = None, *, detect_lang: bool = True,
               output_format: str = "parquet", nbytes: int | None = None) -> dict[str, Any] | None:
    """:func:`curate.ingest.ingest_to_dir` on Ray; returns the summary. ``None`` when an input is
    already a dataset or a table export (nothing to parse in parallel: the caller ingests locally).
    ``nbytes``: bytes per read task of a big JSON Lines file (default :func:`range_bytes`)."""
    import ray

    paths = [Path(p) for p in paths]
    writer = io.DatasetWriter(out_dir, stage="ingest", inputs=paths,
                              params={"format": fmt or "auto", "detect_lang": detect_lang, "output_format": output_format})
    with io.open_input(paths, format=fmt) as plan:
        if any(p.what != "raw" for p in plan.parts):
            return None
        tasks = [{"j": j, **t} for j, t in enumerate(_tasks(plan.parts, nbytes or range_bytes()))]
        with writer as w:
            ds = ray.data.from_items(tasks, override_num_blocks=len(tasks)).map_batches(
                _ingest_task, batch_size=1, batch_format="pyarrow",
                fn_kwargs={"detect_lang": detect_lang, "root": str(w.path), "compression": w.compression})
            done = sorted(ds.take_all(), key=lambda r: r["j"])
            rows_by_kind: dict[str, int] = {}
            parts: dict[str, list[str]] = {}
            with w.open("quarantine.jsonl") as fh:
                for r in done:
                    fh.write(r["quarantine"])
                    rows_by_kind[r["kind"]] = rows_by_kind.get(r["kind"], 0) + r["rows"]
                    if r["file"]:
                        parts.setdefault(r["kind"], []).append(r["file"])
            for kind in schemas.KINDS:
                if kind not in parts:
                    rows_by_kind.pop(kind, None)
                    continue
                if output_format == "jsonl":
                    w.write_frame(kind, pl.scan_parquet([w.path / p for p in parts[kind]]), fmt="jsonl")
                    for p in parts[kind]:
                        (w.path / p).unlink()
                else:
                    for p in parts[kind]:
                        w.add_part(kind, p)
            plan.summaries = _merge_summaries(done)
            summary = {**plan.report(), "rows_by_kind": {k: rows_by_kind[k] for k in schemas.KINDS if k in rows_by_kind}}
            w.write_json("report.json", {"stage": "ingest", **summary})
    return summary
