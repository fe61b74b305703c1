"""KoChatGPT files: SFT ``{prompt, completion, tokens}``, RM ``{prompt, completion_0..2, ranking}``,
PPO ``{prompt}`` (a JSON array despite the ``.jsonl`` name), and their Malay translations."""

from __future__ import annotations

import re

import polars as pl

from curate.ingest.base import Record, Reject, SourceFormat, key_score, keep_extra, plain_text_rows, text

# A completion that swallowed the next field: '..."korban".", "tokens": 87'
_SWALLOWED = re.compile(r'^"?(?P<text>.*?)"?,\s*"(?P<key>tokens?)"\s*:\s*(?P<n>\d+)\s*$', re.S)


def _tokens(obj, rec: Record) -> None:
    vals = {k: obj[k] for k in ("tokens", "token") if k in obj}
    if vals:
        rec.info["tokens"] = vals.get("tokens", vals.get("token"))
        if "token" in vals:
            rec.recovered.append("'token' read as 'tokens'" if "tokens" not in vals else "dropped duplicate 'token' key")


class KoChatGPTSFT(SourceFormat):
    name = "kochatgpt_sft"
    kind = "sft"
    summary = "KoChatGPT SFT {prompt, completion, tokens}"

    def score(self, sample):
        with_completion = key_score(sample, {"prompt", "completion"}, {"completion_0", "response"})
        return with_completion

    def convert(self, obj, rec: Record):
        prompt = text(obj, "prompt", rec)
        if "completion" not in obj:
            raise Reject("missing_completion", "SFT row without a completion", obj)
        completion = text(obj, "completion", rec)
        m = _SWALLOWED.match(completion)
        if m:
            completion = m.group("text").replace('\\"', '"')
            rec.info["tokens"] = int(m.group("n"))
            rec.recovered.append(f"'{m.group('key')}' was swallowed into the completion text; split it out")
        _tokens(obj, rec)
        keep_extra(obj, {"prompt", "completion", "tokens", "token"}, rec)
        return [{"instruction": prompt, "input": "", "output": completion}]


class KoChatGPTRM(SourceFormat):
    name = "kochatgpt_rm"
    kind = "rm"
    summary = "KoChatGPT RM {prompt, completion_0, completion_1, completion_2, ranking}"

    def score(self, sample):
        return key_score(sample, {"prompt", "completion_0", "completion_1"})

    def convert(self, obj, rec: Record):
        prompt = text(obj, "prompt", rec)
        keys = sorted((k for k in obj if re.fullmatch(r"completion_\d+", k)), key=lambda k: int(k[11:]))
        if len(keys) < 2:
            raise Reject("too_few_completions", "an RM row needs at least two completions", obj)
        completions = [text(obj, k, rec) for k in keys]
        idx = [int(k[11:]) for k in keys]
        ranking = obj.get("ranking")
        ranks = None
        if ranking is None:
            rec.info.setdefault("issues", []).append("unranked: no 'ranking' (rank it in Argilla)")
        elif not isinstance(ranking, list) or not all(isinstance(r, int) and not isinstance(r, bool) for r in ranking):
            raise Reject("bad_ranking", "'ranking' is not a list of integers", ranking)
        elif not ranking:
            rec.info.setdefault("issues", []).append("unranked: 'ranking' is empty")
        elif idx != list(range(len(ranking))) or len(ranking) != len(completions):
            # e.g. completion_2 missing while ranking still has three entries: ranks can't be trusted
            rec.info.setdefault("issues", []).append(
                f"unranked: ranking {ranking} does not fit completions {keys}")
            rec.info["original_ranking"] = ranking
        else:
            ranks = list(ranking)
        _tokens(obj, rec)
        keep_extra(obj, set(keys) | {"prompt", "ranking", "tokens", "token"}, rec)
        return [{"prompt": prompt, "completions": completions, "ranks": ranks}]


class KoChatGPTPPO(SourceFormat):
    name = "kochatgpt_ppo"
    kind = "ppo"
    summary = "KoChatGPT PPO {prompt} (often a JSON array inside a .jsonl file)"

    def score(self, sample):
        s = key_score(sample, {"prompt"}, {"completion", "completion_0", "response", "messages", "conversations"})
        # rows that are only {"prompt"} are the signature; tolerate a few rows with extra keys
        return s * 0.99

    def convert(self, obj, rec: Record):
        prompt = text(obj, "prompt", rec)
        if not prompt.strip():
            raise Reject("empty_prompt", "empty prompt", prompt)
        _tokens(obj, rec)
        keep_extra(obj, {"prompt", "tokens", "token"}, rec)
        return [{"prompt": prompt}]

    fast_schema = {"prompt": pl.String}

    def fast_columns(self, df):
        ok = plain_text_rows(df, ("prompt",))
        return None if ok is None else ok & (df["prompt"].str.strip_chars() != "")

    def fast_content(self, df):
        return df.select("prompt")
