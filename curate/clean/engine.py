"""The clean stage: run the registered rules over frames of any kind; fix, flag or drop.

``clean(frames, config)`` is the Python API; ``clean_dir(in, out, config)`` reads and writes datasets
(used by ``curate clean``). Order of work per kind:

1. fixes (mojibake, escapes, control characters, empty-input markers ...) change the cells' text
   in turn, each fix seeing the previous ones' output (they are matched at once and each one's
   matches mended for the cells an earlier one changed: :func:`_together`); every change is recorded;
2. cheap detectors (regex and the arithmetic checker) run on every row;
3. language identification and then duplicate detection run on the rows still kept, so an
   expensive check never runs on a row already dropped and the kept copy of a duplicate cluster is
   never a row another rule drops.

Every input row ends up either in the output (with ``meta.fixes`` and ``meta.flags``) or in the
quarantine (code, reason, evidence, every match, the full row with its meta.fixes): rows in = rows out +
rows dropped.
"""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import orjson
import polars as pl

from curate import io, memory, schemas
from curate.clean import cells as cellmod
from curate.clean import quarantine as qfile
from curate.clean.base import Context, Rule, fmt
from curate.clean.config import CleanConfig
from curate.clean.registry import RULES
from curate.clean.rules.language import reads_langs
from curate.progress import Stages, stages

HIT_SCHEMA = {"_row": pl.UInt32, "rule": pl.String, "field": pl.String, "evidence": pl.String}
EVIDENCE_CHARS = 300
BOTH_DUPS_NOTE = ("one dedupe pass found exact and near duplicates; its near-duplicate part (sketch, buckets, "
                  "verification) is timed under near_duplicate")


@dataclass
class CleanResult:
    frames: dict[str, pl.DataFrame]
    quarantine: dict[str, pl.DataFrame]   # kind -> one row per dropped row (see quarantine_rows())
    report: dict[str, Any]

    def quarantine_rows(self) -> list[dict]:
        """The quarantine entries as dicts, in kind order then input order."""
        return [orjson.loads(line) for line in self.quarantine_ndjson().splitlines() if line.strip()]

    def quarantine_ndjson(self) -> bytes:
        return b"".join(q.write_ndjson().encode() for q in self.quarantine.values() if q.height)

    @property
    def dropped(self) -> int:
        return sum(q.height for q in self.quarantine.values())


@dataclass
class _Active:
    rule: Rule
    action: str


def active_rules(config: CleanConfig) -> list[_Active]:
    out = []
    for cls in sorted(RULES, key=lambda r: r.stage):  # sorted() is stable: registry order within a stage
        action = config.action_for(cls.code, cls.default_action)
        if action == "off":
            continue
        out.append(_Active(cls(**config.params.get(cls.code, {})), action))
    return out


# The columns a row's whole text is made of (what row_text_expr reads).
TEXT_COLUMNS = {"sft": ("instruction", "input", "output"), "chat": ("messages",), "rm": ("prompt", "completions"),
                "ppo": ("prompt",)}


def row_text_expr(kind: str) -> pl.Expr:
    """A row's whole text (no truncation), as language id and duplicate detection read it."""
    if kind == "sft":
        return pl.concat_str([pl.col("instruction"), pl.col("input"), pl.col("output")], separator="\n",
                             ignore_nulls=True)
    if kind == "chat":
        return pl.col("messages").list.eval(pl.element().struct.field("content")).list.join("\n")
    if kind == "rm":
        return pl.concat_str([pl.col("prompt"), pl.col("completions").list.join("\n")], separator="\n",
                             ignore_nulls=True)
    return pl.col("prompt")


