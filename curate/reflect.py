"""reflect: rewrite chat answers in hindsight (SelfReflectionGPT's method), into SFT rows and preference pairs.

For every chat and every assistant answer that has later turns, the model sees the whole
conversation with three parts marked: **K** (the user turn under review), **L** (its answer) and
every later turn (**Q** later user turns, **A** later answers), and returns a JSON object::

    {"K": "<K copied unchanged>", "C": "<critique of L in the light of the later turns>",
     "L_new": "<a new answer to K, written as if in a fresh chat>"}

What SelfReflectionGPT did (``fixtures/selfreflection_*``: the conversation between ``[[[ ]]]``
brackets, "leave K unchanged", "respond in JSON") is kept; what is added to make it robust:

* a **system message** with the task, and the conversation as a **user message** whose turns are
  delimited by ``<turn n=... role=... part=...>`` tags (earlier context, K, L, Q/A), so turn
  content can never be mistaken for instructions about the format;
* a **pydantic contract** (:class:`Reflection`) plus checks, each failure fed back to the model
  (the engine's fix-up rounds) and, when every round fails, the raw reply quarantined:
  K unchanged after normalising whitespace (``k_changed``), C and L' non-empty
  (``empty_critique``/``empty_answer``), L' in the chat's language (``wrong_language``; a Malay chat
  must get Malay, not Indonesian), L' not a refusal (``refusal``, the clean stage's own patterns),
  not cut by the length limit (``truncated``), and JSON at all (``invalid_json``/``bad_shape``);
* a **token budget** (``max_context``, estimated like ``curate tokens``: chars/4, one per Hangul/CJK
  character): the far future turns are cut first, then the oldest earlier turns; every cut is
  marked in the prompt (``[... 3 later turns cut ...]``). When K, L and the first later turn
  alone do not fit, the answer is quarantined (``too_long``).

Which language L' must be in: the chat row's ``lang`` when set (e.g. ``ms`` after ``curate
translate``), else :func:`curate.langid.detect` over the whole chat. Malay-first: a chat read as
Indonesian gets a Malaysian Malay answer unless ``keep_indonesian`` (``--keep-indonesian``).
``other`` chats get no language check.

Output, per reviewed answer (a ``reviewed`` answer = an assistant turn right after a user turn, with
at least one later user turn; human-human, human-AI and AI-AI chats alike):

* ``sft``: ``instruction`` = K, ``input`` = the turns before K rendered as a transcript
  (``User: ...`` / ``Assistant: ...`` / ``System: ...``, blank line between turns; empty when K
  opens the chat), ``output`` = L'.
* ``rm``: ``prompt`` = the same transcript followed by ``User: K`` (just K when K opens the chat),
  ``completions`` = ``[L', L]``, ``ranks`` = ``[0, 1]`` (the rewrite ranked over the original).
* ``chat`` (only with ``chat=True`` / ``--chat``): the turns before K, K, then L'.

Every new row has a content id (:func:`curate.schemas.content_id`), the source chat's
``source``/``format``/``line``, ``lang`` = the target language, and in ``meta``: ``critique``
(C), ``old_answer`` (L), ``context`` (the turns before K as ``[{role, content}]``; the keys
``curate push --kind reflect`` reads), the RM row's ``rationale`` (= C) and ``ranked_by``, and
``reflect`` = ``{source_id, turn (0-based index of L in messages), k_turn, later_turns,
cut_later, cut_earlier, similarity, model}``.

``min_change`` skips pairs where L' is essentially L: ``similarity`` is difflib's ratio over the
lower-cased word sequences; a pair with ``1 - similarity < min_change`` is not written (it goes to
quarantine with code ``unchanged`` so nothing disappears silently).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from curate import io, schemas
from curate.llm import Engine, EngineConfig, Invalid, Request, Result, extract_json

STAGE = "reflect"

LANG_NAMES = {"ms": "Malay (Bahasa Melayu as written in Malaysia, not Indonesian)",
              "id": "Indonesian (Bahasa Indonesia)", "en": "English", "ko": "Korean"}

MALAY_RULES = ("Write standard Malaysian Malay, never Indonesian: kerana (not karena), wang (not uang), "
               "boleh (not bisa), sahaja (not saja), percuma (not gratis), kereta (not mobil), "
               "telefon (not telepon), bagaimana/mengapa, anda in lower case.")

SYSTEM = """You review one answer in a conversation in hindsight, then rewrite it.

