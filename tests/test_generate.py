"""generate: self-instruct over the loopback OpenAI-compatible server, with realistic numbered lists.

The handler plays a model: it reads the 3 seed examples in the prompt and answers with a numbered
list continuing at 4, made of real Malay self-instruct tasks (malay_alpaca.json) plus planted
faults: a copy of a shown seed, forbidden words (gambar, lukis, muzik, image), "Tulis satu program",
a punctuation start, a too-short instruction, and every third reply cut by length mid-item.
"""

from __future__ import annotations

import json
import random
import re

import pytest
from click.testing import CliRunner

from curate.errors import EXIT_PENDING
from curate import seeds as S
from curate.cli import cli
from curate.generate import (ALPACA_PROMPT, MALAY_PROMPT, check_instruction, encode_prompt, parse_reply,
                             prompt_for)
from curate.rouge import rouge_l
from tests.servers.openai_server import completion, openai_server  # noqa: F401

MS_SEEDS = S.SEEDS_DIR / "malay_seed_tasks.jsonl"
NO_ENV = {"OPENAI_API_KEY": None, "OPENAI_BASE_URL": None, "CURATE_MODEL": None, "CURATE_LLM_CONFIG": None}

PLANTED = {
    "not_text": ["Lukis gambar pemandangan sawah padi di kampung anda.",
                 "Cipta sebuah lagu dan mainkan muzik latar untuk iklan kopi.",
                 "Describe this image of a cat sleeping on a chair."],
    "write_program": ["Tulis satu program Python yang menyusun senarai nombor secara menaik."],
    "punctuation": ["\"Apakah maksud peribahasa bagai aur dengan tebing?\""],
    "too_short": ["Terangkan fotosintesis."],
}


def _examples(prompt: str) -> list[str]:
    return re.findall(r"(?m)^\d+\. Arahan: (.*)$", prompt)


class SelfInstructModel:
    """A deterministic stand-in for the model, driven by the request's ``seed`` parameter."""

    def __init__(self, fixtures):
        rows = json.load(open(fixtures / "malay_alpaca.json", encoding="utf-8"))
        self.pool = [r for r in rows if r["instruction"][0].isalpha()]
        self.cut = []

    def __call__(self, request: dict):
        prompt = request["messages"][-1]["content"]
        rng = random.Random(request["seed"])
        shown = _examples(prompt)
        items = [(r["instruction"], r["input"], r["output"]) for r in rng.sample(self.pool, 11)]
        items.insert(2, (shown[0], "", "Salinan contoh."))                       # copy of a shown seed
        kind = list(PLANTED)[request["seed"] % len(PLANTED)]
        items.insert(4, (PLANTED[kind][request["seed"] % len(PLANTED[kind])], "", "Tidak boleh."))
        items.insert(6, (PLANTED["not_text"][request["seed"] % 3], "<noinput>", "Tidak boleh."))
        blocks = []
        for k, (ins, inp, out) in enumerate(items, start=4):
            blocks.append(f"{k}. Arahan: {ins}\n{k}. Input:\n{inp or '<noinput>'}\n{k}. Output:\n{out}")
        text = "\n###\n".join(blocks)
        # a completion-style reply continues right after "4. Arahan:"; a chat-style one repeats it
        if request["seed"] % 2 == 0:
            text = " " + text[len("4. Arahan:"):].lstrip()
        if request["seed"] % 3 == 0:
            cut = f"{4 + len(items)}. Arahan: Terangkan bagaimana sistem pengangkutan awam di Kuala Lumpur"
            self.cut.append(cut)
            return completion(text + "\n###\n" + cut, request["model"], finish="length")
        return text + "\n###"


@pytest.fixture
def model(fixtures, openai_server):  # noqa: F811
    m = SelfInstructModel(fixtures)
    openai_server.handler = m
    return m


def _run(server, out, tmp_path, *extra, n=60):
    args = ["generate", "--seeds", str(MS_SEEDS), "-n", str(n), "-o", str(out), "--base-url", server.url,
            "--model", "loopback", "--api-key", "sk-test", "--cache", str(tmp_path / "cache.sqlite"), *extra]
    return CliRunner().invoke(cli, args, env=NO_ENV)


