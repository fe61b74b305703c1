"""judge over real HTTP (loopback server, real openai client): pointwise scores and the pairwise win rate."""

from __future__ import annotations

import json
import math
import re
import subprocess
from collections import Counter

import pytest

from curate import io, schemas
from curate.ingest import ingest
from curate.judge import judge_pairs, judge_rows, wilson
from curate.reflect import reflect_rows
from tests.servers.openai_server import openai_server  # noqa: F401
from tests.test_reflect import CURATE, ROOT, SECRET, _env, engine, model

TAG = re.compile(r"<(instruction|input|output|prompt|answer_1|answer_2)>\n(.*?)\n</\1>", re.S)


def tags(request: dict) -> dict[str, str]:
    return dict(TAG.findall(request["messages"][1]["content"]))


# A rule-based judge: Malay outputs (with "kerana") are correct, long ones helpful.
def expected_score(output: str) -> dict:
    c = 5 if "kerana" in output else 2
    h = 4 if len(output) > 120 else 1
    verdict = "accept" if c + h >= 8 else "revise" if c + h >= 5 else "reject"
    return {"correctness": c, "helpfulness": h, "verdict": verdict}


def scorer(request: dict) -> str:
    t = tags(request)
    s = expected_score(t["output"])
    return json.dumps({**s, "rationale": f"{s['verdict']}: {len(t['output'])} chars"})


@pytest.fixture(scope="module")
def sft_rows(fixtures) -> list[dict]:
    res = ingest([fixtures / "malay_kochatgpt_sft.jsonl", fixtures / "chatdoctor.json"], detect_lang=False)
    rows = res.frames["sft"].to_dicts()
    ms = [r for r in rows if "malay" in r["source"]][:8]
    en = [r for r in rows if "chatdoctor" in r["source"]][:4]
    return ms + en


@pytest.fixture(scope="module")
def chat_rows(fixtures) -> list[dict]:
    res = ingest([fixtures / "malay_kochatgpt_conversation.jsonl"], detect_lang=False)
    return res.frames["chat"].to_dicts()[:5]


# ---- pointwise ------------------------------------------------------------------------------------
def test_scores_go_to_meta_judge_and_min_score_drops_with_the_reason(sft_rows, openai_server, tmp_path):
    openai_server.handler = scorer
    out = judge_rows({"sft": sft_rows}, engine(openai_server, tmp_path), min_score=3)
    assert openai_server.count == len(sft_rows)
    for req, row in zip(sorted(openai_server.requests, key=lambda r: tags(r)["output"]),
                        sorted(sft_rows, key=lambda r: r["output"] or "")):
        t = tags(req)
        assert (t["instruction"], t["input"], t["output"]) == (row["instruction"] or "", row["input"] or "", row["output"] or "")
    kept = {r["id"]: r for r in out.frames["sft"].to_dicts()}
    dropped = {q["id"]: q for q in out.quarantine}
    assert len(kept) + len(dropped) == len(sft_rows)
    scores = []
    for row in sft_rows:
        exp = expected_score(row["output"] or "")
        score = (exp["correctness"] + exp["helpfulness"]) / 2
        scores.append(score)
        if score < 3:
            q = dropped[row["id"]]
            assert q["code"] == "low_score" and f"{score:g} < --min-score 3" in q["reason"]
            assert q["evidence"]["verdict"] == exp["verdict"] and q["stage"] == "judge"
        else:
            judge = schemas.meta_of(kept[row["id"]]["meta"])["judge"]
            assert {k: judge[k] for k in exp} == exp and judge["score"] == score
            assert judge["rationale"].startswith(exp["verdict"]) and judge["model"] == "loopback"
    assert dropped and kept  # the fixture rows give both outcomes
    assert out.report["mean_score"] == round(sum(scores) / len(scores), 4)
    assert out.report["verdicts"] == dict(Counter(expected_score(r["output"] or "")["verdict"] for r in sft_rows))


def test_scores_are_what_curate_push_suggests(sft_rows, openai_server, tmp_path):
    from curate.label import settings

    openai_server.handler = scorer
    out = judge_rows({"sft": sft_rows[:3]}, engine(openai_server, tmp_path))
    for row in out.frames["sft"].to_dicts():
        meta = schemas.meta_of(row["meta"])
        assert settings.judge_score(meta) == meta["judge"]["score"]
        assert settings.judge_text(meta) == meta["judge"]["rationale"]