The conversation is given between <conversation> tags, one <turn> per message. Parts:
- part="context": turns before the one under review (may be absent).
- part="K": the user turn under review.
- part="L": the assistant's answer to K, the answer you review.
- part="Q": later user turns; part="A": later assistant answers. They show what happened next:
  whether the user had to ask again, correct the assistant, clarify, or was confused or unhappy.
A line like [... 3 later turns cut ...] marks turns left out to save space.

Do three things:
1. "K": copy the text of K exactly, unchanged.
2. "C": a critique of L in the light of the later turns: what L got wrong, left out, misunderstood
   or should have asked or anticipated, judged by what the user said afterwards. Be specific.
3. "L_new": a new, better answer to K, written as if in a fresh chat: the user has said only the
   context turns and K. Use what the later turns revealed, but never mention them, the critique,
   the old answer or this review. A complete, direct, helpful answer; no refusal and no
   "as an AI language model" boilerplate.

Write "C" and "L_new" in {lang_name}.{lang_rules}
Reply with one JSON object only, no prose and no code fence around it:
{{"K": "<K unchanged>", "C": "<critique of L>", "L_new": "<new answer to K>"}}"""

SHORT_NAMES = {"ms": "Malay", "id": "Indonesian", "en": "English", "ko": "Korean", "other": "another language"}

ROLE_LABEL = {"user": "User", "assistant": "Assistant", "system": "System"}


class Reflection(BaseModel):
    """The reply contract: K unchanged, C the critique, L_new the new answer (``L`` accepted too)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    K: str
    C: str = Field(validation_alias=AliasChoices("C", "Criticism", "critique"))
    L_new: str = Field(validation_alias=AliasChoices("L_new", "L", "new_answer"))


# ---- text helpers ---------------------------------------------------------------------------------
_WS = re.compile(r"\s+")
_WORDS = re.compile(r"[^\W_]+", re.U)
_LETTER = re.compile(r"[^\W\d_]")


def norm_ws(text: str | None) -> str:
    return _WS.sub(" ", text or "").strip()


def similarity(a: str, b: str) -> float:
    """difflib ratio over lower-cased word sequences (1.0 = the same words in the same order)."""
    wa, wb = _WORDS.findall((a or "").lower()), _WORDS.findall((b or "").lower())
    if not wa and not wb:
        return 1.0
    return difflib.SequenceMatcher(None, wa, wb, autojunk=False).ratio()


_WIDE = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]")


