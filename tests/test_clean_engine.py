"""The clean engine on all fixtures: accounting, meta records, quarantine, config, files, CLI."""

from __future__ import annotations

from pathlib import Path

import orjson
import polars as pl
import pytest
from click.testing import CliRunner

from curate import io, schemas
from curate.cli import cli
from curate.clean import BY_CODE, RULES, CleanConfig, clean, clean_dir, rule_rows
from curate.clean import quarantine as qfile
from curate.errors import UserError
from curate.ingest import ingest, ingest_to_dir


@pytest.fixture(scope="session")
def everything(fixtures):
    frames = io.read_input(fixtures).collect()  # the directory: files curate can't read are skipped
    return frames, clean(frames, CleanConfig())


def test_every_row_accounted_for(everything):
    frames, res = everything
    rows_in = sum(f.height for f in frames.values())
    q = res.quarantine_rows()
    assert res.report["accounted"] and res.report["rows_in"] == rows_in
    assert rows_in == sum(f.height for f in res.frames.values()) + len(q)
    for kind, f in frames.items():
        by = res.report["by_kind"][kind]
        assert by["in"] == f.height == by["out"] + by["dropped"]
    # every kind has rules that matched
    kinds_dropped = {e["kind"] for e in q}
    assert kinds_dropped == set(frames)


def test_quarantine_entries_carry_code_reason_evidence_and_row(everything):
    frames, res = everything
    q = res.quarantine_rows()
    kept_ids = {i for f in res.frames.values() for i in f["id"].to_list()}
    for e in q:
        assert e["stage"] == "clean" and e["code"] in BY_CODE
        assert e["reason"] == BY_CODE[e["code"]].description
        assert e["evidence"] and e["code"] in [m["rule"] for m in e["matches"]]
        assert e["where"] == f"{e['source']}:{e['line']}"
        assert e["row"]["id"] == e["id"]
        # the row is the kind's own row, nothing from other kinds
        assert set(schemas.CONTENT[e["kind"]]) <= set(e["row"]) and set(e["row"]) <= set(schemas.schema(e["kind"]))
    # a dropped row is not in the output (unless an identical row was kept: same content id)
    dup_codes = {"exact_duplicate"}
    assert all(e["id"] not in kept_ids for e in q if e["code"] not in dup_codes)


def test_report_counts_and_examples(everything):
    _, res = everything
    rules = {r["code"]: r for r in res.report["rules"]}
    assert set(rules) == {c for c, r in BY_CODE.items() if r.default_action != "off"}
    # each dropped row counts under exactly one rule: the one its quarantine entry names
    assert sum(r["dropped"] for r in rules.values()) == res.report["rows_dropped"]
    by_code: dict[str, int] = {}
    for e in res.quarantine_rows():
        by_code[e["code"]] = by_code.get(e["code"], 0) + 1
    assert by_code == {c: r["dropped"] for c, r in rules.items() if r["dropped"]}
    # a row several drop rules matched is matched under each but dropped under the first
    assert any(r["matched"] > r["dropped"] for r in rules.values() if r["action"] == "drop")
    for r in rules.values():
        assert len(r["examples"]) <= 3
        if r["matched"]:
            assert r["examples"]
    assert rules["noinput_marker"]["fixed"] >= 5
    assert rules["mojibake"]["fixed"] >= 5
    assert rules["refusal"]["dropped"] > 0
    assert rules["unclear_instruction"]["flagged"] > 0


def test_fixes_and_flags_recorded_in_meta(everything):
    _, res = everything
    n_fix = n_flag = 0
    for f in res.frames.values():
        for m in f["meta"].to_list():
            meta = schemas.meta_of(m)
            for fx in meta.get("fixes", []):
                assert set(fx) >= {"rule", "field", "before", "after"} and fx["before"] != fx["after"]
                n_fix += 1
            for fl in meta.get("flags", []):
                assert set(fl) == {"rule", "field", "evidence"}
                n_flag += 1
    assert n_fix and n_flag


