"""A corpus like issue 15's independent benchmark: Alpaca-style JSONL rows recombined from the
sentences of real English, Malay, Indonesian and Korean rows, with exact and near duplicates.

``bench/ingest.py`` by default cycles the fixtures' SFT rows with a counter in each instruction:
every millionth row is one of ~1,000 texts, so the language id's slow path (lingua, for the texts
the compiled detector leaves undecided) sees ~140 distinct texts at 1M rows, and few rows hold code
or URLs. Recombined rows are all different: ~2,900 distinct texts reach lingua at 1M rows, 3x as
many rows need code removed first, and Korean and Indonesian rows are in the mix, as in a real
corpus (``bench/ingest.py --corpus recombined``).

Rows: a language drawn (English 35%, Malay 40%, Indonesian 10%, Korean 15%), then an instruction
of 1-2 sentences, an input (empty 60% of the time) and an output of 1-5 sentences of that
language; 5% of the rows are exact copies of an earlier row, 5% near copies (one word in twenty
replaced). Sentences come from ``tests/data/fixtures`` (English: ChatDoctor, AlpacaDataCleaned
GSM8K, the Alpaca seed tasks, ShareGPT; Malay: MYChatGPT's translations and the NTREX Malay side;
Indonesian: the NTREX Indonesian side; Korean: KoChatGPT PPO prompts and conversations).
"""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "data" / "fixtures"
SOURCES = {
    "en": ["chatdoctor.json", "alpacacleaned_gsm8k.json", "alpaca_seed_tasks.jsonl", "sharegpt.json"],
    "ms": ["malay_alpaca.json", "malay_chatdoctor.jsonl", "malay_gpt4all.jsonl", "malay_kochatgpt_sft.jsonl"],
    "ko": ["kochatgpt_ppo.jsonl", "kochatgpt_conversation.jsonl"],
}
SHARES = {"en": 0.35, "ms": 0.40, "id": 0.10, "ko": 0.15}
_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")


def _texts(files: list[str]) -> list[str]:
    sys.path.insert(0, str(ROOT))
    from curate.ingest import ingest

    out: list[str] = []
    for df in ingest([FIXTURES / f for f in files], detect_lang=False).frames.values():
        for col in ("instruction", "input", "output", "prompt"):
            if col in df.columns:
                out += [t for t in df[col].to_list() if t]
        if "messages" in df.columns:
            out += [m["content"] for chat in df["messages"].to_list() for m in chat if m.get("content")]
    return out


def sentence_pools() -> dict[str, list[str]]:
    def sentences(texts: list[str]) -> list[str]:
        return [s.strip() for t in texts for s in _SPLIT.split(t) if len(s.strip()) > 8]

    pools = {lang: sentences(_texts(files)) for lang, files in SOURCES.items()}
    pairs = [line.split("\t") for line in (FIXTURES / "langid" / "ms_id_pairs.tsv").read_text().splitlines()
             if line.count("\t") == 1]
    pools["ms"] += [ms for ms, _ in pairs]
    pools["id"] = [idn for _, idn in pairs]
    return pools


def build(path: Path, rows: int, seed: int = 0) -> None:
    """Write ``rows`` recombined rows to ``path`` (atomically)."""
    pools = sentence_pools()
    rng = random.Random(seed)
    langs, weights = list(SHARES), list(SHARES.values())
    earlier: list[dict] = []  # a sample of earlier rows, the originals of the copies
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        for _ in range(rows):
            r = rng.random()
            if earlier and r < 0.05:
                row = dict(rng.choice(earlier))
            elif earlier and r < 0.10:
                row = dict(rng.choice(earlier))
                words = row["output"].split(" ")
                for _ in range(max(1, len(words) // 20)):
                    words[rng.randrange(len(words))] = rng.choice(words)
                row["output"] = " ".join(words)
            else:
                pool = pools[rng.choices(langs, weights)[0]]
                row = {"instruction": " ".join(rng.sample(pool, rng.choice([1, 1, 2]))),
                       "input": "" if rng.random() < 0.6 else rng.choice(pool),
                       "output": " ".join(rng.choice(pool) for _ in range(rng.randint(1, 5)))}
                if len(earlier) < 50_000:
                    earlier.append(row)
                elif rng.random() < 0.01:
                    earlier[rng.randrange(len(earlier))] = row
            fh.write(orjson.dumps(row) + b"\n")
    tmp.replace(path)
