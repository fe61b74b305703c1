"""Exact and near-duplicate detection (curate.dedupe) on real fixture rows."""

from __future__ import annotations

import random

import numpy as np
import polars as pl
import pytest

from curate import dedupe
from curate.ingest import ingest

TEXT = pl.concat_str([pl.col("instruction"), pl.col("input"), pl.col("output")], separator="\n",
                     ignore_nulls=True)


@pytest.fixture(scope="module")
def sft(fixtures) -> pl.DataFrame:
    files = ["malay_alpaca.json", "alpacacleaned_gsm8k.json", "chatdoctor.json", "malay_chatdoctor.jsonl",
             "malay_gpt4all.jsonl", "malay_kochatgpt_sft.jsonl"]
    return ingest([fixtures / f for f in files], detect_lang=False).frames["sft"]


def by_source(sft: pl.DataFrame, name: str) -> pl.DataFrame:
    return sft.filter(pl.col("source").str.ends_with(name))


# Independent reference: the Jaccard of the 5-byte shingle sets, in plain Python.
def norm(texts: list[str | None]) -> list[str]:
    return pl.DataFrame({"t": texts}, schema={"t": pl.String}).select(dedupe.normalize("t")).to_series().to_list()


def shingles(t: str) -> set[bytes]:
    b = t.ljust(dedupe.SHINGLE).encode()
    return {b[i:i + dedupe.SHINGLE] for i in range(len(b) - dedupe.SHINGLE + 1)}


def jaccard(x: str, y: str) -> float:
    a, b = (shingles(t) for t in norm([x, y]))
    return len(a & b) / len(a | b)


def texts_of(df: pl.DataFrame) -> list[str]:
    return df.select(TEXT.alias("t"))["t"].to_list()


def mutate(text: str, rng: random.Random, edits: int) -> str:
    words = text.split(" ")
    for _ in range(edits):
        i = rng.randrange(1, len(words) - 1)
        op = rng.randrange(3)
        if op == 0:
            del words[i]
        elif op == 1:
            words[i], words[i + 1] = words[i + 1], words[i]
        else:
            words.insert(i, words[i - 1])
    return " ".join(words)


def check_contract(res: pl.DataFrame, n: int, threshold: float = 0.8) -> None:
    assert res.columns == ["row", "cluster", "keep", "similarity", "dup_kind"]
    assert res.height == n
    assert res["row"].to_list() == list(range(n))
    assert res.schema["cluster"] == pl.Int64 and res.schema["keep"] == pl.Boolean
    assert res.schema["similarity"] == pl.Float64 and res.schema["dup_kind"] == pl.String
    clustered = res.filter(pl.col("cluster").is_not_null())
    per = clustered.group_by("cluster").agg(pl.col("keep").sum().alias("kept"), pl.len().alias("size"),
                                             pl.col("row").min().alias("first"))
    assert (per["kept"] == 1).all() and (per["size"] >= 2).all()
    assert (per["cluster"] == per["first"].cast(pl.Int64)).all()  # the first row in input order is kept
    unique = res.filter(pl.col("cluster").is_null())
    assert unique["keep"].all() and unique["similarity"].is_null().all() and unique["dup_kind"].is_null().all()
    kept = clustered.filter(pl.col("keep"))
    assert (kept["similarity"] == 1.0).all() and kept["dup_kind"].is_null().all()
    dropped = clustered.filter(~pl.col("keep"))
    assert set(dropped["dup_kind"].to_list()) <= {"exact", "near"}
    assert (dropped.filter(pl.col("dup_kind") == "exact")["similarity"] == 1.0).all()
    assert (dropped.filter(pl.col("dup_kind") == "near")["similarity"] >= threshold).all()  # no chaining


def test_exact_duplicates_with_case_space_punctuation_differences(sft):
    rows = by_source(sft, "malay_alpaca.json").head(30)
    base = texts_of(rows)
    variants = [
        base[3].upper(),
        "  " + base[3].replace(" ", "   ") + " ",
        base[3].replace(",", " ,").replace(".", "!!") + "?",
        base[7].lower().replace(" ", "\t"),
    ]
    texts = base + variants
    res = dedupe.find_duplicates(pl.DataFrame({"t": texts}), "t")
    check_contract(res, len(texts))
    n = len(base)
    assert res["cluster"][3] == 3 and res["keep"][3]
    for i in (n, n + 1, n + 2):
        assert res.row(i, named=True) == {"row": i, "cluster": 3, "keep": False, "similarity": 1.0, "dup_kind": "exact"}
    assert res.row(n + 3, named=True)["cluster"] == 7
    assert res.row(n + 3, named=True)["dup_kind"] == "exact"


def test_injected_near_duplicates_are_found_with_their_true_similarity(sft):
    rng = random.Random(7)
    src = by_source(sft, "malay_chatdoctor.jsonl").head(40)
    base = texts_of(src)
    dups = [mutate(t, rng, edits=2) for t in base[:20]]
    texts = base + dups
    res = dedupe.find_duplicates(pl.DataFrame({"t": texts}), "t", threshold=0.8)
    check_contract(res, len(texts))
    for i, dup in enumerate(dups):
        truth = jaccard(base[i], dup)
        row = res.row(len(base) + i, named=True)
        if truth >= 0.8:
            assert row["cluster"] is not None, f"missed near duplicate {i} (true Jaccard {truth:.3f})"
            assert row["dup_kind"] == "near" and not row["keep"]
            assert row["similarity"] == pytest.approx(truth)
    found = sum(1 for i in range(20) if res["cluster"][len(base) + i] is not None)
    assert found >= 18  # two edits in a ~100-word text stay well above 0.8


def test_every_reported_pair_really_is_similar(sft):
    """Precision: over all fixture rows, each near duplicate's reported similarity to its kept row is
    its exact shingle Jaccard, and rows directly linked to the kept row are >= threshold."""
    res = dedupe.find_duplicates(sft, TEXT, threshold=0.8)
    check_contract(res, sft.height)
    texts = texts_of(sft)
    near = res.filter(pl.col("dup_kind") == "near")
    for r in near.iter_rows(named=True):
        assert r["similarity"] == pytest.approx(jaccard(texts[r["row"]], texts[r["cluster"]]))


