"""Each clean rule on real rows from tests/data/fixtures (loaded through curate.ingest).

tests/data/clean_cases.jsonl holds the few cases the fixtures lack, each built from a real fixture
row and saying how (a changed answer, an N/A output, a merged task, a literal \\n as in the full
malay_kochatgpt_sft file, double-escaped quotes); it is loaded with schemas.from_rows, bypassing ingest (which would already
repair the literal \\n).
"""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import polars as pl
import pytest

from curate import schemas
from curate.clean import BY_CODE, CleanConfig, clean
from curate.clean.rules.arith import check_answer, check_equations, safe_eval, Unsafe
from curate.errors import UserError
from curate.ingest import ingest

DATA = Path(__file__).parent / "data"


def only(code: str, action: str | None = None, target_lang: str = "ms", **params) -> CleanConfig:
    """A config where every rule but ``code`` is off."""
    actions = {c: "off" for c in BY_CODE if c != code}
    if action:
        actions[code] = action
    return CleanConfig(target_lang=target_lang, actions=actions, params={code: params} if params else {})


@pytest.fixture(scope="session")
def load(fixtures):
    cache = {}

    def _load(*names: str, lang: bool = False) -> dict[str, pl.DataFrame]:
        key = (names, lang)
        if key not in cache:
            cache[key] = ingest([fixtures / n for n in names], detect_lang=lang).frames
        return cache[key]

    return _load


@pytest.fixture(scope="session")
def cases() -> dict[str, dict]:
    rows = [json.loads(line) for line in (DATA / "clean_cases.jsonl").read_text(encoding="utf-8").splitlines()]
    return {r.pop("case"): r for r in rows}


def case_frames(cases, *names) -> dict[str, pl.DataFrame]:
    rows = [{**cases[n], "source": "tests/data/clean_cases.jsonl", "line": i + 1} for i, n in enumerate(names)]
    return {"sft": schemas.from_rows("sft", rows)}


def dropped(res, code: str) -> list[dict]:
    return [q for q in res.quarantine_rows() if q["code"] == code]


def evidence(res, code: str) -> list[str]:
    """Every match of ``code`` in the dropped rows (a row may match on several fields)."""
    return [m["evidence"] for e in res.quarantine_rows() for m in e["matches"] if m["rule"] == code]


def fixes(df: pl.DataFrame, code: str) -> list[dict]:
    out = []
    for m in df["meta"].to_list():
        out.extend(f for f in schemas.meta_of(m).get("fixes", []) if f["rule"] == code)
    return out


def rule_report(res, code: str) -> dict:
    return next(r for r in res.report["rules"] if r["code"] == code)


# --- fixes ---------------------------------------------------------------------------------------

def test_noinput_marker_variants_become_empty(load):
    frames = load("malay_alpaca_anomalies.json")
    res = clean(frames, only("noinput_marker"))
    out = res.frames["sft"]
    inputs = out["input"].to_list()
    assert not any("noinput" in (i or "").lower() for i in inputs)
    assert "N/A" not in inputs
    recs = fixes(out, "noinput_marker")
    befores = {f["before"] for f in recs}
    assert "<p><noinput></p>" in befores and "Tidak ada input yang diperlukan. <noinput>" in befores
    # a "Label: <noinput>" line inside a longer input is removed, the rest kept
    sinopsis = next(f for f in recs if "Sinopsis: <noinput>" in f["before"])
    assert sinopsis["after"] == "Judul: Lautan\nPengarang: Abdul Samad Said"
    assert all(f["field"] == "input" for f in recs)
    assert res.report["rows_out"] == frames["sft"].height


def test_noinput_marker_leaves_real_inputs(load):
    frames = load("malay_alpaca.json", "alpaca_seed_tasks.jsonl")
    res = clean(frames, only("noinput_marker"))
    assert rule_report(res, "noinput_marker")["fixed"] == 0
    assert res.frames["sft"]["input"].to_list() == frames["sft"]["input"].to_list()


