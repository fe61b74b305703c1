"""Language rules: untranslated fields, rows not in the target language, Indonesian for Malay."""

from __future__ import annotations

import re

import polars as pl

from curate import memory
from curate.clean.base import ROW_MATCH_SCHEMA, Rule, empty_matches, fast, fmt, python_fix, row_text

# Function words, matched on lowercased text with ASCII word boundaries (fast DFA matching).
_EN = ("the|and|of|to|is|are|was|were|that|it|for|with|as|on|this|be|by|you|your|what|which|how|from|an|or|not"
       "|can|will|have|has|i|it's|do|does|these|those|there|their|they|would|should|could|about|into")
_MS = ("yang|dan|di|ke|dari|daripada|untuk|dengan|ini|itu|adalah|ialah|tidak|akan|dalam|pada|saya|anda|kita|kami"
       "|mereka|ada|boleh|bisa|juga|atau|sebagai|oleh|kepada|bagi|apa|bagaimana|berikut|sila|tolong|kerana|karena"
       "|merupakan|mana|telah|sudah|lebih|satu|sebuah|seorang|tersebut|jika|kalau|seperti|tentang|mengenai|supaya|agar")
_EN_WORDS = rf"(?-u:\b)(?:{_EN})(?-u:\b)"
_MS_WORDS = rf"(?-u:\b)(?:{_MS})(?-u:\b)"
_HANGUL = r"[\x{AC00}-\x{D7A3}\x{1100}-\x{11FF}\x{3130}-\x{318F}]"
_CODE = r"(?s)```.*?(?:```|$)|`[^`\n]*`|(?:https?://|www\.)\S+"
# literal prefilters: a field of five words or more in the language holds at least one of these
_EN_HINTS = [f" {w} " for w in ("the", "and", "of", "to", "is", "a", "in", "for", "you", "that", "with", "are", "this", "it")]
_MS_HINTS = [f" {w} " for w in ("yang", "dan", "di", "untuk", "dengan", "ini", "itu", "adalah", "ialah", "tidak",
                                "dalam", "pada", "saya", "anda", "kepada", "dari", "akan")]
SAMPLE_CHARS = 500  # a field's language shows in its first few hundred characters


def hints_pattern(hints: list[str]) -> str:
    """A regex matching where ``str.contains_any(hints, ascii_case_insensitive=True)`` does, for
    hints that are one ASCII word between spaces: Rust's regex finds them in about 60% of the time
    the Aho-Corasick search takes (0.7 s vs 1.1 s over 2M fields)."""
    words = [h[1:-1] for h in hints]
    assert all(h == f" {w} " and w.isascii() and w.isalpha() for h, w in zip(hints, words)), hints
    return f"(?i-u: (?:{'|'.join(words)}) )"
# A response may be English on purpose when the question asks for a translation or for English.
WANTS_OTHER = (r"(?i)terjemah|translat|inggeris|inggris|english|bahasa\s+(?:korea|asing|jerman|perancis|jepun|cina|arab|sepanyol)"
               r"|korean|한국어|영어|번역|\bin\s+(?:english|korean)\b")
# Code reads as English to a function-word count; a field that looks like code is not judged.
CODE_LIKE = (r"(?im)^\s*(?:select|insert\s+into|update|delete\s+from|create\s+table|def|class|import|from\s+\S+\s+import"
             r"|#include|function|public|private|var|let|const|return)\b|[{};]\s*$")


WANTS_OTHER, CODE_LIKE = fast(WANTS_OTHER), fast(CODE_LIKE)
WANTS_OTHER_WORDS = ["terjemah", "translat", "inggeris", "inggris", "english", "bahasa", "korea", "한국어", "영어", "번역"]


def wants_other(column: str) -> pl.Expr:
    """The text asks for a translation or for another language."""
    return pl.col(column).str.contains(WANTS_OTHER)


def reads_langs(rules: list[Rule], target_lang: str) -> bool:
    """Whether one of ``rules`` looks at the rows' languages when cleaning for ``target_lang``."""
    return any(isinstance(r, _LangRule) and r.reads_langs(target_lang) for r in rules)


def wants_other_rows(df: pl.DataFrame, column: str) -> pl.Series:
    """``_row`` of the rows whose ``column`` asks for another language (literal prefilter first)."""
    cand = df.select("_row", column).filter(pl.col(column).str.contains_any(WANTS_OTHER_WORDS, ascii_case_insensitive=True))
    return cand.filter(pl.col(column).str.contains(WANTS_OTHER))["_row"]


def _sample(cells: pl.DataFrame) -> pl.DataFrame:
    """``_t``: the lowercased start of each cell, with code blocks, inline code and URLs blanked."""
    c = cells.with_columns(pl.col("text").str.slice(0, SAMPLE_CHARS).str.to_lowercase().alias("_t"))
    has_code = pl.col("_t").str.contains_any(["`", "http", "www."])
    coded = c.filter(has_code)
    if coded.height:
        c = pl.concat([c.filter(~has_code), coded.with_columns(pl.col("_t").str.replace_all(_CODE, " "))])
    return c.with_columns((pl.col("_t").str.count_matches(" ", literal=True) + 1).alias("_w"))


