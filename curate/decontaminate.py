"""Decontamination: find evaluation-set items hiding in training rows, in any language.

The method is the one reviewers know (GPT-3, NeMo Curator's ``TaskDecontamination``, the Tulu/OLMo
instruction-data checks): normalized word n-grams of every eval item are hashed once into a set, the
training rows are streamed in vectorized batches and their n-grams looked up in it. What is added:

* **Tokens per script.** Words of letters/marks/digits for alphabetic scripts (Latin, Malay,
  Cyrillic, Arabic ...) and for Hangul (Korean is written with spaces); one token per character for
  scripts written without spaces (Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar). Text is NFKC
  normalized and lower-cased; punctuation and spacing are ignored.
* **Numbers are one token kind.** Every number (``16``, ``3.5``, ``1,000``) is the same token and a
  run of numbers (``48/2=24``) is one, so an item copied with its numbers changed still matches.
* **n per field.** Each text field of an eval item (``question``, ``answer``, each chat message ...)
  is checked on its own with ``n = clamp(tokens // 2, min_ngram, ngram)``: 13-grams for ordinary
  questions, shorter ones for short questions; fields under ``min_ngram`` tokens are too short to be
  evidence and are counted as unchecked.
* **Share.** A row is contaminated by a field when it holds at least ``threshold`` of the field's
  distinct n-grams (a sentence added before or after, or the item embedded in a chat turn, changes
  nothing; a shared common phrase is a small share), and at least 3 of them (all of a field that
  has fewer): in a short question one n-gram is a large share, and two can be a shared phrase.
* **Common n-grams are ignored.** An n-gram found in more than ``max_count`` training rows that do
  *not* otherwise hold the item (a stock phrase) is dropped from the item, as NeMo Curator's
  ``max_matches`` does; counting only the rows below the threshold keeps an item leaked many times
  over detectable. N-grams shared by more than ``eval_max_items`` items of one eval file (template
  text) are not evidence for any of them.
* **Cross-lingual.** :func:`translate_eval` adds each field's translation (through the LLM engine
  and its reply cache) as another field of the same item, so Malay copies of English test questions
  are found too.

``build_index(eval_sets, params)`` -> :class:`Index`; ``scan(texts, index)`` -> hits (one row per
training row x eval field); ``decontaminate(frames, index)`` in memory; ``decontaminate_dir``
streams a dataset and writes the kept rows, ``quarantine.jsonl``, ``hits.jsonl`` and ``report.json``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import orjson
import polars as pl

from curate import io
from curate.errors import UserError

# ---- tokens ---------------------------------------------------------------------------------------
_NOSPACE = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}"
TOKEN = rf"\d+(?:[.,]\d+)*|[{_NOSPACE}]|[[\p{{L}}\p{{M}}\p{{N}}]--[{_NOSPACE}]]+"
_APOSTROPHE = r"['’ʼ`´]"   # removed: Janet's = Janet’s = Janets
_NUMBER_HASH = np.uint64(0x9E3779B97F4A7C15)
_rng = np.random.default_rng(20261129)
_MULT = (_rng.integers(1, 2**63, size=64, dtype=np.uint64) * np.uint64(2) + np.uint64(1))  # odd constants
MAX_NGRAM = 64
MIN_MATCHED = 3   # a hit holds at least 3 of a field's n-grams (all of a field that has fewer)

DEFAULT_FIELDS = ("question", "answer", "prompt", "instruction", "input", "output", "problem", "solution",
                  "completion", "completions", "messages", "conversations")


@dataclasses.dataclass
class Params:
    ngram: int = 13             # n of ordinary fields (GPT-3, NeMo Curator)
    min_ngram: int = 5          # shortest n; fields with fewer tokens are not checked
    threshold: float = 0.5      # share of a field's n-grams a row must hold (bench/decontaminate.py)
    max_count: int = 10         # n-grams in more than this many non-matching training rows are ignored (0: off)
    eval_max_items: int = 10    # n-grams in more than this many items of one eval file are ignored
    batch_chars: int = 16_000_000  # characters of training text per vectorized batch

    def validate(self) -> None:
        if not 1 <= self.min_ngram <= self.ngram <= MAX_NGRAM:
            raise UserError(f"n-gram sizes: need 1 <= min_ngram ({self.min_ngram}) <= ngram ({self.ngram}) "
                            f"<= {MAX_NGRAM}")
        if not 0 < self.threshold <= 1:
            raise UserError(f"threshold {self.threshold}: must be in (0, 1]")
        if self.max_count < 0 or self.eval_max_items < 1:
            raise UserError("max_count must be >= 0 (0: off) and eval_max_items >= 1")

    def n_for(self, tokens: int) -> int | None:
        """The n-gram size of a field of ``tokens`` tokens (None: too short to check)."""
        if tokens < self.min_ngram:
            return None
        return min(self.ngram, max(self.min_ngram, tokens // 2))


def tokenize(texts: pl.Series, *, normalize: bool = True) -> pl.DataFrame:
    """Tokens of every text in order: ``_g`` (the text's index), ``tok``.

    With ``normalize`` (matching) the text is NFKC-normalized (only texts with non-ASCII characters
    need it) and lower-cased first; without it (to show evidence) the tokens keep their spelling.
    Apostrophes and a word's final s are dropped (Janet's = Janet’s = Janet 's = Janets, egg = eggs);
    a run of numbers is kept as its first."""
    t = texts.fill_null("").str.replace_all(_APOSTROPHE, "")
    if normalize:
        wide = t.str.contains(r"[^\x00-\x7F]").arg_true()
        if wide.len():
            t = t.scatter(wide, t.gather(wide).str.normalize("NFKC"))
        t = t.str.to_lowercase()
    toks = (pl.DataFrame({"tok": t.str.extract_all(TOKEN)}).with_row_index("_g")
            .explode("tok").drop_nulls("tok"))
    if normalize:   # a final s is dropped (and a lone s token): Janet's = Janet 's = Janets; egg = eggs
        toks = toks.with_columns(pl.col("tok").str.strip_suffix("s")).filter(pl.col("tok") != "")
    toks = toks.with_columns(pl.col("tok").str.contains(r"^\d").alias("num"))
    num = pl.col("num")
    return toks.filter(~(num & num.shift(1, fill_value=False) & (pl.col("_g") == pl.col("_g").shift(1))))


def token_hashes(toks: pl.DataFrame) -> np.ndarray:
    h = toks.select(pl.when(pl.col("num")).then(pl.lit(int(_NUMBER_HASH), pl.UInt64))
                    .otherwise(pl.col("tok").hash(seed=7)).alias("h"))["h"]
    return h.to_numpy()


def ngram_hashes(h: np.ndarray, ns: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
    """For each n in ``ns`` (ascending): ``(n, hashes)``, ``hashes[i]`` the n-gram starting at token
    ``i`` (meaningful where ``within(g, i, n)``). One pass builds every n (wrapping u64 arithmetic);
    the array is reused, so each one is valid until the next is asked for."""
    ns = sorted(set(ns))
    if not ns or len(h) == 0:
        return
    acc = h * _MULT[0]
    with np.errstate(over="ignore"):
        for k in range(0, ns[-1]):
            if k:
                acc[:-k] += h[k:] * _MULT[k]
            if k + 1 in ns:
                yield k + 1, acc


def within(g: np.ndarray, idx: np.ndarray, n: int) -> np.ndarray:
    """True where the n tokens from ``idx`` belong to one text (``g`` sorted text indices)."""
    end = idx + (n - 1)
    ok = end < len(g)
    out = np.zeros(len(idx), dtype=bool)
    out[ok] = g[end[ok]] == g[idx[ok]]
    return out


def positions(g: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Token position within its text of the tokens ``idx`` (``g`` sorted text indices)."""
    return (idx - np.searchsorted(g, g[idx], side="left")).astype(np.uint32)


_BITS = 24   # prefilter: one byte per slot; 2**24 slots (16 MB) pass ~4% of positions at 10k items


# ---- eval sets ------------------------------------------------------------------------------------
@dataclasses.dataclass
class EvalSet:
    """One eval file: a frame ``item, field, text`` (one row per text field of an item)."""
    name: str
    path: str
    fields: pl.DataFrame
    items: int
    columns: list[str]
    columns_guessed: bool = False       # no known text column: every column holding text is checked
    translated: dict[str, Any] | None = None


def read_table(path: str | Path) -> list[list[dict]]:
    """An eval file's rows, read by curate's own readers: a dataset or any input ``curate ingest``
    reads (directory) through :func:`curate.io.read_input`, Parquet/CSV/TSV through
    :func:`curate.io.tables.read_table`, JSON arrays and JSONL through the tolerant streaming readers
    of ingest (repairs included); the columns are kept as they are (``question``, ``answer`` ...)."""
    from curate.io.files import require_file
    from curate.ingest.readers import iter_json_array, iter_jsonl, read_head, sniff_container
    from curate.io.tables import TABLE_SUFFIXES
    from curate.io.tables import read_table as read_tab

    path = Path(path)
    if path.is_dir():
        return [lf.collect().to_dicts() for lf in io.read_input(path).frames.values()]
    require_file(path, what="eval file")
    fmt = TABLE_SUFFIXES.get(path.suffix.lower())
    if fmt:
        return [read_tab(path, path.name, fmt).collect().to_dicts()]
    container = sniff_container(path, read_head(path))
    if container == "text":
        raise UserError(f"{path}: not JSON, JSONL, Parquet or CSV (eval files hold records with text fields)")
    rows: list[dict] = []
    try:
        for item in (iter_json_array if container == "array" else iter_jsonl)(path):
            if item.error:
                raise UserError(f"{path}:{item.line}: not valid JSON ({item.error}); fix the line or give a "
                                "Parquet/CSV copy")
            if isinstance(item.obj, dict):
                rows.append(item.obj)
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}); re-save it as UTF-8") from None
    if not rows:
        raise UserError(f"{path}: no records (expected JSON objects with text fields)")
    return [rows]