def test_mojibake_repaired_only_where_broken(load):
    frames = load("chatdoctor.json", "chatdoctor_anomalies.json", "malay_alpaca.json")
    res = clean(frames, only("mojibake"))
    out = res.frames["sft"]
    text = pl.concat_str(["instruction", "input", "output"], separator="\n")
    assert out.filter(text.str.contains("â€™|Â\u00a0")).height == 0
    recs = fixes(out, "mojibake")
    assert len(recs) == 5  # row 31 (Â+nbsp) and the four â€™ rows
    assert any("â€™" in f["before"] and "’" in f["after"] for f in recs)
    # rows without mojibake are untouched (Malay text with its own accents and quotes included)
    changed = set(out.filter(pl.col("meta").str.contains("mojibake"))["id"])
    before = frames["sft"].filter(~pl.col("id").is_in(list(changed)))
    after = out.filter(~pl.col("id").is_in(list(changed)))
    assert before.select("instruction", "input", "output").equals(after.select("instruction", "input", "output"))


def test_control_chars_removed_from_rm_completions(load):
    frames = load("malay_kochatgpt_rm.jsonl")
    res = clean(frames, only("control_chars"))
    out = res.frames["rm"]
    assert out.filter(pl.col("completions").list.join("\n").str.contains("\u200b")).height == 0
    recs = fixes(out, "control_chars")
    assert recs and all(f["field"].startswith("completions[") for f in recs)
    assert all("\u200b" in f["before"] and "\u200b" not in f["after"] for f in recs)
    # the list shape and the ranks are kept
    assert out["completions"].list.len().to_list() == frames["rm"]["completions"].list.len().to_list()
    assert out["ranks"].to_list() == frames["rm"]["ranks"].to_list()


def test_literal_escapes_become_newlines(cases):
    frames = case_frames(cases, "literal_escapes")
    res = clean(frames, only("literal_escapes"))
    out = res.frames["sft"]["output"][0]
    assert "\\n" not in out and "\n\nAngkatan Bersenjata" in out
    rec = fixes(res.frames["sft"], "literal_escapes")[0]
    assert "\\n" in rec["before"] and rec["field"] == "output"


def test_lone_literal_tab_becomes_a_tab():
    from curate.clean.rules.encoding import fix_escapes

    assert fix_escapes("As\\t we discussed") == ("As\t we discussed", 1)
    assert fix_escapes("Name:\\tJohn\\tAli") == ("Name:\tJohn\tAli", 2)
    # a Windows path keeps its backslashes
    for path in ("C:\\temp\\x", "C:\\Temp", "open folder\\tools"):
        assert fix_escapes(path) == (path, 0)


def test_escaped_quotes_restored(cases, load):
    # malay_alpaca row 0 with its quotes double-escaped (\" as two characters)
    res = clean(case_frames(cases, "escaped_quotes"), only("literal_escapes"))
    original = load("malay_alpaca.json")["sft"]["output"][0]
    assert res.frames["sft"]["output"][0] == original and '\\"' in cases["escaped_quotes"]["output"]


def test_literal_escapes_leave_code_alone(load):
    frames = load("alpaca_seed_tasks.jsonl")
    res = clean(frames, only("literal_escapes"))
    assert rule_report(res, "literal_escapes")["fixed"] == 0
    assert res.frames["sft"]["output"].to_list() == frames["sft"]["output"].to_list()


def test_label_prefix_stripped(load):
    frames = load("malay_alpaca.json")
    res = clean(frames, only("label_prefix"))
    recs = fixes(res.frames["sft"], "label_prefix")
    assert recs and recs[0]["before"].startswith("Instruction: ")
    assert recs[0]["after"] == recs[0]["before"][len("Instruction: "):]


def test_fix_indonesian_off_by_default_and_records_substitutions(load):
    frames = load("malay_alpaca.json")
    assert BY_CODE["fix_indonesian"].default_action == "off"
    res = clean(frames, only("fix_indonesian", "fix"))
    recs = fixes(res.frames["sft"], "fix_indonesian")
    assert recs
    row0 = next(f for f in recs if "karena" in f["before"])
    assert "kerana" in row0["after"] and "karena" not in row0["after"]
    assert any(s.startswith("karena->kerana") for s in row0["substitutions"])
    # with target en nothing is touched
    res_en = clean(frames, only("fix_indonesian", "fix", target_lang="en"))
    assert rule_report(res_en, "fix_indonesian")["fixed"] == 0


# --- drops and flags -----------------------------------------------------------------------------

def test_empty_output_in_chat_and_rm(load):
    frames = load("malay_kochatgpt_conversation.jsonl", "malay_kochatgpt_rm.jsonl")
    res = clean(frames, only("empty_output"))
    q = dropped(res, "empty_output")
    assert q and {e["kind"] for e in q} == {"chat", "rm"}
    for e in q:
        row = e["row"]
        texts = [m["content"] for m in row["messages"]] if e["kind"] == "chat" else row["completions"]
        assert any(not (t or "").strip() for t in texts)


