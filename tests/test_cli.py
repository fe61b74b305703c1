"""The CLI through click's runner, and once as the installed console script."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import polars as pl
import pytest
from click.testing import CliRunner

from curate.cli import COMMANDS, cli


def test_help_lists_every_command():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


def test_top_level_help_gives_the_exit_codes_as_defined():
    from curate.errors import EXIT_CODES

    text = " ".join(CliRunner().invoke(cli, ["--help"]).output.split())
    for code, meaning in EXIT_CODES.items():
        assert f" {code} {meaning}" in text, (code, meaning)


def _every_command(group: click.Group = cli, path: tuple[str, ...] = ()):
    ctx = click.Context(group)
    for name in COMMANDS if group is cli else group.list_commands(ctx):
        command = group.get_command(ctx, name)
        yield (*path, name)
        if isinstance(command, click.Group):
            yield from _every_command(command, (*path, name))


def test_every_command_help_has_an_example():
    runner = CliRunner()
    for path in _every_command():
        result = runner.invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Example" in result.output, path
        # a shell line continuation written as a lone backslash in the docstring is eaten by
        # Python and click joins the two lines with a run of spaces: the example no longer pastes
        examples = result.output.split("Options:")[0]
        assert not re.search(r"\S {3,}--", examples), (path, examples)


def test_ingest_info_export(fixtures, tmp_path):
    runner = CliRunner()
    out = tmp_path / "norm"
    files = [str(fixtures / n) for n in ("malay_gpt4all_anomalies.jsonl", "malay_kochatgpt_rm.jsonl", "sharegpt.json")]
    result = runner.invoke(cli, ["ingest", *files, "-o", str(out), "--no-lang", "-q"])
    assert result.exit_code == 0, result.output
    assert pl.read_parquet(out / "sft.parquet").height == 10
    assert pl.read_parquet(out / "rm.parquet").height == 199
    assert pl.read_parquet(out / "chat.parquet").height == 3
    quarantine = (out / "quarantine.jsonl").read_text().splitlines()
    assert len(quarantine) == 2

    result = runner.invoke(cli, ["info", str(out), "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert sum(r["rows"] for r in rows) == 212

    exp = tmp_path / "export"
    result = runner.invoke(cli, ["export", str(out), "-o", str(exp), "--test-size", "0.1"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((exp / "export.json").read_text())
    assert {f["kind"] for f in manifest["files"]} == {"sft", "rm", "chat"}


def test_every_command_that_writes_an_output_takes_quiet():
    commands = {n: cli.get_command(click.Context(cli), n) for n in COMMANDS}
    writers = {n for n, c in commands.items() if any("--out" in p.opts for p in c.params)}
    assert {"clean", "export", "ingest", "report", "translate", "pull"} <= writers
    assert [n for n in sorted(writers) if not any("--quiet" in p.opts for p in commands[n].params)] == []


def test_quiet_silences_one_invocation_only(fixtures, tmp_path):
    runner = CliRunner()
    norm = tmp_path / "norm"
    assert runner.invoke(cli, ["ingest", str(fixtures / "sharegpt.json"), "-o", str(norm), "--no-lang", "-q"]).exit_code == 0
    quiet = runner.invoke(cli, ["export", str(norm), "-o", str(tmp_path / "a"), "-q"])
    assert quiet.exit_code == 0 and quiet.output == "" and (tmp_path / "a" / "export.json").exists()
    loud = runner.invoke(cli, ["export", str(norm), "-o", str(tmp_path / "b")])
    assert loud.exit_code == 0 and "export.json" in loud.output
    # errors still print under -q
    bad = runner.invoke(cli, ["export", str(tmp_path / "a" / "export.json"), "-o", str(tmp_path / "c"), "-q"])
    assert bad.exit_code != 0 and bad.output.startswith("Error:")


@pytest.mark.parametrize("data, line, why", [
    (b"[\n", 2, "JSON array is not closed"),  # cut where the first element should start
    (b"[" * 100_000, 1, "JSON nested too deeply"),
    (b'\n{"instruction": "a\n{"output": \n', 2, "invalid JSON"),
])
def test_a_file_with_no_readable_record_is_refused_naming_the_first_broken_one(tmp_path, data, line, why):
    """Not "an empty JSON array" nor "could not recognise the format": the file's first broken
    record, with its line, and how to keep every record in the quarantine instead."""
    bad = tmp_path / "bad.json"
    bad.write_bytes(data)
    result = CliRunner().invoke(cli, ["ingest", str(bad), "-o", str(tmp_path / "o")])
    assert result.exit_code == 1 and result.output.startswith(f"Error: {bad}:{line}: {why}")
    assert "--format" in result.output and "Traceback" not in result.output and not (tmp_path / "o").exists()
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"[ ]")
    result = CliRunner().invoke(cli, ["ingest", str(empty), "-o", str(tmp_path / "o")])
    assert result.exit_code == 1 and "an empty JSON array" in result.output


@pytest.mark.parametrize("text, line, why", [
    ('instruction,input,output\nSoalan satu?,,Jawapan.\n"Soalan\ndua?",,Jawapan, dua.\nSoalan tiga?,,Ya.\n', 3,
     "a row of 4 fields (lines 3-4) under a header of 3"),
    ('instruction,input,output\nSoalan satu?,,Jawapan.\n"Soalan dua?,,Jawapan.\nSoalan tiga?,,Ya.\n', 3,
     "unexpected end of data"),
])
def test_a_csv_polars_cannot_read_is_refused_naming_the_row(tmp_path, text, line, why):
    """polars refuses the whole file ("found more fields than defined in 'Schema'"): the refusal
    names the row's first line and what is wrong with it."""
    bad = tmp_path / "export.csv"
    bad.write_text(text)
    result = CliRunner().invoke(cli, ["ingest", str(bad), "-o", str(tmp_path / "o")])
    assert result.exit_code == 1 and result.output.startswith(f"Error: {bad}:{line}: {why}")
    assert "Schema" not in result.output and not (tmp_path / "o").exists()


