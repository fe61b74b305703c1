"""Benchmark: near-duplicate detection with truth from the edits, curate vs datasketch vs datatrove.

The corpus (Alpaca-style, from the real fixture rows in ``tests/data/fixtures``): distinct rows
made by recombining sentences of different fixture rows, then injected *families*:

* exact copies (case, spacing, punctuation changes),
* edited copies: 1 to ~25% of the words inserted, deleted, swapped with a neighbour, substituted,
  repeated, re-cased or re-punctuated (several copies of one source are one family),
* template fills: a row with 3 slots, each copy filling the slots with other words (a family per
  template),

shuffled. **The truth is the edits**: a row dropped as a duplicate is correct when its kept row is
of the same family, never because some similarity measure says so. Recall is counted on the
injected (copy, source) pairs that are truly near duplicates by the measure under test (char
5-gram Jaccard >= threshold, computed in plain Python here, not by curate's numpy code); edited
copies that the edits pushed below the threshold are counted apart (they are not expected).

* ``precision``: share of dropped rows whose kept row is of their family *and* at least the
  threshold similar to them (what a user who drops all but one row per cluster gets);
  ``prec fam``: of the same family only (chaining inside a family counts as correct);
* ``recall``: share of the injected near pairs >= threshold whose copy ended up in its source's
  cluster; ``exact rec``: the same for exact copies.

Every method drops all but one row per cluster (datasketch: connected components of its LSH
matches, the first row kept; datatrove: its MinhashDedupCluster union-find, the row it keeps).

The adversarial run (``--adversarial N``): N rows of which 99% are 1,000-row clusters of
near-identical template fills (N = 300,000: 297 clusters), against an ordinary corpus of the same
size; curate's dedup pass must take no more than 2x as long on it. Each figure comes with the polars
floor (read + write of the corpus as JSONL) measured in the same run.

Each method runs in a fresh process; time is wall time of the method only (normalization,
shingling, hashing, LSH, clustering; not reading the file); CPU is that process's CPU time over
the same span; peak memory is the process's VmHWM.

    .venv/bin/python bench/dedupe.py                                  # 100k rows, all three, + adversarial 300k
    .venv/bin/python bench/dedupe.py --rows 20000 --adversarial 0
    .venv/bin/python bench/dedupe.py --methods curate --rows 1000000 --adversarial 0

datasketch, datatrove and rensa (``--methods curate,rensa``, issue 17) are bench-only dependencies:
``.venv/bin/pip install datasketch datatrove rensa`` (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curate import dedupe  # noqa: E402

FIXTURES = ROOT / "tests" / "data" / "fixtures"
FILES = ["malay_alpaca.json", "alpacacleaned_gsm8k.json", "chatdoctor.json", "malay_chatdoctor.jsonl",
         "malay_gpt4all.jsonl", "malay_kochatgpt_sft.jsonl"]
TEXT = pl.concat_str([pl.col("instruction"), pl.col("input"), pl.col("output")], separator="\n",
                     ignore_nulls=True)
SENT_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")


# --------------------------------------------------------------------------- the measure, in plain Python

def norm_many(texts: list[str]) -> list[str]:
    return pl.Series(texts, dtype=pl.String).to_frame("t").select(dedupe.normalize("t")).to_series().to_list()


def shingles(norm: str) -> set[bytes]:
    b = norm.ljust(dedupe.SHINGLE).encode()
    w = dedupe.SHINGLE
    return {b[i:i + w] for i in range(len(b) - w + 1)}


def jaccard(a: set, b: set) -> float:
    if not a and not b:
        return 1.0
    i = len(a & b)
    return i / (len(a) + len(b) - i)


def pair_sims(texts: list[str], pairs: list[tuple[int, int]], chunk: int = 5_000) -> list[float]:
    """Jaccard of each pair, ``chunk`` pairs at a time (sorted, so a kept row's set serves its
    cluster): only one chunk's shingle sets are alive (all of them took 12 GB on the adversarial corpus)."""
    order = sorted(range(len(pairs)), key=pairs.__getitem__)
    out = [0.0] * len(pairs)
    for s in range(0, len(order), chunk):
        part = order[s:s + chunk]
        rows = sorted({r for k in part for r in pairs[k]})
        sets = {r: shingles(t) for r, t in zip(rows, norm_many([texts[r] for r in rows]))}
        for k in part:
            out[k] = jaccard(sets[pairs[k][0]], sets[pairs[k][1]])
    return out


