"""Decontamination against the real GSM8K test split (tests/data/fixtures/evalsets, MIT).

The training rows are real GSM8K *train* rows (alpacacleaned_gsm8k.json): a correct check finds
nothing there until test questions are planted, which the tests do in every way the issue lists.
"""

from __future__ import annotations

import json
import random
import re

import polars as pl
import pytest
from click.testing import CliRunner

from curate import decontaminate as dc
from curate import io, schemas
from curate.cli import cli
from curate.clean import CleanConfig, clean
from curate.clean import quarantine as qfile
from curate.ingest import ingest
from bench.decontaminate import p_after, p_before, p_exact, p_numbers, p_spacing_punct
from tests.servers.openai_server import EN_MS, MS_TAIL, WORD, _contract, openai_server  # noqa: F401


@pytest.fixture(scope="module")
def gsm8k(fixtures):
    return fixtures / "evalsets" / "gsm8k_test.jsonl"


@pytest.fixture(scope="module")
def questions(gsm8k):
    return [json.loads(line)["question"] for line in gsm8k.read_text().splitlines()]


@pytest.fixture(scope="module")
def index(gsm8k):
    return dc.load_index([gsm8k])


@pytest.fixture(scope="module")
def train(fixtures):
    return ingest([fixtures / "alpacacleaned_gsm8k.json"]).frames["sft"]


def _found(texts: list[str], index) -> dict[int, set[int]]:
    d = dc.describe_hits(dc.scan(pl.Series(texts, dtype=pl.String), index), pl.Series(texts), index)
    out: dict[int, set[int]] = {}
    for g, item in d.select("_g", "item").iter_rows():
        out.setdefault(g, set()).add(item)
    return out


# ---- the ways a leak comes in: the same ones bench/decontaminate.py measures ----------------------
PERTURB = [p_exact, p_spacing_punct, p_numbers, p_before, p_after]


def test_train_split_rows_give_zero_hits(train, index):
    texts = train.select(dc.row_text("sft").alias("t"))["t"]
    assert texts.len() == 200
    hits = dc.scan(texts, index)
    assert hits.height == 0


@pytest.mark.parametrize("perturb", PERTURB, ids=lambda f: f.__name__)
def test_planted_questions_are_found(perturb, train, index, questions):
    rng = random.Random(perturb.__name__)
    base = train.select(dc.row_text("sft").alias("t"))["t"].to_list()
    planted = rng.sample(range(len(questions)), 25)
    spots = rng.sample(range(len(base)), 25)
    texts = list(base)
    for item, spot in zip(planted, spots):
        # inside a real training row: the leaked question replaces its instruction
        texts[spot] = perturb(questions[item], rng) + "\n" + texts[spot].split("\n", 1)[1]
    found = _found(texts, index)
    assert set(found) == set(spots)
    for item, spot in zip(planted, spots):
        assert item in found[spot]


def test_embedded_in_a_chat_turn_rm_and_ppo_prompts(index, questions, tmp_path):
    rng = random.Random(7)
    items = rng.sample(range(len(questions)), 3)
    chat = schemas.from_rows("chat", [
        {"messages": [{"role": "user", "content": "hi there, can you help me with homework?"},
                      {"role": "assistant", "content": "Of course. What is the problem?"},
                      {"role": "user", "content": f"Here it is: {questions[items[0]]} Thanks a lot!"}]},
        {"messages": [{"role": "user", "content": "What is the capital of Malaysia?"},
                      {"role": "assistant", "content": "Kuala Lumpur."}]}])
    rm = schemas.from_rows("rm", [{"prompt": questions[items[1]], "completions": ["a", "b"], "ranks": [0, 1]},
                                  {"prompt": "Write a poem about rain.", "completions": ["x"], "ranks": [0]}])
    ppo = schemas.from_rows("ppo", [{"prompt": "Tell me a joke."}, {"prompt": questions[items[2]]}])
    out = dc.decontaminate({"chat": chat, "rm": rm, "ppo": ppo}, index)
    assert {k: f.height for k, f in out.frames.items()} == {"chat": 1, "rm": 1, "ppo": 1}
    assert sorted((q["kind"], q["hits"][0]["item"]) for q in out.quarantine) == sorted(
        [("chat", items[0]), ("rm", items[1]), ("ppo", items[2])])
    q = next(q for q in out.quarantine if q["kind"] == "chat")
    assert q["row"]["messages"][2]["content"].startswith("Here it is")      # the whole row is kept in quarantine
    span = q["hits"][0]["span"].split()
    assert span and all(w in questions[items[0]] for w in span)             # the span is the question's words
    assert q["evidence"].startswith(f"gsm8k_test.jsonl#{items[0]} question share 1.0")
    assert out.report["eval_sets"][0]["rows_hit"] == 3 and out.report["eval_sets"][0]["items_found"] == 3
    assert out.report["rows_in"] == out.report["rows_out"] + out.report["rows_dropped"] == 6