def test_generate_over_loopback(openai_server, model, tmp_path):  # noqa: F811
    res = _run(openai_server, tmp_path / "gen", tmp_path)
    assert res.exit_code == 0, res.output
    rows = json.loads((tmp_path / "gen" / "generated.json").read_text())
    assert len(rows) == 60
    from curate.generate import seed_examples
    seeds = [e["instruction"] for e in seed_examples(S.load_tasks(MS_SEEDS))]

    # every request: the Malay prompt, 3 seed examples, asks the model to continue at 4
    assert openai_server.count >= 4
    for req in openai_server.requests:
        prompt = req["messages"][0]["content"]
        assert prompt.startswith(MALAY_PROMPT) and prompt.endswith("###\n4. Arahan:")
        shown = _examples(prompt)
        assert len(shown) == 3 and all(s in {re.sub(r"\s+", " ", x).strip().rstrip(":") for x in seeds}
                                       for s in shown)
        assert req["temperature"] == 1.0 and req["max_tokens"] == 3072

    # kept tasks: the filters hold, checked independently with the naive ROUGE-L
    planted = {p for ps in PLANTED.values() for p in ps}
    earlier = list(seeds)
    for row in rows:
        assert set(row) == {"instruction", "input", "output", "most_similar_instructions", "avg_similarity_score"}
        ins = row["instruction"]
        assert ins not in planted and ins not in model.cut and len(ins.split()) > 3
        scores = [rouge_l(ins, e) for e in earlier]
        assert max(scores) <= 0.7
        top = sorted(scores, reverse=True)[:10]
        assert sorted(row["most_similar_instructions"].values(), reverse=True) == pytest.approx(top[:len(row["most_similar_instructions"])])
        for other, f in row["most_similar_instructions"].items():
            assert f == rouge_l(ins, other)
        assert row["avg_similarity_score"] == pytest.approx(sum(scores) / len(scores), abs=1e-12)
        assert row["input"] != "<noinput>"
        earlier.append(ins)

    # what was dropped, and why
    quarantine = [json.loads(l) for l in (tmp_path / "gen" / "quarantine.jsonl").read_text().splitlines()]
    codes = {q["code"] for q in quarantine}
    assert {"similar", "not_text", "write_program", "punctuation", "too_short", "truncated"} <= codes
    truncated = [q["row"]["raw"] for q in quarantine if q["code"] == "truncated"]
    assert truncated and set(truncated) <= set(model.cut)
    sim = [q for q in quarantine if q["code"] == "similar"]
    assert any(q["evidence"]["rouge_l"] == 1.0 and q["evidence"]["most_similar"] in seeds for q in sim)
    report = json.loads((tmp_path / "gen" / "report.json").read_text())
    assert report["kept"] == 60 and report["dropped"]["truncated"] == len(truncated)
    if report["lang_check"] == "on":
        # malay_alpaca.json has Indonesian rows (e.g. "Tulis satu paragraf deskripsi tentang lagu favorit anda")
        wrong = [q for q in quarantine if q["code"] == "wrong_language"]
        assert wrong and all(q["evidence"]["lang"] != "ms" for q in wrong)
    assert report["llm"]["requests_sent"] == openai_server.count
    # the canonical rows for the next stages
    import polars as pl
    df = pl.read_parquet(tmp_path / "gen" / "sft.parquet")
    assert df.height == 60 and set(df["lang"]) == {"ms"} and df["instruction"].to_list() == [r["instruction"] for r in rows]

    # a re-run is answered from the cache: no request, the same bytes
    sent = openai_server.count
    res = _run(openai_server, tmp_path / "gen2", tmp_path)
    assert res.exit_code == 0, res.output
    assert openai_server.count == sent
    assert (tmp_path / "gen2" / "generated.json").read_bytes() == (tmp_path / "gen" / "generated.json").read_bytes()


def test_budget_stop_then_resume_from_cache(openai_server, model, tmp_path):  # noqa: F811
    res = _run(openai_server, tmp_path / "gen", tmp_path, "--max-requests", "4")
    assert res.exit_code == 1 and "request budget" in res.output
    assert openai_server.count == 4
    partial = json.loads((tmp_path / "gen" / "generated.json").read_text())
    assert 0 < len(partial) < 60
    res = _run(openai_server, tmp_path / "gen", tmp_path)
    assert res.exit_code == 0, res.output
    rows = json.loads((tmp_path / "gen" / "generated.json").read_text())
    assert len(rows) == 60 and rows[:len(partial)] == partial
    # an uninterrupted run of the same command sends the same requests: none was asked twice
    bodies = [json.dumps(r, sort_keys=True) for r in openai_server.requests]
    assert len(set(bodies)) == len(bodies)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    res = _run(openai_server, tmp_path / "gen3", fresh)
    assert res.exit_code == 0
    assert (tmp_path / "gen3" / "generated.json").read_bytes() == (tmp_path / "gen" / "generated.json").read_bytes()
    assert openai_server.count == 2 * len(bodies)


def test_pruned_mode_keeps_the_same_tasks(openai_server, model, tmp_path):  # noqa: F811
    assert _run(openai_server, tmp_path / "full", tmp_path, n=40).exit_code == 0
    res = _run(openai_server, tmp_path / "fast", tmp_path, "--no-similarity-fields", n=40)
    assert res.exit_code == 0, res.output
    full = json.loads((tmp_path / "full" / "generated.json").read_text())
    fast = json.loads((tmp_path / "fast" / "generated.json").read_text())
    assert [r["instruction"] for r in fast] == [r["instruction"] for r in full]
    assert "avg_similarity_score" not in fast[0]