class UntranslatedField(Rule):
    code = "untranslated_field"
    description = "a prompt or response left in English or Korean (or Malay for an English target): function-word and script counts per field"
    default_action = "drop"
    roles = ("prompt", "response", "system")
    params = {"min_words": 5, "min_share": 0.2}
    slow = True  # word and script counts over every field

    def match(self, cells, ctx):
        min_words, share = int(self.p["min_words"]), float(self.p["min_share"])
        target = ctx.target_lang
        if target == "any":
            return empty_matches()
        cells = cells.filter(pl.col("text").str.len_chars() >= 12)
        parts = []
        # Korean: a third of the letters are Hangul (only non-ASCII cells holding Hangul are counted)
        ko = cells.filter(pl.col("text").str.len_bytes() != pl.col("text").str.len_chars())
        ko = ko.filter(pl.col("text").str.contains(_HANGUL))
        if ko.height:
            t = pl.col("text").str.slice(0, SAMPLE_CHARS)
            ko = ko.with_columns(t.str.count_matches(_HANGUL).alias("_ko"), t.str.count_matches(r"\p{L}").alias("_l"))
            is_ko = (pl.col("_ko") >= 0.3 * pl.col("_l")) & (pl.col("_ko") >= 4)
            if target != "ko":
                parts.append(ko.filter(is_ko).with_columns(pl.lit("ko").alias("_lang")))
            korean_cells = ko.filter(is_ko)["_cell"]
        else:
            korean_cells = pl.Series("_cell", [], dtype=pl.UInt32)
        latin = cells.filter(~pl.col("_cell").is_in(korean_cells.implode()))
        hints = {"ms": _EN_HINTS, "id": _EN_HINTS, "en": _MS_HINTS}.get(target, _EN_HINTS + _MS_HINTS)
        latin = latin.filter(pl.col("text").str.contains(hints_pattern(hints)))
        latin = _sample(latin).filter(pl.col("_w") >= min_words)

        def dominant(df: pl.DataFrame, words: str, others: str) -> pl.DataFrame:
            # many of ``words``; the other language's function words at most a quarter as many
            df = df.with_columns(pl.col("_t").str.count_matches(words).alias("_a"))
            df = df.filter((pl.col("_a") >= 2) & (pl.col("_a") >= share * pl.col("_w")))
            df = df.with_columns(pl.col("_t").str.count_matches(others).alias("_b"))
            return df.filter(pl.col("_b") * 4 <= pl.col("_a"))

        if target in ("ms", "id"):
            parts.append(dominant(latin, _EN_WORDS, _MS_WORDS).with_columns(pl.lit("en").alias("_lang")))
        elif target == "en":
            parts.append(dominant(latin, _MS_WORDS, _EN_WORDS).with_columns(pl.lit("ms/id").alias("_lang")))
        else:  # ko: any field in English or Malay
            parts.append(dominant(latin, _EN_WORDS, _MS_WORDS).with_columns(pl.lit("en").alias("_lang")))
            parts.append(dominant(latin, _MS_WORDS, _EN_WORDS).with_columns(pl.lit("ms/id").alias("_lang")))
        parts = [p.select("_cell", "field", "role", "text", "question", "_lang") for p in parts if p.height]
        if not parts:
            return empty_matches()
        found = pl.concat(parts)
        excused = (((pl.col("role") == "response") & wants_other("question"))
                   | pl.col("text").str.contains(CODE_LIKE))
        out = found.filter(~excused).select(
            "_cell", fmt("{} is {}: {}", pl.col("field"), pl.col("_lang"), pl.col("text").str.slice(0, 80)).alias("evidence"))
        return out if out.height else empty_matches()


_LANG_BATCH = 50_000


def _detect(rows: pl.DataFrame, reuse: bool, on_rows=None, text: pl.Expr | None = None) -> pl.DataFrame:
    """``_row, lang, conf`` for ``rows`` (``_row, text``, ``lang_text`` (what to read instead of
    ``text`` when not null) and optionally ``_lang_cache``, the ``lang`` set at ingest for rows no
    fix changed; reused when ``reuse``). ``text``: the row's whole text when ``rows`` has no ``text``
    column (``curate.clean.base.row_text``)."""
    from curate import langid
    from curate.rowlang import SAMPLE_CHARS

    schema = {"_row": pl.UInt32, "lang": pl.String, "conf": pl.Float64}
    whole = pl.col("text") if text is None else text
    parts = []
    todo = rows
    if reuse and "_lang_cache" in rows.columns:
        known = pl.col("_lang_cache").is_not_null() & pl.col("_lang_cache").is_in(list(langid.LANGS))
        parts.append(rows.filter(known).select("_row", pl.col("_lang_cache").alias("lang"),
                                               pl.lit(1.0).alias("conf")).cast(schema))
        todo = rows.filter(~known)
    for start in range(0, todo.height, _LANG_BATCH):  # batches: progress, and fewer strings alive at once
        part = todo.slice(start, _LANG_BATCH)
        text = part.select(pl.coalesce("lang_text", whole).str.slice(0, SAMPLE_CHARS))
        res = langid.detect_column(text.to_series())
        parts.append(pl.DataFrame({"_row": part["_row"], "lang": res["lang"], "conf": res["lang_conf"]},
                                  schema=schema))
        if on_rows:
            on_rows(part.height)
    _release_lingua()
    return pl.concat(parts) if parts else pl.DataFrame(schema=schema)


