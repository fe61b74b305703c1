"""Ingest of every real source format in tests/data/fixtures, anomalies included."""

from __future__ import annotations

import json
import shutil

import orjson
import polars as pl
import pytest

from curate import schemas
from curate.errors import UserError
from curate.ingest import detect_format, ingest, ingest_to_dir

# fixture file -> (format it must be detected as, kind)
EXPECTED = {
    "alpaca_seed_tasks.jsonl": ("seed_tasks", "sft"),
    "malay_seed_tasks.jsonl": ("seed_tasks", "sft"),
    "alpacacleaned_gsm8k.json": ("alpaca", "sft"),
    "malay_alpaca.json": ("alpaca", "sft"),
    "malay_alpaca_anomalies.json": ("alpaca", "sft"),
    "chatdoctor.json": ("chatdoctor", "sft"),
    "chatdoctor_anomalies.json": ("chatdoctor", "sft"),
    "malay_chatdoctor.jsonl": ("chatdoctor", "sft"),
    "malay_gpt4all.jsonl": ("gpt4all", "sft"),
    "malay_gpt4all_anomalies.jsonl": ("gpt4all", "sft"),
    "malay_kochatgpt_sft.jsonl": ("kochatgpt_sft", "sft"),
    "malay_kochatgpt_sft_anomalies.jsonl": ("kochatgpt_sft", "sft"),
    "malay_kochatgpt_rm.jsonl": ("kochatgpt_rm", "rm"),
    "kochatgpt_ppo.jsonl": ("kochatgpt_ppo", "ppo"),
    "kochatgpt_ppo_anomalies.jsonl": ("kochatgpt_ppo", "ppo"),
    "malay_kochatgpt_ppo.jsonl": ("kochatgpt_ppo", "ppo"),
    "malay_kochatgpt_ppo_anomalies.jsonl": ("kochatgpt_ppo", "ppo"),
    "kochatgpt_conversation.jsonl": ("kochatgpt_conversation", "chat"),
    "malay_kochatgpt_conversation.jsonl": ("kochatgpt_conversation", "chat"),
    "malay_kochatgpt_conversation_anomalies.jsonl": ("kochatgpt_conversation", "chat"),
    "kochatgpt_seed_data.txt": ("question_list", "ppo"),
    "sharegpt.json": ("sharegpt", "chat"),
    "sharegpt_fastchat_identity.json": ("sharegpt", "chat"),
}


def _count_json_records(path):
    """Independent count of records in a fixture, to check the summary accounts for all of them."""
    text = path.read_text(encoding="utf-8-sig")
    if text.lstrip().startswith("["):
        return len(json.loads(text))
    return None


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_fixture_is_detected_and_accounted_for(fixtures, name):
    path = fixtures / name
    fmt, kind = EXPECTED[name]
    assert detect_format(path).name == fmt
    result = ingest([path], detect_lang=False)
    summary = result.files[0]
    assert (summary.format, summary.kind) == (fmt, kind)
    # every record is either kept or quarantined; nothing vanishes
    assert summary.records == summary.kept + summary.quarantined
    assert len(result.quarantine) == summary.quarantined
    expected_records = _count_json_records(path)
    if expected_records is not None:
        assert summary.records == expected_records
    if summary.kept:
        df = result.frames[kind]
        assert df.schema == schemas.schema(kind)
        assert df.height == summary.rows
        assert df["id"].null_count() == 0
        assert df["line"].min() >= 1
        assert (df["format"] == fmt).all()


def test_jsonl_record_counts_match_lines(fixtures):
    for name in ("malay_gpt4all.jsonl", "malay_kochatgpt_sft.jsonl", "malay_kochatgpt_rm.jsonl",
                 "malay_chatdoctor.jsonl", "alpaca_seed_tasks.jsonl"):
        lines = [ln for ln in (fixtures / name).read_bytes().splitlines() if ln.strip()]
        summary = ingest([fixtures / name], detect_lang=False).files[0]
        assert summary.records == len(lines), name


def test_two_objects_on_one_line_are_split(fixtures):
    result = ingest([fixtures / "malay_gpt4all_anomalies.jsonl"], detect_lang=False)
    first_line = result.frames["sft"].filter(pl.col("line") == 1)
    assert first_line.height == 2
    assert first_line["instruction"][0].startswith("Pemimpin Pembangkang Zimbabwe")
    assert first_line["instruction"][1].startswith("No. 4 Auburn")
    for meta in first_line["meta"]:
        assert "split 2 JSON values" in " ".join(schemas.meta_of(meta)["recovered"])


