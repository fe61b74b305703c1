"""curate push / pull against a real argilla-server 2.8 on loopback (tests/servers/argilla_fixture.py).

Real fixture data is pushed for every task; two users (the owner and an annotator created here)
answer through the REST API, as the Argilla UI does; pull merges the answers; export turns the
pulled directory into RM pairs and PPO prompts.
"""

from __future__ import annotations

import json
import time

import argilla as rg
import httpx
import orjson
import polars as pl
import pytest
from click.testing import CliRunner

from curate import export as export_mod
from curate import schemas
from curate.cli import cli
from curate.errors import UserError
from curate.ingest import ingest
from curate.label import connect, pull, push, write_pulled
from curate.label import merge as M
from curate.label.settings import flag_codes
from tests.servers.argilla_fixture import join as _join
from tests.servers.argilla_fixture import raw_records as _raw_records
from tests.servers.argilla_fixture import respond as _respond

def _ranking(order_best_first: list[int], ties: dict[int, int] | None = None, width: int = 3) -> list[dict]:
    """Ranking answer over completion_1..N; ``ties`` maps a completion index to the rank it shares."""
    ranks, out = {}, []
    for pos, i in enumerate(order_best_first, start=1):
        ranks[i] = (ties or {}).get(i, pos)
    for i in range(width):
        out.append({"value": f"completion_{i + 1}", "rank": ranks[i]})
    return out


def _dataset(client, name: str, workspace: str):
    return client.datasets(name, workspace=workspace)


# --------------------------------------------------------------------------- review (SFT)

