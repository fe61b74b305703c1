"""reflect over real HTTP (loopback server, real openai client) on real fixture chats.

The "model" here reads the reflect prompt the way a real model would see it (the turns between
``<turn ...>`` tags, the language asked for in the system message) and answers the JSON contract;
faults (no JSON, a changed K, an empty or Indonesian L', a refusal) are scripted per test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from curate.errors import EXIT_PENDING
from curate import io, langid, schemas
from curate.ingest import ingest
from curate.llm import Engine, resolve
from curate.reflect import chat_lang, estimate_tokens, reflect_rows, render_transcript, review_points
from tests.servers.openai_server import openai_server  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
CURATE = [sys.executable, "-m", "curate.cli"]
SECRET = "sk-test-NEVER-WRITE-ME-reflect-77aa"

TURN = re.compile(r'<turn n="(\d+)" role="(\w+)" part="(\w+)">\n(.*?)\n</turn>', re.S)
WANT = re.compile(r'Write "C" and "L_new" in (\w+)')
LANG = {"Malay": "ms", "Korean": "ko", "English": "en", "Indonesian": "id"}

ANSWER = {
    "ms": ("Baiklah, berikut ialah jawapan yang lebih lengkap. Pembelajaran mesin ialah cabang kecerdasan buatan "
           "yang membolehkan komputer belajar daripada data tanpa diprogramkan secara khusus. Anda boleh mula "
           "dengan kursus percuma dalam talian kerana ia mudah diikuti."),
    "ko": ("네, 더 자세히 설명해 드리겠습니다. 기계 학습은 컴퓨터가 데이터로부터 스스로 배우도록 하는 인공지능의 한 "
           "분야입니다. 온라인 무료 강의로 시작해 보시는 것을 추천합니다."),
    "en": ("Sure, here is a more complete answer. It covers what the user asked for, step by step, and it "
           "anticipates the follow-up questions they asked later in the conversation."),
}
CRITIQUE = {
    "ms": "Jawapan asal kurang lengkap kerana pengguna terpaksa bertanya semula selepas itu.",
    "ko": "원래 답변은 충분하지 않아서 사용자가 다시 질문해야 했습니다.",
    "en": "The original answer was incomplete: the user had to ask again afterwards.",
}
INDONESIAN = ("Baiklah, berikut adalah jawaban yang lebih lengkap. Pembelajaran mesin adalah cabang kecerdasan "
              "buatan yang memungkinkan komputer belajar dari data tanpa diprogram secara khusus. Anda bisa mulai "
              "dengan kursus gratis secara online karena mudah diikuti.")
REFUSAL_MS = "Maaf, saya tidak dapat membantu dengan permintaan itu kerana saya hanya sebuah model bahasa."


def parse(request: dict) -> dict:
    """What the model sees: the turns by part, the language asked for, and the raw messages."""
    msgs = request["messages"]
    system, user = msgs[0]["content"], msgs[1]["content"]
    turns = [{"n": int(n), "role": r, "part": p, "content": c} for n, r, p, c in TURN.findall(user)]
    k = next(t for t in turns if t["part"] == "K")
    return {"system": system, "user": user, "turns": turns, "K": k["content"], "n": k["n"],
            "lang": LANG[WANT.search(system).group(1)], "fixup": len(msgs) > 2, "messages": msgs}


def good(p: dict) -> str:
    return json.dumps({"K": p["K"], "C": CRITIQUE[p["lang"]], "L_new": f"{ANSWER[p['lang']]} (#{p['n']})"},
                      ensure_ascii=False)


def model(fault=None, once: bool = False):
    """A handler: good replies, or ``fault(p) -> str`` on every try (or only before the fix-up round)."""
    def handle(request: dict) -> str:
        p = parse(request)
        if fault is not None and not (once and p["fixup"]):
            return fault(p)
        return good(p)
    return handle


FAULTS = {
    "invalid_json": lambda p: "Here is my review: the answer was fine, nothing to change.",
    "k_changed": lambda p: json.dumps({"K": "Soalan: " + p["K"], "C": CRITIQUE[p["lang"]],
                                       "L_new": ANSWER[p["lang"]]}, ensure_ascii=False),
    "empty_answer": lambda p: json.dumps({"K": p["K"], "C": CRITIQUE[p["lang"]], "L_new": "  "}, ensure_ascii=False),
    "wrong_language": lambda p: json.dumps({"K": p["K"], "C": CRITIQUE[p["lang"]], "L_new": INDONESIAN},
                                           ensure_ascii=False),
    "refusal": lambda p: json.dumps({"K": p["K"], "C": CRITIQUE[p["lang"]], "L_new": REFUSAL_MS}, ensure_ascii=False),
}


@pytest.fixture(scope="module")
def chats(fixtures) -> dict[str, list[dict]]:
    res = ingest([fixtures / "sharegpt.json", fixtures / "malay_kochatgpt_conversation.jsonl",
                  fixtures / "kochatgpt_conversation.jsonl"], detect_lang=False)
    rows = res.frames["chat"].to_dicts()
    by = {"sharegpt": [r for r in rows if r["format"] == "sharegpt"],
          "ms": [r for r in rows if "malay_kochatgpt" in r["source"]],
          "ko": [r for r in rows if r["source"].endswith("/kochatgpt_conversation.jsonl")]}
    by["sharegpt_long"] = [max(by["sharegpt"], key=lambda r: len(r["messages"]))]
    return by


def engine(server, tmp_path, **kw) -> Engine:
    base = dict(base_url=server.url if server else None, api_key=SECRET if server else "", model="loopback",
                cache_path=tmp_path / "cache.sqlite", concurrency=8, backoff_base=0.01, progress=False,
                extra_budget=float("inf"))  # faults are scripted on most replies here; the budget has its own tests
    base.update(kw)
    return Engine(resolve(**base))


def answers_of(rows: list[dict]) -> int:
    return sum(len(review_points(r["messages"])) for r in rows)


# ---- the prompt ---------------------------------------------------------------------------------
def test_prompt_carries_k_l_and_every_later_turn(chats, openai_server, tmp_path):
    openai_server.handler = model()
    chat = chats["sharegpt_long"][0]
    msgs = chat["messages"]
    out = reflect_rows([chat], engine(openai_server, tmp_path), max_context=None)
    points = review_points(msgs)
    assert len(points) == 4 and openai_server.count == 4  # 5 user turns: the last has no later turn
    seen = {}
    for req in openai_server.requests:
        p = parse(req)
        assert req["messages"][0]["role"] == "system" and "K" in p["system"] and "JSON" in p["system"]
        assert req["response_format"] == {"type": "json_object"}
        seen[p["n"]] = p
    for k in points:
        p = seen[k + 1]
        parts = [(t["n"], t["part"], t["content"]) for t in p["turns"]]
        expected = ([(i + 1, "context", msgs[i]["content"]) for i in range(k)]
                    + [(k + 1, "K", msgs[k]["content"]), (k + 2, "L", msgs[k + 1]["content"])]
                    + [(i + 1, "Q" if msgs[i]["role"] == "user" else "A", msgs[i]["content"])
                       for i in range(k + 2, len(msgs))])
        assert parts == expected
        assert "cut" not in p["user"]
        assert p["lang"] == "en"
    assert out.report["answers_reviewed"] == 4 and out.report["answers_reflected"] == 4


# ---- the rows out -------------------------------------------------------------------------------
def test_sft_and_rm_rows_with_critique_old_answer_and_provenance(chats, openai_server, tmp_path):
    openai_server.handler = model()
    rows = chats["ms"][:6]
    out = reflect_rows(rows, engine(openai_server, tmp_path), chat=True)
    n = answers_of(rows)
    assert out.report["answers_reflected"] == n and not out.quarantine
    sft, rm, chat = (out.frames[k].to_dicts() for k in ("sft", "rm", "chat"))
    assert len(sft) == len(rm) == len(chat) == n
    by_id = {r["id"]: r for r in rows}
    for s, r, c in zip(sft, rm, chat):
        meta = schemas.meta_of(s["meta"])
        src = by_id[meta["reflect"]["source_id"]]
        k = meta["reflect"]["k_turn"]
        msgs = src["messages"]
        assert meta["reflect"]["turn"] == k + 1 and msgs[k]["role"] == "user"
        assert s["instruction"] == msgs[k]["content"]
        assert s["input"] == render_transcript(msgs[:k])
        assert s["output"] == f"{ANSWER['ms']} (#{k + 1})"
        assert meta["old_answer"] == msgs[k + 1]["content"] and meta["critique"] == CRITIQUE["ms"]
        assert meta["context"] == [{"role": m["role"], "content": m["content"]} for m in msgs[:k]]
        assert (s["source"], s["line"], s["format"], s["lang"]) == (src["source"], src["line"], src["format"], "ms")
        assert s["id"] == schemas.content_id("sft", s) and r["id"] == schemas.content_id("rm", r)
        # the RM row ranks the new answer over the old one, with the critique as rationale
        assert r["completions"][r["ranks"].index(0)] == s["output"]
        assert r["completions"][r["ranks"].index(1)] == msgs[k + 1]["content"]
        assert schemas.meta_of(r["meta"])["rationale"] == CRITIQUE["ms"]
        assert r["prompt"].endswith(msgs[k]["content"])
        assert c["messages"] == [*msgs[:k], {"role": "user", "content": msgs[k]["content"]},
                                 {"role": "assistant", "content": s["output"]}]


def test_rows_are_what_curate_push_reads_as_reflect(chats, openai_server, tmp_path):
    from curate.label import settings

    openai_server.handler = model()
    out = reflect_rows(chats["ms"][:2], engine(openai_server, tmp_path))
    sft, rm = out.frames["sft"].to_dicts(), out.frames["rm"].to_dicts()
    assert sft and all(settings.is_reflect_row("sft", r) for r in sft)
    assert all(settings.is_reflect_row("rm", r) for r in rm)
    for s, r in zip(sft, rm):
        prompt, new, old, _ = settings.reflect_pair("rm", r)
        assert new == s["output"] and old == schemas.meta_of(s["meta"])["old_answer"]
        assert settings.reflect_context(schemas.meta_of(s["meta"])) == schemas.meta_of(s["meta"])["context"]


def test_every_chat_source(chats, openai_server, tmp_path, fixtures):
    """ShareGPT (en), KoChatGPT (ko), its Malay translation (ms) and OpenAI messages (written from a real chat)."""
    openai_server.handler = model()
    openai_file = tmp_path / "openai.jsonl"
    chat = chats["ko"][2]
    openai_file.write_text(json.dumps({"messages": chat["messages"]}, ensure_ascii=False) + "\n")
    oa = ingest([openai_file], detect_lang=False).frames["chat"].to_dicts()
    assert oa[0]["format"] == "openai_messages"
    rows = chats["sharegpt"] + chats["ko"][:2] + chats["ms"][:2] + oa
    out = reflect_rows(rows, engine(openai_server, tmp_path))
    assert not out.quarantine
    sft = out.frames["sft"].to_dicts()
    assert len(sft) == answers_of(rows)
    formats = {(r["format"], r["lang"]) for r in sft}
    assert formats == {("sharegpt", "en"), ("kochatgpt_conversation", "ko"), ("kochatgpt_conversation", "ms"),
                       ("openai_messages", "ko")}
    for r in sft:
        assert langid.detect(r["output"])[0] == r["lang"]


# ---- faults: retried with the error, then quarantined -------------------------------------------
@pytest.mark.parametrize("code", list(FAULTS))
def test_fault_retried_with_the_error_then_fixed(code, chats, openai_server, tmp_path):
    openai_server.handler = model(FAULTS[code], once=True)
    rows = chats["ms"][:1]
    out = reflect_rows(rows, engine(openai_server, tmp_path))
    n = answers_of(rows)
    assert out.report["answers_reflected"] == n and not out.quarantine
    assert openai_server.count == 2 * n
    fixups = [r["messages"] for r in openai_server.requests if len(r["messages"]) > 2]
    assert len(fixups) == n
    hint = {"invalid_json": "not valid JSON", "k_changed": "K was changed", "empty_answer": "is empty",
            "wrong_language": "Indonesian", "refusal": "refusal"}[code]
    for msgs in fixups:
        assert msgs[2]["role"] == "assistant" and msgs[3]["role"] == "user"
        assert hint in msgs[3]["content"]


@pytest.mark.parametrize("code", list(FAULTS))
def test_fault_every_time_is_quarantined_with_the_raw_reply(code, chats, openai_server, tmp_path):
    openai_server.handler = model(FAULTS[code])
    rows = chats["ms"][:1]
    out = reflect_rows(rows, engine(openai_server, tmp_path, max_fix=2))
    n = answers_of(rows)
    assert out.frames["sft"].height == 0 and out.frames["rm"].height == 0
    assert len(out.quarantine) == n and out.report["quarantine_codes"] == {code: n}
    assert openai_server.count == 3 * n  # first try + 2 fix-up rounds
    for q in out.quarantine:
        assert q["stage"] == "reflect" and q["id"] == rows[0]["id"] and q["row"]["messages"] == rows[0]["messages"]
        assert q["raw"] == FAULTS[code]({"K": rows[0]["messages"][q["evidence"]["k_turn"]]["content"],
                                         "lang": "ms", "n": q["evidence"]["turn"]})
        assert q["where"] == f"{rows[0]['source']}:{rows[0]['line']}"


def test_k_whitespace_differences_are_accepted(chats, openai_server, tmp_path):
    def spaced(p):
        return json.dumps({"K": "  " + re.sub(r" ", "  \n", p["K"]) + "\n", "C": CRITIQUE[p["lang"]],
                           "L_new": f"{ANSWER[p['lang']]} (#{p['n']})"}, ensure_ascii=False)
    openai_server.handler = model(spaced)
    out = reflect_rows(chats["ms"][:1], engine(openai_server, tmp_path))
    assert not out.quarantine and openai_server.count == answers_of(chats["ms"][:1])


def test_target_language_of_a_chat(chats):
    ms_as_id = chats["ms"][1]  # the Malay translation of KoChatGPT reads as Indonesian to curate.langid
    assert langid.detect("\n".join(m["content"] for m in ms_as_id["messages"]))[0] == "id"
    assert chat_lang(ms_as_id) == "ms"  # Malay-first: answered in Malay
    assert chat_lang(ms_as_id, keep_indonesian=True) == "id"
    assert chat_lang(chats["ko"][0]) == "ko" and chat_lang(chats["sharegpt"][0]) == "en"
    assert chat_lang({**chats["ko"][0], "lang": "ms"}) == "ms"  # the row's lang (e.g. after translate) wins
    assert chat_lang(chats["ko"][0], forced="id") == "id"


def test_korean_chat_needs_a_korean_answer(chats, openai_server, tmp_path):
    openai_server.handler = model(lambda p: json.dumps({"K": p["K"], "C": CRITIQUE["ko"], "L_new": ANSWER["en"]}))
    out = reflect_rows(chats["ko"][:1], engine(openai_server, tmp_path, max_fix=1))
    assert set(out.report["quarantine_codes"]) == {"wrong_language"}
    assert all("Korean" in q["reason"] for q in out.quarantine)


def test_http_failure_is_quarantined_not_lost(chats, openai_server, tmp_path):
    from tests.servers.openai_server import Reply

    openai_server.handler = lambda req: Reply(400, body={"error": {"message": "bad request", "type": "invalid_request_error"}})
    rows = chats["ms"][:1]
    out = reflect_rows(rows, engine(openai_server, tmp_path))
    assert len(out.quarantine) == answers_of(rows)
    assert {q["code"] for q in out.quarantine} == {"llm_error"}


# ---- --min-change -------------------------------------------------------------------------------
def test_min_change_skips_pairs_where_the_new_answer_is_the_old(chats, openai_server, tmp_path):
    def same(p):
        old = next(t["content"] for t in p["turns"] if t["part"] == "L")
        # the old answer with one word fewer (Korean chats: the old Malay-translation answers read as
        # Indonesian and would fail the language check before --min-change is looked at)
        return json.dumps({"K": p["K"], "C": CRITIQUE[p["lang"]], "L_new": old.rsplit(" ", 1)[0]}, ensure_ascii=False)
    openai_server.handler = model(same)
    rows = chats["ko"][:2]
    n = answers_of(rows)
    out = reflect_rows(rows, engine(openai_server, tmp_path), min_change=0.05)
    assert out.frames["sft"].height == 0 and out.report["quarantine_codes"] == {"unchanged": n}
    assert all(q["evidence"]["similarity"] > 0.9 for q in out.quarantine)
    # with the threshold off the same (cached) replies become rows
    out0 = reflect_rows(rows, engine(openai_server, tmp_path), min_change=0.0)
    assert out0.frames["sft"].height == n and out0.frames["rm"].height == n


# ---- --max-context ------------------------------------------------------------------------------
def test_max_context_cuts_far_future_turns_first_and_marks_the_cut(chats, openai_server, tmp_path):
    openai_server.handler = model()
    chat = chats["sharegpt_long"][0]
    msgs = chat["messages"]
    full = sum(estimate_tokens(m["content"]) for m in msgs)
    budget = full // 2
    out = reflect_rows([chat], engine(openai_server, tmp_path), max_context=budget)
    reqs = {parse(r)["n"]: parse(r) for r in openai_server.requests}
    assert reqs and out.report["counts"]["answers_cut"] > 0
    for n, p in reqs.items():
        k = n - 1
        kept = [t["n"] - 1 for t in p["turns"]]
        assert k in kept and k + 1 in kept
        first_q = next(i for i in range(k + 2, len(msgs)) if msgs[i]["role"] == "user")
        assert first_q in kept  # hindsight needs at least the next user turn
        later = [i for i in kept if i > k + 1]
        assert later == list(range(k + 2, k + 2 + len(later)))  # the nearest later turns are the ones kept
        cut_later = len(msgs) - (k + 2 + len(later))
        if cut_later:
            assert f"[... {cut_later} later turn" in p["user"].rsplit("</turn>", 1)[1]  # marked after the last kept turn
        earlier = [i for i in kept if i < k]
        if len(earlier) < k:
            assert earlier == list(range(k - len(earlier), k))  # the oldest context goes first
            assert f"[... {k - len(earlier)} earlier turn" in p["user"]
            assert cut_later == len(msgs) - (first_q + 1)  # context is cut only after every far future turn
        prompt_tokens = estimate_tokens(p["system"]) + estimate_tokens(p["user"])
        assert prompt_tokens <= budget + 60
    meta = [schemas.meta_of(m)["reflect"] for m in out.frames["sft"]["meta"]]
    assert any(m["cut_later"] for m in meta)


def test_max_context_too_small_is_quarantined_without_a_request(chats, openai_server, tmp_path):
    openai_server.handler = model()
    rows = chats["sharegpt_long"]
    out = reflect_rows(rows, engine(openai_server, tmp_path), max_context=300)
    assert openai_server.count == 0 and set(out.report["quarantine_codes"]) == {"too_long"}
    assert len(out.quarantine) == answers_of(rows)


# ---- cache, CLI, no endpoint --------------------------------------------------------------------
def test_rerun_is_answered_from_the_cache(chats, openai_server, tmp_path):
    openai_server.handler = model(FAULTS["k_changed"], once=True)  # fix-up rounds are cached too
    rows = chats["ms"][:3] + chats["ko"][:1]
    first = reflect_rows(rows, engine(openai_server, tmp_path))
    sent = openai_server.count
    assert sent == 2 * answers_of(rows)
    openai_server.reset()
    second = reflect_rows(rows, engine(openai_server, tmp_path))
    assert openai_server.count == 0
    assert second.report["llm"]["replies_cached"] == sent
    for kind in ("sft", "rm"):
        assert first.frames[kind].equals(second.frames[kind])


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CURATE_"))}
    env.update(extra)
    return env


def test_cli_writes_dataset_report_and_quarantine(chats, openai_server, tmp_path):
    openai_server.handler = model()
    inp, out = tmp_path / "in", tmp_path / "out"
    rows = chats["ms"][:2] + chats["sharegpt"][:1]
    # SFT rows beside the chats: not reflected on, not carried over, and the report and summary say so
    sft = schemas.from_rows("sft", [{"instruction": f"Soalan {i}", "input": "", "output": "Jawapan"} for i in range(2)])
    io.write_dataset({"chat": schemas.from_rows("chat", rows), "sft": sft}, inp)
    cmd = [*CURATE, "reflect", str(inp), "-o", str(out), "--base-url", openai_server.url, "--model", "loopback",
           "--cache", str(tmp_path / "c.sqlite"), "--chat"]
    res = subprocess.run(cmd, cwd=ROOT, env=_env(OPENAI_API_KEY=SECRET), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "reflect:" in res.stderr and "answers reviewed" in res.stderr
    frames = io.read_dataset(out)
    assert set(frames) == {"sft", "rm", "chat"}
    n = answers_of(rows)
    assert all(lf.collect().height == n for lf in frames.values())
    report = json.loads((out / "report.json").read_text())
    assert report["answers_reflected"] == n and report["llm"]["requests_sent"] == n
    assert report["rows_not_read"] == {"sft": 2} and "not in the output: 2 sft rows" in res.stderr
    assert (out / "quarantine.jsonl").exists()
    for f in out.rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes()
    assert SECRET not in res.stdout + res.stderr


def test_no_endpoint_writes_batch_requests_and_quarantines_as_pending(chats, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    rows = chats["ko"][:2]
    io.write_dataset({"chat": schemas.from_rows("chat", rows)}, inp)
    res = subprocess.run([*CURATE, "reflect", str(inp), "-o", str(out), "--cache", str(tmp_path / "c.sqlite"), "-q"],
                         cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert res.returncode == EXIT_PENDING, res.stderr  # rows wait for the batch: a pipeline stops here
    assert "Batch API" in res.stderr
    batch = out / "batch" / "reflect-requests.jsonl"
    lines = [orjson.loads(x) for x in batch.read_bytes().splitlines()]
    assert len(lines) == answers_of(rows)
    assert {q["code"] for q in io.read_jsonl(out / "quarantine.jsonl")} == {"pending"}
    assert lines[0]["body"]["messages"][0]["role"] == "system"


def test_reflect_refuses_a_dataset_without_chats(tmp_path):
    inp = tmp_path / "in"
    io.write_dataset({"sft": schemas.from_rows("sft", [{"instruction": "a", "input": "", "output": "b"}])}, inp)
    res = subprocess.run([*CURATE, "reflect", str(inp), "-o", str(tmp_path / "o"), "-q"], cwd=ROOT, env=_env(),
                         capture_output=True, text=True)
    assert res.returncode != 0 and "no chat rows" in res.stderr and "Traceback" not in res.stderr


def test_batch_results_complete_the_run(chats, tmp_path):
    """No endpoint: Batch API requests out; their results (answered here by the same rule-based model) in."""
    from tests.servers.openai_server import completion

    inp, out, cache = tmp_path / "in", tmp_path / "out", tmp_path / "c.sqlite"
    rows = chats["ko"][:2] + chats["ms"][:1]
    io.write_dataset({"chat": schemas.from_rows("chat", rows)}, inp)
    cmd = [*CURATE, "reflect", str(inp), "-o", str(out), "--cache", str(cache), "-q"]
    assert subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True).returncode == EXIT_PENDING
    requests = [orjson.loads(x) for x in (out / "batch" / "reflect-requests.jsonl").read_bytes().splitlines()]
    results = tmp_path / "results.jsonl"
    handler = model()
    lines = [{"id": f"batch_req_{i}", "custom_id": r["custom_id"],
              "response": {"status_code": 200, "request_id": str(i), "body": completion(handler(r["body"]))},
              "error": None} for i, r in enumerate(reversed(requests))]  # any order
    results.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
    res = subprocess.run([*cmd, "--batch-in", str(results)], cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    n = answers_of(rows)
    assert io.read_dataset(out)["rm"].collect().height == n
    assert io.read_jsonl(out / "quarantine.jsonl") == []
    assert not (out / "batch" / "reflect-requests.jsonl").exists()  # nothing left to submit
