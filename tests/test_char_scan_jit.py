"""curate.char_scan_jit: character counts equal polars', letter counts never above ``\\p{L}``'s, control
characters found where the control_chars rule's regex finds them."""

from __future__ import annotations

import json
import random

import numpy as np
import polars as pl
import pytest

from curate import char_scan_jit

pytestmark = pytest.mark.skipif(not char_scan_jit.AVAILABLE, reason="numba is not installed")


def test_every_range_is_letters_to_polars_regex():
    cps = [c for lo, hi in char_scan_jit.LETTERS for c in range(lo, hi + 1)]
    assert len(cps) > 60000
    assert pl.Series([chr(c) for c in cps]).str.contains(r"^\p{L}$").all()


def _exact(texts: pl.Series) -> np.ndarray:
    return (texts.str.len_chars() - texts.str.replace_all(r"\p{L}+", "").str.len_chars()).to_numpy()


def test_counts_on_fixture_text_and_random_code_points(fixtures):
    texts = []
    for name in ("malay_alpaca.json", "chatdoctor.json", "alpacacleaned_gsm8k.json"):
        texts += [v for row in json.loads((fixtures / name).read_text()) for v in row.values() if isinstance(v, str)]
    for name in ("kochatgpt_ppo.jsonl", "malay_kochatgpt_sft.jsonl"):
        for line in (fixtures / name).read_text().splitlines():
            try:
                texts += [v for v in json.loads(line).values() if isinstance(v, str)]
            except ValueError:
                continue  # the fixtures' broken lines
    rng = random.Random(3)
    pools = [range(0x20, 0x7F), range(0x80, 0x800), range(0x800, 0x10000), range(0x10000, 0x30000)]
    for _ in range(3000):
        t = ""
        for _ in range(rng.randint(0, 30)):
            c = rng.choice(rng.choice(pools))
            t += chr(c) if not 0xD800 <= c < 0xE000 else "x"
        texts.append(t)
    texts += ["", "éèà Ωμ Жж ﷺ 한국어 ひらがな 漢字 𠀀 🙂 e\u0301 ǅ ʰ"]
    s = pl.Series(texts, dtype=pl.String)
    chars, at_least = char_scan_jit.letter_counts(s)
    exact = _exact(s)
    assert (chars == s.str.len_chars().to_numpy()).all()
    assert (at_least <= exact).all()
    # Latin, Hangul and CJK text: the bound is the count
    plain = s.str.contains(r"^[\x00-\x7F\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u02C1\uAC00-\uD7A3\u4E00-\u9FA5]*$").to_numpy()
    assert plain.sum() > 1000
    assert (at_least[plain] == exact[plain]).all()
    assert (at_least[~plain] < exact[~plain]).any()  # the rest is only a bound


def test_control_characters_where_the_regex_finds_them():
    """Every code point, alone, inside ASCII text (on both sides of an 8-byte word) and after
    non-ASCII text, gives the same answer as the control_chars rule's regex."""
    from curate.clean.rules.encoding import CONTROL

    pattern = rf"{CONTROL}|\r|[\x{{2028}}\x{{2029}}]"
    cps = [c for c in range(0x110000) if not 0xD800 <= c < 0xE000]
    texts = []
    for c in cps:
        ch = chr(c)
        texts.append(ch)
        if c < 0x3000 or c >= 0xFE00:  # every context for the code points that could match
            texts += [f"plain text {ch} and more", f"abcdefg{ch}hijklmnop", f"한국어 문장{ch}", f"ab{ch}"]
    s = pl.Series(texts, dtype=pl.String)
    got = char_scan_jit.has_control(s)
    want = s.str.contains(pattern).to_numpy()
    assert want.sum() > 300
    assert (got == want).all(), [t for t, g, w in zip(texts, got, want) if g != w][:5]
