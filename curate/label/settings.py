"""Argilla dataset settings for each labelling task, and how rows become records.

Tasks (``--kind``):

* ``review``  SFT rows: fields ``instruction``, ``input``, ``output``; chat rows: one chat field
  ``conversation``. Questions: ``quality`` (1-5 rating), ``correction`` (text: a corrected output,
  for chats the corrected last answer) and ``flags`` (multi-label: the clean rule codes; the codes a
  row already carries in ``meta.flags`` come pre-filled as suggestions, scored with the rule's
  confidence: :func:`flag_scores`).
* ``ranking`` RM rows: fields ``prompt`` and ``completion_1`` .. ``completion_N`` (N = the most
  completions of any row); a ``ranking`` question over them, the row's ``ranks`` as a suggestion
  with the ranks themselves, ties included (:class:`RankingSuggestion`, :func:`suggested_ranks`).
* ``reflect`` rows made by ``curate reflect`` (``meta.critique`` and the old answer): the turns
  before the reviewed user turn (``context``), the turn itself (``prompt``), the old and new answer
  side by side (``comparison``), the ``critique``; a ``preference`` question (new / old / tie).

Every record carries metadata for filtering in the UI (``source``, ``format``, ``lang``, ``flags``,
``judge``) and, as extra metadata, the full row (``curate_row``) so that ``curate pull`` rebuilds
it exactly. Judge scores (``meta.judge``) become suggestions.
"""

from __future__ import annotations

import html
import re
from pathlib import PurePath
from typing import Any

import argilla as rg
import orjson

from curate import schemas
from curate.errors import UserError

TASKS = ("review", "ranking", "reflect")
ROW_KEY = "curate_row"          # extra metadata holding the whole row as JSON
QUALITY = [1, 2, 3, 4, 5]
PREFERENCES = {"new": "The new (reflected) answer is better",
               "old": "The old answer is better",
               "tie": "About the same"}

# Rule codes offered as labels when the clean registry cannot be imported (codes seen in the data
# are always added).
FALLBACK_CODES = (
    "noinput_marker", "label_prefix", "empty_output", "empty_prompt", "na_output", "mojibake",
    "literal_escapes", "control_chars", "needs_internet", "merged_instruction", "empty_code",
    "media_request", "wrong_math", "unclear_instruction", "refusal", "wrong_language", "indonesian",
    "near_duplicate",
)

# Where the old answer of a reflected row may live in ``meta`` (first found wins).
OLD_ANSWER_KEYS = ("old_answer", "original_answer", "old_output", "old")


def rule_codes() -> list[str]:
    """The clean rule codes: from the clean registry when it is available, else a fixed list."""
    try:
        from curate.clean import registry  # type: ignore[attr-defined]
        codes = list(getattr(registry, "BY_CODE", {}) or [])
        if codes:
            return sorted(codes)
    except Exception:  # the clean stage is optional here
        pass
    return sorted(FALLBACK_CODES)


# ---------------------------------------------------------------- reading rows

CLEAN_AGENT = "curate clean"
_CONFIDENCE = re.compile(r"confidence\s*[=:]?\s*([0-9]*\.?[0-9]+)")


