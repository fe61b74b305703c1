"""Language rules: untranslated fields, rows not in the target language, Indonesian for Malay."""

from __future__ import annotations

import re

import polars as pl

from curate.clean.base import ROW_MATCH_SCHEMA, Rule, empty_matches, python_fix, fmt

_EN_WORDS = r"(?i)\b(?:the|and|of|to|is|are|was|were|that|it|for|with|as|on|this|be|by|you|your|what|which|how|from|an|or|not|can|will|have|has|i|it's|do|does|these|those|there|their|they|would|should|could|about|into)\b"
_MS_WORDS = r"(?i)\b(?:yang|dan|di|ke|dari|daripada|untuk|dengan|ini|itu|adalah|ialah|tidak|akan|dalam|pada|saya|anda|kita|kami|mereka|ada|boleh|bisa|juga|atau|sebagai|oleh|kepada|bagi|apa|bagaimana|berikut|sila|tolong|kerana|karena|merupakan|mana|telah|sudah|lebih|satu|sebuah|seorang|tersebut|jika|kalau|seperti|tentang|mengenai|supaya|agar)\b"
_CODE = r"(?s)```.*?(?:```|$)|`[^`\n]*`|(?:https?://|www\.)\S+"
# A response may be English on purpose when the question asks for a translation or for English.
WANTS_OTHER = (r"(?i)terjemah|translat|inggeris|inggris|english|bahasa\s+(?:korea|asing|jerman|perancis|jepun|cina|arab|sepanyol)"
               r"|korean|한국어|영어|번역|\bin\s+(?:english|korean)\b")


# Code reads as English to a function-word count; a field that looks like code is not judged.
CODE_LIKE = (r"(?im)^\s*(?:select|insert\s+into|update|delete\s+from|create\s+table|def|class|import|from\s+\S+\s+import"
             r"|#include|function|public|private|var|let|const|return)\b|[{};]\s*$")


def _signals() -> list[pl.Expr]:
    text = pl.col("text").str.replace_all(_CODE, " ")
    return [
        text.str.count_matches(r"[\p{L}\p{N}]+").alias("_w"),
        text.str.count_matches(_EN_WORDS).alias("_en"),
        text.str.count_matches(_MS_WORDS).alias("_ms"),
        text.str.count_matches(r"\p{Hangul}").alias("_ko"),
        text.str.count_matches(r"\p{L}").alias("_letters"),
    ]


class UntranslatedField(Rule):
    code = "untranslated_field"
    description = "a prompt or response left in English or Korean (or Malay for an English target): function-word and script counts per field"
    default_action = "drop"
    roles = ("prompt", "response", "system")
    params = {"min_words": 5, "min_share": 0.2}

    def match(self, cells, ctx):
        min_words, share = int(self.p["min_words"]), float(self.p["min_share"])
        target = ctx.target_lang
        c = cells.filter(pl.col("text").str.len_chars() >= 12).with_columns(_signals())
        korean = (pl.col("_ko") >= 0.3 * pl.col("_letters")) & (pl.col("_ko") >= 4)
        english = ((pl.col("_w") >= min_words) & (pl.col("_en") >= 2) & (pl.col("_en") >= share * pl.col("_w"))
                   & (pl.col("_ms") * 4 <= pl.col("_en")) & ~korean)
        malay = ((pl.col("_w") >= min_words) & (pl.col("_ms") >= 2) & (pl.col("_ms") >= share * pl.col("_w"))
                 & (pl.col("_en") * 4 <= pl.col("_ms")) & ~korean)
        if target in ("ms", "id"):
            wrong = pl.when(korean).then(pl.lit("ko")).when(english).then(pl.lit("en"))
        elif target == "en":
            wrong = pl.when(korean).then(pl.lit("ko")).when(malay).then(pl.lit("ms/id"))
        else:  # ko
            wrong = (pl.when(~korean & english).then(pl.lit("en")).when(~korean & malay).then(pl.lit("ms/id")))
        excused = (((pl.col("role") == "response") & pl.col("question").str.contains(WANTS_OTHER))
                   | pl.col("text").str.contains(CODE_LIKE))
        out = (c.with_columns(wrong.alias("_lang"))
               .filter(pl.col("_lang").is_not_null() & ~excused)
               .select("_cell", fmt("{} is {}: {}", pl.col("field"), pl.col("_lang"),
                                          pl.col("text").str.slice(0, 80)).alias("evidence")))
        return out if out.height else empty_matches()


def _detect(rows: pl.DataFrame, reuse: bool) -> pl.DataFrame:
    """``_row, lang, conf`` for ``rows`` (``_row, text`` and optionally ``_lang_cache``, the ``lang``
    set at ingest for rows no fix changed; reused when ``reuse``)."""
    from curate import langid
    from curate.rowlang import SAMPLE_CHARS

    schema = {"_row": pl.UInt32, "lang": pl.String, "conf": pl.Float64}
    parts = []
    todo = rows
    if reuse and "_lang_cache" in rows.columns:
        known = pl.col("_lang_cache").is_not_null() & pl.col("_lang_cache").is_in(list(langid.LANGS))
        parts.append(rows.filter(known).select("_row", pl.col("_lang_cache").alias("lang"),
                                               pl.lit(1.0).alias("conf")).cast(schema))
        todo = rows.filter(~known)
    if todo.height:
        res = langid.detect_many(todo["lang_text"].str.slice(0, SAMPLE_CHARS).to_list())
        parts.append(pl.DataFrame({"_row": todo["_row"], "lang": [r[0] for r in res],
                                   "conf": [float(r[1]) for r in res]}, schema=schema))
    return pl.concat(parts) if parts else pl.DataFrame(schema=schema)


class _LangRule(Rule):
    scope = "row"
    stage = 80
    params = {"min_conf": 0.6, "reuse_lang": True}

    def langs(self, rows: pl.DataFrame, ctx) -> pl.DataFrame:
        """Language of each row, computed once per run and shared by the language rules."""
        have = ctx.langs
        need = rows if have is None else rows.join(have, on="_row", how="anti")
        if need.height:
            got = _detect(need, bool(self.p["reuse_lang"]))
            ctx.langs = got if have is None else pl.concat([have, got])
        return rows.select("_row").join(ctx.langs, on="_row", how="left")


class WrongLanguage(_LangRule):
    code = "wrong_language"
    description = "the row's text is not in the target language (English or Korean left untranslated), by curate.langid"
    default_action = "drop"

    def match_rows(self, rows, ctx):
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

    def match_rows(self, rows, ctx):
        if ctx.target_lang != "ms":
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
