"""Export round trips: what goes out can be read back and matches the canonical rows."""

from __future__ import annotations

import itertools
import json

import polars as pl
import pytest

from curate import export as ex
from curate.errors import UserError
from curate.ingest import ingest


@pytest.fixture(scope="module")
def frames(fixtures):
    files = ["malay_alpaca.json", "chatdoctor.json", "malay_kochatgpt_rm.jsonl", "kochatgpt_ppo.jsonl",
             "sharegpt.json", "malay_kochatgpt_conversation.jsonl"]
    return ingest([fixtures / f for f in files], detect_lang=False).frames


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_sft_messages_and_alpaca_round_trip(frames, tmp_path):
    manifest = ex.export({"sft": frames["sft"]}, tmp_path, test_size=0.2)
    sft = frames["sft"]
    train = _jsonl(tmp_path / "sft_messages_train.jsonl")
    test = _jsonl(tmp_path / "sft_messages_test.jsonl")
    assert len(train) + len(test) == sft.height
    assert 0.1 < len(test) / sft.height < 0.3
    alpaca = json.loads((tmp_path / "sft_alpaca_train.json").read_text()) + \
        json.loads((tmp_path / "sft_alpaca_test.json").read_text())
    originals = {(r["instruction"], r["input"], r["output"]) for r in sft.iter_rows(named=True)}
    assert {(r["instruction"], r["input"], r["output"]) for r in alpaca} == originals
    # messages: user = instruction (+ blank line + input), assistant = output
    by_output = {r["output"]: r for r in sft.iter_rows(named=True)}
    for rec in train[:50]:
        user, assistant = rec["messages"]
        assert (user["role"], assistant["role"]) == ("user", "assistant")
        row = by_output[assistant["content"]]
        expected = row["instruction"] + (f"\n\n{row['input']}" if row["input"].strip() else "")
        assert user["content"] == expected
    pc = _jsonl(tmp_path / "sft_prompt_completion_train.jsonl")
    assert [r["completion"] for r in pc] == [r["messages"][1]["content"] for r in train]
    assert {f["format"] for f in manifest["files"]} == {"messages", "prompt_completion", "alpaca"}


def test_split_is_stable_and_by_id(frames, tmp_path):
    sft = frames["sft"]
    a = sft.with_columns(ex.split_expr(0.3))
    b = sft.reverse().with_columns(ex.split_expr(0.3)).reverse()
    assert a["split"].to_list() == b["split"].to_list()
    # independently: first 8 hex digits of the id as a fraction of 2^32
    for row in a.head(30).iter_rows(named=True):
        assert row["split"] == ("test" if int(row["id"][:8], 16) / 2**32 < 0.3 else "train")


def test_rm_pairs_cover_every_ordered_pair(frames, tmp_path):
    rm = frames["rm"]
    ex.export({"rm": rm}, tmp_path, formats=["pairs", "ranked"])
    pairs = _jsonl(tmp_path / "rm_pairs_train.jsonl")
    ranked_rows = rm.filter(pl.col("ranks").is_not_null())
    expected = []
    for row in ranked_rows.iter_rows(named=True):
        for i, j in itertools.permutations(range(len(row["completions"])), 2):
            if row["ranks"][i] < row["ranks"][j]:
                expected.append((row["prompt"], row["completions"][i], row["completions"][j]))
    assert sorted((p["prompt"], p["chosen"], p["rejected"]) for p in pairs) == sorted(expected)
    ranked = _jsonl(tmp_path / "rm_ranked_train.jsonl")
    assert len(ranked) == ranked_rows.height
    first = ranked_rows.row(0, named=True)
    best = first["completions"][first["ranks"].index(min(first["ranks"]))]
    rec = next(r for r in ranked if r["prompt"] == first["prompt"])
    assert rec["completions"][0] == best
    manifest = json.loads((tmp_path / "export.json").read_text())
    assert json.loads((tmp_path / "manifest.json").read_text())["export"] == manifest
    skipped = sum(f["skipped"] for f in manifest["files"] if f["format"] == "pairs")
    assert skipped == rm.height - ranked_rows.height > 0


def test_chat_and_ppo(frames, tmp_path):
    ex.export({"chat": frames["chat"], "ppo": frames["ppo"]}, tmp_path)
    chats = _jsonl(tmp_path / "chat_messages_train.jsonl")
    assert len(chats) == frames["chat"].height
    assert chats[0]["messages"] == frames["chat"]["messages"][0].to_list()
    prompts = _jsonl(tmp_path / "ppo_prompt_train.jsonl")
    assert [p["prompt"] for p in prompts] == frames["ppo"]["prompt"].to_list()
    pc = _jsonl(tmp_path / "chat_prompt_completion_train.jsonl")
    assert pc[0]["completion"][0]["role"] == "assistant"
    assert pc[0]["prompt"][-1]["role"] == "user"


def test_wrong_format_for_kind_is_a_user_error(frames, tmp_path):
    with pytest.raises(UserError):
        ex.records_for("ppo", frames["ppo"], "pairs")
    with pytest.raises(UserError):
        ex.export({"sft": frames["sft"]}, tmp_path, test_size=1.5)


def test_rm_split_without_ranked_rows(frames, tmp_path):
    # a split can hold only unranked rows (or none at all): that gives empty files, not a crash
    unranked = frames["rm"].filter(pl.col("ranks").is_null())
    manifest = ex.export({"rm": unranked}, tmp_path, test_size=0.5)
    pairs = [f for f in manifest["files"] if f["format"] == "pairs"]
    assert {f["split"] for f in pairs} == {"train", "test"}
    assert sum(f["records"] for f in pairs) == 0
    assert sum(f["skipped"] for f in pairs) == unranked.height