def _leaves(value: Any, name: str) -> Iterator[tuple[str, str]]:
    """``(field, text)`` for every string inside a value: a list gives one field per element
    (``choices[1]``, ``messages[2].content``), an object one per key (ARC's ``question.stem``)."""
    if isinstance(value, str):
        yield name, value
    elif isinstance(value, list):
        for j, e in enumerate(value):
            yield from _leaves(e, f"{name}[{j}]")
    elif isinstance(value, dict):
        for k, e in value.items():
            yield from _leaves(e, f"{name}.{k}")


def _field_texts(rows: list[dict], col: str) -> list[tuple[int, str, str]]:
    """``(item, field, text)`` of one column, every string in it a field of its own."""
    return [(i, f, t) for i, r in enumerate(rows) for f, t in _leaves(r.get(col), col)]


def _default_columns(rows: list[dict], cols: list[str]) -> tuple[list[str], bool]:
    """The known text columns present (any case), else every column holding text (and True)."""
    lower = {c.lower(): c for c in reversed(cols)}
    known = [lower[f] for f in DEFAULT_FIELDS if f in lower]
    if known:
        return known, False
    texty = [c for c in cols if any(next(_leaves(r.get(c), c), None) for r in rows[:200])]
    return texty, True


def load_eval(path: str | Path, fields: Iterable[str] | None = None) -> EvalSet:
    """An eval file's text fields. ``fields`` names the columns; by default every column of
    :data:`DEFAULT_FIELDS` it has (any case: question/answer, prompt, instruction/input/output,
    messages ...), or, when it has none of them, every column holding text."""
    frames = read_table(path)
    fields = [f.strip() for f in (fields or []) if f and f.strip()]
    rows: list[tuple[int, str, str]] = []
    items = 0
    columns: list[str] = []
    guessed = False
    for table in frames:
        cols = list(dict.fromkeys(k for r in table for k in r))
        if fields:
            missing = [f for f in fields if f not in cols]
            if missing and len(frames) == 1:
                raise UserError(f"{path}: no column {', '.join(missing)}; it has {', '.join(cols)}. "
                                "Name the text columns with --eval-fields")
            use = [f for f in fields if f in cols]
        else:
            use, g = _default_columns(table, cols)
            guessed |= g
        for c in use:
            rows += [(items + i, f, t) for i, f, t in _field_texts(table, c)]
        columns += [c for c in use if c not in columns]
        items += len(table)
    if not rows:
        cols = sorted({c for table in frames for r in table for c in r})
        raise UserError(f"{path}: no text to check in columns {', '.join(cols) or '(none)'}; name the text "
                        "columns with --eval-fields")
    frame = pl.DataFrame(rows, schema={"item": pl.UInt32, "field": pl.String, "text": pl.String}, orient="row")
    return EvalSet(name=Path(path).name, path=str(path), fields=frame, items=items, columns=columns,
                   columns_guessed=guessed)