def test_errors_are_messages_not_tracebacks(tmp_path):
    runner = CliRunner()
    weird = tmp_path / "weird.jsonl"
    weird.write_text('{"foo": 1}\n')
    result = runner.invoke(cli, ["ingest", str(weird), "-o", str(tmp_path / "o")])
    assert result.exit_code != 0
    assert "could not recognise the format" in result.output and "--format" in result.output
    assert "Traceback" not in result.output
    (tmp_path / "empty").mkdir()
    result = runner.invoke(cli, ["export", str(tmp_path / "empty"), "-o", str(tmp_path / "e")])
    assert result.exit_code != 0 and "nothing curate can read" in result.output and "--list-formats" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_installed_console_script(fixtures, tmp_path):
    exe = shutil.which("curate", path=str(Path(sys.executable).parent))
    assert exe, "the curate console script is not installed in this environment"
    out = tmp_path / "norm"
    proc = subprocess.run([exe, "ingest", str(fixtures / "kochatgpt_seed_data.txt"), "-o", str(out), "--no-lang"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert pl.read_parquet(out / "ppo.parquet").height == 200
    proc = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "ingest" in proc.stdout


def test_every_number_option_refuses_nan_infinity_and_integers_past_64_bits():
    """Found by fuzzing: `--extra-budget nan`, `--max-requests 99999999999999999999`, `tokens train
    --threads 99999999999999999999` and the like were internal errors (a NaN or a 20-digit integer
    reaching sqlite, numpy or SentencePiece); `--price-in -1`, `--timeout -1` were taken."""
    checked = 0
    for path in _every_command():
        command = cli
        for name in path:
            command = command.get_command(click.Context(command), name)
        for param in command.params:
            if isinstance(param.type, click.types.FloatParamType):
                bad = ["nan", "inf", "-inf"]
            elif isinstance(param.type, click.types.IntParamType):
                bad = [str(2**64), str(-(2**64))]
            else:
                continue
            for value in bad:
                with pytest.raises(click.BadParameter):
                    param.type.convert(value, param, None)
                checked += 1
    assert checked > 60
    for args in (["translate", "x", "-o", "y", "--timeout", "-1"], ["tokens", "estimate", "x", "--price-in", "-1"]):
        assert CliRunner().invoke(cli, args).exit_code == 2
