"""judge: an LLM scores SFT rows, or compares two answers of RM rows both ways round.

**Pointwise** (:func:`judge_rows`, ``curate judge IN -o OUT``): every SFT row is shown to the judge
(instruction, input, output between tags) and the reply must be the JSON object (:class:`Score`)::

    {"correctness": 1-5, "helpfulness": 1-5, "rationale": "<one or two sentences>",
     "verdict": "accept" | "revise" | "reject"}

The scores go to ``meta.judge`` = ``{correctness, helpfulness, score, rationale, verdict, model}``
where ``score`` is the mean of the two; ``curate push`` reads ``meta.judge.score`` as the judge
score metadata and as the suggestion for the 1-5 quality question, and ``rationale`` as its text.
``min_score`` (``--min-score``) drops rows whose ``score`` is below it and ``drop_verdicts``
(``--drop-verdict reject``) rows with that verdict; dropped rows go to ``quarantine.jsonl`` with
code ``low_score``/``verdict`` and the judge's rationale as the reason. Rows of other kinds pass
through unchanged.

**Pairwise** (:func:`judge_pairs`, ``--pairwise``): for each RM row, the *candidate* is the
completion the row ranks best (for ``curate reflect`` output: the rewrite L') and the *baseline*
the next best (the original L). The judge sees the prompt and the two answers as "Answer 1" and
"Answer 2", never told which is which, and is asked twice, once in each order, replying
``{"better": "1" | "2" | "tie", "reason": "..."}``. Per row:

* **win** when both orders prefer the candidate, **loss** when both prefer the baseline;
* **tie** otherwise: both orders say tie, one says tie, or the two orders disagree (the judge
  followed the position, not the answer: position bias cancelled to a tie).

``meta.judge`` of each RM row = ``{pairwise: win|loss|tie, preferred: new|old|tie, orders: [{order,
better, reason}, ...], model}`` (``preferred`` is what ``curate push --kind reflect`` suggests).

The report gives the **win rate** of the candidates over the baselines with a Wilson score
interval (default 95 %): ties count as half a win, ``p = (wins + ties/2) / n`` over the ``n`` rows
judged (Wilson's interval with ``wins + ties/2`` successes in ``n`` trials); and, beside it, the
decisive win rate ``wins / (wins + losses)`` with its own interval, the tie share, and the position
bias seen (how often the first-shown answer was preferred among the decided single-order replies).
Rows of other kinds pass through unchanged here too (:func:`judge_pairs_by_kind`).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator

from curate import io, schemas
from curate.llm import Engine, EngineConfig, Invalid, Request, Result

STAGE = "judge"

SCORE_SYSTEM = """You are a strict evaluator of training data for an AI assistant.
You get one example between tags: <instruction> (the task), <input> (extra context, may be empty) and
<output> (the answer to evaluate). Judge the output for that instruction and input:
- correctness (1-5): facts, reasoning, arithmetic and code are right; 5 = fully correct, 1 = wrong.
- helpfulness (1-5): it does what was asked, completely and clearly, in the language of the
  instruction; 5 = ideal, 1 = useless, a refusal or off-topic.