class _Stats:
    """Per-rule counts and examples for the report."""

    def __init__(self, active: list[_Active], examples: int):
        self.examples = examples
        self.engine: dict[str, float] = {}   # seconds spent outside the rules (building row texts, ...)
        self.rules: dict[str, dict[str, Any]] = {
            a.rule.code: {"code": a.rule.code, "action": a.action, "description": a.rule.description,
                          "matched": 0, "fixed": 0, "flagged": 0, "dropped": 0,
                          "seconds": 0.0, "examples": []} for a in active}

    def add(self, code: str, action: str, rows: int, examples: list[dict], seconds: float,
            dropped: int | None = None) -> None:
        """``rows`` matched; for a drop rule ``dropped`` of them are dropped *by this rule* (not
        already dropped by an earlier one), so the rules' "dropped" counts add up to the rows dropped."""
        r = self.rules[code]
        r["matched"] += rows
        if action == "drop":
            r["dropped"] += rows if dropped is None else dropped
        else:
            r[{"fix": "fixed", "flag": "flagged"}[action]] += rows
        r["seconds"] = round(r["seconds"] + seconds, 3)
        room = self.examples - len(r["examples"])
        if room > 0:
            r["examples"].extend(_around_change(e) for e in examples[:room])


def _around_change(example: dict, context: int = 30) -> dict:
    """For a fix example, cut before/after to the region around the first change."""
    before, after = example.get("before"), example.get("after")
    if not isinstance(before, str) or not isinstance(after, str):
        return example
    i = 0
    while i < min(len(before), len(after)) and before[i] == after[i]:
        i += 1
    j = 0
    while j < min(len(before), len(after)) - i and before[-1 - j] == after[-1 - j]:
        j += 1
    start = max(0, i - context)

    def cut(t: str) -> str:
        end = min(len(t), len(t) - j + context)
        return ("…" if start else "") + t[start:end] + ("…" if end < len(t) else "")

    return {**example, "before": cut(before), "after": cut(after)}


def _short(expr: pl.Expr, n: int = EVIDENCE_CHARS) -> pl.Expr:
    return pl.when(expr.str.len_chars() > n).then(expr.str.slice(0, n) + pl.lit("…")).otherwise(expr)


def _examples(hits: pl.DataFrame, df: pl.DataFrame, n: int, extra: list[str] = ()) -> list[dict]:
    if n <= 0 or hits.height == 0:
        return []
    # the first rows in input order (not in the rule's match order), so the examples are the same
    # whichever way the rows were split into blocks (the Ray executor merges blocks' examples)
    first = hits.sort("_row", maintain_order=True).unique(
        "_row", keep="first", maintain_order=True).head(n)
    info = df.select("_row", "id", "source", "line").gather(first["_row"]).select(
        "_row", "id", fmt("{}:{}", pl.col("source"), pl.col("line")).alias("where"))
    cols = ["id", "where", "field", "evidence", *extra]
    return first.join(info, on="_row", how="left").select(
        [_short(pl.col(c)).alias(c) if c in ("evidence", "field") else pl.col(c) for c in cols]).to_dicts()


_OWN_BAR = ("exact_duplicate", "near_duplicate")  # rules with a bar of their own (rows normalized, sketched)


