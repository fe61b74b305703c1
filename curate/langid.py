"""Language identification for curate: Malay vs Indonesian first, plus en/ko/other.

Labels: ``ms`` Malay, ``id`` Indonesian, ``en`` English, ``ko`` Korean,
``other`` anything else, ``und`` nothing to decide on (empty / only code or URLs).

How a text is decided (cheap steps first, lingua only as a fallback):

1. Code blocks, inline code, URLs, e-mails and HTML tags are stripped.
2. Script: Hangul -> ``ko``; another non-Latin script (CJK, Cyrillic, Arabic,
   Thai, ...) -> ``other``.
3. Latin text: English vs the Malay/Indonesian family by the share of words
   that belong to each vocabulary (wordfreq-derived lists of words at least
   10x rarer in the other languages, plus function-word lists). Texts with
   too little evidence (labels, headings, other Latin-script languages) go
   to lingua, restricted to 12 languages by trigrams (a short mix of
   English/Malay/Indonesian: those 3 languages' values only,
   :func:`lingua_mode`). A text of a few words gets a confidence of at most
   ~0.5.
4. Malay vs Indonesian: a linear score summed over words,
   ``score = bias + sum_w (a*lex(w) + b*nb(w) + c*wf(w))`` where

   * ``lex``: hand lexicon ``data/ms_id_lexicon.tsv`` (+1 Malay marker,
     -1 Indonesian marker, half for weak markers), written from general
     knowledge of the two standards (kerana/karena, wang/uang, ...);
   * ``wf``: clipped log frequency ratio Malay/Indonesian from the wordfreq
     word lists (``data/langid_vocab.tsv.gz``, independent of any fixture);
   * ``nb``: naive-Bayes log ratio learned from parallel ms/id sentences
     (``data/msid_model.json``), and ``a, b, c, bias`` fitted by logistic
     regression on inner cross-validation scores (see :func:`train_msid`).

   The tables collapse into one weight per word; a row is scored with
   ``str.split`` and cached per-chunk look-ups (see :class:`_TokenCache`),
   which is what makes ``detect_many`` fast. A capitalised ``Anda`` in the
   middle of a sentence (the Indonesian convention) becomes the pseudo-word
   ``andacap``.

Public API: :func:`detect`, :func:`detect_many`, :func:`detect_frame`,
:func:`detect_expr`, :data:`MS_ID_MARKERS`, :func:`fix_indonesian`,
:func:`train_msid` / :func:`cross_validate` (used by ``bench/langid.py`` to
rebuild and evaluate the model).
"""

from __future__ import annotations

import gzip
import json
import math
import os
import random
import re
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, NamedTuple, Sequence

import numpy as np
import polars as pl

from curate.arrow_text import utf8_buffers
from curate.lingua_worker import CHARS as LINGUA_CHARS, DETECTORS as LINGUA_DETECTORS, MODES as LINGUA_MODES

__all__ = [
    "LANGS",
    "MS_ID_MARKERS",
    "detect",
    "detect_many",
    "detect_frame",
    "detect_expr",
    "detect_column",
    "fix_indonesian",
    "train_msid",
    "cross_validate",
    "balanced_accuracy",
    "MsIdScorer",
]

LANGS = ("ms", "id", "en", "ko", "other", "und")
UND: tuple[str, float] = ("und", 0.0)

_DATA = Path(__file__).with_name("data")
_LEXICON_PATH = _DATA / "ms_id_lexicon.tsv"
_VOCAB_PATH = _DATA / "langid_vocab.tsv.gz"
_MODEL_PATH = _DATA / "msid_model.json"

_MAX_CHARS = 4000  # only the first few thousand characters are looked at (< 8192)

# ---------------------------------------------------------------- cleaning --

_FENCE = re.compile(r"```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z)", re.S)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_URL = re.compile(r"(?:https?://|ftp://|www\.)\S+", re.I)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
_HTML = re.compile(r"</?[A-Za-z][^<>\n]{0,200}>")


def _clean(text: str) -> str:
    """Drop code, URLs, e-mail addresses and HTML tags (each only if present)."""
    if "`" in text:
        text = _INLINE_CODE.sub(" ", _FENCE.sub(" ", text))
    if "~~~" in text:
        text = _FENCE.sub(" ", text)
    if "://" in text or "www." in text:
        text = _URL.sub(" ", text)
    if "@" in text:
        text = _EMAIL.sub(" ", text)
    if "<" in text:
        text = _HTML.sub(" ", text)
    return text


# ------------------------------------------------------------------ script --

_WORD = re.compile(r"[^\W\d_]+")
_NON_LATIN = re.compile(r"[^\W\d_A-Za-z\u00C0-\u024F\u1E00-\u1EFF]")
_HANGUL = re.compile(r"[\uAC00-\uD7A3\u1100-\u11FF\u3130-\u318F]")
_CJK = re.compile(r"[\u3040-\u30FF\u3400-\u4DBF\u4E00-\u9FFF\uF900-\uFAFF]")
_LATIN = re.compile(r"[A-Za-z\u00C0-\u024F\u1E00-\u1EFF]")
_ANDA_MID = re.compile(r"(?<=[^\W_])([,;:]?\s+)Anda\b")


