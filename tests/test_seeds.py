"""The seed library: shipped files, validate (errors vs warnings), add, align by content, stats."""

from __future__ import annotations

import json
import random
import re
import shutil

import pytest
from click.testing import CliRunner

from curate import seeds as S
from curate.cli import cli
from curate.errors import UserError

SEEDS = S.SEEDS_DIR


def _task(i, instruction, output="Jawapan yang sesuai.", input="", name=None, cls=False):
    return {"id": f"seed_task_{i}", "name": name or f"tugas_{i}", "instruction": instruction,
            "instances": [{"input": input, "output": output}], "is_classification": cls}


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_shipped_files_are_byte_copies(fixtures):
    for name in ("alpaca_seed_tasks.jsonl", "malay_seed_tasks.jsonl"):
        assert (SEEDS / name).read_bytes() == (fixtures / name).read_bytes()
    assert "CC BY-NC 4.0" in (SEEDS / "NOTICE").read_text()
    assert "curate seeds validate" in (SEEDS / "CONTRIBUTING.md").read_text()


def test_shipped_files_pass_but_known_defects_fail_strict():
    runner = CliRunner()
    res = runner.invoke(cli, ["seeds", "validate"])
    assert res.exit_code == 0, res.output
    assert "known defect" in res.output
    res = runner.invoke(cli, ["seeds", "validate", "--strict", str(SEEDS / "malay_seed_tasks.jsonl")])
    assert res.exit_code == 1
    errors = [l for l in res.output.splitlines() if ": error: " in l]
    # the defects SOURCES.md lists for the Malay file, as file:line
    assert any(l.startswith(f"{SEEDS / 'malay_seed_tasks.jsonl'}:65: error: id seed_task_63 is already used on line 64")
               for l in errors)
    assert any(":121: error: seed_task_118 repeats line 120 exactly [duplicate_row]" in l for l in errors)
    assert any("[id_gap]" in l and "seed_task_119" in l for l in errors)
    assert any("[untranslated_name]" in l for l in errors)


def test_validate_reports_each_problem_with_its_line(tmp_path):
    f = _write(tmp_path / "s.jsonl", [
        _task(0, "Senaraikan tiga buah negeri di Pantai Timur Semenanjung Malaysia."),
        '{"id": "seed_task_1", "name": "rosak", ',                                     # 2 broken JSON
        {"id": "seed_task_2", "name": "x", "instruction": "Apa?", "instances": []},     # 3 schema
        _task(3, "Terangkan kitaran air kepada murid sekolah rendah.", output="  "),     # 4 empty output
        _task(3, "Kira purata bagi nombor yang diberikan.", input="2, 4, 6"),            # 5 duplicate id
        _task(5, "Tulis sajak pendek tentang hujan.", input="<noinput>"),                # 6 noinput marker
        _task(6, "Senaraikan tiga buah negeri di Pantai Timur Semenanjung Malaysia ini."),  # 7 near-dup of 1
        _task(9, "Berikan sinonim bagi perkataan berikut.", name="tugas_0", input="cantik"),  # 8 dup name, gap
    ])
    found = {(x.line, x.code): x for x in S.validate(f, cfg={})}
    assert found[(2, "json")].severity == "error"
    assert found[(3, "schema")].severity == "error"
    assert "missing key(s) is_classification" in found[(3, "schema")].message
    assert found[(4, "empty_text")].severity == "error"
    assert found[(5, "duplicate_id")].severity == "error"
    assert found[(6, "noinput_marker")].severity == "error"
    assert found[(7, "near_duplicate")].severity == "error"
    assert found[(8, "duplicate_name")].severity == "error"
    assert found[(8, "id_gap")].severity == "warning"
    res = CliRunner().invoke(cli, ["seeds", "validate", str(f)])
    assert res.exit_code == 1
    assert f"{f}:6: error: instances[0].input is '<noinput>'" in res.output


def test_validate_takes_a_directory_of_seed_files(tmp_path):
    """A contributor's directory of seed files, as the default seeds/ is read: every *.jsonl in it."""
    d = tmp_path / "mine"
    d.mkdir()
    _write(d / "a.jsonl", [_task(0, "Senaraikan tiga buah negeri di Pantai Timur Semenanjung Malaysia.")])
    _write(d / "b.jsonl", ['{"id": "seed_task_0", "name": "rosak", '])
    res = CliRunner().invoke(cli, ["seeds", "validate", str(d)])
    assert res.exit_code == 1 and f"{d / 'b.jsonl'}:1: error: not valid JSON" in res.output
    assert "2 file(s): 1 error(s)" in res.output
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(cli, ["seeds", "validate", str(tmp_path / "empty")])
    assert res.exit_code == 1 and "no seed files (*.jsonl) here" in res.output