def _clean_kind(df: pl.DataFrame, kind: str, active: list[_Active], config: CleanConfig, stats: _Stats,
                on_rule: Callable[[str, str], None] | None = None, progress: Stages | None = None,
                extras: dict | None = None):
    """Clean one kind's frame: ``(kept rows, quarantine)``. ``extras`` (a dict, if given) receives
    ``kept_rows``/``gone_rows`` (input positions) and ``hits`` (every rule's hits, in run order), which
    the Ray executor needs to finish the duplicate rules across blocks (curate/executors/ray_clean.py)."""
    if isinstance(df, list):  # a box: the caller keeps no reference, so the input frame can be freed
        df = df.pop()          # once its cleaned columns replace it (see clean())
    n = df.height
    plain = [a for a in active if a.rule.applies_to(kind) and a.rule.code not in _OWN_BAR]
    rules_bar = (progress or Stages(None)).stage(f"clean {kind}: rows x rules", total=n * len(plain))
    pending = 0
    df = df.with_row_index("_row")
    t_c = time.perf_counter()
    cells = cellmod.build(df, kind)
    stats.engine["cells"] = round(stats.engine.get("cells", 0.0) + time.perf_counter() - t_c, 3)
    ctx = Context(kind=kind, target_lang=config.target_lang, progress=progress,
                  row_text=row_text_expr(kind).fill_null(""))
    near = next((x.rule for x in active if x.rule.code == "near_duplicate" and x.action == "drop"), None)
    if near is not None and any(x.rule.code == "exact_duplicate" and x.action == "drop" for x in active):
        ctx.near_threshold = float(near.p["threshold"])
        ctx.near_measure = str(near.p["measure"])
    moved: dict[str, float] = {}            # seconds a rule spent on another rule's work
    fix_frames: list[pl.DataFrame] = []
    hits: list[tuple[_Active, pl.DataFrame]] = []
    dropped = pl.Series("_row", [], dtype=pl.UInt32)

    rowbase: pl.DataFrame | None = None     # row texts after fixes, built once for the row rules
    rebuilt = 0                             # fix frames already written back into df
    subs: dict[tuple, pl.DataFrame] = {}    # cells of a role set

    def sub_of(rule: Rule) -> pl.DataFrame:
        key = tuple(sorted(rule.roles))
        if key not in subs:  # one filter per role set while the text does not change
            subs[key] = cells if set(key) >= {"prompt", "input", "response", "system"} else \
                cells.filter(pl.col("role").is_in(list(key)))
        return subs[key]

    early: dict[int, tuple[pl.DataFrame, float]] = {}   # matches computed together: (matches, seconds)
    covered = -1                            # the last rule index of the rules matched together
    fixes_before = 0                        # fix frames written before the rules matched together
    for i, a in enumerate(active):
        rule = a.rule
        if pending:
            rules_bar.advance(pending)
            pending = 0
        if on_rule:
            on_rule(kind, rule.code)
        if not rule.applies_to(kind):
            continue
        if rule.scope == "cell" and i > covered:
            run = _together(active, i, kind)
            if len(run) > 1:
                early = _match_together(run, sub_of, ctx, lambda: rules_bar.advance(n))
                covered = run[-1][0]
                fixes_before = len(fix_frames)  # (fixes in a row: each matched on the text before them all)
        if rule.code not in _OWN_BAR:
            pending = 0 if i in early else n
            rules_bar.update(description=f"clean {kind}: {rule.code}")

            def on_rows(k: int) -> None:  # a long row rule advances the bar as it goes
                nonlocal pending
                k = min(k, pending)
                pending -= k
                rules_bar.advance(k)

            ctx.on_rows = on_rows
        t0 = time.perf_counter()
        if rule.scope == "cell":
            if i in early:
                m, secs = early.pop(i)
                t0 -= secs
                if len(fix_frames) > fixes_before:  # a fix matched before the fixes in a row that came first
                    m = _match_changed(rule, m, sub_of(rule), ctx,
                                       pl.concat([f.select("_cell") for f in fix_frames[fixes_before:]])["_cell"])
            else:
                sub = sub_of(rule)
                if sub.height == 0:
                    continue
                m = rule.match(sub, ctx)
            if m.height == 0:
                stats.add(rule.code, a.action, 0, [], time.perf_counter() - t0)
                continue
            if rule.fixes and a.action == "fix":  # a fix's changes in cell order, however it was matched
                m = m.sort("_cell", maintain_order=True)
            m = m.unique("_cell", keep="first", maintain_order=True)
            where = cells.select("_row", "field", "pos").gather(m["_cell"]).hstack(m)
            if rule.fixes and a.action == "fix":
                before = cells["text"].gather(m["_cell"])
                text = cells["text"].clone()
                text.scatter(m["_cell"], m["after"])
                cells = cells.with_columns(text)
                rowbase = None
                subs.clear()
                log = where.with_columns(before.alias("before"), pl.lit(rule.code).alias("rule"))
                fix_frames.append(log.select("_cell", "_row", "rule", "field", "pos", "before", "after",
                                             "evidence"))
                hit = log.select("_row", "rule", "field", "evidence", "before", "after")
                stats.add(rule.code, "fix", hit["_row"].n_unique(),
                          _examples(hit, df, config.examples, ["before", "after"]), time.perf_counter() - t0)
                # a fixed row that is dropped later lists the fix among its quarantine matches
                hits.append((a, hit.select("_row", "rule", "field", "evidence").cast(HIT_SCHEMA)))
                continue
            hit = where.select("_row", pl.lit(rule.code).alias("rule"),
                               pl.when(pl.col("pos").is_null()).then(pl.col("field"))
                               .otherwise(fmt("{}[{}]", pl.col("field"), pl.col("pos"))).alias("field"),
                               "evidence")
        else:
            if rowbase is None:
                t_rb = time.perf_counter()
                if fix_frames:
                    df = cellmod.rebuild(df, kind, cells, pl.concat([f.select("_cell") for f in fix_frames])["_cell"].unique())
                    rebuilt = len(fix_frames)
                rowbase = _row_frame(df, kind, fix_frames,
                                     need_lang=reads_langs([x.rule for x in active], config.target_lang))
                if all(x.rule.scope == "row" for x in active[active.index(a):]):
                    # no cell rule left: free the cells (and the last fix's copies of their texts)
                    # before the heavy row rules
                    cells = text = before = sub = m = where = log = None
                    subs.clear()
                stats.engine["row_texts"] = round(stats.engine.get("row_texts", 0.0) + time.perf_counter() - t_rb, 3)
                t0 = time.perf_counter()
            rows = rowbase if dropped.len() == 0 else rowbase.filter(~pl.col("_row").is_in(dropped.implode()))
            m = rule.match_rows(rows, ctx)
            hit = m.select("_row", pl.lit(rule.code).alias("rule"), pl.lit("row").alias("field"), "evidence")
            extra = getattr(rule, "clusters", None)
            if extra:
                stats.rules[rule.code]["clusters"] = extra
            for code, secs in (getattr(rule, "moved_seconds", None) or {}).items():
                moved[code] = moved.get(code, 0.0) + secs
                t0 += secs
            stats.rules[rule.code].update(getattr(rule, "report_extra", None) or {})
            if rule.code == "exact_duplicate" and ctx.near_threshold is not None:
                stats.rules[rule.code]["note"] = BOTH_DUPS_NOTE
            if rule.code == "near_duplicate":
                ctx.dups = None
            t0 -= moved.pop(rule.code, 0.0)
        hit = hit.cast(HIT_SCHEMA).with_columns(_short(pl.col("evidence").fill_null("")).alias("evidence"))
        hits.append((a, hit))
        rows_hit = hit["_row"].unique()
        newly = None
        if a.action == "drop":
            newly = rows_hit.filter(~rows_hit.is_in(dropped.implode())).len()
            dropped = pl.concat([dropped, rows_hit]).unique()
        stats.add(rule.code, a.action, rows_hit.len(), _examples(hit, df, config.examples),
                  time.perf_counter() - t0, newly)

    rules_bar.advance(pending)
    t_end = time.perf_counter()
    fixes = pl.concat(fix_frames) if fix_frames else None
    if len(fix_frames) > rebuilt:
        df = cellmod.rebuild(df, kind, cells, pl.concat(fix_frames[rebuilt:])["_cell"].unique())
    drop_hits = [h for a, h in hits if a.action == "drop"]
    flag_hits = [h for a, h in hits if a.action == "flag" and not (a.rule.fixes and a.action == "fix")]
    df = _add_meta(df, fixes, flag_hits)

    keep = ~pl.col("_row").is_in(dropped.implode())
    if extras is not None:
        extras["kept_rows"] = df.filter(keep)["_row"]
        extras["gone_rows"] = df.filter(~keep)["_row"]
        extras["hits"] = [h for _, h in hits]
    out = df.filter(keep).drop("_row")
    quarantine = _quarantine(df.filter(~keep), drop_hits, [h for _, h in hits], kind, stats)
    stats.engine["meta_and_quarantine"] = round(stats.engine.get("meta_and_quarantine", 0.0)
                                                + time.perf_counter() - t_end, 3)
    assert out.height + quarantine.height == n, "clean lost rows"
    return out, quarantine


