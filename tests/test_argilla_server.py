"""Smoke test: the argilla 2.8 SDK against the real local argilla-server fixture."""

import argilla as rg
import pytest


RANKING = ["a", "b", "c"]


@pytest.fixture(scope="module")
def client(argilla_server):  # noqa: F811
    return rg.Argilla(api_url=argilla_server.api_url, api_key=argilla_server.api_key)


def _by_id(records):
    return {r.id: r for r in records}


def test_push_update_respond_and_read_back(client, argilla_server):  # noqa: F811
    me = client.me
    assert me.username == argilla_server.username and me.role == "owner"

    workspace = rg.Workspace(name="curate-smoke", client=client).create()
    settings = rg.Settings(
        fields=[rg.TextField(name="text")],
        questions=[
            rg.RatingQuestion(name="quality", values=[1, 2, 3, 4, 5]),
            rg.RankingQuestion(name="ranking", values=RANKING),
        ],
        metadata=[rg.TermsMetadataProperty(name="lang")],
    )
    dataset = rg.Dataset(name="smoke", workspace=workspace, settings=settings, client=client).create()

    dataset.records.log(
        [
            rg.Record(
                id=f"rec-{i}",
                fields={"text": f"hello world {i}"},
                metadata={"lang": "ms" if i % 2 else "en"},
                suggestions=[
                    rg.Suggestion("quality", 3, score=0.5, agent="heuristic"),
                    rg.Suggestion("ranking", ["c", "a", "b"], agent="heuristic"),
                ],
            )
            for i in range(3)
        ]
    )

    # Logging an existing id again updates that record in place (no duplicate).
    dataset.records.log(
        [
            rg.Record(
                id="rec-1",
                fields={"text": "selamat pagi"},
                metadata={"lang": "ms"},
                suggestions=[rg.Suggestion("quality", 5, score=0.9, agent="model")],
            )
        ]
    )
    records = _by_id(dataset.records(with_suggestions=True))
    assert sorted(records) == ["rec-0", "rec-1", "rec-2"]
    assert records["rec-1"].fields["text"] == "selamat pagi"
    assert records["rec-1"].suggestions["quality"].value == 5
    assert records["rec-1"].suggestions["quality"].agent == "model"
    assert records["rec-0"].suggestions["ranking"].value == ["c", "a", "b"]

    # Submit a response as the owner. Submitted ranking answers need explicit ranks:
    # the SDK passes dicts through as-is but sends bare strings without a rank.
    record = records["rec-1"]
    ranked = [{"value": v, "rank": r} for r, v in enumerate(["b", "a", "c"], start=1)]
    record.responses.add(rg.Response("quality", 4, user_id=me.id, status="submitted"))
    record.responses.add(rg.Response("ranking", ranked, user_id=me.id, status="submitted"))
    dataset.records.log([record])

    records = _by_id(dataset.records(with_responses=True))
    assert len(records) == 3
    answered = records["rec-1"]
    assert answered.status == "completed"
    assert answered.responses["quality"][0].value == 4
    assert answered.responses["quality"][0].status == "submitted"
    assert answered.responses["quality"][0].user_id == me.id
    assert answered.responses["ranking"][0].value == ["b", "a", "c"]
    assert not list(records["rec-0"].responses)

    # The ranks themselves are stored server-side (the SDK drops them on read).
    raw = client.http_client.get(
        f"/api/v1/datasets/{dataset.id}/records", params={"include": "responses", "limit": 10}
    ).json()["items"]
    [raw_rec] = [r for r in raw if r["external_id"] == "rec-1"]
    assert raw_rec["responses"][0]["values"]["ranking"]["value"] == ranked

    # Queries go through the in-memory search engine.
    submitted = dataset.records(query=rg.Query(filter=rg.Filter(("response.status", "==", "submitted"))))
    assert [r.id for r in submitted] == ["rec-1"]
    assert [r.id for r in dataset.records(query=rg.Query(query="pagi"))] == ["rec-1"]
    malay = dataset.records(query=rg.Query(filter=rg.Filter(("metadata.lang", "==", "ms"))))
    assert sorted(r.id for r in malay) == ["rec-1"]
    progress = dataset.progress()
    assert progress["total"] == 3 and progress["completed"] == 1 and progress["pending"] == 2
