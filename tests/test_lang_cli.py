"""`curate lang`: per line/row language with confidence, and a summary."""

from __future__ import annotations

import json

from click.testing import CliRunner

from curate import langid
from curate.cli import cli


def _pairs(fixtures, n=300):
    return langid.read_pairs(fixtures / "langid" / "ms_id_pairs.tsv")[:n]


def test_plain_text_one_result_per_line(fixtures, tmp_path):
    pairs = _pairs(fixtures)
    path = tmp_path / "mixed.txt"
    # Malay and Indonesian lines interleaved, with an empty line that must keep its place
    lines = [s for pair in pairs for s in pair] + [""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["lang", str(path), "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]
    assert [r["line"] for r in rows] == list(range(1, len(lines) + 1))
    assert rows[-1]["lang"] == "und" and rows[-1]["confidence"] == 0.0
    truth = ["ms", "id"] * len(pairs)
    per_class = {}
    for lang in ("ms", "id"):
        idx = [i for i, t in enumerate(truth) if t == lang]
        per_class[lang] = sum(rows[i]["lang"] == lang for i in idx) / len(idx)
    assert min(per_class.values()) > 0.9, per_class
    assert all(0.0 <= r["confidence"] <= 1.0 for r in rows)


def test_tsv_output_and_summary(fixtures, tmp_path):
    path = tmp_path / "ms.txt"
    path.write_text("\n".join(p[0] for p in _pairs(fixtures, 50)), encoding="utf-8")
    result = CliRunner().invoke(cli, ["lang", str(path)])
    assert result.exit_code == 0
    out_lines = result.stdout.splitlines()
    assert out_lines[0] == "line\tlang\tconfidence\ttext"
    body = [line.split("\t") for line in out_lines[1:51]]
    assert len(body) == 50 and all(len(cols) == 4 for cols in body)
    assert sum(cols[1] == "ms" for cols in body) >= 45
    assert "languages of 50 lines" in result.output


def test_dataset_rows(fixtures):
    result = CliRunner().invoke(cli, ["lang", str(fixtures / "kochatgpt_ppo.jsonl"), "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]
    assert len(rows) == 200 and {r["lang"] for r in rows} == {"ko"}
    result = CliRunner().invoke(cli, ["lang", str(fixtures / "chatdoctor.json"), "--field", "output", "--json"])
    rows = [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]
    assert sum(r["lang"] == "en" for r in rows) >= 195