def test_ingest_meta_is_kept(fixtures):
    frames = ingest([fixtures / "malay_alpaca_anomalies.json", fixtures / "chatdoctor.json"], detect_lang=False).frames
    frames["sft"] = frames["sft"].with_columns(
        pl.when(pl.col("line") == 2).then(pl.lit('{"recovered": ["x"]}')).otherwise(pl.col("meta")).alias("meta"))
    res = clean(frames, CleanConfig(actions={c: "off" for c in BY_CODE if c != "noinput_marker"}))
    metas = [schemas.meta_of(m) for m in res.frames["sft"]["meta"].to_list()]
    assert any(m.get("recovered") == ["x"] for m in metas)


def test_chat_fix_rebuilds_messages(fixtures):
    frames = ingest([fixtures / "malay_kochatgpt_conversation.jsonl"], detect_lang=False).frames
    chat = frames["chat"]
    # put a zero-width space into one real message: the fix must land in that message only
    msgs = chat["messages"].to_list()
    msgs[3][1]["content"] = msgs[3][1]["content"] + "\u200b"
    chat = chat.with_columns(pl.Series("messages", msgs, dtype=chat.schema["messages"]))
    res = clean({"chat": chat}, CleanConfig(actions={c: "off" for c in BY_CODE if c != "control_chars"}))
    out = res.frames["chat"]
    assert out["messages"].to_list()[3] == frames["chat"]["messages"].to_list()[3]
    assert out["messages"].to_list()[4] == frames["chat"]["messages"].to_list()[4]
    fx = schemas.meta_of(out["meta"][3])["fixes"][0]
    assert fx["field"] == "messages[1]" and fx["rule"] == "control_chars"


def test_drops_on_all_four_kinds(fixtures):
    frames = ingest([fixtures / "malay_kochatgpt_sft.jsonl", fixtures / "malay_kochatgpt_rm.jsonl",
                     fixtures / "malay_kochatgpt_ppo.jsonl", fixtures / "malay_kochatgpt_conversation.jsonl",
                     fixtures / "kochatgpt_ppo.jsonl"], detect_lang=False).frames
    res = clean(frames, CleanConfig(actions={"wrong_language": "off", "indonesian": "off"}))
    kinds = {e["kind"] for e in res.quarantine_rows()}
    assert kinds == {"sft", "chat", "rm", "ppo"}


def test_config_file_and_overrides(tmp_path):
    toml = tmp_path / "clean.toml"
    toml.write_text('target_lang = "id"\nexamples = 1\n[rules.refusal]\naction = "flag"\n'
                    '[rules.near_duplicate]\nthreshold = 0.9\n', encoding="utf-8")
    cfg = CleanConfig.load(toml, rules=["mojibake=off"], sets=["length_limit.output_max=100"])
    assert cfg.target_lang == "id" and cfg.examples == 1
    assert cfg.actions == {"refusal": "flag", "mojibake": "off"}
    assert cfg.params == {"near_duplicate": {"threshold": 0.9}, "length_limit": {"output_max": "100"}}
    assert CleanConfig.load(toml, target_lang="ms").target_lang == "ms"
    for bad in (dict(rules=["nosuch=drop"]), dict(rules=["refusal=explode"]), dict(rules=["refusal"]),
                dict(sets=["near_duplicate=0.5"]), dict(target_lang="xx"), dict(rules=["empty_output=fix"])):
        with pytest.raises(UserError):
            CleanConfig.load(None, **bad)
    with pytest.raises(UserError):
        clean({}, CleanConfig(params={"refusal": {"nope": 1}}))
    for threshold in ("5", "0", "nan", "-1"):  # named as the near-duplicate rule's, not the exact pass's
        with pytest.raises(UserError, match="rule near_duplicate: threshold must be in"):
            clean({}, CleanConfig.load(None, sets=[f"near_duplicate.threshold={threshold}"]))