def translate_eval(es: EvalSet, engine, to: str = "ms") -> EvalSet:
    """Add each field's translation into ``to`` as another field of the same item (``question@ms``).

    Goes through :func:`curate.translate.translate_rows` (code, numbers and placeholders protected,
    the reply's language checked) and the engine's reply cache, so an eval set is paid for once.
    Fields already in ``to`` are not sent. Raises when translations are still pending (Batch API)."""
    from curate.translate import translate_rows

    texts = es.fields["text"].to_list()
    rows = [{"id": f"e{i}", "prompt": t, "lang": None} for i, t in enumerate(texts)]
    outcome = translate_rows({"ppo": rows}, engine, to=to)
    pending = [q for q in outcome.quarantine if q.get("code") == "pending"]
    if pending:
        from curate.errors import PendingRows

        raise PendingRows(f"{es.name}: {len(pending)} eval fields wait for their translations, so nothing was "
                          f"checked or written yet. {engine.batch_notice('decontaminate') or 'Run again with an endpoint.'}")
    out = outcome.frames["ppo"].select("id", "prompt")
    changed = {int(i[1:]): t for i, t in out.iter_rows() if t is not None and t != texts[int(i[1:])]}
    extra = es.fields.with_row_index("_i").filter(pl.col("_i").is_in(list(changed))).select(
        "item", (pl.col("field") + pl.lit(f"@{to}")).alias("field"),
        pl.col("_i").replace_strict(changed, return_dtype=pl.String).alias("text"))
    info = {"to": to, "fields_translated": extra.height, "fields_failed": len(outcome.quarantine),
            "llm": engine.report()}
    return dataclasses.replace(es, fields=pl.concat([es.fields, extra]).sort("item", maintain_order=True),
                               translated=info)