_THREADS = 2  # cell rules matched at once (polars releases the GIL; the Python checkers overlap its work)


def _fixing(a: _Active) -> bool:
    """Whether the rule changes the text here (a fix rule whose action is fix)."""
    return a.rule.fixes and a.action == "fix"


def _together(active: list[_Active], i: int, kind: str) -> list[tuple[int, Rule]]:
    """The cell rules from ``active[i]`` on that are matched at once, up to the next rule that reads
    rows or is not of ``active[i]``'s sort:

    * rules that leave the text as it is (everything but a fix rule whose action is fix): their
      matches do not depend on each other;
    * fixes with the action fix: each would see the text the ones before it left, so they are
      matched at once on the text before them all, and each one's matches are then mended for the
      few cells an earlier one changed (:func:`_match_changed`): the same matches as one after the other."""
    fixing = _fixing(active[i])
    run = []
    for j in range(i, len(active)):
        a = active[j]
        if a.rule.scope != "cell" or _fixing(a) != fixing:
            break
        if a.rule.applies_to(kind):
            run.append((j, a.rule))
    return run


def _match_changed(rule: Rule, m: pl.DataFrame, sub: pl.DataFrame, ctx: Context, changed: pl.Series) -> pl.DataFrame:
    """A fix's matches on ``sub`` (the cells now) from ``m``, its matches on them before the fixes
    that changed the cells ``changed``: only those cells are matched again (a fix reads each cell
    alone: its text and the cell's own columns)."""
    again = pl.col("_cell").is_in(changed.unique().implode())
    sub = sub.filter(again)
    fresh = rule.match(sub, ctx) if sub.height else m.clear()
    return pl.concat([m.filter(~again), fresh.select(m.columns)], how="vertical_relaxed")


