"""Outputs are committed as a whole: SIGKILL at random moments and a full disk leave the complete old
result or the complete new one, never a mix; leftovers of killed runs are removed by the next run;
an output path overlapping the input is refused and every input byte stays unchanged.
"""

from __future__ import annotations

import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import polars as pl
import pytest

from curate import io
from curate.errors import EXIT_ENV, EXIT_USER

ROOT = Path(__file__).resolve().parents[1]
CURATE = [sys.executable, "-m", "curate.cli"]
KILLS = 10  # per command: 20 in all


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _corpus(path: Path, fixtures: Path, rows: int, tag: str) -> Path:
    base = io.read_input(fixtures / "malay_alpaca.json", detect_lang=False).collect()["sft"]
    recs = base.select("instruction", "input", "output").to_dicts()
    with open(path, "wb") as fh:
        for i in range(rows):
            r = recs[i % len(recs)]
            noise = os.urandom(24).hex()  # incompressible: the output's size follows the row count
            fh.write(orjson.dumps({**r, "instruction": f"{r['instruction']} ({tag} {i} {noise})"}) + b"\n")
    return path


def _state(out: Path) -> tuple[str, dict[str, pl.DataFrame]]:
    """The committed dataset at ``out``: (stage, frames sorted by id); raises if it is not complete."""
    manifest = io.read_manifest(out)  # every listed file present with its recorded size
    frames = {k: v.sort("id") for k, v in io.read_input(out, detect_lang=False).collect().items()}
    for kind, entry in manifest["kinds"].items():
        assert frames[kind].height == entry["rows"]
    quarantine = "quarantine.parquet" if manifest["stage"] == "clean" else "quarantine.jsonl"
    for name in (quarantine, "report.json"):
        assert name in manifest["files"], name
    return manifest["stage"], frames


def _same(a: dict[str, pl.DataFrame], b: dict[str, pl.DataFrame]) -> bool:
    return a.keys() == b.keys() and all(a[k].equals(b[k]) for k in a)


def _leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