def test_missing_brace_and_nested_record_are_recovered(fixtures):
    result = ingest([fixtures / "malay_gpt4all_anomalies.jsonl"], detect_lang=False)
    row = result.frames["sft"].filter(pl.col("instruction").str.starts_with("Blair akan")).row(0, named=True)
    assert row["output"] == "politik dunia"
    recovered = schemas.meta_of(row["meta"])["recovered"]
    assert any("closing brace" in r for r in recovered) and any("nested" in r for r in recovered)


def test_message_rows_and_empty_objects_go_to_quarantine(fixtures):
    result = ingest([fixtures / "malay_gpt4all_anomalies.jsonl", fixtures / "malay_kochatgpt_sft.jsonl",
                     fixtures / "malay_chatdoctor_anomalies.jsonl"], detect_lang=False)
    codes = [q["code"] for q in result.quarantine]
    assert codes.count("message_row") == 2
    assert codes.count("empty_object") == 7
    assert codes.count("missing_completion") == 3
    for q in result.quarantine:
        assert q["where"] == f"{q['source']}:{q['line']}" and q["line"] >= 1
        assert q["reason"] and q["raw"] is not None


def test_statement_key_merged_into_prompt(fixtures):
    df = ingest([fixtures / "malay_gpt4all_anomalies.jsonl"], detect_lang=False).frames["sft"]
    row = df.filter(pl.col("instruction").str.starts_with("Google Menggunakan Froogle")).row(0, named=True)
    assert "Nicolaou mengatakan" in row["instruction"]
    assert "statement" in " ".join(schemas.meta_of(row["meta"])["recovered"])


def test_kochatgpt_sft_token_variants_and_swallowed_field(fixtures):
    df = ingest([fixtures / "malay_kochatgpt_sft_anomalies.jsonl"], detect_lang=False).frames["sft"]
    metas = [schemas.meta_of(m) for m in df["meta"]]
    assert [m["tokens"] for m in metas] == [39, 197, 87, 94, 38]
    swallowed = df.filter(pl.col("instruction").str.contains("Cheonan")).row(0, named=True)
    assert '"tokens"' not in swallowed["output"] and swallowed["output"].endswith('"korban Cheonan".')


def test_literal_newlines_become_newlines(fixtures):
    df = ingest([fixtures / "malay_kochatgpt_sft.jsonl"], detect_lang=False).frames["sft"]
    fixed = df.filter(pl.col("meta").str.contains("literal"))
    assert fixed.height > 0
    assert not fixed["output"].str.contains(r"\\n", literal=True).any()
    assert fixed["output"].str.contains("\n", literal=True).all()


def test_literal_newline_kept_inside_code(fixtures):
    from curate.text import fix_literal_newlines
    code = 'print("a\\nb")'
    assert fix_literal_newlines(code) == (code, 0)


def test_rm_rankings(fixtures):
    result = ingest([fixtures / "malay_kochatgpt_rm.jsonl"], detect_lang=False)
    df = result.frames["rm"]
    raw = [json.loads(line) for line in (fixtures / "malay_kochatgpt_rm.jsonl").read_text().splitlines()]
    full = [r for r in raw if r.get("ranking") and "completion_2" in r]
    assert df.filter(pl.col("ranks").is_not_null()).height == len(full)
    first = df.row(0, named=True)
    assert first["ranks"] == raw[0]["ranking"] and first["completions"][2] == raw[0]["completion_2"]
    unranked = df.filter(pl.col("ranks").is_null())
    assert unranked.height == len([r for r in raw if r]) - len(full)
    assert all("unranked" in " ".join(schemas.meta_of(m)["issues"]) for m in unranked["meta"])


def test_ppo_array_inside_jsonl_and_empty_prompts(fixtures):
    result = ingest([fixtures / "kochatgpt_ppo.jsonl", fixtures / "kochatgpt_ppo_anomalies.jsonl"], detect_lang=False)
    assert result.frames["ppo"].height == 200
    assert [q["code"] for q in result.quarantine] == ["empty_prompt"] * 3
    # lines point at each element's opening brace in the pretty-printed array
    lines = (fixtures / "kochatgpt_ppo.jsonl").read_text().splitlines()
    for line in result.frames["ppo"]["line"].head(5):
        assert lines[line - 1].strip() == "{"