def test_turn_order_flags_chats_strict_templates_refuse(load):
    """Real ShareGPT/KoChatGPT chats whose turns repeat a role or end on the user are flagged (and
    dropped when asked), each with the turn and what is wrong; alternating chats, with or without a
    leading system message, are left alone."""
    def chat(*roles):
        return {"messages": [{"role": r, "content": f"giliran {i}"} for i, r in enumerate(roles)],
                "source": "t.jsonl", "line": 1}

    made = [chat("system", "user", "assistant", "user", "assistant"),   # fine
            chat("user", "assistant"),                                  # fine
            chat("user", "assistant", "assistant"),                     # two assistant turns
            chat("user", "user", "assistant"),                          # two user turns
            chat("assistant", "user", "assistant"),                     # starts with the assistant
            chat("system", "assistant", "user", "assistant"),           # starts with it after the system
            chat("user", "assistant", "user"),                          # ends with the user
            chat("user", "system", "assistant")]                        # a system message later on
    frames = {"chat": pl.concat([schemas.from_rows("chat", made), *load("malay_kochatgpt_conversation.jsonl").values()],
                                how="vertical_relaxed")}
    res = clean(frames, only("turn_order"))
    flagged = {}
    for i, m in enumerate(res.frames["chat"]["meta"].to_list()):
        flagged[i] = [(f["field"], f["evidence"]) for f in schemas.meta_of(m).get("flags", []) if f["rule"] == "turn_order"]
    assert [flagged[i] for i in range(len(made))] == [
        [], [], [("messages[2]", "two assistant turns in a row")], [("messages[1]", "two user turns in a row")],
        [("messages[0]", "the chat starts with the assistant")], [("messages[1]", "the chat starts with the assistant")],
        [("messages[2]", "the chat ends with a user turn")], [("messages[1]", "a system message after the chat began")]]
    real = res.frames["chat"][len(made):]
    for row, marks in zip(real.iter_rows(named=True), list(flagged.values())[len(made):]):
        roles = [m["role"] for m in row["messages"]]
        alternating = roles[0] == "user" and roles[-1] == "assistant" and all(a != b for a, b in zip(roles, roles[1:]))
        assert bool(marks) != alternating, roles
    dropped_res = clean(frames, only("turn_order", "drop"))
    assert dropped_res.frames["chat"].height == res.frames["chat"].height - sum(1 for v in flagged.values() if v)
    assert rule_report(dropped_res, "turn_order")["dropped"] == sum(1 for v in flagged.values() if v)


def test_na_output_dropped(cases):
    res = clean(case_frames(cases, "na_output", "right_math_question"), only("na_output"))
    q = dropped(res, "na_output")
    assert len(q) == 1 and q[0]["evidence"] == "N/A" and q[0]["row"]["output"] == "N/A"
    assert res.frames["sft"].height == 1


def test_needs_internet_url_inputs_and_articles(load):
    frames = load("malay_alpaca_anomalies.json")
    res = clean(frames, only("needs_internet"))
    ev = {m["evidence"] for e in dropped(res, "needs_internet") for m in e["matches"]}
    assert "https://ms.wikipedia.org/wiki/Taman_Negara_Kinabalu" in ev
    assert any(e.startswith("Article: https://www.bbc.com") for e in ev)
    # the URL in an output ("list three links") is not the task's input: not this rule's business
    assert not any("bharian" in e for e in ev)


def test_needs_internet_no_false_positives_on_gsm8k_and_chatdoctor(load):
    res = clean(load("alpacacleaned_gsm8k.json", "chatdoctor.json"), only("needs_internet"))
    assert rule_report(res, "needs_internet")["dropped"] == 0


def test_media_request(load):
    res = clean(load("malay_alpaca_anomalies.json"), only("media_request"))
    ev = evidence(res, "media_request")
    assert any(e.startswith("<img src=") for e in ev)
    assert any(e.startswith("<gambar") for e in ev)
    assert any("logo" in e.lower() for e in ev)
    assert any("poster" in e.lower() for e in ev)
    res2 = clean(load("alpacacleaned_gsm8k.json", "chatdoctor.json", "malay_chatdoctor.jsonl"), only("media_request"))
    assert rule_report(res2, "media_request")["dropped"] == 0


