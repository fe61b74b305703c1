"""In-memory search engine for argilla-server 2.8 (no Elasticsearch needed).

Importing this module registers the engine as ``ARGILLA_SEARCH_ENGINE=memory``.
Each record is kept as a small document built from the ORM objects the server
hands over (the same attributes the Elasticsearch engine reads), so search,
filters, sorting, progress, metadata metrics and similarity work for the SDK.
State lives in the server process and is lost when it stops; launcher.py rebuilds
it from the database at start-up. Scores are 1.0 except for similarity search
(cosine similarity). Every operation scans the dataset's documents: fine for
thousands of records, not millions.

This file runs inside the server venv (launcher.py imports it by path): it
imports only the standard library and argilla_server - never curate.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Optional, Union
from uuid import UUID

from argilla_server.enums import MetadataPropertyType, ResponseStatusFilter, SimilarityOrder, SortOrder
from argilla_server.models import Dataset, MetadataProperty, Record, Response, Suggestion, User, VectorSettings
from argilla_server.search_engine import (
    AndFilter,
    Filter,
    FloatMetadataMetrics,
    IntegerMetadataMetrics,
    MetadataFilterScope,
    MetadataMetrics,
    Order,
    RangeFilter,
    RecordFilterScope,
    ResponseFilterScope,
    SearchEngine,
    SearchResponseItem,
    SearchResponses,
    SuggestionFilterScope,
    TermsFilter,
    TermsMetrics,
    TextQuery,
)

ENGINE_NAME = "memory"

# dataset id -> record id -> document (insertion ordered). Shared by all instances:
# the server creates a new engine instance for every request.
_INDEXES: Dict[UUID, Dict[UUID, dict]] = {}


def _response_doc(response: Response) -> dict:
    return {
        "status": str(response.status),
        "user_id": str(response.user_id),
        "values": {q: (v or {}).get("value") for q, v in (response.values or {}).items()},
    }


def _suggestion_doc(suggestion: Suggestion) -> dict:
    return {"type": suggestion.type, "agent": suggestion.agent, "score": suggestion.score, "value": suggestion.value}


def _record_doc(record: Record) -> dict:
    return {
        "id": str(record.id),
        "external_id": record.external_id,
        "status": str(record.status),
        "inserted_at": record.inserted_at,
        "updated_at": record.updated_at,
        "fields": dict(record.fields or {}),
        "metadata": dict(record.metadata_ or {}),
        "responses": {r.id: _response_doc(r) for r in record.responses},
        "suggestions": {s.question.name: _suggestion_doc(s) for s in record.suggestions},
        "vectors": {v.vector_settings_id: list(v.value) for v in record.vectors},
    }


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return " ".join(_text(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return " ".join(_text(v) for v in value)
    return "" if value is None else str(value)


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _terms_match(value: Any, terms: List[str]) -> bool:
    wanted = {str(t) for t in terms}
    return any(str(v) in wanted for v in _as_list(value))


def _range_match(value: Any, ge: Optional[float], le: Optional[float]) -> bool:
    for v in _as_list(value):
        try:
            if (ge is None or v >= ge) and (le is None or v <= le):
                return True
        except TypeError:
            continue
    return False


def _user_responses(doc: dict, user: Optional[User]) -> List[dict]:
    responses = doc["responses"].values()
    return [r for r in responses if user is None or r["user_id"] == str(user.id)]


def _scope_value(doc: dict, scope) -> Any:
    if isinstance(scope, MetadataFilterScope):
        return doc["metadata"].get(scope.metadata_property)
    if isinstance(scope, SuggestionFilterScope):
        return (doc["suggestions"].get(scope.question) or {}).get(scope.property)
    if isinstance(scope, RecordFilterScope):
        return doc.get(scope.property)
    if isinstance(scope, ResponseFilterScope):
        key = scope.question
        values = [r["values"].get(key) if key else r.get(scope.property) for r in _user_responses(doc, scope.user)]
        values = [v for v in values if v is not None]
        if values and all(isinstance(v, (int, float)) for v in values):
            return sum(values) / len(values)  # like Elasticsearch's "avg" sort mode
        return values[0] if values else None
    raise ValueError(f"Unsupported filter scope {scope!r}")


def _matches(doc: dict, filter: Filter) -> bool:
    if isinstance(filter, AndFilter):
        return all(_matches(doc, f) for f in filter.filters)

    def check(value: Any) -> bool:
        if isinstance(filter, TermsFilter):
            return _terms_match(value, filter.values)
        if isinstance(filter, RangeFilter):
            return _range_match(value, filter.ge, filter.le)
        raise ValueError(f"Unsupported filter {filter!r}")

    scope = filter.scope
    if not isinstance(scope, ResponseFilterScope):
        return check(_scope_value(doc, scope))

    responses = _user_responses(doc, scope.user)
    if scope.question:
        return any(check(r["values"].get(scope.question)) for r in responses)
    if scope.property == "status" and isinstance(filter, TermsFilter):
        if ResponseStatusFilter.pending in filter.values and not responses:
            return True
        return any(r["status"] in {str(v) for v in filter.values} for r in responses)
    raise ValueError(f"Unsupported response filter scope {scope!r}")


def _text_match(dataset: Dataset, doc: dict, query: Optional[Union[TextQuery, str]]) -> bool:
    if query is None:
        return True
    if isinstance(query, str):
        query = TextQuery(q=query)
    if query.field and dataset.field_by_name(query.field) is None:
        raise Exception(f"Field {query.field} not found in dataset {dataset.id}")
    haystack = _text(doc["fields"].get(query.field) if query.field else doc["fields"]).lower()
    return all(term in haystack for term in query.q.lower().split())


def _sort(docs: List[dict], sort: Optional[List[Order]]) -> List[dict]:
    for order in reversed(sort or []):
        present = [d for d in docs if _scope_value(d, order.scope) is not None]
        missing = [d for d in docs if _scope_value(d, order.scope) is None]  # missing values go last
        present.sort(key=lambda d: _scope_value(d, order.scope), reverse=order.order == SortOrder.desc)
        docs = present + missing
    return docs


def _cosine(a: List[float], b: List[float]) -> float:
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b)) / norm if norm else 0.0


def _terms_metrics(values: Iterable[Any]) -> TermsMetrics:
    counts: Dict[str, int] = {}
    for value in values:
        for v in _as_list(value):
            counts[str(v)] = counts.get(str(v), 0) + 1
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return TermsMetrics(
        total=sum(counts.values()), values=[TermsMetrics.TermCount(term=t, count=c) for t, c in ordered]
    )


@SearchEngine.register(engine_name=ENGINE_NAME)
class MemorySearchEngine(SearchEngine):
    @classmethod
    async def new_instance(cls) -> "MemorySearchEngine":
        return cls()

    async def close(self):
        pass

    async def ping(self) -> bool:
        return True

    async def info(self) -> dict:
        return {"distribution": ENGINE_NAME, "version": "0"}

    @staticmethod
    def _index(dataset_id: UUID) -> Dict[UUID, dict]:
        return _INDEXES.setdefault(dataset_id, {})

    async def create_index(self, dataset: Dataset):
        self._index(dataset.id)

    async def delete_index(self, dataset: Dataset):
        _INDEXES.pop(dataset.id, None)

    async def configure_metadata_property(self, dataset: Dataset, metadata_property: MetadataProperty):
        pass

    async def configure_index_vectors(self, vector_settings: VectorSettings):
        pass

    async def index_records(self, dataset: Dataset, records: Iterable[Record]):
        index = self._index(dataset.id)
        for record in records:
            index[record.id] = _record_doc(record)

    async def partial_record_update(self, record: Record, **update):
        doc = self._index(record.dataset.id).get(record.id)
        if doc is not None:
            doc.update({k: str(v) if k == "status" else v for k, v in update.items()})

    async def delete_records(self, dataset: Dataset, records: Iterable[Record]):
        index = self._index(dataset.id)
        for record in records:
            index.pop(record.id, None)

    async def update_record_response(self, response: Response):
        record = response.record
        doc = self._index(record.dataset.id).get(record.id)
        if doc is not None:
            doc["responses"][response.id] = _response_doc(response)

    async def delete_record_response(self, response: Response):
        record = response.record
        doc = self._index(record.dataset.id).get(record.id)
        if doc is not None:
            doc["responses"].pop(response.id, None)

    async def update_record_suggestion(self, suggestion: Suggestion):
        doc = self._index(suggestion.record.dataset.id).get(suggestion.record_id)
        if doc is not None:
            doc["suggestions"][suggestion.question.name] = _suggestion_doc(suggestion)

    async def delete_record_suggestion(self, suggestion: Suggestion):
        doc = self._index(suggestion.record.dataset.id).get(suggestion.record_id)
        if doc is not None:
            doc["suggestions"].pop(suggestion.question.name, None)

    async def get_dataset_progress(self, dataset: Dataset) -> dict:
        if dataset.is_draft:
            return {}
        metrics = _terms_metrics(doc["status"] for doc in self._index(dataset.id).values())
        return {"total": metrics.total, **{m.term: m.count for m in metrics.values}}

    async def get_dataset_user_progress(self, dataset: Dataset, user: User) -> dict:
        if dataset.is_draft:
            return {}
        statuses = [r["status"] for doc in self._index(dataset.id).values() for r in _user_responses(doc, user)]
        metrics = _terms_metrics(statuses)
        return {"total": metrics.total, **{m.term: m.count for m in metrics.values}}

    def _select(self, dataset: Dataset, query, filter: Optional[Filter]) -> List[dict]:
        return [
            doc
            for doc in self._index(dataset.id).values()
            if _text_match(dataset, doc, query) and (filter is None or _matches(doc, filter))
        ]

    async def search(
        self,
        dataset: Dataset,
        query: Optional[Union[TextQuery, str]] = None,
        filter: Optional[Filter] = None,
        sort: Optional[List[Order]] = None,
        offset: int = 0,
        limit: int = 100,
        user_id: Optional[str] = None,  # Elasticsearch shuffles per user; we keep insertion order.
    ) -> SearchResponses:
        docs = _sort(self._select(dataset, query, filter), sort)
        items = [SearchResponseItem(record_id=UUID(d["id"]), score=1.0) for d in docs[offset : offset + limit]]
        return SearchResponses(items=items, total=len(docs))

    async def similarity_search(
        self,
        dataset: Dataset,
        vector_settings: VectorSettings,
        value: Optional[List[float]] = None,
        record: Optional[Record] = None,
        query: Optional[Union[TextQuery, str]] = None,
        filter: Optional[Filter] = None,
        max_results: int = 100,
        order: SimilarityOrder = SimilarityOrder.most_similar,
        threshold: Optional[float] = None,
    ) -> SearchResponses:
        if bool(value) == bool(record):
            raise ValueError("Must provide either vector value or record to compute the similarity search")
        if record is not None:
            value = record.vector_value_by_vector_settings(vector_settings)
        if not value:
            raise ValueError("Cannot find a vector value to apply with provided info")

        scored = []
        for doc in self._select(dataset, query, filter):
            vector = doc["vectors"].get(vector_settings.id)
            if vector is None or (record is not None and doc["id"] == str(record.id)):
                continue
            score = _cosine(value, vector)
            if threshold is None or score >= threshold:
                scored.append((score, doc["id"]))
        scored.sort(key=lambda s: s[0], reverse=order == SimilarityOrder.most_similar)
        items = [SearchResponseItem(record_id=UUID(i), score=s) for s, i in scored[:max_results]]
        return SearchResponses(items=items, total=len(items))

    async def compute_metrics_for(self, metadata_property: MetadataProperty) -> MetadataMetrics:
        name = metadata_property.name
        values = [doc["metadata"].get(name) for doc in self._index(metadata_property.dataset.id).values()]
        values = [v for v in values if v is not None]
        if metadata_property.type == MetadataPropertyType.terms:
            return _terms_metrics(values)
        metrics_class = (
            IntegerMetadataMetrics if metadata_property.type == MetadataPropertyType.integer else FloatMetadataMetrics
        )
        numbers = [v for v in values if isinstance(v, (int, float))]
        return metrics_class(min=min(numbers, default=None), max=max(numbers, default=None))
