"""Benchmark: self-instruct's ROUGE-L near-duplicate filter at 50,000 generated tasks.

Self-instruct keeps a generated instruction only if its ROUGE-L F against every instruction kept so
far (seeds included) is <= 0.7. Done pair by pair with ``rouge_score`` that is quadratic in pure
Python. This script:

1. makes N realistic instructions (default 50,000) with a word-bigram Markov chain trained on the
   real English and Malay seed instructions and the Malay self-instruct output (fixtures), so word
   frequencies, lengths and accidental near-copies look like real generations; seeded, repeatable;
2. filters them sequentially with ``RougeIndex.most_similar_above`` (pruned; exact decisions)
   -> the headline figure, printed next to the floor (50,000 in under 5 minutes);
3. does what ``curate generate`` does for the first ``--full-n`` candidates: the pruned decision,
   then for kept ones the full score row (``most_similar_instructions`` + ``avg_similarity_score``
   over all earlier instructions) with ``RougeIndex.scores``; the kept/dropped decisions of the
   full scan are checked against the fast filter on the naive reference below;
4. runs the naive reference (pure-Python DP LCS, as rouge_score does; and rouge_score itself when
   installed) on the first ``--naive-n`` candidates, checks every decision and score agrees, and
   extrapolates its time to N (quadratic).

5. with ``--libs N`` (issue 17), on the first N candidates in the same run: the index as it is now
   (pruned, rapidfuzz ``LCSseq`` for every exact LCS), the hand-written numpy bit-parallel index it
   replaced (loaded from git, ``--before``), and rapidfuzz alone (``process.cdist`` of each
   candidate against every kept text, 1 and 2 workers): same decisions, seconds, x polars floor.

Usage: python bench/rouge.py [-n 50000] [--full-n 10000] [--naive-n 1000] [--libs 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from curate.rouge import RougeIndex, _fmeasure_many, fmeasure, tokenize, top_k  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "data" / "fixtures"
FLOOR_SECONDS = 300.0  # 50,000 generated tasks filtered "in minutes"
THRESHOLD = 0.7


def real_instructions() -> tuple[list[str], list[str]]:
    seeds = [json.loads(l)["instruction"] for l in open(FIXTURES / "malay_seed_tasks.jsonl", encoding="utf-8")]
    corpus = list(seeds)
    corpus += [json.loads(l)["instruction"] for l in open(FIXTURES / "alpaca_seed_tasks.jsonl", encoding="utf-8")]
    for name in ("malay_alpaca.json", "malay_alpaca_anomalies.json"):
        corpus += [r["instruction"] for r in json.load(open(FIXTURES / name, encoding="utf-8"))]
    return seeds, corpus


def markov(corpus: list[str], n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    nxt: dict[str, list[str]] = {}
    starts = []
    for text in corpus:
        words = text.split()
        if not words:
            continue
        starts.append(words[0])
        for a, b in zip(["<s>"] + words, words + ["</s>"]):
            nxt.setdefault(a, []).append(b)
    out = []
    while len(out) < n:
        w, words = rng.choice(starts), []
        while w != "</s>" and len(words) < 60:
            words.append(w)
            w = rng.choice(nxt.get(w, ["</s>"]))
        if len(words) >= 4:
            out.append(" ".join(words))
    return out


def lcs_len(a, b) -> int:
    """Plain O(len_a * len_b) dynamic-programming LCS, as rouge_score computes it (the naive reference)."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def run_filter(index_cls, seeds: list[str], cands: list[str]):
    """(decisions, the index) of the sequential filter self-instruct runs, with ``index_cls``."""
    idx = index_cls(seeds)
    keep = []
    for c in cands:
        i, _ = idx.most_similar_above(c, THRESHOLD)
        keep.append(i < 0)
        if i < 0:
            idx.add(c)
    return keep, idx


def filter_with(index_cls, seeds: list[str], cands: list[str]) -> tuple[list[bool], float]:
    """(decisions, CPU seconds) of the sequential filter with ``index_cls``."""
    t0 = time.process_time()
    keep, _ = run_filter(index_cls, seeds, cands)
    return keep, time.process_time() - t0


def rapidfuzz_filter(seeds: list[str], cands: list[str], workers: int, lists: bool) -> tuple[list[bool], float]:
    """rapidfuzz alone: each candidate's LCS against every kept text with process.cdist, over token
    lists (``lists``) or over strings of one character per token (rapidfuzz's fastest input)."""
    from rapidfuzz import process
    from rapidfuzz.distance import LCSseq
    t0 = time.process_time()
    vocab: dict[str, str] = {}

    def enc(text):
        toks = tokenize(text)
        return toks if lists else "".join(vocab.setdefault(t, chr(len(vocab) + 1)) for t in toks)

    kept = [enc(s) for s in seeds]
    lens = [len(k) for k in kept]
    keep = []
    for c in cands:
        q = enc(c)
        lcs = process.cdist([q], kept, scorer=LCSseq.similarity, dtype=np.int64, workers=workers)[0]
        ok = not (q and _fmeasure_many(lcs, len(q), np.asarray(lens)).max() > THRESHOLD)
        keep.append(ok)
        if ok:
            kept.append(q)
            lens.append(len(q))
    return keep, time.process_time() - t0