@pytest.mark.parametrize("command", ["ingest", "clean"])
def test_sigkill_at_random_moments_leaves_old_or_new(command, fixtures, tmp_path):
    from curate.ingest import ingest_to_dir

    a = _corpus(tmp_path / "a.jsonl", fixtures, 10000, "a")
    b = _corpus(tmp_path / "b.jsonl", fixtures, 20000, "b")
    if command == "clean":  # clean reads datasets (ingested once here, without language id)
        for src in (a, b):
            ingest_to_dir([src], src.with_suffix(""), detect_lang=False)
        a, b = a.with_suffix(""), b.with_suffix("")
    out = tmp_path / "out"
    extra = ["--no-lang", "-q"] if command == "ingest" else ["-q", "--target-lang", "any", "--rule",
                                                             "near_duplicate=off"]

    def cmd(src: Path, dest: Path) -> list[str]:
        return [*CURATE, command, str(src), "-o", str(dest), *extra]

    # the two complete results, each made once without interruption (and timed)
    subprocess.run(cmd(a, out), cwd=ROOT, env=_env(), check=True, capture_output=True)
    t0 = time.monotonic()  # timed second: the first run warms the caches
    subprocess.run(cmd(b, tmp_path / "want_b"), cwd=ROOT, env=_env(), check=True, capture_output=True)
    duration = time.monotonic() - t0
    results = {a: _state(out)[1], b: _state(tmp_path / "want_b")[1]}
    assert not _same(results[a], results[b])
    current, rng, seen = a, random.Random(11), set()
    scale = 1.0  # the runs' speed changes with the machine's load: kill points follow it
    for i in range(KILLS):
        target = b if current == a else a  # always run towards the other result
        proc = subprocess.Popen(cmd(target, out), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        # spread over the run (start-up, reading, writing, publishing, done), jittered
        time.sleep(scale * duration * (0.3 + 0.85 * i / (KILLS - 1)) * rng.uniform(0.9, 1.1))
        finished = proc.poll() is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if finished:  # the run was faster than the timed one: aim the next kills earlier
            scale *= 0.6
        frames = _state(out)[1]
        if _same(frames, results[target]):
            current, what = target, "new"
        else:
            assert _same(frames, results[current]), "the output is neither the complete old nor the new result"
            what = "old"
        seen.add(what)
    assert "old" in seen, seen
    # a complete run removes what the killed runs left (staging directories of dead processes)
    subprocess.run(cmd(b, out), cwd=ROOT, env=_env(), check=True, capture_output=True)
    assert _same(_state(out)[1], results[b])
    assert _leftovers(tmp_path, "out") == []


def _limited(limit: int):
    def pre() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return pre


@pytest.mark.parametrize("command", ["ingest", "clean", "export"])  # export: polars' write error has no errno
def test_full_disk_leaves_the_old_output_and_says_so(command, fixtures, tmp_path):
    a = _corpus(tmp_path / "a.jsonl", fixtures, 500, "a")
    b = _corpus(tmp_path / "b.jsonl", fixtures, 8000, "b")  # ~1 MB of output: over the 300 kB limit
    out = tmp_path / "out"
    extra = {"ingest": ["--no-lang", "-q"], "clean": ["-q", "--target-lang", "any"], "export": ["-q"]}[command]
    subprocess.run([*CURATE, command, str(a), "-o", str(out), *extra], cwd=ROOT, env=_env(), check=True,
                   capture_output=True)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    res = subprocess.run([*CURATE, command, str(b), "-o", str(out), *extra], cwd=ROOT, env=_env(),
                         capture_output=True, text=True, preexec_fn=_limited(300_000))
    assert res.returncode == EXIT_ENV, res.stderr
    assert "Traceback" not in res.stderr and "Nothing was published" in res.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _leftovers(tmp_path, "out") == []


def test_unwritable_output_is_a_message(fixtures, tmp_path):
    res = subprocess.run([*CURATE, "ingest", str(fixtures / "malay_alpaca.json"), "-o", "/sys/curate-test-out", "-q",
                          "--no-lang"], cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert res.returncode == EXIT_USER and "Traceback" not in res.stderr
    assert "curate-test-out" in res.stderr and ("permission denied" in res.stderr or "read-only" in res.stderr)


@pytest.fixture(scope="module")
def ingested(fixtures, tmp_path_factory) -> Path:
    from curate.ingest import ingest_to_dir

    d = tmp_path_factory.mktemp("ingested") / "DIR"
    ingest_to_dir([fixtures], d, detect_lang=False)
    return d


@pytest.mark.parametrize("where", ["dir", "sub", "parent"])
def test_clean_never_touches_its_input(where, ingested, tmp_path):
    import shutil

    from click.testing import CliRunner

    from curate.cli import cli

    d = tmp_path / "data" / "DIR"
    shutil.copytree(ingested, d)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    out = {"dir": d, "sub": d / "sub", "parent": tmp_path / "data"}[where]
    res = CliRunner().invoke(cli, ["clean", str(d / "sft.parquet"), "-o", str(out), "-q"])
    assert res.exit_code == EXIT_USER and "input" in res.output and "Traceback" not in res.output
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


# single-file outputs (a report, a model, a Batch API file, the cache) named onto the input or into
# an input dataset: `curate report X.parquet -o X.parquet`, `ingest raw.json --report raw.json` and
# `clean --report-json DATASET/sft.parquet` overwrote the input before these checks
FILE_OUTPUTS = {
    "report -o": lambda d, raw, seeds: ["report", str(d / "sft.parquet"), "-o", str(d / "sft.parquet")],
    "tokens train -o": lambda d, raw, seeds: ["tokens", "train", str(d), "--vocab-size", "300", "-o", str(d / "m.model")],
    "ingest --report": lambda d, raw, seeds: ["ingest", str(raw), "-o", str(d.parent / "n"), "--no-lang",
                                              "--report", str(raw)],
    "clean --report-json": lambda d, raw, seeds: ["clean", str(d), "-o", str(d.parent / "c"),
                                                  "--report-json", str(d / "sft.parquet")],
    "translate --batch-out": lambda d, raw, seeds: ["translate", str(d), "-o", str(d.parent / "t"),
                                                    "--batch-out", str(d / "sft.parquet")],
    "reflect --cache": lambda d, raw, seeds: ["reflect", str(d), "-o", str(d.parent / "r"), "--base-url",
                                              "http://127.0.0.1:9/v1", "--cache", str(d / "cache.sqlite")],
    "generate --batch-out": lambda d, raw, seeds: ["generate", "--seeds", str(seeds), "-n", "2", "-o",
                                                   str(d.parent / "g"), "--batch-out", str(seeds)],
    "decontaminate --batch-out": lambda d, raw, seeds: ["decontaminate", str(d), "--against", str(raw),
                                                        "--translate-eval", "ms", "-o", str(d.parent / "x"),
                                                        "--batch-out", str(raw)],
}


@pytest.mark.parametrize("name", list(FILE_OUTPUTS))
def test_a_file_output_never_overwrites_or_lands_in_the_input(name, ingested, fixtures, tmp_path):
    import shutil

    from click.testing import CliRunner

    from curate.cli import cli

    d = tmp_path / "data" / "DIR"
    shutil.copytree(ingested, d)
    raw = tmp_path / "raw.json"
    shutil.copy(fixtures / "malay_alpaca.json", raw)
    seeds = tmp_path / "seeds.jsonl"
    shutil.copy(fixtures / "malay_seed_tasks.jsonl", seeds)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    res = CliRunner().invoke(cli, FILE_OUTPUTS[name](d, raw, seeds), env={"OPENAI_API_KEY": ""})
    assert res.exit_code == EXIT_USER, res.output
    assert "the input" in res.output and "Traceback" not in res.output, res.output
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