def test_distinct_gsm8k_rows_are_not_clustered(sft):
    gsm = by_source(sft, "alpacacleaned_gsm8k.json")
    res = dedupe.find_duplicates(gsm, TEXT, threshold=0.8)
    check_contract(res, gsm.height)
    assert res["cluster"].null_count() == gsm.height
    # and at a lower threshold a pair is only clustered if it really is that similar
    res = dedupe.find_duplicates(gsm, TEXT, threshold=0.5)
    check_contract(res, gsm.height, 0.5)
    texts = texts_of(gsm)
    for r in res.filter(~pl.col("keep")).iter_rows(named=True):
        assert jaccard(texts[r["row"]], texts[r["cluster"]]) == pytest.approx(r["similarity"])


def test_threshold_is_configurable(sft):
    rng = random.Random(3)
    a = texts_of(by_source(sft, "malay_alpaca.json").filter(pl.col("output").str.len_chars() > 400).head(1))[0]
    b = a
    while jaccard(a, b) > 0.9:
        b = mutate(b, rng, edits=1)
    j = jaccard(a, b)
    assert 0.6 < j <= 0.9
    df = pl.DataFrame({"t": [a, b]})
    low = dedupe.find_duplicates(df, "t", threshold=j - 0.05)
    high = dedupe.find_duplicates(df, "t", threshold=min(1.0, j + 0.05))
    assert low["cluster"].to_list() == [0, 0] and low["similarity"][1] == pytest.approx(j)
    assert high["cluster"].null_count() == 2


def test_no_chaining_every_near_duplicate_is_similar_to_its_kept_row(sft):
    rng = random.Random(11)
    a = texts_of(by_source(sft, "chatdoctor.json").filter(pl.col("output").str.len_chars() > 500).head(1))[0]
    chain = [a]
    while jaccard(a, chain[-1]) >= 0.8 or len(chain) < 3:
        nxt = mutate(chain[-1], rng, edits=3)
        if jaccard(chain[-1], nxt) >= 0.85:
            chain.append(nxt)
    # each link is >= 0.85 to its predecessor, the last one < 0.8 to the first row: connected
    # components would drop it as a duplicate of the first; star clusters must not
    res = dedupe.find_duplicates(pl.DataFrame({"t": chain}), "t", threshold=0.8)
    check_contract(res, len(chain))
    assert res["cluster"][0] == 0 and res["keep"][0]
    for r in res.filter(~pl.col("keep")).iter_rows(named=True):
        truth = jaccard(chain[r["row"]], chain[r["cluster"]])
        assert truth >= 0.8 and r["similarity"] == pytest.approx(truth)
    assert res["cluster"][len(chain) - 1] != 0


def test_big_template_cluster_is_verified_against_its_center(sft):
    """300 fills of one template (one big LSH bucket): one center, every fill >= threshold to it,
    found in a few rounds with about one check per row (not all 45,000 pairs)."""
    rng = random.Random(12)
    base = texts_of(by_source(sft, "malay_alpaca.json").filter(pl.col("output").str.len_chars() > 600).head(1))[0]
    words = base.split(" ")
    fills = []
    for i in range(300):
        w = list(words)
        w[rng.randrange(len(w))] = f"nama{i}"
        fills.append(" ".join(w))
    other = texts_of(by_source(sft, "malay_gpt4all.jsonl").head(30))
    texts = other[:15] + fills + other[15:]
    stats: dict = {}
    res = dedupe.find_duplicates(pl.DataFrame({"t": texts}), "t", stats=stats)
    check_contract(res, len(texts))
    members = res.slice(15, 300)
    assert members["cluster"].to_list() == [15] * 300
    for r in members.filter(~pl.col("keep")).head(20).iter_rows(named=True):
        assert r["similarity"] == pytest.approx(jaccard(texts[r["row"]], texts[15])) and r["similarity"] >= 0.8
    assert stats["checked_pairs"] < 2 * len(texts) and stats["rounds"] <= 5


def test_word_ngram_measure(sft):
    rng = random.Random(13)
    base = texts_of(by_source(sft, "malay_chatdoctor.jsonl").slice(60, 20))
    dup = mutate(base[0], rng, edits=1)
    texts = base + [dup]
    a, b = (t.split(" ") for t in norm([base[0], dup]))
    grams = [{tuple(w[i:i + 3]) for i in range(len(w) - 2)} for w in (a, b)]
    truth = len(grams[0] & grams[1]) / len(grams[0] | grams[1])
    res = dedupe.find_duplicates(pl.DataFrame({"t": texts}), "t", threshold=0.7, measure="word3")
    check_contract(res, len(texts))
    row = res.row(len(base), named=True)
    assert truth >= 0.7 and row["cluster"] == 0 and row["similarity"] == pytest.approx(truth)
    # short texts: fewer words than n is one shingle; different short texts are not clustered
    short = dedupe.find_duplicates(pl.DataFrame({"t": ["satu dua", "satu dua!", "dua satu", "tiga"]}), "t",
                                   measure="word3")
    assert short["cluster"].to_list() == [0, 0, None, None]
    with pytest.raises(ValueError, match="measure"):
        dedupe.find_duplicates(pl.DataFrame({"t": ["a"]}), "t", measure="bytes5")


