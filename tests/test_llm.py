"""The LLM engine over real HTTP: the loopback OpenAI-compatible server, the real openai client."""

from __future__ import annotations

import json
import random
import sqlite3
import time
from pathlib import Path

import orjson
import pytest
from pydantic import BaseModel

from curate.errors import UserError
from curate.llm import Engine, Invalid, Request, request_key, resolve
from curate.llm.batch import write_requests
from tests.servers.openai_server import HANG, OpenAIServer, Reply, completion, openai_server  # noqa: F401

SECRET = "sk-test-DO-NOT-LEAK-4f9a8b7c6d5e"


def cfg(server, tmp_path, **kw):
    base = dict(base_url=server.url if server else None, model="loopback", api_key=SECRET if server else "",
                cache_path=tmp_path / "cache.sqlite", concurrency=8, backoff_base=0.01, backoff_max=0.05,
                progress=False)
    base.update(kw)
    return resolve(**base)


def reqs(texts, **kw):
    return [Request(key=f"r{i}", messages=[{"role": "user", "content": t}], **kw) for i, t in enumerate(texts)]


TEXTS = [f"hello doctor question {i} about water" for i in range(30)]


def test_cache_second_run_makes_zero_requests(openai_server, tmp_path):
    first = Engine(cfg(openai_server, tmp_path)).run(reqs(TEXTS))
    assert all(r.ok for r in first) and openai_server.count == len(TEXTS)
    assert [r.key for r in first] == [f"r{i}" for i in range(len(TEXTS))]  # input order kept
    assert all(str(i) in r.value for i, r in enumerate(first))  # each reply belongs to its request
    openai_server.reset()
    engine = Engine(cfg(openai_server, tmp_path))
    second = engine.run(reqs(TEXTS))
    assert openai_server.count == 0
    assert [r.value for r in second] == [r.value for r in first]
    assert all(r.cached for r in second)
    rep = engine.report()
    assert rep["requests_sent"] == 0 and rep["replies_cached"] == len(TEXTS)
    assert rep["tokens"]["cached_completion"] > 0 and rep["tokens"]["completion"] == 0


def test_cache_key_covers_input_model_and_params(openai_server, tmp_path):
    Engine(cfg(openai_server, tmp_path)).run(reqs(["hello doctor 1"]))
    openai_server.reset()
    # changed input data -> a new request, never the stale reply
    out = Engine(cfg(openai_server, tmp_path)).run(reqs(["hello doctor 2"]))
    assert openai_server.count == 1 and "2" in out[0].value
    Engine(cfg(openai_server, tmp_path, model="other")).run(reqs(["hello doctor 2"]))
    assert openai_server.count == 2
    Engine(cfg(openai_server, tmp_path)).run(reqs(["hello doctor 2"], params={"temperature": 0.7}))
    assert openai_server.count == 3
    assert openai_server.requests[-1]["temperature"] == 0.7


def test_sent_body_hashes_to_cache_key(openai_server, tmp_path):
    Engine(cfg(openai_server, tmp_path)).run(reqs(["hello"], params={"temperature": 0, "seed": 1}))
    body = openai_server.requests[0]
    assert request_key(body) == request_key({"model": "loopback", "messages": [{"role": "user", "content": "hello"}],
                                             "temperature": 0, "seed": 1})
    db = sqlite3.connect(tmp_path / "cache.sqlite")
    assert db.execute("SELECT key FROM replies").fetchone()[0] == request_key(body)


def test_concurrency_is_bounded(tmp_path):
    with OpenAIServer(latency=0.1) as server:
        Engine(cfg(server, tmp_path, concurrency=4)).run(reqs(TEXTS[:20]))
        assert server.count == 20
        assert server.max_inflight == 4


def test_429_honours_retry_after(openai_server, tmp_path):
    openai_server.script(Reply(429, {"Retry-After": "1"}, "slow down"))
    t0 = time.monotonic()
    engine = Engine(cfg(openai_server, tmp_path, concurrency=1))
    out = engine.run(reqs(["hello doctor"]))
    took = time.monotonic() - t0
    assert out[0].ok and openai_server.count == 2
    assert took >= 0.95, f"Retry-After: 1 not honoured (retried after {took:.2f}s)"
    assert engine.report()["rate_limited"] == 1