def _script(text: str) -> tuple[str, float] | None:
    """Decide non-Latin texts: ('ko'|'other', conf), or None if Latin wins.

    Hangul and CJK characters count 3x (one syllable ~ three Latin letters).
    """
    hangul = len(_HANGUL.findall(text)) * 3
    cjk = len(_CJK.findall(text)) * 3
    other = len(_NON_LATIN.findall(text)) - (hangul + cjk) // 3
    latin = len(_LATIN.findall(text))
    total = hangul + cjk + other + latin
    if total == 0:
        return None
    if hangul < max(cjk + other, latin) and cjk + other <= latin:
        return None
    label, share = ("ko", hangul) if hangul >= cjk + other else ("other", cjk + other)
    n_words = max(len(text.split()), cjk // 6)  # Chinese/Japanese: ~2 characters a word
    conf = min(1.0, 0.5 + share / total / 2) * _length_factor(n_words)
    return label, round(conf, 3)


def _length_factor(n_words: int) -> float:
    """Confidence cap for short texts: 1 word -> 0.3, 5+ words -> 1."""
    return min(1.0, 0.3 + 0.7 * (n_words - 1) / 4) if n_words > 0 else 0.0


# --------------------------------------------------- English vs ms/id family --

_EN_STOP = frozenset(
    """the of and to is in that for it with as was on are be this by you not or
    have has had from at but an they which we he she his her their there what can
    will would should could if your my do does did how who all been were more also
    about than then them these those some into out when where why i me our us just
    any each its may such very a isn don doesn didn won let
    here because only other most many much well being over after before between
    through while both same own again few"""
    .split()
)
_MSID_STOP = frozenset(
    """yang dan di ini itu untuk dengan tidak ada dalam akan pada ke dari kepada oleh
    atau juga saya anda kami kita mereka dia ia adalah ialah telah sudah boleh bisa
    dapat lebih sangat seperti kerana karena bahawa bahwa tetapi jika kalau apa
    bagaimana mengapa kenapa hanya lagi masih sebagai antara serta namun para semua
    setiap banyak tersebut agar supaya bagi tentang mengenai daripada belum bukan
    saja sahaja pun sebuah seorang iaitu yaitu sedang harus perlu ingin mahu mau
    begitu kamu aku tak tiada nya lah sini sana kerja yg dgn utk tdk sebab
    selepas setelah apabila ketika beliau mempunyai memiliki berkata mengatakan
    secara sehingga hingga sejak selama semasa kemudian walaupun meskipun kini
    sekarang diri sendiri jadi menjadi merupakan terhadap ataupun maka"""
    .split()
)
_EN_SAFE = _EN_STOP - _MSID_STOP

# lingua fallback: one detector (curate.lingua_worker.DETECTORS), 12 languages by trigrams, a hard text
# decided by all of them or by English/Malay/Indonesian only (lingua_mode). Built on first use; its
# models load in ~0.15 s of CPU (all n-gram lengths of all 12 languages took ~1.7 s and ~250 MB).
_LINGUA_CODE = {"ENGLISH": "en", "MALAY": "ms", "INDONESIAN": "id"}


class _Lingua:
    """lingua's detectors (:data:`curate.lingua_worker.DETECTORS`) by name, each built on first use."""

    def __init__(self) -> None:
        self.detectors: dict[str, object] = {}

    def __getitem__(self, name: str):
        if name not in self.detectors:
            from curate.lingua_worker import detector

            languages, low_accuracy = LINGUA_DETECTORS[name]
            self.detectors[name] = detector(languages, low_accuracy)
        return self.detectors[name]

    def unload_language_models(self) -> None:
        """Every detector's models unloaded (a later use loads them again)."""
        for lingua in self.detectors.values():
            lingua.unload_language_models()  # type: ignore[attr-defined]


@lru_cache(maxsize=1)
def _lingua() -> _Lingua:
    return _Lingua()


_LINGUA_CHARS = LINGUA_CHARS  # lingua reads this much of a hard text


_DIGITS = re.compile(r"[0-9]+")


def lingua_text(text: str) -> str:
    """What lingua is given of a hard text: its first :data:`_LINGUA_CHARS` characters, each run of
    ASCII digits as one ``0``. lingua drops digits (and punctuation) before it looks at a text, and a
    run of digits stays a run of non-space characters, so lingua sees the same text either way and
    gives the same values; texts that differ only in their numbers (templates, counters, sums) are
    then one text, computed once (:func:`start_detect_utf8` sends each distinct one)."""
    return _DIGITS.sub("0", text[:_LINGUA_CHARS])


#: lingua's high-accuracy mode reads only the trigrams of a text of at least this many letters (what
#: its low-accuracy mode reads of any text: the same values, to ~1e-12).
_LONG_LETTERS = 120


def lingua_mode(pending: "_Pending") -> str:
    """How lingua decides a hard text (:data:`curate.lingua_worker.MODES`).

    ``trigrams`` (the 12 languages, trigram models only): a text of at least :data:`_LONG_LETTERS`
    letters, where lingua's high-accuracy mode reads the same trigrams (the same verdicts on all
    ~5,000 such texts of the two 1M benchmark corpora); and a short text of several words, few of
    them (fewer than 2, or than a third of its counted words) English or ms/id vocabulary: another
    language ('Le gouvernement a annoncé ...'), names, code.
    ``family`` (the same trigram values, English's, Malay's and Indonesian's only): a short text
    with more of that vocabulary, a mix of the three, which all 12 languages' trigrams often take for
    Tagalog or Turkish ('The dog ate the cake. Saya faham.'); and a single word ('yes', 'Pandemik'),
    which they mostly take for another language.

    Not all 12 languages at every n-gram length (what curate did first: their models cost ~1.7 s of
    CPU to load, for a few short texts), nor the 3 languages at every n-gram length (until
    2026-12-01: ~0.55 s of CPU for the ~150 short mixes of a 1M-row corpus). The verdicts each
    change made: README (ingest)."""
    return lingua_item(pending)[0]


def lingua_item(pending: "_Pending") -> tuple[str, str]:
    """(:func:`lingua_mode`, :func:`lingua_text`) of a hard text, what it is sent to lingua as: its
    lingua text made once (the mode is read from it)."""
    text = lingua_text(pending.text)
    words = _WORD.findall(text)
    if sum(map(len, words)) >= _LONG_LETTERS:
        return "trigrams", text
    return ("family" if pending.vocab >= max(2, pending.n / 3) or len(words) == 1 else "trigrams"), text


def _lingua_guess(pending: "_Pending") -> tuple[str, float, float]:
    """(label, confidence, p_malay_given_family) from lingua for a hard text."""
    return _lingua_guesses([(lingua_mode(pending), pending.text)])[0]


def _lingua_guesses(items: list[tuple[str, str]]) -> list[tuple[str, float, float]]:
    """:func:`_lingua_guess` of many ``(mode, text)`` items (:func:`lingua_mode`), each
    detector's texts in one parallel lingua call."""
    from curate.lingua_worker import guesses

    lingua = _lingua()
    detectors = {name: lingua[name] for name in dict.fromkeys(LINGUA_MODES[mode][0] for mode, _ in items)}
    return [_guess_of_pairs(p) for p in guesses(detectors, [(mode, lingua_text(t)) for mode, t in items])]


def _guess_of_pairs(pairs) -> tuple[str, float, float]:
    """(label, confidence, p_malay_given_family) from lingua's (language name, confidence) pairs, best first."""
    if not pairs:
        return "other", 0.0, 0.5
    conf = dict(pairs)
    best_name, best_value = pairs[0]
    label = _LINGUA_CODE.get(best_name, "other")
    ms, idn = conf.get("MALAY", 0.0), conf.get("INDONESIAN", 0.0)
    if label in ("ms", "id"):
        return label, ms + idn, ms / (ms + idn)
    return label, best_value, 0.5


def lingua_worker():
    """A :class:`curate.lingua_worker.LinguaWorker` with the fallback's detectors (a big job's
    lingua turns in a helper process; see :func:`start_detect_column`): the one started at the
    command's start (:func:`curate.lingua_worker.start_early`) if any."""
    from curate.lingua_worker import take

    return take(LINGUA_DETECTORS, _LINGUA_CHARS)


# ------------------------------------------------------------ ms/id lexicon --


def _split_flags(line: str) -> tuple[str, str, str] | None:
    line = line.rstrip("\n")
    if not line.strip() or line.startswith("#"):
        return None
    idw, msw, flags = line.split("\t")
    return idw, msw, flags


@lru_cache(maxsize=1)
def _lexicon() -> tuple[dict[str, str], dict[str, float]]:
    """Parse ``ms_id_lexicon.tsv`` -> (fix pairs id->ms, marker weights)."""
    fixes: dict[str, str] = {}
    weights: Counter[str] = Counter()
    for line in _LEXICON_PATH.read_text(encoding="utf-8").splitlines():
        row = _split_flags(line)
        if row is None:
            continue
        idw, msw, flags = row
        strength = 0.5 if "w" in flags else 1.0
        if "f" in flags and idw != "-" and msw != "-":
            fixes[idw] = msw
        if "i" in flags and _WORD.fullmatch(idw):
            weights[idw] -= strength
        if "m" in flags and _WORD.fullmatch(msw):
            weights[msw] += strength
    weights["andacap"] -= 1.0  # mid-sentence "Anda" (Indonesian convention)
    return fixes, {w: v for w, v in weights.items() if v}


MS_ID_MARKERS: dict[str, str] = dict(_lexicon()[0])
"""Unambiguous Indonesian -> Malay swaps (lower case; some keys are phrases)."""


@lru_cache(maxsize=1)
def _vocab() -> tuple[dict[str, float], frozenset[str], frozenset[str]]:
    """wordfreq-derived tables: (log f_ms/f_id per word, ms/id vocabulary, English vocabulary)."""
    ratio: dict[str, float] = {}
    fam: set[str] = set()
    eng: set[str] = set()
    with gzip.open(_VOCAB_PATH, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("#"):
                continue
            word, value, flag = line.rstrip("\n").split("\t")
            if value != "0.00":
                ratio[word] = float(value)
            if flag == "f":
                fam.add(word)
            elif flag == "e":
                eng.add(word)
    return ratio, frozenset(fam), frozenset(eng)


def _wordfreq() -> dict[str, float]:
    return _vocab()[0]


@lru_cache(maxsize=1)
def _family_words() -> tuple[frozenset[str], frozenset[str]]:
    """(words that mark the ms/id family, words that mark English)."""
    _, fam, eng = _vocab()
    lex = {w for w in _lexicon()[1] if w not in eng and w != "andacap"}
    return frozenset(fam | lex | (_MSID_STOP - _EN_STOP)), frozenset(eng | _EN_SAFE)


def _words(text: str) -> list[str]:
    """Lower-cased words; mid-sentence 'Anda' becomes the pseudo-word 'andacap'."""
    if "Anda" in text:
        text = _ANDA_MID.sub(r"\1andacap", text)
    return [w.lower() for w in _WORD.findall(text)]


# ------------------------------------------------------------------ training --

_NB_ALPHA = 0.3


def _nb_weights(pairs: Sequence[tuple[str, str]], alpha: float = _NB_ALPHA) -> dict[str, float]:
    """Naive-Bayes log ratio log P(w|ms)/P(w|id) over words of parallel pairs."""
    cm: Counter[str] = Counter()
    ci: Counter[str] = Counter()
    for ms, idn in pairs:
        cm.update(_words(ms))
        ci.update(_words(idn))
    vocab = set(cm) | set(ci)
    nm = sum(cm.values()) + alpha * len(vocab)
    ni = sum(ci.values()) + alpha * len(vocab)
    return {w: math.log((cm[w] + alpha) / nm) - math.log((ci[w] + alpha) / ni) for w in vocab}


def _component_sums(words: list[str], tables: Sequence[dict[str, float]]) -> list[float]:
    return [sum(t.get(w, 0.0) for w in words) for t in tables]


def _fit_logistic(x: list[list[float]], y: list[int], l2: float = 1e-3, iters: int = 25) -> list[float]:
    """Logistic regression by Newton's method (few features, pure Python).

    Returns weights with the intercept last.
    """
    k = len(x[0]) + 1
    rows = [r + [1.0] for r in x]
    w = [0.0] * k
    for _ in range(iters):
        grad = [0.0] * k
        hess = [[0.0] * k for _ in range(k)]
        for r, t in zip(rows, y):
            z = max(-30.0, min(30.0, sum(a * b for a, b in zip(w, r))))
            p = 1.0 / (1.0 + math.exp(-z))
            s = p * (1 - p)
            for i in range(k):
                grad[i] += (p - t) * r[i]
                for j in range(k):
                    hess[i][j] += s * r[i] * r[j]
        for i in range(k - 1):  # no penalty on the intercept
            grad[i] += l2 * len(rows) * w[i]
            hess[i][i] += l2 * len(rows)
        step = _solve(hess, grad)
        w = [a - b for a, b in zip(w, step)]
        if max(abs(s) for s in step) < 1e-7:
            break
    return w


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    """Solve a small linear system by Gaussian elimination with pivoting."""
    n = len(b)
    m = [row[:] + [b[i]] for i, row in enumerate(a)]
    for c in range(n):
        p = max(range(c, n), key=lambda r: abs(m[r][c]))
        m[c], m[p] = m[p], m[c]
        if abs(m[c][c]) < 1e-12:
            continue
        for r in range(n):
            if r != c:
                f = m[r][c] / m[c][c]
                m[r] = [x - f * y for x, y in zip(m[r], m[c])]
    return [m[i][n] / m[i][i] if abs(m[i][i]) >= 1e-12 else 0.0 for i in range(n)]


def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """Read parallel (Malay, Indonesian) sentences: one pair per line, the two separated by a tab.

    The input of :func:`train_msid` and :func:`cross_validate`. A line without exactly one tab is
    an error naming the file and line.
    """
    pairs = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split("\t")
        if len(parts) != 2:
            raise ValueError(f"{path}:{n}: expected 'Malay<TAB>Indonesian', found {len(parts) - 1} tabs")
        pairs.append((parts[0], parts[1]))
    return pairs


def train_msid(pairs: Sequence[tuple[str, str]], folds: int = 5, seed: int = 0) -> dict:
    """Learn the data-dependent part of the Malay/Indonesian scorer.

    ``pairs`` are (Malay, Indonesian) translations of the same sentence.
    Naive-Bayes word weights are learned on all pairs; the combination
    coefficients (lexicon, naive Bayes, wordfreq, bias) are fitted by logistic
    regression on *out-of-fold* naive-Bayes scores (inner ``folds``-fold CV by
    pair), so they are not fooled by the NB table's fit to its own data.
    """
    lex, wf = _lexicon()[1], _wordfreq()
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    x: list[list[float]] = []
    y: list[int] = []
    for k in range(folds):
        held = set(order[k::folds])
        nb = _nb_weights([p for i, p in enumerate(pairs) if i not in held])
        for i in held:
            for label, text in ((1, pairs[i][0]), (0, pairs[i][1])):
                x.append(_component_sums(_words(text), (lex, nb, wf)))
                y.append(label)
    a, b, c, bias = _fit_logistic(x, y)
    nb = _nb_weights(pairs)
    return {
        "about": "ms/id scorer: score = bias + sum_w(lex*lex_w + nb*nb_w + wf*wf_w); "
        "rebuild with `python bench/langid.py --train`",
        "n_pairs": len(pairs),
        "nb_alpha": _NB_ALPHA,
        "coef": {"lex": round(a, 5), "nb": round(b, 5), "wf": round(c, 5), "bias": round(bias, 5)},
        "nb": {w: round(v, 3) for w, v in sorted(nb.items()) if abs(v) >= 0.005},
    }


def cross_validate(pairs: Sequence[tuple[str, str]], folds: int = 5, seed: int = 0) -> list[tuple[str, str]]:
    """Held-out predictions of the full :func:`detect` pipeline, ``folds``-fold CV by pair.

    For each fold the fixture-dependent part is retrained (:func:`train_msid`)
    on the other folds. Returns ``[(true_label, predicted_label), ...]`` for
    both sentences of every pair.
    """
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    out: list[tuple[str, str]] = []
    for k in range(folds):
        held = set(order[k::folds])
        model = train_msid([p for i, p in enumerate(pairs) if i not in held], folds=folds, seed=seed)
        det = _Detector(MsIdScorer(model))
        for i in sorted(held):
            out.append(("ms", det.detect(pairs[i][0])[0]))
            out.append(("id", det.detect(pairs[i][1])[0]))
    return out


def balanced_accuracy(preds: Iterable[tuple[str, str]], labels: Sequence[str] = ("ms", "id")) -> tuple[float, dict[str, float]]:
    """(mean per-class recall over ``labels``, {label: recall}) for (true, predicted) pairs."""
    hits: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    for true, pred in preds:
        seen[true] += 1
        hits[true] += true == pred
    per = {lab: hits[lab] / seen[lab] for lab in labels if seen[lab]}
    return sum(per.values()) / len(per), per


# ------------------------------------------------------------------- scorer --


class MsIdScorer:
    """Per-word weight table for Malay (+) vs Indonesian (-)."""

    def __init__(self, model: dict):
        coef = model["coef"]
        lex, wf, nb = _lexicon()[1], _wordfreq(), model["nb"]
        self.bias = coef["bias"]
        weights: dict[str, float] = {}
        for table, scale in ((lex, coef["lex"]), (nb, coef["nb"]), (wf, coef["wf"])):
            for w, v in table.items():
                weights[w] = weights.get(w, 0.0) + scale * v
        self.weights = weights

    def score(self, text: str) -> float:
        """Log-odds that ``text`` is Malay rather than Indonesian."""
        get = self.weights.get
        return self.bias + sum(get(w, 0.0) for w in _words(text))

    def predict(self, text: str) -> str:
        return "ms" if self.score(text) > 0 else "id"


@lru_cache(maxsize=1)
def _default_scorer() -> MsIdScorer:
    return MsIdScorer(json.loads(_MODEL_PATH.read_text(encoding="utf-8")))


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


# ------------------------------------------------------------------ detect --


_FAMILY_SHARE = 0.4  # share of words that must be ms/id (or English) vocabulary


class _TokenCache(dict):
    """Whitespace-delimited chunk -> packed facts, computed on first sight.

    A chunk (``"kerana,"``, ``"kanak-kanak"``, ``"“Saya"``) holds zero or more
    words (letter runs). Its value is a complex number so that a whole row is
    summed by one C-level ``sum(map(cache.__getitem__, text.split()))``:

    * real part: summed ms/id weight of its words;
    * imaginary part: three counters packed in 12-bit fields,
      ``n_english + n_msid << 12 + n_counted << 24``. ``n_counted`` skips
      capitalised words found in neither vocabulary (mostly names), which do
      not enter the vocabulary shares. Rows are cut to ``_MAX_CHARS`` (< 2*4096
      characters), so no field can overflow.
    """

    LIMIT = 200_000  # entries; cleared when full (bounded memory)

    def __init__(self, weights: dict[str, float], fam: frozenset[str], eng: frozenset[str]):
        super().__init__()
        self.weights, self.fam, self.eng = weights, fam, eng

    def __missing__(self, chunk: str) -> complex:
        weight, packed = 0.0, 0
        for word in _WORD.findall(chunk):
            low = word.lower()
            en, fam = low in self.eng, low in self.fam
            weight += self.weights.get(low, 0.0)
            packed += en + (fam << 12) + ((en or fam or word[0].islower()) << 24)
        value = complex(weight, packed)
        if len(self) >= self.LIMIT:
            self.clear()
        self[chunk] = value
        return value


class _Pending(NamedTuple):
    """A text the cheap steps could not decide: lingua's turn. ``n``: its counted words, ``vocab``:
    how many of them are English or ms/id vocabulary (:func:`lingua_mode`)."""
    text: str
    score: float
    n: int
    vocab: int


class _Detector:
    """Per-row decision logic; :meth:`detect` is the hot path."""

    def __init__(self, scorer: MsIdScorer):
        self.scorer = scorer
        self.cache = _TokenCache(scorer.weights, *_family_words())

    def detect(self, text: str | None, fallback: bool = True) -> tuple[str, float]:
        r = self.cheap(text)
        if not isinstance(r, _Pending):
            return r
        if not fallback:
            return UND  # the caller takes "undecided" over loading lingua's models (seconds)
        return self.finish(r, _lingua_guess(r))

    def cheap(self, text: str | None) -> tuple[str, float] | _Pending:
        """The cheap steps: a decision, or what lingua must decide (little or mixed evidence)."""
        if not text:
            return UND
        text = _clean(text[:_MAX_CHARS])
        if not text.isascii() and _NON_LATIN.search(text):
            decided = _script(text)
            if decided is not None:
                return decided
        marked = _ANDA_MID.sub(r"\1andacap", text) if "Anda" in text else text
        total = sum(map(self.cache.__getitem__, marked.split()))
        score = self.scorer.bias + total.real
        packed = int(total.imag)
        n_en, n_fam, n = packed & 4095, (packed >> 12) & 4095, packed >> 24
        if n == 0:
            words = _WORD.findall(text)
            if not words:
                return UND
            n = len(words)
        if n_fam >= _FAMILY_SHARE * n and n_fam >= 2 * n_en:
            return _msid(score, (n_fam + 1) / (n_fam + n_en + 2) * _length_factor(n))
        if n_en >= _FAMILY_SHARE * n and n_en >= 2 * n_fam:
            return "en", round((n_en + 1) / (n_fam + n_en + 2) * _length_factor(n), 3)
        return _Pending(text, score, n, n_en + n_fam)

    def finish(self, pending: _Pending, guess: tuple[str, float, float]) -> tuple[str, float]:
        """The decision for a text the cheap steps left to lingua, from lingua's ``guess``."""
        return _finish(pending, guess, self.scorer.bias)


def _finish(pending: _Pending, guess: tuple[str, float, float], bias: float) -> tuple[str, float]:
    """The decision for a text the cheap steps left to lingua, from lingua's ``guess`` (``bias``:
    the ms/id scorer's, the score of a text without an informative word)."""
    label, conf, p_ms = guess
    conf *= _length_factor(pending.n)
    if label not in ("ms", "id"):
        return label, round(conf, 3)
    if abs(pending.score - bias) < 1e-9:  # no informative word: trust lingua
        return ("ms" if p_ms >= 0.5 else "id"), round(conf * max(p_ms, 1 - p_ms), 3)
    return _msid(pending.score, conf)


def _msid(score: float, fam_conf: float) -> tuple[str, float]:
    p = _sigmoid(score)
    label = "ms" if p >= 0.5 else "id"
    return label, round(fam_conf * max(p, 1 - p), 3)


@lru_cache(maxsize=1)
def _default_detector() -> _Detector:
    return _Detector(_default_scorer())


def detect(text: str, fallback: bool = True) -> tuple[str, float]:
    """Return (label, confidence) with label in :data:`LANGS`.

    Empty or code/URL-only text gives ``("und", 0.0)``. Short texts (a word or
    two) get a confidence of at most ~0.5. ``fallback=False``: the cheap steps
    only; a text they cannot decide gives ``("und", 0.0)`` instead of loading
    lingua (which takes seconds the first time).
    """
    return _default_detector().detect(text, fallback)


def detect_many(texts: Iterable[str | None], fallback: bool = True) -> list[tuple[str, float]]:
    """:func:`detect` over many texts (shares the per-token cache; fast path)."""
    run = _default_detector().detect
    return [run(t, fallback) for t in texts]


def detect_frame(df: pl.DataFrame, column: str) -> pl.DataFrame:
    """Return ``df`` with ``lang`` (str) and ``lang_conf`` (f64) columns added (:func:`detect_column`)."""
    return df.with_columns(detect_column(df.get_column(column)))


def detect_expr(col: str | pl.Expr) -> pl.Expr:
    """Polars expression giving a struct ``{lang: str, lang_conf: f64}`` per row.

    Use as ``df.with_columns(detect_expr("text").alias("l")).unnest("l")``.
    """
    expr = pl.col(col) if isinstance(col, str) else col
    dtype = pl.Struct({"lang": pl.String, "lang_conf": pl.Float64})

    def run(s: pl.Series) -> pl.Series:
        return detect_column(s).to_struct(s.name)

    return expr.map_batches(run, return_dtype=dtype, is_elementwise=True)


# ------------------------------------------------------------ whole columns --


_CLEAN_TRIGGERS = ["`", "~~~", "://", "www.", "@", "<"]  # what makes _clean do anything


def detect_column(texts: pl.Series | Sequence[str | None], *, fallback: bool = True) -> pl.DataFrame:
    """:func:`detect` of every text of a column, as a frame ``lang, lang_conf`` (same order).

    The cheap steps run compiled over the column's bytes (:mod:`curate.langid_jit`, same verdicts
    as the per-text path; code, URLs and tags are first removed in Python from the rows holding a
    trigger character); the few texts they leave undecided go to lingua in one parallel batch
    (``compute_language_confidence_values_in_parallel``) instead of one call each."""
    return start_detect_column(texts, fallback=fallback)()


def start_detect_column(texts: pl.Series | Sequence[str | None], *, fallback: bool = True,
                        worker=None) -> Callable[[], pl.DataFrame]:
    """:func:`detect_column` in two steps: this call does the cheap steps and hands the undecided
    texts to lingua, in ``worker`` (:func:`lingua_worker`) when given, so that lingua works while the
    caller goes on; the returned function waits for lingua and gives the frame (its ``ready()``
    tells whether it would wait)."""
    from curate import langid_jit as jit

    series = texts if isinstance(texts, pl.Series) else pl.Series("text", list(texts), dtype=pl.String)
    if not jit.AVAILABLE or series.dtype != pl.String:
        frame = _detect_column_per_text(series.to_list(), fallback)
        return lambda: frame
    cut = series.fill_null("") if series.null_count() else series
    if len(cut) and (cut.str.len_bytes().max() or 0) > _MAX_CHARS:  # type: ignore[operator]
        cut = cut.str.slice(0, _MAX_CHARS)
    return start_detect_utf8(*utf8_buffers(cut), fallback=fallback, worker=worker)


def start_detect_utf8(data: np.ndarray, offsets: np.ndarray, *, fallback: bool = True,
                      worker=None) -> Callable[[], pl.DataFrame]:
    """:func:`start_detect_column` of texts given as UTF-8 bytes (text i at
    ``data[offsets[i]:offsets[i+1]]``, at most ``_MAX_CHARS`` characters each, nulls as empty
    texts): what the compiled path works on, so a caller holding the bytes already skips the column."""
    from curate import langid_jit as jit

    bias = _jit_tables()[3]

    def text(i: int) -> str:
        return data[offsets[i]:offsets[i + 1]].tobytes().decode("utf-8")

    code, conf, score, nwords, vocab, dirty = _scan(data, offsets)
    dirty_idx = np.flatnonzero(dirty)
    cleaned: dict[int, str] = {}
    if len(dirty_idx):  # code, URLs, tags: removed in Python, then those rows scanned again
        cleaned = {i: _clean(text(i)) for i in dirty_idx.tolist()}
        again = _scan(*utf8_buffers(pl.Series(list(cleaned.values()), dtype=pl.String)))
        for arr, part in zip((code, conf, score, nwords, vocab), again):
            arr[dirty_idx] = part
    lang = pl.Series("lang", code, dtype=pl.Int8).replace_strict(
        list(range(len(jit.CODES))), list(jit.CODES), default=None, return_dtype=pl.String)
    conf = _round3(conf)
    late: dict[int, tuple[str, float] | _Pending] = {}
    for i in np.flatnonzero(code == jit.PENDING).tolist():
        late[i] = _Pending(cleaned[i] if i in cleaned else text(i), float(score[i]), int(nwords[i]), int(vocab[i]))
    for i in np.flatnonzero(code == jit.PY).tolist():
        late[i] = _default_detector().cheap(text(i))
    pending = [i for i, r in late.items() if isinstance(r, _Pending)]
    guesses: Callable[[], list[tuple[str, float, float]]] | None = None
    if pending and fallback:
        seen = {i: lingua_item(late[i]) for i in pending}  # type: ignore[arg-type]
        distinct = list(dict.fromkeys(seen.values()))  # repeated labels, headings, templates: once each
        guesses = worker.submit(distinct) if worker is not None else (lambda: _lingua_guesses(distinct))
    else:
        late.update((i, UND) for i in pending)

    def finish() -> pl.DataFrame:
        nonlocal lang
        if guesses is not None:
            guess = dict(zip(distinct, guesses()))
            for i in pending:
                late[i] = _finish(late[i], guess[seen[i]], bias)  # type: ignore[arg-type,union-attr]
        if late:
            idx = list(late)
            lang = lang.scatter(idx, [late[i][0] for i in idx])  # type: ignore[index]
            conf[idx] = [late[i][1] for i in idx]  # type: ignore[index]
        return pl.DataFrame({"lang": lang, "lang_conf": conf}, schema={"lang": pl.String, "lang_conf": pl.Float64})

    # whether finish() would give the frame without waiting for lingua's helper process
    finish.ready = getattr(guesses, "done", lambda: True)  # type: ignore[attr-defined]
    return finish


def _scan(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, ...]:
    """(code, confidence before rounding, ms/id score, counted words, English or ms/id vocabulary
    words among them, needs cleaning) per text (UTF-8 ``data``, text i at ``offsets[i]:offsets[i+1]``,
    cut) by the compiled cheap steps. The kernel runs without the GIL, so a long column is split over
    one thread per core."""
    from curate import langid_jit as jit

    n = len(offsets) - 1
    data, offsets = _read_only(data), _read_only(offsets)
    out = (np.empty(n, np.int8), np.empty(n), np.empty(n), np.empty(n, np.int64), np.empty(n, np.int64),
           np.empty(n, np.bool_))
    flags, lower, table, bias = _jit_tables()

    def part(a: int, b: int) -> None:
        jit.scan(data, offsets[a:b + 1], flags, lower, *table, bias, _FAMILY_SHARE, *(x[a:b] for x in out))

    threads = min(os.cpu_count() or 1, 4, max(1, n // _ROWS_PER_THREAD))
    if threads == 1:
        part(0, n)
    else:
        from concurrent.futures import ThreadPoolExecutor

        cuts = [n * k // threads for k in range(threads + 1)]
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(part, cuts[:-1], cuts[1:]))
    return out


def _read_only(a: np.ndarray) -> np.ndarray:
    """``a`` as a read-only view. numba compiles, caches and loads the scan apart for each layout of
    its arguments: Arrow's buffers are read-only, ``row_text_jit.join_cut``'s arrays are not, so
    without this ingest used a second compiled scan, which ``python -m curate.warmup`` did not make
    (the first ingest after it compiled it: ~6 s of CPU)."""
    view = a.view()
    view.flags.writeable = False
    return view


#: Rows per thread of the scan: an ingest frame (~29k rows of a 16 MB block) is split over the cores, so
#: the last frames' language id, which runs after the reading has ended, takes half the time.
_ROWS_PER_THREAD = 10_000


def _round3(x: np.ndarray) -> np.ndarray:
    """``round(v, 3)`` of every value, as Python rounds (correctly, from the exact binary value):
    numpy's multiply-and-round agrees except next to a tie, where Python decides."""
    out = np.round(x, 3)
    frac = x * 1000.0 - np.floor(x * 1000.0)
    near = np.flatnonzero(np.abs(frac - 0.5) < 1e-6)
    if len(near):
        out[near] = [round(v, 3) for v in x[near].tolist()]
    return out


@lru_cache(maxsize=1)
def _jit_tables():
    """Code point tables, the vocabulary table of the default scorer and its bias, for
    :func:`curate.langid_jit.scan`. The vocabulary table is kept on disk (its key: this module, the
    kernel's and the data files, what it is built from), so a process loads it instead of building
    it (~0.5 s)."""
    from curate import langid_jit as jit

    flags, lower = jit.char_tables(_LATIN.pattern, _HANGUL.pattern, _CJK.pattern)

    def build() -> dict[str, np.ndarray]:
        weights = _default_scorer().weights
        fam, eng = _family_words()
        slots, _, key_cp = jit.word_table(sorted(set(weights) | fam | eng), weights, fam, eng)
        return {"slots": slots, "key_cp": key_cp, "bias": np.array([_default_scorer().bias])}

    sources = (Path(__file__), Path(jit.__file__), _LEXICON_PATH, _VOCAB_PATH, _MODEL_PATH)
    saved = jit.cached_arrays("langid_words", b"\0".join(p.read_bytes() for p in sources), build)
    slots = jit.aligned_slots(saved["slots"])
    hangul_keys = bool((flags[saved["key_cp"]] & jit.HANGUL).any())
    return flags, lower, (slots, slots.view(np.float64), saved["key_cp"], hangul_keys), float(saved["bias"][0])


def _detect_column_per_text(values: list[str | None], fallback: bool) -> pl.DataFrame:
    """:func:`detect_column` without numba: the cheap steps per text on the shared token cache."""
    det = _default_detector()
    out: list[tuple[str, float] | _Pending] = [det.cheap(t) for t in values]
    pending = [i for i, r in enumerate(out) if isinstance(r, _Pending)]
    if pending:
        if fallback:
            guesses = _lingua_guesses([(lingua_mode(out[i]), out[i].text) for i in pending])  # type: ignore[arg-type,union-attr]
            for i, g in zip(pending, guesses):
                out[i] = det.finish(out[i], g)  # type: ignore[arg-type]
        else:
            for i in pending:
                out[i] = UND
    return pl.DataFrame({"lang": [r[0] for r in out], "lang_conf": [float(r[1]) for r in out]},  # type: ignore[index]
                        schema={"lang": pl.String, "lang_conf": pl.Float64})


# ------------------------------------------------------------------- fixer --


@lru_cache(maxsize=1)
def _fix_pattern() -> re.Pattern[str]:
    """Whole-word matcher for MS_ID_MARKERS keys, phrases first; also ``X-X``."""
    keys = sorted(MS_ID_MARKERS, key=len, reverse=True)
    alts = "|".join(r"\s+".join(map(re.escape, k.split())) for k in keys)
    words = "|".join(re.escape(k) for k in keys if " " not in k and "-" not in k)
    return re.compile(rf"(?<![\w-])(?:(?P<dup>{words})-(?P=dup)|{alts})(?![\w-])", re.I)


def _match_case(src: str, dst: str) -> str:
    if src.isupper() and len(src) > 1:
        return dst.upper()
    if src[:1].isupper():
        if all(w[:1].isupper() for w in src.split()):  # "Amerika Serikat"
            return " ".join(w[:1].upper() + w[1:] for w in dst.split(" "))
        return dst[:1].upper() + dst[1:]
    return dst


def fix_indonesian(text: str) -> tuple[str, list[dict]]:
    """Swap unambiguous Indonesian words for their Malay equivalents.

    Returns ``(fixed_text, substitutions)``; each substitution is
    ``{"from": original, "to": replacement, "pos": offset in the input}``.
    Case is preserved (``Karena`` -> ``Kerana``, ``UANG`` -> ``WANG``) and
    reduplications follow (``mobil-mobil`` -> ``kereta-kereta``). Only whole
    words listed in :data:`MS_ID_MARKERS` are touched; nothing else changes.
    """
    subs: list[dict] = []

    def repl(m: re.Match[str]) -> str:
        src = m.group(0)
        if m.group("dup"):  # reduplication: mobil-mobil -> kereta-kereta
            first, second = src.split("-")
            target = MS_ID_MARKERS[first.lower()]
            if " " in target:
                return src  # "lapangan terbang-lapangan terbang" is not Malay
            dst = f"{_match_case(first, target)}-{_match_case(second, target)}"
        else:
            dst = _match_case(src, MS_ID_MARKERS[" ".join(src.lower().split())])
        subs.append({"from": src, "to": dst, "pos": m.start()})
        return dst

    fixed = _fix_pattern().sub(repl, text)
    return fixed, subs
