"""The data path: one way in (read_input), one way out (DatasetWriter)."""

from __future__ import annotations

import json
import shutil

import polars as pl
import pytest

from curate import io, schemas
from curate.io import publish


def _sft(n: int, tag: str = "") -> pl.DataFrame:
    return schemas.from_rows("sft", [{"instruction": f"q{i}{tag}", "input": "", "output": f"a{i}{tag}"}
                                     for i in range(n)])


def test_writer_commits_a_manifest_last_and_reader_reads_it_back(tmp_path):
    out = tmp_path / "ds"
    with io.DatasetWriter(out, stage="test", params={"x": 1}) as w:
        w.write_frame("sft", _sft(3))
        w.write_frame("ppo", schemas.from_rows("ppo", [{"prompt": "p"}]).lazy())
        w.write_jsonl("quarantine.jsonl", [{"code": "c"}])
        assert w.path.parent == tmp_path and w.path.name.startswith(".ds.staging-") and not out.exists()
    m = json.loads((out / "manifest.json").read_text())
    assert m["curate_dataset"] == 1 and m["stage"] == "test" and m["params"] == {"x": 1}
    assert m["kinds"] == {"sft": {"files": ["sft.parquet"], "rows": 3}, "ppo": {"files": ["ppo.parquet"], "rows": 1}}
    assert set(m["files"]) == {"sft.parquet", "ppo.parquet", "quarantine.jsonl"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    inp = io.read_input(out)
    assert inp.manifest_ids == [m["id"]] and inp.rows() == {"sft": 3, "ppo": 1}


def test_writer_replaces_the_whole_output_or_nothing(tmp_path):
    out = tmp_path / "ds"
    io.write_dataset({"sft": _sft(2), "chat": schemas.empty("chat")}, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(RuntimeError):
        with io.DatasetWriter(out, stage="test") as w:
            w.write_frame("sft", _sft(5, "new"))
            raise RuntimeError("boom")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    io.write_dataset({"sft": _sft(5, "new")}, out)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "sft.parquet"]  # chat gone: whole dir replaced
    assert io.read_input(out).rows() == {"sft": 5}


def test_two_rename_fallback_and_leftovers_of_killed_runs(tmp_path, monkeypatch):
    out = tmp_path / "ds"
    io.write_dataset({"sft": _sft(1)}, out)
    dead = 2 ** 22 + 12345  # above the default pid_max: no such process
    (tmp_path / f".ds.staging-{dead}-abcd").mkdir()
    (tmp_path / f".ds.staging-{dead}-abcd" / "sft.parquet").write_bytes(b"half")
    monkeypatch.setenv("CURATE_NO_RENAME_EXCHANGE", "1")
    io.write_dataset({"sft": _sft(4)}, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"] and io.read_input(out).rows() == {"sft": 4}
    # a run killed between the two renames: the old result is put back by the next run
    (tmp_path / "ds").rename(tmp_path / f".ds.old-{dead}-beef")
    assert publish.recover(out) == [] and io.read_input(out).rows() == {"sft": 4}


def test_reader_refuses_a_directory_without_manifest(tmp_path):
    d = tmp_path / "old"
    d.mkdir()
    _sft(2).write_parquet(d / "sft.parquet")
    (d / "report.json").write_text('{"stage": "clean"}')
    with pytest.raises(io.DatasetError, match="no manifest.json.*re-run curate clean"):
        io.read_input(d)
    io.write_dataset({"sft": _sft(2)}, tmp_path / "ok")
    (tmp_path / "ok" / "sft.parquet").write_bytes((tmp_path / "ok" / "sft.parquet").read_bytes()[:-10])
    with pytest.raises(io.DatasetError, match="changed after the dataset was written"):
        io.read_input(tmp_path / "ok")


@pytest.mark.parametrize("where", ["same", "sub", "parent"])
def test_output_overlapping_the_input_is_refused_before_anything_is_touched(tmp_path, where):
    ds = tmp_path / "d" / "ds"
    io.write_dataset({"sft": _sft(2), "ppo": schemas.from_rows("ppo", [{"prompt": "p"}])}, ds)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    out = {"same": ds, "sub": ds / "sub", "parent": tmp_path / "d"}[where]
    with pytest.raises(io.DatasetError, match="input"):
        io.DatasetWriter(out, stage="t", inputs=[ds / "sft.parquet"])
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_foreign_directory_is_not_replaced(tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.docx").write_bytes(b"precious")
    with pytest.raises(io.DatasetError, match="files curate did not write"):
        with io.DatasetWriter(tmp_path / "home", stage="t"):
            pass
    assert (tmp_path / "home" / "thesis.docx").read_bytes() == b"precious"


def test_a_file_copied_into_a_dataset_is_named_not_silently_ignored(fixtures, tmp_path):
    """A dataset is what its manifest lists: a file copied into its directory by hand is not read,
    and the reader says so, naming it (and the way to read it)."""
    from curate.ingest import ingest_to_dir

    d = tmp_path / "ds"
    ingest_to_dir([fixtures / "malay_alpaca.json"], d, detect_lang=False)
    assert io.read_input(d).warnings == []
    shutil.copy(d / "sft.parquet", d / "more.parquet")
    (d / "extra").mkdir()
    shutil.copy(fixtures / "chatdoctor.json", d / "extra" / "chatdoctor.json")
    inp = io.read_input(d)
    assert inp.rows() == {"sft": 200}
    (w,) = inp.warnings
    assert "2 file(s)" in w and "extra/chatdoctor.json, more.parquet" in w and "input of its own" in w


def test_same_path_twice_is_read_once_and_skips_are_listed(fixtures, tmp_path):
    f = fixtures / "malay_alpaca.json"
    inp = io.read_input([f, f])
    assert inp.rows() == {"sft": 200} and any("more than once" in w for w in inp.warnings)
    d = tmp_path / "raw"
    d.mkdir()
    (d / "a.json").write_bytes(f.read_bytes())
    (d / "notes.md").write_text("hello")
    (d / "meta.json").write_text('{\n  "name": "x"\n}\n')
    inp = io.read_input(d)
    assert inp.rows() == {"sft": 200}
    assert {s["path"].rsplit("/", 1)[1] for s in inp.skipped} == {"notes.md", "meta.json"}


def test_parquet_and_csv_exports_as_inputs(fixtures, tmp_path):
    rows = json.loads((fixtures / "malay_alpaca.json").read_text())[:20]
    df = pl.DataFrame(rows).select("instruction", "input", "output")
    df.write_parquet(tmp_path / "train.parquet")
    df.write_csv(tmp_path / "train.csv")
    want = io.read_input(fixtures / "malay_alpaca.json", detect_lang=False).collect()["sft"].head(20)
    for name in ("train.parquet", "train.csv"):
        got = io.read_input(tmp_path / name, detect_lang=False).collect()["sft"]
        assert got["id"].to_list() == want["id"].to_list(), name
        assert got["format"].unique().to_list() == ["alpaca"]
    conv = [{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}] * 3
    pl.DataFrame(conv).write_parquet(tmp_path / "chat.parquet")
    assert io.read_input(tmp_path / "chat.parquet", detect_lang=False).rows() == {"chat": 3}
    pl.DataFrame({"a": [1, 2], "b": ["x", "y"]}).write_parquet(tmp_path / "other.parquet")
    with pytest.raises(io.DatasetError, match="match no known format"):
        io.read_input(tmp_path / "other.parquet")


def test_a_source_with_its_own_id_column_is_ingested_not_taken_as_canonical(fixtures, tmp_path):
    # an Alpaca export that carries ids (common on the Hub) is a raw source: content ids, kind,
    # lang and provenance are made for it, its own id kept in meta; the same in JSONL and Parquet
    rows = json.loads((fixtures / "malay_alpaca.json").read_text())[:12]
    with_ids = [{"id": f"row-{i}", **r} for i, r in enumerate(rows)]
    (tmp_path / "ids.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in with_ids))
    pl.DataFrame(with_ids).write_parquet(tmp_path / "ids.parquet")
    want = io.read_input(fixtures / "malay_alpaca.json").collect()["sft"].head(12)
    for name in ("ids.jsonl", "ids.parquet"):
        got = io.read_input(tmp_path / name).collect()["sft"]
        assert got["id"].to_list() == want["id"].to_list(), name
        assert got["kind"].to_list() == ["sft"] * 12 and got["lang"].to_list() == want["lang"].to_list()
        assert set(got["format"]) == {"alpaca"} and got["source"].null_count() == 0
        assert [schemas.meta_of(m)["extra"]["id"] for m in got["meta"]] == [f"row-{i}" for i in range(12)]
    # what curate itself writes (id and kind on every row) still passes as it is
    written = want.head(5)
    written.write_parquet(tmp_path / "canonical.parquet")
    again = io.read_input(tmp_path / "canonical.parquet").collect()["sft"]
    assert again["id"].to_list() == written["id"].to_list() and again["meta"].to_list() == written["meta"].to_list()


def _meta(inp: io.Input) -> list[dict]:
    return [schemas.meta_of(m) for m in inp.collect()["sft"]["meta"].to_list()]


def test_encodings_decoded_when_proven_never_a_silent_replacement_char(tmp_path):
    rows = [{"instruction": "Décrivez le café", "input": "", "output": "Crème brûlée à Montréal"},
            {"instruction": "plain", "input": "", "output": "ascii"}]
    text = json.dumps(rows, ensure_ascii=False, indent=2)
    for enc in ("utf-16", "utf-32", "utf-8-sig"):
        (tmp_path / f"{enc}.json").write_bytes(text.encode(enc))
        got = io.read_input(tmp_path / f"{enc}.json", detect_lang=False).collect()["sft"]
        assert got["instruction"].to_list() == ["Décrivez le café", "plain"], enc
    # Latin-1 lines (JSONL and JSON array): decoded with a note on exactly those rows
    (tmp_path / "latin.jsonl").write_bytes(b"".join(json.dumps(r, ensure_ascii=False).encode("latin-1") + b"\n"
                                                    for r in rows))
    (tmp_path / "latin.json").write_bytes(text.encode("latin-1"))
    for name in ("latin.jsonl", "latin.json"):
        inp = io.read_input(tmp_path / name, detect_lang=False)
        assert inp.collect()["sft"]["output"].to_list() == ["Crème brûlée à Montréal", "ascii"]
        notes = [m.get("recovered", []) for m in _meta(inp)]
        assert any("Windows-1252" in n for n in notes[0]) and notes[1] == [], name
        assert "\ufffd" not in inp.collect()["sft"].write_ndjson()
    # bytes that are neither UTF-8 nor plausible cp1252: the record is quarantined, never turned into U+FFFD
    (tmp_path / "bad.jsonl").write_bytes(b'{"instruction": "\x81\x8d\x90", "input": "", "output": "x"}\n'
                                         + json.dumps(rows[1]).encode() + b"\n")
    inp = io.read_input(tmp_path / "bad.jsonl", format="alpaca", detect_lang=False)
    assert inp.rows() == {"sft": 1} and [q["code"] for q in inp.quarantine] == ["encoding_error"]


@pytest.mark.parametrize("data, what", [(b"\x1f\x8b\x08\x00" + b"\x00" * 64, "gzip"), (b"PK\x03\x04rest", "ZIP"),
                                        (bytes(range(256)) * 8, "binary"),
                                        ('[{"a": 1}]'.encode("utf-16-le"), "UTF-16-LE text without a byte-order mark")])
def test_binary_is_refused_with_what_it_looks_like(tmp_path, data, what):
    (tmp_path / "x.json").write_bytes(data)
    with pytest.raises(io.DatasetError, match=what):
        io.read_input(tmp_path / "x.json")


def test_input_format_option_names_the_format_for_any_command(tmp_path):
    from click.testing import CliRunner

    from curate.cli import cli

    (tmp_path / "p.txt").write_text("1\n2\nhello there\nsee you\n")
    res = CliRunner().invoke(cli, ["info", str(tmp_path / "p.txt")])
    assert res.exit_code == 1 and "best guess question_list" in res.output and "--input-format question_list" in res.output
    res = CliRunner().invoke(cli, ["--input-format", "question_list", "info", str(tmp_path / "p.txt"), "--json"])
    assert res.exit_code == 0 and sum(json.loads(line)["rows"] for line in res.output.splitlines()) == 4
    assert CliRunner().invoke(cli, ["info", str(tmp_path / "p.txt")]).exit_code == 1  # not left over


def test_duplicate_keys_are_noted(tmp_path):
    (tmp_path / "d.jsonl").write_bytes(b'{"instruction": "a", "instruction": "b", "input": "", "output": "c"}\n')
    inp = io.read_input(tmp_path / "d.jsonl", format="alpaca", detect_lang=False)
    assert inp.collect()["sft"]["instruction"].to_list() == ["b"]
    assert "duplicate key(s) 'instruction'" in _meta(inp)[0]["recovered"][0]


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(fixtures, monkeypatch):
    from click.testing import CliRunner

    import curate.info
    from curate.cli import cli
    from curate.errors import EXIT_BUG

    def boom(frames):
        raise RuntimeError("something broke")

    monkeypatch.setattr(curate.info, "counts", boom)
    monkeypatch.setattr("curate.commands.info.counts", boom)
    res = CliRunner().invoke(cli, ["info", str(fixtures / "sharegpt.json")])
    assert res.exit_code == EXIT_BUG and "internal error (RuntimeError: something broke)" in res.output
    assert "Traceback" not in res.output and "--debug" in res.output
    res = CliRunner().invoke(cli, ["--debug", "info", str(fixtures / "sharegpt.json")])
    assert isinstance(res.exception, RuntimeError)


def test_rows_waiting_for_batch_results_are_not_a_silent_empty_input(tmp_path):
    from curate.errors import EXIT_PENDING, PendingRows

    pending = [{"stage": "translate", "code": "pending", "id": f"x{i}"} for i in range(3)]
    io.write_stage(tmp_path / "t", stage="translate", frames={"sft": schemas.empty("sft")}, quarantine=pending)
    assert json.loads((tmp_path / "t" / "manifest.json").read_text())["pending"] == {"rows": 3, "stage": "translate"}
    with pytest.raises(PendingRows, match="3 row.*wait for Batch API results of `curate translate`") as exc:
        io.read_input(tmp_path / "t")
    assert exc.value.exit_code == EXIT_PENDING
    io.write_stage(tmp_path / "t2", stage="translate", frames={"sft": _sft(2)}, quarantine=pending[:1])
    inp = io.read_input(tmp_path / "t2")
    assert inp.rows() == {"sft": 2} and any("1 row(s) wait" in w for w in inp.warnings)


def test_find_corrupt_parquet_names_the_damaged_file_under_a_hidden_parent(tmp_path):
    """A damaged file is found under a directory given by the user even when a parent of that
    directory is hidden (~/.cache/...); hidden directories below it are skipped, as a walk skips them."""
    from curate.io.tables import find_corrupt_parquet

    root = tmp_path / ".cache" / "data"
    (root / "sft").mkdir(parents=True)
    (root / ".old").mkdir()
    pl.DataFrame({"a": [1, 2]}).write_parquet(root / "sft" / "good.parquet")
    bad = b"PAR1" + bytes(range(200)) + b"PAR1"
    (root / ".old" / "bad.parquet").write_bytes(bad)
    assert find_corrupt_parquet([root]) is None
    (root / "sft" / "part-1.parquet").write_bytes(bad)
    assert find_corrupt_parquet([root]) == root / "sft" / "part-1.parquet"
    assert find_corrupt_parquet([root / "sft" / "good.parquet"]) is None


def _codecs(d) -> dict[str, set[str]]:
    """``{file: {compression of each column chunk}}`` of the Parquet files under ``d``."""
    import pyarrow.parquet as pq

    out = {}
    for p in sorted(d.rglob("*.parquet")):
        md = pq.ParquetFile(p).metadata
        out[p.relative_to(d).as_posix()] = {md.row_group(g).column(c).compression
                                            for g in range(md.num_row_groups) for c in range(md.num_columns)}
    return out


def test_compression_option_sets_every_parquet_file_a_stage_writes(fixtures, tmp_path, monkeypatch):
    """Stage outputs are uncompressed by default, ``--compression`` (or ``$CURATE_COMPRESSION``)
    chooses another codec for every Parquet file of the output, the rows are the same whatever the
    codec, and quarantine files stay zstd."""
    from click.testing import CliRunner

    from curate.cli import cli

    monkeypatch.delenv("CURATE_COMPRESSION", raising=False)
    src = [str(fixtures / n) for n in ("malay_alpaca_anomalies.json", "kochatgpt_ppo.jsonl")]
    run = CliRunner().invoke
    assert run(cli, ["ingest", *src, "-o", str(tmp_path / "plain"), "-q"]).exit_code == 0
    assert run(cli, ["--compression", "zstd", "ingest", *src, "-o", str(tmp_path / "zstd"), "-q"]).exit_code == 0
    plain, packed = _codecs(tmp_path / "plain"), _codecs(tmp_path / "zstd")
    assert set(plain) == set(packed) == {"sft.parquet", "ppo.parquet"}
    assert all(c == {"UNCOMPRESSED"} for c in plain.values()), plain
    assert all(c == {"ZSTD"} for c in packed.values()), packed
    for name in plain:
        assert pl.read_parquet(tmp_path / "plain" / name).equals(pl.read_parquet(tmp_path / "zstd" / name))

    # a stage other than ingest, through the environment; then the setting is not left over
    monkeypatch.setenv("CURATE_COMPRESSION", "lz4")
    res = run(cli, ["clean", str(tmp_path / "plain"), "-o", str(tmp_path / "lz4"), "--target-lang", "any", "-q"])
    assert res.exit_code == 0, res.output
    codecs = _codecs(tmp_path / "lz4")
    assert codecs.pop("quarantine.parquet") == {"ZSTD"}  # dropped rows are always compressed
    assert codecs and all(c <= {"LZ4", "LZ4_RAW"} for c in codecs.values()), codecs
    monkeypatch.delenv("CURATE_COMPRESSION")
    res = run(cli, ["clean", str(tmp_path / "zstd"), "-o", str(tmp_path / "again"), "--target-lang", "any", "-q"])
    assert res.exit_code == 0, res.output
    assert {n: c for n, c in _codecs(tmp_path / "again").items() if n != "quarantine.parquet"} == \
        {n: {"UNCOMPRESSED"} for n in codecs}
    for name in codecs:
        assert pl.read_parquet(tmp_path / "lz4" / name).equals(pl.read_parquet(tmp_path / "again" / name))

    monkeypatch.setenv("CURATE_COMPRESSION", "gzip")  # a bad setting: a usage error naming it, nothing written
    res = run(cli, ["ingest", *src, "-o", str(tmp_path / "bad")])
    assert res.exit_code == 2 and "CURATE_COMPRESSION" in res.output and not (tmp_path / "bad").exists()