- rationale: one or two sentences saying why.
- verdict: "accept" (good training data as is), "revise" (fixable), or "reject".
Reply with one JSON object only:
{"correctness": <1-5>, "helpfulness": <1-5>, "rationale": "<why>", "verdict": "accept|revise|reject"}"""

PAIR_SYSTEM = """You compare two answers to the same prompt, as an impartial judge.
The prompt is between <prompt> tags (it may hold earlier conversation turns, then the last user turn);
the answers between <answer_1> and <answer_2>. Decide which answer is better for the user: correct,
helpful, complete, clear, in the language of the prompt. Ignore the order in which they are shown and
their length as such. Say "tie" only when neither is better.
Reply with one JSON object only: {"better": "1" | "2" | "tie", "reason": "<one sentence>"}"""

VERDICTS = ("accept", "revise", "reject")


class Score(BaseModel):
    model_config = ConfigDict(extra="ignore")
    correctness: int = Field(ge=1, le=5)
    helpfulness: int = Field(ge=1, le=5)
    rationale: str
    verdict: Literal["accept", "revise", "reject"]

    @field_validator("verdict", mode="before")
    @classmethod
    def _lower(cls, v):
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("correctness", "helpfulness", mode="before")
    @classmethod
    def _int(cls, v):
        if isinstance(v, str) and v.strip().isdigit():
            return int(v.strip())
        if isinstance(v, float) and v.is_integer():
            return int(v)
        return v


class Pick(BaseModel):
    model_config = ConfigDict(extra="ignore")
    better: Literal["1", "2", "tie"]
    reason: str = ""

    @field_validator("better", mode="before")
    @classmethod
    def _norm(cls, v):
        if isinstance(v, int) and not isinstance(v, bool):
            return str(v)
        if isinstance(v, str):
            s = v.strip().lower().replace("answer", "").replace("_", "").strip()
            return {"one": "1", "two": "2", "equal": "tie", "same": "tie", "both": "tie"}.get(s, s)
        return v


def _need_rationale(value: Score, reply) -> Score:
    if not value.rationale.strip():
        raise Invalid("\"rationale\" is empty: say in one or two sentences why")
    return value


def _quarantine(row: dict, kind: str, code: str, reason: str, evidence: Any = None, raw: str | None = None) -> dict:
    q = {"stage": STAGE, "code": code, "reason": reason, "evidence": evidence, "id": row.get("id"),
         "source": row.get("source"), "line": row.get("line"), "where": f"{row.get('source')}:{row.get('line')}",
         "row": {**row, "kind": kind}}
    if raw is not None:
        q["raw"] = raw
    return q


def _failure(res: Result) -> tuple[str, str]:
    if res.code in ("batch", "budget"):
        return "pending", res.error or "not answered yet"
    if res.code == "invalid":
        return "invalid_reply", res.error or "no valid reply"
    return "llm_error", res.error or res.code


@dataclasses.dataclass
class Outcome:
    frames: dict[str, pl.DataFrame]
    quarantine: list[dict]
    report: dict[str, Any]


# ---- statistics -----------------------------------------------------------------------------------
def wilson(successes: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a proportion (``successes`` may be fractional, e.g. half-counted ties)."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def z_for(confidence: float) -> float:
    """Two-sided normal quantile for a confidence level (0.95 -> 1.96), by bisection on erf."""
    target = confidence
    lo, hi = 0.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if math.erf(mid / math.sqrt(2)) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def win_rate(outcomes: Counter, confidence: float = 0.95) -> dict[str, Any]:
    """Win rate (ties half) and decisive win rate, each with a Wilson interval."""
    z = z_for(confidence)
    w, l, t = outcomes.get("win", 0), outcomes.get("loss", 0), outcomes.get("tie", 0)
    n = w + l + t
    rate = (w + t / 2) / n if n else None
    lo, hi = wilson(w + t / 2, n, z)
    decided = w + l
    d_lo, d_hi = wilson(w, decided, z)
    return {"n": n, "wins": w, "losses": l, "ties": t, "confidence": confidence,
            "win_rate": None if rate is None else round(rate, 4),
            "ci": [round(lo, 4), round(hi, 4)] if n else None,
            "decisive_win_rate": round(w / decided, 4) if decided else None,
            "decisive_ci": [round(d_lo, 4), round(d_hi, 4)] if decided else None,
            "tie_rate": round(t / n, 4) if n else None,
            "ties_rule": "ties (both orders tie, one tie, or the orders disagree) count as half a win"}


# ---- pointwise ------------------------------------------------------------------------------------
def score_summary(hist: dict[str, int]) -> dict[str, Any]:
    """``score_histogram`` (sorted by score) and ``mean_score`` from counts per score: one computation
    for a single run and for blocks merged on a cluster, so both report the same figures."""
    hist = {k: hist[k] for k in sorted(hist, key=float)}
    n = sum(hist.values())
    return {"score_histogram": hist,
            "mean_score": round(sum(float(k) * v for k, v in hist.items()) / n, 4) if n else None}


def score_message(row: dict[str, Any]) -> str:
    return (f"<instruction>\n{row.get('instruction') or ''}\n</instruction>\n"
            f"<input>\n{row.get('input') or ''}\n</input>\n"
            f"<output>\n{row.get('output') or ''}\n</output>")


def judge_rows(rows_by_kind: dict[str, list[dict]], engine: Engine, *, min_score: float | None = None,
               drop_verdicts: tuple[str, ...] = (), temperature: float = 0.0) -> Outcome:
    """Score every SFT row; keep the scores in ``meta.judge``; drop by ``min_score``/``drop_verdicts``."""
    sft = rows_by_kind.get("sft") or []
    params = {"temperature": temperature, "response_format": {"type": "json_object"}}
    requests = [Request(key=f"{i}:{r['id']}", messages=[{"role": "system", "content": SCORE_SYSTEM},
                                                         {"role": "user", "content": score_message(r)}],
                        params=params, schema=Score, validate=_need_rationale, data=r) for i, r in enumerate(sft)]
    results = engine.run(requests) if requests else []
    kept: list[dict] = []
    quarantine: list[dict] = []
    codes: Counter = Counter()
    verdicts: Counter = Counter()
    scores: list[float] = []
    model = engine.config.model
    for res in results:
        row = res.data
        if not res.ok:
            code, reason = _failure(res)
            quarantine.append(_quarantine(row, "sft", code, reason, raw=res.text))
            codes[code] += 1
            continue
        s: Score = res.value
        score = (s.correctness + s.helpfulness) / 2
        judge = {"correctness": s.correctness, "helpfulness": s.helpfulness, "score": score,
                 "rationale": s.rationale.strip(), "verdict": s.verdict, "model": model}
        new = {**row, "meta": schemas.merge_meta(row.get("meta"), judge=judge)}
        verdicts[s.verdict] += 1
        scores.append(score)
        if min_score is not None and score < min_score:
            quarantine.append(_quarantine(new, "sft", "low_score", f"judge score {score:g} < --min-score {min_score:g}: "
                                          f"{judge['rationale']}", evidence=judge))
            codes["low_score"] += 1
            continue
        if s.verdict in drop_verdicts:
            quarantine.append(_quarantine(new, "sft", "verdict", f"judge verdict {s.verdict}: {judge['rationale']}",
                                          evidence=judge))
            codes["verdict"] += 1
            continue
        kept.append(new)
    frames = {k: schemas.from_rows(k, v) for k, v in rows_by_kind.items() if k != "sft"}
    if "sft" in rows_by_kind:
        frames["sft"] = schemas.from_rows("sft", kept)
    hist = Counter(scores)
    report = {
        "stage": STAGE, "mode": "pointwise",
        "rows_in": sum(len(v) for v in rows_by_kind.values()), "rows_out": sum(f.height for f in frames.values()),
        "rows_by_kind": {k: f.height for k, f in frames.items()},
        "scored": len(scores), "quarantined": len(quarantine), "quarantine_codes": dict(codes),
        **score_summary({f"{k:g}": n for k, n in hist.items()}), "verdicts": dict(verdicts),
        "settings": {"min_score": min_score, "drop_verdicts": list(drop_verdicts), "temperature": temperature},
        "requests": len(requests), "llm": engine.report(),
    }
    return Outcome(frames, quarantine, report)


# ---- pairwise -------------------------------------------------------------------------------------
def pair_of(row: dict[str, Any]) -> tuple[int, int] | None:
    """``(candidate index, baseline index)``: the best- and second-ranked completions, or None."""
    comps = row.get("completions") or []
    ranks = row.get("ranks")
    if len(comps) < 2 or not ranks or len(ranks) != len(comps) or any(r is None for r in ranks):
        return None
    order = sorted(range(len(comps)), key=lambda i: (ranks[i], i))
    return order[0], order[1]


def pair_message(prompt: str, first: str, second: str) -> str:
    return (f"<prompt>\n{prompt}\n</prompt>\n<answer_1>\n{first}\n</answer_1>\n"
            f"<answer_2>\n{second}\n</answer_2>")


def combine(first: str, second: str) -> str:
    """Outcome of one row from the two orders' picks (order 1: candidate shown first; order 2: second)."""
    a = {"1": "cand", "2": "base", "tie": "tie"}[first]
    b = {"1": "base", "2": "cand", "tie": "tie"}[second]
    if a == b == "cand":
        return "win"
    if a == b == "base":
        return "loss"
    return "tie"