def compare_libs(seeds: list[str], cands: list[str], before: str) -> None:
    from libs import line, load_before, polars_floor
    old = load_before("curate/rouge.py", before)
    floor = polars_floor()
    print(f"\n[issue 17: libraries] first {len(cands):,} candidates, same run")
    print(line("polars floor (sort + group-by 1M rows)", floor, floor))
    keep, t = filter_with(RougeIndex, seeds, cands)
    print(line("pruned index + rapidfuzz LCS (curate now)", t, floor) + f"   kept {sum(keep):,}")
    k_old, t_old = filter_with(old.RougeIndex, seeds, cands)
    print(line(f"pruned index + numpy bit-parallel ({before})", t_old, floor) + f"   same decisions: {k_old == keep}")
    for w, lists in ((1, False), (2, False), (1, True)):
        k_rf, t_rf = rapidfuzz_filter(seeds, cands, w, lists)
        print(line(f"rapidfuzz cdist alone, {'token lists' if lists else 'strings'}, workers={w}", t_rf, floor)
              + f"   same decisions: {k_rf == keep}")
    # the similarity fields of every kept task against the texts kept before it (what generate adds)
    kept = [c for c, k in zip(cands, keep) if k]
    o = old.RougeIndex(seeds)
    t0 = time.process_time()
    ref = []
    for c in kept:
        ref.append(o.scores(c))
        o.add(c)
    t_old = time.process_time() - t0
    rows, t_new = fields_in_rounds(seeds, kept)
    pairs = sum(len(r) for r in ref)
    print(line(f"similarity fields, one by one ({before})", t_old, floor) + f"   {pairs / t_old / 1e6:.1f} M pairs/s")
    print(line("similarity fields, rounds of 1,000 (curate now)", t_new, floor)
          + f"   {pairs / t_new / 1e6:.1f} M pairs/s; identical: {all(np.array_equal(a, b) for a, b in zip(ref, rows))}")


def fields_in_rounds(seeds: list[str], kept: list[str], per_round: int = 1000) -> tuple[list[np.ndarray], float]:
    """Scores of each kept text against the ones before it, as ``curate generate`` computes them:
    the round's kept texts are added, then scored together with ``scores_many``. (rows, CPU s)."""
    idx = RougeIndex(seeds)
    t0 = time.process_time()
    rows: list[np.ndarray] = []
    for a in range(0, len(kept), per_round):
        chunk = kept[a:a + per_round]
        pos = [idx.add(c) for c in chunk]
        rows += idx.scores_many(chunk, upto=pos)
    return rows, time.process_time() - t0


def naive_filter(seeds: list[str], cands: list[str]):
    kept_tok = [tokenize(s) for s in seeds]
    decisions, best = [], []
    for c in cands:
        tc = tokenize(c)
        scores = [fmeasure(lcs_len(tc, t), len(tc), len(t)) for t in kept_tok]
        m = max(scores) if scores else 0.0
        decisions.append(m <= THRESHOLD)
        best.append(m)
        if m <= THRESHOLD:
            kept_tok.append(tc)
    return decisions, best


