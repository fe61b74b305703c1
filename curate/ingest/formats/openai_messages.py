"""OpenAI chat format: ``{"messages": [{"role", "content"}]}`` (fine-tuning JSONL, TRL conversational)."""

from __future__ import annotations

from curate.ingest.base import Record, SourceFormat, key_score, keep_extra
from curate.ingest.formats.sharegpt import ROLES, messages_from


class OpenAIMessages(SourceFormat):
    name = "openai_messages"
    kind = "chat"
    summary = "OpenAI/TRL chat {messages: [{role, content}]}"

    def score(self, sample):
        return key_score(sample, {"messages"})

    def convert(self, obj, rec: Record):
        messages = messages_from(obj.get("messages"), rec, "role", "content", {**ROLES, "developer": "system"})
        keep_extra(obj, {"messages"}, rec)
        return [{"messages": messages}]
