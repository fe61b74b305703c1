"""Merging several annotators' answers into one, with an agreement figure per record.

The rules (documented here and in ``curate pull --help``):

* **rankings**: Borda count. An annotator's ranking of ``n`` items gives each item one point for
  every item ranked strictly below it and half a point for every other item tied with it. Points
  are summed over annotators; the merged rank is the dense rank of the totals (0 = most points,
  equal totals share a rank). Agreement: Kendall's coefficient of concordance ``W`` with the tie
  correction (0 = no agreement, 1 = identical rankings), and the pairwise agreement (the share of
  annotator pairs x item pairs ordered the same way, ties counting as agreeing only with ties).
* **ratings**: the median (an even count takes the mean of the middle two); the mean is kept too.
  Agreement: the share of annotators within one point of the median.
* **single labels** (e.g. the reflect preference): plurality; a tie between the top labels gives
  ``tie`` when that is a label, otherwise no decision. Agreement: the share voting for the winner.
* **multi labels** (rule codes): a label is kept when more than half of the annotators chose it.
  Agreement: averaged over every label anyone chose, the share of annotators on the majority side
  (1.0 when nobody chose any label).
* **text corrections**: the most frequent non-blank correction (compared after normalising
  whitespace); a tie goes to the most recent submission. Blank answers mean "no correction".

With one annotator every rule returns that annotator's answer and the agreement is ``None``.
"""

from __future__ import annotations

import statistics
from collections import Counter
from itertools import combinations
from typing import Any, Sequence


def dense_ranks(scores: Sequence[float], higher_is_better: bool = True) -> list[int]:
    """0-based dense ranks: the best score gets 0, equal scores share a rank."""
    distinct = sorted(set(scores), reverse=higher_is_better)
    where = {s: i for i, s in enumerate(distinct)}
    return [where[s] for s in scores]


def borda_points(ranks: Sequence[int]) -> list[float]:
    """Points of each item in one ranking (lower rank = better; ties share half points)."""
    return [sum(1.0 if r < other else 0.5 if r == other else 0.0 for j, other in enumerate(ranks) if j != i)
            for i, r in enumerate(ranks)]


def mid_ranks(ranks: Sequence[int]) -> list[float]:
    """Fractional (mid) ranks 1..n of a ranking with ties, as Kendall's W needs them."""
    order = sorted(set(ranks))
    out: dict[int, float] = {}
    start = 1
    for r in order:
        count = sum(1 for x in ranks if x == r)
        out[r] = start + (count - 1) / 2
        start += count
    return [out[r] for r in ranks]


def kendalls_w(rankings: Sequence[Sequence[int]]) -> float | None:
    """Kendall's W (tie-corrected) of ``m`` rankings of the same ``n`` items; None when undefined."""
    m = len(rankings)
    if m < 2:
        return None
    n = len(rankings[0])
    if n < 2:
        return None
    mids = [mid_ranks(r) for r in rankings]
    totals = [sum(col) for col in zip(*mids)]
    mean = m * (n + 1) / 2
    s = sum((t - mean) ** 2 for t in totals)
    ties = sum(c ** 3 - c for r in rankings for c in Counter(r).values())
    denom = m * m * (n ** 3 - n) - m * ties
    if denom <= 0:
        # every annotator tied every item: they agree perfectly when all did so
        return 1.0
    return round(12 * s / denom, 4)


def pairwise_agreement(rankings: Sequence[Sequence[int]]) -> float | None:
    """Share of (annotator pair, item pair) combinations ordered the same way; None for one ranking."""
    if len(rankings) < 2:
        return None
    n = len(rankings[0])
    agree = total = 0
    for a, b in combinations(rankings, 2):
        for i, j in combinations(range(n), 2):
            sa = (a[i] > a[j]) - (a[i] < a[j])
            sb = (b[i] > b[j]) - (b[i] < b[j])
            agree += sa == sb
            total += 1
    return round(agree / total, 4) if total else None


def merge_rankings(rankings: Sequence[Sequence[int]]) -> dict[str, Any]:
    """Borda merge of several rankings (each 0-based or 1-based, lower = better, ties allowed)."""
    if not rankings:
        raise ValueError("no rankings to merge")
    n = len(rankings[0])
    if any(len(r) != n for r in rankings):
        raise ValueError("rankings of different lengths")
    points = [sum(p) for p in zip(*(borda_points(r) for r in rankings))]
    return {"ranks": dense_ranks(points), "borda": points, "kendalls_w": kendalls_w(rankings),
            "pairwise_agreement": pairwise_agreement(rankings), "annotators": len(rankings)}


def merge_ratings(values: Sequence[float]) -> dict[str, Any]:
    """Median (and mean) of several ratings, with the share within one point of the median."""
    if not values:
        raise ValueError("no ratings to merge")
    median = statistics.median(values)
    agreement = None
    if len(values) > 1:
        agreement = round(sum(abs(v - median) <= 1 for v in values) / len(values), 4)
    return {"median": median, "mean": round(statistics.fmean(values), 4), "values": list(values),
            "agreement": agreement}


def merge_label(votes: Sequence[str], tie_label: str | None = None) -> dict[str, Any]:
    """Plurality vote over single labels."""
    if not votes:
        raise ValueError("no votes to merge")
    counts = Counter(votes)
    top = max(counts.values())
    leaders = sorted(v for v, c in counts.items() if c == top)
    winner = leaders[0] if len(leaders) == 1 else tie_label
    agreement = round(top / len(votes), 4) if len(votes) > 1 else None
    return {"label": winner, "votes": dict(counts), "agreement": agreement}


def merge_multilabels(choices: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Majority (more than half) per label over several annotators' label sets."""
    m = len(choices)
    if m == 0:
        raise ValueError("no label sets to merge")
    counts = Counter(label for c in choices for label in set(c))
    kept = sorted(label for label, c in counts.items() if c * 2 > m)
    agreement = None
    if m > 1:
        agreement = 1.0 if not counts else round(
            statistics.fmean(max(c, m - c) / m for c in counts.values()), 4)
    return {"labels": kept, "votes": dict(sorted(counts.items())), "agreement": agreement}


def _norm(text: str) -> str:
    return " ".join(text.split())


def merge_texts(texts: Sequence[tuple[str | None, str]]) -> dict[str, Any]:
    """Pick one correction out of ``(text, submitted_at)`` pairs; blank texts are no correction."""
    given = [(t, at) for t, at in texts if t is not None and t.strip()]
    if not given:
        return {"text": None, "candidates": 0, "agreement": None}
    counts = Counter(_norm(t) for t, _ in given)
    top = max(counts.values())
    best = max((at, t) for t, at in given if counts[_norm(t)] == top)[1]
    agreement = round(top / len(given), 4) if len(given) > 1 else None
    return {"text": best, "candidates": len(counts), "agreement": agreement}