def test_sustained_429_loses_no_row(openai_server, tmp_path):
    # the openai client's own default gives up after 2 retries; the engine keeps going
    openai_server.script(*[Reply(429, {"retry-after-ms": "20"}, "rate limited") for _ in range(12)])
    engine = Engine(cfg(openai_server, tmp_path, concurrency=2, max_retries=2))
    out = engine.run(reqs(TEXTS[:6]))
    assert all(r.ok for r in out)
    assert engine.stats.rate_limited == 12 and openai_server.count == 6 + 12


def test_5xx_timeouts_and_malformed_bodies_are_retried(openai_server, tmp_path):
    openai_server.script(Reply(500, body="boom"), Reply(503, body="busy"), HANG,
                         Reply(200, body=b"{not json"), Reply(200, body={"choices": []}))
    # a 2 s deadline: on a loaded CI machine the client's first request (connection, lazy imports)
    # can miss a tighter one before it reaches the server; the budget is not what this test is about
    engine = Engine(cfg(openai_server, tmp_path, concurrency=1, timeout=2.0, extra_budget=None))
    out = engine.run(reqs(["hello doctor"]))
    assert out[0].ok and "doktor" in out[0].value
    s = engine.stats
    assert openai_server.count == 6 and s.server_errors == 4
    assert s.timeouts >= 1 and s.retries == s.server_errors + s.timeouts


def test_failures_are_not_cached_and_rerun_retries_them(openai_server, tmp_path):
    openai_server.handler = lambda req: Reply(500, body="down")
    out = Engine(cfg(openai_server, tmp_path, max_retries=1)).run(reqs(TEXTS[:3]))
    assert [r.code for r in out] == ["http"] * 3 and all("500" in r.error for r in out)
    assert openai_server.count == 6
    from tests.servers.openai_server import default_model
    openai_server.handler = default_model
    openai_server.reset()
    out = Engine(cfg(openai_server, tmp_path)).run(reqs(TEXTS[:3]))
    assert all(r.ok for r in out) and openai_server.count == 3


def test_one_failed_request_does_not_sink_the_others(openai_server, tmp_path):
    def handler(req):
        return Reply(400, body="bad request") if "question 3 " in req["messages"][0]["content"] else "ok " + \
            req["messages"][0]["content"]
    openai_server.handler = handler
    out = Engine(cfg(openai_server, tmp_path)).run(reqs(TEXTS[:8]))
    assert [r.ok for r in out] == [True, True, True, False, True, True, True, True]
    assert out[3].code == "http" and "400" in out[3].error
    assert openai_server.count == 8  # a 400 is not retried


class Score(BaseModel):
    score: int
    rationale: str


def _check_score(v: Score, reply) -> Score:
    if not 1 <= v.score <= 5:
        raise Invalid("score must be between 1 and 5")
    return v


def test_invalid_structured_reply_is_fed_back_then_fixed(openai_server, tmp_path):
    replies = iter(["Sure! here it is: {score: 3", '{"score": 9, "rationale": "x"}',
                    '```json\n{"score": 4, "rationale": "clear"}\n```'])
    openai_server.handler = lambda req: next(replies)
    out = Engine(cfg(openai_server, tmp_path, max_fix=2)).run(reqs(["rate this"], schema=Score, validate=_check_score))
    assert out[0].ok and out[0].value == Score(score=4, rationale="clear") and out[0].attempts == 3
    second, third = openai_server.requests[1]["messages"], openai_server.requests[2]["messages"]
    assert second[-2] == {"role": "assistant", "content": "Sure! here it is: {score: 3"}
    assert "not valid JSON" in second[-1]["content"]
    assert "score must be between 1 and 5" in third[-1]["content"]
    # the whole chain is cached: a re-run asks nothing
    openai_server.reset()
    again = Engine(cfg(openai_server, tmp_path, max_fix=2)).run(reqs(["rate this"], schema=Score, validate=_check_score))
    assert again[0].ok and openai_server.count == 0