def test_review_push_twice_answer_pull(owner, annotator, fixtures, tmp_path):
    ws = "label-review"
    _join(owner, annotator, ws)
    sft = ingest([fixtures / "malay_alpaca.json"], detect_lang=False).frames["sft"]
    # what clean and judge leave in meta: rule flags on two rows, a judge score on one
    metas = sft["meta"].to_list()
    metas[0] = schemas.merge_meta(metas[0], flags=[{"code": "refusal", "evidence": "Maaf"}])
    metas[1] = schemas.merge_meta(metas[1], flags=["wrong_math", "mojibake"],
                                  judge={"correctness": 2, "helpfulness": 3, "rationale": "salah kira"})
    sft = sft.with_columns(pl.Series("meta", metas), pl.lit("ms").alias("lang"))
    ids = sft["id"].to_list()

    first = push({"sft": sft}, "review-ms", owner, workspace=ws)
    [d] = first["datasets"]
    assert (d["task"], d["kind"], d["rows"], d["created"], d["changed"], d["unchanged"]) == (
        "review", "sft", sft.height, sft.height, 0, 0)
    again = push({"sft": sft}, "review-ms", owner, workspace=ws)["datasets"][0]
    assert (again["created"], again["changed"], again["unchanged"]) == (0, 0, sft.height)

    ds = _dataset(owner, "review-ms", ws)
    raw = _raw_records(owner, ds.id)
    assert sorted(raw) == sorted(ids)                       # one record per row id, no duplicate
    questions = {str(q.id): q.name for q in ds.settings.questions}
    sugg = {questions[s["question_id"]]: s["value"] for s in raw[ids[1]]["suggestions"]}
    assert sorted(sugg["flags"]) == ["mojibake", "wrong_math"]
    assert sugg["quality"] == round((2 + 3) / 2)           # judge sub-scores -> quality suggestion
    assert raw[ids[1]]["metadata"]["judge_score"] == 2.5
    assert {questions[s["question_id"]]: s["value"] for s in raw[ids[0]]["suggestions"]} == {"flags": ["refusal"]}
    assert raw[ids[2]]["suggestions"] == []
    assert raw[ids[0]]["fields"]["output"] == sft["output"][0]
    # metadata filters work for annotators
    flagged = ds.records(query=rg.Query(filter=rg.Filter(("metadata.rule_flags", "in", ["wrong_math"]))))
    assert [r.id for r in flagged] == [ids[1]]

    me, other = owner, annotator["client"]
    a, b, c, d_, e = (raw[i]["id"] for i in ids[:5])
    fixed = "Lagu kegemaran saya ialah \"Bohemian Rhapsody\" oleh Queen."
    _respond(me, a, "submitted", {"quality": 2, "correction": fixed, "flags": ["wrong_language"]})
    _respond(other, a, "submitted", {"quality": 3, "correction": " ".join(fixed.split()), "flags": ["wrong_language", "refusal"]})
    _respond(me, b, "submitted", {"quality": 5})
    _respond(other, b, "discarded")                          # 1 submitted vs 1 discarded -> still merged
    _respond(other, c, "draft", {"quality": 4})              # only a draft -> set aside
    _respond(other, d_, "discarded")                          # only a discard -> set aside
    _respond(me, e, "discarded")
    _respond(other, e, "submitted", {"quality": 1, "flags": ["refusal"]})  # tie 1-1 -> merged

    frames, report = pull(owner, "review-ms", workspace=ws)
    out = frames["sft"].to_dicts()
    by_id = {r["id"]: r for r in out}
    assert sorted(by_id) == sorted([ids[0], ids[1], ids[4]])
    row_a = by_id[ids[0]]
    ann = schemas.meta_of(row_a["meta"])["annotation"]
    assert row_a["output"] == fixed and ann["original"] == sft["output"][0] and ann["corrected"]
    assert ann["quality"] == 2.5 and ann["quality_votes"] == [2.0, 3.0] and ann["quality_agreement"] == 1.0
    assert ann["labels"] == ["wrong_language"] and ann["label_agreement"] == pytest.approx(0.75)
    assert ann["correction_agreement"] == 1.0 and sorted(ann["annotators"]) == ["ann2", "owner"]
    meta_a = schemas.meta_of(row_a["meta"])
    assert flag_codes(meta_a) == ["refusal"]                 # the pushed row's own meta is kept
    assert (row_a["source"], row_a["line"], row_a["instruction"]) == (sft["source"][0], sft["line"][0], sft["instruction"][0])
    row_b = by_id[ids[1]]
    assert row_b["output"] == sft["output"][1] and not schemas.meta_of(row_b["meta"])["annotation"]["corrected"]

    t = report["total"]
    assert (t["records"], t["merged"], t["draft"], t["discarded"], t["corrected"]) == (sft.height, 3, 1, 1, 1)
    assert t["pending"] == sft.height - 5
    assert [x["id"] for x in report["drafts"]] == [ids[2]] and [x["id"] for x in report["discarded"]] == [ids[3]]
    assert report["drafts"][0]["row"]["output"] == sft["output"][2]

    # --min-quality: e (rated 1, not corrected) is set aside; a (rated 2.5 but corrected) stays
    strict, strict_report = pull(owner, "review-ms", workspace=ws, min_quality=2)
    assert sorted(strict["sft"]["id"].to_list()) == sorted([ids[0], ids[1]])
    assert strict_report["total"]["low_quality"] == 1 and strict_report["total"]["merged"] == 2
    [low] = strict_report["rejected"]
    assert (low["id"], low["status"], low["annotation"]["quality"]) == (ids[4], "low_quality", 1.0)
    assert low["row"]["output"] == sft["output"][4]

    written = write_pulled(frames, report, tmp_path / "pulled")
    assert (tmp_path / "pulled" / "sft.parquet").exists()
    side = [json.loads(x) for x in (tmp_path / "pulled" / "drafts.jsonl").read_text().splitlines()]
    assert [s["id"] for s in side] == [ids[2]] and side[0]["responses"][0]["user"] == "ann2"
    assert written["side_files"]["discarded"]["records"] == 1
    rep = json.loads((tmp_path / "pulled" / "report.json").read_text())
    assert rep["total"]["draft"] == 1 and "drafts" not in rep and "merge_rules" in rep
    # the pulled SFT rows export like any curate dataset
    manifest = export_mod.export(
        {k: pl.scan_parquet(p) for k, p in {"sft": tmp_path / "pulled" / "sft.parquet"}.items()}, tmp_path / "exp")
    alpaca = json.loads((tmp_path / "exp" / "sft_alpaca_train.json").read_text())
    assert fixed in [x["output"] for x in alpaca] and manifest["files"]