def test_a_shared_common_phrase_is_not_flagged(index, questions):
    rng = random.Random(3)
    texts = []
    for item in rng.sample(range(len(questions)), 40):
        words = questions[item].split()
        # the question's last sentence-worth of words (its "How many ... ?" tail) in a new problem
        texts.append("A farmer grows pumpkins and sells them at a stall near the river. " + " ".join(words[-9:]))
        texts.append(" ".join(words[:8]) + " and then goes home to cook dinner for the family.")
    assert _found(texts, index) == {}


def test_common_ngrams_are_ignored_but_a_repeated_leak_is_not(questions, tmp_path):
    q = questions[42]
    words = q.split()
    half = " ".join(words[: len(words) * 2 // 5])          # below the threshold on its own
    ev = tmp_path / "one.jsonl"
    ev.write_text(json.dumps({"question": q}) + "\n")
    texts = [f"Row {i}: {half} ... something else entirely." for i in range(30)]
    texts += [q] * 15 + [half + " " + " ".join(words[len(words) * 2 // 5: len(words) * 3 // 5])]
    strict = dc.load_index([ev], params=dc.Params(max_count=0))
    loose = dc.load_index([ev], params=dc.Params(max_count=10))
    found_strict, found_loose = _found(texts, strict), _found(texts, loose)
    assert set(range(30, 45)) <= set(found_loose)          # 15 copies of the leak: all found
    assert set(found_strict) >= set(range(30, 45))
    # the last row holds 3/5 of the question; its first 2/5 are a stock phrase in 30 other rows, so
    # with the max-count rule only its own middle part counts: not enough of the rest of the item
    assert 45 in found_strict and 45 not in found_loose


def test_scripts_korean_malay_chinese(fixtures, tmp_path):
    toks = dc.tokenize(pl.Series(["Janet’s ducks, 16 eggs!", "학교에서 공부했다", "我爱北京", "Saya suka 3.5 kg",
                                  "JANET 'S ｄｕｃｋ: 48/2 = <<48/2=24>>24 egg"]))
    by = toks.group_by("_g", maintain_order=True).agg("tok")["tok"].to_list()
    assert by == [["janet", "duck", "16", "egg"], ["학교에서", "공부했다"], ["我", "爱", "北", "京"],
                  ["saya", "suka", "3.5", "kg"], ["janet", "duck", "48", "egg"]]
    # Korean and Malay eval sets: real prompts from KoChatGPT and its Malay translation
    ko = [r["prompt"] for r in json.loads((fixtures / "kochatgpt_ppo.jsonl").read_text())]  # one JSON array
    ms = [json.loads(line)["prompt"] for line in (fixtures / "malay_kochatgpt_ppo.jsonl").read_text().splitlines()]
    for name, prompts in (("ko", ko), ("ms", ms)):
        ev = tmp_path / f"{name}.jsonl"
        ev.write_text("".join(json.dumps({"prompt": p}, ensure_ascii=False) + "\n" for p in prompts))
        index = dc.load_index([ev])
        checked = index.fields.filter(pl.col("n") > 0)
        assert checked.height > 50
        rng = random.Random(name)
        picks = rng.sample(checked["item"].to_list(), 10)
        texts = [f"Tolong jawab ini: {prompts[i]}" for i in picks]
        found = _found(texts, index)
        assert set(found) == set(range(10))
        assert all(picks[g] in items for g, items in found.items())


def test_eval_shapes_nested_capitalized_and_unknown_columns(questions, tmp_path):
    """ARC-style objects (question.stem + choices), CSV headers in capitals, unknown column names."""
    rng = random.Random(5)
    items = rng.sample(range(len(questions)), 30)
    arc = tmp_path / "arc.jsonl"
    arc.write_text("".join(json.dumps({"id": f"q{i}", "question": {"stem": questions[i], "choices": [
        {"text": "twelve apples", "label": "A"}, {"text": "nine", "label": "B"}]}, "answerKey": "A"}) + "\n"
        for i in items))
    csv = tmp_path / "tqa.csv"
    pl.DataFrame({"Type": ["x"] * 30, "Question": [questions[i] for i in items],
                  "Best Answer": ["none"] * 30}).write_csv(csv)
    odd = tmp_path / "odd.jsonl"
    odd.write_text("".join(json.dumps({"sentence": questions[i], "label": 1}) + "\n" for i in items))
    texts = [f"Q: {questions[items[k]]}\nA: let me think." for k in (3, 17)] + ["Nothing to see here at all, friends."]
    for ev in (arc, csv, odd):
        es = dc.load_eval(ev)
        index = dc.build_index([es])
        found = _found(texts, index)
        assert found == {0: {3}, 1: {17}}, ev.name
    assert dc.load_eval(arc).fields.filter(pl.col("item") == 0)["field"].to_list()[0] == "question.stem"
    assert dc.load_eval(csv).columns == ["Question"]
    assert dc.load_eval(odd).columns_guessed and "sentence" in dc.load_eval(odd).columns


# ---- the command ----------------------------------------------------------------------------------
@pytest.fixture()
def planted_dataset(fixtures, questions, tmp_path):
    res = ingest([fixtures / "alpacacleaned_gsm8k.json", fixtures / "sharegpt.json"])
    sft = res.frames["sft"]
    rng = random.Random(11)
    spots = sorted(rng.sample(range(sft.height), 4))
    items = rng.sample(range(len(questions)), 4)
    instr = sft["instruction"].to_list()
    for s, i in zip(spots, items):
        instr[s] = p_numbers(questions[i], rng)
    sft = sft.with_columns(pl.Series("instruction", instr))
    d = tmp_path / "norm"
    io.write_dataset({"sft": sft, "chat": res.frames["chat"]}, d)
    return d, dict(zip(spots, items))


def test_cli_decontaminate(planted_dataset, gsm8k, tmp_path):
    d, planted = planted_dataset
    out = tmp_path / "decon"
    r = CliRunner().invoke(cli, ["decontaminate", str(d), "--against", str(gsm8k), "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    report = json.loads((out / "report.json").read_text())
    assert report["rows_dropped"] == len(planted) and report["accounted"]
    assert report["eval_sets"][0]["items_found"] == len(planted)
    q = io.read_jsonl(out / "quarantine.jsonl")
    assert sorted(x["line"] for x in q) == sorted(pl.read_parquet(d / "sft.parquet")["line"].gather(list(planted)).to_list())
    assert {x["hits"][0]["item"] for x in q} == set(planted.values())
    hits = io.read_jsonl(out / "hits.jsonl")
    assert {h["item"] for h in hits} == set(planted.values()) and all(h["share"] >= 0.5 for h in hits)
    kept = pl.read_parquet(out / "sft.parquet")
    assert kept.height == 200 - len(planted)
    assert pl.read_parquet(out / "chat.parquet").height == 3


def test_cli_errors_are_one_line(planted_dataset, tmp_path, gsm8k):
    d, _ = planted_dataset
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "a"}\n{oops\n')
    r = CliRunner().invoke(cli, ["decontaminate", str(d), "--against", str(bad), "-o", str(tmp_path / "o")])
    assert r.exit_code != 0 and "bad.jsonl:2: not valid JSON" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["decontaminate", str(d), "--against", str(gsm8k), "--eval-fields", "query",
                                 "-o", str(tmp_path / "o")])
    assert r.exit_code != 0 and "no column query; it has question, answer" in r.output
    assert not (tmp_path / "o").exists()


def test_clean_rule_drop_and_flag(planted_dataset, gsm8k, tmp_path):
    d, planted = planted_dataset
    out = tmp_path / "clean"
    r = CliRunner().invoke(cli, ["clean", str(d), "-o", str(out), "--target-lang", "any", "--against", str(gsm8k), "-q"])
    assert r.exit_code == 0, r.output
    q = [x for x in qfile.read(out / "quarantine.parquet") if x["code"] == "contaminated"]
    assert len(q) == len(planted) and all("gsm8k_test.jsonl#" in x["evidence"] for x in q)
    rule = next(x for x in json.loads((out / "report.json").read_text())["rules"] if x["code"] == "contaminated")
    assert rule["eval_sets"][0]["rows_hit"] == len(planted)
    frames = {k: lf.collect() for k, lf in io.read_dataset(d).items()}
    cfg = CleanConfig.load(None, rules=["contaminated=flag"], sets=[f"contaminated.against={gsm8k}"], target_lang="any")
    res = clean(frames, cfg)
    flagged = [m for m in res.frames["sft"]["meta"].to_list()
               if any(f["rule"] == "contaminated" for f in schemas.meta_of(m).get("flags", []))]
    assert len(flagged) == len(planted)
    # the same from a config file: eval files switch the rule on (drop)
    toml = tmp_path / "clean.toml"
    toml.write_text(f'target_lang = "any"\n[rules.contaminated]\nagainst = ["{gsm8k}"]\nthreshold = 0.6\n')
    res = clean(frames, CleanConfig.load(toml))
    assert sum(q.height for q in res.quarantine.values()) == len(planted)
    # off without eval files; asking for it without them is a clear error
    assert not any(x["code"] == "contaminated" for x in clean(frames, CleanConfig(target_lang="any")).report["rules"])
    r = CliRunner().invoke(cli, ["clean", str(d), "-o", str(out), "--rule", "contaminated=drop"])
    assert r.exit_code != 0 and "rule contaminated needs against" in r.output


# ---- cross-lingual --------------------------------------------------------------------------------
def to_malay(text: str) -> str:
    """The loopback 'model': word by word, known words from EN_MS, other words given a Malay suffix."""
    out = []
    for tok in WORD.findall(text):
        if tok.startswith("⟦") or tok == "\n" or any(c.isdigit() for c in tok):
            out.append(tok)
        else:
            w = EN_MS.get(tok.lower())
            out.append(w if w is not None else tok.lower() + "kan")
    return " ".join(o for o in out if o).replace(" \n ", "\n") + " " + MS_TAIL


def malay_model(request):
    _, data = _contract(request)
    return json.dumps({k: to_malay(v) for k, v in data.items()}, ensure_ascii=False)


def test_translate_eval_finds_malay_copies(openai_server, questions, fixtures, tmp_path):
    openai_server.handler = malay_model
    ev = tmp_path / "gsm8k_30.jsonl"
    ev.write_text("".join(json.dumps({"question": q}) + "\n" for q in questions[:30]))
    rows = ingest([fixtures / "alpacacleaned_gsm8k.json"]).frames["sft"].head(20)
    instr = rows["instruction"].to_list()
    instr[3], instr[9] = to_malay(questions[4]), to_malay(questions[17])   # MYChatGPT-style translated leaks
    d = tmp_path / "norm"
    io.write_dataset({"sft": rows.with_columns(pl.Series("instruction", instr))}, d)
    base = ["decontaminate", str(d), "--against", str(ev), "-q", "--base-url", openai_server.url,
            "--api-key", "test-key", "--model", "loopback", "--cache", str(tmp_path / "cache.sqlite")]
    r = CliRunner().invoke(cli, [*base, "-o", str(tmp_path / "plain")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "plain" / "report.json").read_text())["rows_dropped"] == 0
    assert openai_server.count == 0                            # no translation asked: no request
    r = CliRunner().invoke(cli, [*base, "--translate-eval", "ms", "-o", str(tmp_path / "ms")])
    assert r.exit_code == 0, r.output
    sent = openai_server.count
    assert sent > 0
    q = io.read_jsonl(tmp_path / "ms" / "quarantine.jsonl")
    assert sorted((x["hits"][0]["item"], x["hits"][0]["field"]) for x in q) == [(4, "question@ms"), (17, "question@ms")]
    report = json.loads((tmp_path / "ms" / "report.json").read_text())
    assert report["eval_sets"][0]["translated"]["fields_translated"] == 30
    r = CliRunner().invoke(cli, [*base, "--translate-eval", "ms", "-o", str(tmp_path / "ms2")])
    assert r.exit_code == 0 and openai_server.count == sent   # the eval translation is cached: paid once
    assert io.read_jsonl(tmp_path / "ms2" / "quarantine.jsonl") == q


def test_translate_eval_without_endpoint_waits_for_batch_results(questions, fixtures, tmp_path):
    ev = tmp_path / "gsm8k_5.jsonl"
    ev.write_text("".join(json.dumps({"question": q}) + "\n" for q in questions[:5]))
    d = tmp_path / "norm"
    io.write_dataset({"sft": ingest([fixtures / "alpacacleaned_gsm8k.json"]).frames["sft"].head(5)}, d)
    out = tmp_path / "out"
    r = CliRunner(env={"OPENAI_BASE_URL": None, "OPENAI_API_KEY": None, "CURATE_LLM_CONFIG": None}).invoke(
        cli, ["decontaminate", str(d), "--against", str(ev), "--translate-eval", "ms", "-o", str(out),
              "--cache", str(tmp_path / "cache.sqlite"), "-q"])
    assert r.exit_code == 5, r.output
    assert "wait for their translations" in r.output and "curate decontaminate" in r.output
    batch = out / "batch" / "translate-eval-requests.jsonl"
    assert len(io.read_jsonl(batch)) >= 1
    assert sorted(p.name for p in out.iterdir()) == ["batch"]      # no dataset was published


def test_cli_raw_inputs_translated_twins(fixtures, tmp_path):
    """Raw source files straight in; MYChatGPT's RM and PPO prompts are separate Malay translations of
    one Korean question pool, so PPO prompts used as an eval set turn up in RM rows."""
    out = tmp_path / "o"
    rm, ppo = fixtures / "malay_kochatgpt_rm.jsonl", fixtures / "malay_kochatgpt_ppo.jsonl"
    r = CliRunner().invoke(cli, ["decontaminate", str(fixtures / "alpacacleaned_gsm8k.json"), str(rm),
                                 "--against", str(ppo), "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    report = json.loads((out / "report.json").read_text())
    assert report["by_kind"]["sft"] == {"in": 200, "out": 200, "dropped": 0}
    hits = io.read_jsonl(out / "hits.jsonl")
    assert hits and all(h["kind"] == "rm" for h in hits)
    prompts = [json.loads(line)["prompt"] for line in ppo.read_text().splitlines()]
    rows = {q["id"]: " ".join([q["row"]["prompt"], *q["row"]["completions"]])
            for q in io.read_jsonl(out / "quarantine.jsonl") if q.get("row")}
    for h in hits:   # the span is in both the RM row and the PPO prompt it names
        words = set(re.findall(r"\w+", h["span"].lower()))
        assert words <= set(re.findall(r"\w+", rows[h["id"]].lower()))
        assert words <= set(re.findall(r"\w+", prompts[h["item"]].lower()))
