"""KoChatGPT's plain-text files: conversation blocks and the one-question-per-line seed list."""

from __future__ import annotations

import re
from pathlib import Path

from curate.ingest.base import SourceFormat
from curate.ingest.readers import Item, iter_text_lines
from curate.text import fix_literal_newlines

MARKER = "<<start conversation>>"

# Speaker labels seen in KoChatGPT and its Malay translation (and obvious relatives).
USER_LABELS = {"사람", "orang", "human", "user", "pengguna", "manusia", "saya", "인간", "사용자"}
BOT_LABELS = {"챗봇", "chatbot", "chabot", "chatbox", "ai", "bot", "assistant", "pembantu", "gpt", "봇"}
CANONICAL_LABELS = {"사람", "챗봇", "Orang", "Chatbot"}  # as written in the originals: <사람>: <Orang>:
_LABEL = re.compile(r"^\s*(<\s*(?P<b>[^<>:\n]{1,20}?)\s*>|(?P<p>[^\s<>:]{1,12}))\s*:\s?(?P<text>.*)$")


def _role(label: str) -> str | None:
    low = label.strip().lower()
    if low in USER_LABELS:
        return "user"
    if low in BOT_LABELS:
        return "assistant"
    return None


class KoChatGPTConversation(SourceFormat):
    name = "kochatgpt_conversation"
    kind = "chat"
    container = "text"
    summary = "KoChatGPT conversation text: <<start conversation>> blocks of <사람>:/<챗봇>: lines"

    def score(self, head: str):
        return 1.0 if MARKER in head else 0.0

    def items(self, path: Path):
        block_line, turns, notes, raw = None, [], [], []
        for lineno, line, note in iter_text_lines(path):
            if line is None:
                yield Item(lineno, raw="", error=note)
                continue
            if note:
                notes.append(f"line {lineno}: {note}")
            if line.strip() == MARKER:
                if block_line is not None:
                    yield self._finish(block_line, turns, notes, raw)
                block_line, turns, notes, raw = lineno, [], [], []
                continue
            if block_line is None:
                if line.strip():
                    yield Item(lineno, raw=line, error="text before the first <<start conversation>> marker")
                continue
            if not line.strip():
                continue
            raw.append(line)
            m = _LABEL.match(line)
            label = (m.group("b") or m.group("p")) if m else None
            role = _role(label) if label else None
            if role is None and m and m.group("b"):
                # an unknown bracketed label such as <Pelanggan>: keep the turn, alternate the role
                role = "assistant" if turns and turns[-1]["role"] == "user" else "user"
                notes.append(f"line {lineno}: unknown speaker label <{label}> read as {role}")
            if role is None:
                if turns:
                    turns[-1]["content"] += "\n" + line
                    continue
                yield Item(lineno, raw=line, error="a line without a speaker label at the start of a conversation")
                continue
            if not (m.group("b") and label in CANONICAL_LABELS):
                notes.append(f"speaker label {label!r} read as {role}")
            turns.append({"role": role, "content": m.group("text").strip()})
        if block_line is not None:
            yield self._finish(block_line, turns, notes, raw)

    @staticmethod
    def _finish(line: int, turns: list, notes: list, raw: list) -> Item:
        if not turns:
            return Item(line, raw=MARKER, error="empty conversation block (two markers in a row)")
        recovered = sorted(set(notes))
        for t in turns:
            fixed, n = fix_literal_newlines(t["content"])
            if n:
                t["content"] = fixed
                recovered.append("literal \\n turned into newlines")
        return Item(line, {"messages": turns}, raw="\n".join(raw)[:2000], recovered=recovered)

    def convert(self, obj, rec):
        return [obj]


class QuestionList(SourceFormat):
    name = "question_list"
    kind = "ppo"
    container = "text"
    summary = "plain text, one prompt per line (KoChatGPT seed data); a BOM is fine"

    def score(self, head: str):
        """The share of lines that read like a prompt: words, not numbers, not CSV/TSV rows."""
        lines = [line for line in head.splitlines() if line.strip()]
        if len(lines) > 1:
            lines = lines[:-1]  # the head may end inside a line
        if not lines or MARKER in head or _looks_tabular(lines):
            return 0.0
        return sum(1 for line in lines if _PROSE.search(line)) / len(lines)

    def items(self, path: Path):
        for lineno, line, note in iter_text_lines(path):
            if line is None:
                yield Item(lineno, raw="", error=note)
                continue
            if not line.strip():
                yield Item(lineno, raw=line, error="empty line")
                continue
            yield Item(lineno, {"prompt": line.strip()}, recovered=[note] if note else [])

    def convert(self, obj, rec):
        return [obj]


# a prompt has at least two words of letters (any script), or one long word (CJK, Hangul)
_PROSE = re.compile(r"[^\W\d_]{2,}\s+[^\W\d_]{2,}|[^\W\d_\s]{6,}")


def _looks_tabular(lines: list[str]) -> bool:
    """A CSV/TSV table: every line holds the same number (>= 1) of commas or tabs."""
    for sep in ("\t", ","):
        counts = {line.count(sep) for line in lines[:50]}
        if len(lines) >= 2 and len(counts) == 1 and counts.pop() >= 1:
            return True
    return False
