"""The small files options name (a glossary, an LLM or clean config, a generation prompt, the reply
cache) on hostile contents: one line naming the file, exit 1, nothing written, the file untouched.

Found by fuzzing every file-taking option: binary, UTF-16 or Latin-1 text, deep nesting and Parquet
bytes crashed the glossary, config and prompt readers (UnicodeDecodeError, RecursionError), and
any file that is not SQLite given as --cache crashed the LLM stages (sqlite3.DatabaseError).
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from curate import io, schemas
from curate.cli import cli
from curate.errors import EXIT_USER
from tests.servers.openai_server import openai_server  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "tests" / "data" / "fixtures" / "malay_seed_tasks.jsonl"

HOSTILE = {
    "binary": bytes(range(256)) * 4,
    "utf16 without a byte-order mark": "doctor\tdoktor\nmodel = 'x'\n".encode("utf-16-le"),
    "latin-1": "caf\xe9\tkafe\n".encode("latin-1"),
    "deep json": b"[" * 100_000 + b"]" * 100_000,
    "deep toml": b"a = " + b"[" * 20_000 + b"]" * 20_000,
    "parquet": b"PAR1" + bytes(200) + b"PAR1",
}
# what is hostile to one reader is fine for another: brackets are a prompt, "a = [[...]]" a glossary line
FINE_FOR = {"deep json": {"generate --prompt"}, "deep toml": {"generate --prompt", "translate --glossary (tsv)"}}


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    rows = [{"instruction": "Explain what a doctor does.", "input": "", "output": "A doctor helps sick people."}]
    io.write_dataset({"sft": schemas.from_rows("sft", rows)}, tmp_path / "in")
    return tmp_path / "in"


def _commands(dataset: Path, out: Path, f: Path, url: str) -> dict[str, list[str]]:
    llm = ["--base-url", url, "--model", "loopback", "--cache", str(out.parent / "c.sqlite")]
    return {
        "translate --glossary (tsv)": ["translate", str(dataset), "-o", str(out), "--glossary", str(f), *llm],
        "translate --glossary (json)": ["translate", str(dataset), "-o", str(out), "--glossary", str(f), *llm],
        "translate --llm-config": ["translate", str(dataset), "-o", str(out), "--llm-config", str(f)],
        "clean --config": ["clean", str(dataset), "-o", str(out), "--config", str(f)],
        "generate --prompt": ["generate", "--seeds", str(SEEDS), "-n", "2", "-o", str(out), "--prompt", str(f), *llm],
        "translate --cache": ["translate", str(dataset), "-o", str(out), "--base-url", url, "--model", "loopback",
                              "--cache", str(f)],
    }


@pytest.mark.parametrize("content", list(HOSTILE), ids=list(HOSTILE))
def test_hostile_option_files_are_refused_in_one_line(content, dataset, openai_server, tmp_path):  # noqa: F811
    for name in _commands(dataset, tmp_path / "out", tmp_path / "x", openai_server.url):
        if name in FINE_FOR.get(content, ()):
            continue
        f = tmp_path / ("opt.json" if "(json)" in name else "opt")
        f.write_bytes(HOSTILE[content])
        out = tmp_path / "out"
        res = CliRunner().invoke(cli, _commands(dataset, out, f, openai_server.url)[name], env={"OPENAI_API_KEY": "k"})
        assert res.exit_code == EXIT_USER, (name, res.output)
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"Error: {f}"), (name, res.output)
        assert "Traceback" not in res.output and not out.exists(), name
        assert f.read_bytes() == HOSTILE[content], name  # never rewritten (a cache that is not one)
    assert openai_server.count == 0


def test_another_programs_sqlite_database_is_not_used_as_the_cache(dataset, openai_server, tmp_path):  # noqa: F811
    db = tmp_path / "app.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE users (name TEXT)")
    con.commit()
    con.close()
    before = db.read_bytes()
    res = CliRunner().invoke(cli, ["translate", str(dataset), "-o", str(tmp_path / "out"), "--base-url",
                                   openai_server.url, "--model", "loopback", "--cache", str(db)])
    assert res.exit_code == EXIT_USER and "not a curate reply cache" in res.output, res.output
    assert db.read_bytes() == before and openai_server.count == 0


@pytest.mark.parametrize("text,message", [
    ("doctor\tdoktor\ndoctor\tdoktor perubatan\n", "given twice"),
    ("doctor\tdoktor\textra\n", "more than one tab"),
    ("doctor\t\n", "empty term or translation"),
    ("⟦1⟧\tx\n", "may not hold"),
])
def test_glossary_that_would_be_a_guess_is_refused(text, message, dataset, tmp_path):
    from curate.errors import UserError
    from curate.translate import load_glossary

    f = tmp_path / "g.tsv"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(UserError, match=message):
        load_glossary(f)
    f.write_text("\ufeffdoctor\tdoktor\r\nwater = air\r\n", encoding="utf-8")  # BOM and CRLF are fine
    assert load_glossary(f).terms == {"doctor": "doktor", "water": "air"}


def test_empty_prompt_file_is_refused_not_replaced_by_the_built_in_one(tmp_path):
    f = tmp_path / "prompt.txt"
    f.write_text("\n\n", encoding="utf-8")
    res = CliRunner().invoke(cli, ["generate", "--seeds", str(SEEDS), "-n", "2", "-o", str(tmp_path / "out"),
                                   "--prompt", str(f), "--batch-out", str(tmp_path / "req.jsonl")])
    assert res.exit_code == EXIT_USER and "the prompt file is empty" in res.output, res.output


@pytest.mark.parametrize("toml,message", [
    ("base_url = 5\n", "base_url = 5: expected a URL or a list of URLs"),
    ('base_url = ["http://127.0.0.1:8000/v1", 7]\n', "expected a URL or a list of URLs"),
    ("model = 5\n", "model = 5: expected a non-empty string"),
    ("concurrency = -3\n", "concurrency = -3: expected an integer >= 1"),
    ('timeout = "x"\n', "expected a number"),
    ("timeout = nan\n", "expected a number"),
    ("[llm]\nconcurency = 4\n", "unknown setting(s) concurency"),
    ('[llm]\napi_key = "sk-1"\n', "never reads keys from files"),
    ('base_url = "http://[::1"\n', "is not a URL"),
    ('base_url = "localhost:8000"\n', "not an http(s) URL with a host"),
])
def test_llm_config_values_are_checked_not_ignored_or_crashing(toml, message, tmp_path):
    from curate.errors import UserError
    from curate.llm import resolve

    f = tmp_path / "llm.toml"
    f.write_text(toml, encoding="utf-8")
    with pytest.raises(UserError, match=re.escape(message)):
        resolve(config_file=f)
    f.write_text('[llm]\nbase_url = ["http://127.0.0.1:8000/v1", "http://127.0.0.1:8001/v1"]\nconcurrency = 4\n'
                 'timeout = 30\nprice_in = 0.1\n', encoding="utf-8")
    cfg = resolve(config_file=f)
    assert cfg.base_urls == ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8001/v1") and cfg.concurrency == 4


@pytest.mark.parametrize("url", ["http://[::1", "garbage", "ftp://host/v1", "http://", "http://h:99999/v1"])
def test_a_base_url_that_is_not_one_is_a_setting_error(url, dataset, tmp_path):
    res = CliRunner().invoke(cli, ["translate", str(dataset), "-o", str(tmp_path / "out"), "--base-url", url])
    assert res.exit_code == EXIT_USER and f"base URL {url!r}" in res.output, res.output
    assert not (tmp_path / "out").exists()
