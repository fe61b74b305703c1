"""Encoding damage: mojibake, literal escape sequences, stray control characters."""

from __future__ import annotations

import re

import polars as pl

from curate.clean.base import Rule, empty_matches, python_fix
from curate.text import fix_literal_newlines, looks_like_code

# UTF-8 bytes read as cp1252/latin-1: a lead byte (Â..ð) followed by a continuation byte shown as
# U+0080..U+00BF or one of the cp1252 specials (€ ‚ ƒ „ … † ‡ ˆ ‰ Š ‹ Œ Ž ‘ ’ “ ” • – — ˜ ™ š › œ ž Ÿ).
_CONT = r"\x{80}-\x{BF}\x{152}\x{153}\x{160}\x{161}\x{178}\x{17D}\x{17E}\x{192}\x{2C6}\x{2DC}\x{2013}\x{2014}\x{2018}-\x{201E}\x{2020}-\x{2022}\x{2026}\x{2030}\x{2039}\x{203A}\x{20AC}\x{2122}"
MOJIBAKE = rf"[\x{{C2}}-\x{{F0}}][{_CONT}]"


def _py_pattern(rust: str) -> re.Pattern:
    # Python's re spells \x{HHHH} as \uHHHH
    return re.compile(re.sub(r"\\x\{([0-9A-Fa-f]+)\}", lambda m: "\\u%04x" % int(m.group(1), 16), rust))


_MOJIBAKE_PY = _py_pattern(MOJIBAKE)


def _whole_cp1252(text: str) -> str | None:
    """The common case, a whole field decoded as cp1252: undo it directly (fast; ftfy otherwise)."""
    try:
        fixed = text.encode("cp1252").decode("utf-8")
    except UnicodeError:
        return None
    return fixed if fixed != text and not _MOJIBAKE_PY.search(fixed) else None


class Mojibake(Rule):
    code = "mojibake"
    description = "repair UTF-8 read as cp1252/latin-1 (â€™, Â+no-break space) with ftfy, on suspicious text only"
    default_action = "fix"
    actions = ("fix", "drop", "flag")
    fixes = True
    stage = 10

    def __init__(self, **params):
        super().__init__(**params)
        import ftfy

        self._ftfy = ftfy
        # Only the encoding repairs: no quote uncurling, width or Unicode normalisation changes.
        self._config = ftfy.TextFixerConfig(
            unescape_html=False, remove_terminal_escapes=False, fix_encoding=True, restore_byte_a0=True,
            replace_lossy_sequences=True, decode_inconsistent_utf8=True, fix_c1_controls=True,
            fix_latin_ligatures=False, fix_character_width=False, uncurl_quotes=False, fix_line_breaks=False,
            fix_surrogates=True, remove_control_chars=False, normalization=None, explain=False)

    def match(self, cells, ctx):
        def fix(text):
            m = _MOJIBAKE_PY.search(text)
            if not m:
                return None
            after = _whole_cp1252(text) or self._ftfy.fix_text(text, self._config)
            start = max(0, m.start() - 20)
            return after, text[start:m.end() + 20]

        # a match starts with a character of U+00C2..U+00F0, whose UTF-8 lead byte is C3: a byte
        # search finds the cells holding one (the regex's classes over every non-ASCII cell took 2-5x longer)
        lead = cells.filter(pl.col("text").cast(pl.Binary).bin.contains(b"\xc3"))
        return python_fix(lead, pl.col("text").str.contains(MOJIBAKE), fix)


_ESCAPED_QUOTE = re.compile(r"(?<!\\)\\([\"'])")
# A lone literal \t (fix_literal_newlines only turns \t into a tab next to a literal \n): a tab,
# except where it reads as a path: after a drive letter (C:\Temp) or before a lowercase letter
# (folder\tools, C:\temp).
_LONE_TAB = re.compile(r"(?<!\\)(?<!\b[A-Za-z]:)\\t(?![a-z])")
_ESCAPED_UNICODE = re.compile(r"(?<!\\)\\u([0-9a-fA-F]{4})")


def _unicode(m: re.Match) -> str:
    cp = int(m.group(1), 16)
    return m.group(0) if 0xD800 <= cp <= 0xDFFF else chr(cp)


def fix_escapes(text: str) -> tuple[str, int]:
    """Literal ``\\n``/``\\t`` (via :func:`curate.text.fix_literal_newlines`), ``\\"``, ``\\'`` and
    ``\\uXXXX`` left by double JSON encoding, turned back into the characters; text that looks like
    code is left alone (there ``"\\n"`` means what it says)."""
    if "\\" not in text or looks_like_code(text):
        return text, 0
    fixed, n = fix_literal_newlines(text)
    if not n:
        fixed, n = _LONE_TAB.subn("\t", fixed)
    fixed, q = _ESCAPED_QUOTE.subn(r"\1", fixed)
    fixed, u = _ESCAPED_UNICODE.subn(_unicode, fixed)
    return fixed, n + q + u


class LiteralEscapes(Rule):
    code = "literal_escapes"
    description = r"literal \n, \t, \", \uXXXX left by double JSON encoding -> the characters, except in code"
    default_action = "fix"
    actions = ("fix", "drop", "flag")
    fixes = True
    stage = 12

    def match(self, cells, ctx):
        def fix(text):
            after, n = fix_escapes(text)
            if not n:
                return None
            return after, f"{n} literal escape(s)"

        return python_fix(cells, pl.col("text").str.contains_any(["\\n", "\\t", "\\\"", "\\'", "\\u"]), fix)


# C0 controls except tab/newline/CR, DEL, C1 controls, zero-width space, BOM, bidi marks, and the
# Unicode line/paragraph separators (turned into newlines).
CONTROL = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F\x{80}-\x{9F}\x{200B}\x{200E}\x{200F}\x{202A}-\x{202E}\x{2060}\x{FEFF}]"


CONTROL_CHARS = ([chr(c) for c in [*range(0x00, 0x09), 0x0B, 0x0C, 0x0D, *range(0x0E, 0x20), 0x7F, *range(0x80, 0xA0)]]
                 + ["\u200b", "\u200e", "\u200f", *map(chr, range(0x202A, 0x202F)), "\u2060", "\ufeff", "\u2028", "\u2029"])


class ControlChars(Rule):
    code = "control_chars"
    description = "remove control, zero-width and BOM characters; CRLF, CR and U+2028/2029 become newlines"
    default_action = "fix"
    actions = ("fix", "drop", "flag")
    fixes = True
    stage = 14

    def match(self, cells, ctx):
        pattern = rf"{CONTROL}|\r|[\x{{2028}}\x{{2029}}]"
        from curate import char_scan_jit  # numba: imported by the rules that run, not by --help

        if char_scan_jit.AVAILABLE and cells.height:  # the same cells, in one pass over the bytes
            sub = cells.filter(pl.Series(char_scan_jit.has_control(cells["text"])))
        else:
            sub = cells.filter(pl.col("text").str.contains(pattern))
        if sub.height == 0:
            return empty_matches(fix=True)
        after = (pl.col("text").str.replace_all(r"\r\n?", "\n").str.replace_all(r"[\x{2028}\x{2029}]", "\n")
                 .str.replace_all(CONTROL, ""))
        found = pl.col("text").str.extract_all(pattern).list.unique().list.eval(
            pl.element().map_elements(lambda c: f"U+{ord(c):04X}" if c else c, return_dtype=pl.String)
        ).list.join(" ")
        return sub.select("_cell", found.alias("evidence"), after.alias("after"))
