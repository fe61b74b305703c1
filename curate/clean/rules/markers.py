"""Empty-input markers, label prefixes, empty and N/A fields."""

from __future__ import annotations

import polars as pl

from curate.clean.base import Rule, empty_matches, fast, regex_match

# One "there is no input" marker, in the spellings the self-instruct data uses.
MARK = (r"(?:<\s*/?\s*(?:no|tiada|tidak\s+ada|tanpa|tak\s+ada)[\s_-]*input\s*/?\s*>"
        r"|\bno[\s_-]*input\b|\b(?:tiada|tidak\s+ada|tanpa|tak\s+ada)\s+input\b"
        r"|<\s*(?:none|empty|kosong|tiada)\s*>|\bn/a\b|\bnone\b|\(\s*no\s+input\s*\)|\[\s*no\s+input\s*\])")
_NEEDED = r"(?:\s+(?:yang\s+|is\s+)?(?:diperlukan|required|needed|diberikan|provided|given|necessary))?"
# The whole field is a marker: "<noinput>", "<p><noinput></p>", "No input.", "Sinopsis: <noinput>",
# "Tidak ada input yang diperlukan. <noinput>".
WHOLE = (rf"(?is)^\s*(?:<p>\s*)?(?:[^\n:<>]{{1,30}}:\s*)?{MARK}{_NEEDED}[\s.]*(?:{MARK}[\s.]*)?"
         r"(?:</p>)?\s*$")
WHOLE = fast(WHOLE)
# One line "Label: <noinput>" inside a longer input.
LINE = r"(?im)^[^\n:<>]{1,30}:[ \t]*<\s*no[\s_-]*input\s*>[ \t]*(?:\r?\n|$)"


class NoInputMarker(Rule):
    code = "noinput_marker"
    description = "empty-input markers (<noinput>, <no input>, No input, N/A, Tiada input, <p><noinput></p> ...) -> \"\""
    default_action = "fix"
    actions = ("fix", "drop", "flag")
    fixes = True
    roles = ("input",)
    stage = 20

    def match(self, cells, ctx):
        whole = pl.col("text").str.contains(WHOLE)
        line = pl.col("text").str.contains(LINE)
        sub = cells.filter(whole | line)
        if sub.height == 0:
            return empty_matches(fix=True)
        after = (pl.when(whole).then(pl.lit(""))
                 .otherwise(pl.col("text").str.replace_all(LINE, "").str.strip_chars_end()))
        evidence = pl.when(whole).then(pl.col("text").str.strip_chars()).otherwise(
            pl.col("text").str.extract(f"({LINE})", 1).str.strip_chars())
        return sub.select("_cell", evidence.alias("evidence"), after.alias("after"))


_LABELS = {
    "prompt": r"(?:instruction|instruksi|arahan|perintah)",
    "input": r"(?:input|masukan|input\s+data)",
    "response": r"(?:output|response|respons|jawapan|jawaban)",
}


class LabelPrefix(Rule):
    code = "label_prefix"
    description = "strip a leftover template label at the start of a field (\"Instruction: ...\", \"Output: ...\")"
    default_action = "fix"
    actions = ("fix", "flag", "off")
    fixes = True
    roles = ("prompt", "input", "response")
    stage = 22

    def match(self, cells, ctx):
        parts = []
        any_label = "|".join(_LABELS.values())
        cells = cells.filter(pl.col("text").str.contains(rf"(?i)^\s*(?:#{{1,4}}\s*)?(?:{any_label})\s*:"))
        for role, label in _LABELS.items():
            pattern = rf"(?i)^\s*(?:#{{1,4}}\s*)?{label}\s*:[ \t]*\n?"
            sub = cells.filter((pl.col("role") == role) & pl.col("text").str.contains(pattern))
            if sub.height:
                parts.append(sub.select("_cell", pl.col("text").str.extract(f"({pattern})", 1).str.strip_chars()
                                        .alias("evidence"),
                                        pl.col("text").str.replace(pattern, "").alias("after")))
        parts = [p for p in parts if p.height]
        # a field that is nothing but the label is left to the empty-field rules
        return pl.concat(parts).filter(pl.col("after").str.strip_chars() != "") if parts else empty_matches(True)


class EmptyOutput(Rule):
    code = "empty_output"
    description = "empty or whitespace-only response (sft output, assistant message, rm completion)"
    default_action = "drop"
    roles = ("response",)
    kinds = ("sft", "chat", "rm")

    def match(self, cells, ctx):
        sub = cells.filter(pl.col("text").str.len_bytes() < 64).filter(pl.col("text").str.contains(r"^\s*$"))
        return sub.select("_cell", (pl.col("field") + pl.lit(" is empty")).alias("evidence"))


class EmptyPrompt(Rule):
    code = "empty_prompt"
    description = "empty or whitespace-only instruction / user message / prompt"
    default_action = "drop"
    roles = ("prompt",)

    def match(self, cells, ctx):
        sub = cells.filter(pl.col("text").str.len_bytes() < 64).filter(pl.col("text").str.contains(r"^\s*$"))
        return sub.select("_cell", (pl.col("field") + pl.lit(" is empty")).alias("evidence"))


# Outputs that say there is no answer: "N/A", "<No Output>", "Tiada output", "Not applicable".
NA = (r"(?is)^\s*[\"'(\[]?\s*(?:n\s*/\s*a|n\.a\.?|<\s*no\s*output\s*>|no\s+output|none|null|nil"
      r"|tiada\s+(?:output|jawapan)|tidak\s+ada\s+(?:output|jawapan)|tidak\s+berkenaan|not\s+applicable"
      r"|<\s*tiada\s+output\s*>|-+)\s*[\"')\]]?\s*\.?\s*$")
NA = fast(NA)


class NAOutput(Rule):
    code = "na_output"
    description = "the response is only N/A, <No Output>, None, Tiada output or similar"
    default_action = "drop"
    roles = ("response",)
    kinds = ("sft", "chat", "rm")

    def match(self, cells, ctx):
        return regex_match(cells, NA, mask=pl.col("text").str.len_chars() < 40)
