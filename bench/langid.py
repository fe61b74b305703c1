"""Benchmark (and rebuild) curate.langid.

    .venv/bin/python bench/langid.py            # accuracy (5-fold CV) + speed table
    .venv/bin/python bench/langid.py --quick    # smaller speed runs
    .venv/bin/python bench/langid.py --train    # rewrite curate/data/msid_model.json
    .venv/bin/python bench/langid.py --export-wordfreq   # needs `pip install wordfreq`

Accuracy is measured on the parallel ms/id fixture (tests/data/fixtures/langid/
ms_id_pairs.tsv) by 5-fold cross-validation *by pair*: the naive-Bayes table
and the combination coefficients are learned on 4 folds and the full
``detect`` pipeline is scored on the held-out fold. lingua (restricted to
ms/id/en) and langdetect are scored on the same sentences for comparison.
"""

from __future__ import annotations

import argparse
import gzip
import math
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curate import langid  # noqa: E402
from tests import fixture_json  # noqa: E402

FIXTURES = ROOT / "tests" / "data" / "fixtures"
PAIRS = FIXTURES / "langid" / "ms_id_pairs.tsv"


def scores(preds):
    """(balanced accuracy over ms/id, acc ms, acc id)."""
    bal, per = langid.balanced_accuracy(preds)
    return bal, per["ms"], per["id"]


def lingua_preds(pairs):
    from lingua import Language, LanguageDetectorBuilder

    det = LanguageDetectorBuilder.from_languages(Language.MALAY, Language.INDONESIAN, Language.ENGLISH).build()
    code = {Language.MALAY: "ms", Language.INDONESIAN: "id", Language.ENGLISH: "en"}
    return [(lab, code.get(det.detect_language_of(t), "other")) for ms, idn in pairs for lab, t in (("ms", ms), ("id", idn))]


def langdetect_preds(pairs):
    from langdetect import DetectorFactory, detect

    DetectorFactory.seed = 0

    def one(t):
        try:
            return detect(t)
        except Exception:
            return "und"

    return [(lab, one(t)) for ms, idn in pairs for lab, t in (("ms", ms), ("id", idn))]


def fixture_texts(name: str, keys: tuple[str, ...]) -> list[str]:
    """Strings under ``keys`` in the records of one fixture file."""
    return [r[k] for r in fixture_json.records(name) for k in keys if isinstance(r.get(k), str) and r[k].strip()]


def real_rows(limit=6000):
    """Distinct real rows from the project fixtures (ms, id-ish, en, ko)."""
    texts = [t for t in fixture_json.every_string() if len(t) >= 20]
    random.Random(0).shuffle(texts)
    return texts[:limit]


def rate(fn, rows):
    """(rows/s by process CPU time, rows/s by wall clock); CPU time is steadier on a busy machine."""
    c0, t0 = time.process_time(), time.perf_counter()
    fn(rows)
    return len(rows) / (time.process_time() - c0), len(rows) / (time.perf_counter() - t0)


