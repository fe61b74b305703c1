"""Fast ROUGE-L F between short texts (instructions), for self-instruct near-duplicate filtering.

Self-instruct (and stanford_alpaca's ``generate_instruction.py``) keeps a generated instruction
only if its ROUGE-L F against *every* instruction kept so far is at most 0.7, calling
``rouge_score`` once per pair: a pure-Python O(len_a * len_b) LCS table for each of n^2/2 pairs.
That takes hours at 50,000 tasks. This module gives the same numbers much faster:

* :func:`tokenize` follows ``rouge_score``'s tokenizer (lowercase, runs of letters/digits; no
  stemming, as self-instruct used it), but keeps non-ASCII letters so Malay or any Latin-script
  text with accents is not cut into pieces. On ASCII text the tokens are identical.
* :func:`lcs_len` is ``rapidfuzz``'s bit-parallel LCS (``distance.LCSseq``) over token lists.
* :class:`RougeIndex` holds the kept instructions (token ids, each text also as a string of one
  character per token id, so rapidfuzz compares them at C speed) and answers, for a new text:

  - :meth:`RougeIndex.scores`: the exact F against every stored text at once
    (``rapidfuzz.process.cdist`` with ``LCSseq.similarity``). This is what
    ``most_similar_instructions`` and ``avg_similarity_score`` need.
  - :meth:`RougeIndex.most_similar_above`: only the question "is any stored text above the
    threshold?", with candidate pruning. ROUGE-L F = 2*LCS/(la+lb) and LCS <= min(la, lb), so
    (1) only lengths lb in [la*t/(2-t), la*(2-t)/t] can pass; (2) a passing pair needs
    LCS >= tau = t*la/(2-t), so it shares one of the (la - tau + 1) rarest tokens of the query
    (pigeonhole), and only those tokens' postings in the inverted index are probed; (3) LCS is at
    most the bag-of-words overlap, so candidates whose overlap bound is <= t are skipped before
    the exact LCS. The answer is exact, not approximate.

Measured in ``bench/rouge.py --rapidfuzz`` (issue 17): rapidfuzz alone (cdist of every new text
against every kept one) is several times slower than the pruned filter at the same decisions, so
the pruning stays; rapidfuzz computes every exact LCS (it replaced a hand-written numpy
bit-parallel LCS of the same speed).

F is computed as ``rouge_score`` does (precision = lcs/len(other), recall = lcs/len(new),
F = 2PR/(P+R)), so thresholds compare the same floats.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import LCSseq

_TOKEN = re.compile(r"[^\W_]+")

THRESHOLD = 0.7


def tokenize(text: str) -> list[str]:
    """Lowercased runs of letters and digits (``rouge_score``'s tokens on ASCII text)."""
    return _TOKEN.findall(text.lower()) if text else []


def lcs_len(a: Sequence, b: Sequence) -> int:
    """Length of the longest common subsequence of two sequences (strings or token lists)."""
    return LCSseq.similarity(a, b)


def fmeasure(lcs: int, len_new: int, len_other: int) -> float:
    """ROUGE-L F exactly as ``rouge_score._score_lcs`` computes it (target=new, prediction=other)."""
    if not len_new or not len_other:
        return 0.0
    p, r = lcs / len_other, lcs / len_new
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F of two texts (naive reference: tokenize + DP LCS)."""
    ta, tb = tokenize(a), tokenize(b)
    return fmeasure(lcs_len(ta, tb), len(ta), len(tb))


def _fmeasure_many(lcs: np.ndarray, len_new: int, len_other: np.ndarray) -> np.ndarray:
    lcs = lcs.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = lcs / len_other
        r = lcs / len_new
        f = 2 * p * r / (p + r)
    return np.where((lcs > 0) & (len_other > 0), f, 0.0)


_MAX_TOKEN_ID = 0x10FFFF  # token ids are stored as characters
_BATCH = 256               # queries per rapidfuzz cdist call in ``scores_many``


def _chars(ids: np.ndarray) -> str:
    """Token ids as one character each (id 0 / unseen -1 as NUL, which no stored token is)."""
    return "".join(map(chr, np.clip(ids, 0, None).tolist()))


class RougeIndex:
    """Stored texts (token-id arrays) with exact all-pairs and pruned ROUGE-L F queries.

    ``add`` appends (returning the index); ``scores(text)`` is aligned with insertion order.
    """

    def __init__(self, texts: Iterable[str] = ()):
        self.texts: list[str] = []
        self._chars: list[str] = []                    # each stored text, one character per token
        self._vocab: dict[str, int] = {}
        self._lens = np.zeros(1024, dtype=np.int64)
        self._starts = np.zeros(1024, dtype=np.int64)  # offset of each text in _flat
        self._flat = np.zeros(16384, dtype=np.int64)   # every stored token id, text after text
        self._n_flat = 0
        self._postings: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]  # token id -> indices (buffer)
        self._post_n: list[int] = [0]                                     # used length of each buffer
        self._df = np.zeros(1024, dtype=np.int64)   # token id -> len(postings)
        self.stats = {"queries": 0, "pairs": 0, "length_ok": 0, "probed": 0, "bound_ok": 0, "exact": 0}
        for t in texts:
            self.add(t)

    def __len__(self) -> int:
        return len(self.texts)

    # -- storage ---------------------------------------------------------------------------------
    def _ids(self, tokens: list[str], grow: bool) -> np.ndarray:
        vocab = self._vocab
        out = []
        for tok in tokens:
            tid = vocab.get(tok)
            if tid is None:
                if not grow:
                    tid = -1  # unseen: matches nothing stored
                else:
                    tid = len(vocab) + 1
                    if tid > _MAX_TOKEN_ID:
                        raise ValueError(f"more than {_MAX_TOKEN_ID:,} distinct tokens in one RougeIndex")
                    vocab[tok] = tid
                    self._postings.append(np.zeros(4, dtype=np.int64))
                    self._post_n.append(0)
            out.append(tid)
        return np.asarray(out, dtype=np.int64)

    def add(self, text: str, tokens: list[str] | None = None) -> int:
        idx = len(self.texts)
        ids = self._ids(tokenize(text) if tokens is None else tokens, grow=True)
        self.texts.append(text)
        self._chars.append(_chars(ids))
        if idx >= len(self._lens):
            self._lens = np.concatenate([self._lens, np.zeros(len(self._lens), dtype=np.int64)])
            self._starts = np.concatenate([self._starts, np.zeros(len(self._starts), dtype=np.int64)])
        self._lens[idx] = len(ids)
        self._starts[idx] = self._n_flat
        while self._n_flat + len(ids) > len(self._flat):
            self._flat = np.concatenate([self._flat, np.zeros(len(self._flat), dtype=np.int64)])
        self._flat[self._n_flat:self._n_flat + len(ids)] = ids
        self._n_flat += len(ids)
        if len(self._vocab) + 2 > len(self._df):
            self._df = np.concatenate([self._df, np.zeros(len(self._vocab) + 2 + len(self._df), dtype=np.int64)])
        for tid in set(ids.tolist()):
            buf, k = self._postings[tid], self._post_n[tid]
            if k == len(buf):
                buf = self._postings[tid] = np.concatenate([buf, np.zeros(len(buf), dtype=np.int64)])
            buf[k] = idx
            self._post_n[tid] = k + 1
            self._df[tid] += 1
        return idx

    def _lcs(self, q: np.ndarray, stored: list[str]) -> np.ndarray:
        """LCS of the query token ids with each of the ``stored`` character strings (rapidfuzz)."""
        if not stored:
            return np.zeros(0, dtype=np.int64)
        return process.cdist([_chars(q)], stored, scorer=LCSseq.similarity, dtype=np.int64)[0]

    def _gather(self, idx: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every token of the stored texts ``idx``: (token id, column = position in idx, position in text)."""
        total = int(lens.sum())
        col = np.repeat(np.arange(len(idx)), lens)
        within = np.arange(total) - np.repeat(np.cumsum(lens) - lens, lens)
        tok = self._flat[np.repeat(self._starts[idx], lens) + within]
        return tok, col, within

    # -- queries ---------------------------------------------------------------------------------
    def scores(self, text: str, tokens: list[str] | None = None) -> np.ndarray:
        """Exact ROUGE-L F of ``text`` against every stored text (aligned with insertion order)."""
        return self.scores_many([text], None if tokens is None else [tokens])[0]

    def scores_many(self, texts: Sequence[str], tokens: Sequence[list[str]] | None = None,
                    upto: Sequence[int] | None = None) -> list[np.ndarray]:
        """``scores`` of each text against the first ``upto[i]`` stored texts (default: all).

        Many texts at once cost several times less per pair than one by one (rapidfuzz compares
        short queries side by side in SIMD lanes): score a batch of kept texts after the fact, each
        against the texts stored before it, rather than each as it is kept.
        """
        n = len(self.texts)
        toks = [tokenize(t) for t in texts] if tokens is None else tokens
        upto = [n] * len(toks) if upto is None else list(upto)
        out: list[np.ndarray] = []
        for a in range(0, len(toks), _BATCH):
            qs = [self._ids(t, grow=False) for t in toks[a:a + _BATCH]]
            ends = upto[a:a + _BATCH]
            hi = max(ends)
            lcs = process.cdist([_chars(q) for q in qs], self._chars[:hi], scorer=LCSseq.similarity,
                                dtype=np.int32) if hi else np.zeros((len(qs), 0), dtype=np.int32)
            for q, row, end in zip(qs, lcs, ends):
                out.append(_fmeasure_many(row[:end], len(q), self._lens[:end]) if len(q) else np.zeros(end))
                self.stats["queries"] += 1
                self.stats["pairs"] += end
                self.stats["exact"] += end if len(q) else 0
        return out

    def most_similar_above(self, text: str, threshold: float = THRESHOLD,
                           tokens: list[str] | None = None) -> tuple[int, float]:
        """(index, F) of the most similar stored text if its F > ``threshold``, else (-1, f <= t).

        Exact (same decision as ``scores(text).max() > threshold``) but only scores candidates
        that can pass: length window, rare-token probe of the inverted index, bag-of-words bound.
        """
        n = len(self.texts)
        self.stats["queries"] += 1
        self.stats["pairs"] += n
        q = self._ids(tokenize(text) if tokens is None else tokens, grow=False)
        la = len(q)
        if n == 0 or la == 0:
            return -1, 0.0
        t = threshold
        ratio = t / (2 - t)
        # a passing pair needs LCS >= tau (allowing equality keeps float edge cases on the safe side)
        tau = max(1, int(np.ceil(ratio * la - 1e-9)))
        known = q[q > 0]
        if len(known) < tau:
            return -1, 0.0
        # Pigeonhole: an LCS >= tau leaves at most la - tau of the query's token occurrences
        # unmatched, so one of any (la - tau + 1) occurrences is shared. Take the rarest ones
        # (tokens never stored have df 0 and can never match: they use up slots for free).
        p = la - tau + 1
        dfs = self._df[np.clip(q, 0, None)]
        rare = q[np.argsort(dfs, kind="stable")[:p]]
        rare = rare[rare > 0]
        if len(rare) == 0:
            return -1, 0.0
        postings = [self._postings[tid][: self._post_n[tid]] for tid in set(rare.tolist())]
        cand = np.unique(np.concatenate(postings)) if len(postings) > 1 else postings[0]
        self.stats["probed"] += len(cand)
        lens = self._lens[cand]
        lo, hi = la * ratio - 1e-9, la / ratio + 1e-9
        cand = cand[(lens >= lo) & (lens <= hi)]
        self.stats["length_ok"] += len(cand)
        if len(cand) == 0:
            return -1, 0.0
        # bag-of-words bound: LCS <= number of the candidate's tokens that occur in the query
        clens = self._lens[cand]
        in_q = np.zeros(len(self._vocab) + 2, dtype=np.float64)
        in_q[known] = 1
        tok, col, _ = self._gather(cand, clens)
        hits_c = np.bincount(col, weights=in_q[tok], minlength=len(cand)).astype(np.int64)
        bound = np.minimum(hits_c, la)
        bound_f = _fmeasure_many(bound, la, clens)
        keep = bound_f > t - 1e-12
        self.stats["bound_ok"] += int(keep.sum())
        if not keep.any():
            return -1, 0.0
        cand = cand[keep]
        lcs = self._lcs(q, [self._chars[i] for i in cand.tolist()])
        self.stats["exact"] += len(cand)
        f = _fmeasure_many(lcs, la, self._lens[cand])
        best = int(np.argmax(f))
        if f[best] > t:
            return int(cand[best]), float(f[best])
        return -1, float(f[best])

    def top(self, text: str, k: int = 10, tokens: list[str] | None = None) -> tuple[list[tuple[int, float]], float]:
        """The ``k`` most similar stored texts (index, F), best first, and the mean F over all."""
        s = self.scores(text, tokens)
        if len(s) == 0:
            return [], 0.0
        return [(int(i), float(s[i])) for i in top_k(s, k)], float(s.mean())


def top_k(scores: np.ndarray, k: int = 10) -> np.ndarray:
    """Indices of the ``k`` highest scores, best first (ties: lower index first), in O(n)."""
    k = min(k, len(scores))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.lexsort((part, -scores[part]))]
