"""The Ray executor on a real Ray instance (2 CPUs, a small object store): every stage run with
``--executor ray`` gives the local executor's rows, quarantine and report figures.

The datasets are cut into small blocks (``rows_per_block``) so that every kind spans several
blocks and duplicates are found across blocks, as on a cluster.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import orjson
import polars as pl
import pyarrow.parquet as pq
import pytest

from curate.clean import CleanConfig, clean_dir
from curate.ingest import ingest_to_dir
from tests.servers.openai_server import openai_server  # noqa: F401 (fixture)

ray = pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[1]
BLOCK = 300  # rows per Ray block in these tests (sft has ~1,500 rows: 6 blocks)
TIMING = ("seconds", "engine_seconds", "input", "output", "requests_per_second", "elapsed", "event_loop_lag_ms")


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance for the session: 2 CPUs, 200 MB object store."""
    from curate.executors import ray_session

    # the lean instance `--executor ray` starts (no monitor, log monitor, API server; Ray Data's
    # stats actor and autoscaling coordinator not started)
    ray_session.connect("local", quiet=True, num_cpus=2, object_store_memory=200 * 1024 * 1024)
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
    from curate.clean import quarantine as qfile

    for name in (qfile.NAME, "quarantine.jsonl"):  # clean writes parquet, ingest JSON lines
        assert (local / name).exists() == (other / name).exists(), name
    assert qfile.read_any(local) == qfile.read_any(other) is not None
    if (local / "quarantine.jsonl").exists():
        assert (local / "quarantine.jsonl").read_bytes() == (other / "quarantine.jsonl").read_bytes()
    ra = orjson.loads((local / "report.json").read_bytes())
    rb = orjson.loads((other / "report.json").read_bytes())
    assert strip_timing(ra) == strip_timing(rb)


def test_clean_ray_equals_local(ray_local, normalized, tmp_path, monkeypatch):
    from curate.executors.ray_clean import clean_dir_ray

    cfg = CleanConfig.load(target_lang="any")
    local = clean_dir(normalized, tmp_path / "local", cfg, progress=False)
    # the driver's compression setting reaches the workers' shards (they were started before it was
    # set, so they do not see it in their environment)
    monkeypatch.setenv("CURATE_COMPRESSION", "zstd")
    res = clean_dir_ray(normalized, tmp_path / "ray", cfg, rows_per_block=BLOCK)
    monkeypatch.delenv("CURATE_COMPRESSION")
    shards = list((tmp_path / "ray").rglob("part-*.parquet"))
    assert shards and {pq.ParquetFile(p).metadata.row_group(0).column(0).compression for p in shards} == {"ZSTD"}
    assert res.report["rows_dropped"] == local.report["rows_dropped"] > 0
    dup = {r["code"]: r for r in res.report["rules"]}
    # found across blocks; the near duplicates verified from pass A's sketches (side files), the dry
    # run's below by sketching the candidates again on the driver: the same rows either way
    assert dup["exact_duplicate"]["dropped"] > 0 and dup["near_duplicate"]["dropped"] > 0
    assert_same_dataset(tmp_path / "local", tmp_path / "ray")
    # pass A's side files and the spilled input stay in the staging directory, never in the output
    published = sorted(p.relative_to(tmp_path / "ray").as_posix() for p in (tmp_path / "ray").rglob("*"))
    assert not [p for p in published if p.endswith(".arrow") or p.startswith(".") or "/." in p], published
    # a dry run has no output directory for side files: the same figures through one more Ray pass
    dry = clean_dir_ray(normalized, tmp_path / "dry", cfg, dry_run=True, rows_per_block=BLOCK)
    assert not (tmp_path / "dry").exists()
    assert strip_timing(dry.report) == strip_timing({k: v for k, v in res.report.items() if k != "output"})
    assert dry.quarantine.equals(res.quarantine)