def test_drop_verdict_and_other_kinds_pass_through(sft_rows, chat_rows, openai_server, tmp_path):
    openai_server.handler = scorer
    out = judge_rows({"sft": sft_rows, "chat": chat_rows}, engine(openai_server, tmp_path), drop_verdicts=("reject",))
    rejected = [r for r in sft_rows if expected_score(r["output"] or "")["verdict"] == "reject"]
    assert out.report["quarantine_codes"] == ({"verdict": len(rejected)} if rejected else {})
    assert out.frames["chat"].to_dicts() == chat_rows
    assert openai_server.count == len(sft_rows)  # chats are not scored


def test_out_of_range_score_is_retried_then_quarantined(sft_rows, openai_server, tmp_path):
    def bad(request):
        if len(request["messages"]) > 2:
            return scorer(request)
        return json.dumps({"correctness": 7, "helpfulness": 3, "rationale": "x", "verdict": "accept"})
    openai_server.handler = bad
    out = judge_rows({"sft": sft_rows[:2]}, engine(openai_server, tmp_path))
    assert openai_server.count == 4 and not out.quarantine
    fix = [r for r in openai_server.requests if len(r["messages"]) > 2][0]["messages"][-1]["content"]
    assert "correctness" in fix
    openai_server.handler = lambda r: "I think it is good."
    out = judge_rows({"sft": sft_rows[2:4]}, engine(openai_server, tmp_path, max_fix=1))
    assert [q["code"] for q in out.quarantine] == ["invalid_reply", "invalid_reply"]
    assert all(q["raw"] == "I think it is good." for q in out.quarantine)