def test_validate_clean_file_passes_strict_without_langid_findings(tmp_path):
    f = _write(tmp_path / "s.jsonl", [
        _task(0, "Senaraikan tiga buah negeri di Pantai Timur Semenanjung Malaysia.",
              output="Kelantan, Terengganu dan Pahang."),
        _task(1, "Tukarkan suhu berikut daripada Celsius kepada Fahrenheit.", input="37 darjah Celsius",
              output="98.6 darjah Fahrenheit."),
    ])
    findings = S.validate(f, cfg={"lang": "ms"}, strict=True)
    assert [x for x in findings if x.code not in ("language_skipped", "language_unsure")] == []


def test_language_of_rows(tmp_path):
    assert S.detect_languages(["Saya suka makan nasi lemak pada waktu pagi."]) is not None
    f = _write(tmp_path / "s.jsonl", [
        _task(0, "Senaraikan tiga buah negeri di Pantai Timur Semenanjung Malaysia.",
              output="Tiga buah negeri di Pantai Timur ialah Kelantan, Terengganu dan Pahang."),
        _task(1, "Terangkan mengapa kita perlu minum air yang secukupnya setiap hari.",
              output="Badan kita memerlukan air kerana ia membantu mengawal suhu badan dan melancarkan pencernaan."),
        _task(2, "Write a short poem about the sea and the wind at night.",
              output="The sea is calm tonight, the wind is soft and the moon is bright over the quiet water."),
        _task(3, "Buatlah pertanyaan wawancara yang lucu. Mengapa Anda memilih pertanyaan ini?",
              output="Kamu tidak bisa menjual gajah itu. Saya memilih pertanyaan ini karena lucu sekali."),
        _task(4, "Terjemahkan ayat berikut ke dalam bahasa Inggeris.", input="Saya suka membaca buku.",
              output="I like reading books."),
    ])
    found = S.validate(f, cfg={"lang": "ms"})
    assert any(x.line == 3 and x.code in ("wrong_language", "language_unsure") for x in found)
    assert any(x.line == 4 and x.code == "wrong_language" and "'id'" in x.message for x in found)
    # a translation task whose output is English is still a Malay task
    assert not any(x.line == 5 and x.code == "wrong_language" for x in found)
    # shipped lines are grandfathered only up to shipped_language_lines
    found = S.validate(f, cfg={"lang": "ms", "shipped_language_lines": 4})
    assert [x.severity for x in found if x.code == "wrong_language" and x.line == 4] == ["warning"]


def test_a_pull_request_adding_an_indonesian_task_fails(tmp_path):
    """Shipped Indonesian lines are grandfathered; the same defect on a new line fails CI."""
    assert S.detect_languages(["Saya suka makan nasi lemak pada waktu pagi."]) is not None
    f = tmp_path / "malay_seed_tasks.jsonl"
    shutil.copy(SEEDS / "malay_seed_tasks.jsonl", f)
    shutil.copy(SEEDS / "seeds.toml", tmp_path / "seeds.toml")
    with open(f, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(_task(162, "Bagaimana cara membuat nasi goreng yang enak di rumah?",
                                  output="Kamu bisa memakai nasi sisa kemarin karena teksturnya lebih kering, "
                                         "lalu tambahkan bawang putih, kecap manis, dan telur.")) + "\n")
    res = CliRunner().invoke(cli, ["seeds", "validate", "-q", str(f)])
    assert res.exit_code == 1
    assert f"{f}:141: error: task reads as 'id'" in res.output
    assert [l for l in res.output.splitlines() if ": error: " in l and not l.startswith(f"{f}:141:")] == []


def test_add_by_flags_assigns_next_id_and_keeps_existing_bytes(tmp_path):
    f = tmp_path / "malay_seed_tasks.jsonl"
    shutil.copy(SEEDS / "malay_seed_tasks.jsonl", f)
    shutil.copy(SEEDS / "seeds.toml", tmp_path / "seeds.toml")
    before = f.read_bytes()
    res = CliRunner().invoke(cli, ["seeds", "add", str(f), "--instruction",
                                   "Tukarkan suhu berikut daripada Celsius kepada Fahrenheit.",
                                   "--input", "37 darjah Celsius", "--output", "98.6 darjah Fahrenheit.",
                                   "--name", "tukar_suhu_celsius", "--no-classification"])
    assert res.exit_code == 0, res.output
    assert "added seed_task_162 (tukar_suhu_celsius)" in res.output
    after = f.read_bytes()
    assert after.startswith(before)
    new = json.loads(after[len(before):])
    assert new == {"id": "seed_task_162", "name": "tukar_suhu_celsius",
                   "instruction": "Tukarkan suhu berikut daripada Celsius kepada Fahrenheit.",
                   "instances": [{"input": "37 darjah Celsius", "output": "98.6 darjah Fahrenheit."}],
                   "is_classification": False}
    assert not [x for x in S.validate(f) if x.severity == "error"]