#: Whether lingua's models stay loaded after a language pass (:func:`keep_models`).
_KEEP_MODELS = False


def keep_models(keep: bool = True) -> None:
    """Keep lingua's models loaded after each language pass: for a process that cleans block after
    block (a Ray worker, :mod:`curate.executors.ray_clean`), where unloading them after every block
    meant loading them again for the next one (~1.6 s of CPU each time, one block in ten of a 1M
    clean); its duplicate pass runs elsewhere (the driver), so the memory is not wanted back."""
    global _KEEP_MODELS
    _KEEP_MODELS = keep


def _release_lingua() -> bool:
    """Unload lingua's models (a few hundred MB for its 12 languages) once the rows' languages are
    known: the language rules share them (``ctx.langs``) and the duplicate pass, the heaviest part
    of a clean, runs next. A later call loads them again. False when nothing was unloaded (none
    loaded, or :func:`keep_models`)."""
    from curate import langid

    if _KEEP_MODELS or not langid._lingua.cache_info().currsize:
        return False
    langid._lingua().unload_language_models()
    memory.release()  # the models' heap goes back to the OS, not only to malloc's free lists
    return True


class _LangRule(Rule):
    scope = "row"
    stage = 80
    params = {"min_conf": 0.6, "reuse_lang": True}

    def reads_langs(self, target_lang: str) -> bool:
        """Whether the rule looks at the rows' languages when cleaning for ``target_lang``."""
        return True

    def langs(self, rows: pl.DataFrame, ctx) -> pl.DataFrame:
        """Language of each row, computed once per run and shared by the language rules."""
        have = ctx.langs
        need = rows if have is None else rows.join(have, on="_row", how="anti")
        if need.height or have is None:
            got = _detect(need, bool(self.p["reuse_lang"]), getattr(ctx, "on_rows", None), row_text(need, ctx))
            ctx.langs = got if have is None else pl.concat([have, got])
        return rows.select("_row").join(ctx.langs, on="_row", how="left")


class WrongLanguage(_LangRule):
    code = "wrong_language"
    description = "the row's text is not in the target language (English or Korean left untranslated), by curate.langid"
    default_action = "drop"

    def reads_langs(self, target_lang: str) -> bool:
        return target_lang != "any"

    def match_rows(self, rows, ctx):
        if not self.reads_langs(ctx.target_lang):
            return pl.DataFrame(schema=ROW_MATCH_SCHEMA)
        langs = self.langs(rows, ctx)
        ok = {ctx.target_lang, "und"} | ({"id"} if ctx.target_lang == "ms" else set()) \
            | ({"ms"} if ctx.target_lang == "id" else set())
        bad = langs.filter(~pl.col("lang").is_in(list(ok)) & (pl.col("conf") >= float(self.p["min_conf"])))
        return bad.select("_row", fmt("lang {} (confidence {})", "lang", pl.col("conf").round(2))
                          .alias("evidence")).cast(ROW_MATCH_SCHEMA)


class Indonesian(_LangRule):
    code = "indonesian"
    description = "the row is Indonesian where Malay is wanted (--target-lang ms), by curate.langid"
    default_action = "drop"

    def reads_langs(self, target_lang: str) -> bool:
        return target_lang == "ms"

    def match_rows(self, rows, ctx):
        if not self.reads_langs(ctx.target_lang):
            return pl.DataFrame(schema=ROW_MATCH_SCHEMA)
        langs = self.langs(rows, ctx)
        bad = langs.filter((pl.col("lang") == "id") & (pl.col("conf") >= float(self.p["min_conf"])))
        return bad.select("_row", fmt("lang id (confidence {})", pl.col("conf").round(2))
                          .alias("evidence")).cast(ROW_MATCH_SCHEMA)


class FixIndonesian(Rule):
    code = "fix_indonesian"
    description = "swap unambiguous Indonesian words for Malay ones (karena->kerana, bisa->boleh); every substitution recorded"
    default_action = "off"
    actions = ("fix", "flag")
    fixes = True
    stage = 30

    def match(self, cells, ctx):
        if ctx.target_lang != "ms":
            return empty_matches(fix=True)
        from curate import langid

        words = sorted({w for k in langid.MS_ID_MARKERS for w in k.split()}, key=len, reverse=True)
        pre = pl.col("text").str.contains(r"(?i)\b(?:" + "|".join(re.escape(w) for w in words) + r")\b")

        def fix(text):
            after, subs = langid.fix_indonesian(text)
            if not subs:
                return None
            return after, "; ".join(f"{s['from']}->{s['to']}@{s['pos']}" for s in subs)

        return python_fix(cells, pre, fix)
