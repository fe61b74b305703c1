"""kill -9 never pays twice for a reply that was read: SIGKILL `curate translate` at random points
against the loopback server, counting on the server every request body answered more than once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from curate.ingest import ingest_to_dir
from tests.servers.openai_server import OpenAIServer

ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = 8


def _cmd(inp: Path, out: Path, url: str, cache: Path) -> list[str]:
    return [sys.executable, "-m", "curate.cli", "translate", str(inp), "-o", str(out), "--base-url", url,
            "--api-key", "test", "--model", "loopback", "--cache", str(cache), "--concurrency", str(CONCURRENCY),
            "--max-chars", "300", "-q"]


def _env(tmp: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp), "PYTHONPATH": str(ROOT)}


def _repeats(server: OpenAIServer) -> int:
    return sum(n - 1 for n in server.answered.values() if n > 1)


def _settle(server: OpenAIServer) -> None:
    """Wait until the server has written every reply it owed the killed process: a request in flight
    at the kill is answered (and counted) after it, and belongs to the run that sent it, not the next."""
    deadline = time.monotonic() + 60
    while server.inflight and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.05)  # the write and the count follow the server's wait without a pause


def test_ten_random_kills_repeat_at_most_the_requests_in_flight(fixtures, tmp_path):
    inp = tmp_path / "in"
    ingest_to_dir([fixtures / "chatdoctor.json"], inp)
    out, cache = tmp_path / "out", tmp_path / "cache.sqlite"
    rng = random.Random(12)
    with OpenAIServer(latency=0.1) as server:
        bound = 0
        kills = 0
        while kills < 10:
            before = _repeats(server)
            proc = subprocess.Popen(_cmd(inp, out, server.url, cache), cwd=ROOT, env=_env(tmp_path),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(rng.uniform(0.5, 3.0))
            if proc.poll() is not None:  # finished before the kill: start over from an empty cache
                assert proc.returncode == 0, proc.stderr.read().decode()
                cache.unlink()
                server.answered.clear()
                bound = 0
                continue
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            _settle(server)
            kills += 1
            # the run before this one was killed with at most CONCURRENCY requests in flight
            assert _repeats(server) - before <= bound
            bound = CONCURRENCY
        before = _repeats(server)
        res = subprocess.run(_cmd(inp, out, server.url, cache), cwd=ROOT, env=_env(tmp_path), capture_output=True,
                             text=True)
        assert res.returncode == 0, res.stderr
        assert _repeats(server) - before <= CONCURRENCY
        assert _repeats(server) <= 10 * CONCURRENCY
        assert pl.read_parquet(out / "sft.parquet").height == 200


def test_kill_after_the_server_went_quiet_repeats_nothing(fixtures, tmp_path):
    inp = tmp_path / "in"
    ingest_to_dir([fixtures / "chatdoctor.json"], inp)
    out, cache = tmp_path / "out", tmp_path / "cache.sqlite"
    with OpenAIServer(latency=0.05) as server:
        proc = subprocess.Popen(_cmd(inp, out, server.url, cache), cwd=ROOT, env=_env(tmp_path),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while len(server.answered) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.latency = 3600.0  # from now on nothing is answered: the requests in flight hang
        answered = -1
        while answered != sum(server.answered.values()):  # quiet: every reply written has been read
            answered = sum(server.answered.values())
            time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert answered >= 40
        server.latency = 0.05
        res = subprocess.run(_cmd(inp, out, server.url, cache), cwd=ROOT, env=_env(tmp_path), capture_output=True,
                             text=True)
        assert res.returncode == 0, res.stderr
        assert _repeats(server) == 0
        assert pl.read_parquet(out / "sft.parquet").height == 200