# --------------------------------------------------------------------------- ranking (RM) through the CLI

def test_ranking_cli_push_twice_answer_pull_export(owner, annotator, fixtures, tmp_path, argilla_server, monkeypatch):  # noqa: F811
    ws = "label-rank"
    _join(owner, annotator, ws)
    runner = CliRunner()
    norm = tmp_path / "norm"
    res = runner.invoke(cli, ["ingest", str(fixtures / "malay_kochatgpt_rm.jsonl"), "-o", str(norm), "--no-lang", "-q"])
    assert res.exit_code == 0, res.output
    rm = pl.read_parquet(norm / "rm.parquet")
    monkeypatch.setenv("ARGILLA_API_URL", argilla_server.api_url)
    monkeypatch.setenv("ARGILLA_API_KEY", argilla_server.api_key)

    t0 = time.perf_counter()
    res = runner.invoke(cli, ["push", str(norm), "--dataset", "rank-ms", "--workspace", ws, "--batch-size", "64"])
    assert res.exit_code == 0, res.output
    assert f"{rm.height} created, 0 changed, 0 unchanged" in res.output and argilla_server.api_key not in res.output
    res = runner.invoke(cli, ["push", str(norm), "--dataset", "rank-ms", "--workspace", ws])
    assert res.exit_code == 0 and f"0 created, 0 changed, {rm.height} unchanged" in res.output, res.output
    push_seconds = time.perf_counter() - t0

    ds = _dataset(owner, "rank-ms", ws)
    raw = _raw_records(owner, ds.id)
    assert len(raw) == rm.height
    questions = {str(q.id): q.name for q in ds.settings.questions}
    rows = rm.to_dicts()
    for row in [x for x in rows[:30] if x["ranks"] is not None]:   # the fixture's ranks come as the suggestion
        [s] = [s for s in raw[row["id"]]["suggestions"] if questions[s["question_id"]] == "ranking"]
        order = [int(v["value"].split("_")[1]) - 1 for v in s["value"]]
        assert [row["ranks"][i] for i in order] == sorted(row["ranks"])
        # the ranks themselves (1 = best), so the UI shows the slots filled and Submit works as is
        got = {v["value"]: v["rank"] for v in s["value"]}
        assert [got[f"completion_{i + 1}"] for i in range(len(row["ranks"]))] == [r + 1 for r in row["ranks"]]

    me, other = owner, annotator["client"]
    rows = [x for x in rows if len(x["completions"]) == 3][:6] + [next(x for x in rows if len(x["completions"]) == 2)]
    r = [raw[row["id"]]["id"] for row in rows]
    # 0: both agree c3 > c1 > c2; 1: they disagree on the top two; 2: a tie from one annotator
    _respond(me, r[0], "submitted", {"ranking": _ranking([2, 0, 1])})
    _respond(other, r[0], "submitted", {"ranking": _ranking([2, 0, 1])})
    _respond(me, r[1], "submitted", {"ranking": _ranking([0, 1, 2])})
    _respond(other, r[1], "submitted", {"ranking": _ranking([1, 0, 2])})
    _respond(me, r[2], "submitted", {"ranking": _ranking([1, 2, 0], ties={2: 1})})   # c2 = c3 best, c1 last
    _respond(other, r[2], "submitted", {"ranking": _ranking([2, 1, 0])})
    _respond(other, r[3], "draft", {"ranking": _ranking([0, 1, 2])})
    _respond(other, r[4], "discarded")
    _respond(me, r[5], "submitted", {"ranking": _ranking([0, 2, 1])})                # a single annotator
    # a row with 2 completions: the empty third field must be ranked too, and is ignored on pull
    _respond(me, r[6], "submitted", {"ranking": _ranking([2, 1, 0])})
    _respond(other, r[6], "submitted", {"ranking": _ranking([1, 2, 0])})

    # pushing again after the answers changes nothing for them
    res = runner.invoke(cli, ["push", str(norm), "--dataset", "rank-ms", "--workspace", ws])
    assert res.exit_code == 0, res.output

    out = tmp_path / "pulled"
    t0 = time.perf_counter()
    res = runner.invoke(cli, ["pull", "--dataset", "rank-ms", "--workspace", ws, "-o", str(out)])
    pull_seconds = time.perf_counter() - t0
    assert res.exit_code == 0, res.output
    assert "5 merged" in res.output and "1 drafts, 1 discarded" in res.output
    assert argilla_server.api_key not in res.output
    pulled = {x["id"]: x for x in pl.read_parquet(out / "rm.parquet").to_dicts()}
    assert sorted(pulled) == sorted(row["id"] for row in (rows[0], rows[1], rows[2], rows[5], rows[6]))

    def expected(*answers):
        return M.merge_rankings([[a["rank"] for a in ans] for ans in answers])

    for row, answers in ((rows[0], [_ranking([2, 0, 1])] * 2),
                         (rows[1], [_ranking([0, 1, 2]), _ranking([1, 0, 2])]),
                         (rows[2], [_ranking([1, 2, 0], ties={2: 1}), _ranking([2, 1, 0])]),
                         (rows[5], [_ranking([0, 2, 1])])):
        got = pulled[row["id"]]
        ann = schemas.meta_of(got["meta"])["annotation"]
        want = expected(*answers)
        assert got["ranks"] == want["ranks"] and ann["kendalls_w"] == want["kendalls_w"]
        assert ann["original_ranks"] == row["ranks"] and got["completions"] == row["completions"]
    assert pulled[rows[0]["id"]]["ranks"] == [1, 2, 0]
    assert schemas.meta_of(pulled[rows[0]["id"]]["meta"])["annotation"]["kendalls_w"] == 1.0
    assert pulled[rows[1]["id"]]["ranks"] == [0, 0, 1]        # Borda tie between c1 and c2
    assert schemas.meta_of(pulled[rows[5]["id"]]["meta"])["annotation"]["kendalls_w"] is None
    short = pulled[rows[6]["id"]]
    assert short["ranks"] == [1, 0] and schemas.meta_of(short["meta"])["annotation"]["kendalls_w"] == 1.0

    report = json.loads((out / "report.json").read_text())
    assert report["total"]["draft"] == 1 and report["total"]["discarded"] == 1
    assert report["total"]["pending"] == rm.height - 7
    assert report["datasets"][0]["responses"] == {"submitted": 9, "draft": 1, "discarded": 1}
    assert [json.loads(x)["id"] for x in (out / "discarded.jsonl").read_text().splitlines()] == [rows[4]["id"]]

    # export: RM pairs are exactly the orders the merged ranks imply, PPO prompts are their prompts
    exp = tmp_path / "export"
    res = runner.invoke(cli, ["export", str(out), "-o", str(exp), "--format", "pairs", "--format", "prompt"])
    assert res.exit_code == 0, res.output
    pairs = [json.loads(x) for x in (exp / "rm_pairs_train.jsonl").read_text().splitlines()]
    want_pairs = {(p["prompt"], p["completions"][i], p["completions"][j])
                  for p in pulled.values() for i in range(len(p["ranks"])) for j in range(len(p["ranks"]))
                  if p["ranks"][i] < p["ranks"][j]}
    assert {(p["prompt"], p["chosen"], p["rejected"]) for p in pairs} == want_pairs
    assert len(pairs) == len(want_pairs) == 3 + 2 + 3 + 3 + 1
    prompts = [json.loads(x)["prompt"] for x in (exp / "ppo_prompt_train.jsonl").read_text().splitlines()]
    assert sorted(prompts) == sorted({p["prompt"] for p in pulled.values()})
    print(f"\nranking: push {rm.height} rows x2 {push_seconds:.2f}s, pull {pull_seconds:.2f}s")