def test_local_instance_starts_without_monitor_log_monitor_or_api_server(ray_local):
    """The local instance curate starts (``ray_session.lean_local_instance``) has Ray's GCS, raylet
    and agents, and none of the three head processes a one-machine command never uses, nor Ray
    Data's two detached actors (``ray_session.lean_ray_data``)."""
    assert descendant_pids(b"gcs_server") and descendant_pids(b"raylet")
    for gone in (b"log_monitor.py", b"autoscaler/_private/monitor.py", b"dashboard/dashboard.py"):
        assert not descendant_pids(gone), gone
    assert ray.get(ray.remote(lambda: 41 + 1).remote()) == 42  # and it runs tasks
    # nor Ray Data's detached stats actor and autoscaling coordinator, once a Ray Data job has run
    # (the coordinator's reservations are made in the driver: the job gets the node's CPUs)
    rows = ray.data.range(40, override_num_blocks=4).map_batches(lambda b: {"x": b["id"] * 2}).take_all()
    assert [r["x"] for r in rows] == list(range(0, 80, 2))
    named = {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)}
    assert not named & {"datasets_stats_actor", "AutoscalingCoordinator"}, named
    for gone in (b"_StatsActor", b"_AutoscalingCoordinatorActor"):
        assert not descendant_pids(gone, ray_titled=True), gone


def test_planned_blocks_counts_the_pieces_pass_a_reads(normalized, fixtures):
    """The warm-up sends no more tasks than pass A has blocks: the count comes from the parquet
    files' metadata (every kind's files, cut into pieces of ``rows_per_block``); raw sources, read
    by the driver first, give None (one warm-up task per CPU)."""
    from curate.executors.ray_clean import planned_blocks

    files = sorted(f for f in normalized.rglob("*.parquet") if f.name != "quarantine.parquet")
    rows = [pl.scan_parquet(f).select(pl.len()).collect().item() for f in files]
    assert sum(rows) > BLOCK
    assert planned_blocks(normalized, rows_per_block=BLOCK) == sum(-(-n // BLOCK) for n in rows if n)
    assert planned_blocks(normalized, rows_per_block=10**9) == len([n for n in rows if n])
    assert planned_blocks(fixtures / "kochatgpt_ppo.jsonl") is None


def test_kept_rows_of_a_block_are_its_prefix_or_filtered():
    """The finish and rows-back passes read a pass-A block's kept rows (``_q`` null) as the block's
    first rows (pass A puts its quarantined rows last): every slice of a block is so; a table joined
    from two blocks is not, and is filtered instead: always exactly the kept rows, in order."""
    from curate.executors.ray_clean import _kept

    def block(first: int, kept: int, gone: int) -> pl.DataFrame:
        pos = list(range(first, first + kept + gone))
        return pl.DataFrame({"_pos": pos, "_q": [None] * kept + [{"code": "x"}] * gone,
                             "text": [f"row {p}" for p in pos]})

    a, b = block(0, 5, 3), block(8, 4, 2)
    for table, want in ((a.to_arrow(), list(range(5))), (a.to_arrow().slice(2, 5), [2, 3, 4]),
                        (a.to_arrow().slice(5), []), (block(0, 6, 0).to_arrow(), list(range(6))),
                        (pl.concat([a, b]).to_arrow(), list(range(5)) + list(range(8, 12)))):
        got = _kept(table)
        assert got["_pos"].to_pylist() == want
        assert got["text"].to_pylist() == [f"row {p}" for p in want]

def test_executor_ray_without_ray_says_how_to_install(normalized, tmp_path):
    code = ("import sys; sys.modules['ray'] = None; from curate.cli import main; "
            f"sys.argv = ['curate', 'clean', {str(normalized)!r}, '-o', {str(tmp_path / 'o')!r}, '--executor', 'ray']; "
            "main()")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode != 0
    assert "pip install 'curate[ray]'" in p.stderr
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "o").exists()


def test_clean_command_on_a_new_local_instance_equals_local(normalized, tmp_path):
    """`curate clean --executor ray` as a user runs it (its own new local Ray instance, the process
    ending with the command): Ray is shut down (ray_session.release) while the quarantine and report
    are written in another thread; the command ends cleanly (no Ray error, no traceback) and its
    output is the local one."""
    cfg = CleanConfig.load(target_lang="any")
    clean_dir(normalized, tmp_path / "local", cfg, progress=False)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["CURATE_RAY_BLOCK_ROWS"] = str(BLOCK)
    p = subprocess.run([sys.executable, "-m", "curate.cli", "clean", str(normalized), "-o", str(tmp_path / "ray"),
                        "--target-lang", "any", "--executor", "ray", "-q"],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr and "already been shutdown" not in p.stderr, p.stderr
    assert_same_dataset(tmp_path / "local", tmp_path / "ray")


def _session_processes(sid: int) -> list[str]:
    """Command lines of the running processes of session ``sid`` (zombies left out)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{d}/cmdline", "rb") as fh:
                    cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[3]) == sid:
                out.append(cmd)
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_while_ray_starts_leaves_no_ray_process(normalized, tmp_path):
    """Ctrl-C (SIGINT to the whole foreground process group, Ray's GCS and raylet included) while
    the local instance is still starting: every process of the instance goes with the command.
    (Before ray_session._own_local_instance the raylet's dashboard and runtime-env agents outlived
    it by ~60 s, retrying to tell the dead GCS that their raylet had died.)"""
    import signal
    import time

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    p = subprocess.Popen([sys.executable, "-m", "curate.cli", "clean", str(normalized), "-o", str(tmp_path / "o"),
                          "--executor", "ray", "-q"], cwd=ROOT, env=env, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        end = time.monotonic() + 120
        while not any("RuntimeEnvAgent" in c or "dashboard/agent.py" in c for c in _session_processes(p.pid)):
            assert p.poll() is None and time.monotonic() < end, "the raylet's agents never started"
            time.sleep(0.05)
        os.killpg(p.pid, signal.SIGINT)
        assert p.wait(timeout=60) == 130, p.stderr.read()
        end = time.monotonic() + 10
        while _session_processes(p.pid) and time.monotonic() < end:
            time.sleep(0.2)
        assert _session_processes(p.pid) == []
    finally:  # a failed run leaves nothing behind either (the instance's processes share its group)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
    assert not (tmp_path / "o").exists()


def clean_on_a_dead_address(inp: Path, out: Path) -> tuple[subprocess.CompletedProcess, str]:
    """``curate clean INP -o OUT --executor ray --ray-address`` a port that was free a moment ago
    (nothing listens on it); the process and that address."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    p = subprocess.run([sys.executable, "-m", "curate.cli", "clean", str(inp), "-o", str(out),
                        "--executor", "ray", "--ray-address", address, "-q"],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    return p, address


def test_an_address_where_nothing_listens_is_one_line_not_minutes_of_retries(normalized, tmp_path):
    p, address = clean_on_a_dead_address(normalized, tmp_path / "o")
    assert p.returncode == 1, p.stderr
    assert f"cannot connect to Ray at {address}: nothing answers there" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "o").exists()


def test_an_input_curate_cannot_read_is_refused_before_ray_starts(normalized, tmp_path):
    """A dataset directory without its manifest (an unfinished run) is refused with the reader's one
    line before any Ray is started or connected to: the Ray address is one where nothing listens,
    so reaching connect() would have said that instead."""
    import shutil

    bad = tmp_path / "unfinished"
    shutil.copytree(normalized, bad)
    (bad / "manifest.json").unlink()
    p, _ = clean_on_a_dead_address(bad, tmp_path / "o")
    assert p.returncode != 0, p.stderr
    assert "not a complete curate dataset (no manifest.json)" in p.stderr, p.stderr
    assert "cannot connect to Ray" not in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "o").exists()


