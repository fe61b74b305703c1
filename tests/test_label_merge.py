"""The merge rules of curate pull, on small cases worked out by hand (no server needed)."""

from __future__ import annotations

import itertools
import random

import pytest

from curate.label import merge as M


def test_borda_ties_and_agreement():
    # A: c0 > c1 > c2; B: c1 > c0 > c2 -> Borda c0 = 2+1, c1 = 1+2, c2 = 0 -> c0 and c1 tie for best
    m = M.merge_rankings([[0, 1, 2], [1, 0, 2]])
    assert m["borda"] == [3.0, 3.0, 0.0]
    assert m["ranks"] == [0, 0, 1]
    # pairs (0,1) disagree, (0,2) and (1,2) agree
    assert m["pairwise_agreement"] == pytest.approx(2 / 3, abs=1e-4)
    assert 0 < m["kendalls_w"] < 1


def test_identical_and_reversed_rankings():
    same = M.merge_rankings([[2, 0, 1], [2, 0, 1], [2, 0, 1]])
    assert same["ranks"] == [2, 0, 1] and same["kendalls_w"] == 1.0 and same["pairwise_agreement"] == 1.0
    rev = M.merge_rankings([[0, 1, 2, 3], [3, 2, 1, 0]])
    assert rev["kendalls_w"] == 0.0 and rev["pairwise_agreement"] == 0.0
    assert rev["ranks"] == [0, 0, 0, 0]


def test_one_ranking_is_returned_dense_without_agreement():
    m = M.merge_rankings([[1, 3, 2]])   # Argilla's 1-based ranks
    assert m["ranks"] == [0, 2, 1]
    assert m["kendalls_w"] is None and m["pairwise_agreement"] is None


def test_borda_matches_brute_force_pairwise_wins():
    # Borda points = wins + half ties over all pairs; check against a direct count on random rankings
    rng = random.Random(7)
    for _ in range(50):
        n, m = rng.randint(2, 5), rng.randint(1, 4)
        rankings = [[rng.randint(0, n - 1) for _ in range(n)] for _ in range(m)]
        points = [0.0] * n
        for r in rankings:
            for i, j in itertools.permutations(range(n), 2):
                points[i] += 1.0 if r[i] < r[j] else 0.5 if r[i] == r[j] else 0.0
        assert M.merge_rankings(rankings)["borda"] == points
        w = M.kendalls_w(rankings)
        assert w is None or -1e-9 <= w <= 1 + 1e-9


def test_ratings_labels_and_texts():
    r = M.merge_ratings([2, 4, 5])
    assert r["median"] == 4 and r["mean"] == pytest.approx(11 / 3, abs=1e-4)
    assert r["agreement"] == pytest.approx(2 / 3, abs=1e-4)   # 2 is more than one point from 4

    lab = M.merge_multilabels([["refusal", "wrong_math"], ["refusal"], []])
    assert lab["labels"] == ["refusal"]                      # 2 of 3; wrong_math 1 of 3
    assert lab["agreement"] == pytest.approx((2 / 3 + 2 / 3) / 2, abs=1e-4)
    assert M.merge_multilabels([[], []])["agreement"] == 1.0

    assert M.merge_label(["new", "new", "old"])["label"] == "new"
    assert M.merge_label(["new", "old"], tie_label="tie")["label"] == "tie"
    assert M.merge_label(["new", "old"])["label"] is None

    t = M.merge_texts([("Jawapan  betul.", "2026-01-01T00:00:02"), ("Jawapan betul.", "2026-01-01T00:00:01"),
                       ("Lain.", "2026-01-01T00:00:09"), ("", "2026-01-01T00:00:10")])
    assert t["text"] == "Jawapan  betul." and t["candidates"] == 2 and t["agreement"] == pytest.approx(2 / 3, abs=1e-4)
    tie = M.merge_texts([("A", "2026-01-01T00:00:01"), ("B", "2026-01-01T00:00:05")])
    assert tie["text"] == "B"                               # a tie goes to the latest submission
    assert M.merge_texts([(None, "x"), ("  ", "y")])["text"] is None