def _match_together(run: list[tuple[int, Rule]], sub_of: Callable[[Rule], pl.DataFrame], ctx: Context,
                    done: Callable[[], None]) -> dict[int, tuple[pl.DataFrame, float]]:
    """``{index: (matches, seconds)}`` of the rules of ``run`` whose cells are not empty, matched on
    ``_THREADS`` threads (the same matches as one after the other: each reads the same cells);
    ``done()`` is called as each finishes (the progress bar)."""
    def one(rule: Rule, sub: pl.DataFrame) -> tuple[pl.DataFrame, float]:
        t = time.perf_counter()
        m = rule.match(sub, ctx)
        return m, time.perf_counter() - t

    work = [(j, rule, sub) for j, rule in run if (sub := sub_of(rule)).height]
    work.sort(key=lambda w: not w[1].slow)  # the slowest first: the others fill the other thread to the end
    out: dict[int, tuple[pl.DataFrame, float]] = {}
    with ThreadPoolExecutor(_THREADS, thread_name_prefix="clean-rule") as pool:
        futures = {pool.submit(one, rule, sub): j for j, rule, sub in work}
        for f in as_completed(futures):
            out[futures[f]] = f.result()
            done()
    return out


def _row_frame(df: pl.DataFrame, kind: str, fix_frames, need_lang: bool = True) -> pl.DataFrame:
    """``_row, id, source, line``, the text columns (``TEXT_COLUMNS[kind]``), ``lang_text,
    _lang_cache`` for every row, with the text after fixes.

    The row rules read the whole row's text through ``row_text_expr(kind)`` over the text columns
    (``curate.clean.base.row_text``), which share the dataset's buffers: a joined copy of every
    text (half a GB at 1M rows) is never held beside the dataset; the duplicate pass joins the
    texts of a few thousand rows at a time. ``lang_text`` is what language id reads when it is
    not the whole row (null): when the prompt asks for a translation or another language, the foreign
    input and output are the task, so only the prompt is read (not a second copy of every text). ``_lang_cache`` is the ``lang`` of ingest
    for rows no fix changed. Without ``need_lang`` (no language rule that reads them for the target
    language: with ``--target-lang any`` none does) the last two are left out.
    """
    from curate.clean.rules.language import wants_other_rows

    texts = TEXT_COLUMNS[kind]
    if not need_lang:
        return df.select("_row", "id", "source", "line", *texts)

    fixed_rows = pl.concat([f.select("_row") for f in fix_frames])["_row"].unique() if fix_frames else None
    prompt = {"sft": pl.col("instruction"), "rm": pl.col("prompt"), "ppo": pl.col("prompt"),
              "chat": pl.col("messages").list.eval(pl.element().filter(pl.element().struct.field("role") == "user")
                                                   .struct.field("content")).list.first()}[kind]
    base = df.select("_row", "id", "source", "line", *texts, prompt.fill_null("").alias("_prompt"), pl.col("lang"))
    other = pl.col("_row").is_in(wants_other_rows(base, "_prompt").implode())
    lang = pl.when(other).then(None).otherwise(pl.col("lang"))
    if fixed_rows is not None and fixed_rows.len():
        lang = pl.when(pl.col("_row").is_in(fixed_rows.implode())).then(None).otherwise(lang)
    return base.select("_row", "id", "source", "line", *texts,
                       pl.when(other).then(pl.col("_prompt")).alias("lang_text"),
                       lang.alias("_lang_cache"))


