"""Could a lighter library replace lingua as curate.langid's fallback for hard texts?

lingua decides the few texts the cheap steps leave undecided (``langid._Pending``), and loading its
models is most of what language id costs a big ingest beyond the compiled scan (~1.9 s of CPU:
a short hard text needs all five n-gram models of its 12 languages). This script collects the hard
texts of the fixtures (every string, the same strings cut to their first 3 and 6 words, every
ingested row, the ms/id pairs) and of the first 200k rows of the 1M bench corpus (if built:
``bench/ingest.py``), asks lingua and each candidate, and prints how often the candidate's guess
and the row's final label (``langid._finish``, what is stored) agree with lingua's, with each
candidate's load time. Measured 2026-11-30 (316 distinct hard texts): py3langid restricted to the
same 12 languages 63% of the guesses (final labels 52-76% by source), pycld2 59% (38-75%): not
adopted.

Rerun: pip install py3langid pycld2; .venv/bin/python bench/lingua_alternatives.py
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import polars as pl  # noqa: E402

from curate import langid, rowlang  # noqa: E402
from tests import fixture_json  # noqa: E402

CORPUS = ROOT / "bench" / "out" / "alpaca_1000000.jsonl"
FAMILY = ("en", "ms", "id")


def hard(texts) -> list[langid._Pending]:
    det = langid._default_detector()
    return [r for r in map(det.cheap, texts) if isinstance(r, langid._Pending)]


def sources() -> dict[str, list[langid._Pending]]:
    from curate.ingest import ingest

    strings = fixture_json.every_string()
    cut = [" ".join(s.split()[:k]) for s in strings for k in (3, 6) if len(s.split()) > k]
    files = [p for p in sorted((ROOT / "tests" / "data" / "fixtures").glob("*.json*"))
             if "schema" not in p.name and "seed" not in p.name]
    rows: list[str] = []
    for kind, df in ingest(files, detect_lang=False).frames.items():
        rows += df.select(rowlang.text_expr(kind).fill_null(""))[:, 0].to_list()
    pairs = [t for line in (ROOT / "tests/data/fixtures/langid/ms_id_pairs.tsv").read_text().splitlines()
             for t in line.split("\t")]
    out = {"fixture strings": hard(strings), "fixture strings, first 3/6 words": hard(cut),
           "fixture rows": hard(rows), "ms/id pairs": hard(pairs)}
    if CORPUS.exists():
        df = pl.read_ndjson(CORPUS, n_rows=200_000)
        out["1M corpus, first 200k rows"] = hard(df.select(rowlang.text_expr("sft"))[:, 0].unique().to_list())
    return out


def cld2():
    import pycld2

    def guess(text: str) -> tuple[str, float, float]:
        try:
            details = pycld2.detect(text)[2]
        except pycld2.error:
            return "other", 0.0, 0.5
        code = details[0][1]
        pct = {d[1]: d[2] for d in details}
        if code in ("ms", "id"):
            return code, (pct.get("ms", 0) + pct.get("id", 0)) / 100, pct.get("ms", 0) / (pct.get("ms", 0) + pct.get("id", 0))
        return (code if code == "en" else "other"), details[0][2] / 100, 0.5

    return guess


def py3langid():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    ident.set_languages(["en", "ms", "id", "fr", "de", "es", "pt", "it", "nl", "tl", "vi", "tr"])

    def guess(text: str) -> tuple[str, float, float]:
        p = dict(ident.rank(text))
        best = max(p, key=p.get)
        if best in ("ms", "id"):
            return best, p["ms"] + p["id"], p["ms"] / (p["ms"] + p["id"])
        return (best if best == "en" else "other"), p[best], 0.5

    return guess


def main() -> None:
    src = sources()
    by_text: dict[str, list[tuple[str, langid._Pending]]] = {}
    for name, pendings in src.items():
        for p in pendings:
            by_text.setdefault(langid.lingua_text(p.text), []).append((name, p))
    texts = list(by_text)  # each to the lingua detector curate gives it (langid.lingua_mode)
    lingua = dict(zip(texts, langid._lingua_guesses([(langid.lingua_mode(by_text[t][0][1]), t) for t in texts])))
    bias = langid._jit_tables()[3]
    print(f"{len(texts)} distinct hard texts; rows by source: " + ", ".join(f"{k} {len(v)}" for k, v in src.items()))
    for name, make in (("py3langid (12 languages)", py3langid), ("pycld2", cld2)):
        t0 = time.process_time()
        try:
            guess = make()
        except ImportError:
            print(f"{name}: not installed")
            continue
        load = time.process_time() - t0
        same_guess = 0
        rows, agree = Counter(), Counter()
        for text in texts:
            g = guess(text)
            same_guess += g[0] == lingua[text][0]
            for source, p in by_text[text]:
                rows[source] += 1
                agree[source] += langid._finish(p, g, bias)[0] == langid._finish(p, lingua[text], bias)[0]
        print(f"{name}: load {load:.2f} s CPU; guess agrees with lingua's on {same_guess}/{len(texts)} "
              f"({same_guess / len(texts):.0%}); final label by source: "
              + ", ".join(f"{k} {agree[k]}/{rows[k]}" for k in rows))


if __name__ == "__main__":
    main()