def test_keep_is_deterministic_and_follows_input_order(sft):
    rng = random.Random(5)
    src = by_source(sft, "malay_gpt4all.jsonl").head(60)
    texts = texts_of(src)
    texts = texts + [mutate(t, rng, 1) for t in texts[:15]] + [t.upper() for t in texts[10:20]]
    df = pl.DataFrame({"t": texts})
    first = dedupe.find_duplicates(df, "t")
    assert first.equals(dedupe.find_duplicates(df, "t"))
    check_contract(first, len(texts))
    assert first["cluster"].null_count() < len(texts)
    # reversed input: the kept row is again the first (in the new order) of each cluster
    rev = dedupe.find_duplicates(df.reverse(), "t")
    check_contract(rev, len(texts))
    n = len(texts)
    groups_fwd = {frozenset(g) for g in first.filter(pl.col("cluster").is_not_null())
                  .group_by("cluster").agg("row")["row"].to_list()}
    groups_rev = {frozenset(n - 1 - r for r in g) for g in rev.filter(pl.col("cluster").is_not_null())
                  .group_by("cluster").agg("row")["row"].to_list()}
    assert groups_fwd == groups_rev


def test_empty_and_very_short_texts(sft):
    real = texts_of(by_source(sft, "malay_kochatgpt_sft.jsonl").head(5))
    texts = ["", None, "a", "ab", "!!!", "ok", "OK!", "  ", "ya", "Ya.", "x y", "한국", "한국!"] + real
    res = dedupe.find_duplicates(pl.DataFrame({"t": texts}, schema={"t": pl.String}), "t")
    check_contract(res, len(texts))
    got = dict(zip(range(len(texts)), res["cluster"].to_list()))
    for i in (0, 1, 4, 7):  # nothing left after normalization: never clustered
        assert got[i] is None
    assert got[5] == got[6] == 5 and got[8] == got[9] == 8 and got[11] == got[12] == 11
    assert got[2] is None and got[3] is None
    for size in (0, 1):
        out = dedupe.find_duplicates(pl.DataFrame({"t": texts[:size]}, schema={"t": pl.String}), "t")
        check_contract(out, size)


def test_exact_only_mode(sft):
    rng = random.Random(2)
    base = texts_of(by_source(sft, "malay_alpaca.json").head(20))
    texts = base + [mutate(base[0], rng, 1), base[1].upper()]
    res = dedupe.find_duplicates(pl.DataFrame({"t": texts}), "t", near=False)
    check_contract(res, len(texts))
    assert res["dup_kind"].drop_nulls().to_list() == ["exact"]
    assert res["cluster"][21] == 1 and res["cluster"][20] is None


def test_clusters_report_lists_biggest_clusters_first(sft):
    rng = random.Random(9)
    rows = by_source(sft, "malay_alpaca.json").head(30)
    extra = pl.concat([rows.slice(2, 1)] * 3 + [rows.slice(5, 1)]).with_columns(
        pl.col("output").map_elements(lambda t: mutate(t, rng, 1) if len(t.split()) > 30 else t.upper(),
                                      return_dtype=pl.String),
        (pl.col("id") + pl.format("-dup{}", pl.int_range(pl.len()))).alias("id"),
    )
    df = pl.concat([rows, extra])
    res = dedupe.find_duplicates(df, TEXT)
    report = dedupe.clusters_report(res, df, TEXT, limit=5)
    sizes = [c["size"] for c in report]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] >= 3
    ids = df["id"].to_list()
    for c in report:
        assert c["kept"]["row"] == c["cluster"] and c["kept"]["id"] == ids[c["cluster"]]
        assert c["exact"] + c["near"] == c["size"] - 1
        assert {m["id"] for m in c["members"]} <= set(ids)
        assert all(len(m["text"]) <= 120 for m in c["members"])
    assert dedupe.clusters_report(dedupe.find_duplicates(df.head(3), TEXT), df.head(3), TEXT) == []


def test_lsh_parameters_keep_recall_at_the_threshold():
    for t in (0.5, 0.7, 0.8, 0.9, 0.95):
        bands, r = dedupe.lsh_params(t, dedupe.DEFAULT_PERM)
        assert bands * r <= dedupe.DEFAULT_PERM
        assert 1 - (1 - t ** r) ** bands >= 0.995


def test_exact_copies_of_a_near_duplicate_join_its_cluster(sft):
    rng = random.Random(4)
    src = texts_of(by_source(sft, "malay_chatdoctor.jsonl").slice(50, 10))
    a = src[0]
    near = mutate(a, rng, edits=2)
    texts = [near.upper()] + src + [a.lower(), near]  # the near copy comes first in input order
    res = dedupe.find_duplicates(pl.DataFrame({"t": texts}), "t")
    check_contract(res, len(texts))
    rows = res.rows(named=True)
    j = jaccard(a, near)
    assert j >= 0.8
    assert rows[0]["keep"] and rows[0]["cluster"] == 0            # first row of the cluster
    assert rows[1]["dup_kind"] == "near" and rows[1]["similarity"] == pytest.approx(j)
    assert rows[len(src) + 1]["dup_kind"] == "near"                  # exact copy of the original
    assert rows[len(src) + 2]["dup_kind"] == "exact" and rows[len(src) + 2]["similarity"] == 1.0
    assert {r["cluster"] for r in rows[2:len(src) + 1]} == {None}


def _reference_normalize(t: str | None) -> str:
    import unicodedata

    out, gap = [], False
    for c in (t or "").casefold():
        if unicodedata.category(c)[0] in "LNM":
            if gap and out:
                out.append(" ")
            out.append(c)
            gap = False
        else:
            gap = True
    return "".join(out)


def test_normalization_matches_casefold_and_punctuation_stripping(sft):
    texts = texts_of(sft) + ["Straße STRASSE", "ΣΟΦΟΣ σοφος", "ﬁne", "a\t\t_b", " -- ", None, "한국어, 테스트!"]
    assert norm(texts) == [_reference_normalize(t) for t in texts]