def test_ppo_rows_with_extra_keys_keep_them(fixtures):
    df = ingest([fixtures / "malay_kochatgpt_ppo_anomalies.jsonl"], detect_lang=False).frames["ppo"]
    assert df.height == 6
    extras = [schemas.meta_of(m).get("extra", {}) for m in df["meta"]]
    assert sum("completion" in e for e in extras) == 2
    assert sum("output" in e for e in extras) == 4


def test_conversations_roles_and_labels(fixtures):
    result = ingest([fixtures / "malay_kochatgpt_conversation.jsonl", fixtures / "kochatgpt_conversation.jsonl",
                     fixtures / "malay_kochatgpt_conversation_anomalies.jsonl"], detect_lang=False)
    chats = result.frames["chat"]
    assert chats.height == 403
    roles = chats.select(pl.col("messages").list.eval(pl.element().struct.field("role"))).explode("messages")
    assert set(roles["messages"].to_list()) == {"user", "assistant"}
    # no speaker label survives inside the text
    contents = chats.select(pl.col("messages").list.eval(pl.element().struct.field("content"))).explode("messages")
    assert not contents["messages"].str.contains(r"^<(사람|챗봇|Orang|orang|Chatbot|Chabot|AI)>:").any()
    ai = chats.filter(pl.col("meta").str.contains("'AI'"))
    assert ai.height == 1
    assert [q["code"] for q in result.quarantine] == ["bad_record", "bad_record"]
    assert all("empty conversation block" in q["reason"] for q in result.quarantine)


def test_what_a_turn_holds_beyond_role_and_text_is_kept_in_meta(tmp_path):
    """OpenAI chats carry tool calls, names, training weights and image parts per message; the
    canonical turn is role and text, so the rest is kept in meta (extra.turns), never dropped."""
    chats = [
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "Apakah ini?"},
                                                   {"type": "image_url", "image_url": {"url": "https://x/k.png"}}]},
                      {"role": "assistant", "content": "Seekor kucing.", "weight": 0}]},
        {"messages": [{"role": "user", "content": "Cuaca di KL?", "name": "ali"},
                      {"role": "assistant", "content": None,
                       "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "cuaca", "arguments": "{}"}}]},
                      {"role": "assistant", "content": "Cerah."}]},
    ]
    path = tmp_path / "chats.jsonl"
    path.write_text("\n".join(json.dumps(c, ensure_ascii=False) for c in chats) + "\n")
    rows = ingest([path], detect_lang=False).frames["chat"]
    metas = [json.loads(m) for m in rows["meta"]]
    assert rows["messages"][0].to_list()[0]["content"] == "Apakah ini?"
    assert metas[0]["extra"]["turns"] == {"0": {"content": chats[0]["messages"][0]["content"]}, "1": {"weight": 0}}
    assert metas[1]["extra"]["turns"] == {"0": {"name": "ali"}, "1": {"tool_calls": chats[1]["messages"][1]["tool_calls"]}}
    assert metas[1]["recovered"] == ["turn 1: no content (null), read as empty"]


def test_sharegpt(fixtures):
    df = ingest([fixtures / "sharegpt.json"], detect_lang=False).frames["chat"]
    assert df["messages"].list.len().to_list() == [10, 2, 2]
    first = df.row(0, named=True)
    assert first["messages"][0]["role"] == "user" and first["messages"][1]["role"] == "assistant"
    assert schemas.meta_of(first["meta"])["origin_id"] == "QWJhYvA_0"


