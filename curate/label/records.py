"""Reading a dataset's records over Argilla's REST API (the SDK drops ranking ranks on read)."""

from __future__ import annotations

from typing import Any, Callable

PAGE = 500


def record_total(client, ds) -> int:
    """How many records the dataset holds."""
    resp = client.http_client.get(f"/api/v1/datasets/{ds.id}/records", params={"limit": 1})
    resp.raise_for_status()
    return int(resp.json()["total"])


def fetch_records(client, ds, on_progress: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Every record of a dataset (fields, metadata) with all its responses, page by page."""
    out: list[dict[str, Any]] = []
    offset = 0
    while True:
        resp = client.http_client.get(f"/api/v1/datasets/{ds.id}/records",
                                      params={"include": "responses", "offset": offset, "limit": PAGE})
        resp.raise_for_status()
        items = resp.json()["items"]
        out.extend(items)
        if on_progress:
            on_progress(len(items))
        if len(items) < PAGE:
            return out
        offset += len(items)
