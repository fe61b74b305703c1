"""Token counting, tokenizer training and estimates, on a tiny model trained here from real fixture text."""

from __future__ import annotations

import unicodedata

import orjson
import polars as pl
import pytest
import sentencepiece as spm
from click.testing import CliRunner

from curate import schemas, tokens
from curate.cli import cli
from curate.errors import UserError
from curate.ingest import ingest

VOCAB = 700


@pytest.fixture(scope="session")
def malay(fixtures):
    """Real Malay SFT rows (malay_alpaca) and chats (malay_kochatgpt_conversation), ingested."""
    return ingest([fixtures / "malay_alpaca.json", fixtures / "malay_kochatgpt_conversation.jsonl"],
                  detect_lang=False).frames


@pytest.fixture(scope="session")
def model(malay, tmp_path_factory):
    path = tmp_path_factory.mktemp("spm") / "ms.model"
    summary = tokens.train(malay, path, vocab_size=VOCAB)
    assert summary["lines"] > 1000
    return path


@pytest.fixture(scope="session")
def sp(model):
    return spm.SentencePieceProcessor(model_file=str(model))


def test_train_writes_a_working_model(model, sp, malay):
    assert sp.get_piece_size() == VOCAB  # enough text: the size asked for, exactly
    assert not [p for p in model.parent.iterdir() if p.name.startswith(".")], "temp files left behind"
    text = malay["sft"]["output"][0]
    ids = sp.encode(text)
    # lossless up to the model's NFKC + whitespace normalization
    assert sp.decode(ids) == " ".join(unicodedata.normalize("NFKC", text).split())
    # Malay text is tokenized with real subwords, not characters
    assert len(ids) < len(text) / 2


def test_byte_fallback_never_gives_unk(sp):
    # Hangul and emoji never appear in the Malay training text, yet nothing becomes <unk>
    ids = sp.encode("Apa khabar? 안녕하세요 🙂")
    assert sp.unk_id() not in ids
    assert sp.decode(ids) == "Apa khabar? 안녕하세요 🙂"


def test_token_counts_per_field_match_the_model(malay, sp, model):
    df = malay["sft"]
    counts = tokens.token_counts(df, model)
    assert counts.columns == ["id", "tokens_instruction", "tokens_input", "tokens_output", "tokens"]
    assert counts["id"].to_list() == df["id"].to_list()
    for i in (0, 5, 17):
        row = df.row(i, named=True)
        want = {f: len(sp.encode(row[f])) if row[f] else 0 for f in ("instruction", "input", "output")}
        got = counts.row(i, named=True)
        assert {f: got[f"tokens_{f}"] for f in want} == want
        assert got["tokens"] == sum(want.values())


def test_chat_tokens_are_split_by_role(malay, sp):
    df = malay["chat"]
    counts = tokens.token_counts(df, sp)
    msgs = df["messages"][3]
    for role in ("user", "assistant"):
        want = sum(len(sp.encode(m["content"])) for m in msgs if m["role"] == role)
        assert counts["tokens_" + role][3] == want
    assert counts["tokens_system"].sum() == 0


def test_rm_and_ppo_fields(sp):
    rm = schemas.from_rows("rm", [{"prompt": "Apa itu kucing?", "completions": ["Haiwan.", "Kucing ialah haiwan."],
                                   "ranks": [1, 0]}])
    counts = tokens.token_counts(rm, sp)
    assert counts["tokens_prompt"][0] == len(sp.encode("Apa itu kucing?"))
    assert counts["tokens_completions"][0] == len(sp.encode("Haiwan.")) + len(sp.encode("Kucing ialah haiwan."))
    ppo = schemas.from_rows("ppo", [{"prompt": "Terangkan fotosintesis."}, {"prompt": None}])
    assert tokens.token_counts(ppo, sp)["tokens"].to_list() == [len(sp.encode("Terangkan fotosintesis.")), 0]


def test_stats_and_rows_over_the_limit(malay, model):
    counts = tokens.token_counts(malay["sft"], model)["tokens"]
    limit = int(counts.quantile(0.9, interpolation="nearest"))
    st = tokens.stats({"sft": malay["sft"]}, model, max_tokens=limit, top=5)
    sft = st["kinds"]["sft"]
    assert sft["row"]["min"] == counts.min() and sft["row"]["max"] == counts.max()
    assert sft["row"]["median"] == counts.median()
    assert sft["over_limit"] == (counts > limit).sum() > 0
    listed = sft["over_limit_rows"]
    assert len(listed) == min(5, sft["over_limit"])
    assert listed[0]["tokens"] == counts.max() and all(r["tokens"] > limit for r in listed)
    assert listed[0]["where"].startswith(listed[0]["source"])
    # the input field counts only rows that have an input
    has_input = (malay["sft"]["input"].fill_null("") != "").sum()
    assert sft["fields"]["input"]["count"] == has_input < malay["sft"].height


def test_heuristic_without_a_model():
    df = schemas.from_rows("ppo", [{"prompt": "abcd" * 10}, {"prompt": "안녕하세요"}, {"prompt": "ab 안녕"}])
    assert tokens.token_counts(df)["tokens"].to_list() == [10, 5, 1 + 2]


