"""Benchmark: exact + near-duplicate detection, curate vs datasketch MinHashLSH.

Builds an Alpaca-style corpus from the real fixtures (``tests/data/fixtures``): the fixture rows,
padded to N rows with distinct rows made by recombining sentences of different fixture rows, then
~5% exact duplicates (case, spacing and punctuation changes) and ~5% near duplicates (word
deletions, insertions, swaps, substitutions, case and punctuation changes; each one kept only if
its exact shingle Jaccard to its source is in [threshold + 0.01, 1)), shuffled. The truth is kept
on the side.

Truth = injected pairs + every pair that any method put in one cluster whose *exact* Jaccard
(computed here in plain Python on the normalized text's 5-byte shingle sets, independently of
curate's numpy code) is >= threshold, so genuinely similar rows of the base corpus do not count as
false positives. Clusters are the connected components of the truth pairs. Precision and recall
are pair-counting figures over clusters (pairs of rows in the same predicted cluster vs the same
true cluster); "inj recall" is the share of injected duplicates put in their source's cluster.

Each method runs in a fresh process; time is wall time of the method only (normalization,
shingling, hashing, LSH, clustering; not reading the file), CPU is that process's CPU time over
the same span (all threads; a fairer figure on a shared machine), peak memory is the process's
VmHWM (includes the Python interpreter, polars and the loaded corpus).

    .venv/bin/python bench/dedupe.py                      # 100k rows both, then 1M rows curate
    .venv/bin/python bench/dedupe.py --rows 20000 --big-rows 0
    .venv/bin/python bench/dedupe.py --skip-datasketch

datasketch is a bench-only dependency: ``.venv/bin/pip install datasketch``.
"""

from __future__ import annotations

import argparse
import os
import random
import re
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
ISSUE_DATASKETCH_S = 142.0  # datasketch MinHashLSH on 100k rows, as measured in the issue
SENT_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")


# --------------------------------------------------------------------------- exact truth helpers

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


def build_corpus(n: int, threshold: float, seed: int = 0):
    """(frame with instruction/input/output, truth pairs frame a, b, kind, j)."""
    rng = random.Random(seed)
    base = load_base()
    base_rows = list(base.iter_rows())
    n_exact = n_near = n // 20
    n_distinct = max(n - n_exact - n_near, len(base_rows))
    rows = base_rows[:n_distinct] + filler(base, n_distinct - len(base_rows), rng)
    vocab = [w for r in base_rows[:400] for f in r for w in f.split() if w.isalpha()]
    src_norm_cache: dict[int, set] = {}

    # near duplicates: try an edit budget, keep those whose exact Jaccard lands above threshold
    near: list[tuple[int, tuple, float]] = []
    pending = [rng.randrange(n_distinct) for _ in range(n_near)]
    frac = 0.25
    for attempt in range(8):
        if not pending:
            break
        cands = []
        for s in pending:
            nwords = sum(len(f.split()) for f in rows[s])
            edits = max(1, round(rng.uniform(0.2, 1.0) * frac * nwords))
            cands.append((s, near_copy(rows[s], edits, vocab, rng)))
        need = [s for s, _ in cands if s not in src_norm_cache]
        for s, nm in zip(need, norm_many(["\n".join(rows[s]) for s in need])):
            src_norm_cache[s] = shingles(nm)
        normed = norm_many(["\n".join(c) for _, c in cands])
        retry = []
        for (s, c), nm in zip(cands, normed):
            j = jaccard(src_norm_cache[s], shingles(nm))
            if threshold + 0.01 <= j < 1.0:
                near.append((s, c, j))
            else:
                retry.append(s if j < 1.0 else rng.randrange(n_distinct))
        pending = retry
        frac /= 1.6
    exact = []
    for _ in range(n_exact):
        s = rng.randrange(n_distinct)
        exact.append((s, exact_copy(rows[s], rng)))
    # check the exact copies really normalize to their source
    a = norm_many(["\n".join(rows[s]) for s, _ in exact])
    b = norm_many(["\n".join(c) for _, c in exact])
    exact = [e for e, x, y in zip(exact, a, b) if x == y]

    all_rows = rows + [c for _, c, _ in near] + [c for _, c in exact]
    src = [-1] * len(rows) + [s for s, _, _ in near] + [s for s, _ in exact]
    kind = [None] * len(rows) + ["near"] * len(near) + ["exact"] * len(exact)
    sim = [None] * len(rows) + [j for _, _, j in near] + [1.0] * len(exact)
    perm = list(range(len(all_rows)))
    rng.shuffle(perm)
    pos = {old: new for new, old in enumerate(perm)}
    df = pl.DataFrame([all_rows[i] for i in perm], schema=["instruction", "input", "output"], orient="row")
    truth = pl.DataFrame({
        "a": [pos[src[i]] for i in range(len(rows), len(all_rows))],
        "b": [pos[i] for i in range(len(rows), len(all_rows))],
        "kind": kind[len(rows):],
        "j": sim[len(rows):],
    }, schema={"a": pl.Int64, "b": pl.Int64, "kind": pl.String, "j": pl.Float64})
    df = df.with_row_index("row").with_columns(pl.format("r{}", "row").alias("id")).drop("row")
    return df, truth