def verdict(wall: float, cpu: float) -> str:
    """The floor judged on CPU time (the machine is shared: wall time also measures the others' load)."""
    ok = "OK" if cpu < FLOOR_SECONDS else "BELOW FLOOR"
    wall_note = "" if wall < FLOOR_SECONDS else f" (wall {wall:.0f} s: load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    return f"floor: under {FLOOR_SECONDS:.0f} s of CPU -> {ok}{wall_note}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=50_000)
    ap.add_argument("--full-n", type=int, default=10_000)
    ap.add_argument("--naive-n", type=int, default=1_000)
    ap.add_argument("--libs", type=int, default=0, help="compare with the libraries on the first N candidates")
    ap.add_argument("--libs-only", action="store_true", help="only the --libs comparison")
    ap.add_argument("--before", default="35152f7", help="git revision with the hand-written bit-parallel LCS")
    args = ap.parse_args()
    print(f"cpu: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} (shared machine)")
    seeds, corpus = real_instructions()
    cands = markov(corpus, args.n)
    print(f"{len(seeds)} seed instructions, {len(cands):,} generated candidates "
          f"(mean {np.mean([len(tokenize(c)) for c in cands]):.1f} tokens)")

    if args.libs:
        compare_libs(seeds, cands[:args.libs], args.before)
        if args.libs_only:
            return
    # 1. pruned filter (the decision self-instruct makes), all N
    t0, c0 = time.perf_counter(), time.process_time()
    fast_keep, idx = run_filter(RougeIndex, seeds, cands)
    t_fast, c_fast = time.perf_counter() - t0, time.process_time() - c0
    st = idx.stats
    print(f"\n[fast filter] {len(cands):,} candidates in {t_fast:.1f} s wall, {c_fast:.1f} s CPU "
          f"({len(cands) / t_fast:,.0f}/s); kept {sum(fast_keep):,}; {verdict(t_fast, c_fast)}")
    print(f"  pairs {st['pairs']:,}; probed via rare tokens {st['probed']:,}; in length window {st['length_ok']:,}; "
          f"past bag-of-words bound {st['bound_ok']:,}; exact LCS {st['exact']:,} "
          f"({st['exact'] / max(1, st['pairs']):.4%} of pairs)")

    # 2. full score rows (most_similar_instructions + avg_similarity_score) for the first full_n
    m = min(args.full_n, len(cands))
    t0, c0 = time.perf_counter(), time.process_time()
    idx2 = RougeIndex(seeds)
    full_keep, scanned, violations = [], 0, 0
    for a in range(0, m, 1000):
        # what generate does: pruned decision, then (per round) the full scan for kept tasks only
        kept_now, pos = [], []
        for c in cands[a:min(m, a + 1000)]:
            keep = idx2.most_similar_above(c, THRESHOLD)[0] < 0
            full_keep.append(keep)
            if keep:
                kept_now.append(c)
                pos.append(idx2.add(c))
        for s in idx2.scores_many(kept_now, upto=pos):
            scanned += len(s)
            violations += int(len(s) > 0 and s.max() > THRESHOLD)  # the full scan must confirm "keep"
            top = top_k(s, 10)  # noqa: F841 (most_similar_instructions)
            _ = float(s.mean())  # avg_similarity_score
    t_full, c_full = time.perf_counter() - t0, time.process_time() - c0
    agree_full = full_keep == fast_keep[:m]
    floor = f"{verdict(t_full, c_full)}; " if m >= 50_000 else ""
    print(f"\n[filter + similarity fields] {m:,} candidates (what `curate generate` does: pruned decision, then "
          f"exact F of each kept task against all earlier ones for top-10 + mean) in {t_full:.1f} s wall, "
          f"{c_full:.1f} s CPU; {scanned:,} pairs scanned ({scanned / max(c_full, 1e-9) / 1e6:.1f} M pairs per CPU s); "
          f"{floor}full scans contradicting a keep: {violations}; same decisions as the fast filter: {agree_full}")
    if m < len(cands):
        est = t_full * (len(cands) / m) ** 2
        print(f"  extrapolated to {len(cands):,} (quadratic): ~{est:.0f} s")

    # 3. naive reference on the first naive_n
    k = min(args.naive_n, len(cands))
    t0 = time.perf_counter()
    naive_keep, naive_best = naive_filter(seeds, cands[:k])
    t_naive = time.perf_counter() - t0
    idx3 = RougeIndex(seeds)
    max_diff = 0.0
    for c, b in zip(cands[:k], naive_best):
        s = idx3.scores(c)
        max_diff = max(max_diff, abs((s.max() if len(s) else 0.0) - b))
        if not (len(s) and s.max() > THRESHOLD):
            idx3.add(c)
    print(f"\n[naive DP reference] {k:,} candidates in {t_naive:.1f} s; decisions agree: "
          f"{naive_keep == fast_keep[:k]}; max |F difference| {max_diff:g}; "
          f"extrapolated to {len(cands):,}: ~{t_naive * (len(cands) / k) ** 2 / 60:.0f} min "
          f"(speed-up of fast filter ~{t_naive * (len(cands) / k) ** 2 / t_fast:,.0f}x)")
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        print("[rouge_score] not installed (pip install rouge-score): skipped")
        return
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    kk = min(k, 300)
    kept = list(seeds)
    t0 = time.perf_counter()
    rs_keep, mismatches, checked = [], 0, 0
    idx4 = RougeIndex(seeds)
    for c in cands[:kk]:
        ref = [scorer.score(c, t)["rougeL"].fmeasure for t in kept]  # target = new, as self-instruct
        ours = idx4.scores(c)
        if c.isascii():
            asc = [i for i, t in enumerate(kept) if t.isascii()]
            checked += len(asc)
            mismatches += sum(1 for i in asc if ref[i] != ours[i])
        keep = max(ref) <= THRESHOLD
        rs_keep.append(keep)
        if keep:
            kept.append(c)
            idx4.add(c)
    t_rs = time.perf_counter() - t0
    print(f"[rouge_score] {kk:,} candidates in {t_rs:.1f} s; decisions agree: {rs_keep == fast_keep[:kk]}; "
          f"ASCII pairs compared {checked:,}, exact-float mismatches {mismatches}; extrapolated to "
          f"{len(cands):,}: ~{t_rs * (len(cands) / kk) ** 2 / 3600:.1f} h single process")


if __name__ == "__main__":
    main()
