"""The Ray executor on a real Ray instance (2 CPUs, a small object store): every stage run with
``--executor ray`` gives the local executor's rows, quarantine and report figures.

The datasets are cut into small blocks (``rows_per_block``) so that every kind spans several
blocks and duplicates are found across blocks, as on a cluster.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import polars as pl
import pytest

from curate.clean import CleanConfig, clean_dir
from curate.ingest import ingest_to_dir

ray = pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[1]
BLOCK = 300  # rows per Ray block in these tests (sft has ~1,500 rows: 6 blocks)
TIMING = ("seconds", "engine_seconds", "input", "output", "requests_per_second", "elapsed")


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance for the session: 2 CPUs, 200 MB object store."""
    from curate.executors import ray_session

    if not ray.is_initialized():
        ray.init(num_cpus=2, object_store_memory=200 * 1024 * 1024, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    ray_session.configure()
    yield ray
    ray.shutdown()


def sources(fixtures: Path) -> list[Path]:
    """Every fixture file in a source format curate reads."""
    from curate.errors import UserError
    from curate.ingest import detect_format

    out = []
    for p in sorted(fixtures.iterdir()):
        if p.is_file() and p.suffix in (".json", ".jsonl", ".txt"):
            try:
                detect_format(p)
            except UserError:
                continue
            out.append(p)
    return out


@pytest.fixture(scope="session")
def normalized(fixtures, tmp_path_factory) -> Path:
    """Every fixture source ingested (locally) once."""
    out = tmp_path_factory.mktemp("ray") / "normalized"
    ingest_to_dir(sources(fixtures), out)
    return out


def strip_timing(obj):
    """A report without wall-clock figures (they differ between any two runs)."""
    if isinstance(obj, dict):
        return {k: strip_timing(v) for k, v in obj.items() if k not in TIMING}
    if isinstance(obj, list):
        return [strip_timing(v) for v in obj]
    return obj


def read_kinds(path: Path) -> dict[str, pl.DataFrame]:
    from curate import io

    return io.read_input(path).collect()


def assert_same_dataset(local: Path, other: Path) -> None:
    a, b = read_kinds(local), read_kinds(other)
    assert sorted(a) == sorted(b)
    for kind in a:
        assert a[kind]["id"].to_list() == b[kind]["id"].to_list(), kind
        assert a[kind].equals(b[kind]), kind
    assert (local / "quarantine.jsonl").read_bytes() == (other / "quarantine.jsonl").read_bytes()
    ra = orjson.loads((local / "report.json").read_bytes())
    rb = orjson.loads((other / "report.json").read_bytes())
    assert strip_timing(ra) == strip_timing(rb)


def test_clean_ray_equals_local(ray_local, normalized, tmp_path):
    from curate.executors.ray_clean import clean_dir_ray

    cfg = CleanConfig.load(target_lang="any")
    local = clean_dir(normalized, tmp_path / "local", cfg, progress=False)
    res = clean_dir_ray(normalized, tmp_path / "ray", cfg, rows_per_block=BLOCK)
    assert res.report["rows_dropped"] == local.report["rows_dropped"] > 0
    dup = {r["code"]: r for r in res.report["rules"]}
    assert dup["exact_duplicate"]["dropped"] + dup["near_duplicate"]["dropped"] > 0  # found across blocks
    assert_same_dataset(tmp_path / "local", tmp_path / "ray")


def test_executor_ray_without_ray_says_how_to_install(normalized, tmp_path):
    code = ("import sys; sys.modules['ray'] = None; from curate.cli import main; "
            f"sys.argv = ['curate', 'clean', {str(normalized)!r}, '-o', {str(tmp_path / 'o')!r}, '--executor', 'ray']; "
            "main()")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode != 0
    assert "pip install 'curate[ray]'" in p.stderr
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "o").exists()