# ---- pairwise -------------------------------------------------------------------------------------
def wilson_by_quadratic(k: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson interval as the roots of (p_hat - p)^2 = z^2 p (1 - p) / n (independent of curate.judge)."""
    ph = k / n
    a = 1 + z * z / n
    b = -(2 * ph + z * z / n)
    c = ph * ph
    d = math.sqrt(b * b - 4 * a * c)
    return ((-b - d) / (2 * a), (-b + d) / (2 * a))


def test_wilson_interval():
    for k, n in [(8, 10), (0, 5), (5, 5), (37.5, 60), (1, 1000)]:
        lo, hi = wilson(k, n)
        qlo, qhi = wilson_by_quadratic(k, n)
        assert lo == pytest.approx(max(0.0, qlo), abs=1e-9) and hi == pytest.approx(min(1.0, qhi), abs=1e-9)
    assert wilson(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)  # the textbook example


@pytest.fixture
def rm_rows(chat_rows, openai_server, tmp_path) -> list[dict]:
    """RM rows made by reflect from real Malay chats (new answer ranked over the old)."""
    openai_server.handler = model()
    out = reflect_rows(chat_rows, engine(openai_server, tmp_path / "reflect"))
    openai_server.reset()
    rows = out.frames["rm"].to_dicts()
    assert len(rows) >= 9
    return rows


NEW = re.compile(r"\(#\d+\)$")  # the loopback reflect model's answers end with "(#n)"


def test_pairwise_both_orders_and_win_rate_with_ci(rm_rows, openai_server, tmp_path):
    # rows 0..2: ranks flipped (the file ranks the old answer first) -> the judge disagrees: loss
    # rows 3..4: a position-biased judge (always "1") -> the orders disagree: tie
    # row 5: the judge says tie both ways -> tie; the rest: the judge prefers the new answer -> win
    rows = [dict(r) for r in rm_rows]
    for r in rows[:3]:
        r["ranks"] = [1, 0]
    biased = {rows[3]["prompt"], rows[4]["prompt"]}
    tie = {rows[5]["prompt"]}

    def judge(request):
        t = tags(request)
        if t["prompt"] in biased:
            return json.dumps({"better": "1", "reason": "first"})
        if t["prompt"] in tie:
            return json.dumps({"better": "tie", "reason": "same"})
        better = "1" if NEW.search(t["answer_1"]) else "2"
        return json.dumps({"better": better, "reason": "more complete"})
    openai_server.handler = judge
    out = judge_pairs(rows, engine(openai_server, tmp_path))
    assert openai_server.count == 2 * len(rows)
    # both orders were asked, never telling which answer is new
    shown = Counter()
    for req in openai_server.requests:
        t = tags(req)
        shown[(t["prompt"], t["answer_1"], t["answer_2"])] += 1
        assert "new" not in req["messages"][1]["content"].lower().split("</prompt>")[1]
    for r in rows:
        a, b = r["completions"]
        assert shown[(r["prompt"], a, b)] == 1 and shown[(r["prompt"], b, a)] == 1
    expected = Counter()
    for i, r in enumerate(rows):
        expected["loss" if i < 3 else "tie" if i < 6 else "win"] += 1
    got = {r["id"]: schemas.meta_of(r["meta"])["judge"] for r in out.frames["rm"].to_dicts()}
    assert Counter(j["pairwise"] for j in got.values()) == expected
    for i, r in enumerate(rows):
        j = got[r["id"]]
        assert j["preferred"] == {"win": "new", "loss": "old", "tie": "tie"}[j["pairwise"]]
        assert len(j["orders"]) == 2
    s = out.report["pairwise"]
    n = len(rows)
    w, l, t = expected["win"], expected["loss"], expected["tie"]
    assert (s["n"], s["wins"], s["losses"], s["ties"]) == (n, w, l, t)
    assert s["win_rate"] == round((w + t / 2) / n, 4)
    lo, hi = wilson_by_quadratic(w + t / 2, n)
    assert s["ci"] == [round(lo, 4), round(hi, 4)]
    dlo, dhi = wilson_by_quadratic(w, w + l)
    assert s["decisive_win_rate"] == round(w / (w + l), 4) and s["decisive_ci"] == [round(dlo, 4), round(dhi, 4)]
    # position bias: the biased rows' 4 replies all chose the first answer
    assert s["position_bias"]["first_preferred"] - s["position_bias"]["second_preferred"] == 4


def test_pairwise_invalid_pick_and_unranked_rows_are_quarantined(rm_rows, openai_server, tmp_path):
    rows = [dict(r) for r in rm_rows[:3]]
    rows[2]["ranks"] = None
    openai_server.handler = lambda r: json.dumps({"better": "3", "reason": "?"})
    out = judge_pairs(rows, engine(openai_server, tmp_path, max_fix=1))
    assert Counter(q["code"] for q in out.quarantine) == {"invalid_reply": 2, "unranked": 1}
    assert out.frames["rm"].height == 0 and out.report["pairwise"]["n"] == 0


def test_cli_pointwise_and_pairwise_on_reflect_output(rm_rows, sft_rows, openai_server, tmp_path):
    inp = tmp_path / "reflected"
    io.write_dataset({"rm": schemas.from_rows("rm", rm_rows), "sft": schemas.from_rows("sft", sft_rows)}, inp)

    def judge(request):
        if "<answer_1>" in request["messages"][1]["content"]:
            t = tags(request)
            return json.dumps({"better": "1" if NEW.search(t["answer_1"]) else "2", "reason": "r"})
        return scorer(request)
    openai_server.handler = judge
    base = ["--base-url", openai_server.url, "--model", "loopback", "--cache", str(tmp_path / "c.sqlite")]
    res = subprocess.run([*CURATE, "judge", str(inp), "-o", str(tmp_path / "pairs"), "--pairwise", *base],
                         cwd=ROOT, env=_env(OPENAI_API_KEY=SECRET), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "win rate 1.000" in res.stderr
    rep = json.loads((tmp_path / "pairs" / "report.json").read_text())
    assert rep["pairwise"]["wins"] == len(rm_rows) and rep["pairwise"]["ci"][1] == 1.0
    # the SFT rows beside the RM rows pass through unchanged, as in pointwise mode
    pairs = io.read_dataset(tmp_path / "pairs")
    assert pairs["sft"].collect().equals(schemas.from_rows("sft", sft_rows))
    assert rep["rows_in"] == rep["rows_out"] == len(rm_rows) + len(sft_rows)
    assert rep["rows_by_kind"] == {"sft": len(sft_rows), "rm": len(rm_rows)}
    res = subprocess.run([*CURATE, "judge", str(inp), "-o", str(tmp_path / "scored"), "--min-score", "3", *base],
                         cwd=ROOT, env=_env(OPENAI_API_KEY=SECRET), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    scored = io.read_dataset(tmp_path / "scored")
    assert scored["rm"].collect().height == len(rm_rows)
    low = [r for r in sft_rows if sum(list(expected_score(r["output"] or "").values())[:2]) / 2 < 3]
    assert scored["sft"].collect().height == len(sft_rows) - len(low)
    for f in (tmp_path / "scored").rglob("*"):
        assert not f.is_file() or SECRET.encode() not in f.read_bytes()