# --------------------------------------------------------------------------- chat review

def test_chat_review_correction_replaces_last_answer(owner, annotator, fixtures):
    ws = "label-chat"
    _join(owner, annotator, ws)
    chat = ingest([fixtures / "malay_kochatgpt_conversation.jsonl"], detect_lang=False).frames["chat"].head(40)
    summary = push({"chat": chat}, "chat-ms", owner, workspace=ws, batch_size=16)
    assert summary["datasets"][0]["task"] == "review" and summary["datasets"][0]["created"] == chat.height
    ds = _dataset(owner, "chat-ms", ws)
    raw = _raw_records(owner, ds.id)
    row = chat.row(0, named=True)
    assert [m["content"] for m in raw[row["id"]]["fields"]["conversation"]] == [m["content"] for m in row["messages"]]

    better = "Boleh. Pembelajaran mesin ialah cabang kecerdasan buatan; mulakan dengan kursus percuma dalam talian."
    _respond(annotator["client"], raw[row["id"]]["id"], "submitted", {"quality": 2, "correction": better})
    frames, report = pull(owner, "chat-ms", workspace=ws)
    [got] = frames["chat"].to_dicts()
    assert got["id"] == row["id"]
    assert got["messages"][:-1] == row["messages"][:-1] and got["messages"][-1] == {"role": "assistant", "content": better}
    ann = schemas.meta_of(got["meta"])["annotation"]
    assert ann["original"] == row["messages"][-1]["content"] and ann["quality_agreement"] is None
    assert report["total"]["merged"] == 1 and "ppo" not in frames