def test_signature_agreement_estimates_the_jaccard(sft):
    """One-permutation MinHash with densification: the share of equal bins tracks the true
    Jaccard, for long and for short texts."""
    rng = random.Random(8)
    base = texts_of(by_source(sft, "malay_alpaca.json").head(40)) + texts_of(by_source(sft, "malay_kochatgpt_sft.jsonl").head(20))
    pairs = []
    for t in base:
        u = t
        for _ in range(rng.randrange(1, 12)):
            u = mutate(u, rng, 1) if len(u.split(" ")) > 3 else u + " x"
        pairs.append((t, u))
    short = [(t.split(".")[0][:40], t.split(".")[0][:40] + " lagi") for t in base[:20]]
    pairs += short
    pairs += [(base[i], base[i + 25]) for i in range(15)]  # unrelated rows: low Jaccard
    texts = pl.Series(norm([x for p in pairs for x in p]))
    sig = dedupe.signatures(texts)
    errors = []
    for i, (a, b) in enumerate(pairs):
        est = float((sig[2 * i] == sig[2 * i + 1]).mean())
        errors.append(abs(est - jaccard(a, b)))
    assert max(errors) < 0.15
    assert sum(errors) / len(errors) < 0.05


@pytest.mark.parametrize("measure", ["char5", "char1", "char8", "word3"])
def test_compiled_sketch_equals_the_numpy_sketch(sft, monkeypatch, measure):
    """The numba kernels (curate/minhash_jit.py, used from 20k rows on) give the numpy path's band
    keys, estimator bytes and shingle counts bit for bit, empty and one-character texts included."""
    from curate import minhash_jit

    assert minhash_jit.AVAILABLE
    texts = pl.Series(norm(texts_of(sft) + ["", "a", "ab", "héllo wörld", "x y", "한국어 테스트"]))
    for num_perm, threshold in ((256, 0.8), (64, 0.5)):
        monkeypatch.setenv("CURATE_NO_JIT", "1")
        ref = dedupe.sketch(texts, measure=measure, num_perm=num_perm, threshold=threshold)
        monkeypatch.delenv("CURATE_NO_JIT")
        monkeypatch.setattr(dedupe, "_JIT_MIN_ROWS", 0)
        got = dedupe.sketch(texts, measure=measure, num_perm=num_perm, threshold=threshold)
        assert ref.keys.shape == got.keys.shape and ref.keys.shape[0] == len(texts)
        assert np.array_equal(ref.keys, got.keys)
        assert np.array_equal(ref.est, got.est)
        assert np.array_equal(ref.lengths, got.lengths)


def _numpy_and_compiled_verification(monkeypatch, pairs, texts):
    """(numpy similarities, compiled similarities) of the pairs, for each character measure."""
    for measure in ("char5", "char2", "char7"):
        monkeypatch.setenv("CURATE_NO_JIT", "1")
        ref = dedupe.verify(pairs, texts, measure)
        monkeypatch.delenv("CURATE_NO_JIT")
        monkeypatch.setattr(dedupe, "_JIT_MIN_ROWS", 0)
        yield ref, dedupe.verify(pairs, texts, measure)


def test_compiled_verification_equals_the_numpy_verification(sft, monkeypatch):
    """The compiled exact Jaccard (char measures, from 20k rows on) equals the numpy one on real
    rows: near copies, unrelated rows, texts shorter than a shingle and multi-byte characters."""
    rng = random.Random(3)
    base = texts_of(sft)
    texts = pl.Series(norm(base + [mutate(t, rng, 3) for t in base if len(t.split(" ")) > 5]
                           + ["", "a", "é", "héllo", "x y"]))
    n = len(texts)
    a = sorted(rng.randrange(n) for _ in range(3000)) + [n - 1, n - 2, n - 3, n - 4]
    b = [rng.randrange(n) for _ in range(3000)] + [n - 2, n - 3, n - 4, n - 5]
    b[:len(base)] = [i + len(base) if i + len(base) < n else i for i in a[:len(base)]]
    pairs = pl.DataFrame({"a": a, "b": b}, schema={"a": pl.UInt32, "b": pl.UInt32})
    for ref, got in _numpy_and_compiled_verification(monkeypatch, pairs, texts):
        assert (ref > 0.5).sum() > 100 and (ref < 0.3).sum() > 100  # both kinds of pair are there
        assert np.array_equal(ref, got)


@pytest.mark.parametrize("measure", ["char5", "char7"])
def test_compiled_pass_gives_the_same_clusters(sft, monkeypatch, measure):
    """From 20k rows on, find_duplicates normalizes, hashes and sketches each row in one compiled
    pass (non-ASCII rows normalized by polars first) and never keeps the normalized text: the
    clusters, similarities and kinds are those of the polars + numpy path, on real rows with near
    copies, case/punctuation copies and texts whose normalization folds Unicode."""
    rng = random.Random(5)
    rows = texts_of(sft)
    extra = ["Straße!!", "STRASSE", "ΣΟΦΟΣ", "σοφος", "ﬁne", "fine", "é", "a", "", None, "Héllo  Wörld",
             "héllo wörld", "한국어, 테스트!", "한국어 테스트", "A\x00B", "a b", "  --  "]
    texts = rows + [mutate(t, rng, 2) for t in rows[::3] if len(t.split(" ")) > 5] \
        + [t.upper().replace(" ", "  ") for t in rows[::7]] + extra
    df = pl.DataFrame({"t": texts}, schema={"t": pl.String})
    seen: list[int] = []
    monkeypatch.setenv("CURATE_NO_JIT", "1")
    ref = dedupe.find_duplicates(df, "t", measure=measure)
    monkeypatch.delenv("CURATE_NO_JIT")
    monkeypatch.setattr(dedupe, "_JIT_MIN_ROWS", 0)
    got = dedupe.find_duplicates(df, "t", measure=measure, on_rows=seen.append)
    check_contract(got, df.height)
    assert got.equals(ref)
    assert (ref["dup_kind"] == "near").sum() > 100 and (ref["dup_kind"] == "exact").sum() > 100
    # big inputs keep the estimator bytes of the candidates only (a second pass over them): same clusters
    est_memory = dedupe._EST_MEMORY
    monkeypatch.setattr(dedupe, "_EST_MEMORY", 0)
    stats: dict = {}
    assert dedupe.find_duplicates(df, "t", measure=measure, stats=stats).equals(ref)
    assert 0 < stats["candidates"] < df.height and stats["rounds"] > 1
    monkeypatch.setattr(dedupe, "_EST_MEMORY", est_memory)
    assert sum(seen) == 2 * df.height  # the progress counts every row twice, as the other path
    exact = dedupe.find_duplicates(df, "t", measure=measure, near=False)  # exact groups only: no sketches
    monkeypatch.setenv("CURATE_NO_JIT", "1")
    assert exact.equals(dedupe.find_duplicates(df, "t", measure=measure, near=False))
    assert (exact["dup_kind"] == "exact").sum() > 100 and exact["dup_kind"].is_in(["near"]).sum() == 0


