"""``curate ingest --executor ray``: every source file parsed by a Ray task.

The driver resolves and probes the inputs (formats detected, encodings checked, unreadable files
listed) with ``io.open_input``, exactly as the local executor; ``from_items(files)`` ->
``map_batches(_ingest_file)`` parses each file on a worker with the local ingest functions
(``open_source``, ``iter_file``: repairs, quarantine, language) and writes its rows as one shard
``<kind>/part-<n>.parquet`` into the output's staging directory. The driver writes the quarantine
and the report in file order, so both equal the local ones. One file is one task: a single huge
file is not split (see docs/scale.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import polars as pl

from curate import io, schemas
from curate.executors import ray_data


def _ingest_file(batch, detect_lang: bool, root: str):
    import pyarrow as pa

    from curate.ingest.formats import BY_NAME
    from curate.ingest.pipeline import FileSummary, iter_file, open_source

    out: dict[str, list] = {"i": [], "kind": [], "file": [], "rows": [], "quarantine": [], "summary": []}
    for i, path, name, fmt in zip(*(batch[c].to_pylist() for c in ("i", "path", "name", "fmt"))):
        f = BY_NAME[fmt]
        lines: list[bytes] = []
        with open_source(Path(path), name) as src:
            summary = FileSummary(name, f.name, f.kind, encoding=src.encoding)
            frames = list(iter_file(src, f, summary, detect_lang=detect_lang,
                                    on_quarantine=lambda e: lines.append(orjson.dumps(e) + b"\n")))
        df = pl.concat(frames) if frames else schemas.empty(f.kind)
        out["i"].append(i)
        out["kind"].append(f.kind)
        out["file"].append(ray_data.write_part(df, Path(root), f.kind, i) if df.height else None)
        out["rows"].append(df.height)
        out["quarantine"].append(b"".join(lines))
        out["summary"].append(orjson.dumps(summary.as_dict()).decode())
    return pa.table(out)


def ingest_ray(paths: list[str | Path], out_dir: str | Path, fmt: str | None = None, *, detect_lang: bool = True,
               output_format: str = "parquet") -> dict[str, Any] | None:
    """:func:`curate.ingest.ingest_to_dir` on Ray; returns the summary. ``None`` when an input is
    already a dataset or a table export (nothing to parse in parallel: the caller ingests locally)."""
    import ray

    paths = [Path(p) for p in paths]
    writer = io.DatasetWriter(out_dir, stage="ingest", inputs=paths,
                              params={"format": fmt or "auto", "detect_lang": detect_lang, "output_format": output_format})
    with io.open_input(paths, format=fmt) as plan:
        if any(p.what != "raw" for p in plan.parts):
            return None
        items = [{"i": i, "path": str(p.path), "name": p.name, "fmt": p.fmt.name} for i, p in enumerate(plan.parts)]
        with writer as w:
            ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
                _ingest_file, batch_size=1, batch_format="pyarrow",
                fn_kwargs={"detect_lang": detect_lang, "root": str(w.path)})
            done = sorted(ds.take_all(), key=lambda r: r["i"])
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
            plan.summaries = [orjson.loads(r["summary"]) for r in done]
            summary = {**plan.report(), "rows_by_kind": {k: rows_by_kind[k] for k in schemas.KINDS if k in rows_by_kind}}
            w.write_json("report.json", {"stage": "ingest", **summary})
    return summary