# --------------------------------------------------------------------------- reflect

def _reflected(chat: pl.DataFrame, n: int) -> pl.DataFrame:
    """SFT rows shaped like `curate reflect` output: K, the new answer L', the old answer and critique."""
    rows = []
    for i, conv in enumerate(chat.head(n).to_dicts()):
        msgs = conv["messages"]
        answered = [j for j, m in enumerate(msgs) if m["role"] == "user" and j + 1 < len(msgs)]
        k = answered[1] if len(answered) > 2 else answered[0]    # a turn with turns before and after it
        old = msgs[k + 1]["content"]
        rows.append({"kind": "sft", "lang": "ms", "source": conv["source"], "format": conv["format"], "line": conv["line"],
                     "instruction": msgs[k]["content"], "input": "", "output": f"Jawapan baharu {i}: {old[:60]}",
                     "meta": {"critique": f"Pengguna bertanya lagi kemudian; jawapan {i} kurang jelas.",
                              "old_answer": old, "context": msgs[:k],
                              **({"judge": {"winner": "old", "score": 2}} if i == 1 else {})}})
    return schemas.from_rows("sft", rows)


def _reflected_rm(sft: pl.DataFrame) -> pl.DataFrame:
    """RM rows shaped like `curate reflect` output: the rewrite ranked over the original (order varies)."""
    rows = []
    for i, r in enumerate(sft.to_dicts()):
        meta = schemas.meta_of(r["meta"])
        new, old = (r["output"] if i == 0 else f"Jawapan ketiga {i}: lebih ringkas."), meta["old_answer"]
        completions, ranks = ([new, old], [0, 1]) if i % 2 == 0 else ([old, new], [1, 0])
        rows.append({"kind": "rm", "lang": "ms", "source": r["source"], "format": r["format"], "line": r["line"],
                     "prompt": r["instruction"], "completions": completions, "ranks": ranks,
                     "meta": {"critique": meta["critique"]}})
    return schemas.from_rows("rm", rows)