def test_compiled_rounds_equal_the_polars_rounds(monkeypatch):
    """The compiled star-clustering rounds (from 20k rows on) give the same clusters, similarities,
    rounds, checks and retired rows as the polars rounds, on a bucket table with big buckets, rows in
    many buckets, ties and rows that fail _MAX_CHECKS checks (similarities drawn per pair)."""
    rng = np.random.default_rng(7)
    n = 3000
    g = np.concatenate([rng.integers(0, 400, 9000), rng.integers(400, 402, 1500)]).astype(np.uint64)
    r = rng.integers(0, n, len(g)).astype(np.uint32)
    bk = pl.DataFrame({"g": g, "r": r}).unique().filter(pl.len().over("g") > 1)

    def verify_fn(pairs: pl.DataFrame) -> np.ndarray:
        a, b = pairs["a"].to_numpy().astype(np.int64), pairs["b"].to_numpy().astype(np.int64)
        h = (a * 7919 + b * 104729) % 1000
        return np.where(h < 50, -1.0, np.round(h / 1000, 1))  # rounded: many ties

    results = []
    for jit_rows in (10**9, 0):
        monkeypatch.setattr(dedupe, "_JIT_MIN_ROWS", jit_rows)
        stats: dict = {}
        kept, sim = dedupe.star_clusters(n, bk, verify_fn, 0.8, stats)
        results.append((kept, sim, stats))
    (k1, s1, st1), (k2, s2, st2) = results
    assert np.array_equal(k1, k2) and np.array_equal(s1, s2, equal_nan=True) and st1 == st2
    assert (k1 >= 0).sum() > 100 and st1["retired"] > 0 and st1["rounds"] > 2


def test_compiled_buckets_equal_the_polars_buckets():
    """minhash_jit.band_buckets (the compiled path's buckets, straight to CSR form) finds the same
    buckets as dedupe.buckets: every (band, key) shared by >= 2 rows, each with the same rows
    (ascending), keys equal by chance across bands kept apart."""
    from curate import minhash_jit

    rng = np.random.default_rng(11)
    n, bands = 5000, 6
    keys = rng.integers(0, 2**32, (n, bands), dtype=np.uint64).astype(np.uint32)
    keys[rng.integers(0, n, 3000), rng.integers(0, bands, 3000)] = 7  # one key in every band
    for j in range(bands):  # small groups of equal keys, and a big one
        keys[rng.integers(0, n, 400), j] = rng.integers(0, 150, 400).astype(np.uint32) + j
        keys[rng.integers(0, n, 300), j] = 12345
    bk = dedupe.buckets(keys)
    want = sorted(sorted(g) for g in bk.group_by("g").agg("r")["r"].to_list())
    bstart, mem = minhash_jit.band_buckets(keys)
    got = [mem[bstart[g]:bstart[g + 1]].tolist() for g in range(len(bstart) - 1)]
    assert all(g == sorted(g) for g in got)
    assert sorted(got) == want and len(want) > 6 * 50


@pytest.mark.parametrize("measure", ["char5", "word3"])
def test_row_keys_of_slices_give_the_exact_groups_and_band_keys_of_the_whole(sft, monkeypatch, measure):
    """row_keys (what a Ray block computes for its rows): keyed in slices, the rows with equal keys
    are exactly find_duplicates' exact groups of the whole column, empty texts have no key, and the
    band keys are sketch()'s of the normalized texts."""
    rows = texts_of(sft)
    texts = pl.Series(rows + [t.upper().replace(" ", "  ") + "!" for t in rows[::5]]
                      + ["", None, "  --  ", "Straße", "STRASSE", "héllo wörld", "Héllo  Wörld"], dtype=pl.String)
    ks = [dedupe.row_keys(texts.slice(s, 97), measure=measure) for s in range(0, len(texts), 97)]
    hashes = np.concatenate([k.hashes for k in ks])
    n = np.concatenate([k.norm_len for k in ks])
    keyed = pl.DataFrame({"h1": hashes[:, 0], "h2": hashes[:, 1], "n": n}).with_row_index("row").with_columns(
        pl.when(pl.col("n") > 0).then(pl.col("row").min().over("h1", "h2", "n")).alias("rep"))
    ref = dedupe.find_duplicates(pl.DataFrame({"t": texts}), "t", near=False, measure=measure)
    rep = ref.select(pl.when(pl.col("cluster").is_null() & (pl.col("keep"))).then(pl.col("row").cast(pl.Int64))
                     .otherwise(pl.col("cluster")).alias("rep"))["rep"]
    has_text = pl.Series(n > 0)
    assert (keyed["rep"].is_null() == ~has_text).all()
    assert keyed["rep"].filter(has_text).cast(pl.Int64).equals(rep.filter(has_text))
    assert (ref["dup_kind"] == "exact").sum() > 50
    normalized = pl.Series(norm(texts.to_list()))
    assert np.array_equal(np.concatenate([k.keys for k in ks])[n > 0],
                          dedupe.sketch(normalized, measure=measure).keys[n > 0])