# ---- LLM stages on an actor pool ------------------------------------------------------------------
def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])


def worker_pids(marker: bytes) -> list[int]:
    """Workers of *this* process's Ray instance (descendants of this process: other sessions' Ray
    workers on the same machine are never touched) whose title (Ray sets it from the task or actor)
    contains ``marker``."""
    return descendant_pids(marker, ray_titled=True)


def descendant_pids(marker: bytes, ray_titled: bool = False) -> list[int]:
    """Descendants of this process whose command line (``ray_titled``: a Ray worker's title)
    contains ``marker``."""
    me, pids = os.getpid(), []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            title = (d / "cmdline").read_bytes()
        except OSError:
            continue
        if not ((title.startswith(b"ray::") or not ray_titled) and marker in title):
            continue
        pid, hops = int(d.name), 0
        while pid > 1 and pid != me and hops < 64:
            pid, hops = _parent(pid), hops + 1
        if pid == me:
            pids.append(int(d.name))
    return pids


class CountingHandler:
    """The loopback model, counting the requests it answered (a 200 is a paid request)."""

    def __init__(self, base):
        import collections

        self.base = base
        self.answered = collections.Counter()

    def __call__(self, request: dict):
        reply = self.base(request)
        self.answered[orjson.dumps(request, option=orjson.OPT_SORT_KEYS)] += 1
        return reply