def test_reflect_preferences_to_rm_and_sft(owner, annotator, fixtures, tmp_path):
    ws = "label-reflect"
    _join(owner, annotator, ws)
    chat = ingest([fixtures / "malay_kochatgpt_conversation.jsonl"], detect_lang=False).frames["chat"]
    sft = _reflected(chat, 6)
    rm_in = _reflected_rm(sft.head(4))
    summary = push({"sft": sft, "rm": rm_in}, "reflect-ms", owner, workspace=ws)
    # two kinds -> one dataset each; both inferred as reflect (meta.critique + the old answer)
    assert [(d["dataset"], d["task"], d["created"]) for d in summary["datasets"]] == [
        ("reflect-ms-sft", "reflect", 6), ("reflect-ms-rm", "reflect", 4)]
    raw = _raw_records(owner, _dataset(owner, "reflect-ms-sft", ws).id)
    raw_rm = _raw_records(owner, _dataset(owner, "reflect-ms-rm", ws).id)
    rows, rm_rows = sft.to_dicts(), rm_in.to_dicts()
    with_context = next(row for row in rows if schemas.meta_of(row["meta"])["context"])
    fields = raw[with_context["id"]]["fields"]
    assert fields["prompt"] == with_context["instruction"] and "Old answer" in fields["comparison"]
    assert fields["critique"].startswith("Pengguna")
    assert fields["context"] == schemas.meta_of(with_context["meta"])["context"]
    # the pairwise judge's verdict is the suggested preference; its score a filter
    questions = {str(q.id): q.name for q in _dataset(owner, "reflect-ms-sft", ws).settings.questions}
    assert [(questions[x["question_id"]], x["value"]) for x in raw[rows[1]["id"]]["suggestions"]] == [("preference", "old")]
    assert raw[rows[1]["id"]]["metadata"]["judge_score"] == 2 and raw[rows[0]["id"]]["suggestions"] == []
    # the new answer is in the right column whatever the RM row's order
    for row in rm_rows:
        new = row["completions"][row["ranks"].index(0)]
        assert raw_rm[row["id"]]["fields"]["comparison"].split("<td")[2].find(new[:20]) > 0

    me, other = owner, annotator["client"]
    r = [raw[row["id"]]["id"] for row in rows]
    _respond(me, r[0], "submitted", {"preference": "new"})
    _respond(other, r[0], "submitted", {"preference": "new"})
    _respond(me, r[1], "submitted", {"preference": "old"})
    _respond(other, r[1], "submitted", {"preference": "old"})
    _respond(me, r[2], "submitted", {"preference": "new"})
    _respond(other, r[2], "submitted", {"preference": "old"})
    _respond(other, r[3], "draft", {"preference": "new"})
    q = [raw_rm[row["id"]]["id"] for row in rm_rows]
    _respond(other, q[0], "submitted", {"preference": "old"})   # order [new, old] -> [1, 0]
    _respond(other, q[1], "submitted", {"preference": "old"})   # order [old, new] -> [0, 1]
    _respond(me, q[2], "submitted", {"preference": "new"})      # order [new, old] -> [0, 1]

    frames, report = pull(owner, "reflect-ms", workspace=ws)     # finds reflect-ms-sft and reflect-ms-rm
    assert sorted(d["dataset"] for d in report["datasets"]) == ["reflect-ms-rm", "reflect-ms-sft"]
    assert sorted(frames["sft"]["id"].to_list()) == sorted([rows[0]["id"], rows[2]["id"]])
    pulled_rm = frames["rm"].to_dicts()
    rm = {schemas.meta_of(x["meta"])["from_id"]: x for x in pulled_rm if "from_id" in schemas.meta_of(x["meta"])}
    # rm_rows[0] is the very pair reflected SFT row 0 makes: it comes back once, as the RM record's answer
    assert rows[0]["id"] not in rm and report["total"]["duplicate_pairs"] == 1
    assert len({x["id"] for x in pulled_rm}) == len(pulled_rm) == 2 + 3
    for i, ranks in ((1, [1, 0]), (2, [0, 0])):
        got = rm[rows[i]["id"]]
        assert got["completions"] == [rows[i]["output"], schemas.meta_of(rows[i]["meta"])["old_answer"]]
        assert got["ranks"] == ranks and got["prompt"] == rows[i]["instruction"]
    assert schemas.meta_of(rm[rows[2]["id"]]["meta"])["annotation"]["preference_agreement"] == 0.5
    direct = {x["id"]: x for x in pulled_rm}
    for row, ranks in ((rm_rows[0], [1, 0]), (rm_rows[1], [0, 1]), (rm_rows[2], [0, 1])):
        got = direct[row["id"]]
        assert got["completions"] == row["completions"] and got["ranks"] == ranks
        assert schemas.meta_of(got["meta"])["annotation"]["original_ranks"] == row["ranks"]
    assert rm_rows[3]["id"] not in direct
    assert report["total"]["rejected_rewrites"] == 1 and report["total"]["draft"] == 1
    assert report["total"]["discarded"] == 0 and report["total"]["merged"] == 6
    assert [x["status"] for x in report["rejected"]] == ["old_answer_preferred"]
    written = write_pulled(frames, report, tmp_path / "pulled")
    assert written["side_files"]["rejected"]["records"] == 1 and written["side_files"]["discarded"]["records"] == 0
    manifest = export_mod.export({k: pl.scan_parquet(tmp_path / "pulled" / f"{k}.parquet") for k in ("rm", "ppo")},
                                 tmp_path / "exp", formats=["pairs", "prompt"])
    files = {(f["kind"], f["format"]): f["records"] for f in manifest["files"]}
    assert files[("rm", "pairs")] == 1 + 3           # the tie gives no pair
    # PPO: one per distinct prompt (reflect RM rows share the prompts of their SFT rows)
    assert files[("ppo", "prompt")] == len({x["prompt"] for x in pulled_rm})


