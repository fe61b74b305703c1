"""The dataset card curate export writes: a Hugging Face style README.md built from the real data."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import polars as pl
import pytest
from click.testing import CliRunner

from curate import card, io
from curate.cli import cli
from curate.export import export
from curate.ingest import ingest_to_dir

SOURCES = ("malay_alpaca.json", "malay_kochatgpt_rm.jsonl", "kochatgpt_ppo.jsonl", "sharegpt_fastchat_identity.json",
           "chatdoctor.json")


@pytest.fixture(scope="module")
def normalized(fixtures, tmp_path_factory):
    raw = tmp_path_factory.mktemp("card") / "ingested"
    out = raw.parent / "normalized"
    ingest_to_dir([fixtures / s for s in SOURCES], raw, detect_lang=False)
    # test data: a language per file so the card has several languages (language id is another stage)
    frames = {k: f.collect().with_columns(
        pl.when(pl.col("source").str.contains("kochatgpt_ppo")).then(pl.lit("ko"))
        .when(pl.col("source").str.contains("malay_")).then(pl.lit("ms")).otherwise(pl.lit("en")).alias("lang"))
        for k, f in io.read_dataset(raw).items()}
    with io.DatasetWriter(out, stage="ingest", inputs=[raw]) as w:
        for kind, frame in frames.items():
            w.write_frame(kind, frame)
        for name in ("report.json", "quarantine.jsonl"):
            w.write_bytes(name, (raw / name).read_bytes())
    return out


def _yaml(text: str) -> dict:
    """The card's metadata as the Hub's own client parses it (huggingface_hub comes with argilla)."""
    from huggingface_hub import DatasetCard

    return DatasetCard(text).data.to_dict()


def test_export_writes_a_card_the_hub_can_read(normalized, tmp_path):
    frames = io.read_dataset(normalized)
    manifest = export(frames, tmp_path / "out", test_size=0.1)
    text = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    meta = _yaml(text)
    collected = {k: f.collect() for k, f in frames.items()}
    langs = set(pl.concat([df.select("lang") for df in collected.values()])["lang"])
    assert set(meta["language"]) == langs - {"und", "other"}
    # sources carry cc-by-nc-4.0, apache-2.0 and unknown licenses: the card says "other" and why
    assert meta["license"] == "other" and "cc-by-nc-4.0" in meta["license_details"]
    assert meta["task_categories"] == ["text-generation"]
    total = sum(df.height for df in collected.values())
    assert meta["size_categories"] == [card.size_category(total)]
    # every config points at a file export wrote, with its split
    written = {Path(f["path"]).name: f for f in manifest["files"]}
    for cfg in meta["configs"]:
        for part in cfg["data_files"]:
            assert part["path"] in written and written[part["path"]]["split"] == part["split"]
            assert (tmp_path / "out" / part["path"]).is_file()
    # the body: figures taken from the data and the ingest report beside it
    assert f"{total:,} rows" in text
    ingest_rep = orjson.loads((normalized / "report.json").read_bytes())
    assert f"| ingest: records read | {ingest_rep['total']['records']:,} |" in text
    assert f"| ingest: quarantined | {ingest_rep['total']['quarantined']:,} |" in text
    for s in SOURCES:
        assert f"`{s}`" in text
    assert re.search(r"`malay_alpaca\.json` \| [\d,]+ \| khursani8/MYChatGPT .*cc-by-nc-4\.0", text)
    assert re.search(r"`kochatgpt_ppo\.jsonl` \| [\d,]+ \| airobotlab/KoChatGPT .*`unknown`", text)
    assert "License warning" in text
    for fmt in ("messages", "prompt_completion", "alpaca", "pairs", "ranked", "prompt"):
        assert f"- **{fmt}**" in text


def test_licenses_by_file_name():
    assert card.license_of("datasets/raw/chatdoctor.json")[1] == "apache-2.0"
    assert card.license_of("/x/malay_gpt4all_anomalies.jsonl")[1] == "cc-by-nc-4.0"
    assert card.license_of("sharegpt_fastchat_identity.json")[1] == "apache-2.0"
    assert card.license_of("my_own_data.jsonl")[1] == "unknown"


def test_single_license_and_reports_passed_in(fixtures, tmp_path):
    frames = {"chat": io.read_dataset(_ingest(fixtures / "sharegpt_fastchat_identity.json", tmp_path))["chat"]}
    manifest = {"test_size": 0.0, "files": []}
    reports = [{"stage": "ingest", "files": [], "total": {"records": 7, "kept": 7, "recovered": 0, "quarantined": 0}},
               {"stage": "clean", "rules": {"refusal": {"action": "drop", "dropped": 2}}},
               {"stage": "translate", "requests": 10}]
    path = card.write_card(frames, tmp_path / "c", manifest, reports, name="FastChat identity")
    text = path.read_text()
    meta = _yaml(text)
    assert meta["license"] == "apache-2.0" and meta["pretty_name"] == "FastChat identity"
    assert "Stages: ingest -> clean -> translate -> export." in text
    assert "| `refusal` | drop | 0 | 0 | 2 |" in text
    assert "License warning" not in text


def _ingest(src: Path, tmp_path: Path) -> Path:
    out = tmp_path / "in"
    ingest_to_dir([src], out, detect_lang=False)
    return out


def test_cli_export_writes_readme(normalized, tmp_path):
    res = CliRunner().invoke(cli, ["export", str(normalized), "-o", str(tmp_path / "e"), "--format", "messages"])
    assert res.exit_code == 0, res.output
    text = (tmp_path / "e" / "README.md").read_text()
    assert text.startswith("---\n") and "## Sources and licenses" in text


def test_translation_and_llm_figures(fixtures, tmp_path):
    from curate import schemas

    rows = [{"prompt": "Apa khabar?", "meta": {"orig": {"prompt": "How are you?"},
                                               "translated": {"from": "en", "to": "ms", "model": "m1",
                                                              "fields": ["prompt"]}}, "lang": "ms",
             "source": "x.jsonl", "line": i} for i in range(3)]
    rows.append({"prompt": "Terima kasih", "lang": "ms", "source": "x.jsonl", "line": 9})
    frames = {"ppo": schemas.from_rows("ppo", rows)}
    rep = {"stage": "translate", "llm": {"requests_sent": 2, "tokens": {"prompt": 120, "completion": 80},
                                         "cost_usd": {"spent": 0.0123}}}
    text = card.write_card(frames, tmp_path, {"files": []}, [rep]).read_text()
    assert "| `en` | `ms` | m1 | 3 |" in text
    assert "| translate: LLM requests | 2 |" in text and "| translate: prompt / completion tokens | 120 / 80 |" in text
    assert "| translate: cost (USD) | 0.0123 |" in text