@pytest.mark.parametrize("measure", ["char5", "word3"])
@pytest.mark.parametrize("jit_rows", [10**9, 0])
def test_near_duplicates_of_sketches_keyed_in_slices_equal_find_duplicates(sft, monkeypatch, measure, jit_rows):
    """near_duplicates_of (what the Ray driver runs over the near-duplicate candidates, whose sketches
    the blocks computed with row_keys(est=True)): keyed in slices, the same clusters, similarities
    and kinds as find_duplicates over the same rows, on distinct real rows with near copies."""
    monkeypatch.setattr(dedupe, "_JIT_MIN_ROWS", jit_rows)
    rng = random.Random(3)
    rows = texts_of(sft)
    texts = pl.Series(rows + [mutate(t, rng, 2) for t in rows[::3] if len(t.split(" ")) > 5] + ["Straße b", "héllo wörld"],
                      dtype=pl.String)
    normalized = pl.Series(norm(texts.to_list()))
    texts = texts.filter(normalized.is_first_distinct() & (normalized != ""))  # no exact copies, every row a text
    ks = [dedupe.row_keys(texts.slice(s, 97), measure=measure, est=True) for s in range(0, len(texts), 97)]
    def sketches():  # near_duplicates_of uses up its sketch's band keys
        return dedupe.Sketch(*(np.concatenate([getattr(k, f) for k in ks]) for f in ("keys", "est", "lengths")))

    got = dedupe.near_duplicates_of(texts, sketches(), measure=measure)
    ref = dedupe.find_duplicates(pl.DataFrame({"t": texts}), "t", measure=measure)
    check_contract(got, len(texts))
    assert got.equals(ref)
    # the texts given late (the Ray driver reads them back while the buckets are built): asked for once
    asked = []
    late = dedupe.near_duplicates_of(lambda: asked.append(1) or texts, sketches(), measure=measure)
    assert late.equals(ref) and asked == [1]
    assert (ref["dup_kind"] == "near").sum() > 20 and (ref["dup_kind"] == "exact").sum() == 0

@pytest.mark.parametrize("measure", ["char5", "word3"])
@pytest.mark.parametrize("jit_rows", [10**9, 0])
def test_near_duplicates_of_the_shared_rows_with_their_buckets(sft, monkeypatch, measure, jit_rows):
    """The Ray driver's near-duplicate pass: the rows sharing a band key (shared_buckets over every
    row's keys) given with the buckets shared_buckets found (csr, no band keys in the sketch) give
    the same clusters and similarities as find_duplicates over those rows."""
    monkeypatch.setattr(dedupe, "_JIT_MIN_ROWS", jit_rows)
    rng = random.Random(5)
    rows = texts_of(sft)
    texts = pl.Series(rows + [mutate(t, rng, 2) for t in rows[::3] if len(t.split(" ")) > 5], dtype=pl.String)
    normalized = pl.Series(norm(texts.to_list()))
    texts = texts.filter(normalized.is_first_distinct() & (normalized != ""))
    k = dedupe.row_keys(texts, measure=measure, est=True)
    shared, csr = dedupe.shared_buckets(k.keys)
    assert np.array_equal(shared, dedupe.shared_rows(k.keys)) and 0 < len(shared) < len(texts)
    cand = texts.gather(shared)
    got = dedupe.near_duplicates_of(cand, dedupe.Sketch(None, k.est[shared], k.lengths[shared]), measure=measure,
                                    csr=csr)
    ref = dedupe.find_duplicates(pl.DataFrame({"t": cand}), "t", measure=measure)
    check_contract(got, len(cand))
    assert got.equals(ref) and (ref["dup_kind"] == "near").sum() > 20


def test_compiled_prefilter_passes_the_same_pairs(monkeypatch):
    """minhash_jit.prefilter (from 20k rows on; in halves on both threads) keeps exactly the pairs the numpy prefilter keeps,
    near the margin too (estimator bytes that agree on a share close to the threshold)."""
    rng = np.random.default_rng(5)
    n, bins = 400, 256
    est = rng.integers(0, 256, (n, bins), dtype=np.uint8)
    for i in range(1, n, 2):  # row i agrees with row i - 1 on a share of 0.55 .. 1.0 of its bins
        same = rng.random(bins) < rng.uniform(0.55, 1.0)
        est[i, same] = est[i - 1, same]
    lengths = rng.integers(1, 600, n)
    a = rng.integers(0, n, 5000)
    b = rng.integers(0, n, 5000)
    a[:200], b[:200] = np.arange(0, 400, 2), np.arange(1, 400, 2)
    pairs = pl.DataFrame({"a": a, "b": b}, schema={"a": pl.UInt32, "b": pl.UInt32})
    sk = dedupe.Sketch(None, est, lengths)
    passed = []
    for threshold in (0.5, 0.8, 0.9):
        monkeypatch.setattr(dedupe, "_JIT_MIN_ROWS", 10**9)
        ref = dedupe.prefilter(pairs, sk, threshold)
        monkeypatch.setattr(dedupe, "_JIT_MIN_ROWS", 0)
        got = dedupe.prefilter(pairs, sk, threshold)
        assert np.array_equal(ref, got)
        passed.append(int(ref[:200].sum()))
    assert passed[0] > passed[2] > 20  # pairs on both sides of the margin