def _score(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return min(1.0, max(0.0, float(value)))
    return None


def _flag_score(flag: Any) -> float:
    """How sure the rule was: a ``confidence``/``score`` of its own, the ``confidence X`` the language
    rules write in their evidence, else 1.0 (a pattern rule either matched or did not)."""
    if isinstance(flag, dict):
        for key in ("confidence", "score"):
            if _score(flag.get(key)) is not None:
                return _score(flag[key])
        m = _CONFIDENCE.search(str(flag.get("evidence") or ""))
        if m:
            return _score(float(m.group(1)))
    elif _score(flag) is not None:                 # a code -> confidence map
        return _score(flag)
    return 1.0


def flag_scores(meta: dict[str, Any]) -> dict[str, float]:
    """Rule code -> confidence (0-1) of the flags in ``meta.flags`` (the highest when a rule flagged
    several fields). ``meta.flags`` may be a list of codes, of ``{rule|code, evidence, ...}`` objects
    (what ``curate clean`` writes), or a code -> confidence map."""
    flags = meta.get("flags")
    pairs: list[tuple[str, float]] = []
    if isinstance(flags, dict):
        pairs = [(str(k), _flag_score(v)) for k, v in flags.items()]
    elif isinstance(flags, list):
        for f in flags:
            if isinstance(f, str):
                pairs.append((f, 1.0))
            elif isinstance(f, dict):
                code = f.get("code") or f.get("rule")
                if code:
                    pairs.append((str(code), _flag_score(f)))
    elif isinstance(flags, str) and flags:
        pairs = [(flags, 1.0)]
    out: dict[str, float] = {}
    for code, score in pairs:
        out[code] = max(score, out.get(code, 0.0))
    return dict(sorted(out.items()))


def flag_codes(meta: dict[str, Any]) -> list[str]:
    """Rule codes in ``meta.flags``, sorted (see :func:`flag_scores` for the accepted shapes)."""
    return list(flag_scores(meta))


def judge_score(meta: dict[str, Any]) -> float | None:
    """A 1-5 score from ``meta.judge``: ``score``, else the mean of its numeric sub-scores."""
    judge = meta.get("judge")
    if isinstance(judge, (int, float)) and not isinstance(judge, bool):
        return float(judge)
    if not isinstance(judge, dict):
        return None
    for key in ("score", "overall", "quality"):
        v = judge.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    subs = [v for k, v in judge.items() if k in ("correctness", "helpfulness", "relevance", "fluency")
            and isinstance(v, (int, float)) and not isinstance(v, bool)]
    return sum(subs) / len(subs) if subs else None


def judge_text(meta: dict[str, Any]) -> str | None:
    judge = meta.get("judge")
    if isinstance(judge, dict):
        for key in ("rationale", "reason", "explanation"):
            if isinstance(judge.get(key), str):
                return judge[key]
    return None


def reflect_parts(meta: dict[str, Any]) -> tuple[str | None, str | None]:
    """``(critique, old_answer)`` of a reflected row, from ``meta`` or ``meta.reflect``."""
    for where in (meta, meta.get("reflect") if isinstance(meta.get("reflect"), dict) else {}):
        critique = where.get("critique")
        old = next((where[k] for k in OLD_ANSWER_KEYS if isinstance(where.get(k), str)), None)
        if isinstance(critique, str) and critique.strip():
            return critique, old
    return None, None


def reflect_pair(kind: str, row: dict[str, Any]) -> tuple[str, str, str, int]:
    """``(prompt, new answer, old answer, index of the new answer)`` of a reflected SFT or RM row.

    SFT rows: the prompt is instruction (+ input), the new answer the output, the old one
    ``meta.old_answer``. RM rows: two completions; the new answer is the one the row ranks best
    (reflect ranks its rewrite over the original), the first on a tie or without ranks.
    """
    if kind == "rm":
        completions = list(row.get("completions") or ["", ""])[:2]
        ranks = row.get("ranks") or [0, 1]
        new_i = 1 if ranks[1] is not None and ranks[0] is not None and ranks[1] < ranks[0] else 0
        return row.get("prompt") or "", completions[new_i] or "", completions[1 - new_i] or "", new_i
    _, old = reflect_parts(schemas.meta_of(row.get("meta")))
    prompt = row.get("instruction") or ""
    if (row.get("input") or "").strip():
        prompt = f"{prompt}\n\n{row['input']}"
    return prompt, row.get("output") or "", old or "", 0


def reflect_context(meta: dict[str, Any]) -> list[dict[str, str]]:
    """The turns before the reviewed one (``meta.context`` or ``meta.reflect.context``), if kept."""
    for where in (meta, meta.get("reflect") if isinstance(meta.get("reflect"), dict) else {}):
        ctx = where.get("context")
        if isinstance(ctx, list):
            return [{"role": str(m.get("role", "user")), "content": str(m.get("content", ""))}
                    for m in ctx if isinstance(m, dict)]
    return []


def is_reflect_row(kind: str, row: dict[str, Any]) -> bool:
    meta = schemas.meta_of(row.get("meta"))
    critique, old = reflect_parts(meta)
    if critique is None:
        return False
    if kind == "sft":
        return old is not None
    return kind == "rm" and len(row.get("completions") or []) == 2


# ---------------------------------------------------------------- settings

def _metadata(task: str) -> list:
    props: list = [rg.TermsMetadataProperty(name="source", title="Source file"),
                   rg.TermsMetadataProperty(name="format", title="Source format"),
                   rg.TermsMetadataProperty(name="lang", title="Language"),
                   rg.TermsMetadataProperty(name="rule_flags", title="Rule flags"),
                   rg.FloatMetadataProperty(name="judge_score", title="Judge score (1-5)")]
    if task == "ranking":
        props.append(rg.IntegerMetadataProperty(name="completions", title="Completions"))
    return props


def build_settings(task: str, kind: str, *, completions: int = 0, codes: list[str] | None = None,
                   overlap: int = 1) -> rg.Settings:
    """The Argilla settings of a task for rows of ``kind``."""
    distribution = rg.TaskDistribution(min_submitted=max(1, overlap))
    if task == "review":
        if kind == "chat":
            fields = [rg.ChatField(name="conversation", title="Conversation")]
            correction = "Corrected last assistant answer (leave empty if it is fine)"
        else:
            fields = [rg.TextField(name="instruction", title="Instruction", use_markdown=True),
                      rg.TextField(name="input", title="Input", use_markdown=True, required=False),
                      rg.TextField(name="output", title="Output", use_markdown=True)]
            correction = "Corrected output (leave empty if it is fine)"
        questions = [
            rg.RatingQuestion(name="quality", values=QUALITY, title="Quality (1 = unusable, 5 = perfect)"),
            rg.TextQuestion(name="correction", title=correction, required=False, use_markdown=True),
            rg.MultiLabelQuestion(name="flags", labels=list(codes or rule_codes()), required=False,
                                  title="Problems (clean rule codes)", visible_labels=None),
        ]
        guidelines = ("Rate the answer, fix it in 'correction' when it is wrong or not in good Malay, "
                      "and tick every problem that applies. Pre-filled problems come from `curate clean`.")
    elif task == "ranking":
        n = max(2, completions)
        fields = [rg.TextField(name="prompt", title="Prompt", use_markdown=True)]
        fields += [rg.TextField(name=f"completion_{i}", title=f"Completion {i}", use_markdown=True,
                                required=i <= 2) for i in range(1, n + 1)]
        questions = [rg.RankingQuestion(name="ranking", values={f"completion_{i}": f"Completion {i}"
                                                                for i in range(1, n + 1)},
                                        title="Rank the completions, best first (ties allowed)")]
        guidelines = ("Rank the completions from best to worst. Empty completions do not exist for this "
                      "prompt: put them last; they are ignored when the answers come back.")
    elif task == "reflect":
        fields = [rg.ChatField(name="context", title="Earlier turns", required=False),
                  rg.TextField(name="prompt", title="User turn under review", use_markdown=True),
                  rg.TextField(name="comparison", title="Old answer | New answer", use_markdown=True),
                  rg.TextField(name="critique", title="Critique (in hindsight)", use_markdown=True,
                               required=False)]
        questions = [rg.LabelQuestion(name="preference", labels=dict(PREFERENCES),
                                      title="Which answer is better?")]
        guidelines = ("The new answer was rewritten after reading the rest of the conversation. "
                      "Pick the better answer to the user turn, as if the chat started there.")
    else:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    return rg.Settings(fields=fields, questions=questions, metadata=_metadata(task), guidelines=guidelines,
                       allow_extra_metadata=True, distribution=distribution)


def task_of_dataset(dataset: rg.Dataset) -> tuple[str, str]:
    """``(task, row kind)`` of a dataset curate pushed, read from its questions and fields."""
    questions = {q.name for q in dataset.settings.questions}
    fields = {f.name for f in dataset.settings.fields}
    if "ranking" in questions:
        return "ranking", "rm"
    if "preference" in questions:
        return "reflect", "reflect"
    if "quality" in questions:
        return "review", "chat" if "conversation" in fields else "sft"
    raise UserError(f"dataset {dataset.name!r} was not made by curate push (its questions: {sorted(questions)}).")


def ranking_width(dataset: rg.Dataset) -> int:
    return sum(1 for f in dataset.settings.fields if f.name.startswith("completion_"))


def labels_of(dataset: rg.Dataset, question: str) -> list[str]:
    for q in dataset.settings.questions:
        if q.name == question:
            return list(q.labels)
    return []


# ---------------------------------------------------------------- records

def _side_by_side(old: str, new: str) -> str:
    def cell(text: str) -> str:
        return html.escape(text).replace("\n", "<br>")
    return ("<table><thead><tr><th>Old answer</th><th>New answer</th></tr></thead><tbody><tr>"
            f'<td style="vertical-align:top">{cell(old)}</td><td style="vertical-align:top">{cell(new)}</td>'
            "</tr></tbody></table>")


def _metadata_of(row: dict[str, Any], meta: dict[str, Any], task: str) -> dict[str, Any]:
    md: dict[str, Any] = {"source": PurePath(row["source"]).name if row.get("source") else None,
                          "format": row.get("format"), "lang": row.get("lang")}
    codes = flag_codes(meta)
    if codes:
        md["rule_flags"] = codes
    score = judge_score(meta)
    if score is not None:
        md["judge_score"] = float(score)
    if task == "ranking":
        md["completions"] = len(row.get("completions") or [])
    md = {k: v for k, v in md.items() if v is not None}
    md[ROW_KEY] = orjson.dumps(row).decode()
    return md


class RankingSuggestion(rg.Suggestion):
    """A ranking suggestion that keeps its ranks, ties included.

    The SDK sends a ranking suggestion as the order of its values only (``{"value": v}`` items), so
    the UI shows empty rank slots; the server stores ``{"value": v, "rank": r}`` items as given.
    """

    def __init__(self, question_name: str, ranked: list[tuple[str, int | None]], agent: str | None = None):
        super().__init__(question_name, [v for v, _ in ranked], agent=agent)
        self.ranked = list(ranked)

    def api_model(self):
        model = super().api_model()
        return model.model_copy(update={"value": [{"value": v, "rank": r} for v, r in self.ranked]})


def suggested_ranks(ranks: list[int | None] | None, n: int, width: int) -> list[tuple[str, int | None]]:
    """``(completion field, Argilla rank)`` best first, from a row's 0-based ``ranks`` (ties allowed).

    Argilla ranks run from 1 and ties share a rank, so the row's ranks become dense ranks + 1. The
    completion fields a row lacks (the dataset has ``width``) come last, tied below every real
    one; a completion the row has no rank for gets none. Empty when the row has no ranks at all.
    """
    known = {i: r for i, r in enumerate((ranks or [])[:n]) if r is not None}
    if not known:
        return []
    dense = {r: k for k, r in enumerate(sorted(set(known.values())), start=1)}
    out = sorted(((f"completion_{i + 1}", dense[r]) for i, r in known.items()), key=lambda x: (x[1], x[0]))
    out += [(f"completion_{i + 1}", None) for i in range(n) if i not in known]
    last = len(dense) + 1
    out += [(f"completion_{i}", last) for i in range(n + 1, width + 1)]
    return out


def record_fields(task: str, kind: str, row: dict[str, Any]) -> dict[str, Any]:
    """What annotators read for a row: the record's fields (see :func:`build_settings`)."""
    if task == "review":
        if kind == "chat":
            return {"conversation": [{"role": m["role"], "content": m["content"] or " "} for m in row["messages"] or []]}
        fields = {"instruction": row.get("instruction") or "", "output": row.get("output") or ""}
        if (row.get("input") or "").strip():
            fields["input"] = row["input"]
        return fields
    if task == "ranking":
        fields = {"prompt": row.get("prompt") or ""}
        for i, text in enumerate(row.get("completions") or [], start=1):
            fields[f"completion_{i}"] = text if (text or "").strip() else "(empty)"
        return fields
    if task == "reflect":
        meta = schemas.meta_of(row.get("meta"))
        critique, _ = reflect_parts(meta)
        prompt, new, old, _ = reflect_pair(kind, row)
        fields = {"prompt": prompt, "comparison": _side_by_side(old or "", new or "")}
        if critique:
            fields["critique"] = critique
        context = reflect_context(meta)
        if context:
            fields["context"] = context
        return fields
    raise ValueError(f"unknown task {task!r}")


def record_of(task: str, kind: str, row: dict[str, Any], *, labels: set[str], width: int = 0,
              extra_metadata: dict[str, Any] | None = None) -> rg.Record:
    """One Argilla record for one row (its id is the row id, so a second push updates it)."""
    meta = schemas.meta_of(row.get("meta"))
    fields = record_fields(task, kind, row)
    suggestions: list[rg.Suggestion] = []
    score = judge_score(meta)
    if task == "review":
        if score is not None:
            suggestions.append(rg.Suggestion("quality", int(min(5, max(1, round(score)))), agent="curate judge",
                                             score=None))
        scores = {c: v for c, v in flag_scores(meta).items() if c in labels}
        if scores:
            suggestions.append(rg.Suggestion("flags", list(scores), score=list(scores.values()), agent=CLEAN_AGENT))
    elif task == "ranking":
        completions = row.get("completions") or []
        ranked = suggested_ranks(row.get("ranks"), len(completions), max(width, len(completions)))
        if ranked:
            suggestions.append(RankingSuggestion("ranking", ranked, agent=meta.get("ranked_by") or "source"))
    elif task == "reflect":
        preferred = None
        judge = meta.get("judge")
        if isinstance(judge, dict):
            preferred = next((judge[k] for k in ("preferred", "winner") if judge.get(k) in PREFERENCES), None)
        if preferred:
            suggestions.append(rg.Suggestion("preference", preferred, agent="curate judge"))
    else:
        raise ValueError(f"unknown task {task!r}")
    metadata = _metadata_of(row, meta, task)
    metadata.update(extra_metadata or {})
    return rg.Record(id=row["id"], fields=fields, metadata=metadata, suggestions=suggestions)