def test_merged_instruction(cases, load):
    res = clean(case_frames(cases, "merged_instruction", "right_math_question"), only("merged_instruction"))
    q = dropped(res, "merged_instruction")
    assert len(q) == 1 and "2. Instruction:" in q[0]["evidence"]
    res2 = clean(load("malay_alpaca.json", "alpaca_seed_tasks.jsonl", "alpacacleaned_gsm8k.json"),
                 only("merged_instruction"))
    assert rule_report(res2, "merged_instruction")["dropped"] == 0


def test_empty_code(cases, load):
    res = clean(case_frames(cases, "empty_code"), only("empty_code"))
    assert dropped(res, "empty_code")[0]["evidence"].startswith("```python")
    res2 = clean(load("alpaca_seed_tasks.jsonl", "malay_seed_tasks.jsonl", "sharegpt.json"), only("empty_code"))
    assert rule_report(res2, "empty_code")["dropped"] == 0


def test_refusal_malay_english_korean(load, cases):
    res = clean(load("malay_kochatgpt_sft.jsonl", "malay_kochatgpt_rm.jsonl"), only("refusal"))
    ev = " | ".join(e["evidence"].lower() for e in dropped(res, "refusal"))
    assert "sebagai model bahasa" in ev and "maaf, saya" in ev
    res_en = clean(case_frames(cases, "refusal_en"), only("refusal"))
    q = dropped(res_en, "refusal")
    assert len(q) == 1 and q[0]["evidence"] in q[0]["row"]["output"]  # "Sorry, but the output you provided"
    assert res_en.frames["sft"].height == 0
    # the identity chats ("I am Vicuna, a language model trained by ...") are not refusals, nor are
    # the patients of ChatDoctor who say "saya tidak dapat" (only responses are read)
    res2 = clean(load("sharegpt_fastchat_identity.json", "malay_chatdoctor.jsonl"), only("refusal"))
    assert rule_report(res2, "refusal")["dropped"] == 0


def test_refusal_pattern_for_one_text_agrees_with_the_rule(load):
    """curate reflect checks one reply at a time with the rule's pattern compiled for Python's re
    (REFUSAL_RE); it must decide exactly as the polars pattern does, ASCII word boundaries included."""
    from curate.clean.rules.refusal import REFUSAL, REFUSAL_RE

    frames = load("malay_kochatgpt_sft.jsonl", "malay_kochatgpt_rm.jsonl", "sharegpt.json", "malay_alpaca.json",
                  "malay_chatdoctor.jsonl", "kochatgpt_conversation.jsonl")
    texts = [t for f in frames.values() for col in f.columns if f.schema[col] == pl.String
             for t in f[col].drop_nulls().to_list()]
    texts += ["As an AI language model, I cannot do that.", "éas an AI, I think", "Bias an AI, yes", "AIs an AI,",
              "Saya hanyalah sebuah model bahasa.", "Sebagai AIku", "Sebagai AI_x", "  Maaf, saya tidak dapat.",
              "MAAF, SAYA TIDAK DAPAT", "죄송하지만 저는 AI", "저는 인공 지능 언어 모델입니다", "as an AI,"]
    polars_says = pl.Series(texts, dtype=pl.String).str.contains(REFUSAL).to_list()
    python_says = [REFUSAL_RE.search(t) is not None for t in texts]
    differ = [t[:80] for t, a, b in zip(texts, polars_says, python_says) if a != b]
    assert not differ, differ
    assert 10 < sum(polars_says) < len(texts) - 1000


def test_wrong_math_no_false_positives_on_gsm8k_and_seed_tasks(load):
    frames = load("alpacacleaned_gsm8k.json", "alpaca_seed_tasks.jsonl", "malay_seed_tasks.jsonl")
    res = clean(frames, only("wrong_math"))
    assert rule_report(res, "wrong_math")["dropped"] == 0
    assert res.frames["sft"].height == frames["sft"].height


def test_wrong_math_catches_wrong_answers(cases):
    res = clean(case_frames(cases, "wrong_math_equation", "wrong_math_question", "right_math_question"),
                only("wrong_math"))
    q = {e["row"]["output"]: e["evidence"] for e in dropped(res, "wrong_math")}
    assert len(q) == 2
    assert any("= 7290" in ev for ev in q.values())
    assert any(ev.startswith("25 x 4 is 100") for ev in q.values())
    assert res.frames["sft"]["output"].to_list() == ["Jawapannya ialah 100."]