def test_compiled_verification_of_near_copies_with_repeated_shingles(monkeypatch):
    """The compiled exact check reads a near copy's common prefix and suffix with its kept row
    without hashing them: on texts of a 3-letter alphabet (every shingle repeated, prefixes and
    suffixes that overlap, copies that are a prefix of their row, equal rows, empty rows) it still
    equals the numpy Jaccard, and with a threshold it is exact at or above it and below it else."""
    rng = random.Random(9)

    def edit(t: str) -> str:
        i = rng.randrange(len(t) + 1)
        return rng.choice([t[:i] + rng.choice("ab ") + t[i:], t[:i] + t[i + 1:], t[:i], t[i:], t, t + t[:i]])

    rows = ["".join(rng.choice("ab ") for _ in range(rng.randrange(0, 60))) for _ in range(150)]
    texts = rows + [edit(edit(t)) for t in rows]
    texts = pl.Series(norm(texts))
    n = len(rows)
    a = sorted(rng.randrange(n) for _ in range(1500))
    b = [x + n if rng.random() < 0.7 else rng.randrange(2 * n) for x in a]
    pairs = pl.DataFrame({"a": a, "b": b}, schema={"a": pl.UInt32, "b": pl.UInt32})
    for ref, got in _numpy_and_compiled_verification(monkeypatch, pairs, texts):
        assert np.array_equal(ref, got)
        assert (ref == 1.0).sum() > 50 and ((ref > 0.3) & (ref < 1.0)).sum() > 200
    from curate import minhash_jit
    from curate.arrow_text import utf8_buffers

    data, offsets = utf8_buffers(texts)
    for threshold in (0.5, 0.8):
        out = np.empty(len(a))
        minhash_jit.jaccard_rows(data, offsets, dedupe._WORD_BYTES, *dedupe._NO_TABLE, dedupe._NO_ROWS, 5, False,
                                 np.uint64(dedupe._salt(77)),
                                 np.array(a, dtype=np.int64), np.array(b, dtype=np.int64), threshold, out)
        ref = dedupe.verify(pairs, texts, "char5")
        high = ref >= threshold
        assert np.array_equal(out[high], ref[high]) and (out[~high] < threshold).all() and (out == -1).any()


def test_shared_rows_are_the_rows_in_a_bucket(monkeypatch):
    """shared_rows (the Ray executor's near-duplicate candidates): compiled or not, exactly the rows
    of buckets()."""
    rng = np.random.default_rng(4)
    keys = rng.integers(0, 1 << 18, size=(30_000, 8), dtype=np.uint32)  # small key range: many shared keys
    ref = np.unique(dedupe.buckets(keys)["r"].to_numpy())
    assert 0 < len(ref) < len(keys)
    assert np.array_equal(dedupe.shared_rows(keys), ref)
    monkeypatch.setenv("CURATE_NO_JIT", "1")
    assert np.array_equal(dedupe.shared_rows(keys), ref)