def test_estimate_and_cost(malay, model):
    frames = {"sft": malay["sft"].lazy()}
    exact = tokens.estimate_tokens(frames, model, prompt_overhead=100, output_ratio=0.5)
    text = int(tokens.token_counts(malay["sft"], model)["tokens"].sum())
    rows = malay["sft"].height
    assert exact["method"].startswith("sentencepiece")
    assert exact["text_tokens"] == text
    assert exact["input_tokens"] == text + 100 * rows
    assert exact["output_tokens"] == -(-text // 2)
    assert tokens.cost(exact, 2.0, 8.0) == pytest.approx(exact["input_tokens"] * 2e-6 + exact["output_tokens"] * 8e-6)
    rough = tokens.estimate_tokens(frames)
    assert rough["method"] == "chars/4"
    chars = malay["sft"].select(pl.sum_horizontal(pl.col(c).fill_null("").str.len_chars()
                                                  for c in ("instruction", "input", "output")).sum()).item()
    assert chars / 4 <= rough["text_tokens"] <= chars / 4 + 3 * rows


def test_train_refuses_an_empty_dataset(tmp_path):
    empty = {"ppo": schemas.from_rows("ppo", [{"prompt": "  "}])}
    with pytest.raises(UserError, match="no text"):
        tokens.train(empty, tmp_path / "x.model", vocab_size=400)
    assert not (tmp_path / "x.model").exists()


def test_training_lines_split_long_lines():
    long = " ".join(["perkataan"] * 2000)
    lines = list(tokens.training_lines([long + "\n\n  pendek  "]))
    assert lines[-1] == "pendek"
    assert all(len(x.encode()) <= tokens.DEFAULT_MAX_SENTENCE for x in lines)
    assert " ".join(lines[:-1]).split() == long.split()


def test_cli_train_stats_estimate(fixtures, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli.model"
    res = runner.invoke(cli, ["tokens", "train", str(fixtures / "malay_alpaca.json"), "--vocab-size", "500",
                              "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert out.is_file()
    res = runner.invoke(cli, ["tokens", "stats", str(fixtures / "malay_alpaca.json"), "-m", str(out),
                              "--max-tokens", "200", "--json"])
    assert res.exit_code == 0, res.output
    st = orjson.loads(res.stdout)
    assert st["kinds"]["sft"]["rows"] == 200 and st["over_limit"] > 0
    res = runner.invoke(cli, ["tokens", "estimate", str(fixtures / "malay_alpaca.json"), "--price-in", "1",
                              "--price-out", "2", "--json"])
    assert res.exit_code == 0, res.output
    est = orjson.loads(res.stdout)
    assert est["cost"] == pytest.approx(round(est["input_tokens"] / 1e6 + 2 * est["output_tokens"] / 1e6, 4))
    res = runner.invoke(cli, ["tokens", "stats", str(fixtures / "malay_alpaca.json"), "-m", str(tmp_path)])
    assert res.exit_code != 0


def test_too_many_tokens_clean_rule(malay, model, sp):
    from curate.clean.config import CleanConfig
    from curate.clean.engine import clean, row_text_expr
    from curate.clean.registry import BY_CODE

    df = malay["sft"]
    texts = df.select(row_text_expr("sft").alias("t"))["t"].to_list()
    counts = [len(sp.encode(t)) for t in texts]
    limit = sorted(counts)[int(len(counts) * 0.8)]
    want = {i for i, n in enumerate(counts) if n > limit}
    assert 0 < len(want) < len(counts)
    only = {code: "off" for code in BY_CODE if code != "too_many_tokens"}
    cfg = CleanConfig(actions=only, params={"too_many_tokens": {"max_tokens": str(limit), "model": str(model)}})
    res = clean({"sft": df}, cfg)
    ids = df["id"].to_list()
    assert set(res.frames["sft"]["id"]) == {ids[i] for i in range(len(ids)) if i not in want}
    q = res.quarantine_rows()
    assert {r["id"] for r in q} == {ids[i] for i in want}
    assert all(r["code"] == "too_many_tokens" and "sentencepiece" in r["evidence"] for r in q)
    rule = next(r for r in res.report["rules"] if r["code"] == "too_many_tokens")
    assert rule["dropped"] == len(want)
    # off by default (max_tokens 0), and the heuristic without a model
    assert clean({"sft": df}, CleanConfig(actions=only)).frames["sft"].height == df.height
    cfg = CleanConfig(actions=only, params={"too_many_tokens": {"max_tokens": "150"}})
    heur = tokens.load_model(None).count(pl.Series(texts))
    kept = clean({"sft": df}, cfg).frames["sft"]
    assert kept.height == int((heur <= 150).sum())


def test_too_small_vocab_for_hangul_is_explained(fixtures, tmp_path):
    korean = ingest([fixtures / "kochatgpt_conversation.jsonl"], detect_lang=False).frames
    with pytest.raises(UserError, match=r"--vocab-size 300 is too small: .* takes \d+ pieces"):
        tokens.train(korean, tmp_path / "ko.model", vocab_size=300)
    assert not (tmp_path / "ko.model").exists()


def test_vocab_size_is_a_soft_limit_on_little_text(fixtures, tmp_path):
    little = ingest([fixtures / "malay_alpaca.json"], detect_lang=False).frames
    summary = tokens.train(little, tmp_path / "s.model", vocab_size=6000)
    assert summary["hard_vocab_limit"] is False
    assert 256 < summary["vocab_size"] < 6000
    assert spm.SentencePieceProcessor(model_file=str(tmp_path / "s.model")).get_piece_size() == summary["vocab_size"]