# --------------------------------------------------------------------------- workers (subprocess)

def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM). Not ru_maxrss from wait4: Linux carries the
    forking parent's high-water mark across exec, which would charge the bench's own corpus."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def worker_curate(data: Path, out: Path, threshold: float) -> None:
    df = pl.read_parquet(data)
    loaded = peak_rss_mib()
    t0, c0 = time.perf_counter(), time.process_time()
    res = dedupe.find_duplicates(df, TEXT, threshold=threshold)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    res.select("row", pl.col("cluster").alias("label")).write_parquet(out)
    print(f"{dt:.3f} {cpu:.3f} {peak_rss_mib():.1f} {loaded:.1f}")


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
    parent = list(range(len(norms)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x
    for i, m in zip(idx, mhs):
        for j in lsh.query(m):
            if j != i:
                ri, rj = find(i), find(j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
    labels = [find(i) for i in range(len(norms))]
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    lab = pl.DataFrame({"row": range(len(norms)), "label": labels})
    lab = lab.with_columns(pl.when(pl.len().over("label") > 1).then(pl.col("label")).alias("label"))
    lab.write_parquet(out)
    print(f"{dt:.3f} {cpu:.3f} {peak_rss_mib():.1f} {loaded:.1f}")


def run_worker(method: str, data: Path, out: Path, threshold: float) -> tuple[float, float, float, float]:
    """(wall seconds, CPU seconds, peak RSS MiB, RSS MiB once the corpus is loaded) of one method in
    a fresh process."""
    proc = subprocess.Popen([sys.executable, __file__, "--worker", method, "--data", str(data),
                             "--out", str(out), "--threshold", str(threshold)],
                            stdout=subprocess.PIPE, text=True)
    stdout, _ = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{method} worker failed ({proc.returncode})")
    wall, cpu, peak, loaded = stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu), float(peak), float(loaded)


# --------------------------------------------------------------------------- scoring

def discover(df: pl.DataFrame, labels: list[pl.DataFrame], threshold: float) -> pl.DataFrame:
    """Pairs inside predicted clusters whose exact Jaccard >= threshold (all pairs of clusters up
    to 40 rows, member-to-first and consecutive members for bigger ones)."""
    pairs = set()
    for lab in labels:
        cl = lab.filter(pl.col("label").is_not_null()).group_by("label").agg(pl.col("row").sort())
        for members in cl["row"].to_list():
            if len(members) <= 40:
                pairs.update((members[i], members[j]) for i in range(len(members))
                             for j in range(i + 1, len(members)))
            else:
                pairs.update((members[0], m) for m in members[1:])
                pairs.update(zip(members, members[1:]))
    if not pairs:
        return pl.DataFrame(schema={"a": pl.Int64, "b": pl.Int64})
    rows = sorted({r for p in pairs for r in p})
    norms = dict(zip(rows, norm_many(df[TEXT_COL].gather(rows).to_list())))
    sets = {r: shingles(t) for r, t in norms.items() if t}
    keep = [(a, b) for a, b in pairs if a in sets and b in sets and jaccard(sets[a], sets[b]) >= threshold]
    return pl.DataFrame(keep, schema={"a": pl.Int64, "b": pl.Int64}, orient="row")


TEXT_COL = "_text"


def components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x
    for x, y in zip(a.tolist(), b.tolist()):
        rx, ry = find(x), find(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)
    return np.array([find(i) for i in range(n)])


def score(pred: pl.DataFrame, truth_label: np.ndarray, injected: pl.DataFrame) -> dict:
    t = pl.DataFrame({"row": np.arange(len(truth_label)), "t": truth_label})
    t = t.with_columns(pl.when(pl.len().over("t") > 1).then(pl.col("t")).alias("t"))
    j = pred.select(pl.col("row").cast(pl.Int64), pl.col("label").cast(pl.Int64)).join(
        t.with_columns(pl.col("row").cast(pl.Int64)), on="row")

    def pairs(frame: pl.DataFrame, cols: list[str]) -> int:
        f = frame.drop_nulls(cols).group_by(cols).len()
        return int((f["len"].cast(pl.Int64) * (f["len"].cast(pl.Int64) - 1) // 2).sum())
    tp, pp, tt = pairs(j, ["label", "t"]), pairs(j, ["label"]), pairs(j, ["t"])
    lab = dict(zip(j["row"].to_list(), j["label"].to_list()))
    inj = injected.filter(pl.col("kind") == "near")
    hit = sum(1 for a, b in zip(inj["a"].to_list(), inj["b"].to_list())
              if lab[a] is not None and lab[a] == lab[b])
    removed = j.filter(pl.col("label").is_not_null()).height - j["label"].drop_nulls().n_unique()
    return {
        "precision": tp / pp if pp else 1.0, "recall": tp / tt if tt else 1.0,
        "inj_recall": hit / inj.height if inj.height else 1.0, "removed": removed,
        "clusters": j["label"].drop_nulls().n_unique(),
    }


def _quantiles(s: pl.Series) -> str:
    return "min/median/max " + "/".join(f"{s.quantile(q):.2f}" for q in (0.0, 0.5, 1.0))


def bench(rows: int, methods: list[str], threshold: float, tmp: Path) -> list[dict]:
    t0 = time.perf_counter()
    df, injected = build_corpus(rows, threshold)
    data = tmp / f"corpus-{rows}.parquet"
    df.write_parquet(data)
    print(f"# corpus: {df.height:,} rows ({injected.filter(pl.col('kind') == 'exact').height:,} exact and "
          f"{injected.filter(pl.col('kind') == 'near').height:,} near duplicates injected; near Jaccard "
          f"{_quantiles(injected.filter(pl.col('kind') == 'near')['j'])}) "
          f"built in {time.perf_counter() - t0:.0f} s", flush=True)
    results, labels = [], {}
    for m in methods:
        out = tmp / f"{m}-{rows}.parquet"
        load0 = os.getloadavg()[0]
        secs, cpu, mem, loaded = run_worker(m, data, out, threshold)
        labels[m] = pl.read_parquet(out)
        results.append({"method": m, "rows": df.height, "seconds": secs, "cpu": cpu, "peak_mib": mem,
                        "loaded_mib": loaded, "load": load0})
        print(f"#   {m}: {secs:.1f} s wall, {cpu:.1f} s CPU, peak {mem:.0f} MiB ({loaded:.0f} MiB with just the "
              f"corpus loaded; load avg {load0:.2f})", flush=True)
    found = discover(df.with_columns(TEXT.alias(TEXT_COL)), list(labels.values()), threshold)
    edges = pl.concat([injected.select("a", "b"), found]).unique()
    truth = components(df.height, edges["a"].to_numpy(), edges["b"].to_numpy())
    inj_lab = components(df.height, injected["a"].to_numpy(), injected["b"].to_numpy())
    extra = int((inj_lab[found["a"].to_numpy()] != inj_lab[found["b"].to_numpy()]).sum()) if found.height else 0
    print(f"#   truth: {edges.height:,} pairs ({extra:,} genuinely similar pairs found in the base corpus)")
    for r in results:
        r.update(score(labels[r["method"]], truth, injected))
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000, help="rows of the comparison corpus")
    ap.add_argument("--big-rows", type=int, default=1_000_000, help="rows of the curate-only run (0: skip)")
    ap.add_argument("--skip-datasketch", action="store_true")
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        {"curate": worker_curate, "datasketch": worker_datasketch}[args.worker](
            Path(args.data), Path(args.out), args.threshold)
        return
    print(f"# dedupe bench, threshold {args.threshold}, {os.cpu_count()} cores, load avg "
          f"{os.getloadavg()[0]:.2f} at start")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-dedupe-") as tmp:
        methods = ["curate"] + ([] if args.skip_datasketch else ["datasketch"])
        if args.rows:
            results += bench(args.rows, methods, args.threshold, Path(tmp))
        if args.big_rows:
            results += bench(args.big_rows, ["curate"], args.threshold, Path(tmp))
    print()
    print(f"{'method':<11}{'rows':>10}{'wall s':>8}{'CPU s':>7}{'peak MiB':>10}{'loaded':>8}{'load':>6}{'clusters':>10}{'removed':>9}"
          f"{'precision':>11}{'recall':>8}{'inj rec':>9}")
    for r in results:
        print(f"{r['method']:<11}{r['rows']:>10,}{r['seconds']:>8.1f}{r['cpu']:>7.1f}{r['peak_mib']:>10.0f}{r['loaded_mib']:>8.0f}{r['load']:>6.2f}"
              f"{r['clusters']:>10,}{r['removed']:>9,}{r['precision']:>11.4f}{r['recall']:>8.4f}{r['inj_recall']:>9.4f}")
    print(f"floor/targets: datasketch in the issue {ISSUE_DATASKETCH_S:.0f} s on 100k rows -> curate <= "
          f"{ISSUE_DATASKETCH_S / 10:.1f} s (10x); precision and recall >= 0.95; 1M rows well under 60 s, "
          f"whole clean < 4 GB")
    for r in results:
        if r["method"] == "curate":
            ds = next((x for x in results if x["method"] == "datasketch" and x["rows"] == r["rows"]), None)
            if ds:
                print(f"speed-up vs datasketch at {r['rows']:,} rows (same run): {ds['seconds'] / r['seconds']:.1f}x wall, "
                      f"{ds['cpu'] / r['cpu']:.1f}x CPU")


if __name__ == "__main__":
    main()
