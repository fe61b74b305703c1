"""ShareGPT / FastChat chats: ``{"id", "conversations": [{"from": "human"|"gpt", "value"}]}``."""

from __future__ import annotations

from curate.ingest.base import Record, Reject, SourceFormat, key_score, keep_extra
from curate.text import fix_literal_newlines

ROLES = {
    "human": "user", "user": "user", "prompter": "user",
    "gpt": "assistant", "chatgpt": "assistant", "bard": "assistant", "bing": "assistant",
    "assistant": "assistant", "model": "assistant", "bot": "assistant",
    "system": "system",
}


def messages_from(turns, rec: Record, role_key: str, text_key: str, roles: dict[str, str]) -> list[dict]:
    """Canonical messages from a list of turn objects; unknown roles are rejected, not guessed.
    What a turn holds beyond its role and text (``tool_calls``, ``name``, ``weight``, content parts
    that are not text) is kept in the row's meta, ``extra.turns`` by turn index, never dropped."""
    if not isinstance(turns, list) or not turns:
        raise Reject("empty_chat", "a chat with no turns", turns)
    out = []
    kept: dict[str, dict] = {}
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise Reject("bad_turn", f"turn {i} is not an object", turn)
        raw_role = turn.get(role_key)
        role = roles.get(str(raw_role).lower()) if raw_role is not None else None
        if role is None:
            raise Reject("unknown_role", f"turn {i} has unknown role {raw_role!r}", turn)
        rest = {k: v for k, v in turn.items() if k not in (role_key, text_key)}
        content = turn.get(text_key)
        if isinstance(content, list):  # OpenAI content parts
            if any(not (isinstance(p, dict) and p.get("type", "text") == "text") for p in content):
                rest[text_key] = content  # an image, audio or file part: the parts as they were
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if content is None:
            content = ""
            rec.recovered.append(f"turn {i}: no {text_key} (null), read as empty")
        if not isinstance(content, str):
            raise Reject("bad_turn", f"turn {i} content is {type(content).__name__}", turn)
        fixed, n = fix_literal_newlines(content)
        if n:
            rec.recovered.append(f"turn {i}: {n} literal \\n turned into newlines")
        if rest:
            kept[str(i)] = rest
        out.append({"role": role, "content": fixed})
    if kept:
        rec.extra["turns"] = kept
    return out


class ShareGPT(SourceFormat):
    name = "sharegpt"
    kind = "chat"
    summary = "ShareGPT/FastChat {id, conversations: [{from, value}]}"

    def score(self, sample):
        return key_score(sample, {"conversations"})

    def convert(self, obj, rec: Record):
        messages = messages_from(obj.get("conversations"), rec, "from", "value", ROLES)
        for key in ("id", "model"):
            if obj.get(key):
                rec.info[f"origin_{key}"] = obj[key]
        keep_extra(obj, {"id", "model", "conversations"}, rec)
        return [{"messages": messages}]