def test_openai_messages(tmp_path):
    path = tmp_path / "chat.jsonl"
    rows = [{"messages": [{"role": "system", "content": "Anda pembantu."}, {"role": "user", "content": "Hai"},
                          {"role": "assistant", "content": [{"type": "text", "text": "Hai juga!"}]}]},
            {"messages": [{"role": "wizard", "content": "?"}]}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = ingest([path], detect_lang=False)
    assert result.files[0].format == "openai_messages"
    msgs = result.frames["chat"]["messages"][0].to_list()
    assert msgs[2] == {"role": "assistant", "content": "Hai juga!"}
    assert [q["code"] for q in result.quarantine] == ["unknown_role"]


def test_question_list_with_bom(fixtures):
    df = ingest([fixtures / "kochatgpt_seed_data.txt"], detect_lang=False).frames["ppo"]
    assert df.height == 200
    assert not df["prompt"][0].startswith("\ufeff")


def test_seed_tasks_meta(fixtures):
    df = ingest([fixtures / "alpaca_seed_tasks.jsonl"], detect_lang=False).frames["sft"]
    meta = schemas.meta_of(df["meta"][0])
    assert meta["seed"]["id"] == "seed_task_0" and meta["seed"]["name"] == "breakfast_suggestion"


def test_format_override_and_unknown_format(fixtures, tmp_path):
    res = ingest([fixtures / "malay_chatdoctor.jsonl"], "alpaca", detect_lang=False)
    assert res.files[0].format == "alpaca"
    weird = tmp_path / "weird.jsonl"
    weird.write_text('{"foo": 1}\n{"bar": 2}\n')
    with pytest.raises(UserError, match="--format"):
        detect_format(weird)


def test_truncated_json_array_is_reported_not_crashed(fixtures, tmp_path):
    text = (fixtures / "malay_alpaca.json").read_text()
    cut = tmp_path / "cut.json"
    cut.write_text(text[: len(text) // 2])
    result = ingest([cut], detect_lang=False)
    summary = result.files[0]
    assert summary.kept > 50 and summary.quarantined >= 1
    assert summary.records == summary.kept + summary.quarantined


def test_broken_element_in_array_is_quarantined_and_rest_read(fixtures, tmp_path):
    data = json.loads((fixtures / "chatdoctor.json").read_text())[:5]
    text = json.dumps(data, indent=6)
    # break the third element's closing quote
    marker = json.dumps(data[2]["output"])
    broken = text.replace(marker, marker[:-1], 1)
    path = tmp_path / "broken.json"
    path.write_text(broken)
    result = ingest([path], detect_lang=False)
    assert result.frames["sft"].height == 4
    assert len(result.quarantine) == 1 and result.quarantine[0]["code"] == "parse_error"


@pytest.mark.parametrize("broken", [
    '{"instruction": "rosak", "input": "", "output": tru}',  # a bad literal
    '{"instruction": "a},{\\"b", "input": [1, {"x": "]"}], "output": tru}',  # brackets and quotes inside strings
    'tru',  # a broken scalar
    '{"instruction": "ok" junk, "output": "x"}',  # garbage between a key's value and the next key
])
def test_broken_element_in_a_minified_array_loses_no_other_record(fixtures, tmp_path, broken):
    """A minified array (json.dump without indent: one line) has no next line to resynchronise at:
    the elements after a broken one were swallowed into its quarantine entry (5 of 10 records lost)."""
    data = json.loads((fixtures / "malay_alpaca.json").read_text())[:10]
    parts = [json.dumps(r, ensure_ascii=False) for r in data]
    path = tmp_path / "minified.json"
    path.write_text("[" + ",".join(parts[:5] + [broken] + parts[5:]) + "]")
    result = ingest([path], detect_lang=False)
    assert result.frames["sft"]["instruction"].to_list() == [r["instruction"] for r in data]
    assert len(result.quarantine) == 1 and result.quarantine[0]["raw"] == broken
    assert result.files[0].records == 11


@pytest.mark.parametrize("indent", [None, 2])
def test_json_array_elements_cut_anywhere_by_the_read_buffer_are_read_whole(tmp_path, monkeypatch, indent):
    """The reader reads a JSON array in chunks and grows its buffer only when an element may be cut
    by it (a string not closed, an error near the buffer's end): with a 97-character buffer the
    cuts fall inside strings, escapes, numbers and literals, and every element still comes out
    as json.loads reads it; a broken one (a bad literal) is the only one reported."""
    from curate.ingest import readers

    rows = [{"instruction": f"Soalan {i} \"petikan\" \\ \u00e9?", "n": i * 7919 ** 3, "f": i / 7, "flag": [True, False, None][i % 3],
             "input": "", "output": "x" * (i % 200)} for i in range(300)]
    text = json.dumps(rows, indent=indent, ensure_ascii=False)
    broken = text.replace('"flag": false', '"flag": fals', 1)  # row 1
    monkeypatch.setattr(readers, "CHUNK", 97)
    for data, bad in ((text, 0), (broken, 1)):
        path = tmp_path / "cut.json"
        path.write_text(data, encoding="utf-8")
        items = list(readers.iter_json_array(path))
        assert [i.obj for i in items if i.error is None] == [r for j, r in enumerate(rows) if not (bad and j == 1)]
        assert sum(1 for i in items if i.error) == bad


def test_gzip_bzip2_and_xz_files_are_read_as_the_files_they_hold(fixtures, tmp_path):
    """Hub datasets ship *.jsonl.gz: a compressed JSON, JSON Lines or text file (alone or in a
    directory) gives the rows, quarantine and counts of the file it holds; a cut stream and a
    compressed CSV are refused naming the file."""
    import bz2
    import gzip
    import lzma

    plain, packed = tmp_path / "plain", tmp_path / "packed"
    plain.mkdir()
    packed.mkdir()
    for name, module in (("malay_alpaca.json", gzip), ("malay_gpt4all_anomalies.jsonl", bz2),
                         ("kochatgpt_seed_data.txt", lzma)):
        data = (fixtures / name).read_bytes()
        (plain / name).write_bytes(data)
        (packed / (name + {gzip: ".gz", bz2: ".bz2", lzma: ".xz"}[module])).write_bytes(module.compress(data))
    a, b = ingest(sorted(plain.iterdir()), detect_lang=False), ingest(sorted(packed.iterdir()), detect_lang=False)
    for kind in ("sft", "ppo"):
        assert a.frames[kind].height and a.frames[kind].drop("source").equals(b.frames[kind].drop("source")), kind
    assert [(q["line"], q["code"]) for q in a.quarantine] == [(q["line"], q["code"]) for q in b.quarantine]
    assert sorted(f.encoding for f in b.files) == ["bzip2, utf-8", "gzip, utf-8", "xz, utf-8"]
    # a directory of compressed files is walked as one of plain files
    ingest_to_dir([plain], tmp_path / "a", detect_lang=False)
    ingest_to_dir([packed], tmp_path / "b", detect_lang=False)
    for kind in ("sft", "ppo"):
        assert pl.read_parquet(tmp_path / "a" / f"{kind}.parquet").drop("source").equals(
            pl.read_parquet(tmp_path / "b" / f"{kind}.parquet").drop("source"))
    cut = tmp_path / "cut.json.gz"
    cut.write_bytes((packed / "malay_alpaca.json.gz").read_bytes()[:2000])
    with pytest.raises(UserError, match=r"cut\.json\.gz: the gzip stream is cut short or damaged"):
        ingest([cut], detect_lang=False)
    table = tmp_path / "t.csv.gz"
    table.write_bytes(gzip.compress(b"instruction,input,output\nq,,a\n"))
    with pytest.raises(UserError, match="a compressed CSV file; decompress it first"):
        ingest_to_dir([table], tmp_path / "o", detect_lang=False)


def test_ids_are_stable_and_content_based(fixtures, tmp_path):
    a = ingest([fixtures / "malay_alpaca.json"], detect_lang=False).frames["sft"]
    # same content in another container (JSONL) under another name gives the same ids
    other = tmp_path / "copy.jsonl"
    rows = json.loads((fixtures / "malay_alpaca.json").read_text())
    other.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
    b = ingest([other], detect_lang=False).frames["sft"]
    assert a["id"].to_list() == b["id"].to_list()
    # the id is a pure function of kind + content: recompute it independently
    row = a.row(0, named=True)
    assert row["id"] == schemas.content_id("sft", row)
    import hashlib
    payload = orjson.dumps(["sft", row["instruction"], row["input"], row["output"]])
    assert row["id"] == hashlib.blake2b(payload, digest_size=8).hexdigest()


def test_ingest_to_dir_streams_in_batches(fixtures, tmp_path):
    out = tmp_path / "norm"
    files = [fixtures / n for n in ("malay_alpaca.json", "malay_gpt4all_anomalies.jsonl", "malay_kochatgpt_rm.jsonl")]
    summary = ingest_to_dir(files, out, detect_lang=False, batch_size=37)
    sft = pl.read_parquet(out / "sft.parquet")
    assert sft.height == summary["rows_by_kind"]["sft"] == 210
    assert pl.read_parquet(out / "rm.parquet").height == 199
    quarantine = [json.loads(line) for line in (out / "quarantine.jsonl").read_text().splitlines()]
    assert len(quarantine) == summary["total"]["quarantined"] == 2
    report = json.loads((out / "report.json").read_text())
    assert report["total"]["accounted"] is True
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left
    # same input, same output
    in_memory = ingest(files, detect_lang=False).frames["sft"]
    assert sft["id"].to_list() == in_memory["id"].to_list()
    # every row group dictionary encodes its columns but the row's own values (id, line)
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(out / "sft.parquet").metadata
    assert meta.num_row_groups > 1
    for g in range(meta.num_row_groups):
        encoded = {(c := meta.row_group(g).column(i)).path_in_schema: "RLE_DICTIONARY" in c.encodings
                   for i in range(meta.num_columns)}
        assert encoded == {name: name not in ("id", "line") for name in sft.columns}


def test_ingest_to_dir_failure_leaves_no_partial_output(fixtures, tmp_path, monkeypatch):
    out = tmp_path / "norm"
    ingest_to_dir([fixtures / "malay_alpaca.json"], out, detect_lang=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    import curate.io.manifest as mf

    def boom(*a, **k):  # Ctrl-C at the last moment: every data file is written, the manifest is not
        raise KeyboardInterrupt

    monkeypatch.setattr(mf, "build", boom)
    with pytest.raises(KeyboardInterrupt):
        ingest_to_dir([fixtures / "malay_alpaca.json", fixtures / "chatdoctor.json"], out, detect_lang=False)
    # the earlier complete output is untouched; no staging directory or temp file is left beside it
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["norm"]


def test_lang_column_filled(fixtures):
    res = ingest([fixtures / "kochatgpt_ppo.jsonl", fixtures / "chatdoctor.json"])
    assert set(res.frames["ppo"]["lang"].unique().to_list()) == {"ko"}
    assert (res.frames["sft"]["lang"] == "en").mean() > 0.95


def test_ingest_to_dir_jsonl_output(fixtures, tmp_path):
    from curate import io

    out = tmp_path / "norm"
    ingest_to_dir([fixtures / "malay_kochatgpt_rm.jsonl"], out, detect_lang=False)
    summary = ingest_to_dir([fixtures / "malay_kochatgpt_rm.jsonl", fixtures / "sharegpt.json"], out,
                            detect_lang=False, output_format="jsonl")
    assert not (out / "rm.parquet").exists()  # no stale file of the other format
    frames = {k: v.collect() for k, v in io.read_dataset(out).items()}
    assert frames["rm"].height == summary["rows_by_kind"]["rm"] == 199
    assert frames["chat"]["messages"][0][0]["role"] == "user"
    expected = ingest([fixtures / "malay_kochatgpt_rm.jsonl"], detect_lang=False).frames["rm"]
    assert frames["rm"]["ranks"].to_list() == expected["ranks"].to_list()


def test_fast_path_equals_general_path_on_tricky_lines(fixtures, tmp_path, monkeypatch):
    """The polars fast path for flat JSONL must give exactly what the per-record path gives."""
    from curate.ingest.formats.alpaca import Alpaca

    good = json.loads((fixtures / "malay_alpaca.json").read_text())[:40]
    rows = [json.dumps({k: r[k] for k in ("instruction", "input", "output")}, ensure_ascii=i % 2 == 0)
            for i, r in enumerate(good)]
    tricky = [
        '{"instruction": "Kira 2+2", "input": "", "output": 4}',                      # number value
        '{"instruction": "Senarai", "input": "", "output": ["a", "b"]}',              # list value
        '{"instruction": "Objek", "input": {"x": "y"}, "output": "z"}',               # nested object
        '{"instruction": "Nol", "input": null, "output": "z"}',                       # null value
        '{"instruction": "Lebih", "input": "", "output": "z", "extra": "kunci"}',     # extra key
        '{"instruction": "Petik \\"a\\": \\"b\\"", "input": "", "output": "z"}',      # quotes and colons inside text
        '{"instruction": "Baris\\\\nbaru", "input": "", "output": "a\\\\nb"}',        # literal \n
        '{"instruction": "Tab\\\\tsahaja", "input": "", "output": "z"}',              # literal \t
        '{}', '{"message": "Maaf, saya tidak boleh"}',
        '{"instruction": "Dua", "output": "a"}{"instruction": "Tiga", "output": "b"}',  # glued
        '{"instruction": "Patah", "output": "a"',                                    # missing brace
        '   ', '',
    ]
    # backslashes that no repair touches stay on the fast path
    backslashes = [json.dumps({"instruction": f"Laluan C:\\dir\\{i} dan \\frac{{1}}{{2}}", "input": "\\\\",
                               "output": 'a\\"b\\u00e9 \\\\n'[: 4 + i]}) for i in range(4)]
    lines = rows[:20] + tricky + rows[20:] + backslashes
    path = tmp_path / "tricky.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\n")
    import curate.ingest.pipeline as pipeline

    monkeypatch.setattr(pipeline, "_MIN_SPLIT", 1)  # isolate broken lines down to one line
    general = []
    real_parse_line = pipeline.parse_line
    monkeypatch.setattr(pipeline, "parse_line", lambda n, raw: general.append(n) or real_parse_line(n, raw))
    fast = ingest([path], "alpaca", detect_lang=False)
    # only the tricky lines (not the blank ones, not the 40 plain rows) took the general path;
    # the quoted-colon line may go either way (it is safe to send it to the general path)
    assert set(range(21, 33)) <= set(general) <= set(range(21, 33))
    monkeypatch.setattr(Alpaca, "fast_columns", None)
    slow = ingest([path], "alpaca", detect_lang=False)
    assert fast.frames["sft"].equals(slow.frames["sft"])
    assert fast.frames["sft"]["instruction"].str.contains("C:\\", literal=True).sum() == len(backslashes)
    assert [(q["line"], q["code"]) for q in fast.quarantine] == [(q["line"], q["code"]) for q in slow.quarantine]
    assert fast.files[0].as_dict() == slow.files[0].as_dict()
    assert fast.files[0].records == fast.files[0].kept + fast.files[0].quarantined


def test_fast_path_backslash_rule_covers_every_literal_escape_repair():
    """plain_text_rows keeps a text with backslashes on the fast path unless it matches
    LITERAL_ESCAPE: fix_literal_newlines must leave every other text unchanged."""
    import itertools

    from curate.ingest.base import LITERAL_ESCAPE
    from curate.text import fix_literal_newlines

    parts = ["\\", "n", "t", "r", '"', "x", " ", "\n", "print(", "é"]
    texts = ["".join(p) for k in range(1, 5) for p in itertools.product(parts, repeat=k)]
    col = pl.Series(texts)
    outside = col.filter(~col.str.contains(LITERAL_ESCAPE)).to_list()
    assert len(outside) > 1000 and any("\\" in t for t in outside)
    assert all(fix_literal_newlines(t) == (t, 0) for t in outside)
    inside = col.filter(col.str.contains(LITERAL_ESCAPE)).to_list()
    assert any(fix_literal_newlines(t)[1] for t in inside)  # the rule is not vacuous


def test_invalid_utf8_line_does_not_lose_the_block(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"instruction": "a", "output": "b"}\n\xff\xfe\n{"instruction": "c", "output": "d"}\n')
    res = ingest([path], "alpaca", detect_lang=False)
    assert res.frames["sft"]["output"].to_list() == ["b", "d"]
    assert [(q["line"], q["code"]) for q in res.quarantine] == [(2, "encoding_error")]


def test_lingua_in_a_helper_process_gives_the_same_rows(fixtures, monkeypatch):
    """A big file's undecided texts go to lingua in a helper process (curate/lingua_worker.py), up to
    LANG_LAG frames behind the reading; the frames are those of the in-process path, and a dead helper
    changes nothing."""
    import curate.ingest.pipeline as pipeline
    from curate import lingua_worker
    from curate.lingua_worker import LinguaWorker

    def frames():
        return [df for _, df in pipeline.iter_batches([fixtures / "malay_alpaca.json"], batch_size=10)]

    local = frames()
    sent, workers = [], []
    real_submit, real_init = LinguaWorker.submit, LinguaWorker.__init__
    monkeypatch.setattr(LinguaWorker, "__init__", lambda self, *a: workers.append(self) or real_init(self, *a))
    monkeypatch.setattr(LinguaWorker, "submit", lambda self, texts: sent.append(len(texts)) or real_submit(self, texts))
    monkeypatch.setattr(pipeline, "LINGUA_WORKER_BYTES", 0)
    lingua_worker.start_early()  # as `curate ingest` of a big file does before it imports the pipeline
    helped = frames()
    assert len(workers) == 1 and workers[0].proc is None and not workers[0].failed  # taken, used, closed
    assert len(local) > 3 and len(sent) >= 2  # several frames, several of them with texts for lingua
    assert len(helped) == len(local) and all(a.equals(b) for a, b in zip(local, helped))

    def dying_submit(self, texts):  # the helper dies before it answers: the parent does the work
        result = real_submit(self, texts)
        if self.proc is not None:
            self.proc.kill()
        return result

    monkeypatch.setattr(LinguaWorker, "submit", dying_submit)
    monkeypatch.setattr(pipeline, "LANG_LAG", 1)  # and the reading waits for each frame's answers at once
    orphaned = frames()
    assert workers[1].failed and all(a.equals(b) for a, b in zip(local, orphaned, strict=True))


def test_ingest_of_a_big_file_starts_lingua_before_its_imports(tmp_path, monkeypatch):
    """`curate ingest` starts lingua's helper process from its command line alone when it will read a
    file of at least BIG_INPUT_BYTES with language id here; a helper nothing takes is ended."""
    from curate import lingua_worker
    from curate.commands import early

    started = []
    monkeypatch.setattr(lingua_worker, "start_early", lambda: started.append(True))
    monkeypatch.setattr(early, "start_loading_kernels", lambda: started.append("kernels"))
    small, big, table = tmp_path / "small.jsonl", tmp_path / "big.jsonl", tmp_path / "big.csv"
    small.write_text('{"instruction": "a", "output": "b"}\n')
    big.write_text('{"instruction": "a", "output": "b"}\n' * 4)
    table.write_text("instruction,output\n" + "a,b\n" * 40)
    monkeypatch.setattr(lingua_worker, "BIG_INPUT_BYTES", big.stat().st_size)
    for args, wanted in (([str(small), "-o", str(tmp_path / "o")], False), ([str(big), "-o", "o"], True),
                         ([str(big), "-o", "o", "--no-lang"], False), ([str(big), "--executor=ray"], False),
                         ([str(tmp_path), "-o", "o"], False), ([str(table), "-o", "o"], False),
                         (["--help"], False)):
        started.clear()
        early.ingest(args)
        assert started == ([True, "kernels"] if wanted else []), args
    monkeypatch.undo()
    lingua_worker.start_early()
    worker = lingua_worker._early
    assert worker is not None and worker.proc is not None
    lingua_worker._drop_early()  # what runs at exit
    assert lingua_worker._early is None and worker.proc is None


def test_early_kernel_loading_loads_what_ingest_calls():
    """The early thread's work (curate ingest of a big file), run in a fresh process, leaves the
    kernels the pipeline calls first loaded: the line scan, the row texts, the content ids and
    language id's scan."""
    import subprocess
    import sys

    code = ("from curate.commands import early; early.start_loading_kernels().join()\n"
            "from curate.ingest import lines_jit; from curate import langid_jit, row_text_jit, content_id_jit\n"
            "print(*(len(k.signatures) for k in (lines_jit._scan, row_text_jit._join, content_id_jit._ids,"
            " langid_jit.scan)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["1", "1", "1", "1"], out


def test_lone_surrogate_escapes_are_quarantined_not_a_crash(tmp_path):
    """Python's JSON parser (arrays, repaired lines) accepts "\\ud800", which is no Unicode
    character: the record goes to quarantine; a valid surrogate pair is the character it encodes."""
    lines = tmp_path / "s.jsonl"
    lines.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "x\\ud800", "output": "b"}\n'
                     '{"instruction": "patah", "output": "\\udfff"\n{"instruction": "\\ud83d\\ude00", "output": "c"}\n')
    array = tmp_path / "s.json"
    array.write_text('[\n{"instruction": "a", "output": "b"},\n{"instruction": "x", "output": "\\ud800"},\n'
                     '{"instruction": "\\ud83d\\ude00", "output": "c"}\n]\n')
    for path, bad in ((lines, [2, 3]), (array, [3])):
        res = ingest([path], "alpaca", detect_lang=False)
        assert res.frames["sft"]["instruction"].to_list() == ["a", "😀"]
        assert [(q["line"], q["code"]) for q in res.quarantine] == [(n, "lone_surrogate") for n in bad]
        assert all("\\ud8" in q["raw"] or "\\udf" in q["raw"] for q in res.quarantine)
        if path is array:  # the raw record is kept whole, so it can be mended and ingested again
            assert [json.loads(q["raw"]) for q in res.quarantine] == [{"instruction": "x", "output": "\ud800"}]
        assert res.files[0].records == res.files[0].kept + res.files[0].quarantined


def test_lone_surrogate_in_well_formed_jsonl_is_not_read_as_nul(tmp_path):
    """Every line parses, so polars reads the block on the fast path, and polars makes "\ud800" a
    NUL: such a line must still go to quarantine, and a real "\u0000" stays the NUL it encodes."""
    path = tmp_path / "s.jsonl"
    path.write_text("".join(f'{{"instruction": "q{i}", "output": "{out}"}}\n' for i, out in enumerate(
        ["lone \\ud800 here", "pair \\ud83d\\ude00 ok", "nul \\u0000 char", "upper \\uDBFF lone", "plain"] * 60)))
    res = ingest([path], "alpaca", detect_lang=False)
    kept = res.frames["sft"]
    assert kept["output"].unique(maintain_order=True).to_list() == ["pair 😀 ok", "nul \x00 char", "plain"]
    assert kept.height == 180 and len(res.quarantine) == 120
    assert {q["code"] for q in res.quarantine} == {"lone_surrogate"}
    assert sorted(q["line"] for q in res.quarantine) == sorted(
        n for k in range(60) for n in (5 * k + 1, 5 * k + 4))
