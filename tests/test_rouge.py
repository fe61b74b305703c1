"""ROUGE-L: the fast index gives exactly the naive DP (and rouge_score) numbers and decisions."""

from __future__ import annotations

import json
import random

import pytest

from curate.rouge import RougeIndex, fmeasure, lcs_len, rouge_l, tokenize


def _instructions(fixtures):
    texts = [json.loads(l)["instruction"] for l in open(fixtures / "malay_seed_tasks.jsonl", encoding="utf-8")]
    texts += [json.loads(l)["instruction"] for l in open(fixtures / "alpaca_seed_tasks.jsonl", encoding="utf-8")]
    rows = json.load(open(fixtures / "malay_alpaca.json", encoding="utf-8"))
    texts += [r["instruction"] for r in rows]
    # long texts (> 64 tokens) exercise the multi-word bit-parallel LCS path
    texts += [r["output"] for r in rows[:40]]
    return texts


def _naive(q, t):
    a, b = tokenize(q), tokenize(t)
    return fmeasure(lcs_len(a, b), len(a), len(b))


def test_tokenize_lowercases_and_keeps_malay_letters():
    assert tokenize("Tulis 3 ayat, tentang 'Kuala-Lumpur'!") == ["tulis", "3", "ayat", "tentang", "kuala", "lumpur"]
    assert tokenize("Café naïve") == ["café", "naïve"]
    assert tokenize("") == []


def test_lcs_reference():
    assert lcs_len("abcbdab", "bdcaba") == 4
    assert lcs_len([], ["a"]) == 0
    assert rouge_l("the cat sat", "the cat sat") == 1.0
    assert rouge_l("a b", "") == 0.0


def test_index_scores_equal_naive_on_real_texts(fixtures):
    texts = _instructions(fixtures)
    assert max(len(tokenize(t)) for t in texts) > 64
    idx = RougeIndex(texts[:250])
    rng = random.Random(7)
    for q in rng.sample(texts, 25) + ["", "zzz unseen words only"]:
        got = idx.scores(q)
        assert got.tolist() == [_naive(q, t) for t in texts[:250]]
    # adding after scoring (pending part + rebuild) keeps scores aligned with insertion order
    for t in texts[250:600]:
        idx.add(t)
    q = texts[300]
    got = idx.scores(q)
    assert got[300] == 1.0
    assert got.tolist() == [_naive(q, t) for t in texts[:600]]


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_pruned_decision_equals_full_scan(fixtures, threshold):
    texts = _instructions(fixtures)
    idx = RougeIndex(texts[:300])
    for q in texts[250:] + ["Tulis satu jenaka knock knock tentang pisang."]:
        full = idx.scores(q)
        best = full.max()
        i, f = idx.most_similar_above(q, threshold)
        assert (i >= 0) == (best > threshold)
        if i >= 0:
            assert f == best and full[i] == best
    assert idx.stats["exact"] > 0


def test_agrees_with_rouge_score(fixtures):
    from rouge_score import rouge_scorer  # the reference implementation (the test extra)

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    texts = [t for t in _instructions(fixtures) if t.isascii()][:200]
    idx = RougeIndex(texts)
    for q in texts[:30]:
        # self-instruct scores target=new instruction, prediction=kept instruction
        assert idx.scores(q).tolist() == [scorer.score(q, t)["rougeL"].fmeasure for t in texts]


def test_top_and_mean():
    idx = RougeIndex(["tulis sajak tentang laut", "tulis sajak tentang gunung", "kira jumlah nombor"])
    top, mean = idx.top("tulis sajak tentang laut biru", k=2)
    assert [i for i, _ in top] == [0, 1]
    assert top[0][1] == pytest.approx(2 * 4 / 9)
    assert mean == pytest.approx((2 * 4 / 9 + 2 * 3 / 9 + 0) / 3)
