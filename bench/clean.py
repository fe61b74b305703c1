"""Benchmark ``curate clean`` on a synthetic Alpaca-style corpus with the truth on the side.

    .venv/bin/python bench/clean.py --rows 100000      # iterate
    .venv/bin/python bench/clean.py --rows 1000000     # the figure the issue asks for

1. **Corpus.** Base rows are built from the Malay SFT fixtures that a default ``clean`` keeps
   (instructions as they are; outputs and inputs recombined from their sentences, so 1M rows are
   distinct). Into a share of the rows one issue each is injected, and the kind of issue is recorded
   in ``truth.parquet`` (line -> issue): exact and near duplicates of earlier clean rows, empty-input
   markers, mojibake, literal ``\\n``, control characters, refusals, empty and N/A outputs, URL-only
   inputs, image requests, merged instructions, wrong arithmetic (next to right arithmetic as a
   control), English rows, over-long outputs.
2. **Runs**, each a whole process timed from outside (wall time, CPU time and peak RSS from
   ``os.wait4``), the job a user runs: the polars floor (read the JSONL and write it again),
   ``curate ingest`` of the raw JSONL (language id of every row), then on the ingested dataset the
   rule pass (every default rule except language identification and near duplicates) and
   ``curate clean`` with all default rules.
3. **Quality.** Precision and recall per rule against the truth (a rule "found" a row when the row
   carries its fix or flag in meta, or its match in the quarantine).

The machine is shared (2 cores); the load average is printed next to the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import polars as pl  # noqa: E402

FIXTURES = ROOT / "tests" / "data" / "fixtures"
PY = sys.executable
CURATE = str(Path(PY).with_name("curate"))

MALAY_SFT = ["malay_alpaca.json", "malay_chatdoctor.jsonl", "malay_kochatgpt_sft.jsonl", "malay_gpt4all.jsonl",
             "malay_seed_tasks.jsonl"]
ENGLISH_SFT = ["chatdoctor.json", "alpacacleaned_gsm8k.json", "alpaca_seed_tasks.jsonl"]

# issue -> the rules that should catch it
EXPECT = {
    "exact_dup": {"exact_duplicate"}, "near_dup": {"near_duplicate"}, "noinput": {"noinput_marker"},
    "mojibake": {"mojibake"}, "literal_nl": {"literal_escapes", "ingest_literal_newlines"}, "control": {"control_chars"},
    "refusal": {"refusal"}, "empty_output": {"empty_output"}, "na_output": {"na_output"},
    "url_input": {"needs_internet"}, "media": {"media_request"}, "merged": {"merged_instruction"},
    "wrong_math": {"wrong_math"}, "english": {"untranslated_field", "wrong_language"}, "too_long": {"length_limit"},
}
RATES = {  # share of rows per injected issue
    "exact_dup": 0.04, "near_dup": 0.04, "noinput": 0.02, "mojibake": 0.01, "literal_nl": 0.01, "control": 0.01,
    "refusal": 0.01, "empty_output": 0.005, "na_output": 0.005, "url_input": 0.005, "media": 0.005,
    "merged": 0.005, "wrong_math": 0.005, "right_math": 0.005, "english": 0.01, "too_long": 0.001,
}
NOINPUT = ["<noinput>", "<no input>", "No input", "noinput", "<p><noinput></p>", "Tiada input",
           "Tidak ada input yang diperlukan. <noinput>", "Sinopsis: <noinput>", "N/A", "<No Input>"]
REFUSALS = ["Sebagai model bahasa AI, saya tidak mempunyai pendapat peribadi. ",
            "Maaf, saya tidak dapat membantu dengan permintaan itu. ",
            "Saya adalah model bahasa AI dan tidak boleh melayari internet. ",
            "As an AI language model, I do not have personal opinions. ",
            "Maaf, sebagai AI saya tidak mempunyai akses kepada maklumat terkini. "]
NA = ["N/A", "Tiada output", "<No Output>", "n/a", "Tidak berkenaan."]
URLS = ["https://www.bharian.com.my/berita/nasional/2022/03/{n}/artikel", "Artikel: https://www.bbc.com/news/world-{n}",
        "https://ms.wikipedia.org/wiki/Halaman_{n}", "Pautan: www.utusan.com.my/berita/{n}"]
MEDIA_INPUTS = ["<gambar seekor kucing hitam tidur di atas sofa {n}>", '<img src="https://i.imgur.com/{n}.jpg">',
                "<image of a sunset over the sea {n}>"]
MEDIA_INSTR = ["Reka bentuk logo untuk kedai kopi bernama Kopi {n}.", "Lukis gambar pemandangan kampung {n}.",
               "Hasilkan poster untuk kempen kitar semula {n}."]


def _sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.!?])\s+|\n+", text)
    return [p.strip() for p in parts if 25 <= len(p.strip()) <= 300 and "\\" not in p]


def base_pool():
    """Instructions and sentences from the Malay SFT rows a default clean keeps."""
    from curate.clean import CleanConfig, clean
    from curate.ingest import ingest

    from curate.clean.rules.alpaca import CODE_ASK, MEDIA_GIVEN, REFERS_TO_WEB
    from curate.clean.rules.arith import QUESTION_RS

    frames = ingest([FIXTURES / n for n in MALAY_SFT]).frames
    kept = clean(frames, CleanConfig()).frames["sft"]
    # instructions that stand on their own: outputs are recombined at random, so no instruction
    # whose answer depends on its own input, code or arithmetic (they would be real issues)
    own = kept.filter((pl.col("input") == "") & pl.col("instruction").str.len_chars().is_between(15, 300)
                      & ~pl.col("instruction").str.contains("\n")
                      & ~pl.col("instruction").str.contains(f"{CODE_ASK}|{REFERS_TO_WEB}|{MEDIA_GIVEN}|{QUESTION_RS}")
                      & ~pl.col("instruction").str.contains(r"(?i)berikut|following|given|diberikan|tersebut|ini\b"))
    instr = own["instruction"].to_list()
    sents = sorted({s for t in kept["output"].to_list() + kept["input"].to_list() for s in _sentences(t or "")})
    eng = ingest([FIXTURES / n for n in ENGLISH_SFT], detect_lang=False).frames["sft"]
    english = [(r["instruction"], r["output"]) for r in eng.iter_rows(named=True)
               if 20 <= len(r["output"]) <= 1500 and "\n" not in r["instruction"]]
    english_sents = sorted({s for _, o in english for s in _sentences(o) if not re.search(r"\d\s*[-+*/x]\s*\d", s)})
    return instr, sents, english, english_sents


def build(n: int, seed: int, out: Path) -> tuple[Path, Path]:
    rng = random.Random(seed)
    instr, sents, english, english_sents = base_pool()
    print(f"pool: {len(instr)} instructions, {len(sents)} sentences; English: {len(english)} instructions, "
          f"{len(english_sents)} sentences", flush=True)
    issues = list(RATES)
    weights = [RATES[k] for k in issues]
    clean_share = 1 - sum(weights)
    ins, inp, outp, truth = [], [], [], []
    clean_rows: list[int] = []

    def fresh() -> tuple[str, str, str]:
        i = rng.choice(instr)
        x = " ".join(rng.sample(sents, rng.randint(1, 2))) if rng.random() < 0.35 else ""
        o = " ".join(rng.sample(sents, rng.randint(3, 6)))
        return i, x, o

    for line in range(n):
        r = rng.random()
        issue = None
        if r >= clean_share:
            issue = rng.choices(issues, weights)[0]
            if issue in ("exact_dup", "near_dup") and len(clean_rows) < 10:
                issue = None
        i, x, o = fresh()
        if issue == "exact_dup":
            src = clean_rows[rng.randrange(len(clean_rows))]
            i, x, o = ins[src], inp[src], outp[src]
            if rng.random() < 0.5:  # same text once case and spacing are ignored
                o = o.upper() if rng.random() < 0.2 else o.replace(" ", "  ", 1) + " "
        elif issue == "near_dup":
            src = clean_rows[rng.randrange(len(clean_rows))]
            while len(outp[src]) < 300:
                src = clean_rows[rng.randrange(len(clean_rows))]
            i, x = ins[src], inp[src]
            words = outp[src].split(" ")
            for _ in range(max(1, len(words) // 40)):
                k = rng.randrange(len(words))
                op = rng.random()
                if op < 0.4:
                    words[k] = rng.choice(rng.choice(sents).split(" "))
                elif op < 0.7 and len(words) > 10:
                    del words[k]
                else:
                    words.insert(k, rng.choice(rng.choice(sents).split(" ")))
            o = " ".join(words)
            if norm(o) == norm(outp[src]):  # the edits cancelled out: make it a real edit
                o = o + " " + rng.choice(rng.choice(sents).split(" "))
        elif issue == "noinput":
            x = rng.choice(NOINPUT)
        elif issue == "mojibake":
            words = o.split(" ")
            k = rng.randrange(len(words))
            words[k] = "\u00a0\u2018" + words[k] + "\u2019"
            try:
                o = " ".join(words).encode("utf-8").decode("cp1252")
            except UnicodeDecodeError:
                issue = None
                o = " ".join(w.replace("\u00a0\u2018", "").replace("\u2019", "") for w in words)
        elif issue == "literal_nl":
            o = "\\n".join(rng.sample(sents, rng.randint(3, 5)))
        elif issue == "control":
            k = rng.randrange(1, len(o))
            o = o[:k] + rng.choice(["\u200b", "\x07", "\ufeff", "\x1b"]) + o[k:]
        elif issue == "refusal":
            o = rng.choice(REFUSALS) + o
        elif issue == "empty_output":
            o = rng.choice(["", " ", "\n"])
        elif issue == "na_output":
            o = rng.choice(NA)
        elif issue == "url_input":
            x = rng.choice(URLS).format(n=rng.randrange(10**6))
        elif issue == "media":
            if rng.random() < 0.5:
                x = rng.choice(MEDIA_INPUTS).format(n=rng.randrange(10**6))
            else:
                i = rng.choice(MEDIA_INSTR).format(n=rng.randrange(10**6))
        elif issue == "merged":
            o = o + f"\n\n2. Instruction: {rng.choice(instr)}\n2. Input: <noinput>"
        elif issue in ("wrong_math", "right_math"):
            a, b = rng.randrange(2, 999), rng.randrange(2, 99)
            op, val = rng.choice([("+", a + b), ("-", a - b), ("x", a * b), ("*", a * b)])
            i = rng.choice(["Berapakah {a} {op} {b}?", "Kira {a} {op} {b}.", "Apakah hasil {a} {op} {b}?",
                            "Hitungkan {a} {op} {b}."]).format(a=a, op=op, b=b)
            x = ""
            if issue == "wrong_math":
                val += rng.choice([-10, -2, -1, 1, 3, 7, 100])
            o = rng.choice(["Jawapannya ialah {v}.", "{a} {op} {b} = {v}", "Hasilnya {v}."]).format(a=a, op=op, b=b, v=val)
        elif issue == "english":  # an untranslated row: English instruction and recombined English output
            i = english[rng.randrange(len(english))][0]
            o = " ".join(rng.sample(english_sents, rng.randint(3, 6)))
            x = ""
        elif issue == "too_long":
            o = " ".join(rng.choice(sents) for _ in range(250))
            while len(o) < 21_000:
                o += " " + rng.choice(sents)
        if issue is None:
            clean_rows.append(line)
        ins.append(i)
        inp.append(x)
        outp.append(o)
        truth.append(issue)
    out.mkdir(parents=True, exist_ok=True)
    corpus = out / "corpus.jsonl"
    # raw Alpaca records (what users have): ``curate ingest`` reads them, line k is row k
    pl.DataFrame({"instruction": ins, "input": inp, "output": outp}).write_ndjson(corpus)
    truth_path = out / "truth.parquet"
    pl.DataFrame({"line": pl.int_range(1, n + 1, eager=True), "issue": truth}, schema={"line": pl.Int64, "issue": pl.String}).write_parquet(truth_path)
    return corpus, truth_path


def norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w]+|_", " ", text.lower()).split())


def timed(cmd: list[str], label: str) -> dict:
    """Run a whole process; wall seconds and its peak RSS (os.wait4 gives this child's rusage; it
    counts this process's own peak too, which is why main() restarts after building the corpus)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace")
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{label} failed ({proc.returncode}):\n{err[-3000:]}")
    return {"label": label, "seconds": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024),
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1)}