def test_clean_dir_writes_atomically_and_dry_run_writes_nothing(fixtures, tmp_path):
    norm = tmp_path / "norm"
    ingest_to_dir([fixtures / "malay_alpaca_anomalies.json", fixtures / "malay_kochatgpt_rm.jsonl"], norm,
                  detect_lang=False)
    out = tmp_path / "clean"
    res = clean_dir(norm, out, CleanConfig(actions={"wrong_language": "off", "indonesian": "off"}), dry_run=True)
    assert not out.exists() and res.report["rows_dropped"] > 0
    res = clean_dir(norm, out, CleanConfig(actions={"wrong_language": "off", "indonesian": "off"}))
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "quarantine.parquet", "report.json",
                                                     "rm.parquet", "sft.parquet"]
    back = io.read_dataset(out)
    assert {k: v.collect().height for k, v in back.items()} == {k: v.height for k, v in res.frames.items()}
    q = qfile.read(out / "quarantine.parquet")
    assert len(q) == res.report["rows_dropped"]
    assert q == res.quarantine_rows()  # the file holds exactly the entries of the Python API
    assert orjson.loads((out / "report.json").read_bytes())["accounted"] is True
    with pytest.raises(UserError):
        clean_dir(norm, norm, CleanConfig())


def test_cli_list_rules_help_and_run(fixtures, tmp_path):
    runner = CliRunner()
    listed = runner.invoke(cli, ["clean", "--list-rules"], terminal_width=400)
    assert listed.exit_code == 0
    for r in rule_rows():
        assert r["code"] in listed.output
    helped = runner.invoke(cli, ["clean", "--help"])
    assert helped.exit_code == 0 and "Example:" in helped.output and "curate clean" in helped.output
    norm = tmp_path / "norm"
    ingest_to_dir([fixtures / "malay_alpaca_anomalies.json"], norm, detect_lang=False)
    rep = tmp_path / "r.json"
    res = runner.invoke(cli, ["clean", str(norm), "-o", str(tmp_path / "c"), "--rule", "media_request=flag",
                              "--rule", "wrong_language=off", "--rule", "indonesian=off",
                              "--set", "length_limit.output_max=200", "--report-json", str(rep)])
    assert res.exit_code == 0, res.output
    report = orjson.loads(rep.read_bytes())
    rules = {r["code"]: r for r in report["rules"]}
    assert rules["media_request"]["action"] == "flag" and rules["media_request"]["flagged"] > 0
    assert "wrong_language" not in rules and rules["length_limit"]["dropped"] > 0
    bad = runner.invoke(cli, ["clean", str(norm), "-o", str(tmp_path / "d"), "--rule", "bogus=drop"])
    assert bad.exit_code != 0 and "unknown rule 'bogus'" in bad.output
    dry = runner.invoke(cli, ["clean", str(norm), "--dry-run"])
    assert dry.exit_code == 0 and "dry run" in dry.output


def test_registry_is_complete():
    codes = [r.code for r in RULES]
    assert len(codes) == len(set(codes))
    for r in RULES:
        assert r.description and r.default_action in (*r.actions, "off")
    wanted = {"noinput_marker", "na_output", "empty_output", "needs_internet", "merged_instruction", "empty_code",
              "media_request", "wrong_math", "unclear_instruction", "literal_escapes", "control_chars", "mojibake",
              "refusal", "wrong_language", "indonesian", "fix_indonesian", "exact_duplicate", "near_duplicate",
              "length_limit", "untranslated_field"}
    assert wanted <= set(codes)


def test_fixed_then_dropped_row_keeps_its_fix_record(fixtures):
    frames = ingest([fixtures / "malay_alpaca_anomalies.json"], detect_lang=False).frames
    only = {c: "off" for c in BY_CODE if c not in ("noinput_marker", "needs_internet")}
    res = clean(frames, CleanConfig(actions=only))
    # "Beri tajuk untuk rencana berikut" with input "Tidak ada input yang diperlukan. <noinput>":
    # the marker is fixed to "", then the article is missing
    e = next(q for q in res.quarantine_rows() if q["row"]["instruction"].startswith("Beri tajuk untuk rencana"))
    assert e["code"] == "needs_internet"
    assert [m["rule"] for m in e["matches"]] == ["noinput_marker", "needs_internet"]
    fx = schemas.meta_of(e["row"]["meta"])["fixes"][0]
    assert fx["before"] == "Tidak ada input yang diperlukan. <noinput>" and fx["after"] == "" and e["row"]["input"] == ""


def test_empty_frames_of_every_kind():
    res = clean({k: schemas.empty(k) for k in schemas.KINDS}, CleanConfig())
    assert res.report["rows_in"] == 0 and res.report["accounted"]
    assert all(f.height == 0 for f in res.frames.values()) and res.quarantine_rows() == []


