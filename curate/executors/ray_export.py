"""``curate export --executor ray``: the training files built per block on the cluster.

Each kind is read as Ray Data blocks (``ray_data.read_kind``); ``map_batches(_records_block)`` turns
a block into the records of every requested format and split with the local functions
(``export.split_expr``, ``export.records_for``: row by row, so blocks concatenated in order give the
local file). The driver appends the blocks' records to each file in input order and commits the
directory as the local executor does (export.json, manifest, dataset card).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from curate import io, schemas
from curate.card import write_card
from curate.errors import UserError
from curate.executors import ray_data
from curate.executors.ray_data import POS, from_arrow
from curate.export import FORMATS, records_for, split_expr


def _records(df: pl.DataFrame, kind: str, wanted: list[str], test_size: float) -> list[dict[str, Any]]:
    df = df.with_columns(split_expr(test_size))
    out = []
    for fmt in wanted:
        for split in (("train", "test") if test_size > 0 else ("train",)):
            part = df.filter(pl.col("split") == split)
            records, skipped = records_for(kind, part, fmt)
            payload = orjson.dumps(records.to_dicts()).decode() if fmt == "alpaca" else records.write_ndjson()
            out.append({"fmt": fmt, "split": split, "rows_in": part.height, "records": records.height,
                        "skipped": skipped, "payload": payload})
    return out


def _records_block(table, kind: str, wanted: list[str], test_size: float):
    import pyarrow as pa

    df = from_arrow(table)
    pos = int(df[POS].min())
    rows = _records(df.drop(POS), kind, wanted, test_size)
    return pa.table({"pos": [pos] * len(rows), **{k: [r[k] for r in rows] for k in rows[0]}})


def export_ray(inp: str | Path, out_dir: str | Path, formats: list[str] | None = None, test_size: float = 0.0, *,
               fmt: str | None = None, rows_per_block: int | None = None) -> dict[str, Any]:
    """:func:`curate.export.export` of ``inp`` on Ray: the same files, export.json and card."""
    if not 0.0 <= test_size < 1.0:
        raise UserError(f"--test-size must be in [0, 1), got {test_size}")
    out_dir = Path(out_dir)
    nrows = rows_per_block or ray_data.block_rows()
    manifest: dict[str, Any] = {"test_size": test_size, "files": []}
    with io.DatasetWriter(out_dir, stage="export", inputs=[inp],
                          params={"formats": formats or "all", "test_size": test_size}) as w:
        spill = w.path / ".input"
        data, files = ray_data.open_input([inp], fmt, spill)
        w.input_manifests = data.manifest_ids
        for kind, kfiles in files.items():
            wanted = [f for f in (formats or FORMATS[kind]) if f in FORMATS[kind]]
            if formats and not wanted:
                rows = sum(pl.scan_parquet(f).select(pl.len()).collect().item() for f in kfiles)
                manifest.setdefault("not_exported", []).append(
                    {"kind": kind, "rows": rows, "reason": f"none of {formats} applies to {kind}"})
                continue
            ds = ray_data.read_kind(kfiles, kind, nrows)
            if ds is None:
                blocks = pl.DataFrame(_records(schemas.empty(kind), kind, wanted, test_size)).with_columns(pos=0)
            else:
                parts = [from_arrow(t) for t in ds.map_batches(
                    _records_block, batch_format="pyarrow", batch_size=None,
                    fn_kwargs={"kind": kind, "wanted": wanted, "test_size": test_size}).iter_batches(
                    batch_format="pyarrow", batch_size=None)]
                blocks = pl.concat(parts).sort("pos", maintain_order=True)
            for (f, split), g in blocks.group_by(["fmt", "split"], maintain_order=True):
                ext = "json" if f == "alpaca" else "jsonl"
                name = f"{kind}_{f}_{split}.{ext}"
                if f == "alpaca":
                    w.write_json(name, [r for p in g["payload"] for r in orjson.loads(p)])
                else:
                    with w.open(name) as fh:
                        for p in g["payload"]:
                            fh.write(p.encode())
                manifest["files"].append({"kind": kind, "format": f, "split": split,
                                          "path": (out_dir / name).as_posix(), "rows_in": int(g["rows_in"].sum()),
                                          "records": int(g["records"].sum()), "skipped": int(g["skipped"].sum())})
        if data.quarantine:
            manifest["quarantined"] = w.write_jsonl("quarantine.jsonl", data.quarantine)
        w.write_json("export.json", manifest)
        w.extra["export"] = manifest
        write_card({k: schemas.conform(pl.scan_parquet(v), k) for k, v in files.items()}, w.path, manifest)
        shutil.rmtree(spill, ignore_errors=True)
    return manifest