class KillActorsAfter(CountingHandler):
    """After ``n`` answered requests: wait until the replies are in the clients' cache, kill -9 every
    actor of the pool, and fail (500, not paid) whatever the dead actors had in flight."""

    def __init__(self, base, n: int):
        super().__init__(base)
        self.n, self.killed, self.dead_until = n, [], 0.0

    def __call__(self, request: dict):
        import signal
        import time

        from tests.servers.openai_server import Reply

        if not self.killed and sum(self.answered.values()) >= self.n:
            time.sleep(0.5)  # the server is paused: replies already sent are read and committed
            self.killed = worker_pids(b"MapWorker")
            for pid in self.killed:
                os.kill(pid, signal.SIGKILL)
            self.dead_until = time.monotonic() + 1.5  # restarted actors need longer than this to ask again
        if time.monotonic() < self.dead_until:
            return Reply(500, body={"error": {"message": "worker lost", "type": "server_error"}})
        return super().__call__(request)


@pytest.fixture(scope="module")
def llm_dataset(fixtures, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("llm") / "norm"
    ingest_to_dir([fixtures / "chatdoctor.json", fixtures / "kochatgpt_ppo.jsonl", fixtures / "sharegpt.json"], out)
    return out


def llm_config(server, cache: Path, **kw):
    from curate.llm.config import resolve

    return resolve(base_url=server.url, api_key="sk-test", model="loopback", cache_path=cache, concurrency=2,
                   backoff_base=0.01, progress=False, **kw)


def assert_same_llm_run(local: Path, other: Path) -> None:
    a, b = read_kinds(local), read_kinds(other)
    assert sorted(a) == sorted(b)
    for kind in a:
        assert a[kind].equals(b[kind]), kind
    assert (local / "quarantine.jsonl").read_bytes() == (other / "quarantine.jsonl").read_bytes()


def test_translate_ray_equals_local(ray_local, llm_dataset, openai_server, tmp_path):
    from curate.executors import ray_llm
    from curate.translate import translate_dataset
    from tests.servers.openai_server import translator

    openai_server.handler = CountingHandler(translator())
    outcome, _ = translate_dataset(llm_dataset, tmp_path / "local", llm_config(openai_server, tmp_path / "a.sqlite"),
                                   to="ms", block_rows=40)
    paid_local = sum(openai_server.handler.answered.values())
    openai_server.handler = CountingHandler(translator())
    report, _ = ray_llm.translate(llm_dataset, tmp_path / "ray", llm_config(openai_server, tmp_path / "b.sqlite"),
                                  to="ms", block_rows=40)
    assert report["rows_in"] == outcome.report["rows_in"] > 80  # several blocks per kind
    assert report["fields"]["fields_sent"] > 0
    assert sum(openai_server.handler.answered.values()) == paid_local == report["llm"]["requests_sent"]
    assert_same_llm_run(tmp_path / "local", tmp_path / "ray")
    local_report = strip_timing(orjson.loads((tmp_path / "local" / "report.json").read_bytes()))
    ray_report = strip_timing(orjson.loads((tmp_path / "ray" / "report.json").read_bytes()))
    llm_local, llm_ray = local_report.pop("llm"), ray_report.pop("llm")
    assert llm_ray["endpoint"].pop("cache") != llm_local["endpoint"].pop("cache")  # each run its own cache
    assert llm_local == llm_ray
    assert local_report == ray_report


def test_translate_ray_survives_killed_actors_without_paying_twice(ray_local, llm_dataset, openai_server, tmp_path):
    from curate.executors import ray_llm
    from curate.translate import translate_dataset
    from tests.servers.openai_server import translator

    openai_server.handler = CountingHandler(translator())
    translate_dataset(llm_dataset, tmp_path / "local", llm_config(openai_server, tmp_path / "a.sqlite"),
                      to="ms", block_rows=40)
    total = sum(openai_server.handler.answered.values())
    openai_server.handler = kill = KillActorsAfter(translator(), n=total // 3)
    report, _ = ray_llm.translate(llm_dataset, tmp_path / "ray", llm_config(openai_server, tmp_path / "b.sqlite"),
                                  to="ms", block_rows=40)
    assert kill.killed, "no actor was killed"
    assert max(kill.answered.values()) == 1  # no paid request repeated
    assert sum(kill.answered.values()) == total
    assert_same_llm_run(tmp_path / "local", tmp_path / "ray")
    assert report["quarantined"] == 0


def test_ray_actors_never_hold_more_requests_in_flight_than_concurrency(monkeypatch, tmp_path):
    """--concurrency is split across the actors, and there are never more actors than it allows."""
    from curate.executors import ray_llm
    from curate.llm.config import resolve

    monkeypatch.setenv("CURATE_RAY_ACTORS", "8")
    for concurrency, blocks in ((3, 10), (64, 10), (64, 3), (1, 5), (17, 100)):
        cfg = resolve(base_url="http://127.0.0.1:9/v1", model="m", concurrency=concurrency, cache_path=tmp_path / "c")
        n = ray_llm.actors_for(blocks, cfg.concurrency)
        assert 1 <= n <= min(8, blocks, concurrency)
        assert n * ray_llm._share(cfg, n).concurrency <= concurrency


def test_translate_ray_extra_budget_holds_for_the_whole_run(ray_local, llm_dataset, openai_server, tmp_path):
    """Every first reply is rejected, so every request wants fix-ups: the extra requests the server
    receives stay within one budget for the whole run (a share of all blocks' first round), not a
    budget per block or per actor (which would allow the minimum once per block)."""
    from curate.executors import ray_llm
    from curate.llm.engine import FIX_PROMPT
    from tests.servers.openai_server import translator

    good = translator()
    openai_server.handler = CountingHandler(good)
    ray_llm.translate(llm_dataset, tmp_path / "clean-run", llm_config(openai_server, tmp_path / "a.sqlite"),
                      to="ms", block_rows=40)
    first_round = sum(openai_server.handler.answered.values())  # what every run asks first
    fix = FIX_PROMPT.split("{")[0]

    def picky(request):  # a first ask gets prose, not the JSON asked for; a fix-up is answered right
        if any(fix in str(m.get("content")) for m in request["messages"]):
            return good(request)
        return "Maaf, saya tidak pasti."
    openai_server.handler = CountingHandler(picky)
    share, minimum = 0.1, 3
    report, _ = ray_llm.translate(llm_dataset, tmp_path / "ray", llm_config(
        openai_server, tmp_path / "b.sqlite", extra_budget=share, extra_min=minimum, fail_fast=0, max_retries=0),
        to="ms", block_rows=40)
    budget = max(minimum, int(share * first_round))
    blocks = report["rows_in"] // 40
    assert blocks * minimum > budget  # a budget per block would have allowed more
    extra_sent = sum(openai_server.handler.answered.values()) - first_round
    assert 0 < extra_sent <= budget
    llm = report["llm"]
    assert llm["first_round_requests"] == first_round and llm["extra_requests"]["budget"] == budget
    assert llm["extra_requests"]["sent"] == extra_sent == llm["requests_sent"] - first_round
    assert report["quarantined"] > 0  # what the budget did not allow to fix is quarantined, not lost


# ---- a two-node cluster, and a worker killed in the middle of a clean --------------------------------
TWO_NODES = r'''
import os, signal, sys, threading, time
from pathlib import Path
import ray
from ray.cluster_utils import Cluster
from curate.clean import CleanConfig
from curate.executors import ray_session
from curate.executors.ray_clean import clean_dir_ray
sys.path.insert(0, sys.argv[3])
from tests.test_ray import worker_pids

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 100 * 2**20})
cluster.add_node(num_cpus=1, object_store_memory=100 * 2**20)
ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
assert len([n for n in ray.nodes() if n["Alive"]]) == 2
ray_session.configure()
killed = []

def killer():  # kill -9 the first worker seen running the rules on a block
    deadline = time.monotonic() + 120
    while not killed and time.monotonic() < deadline:
        for pid in worker_pids(b"_rules_block"):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            break
        time.sleep(0.02)

threading.Thread(target=killer, daemon=True).start()
clean_dir_ray(sys.argv[1], sys.argv[2], CleanConfig.load(target_lang="any"), rows_per_block=100)
print("killed", len(killed))
ray.shutdown()
cluster.shutdown()
'''


def test_clean_on_two_nodes_with_a_killed_worker_equals_local(fixtures, tmp_path):
    normalized = tmp_path / "normalized"  # three sources (two kinds, ~400 rows): the cluster test stays short
    ingest_to_dir([fixtures / "malay_alpaca.json", fixtures / "malay_alpaca_anomalies.json",
                   fixtures / "malay_kochatgpt_rm.jsonl"], normalized)
    cfg = CleanConfig.load(target_lang="any")
    clean_dir(normalized, tmp_path / "local", cfg, progress=False)
    # the duplicate keys grouped by Ray shuffles here (what a run too big for the driver does), on the
    # driver in test_clean_ray_equals_local
    p = subprocess.run([sys.executable, "-c", TWO_NODES, str(normalized), str(tmp_path / "ray"), str(ROOT)],
                       capture_output=True, text=True, cwd=ROOT, timeout=600,
                       env={**os.environ, "CURATE_RAY_DRIVER_KEYS_MB": "0"})
    assert p.returncode == 0, p.stderr[-3000:]
    assert "killed 1" in p.stdout, p.stdout + p.stderr[-2000:]
    assert_same_dataset(tmp_path / "local", tmp_path / "ray")


def test_export_ray_equals_local(ray_local, normalized, tmp_path):
    from curate import io
    from curate.executors.ray_export import export_ray
    from curate.export import export

    data = io.read_input(normalized)
    local = export(data.frames, tmp_path / "local", None, 0.1, inputs=[normalized], input_manifests=data.manifest_ids)
    mine = export_ray(normalized, tmp_path / "ray", None, 0.1, rows_per_block=BLOCK)
    assert len(local["files"]) == len(mine["files"]) > 8
    for a, b in zip(local["files"], mine["files"]):
        assert {**a, "path": ""} == {**b, "path": ""}
        name = Path(a["path"]).name
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "ray" / name).read_bytes(), name
    assert (tmp_path / "local" / "README.md").read_bytes() == (tmp_path / "ray" / "README.md").read_bytes()


def test_ingest_ray_equals_local(ray_local, fixtures, normalized, tmp_path):
    from curate.executors.ray_ingest import ingest_ray

    summary = ingest_ray(sources(fixtures), tmp_path / "ray")
    assert summary["total"]["quarantined"] > 0 and summary["total"]["accounted"]
    assert_same_dataset(normalized, tmp_path / "ray")


def test_judge_ray_equals_local(ray_local, llm_dataset, openai_server, tmp_path):
    from curate.executors import ray_llm
    from curate.judge import judge_dataset
    from tests.test_judge import scorer

    openai_server.handler = CountingHandler(scorer)
    outcome, _ = judge_dataset(llm_dataset, tmp_path / "local", llm_config(openai_server, tmp_path / "a.sqlite"),
                               min_score=3)
    openai_server.handler = CountingHandler(scorer)
    report, _ = ray_llm.judge(llm_dataset, tmp_path / "ray", llm_config(openai_server, tmp_path / "b.sqlite"),
                              min_score=3, block_rows=40)
    assert report["scored"] == outcome.report["scored"] > 40 and report["quarantined"] > 0
    # every request paid once, as many as locally (even if a worker is lost on a busy machine)
    assert max(openai_server.handler.answered.values()) == 1
    assert sum(openai_server.handler.answered.values()) == outcome.report["llm"]["requests_sent"]
    assert_same_llm_run(tmp_path / "local", tmp_path / "ray")
    a = strip_timing(orjson.loads((tmp_path / "local" / "report.json").read_bytes()))
    b = strip_timing(orjson.loads((tmp_path / "ray" / "report.json").read_bytes()))
    assert a.pop("llm")["outcomes"] == b.pop("llm")["outcomes"]
    assert a == b


# ---- reflect and pairwise judge: whole-dataset stages put together from blocks ----------------------
def _crc(text: str) -> int:
    import zlib

    return zlib.crc32(text.encode())


@pytest.fixture(scope="module")
def identity_chats(fixtures, tmp_path_factory) -> Path:
    """40 ShareGPT chats (many open with the same question, so reflect writes the same SFT row from
    chats in different blocks) plus 4 repeated chats, and the 3 long ShareGPT chats."""
    import json

    chats = json.loads((fixtures / "sharegpt_fastchat_identity.json").read_text())[:40]
    chats += [{**c, "id": f"again_{c['id']}"} for c in chats[:4]]
    d = tmp_path_factory.mktemp("reflect")
    (d / "identity.json").write_text(json.dumps(chats))
    ingest_to_dir([d / "identity.json", fixtures / "sharegpt.json"], d / "chats")
    return d / "chats"


def _same_reports(local: Path, other: Path) -> None:
    a = strip_timing(orjson.loads((local / "report.json").read_bytes()))
    b = strip_timing(orjson.loads((other / "report.json").read_bytes()))
    assert a.pop("llm")["outcomes"] == b.pop("llm")["outcomes"]
    assert a == b


def test_reflect_then_pairwise_judge_ray_equal_local(ray_local, identity_chats, openai_server, tmp_path):
    from curate import io, schemas
    from curate.executors import ray_llm
    from curate.judge import judge_dataset
    from curate.reflect import reflect_dataset
    from tests.test_judge import tags
    from tests.test_reflect import FAULTS, good, model

    # one answer in six gets no valid reply however often it is asked (quarantined with the raw reply)
    openai_server.handler = model(lambda p: (FAULTS["invalid_json"] if _crc(p["user"]) % 6 == 0 else good)(p))
    kw = dict(max_context=700, chat=True)  # a small budget: some answers are too long to review
    cfg = dict(extra_budget=float("inf"))
    local, _ = reflect_dataset(identity_chats, tmp_path / "local", llm_config(openai_server, tmp_path / "a.sqlite", **cfg),
                               **kw)
    report, _ = ray_llm.reflect(identity_chats, tmp_path / "ray", llm_config(openai_server, tmp_path / "b.sqlite", **cfg),
                                block_rows=8, **kw)
    rep = local.report
    assert rep["counts"]["duplicate_sft"] > 0 and rep["answers_reflected"] > 20  # rows repeated across blocks
    assert {"too_long", "invalid_json"} <= set(rep["quarantine_codes"])
    assert report["rows_out"] == rep["rows_out"] and report["counts"] == rep["counts"]
    assert_same_llm_run(tmp_path / "local", tmp_path / "ray")
    _same_reports(tmp_path / "local", tmp_path / "ray")

    # pairwise: the reflected RM rows, every fifth one unranked; the judge's pick depends on the prompt
    rows = read_kinds(tmp_path / "local")["rm"].to_dicts()
    for i in range(0, len(rows), 5):
        rows[i]["ranks"] = None
    # beside them the reflected SFT rows, which pairwise judging passes through unchanged
    io.write_dataset({"rm": schemas.from_rows("rm", rows), "sft": read_kinds(tmp_path / "local")["sft"]},
                     tmp_path / "pairs")

    def judge(request):
        t = tags(request)
        pick = ("1", "2", "tie", "3")[_crc(t["prompt"] + t["answer_1"]) % 4]  # "3": invalid, re-asked, quarantined
        return orjson.dumps({"better": pick, "reason": "by content"}).decode()
    openai_server.handler = judge
    pairs = tmp_path / "pairs"
    outcome, _ = judge_dataset(pairs, tmp_path / "jlocal", llm_config(openai_server, tmp_path / "c.sqlite", **cfg),
                               pairwise=True, confidence=0.9)
    jr, _ = ray_llm.judge(pairs, tmp_path / "jray", llm_config(openai_server, tmp_path / "d.sqlite", **cfg),
                          pairwise=True, confidence=0.9, block_rows=7)
    s = outcome.report["pairwise"]
    assert min(s["wins"], s["losses"], s["ties"]) > 0 and s["confidence"] == 0.9
    assert set(outcome.report["quarantine_codes"]) == {"unranked", "invalid_reply"}
    assert jr["pairwise"] == s
    assert read_kinds(tmp_path / "jray")["sft"].equals(read_kinds(tmp_path / "local")["sft"])
    assert_same_llm_run(tmp_path / "jlocal", tmp_path / "jray")
    _same_reports(tmp_path / "jlocal", tmp_path / "jray")

    # the same runs through the CLI (the Ray session of the test is reused; every reply is cached)
    from click.testing import CliRunner

    from curate.cli import cli

    base = ["--executor", "ray", "--base-url", openai_server.url, "--model", "loopback", "--api-key", "sk-test",
            "--extra-budget", "1000", "-q"]
    for args, same_as in (([str(identity_chats), "--max-context", "700", "--chat", "--cache", str(tmp_path / "b.sqlite")],
                           "ray"),
                          ([str(pairs), "--pairwise", "--confidence", "0.9", "--cache", str(tmp_path / "d.sqlite")],
                           "jray")):
        stage = "judge" if "--pairwise" in args else "reflect"
        res = CliRunner().invoke(cli, [stage, *args, "-o", str(tmp_path / f"cli-{stage}"), *base])
        assert res.exit_code == 3 and "see quarantine.jsonl" in res.output, res.output  # invalid replies
        assert_same_llm_run(tmp_path / same_as, tmp_path / f"cli-{stage}")
    # an endpoint that is down stops an actor: the user gets the engine's message, not a Ray traceback
    openai_server.stop()
    res = CliRunner().invoke(cli, ["judge", str(pairs), "--pairwise", "-o", str(tmp_path / "down"), *base,
                                   "--no-cache", "--max-retries", "0"])
    assert res.exit_code == 4 and "cannot reach the LLM endpoint" in res.output, res.output
    assert "Traceback" not in res.output and not (tmp_path / "down").exists()


def test_ingest_ray_splits_a_big_jsonl_file_into_line_aligned_ranges(ray_local, fixtures, tmp_path):
    """One JSON Lines file read by many byte-range tasks gives the local rows, quarantine and report:
    line numbers stay the file's own (a broken line in the middle is quarantined as file:line)."""
    from curate.executors.ray_ingest import ingest_ray

    lines = (fixtures / "malay_kochatgpt_sft.jsonl").read_bytes().splitlines(keepends=True)[:120]
    mid = len(lines) // 2
    broken = b'{"prompt": "Apakah ini", "completion": "tidak ditutup\n'
    glued = lines[3].rstrip(b"\n") + lines[4]  # two records on one line: repaired into two rows
    body = (b"\xef\xbb\xbf" + b"".join(lines[:mid]) + broken + b"\n" + glued
            + (fixtures / "malay_kochatgpt_sft_anomalies.jsonl").read_bytes() + b"".join(lines[mid:]))
    big = tmp_path / "big.jsonl"
    big.write_bytes(body.rstrip(b"\n"))  # no newline after the last line
    seeds = fixtures / "alpaca_seed_tasks.jsonl"  # a format read record by record (not the block fast path)
    ingest_to_dir([big, seeds], tmp_path / "local")
    nbytes = len(body) // 9  # ~9 ranges of the big file, 2 of the other; a long line may span a range
    summary = ingest_ray([big, seeds], tmp_path / "ray", nbytes=nbytes)
    assert_same_dataset(tmp_path / "local", tmp_path / "ray")
    parts = orjson.loads((tmp_path / "ray" / "manifest.json").read_bytes())["kinds"]
    assert min(len(v["files"]) for v in parts.values()) >= 2 and sum(len(v["files"]) for v in parts.values()) >= 9
    q = [orjson.loads(x) for x in (tmp_path / "ray" / "quarantine.jsonl").read_bytes().splitlines()]
    where = f"{big.as_posix()}:{mid + 1}"
    assert [e["code"] for e in q if e["where"] == where] == ["parse_error"]
    assert [f["source"] for f in summary["files"]] == [big.as_posix(), seeds.as_posix()]  # one line per file
    assert summary["total"]["accounted"] and summary["files"][0]["reasons"]["parse_error"] >= 1


def test_union_of_positions_is_union1d():
    """ray_clean._union (the rows the driver reads back: candidates and exact duplicates) is
    np.union1d for sorted, unsorted, overlapping and empty inputs."""
    import numpy as np

    from curate.executors.ray_clean import _union

    rng = np.random.default_rng(7)
    empty = np.empty(0, dtype=np.int64)
    cases = [(empty, empty), (np.array([4]), empty), (empty, np.array([3, 3])),
             (np.unique(rng.integers(0, 5000, 900)), np.unique(rng.integers(0, 5000, 300))),
             (rng.integers(0, 500, 400), rng.integers(0, 500, 400))]  # unsorted, repeated (the shuffle path's order)
    for a, b in cases:
        got = _union(a, b)
        assert got.dtype == np.int64 and np.array_equal(got, np.union1d(a, b))