def test_invalid_reply_ends_quarantined_with_raw_text(openai_server, tmp_path):
    openai_server.handler = lambda req: '{"score": "high"}'
    out = Engine(cfg(openai_server, tmp_path, max_fix=1)).run(reqs(["rate this"], schema=Score))
    r = out[0]
    assert not r.ok and r.code == "invalid" and r.text == '{"score": "high"}'
    assert "score" in r.error and "rationale" in r.error
    assert openai_server.count == 2
    # cached invalid replies are replayed (never paid twice) ... unless asked to retry them
    openai_server.reset()
    Engine(cfg(openai_server, tmp_path, max_fix=1)).run(reqs(["rate this"], schema=Score))
    assert openai_server.count == 0
    openai_server.handler = lambda req: '{"score": 2, "rationale": "ok"}'
    out = Engine(cfg(openai_server, tmp_path, max_fix=1, retry_failed=True)).run(reqs(["rate this"], schema=Score))
    assert out[0].ok and openai_server.count == 1


def test_request_budget(openai_server, tmp_path):
    engine = Engine(cfg(openai_server, tmp_path, max_requests=4, concurrency=1))
    out = engine.run(reqs(TEXTS[:10]))
    assert sum(r.ok for r in out) == 4 and openai_server.count == 4
    assert {r.code for r in out if not r.ok} == {"budget"}
    openai_server.reset()
    out = Engine(cfg(openai_server, tmp_path)).run(reqs(TEXTS[:10]))
    assert all(r.ok for r in out) and openai_server.count == 6  # only the ones not paid for yet


def test_auth_failure_stops_the_run_without_echoing_the_key(openai_server, tmp_path):
    openai_server.handler = lambda req: Reply(401, body=f"Incorrect API key provided: {SECRET}")
    with pytest.raises(UserError) as exc:
        Engine(cfg(openai_server, tmp_path)).run(reqs(TEXTS[:20]))
    assert "401" in str(exc.value) and SECRET not in str(exc.value)
    assert openai_server.count < 20


def test_batch_out_file_shape_and_split(tmp_path):
    engine = Engine(cfg(None, tmp_path, batch_out=tmp_path / "b" / "req.jsonl", batch_max_requests=4))
    assert engine.batch_mode
    out = engine.run(reqs(TEXTS[:10], params={"temperature": 0}))
    assert {r.code for r in out} == {"batch"}
    files = engine.batch_files
    assert [p.name for p in files] == ["req-001.jsonl", "req-002.jsonl", "req-003.jsonl"]
    lines = [orjson.loads(x) for p in files for x in p.read_bytes().splitlines()]
    assert [len(p.read_bytes().splitlines()) for p in files] == [4, 4, 2]
    for line, text in zip(lines, TEXTS):
        assert set(line) == {"custom_id", "method", "url", "body"}
        assert line["method"] == "POST" and line["url"] == "/v1/chat/completions"
        assert line["body"] == {"model": "loopback", "messages": [{"role": "user", "content": text}], "temperature": 0}
        assert line["custom_id"] == request_key(line["body"])
    notice = engine.batch_notice("translate")
    assert len(notice.splitlines()) == 2 and "req-001.jsonl" in notice and "--base-url" in notice


def test_batch_split_by_size(tmp_path):
    items = [(f"k{i}", {"model": "m", "messages": [{"role": "user", "content": "x" * 100}]}) for i in range(10)]
    files = write_requests(tmp_path / "r.jsonl", items, max_requests=50_000, max_bytes=600)
    sizes = [p.stat().st_size for p in files]
    assert len(files) > 1 and all(s <= 600 for s in sizes)
    assert sum(len(p.read_bytes().splitlines()) for p in files) == 10