# --------------------------------------------------------------------------- corpus

def load_base() -> pl.DataFrame:
    from curate.ingest import ingest

    df = ingest([FIXTURES / f for f in FILES], detect_lang=False).frames["sft"]
    return df.select(pl.col(c).fill_null("") for c in ("instruction", "input", "output"))


def _pool(values: list[str]) -> list[str]:
    out = []
    for v in values:
        out.extend(s.strip() for s in SENT_SPLIT.split(v) if len(s.split()) >= 3)
    return out


def filler(base: pl.DataFrame, n: int, rng: random.Random) -> list[tuple[str, str, str]]:
    """Distinct rows: each field recombines sentences drawn from different fixture rows."""
    ins, inp, out = (_pool(base[c].to_list()) for c in ("instruction", "input", "output"))
    rows = []
    for _ in range(n):
        rows.append((
            " ".join(rng.choices(ins, k=rng.randint(1, 2))),
            " ".join(rng.choices(inp, k=1)) if rng.random() < 0.4 else "",
            " ".join(rng.choices(out, k=rng.randint(2, 5))),
        ))
    return rows


PUNCT = [",", ".", "!", "?", ";", ":", " -", "..."]


def exact_copy(row: tuple[str, str, str], rng: random.Random) -> tuple[str, str, str]:
    def change(t: str) -> str:
        words = t.split()
        if not words:
            return t
        op = rng.randrange(4)
        if op == 0:
            words = [w.upper() if rng.random() < 0.3 else w for w in words]
        elif op == 1:
            words = [w.lower() if rng.random() < 0.5 else w.capitalize() for w in words]
        elif op == 2:
            words = [w + rng.choice(PUNCT) if rng.random() < 0.15 else w for w in words]
        sep = "  " if op == 3 else " "
        return (sep.join(words) + (rng.choice(PUNCT) if rng.random() < 0.5 else "")).strip()
    return tuple(change(t) for t in row)  # type: ignore[return-value]


def near_copy(row: tuple[str, str, str], edits: int, vocab: list[str], rng: random.Random) -> tuple[str, str, str]:
    fields = [f.split() for f in row]
    weights = [len(f) for f in fields]
    if sum(weights) == 0:
        return row
    for _ in range(edits):
        words = rng.choices(fields, weights=[max(len(f), 0) for f in fields])[0]
        if not words:
            continue
        i = rng.randrange(len(words))
        op = rng.randrange(7)
        if op == 0 and len(words) > 1:
            del words[i]
        elif op == 1:
            words.insert(i, rng.choice(vocab))
        elif op == 2 and i + 1 < len(words):
            words[i], words[i + 1] = words[i + 1], words[i]
        elif op == 3:
            words[i] = rng.choice(vocab)
        elif op == 4:
            words[i] = words[i].upper() if rng.random() < 0.5 else words[i].capitalize()
        elif op == 5:
            words[i] = words[i] + rng.choice(PUNCT)
        else:
            words.insert(i, words[i])  # repeated word
    return tuple(" ".join(f) for f in fields)  # type: ignore[return-value]




def template_fills(row: tuple[str, str, str], copies: int, vocab: list[str], rng: random.Random,
                   slots: int = 3) -> list[tuple[str, str, str]]:
    """Copies of ``row`` with the same ``slots`` word positions (the template's slots) filled differently."""
    fields = [f.split() for f in row]
    positions = [(fi, i) for fi, f in enumerate(fields) for i in range(len(f))]
    if not positions:
        return [row] * copies
    chosen = rng.sample(positions, min(slots, len(positions)))
    out = []
    for _ in range(copies):
        new = [list(f) for f in fields]
        for fi, i in chosen:
            new[fi][i] = rng.choice(vocab)
        out.append(tuple(" ".join(f) for f in new))
    return out


