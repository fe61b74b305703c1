"""What an annotator meets in Argilla, against a real argilla-server 2.8 on loopback.

* ranking records come with the row's ranks pre-filled (ties included), and the suggestion can be
  submitted as it is;
* review records come with the rules that flagged the row (``curate clean``) pre-selected, each
  with its confidence and the agent name;
* a push says what it created, changed and left unchanged, and pull marks the rows whose text was
  changed by a push after they were answered (``meta.stale_annotation``).
"""

from __future__ import annotations

import polars as pl
import pytest
from click.testing import CliRunner

from curate import schemas
from curate.cli import cli
from curate.ingest import ingest
from curate.label import pull, push
from curate.label.settings import CLEAN_AGENT, flag_scores
from tests.servers.argilla_fixture import join, raw_records, respond


def _suggestions(owner, ds_name: str, ws: str) -> dict[str, dict[str, dict]]:
    """Row id -> question name -> the stored suggestion (value, score, agent), as the UI reads it."""
    ds = owner.datasets(ds_name, workspace=ws)
    questions = {str(q.id): q.name for q in ds.settings.questions}
    return {rid: {questions[s["question_id"]]: s for s in rec["suggestions"]}
            for rid, rec in raw_records(owner, ds.id).items()}


def test_ranking_suggestions_carry_the_ranks_with_ties(owner, annotator, fixtures):
    ws = "suggest-rank"
    join(owner, annotator, ws)
    base = ingest([fixtures / "malay_kochatgpt_rm.jsonl"], detect_lang=False).frames["rm"]
    three = base.filter(pl.col("completions").list.len() == 3).head(5).to_dicts()
    two = base.filter(pl.col("completions").list.len() == 2).head(1).to_dicts()
    # a tie for best; a tie for worst with ranks that are not dense; no ranks; a two-completion row
    # tied; one completion not ranked
    cases = [(three[0], [0, 1, 0]), (three[1], [0, 5, 5]), (three[2], None), (three[3], [2, 1, 0]), (two[0], [0, 0]),
             (three[4], [1, None, 0])]
    rows = []
    for row, ranks in cases:
        row = dict(row, ranks=ranks)
        row.pop("id")
        row["id"] = schemas.content_id("rm", row) + "-t"   # fresh ids: other tests push the same prompts
        rows.append(row)
    rm = schemas.from_rows("rm", rows)
    push({"rm": rm}, "rank-ties", owner, workspace=ws)
    sugg = _suggestions(owner, "rank-ties", ws)

    def ranks_of(row_id):
        return {v["value"]: v["rank"] for v in sugg[row_id]["ranking"]["value"]}

    a, b, c, d, e, f = (r["id"] for r in rows)
    assert ranks_of(a) == {"completion_1": 1, "completion_2": 2, "completion_3": 1}       # the tie kept
    assert ranks_of(b) == {"completion_1": 1, "completion_2": 2, "completion_3": 2}       # dense, from 1
    assert "ranking" not in sugg[c]                                                     # nothing to pre-fill
    assert ranks_of(d) == {"completion_1": 3, "completion_2": 2, "completion_3": 1}
    # the dataset has three slots; the row's missing third completion comes last
    assert ranks_of(e) == {"completion_1": 1, "completion_2": 1, "completion_3": 2}
    assert ranks_of(f) == {"completion_1": 2, "completion_2": None, "completion_3": 1}    # the ranks we have
    assert [v["value"] for v in sugg[a]["ranking"]["value"]] == ["completion_1", "completion_3", "completion_2"]
    assert sugg[a]["ranking"]["agent"] == "source"

    # accepting the suggestion as it is (what the UI's Submit sends) is a valid answer, and pull
    # reads the same ranks back
    ds = owner.datasets("rank-ties", workspace=ws)
    raw = raw_records(owner, ds.id)
    for row_id in (a, e):
        respond(annotator["client"], raw[row_id]["id"], "submitted", {"ranking": sugg[row_id]["ranking"]["value"]})
    frames, _ = pull(owner, "rank-ties", workspace=ws)
    got = {r["id"]: r["ranks"] for r in frames["rm"].to_dicts()}
    assert got == {a: [0, 1, 0], e: [0, 0]}


