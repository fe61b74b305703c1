"""Quarantined rows come back: `curate restore` and every command reading a quarantine file
(quarantine.parquet from clean, quarantine.jsonl from the other stages) as the rows it holds."""

from __future__ import annotations

import json

import orjson
import polars as pl
from click.testing import CliRunner

from curate import io
from curate.clean import quarantine as qfile
from curate.cli import cli

COLS = ["id", "kind", "instruction", "input", "output", "source", "line"]


def _run(*args):
    res = CliRunner().invoke(cli, [str(a) for a in args])
    assert "Traceback" not in res.output
    return res


def _cleaned(fixtures, tmp_path):
    """A clean of real rows with duplicates and refusals added: (input dir, clean output dir)."""
    rows = [json.loads(line) for line in (fixtures / "malay_gpt4all.jsonl").read_text().splitlines()[:60]]
    raw = tmp_path / "raw.jsonl"
    extra = rows[:10] + [{**rows[i], "response": "Maaf, sebagai model bahasa AI, saya tidak dapat membantu."}
                         for i in range(10, 14)]
    raw.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows + extra))
    norm, out = tmp_path / "norm", tmp_path / "clean"
    assert _run("ingest", raw, "-o", norm, "--no-lang", "-q").exit_code == 0
    assert _run("clean", norm, "-o", out, "-q", "--target-lang", "any").exit_code == 0
    return norm, out


def test_restore_gives_back_exactly_the_dropped_rows_by_code(fixtures, tmp_path):
    norm, out = _cleaned(fixtures, tmp_path)
    report = json.loads((out / "report.json").read_text())
    dropped = pl.read_parquet(out / qfile.NAME)
    assert dropped.height == report["rows_dropped"] > 10
    back = tmp_path / "back"
    res = _run("restore", out, "-o", back)
    assert res.exit_code == 0, res.output
    got = pl.read_parquet(back / "sft.parquet")
    kept, inp = pl.read_parquet(out / "sft.parquet"), pl.read_parquet(norm / "sft.parquet")
    # nothing lost: kept + restored are the input rows, ids, content and provenance
    both = pl.concat([kept.select(COLS), got.select(COLS)]).sort("id", "line")
    assert both.equals(inp.select(COLS).sort("id", "line"))
    rep = json.loads((back / "report.json").read_text())
    assert rep["restored"] == got.height == dropped.height and rep["not_restored_by_code"] == {}
    assert rep["restored_by_code"] == dict(dropped.group_by("code").len().iter_rows())
    # one code only
    dup = tmp_path / "dup"
    assert _run("restore", out, "--code", "exact_duplicate", "-o", dup).exit_code == 0
    only = pl.read_parquet(dup / "sft.parquet")
    assert set(only["id"]) == set(dropped.filter(pl.col("code") == "exact_duplicate")["id"]) and only.height >= 10
    # a code the file does not hold: a usage error, nothing written
    res = _run("restore", out, "--code", "no_such_code", "-o", tmp_path / "none")
    assert res.exit_code == 2 and "curate info" in res.output and not (tmp_path / "none").exists()
    # the restored rows are an ordinary dataset: cleaned again with the rule off, they are kept
    again = tmp_path / "again"
    assert _run("clean", dup, "-o", again, "-q", "--target-lang", "any", "--rule", "exact_duplicate=off").exit_code == 0
    assert pl.read_parquet(again / "sft.parquet").height == only.height


def test_every_command_reads_a_quarantine_file_as_its_rows(fixtures, tmp_path):
    _, out = _cleaned(fixtures, tmp_path)
    data = io.read_input(out / qfile.NAME)
    frame = data.frames["sft"].collect()
    assert frame.height == pl.read_parquet(out / qfile.NAME).height
    assert data.report["files"][0]["format"] == qfile.FORMAT and data.report["total"]["accounted"]
    res = _run("info", out / qfile.NAME)
    assert res.exit_code == 0, res.output
    assert "exact_duplicate" in res.output and "refusal" in res.output and f"total rows: {frame.height}" in res.output
    lines = [json.loads(x) for x in _run("info", "--json", out / qfile.NAME).output.splitlines()]
    assert sum(x["rows"] for x in lines) == frame.height
    exp = tmp_path / "exp"
    assert _run("export", out / qfile.NAME, "-o", exp, "--format", "alpaca").exit_code == 0
    assert len(json.loads((exp / "sft_alpaca_train.json").read_text())) == frame.height


def test_ingest_quarantine_keeps_raw_records_quarantined(fixtures, tmp_path):
    """An ingest quarantine holds raw records, not rows: restoring gives none back and keeps every
    entry as it was, so nothing is lost and the accounting still adds up."""
    raw = tmp_path / "broken.jsonl"
    good = (fixtures / "malay_gpt4all.jsonl").read_text().splitlines()[:5]
    raw.write_text("\n".join([good[0], '{"prompt": "patah', good[1], "[1, 2", *good[2:]]) + "\n")
    norm = tmp_path / "norm"
    assert _run("ingest", raw, "-o", norm, "--no-lang", "-q").exit_code == 0
    entries = qfile.read_any(norm)
    assert len(entries) == 2 and all(e["stage"] == "ingest" for e in entries)
    data = io.read_input(norm / qfile.JSONL)
    assert data.frames == {} and data.quarantine == entries
    total = data.report["total"]
    assert total["records"] == 2 and total["quarantined"] == 2 and total["accounted"]
    back = tmp_path / "back"
    res = _run("restore", norm, "-o", back)
    assert res.exit_code == 0, res.output
    assert qfile.read_any(back) == entries
    assert json.loads((back / "report.json").read_text())["restored"] == 0


def test_a_hand_edited_quarantine_is_read_with_care(fixtures, tmp_path):
    """An LLM stage's quarantine.jsonl edited by hand: a row whose text became a list stays
    quarantined (named in the report), a broken line is refused with its file and line."""
    rows = pl.read_parquet(_cleaned(fixtures, tmp_path)[1] / "sft.parquet").head(3).to_dicts()
    entries = [{"stage": "translate", "code": "wrong_language", "reason": "r", "where": f"x:{i}", "row": r}
               for i, r in enumerate(rows)]
    entries[1]["row"] = {**entries[1]["row"], "output": ["not", "text"]}
    q = tmp_path / "q" / "quarantine.jsonl"
    q.parent.mkdir()
    q.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in entries))
    back = tmp_path / "back"
    assert _run("restore", q, "-o", back).exit_code == 0
    got = pl.read_parquet(back / "sft.parquet")
    assert got["id"].to_list() == [rows[0]["id"], rows[2]["id"]]
    assert [e["where"] for e in qfile.read_any(back)] == ["x:1"]
    q.write_bytes(q.read_bytes() + b'{"stage": "translate", "code"\n')
    res = _run("restore", q, "-o", tmp_path / "b2")
    assert res.exit_code == 1 and f"{q}:4:" in res.output and not (tmp_path / "b2").exists()