def test_clean_dir_on_a_single_jsonl_file(fixtures, tmp_path):
    frames = ingest([fixtures / "malay_alpaca_anomalies.json"], detect_lang=False).frames
    src = tmp_path / "sft.jsonl"
    io.write_frame(frames["sft"], src)
    res = clean_dir(src, tmp_path / "out", CleanConfig(actions={"wrong_language": "off", "indonesian": "off"}))
    assert res.report["rows_in"] == frames["sft"].height and res.report["accounted"]
    assert (tmp_path / "out" / "sft.parquet").exists() and res.report["rows_dropped"] > 0


def test_rows_without_any_answer_are_empty_output():
    chat = schemas.from_rows("chat", [
        {"messages": None}, {"messages": []},
        {"messages": [{"role": "user", "content": "Terangkan fotosintesis dengan ringkas."}]},
        {"messages": [{"role": "user", "content": "Terangkan fotosintesis."},
                      {"role": "assistant", "content": "Fotosintesis ialah proses tumbuhan menghasilkan makanan."}]},
    ])
    rm = schemas.from_rows("rm", [{"prompt": "Soalan mudah untuk anda?", "completions": [], "ranks": []}])
    res = clean({"chat": chat, "rm": rm}, CleanConfig(actions={c: "off" for c in BY_CODE if c != "empty_output"}))
    assert [e["code"] for e in res.quarantine_rows()] == ["empty_output"] * 4
    assert res.frames["chat"].height == 1 and res.frames["rm"].height == 0


def test_target_any_keeps_every_language_for_translation(fixtures):
    """Before translation (--target-lang any) no row is dropped for its language."""
    from curate.clean import CleanConfig, clean
    from curate.ingest import ingest

    frames = ingest([fixtures / "chatdoctor.json", fixtures / "kochatgpt_ppo.jsonl",
                     fixtures / "malay_kochatgpt_sft.jsonl"]).frames
    any_lang = clean(frames, CleanConfig.load(None, target_lang="any"))
    malay = clean(frames, CleanConfig.load(None, target_lang="ms"))
    lang_rules = {"wrong_language", "untranslated_field", "indonesian"}
    dropped_any = {q["code"] for q in any_lang.quarantine_rows()}
    dropped_ms = {q["code"] for q in malay.quarantine_rows()}
    assert not dropped_any & lang_rules
    assert dropped_ms & lang_rules


def test_progress_counts_rows_per_stage(fixtures):
    """Every bar counts rows and ends at its total: rows x rules per kind, rows for the duplicate pass."""
    from curate.progress import Stages

    class Bar:
        def __init__(self, log, name, total):
            self.log, self.name, self.total, self.done = log, name, total, 0

        def advance(self, k=1):
            self.done += k

        def update(self, **kw):
            pass

    class Recorder(Stages):
        def __init__(self):
            super().__init__(None)
            self.bars = []

        def stage(self, description, total):
            self.bars.append(Bar(self, description, total))
            return self.bars[-1]

    frames = ingest([fixtures / "malay_gpt4all.jsonl", fixtures / "malay_seed_tasks.jsonl"]).frames
    rec = Recorder()
    clean(frames, CleanConfig(), progress=rec)
    names = [b.name for b in rec.bars]
    assert any("rows x rules" in n for n in names) and any("duplicates" in n for n in names)
    n = frames["sft"].height
    for b in rec.bars:
        assert b.total and b.done == b.total, (b.name, b.done, b.total)
        assert b.total % n == 0 or "duplicates" in b.name