def test_clean_flags_are_suggested_with_confidences(owner, fixtures):
    from curate.clean.config import CleanConfig
    from curate.clean.engine import clean
    from curate.clean.registry import RULES

    frames = ingest([fixtures / "malay_alpaca.json", fixtures / "alpacacleaned_gsm8k.json"], detect_lang=False).frames
    every_flag = {r.code: "flag" for r in RULES if "flag" in r.actions}
    cleaned = clean(frames, CleanConfig(target_lang="ms", actions=every_flag)).frames["sft"]
    scores = [flag_scores(schemas.meta_of(m)) for m in cleaned["meta"]]
    lang = [i for i, s in enumerate(scores) if "wrong_language" in s][:5]
    indo = [i for i, s in enumerate(scores) if "indonesian" in s][:5]
    plain = [i for i, s in enumerate(scores) if s and not {"wrong_language", "indonesian"} & set(s)][:5]
    clean_rows = [i for i, s in enumerate(scores) if not s][:3]
    assert lang and indo and plain and clean_rows, "the fixtures no longer give every kind of flag"
    sample = cleaned[sorted(set(lang + indo + plain + clean_rows))]

    push({"sft": sample}, "flag-scores", owner, workspace="suggest-flags")
    sugg = _suggestions(owner, "flag-scores", "suggest-flags")
    for row in sample.to_dicts():
        want = flag_scores(schemas.meta_of(row["meta"]))
        got = sugg[row["id"]].get("flags")
        if not want:
            assert got is None
            continue
        assert got["agent"] == CLEAN_AGENT
        assert dict(zip(got["value"], got["score"])) == pytest.approx(want)
        for code in ("wrong_language", "indonesian"):
            if code in want:   # the language rules' confidence, read from their evidence
                evidence = next(f["evidence"] for f in schemas.meta_of(row["meta"])["flags"] if f["rule"] == code)
                assert f"confidence {dict(zip(got['value'], got['score']))[code]}" in evidence
                assert 0.6 <= dict(zip(got["value"], got["score"]))[code] <= 1
        for code in set(want) - {"wrong_language", "indonesian"}:
            assert dict(zip(got["value"], got["score"]))[code] == 1.0     # a pattern rule matched


def test_repush_counts_changes_and_pull_marks_stale_answers(owner, annotator, fixtures, tmp_path, argilla_server,
                                                            monkeypatch):
    ws = "suggest-stale"
    join(owner, annotator, ws)
    sft = ingest([fixtures / "malay_alpaca.json"], detect_lang=False).frames["sft"].head(60)
    ids = sft["id"].to_list()
    first = push({"sft": sft}, "stale-ms", owner, workspace=ws)["datasets"][0]
    assert (first["created"], first["changed"], first["unchanged"]) == (60, 0, 0)

    ds = owner.datasets("stale-ms", workspace=ws)
    raw = raw_records(owner, ds.id)
    for i in (0, 1, 2, 3):
        respond(annotator["client"], raw[ids[i]]["id"], "submitted", {"quality": 4})

    # 5 rows change: the text of rows 0, 1 (answered) and 10 (not), the meta (a new flag) of rows 2
    # (answered) and 11; everything else is pushed again as it was
    out = sft["output"].to_list()
    metas = sft["meta"].to_list()
    for i in (0, 1, 10):
        out[i] = out[i] + " (disemak semula)"
    for i in (2, 11):
        metas[i] = schemas.merge_meta(metas[i], flags=[{"rule": "refusal", "field": "output", "evidence": "Maaf"}])
    changed = sft.with_columns(pl.Series("output", out), pl.Series("meta", metas))
    src = tmp_path / "sft.parquet"
    changed.write_parquet(src)
    monkeypatch.setenv("ARGILLA_API_URL", argilla_server.api_url)
    monkeypatch.setenv("ARGILLA_API_KEY", argilla_server.api_key)
    res = CliRunner().invoke(cli, ["push", str(src), "--dataset", "stale-ms", "--workspace", ws])
    assert res.exit_code == 0, res.output
    assert "0 created, 5 changed, 55 unchanged" in res.output
    assert "2 changed records already had answers" in res.output
    raw = raw_records(owner, ds.id)
    assert raw[ids[0]]["fields"]["output"].endswith("(disemak semula)")

    frames, report = pull(owner, "stale-ms", workspace=ws)
    rows = {r["id"]: schemas.meta_of(r["meta"]) for r in frames["sft"].to_dicts()}
    assert sorted(rows) == sorted(ids[:4]) and report["total"]["stale"] == 2
    for i in (0, 1):
        mark = rows[ids[i]]["stale_annotation"]
        assert (mark["answers"], mark["of"], mark["annotators"]) == (1, 1, ["ann2"])
    assert "stale_annotation" not in rows[ids[2]] and "stale_annotation" not in rows[ids[3]]

    # the annotator answers row 0 again after reading the new text: no longer stale. A push with
    # nothing changed keeps row 1's mark.
    response = next(r for r in raw[ids[0]]["responses"])
    resp = annotator["client"].http_client.put(f"/api/v1/responses/{response['id']}",
                                               json={"status": "submitted", "values": {"quality": {"value": 5}}})
    assert resp.status_code == 200, resp.text
    again = push({"sft": changed}, "stale-ms", owner, workspace=ws)["datasets"][0]
    assert (again["created"], again["changed"], again["unchanged"], again["answered_then_changed"]) == (0, 0, 60, 0)
    frames, report = pull(owner, "stale-ms", workspace=ws)
    rows = {r["id"]: schemas.meta_of(r["meta"]) for r in frames["sft"].to_dicts()}
    assert report["total"]["stale"] == 1 and "stale_annotation" in rows[ids[1]]
    assert "stale_annotation" not in rows[ids[0]] and rows[ids[0]]["annotation"]["quality"] == 5
    res = CliRunner().invoke(cli, ["pull", "--dataset", "stale-ms", "--workspace", ws, "-o", str(tmp_path / "p")])
    assert res.exit_code == 0 and "1 stale" in res.output, res.output