# ---- the index ------------------------------------------------------------------------------------
@dataclasses.dataclass
class Index:
    params: Params
    sets: list[EvalSet]
    fields: pl.DataFrame            # fid, set, item, field, n, total, text
    grams: dict[int, pl.Series]     # n -> distinct eval n-gram hashes
    owners: pl.DataFrame            # hash, fid
    unchecked: dict[str, int]       # eval file -> fields too short to check
    template_ngrams: int            # n-grams ignored as shared by too many items
    prefix: np.ndarray              # top bits of the first min-n-gram of every eval n-gram: a cheap first test

    @property
    def ns(self) -> list[int]:
        return sorted(self.grams)


def build_index(sets: list[EvalSet], params: Params | None = None) -> Index:
    """Hash every eval field's n-grams once (each at its own n)."""
    params = params or Params()
    params.validate()
    if not sets:
        raise UserError("no eval set given (--against EVAL)")
    all_fields = pl.concat([es.fields.with_columns(pl.lit(si, pl.UInt32).alias("set")) for si, es in enumerate(sets)])
    toks = tokenize(all_fields["text"])
    g = toks["_g"].to_numpy()
    counts = np.bincount(g, minlength=all_fields.height) if len(g) else np.zeros(all_fields.height, dtype=np.int64)
    nsize = np.array([params.n_for(int(c)) or 0 for c in counts], dtype=np.int64)
    h = token_hashes(toks)
    parts = []
    prefix = np.zeros(1 << _BITS, dtype=np.bool_)   # the shortest n's first n-gram of every eval n-gram
    pre = None
    for n, grams in ngram_hashes(h, sorted(set(nsize[nsize > 0].tolist()))):
        if pre is None:
            pre = grams.copy()
        idx = np.flatnonzero(nsize[g] == n)
        keep = idx[within(g, idx, n)]
        prefix[pre[keep] >> np.uint64(64 - _BITS)] = True
        parts.append(pl.DataFrame({"hash": grams[keep], "_f": g[keep].astype(np.uint32), "n": np.full(len(keep), n, np.uint8)}))
    owners = (pl.concat(parts) if parts else pl.DataFrame(schema={"hash": pl.UInt64, "_f": pl.UInt32, "n": pl.UInt8})
              ).unique(["hash", "_f"])
    checked = all_fields.with_row_index("_f").with_columns(pl.Series("n", nsize).cast(pl.UInt8),
                                                          pl.Series("tokens", counts).cast(pl.UInt32))
    total = owners.group_by("_f").agg(pl.len().cast(pl.UInt32).alias("total"))
    # template text: an n-gram in more than eval_max_items items of one eval file identifies none of them
    owners = owners.join(checked.select("_f", "set", "item"), on="_f")
    spread = owners.group_by("set", "hash").agg(pl.col("item").n_unique().alias("items"))
    template = spread.filter(pl.col("items") > params.eval_max_items).select("set", "hash")
    owners = owners.join(template, on=["set", "hash"], how="anti")
    fields = (checked.join(total, on="_f", how="left").with_columns(pl.col("total").fill_null(0))
              .rename({"_f": "fid"}))
    grams = {n: owners.filter(pl.col("n") == n)["hash"].unique() for n in sorted(set(owners["n"].to_list()))}
    unchecked = {}
    for si, es in enumerate(sets):
        unchecked[es.name] = fields.filter((pl.col("set") == si) & (pl.col("n") == 0)).height
    return Index(params, sets, fields, grams, owners.select("hash", pl.col("_f").alias("fid")), unchecked,
                 template.height, prefix)


# ---- scanning -------------------------------------------------------------------------------------
HIT_SCHEMA = {"_g": pl.UInt64, "fid": pl.UInt32, "matched": pl.UInt32, "total": pl.UInt32, "share": pl.Float64,
              "start": pl.UInt32, "end": pl.UInt32}


