"""Small text helpers shared by ingest and clean."""

from __future__ import annotations

import re

# A literal backslash-n (two characters) that should have been a newline. Not when it is part of a
# longer escape run such as ``\\n`` (an escaped backslash), and not inside code, where ``"\n"`` is
# meaningful.
_LITERAL_NL = re.compile(r"(?<!\\)\\n")
_LITERAL_TAB = re.compile(r"(?<!\\)\\t")
_CODE_HINT = re.compile(r"```|print\s*\(|printf|\bdef |\breturn\b|;\s*$|\bcout\b|System\.out|console\.log|['\"][^'\"\n]*\\n[^'\"\n]*['\"]", re.M)


def looks_like_code(text: str) -> bool:
    return bool(_CODE_HINT.search(text))


def fix_literal_newlines(text: str) -> tuple[str, int]:
    """Turn literal ``\\n`` (and ``\\t``) into real newlines (tabs) unless the text looks like code.

    Returns the new text and how many sequences were replaced (0 means unchanged).
    """
    if "\\" not in text or looks_like_code(text):
        return text, 0
    fixed, n = _LITERAL_NL.subn("\n", text)
    if n:
        fixed, m = _LITERAL_TAB.subn("\t", fixed)
        n += m
    return fixed, n


def strip_bom(text: str) -> str:
    return text[1:] if text.startswith("\ufeff") else text
