"""Every registered command on hostile inputs: no traceback, non-zero where the input is unusable,
nothing written on a refusal, and every record accounted for (records = kept + quarantined).

The inputs are generated here (empty, 0-byte, an empty JSON array, arrays and lines none of which
parses, commented JSON Lines, concatenated arrays, text after an array, a FIFO, binary, UTF-16 with
and without BOM, Latin-1, BOM, NaN/Infinity, duplicate keys, 100k-level nesting, a 50 MB line, CSV, foreign, truncated and
damaged Parquet, a single JSON object, bare line numbers), plus one real raw file of every known source
format. Commands come from ``curate.cli.COMMANDS``, so a new command is covered automatically: it
runs as ``curate NAME INPUT -o OUT`` unless ``ARGV`` says otherwise. LLM commands get an
unreachable endpoint (nothing listens on port 9), ``push`` an unreachable Argilla server.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import orjson
import polars as pl
import pytest
from click.testing import CliRunner

from curate import schemas
from curate.cli import COMMANDS, cli
from curate.errors import EXIT_BUG, EXIT_USAGE
from curate.ingest.formats import FORMATS

ALPACA = [{"instruction": f"Terangkan konsep nombor {i} dengan ringkas.", "input": "",
           "output": f"Nombor {i} ialah satu nombor asli yang datang selepas {i - 1}."} for i in range(1, 6)]

# A real raw file of every source format (the fixtures), checked below to cover FORMATS.
REAL = {"alpaca": "malay_alpaca_anomalies.json", "seed_tasks": "malay_seed_tasks.jsonl",
        "chatdoctor": "chatdoctor_anomalies.json", "gpt4all": "malay_gpt4all_anomalies.jsonl",
        "kochatgpt_rm": "malay_kochatgpt_rm.jsonl", "kochatgpt_sft": "malay_kochatgpt_sft_anomalies.jsonl",
        "kochatgpt_ppo": "kochatgpt_ppo_anomalies.jsonl", "sharegpt": "sharegpt.json",
        "openai_messages": None, "kochatgpt_conversation": "malay_kochatgpt_conversation_anomalies.jsonl",
        "question_list": "kochatgpt_seed_data.txt"}


def _jsonl(rows) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


def _damaged(frame: pl.DataFrame) -> bytes:
    """A curate Parquet file whose header and footer are intact but whose data pages are damaged
    (a byte changed every 53): found only when the data is decoded, long after the file was opened."""
    data = bytearray(_parquet_bytes(frame))
    footer = int.from_bytes(data[-8:-4], "little")
    for i in range(4, len(data) - 8 - footer, 53):
        data[i] ^= 0x5A
    return bytes(data)


def _parquet_bytes(frame: pl.DataFrame) -> bytes:
    import io as _io

    buf = _io.BytesIO()
    frame.write_parquet(buf)
    return buf.getvalue()


def build(d: Path, fixtures: Path) -> dict[str, tuple[Path, dict | None]]:
    """name -> (path, expectation): None = unusable (refused); else the accounting it must give."""
    d.mkdir()
    cases: dict[str, tuple[Path, dict | None]] = {}

    def add(name: str, data: bytes, expect: dict | None) -> None:
        p = d / name
        p.write_bytes(data)
        cases[name] = (p, expect)

    # -- unusable -----------------------------------------------------------------------------
    add("zero.jsonl", b"", None)
    add("blank.json", b"  \n\n \t\n", None)
    add("empty_array.json", b"[\n]\n", None)
    # no record readable at all: the format cannot be told (the refusal names the first broken record)
    add("unclosed_array.json", b"[\n", None)
    add("deep_array.json", b"[" * 100_000, None)
    add("broken_lines.jsonl", b'{"instruction": "a\n{"output": \n', None)
    os.mkfifo(d / "pipe.jsonl")  # opening it would block for ever: it must be refused before that
    cases["pipe.jsonl"] = (d / "pipe.jsonl", None)
    add("binary.jsonl", bytes(range(256)) * 64, None)
    add("gzip.json", b"\x1f\x8b\x08\x00" + b"\x00" * 100, None)
    add("utf16_nobom.json", json.dumps(ALPACA).encode("utf-16-le"), None)
    add("numbers.txt", b"".join(f"{i}\n".encode() for i in range(1, 1001)), None)
    add("object.json", json.dumps({"name": "x", "data": {"a": 1}}, indent=2).encode(), None)
    add("unknown.jsonl", _jsonl([{"foo": 1, "bar": 2}] * 5), None)
    add("table.txt", b"instruction,input,output\n" + b"".join(f"q{i},,a{i}\n".encode() for i in range(20)), None)
    add("columns.csv", b"a,b\n1,2\n3,4\n", None)
    add("ragged.csv", b"instruction,input,output\nq1,,a1\nq2,,a2,stray\nq3,,a3\n", None)
    p = d / "foreign.parquet"
    pl.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "c"]}).write_parquet(p)
    cases[p.name] = (p, None)
    good = d / "_good.parquet"
    pl.DataFrame(ALPACA).write_parquet(good)
    add("truncated.parquet", good.read_bytes()[: good.stat().st_size // 2], None)
    good.unlink()
    add("damaged.parquet", _damaged(schemas.from_rows("sft", [{**r, "source": "a.json", "line": i, "lang": "ms"}
                                                             for i, r in enumerate(ALPACA * 40)])), None)

    # -- usable: {records, quarantined} --------------------------------------------------------
    n = len(ALPACA)
    add("bom.jsonl", b"\xef\xbb\xbf" + _jsonl(ALPACA), {"records": n, "quarantined": 0})
    add("utf16.json", json.dumps(ALPACA, ensure_ascii=False).encode("utf-16"), {"records": n, "quarantined": 0})
    add("utf32.json", json.dumps(ALPACA, ensure_ascii=False).encode("utf-32"), {"records": n, "quarantined": 0})
    latin = [{"instruction": "Décrivez le café à Montréal.", "input": "", "output": "Un café crème, s'il vous plaît."},
             *ALPACA]
    add("latin1.json", json.dumps(latin, ensure_ascii=False, indent=2).encode("latin-1"),
        {"records": n + 1, "quarantined": 0, "recovered": 1})
    add("nan.jsonl", _jsonl(ALPACA) + b'{"instruction": "x", "input": "", "output": NaN}\n'
        b'{"instruction": Infinity, "input": "", "output": "y"}\n', {"records": n + 2, "quarantined": 2})
    add("dupkeys.jsonl", b'{"instruction": "a", "instruction": "b", "input": "", "output": "c"}\n' + _jsonl(ALPACA),
        {"records": n + 1, "quarantined": 0, "recovered": 1})
    add("deep.jsonl", _jsonl(ALPACA[:2]) + b'{"instruction": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
        + _jsonl(ALPACA[2:]), {"records": n + 1, "quarantined": 1})
    # JSON Lines with comment lines (the first one included): not a plain-text prompt list
    add("commented.jsonl", b"// exported 2026-12-01\n" + _jsonl(ALPACA) + b"# end\n", {"records": n + 2, "quarantined": 2})
    # arrays written back to back (cat a.json b.json), then an array followed by stray text
    add("concatenated.json", json.dumps(ALPACA).encode() + b"\n" + json.dumps(ALPACA, indent=1).encode(),
        {"records": 2 * n, "quarantined": 0})
    add("text_after_array.json", json.dumps(ALPACA, indent=2).encode() + b"\nEND OF EXPORT\n",
        {"records": n + 1, "quarantined": 1})
    huge = orjson.dumps({"instruction": "long", "input": "", "output": "x" * (50 << 20)})
    add("huge.jsonl", _jsonl(ALPACA[:1]) + huge + b"\n" + _jsonl(ALPACA[1:]), {"records": n + 1, "quarantined": 1})
    add("alpaca.csv", pl.DataFrame(ALPACA).write_csv().encode(), {"records": n, "quarantined": 0})
    # an Alpaca file none of whose records can become a row: every stage still writes its whole report
    add("all_quarantined.jsonl", _jsonl([{"instruction": {"a": 1}, "input": "", "output": "x"},
                                         {"instruction": ["q"], "input": "", "output": {"b": 2}},
                                         {"instruction": "q", "input": [], "output": None}]),
        {"records": 3, "quarantined": 3})
    p = d / "messages.parquet"
    pl.DataFrame({"messages": [[{"role": "user", "content": f"Hai {i}"}, {"role": "assistant", "content": "Hai!"}]
                               for i in range(4)]}).write_parquet(p)
    cases[p.name] = (p, {"records": 4, "quarantined": 0})
    add("openai_messages.jsonl", _jsonl({"messages": [{"role": "user", "content": f"Apa khabar {i}?"},
                                                      {"role": "assistant", "content": "Baik."}]} for i in range(3)),
        {"records": 3, "quarantined": 0})
    for fmt, name in REAL.items():
        if name:
            cases[f"real:{fmt}"] = (fixtures / name, {})
    return cases


UNREACHABLE_LLM = ["--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--api-key", "sk-test", "--max-retries", "0",
                   "--fail-fast", "1", "--timeout", "5"]

# Commands that also read plain text (one sentence per line), and the unusable cases that are plain text.
TEXT_OK = {"lang"}
PLAIN_TEXT = {"numbers.txt", "table.txt"}

# Commands that take no input dataset (nothing to feed them).
NO_INPUT = {"schemas": "prints the schemas", "pull": "reads from an Argilla server",
            "argilla": "runs an Argilla server"}


def argv(name: str, inp: Path, tmp: Path) -> list[str]:
    out = str(tmp / f"out-{name}")
    llm = [*UNREACHABLE_LLM, "--cache", str(tmp / "cache.sqlite")]
    table = {
        "ingest": [str(inp), "-o", out, "-q"],
        "info": [str(inp)],
        "export": [str(inp), "-o", out],
        "clean": [str(inp), "-o", out, "-q", "--target-lang", "any"],
        "lang": [str(inp), "--summary-only"],
        "seeds": ["validate", str(inp)],
        "generate": ["--seeds", str(inp), "-n", "1", "-o", out, *llm],
        "tokens": ["stats", str(inp)],
        "report": [str(inp), "-o", str(tmp / "report.html")],
        "translate": [str(inp), "-o", out, "-q", *llm],
        "localize": [str(inp), "-o", out, "-q", *llm],
        "reflect": [str(inp), "-o", out, "-q", *llm],
        "judge": [str(inp), "-o", out, *llm],
        "decontaminate": [str(inp), "-o", out, "-q", "--against", str(inp)],
        "push": [str(inp), "--dataset", "hostile", "--api-url", "http://127.0.0.1:9", "--api-key", "k" * 16],
        "batch": ["submit", str(inp), "--base-url", "http://127.0.0.1:9/v1", "--api-key", "sk-test"],
    }
    return [name, *table.get(name, [str(inp), "-o", out])]


@pytest.fixture(scope="module")
def cases(fixtures, tmp_path_factory):
    return build(tmp_path_factory.mktemp("hostile") / "in", fixtures)


def test_every_known_format_has_a_real_raw_file():
    assert set(REAL) == {f.name for f in FORMATS}, "add a raw file of the new format to REAL"


COMMAND_NAMES = sorted(n for n in COMMANDS if n not in NO_INPUT)


@pytest.mark.parametrize("command", COMMAND_NAMES)
def test_command_on_hostile_inputs(command, cases, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # default cache/batch paths stay in here
    runner = CliRunner()
    failures = []
    for case, (path, expect) in cases.items():
        work = tmp_path / case.replace(":", "_")
        work.mkdir()
        res = runner.invoke(cli, argv(command, path, work), catch_exceptions=True)
        text = res.output + (res.stderr if res.stderr_bytes is not None else "")
        out = work / f"out-{command}"
        if command in TEXT_OK and case in PLAIN_TEXT:
            expect = {}  # plain text is this command's input too
        why = None
        if "Traceback" in text or (res.exception is not None and not isinstance(res.exception, SystemExit)):
            why = f"traceback / exception {res.exception!r}"
        elif res.exit_code == EXIT_BUG:
            why = "internal error exit code"
        elif res.exit_code == EXIT_USAGE:
            why = f"usage error: give the command its arguments in ARGV ({text.strip()[-200:]})"
        elif expect is None and res.exit_code == 0:
            why = "unusable input accepted with exit 0"
        elif expect is None and out.exists():
            why = "output written for an unusable input"
        elif expect is None and not ("Error:" in text or "error" in text.lower()):
            why = "refused without a message"
        elif expect and (out / "manifest.json").exists():
            why = _accounting(command, out, expect)
        if why:
            failures.append(f"{case}: exit {res.exit_code}: {why}\n    {text.strip()[-300:]}")
    assert not failures, f"curate {command}:\n" + "\n".join(failures)


def _accounting(command: str, out: Path, expect: dict) -> str | None:
    """records = kept + quarantined, with the counts the generated file must give."""
    from curate.clean import quarantine as qfile

    q = qfile.read_any(out) or []  # quarantine.parquet from clean, quarantine.jsonl from the others
    ingest_q = sum(1 for e in q if e.get("stage") == "ingest")
    if ingest_q != expect["quarantined"]:
        return f"{ingest_q} records in quarantine (stage ingest), expected {expect['quarantined']}"
    if command == "ingest":
        total = json.loads((out / "report.json").read_text())["total"]
        if not total["accounted"] or total["records"] != expect["records"] \
                or total["kept"] + total["quarantined"] != expect["records"]:
            return f"ingest accounting {total} != {expect}"
        if "recovered" in expect and total["recovered"] != expect["recovered"]:
            return f"recovered {total['recovered']} != {expect['recovered']}"
    elif command in READ_IN_REPORT:  # the records lost in reading are in the stage's report too
        read = (json.loads((out / "report.json").read_text()).get("read") or {}).get("total") or {}
        if read.get("records") != expect["records"] or read.get("quarantined") != expect["quarantined"]:
            return f"report.json read {read} != {expect}"
    return None


#: Stages whose report.json says what reading the input gave (``read``), as well as their own work.
READ_IN_REPORT = {"clean", "translate", "localize", "reflect", "judge", "decontaminate"}
