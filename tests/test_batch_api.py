"""curate batch submit|status|fetch against the loopback server's /v1/files and /v1/batches,
through the real openai client, and back into a stage with --batch-in."""

from __future__ import annotations

import json

import pytest

from click.testing import CliRunner

from curate import schemas
from curate.cli import cli
from curate.llm import Engine, resolve
from curate.translate import translate_rows
from tests.servers.openai_server import Reply, openai_server  # noqa: F401

SECRET = "sk-batch-test-NEVER-PRINTED"
TEXTS = [f"Hello doctor, I have pain in my head since day {i}. What should I take?" for i in range(12)]


def rows():
    return {"ppo": schemas.from_rows("ppo", [{"prompt": t} for t in TEXTS]).to_dicts()}


def invoke(*args):
    res = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert SECRET not in res.output
    return res


def test_submit_status_fetch_then_batch_in(openai_server, tmp_path):
    requests_file = tmp_path / "batch" / "requests.jsonl"
    cache = tmp_path / "cache.sqlite"
    offline = resolve(base_url=None, api_key="", model="loopback", cache_path=cache, batch_out=requests_file,
                      progress=False)
    first = translate_rows(rows(), Engine(offline), max_units=4)
    assert {q["code"] for q in first.quarantine} == {"pending"} and requests_file.exists()
    n_requests = len(requests_file.read_text().splitlines())

    ep = ["--base-url", openai_server.url, "--api-key", SECRET]
    res = invoke("batch", "submit", str(requests_file), *ep, "--json")
    assert res.exit_code == 0, res.output
    [sub] = json.loads(res.output)
    assert sub["requests"] == n_requests and sub["batch_id"].startswith("batch_")
    assert openai_server.files[sub["input_file_id"]]["content"] == requests_file.read_bytes()  # uploaded as is

    res = invoke("batch", "status", sub["batch_id"], *ep)
    assert res.exit_code == 0 and "in_progress" in res.output

    out = tmp_path / "results.jsonl"
    res = invoke("batch", "fetch", sub["batch_id"], "-o", str(out), "--wait", "5", "--poll", "0.05", *ep)
    assert res.exit_code == 0, res.output
    assert len(out.read_text().splitlines()) == n_requests
    assert openai_server.count == n_requests  # the batch answered every request once

    online = resolve(base_url=openai_server.url, api_key=SECRET, model="loopback", cache_path=cache,
                     batch_in=(out,), progress=False)
    engine = Engine(online)
    done = translate_rows(rows(), engine, max_units=4)
    assert done.quarantine == [] and done.frames["ppo"].height == len(TEXTS)
    assert engine.stats.requests == 0 and openai_server.count == n_requests  # nothing paid twice


def test_failed_lines_go_to_the_results_file_and_quarantine(openai_server, tmp_path):
    requests_file = tmp_path / "requests.jsonl"
    cache = tmp_path / "cache.sqlite"
    offline = resolve(base_url=None, api_key="", model="loopback", cache_path=cache, batch_out=requests_file,
                      progress=False)
    translate_rows(rows(), Engine(offline), max_units=4)
    openai_server.script(Reply(500, body="batch worker crashed"))
    ep = ["--base-url", openai_server.url, "--api-key", SECRET]
    sub = json.loads(invoke("batch", "submit", str(requests_file), *ep, "--json").output)[0]
    openai_server.batch_polls = 0
    out = tmp_path / "results.jsonl"
    res = invoke("batch", "fetch", sub["batch_id"], "-o", str(out), *ep)
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert sum(line["response"]["status_code"] != 200 for line in lines) == 1
    done = translate_rows(rows(), Engine(resolve(base_url=None, api_key="", model="loopback", cache_path=cache,
                                                 batch_in=(out,), batch_out=tmp_path / "again.jsonl",
                                                 progress=False)), max_units=4)
    assert [q["code"] for q in done.quarantine] == ["llm_error"] * 4  # the 4 rows of the failed request
    assert "batch worker crashed" in done.quarantine[0]["reason"]


def test_fetch_before_done_and_bad_files_are_one_line_errors(openai_server, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"not": "a batch line"}\n')
    ep = ["--base-url", openai_server.url, "--api-key", SECRET]
    res = invoke("batch", "submit", str(bad), *ep)
    assert res.exit_code == 1 and "not a Batch API request line" in res.output and "Traceback" not in res.output
    res = invoke("batch", "status", "batch_9999", *ep)
    assert res.exit_code == 4 and "404" in res.output
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
                                "body": {"model": "loopback", "messages": [{"role": "user", "content": "hi"}]}}) + "\n")
    sub = json.loads(invoke("batch", "submit", str(good), *ep, "--json").output)[0]
    res = invoke("batch", "fetch", sub["batch_id"], "-o", str(tmp_path / "r.jsonl"), *ep)
    assert res.exit_code == 1 and "in_progress" in res.output and not (tmp_path / "r.jsonl").exists()


def test_results_whose_replies_are_not_chat_completions_are_errors_not_crashes(tmp_path):
    from curate.errors import UserError
    from curate.llm.batch import merge_results
    from curate.llm.cache import Cache
    from tests.servers.openai_server import completion

    def line(cid, body=None, response=None):
        return json.dumps({"custom_id": cid, "response": response if response is not None else
                           {"status_code": 200, "body": body}}) + "\n"
    odd = completion("x")
    odd["choices"][0]["message"]["content"] = 5
    huge = completion("baik")
    huge["usage"] = {"prompt_tokens": 1e20, "completion_tokens": -1}
    results = tmp_path / "results.jsonl"
    results.write_text(line("ok", completion("jawapan")) + line("odd", odd) + line("str", response="oops")
                       + line("huge", huge) + line("nomsg", {"choices": [{"message": None}]}))
    cache = Cache(tmp_path / "c.sqlite")
    assert merge_results([results], cache) == {"replies": 2, "errors": 3, "lines": 5}
    assert cache.get("ok").text == "jawapan" and cache.get("huge").prompt_tokens == 0
    assert cache.get("odd") is None and cache.get("str") is None
    results.write_text(json.dumps({"custom_id": 7, "response": {}}) + "\n")
    with pytest.raises(UserError, match=r"results.jsonl:1: .*custom_id"):
        merge_results([results], cache)
