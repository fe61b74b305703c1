"""translate / localize over real HTTP (loopback server, real openai client) on real fixture rows."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson
import polars as pl
import pytest

from curate.errors import EXIT_PENDING
from curate import io, schemas
from curate.ingest import ingest_to_dir
from curate.llm import Engine, request_key, resolve
from curate.localize import localize_rows
from curate.translate import (Glossary, load_glossary, needs_model, protect, restore, translate_dataset,
                              translate_rows)
from tests.servers.openai_server import (OpenAIServer, _contract, completion, default_model, fake_translate,
                                         openai_server, translator)  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
CURATE = [sys.executable, "-m", "curate.cli"]
SECRET = "sk-test-NEVER-WRITE-ME-91c2d3e4f5"


@pytest.fixture(scope="module")
def dataset(fixtures, tmp_path_factory) -> Path:
    """chatdoctor (English SFT), kochatgpt_ppo (Korean PPO), sharegpt (English chats with code)."""
    out = tmp_path_factory.mktemp("norm")
    ingest_to_dir([fixtures / "chatdoctor.json", fixtures / "kochatgpt_ppo.jsonl", fixtures / "sharegpt.json"], out)
    return out


def small(dataset: Path, n: int = 12) -> dict[str, list[dict]]:
    return {k: lf.head(n).collect().to_dicts() for k, lf in io.read_dataset(dataset).items()}


def cfg(server, tmp_path, **kw):
    base = dict(base_url=server.url if server else None, api_key=SECRET if server else "", model="loopback",
                cache_path=tmp_path / "cache.sqlite", concurrency=8, backoff_base=0.01, progress=False)
    base.update(kw)
    return resolve(**base)


def run(rows, server, tmp_path, **kw):
    engine_kw = {k: kw.pop(k) for k in list(kw) if k in ("max_fix", "batch_out", "batch_in", "retry_failed")}
    engine = Engine(cfg(server, tmp_path, **engine_kw))
    return translate_rows(rows, engine, **kw), engine


# ---- protection -----------------------------------------------------------------------------------
@pytest.mark.parametrize("text,kept", [
    ("Run `pip install x` then see https://example.com/a?b=1.", ["`pip install x`", "https://example.com/a?b=1"]),
    ("Hello {name}, you have %s new and %(count)d old {{total}} {0}", ["{name}", "%s", "%(count)d", "{{total}}", "{0}"]),
    ("#이름#님, 안녕하세요 <noinput>", ["#이름#", "<noinput>"]),
    ("Solve $x^2 + 1 = 5$ and \\(a+b\\), so 3 x 4 = 12.", ["$x^2 + 1 = 5$", "\\(a+b\\)", "3 x 4 = 12"]),
    ("Code:\n```python\nprint('hello world')\n```\nDone.", ["```python\nprint('hello world')\n```"]),
    # text that already holds the token form: protected itself, never confused with a real token
    ("See ⟦1⟧ and https://example.com/a", ["⟦1⟧", "https://example.com/a"]),
    ("Code `x=1` then ⟦1⟧ and ⟦3⟧", ["`x=1`", "⟦1⟧", "⟦3⟧"]),
])
def test_protect_round_trip(text, kept):
    protected, mapping = protect(text)
    assert restore(protected, mapping) == text
    assert list(mapping.values()) == kept
    for span in kept:  # (a token-form span is replaced by a token, which may read the same)
        assert span not in protected or re.fullmatch(r"⟦\d+⟧", span)


def test_nothing_to_translate_is_not_sent():
    assert not needs_model(protect("```\nx = 1\n```")[0])
    assert not needs_model(protect("42 + 7 = 49")[0])
    assert needs_model(protect("The answer is 49")[0])


# ---- translate ------------------------------------------------------------------------------------
def test_translates_every_field_of_every_kind(dataset, openai_server, tmp_path):
    rows = small(dataset)
    out, engine = run(rows, openai_server, tmp_path)
    assert out.quarantine == []
    assert set(out.frames) == {"sft", "chat", "ppo"}
    for kind, df in out.frames.items():
        src = {r["id"]: r for r in rows[kind]}
        assert sorted(df["id"].to_list()) == sorted(src)  # ids kept, no row lost
        for r in df.iter_rows(named=True):
            meta = schemas.meta_of(r["meta"])
            assert r["lang"] == "ms" and meta["translated"]["to"] == "ms"
            s = src[r["id"]]
            if kind == "sft":
                for f in ("instruction", "input", "output"):
                    assert meta["orig"][f] == s[f]
                    if s[f] and s[f].strip():
                        assert r[f] != s[f] and "Sila ambil perhatian" in r[f]
            elif kind == "ppo":
                assert meta["orig"]["prompt"] == s["prompt"] and meta["translated"]["from"] == "ko"
                assert not re.search(r"[\uac00-\ud7a3]", protect(r["prompt"])[0])  # placeholders like #이름# stay
            else:
                assert meta["orig"]["messages"] == [m["content"] for m in s["messages"]]
                assert [m["role"] for m in r["messages"]] == [m["role"] for m in s["messages"]]
                for old, new in zip(s["messages"], r["messages"]):
                    fences = re.findall(r"```[\s\S]*?```", old["content"])
                    assert re.findall(r"```[\s\S]*?```", new["content"]) == fences  # code kept exactly
    # short fields share requests: far fewer requests than fields
    assert out.report["requests"] < out.report["units"] / 2
    assert openai_server.count == out.report["requests"]


def test_text_holding_the_token_form_is_translated_and_kept_exactly(openai_server, tmp_path):
    texts = ["See ⟦1⟧ and https://example.com/a for the doctor", "The symbol ⟦2⟧ alone in this text about water",
             "Code `x=1` and ⟦1⟧ and ⟦3⟧ for the doctor"]
    rows = {"sft": schemas.from_rows("sft", [{"instruction": t, "input": "", "output": "Hello doctor"}
                                             for t in texts]).to_dicts()}
    out, _ = run(rows, openai_server, tmp_path)
    assert out.quarantine == []  # they were quarantined as "extra or repeated ⟦1⟧" on every attempt
    got = out.frames["sft"]["instruction"].to_list()
    assert [re.findall(r"⟦\d⟧|https://\S+|`[^`]+`", g) for g in got] == \
        [re.findall(r"⟦\d⟧|https://\S+|`[^`]+`", t) for t in texts]
    assert all("doktor" in g or "air" in g for g in got)


def test_packed_fields_are_not_mixed_up(openai_server, tmp_path):
    rows = {"ppo": [schemas.from_rows("ppo", [{"prompt": f"What is question {i} about the water and food?"}]).to_dicts()[0]
                    for i in range(40)]}
    out, _ = run(rows, openai_server, tmp_path)
    assert openai_server.count < 10
    for r in out.frames["ppo"].iter_rows(named=True):
        orig = schemas.meta_of(r["meta"])["orig"]["prompt"]
        assert re.findall(r"\d+", r["prompt"]) == re.findall(r"\d+", orig)  # each output is its own field's


def test_rerun_is_free_and_changed_row_is_retranslated(dataset, openai_server, tmp_path):
    rows = small(dataset, 6)
    first, _ = run(rows, openai_server, tmp_path)
    n = openai_server.count
    openai_server.reset()
    again, engine = run(rows, openai_server, tmp_path)
    assert openai_server.count == 0 and engine.report()["requests_sent"] == 0
    assert again.frames["sft"].equals(first.frames["sft"])
    rows["ppo"][0] = {**rows["ppo"][0], "prompt": "Where is the school 7?"}  # the cache key follows the data
    changed, _ = run(rows, openai_server, tmp_path)
    assert 1 <= openai_server.count < n
    new = changed.frames["ppo"].filter(pl.col("id") == rows["ppo"][0]["id"]).row(0, named=True)
    assert "sekolah" in new["prompt"] and "7" in new["prompt"]


def _placeholder_rows():
    texts = ["Hello {name}, please write the code `print(x)` for the doctor at https://example.com/help today.",
             "#이름#님 안녕하세요, 질문 answer the question for the people about the water please.",
             "Thank you doctor, what is the medicine for the pain in my head and why should I take it?"]
    return {"ppo": schemas.from_rows("ppo", [{"prompt": t} for t in texts]).to_dicts()}


def test_dropped_placeholders_are_retried_then_quarantined(openai_server, tmp_path):
    openai_server.handler = translator(drop_sentinels=True)
    out, _ = run(_placeholder_rows(), openai_server, tmp_path, max_fix=1)
    q = {r["row"]["prompt"][:5]: r for r in out.quarantine}
    assert set(q) == {"Hello", "#이름#님"}  # the third row had nothing to protect and is kept
    assert all(r["code"] == "placeholder" and "dropped ⟦1⟧" in r["reason"] for r in q.values())
    assert out.frames["ppo"].height == 1 and out.report["quarantine_codes"] == {"placeholder": 2}
    feedback = openai_server.requests[1]["messages"][-1]["content"]
    assert "protected tokens not kept" in feedback
    assert openai_server.count == 2


def test_dropped_placeholder_fixed_on_retry(openai_server, tmp_path):
    calls = []

    def flaky(req):
        calls.append(1)
        return translator(drop_sentinels=len(calls) == 1)(req)
    openai_server.handler = flaky
    out, _ = run(_placeholder_rows(), openai_server, tmp_path)
    assert out.quarantine == [] and openai_server.count == 2
    prompts = out.frames["ppo"]["prompt"].to_list()
    assert "{name}" in prompts[0] and "`print(x)`" in prompts[0] and "https://example.com/help" in prompts[0]
    assert prompts[1].startswith("#이름#")


def test_indonesian_reply_is_caught(dataset, openai_server, tmp_path):
    openai_server.handler = translator(lang="id")
    out, _ = run({"sft": small(dataset, 3)["sft"]}, openai_server, tmp_path, max_fix=1)
    assert out.frames["sft"].height == 0 and len(out.quarantine) == 3
    assert {r["code"] for r in out.quarantine} == {"language"}
    assert "Indonesian" in out.quarantine[0]["reason"] and "not Malay" in out.quarantine[0]["reason"]
    assert "Malaysian Malay words" in openai_server.requests[1]["messages"][-1]["content"]


def test_untranslated_reply_is_caught(dataset, openai_server, tmp_path):
    openai_server.handler = translator(lang="en")
    out, _ = run({"sft": small(dataset, 2)["sft"]}, openai_server, tmp_path, max_fix=0)
    assert {r["code"] for r in out.quarantine} == {"language"} and "English" in out.quarantine[0]["reason"]


def test_one_bad_field_does_not_sink_its_chunk(openai_server, tmp_path):
    rows = {"ppo": schemas.from_rows("ppo", [{"prompt": f"Why is the water {i} good for the people?"}
                                             for i in range(8)]).to_dicts()}

    def one_bad(req):
        _, data = _contract(req)
        out = {k: fake_translate(v) for k, v in data.items()}
        for k, v in data.items():
            if "water 3 " in v:
                out[k] = fake_translate(v, lang="id")  # always Indonesian for this one field
        return json.dumps(out)
    openai_server.handler = one_bad
    out, _ = run(rows, openai_server, tmp_path, max_fix=1)
    assert openai_server.count == 2  # one chunk, one fix-up round
    assert out.frames["ppo"].height == 7
    assert [r["row"]["prompt"] for r in out.quarantine] == ["Why is the water 3 good for the people?"]


def test_glossary_in_prompt_and_enforced(openai_server, tmp_path):
    gl = tmp_path / "glossary.tsv"
    gl.write_text("# term\ttranslation\ndoctor\tpakar perubatan\nmedicine\tubat-ubatan\n", encoding="utf-8")
    glossary = load_glossary(gl)
    rows = {"ppo": schemas.from_rows("ppo", [{"prompt": "Hello doctor, what medicine should I take for the pain?"},
                                             {"prompt": "Where is the school and the house of the people?"}]).to_dicts()}
    out, _ = run(rows, openai_server, tmp_path, glossary=glossary, max_fix=1)  # the fake model ignores glossaries
    assert [r["code"] for r in out.quarantine] == ["glossary"]
    assert "'doctor' must be translated as 'pakar perubatan'" in out.quarantine[0]["reason"]
    system = openai_server.requests[0]["messages"][0]["content"]
    assert "doctor -> pakar perubatan" in system and "medicine -> ubat-ubatan" in system

    def obeys(req):
        system, data = _contract(req)
        terms = dict(re.findall(r"(\w+) -> ([\w -]+?)(?:;|$)", system.split("Glossary", 1)[1])) if "Glossary" in system else {}
        return json.dumps({k: fake_translate(v) + " " + " ".join(tr for t, tr in terms.items() if t in v.lower())
                           for k, v in data.items()})
    openai_server.handler = obeys
    out, _ = run(rows, openai_server, tmp_path, glossary=glossary, retry_failed=True)
    assert out.quarantine == []
    assert "pakar perubatan" in out.frames["ppo"]["prompt"][0]


def test_glossary_formats(tmp_path):
    (tmp_path / "g.json").write_text('{"API": "API", "machine learning": "pembelajaran mesin"}')
    g = load_glossary(tmp_path / "g.json")
    assert g.relevant("Machine learning is fun") == {"machine learning": "pembelajaran mesin"}
    assert g.violations("machine learning", "pembelajaran mesin itu seronok") == []
    assert Glossary({"cat": "kucing"}).relevant("concatenate") == {}


def test_kill_9_then_resume_every_row_once(dataset, tmp_path):
    """A real `curate translate` process killed mid-run; the re-run finishes without re-paying."""
    cache = tmp_path / "cache.sqlite"
    out_dir = tmp_path / "out"
    inp = dataset / "ppo.parquet"
    with OpenAIServer(latency=0.05) as server:
        cmd = [*CURATE, "translate", str(inp), "-o", str(out_dir), "--base-url", server.url, "--model", "loopback",
               "--cache", str(cache), "--concurrency", "2", "--max-chars", "200", "-q"]
        env = {**os.environ, "OPENAI_API_KEY": SECRET}
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        done_at_kill = 0
        while time.monotonic() < deadline:
            if cache.exists():
                try:
                    done_at_kill = sqlite3.connect(cache).execute("SELECT count(*) FROM replies").fetchone()[0]
                except sqlite3.OperationalError:
                    done_at_kill = 0
            if done_at_kill >= 8:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL and not (out_dir / "ppo.parquet").exists()
        committed = {k for (k,) in sqlite3.connect(cache).execute("SELECT key FROM replies")}
        assert len(committed) >= 8
        first_run = [request_key(b) for b in server.requests]
        server.reset()
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
        second_run = [request_key(b) for b in server.requests]
    assert not committed & set(second_run)  # nothing answered before the kill is asked again
    assert len(second_run) == len(set(second_run))
    total = set(first_run) | set(second_run)
    # asked twice: at most what was in flight at the kill (2 workers) or answered but not yet committed
    assert len(set(first_run) & set(second_run)) <= 4
    src = pl.read_parquet(inp)
    got = pl.read_parquet(out_dir / "ppo.parquet")
    assert got.height == src.height and sorted(got["id"].to_list()) == sorted(src["id"].to_list())
    assert io.read_jsonl(out_dir / "quarantine.jsonl") == []
    assert len(total) == len(committed) + len(set(second_run))


def _clean_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CURATE_"))}
    return env


def test_no_endpoint_writes_batch_files_then_batch_in_completes(dataset, tmp_path):
    out_dir, cache = tmp_path / "out", tmp_path / "cache.sqlite"
    inp = tmp_path / "in"
    rows = small(dataset, 5)
    n_rows = sum(len(v) for v in rows.values())
    io.write_dataset({k: pl.DataFrame(v, schema=schemas.schema(k)) for k, v in rows.items()}, inp)
    cmd = [*CURATE, "translate", str(inp), "-o", str(out_dir), "--cache", str(cache)]
    res = subprocess.run(cmd, cwd=ROOT, env=_clean_env(), capture_output=True, text=True)
    assert res.returncode == EXIT_PENDING, res.stderr  # rows wait for the batch: a pipeline stops here
    notice = [line for line in res.stderr.splitlines() if line.strip()][-3:-1]  # after the summary, 2 lines
    assert f"{n_rows} rows wait for the Batch API results" in res.stderr.splitlines()[-1]
    assert notice[0].startswith("No LLM endpoint configured") and "--base-url" in notice[1]
    batch = out_dir / "batch" / "translate-requests.jsonl"
    lines = [orjson.loads(x) for x in batch.read_bytes().splitlines()]
    assert lines and all(line["url"] == "/v1/chat/completions" and line["method"] == "POST" for line in lines)
    q = io.read_jsonl(out_dir / "quarantine.jsonl")
    assert len(q) == n_rows and {r["code"] for r in q} == {"pending"}
    quiet = subprocess.run([*cmd, "-q"], cwd=ROOT, env=_clean_env(), capture_output=True, text=True)
    assert len(quiet.stderr.strip().splitlines()) == 3  # -q: only the two-line notice and the exit reason
    # answer the file as the Batch API would: shuffled, one request failing
    results = []
    for i, line in enumerate(lines):
        if i == 1:
            results.append({"custom_id": line["custom_id"], "response": None,
                            "error": {"code": "server_error", "message": "batch worker crashed"}})
        else:
            body = completion(default_model(line["body"]), "loopback", 5)
            results.append({"custom_id": line["custom_id"], "response": {"status_code": 200, "body": body}, "error": None})
    results.reverse()
    rfile = tmp_path / "results.jsonl"
    rfile.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in results))
    res = subprocess.run([*cmd, "--batch-in", str(rfile), "-q"], cwd=ROOT, env=_clean_env(), capture_output=True, text=True)
    from curate.errors import EXIT_ENV
    assert res.returncode == EXIT_ENV, res.stderr  # the Batch API failed a request: the environment's doing
    q = io.read_jsonl(out_dir / "quarantine.jsonl")
    kept = sum(pl.read_parquet(p).height for p in out_dir.glob("*.parquet"))
    assert kept + len(q) == n_rows and q and {r["code"] for r in q} == {"llm_error"}
    assert "batch worker crashed" in q[0]["reason"]
    assert not batch.exists()  # nothing pending any more: the stale request file is gone


def test_cli_never_writes_or_prints_the_key(dataset, tmp_path):
    out_dir = tmp_path / "out"
    with OpenAIServer() as server:
        env = {**_clean_env(), "OPENAI_API_KEY": SECRET}
        res = subprocess.run([*CURATE, "translate", str(dataset / "sft.parquet"), "-o", str(out_dir), "--base-url",
                              server.url, "--model", "loopback", "--cache", str(tmp_path / "c.sqlite")],
                             cwd=ROOT, env=env, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        assert server.auth[0] == f"Bearer {SECRET}"
        help_ = subprocess.run([*CURATE, "translate", "--help"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert SECRET not in res.stdout + res.stderr + help_.stdout
    for p in tmp_path.rglob("*"):
        if p.is_file():
            assert SECRET.encode() not in p.read_bytes(), p


# ---- localize -------------------------------------------------------------------------------------
def test_localize_flags_changed_rows_with_changes(openai_server, tmp_path):
    rows = {"ppo": schemas.from_rows("ppo", [
        {"prompt": "Harga buku ini ialah $20 di kedai di Seoul dan saya mahu membelinya sekarang juga.", "lang": "ms"},
        {"prompt": "Saya suka makan nasi lemak pada waktu pagi bersama keluarga saya di rumah.", "lang": "ms"},
    ]).to_dicts()}
    engine = Engine(cfg(openai_server, tmp_path))
    out = localize_rows(rows, engine, country="MY", lang="ms")
    changed, same = out.frames["ppo"].to_dicts()
    assert "RM 20" in changed["prompt"] and "Kuala Lumpur" in changed["prompt"]
    meta = schemas.meta_of(changed["meta"])
    assert "localized" in meta["flags"] and meta["localized"]["changes"][0]["field"] == "prompt"
    assert meta["localized"]["before"]["prompt"].startswith("Harga buku ini ialah $20")
    assert same["prompt"] == rows["ppo"][1]["prompt"] and same["meta"] is None
    assert "Malaysia" in openai_server.requests[0]["messages"][0]["content"]


def test_localize_unlisted_change_is_rejected(openai_server, tmp_path):
    def sneaky(req):
        _, data = _contract(req)
        return json.dumps({"texts": {k: v.replace("$", "RM") for k, v in data.items()}, "changes": []})
    openai_server.handler = sneaky
    rows = {"ppo": schemas.from_rows("ppo", [{"prompt": "Harga buku ini ialah $20 dan saya mahu membelinya sekarang."}]).to_dicts()}
    out = localize_rows(rows, Engine(cfg(openai_server, tmp_path, max_fix=1)), country="MY")
    row = out.frames["ppo"].row(0, named=True)
    assert row["prompt"] == rows["ppo"][0]["prompt"]  # kept as it was, flagged
    meta = schemas.meta_of(row["meta"])
    assert meta["flags"] == ["localize_failed"] and "no change is listed" in meta["localize_error"]
    assert openai_server.count == 2


def test_translate_then_localize_dataset(openai_server, tmp_path):
    inp = tmp_path / "in"
    io.write_dataset({"ppo": schemas.from_rows("ppo", [{"prompt": "The book costs $20 in Seoul, thank you doctor."}])}, inp)
    outcome, engine = translate_dataset(inp, tmp_path / "out", cfg(openai_server, tmp_path), to="ms", localize="MY")
    row = pl.read_parquet(tmp_path / "out" / "ppo.parquet").row(0, named=True)
    meta = schemas.meta_of(row["meta"])
    assert meta["orig"]["prompt"].startswith("The book costs $20") and meta["translated"]["to"] == "ms"
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["localize"]["stage"] == "localize" and report["rows_out"] == 1


def test_identical_texts_are_translated_once(dataset, openai_server, tmp_path):
    rows = {"sft": small(dataset, 12)["sft"]}
    instruction = rows["sft"][0]["instruction"]
    assert all(r["instruction"] == instruction for r in rows["sft"])  # chatdoctor repeats its instruction
    out, _ = run(rows, openai_server, tmp_path)
    sent = [json.loads(req["messages"][1]["content"]) for req in openai_server.requests]
    assert sum(v == instruction for payload in sent for v in payload.values()) == 1
    assert out.report["fields"]["units_deduplicated"] == 11
    assert out.frames["sft"]["instruction"].n_unique() == 1 and out.frames["sft"].height == 12


def test_rm_prompt_and_completions_translated_ranks_kept(openai_server, tmp_path):
    rows = {"rm": schemas.from_rows("rm", [{
        "prompt": "What should I take for the pain in my head, doctor?",
        "completions": ["You should take the medicine 2 times a day with water.",
                        "I have no answer for you because it is not good.",
                        "Please help the people with food and water."],
        "ranks": [0, 2, 1]}]).to_dicts()}
    out, _ = run(rows, openai_server, tmp_path)
    r = out.frames["rm"].row(0, named=True)
    meta = schemas.meta_of(r["meta"])
    assert r["ranks"] == [0, 2, 1] and r["id"] == rows["rm"][0]["id"]
    assert meta["orig"] == {"prompt": rows["rm"][0]["prompt"], "completions": rows["rm"][0]["completions"]}
    assert len(r["completions"]) == 3 and "ubat" in r["completions"][0] and "2" in r["completions"][0]
    assert meta["translated"]["fields"] == ["prompt", "completions.0", "completions.1", "completions.2"]


def test_llm_config_file(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("CURATE_MODEL", raising=False)
    conf = tmp_path / "llm.toml"
    conf.write_text('base_url = "http://127.0.0.1:9/v1"\nmodel = "qwen"\napi_key_env = "MY_KEY"\nconcurrency = 3\n')
    monkeypatch.setenv("MY_KEY", SECRET)
    c = resolve(config_file=conf)
    assert (c.base_url, c.model, c.concurrency, c.api_key) == ("http://127.0.0.1:9/v1", "qwen", 3, SECRET)
    assert SECRET not in repr(c) and SECRET not in json.dumps(c.public())
    assert resolve(config_file=conf, model="other", concurrency=7).model == "other"
    conf.write_text(f'api_key = "{SECRET}"\n')
    from curate.errors import UserError
    with pytest.raises(UserError, match="never reads keys from files"):
        resolve(config_file=conf)


def test_long_field_split_at_blank_lines_and_rejoined(dataset, openai_server, tmp_path):
    from curate.translate import split_segments
    rows = {"chat": small(dataset, 1)["chat"]}
    longest = max((m["content"] for m in rows["chat"][0]["messages"]), key=len)
    segs = split_segments(longest, 300)
    assert "".join(segs) == longest and len(segs) > 3
    out, _ = run(rows, openai_server, tmp_path, max_chars=300)
    assert out.report["units"] > len(rows["chat"][0]["messages"])
    new = {schemas.meta_of(r["meta"])["orig"]["messages"].index(longest): r for r in out.frames["chat"].iter_rows(named=True)}
    translated = list(new.values())[0]["messages"][list(new)[0]]["content"]
    assert len(re.findall(r"\n\s*\n", translated)) == len(re.findall(r"\n\s*\n", longest))


def test_broken_shared_reply_falls_back_to_one_field_per_request(openai_server, tmp_path):
    rows = {"ppo": schemas.from_rows("ppo", [{"prompt": f"Why is the water {i} good for the people?"}
                                             for i in range(4)]).to_dicts()}

    def long_json_breaks(req):
        _, data = _contract(req)
        if len(data) > 1:  # the model truncates whenever several fields share a reply
            return json.dumps({k: fake_translate(v) for k, v in data.items()})[:-40]
        return json.dumps({k: fake_translate(v) for k, v in data.items()})
    openai_server.handler = long_json_breaks
    out, _ = run(rows, openai_server, tmp_path, max_fix=1)
    assert out.quarantine == [] and out.frames["ppo"].height == 4
    assert out.report["fields"]["units_retried_alone"] == 4
    assert openai_server.count == 1 + 4  # the packed request, then each field alone (no re-ask of the whole chunk)


def test_localize_command(tmp_path):
    inp = tmp_path / "in"
    io.write_dataset({"ppo": schemas.from_rows("ppo", [
        {"prompt": "Harga buku ini ialah $20 di kedai di Seoul dan saya mahu membelinya sekarang juga.", "lang": "ms"}])}, inp)
    with OpenAIServer() as server:
        res = subprocess.run([*CURATE, "localize", str(inp), "-o", str(tmp_path / "out"), "--country", "MY",
                              "--base-url", server.url, "--model", "loopback", "--cache", str(tmp_path / "c.sqlite")],
                             cwd=ROOT, env=_clean_env(), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    row = pl.read_parquet(tmp_path / "out" / "ppo.parquet").row(0, named=True)
    assert "RM 20" in row["prompt"] and "localized" in schemas.meta_of(row["meta"])["flags"]
    assert json.loads((tmp_path / "out" / "report.json").read_text())["rows"]["rows_localized"] == 1


def test_blocks_give_the_same_output_and_one_batch_file(dataset, tmp_path):
    """Reading in small blocks changes nothing: same rows; without an endpoint, one request file."""
    inp = tmp_path / "in"
    rows = small(dataset, 7)
    io.write_dataset({k: pl.DataFrame(v, schema=schemas.schema(k)) for k, v in rows.items()}, inp)
    with OpenAIServer() as server:
        whole, _ = translate_dataset(inp, tmp_path / "a", cfg(server, tmp_path))
        n = server.count
        server.reset()
        blocks, _ = translate_dataset(inp, tmp_path / "b", cfg(server, tmp_path), block_rows=3)
        assert server.count <= n  # packed differently, but identical fields are cached or shared
    for kind in whole.frames:
        assert blocks.frames[kind].sort("id").equals(whole.frames[kind].sort("id"))
    assert blocks.report["rows_in"] == whole.report["rows_in"] == sum(len(v) for v in rows.values())
    assert blocks.report["rows_out"] == whole.report["rows_out"]
    batch = tmp_path / "batch.jsonl"
    out, engine = translate_dataset(inp, tmp_path / "c", cfg(None, tmp_path, cache_path=tmp_path / "empty.sqlite",
                                                             batch_out=batch), block_rows=3)
    lines = batch.read_bytes().splitlines()
    assert engine.batch_files == [batch] and len(lines) == engine.batch_pending > 3
    assert {r["code"] for r in out.quarantine} == {"pending"} and len(out.quarantine) == out.report["rows_in"] - \
        out.report["rows_out"]


def test_ctrl_c_then_resume(dataset, tmp_path):
    cache, out_dir, inp = tmp_path / "cache.sqlite", tmp_path / "out", dataset / "ppo.parquet"
    with OpenAIServer(latency=0.05) as server:
        cmd = [*CURATE, "translate", str(inp), "-o", str(out_dir), "--base-url", server.url, "--model", "loopback",
               "--cache", str(cache), "--concurrency", "2", "--max-chars", "200"]
        proc = subprocess.Popen(cmd, cwd=ROOT, env=_clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.count < 6:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130 and "run the same command again to resume" in err
        assert not (out_dir / "ppo.parquet").exists()
        committed = {k for (k,) in sqlite3.connect(cache).execute("SELECT key FROM replies")}
        assert committed
        server.reset()
        subprocess.run(cmd, cwd=ROOT, env=_clean_env(), check=True, capture_output=True)
        assert not committed & {request_key(b) for b in server.requests}
    assert pl.read_parquet(out_dir / "ppo.parquet").height == pl.read_parquet(inp).height


def test_number_lost_is_caught_number_spelled_as_digits_is_fine(openai_server, tmp_path):
    rows = {"ppo": schemas.from_rows("ppo", [{"prompt": "Take the medicine 3 times a day for 10 days, doctor said."},
                                             {"prompt": "I have three books and two houses for the people here."}]).to_dicts()}

    def numbers(req):
        _, data = _contract(req)
        return json.dumps({k: fake_translate(v).replace("10", "100").replace("three", "3") if "10" in v
                           else fake_translate(v) + " 3" for k, v in data.items()})
    openai_server.handler = numbers
    out, _ = run(rows, openai_server, tmp_path, max_fix=0)
    assert [r["code"] for r in out.quarantine] == ["number"]
    assert "missing ['10'], added ['100']" in out.quarantine[0]["reason"]
    assert out.frames["ppo"]["prompt"][0].endswith(" 3")


def test_fault_mix_loses_no_row(dataset, tmp_path):
    """Every fault at once, at random: each input row ends exactly once, translated or quarantined."""
    import random as _random

    from tests.servers.openai_server import HANG, Reply
    rng = _random.Random(11)
    good, indo, drop = translator(), translator(lang="id"), translator(drop_sentinels=True)

    def chaos(req):
        roll = rng.random()
        if roll < 0.10:
            return Reply(429, {"Retry-After": "0.05"}, "slow down")
        if roll < 0.20:
            return Reply(500, body="oops")
        if roll < 0.25:
            return HANG
        if roll < 0.35:
            return "I'm sorry, here is {broken json"
        if roll < 0.45:
            return indo(req)
        if roll < 0.55:
            return drop(req)
        return good(req)
    rows = small(dataset, 30)
    with OpenAIServer(handler=chaos) as server:
        engine = Engine(cfg(server, tmp_path, timeout=1.0, max_retries=3, backoff_max=0.05))
        out = translate_rows(rows, engine, max_chars=600)
    ids_in = sorted(r["id"] for v in rows.values() for r in v)
    ids_out = sorted([i for df in out.frames.values() for i in df["id"].to_list()] + [q["id"] for q in out.quarantine])
    assert ids_out == ids_in
    assert out.report["rows_in"] == out.report["rows_out"] + out.report["quarantined"]
    rep = out.report["llm"]
    assert rep["rate_limited"] and rep["server_errors"] and rep["timeouts"] and rep["fix_rounds"]
    assert out.report["rows_out"] > 0