def test_quarantine_file_restores_every_dropped_row_and_is_small(fixtures, tmp_path):
    """Nothing is lost: the kept rows plus the restored quarantine are the input rows (by id, with
    their content); duplicates compress well, so the file stays smaller than the input."""
    raw = tmp_path / "raw.jsonl"
    base = ingest([fixtures / "malay_gpt4all.jsonl"], detect_lang=False).frames["sft"]
    rows = base.select("instruction", "input", "output").to_dicts()
    lines = []
    for i in range(40):  # 40 template fills of each of the first 5 rows: near duplicates
        for r in rows[:5]:
            lines.append({**r, "output": r["output"].replace(" ", f" {'ab'[i % 2]}{i} ", 1)})
    lines += rows
    raw.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in lines))
    norm = tmp_path / "norm"
    ingest_to_dir([raw], norm, detect_lang=False)
    out = tmp_path / "clean"
    res = clean_dir(norm, out, CleanConfig(actions={"wrong_language": "off", "indonesian": "off"}))
    path = out / "quarantine.parquet"
    assert res.report["rows_dropped"] >= 150
    assert path.stat().st_size < raw.stat().st_size / 2
    back = qfile.restore(path)["sft"]
    kept = pl.read_parquet(out / "sft.parquet")
    inp = pl.read_parquet(norm / "sft.parquet")
    assert kept.height + back.height == inp.height
    cols = ["id", "instruction", "input", "output"]
    assert (pl.concat([kept.select(cols), back.select(cols)]).sort(cols).equals(inp.select(cols).sort(cols)))
    near = qfile.restore(path, codes=["near_duplicate"])["sft"]
    assert 0 < near.height < back.height + 1
    counts = qfile.counts(out)
    assert counts["rows"].sum() == res.report["rows_dropped"]
    result = CliRunner().invoke(cli, ["info", str(out)])
    assert result.exit_code == 0, result.output
    assert "quarantined" in result.output and "near_duplicate" in result.output


def test_reader_entries_quoting_a_record_go_to_the_quarantine_file(fixtures, tmp_path):
    # the reader quarantines a few lines of this raw file with the record itself as evidence (a dict)
    src = fixtures / "malay_kochatgpt_sft.jsonl"
    res = clean_dir(src, tmp_path / "out", CleanConfig(target_lang="any"))
    reader = [e for e in qfile.read(tmp_path / "out" / qfile.NAME) if e.get("stage") != "clean"]
    lines = {e["line"] for e in reader}
    assert {98, 151, 184} <= lines and res.report["accounted"]
    quoted = next(e for e in reader if e["line"] == 98)
    assert orjson.loads(quoted["evidence"])["prompt"].startswith("Saya melewati tempat")


def test_fixes_matched_at_once_see_the_text_the_fixes_before_them_left(fixtures, monkeypatch):
    """The fixes in a row are matched at once on the text before them all; a fix's matches are then
    mended for the cells an earlier fix changed: the same fixes, kept rows, quarantine and report as
    one fix after the other, on every fixture and on cells where one fix makes the next one match
    (a zero-width space inside <noinput>, a mojibake'd label)."""
    from curate.clean import engine

    frames = ingest([fixtures / "malay_alpaca_anomalies.json", fixtures / "malay_kochatgpt_conversation.jsonl",
                     fixtures / "malay_kochatgpt_rm.jsonl"], detect_lang=False).frames
    extra = pl.DataFrame({"instruction": ["Tulis satu ayat tentang kucing.", "Instruction:\u200b Terjemahkan ayat ini."],
                          "input": ["<no\u200binput>", "Saya suka makan nasi lemak\\n pada waktu pagi."],
                          "output": ["Kucing itu tidur di atas kerusi.", "I like to eat nasi lemak in the morning."]})
    frames["sft"] = pl.concat([frames["sft"], schemas.conform(extra.with_columns(
        pl.lit("extra.jsonl").alias("source"), pl.Series("line", [1, 2])), "sft")], how="diagonal_relaxed")
    got = clean(frames, CleanConfig())
    together = engine._together  # fixes not matched together: one fix after the other
    monkeypatch.setattr(engine, "_together", lambda active, i, kind:
                        [] if engine._fixing(active[i]) else together(active, i, kind))
    ref = clean(frames, CleanConfig())
    for kind in ref.frames:
        assert got.frames[kind].equals(ref.frames[kind])
    assert got.quarantine_ndjson() == ref.quarantine_ndjson()
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in ref.report["rules"]]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in got.report["rules"]] == strip
    metas = [schemas.meta_of(m) for m in got.frames["sft"].filter(pl.col("source") == "extra.jsonl")["meta"]]
    assert [f["rule"] for f in metas[0]["fixes"]] == ["control_chars", "noinput_marker"]
    assert [f["rule"] for f in metas[1]["fixes"]] == ["literal_escapes", "control_chars", "label_prefix"]