# issue 15's floor: polars reading the JSONL and writing it again, with polars' defaults (as
# bench/ingest.py). It read with infer_schema_length=None until 2026-11-30: a full-file schema
# inference that made the floor ~1.65x slower (2.43-2.57 s against 1.48-1.58 s at 1M rows) and
# every "x floor" figure of this benchmark look that much better than it is.
FLOOR = "import polars as pl, sys; pl.read_ndjson(sys.argv[1]).write_ndjson(sys.argv[2])"


def found_rules(out_dir: Path) -> pl.DataFrame:
    """``line, rule`` for every rule that matched a row (fix/flag in meta, or a quarantine match)."""
    kept = pl.read_parquet(out_dir / "sft.parquet", columns=["line", "meta"])
    meta_t = pl.Struct({"fixes": pl.List(pl.Struct({"rule": pl.String})), "flags": pl.List(pl.Struct({"rule": pl.String})),
                        "recovered": pl.List(pl.String)})
    m = kept.filter(pl.col("meta").is_not_null()).with_columns(pl.col("meta").str.json_decode(meta_t).alias("m"))
    # ingest already turns literal \n into newlines (recorded in meta.recovered): counted as found
    recovered = m.filter(pl.col("m").struct.field("recovered").list.eval(
        pl.element().str.contains("literal \\n", literal=True)).list.any().fill_null(False)).select(
        "line", pl.lit("ingest_literal_newlines").alias("rule"))
    fixes = m.select("line", pl.col("m").struct.field("fixes")).explode("fixes").drop_nulls("fixes").select(
        "line", pl.col("fixes").struct.field("rule").alias("rule"))
    flags = m.select("line", pl.col("m").struct.field("flags")).explode("flags").drop_nulls("flags").select(
        "line", pl.col("flags").struct.field("rule").alias("rule"))
    q = (pl.read_parquet(out_dir / "quarantine.parquet", columns=["line", "matches"])
         .filter(pl.col("matches").is_not_null())
         .with_columns(pl.col("matches").str.json_decode(pl.Struct({"matches": pl.List(pl.Struct({"rule": pl.String}))}))
                       .struct.field("matches")))
    qm = q.select("line", "matches").explode("matches").select("line", pl.col("matches").struct.field("rule").alias("rule"))
    return pl.concat([fixes, flags, recovered, qm]).unique()


