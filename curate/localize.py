"""localize: adapt culture-specific references to a target country (``--localize MY``).

Currency, personal names, places, institutions, holidays and units are rewritten to the target
country's equivalents *where the text depends on them* (MYChatGPT asked for Western and Korean facts
to become Malaysian); everything else is left as it is. The model returns the rewritten texts and
the list of changes it made, keyed like the input::

    {"texts": {"1": "...", "2": "..."},
     "changes": [{"key": "1", "from": "$20", "to": "RM90", "kind": "currency"}]}

Checks per key: every protected token (code, URLs, placeholders, formulas) kept, the text still in
the row's language, a changed text has its changes listed, and each listed change's ``to`` is in the
text. Rows with changes get ``"localized"`` in ``meta.flags`` and ``meta.localized`` =
``{country, changes: [{field, from, to, kind}], before: {field: text}}``. A row the model could not
localize validly is kept as it was, flagged ``localize_failed`` with the reason (localization is an
adaptation, not a reason to lose a row); rows waiting on Batch API files are quarantined ``pending``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from pydantic import BaseModel, Field as PField

from curate import io, schemas
from curate.llm import Engine, EngineConfig, Invalid, Request
from curate.translate import (LANG_NAMES, SENTINEL, Contract, Outcome, _quarantine_row, needs_model, path_name,
                              protect, read_rows, restore, set_field, text_fields, write_outcome)

COUNTRIES = {
    "MY": ("Malaysia", "ringgit (RM), Malaysian names (Malay, Chinese and Indian Malaysian names), Malaysian "
                       "cities and states, Malaysian institutions (e.g. Bank Negara Malaysia, KKM, JPJ, LHDN, "
                       "SPM exams), Malaysian holidays (Hari Raya Aidilfitri, Deepavali, Tahun Baru Cina, "
                       "Hari Merdeka) and metric units"),
}


class Change(BaseModel):
    key: str
    from_: str = PField(alias="from")
    to: str
    kind: str = "other"


class LocalizeReply(BaseModel):
    texts: dict[str, str]
    changes: list[Change] = []


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip()


class LocalizeContract:
    def __init__(self, country: str = "MY", lang: str = "ms"):
        country = country.upper()
        if country not in COUNTRIES:
            raise ValueError(f"unknown country {country!r}; known: {', '.join(COUNTRIES)}")
        self.country, self.lang = country, lang
        self.lang_check = Contract(lang, check_numbers=False)

    def system(self) -> str:
        name, hints = COUNTRIES[self.country]
        return "\n".join([
            f"You localize texts of a training dataset for readers in {name}.",
            "Where a text depends on a culture-specific reference (currency and prices, personal names, "
            "places, institutions, holidays, units of measure), rewrite it to the equivalent in "
            f"{name}: {hints}. Convert amounts and units sensibly. Leave everything else exactly as it is; "
            "do not localize texts that do not depend on such references.",
            f"Keep the language ({LANG_NAMES.get(self.lang, self.lang)}). Tokens like ⟦1⟧ stand for code, "
            "URLs or placeholders: copy each exactly once.",
            'The user sends a JSON object of texts. Reply with one JSON object: {"texts": {same keys: the '
            'localized or unchanged text}, "changes": [{"key": "...", "from": "original phrase", "to": '
            '"new phrase", "kind": "currency|name|place|institution|holiday|unit|other"}]}. List every '
            'change; use "changes": [] when nothing needed changing.',
        ])

    def check_key(self, src: str, mapping: dict, out: str, changes: list[Change]) -> str | None:
        if not out.strip():
            return "the text is empty"
        if Counter(SENTINEL.findall(out)) != Counter(mapping.keys()):
            return "protected tokens ⟦n⟧ not kept exactly once each"
        err = self.lang_check.check_lang(out)
        if err:
            return err
        if _norm(out) != _norm(src) and not changes:
            return "the text was changed but no change is listed for it"
        for c in changes:
            if _norm(c.to) and _norm(c.to).lower() not in _norm(out).lower():
                return f"listed change to {c.to!r} does not appear in the text"
        return None

    def validator(self, units: list[tuple[str, dict]]):
        def validate(value: LocalizeReply, reply) -> LocalizeReply:
            keys = [str(i + 1) for i in range(len(units))]
            errors = []
            if sorted(value.texts) != sorted(keys):
                errors.append(f"texts must have exactly the keys {keys}")
            by_key: dict[str, list[Change]] = {}
            for c in value.changes:
                if c.key not in keys:
                    errors.append(f"change for unknown key {c.key!r}")
                by_key.setdefault(c.key, []).append(c)
            for k, (src, mapping) in zip(keys, units):
                if k in value.texts:
                    bad = self.check_key(src, mapping, value.texts[k], by_key.get(k, []))
                    if bad:
                        errors.append(f"key {k}: {bad}")
            if errors:
                raise Invalid("; ".join(errors))
            return value
        return validate


def localize_rows(rows_by_kind: dict[str, list[dict]], engine: Engine, country: str = "MY", lang: str = "ms",
                  max_chars: int = 2500, max_units: int = 16) -> Outcome:
    """Localize rows in memory; one request per row (its fields keyed ``"1"``, ``"2"``, ...)."""
    contract = LocalizeContract(country, lang)
    flat = [(k, r) for k, rows in rows_by_kind.items() for r in rows]
    requests, plans = [], []
    for ri, (kind, row) in enumerate(flat):
        units = []
        for path, text in text_fields(kind, row):
            if not text or not text.strip():
                continue
            protected, mapping = protect(text, numbers_in_formulas=False)
            if needs_model(protected):
                units.append((path, protected, mapping))
        if not units:
            continue
        # long rows go in several requests of at most max_chars / max_units
        group: list = []
        size = 0
        groups = []
        for u in units:
            if group and (size + len(u[1]) > max_chars or len(group) >= max_units):
                groups.append(group)
                group, size = [], 0
            group.append(u)
            size += len(u[1])
        groups.append(group)
        for gi, g in enumerate(groups):
            payload = json.dumps({str(i + 1): u[1] for i, u in enumerate(g)}, ensure_ascii=False)
            requests.append(Request(
                key=f"{ri}:{gi}", messages=[{"role": "system", "content": contract.system()},
                                            {"role": "user", "content": payload}],
                params={"temperature": 0, "response_format": {"type": "json_object"}},
                schema=LocalizeReply, validate=contract.validator([(u[1], u[2]) for u in g]), data=(ri, g)))
    results = engine.run(requests) if requests else []
    per_row: dict[int, list] = {}
    for res in results:
        ri, g = res.data
        per_row.setdefault(ri, []).append((g, res))
    out_rows: dict[str, list[dict]] = {k: [] for k in rows_by_kind}
    quarantine: list[dict] = []
    stats = Counter()
    for ri, (kind, row) in enumerate(flat):
        outcomes = per_row.get(ri, [])
        pending = [r for _, r in outcomes if r.code in ("batch", "budget")]
        if pending:
            quarantine.append(_quarantine_row("localize", kind, row, "pending", pending[0].error or "pending"))
            stats["pending"] += 1
            continue
        failed = [r for _, r in outcomes if not r.ok]
        new = {**row, "messages": [dict(m) for m in row["messages"]]} if kind == "chat" else {**row}
        if kind == "rm":
            new["completions"] = list(row.get("completions") or [])
        if failed:
            new["meta"] = schemas.merge_meta(row.get("meta"), flags=["localize_failed"],
                                             localize_error=f"{failed[0].code}: {failed[0].error}")
            stats["failed"] += 1
            out_rows[kind].append(new)
            continue
        changes, before = [], {}
        for g, res in outcomes:
            by_key: dict[str, list[Change]] = {}
            for c in res.value.changes:
                by_key.setdefault(c.key, []).append(c)
            for i, (path, protected, mapping) in enumerate(g):
                k = str(i + 1)
                out = res.value.texts[k]
                if _norm(out) == _norm(protected):
                    continue
                name = path_name(path)
                before[name] = dict(text_fields(kind, row))[path]
                set_field(new, path, restore(out, mapping))
                changes += [{"field": name, "from": c.from_, "to": c.to, "kind": c.kind} for c in by_key.get(k, [])]
        if before:
            new["meta"] = schemas.merge_meta(row.get("meta"), flags=["localized"],
                                             localized={"country": contract.country, "changes": changes,
                                                        "before": before})
            stats["rows_localized"] += 1
        else:
            stats["rows_unchanged"] += 1
        out_rows[kind].append(new)
    frames = {k: schemas.from_rows(k, rows) for k, rows in out_rows.items()}
    report = {"stage": "localize", "country": contract.country, "rows_in": len(flat),
              "rows_out": sum(len(v) for v in out_rows.values()), "quarantined": len(quarantine),
              "quarantine_codes": {"pending": len(quarantine)} if quarantine else {},
              "rows": dict(stats), "requests": len(requests), "llm": engine.report()}
    return Outcome(frames, quarantine, report)


def localize_dataset(inp: str | Path, out_dir: str | Path, config: EngineConfig, country: str = "MY",
                     lang: str = "ms", block_rows: int = 20_000) -> tuple[Outcome, Engine]:
    """Read ``inp`` (``block_rows`` rows at a time), localize, write ``out_dir``; return (outcome, engine)."""
    import polars as pl

    from curate.translate import _add_reports, iter_blocks

    io.check_output(out_dir, [inp])
    data = io.read_input(inp)
    engine = Engine(config, description=f"localize -> {country}")
    frames: dict[str, list] = {}
    quarantine: list[dict] = []
    report = None
    for block in iter_blocks(data, block_rows):
        part = localize_rows(block, engine, country=country, lang=lang)
        quarantine += part.quarantine
        report = _add_reports(report, part.report)
        for kind, df in part.frames.items():
            frames.setdefault(kind, []).append(df)
    report = report or {}
    report["llm"] = engine.report()
    outcome = Outcome({k: pl.concat(v) for k, v in frames.items()}, quarantine, report)
    write_outcome(outcome, Path(out_dir), inp, data, stage="localize")
    return outcome, engine