def _add_meta(df: pl.DataFrame, fixes: pl.DataFrame | None, flag_hits: list[pl.DataFrame]) -> pl.DataFrame:
    per_row: dict[int, dict[str, list]] = {}
    if fixes is not None and fixes.height:
        f = fixes.select("_row", "rule",
                         pl.when(pl.col("pos").is_null()).then(pl.col("field"))
                         .otherwise(fmt("{}[{}]", pl.col("field"), pl.col("pos"))).alias("field"),
                         "before", "after", "evidence")
        for row, rule, fld, before, after, evidence in zip(*(f[c].to_list() for c in f.columns)):
            rec = {"rule": rule, "field": fld, "before": before, "after": after}
            if rule == "fix_indonesian" and evidence:
                rec["substitutions"] = evidence.split("; ")
            per_row.setdefault(row, {}).setdefault("fixes", []).append(rec)
    if flag_hits:
        flags = pl.concat(flag_hits).select("_row", "rule", "field", "evidence")
        for row, rule, fld, evidence in zip(*(flags[c].to_list() for c in flags.columns)):
            per_row.setdefault(row, {}).setdefault("flags", []).append({"rule": rule, "field": fld, "evidence": evidence})
    if not per_row:
        return df
    idx = sorted(per_row)
    current = df["meta"].gather(idx).to_list()
    new = [schemas.merge_meta(cur, **per_row[i]) for i, cur in zip(idx, current)]
    meta = df["meta"].clone()
    meta.scatter(idx, new)
    return df.with_columns(meta)


Q_SCHEMA = {"stage": pl.String, "code": pl.String, "reason": pl.String, "evidence": pl.String}


def _quarantine(gone: pl.DataFrame, drop_hits, all_hits, kind: str, stats: _Stats) -> pl.DataFrame:
    if gone.height == 0:
        return pl.DataFrame()
    hits = pl.concat(all_hits)
    # the row's first drop in run order names it (the rule whose "dropped" count it is in)
    first = pl.concat(drop_hits).unique("_row", keep="first", maintain_order=True)
    desc = {code: r["description"] for code, r in stats.rules.items()}
    matches = (hits.filter(pl.col("_row").is_in(gone["_row"].implode()))
               .group_by("_row", maintain_order=True)
               .agg(pl.struct("rule", "field", "evidence").alias("matches")))
    content = [c for c in gone.columns if c != "_row"]
    return (gone.join(first.select("_row", pl.col("rule").alias("code"), pl.col("evidence")), on="_row", how="left")
            .join(matches, on="_row", how="left")
            .sort("_row")
            .select(pl.lit("clean").alias("stage"), "code",
                    pl.col("code").replace_strict(desc, default=None, return_dtype=pl.String).alias("reason"),
                    "evidence", "matches", "id", "source", "line",
                    fmt("{}:{}", pl.col("source"), pl.col("line")).alias("where"),
                    pl.lit(kind).alias("kind"), pl.struct(content).alias("row")))