def test_without_endpoint_writes_batch_requests(tmp_path):
    res = CliRunner().invoke(cli, ["generate", "--seeds", str(MS_SEEDS), "-n", "30", "-o", str(tmp_path / "gen"),
                                   "--cache", str(tmp_path / "cache.sqlite")], env=NO_ENV)
    assert res.exit_code == EXIT_PENDING, res.output  # requests wait for the batch: a pipeline stops here
    files = list((tmp_path / "gen" / "batch").glob("*.jsonl"))
    assert files
    lines = [json.loads(l) for f in files for l in f.read_text().splitlines()]
    assert lines and all(l["body"]["messages"][0]["content"].startswith(MALAY_PROMPT) for l in lines)
    assert json.loads((tmp_path / "gen" / "generated.json").read_text()) == []
    assert json.loads((tmp_path / "gen" / "report.json").read_text())["pending_batch_requests"] == len(lines)


def test_batch_api_round_trip(fixtures, tmp_path):
    """No endpoint: requests go to a Batch API file; its results merged with --batch-in complete the run."""
    out = tmp_path / "gen"
    base = ["generate", "--seeds", str(MS_SEEDS), "-n", "30", "-o", str(out), "--cache", str(tmp_path / "c.sqlite")]
    res = CliRunner().invoke(cli, base, env=NO_ENV)
    assert res.exit_code == EXIT_PENDING, res.output
    model = SelfInstructModel(fixtures)
    results = tmp_path / "batch-results.jsonl"
    with open(results, "w", encoding="utf-8") as fh:
        for f in sorted((out / "batch").glob("*.jsonl")):
            for line in f.read_text().splitlines():
                req = json.loads(line)
                reply = model(req["body"])
                body = reply if isinstance(reply, dict) else completion(reply, req["body"]["model"])
                fh.write(json.dumps({"id": "batch_req_1", "custom_id": req["custom_id"], "error": None,
                                     "response": {"status_code": 200, "request_id": "r1", "body": body}}) + "\n")
    res = CliRunner().invoke(cli, [*base, "--batch-in", str(results)], env=NO_ENV)
    assert res.exit_code == 0, res.output
    rows = json.loads((out / "generated.json").read_text())
    report = json.loads((out / "report.json").read_text())
    assert len(rows) == 30 and report["pending_batch_requests"] == 0
    assert report["llm"]["batch_in"]["replies"] > 0


def test_english_prompt_is_the_original(fixtures):
    assert ALPACA_PROMPT == (fixtures / "alpaca_prompt.txt").read_text(encoding="utf-8")
    assert "The instructions, inputs and outputs should be in Korean." in prompt_for("ko")
    text = encode_prompt([{"instruction": "Give  three tips:", "input": "", "output": "a"}], "en")
    assert text.endswith("###\n1. Instruction: Give three tips\n1. Input:\n<noinput>\n1. Output:\na\n###\n2. Instruction:")


def test_parse_reply_shapes():
    chat = ("Sure! Here you go:\n**4. Arahan:** Senaraikan tiga sungai terpanjang di Malaysia.\n4. Input:\n\n"
            "4. Output:\nSungai Rajang, Sungai Kinabatangan dan Sungai Pahang.\n\n"
            "5. Instruction: Classify the sentiment.\n5. Input:\nSaya suka!\n5. Output:\nPositif\n"
            "6. Arahan: Tiada medan output di sini.\n6. Input:\n<noinput>\n")
    items, rejects = parse_reply(chat, 4, "ms", "stop")
    assert [(i.number, i.instruction, i.input) for i in items] == [
        (4, "Senaraikan tiga sungai terpanjang di Malaysia.", ""), (5, "Classify the sentiment.", "Saya suka!")]
    assert [c for c, _, _ in rejects] == ["unparsed"]
    items, rejects = parse_reply(chat, 4, "ms", "length")
    assert len(items) == 2 and [c for c, _, _ in rejects] == ["truncated"]


@pytest.mark.parametrize("inst,lang,code", [
    ("Draw a map of your neighbourhood and label it.", "en", "not_text"),
    ("Sediakan carta alir bagi proses membuat kek.", "ms", "not_text"),
    ("Hasilkan graf jualan bulanan syarikat ini.", "ms", "not_text"),
    ("Please go to the store and buy milk for me.", "en", "not_text"),
    ("Write a program that prints the primes below 100.", "en", "write_program"),
    ("Tuliskan sebuah program untuk mengira purata.", "ms", "write_program"),
    ("- Senaraikan tiga jenis buah tempatan.", "ms", "punctuation"),
    ("Ringkaskan teks ini.", "ms", "too_short"),
    (" ".join(["perkataan"] * 151), "ms", "too_long"),
    ("Gambarkan perasaan anda pada hari pertama persekolahan.", "ms", None),  # gambarkan = describe
    ("Terangkan perbezaan antara fail dan folder.", "ms", "not_text"),
    ("Senaraikan tiga negeri di Pantai Timur Semenanjung.", "ms", None),
])
def test_filters(inst, lang, code):
    got = check_instruction(inst, lang)
    assert (got[0] if got else None) == code