def quality(out_dir: Path, truth_path: Path, n_rows: int) -> tuple[list[dict], dict]:
    truth = pl.read_parquet(truth_path)
    found = found_rules(out_dir)
    exp = pl.DataFrame([{"issue": k, "rule": r} for k, rs in EXPECT.items() for r in rs])
    rows = []
    # recall per injected issue: rows of that issue where any expected rule matched
    hit = found.join(truth, on="line").join(exp, on=["issue", "rule"], how="semi").select("line").unique()
    per_issue = (truth.filter(pl.col("issue").is_not_null())
                 .with_columns(pl.col("line").is_in(hit["line"].implode()).alias("hit"))
                 .group_by("issue").agg(pl.len().alias("injected"), pl.col("hit").sum().alias("found")))
    rule_of = {k: sorted(v) for k, v in EXPECT.items()}
    for r in per_issue.sort("issue").iter_rows(named=True):
        if r["issue"] not in EXPECT:
            continue
        rules = rule_of[r["issue"]]
        matched = found.filter(pl.col("rule").is_in(rules)).select("line").unique()
        tp = matched.join(truth.filter(pl.col("issue") == r["issue"]), on="line").height
        rows.append({"issue": r["issue"], "rules": "+".join(rules), "injected": r["injected"], "found": r["found"],
                     "recall": round(r["found"] / r["injected"], 4) if r["injected"] else None,
                     "matched": matched.height, "precision": round(tp / matched.height, 4) if matched.height else None})
    # right arithmetic must not be called wrong
    right = truth.filter(pl.col("issue") == "right_math")
    fp_right = found.filter(pl.col("rule") == "wrong_math").join(right, on="line").height
    # what fired on rows with no injected issue (base rows); exact/near copies' sources count here too
    on_clean = (found.join(truth.filter(pl.col("issue").is_null()), on="line")
                .group_by("rule").len().sort("len", descending=True))
    extra = {"right_math_rows": right.height, "right_math_called_wrong": fp_right,
             "rules_on_clean_rows": dict(on_clean.iter_rows()),
             "clean_rows": truth.filter(pl.col("issue").is_null()).height}
    return rows, extra