def test_warm_duplicate_groups_loads_the_ray_drivers_kernels_but_not_the_sketch():
    """warmup.warm_duplicate_groups (what a wet Ray clean's driver loads while pass A runs: its
    blocks sketch the rows) loads every kernel the driver's near-duplicate pass calls, and not the
    sketch kernel it never calls (a fresh process: nothing loaded before)."""
    import json
    import subprocess
    import sys

    code = ("import json; from curate import warmup, minhash_jit as m; warmup.warm_duplicate_groups(); "
            "print(json.dumps({k: len(getattr(m, k).signatures) for k in ('exact_groups', 'band_buckets', "
            "'round_mark', 'round_emit', 'round_clear', 'round_finish', 'prefilter', 'jaccard_rows', "
            "'normalize_sketch')}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded.pop("normalize_sketch") == 0
    assert all(v > 0 for v in loaded.values()), loaded


def _fixture_strings(root) -> list[str]:
    """Every string value (and every line of the text files) of the fixtures, recursively."""
    import json

    out: list[str] = []

    def walk(v) -> None:
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    def parse(text: str) -> None:  # a JSON value, else the text itself (the fixtures of broken records)
        try:
            walk(json.loads(text))
        except ValueError:
            out.append(text)

    for path in sorted(root.rglob("*")):
        text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
        if path.suffix == ".json":
            parse(text)
        elif path.suffix == ".jsonl":
            for line in text.splitlines():
                parse(line)
        else:
            out.extend(text.splitlines())
    return out


# Hard cases of Unicode case folding and separators, each alone and inside Malay, Korean or English.
_HARD = ["İstanbul İZMİR ıi Iİ", "Straße STRASSE ẞ groß", "ΟΔΟΣ Σ. ΣΑΣ σς aΣb ΣA", "ﬁnd ﬂow ﬀ ﬃ ﬄ ﬅ ﬆ",
         "e\u0301te\u0301 CAFE\u0301 n\u0303", "Ｆｕｌｌ－ｗｉｄｔｈ　ＡＢＣ　１２３！", "emoji 🙂👍🏽 👩‍💻 ❤️ 🇲🇾 end",
         "Tiếng Việt: ĐẶNG Thị Ánh Tuyết", "한국어 문장입니다. 안녕하세요!", "Ⓐ Ⓩ ⓐ ① ½ ² ⅷ Ⅻ", "Ⱥ Ⱦ ȿ ɀ Ꞵ",
         "ǅ ǈ ǋ Ǳ ǲ ǳ", "Ꭰ ꭰ Ა ა Ⴀ", "𐐀𐐨 𝐀𝐁 𞤀𞤢", "𠀀 𪜀 CJK ext B", "\u200b\u200d\ufeff\u00ad zero width",
         "“quotes” ‘single’ — dash… «guillemets»", "Ǆ  Å K Ω Ω", "i\u0307 I\u0307", "kerana dia tiada wang ¿¡"]


def _old_and_new_keys(monkeypatch, texts: list[str]):
    """dedupe.row_keys of ``texts`` by the compiled pass with its Unicode table (most non-ASCII
    rows normalized in the kernel) and without it (every non-ASCII row through polars first)."""
    from curate import minhash_jit

    if not minhash_jit.AVAILABLE:
        pytest.skip("numba not installed")
    series = pl.Series(texts, dtype=pl.String)
    new = dedupe.row_keys(series, est=True)
    monkeypatch.setattr(dedupe, "_wide_table", lambda: dedupe._NO_TABLE)
    old = dedupe.row_keys(series, est=True)
    return old, new


def _assert_same_keys(old, new) -> None:
    for field in ("hashes", "norm_len", "keys", "est", "lengths"):
        assert np.array_equal(getattr(old, field), getattr(new, field)), field


def test_compiled_unicode_normalization_equals_polars_on_the_fixtures(fixtures, monkeypatch):
    """Non-ASCII rows the compiled pass normalizes itself (Korean, Malay, Vietnamese, curly
    quotes, ...) get the same normalized length, hashes and sketch as when polars normalizes
    them first (the old path): every string of the fixtures, and hard cases (Turkish dotted I,
    sharp s, final sigma, ligatures, combining marks, full-width forms, emoji, Cherokee, plane 2
    CJK, which the pass leaves to polars) alone and inside other text."""
    texts = _fixture_strings(fixtures)
    wide = [t for t in texts if not t.isascii()]
    assert len(wide) > 1000 and any("안녕" in t for t in wide)
    rng = random.Random(3)
    hard = _HARD + [f"{a} {h} {b}" for h in _HARD for a, b in [rng.sample(wide, 2)]] + [h.upper() for h in _HARD]
    table = dedupe._wide_table()[0]
    assert table[ord("한")] == 1 and table[ord("”")] == 0 and table[ord("É")] >= 2 and table[ord("ß")] >= 2
    left = [t for t in wide if any(ord(c) >= len(table) or (ord(c) >= 0x80 and table[ord(c)] < 0) for c in t)]
    assert len(left) < len(wide) / 100  # the kernel normalizes nearly every non-ASCII row itself
    old, new = _old_and_new_keys(monkeypatch, texts + hard)
    _assert_same_keys(old, new)


def test_compiled_unicode_normalization_equals_polars_for_every_code_point(monkeypatch):
    """Every code point the compiled pass's table covers (and some past it), each in a few texts
    between ASCII letters, digits, punctuation and spaces and other such code points: the same
    normalized length, hashes and sketches as through polars."""
    rng = random.Random(7)
    codes = [c for c in range(0x80, dedupe._WIDE_CODES + 0x400) if not 0xD800 <= c < 0xE000]
    texts = []
    for _ in range(3):
        rng.shuffle(codes)
        for i in range(0, len(codes), 24):
            parts = [chr(c) + rng.choice(["", "", " ", "a", "Z", "1", ".", "  ", "-"]) for c in codes[i:i + 24]]
            texts.append(rng.choice(["", " ", "Ab "]) + "".join(parts))
    old, new = _old_and_new_keys(monkeypatch, texts)
    _assert_same_keys(old, new)


def test_compiled_unicode_normalization_gives_the_same_clusters_and_similarities(fixtures, monkeypatch):
    """The compiled pass's clusters and exact similarities (its exact check normalizes non-ASCII
    rows by the same table) equal those of the old path on the fixtures' non-ASCII texts and near
    copies of them (a few with a character the table leaves out)."""
    rng = random.Random(5)
    wide = sorted({t for t in _fixture_strings(fixtures) if not t.isascii() and len(t) > 40})
    copies = [mutate(t, rng, 2) if t.count(" ") > 4 else t.upper() for t in rng.sample(wide, 400)]
    copies += [t + " 𠀀" for t in rng.sample(wide, 50)] + [t.replace(" ", "  İ ", 1) for t in rng.sample(wide, 50)]
    texts = wide + copies
    rng.shuffle(texts)
    monkeypatch.setattr(dedupe, "_JIT_MIN_ROWS", 0)
    df = pl.DataFrame({"t": texts})
    new = dedupe.find_duplicates(df, "t")
    monkeypatch.setattr(dedupe, "_wide_table", lambda: dedupe._NO_TABLE)
    old = dedupe.find_duplicates(df, "t")
    assert new.equals(old)
    assert (new["dup_kind"] == "near").sum() > 100 and ((new["similarity"] < 1) & (new["similarity"] >= 0.8)).sum() > 100


def test_joined_columns_are_read_in_place_with_the_same_clusters(sft, monkeypatch):
    """A row text that joins String columns by a newline (the clean engine's, ``TEXT``) is read by
    the compiled pass from the columns' string views (row_text_jit.join_cut), not built by polars:
    the same exact groups, clusters and similarities as the column polars joins, with nulls, empty
    values, values inline in their view, non-ASCII rows and characters only polars normalizes."""
    rng = random.Random(7)
    cols = sft.select("instruction", "input", "output")
    copies = cols.sample(fraction=0.5, seed=1).with_columns(
        pl.col("output").map_elements(lambda t: mutate(t, rng, 2) if t.count(" ") > 5 else t.upper(),
                                      return_dtype=pl.String))
    extra = pl.DataFrame({"instruction": ["Straße", None, "İstanbul yolu", "short", "SHORT", "", None, "ΣΟΦΟΣ"],
                          "input": [None, None, "", "a", "A", None, "x", None],
                          "output": ["x", None, "𠀀 kata kerana", "b", "b!", "", None, "σοφος"]})
    outside = cols.filter(pl.col("output").str.len_chars() > 200).head(30).with_columns(pl.col("output") + " 𠀀 İ")
    df = pl.concat([cols, copies, outside, extra]).sample(fraction=1.0, shuffle=True, seed=2)
    assert dedupe._joined_columns(df, TEXT) == ["instruction", "input", "output"]
    assert dedupe._joined_columns(df, TEXT.fill_null("")) == ["instruction", "input", "output"]
    assert dedupe._joined_columns(df, TEXT.str.to_lowercase()) is None
    assert dedupe._joined_columns(df.with_columns(pl.col("input").cast(pl.Categorical)), TEXT) is None
    monkeypatch.setattr(dedupe, "_JIT_MIN_ROWS", 0)
    got = dedupe.find_duplicates(df, TEXT)
    monkeypatch.setattr(dedupe, "_EST_MEMORY", 0)  # the candidates' estimator bytes: their rows read again
    assert dedupe.find_duplicates(df, TEXT).equals(got)
    monkeypatch.setattr(dedupe, "_joined_columns", lambda df, text: None)
    assert dedupe.find_duplicates(df, TEXT).equals(got)
    assert (got["dup_kind"] == "near").sum() > 50 and (got["dup_kind"] == "exact").sum() > 3