# --------------------------------------------------------------------------- errors

def test_errors_wrong_key_server_down_no_url(argilla_server, fixtures, tmp_path, monkeypatch):  # noqa: F811
    runner = CliRunner()
    src = tmp_path / "rm.parquet"
    ingest([fixtures / "malay_kochatgpt_rm.jsonl"], detect_lang=False).frames["rm"].head(3).write_parquet(src)
    secret = "not-the-key-" + "x" * 20

    monkeypatch.delenv("ARGILLA_API_URL", raising=False)
    monkeypatch.delenv("ARGILLA_API_KEY", raising=False)
    res = runner.invoke(cli, ["push", str(src), "--dataset", "x", "--api-url", argilla_server.api_url, "--api-key", secret])
    assert res.exit_code == 1 and "rejected the API key" in res.output and "ARGILLA_API_KEY" in res.output
    assert "Traceback" not in res.output and secret not in res.output

    with socket_closed_port() as port:
        url = f"http://127.0.0.1:{port}"
        res = runner.invoke(cli, ["pull", "--dataset", "x", "-o", str(tmp_path / "o"), "--api-url", url, "--api-key", secret])
        assert res.exit_code == 1 and f"cannot reach the Argilla server at {url}" in res.output, res.output
        assert "Traceback" not in res.output and secret not in res.output
        with pytest.raises(UserError, match="cannot reach"):
            connect(url, secret)

    res = runner.invoke(cli, ["push", str(src), "--dataset", "x"])
    assert res.exit_code == 1 and "ARGILLA_API_URL" in res.output and "--api-url" in res.output

    monkeypatch.setenv("ARGILLA_API_URL", argilla_server.api_url)
    monkeypatch.setenv("ARGILLA_API_KEY", argilla_server.api_key)
    res = runner.invoke(cli, ["pull", "--dataset", "no-such-dataset", "-o", str(tmp_path / "o")])
    assert res.exit_code == 1 and "no Argilla dataset 'no-such-dataset'" in res.output and "curate push" in res.output
    res = runner.invoke(cli, ["push", str(src), "--dataset", "x", "--kind", "review"])
    assert res.exit_code == 1 and "rm rows cannot be pushed as review" in res.output


def test_annotator_key_cannot_push_or_pull(annotator):
    client = annotator["client"]
    sft = schemas.from_rows("sft", [{"instruction": "Apa khabar?", "input": "", "output": "Baik."}])
    with pytest.raises(UserError, match="owner or admin"):
        push({"sft": sft}, "by-annotator", client, workspace="label-review")
    with pytest.raises(UserError, match="owner or admin API key: 'ann2' is an annotator"):
        pull(client, "review-ms")


