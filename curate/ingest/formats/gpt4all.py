"""gpt4all prompt/response JSONL: ``{prompt, response, source}``."""

from __future__ import annotations

from curate.ingest.base import Record, SourceFormat, key_score, keep_extra, text

KEYS = {"prompt", "response", "source"}


class Gpt4All(SourceFormat):
    name = "gpt4all"
    kind = "sft"
    summary = "gpt4all {prompt, response, source}"

    def score(self, sample):
        return key_score(sample, {"prompt", "response"})

    def convert(self, obj, rec: Record):
        prompt = text(obj, "prompt", rec)
        statement = obj.get("statement")
        if isinstance(statement, str) and statement.strip():
            # The translator split the prompt: headline in 'prompt', body and question in 'statement'.
            prompt = f"{prompt.rstrip()}\n{statement.strip()}"
            rec.recovered.append("merged the stray 'statement' key back into the prompt")
        if "source" in obj:
            rec.info["origin"] = obj["source"]
        keep_extra(obj, KEYS | {"statement"}, rec)
        return [{"instruction": prompt, "input": "", "output": text(obj, "response", rec)}]