def clean(frames: dict[str, pl.DataFrame | pl.LazyFrame], config: CleanConfig | None = None, *,
          on_rule: Callable[[str, str], None] | None = None, progress: Stages | None = None) -> CleanResult:
    """Run every active rule over ``{kind: frame}``; returns the kept frames, the quarantine and the report.

    ``on_rule(kind, code)`` is called as each rule starts; ``progress`` (``curate.progress.stages()``)
    shows a bar of rows x rules per kind and one of rows for the duplicate pass."""
    config = config or CleanConfig()
    config.validate()
    active = active_rules(config)
    stats = _Stats(active, config.examples)
    out, quarantined, rows_in = {}, {}, {}
    t0 = time.perf_counter()
    for kind, frame in frames.items():
        # the frame is read (a LazyFrame) and conformed here and handed over in a box, so nothing here
        # holds it: a fix writes new columns, and the input's own columns are freed with it
        t_read = time.perf_counter()
        box = [schemas.conform(frame.collect() if isinstance(frame, pl.LazyFrame) else frame, kind)]
        del frame
        stats.engine["read"] = round(stats.engine.get("read", 0.0) + time.perf_counter() - t_read, 3)
        t0 += time.perf_counter() - t_read  # seconds: the cleaning, not the reading
        rows_in[kind] = box[0].height
        kept, q = _clean_kind(box, kind, active, config, stats, on_rule, progress)
        memory.release()  # the passes' scratch goes back to the OS before the next kind and the writes
        out[kind] = kept
        if q.height:
            quarantined[kind] = q
    result = CleanResult(out, quarantined, {})
    n_in, n_out, n_dropped = sum(rows_in.values()), sum(f.height for f in out.values()), result.dropped
    report = {
        "stage": "clean",
        "target_lang": config.target_lang,
        "rows_in": n_in, "rows_out": n_out, "rows_dropped": n_dropped,
        "accounted": n_in == n_out + n_dropped,
        "by_kind": {k: {"in": rows_in[k], "out": out[k].height,
                        "dropped": quarantined[k].height if k in quarantined else 0} for k in out},
        "seconds": round(time.perf_counter() - t0, 3),
        "engine_seconds": stats.engine,
        "rules": list(stats.rules.values()),
    }
    result.report = report
    return result


def clean_dir(inp: str | Path | list, out: str | Path, config: CleanConfig | None = None, *, dry_run: bool = False,
              report_json: str | Path | None = None, progress: bool | None = None,
              fmt: str | None = None) -> CleanResult:
    """Read any input (:func:`curate.io.read_input`), clean it, and commit ``out`` as a whole:
    ``<kind>.parquet``, ``quarantine.parquet`` (records the input could not turn into rows, then the
    rows the rules dropped; :mod:`curate.clean.quarantine` reads and restores it), ``report.json`` and
    ``manifest.json``."""
    config = config or CleanConfig()
    config.validate()
    inputs = list(inp) if isinstance(inp, (list, tuple)) else [inp]
    writer = None if dry_run else io.DatasetWriter(
        out, stage="clean", inputs=inputs,
        params={"target_lang": config.target_lang, "actions": config.actions, "params": config.params})
    data = io.read_input(inputs, format=fmt)
    from curate import dedupe, warmup

    big = (data.report.get("total") or {}).get("rows") or 0
    dups = any(a.rule.code in _OWN_BAR for a in active_rules(config)) and big >= dedupe._JIT_MIN_ROWS
    # the compiled kernels the rules call (and, with ``dups``, the duplicate pass's: a big input's)
    # loaded from numba's cache in a thread (~0.7 + 0.2 s of CPU) while polars reads the input,
    # instead of on the rule pass's and the duplicate pass's way when each first calls a kernel
    kernels = warmup.in_background(warmup.warm_rules, *([warmup.load_duplicates] if dups else []),
                                   name="clean-kernels")
    with stages(enabled=progress) as bars:  # lazy frames: each is read when its kind is cleaned
        result = clean(dict(data.frames), config, progress=bars)
    kernels.join()
    result.report["input"] = ", ".join(str(p) for p in inputs)
    result.report["read"] = data.report
    if writer is not None:
        result.report["output"] = str(out)
        with writer as w, ThreadPoolExecutor(1, thread_name_prefix="clean-quarantine") as pool:
            w.input_manifests = data.manifest_ids
            # the quarantine is encoded and written beside the kept rows (polars releases the GIL)
            qpath = w.file(qfile.NAME)
            quarantine = pool.submit(lambda: qfile.write(qpath, qfile.to_frame(result.quarantine.values(),
                                                                               data.quarantine)))
            for kind, df in result.frames.items():
                w.write_frame(kind, df)
            quarantine.result()
            w.write_json("report.json", result.report)
    if report_json:
        io.write_json(report_json, result.report)
    return result
