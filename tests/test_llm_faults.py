"""The engine when the model or the endpoint is wrong: fail fast, budgets, fallbacks, fleets.

Real loopback servers (tests/servers/openai_server.py) through the real openai client.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from curate import schemas
from curate.errors import EXIT_ENV, EXIT_MODEL, StageStopped
from curate.llm import Cache, Engine, Request, resolve
from curate.translate import translate_rows
from tests.servers.openai_server import OpenAIServer, Reply, _contract, fake_translate, openai_server  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
WORDS = "hello doctor I have pain in my head since yesterday what should I take please help thank you".split()


def cfg(server, tmp_path, **kw):
    base = dict(base_url=server.url if server else None, api_key="test", model="loopback",
                cache_path=tmp_path / "cache.sqlite", concurrency=8, backoff_base=0.01, backoff_max=0.05,
                progress=False)
    base.update(kw)
    return resolve(**base)


def english_rows(n: int) -> dict[str, list[dict]]:
    texts = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(6 + i % 9)) + f" number {i}" for i in range(n)]
    return {"ppo": schemas.from_rows("ppo", [{"prompt": t} for t in texts]).to_dicts()}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- fail fast --------------------------------------------------------------------------------------
def test_model_that_never_returns_json_is_stopped_after_one_window(openai_server, tmp_path):
    openai_server.handler = lambda req: "Sure! Here is the translation you asked for."
    rows = english_rows(300)
    engine = Engine(cfg(openai_server, tmp_path, fail_fast=10, concurrency=4))
    with pytest.raises(StageStopped) as exc:
        translate_rows(rows, engine, max_units=8)
    msg = str(exc.value)
    assert "10 requests all failed the same way" in msg and "not valid JSON" in msg
    assert "Sure! Here is the translation" in msg  # the reply that shows it
    first_round = -(-300 // 8)
    # the window plus what was in flight; never the 3 tries x every field alone of before
    assert openai_server.count <= 10 + 4 < first_round
    assert Cache(tmp_path / "cache.sqlite").count() == openai_server.count  # everything paid is cached


def test_cli_stop_prints_cause_and_exits_env(openai_server, tmp_path):
    openai_server.handler = lambda req: "no json here"
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in english_rows(60)["ppo"]))
    res = subprocess.run([sys.executable, "-m", "curate.cli", "translate", str(data), "-o", str(tmp_path / "out"),
                          "--base-url", openai_server.url, "--api-key", "test", "--model", "loopback",
                          "--cache", str(tmp_path / "c.sqlite"), "--fail-fast", "5", "--concurrency", "2", "-q"],
                         cwd=ROOT, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert res.returncode == EXIT_ENV, res.stderr
    assert "Traceback" not in res.stderr and "failed the same way" in res.stderr and "no json here" in res.stderr
    assert not (tmp_path / "out").exists()


def test_context_length_errors_stop_the_run(openai_server, tmp_path):
    openai_server.handler = lambda req: Reply(400, body="This model's maximum context length is 8192 tokens")
    engine = Engine(cfg(openai_server, tmp_path, fail_fast=5, concurrency=1))
    with pytest.raises(StageStopped, match="context length"):
        engine.run([Request(f"r{i}", [{"role": "user", "content": f"text {i}"}]) for i in range(30)])
    assert openai_server.count == 5


def test_model_not_found_stops_at_once_with_the_servers_words(openai_server, tmp_path):
    openai_server.handler = lambda req: Reply(404, body="The model `gpt-9` does not exist")
    with pytest.raises(StageStopped) as exc:
        Engine(cfg(openai_server, tmp_path, concurrency=1)).run(
            [Request(f"r{i}", [{"role": "user", "content": f"text {i}"}]) for i in range(10)])
    assert "does not exist" in str(exc.value) and "--model" in str(exc.value)
    assert openai_server.count == 1


def test_scattered_failures_do_not_trip_the_breaker(openai_server, tmp_path):
    n = [0]

    def every_third_broken(req):
        n[0] += 1
        return "not json" if n[0] % 3 == 0 else json.dumps({"score": 1})
    openai_server.handler = every_third_broken
    # one at a time, so the server's order is the engine's: never two broken replies in a row
    engine = Engine(cfg(openai_server, tmp_path, fail_fast=2, max_fix=1, concurrency=1, extra_budget=float("inf")))
    out = engine.run([Request(f"r{i}", [{"role": "user", "content": f"t{i}"}],
                              validate=lambda v, r: _json_or_invalid(v)) for i in range(40)])
    assert all(r.ok for r in out) and engine.stats.fix_rounds >= 10 and not engine.report().get("stopped")


def _json_or_invalid(text):
    from curate.llm import Invalid
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise Invalid("not JSON") from None


# ---- budgets ------------------------------------------------------------------------------------
def test_retry_budget_caps_extra_requests(openai_server, tmp_path):
    n = [0]

    def mostly_down(req):
        n[0] += 1
        return Reply(500, body="down") if n[0] % 2 else "ok"
    openai_server.handler = mostly_down
    engine = Engine(cfg(openai_server, tmp_path, extra_budget=0.25, extra_min=2, fail_fast=0, concurrency=4))
    out = engine.run([Request(f"r{i}", [{"role": "user", "content": f"t{i}"}]) for i in range(40)])
    rep = engine.report()
    assert rep["first_round_requests"] == 40 and rep["extra_requests"]["budget"] == 10
    assert rep["extra_requests"]["sent"] <= 10 and openai_server.count <= 50
    failed = [r for r in out if not r.ok]
    assert failed and all(r.code == "http" and "budget" in r.error for r in failed)


def test_fix_ups_keep_the_best_passing_reply_of_any_round(openai_server, tmp_path):
    """Round 1 gets key 1 right and key 2 wrong; round 2 the other way round: both are kept."""
    rows = english_rows(2)
    calls = []

    def alternating(req):
        _, data = _contract(req)
        calls.append(len(data))
        out = {k: fake_translate(v) for k, v in data.items()}
        if len(calls) == 1:
            out["2"] = fake_translate(data["2"], lang="id")
        else:  # the re-ask holds only the field that failed; this round breaks the others it would see
            out = {k: fake_translate(v, lang="id") if len(data) > 1 else fake_translate(v) for k, v in data.items()}
        return json.dumps(out, ensure_ascii=False)
    openai_server.handler = alternating
    out = translate_rows(rows, Engine(cfg(openai_server, tmp_path, max_fix=2)))
    assert out.quarantine == [] and out.frames["ppo"].height == 2
    assert calls == [2, 1]  # only the failing field was asked again


# ---- response_format -----------------------------------------------------------------------------
def test_server_rejecting_response_format_falls_back_and_remembers(openai_server, tmp_path):
    def strict(req):
        if "response_format" in req:
            return Reply(400, body="response_format is not supported by this server")
        _, data = _contract(req)
        return json.dumps({k: fake_translate(v) for k, v in data.items()})
    openai_server.handler = strict
    rows = english_rows(20)
    engine = Engine(cfg(openai_server, tmp_path))
    out = translate_rows(rows, engine)
    assert out.quarantine == [] and engine.report()["response_format"].startswith("dropped")
    assert sum("response_format" in r for r in openai_server.requests) <= 8  # one per worker at most
    openai_server.reset()
    again = translate_rows(rows, Engine(cfg(openai_server, tmp_path)))
    assert openai_server.count == 0 and again.quarantine == []  # the cache remembers the fallback


def test_no_response_format_option(openai_server, tmp_path):
    translate_rows(english_rows(5), Engine(cfg(openai_server, tmp_path, response_format=False)))
    assert openai_server.count and not any("response_format" in r for r in openai_server.requests)


# ---- fleets ---------------------------------------------------------------------------------------
def test_fleet_spreads_requests_and_takes_a_failing_server_out(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with OpenAIServer(latency=0.02) as a, OpenAIServer(latency=0.02) as b, \
            OpenAIServer(handler=lambda req: Reply(500, body="sick")) as sick:
        engine = Engine(cfg(None, tmp_path, base_url=[a.url, dead, b.url, sick.url], concurrency=8,
                            server_cooldown=60, extra_budget=float("inf")))
        out = engine.run([Request(f"r{i}", [{"role": "user", "content": f"hello {i}"}]) for i in range(120)])
        assert all(r.ok for r in out)
        assert a.count > 20 and b.count > 20  # spread over the healthy ones
        # three failures in a row take a server out (60 s here), and nothing is sent to it after that;
        # at most the other 7 of the 8 slots can have been on their way to it at that moment
        assert sick.count <= 3 + 7
        assert engine.stats.servers_taken_out == 2  # late failures of requests already sent don't count again
        assert engine.report()["endpoint"]["base_urls"] == [a.url, dead, b.url, sick.url]


def test_base_url_repeatable_on_the_command_line(tmp_path):
    from click.testing import CliRunner

    from curate.commands.translate import translate
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in english_rows(30)["ppo"]))
    with OpenAIServer() as a, OpenAIServer() as b:
        res = CliRunner().invoke(translate, [str(data), "-o", str(tmp_path / "out"), "--base-url", a.url,
                                             "--base-url", b.url, "--api-key", "t", "--model", "loopback",
                                             "--cache", str(tmp_path / "c.sqlite"), "--max-chars", "200", "-q"])
        assert res.exit_code == 0, res.output
        assert a.count and b.count


def test_exit_code_model_when_rows_are_quarantined_for_replies(openai_server, tmp_path):
    openai_server.handler = lambda req: json.dumps({k: fake_translate(v, lang="id")
                                                    for k, v in (_contract(req)[1] or {}).items()})
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in english_rows(4)["ppo"]))
    res = subprocess.run([sys.executable, "-m", "curate.cli", "translate", str(data), "-o", str(tmp_path / "out"),
                          "--base-url", openai_server.url, "--api-key", "test", "--model", "loopback",
                          "--cache", str(tmp_path / "c.sqlite")],
                         cwd=ROOT, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert res.returncode == EXIT_MODEL, res.stderr
    out = res.stdout + res.stderr
    assert "retries + fix-ups" in out and "quarantined (language: 4)" in out


def _translate_cli(tmp_path, url: str, *extra: str) -> subprocess.CompletedProcess:
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in english_rows(40)["ppo"]))
    return subprocess.run([sys.executable, "-m", "curate.cli", "translate", str(data), "-o", str(tmp_path / "out"),
                           "--base-url", url, "--api-key", "test", "--model", "loopback",
                           "--cache", str(tmp_path / "c.sqlite"), "--max-chars", "300", *extra],
                          cwd=ROOT, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})


def test_unreachable_endpoint_stops_at_once_with_the_cause(tmp_path):
    res = _translate_cli(tmp_path, f"http://127.0.0.1:{free_port()}/v1")
    assert res.returncode == EXIT_ENV and "cannot reach the LLM endpoint" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "out").exists()


def test_rows_lost_to_the_endpoint_print_the_cause(openai_server, tmp_path):
    n = [0]

    def half_down(req):
        n[0] += 1
        if n[0] % 2:
            return Reply(503, body="the GPU node is rebooting")
        _, data = _contract(req)
        return json.dumps({k: fake_translate(v) for k, v in data.items()})
    openai_server.handler = half_down
    res = _translate_cli(tmp_path, openai_server.url, "--max-retries", "0", "--fail-fast", "0", "--concurrency", "1")
    assert res.returncode == EXIT_ENV, res.stderr
    assert "cause (" in res.stderr and "the GPU node is rebooting" in res.stderr
    assert (tmp_path / "out" / "manifest.json").exists()  # the rows that were answered are published


def test_acceptance_like_faults_lose_no_row_within_the_budget(tmp_path):
    """5% 500s, 5% 429s with Retry-After, 1% hangs, 2% malformed replies: every row comes out, and
    retries + fix-ups stay inside the default budget (25% of the first round)."""
    from tests.servers.openai_server import chaos, translator
    with OpenAIServer(chaos(translator(), seed=3, retry_after="0.1"), latency=0.02) as server:
        engine = Engine(cfg(server, tmp_path, concurrency=16, backoff_base=0.05))
        out = translate_rows(english_rows(600), engine, max_units=6)
    rep = engine.report()
    assert out.quarantine == [] and out.frames["ppo"].height == 600
    assert rep["rate_limited"] and rep["server_errors"]  # the faults happened
    assert rep["extra_requests"]["sent"] <= rep["extra_requests"]["budget"] == rep["first_round_requests"] // 4


def test_cached_rerun_loads_neither_openai_nor_lingua(openai_server, tmp_path):
    first = _translate_cli(tmp_path, openai_server.url, "-q")
    assert first.returncode == 0, first.stderr
    sent = openai_server.count
    out2 = tmp_path / "again"
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "curate.cli", "translate", str(tmp_path / "in.jsonl"),
                          "-o", str(out2), "--base-url", openai_server.url, "--api-key", "test", "--model", "loopback",
                          "--cache", str(tmp_path / "c.sqlite"), "--max-chars", "300", "-q"],
                         cwd=ROOT, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert res.returncode == 0 and openai_server.count == sent
    imported = {line.split("|")[-1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")}
    assert "curate.translate" in imported and "curate.langid" in imported
    assert not {"openai", "lingua", "sentencepiece", "argilla"} & imported
