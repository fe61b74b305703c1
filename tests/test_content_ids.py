"""The compiled paths of ingest's fast path give exactly what the Python/polars ones give:
content ids (curate.content_id_jit vs schemas.content_ids: orjson + hashlib) and the per-line key
counts (curate.ingest.lines_jit vs polars' regexes, which are also its fallback without numba)."""

from __future__ import annotations

import io
import random
from pathlib import Path

import polars as pl
import pytest

from curate import content_id_jit, schemas
from curate.ingest import ingest, lines_jit

FIXTURES = Path(__file__).parent / "data" / "fixtures"

HOSTILE = ["", "a", '"', "\\", '\\"', "\x00\x01\x1f\x7f", "\b\t\n\f\r\x0b", "\u2028\u2029", "😀\U0010ffff",
           "é한국어", "\ufeff", "x" * 300, "\\n\\t", '"\\u0000"', None]


def _python_ids(kind: str, df: pl.DataFrame) -> list[str]:
    return schemas.content_ids(kind, {f: df[f].to_list() for f in schemas.ID_FIELDS[kind]})


def test_compiled_ids_are_available():
    assert content_id_jit.AVAILABLE and lines_jit.AVAILABLE  # numba is a dependency


def test_every_code_point_gets_the_python_id():
    points = [chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000]
    texts = ["".join(points[i:i + 97]) for i in range(0, len(points), 97)] + points[:300]
    df = pl.DataFrame({"prompt": texts})
    assert schemas.frame_ids("ppo", df).to_list() == _python_ids("ppo", df)


def test_hostile_strings_and_nulls_get_the_python_ids():
    rows = [(a, b, c) for a in HOSTILE for b in HOSTILE[::2] for c in HOSTILE[1::3]]
    df = pl.DataFrame(rows, schema=["instruction", "input", "output"], orient="row")
    got = schemas.frame_ids("sft", df)
    assert got.dtype == pl.String and got.name == "id"
    assert got.to_list() == _python_ids("sft", df)
    part = df.slice(37, 500)  # Arrow arrays that start inside their buffers
    assert schemas.frame_ids("sft", part).to_list() == _python_ids("sft", part)
    assert schemas.frame_ids("sft", df.head(0)).to_list() == []


def test_long_rows_over_many_blake2b_blocks():
    texts = ["a" * n + '"\n' * (n % 7) for n in range(0, 2000, 37)] + ["é" * 100_000]
    df = pl.DataFrame({"instruction": texts, "input": texts[::-1], "output": texts})
    assert schemas.frame_ids("sft", df).to_list() == _python_ids("sft", df)


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.iterdir()
                                        if p.suffix in (".json", ".jsonl") and "schema" not in p.name))
def test_fixture_rows_keep_their_python_ids(name):
    result = ingest([FIXTURES / name], detect_lang=False)
    assert result.files[0].records == sum(df.height for df in result.frames.values()) + len(result.quarantine) > 0
    for kind, df in result.frames.items():
        assert df["id"].to_list() == _python_ids(kind, df)
        if kind in ("sft", "ppo"):
            assert schemas.frame_ids(kind, df).to_list() == df["id"].to_list()


def _hostile_lines() -> list[str]:
    lines = ['{"instruction":"a","output":"b"}', "", "  \t", '{"a" : "b", "c"\u3000:\u2028"d"}', '"\u00a0:"\u0085:"',
             '{"x":":":"y"}', '""::""', '{"k":1,"s":"\\":\\""}', "\r", '{"o":"p"}\r', "\x0c", '{"a":"\u2028"}',
             '" \u1680\u2000\u200a\u202f\u205f:', '"\u200b:"', '"\u3000', '"' + " " * 50 + ":" + " " * 50 + '"']
    pieces = ['"', ":", " ", '": "', '"\u3000:', "\u2028", "x" * 7, "é", "{", "\\", "\r"]
    rnd = random.Random(15)  # lines with quotes and colons at every offset of the 8-byte steps
    return lines + ["".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 40))) for _ in range(400)]


def test_line_scan_counts_like_the_polars_regexes():
    lines = _hostile_lines()
    block = ("\n".join(lines) + "\n").encode()
    starts, ends, blank, keys, str_keys = lines_jit.scan(block)
    raw = pl.read_lines(io.BytesIO(block))["line"]
    assert len(starts) == raw.len() == len(lines)
    assert keys.tolist() == raw.str.count_matches(lines_jit.KEY).to_list()
    assert str_keys.tolist() == raw.str.count_matches(lines_jit.STR_KEY).to_list()
    assert (ends - starts).tolist() == raw.str.len_bytes().to_list()
    assert [block[s:e].decode() for s, e in zip(starts, ends)] == raw.to_list()
    assert blank.tolist() == [not line.strip(" \t\r") for line in lines]


@pytest.mark.parametrize("block", [
    ("\n".join(_hostile_lines()) + "\n").encode(),
    b"", b"\n", b"\r\n\r\n", b'{"a":"b"}\r\n  \n\t\r\n{"c" :\t"d"}\n', '{"e"\u3000:\u2028"f"}\n'.encode(),
])
def test_line_scan_without_numba_gives_the_same_arrays(block):
    compiled, fallback = lines_jit.scan(block), lines_jit.scan_polars(block)
    assert len(compiled[0]) == block.count(b"\n")
    for a, b in zip(compiled, fallback):
        assert a.dtype == b.dtype and a.tolist() == b.tolist()


def test_line_scan_without_numba_finds_the_lines_of_invalid_utf8():
    """Lines that are not UTF-8 are found and measured alike; their key counts are never read
    (polars parses no block holding one: such lines take the general path)."""
    block = b'{"a":"\xff\xfe"}\n\xc3\n  \r\n"\xe2\x80":\n{"b":"\xed\xa0\x80"}\r\n'
    compiled, fallback = lines_jit.scan(block), lines_jit.scan_polars(block)
    for a, b in zip(compiled[:3], fallback[:3]):
        assert a.tolist() == b.tolist()
    assert compiled[2].tolist() == [False, False, True, False, False] and len(fallback[3]) == 5


def test_ingest_without_numba_gives_the_same_rows(tmp_path, monkeypatch):
    """The pipeline on the fallback scan: the same rows and quarantine as on the kernel, for a
    source with blank, CRLF, broken, invalid UTF-8 and extra-key lines."""
    good = [line for line in (FIXTURES / "malay_gpt4all.jsonl").read_bytes().splitlines() if line.strip()] * 3
    bad = [b"", b"  \t", b'{"prompt": "x", "response": 3}', b'{"prompt": "a\xff", "response": "b"}',
           b'{"prompt": "p", "response": "r", "extra": "e"}', b'{"prompt": "cut', '{"prompt" :\u3000"q", "response": "s"}\r'.encode()]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(good[:400] + bad + good[400:]) + b"\n")  # a broken block is halved
    want = ingest([path], detect_lang=False)
    monkeypatch.setattr(lines_jit, "scan", lines_jit.scan_polars)
    got = ingest([path], detect_lang=False)
    assert want.frames.keys() == got.frames.keys() and sum(df.height for df in got.frames.values()) > len(good)
    for kind, df in want.frames.items():
        assert got.frames[kind].equals(df)
    assert [q["line"] for q in got.quarantine] == [q["line"] for q in want.quarantine] != []
    assert got.quarantine == want.quarantine