def speed(pairs, n_rows):
    sentences = [t for p in pairs for t in p]
    paragraphs = [" ".join(sentences[i : i + 4]) for i in range(0, len(sentences) - 4, 2)]
    rng = random.Random(0)
    sent_rows = [rng.choice(sentences) for _ in range(n_rows)]
    para_rows = [rng.choice(paragraphs) for _ in range(n_rows // 4)]
    mixed = real_rows()

    def fresh_detect_many(rows):  # cold token cache each run
        det = langid._Detector(langid._default_scorer())
        return [det.detect(t) for t in rows]

    from lingua import Language, LanguageDetectorBuilder

    lingua = LanguageDetectorBuilder.from_languages(Language.MALAY, Language.INDONESIAN, Language.ENGLISH).build()
    lingua_rows = sent_rows[:4000]
    langid.detect("warm up")  # load tables outside the timing
    langid.detect_column(["warm up"], fallback=False)  # ... the compiled column path's
    langid._lingua_guesses([(mode, "warm up") for mode in ("trigrams", "family")])  # ... and lingua's models
    return {
        "sentences": (len(sent_rows), rate(fresh_detect_many, sent_rows)),
        "paragraphs (4 sent.)": (len(para_rows), rate(fresh_detect_many, para_rows)),
        "real fixture rows (all distinct)": (len(mixed), rate(fresh_detect_many, mixed)),
        "real rows, detect_column (lingua batched)": (len(mixed), rate(lambda r: langid.detect_column(r), mixed)),
        "real rows, detect_column, no lingua": (len(mixed), rate(lambda r: langid.detect_column(r, fallback=False), mixed)),
        "paragraphs, detect_column, no lingua": (len(para_rows), rate(lambda r: langid.detect_column(r, fallback=False), para_rows)),
        "lingua ms/id/en, sentences": (len(lingua_rows), rate(lambda r: [lingua.detect_language_of(t) for t in r], lingua_rows)),
    }


def bench(quick: bool) -> None:
    pairs = langid.read_pairs(PAIRS)
    t0 = time.perf_counter()
    ours = scores(langid.cross_validate(pairs))
    cv_time = time.perf_counter() - t0
    lin = scores(lingua_preds(pairs))
    ld = scores(langdetect_preds(pairs))
    print(f"ms/id pairs: {len(pairs)} ({2 * len(pairs)} sentences)   CV: 5-fold by pair, {cv_time:.1f}s")
    print(f"{'detector':<34}{'bal.acc':>9}{'ms':>8}{'id':>8}")
    for name, (b, m, i) in (
        ("curate.langid (held-out folds)", ours),
        ("lingua ms/id/en", lin),
        ("langdetect (no 'ms' label)", ld),
    ):
        print(f"{name:<34}{b:>9.4f}{m:>8.4f}{i:>8.4f}")
    print()
    print(f"{'real fixture rows':<34}{'rows':>9}  labels (detect_many)")
    for name, keys in (
        ("chatdoctor.json", ("input", "output")),
        ("kochatgpt_ppo.jsonl", ("prompt",)),
        ("malay_chatdoctor.jsonl", ("input", "output")),
        ("malay_kochatgpt_sft.jsonl", ("prompt", "completion")),
    ):
        texts = fixture_texts(name, keys)
        counts = Counter(lab for lab, _ in langid.detect_many(texts))
        shares = " ".join(f"{lab}={n / len(texts):.3f}" for lab, n in counts.most_common(4))
        print(f"{name:<34}{len(texts):>9}  {shares}")
    print()
    print(f"{'speed':<44}{'rows':>9}{'rows/s cpu':>12}{'wall':>9}")
    for name, (n, (cpu, wall)) in speed(pairs, 40_000 if quick else 200_000).items():
        print(f"{name:<44}{n:>9}{cpu:>12.0f}{wall:>9.0f}")


# ------------------------------------------------------------ rebuilding --


def train() -> None:
    model = langid.train_msid(langid.read_pairs(PAIRS))
    langid._MODEL_PATH.write_text(json.dumps(model, ensure_ascii=False, indent=0, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {langid._MODEL_PATH} coef={model['coef']} words={len(model['nb'])}")


OTHER_LANGS = ("fr", "de", "es", "pt", "it", "nl", "fil", "tr", "vi")


def export_wordfreq(eps: float = 1e-7, clip: float = 5.0, min_abs: float = 0.1, vocab_zipf: float = 3.3) -> None:
    """Rebuild ``curate/data/langid_vocab.tsv.gz`` from wordfreq's word lists.

    Per letters-only word: the clipped log(f_ms/f_id) (kept when |v| >= min_abs)
    and a flag: ``f`` = Malay/Indonesian vocabulary (Zipf >= vocab_zipf in ms or
    id, and at least 10x rarer in English and in OTHER_LANGS), ``e`` = English
    vocabulary (Zipf >= vocab_zipf in English, 10x rarer in ms and id).
    """
    from importlib.metadata import version

    import wordfreq

    def zipf(f: float) -> float:
        return math.log10(f) + 9 if f > 0 else 0.0

    ms, idn, en = (wordfreq.get_frequency_dict(lang) for lang in ("ms", "id", "en"))
    others = [wordfreq.get_frequency_dict(lang) for lang in OTHER_LANGS]
    word = re.compile(r"[^\W\d_]+")
    rows = []
    for w in sorted(set(ms) | set(idn) | set(en)):
        if not word.fullmatch(w):
            continue
        f_msid = max(ms.get(w, 0.0), idn.get(w, 0.0))
        v = 0.0
        if f_msid > 0:
            v = max(-clip, min(clip, math.log((ms.get(w, 0.0) + eps) / (idn.get(w, 0.0) + eps))))
        z_msid, z_en = zipf(f_msid), zipf(en.get(w, 0.0))
        flag = ""
        if len(w) > 1 and z_msid >= vocab_zipf and z_en < z_msid - 1:
            if max(zipf(o.get(w, 0.0)) for o in others) < z_msid - 1:
                flag = "f"
        elif z_en >= vocab_zipf and z_msid < z_en - 1:
            flag = "e"
        if abs(v) >= min_abs or flag:
            rows.append(f"{w}\t{v:.2f}\t{flag}\n")
    header = (
        f"# word <TAB> log(freq_ms/freq_id) (eps={eps}, clipped to +-{clip}) <TAB> f=ms/id vocabulary, "
        f"e=English vocabulary (Zipf>={vocab_zipf}, 10x rarer elsewhere)\n"
        f"# from the word lists of wordfreq {version('wordfreq')} (R. Speer et al.; word-list data "
        "CC BY-SA 4.0). Rebuild: bench/langid.py --export-wordfreq\n"
    )
    data = (header + "".join(rows)).encode("utf-8")
    with open(langid._VOCAB_PATH, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as fh:
        fh.write(data)  # mtime=0: byte-identical rebuilds
    print(f"wrote {langid._VOCAB_PATH} ({len(rows)} words)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", action="store_true", help="retrain curate/data/msid_model.json on the fixture")
    ap.add_argument("--export-wordfreq", action="store_true", help="rebuild curate/data/langid_vocab.tsv.gz (needs wordfreq)")
    ap.add_argument("--quick", action="store_true", help="smaller speed runs")
    args = ap.parse_args()
    if args.export_wordfreq:
        export_wordfreq()
    if args.train:
        train()
    if not (args.train or args.export_wordfreq):
        bench(args.quick)


if __name__ == "__main__":
    main()