def table(rows: list[dict], cols: list[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols)]
    for r in rows:
        lines.append("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "clean")
    ap.add_argument("--reuse", action="store_true", help="reuse an existing corpus of the same size")
    ap.add_argument("--skip-all", action="store_true", help="only the floor and the rule pass")
    ap.add_argument("--reuse-ingested", action="store_true",
                    help="with --reuse: clean the dataset an earlier run ingested (no ingest run)")
    args = ap.parse_args()
    work = args.out / f"{args.rows}"
    corpus, truth = work / "corpus.jsonl", work / "truth.parquet"
    if not (args.reuse and corpus.exists() and truth.exists()):
        t0 = time.perf_counter()
        corpus, truth = build(args.rows, args.seed, work)
        print(f"built {args.rows:,} rows in {time.perf_counter() - t0:.1f} s "
              f"({corpus.stat().st_size / 1e6:.0f} MB): {corpus}", flush=True)
        # start again in a fresh process: a child's peak RSS (ru_maxrss) starts at its parent's
        # own peak (Linux carries the pre-exec peak over exec), and building the corpus took GBs
        # here, so every run's peak would read as this process's (it did: 1860 MB for the floor)
        os.execv(sys.executable, [sys.executable, *sys.argv, "--reuse"])
    # numba's kernels compiled and cached outside the timed runs, as ``make install`` does for a user
    # (``python -m curate.warmup``): a run just after a change of a kernel's source would otherwise
    # count its compilation (~5 s of the 1M clean's near_duplicate after a change of minhash_jit.py)
    warm = subprocess.run([PY, "-m", "curate.warmup"], cwd=Path(CURATE).parent, capture_output=True, text=True)
    if warm.returncode != 0:
        sys.exit(f"curate.warmup failed: {warm.stderr.strip().splitlines()[-1:]}")
    print(warm.stdout.strip(), flush=True)
    load0 = os.getloadavg()
    runs = [timed([PY, "-c", FLOOR, str(corpus), str(work / "floor.jsonl")], "polars floor: read JSONL + write JSONL")]
    print(runs[-1], flush=True)
    ingested = work / "ingested"
    if not (args.reuse and args.reuse_ingested and (ingested / "manifest.json").exists()):
        runs.append(timed([CURATE, "ingest", str(corpus), "-o", str(ingested), "-q"],
                          "curate ingest (language id of every row)"))
        print(runs[-1], flush=True)
    rule_pass = [CURATE, "clean", str(ingested), "-o", str(work / "rules"), "-q",
                 "--rule", "wrong_language=off", "--rule", "indonesian=off", "--rule", "near_duplicate=off"]
    runs.append(timed(rule_pass, "curate clean, rule pass (no langid, no near dups)"))
    print(runs[-1], flush=True)
    if not args.skip_all:
        runs.append(timed([CURATE, "clean", str(ingested), "-o", str(work / "all"), "-q"], "curate clean, all default rules"))
        print(runs[-1], flush=True)
    load1 = os.getloadavg()
    floor = runs[0]["seconds"]
    for r in runs:
        r["x_floor"] = round(r["seconds"] / floor, 2)
    print()
    print(f"== {args.rows:,} rows; load average before {load0[0]:.1f}, after {load1[0]:.1f} (2 cores, shared) ==")
    print(table(runs, ["label", "seconds", "x_floor", "cpu_seconds", "peak_rss_mb"]))
    final = work / ("all" if not args.skip_all else "rules")
    report = json.loads((final / "report.json").read_text())
    print()
    print(f"per rule, from {final}/report.json (seconds inside the process):")
    print(table([{k: r[k] for k in ("code", "action", "fixed", "flagged", "dropped", "seconds")} for r in report["rules"]],
                ["code", "action", "fixed", "flagged", "dropped", "seconds"]))
    print(f"outside the rules (s): {report.get('engine_seconds')}; whole clean() {report['seconds']} s")
    qsize = (final / "quarantine.parquet").stat().st_size
    print(f"quarantine.parquet: {qsize / 1e6:.1f} MB for {report['rows_dropped']:,} dropped rows; the input JSONL "
          f"is {corpus.stat().st_size / 1e6:.1f} MB")
    langs = next((r for r in report["rules"] if r["code"] == "wrong_language"), None)
    near = next((r for r in report["rules"] if r["code"] == "near_duplicate"), None)
    if langs and langs["seconds"]:
        print(f"language rules: {langs['seconds']:.1f} s (ingest's lang reused for the rows no fix changed)")
    exact = next((r for r in report["rules"] if r["code"] == "exact_duplicate"), None)
    if near and exact:
        print(f"exact + near duplicates (one dedupe pass): {exact['seconds'] + near['seconds']:.1f} s")
    rows, extra = quality(final, truth, args.rows)
    print()
    print("quality against the injected truth (recall: injected rows caught by the expected rule; precision: "
          "rows that rule matched that carry that issue):")
    print(table(rows, ["issue", "rules", "injected", "found", "recall", "matched", "precision"]))
    print(json.dumps(extra, indent=1))
    summary = {"rows": args.rows, "load": [load0[0], load1[0]], "runs": runs, "quality": rows, "extra": extra,
               "report_seconds": {r["code"]: r["seconds"] for r in report["rules"]}}
    (work / "bench.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