def _batch_results(batch_file: Path, fail_index: int) -> list[bytes]:
    """Answer a Batch API input file the way the Batch API does (one error line), shuffled."""
    from tests.servers.openai_server import default_model
    out = []
    for i, raw in enumerate(batch_file.read_bytes().splitlines()):
        line = orjson.loads(raw)
        if i == fail_index:
            rec = {"id": f"batch_req_{i}", "custom_id": line["custom_id"],
                   "response": {"status_code": 500, "request_id": "r", "body": {"error": {"message": "server had an error"}}},
                   "error": None}
        else:
            body = completion(default_model(line["body"]), line["body"]["model"], 10)
            rec = {"id": f"batch_req_{i}", "custom_id": line["custom_id"],
                   "response": {"status_code": 200, "request_id": "r", "body": body}, "error": None}
        out.append(orjson.dumps(rec))
    random.Random(7).shuffle(out)
    return out


def test_batch_in_merges_any_order_errors_quarantined(tmp_path):
    engine = Engine(cfg(None, tmp_path, batch_out=tmp_path / "req.jsonl"))
    engine.run(reqs(TEXTS[:12]))
    results = tmp_path / "results.jsonl"
    results.write_bytes(b"\n".join(_batch_results(engine.batch_files[0], fail_index=5)) + b"\n")
    engine = Engine(cfg(None, tmp_path, batch_out=tmp_path / "req2.jsonl", batch_in=(results,)))
    out = engine.run(reqs(TEXTS[:12]))
    assert [r.ok for r in out] == [i != 5 for i in range(12)]
    assert out[5].code == "batch_error" and "server had an error" in out[5].error
    assert all(str(i) in r.value for i, r in enumerate(out) if r.ok)
    assert engine.report()["batch_in"] == {"replies": 11, "errors": 1}
    assert not engine.batch_files  # nothing left to submit
    # the merged replies sit in the same cache the live path reads
    with OpenAIServer() as server:
        out = Engine(cfg(server, tmp_path)).run(reqs(TEXTS[:12]))
        assert sum(r.ok for r in out) == 11 and server.count == 0
        out = Engine(cfg(server, tmp_path, retry_failed=True)).run(reqs(TEXTS[:12]))
        assert all(r.ok for r in out) and server.count == 1


def test_no_endpoint_without_batch_file_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(UserError, match="no LLM endpoint"):
        Engine(cfg(None, tmp_path)).run(reqs(["x"]))


def test_secret_never_stored(openai_server, tmp_path):
    engine = Engine(cfg(openai_server, tmp_path, batch_out=None))
    engine.run(reqs(TEXTS[:5]))
    assert openai_server.auth[0] == f"Bearer {SECRET}"  # the key was used ...
    report = json.dumps(engine.report())
    assert SECRET not in report and SECRET not in repr(engine.config)
    for p in tmp_path.rglob("*"):  # ... but is in no file (cache, WAL, shm)
        if p.is_file():
            assert SECRET.encode() not in p.read_bytes(), p
    batch = Engine(cfg(None, tmp_path, api_key=None, batch_out=tmp_path / "b.jsonl"))
    batch.run(reqs(["another text"]))
    assert SECRET.encode() not in (tmp_path / "b.jsonl").read_bytes()


def test_sync_facade_inside_a_running_loop(openai_server, tmp_path):
    import asyncio

    async def main():
        return Engine(cfg(openai_server, tmp_path)).run(reqs(TEXTS[:3]))
    out = asyncio.run(main())
    assert all(r.ok for r in out)


def test_duplicate_keys_rejected(tmp_path, openai_server):
    with pytest.raises(ValueError, match="unique"):
        Engine(cfg(openai_server, tmp_path)).run([Request("a", [{"role": "user", "content": "x"}])] * 2)


def test_unreachable_endpoint_fails_fast_with_a_clear_message(tmp_path):
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again on exit: nothing listens there
    t0 = time.monotonic()
    with pytest.raises(UserError, match="cannot reach the LLM endpoint"):
        Engine(resolve(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", cache_path=tmp_path / "c.sqlite",
                       backoff_base=0.01, progress=False)).run(reqs(TEXTS))
    assert time.monotonic() - t0 < 10


def test_loopback_server_speaks_openai(openai_server):
    """The fixture other stages reuse: /v1/models and /v1/chat/completions through the real client."""
    from openai import OpenAI

    client = OpenAI(base_url=openai_server.url, api_key="test", max_retries=0)
    assert [m.id for m in client.models.list()] == ["loopback"]
    openai_server.handler = lambda req: {**completion("cut off", req["model"], 3, finish="length")}
    r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "cut off" and r.choices[0].finish_reason == "length"
    assert r.usage.prompt_tokens == 3 and openai_server.count == 1