def pairwise_stats(outcomes: Counter | dict[str, int], first: int, second: int, consistent: int,
                   confidence: float = 0.95) -> dict[str, Any]:
    """The report's ``pairwise`` figures from the counts (row outcomes; single-order replies that
    preferred the first / second shown answer; rows whose two orders agreed)."""
    stats = win_rate(outcomes, confidence)
    stats["position_bias"] = {
        "first_preferred": first, "second_preferred": second,
        "first_share": round(first / (first + second), 4) if first + second else None,
        "consistent_rows": consistent}
    return stats


def judge_pairs(rows: list[dict[str, Any]], engine: Engine, *, confidence: float = 0.95,
                temperature: float = 0.0) -> Outcome:
    """Judge each RM row's best two completions in both orders; win rate of the best-ranked with a CI."""
    params = {"temperature": temperature, "response_format": {"type": "json_object"}}
    codes: Counter = Counter()
    requests: list[Request] = []
    judged: list[tuple[int, dict, int, int]] = []
    quarantined: list[tuple[int, dict]] = []  # (row index, entry): quarantine.jsonl lists them in row order
    for i, row in enumerate(rows):
        pair = pair_of(row)
        if pair is None:
            quarantined.append((i, _quarantine(row, "rm", "unranked", "needs two ranked completions to compare")))
            codes["unranked"] += 1
            continue
        c, b = pair
        cand, base = row["completions"][c], row["completions"][b]
        for order, (x, y) in enumerate(((cand, base), (base, cand)), start=1):
            requests.append(Request(key=f"{i}:{row['id']}:{order}",
                                    messages=[{"role": "system", "content": PAIR_SYSTEM},
                                              {"role": "user", "content": pair_message(row.get("prompt") or "", x, y)}],
                                    params=params, schema=Pick, data=(len(judged), order)))
        judged.append((i, row, c, b))
    results = engine.run(requests) if requests else []
    picks: dict[int, dict[int, Result]] = {}
    for res in results:
        j, order = res.data
        picks.setdefault(j, {})[order] = res
    out_rows: list[dict] = []
    outcomes: Counter = Counter()
    first_pos = Counter()
    consistent = 0
    model = engine.config.model
    for j, (i, row, c, b) in enumerate(judged):
        got = picks.get(j, {})
        bad = [r for r in got.values() if not r.ok]
        if bad:
            code, reason = _failure(bad[0])
            quarantined.append((i, _quarantine(row, "rm", code, reason, raw=bad[0].text)))
            codes[code] += 1
            continue
        p1, p2 = got[1].value, got[2].value
        result = combine(p1.better, p2.better)
        outcomes[result] += 1
        for p in (p1, p2):
            if p.better != "tie":
                first_pos["first" if p.better == "1" else "second"] += 1
        consistent += int(result in ("win", "loss") or (p1.better == p2.better == "tie"))
        judge = {"pairwise": result, "preferred": {"win": "new", "loss": "old", "tie": "tie"}[result],
                 "candidate": c, "baseline": b,
                 "orders": [{"order": "candidate first", "better": p1.better, "reason": p1.reason},
                            {"order": "baseline first", "better": p2.better, "reason": p2.reason}],
                 "model": model}
        out_rows.append({**row, "meta": schemas.merge_meta(row.get("meta"), judge=judge)})
    quarantine = [q for _, q in sorted(quarantined, key=lambda t: t[0])]
    stats = pairwise_stats(outcomes, first_pos["first"], first_pos["second"], consistent, confidence)
    frames = {"rm": schemas.from_rows("rm", out_rows)}
    report = {
        "stage": STAGE, "mode": "pairwise", "rows_in": len(rows), "rows_out": len(out_rows),
        "rows_by_kind": {"rm": len(out_rows)}, "quarantined": len(quarantine), "quarantine_codes": dict(codes),
        "pairwise": stats, "settings": {"confidence": confidence, "temperature": temperature},
        "requests": len(requests), "llm": engine.report(),
    }
    return Outcome(frames, quarantine, report)