def build_corpus(n: int, seed: int = 0, adversarial: bool = False):
    """(frame instruction/input/output/id, family per row, injected frame a=source, b=copy, kind)."""
    rng = random.Random(seed)
    base = load_base()
    base_rows = list(base.iter_rows())
    vocab = [w for r in base_rows[:400] for f in r for w in f.split() if w.isalpha()]
    if adversarial:  # 99% of the rows in 1,000-row clusters of near-identical fills
        clusters = (n * 99 // 100) // 1000
        n_distinct = n - clusters * 1000 + clusters
    else:
        n_distinct = n - 3 * (n // 20)
    rows = (base_rows + filler(base, max(0, n_distinct - len(base_rows)), rng))[:n_distinct]
    family = list(range(len(rows)))
    injected: list[tuple[int, int, str]] = []

    def add(src: int, copy: tuple[str, str, str], kind: str) -> None:
        injected.append((src, len(rows), kind))
        family.append(family[src])
        rows.append(copy)

    if adversarial:
        # templates: rows of 80+ words with 2 slots, so the fills are near-identical to one another
        long_rows = [i for i in range(n_distinct) if sum(len(f.split()) for f in rows[i]) >= 80]
        for c in range(clusters):
            src = long_rows[c % len(long_rows)]
            for fill in template_fills(rows[src], 999, vocab, rng, slots=2):
                add(src, fill, "template")
    else:
        for _ in range(n // 20):
            s = rng.randrange(n_distinct)
            add(s, exact_copy(rows[s], rng), "exact")
        for _ in range(n // 20):
            s = rng.randrange(n_distinct)
            nwords = sum(len(f.split()) for f in rows[s])
            edits = max(1, round(nwords * rng.choice([0.01, 0.02, 0.04, 0.06, 0.08, 0.12, 0.25])))
            add(s, near_copy(rows[s], edits, vocab, rng), "near")
        templates = [rng.randrange(n_distinct) for _ in range(n // 200)]
        for s in templates:
            for fill in template_fills(rows[s], 9, vocab, rng):
                add(s, fill, "template")
        del templates
    perm = list(range(len(rows)))
    rng.shuffle(perm)
    pos = [0] * len(rows)
    for new, old in enumerate(perm):
        pos[old] = new
    df = pl.DataFrame([rows[i] for i in perm], schema=["instruction", "input", "output"], orient="row")
    df = df.with_row_index("row").with_columns(pl.format("r{}", "row").alias("id")).drop("row")
    fam = np.array([family[i] for i in perm])
    inj = pl.DataFrame({"a": [pos[s] for s, _, _ in injected], "b": [pos[c] for _, c, _ in injected],
                        "kind": [k for _, _, k in injected]}, schema={"a": pl.Int64, "b": pl.Int64, "kind": pl.String})
    return df, fam, inj


# --------------------------------------------------------------------------- workers (subprocess)

def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _report(t0: float, c0: float, loaded: float, kept: pl.DataFrame, out: Path, extra: str = "") -> None:
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    kept.write_parquet(out)
    print(f"{dt:.3f} {cpu:.3f} {peak_rss_mib():.1f} {loaded:.1f} {extra}".strip())


def worker_curate(data: Path, out: Path, threshold: float) -> None:
    df = pl.read_parquet(data)
    loaded = peak_rss_mib()
    t0, c0 = time.perf_counter(), time.process_time()
    stats: dict = {}
    res = dedupe.find_duplicates(df, TEXT, threshold=threshold, stats=stats)
    kept = res.select("row", pl.when(~pl.col("keep")).then(pl.col("cluster")).alias("kept"))
    steps = ",".join(f"{k[2:]}={v}" for k, v in stats.items() if k.startswith("s_"))
    _report(t0, c0, loaded, kept, out, f"{steps};rounds={stats.get('rounds', 0)};checked={stats.get('checked_pairs', 0)}")


def _components_kept_first(n: int, a: list[int], b: list[int]) -> list[int | None]:
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x
    for x, y in zip(a, b):
        rx, ry = find(x), find(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)
    roots = [find(i) for i in range(n)]
    return [r if r != i else None for i, r in enumerate(roots)]


def worker_datasketch(data: Path, out: Path, threshold: float) -> None:
    from datasketch import MinHash, MinHashLSH

    df = pl.read_parquet(data)
    loaded = peak_rss_mib()
    t0, c0 = time.perf_counter(), time.process_time()
    norms = df.select(dedupe.normalize(TEXT)).to_series().to_list()
    sets = [shingles(t) if t else None for t in norms]
    idx = [i for i, s in enumerate(sets) if s]
    mhs = MinHash.bulk([sets[i] for i in idx], num_perm=128)
    lsh = MinHashLSH(threshold=threshold, num_perm=128)
    for i, m in zip(idx, mhs):
        lsh.insert(i, m)
    a, b = [], []
    for i, m in zip(idx, mhs):
        for j in lsh.query(m):
            if j != i:
                a.append(i)
                b.append(j)
    kept = _components_kept_first(len(norms), a, b)
    _report(t0, c0, loaded, pl.DataFrame({"row": range(len(norms)), "kept": kept},
                                         schema={"row": pl.UInt32, "kept": pl.Int64}), out)


def worker_datatrove(data: Path, out: Path, threshold: float) -> None:
    """datatrove's MinHash pipeline (its defaults: word 5-grams, 14 buckets x 8 hashes), one task."""
    from datatrove.data import Document
    from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                                  MinhashDedupSignature)

    import datatrove.utils.hashes.xxhash as dt_xxhash
    import xxhash

    # datatrove 0.10 hands str to xxhash, which xxhash >= 4 refuses: encode first (same digest)
    dt_xxhash.xxhash64 = lambda data: xxhash.xxh64_intdigest(data.encode() if isinstance(data, str) else data)
    dt_xxhash.xxhash32 = lambda data: xxhash.xxh32_intdigest(data.encode() if isinstance(data, str) else data)
    df = pl.read_parquet(data)
    loaded = peak_rss_mib()
    work = Path(tempfile.mkdtemp(prefix="datatrove-", dir=out.parent))
    t0, c0 = time.perf_counter(), time.process_time()
    texts = df.select(TEXT).to_series().to_list()
    config = MinhashConfig()
    docs = (Document(text=t, id=str(i)) for i, t in enumerate(texts))
    MinhashDedupSignature(output_folder=str(work / "sigs"), config=config).run(docs, 0, 1)
    for b in range(config.num_buckets):
        MinhashDedupBuckets(input_folder=str(work / "sigs"), output_folder=str(work / "buckets"),
                            config=config).run(None, b, config.num_buckets)
    MinhashDedupCluster(input_folder=str(work / "buckets"), output_folder=str(work / "remove"), config=config,
                        save_cluster_id=True).run()
    kept: list[int | None] = [None] * len(texts)
    clusters = work / "remove" / "000000.clusters"
    removed = work / "remove" / "000000.remove"
    if clusters.exists():
        raw = np.frombuffer(clusters.read_bytes(), dtype="<u4").reshape(-1, 2)
        gone = set(np.frombuffer(removed.read_bytes(), dtype="<u4").tolist()) if removed.exists() else set()
        keeper = {int(c): int(d) for d, c in raw if int(d) not in gone}
        for d, c in raw:
            if int(d) in gone:
                kept[int(d)] = keeper.get(int(c))
    frame = pl.DataFrame({"row": range(len(texts)), "kept": kept}, schema={"row": pl.UInt32, "kept": pl.Int64})
    _report(t0, c0, loaded, frame, out)
    shutil.rmtree(work, ignore_errors=True)


def worker_rensa(data: Path, out: Path, threshold: float) -> None:
    """rensa (Rust R-MinHash + LSH; issue 17 asked for it beside curate): the same 5-byte shingle
    sets as datasketch, 128 slots, 16 bands; an LSH match is kept when rensa's estimated Jaccard
    >= threshold; clusters as datasketch's (connected components, the first row kept)."""
    from rensa import RMinHash, RMinHashLSH

    df = pl.read_parquet(data)
    loaded = peak_rss_mib()
    t0, c0 = time.perf_counter(), time.process_time()
    norms = df.select(dedupe.normalize(TEXT)).to_series().to_list()
    idx = [i for i, t in enumerate(norms) if t]
    sets = [shingles(norms[i]) for i in idx]  # rensa takes a Python token object (bytes) per shingle
    c1 = time.process_time()
    mhs = RMinHash.from_token_sets(sets, 128, 42)
    lsh = RMinHashLSH(threshold, 128, 16)
    lsh.insert_many(mhs)
    a, b = [], []
    for k, cand in enumerate(lsh.query_all(mhs)):
        for j in cand:
            if j != k and mhs[k].jaccard(mhs[j]) >= threshold:
                a.append(idx[k])
                b.append(idx[j])
    kept = _components_kept_first(len(norms), a, b)
    _report(t0, c0, loaded, pl.DataFrame({"row": range(len(norms)), "kept": kept},
                                         schema={"row": pl.UInt32, "kept": pl.Int64}), out,
            f"token_sets_cpu={c1 - c0:.1f}")


WORKERS = {"curate": worker_curate, "datasketch": worker_datasketch, "datatrove": worker_datatrove,
           "rensa": worker_rensa}


def run_worker(method: str, data: Path, out: Path, threshold: float) -> dict:
    proc = subprocess.Popen([sys.executable, __file__, "--worker", method, "--data", str(data),
                             "--out", str(out), "--threshold", str(threshold)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    stdout, _ = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{method} worker failed ({proc.returncode})")
    parts = stdout.strip().splitlines()[-1].split(maxsplit=4)
    return {"seconds": float(parts[0]), "cpu": float(parts[1]), "peak_mib": float(parts[2]),
            "loaded_mib": float(parts[3]), "steps": parts[4] if len(parts) > 4 else ""}


# --------------------------------------------------------------------------- scoring & floor

def score(df: pl.DataFrame, fam: np.ndarray, inj: pl.DataFrame, kept: pl.DataFrame, threshold: float,
          texts: list[str]) -> dict:
    k = kept.sort("row")["kept"].to_list()
    drops = [(r, c) for r, c in enumerate(k) if c is not None]
    same = [fam[r] == fam[c] for r, c in drops]
    sims = pair_sims(texts, drops) if drops else []
    good = sum(1 for s, j in zip(same, sims) if s and j >= threshold)
    below = sum(1 for j in sims if j < threshold)
    # cluster label of every row: its kept row, or itself
    label = [c if c is not None else r for r, c in enumerate(k)]
    near = inj.filter(pl.col("kind") != "exact")
    pairs = list(zip(near["a"].to_list(), near["b"].to_list()))
    truth_sims = pair_sims(texts, pairs) if pairs else []
    expected = [(a, b) for (a, b), j in zip(pairs, truth_sims) if j >= threshold]
    exact = inj.filter(pl.col("kind") == "exact")
    epairs = list(zip(exact["a"].to_list(), exact["b"].to_list()))
    return {
        "drops": len(drops),
        "precision": good / len(drops) if drops else 1.0,
        "prec_fam": sum(same) / len(drops) if drops else 1.0,
        "below_t": below,
        "recall": sum(1 for a, b in expected if label[a] == label[b]) / len(expected) if expected else 1.0,
        "exact_rec": sum(1 for a, b in epairs if label[a] == label[b]) / len(epairs) if epairs else 1.0,
        "expected": len(expected), "not_expected": len(pairs) - len(expected),
    }


def polars_floor(data: Path, tmp: Path) -> float:
    """Seconds to read the corpus as JSONL and write it back (the I/O any tool pays)."""
    src = tmp / "floor-in.jsonl"
    pl.read_parquet(data).write_ndjson(src)
    t0 = time.perf_counter()
    pl.read_ndjson(src).write_ndjson(tmp / "floor-out.jsonl")
    dt = time.perf_counter() - t0
    src.unlink()
    (tmp / "floor-out.jsonl").unlink()
    return dt


def run(rows: int, methods: list[str], threshold: float, tmp: Path, adversarial: bool = False) -> list[dict]:
    t0 = time.perf_counter()
    df, fam, inj = build_corpus(rows, adversarial=adversarial)
    data = tmp / f"corpus-{rows}-{int(adversarial)}.parquet"
    df.write_parquet(data)
    texts = df.select(TEXT).to_series().to_list()
    name = "adversarial" if adversarial else "ordinary"
    counts = dict(inj.group_by("kind").len().iter_rows())
    print(f"# {name} corpus: {df.height:,} rows, injected {counts} built in {time.perf_counter() - t0:.0f} s",
          flush=True)
    floor = polars_floor(data, tmp)
    out = []
    for m in methods:
        res = run_worker(m, data, tmp / f"{m}.parquet", threshold)
        res.update(method=m, corpus=name, rows=df.height, asked=rows, floor=floor, load=os.getloadavg()[0])
        res.update(score(df, fam, inj, pl.read_parquet(tmp / f"{m}.parquet"), threshold, texts))
        print(f"#   {m}: {res['seconds']:.1f} s ({res['seconds'] / floor:.1f}x the {floor:.1f} s floor), "
              f"precision {res['precision']:.4f}, recall {res['recall']:.4f} {res['steps']}", flush=True)
        out.append(res)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000, help="rows of the comparison corpus (0: skip)")
    ap.add_argument("--methods", default="curate,datasketch,datatrove", help="comma-separated")
    ap.add_argument("--adversarial", type=int, default=300_000, help="rows of the adversarial run (0: skip)")
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        WORKERS[args.worker](Path(args.data), Path(args.out), args.threshold)
        return
    methods = [m for m in args.methods.split(",") if m]
    print(f"# dedupe bench, threshold {args.threshold} (char 5-gram Jaccard), {os.cpu_count()} cores, "
          f"load avg {os.getloadavg()[0]:.2f} at start")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-dedupe-") as tmp:
        if args.rows:
            results += run(args.rows, methods, args.threshold, Path(tmp))
        if args.adversarial:
            results += run(args.adversarial, ["curate"], args.threshold, Path(tmp))
            results += run(args.adversarial, ["curate"], args.threshold, Path(tmp), adversarial=True)
    print()
    print(f"{'method':<11}{'corpus':<12}{'rows':>9}{'wall s':>8}{'CPU s':>7}{'floor s':>8}{'x floor':>8}{'peak MiB':>9}"
          f"{'drops':>8}{'precision':>10}{'prec fam':>9}{'<t':>6}{'recall':>8}{'exact rec':>10}")
    for r in results:
        print(f"{r['method']:<11}{r['corpus']:<12}{r['rows']:>9,}{r['seconds']:>8.1f}{r['cpu']:>7.1f}{r['floor']:>8.2f}"
              f"{r['seconds'] / r['floor']:>8.1f}{r['peak_mib']:>9.0f}{r['drops']:>8,}{r['precision']:>10.4f}"
              f"{r['prec_fam']:>9.4f}{r['below_t']:>6,}{r['recall']:>8.4f}{r['exact_rec']:>10.4f}")
    first = next((r for r in results if r["asked"] == args.rows), None)  # the corpus is a little smaller
    if first:
        print(f"recall counted on {first['expected']:,} injected near pairs >= {args.threshold} "
              f"({first['not_expected']:,} more were edited below it and are not expected)")
    adv = [r for r in results if r["corpus"] == "adversarial"]
    ordi = [r for r in results if r["corpus"] == "ordinary" and r["method"] == "curate" and r["asked"] == args.adversarial]
    if adv and ordi:
        print(f"adversarial/ordinary dedup time at {args.adversarial:,} rows: "
              f"{adv[0]['seconds'] / ordi[-1]['seconds']:.2f}x wall, {adv[0]['cpu'] / ordi[-1]['cpu']:.2f}x CPU "
              "(target <= 2x)")


if __name__ == "__main__":
    main()