def test_api_key_never_written(owner, fixtures, tmp_path, argilla_server):  # noqa: F811
    rm = ingest([fixtures / "malay_kochatgpt_rm.jsonl"], detect_lang=False).frames["rm"].head(5)
    summary = push({"rm": pl.concat([rm, rm.head(1)])}, "keycheck", owner, workspace="label-keys")
    [d] = summary["datasets"]
    assert (d["rows"], d["created"], d["duplicate_ids"]) == (5, 5, 1)   # a repeated id is sent once
    frames, report = pull(owner, "keycheck", workspace="label-keys")
    write_pulled(frames, report, tmp_path / "p")
    assert report["total"]["pending"] == 5 and not frames
    for f in (tmp_path / "p").iterdir():
        assert argilla_server.api_key.encode() not in f.read_bytes()
    assert argilla_server.api_key not in orjson.dumps(report).decode()


class socket_closed_port:
    """A loopback port that was free a moment ago and has nothing listening."""

    def __enter__(self) -> int:
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/api/v1/status", timeout=2)
        return port

    def __exit__(self, *exc) -> None:
        return None


# --------------------------------------------------------------------------- with the real clean stage

def test_clean_flags_become_suggestions_and_filters(owner, fixtures):
    from curate.clean.config import CleanConfig
    from curate.clean.engine import clean
    from curate.clean.registry import RULES

    frames = ingest([fixtures / "malay_alpaca_anomalies.json", fixtures / "malay_alpaca.json"], detect_lang=False).frames
    cleaned = clean(frames, CleanConfig(actions={r.code: "flag" for r in RULES if "flag" in r.actions})).frames["sft"]
    codes = [flag_codes(schemas.meta_of(m)) for m in cleaned["meta"]]
    flagged = [i for i, c in enumerate(codes) if c]
    assert flagged, "the clean stage flagged nothing on the anomalies fixture"
    sample = cleaned[sorted(flagged[:30] + [i for i, c in enumerate(codes) if not c][:10])]

    summary = push({"sft": sample}, "clean-flags", owner, workspace="label-clean")
    assert "flags_not_offered" not in summary["datasets"][0]       # every rule code is a label
    ds = _dataset(owner, "clean-flags", "label-clean")
    questions = {str(q.id): q.name for q in ds.settings.questions}
    raw = _raw_records(owner, ds.id)
    for row in sample.to_dicts():
        want = flag_codes(schemas.meta_of(row["meta"]))
        got = [s["value"] for s in raw[row["id"]]["suggestions"] if questions[s["question_id"]] == "flags"]
        assert (sorted(got[0]) if got else []) == want
        assert sorted(raw[row["id"]]["metadata"].get("rule_flags", [])) == want
    code = max({c for r in sample["meta"] for c in flag_codes(schemas.meta_of(r))},
               key=lambda c: sum(c in flag_codes(schemas.meta_of(m)) for m in sample["meta"]))
    hits = ds.records(query=rg.Query(filter=rg.Filter(("metadata.rule_flags", "in", [code]))))
    want_ids = {r["id"] for r in sample.to_dicts() if code in flag_codes(schemas.meta_of(r["meta"]))}
    assert {r.id for r in hits} == want_ids


def test_make_push_pull_explain_the_server_settings(tmp_path):
    import os
    import shutil
    import subprocess
    from pathlib import Path

    assert shutil.which("make"), "make is not installed (the README's prerequisites: python3, python3-venv, make)"
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k not in ("ARGILLA_API_URL", "ARGILLA_API_KEY")}
    for target in ("push", "pull"):
        res = subprocess.run(["make", "-s", "-C", str(root), target, "DATASET=review-ms"], env=env,
                             capture_output=True, text=True, timeout=60)
        assert res.returncode != 0
        assert "export ARGILLA_API_URL=" in res.stdout and "ARGILLA_API_KEY" in res.stdout
        assert "make push DATASET=review-ms" in res.stdout
