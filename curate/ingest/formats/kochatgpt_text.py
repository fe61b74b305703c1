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
        for lineno, line in iter_text_lines(path):
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
        lines = [line for line in head.splitlines() if line.strip()]
        return 0.5 if lines and MARKER not in head else 0.0

    def items(self, path: Path):
        for lineno, line in iter_text_lines(path):
            if not line.strip():
                yield Item(lineno, raw=line, error="empty line")
                continue
            yield Item(lineno, {"prompt": line.strip()})

    def convert(self, obj, rec):
        return [obj]