def test_per_request_max_fix(openai_server, tmp_path):
    openai_server.handler = lambda req: "not json"
    out = Engine(cfg(openai_server, tmp_path, max_fix=2)).run(
        [Request("a", [{"role": "user", "content": "x"}], schema=Score, max_fix=0),
         Request("b", [{"role": "user", "content": "y"}], schema=Score)])
    assert [r.attempts for r in out] == [1, 3] and {r.code for r in out} == {"invalid"}
    assert openai_server.count == 4


def test_a_stalled_event_loop_does_not_time_out_replies_already_written(tmp_path):
    """A stall of the caller's event loop longer than the adaptive deadline (a loaded machine, a
    slow callback, a GC pause) is not the server's fault: replies written meanwhile are read, never
    abandoned as timeouts and paid for again."""
    texts = [f"hello doctor question {i} about water and pain" for i in range(80)]
    stalled = []

    def on_result(res):
        if len(stalled) == 0 and engine.stats.replies_live >= 30:
            stalled.append(1)
            time.sleep(4.5)  # holds the loop past the 3 s floor of the adaptive deadline

    with OpenAIServer(latency=0.05) as server:
        engine = Engine(cfg(server, tmp_path, concurrency=8))
        out = engine.run(reqs(texts), on_result=on_result)
        assert stalled and all(r.ok for r in out)
        assert engine.stats.timeouts == 0
        assert sum(n - 1 for n in server.answered.values()) == 0
        assert server.count == len(texts)


# replies an endpoint may send that are not chat completions; each must be retried, never cached
# or allowed to crash the run (found by sending fuzzed replies through every LLM stage)
_UNSET = object()


def _with(content=None, usage=None, choices=None, message=_UNSET):
    body = completion("x")
    if content is not None:
        body["choices"][0]["message"]["content"] = content
    if message is not _UNSET:
        body["choices"][0]["message"] = message
    if choices is not None:
        body["choices"] = choices
    if usage is not None:
        body["usage"] = usage
    return body


BAD_BODIES = [_with(content=5), _with(content={"text": "x"}), _with(content=[{"text": 5}]), _with(message="x"),
              _with(message=None), _with(choices={"0": {}}), _with(choices=["x"])]


@pytest.mark.parametrize("bad", BAD_BODIES, ids=range(len(BAD_BODIES)))
def test_reply_that_is_not_a_chat_completion_is_retried(bad, openai_server, tmp_path):
    openai_server.script(Reply(200, body=bad))
    engine = Engine(cfg(openai_server, tmp_path, concurrency=1))
    out = engine.run(reqs(["hello doctor"]))
    assert out[0].ok and "doktor" in out[0].value
    assert openai_server.count == 2 and engine.stats.server_errors == 1
    again = Engine(cfg(openai_server, tmp_path, concurrency=1)).run(reqs(["hello doctor"]))
    assert again[0].value == out[0].value and openai_server.count == 2  # the good reply was cached


def test_implausible_usage_figures_count_as_unknown(openai_server, tmp_path):
    usages = [{"prompt_tokens": 1e20, "completion_tokens": 2**70}, {"prompt_tokens": "12", "completion_tokens": -3},
              "lots", {"prompt_tokens": True, "completion_tokens": 7}]
    openai_server.script(*(Reply(200, body=_with(content=f"jawapan {i}", usage=u)) for i, u in enumerate(usages)))
    engine = Engine(cfg(openai_server, tmp_path, concurrency=1))
    out = engine.run(reqs(TEXTS[:4]))
    assert [r.value for r in out] == [f"jawapan {i}" for i in range(4)]
    assert engine.stats.prompt_tokens == 0 and engine.stats.completion_tokens == 7
    cached = Engine(cfg(openai_server, tmp_path, concurrency=1)).run(reqs(TEXTS[:4]))
    assert [r.value for r in cached] == [r.value for r in out] and openai_server.count == 4