def estimate_tokens(text: str) -> int:
    """Token estimate as ``curate tokens`` without a model: ceil(narrow chars / 4) + wide (Hangul/CJK) chars."""
    wide = len(_WIDE.findall(text))
    return -(-(len(text) - wide) // 4) + wide


def render_transcript(turns: list[dict[str, str]]) -> str:
    """Turns as ``User: ...`` / ``Assistant: ...`` paragraphs (the SFT input / RM prompt context)."""
    return "\n\n".join(f"{ROLE_LABEL.get(m['role'], m['role'].title())}: {m['content']}" for m in turns)


def rm_prompt(context: list[dict[str, str]], k: str) -> str:
    return k if not context else f"{render_transcript(context)}\n\nUser: {k}"


def is_refusal(text: str) -> bool:
    """The clean stage's refusal rule, applied to one text: its keyword prefilter (every alternative
    of the pattern holds a keyword; most replies hold none), then its pattern compiled once for ``re``
    (a one-row polars call compiled the regex again for every reply: ~0.4 ms)."""
    from curate.clean.rules.refusal import KEYWORDS, REFUSAL_RE

    low = text.lower()
    return any(k in low for k in KEYWORDS) and REFUSAL_RE.search(text) is not None


# ---- what is reviewed -------------------------------------------------------------------------------
@dataclasses.dataclass
class Item:
    """One answer under review: chat row ``row``, K at ``k``, L at ``k + 1`` in its messages."""

    row: dict[str, Any]
    k: int
    lang: str
    messages: list[dict[str, str]]
    first_ctx: int = 0  # index of the first earlier turn kept in the prompt
    last_later: int = 0  # index (exclusive) of the last later turn kept
    key: str = ""
    index: int = 0  # the chat's position among the input chats

    @property
    def K(self) -> str:
        return self.messages[self.k]["content"]

    @property
    def L(self) -> str:
        return self.messages[self.k + 1]["content"]

    @property
    def context(self) -> list[dict[str, str]]:
        return [{"role": m["role"], "content": m["content"]} for m in self.messages[:self.k]]


def review_points(messages: list[dict[str, str]]) -> list[int]:
    """Indices of K (user turns) whose next message is a non-empty answer followed by a later user turn."""
    points = []
    for i in range(len(messages) - 2):
        m, a = messages[i], messages[i + 1]
        if m["role"] != "user" or a["role"] != "assistant":
            continue
        if not norm_ws(m["content"]) or not norm_ws(a["content"]):
            continue
        if any(x["role"] == "user" and norm_ws(x["content"]) for x in messages[i + 2:]):
            points.append(i)
    return points


def chat_lang(row: dict[str, Any], keep_indonesian: bool = False, forced: str | None = None) -> str:
    """The language L' must be in (see the module docstring)."""
    from curate import langid

    if forced:
        return forced
    lang = row.get("lang")
    if not lang or lang == "und":
        text = "\n".join(m["content"] or "" for m in row.get("messages") or [])
        lang = langid.detect(text)[0]
    if lang == "id" and not keep_indonesian:
        lang = "ms"
    return lang


# ---- the prompt -----------------------------------------------------------------------------------
def _turn(n: int, role: str, part: str, content: str) -> str:
    return f'<turn n="{n}" role="{role}" part="{part}">\n{content}\n</turn>'


def _cut(n: int, where: str) -> str:
    return f"[... {n} {where} turn{'s' if n != 1 else ''} cut to fit the context budget ...]"


def user_message(item: Item) -> str:
    msgs = item.messages
    parts = ["<conversation>"]
    if item.first_ctx:
        parts.append(_cut(item.first_ctx, "earlier"))
    for i in range(item.first_ctx, item.k):
        parts.append(_turn(i + 1, msgs[i]["role"], "context", msgs[i]["content"]))
    parts.append(_turn(item.k + 1, "user", "K", item.K))
    parts.append(_turn(item.k + 2, "assistant", "L", item.L))
    for i in range(item.k + 2, item.last_later):
        m = msgs[i]
        part = "Q" if m["role"] == "user" else "A" if m["role"] == "assistant" else "context"
        parts.append(_turn(i + 1, m["role"], part, m["content"]))
    if item.last_later < len(msgs):
        parts.append(_cut(len(msgs) - item.last_later, "later"))
    parts.append("</conversation>")
    parts.append("Review L (the answer to K) in the light of the later turns, then reply with the JSON object.")
    return "\n".join(parts)


def system_message(lang: str) -> str:
    return SYSTEM.format(lang_name=LANG_NAMES.get(lang, "the language of the conversation"),
                         lang_rules=(" " + MALAY_RULES) if lang == "ms" else "")


def fit(item: Item, max_context: int | None, costs: list[int] | None = None) -> bool:
    """Choose the turns that fit ``max_context`` tokens: far future cut first, then the oldest context.

    Keeps K, L and at least the first later user turn (with the turns between); False when even that
    does not fit.
    """
    msgs = item.messages
    item.first_ctx, item.last_later = 0, len(msgs)
    if not max_context:
        return True
    first_q = next(i for i in range(item.k + 2, len(msgs)) if msgs[i]["role"] == "user")
    overhead = estimate_tokens(system_message(item.lang)) + 60
    cost = costs if costs is not None else turn_costs(msgs)
    total = overhead + sum(cost)
    while total > max_context and item.last_later > first_q + 1:
        item.last_later -= 1
        total -= cost[item.last_later]
    while total > max_context and item.first_ctx < item.k:
        total -= cost[item.first_ctx]
        item.first_ctx += 1
    return total <= max_context


def turn_costs(msgs: list[dict[str, str]]) -> list[int]:
    """Estimated prompt tokens of each turn (its text plus the tag around it)."""
    return [estimate_tokens(m["content"]) + 12 for m in msgs]


# ---- the contract ---------------------------------------------------------------------------------
class Checker:
    """Checks a :class:`Reflection` for one item; ``problems`` gives ``[(code, message)]``."""

    def __init__(self, item: Item):
        self.item = item

    def problems(self, r: Reflection, finish_reason: str | None = None) -> list[tuple[str, str]]:
        from curate import langid

        out: list[tuple[str, str]] = []
        if finish_reason == "length":
            out.append(("truncated", "the reply was cut off by the length limit; reply with the complete JSON object "
                                     "and a shorter L_new"))
        if norm_ws(r.K) != norm_ws(self.item.K):
            out.append(("k_changed", "K was changed: copy the user turn marked part=\"K\" exactly, unchanged, "
                                     "into \"K\""))
        if not norm_ws(r.C):
            out.append(("empty_critique", "\"C\" is empty: write the critique of L"))
        new = r.L_new or ""
        if not norm_ws(new):
            out.append(("empty_answer", "\"L_new\" is empty: write the new answer to K"))
            return out
        want = self.item.lang
        if want in LANG_NAMES and len(_LETTER.findall(new)) >= 20:
            got, _ = langid.detect(new)
            if got not in (want, "und"):
                msg = f"\"L_new\" is in {SHORT_NAMES.get(got, got)} ({got}); write it in {LANG_NAMES[want]}"
                if want == "ms" and got == "id":
                    msg += ". " + MALAY_RULES
                out.append(("wrong_language", msg))
        if is_refusal(new):
            out.append(("refusal", "\"L_new\" is a refusal or assistant boilerplate (\"as an AI language "
                                   "model\", \"I cannot help with that\"); answer K directly and helpfully"))
        return out

    def validate(self, value: Reflection, reply) -> Reflection:
        bad = self.problems(value, reply.finish_reason)
        if bad:
            raise Invalid("; ".join(m for _, m in bad))
        return value

    def diagnose(self, text: str | None, finish_reason: str | None = None) -> list[tuple[str, str]]:
        """The problems of a raw reply (for the quarantine code)."""
        from pydantic import ValidationError

        if text is None:
            return [("llm_error", "no reply")]
        try:
            data = extract_json(text)
        except Invalid as exc:
            return [("invalid_json", str(exc))]
        try:
            value = Reflection.model_validate(data)
        except ValidationError as exc:
            return [("bad_shape", f"the JSON does not match the contract: {exc.errors()[0].get('msg')}")]
        return self.problems(value, finish_reason)


# ---- the stage ------------------------------------------------------------------------------------
@dataclasses.dataclass
class Outcome:
    frames: dict[str, pl.DataFrame]
    quarantine: list[dict]
    report: dict[str, Any]


def _quarantine(row: dict, code: str, reason: str, evidence: Any = None, raw: str | None = None) -> dict:
    q = {"stage": STAGE, "code": code, "reason": reason, "evidence": evidence, "id": row.get("id"),
         "source": row.get("source"), "line": row.get("line"), "where": f"{row.get('source')}:{row.get('line')}",
         "row": {**row, "kind": row.get("kind") or "chat"}}
    if raw is not None:
        q["raw"] = raw
    return q


def build_requests(items: list[Item], temperature: float = 0.0, max_tokens: int | None = None) -> list[Request]:
    params: dict[str, Any] = {"temperature": temperature, "response_format": {"type": "json_object"}}
    if max_tokens:
        params["max_tokens"] = max_tokens
    reqs = []
    for it in items:
        checker = Checker(it)
        reqs.append(Request(key=it.key, messages=[{"role": "system", "content": system_message(it.lang)},
                                                   {"role": "user", "content": user_message(it)}],
                            params=params, schema=Reflection, validate=checker.validate, data=(it, checker)))
    return reqs


def reflect_rows(chats: list[dict[str, Any]], engine: Engine, *, max_context: int | None = 6000,
                 min_change: float = 0.05, keep_indonesian: bool = False, lang: str | None = None,
                 chat: bool = False, temperature: float = 0.0, max_tokens: int | None = None) -> Outcome:
    """Reflect every reviewable answer of ``chats`` (chat row dicts); return frames, quarantine, report.

    Chats are independent of each other but for the duplicate check (``seen``): the quarantine lists
    answers in chat order, so the run over a list of chats equals the runs over its consecutive parts
    put together (what ``--executor ray`` does) once later duplicates are dropped."""
    quarantined: list[tuple[tuple[int, int], dict]] = []  # ((chat, turn), entry), sorted at the end
    codes: Counter = Counter()
    stats: Counter = Counter()
    items: list[Item] = []
    for ri, row in enumerate(chats):
        msgs = [{"role": m["role"], "content": m["content"] or ""} for m in row.get("messages") or []]
        points = review_points(msgs)
        stats["chats"] += 1
        if not points:
            stats["chats_without_reviewable_answer"] += 1
            continue
        target = chat_lang(row, keep_indonesian, lang)
        costs = turn_costs(msgs) if max_context else None
        for k in points:
            it = Item(row=row, k=k, lang=target, messages=msgs, key=f"{ri}:{row['id']}:{k + 1}", index=ri)
            stats["answers"] += 1
            if not fit(it, max_context, costs):
                quarantined.append(((ri, k), _quarantine(row, "too_long", f"turn {k + 2}: K, L and the next user "
                                                         f"turn alone exceed --max-context {max_context} tokens",
                                                         evidence={"turn": k + 1})))
                codes["too_long"] += 1
                continue
            stats["later_turns_cut"] += len(msgs) - it.last_later
            stats["earlier_turns_cut"] += it.first_ctx
            stats["answers_cut"] += int(it.first_ctx > 0 or it.last_later < len(msgs))
            items.append(it)
    requests = build_requests(items, temperature, max_tokens)
    results: list[Result] = engine.run(requests) if requests else []
    out: dict[str, list[dict]] = {"sft": [], "rm": []}
    if chat:
        out["chat"] = []
    seen: dict[str, set[str]] = {k: set() for k in out}
    model = engine.config.model
    for res in results:
        it, checker = res.data
        row = it.row
        where = {"turn": it.k + 1, "k_turn": it.k}
        if not res.ok:
            if res.code in ("batch", "budget"):
                code, reason = "pending", res.error or "not answered yet"
            elif res.code == "invalid":
                probs = checker.diagnose(res.text, res.finish_reason)
                code = probs[0][0] if probs else "invalid_reply"
                reason = res.error or "; ".join(m for _, m in probs)
            else:
                code, reason = "llm_error", res.error or res.code
            quarantined.append(((it.index, it.k), _quarantine(row, code, f"turn {it.k + 2}: {reason}", evidence=where,
                                                              raw=res.text)))
            codes[code] += 1
            continue
        r: Reflection = res.value
        new, old, crit = r.L_new.strip(), it.L, r.C.strip()
        sim = similarity(new, old)
        if 1.0 - sim < min_change:
            quarantined.append(((it.index, it.k), _quarantine(
                row, "unchanged", f"turn {it.k + 2}: the new answer is essentially the old one (similarity "
                f"{sim:.3f}, --min-change {min_change})", evidence={**where, "similarity": round(sim, 4)}, raw=res.text)))
            codes["unchanged"] += 1
            continue
        context = it.context
        prov = {"source_id": row.get("id"), "turn": it.k + 1, "k_turn": it.k,
                "later_turns": len(it.messages) - it.k - 2, "cut_later": len(it.messages) - it.last_later,
                "cut_earlier": it.first_ctx, "similarity": round(sim, 4), "model": model}
        common = {"lang": it.lang, "source": row.get("source"), "format": row.get("format"), "line": row.get("line")}
        base_meta = {"critique": crit, "old_answer": old, "context": context, "reflect": prov}
        new_rows = {
            "sft": {**common, "instruction": it.K, "input": render_transcript(context), "output": new,
                    "meta": base_meta},
            "rm": {**common, "prompt": rm_prompt(context, it.K), "completions": [new, old], "ranks": [0, 1],
                   "meta": {**base_meta, "rationale": crit, "ranked_by": "curate reflect"}},
        }
        if chat:
            new_rows["chat"] = {**common, "messages": [*context, {"role": "user", "content": it.K},
                                                       {"role": "assistant", "content": new}], "meta": base_meta}
        for kind, nr in new_rows.items():
            nr["id"] = schemas.content_id(kind, nr)
            if nr["id"] in seen[kind]:
                stats[f"duplicate_{kind}"] += 1
                continue
            seen[kind].add(nr["id"])
            out[kind].append(nr)
        stats["reflected"] += 1
    quarantine = [q for _, q in sorted(quarantined, key=lambda t: t[0])]
    frames = {k: schemas.from_rows(k, rows) for k, rows in out.items()}
    report = {
        "stage": STAGE, "rows_in": len(chats), "rows_out": sum(len(v) for v in out.values()),
        "rows_by_kind": {k: len(v) for k, v in out.items()},
        "answers_reviewed": stats["answers"], "answers_reflected": stats["reflected"],
        "quarantined": len(quarantine), "quarantine_codes": dict(codes),
        "settings": {"max_context": max_context, "min_change": min_change, "keep_indonesian": keep_indonesian,
                     "lang": lang or "auto", "chat": chat, "temperature": temperature},
        "counts": dict(stats), "requests": len(requests), "llm": engine.report(),
    }
    return Outcome(frames, quarantine, report)


def read_chats(inp: str | Path | io.Input) -> list[dict[str, Any]]:
    from curate.errors import UserError

    data = inp if isinstance(inp, io.Input) else io.read_input(inp)
    frames = data.frames
    inp = ", ".join(str(p) for p in data.paths)
    if "chat" not in frames:
        raise UserError(f"{inp}: no chat rows to reflect on (found {', '.join(frames) or 'nothing'}); "
                        "reflect needs multi-turn chats (ShareGPT, OpenAI messages, KoChatGPT conversations)")
    return frames["chat"].collect().to_dicts()


def rows_not_read(data: io.Input) -> dict[str, int]:
    """The input's rows of other kinds than chat, by kind: reflect derives new rows from chats and
    does not carry these over (the report says so under ``rows_not_read``)."""
    return {k: lf.select(pl.len()).collect().item() for k, lf in data.frames.items() if k != "chat"}


def write_outcome(outcome: Outcome, out_dir: Path, inp: str | Path | None = None,
                  data: io.Input | None = None) -> None:
    io.write_stage(out_dir, stage="reflect", frames=outcome.frames, report=outcome.report, quarantine=outcome.quarantine,
                   inputs=[inp] if inp is not None else [], data=data)


def reflect_dataset(inp: str | Path, out_dir: str | Path, config: EngineConfig, **kw: Any) -> tuple[Outcome, Engine]:
    """Read the chat rows of ``inp``, reflect, write ``out_dir``; return (outcome, engine)."""
    io.check_output(out_dir, [inp])
    data = io.read_input(inp)
    chats = read_chats(data)
    engine = Engine(config, description="reflect")
    outcome = reflect_rows(chats, engine, **kw)
    outcome.report["rows_not_read"] = rows_not_read(data)
    write_outcome(outcome, Path(out_dir), inp, data)
    return outcome, engine