class Scanner:
    """Feed batches of training texts (``feed(texts, first_index)``), then ``finish()`` -> hits."""

    def __init__(self, index: Index):
        self.index = index
        self.p = index.params
        self.cands: list[pl.DataFrame] = []   # (g, fid, hash, pos) of pairs that may reach the threshold
        self.weak: list[pl.DataFrame] = []    # hash -> rows below the threshold holding it
        self.rows = 0
        self.tokens = 0
        self._totals = index.fields.select("fid", "total")

    def feed(self, texts: pl.Series, first: int = 0) -> None:
        self.rows += texts.len()
        if not self.index.grams or texts.len() == 0:
            return
        toks = tokenize(texts)
        self.tokens += toks.height
        g = toks["_g"].to_numpy()
        h = token_hashes(toks)
        found = []
        for n, idx, grams in self._matches(g, h):
            found.append(pl.DataFrame({"_g": g[idx].astype(np.uint64) + np.uint64(first), "hash": grams,
                                       "pos": positions(g, idx), "n": np.full(len(idx), n, np.uint8)}))
        if not found:
            return
        m = pl.concat(found).join(self.index.owners, on="hash")
        pairs = (m.group_by("_g", "fid").agg(pl.col("hash").n_unique().alias("matched"))
                 .join(self._totals, on="fid")
                 .with_columns((pl.col("matched") / pl.col("total")).alias("raw")))
        strong = pairs.filter(pl.col("raw") >= self.p.threshold / 2).select("_g", "fid", "raw")
        if strong.height:
            self.cands.append(m.join(strong, on=["_g", "fid"]))
        weak = pairs.filter(pl.col("raw") < self.p.threshold / 2).select("_g", "fid")
        if weak.height:
            self.weak.append(m.join(weak, on=["_g", "fid"]).unique(["_g", "hash"])
                             .group_by("hash").agg(pl.len().cast(pl.UInt32).alias("rows")))

    def _matches(self, g: np.ndarray, h: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """``(n, token index, hash)`` of the training n-grams that are eval n-grams.

        Every eval n-gram starts with an n-gram of the shortest size in use, so that one is hashed for
        every position and looked up in the byte table; only the few positions that pass are extended
        token by token to the longer sizes, each checked exactly against its set."""
        ns = self.index.ns
        p = ns[0]
        acc = next(ngram_hashes(h, [p]))[1]
        idx = np.flatnonzero(self.index.prefix[acc >> np.uint64(64 - _BITS)])
        idx = idx[within(g, idx, p)]
        cur = acc[idx]
        with np.errstate(over="ignore"):
            for k in range(p - 1, ns[-1]):
                if len(idx) == 0:
                    return
                if k >= p:   # extend every window by its (k+1)-th token, dropping those that leave the row
                    end = idx + k
                    ok = end < len(g)
                    ok[ok] = g[end[ok]] == g[idx[ok]]
                    idx, cur = idx[ok], cur[ok]
                    cur += h[idx + k] * _MULT[k]
                n = k + 1
                if n in self.index.grams:
                    hit = pl.Series(cur).is_in(self.index.grams[n].implode()).to_numpy()
                    if hit.any():
                        yield n, idx[hit], cur[hit]

    def finish(self) -> pl.DataFrame:
        """One row per (training row, eval field) at or above the threshold, common n-grams ignored."""
        cands = pl.concat(self.cands) if self.cands else pl.DataFrame(
            schema={"_g": pl.UInt64, "hash": pl.UInt64, "pos": pl.UInt32, "n": pl.UInt8, "fid": pl.UInt32, "raw": pl.Float64})
        below = [w for w in self.weak]
        below.append(cands.filter(pl.col("raw") < self.p.threshold).unique(["_g", "hash"])
                     .group_by("hash").agg(pl.len().cast(pl.UInt32).alias("rows")))
        counts = pl.concat(below).group_by("hash").agg(pl.col("rows").sum())
        common = counts.filter(pl.col("rows") > self.p.max_count).select("hash") if self.p.max_count else counts.clear().select("hash")
        self.common = common.height
        lost = (self.index.owners.join(common, on="hash").group_by("fid").agg(pl.len().cast(pl.UInt32).alias("lost")))
        totals = self._totals.join(lost, on="fid", how="left").select(
            "fid", (pl.col("total") - pl.col("lost").fill_null(0)).alias("total"))
        kept = cands.join(common, on="hash", how="anti")
        pairs = (kept.group_by("_g", "fid").agg(pl.col("hash").n_unique().cast(pl.UInt32).alias("matched"),
                                                 pl.col("pos"), pl.col("n").first())
                 .join(totals, on="fid")
                 .filter(pl.col("total") > 0)
                 .with_columns((pl.col("matched") / pl.col("total")).alias("share"))
                 .filter((pl.col("share") >= self.p.threshold)
                         & (pl.col("matched") >= pl.min_horizontal(pl.col("total"), pl.lit(MIN_MATCHED)))))
        if pairs.height == 0:
            return pl.DataFrame(schema=HIT_SCHEMA)
        spans = [_longest_run(sorted(set(p)), n) for p, n in zip(pairs["pos"].to_list(), pairs["n"].to_list())]
        return pairs.select("_g", "fid", "matched", "total", "share").with_columns(
            pl.Series("start", [s for s, _ in spans], pl.UInt32), pl.Series("end", [e for _, e in spans], pl.UInt32)
        ).cast(HIT_SCHEMA).sort("_g", "share", descending=[False, True])


def _longest_run(pos: list[int], n: int) -> tuple[int, int]:
    """Token range [start, end) covered by the longest chain of overlapping matched n-grams."""
    best = (pos[0], pos[0] + n)
    start = prev = pos[0]
    for p in pos[1:]:
        if p - prev > n:
            start = p
        prev = p
        if prev + n - start > best[1] - best[0]:
            best = (start, prev + n)
    return best


def scan(texts: pl.Series, index: Index, *, progress: Callable[[int], None] | None = None) -> pl.DataFrame:
    """Hits of the texts (``_g`` = index into ``texts``), scanned in batches of ``batch_chars``."""
    sc = Scanner(index)
    for start, batch in _batches(texts, index.params.batch_chars):
        sc.feed(batch, start)
        if progress:
            progress(batch.len())
    return sc.finish()


def _batches(texts: pl.Series, batch_chars: int) -> Iterator[tuple[int, pl.Series]]:
    n = texts.len()
    if n == 0:
        return
    avg = max(1, int((texts.str.len_bytes().sum() or 0) / n))
    step = max(1000, batch_chars // avg)
    for start in range(0, n, step):
        yield start, texts.slice(start, step)


def describe_hits(hits: pl.DataFrame, texts: pl.Series, index: Index, rows: pl.Series | None = None) -> pl.DataFrame:
    """Hits with ``eval`` (file), ``item``, ``field``, ``share`` and the overlapping ``span`` (the
    longest run of matching tokens, in the training row's own spelling). ``texts`` holds every row's
    text, or, with ``rows`` (sorted row indices), only those rows' texts."""
    if hits.height == 0:
        return hits.with_columns(pl.lit(None, pl.String).alias(c) for c in ("span", "eval")).with_columns(
            pl.lit(None, pl.UInt32).alias("item"), pl.lit(None, pl.String).alias("field"))
    need = hits["_g"].unique().sort()
    if rows is None:
        sub, where = texts.gather(need), need.to_list()
    else:
        pos = dict(zip(rows.to_list(), range(rows.len())))
        sub, where = texts.gather([pos[g] for g in need.to_list()]), need.to_list()
    orig, norm = tokenize(sub, normalize=False), tokenize(sub)
    lists = orig if orig.height == norm.height and (orig["_g"] == norm["_g"]).all() else norm
    toks = lists.group_by("_g", maintain_order=True).agg("tok")
    by_row = dict(zip(toks["_g"].to_list(), toks["tok"].to_list()))
    local = dict(zip(where, range(len(where))))
    spans = [" ".join(by_row.get(local[g], [])[s:e]) for g, s, e in hits.select("_g", "start", "end").iter_rows()]
    names = {i: es.name for i, es in enumerate(index.sets)}
    info = index.fields.select("fid", pl.col("set").replace_strict(names, return_dtype=pl.String).alias("eval"),
                               "item", "field")
    return hits.with_columns(pl.Series("span", spans, pl.String)).join(info, on="fid", how="left")


def evidence_expr() -> pl.Expr:
    """One line per hit: ``gsm8k_test.jsonl#12 question share 0.92: «span»``."""
    return pl.concat_str([pl.col("eval"), pl.lit("#"), pl.col("item").cast(pl.String), pl.lit(" "), pl.col("field"),
                          pl.lit(" share "), pl.col("share").round(2).cast(pl.String), pl.lit(": «"),
                          pl.col("span").str.slice(0, 200), pl.lit("»")])


def per_set_counts(described: pl.DataFrame, index: Index) -> list[dict[str, Any]]:
    """For the report: per eval file, items, fields checked/unchecked, rows hit and items found."""
    out = []
    for si, es in enumerate(index.sets):
        mine = described.filter(pl.col("eval") == es.name) if described.height else described
        f = index.fields.filter(pl.col("set") == si)
        out.append({"eval": es.name, "path": es.path, "items": es.items, "columns": es.columns,
                    **({"columns_note": "no known text column: every column holding text is checked "
                                        "(name them with --eval-fields)"} if es.columns_guessed else {}),
                    "fields": f.height, "fields_unchecked_too_short": index.unchecked.get(es.name, 0),
                    "rows_hit": mine["_g"].n_unique() if mine.height else 0,
                    "items_found": mine["item"].n_unique() if mine.height else 0,
                    "hits": mine.height,
                    **({"translated": {k: v for k, v in es.translated.items() if k != "llm"}} if es.translated else {})})
    return out


# ---- the stage ------------------------------------------------------------------------------------
def row_text(kind: str) -> pl.Expr:
    """A row's whole text: every field, every chat turn, every completion."""
    from curate.clean.engine import row_text_expr

    return row_text_expr(kind).fill_null("")


@dataclasses.dataclass
class Outcome:
    frames: dict[str, pl.DataFrame]
    quarantine: list[dict]
    hits: list[dict]
    report: dict[str, Any]


def _quarantine(kind: str, gone: pl.DataFrame, hits: pl.DataFrame) -> list[dict]:
    """Quarantine entries of the dropped rows (``gone`` has ``_i``, the row's index in its kind)."""
    if gone.height == 0:
        return []
    ev = (hits.with_columns(evidence_expr().alias("evidence"))
          .group_by("_g", maintain_order=True)
          .agg(pl.col("evidence").first(),
               pl.struct("eval", "item", "field", pl.col("share").round(4), "matched", "total", "span").alias("hits")))
    content = [c for c in gone.columns if c != "_i"]
    q = (gone.join(ev, left_on="_i", right_on="_g", how="left").sort("_i")
         .select(pl.lit("decontaminate").alias("stage"), pl.lit("contaminated").alias("code"),
                 pl.lit("holds an evaluation item (share of its n-grams >= threshold)").alias("reason"),
                 "evidence", "hits", "id", "source", "line",
                 pl.concat_str([pl.col("source"), pl.lit(":"), pl.col("line").cast(pl.String)]).alias("where"),
                 pl.lit(kind).alias("kind"), pl.struct(content).alias("row")))
    return [orjson.loads(line) for line in q.write_ndjson().splitlines() if line.strip()]


def _hit_rows(kind: str, described: pl.DataFrame, ids: pl.DataFrame) -> list[dict]:
    d = described.join(ids, left_on="_g", right_on="_i", how="left")
    return d.select(pl.lit(kind).alias("kind"), "id", "source", "line", "eval", "item", "field",
                    pl.col("share").round(4), "matched", "total", "span").to_dicts()


def text_batches(frame: pl.DataFrame | pl.LazyFrame, kind: str, batch_chars: int, *, slices: bool = True,
                 chunk_rows: int = 20_000) -> Iterator[pl.Series]:
    """Every row's text in batches of about ``batch_chars``, never the whole column at once.

    ``slices``: read ``chunk_rows`` rows at a time by slicing (a DataFrame, or a parquet scan, where
    slices are pushed down to the row groups); otherwise polars' streaming batches (JSONL scans;
    measured to buffer ahead of a slow consumer, so it is the fallback)."""
    lf = frame.lazy() if isinstance(frame, pl.DataFrame) else frame
    text = row_text(kind).alias("t")
    if isinstance(frame, pl.DataFrame):
        chunks = (frame.slice(o, chunk_rows).select(text)["t"] for o in range(0, frame.height, chunk_rows))
    elif slices:
        total = lf.select(pl.len()).collect().item()
        chunks = (lf.slice(o, chunk_rows).select(text).collect()["t"] for o in range(0, total, chunk_rows))
    else:
        chunks = (c["t"] for c in lf.select(text).collect_batches(chunk_size=chunk_rows))
    buf: list[pl.Series] = []
    size = 0
    for t in chunks:
        buf.append(t)
        size += t.str.len_bytes().sum() or 0
        if size >= batch_chars:
            yield pl.concat(buf) if len(buf) > 1 else buf[0]
            buf, size = [], 0
    if buf:
        yield pl.concat(buf) if len(buf) > 1 else buf[0]


def decontaminate_frame(df: pl.DataFrame | pl.LazyFrame, kind: str, index: Index, *, slices: bool = True,
                        progress: Callable[[int], None] | None = None, scanner_out: list | None = None) -> pl.DataFrame:
    """Described hits of one frame (``_g`` = row index); the frame is streamed, never held whole
    (``slices``: see :func:`text_batches`)."""
    lf = df.lazy() if isinstance(df, pl.DataFrame) else df
    sc = Scanner(index)
    start = 0
    for batch in text_batches(df, kind, index.params.batch_chars, slices=slices):
        sc.feed(batch, start)
        start += batch.len()
        if progress:
            progress(batch.len())
    hits = sc.finish()
    if scanner_out is not None:
        scanner_out.append(sc)
    rows = hits["_g"].unique().sort()
    texts = (lf.with_row_index("_i").filter(pl.col("_i").is_in(rows.cast(pl.UInt32).implode()))
             .select(row_text(kind).alias("t")).collect()["t"]) if rows.len() else pl.Series([], dtype=pl.String)
    return describe_hits(hits, texts, index, rows=rows)


def decontaminate(frames: dict[str, pl.DataFrame | pl.LazyFrame], index: Index, *,
                  progress: Callable[[int], None] | None = None) -> Outcome:
    """Drop the rows of ``{kind: frame}`` that hold an eval item; quarantine and hits say which and why."""
    t0 = time.perf_counter()
    out, quarantine, hit_rows, described_all, rows_in, common = {}, [], [], [], {}, 0
    for kind, df in frames.items():
        df = (df.collect() if isinstance(df, pl.LazyFrame) else df).with_row_index("_i")
        scs: list[Scanner] = []
        d = decontaminate_frame(df.drop("_i"), kind, index, progress=progress, scanner_out=scs)
        common += scs[0].common
        rows_in[kind] = df.height
        bad = d["_g"].unique().cast(pl.UInt32)
        gone = df.filter(pl.col("_i").is_in(bad.implode()))
        out[kind] = df.filter(~pl.col("_i").is_in(bad.implode())).drop("_i")
        quarantine += _quarantine(kind, gone, d)
        hit_rows += _hit_rows(kind, d, df.select("_i", "id", "source", "line").cast({"_i": pl.UInt64}))
        described_all.append(d.select("_g", "eval", "item").with_columns(pl.lit(kind).alias("kind")))
    described = pl.concat(described_all) if described_all else pl.DataFrame(
        schema={"_g": pl.UInt64, "eval": pl.String, "item": pl.UInt32, "kind": pl.String})
    # rows_hit per eval set counts (kind, row) pairs
    described = described.with_columns(pl.concat_str([pl.col("kind"), pl.col("_g").cast(pl.String)]).alias("_g"))
    report = _report(index, rows_in, {k: f.height for k, f in out.items()}, described, common,
                     time.perf_counter() - t0)
    return Outcome(out, quarantine, hit_rows, report)


def _report(index: Index, rows_in: dict[str, int], rows_out: dict[str, int], described: pl.DataFrame,
            common: int, seconds: float) -> dict[str, Any]:
    n_in, n_out = sum(rows_in.values()), sum(rows_out.values())
    p = index.params
    return {
        "stage": "decontaminate",
        "rows_in": n_in, "rows_out": n_out, "rows_dropped": n_in - n_out, "accounted": True,
        "by_kind": {k: {"in": rows_in[k], "out": rows_out[k], "dropped": rows_in[k] - rows_out[k]} for k in rows_in},
        "params": dataclasses.asdict(p),
        "eval_sets": per_set_counts(described, index),
        "ngrams": {"eval_distinct": int(sum(s.len() for s in index.grams.values())),
                   "ignored_template": index.template_ngrams, "ignored_common_in_training": common,
                   "sizes_used": index.ns},
        "seconds": round(seconds, 3),
    }


def load_index(against: Iterable[str | Path], *, fields: Iterable[str] | None = None, params: Params | None = None,
               translate_to: str | None = None, engine=None) -> Index:
    """Read the eval files, translate them when asked, and build the n-gram index."""
    sets = [load_eval(p, fields) for p in against]
    if translate_to:
        if engine is None:
            from curate.llm import Engine, resolve

            engine = Engine(resolve(), description=f"translate eval -> {translate_to}")
        sets = [translate_eval(es, engine, translate_to) for es in sets]
    return build_index(sets, params)


def decontaminate_dir(inp: str | Path | list, out: str | Path, index: Index, *, progress: bool | None = None) -> Outcome:
    """Read a dataset (or any inputs ``io.read_input`` reads), drop contaminated rows, write ``out/<kind>.parquet``, ``quarantine.jsonl``,
    ``hits.jsonl`` (every hit) and ``report.json``. Kept rows are streamed from the input to the output."""
    from curate.progress import bar

    inputs = [str(p) for p in inp] if isinstance(inp, (list, tuple)) else [str(inp)]
    writer = io.DatasetWriter(out, stage="decontaminate", inputs=inputs)
    out = Path(out)
    data = io.read_input(inputs)
    lfs = data.frames
    total = sum(lf.select(pl.len()).collect().item() for lf in lfs.values())
    t0 = time.perf_counter()
    quarantine, hit_rows, described_all, rows_in, rows_out, common = [], [], [], {}, {}, 0
    bad_by_kind = {}
    with bar("decontaminate", total=total, enabled=progress) as b:
        for kind, lf in lfs.items():
            scs: list[Scanner] = []
            d = decontaminate_frame(lf, kind, index, slices="NDJson SCAN" not in lf.explain(), progress=b.advance,
                                    scanner_out=scs)
            common += scs[0].common
            rows_in[kind] = scs[0].rows
            bad = d["_g"].unique().cast(pl.UInt32)
            bad_by_kind[kind] = bad
            indexed = lf.with_row_index("_i")
            gone = indexed.filter(pl.col("_i").is_in(bad.implode())).collect()
            quarantine += _quarantine(kind, gone, d)
            ids = gone.select("_i", "id", "source", "line").cast({"_i": pl.UInt64})
            hit_rows += _hit_rows(kind, d, ids)
            rows_out[kind] = rows_in[kind] - gone.height
            described_all.append(d.select(pl.concat_str([pl.lit(kind), pl.col("_g").cast(pl.String)]).alias("_g"),
                                          "eval", "item"))
    described = pl.concat(described_all) if described_all else pl.DataFrame(
        schema={"_g": pl.String, "eval": pl.String, "item": pl.UInt32})
    report = _report(index, rows_in, rows_out, described, common, time.perf_counter() - t0)
    report["input"], report["output"] = inputs if len(inputs) > 1 else inputs[0], str(out)
    report = io.with_read(report, data)
    with writer as w:
        w.input_manifests = data.manifest_ids
        for kind, lf in lfs.items():
            bad = bad_by_kind[kind]
            kept = lf if bad.len() == 0 else lf.with_row_index("_i").filter(~pl.col("_i").is_in(bad.implode())).drop("_i")
            w.write_frame(kind, kept)
        w.write_jsonl("quarantine.jsonl", [*data.quarantine, *quarantine])
        w.write_jsonl("hits.jsonl", hit_rows)
        w.write_json("report.json", report)
    return Outcome({}, quarantine, hit_rows, report)