def judge_pairs_by_kind(rows_by_kind: dict[str, list[dict]], engine: Engine, **kw: Any) -> Outcome:
    """:func:`judge_pairs` over the RM rows; rows of other kinds pass through unchanged, as pointwise."""
    out = judge_pairs(rows_by_kind.get("rm") or [], engine, **kw)
    frames = {k: schemas.from_rows(k, v) for k, v in rows_by_kind.items() if k != "rm"}
    if "rm" in rows_by_kind:  # only the kinds given (a Ray block holds one kind)
        frames["rm"] = out.frames["rm"]
    report = {**out.report, "rows_in": sum(len(v) for v in rows_by_kind.values()),
              "rows_out": sum(f.height for f in frames.values()), "rows_by_kind": {k: f.height for k, f in frames.items()}}
    return Outcome(frames, out.quarantine, report)


# ---- dataset level --------------------------------------------------------------------------------
def write_outcome(outcome: Outcome, out_dir: Path, inp: str | Path | None = None,
                  data: io.Input | None = None) -> None:
    io.write_stage(out_dir, stage="judge", frames=outcome.frames, report=outcome.report, quarantine=outcome.quarantine,
                   inputs=[inp] if inp is not None else [], data=data)


def judge_dataset(inp: str | Path, out_dir: str | Path, config: EngineConfig, *, pairwise: bool = False,
                  **kw: Any) -> tuple[Outcome, Engine]:
    """Read ``inp``, judge (pointwise SFT scores or pairwise RM comparisons), write ``out_dir``."""
    from curate.errors import UserError

    io.check_output(out_dir, [inp])
    data = io.read_input(inp)
    frames = data.frames
    engine = Engine(config, description="judge" + (" pairwise" if pairwise else ""))
    if pairwise:
        if "rm" not in frames:
            raise UserError(f"{inp}: --pairwise needs RM rows (rm.parquet, e.g. from `curate reflect`); "
                            f"found {', '.join(frames) or 'nothing'}")
        outcome = judge_pairs_by_kind({k: lf.collect().to_dicts() for k, lf in frames.items()}, engine, **kw)
    else:
        if "sft" not in frames:
            raise UserError(f"{inp}: no SFT rows to score (found {', '.join(frames) or 'nothing'}); "
                            "use --pairwise for RM rows")
        outcome = judge_rows({k: lf.collect().to_dicts() for k, lf in frames.items()}, engine, **kw)
    write_outcome(outcome, Path(out_dir), inp, data)
    return outcome, engine