@pytest.mark.parametrize("text,wrong", [
    ("48/2 = 24", False), ("5 + 3 = 9", True), ("10/3 = 3.33", False), ("5/3 = 1.6", False),
    ("$1,200 x 3 = $3,600", False), ("RM5 x 2 = RM11", True), ("0.2 * 100 = 20%", False),
    ("2x + 3 = 7", False), ("S + 143 = 200 - 16 = 184", False), ("8 x 1 1/2 = 12", False),
    ("(3 + 4) * 2 = 14", False), ("2^10 = 1000", True),
    # a word after the value (GSM8K's style): judged; "5A", a variable glued on, is not
    ("Janice typed 6 * 20 = 121 sentences before her break.", True),
    ("Janice typed 6 * 20 = 120 sentences before her break.", False),
    ("She walks 15+9=25 flights of stairs", True), ("100 - 5 = 9A", False),
])
def test_equation_checker(text, wrong):
    assert (check_equations(text) is not None) == wrong


def test_equation_search_finds_what_the_regex_finds_everywhere(fixtures):
    """chains() searches CHAIN only around each "=": the same spans as CHAIN.finditer over the whole
    text, on every text of the fixtures holding an "=" and on random strings of the characters
    that matter (digits of other scripts, odd spaces, operators, currency, letters glued on)."""
    import random

    from curate.clean.rules.arith import CHAIN, chains

    def whole(t):
        return [m.span() for m in CHAIN.finditer(t)]

    texts = [t for name in ("alpacacleaned_gsm8k.json", "malay_alpaca.json", "chatdoctor.json")
             for row in json.loads((fixtures / name).read_text()) for t in row.values()
             if isinstance(t, str) and "=" in t]
    assert len(texts) > 150
    assert sum(bool(whole(t)) for t in texts) > 100
    for t in texts:
        assert chains(t) == whole(t), t
    rng = random.Random(7)
    alphabet = list("0123456789 =+-*/xX×÷^−·().,%$€£RMpab_\n\t\u00a0\u0661\u0662\uff13")
    strings = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(20000)]
    assert sum(bool(whole(s)) for s in strings) > 400
    for s in strings:
        assert chains(s) == whole(s), s


def test_safe_eval_refuses_anything_but_arithmetic():
    assert safe_eval("(3 + 4) * 2 ** 3") == 56
    for bad in ("__import__('os').system('true')", "x + 1", "[1] * 3", "9 ** 9 ** 9", "1 / 0"):
        with pytest.raises((Unsafe, SyntaxError)):
            safe_eval(bad)
    assert check_answer("Kira 12 x 7", "84") is None
    assert check_answer("Tulis satu puisi", "84") is None


def test_untranslated_field(load):
    res = clean(load("malay_alpaca_anomalies.json", "malay_kochatgpt_rm.jsonl"), only("untranslated_field"))
    ev = evidence(res, "untranslated_field")
    assert any(e.startswith("instruction is en: Rewrite the following sentence") for e in ev)
    assert any(" is ko: " in e for e in ev)
    # a Malay prompt asking for an English translation may get an English answer
    res2 = clean(load("malay_alpaca.json"), only("untranslated_field"))
    kept = res2.frames["sft"]
    assert kept.filter(pl.col("instruction").str.starts_with("Terjemahkan ayat Bahasa Jerman")).height == 1


def test_untranslated_field_english_target(load):
    res = clean(load("chatdoctor.json", "malay_chatdoctor.jsonl"), only("untranslated_field", target_lang="en"))
    sources = {Path(e["source"]).name for e in dropped(res, "untranslated_field")}
    assert sources == {"malay_chatdoctor.jsonl"}


def test_length_limit_configurable(load):
    frames = load("malay_alpaca.json")
    res = clean(frames, only("length_limit", output_max=300, instruction_min=20))
    q = dropped(res, "length_limit")
    assert q
    for e in q:
        row = e["row"]
        assert len(row["output"]) > 300 or len(row["instruction"]) < 20
    kept = res.frames["sft"]
    assert kept["output"].str.len_chars().max() <= 300
    assert kept["instruction"].str.len_chars().min() >= 20


def test_unclear_instruction_flags_without_dropping(load):
    frames = load("malay_kochatgpt_ppo.jsonl", "kochatgpt_ppo.jsonl")
    res = clean(frames, only("unclear_instruction"))
    assert res.frames["ppo"].height == frames["ppo"].height
    flags = [f for m in res.frames["ppo"]["meta"].to_list() for f in schemas.meta_of(m).get("flags", [])]
    assert flags and all(f["rule"] == "unclear_instruction" for f in flags)
    assert any(f["evidence"].startswith("unfilled placeholder: #") for f in flags)