def test_add_refuses_a_near_duplicate_and_leaves_the_file(tmp_path):
    f = tmp_path / "malay_seed_tasks.jsonl"
    shutil.copy(SEEDS / "malay_seed_tasks.jsonl", f)
    shutil.copy(SEEDS / "seeds.toml", tmp_path / "seeds.toml")
    before = f.read_bytes()
    with pytest.raises(UserError, match="near_duplicate"):
        S.add_task(f, "Tulis satu jenaka knock knock tentang pisang.", "Tok tok. Siapa tu? Pisang.")
    with pytest.raises(UserError, match="noinput_marker"):
        S.add_task(f, "Namakan ibu negeri Sabah dan Sarawak.", "Kota Kinabalu dan Kuching.", input="Tiada input")
    with pytest.raises(UserError, match="already used by seed_task_0"):
        S.add_task(f, "Namakan ibu negeri Sabah dan Sarawak.", "Kota Kinabalu dan Kuching.", name="cadangan_sarapan")
    assert f.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_add_interactive_prompts(tmp_path):
    f = _write(tmp_path / "mine.jsonl", [_task(4, "Senaraikan tiga buah negeri di Pantai Timur Semenanjung Malaysia.",
                                               output="Kelantan, Terengganu dan Pahang.")])
    answers = "\n".join(["Berikan antonim bagi perkataan yang diberikan.",  # instruction
                         "tinggi", "",                                          # input, end
                         "rendah", "",                                          # output, end
                         "antonim_perkataan",                                   # name
                         "n"]) + "\n"
    res = CliRunner().invoke(cli, ["seeds", "add", str(f)], input=answers)
    assert res.exit_code == 0, res.output
    rows = [json.loads(l) for l in f.read_text().splitlines()]
    assert rows[-1]["id"] == "seed_task_5" and rows[-1]["name"] == "antonim_perkataan"
    assert rows[-1]["instances"] == [{"input": "tinggi", "output": "rendah"}]


def test_align_shipped_files_reports_the_known_drift():
    en = S.load_tasks(SEEDS / "alpaca_seed_tasks.jsonl")
    ms = S.load_tasks(SEEDS / "malay_seed_tasks.jsonl")
    a = S.align(en, ms)
    # the ids of the Malay file follow content, so a content alignment pairs equal ids
    assert all(en[i].id == ms[j].id for i, j, _ in a.pairs)
    assert len(a.pairs) == 138
    assert [en[i].id for i in a.unmatched_original] == ["seed_task_119"]
    assert sorted(ms[j].id for j in a.unmatched_translation) == ["seed_task_118", "seed_task_63"]
    text = "\n".join(a.drift)
    assert "duplicated id seed_task_63 on lines 64, 65" in text
    assert "duplicated id seed_task_118 on lines 120, 121" in text
    assert "missing id seed_task_119" in text
    # seed_task_63 has two translations; either may be paired, so the block starts at 63 or 64
    assert re.search(r"shifted block: originals seed_task_6[34]\.\.seed_task_118 .*offset \+1 lines", text), text
    assert re.search(r"shifted block: originals seed_task_120\.\.seed_task_161 .*offset \+1 lines", text), text


def test_align_by_content_when_ids_and_order_are_scrambled():
    en = S.load_tasks(SEEDS / "alpaca_seed_tasks.jsonl")
    ms = S.load_tasks(SEEDS / "malay_seed_tasks.jsonl")
    truth = {id(t): t.id for t in ms}
    rng = random.Random(3)
    ms = ms[:]
    rng.shuffle(ms)
    for k, t in enumerate(ms):
        ms[k] = S.Task(f"x{k}", t.name, t.instruction, t.instances, t.is_classification, k + 1)
        truth[id(ms[k])] = truth.pop(id(t))
    a = S.align(en, ms)
    right = sum(1 for i, j, _ in a.pairs if truth[id(ms[j])] == en[i].id)
    assert right / len(en) >= 0.95, right


def test_hungarian_matches_brute_force():
    import itertools
    import numpy as np
    rng = np.random.default_rng(0)
    for shape in [(4, 4), (3, 5), (5, 3)]:
        c = rng.random(shape)
        pairs = S.hungarian(c)
        got = sum(c[i, j] for i, j in pairs)
        n, m = shape
        if n <= m:
            best = min(sum(c[i, p[i]] for i in range(n)) for p in itertools.permutations(range(m), n))
        else:
            best = min(sum(c[p[j], j] for j in range(m)) for p in itertools.permutations(range(n), m))
        assert got == pytest.approx(best)


def test_stats_cli():
    res = CliRunner().invoke(cli, ["seeds", "stats", "--json", str(SEEDS / "malay_seed_tasks.jsonl")])
    assert res.exit_code == 0, res.output
    st = json.loads(res.output)
    assert st["tasks"] == 140 and st["unique_ids"] == 138 and st["next_id"] == "seed_task_162"
    assert st["classification"] == 13