def test_wrong_language_and_indonesian(load):
    frames = load("malay_alpaca.json", "malay_kochatgpt_conversation.jsonl", lang=True)
    res = clean(frames, only("wrong_language"))
    q = dropped(res, "wrong_language")
    assert q and all(not e["evidence"].startswith(("lang ms", "lang id")) for e in q)
    # a Malay request to translate German into English is a Malay task
    assert res.frames["sft"].filter(pl.col("instruction").str.starts_with("Terjemahkan ayat Bahasa Jerman")).height == 1
    res_id = clean(frames, only("indonesian"))
    q_id = dropped(res_id, "indonesian")
    assert q_id and all(e["evidence"].startswith("lang id") for e in q_id)
    # for an Indonesian target the Indonesian rows stay
    res_t = clean(frames, only("indonesian", target_lang="id"))
    assert res_t.report["rows_dropped"] == 0


def test_exact_duplicate_keeps_first(load):
    frames = load("malay_seed_tasks.jsonl")
    res = clean(frames, only("exact_duplicate"))
    q = dropped(res, "exact_duplicate")
    assert len(q) == 1
    # identical rows share their content id; the first one (by line) is kept
    kept = res.frames["sft"].filter(pl.col("id") == q[0]["id"])
    assert kept.height == 1 and kept["line"][0] < q[0]["line"]
    assert f":{kept['line'][0]})" in q[0]["evidence"]
    assert rule_report(res, "exact_duplicate")["clusters"][0]["size"] == 2


def test_near_duplicate_threshold(load):
    frames = load("malay_gpt4all.jsonl")
    res = clean(frames, only("near_duplicate"))
    q = dropped(res, "near_duplicate")
    assert q and all(e["evidence"].startswith("near duplicate of ") for e in q)
    strict = clean(frames, only("near_duplicate", threshold=0.99))
    assert len(dropped(strict, "near_duplicate")) < len(q)


def test_exact_and_near_share_one_pass(load):
    frames = load("malay_seed_tasks.jsonl", "malay_gpt4all.jsonl", "kochatgpt_seed_data.txt")
    off = {c: "off" for c in BY_CODE if c not in ("exact_duplicate", "near_duplicate")}
    both = clean(frames, CleanConfig(actions=off))
    exact = clean(frames, CleanConfig(actions={**off, "near_duplicate": "off"}))
    near = clean(frames, CleanConfig(actions={**off, "exact_duplicate": "off"}))
    ids = lambda res, code: sorted((e["source"], e["line"]) for e in dropped(res, code))
    assert ids(both, "exact_duplicate") == ids(exact, "exact_duplicate") and ids(exact, "exact_duplicate")
    assert ids(both, "near_duplicate") == ids(near, "near_duplicate")
    # the shared pass is timed under the rule whose work it did
    rules = {r["code"]: r for r in both.report["rules"]}
    assert rules["near_duplicate"]["seconds"] > 0 and "near_duplicate" in rules["exact_duplicate"]["note"]


def test_near_duplicate_measure_is_selectable(load):
    frames = load("malay_gpt4all.jsonl")
    words = clean(frames, only("near_duplicate", measure="word2", threshold=0.6))
    q = dropped(words, "near_duplicate")
    assert q and all("similarity" in e["evidence"] for e in q)
    with pytest.raises(UserError, match="measure"):
        clean(frames, only("near_duplicate", measure="syllable3"))


def test_language_pass_keeps_lingua_loaded_only_when_asked():
    """A Ray worker cleans block after block (language.keep_models): lingua's models stay loaded
    between blocks; a local clean unloads them before its duplicate pass. Same verdicts either way
    (lingua's last float digits vary from call to call: compared to 4 places, as curate rounds them)."""
    from curate import langid
    from curate.clean.rules import language

    texts = ["EP pertama band Kim Chang Wan adalah (i)\n\nReady to Blast.", "Ready to Blast."]

    def guesses():
        return [(lang, round(conf, 4), round(p_ms, 4)) for lang, conf, p_ms in langid._lingua_guesses([("family", t) for t in texts])]

    first = guesses()   # lingua's models loaded
    try:
        language.keep_models()
        assert language._release_lingua() is False
        assert guesses() == first
    finally:
        language.keep_models(False)
    assert language._release_lingua() is True
    assert guesses() == first  # loaded again on use
