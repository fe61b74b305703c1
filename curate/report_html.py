"""One self-contained HTML report of a dataset (and, optionally, how it changed from an earlier stage).

Everything is inline: CSS in a ``<style>`` block and charts as SVG drawn here in Python, so the file
opens anywhere with no network and no JavaScript. Sections, each shown when its data exists:

* summary cards (rows, kinds, sources, Malay share, quarantined, lengths, tokens);
* rows per source and kind; language mix (ms / id / en / ko / other / und) overall and per source;
* length distributions (characters per row, and tokens with a SentencePiece model);
* what each clean rule did (``report.json`` of a clean output dir; read defensively, any shape);
* duplicate clusters (from the clean report);
* the ingest report (records / kept / recovered / quarantined per source);
* quarantined rows by stage and code, with examples (``quarantine.jsonl``);
* what stages recorded in ``meta`` (fixes, flags, translations, ...);
* before/after when ``compare`` (the earlier stage) is given: rows kept / changed / dropped / new by
  id, rows per source, language mix and lengths side by side.

Any stage can write one: ``write_report(out_dir, "report.html", compare=in_dir)``.
"""

from __future__ import annotations

import datetime as _dt
import html
import math
import os
from pathlib import Path
from typing import Any, Iterable

import orjson
import polars as pl

from curate import io, schemas
from curate import tokens as tok

LANGS = ("ms", "id", "en", "ko", "other", "und")
LANG_NAMES = {"ms": "Malay", "id": "Indonesian", "en": "English", "ko": "Korean", "other": "other",
              "und": "unknown"}
LANG_COLORS = {"ms": "#0f9d76", "id": "#e8710a", "en": "#3367d6", "ko": "#9334e6", "other": "#9aa0a6",
               "und": "#d7dbe0"}
KIND_COLORS = {"sft": "#3b82f6", "chat": "#10b981", "rm": "#f59e0b", "ppo": "#a855f7"}
ACTION_COLORS = {"fixed": "#16a34a", "flagged": "#f59e0b", "dropped": "#dc2626"}
BEFORE, AFTER = "#94a3b8", "#2563eb"
LENGTH_EDGES = [0, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000]
META_SAMPLE = 300_000
QUARANTINE_EXAMPLES = 3


# ============================================================================ data

def _rows_of(frames: dict[str, pl.LazyFrame | pl.DataFrame]) -> dict[str, pl.DataFrame]:
    return {k: (f.collect() if isinstance(f, pl.LazyFrame) else f) for k, f in frames.items()}


def _read_json(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None


def _quarantine(path: Path, examples: int = QUARANTINE_EXAMPLES) -> dict[str, Any] | None:
    """Counts of quarantined rows by (stage, code), a reason and a few examples of each."""
    parquet = path.with_suffix(".parquet")  # the clean stage writes quarantine.parquet
    if not path.is_file() and not parquet.is_file():
        return None
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    total = bad = 0
    if path.is_file():
        with open(path, "rb") as fh:
            lines = fh.read().splitlines()
    else:
        from curate.clean import quarantine as qfile

        lines = qfile.read(parquet)
    for line in lines:
        if isinstance(line, bytes):
            if not line.strip():
                continue
            try:
                line = orjson.loads(line)
            except orjson.JSONDecodeError:
                bad += 1
                continue
        q = line
        if not isinstance(q, dict):
            bad += 1
            continue
        total += 1
        key = (str(q.get("stage") or "?"), str(q.get("code") or "?"))
        g = groups.setdefault(key, {"stage": key[0], "code": key[1], "rows": 0,
                                    "reason": str(q.get("reason") or ""), "examples": []})
        g["rows"] += 1
        if len(g["examples"]) < examples:
            where = q.get("where") or f"{q.get('source', '?')}:{q.get('line', '?')}"
            ev = q.get("evidence")
            if not ev:
                ev = q.get("raw") if isinstance(q.get("raw"), str) else orjson.dumps(q.get("row")).decode()
            g["examples"].append({"where": str(where), "evidence": str(ev)})
    return {"rows": total, "unreadable_lines": bad,
            "groups": sorted(groups.values(), key=lambda g: (-g["rows"], g["stage"], g["code"]))}


def _meta_summary(df: pl.DataFrame) -> dict[str, Any]:
    """Top-level meta keys (rows carrying each) and the codes inside ``fixes`` / ``flags``."""
    metas = df["meta"].drop_nulls()
    n = metas.len()
    scale = 1.0
    if n > META_SAMPLE:
        metas = metas.sample(META_SAMPLE, seed=0)
        scale = n / META_SAMPLE
    keys: dict[str, float] = {}
    codes: dict[str, dict[str, float]] = {"fixes": {}, "flags": {}}
    for text in metas:
        try:
            m = orjson.loads(text)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(m, dict):
            continue
        for key, value in m.items():
            keys[key] = keys.get(key, 0) + scale
            if key in codes:
                for code in _codes_in(value):
                    codes[key][code] = codes[key].get(code, 0) + scale
    return {"rows_with_meta": n, "keys": {k: round(v) for k, v in keys.items()},
            "codes": {k: {c: round(v) for c, v in d.items()} for k, d in codes.items()},
            "translations": translations(df["meta"])}


def translations(meta: pl.Series) -> list[dict[str, Any]]:
    """Rows translated by curate, by (from, to, model): from ``meta.translated`` (all rows, vectorized)."""
    df = pl.DataFrame({"m": meta}).filter(pl.col("m").str.contains('"translated"', literal=True))
    if df.height == 0:
        return []
    df = df.select(*(pl.col("m").str.json_path_match(f"$.translated.{k}").alias(k) for k in ("from", "to", "model")))
    df = df.filter(pl.col("to").is_not_null() | pl.col("from").is_not_null())
    return (df.group_by("from", "to", "model").agg(pl.len().alias("rows"))
            .sort("rows", "from", descending=[True, False]).to_dicts())


def _codes_in(value: Any) -> set[str]:
    """Rule codes in a ``fixes``/``flags`` meta value, whatever its shape (list of str/dicts, dict)."""
    out: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, dict) and any(x in v for x in ("code", "rule")):
                out.add(str(v.get("code") or v.get("rule")))
            else:
                out.add(str(k))
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, str):
                out.add(item)
            elif isinstance(item, dict):
                code = item.get("code") or item.get("rule") or item.get("name")
                if code:
                    out.add(str(code))
    elif isinstance(value, str):
        out.add(value)
    return out


def profile(path: str | os.PathLike, model: Any = None) -> dict[str, Any]:
    """Everything the report shows about one dataset (a directory of kinds, or one file)."""
    path = Path(path)
    frames = _rows_of(io.read_input(path).frames)
    counter = tok.load_model(model) if model is not None else None
    base = path if path.is_dir() else path.parent
    rep = _read_json(base / "report.json") if path.is_dir() else None
    counts = []
    lengths: dict[str, pl.Series] = {}
    token_lengths: dict[str, pl.Series] = {}
    content: list[pl.DataFrame] = []
    meta_parts = []
    for kind, df in frames.items():
        counts.append(df.select(pl.col("kind").fill_null(kind), pl.col("source").fill_null("?"),
                                pl.col("format").fill_null("?"),
                                pl.col("lang").fill_null("und").replace_strict(
                                    {x: x for x in LANGS}, default="other")))
        chars = pl.sum_horizontal([e.list.eval(pl.element().str.len_chars()).list.sum() for e in tok.text_exprs(kind)])
        lengths[kind] = df.select(chars.cast(pl.Int64).alias("chars"))["chars"]
        if counter is not None:
            token_lengths[kind] = tok.token_counts(df, counter, kind)["tokens"]
        joined = pl.concat_list(tok.text_exprs(kind)).list.join("\x1f")
        content.append(df.select(pl.col("id"), pl.lit(kind).alias("kind"), joined.hash().alias("h")))
        meta_parts.append(df.select("meta"))
    counts_df = (pl.concat(counts).group_by("kind", "source", "format", "lang").agg(pl.len().alias("rows"))
                 .sort("kind", "source", "lang") if counts else
                 pl.DataFrame(schema={"kind": pl.String, "source": pl.String, "format": pl.String,
                                      "lang": pl.String, "rows": pl.UInt32}))
    meta = _meta_summary(pl.concat(meta_parts)) if meta_parts else {"rows_with_meta": 0, "keys": {}, "codes": {}}
    return {
        "path": path.as_posix(),
        "name": path.name or path.as_posix(),
        "stage": (rep or {}).get("stage") if isinstance(rep, dict) else None,
        "report": rep,
        "counts": counts_df,
        "rows": int(counts_df["rows"].sum()) if counts_df.height else 0,
        "lengths": lengths,
        "tokens": token_lengths,
        "token_method": counter.method if counter is not None else None,
        "content": pl.concat(content) if content else pl.DataFrame(schema={"id": pl.String, "kind": pl.String,
                                                                           "h": pl.UInt64}),
        "quarantine": _quarantine(base / "quarantine.jsonl") if path.is_dir() else None,
        "meta": meta,
    }


# ---------------------------------------------------------------------------- stage reports, defensively

_FIX_KEYS = ("fixed", "fix", "fixes", "n_fixed")
_FLAG_KEYS = ("flagged", "flag", "flags", "n_flagged")
_DROP_KEYS = ("dropped", "drop", "drops", "quarantined", "removed", "n_dropped")


def _num(d: dict, keys: Iterable[str]) -> int:
    for k in keys:
        v = d.get(k)
        if isinstance(v, bool):
            continue
        if isinstance(v, (int, float)):
            return int(v)
        if isinstance(v, list):
            return len(v)
    return 0


def rules_of(rep: Any) -> list[dict[str, Any]]:
    """Per-rule figures from a stage report of any reasonable shape; [] when there are none."""
    if not isinstance(rep, dict):
        return []
    raw = rep.get("rules")
    if raw is None:
        raw = rep.get("per_rule") or rep.get("by_rule")
    items: list[tuple[str, Any]] = []
    if isinstance(raw, dict):
        items = list(raw.items())
    elif isinstance(raw, list):
        items = [(str(r.get("code") or r.get("rule") or r.get("name") or f"rule {i + 1}"), r)
                 for i, r in enumerate(raw) if isinstance(r, dict)]
    out = []
    for code, r in items:
        if isinstance(r, (int, float)) and not isinstance(r, bool):
            out.append({"code": code, "fixed": 0, "flagged": 0, "dropped": 0, "matched": int(r),
                        "action": "", "description": "", "examples": []})
            continue
        if not isinstance(r, dict):
            continue
        counts = r.get("counts") if isinstance(r.get("counts"), dict) else r
        examples = r.get("examples") or []
        out.append({
            "code": str(code),
            "description": str(r.get("description") or ""),
            "action": str(r.get("action") or r.get("default_action") or ""),
            "fixed": _num(counts, _FIX_KEYS), "flagged": _num(counts, _FLAG_KEYS),
            "dropped": _num(counts, _DROP_KEYS),
            "matched": _num(counts, ("matched", "matches", "hits", "rows")),
            "examples": examples if isinstance(examples, list) else [examples],
        })
    return out


def duplicates_of(rep: Any) -> dict[str, Any] | None:
    """Duplicate clusters from a stage report: {clusters, rows_in_clusters, removed, sizes, examples}.

    Looks for a top-level ``duplicates``-like key, else for rules (a dict or a list) that carry
    ``clusters`` (the clean engine's exact/near duplicate rules: their biggest clusters).
    """
    if not isinstance(rep, dict):
        return None
    found: Any = None
    for key in ("duplicates", "dedup", "near_duplicates", "near_duplicate", "exact_duplicates", "clusters"):
        if key in rep:
            found = rep[key]
            break
    if found is None:
        rules = rep.get("rules")
        items = list(rules.values()) if isinstance(rules, dict) else rules if isinstance(rules, list) else []
        dup_rules = [r for r in items if isinstance(r, dict) and "clusters" in r]
        if not dup_rules:
            return None
        clusters: list = []
        for r in dup_rules:
            if isinstance(r.get("clusters"), list):
                clusters.extend(r["clusters"])
        found = {"clusters": clusters, "removed": sum(_num(r, _DROP_KEYS) for r in dup_rules),
                 "partial": True}
    if isinstance(found, list):
        found = {"clusters": found}
    if not isinstance(found, dict):
        n = int(found) if isinstance(found, (int, float)) and not isinstance(found, bool) else 0
        return {"clusters": n, "rows_in_clusters": 0, "removed": 0, "sizes": {}, "examples": [], "partial": False}
    clusters = found.get("clusters")
    sizes: dict[int, int] = {}
    examples = []
    n_clusters = 0
    if isinstance(clusters, list):
        n_clusters = len(clusters)
        for c in clusters:
            if isinstance(c, dict):
                members = c.get("members") or c.get("ids") or c.get("rows")
                size = c.get("size") or (len(members) if isinstance(members, list) else 1)
            elif isinstance(c, list):
                size = len(c)
            else:
                continue
            try:
                size = int(size)
            except (TypeError, ValueError):
                continue
            sizes[size] = sizes.get(size, 0) + 1
            if len(examples) < 10:
                examples.append(c)
    elif isinstance(clusters, (int, float)):
        n_clusters = int(clusters)
    if isinstance(found.get("sizes"), dict) and not sizes:
        sizes = {int(k): int(v) for k, v in found["sizes"].items() if str(k).isdigit()}
    return {"clusters": n_clusters or int(found.get("n_clusters") or 0),
            "rows_in_clusters": int(found.get("rows_in_clusters") or sum(k * v for k, v in sizes.items())),
            "removed": _num(found, ("removed", "dropped", "rows_removed")),
            "sizes": dict(sorted(sizes.items())), "examples": examples, "partial": bool(found.get("partial"))}


def _scalars(obj: Any, prefix: str = "", depth: int = 0, limit: int = 40) -> list[tuple[str, Any]]:
    """Flattened scalar figures of a report (for stages this module has no special view of)."""
    out: list[tuple[str, Any]] = []
    if isinstance(obj, dict) and depth < 3:
        for k, v in obj.items():
            if k in ("rules", "files", "examples", "clusters"):
                continue
            out.extend(_scalars(v, f"{prefix}{k}." if isinstance(v, dict) else f"{prefix}{k}", depth + 1, limit))
    elif isinstance(obj, (int, float, str, bool)) and prefix:
        out.append((prefix.rstrip("."), obj))
    return out[:limit]


# ============================================================================ SVG charts
# Drawn here rather than with altair + vl-convert (Vega-Lite to SVG): the same report takes 7x the CPU
# that way (2.3x at 200k rows) and loses hover values; figures in docs/libraries.md (bench/report_vegalite.py).

def _e(s: Any) -> str:
    return html.escape(str(s), quote=True)


def _fmt(n: float) -> str:
    if isinstance(n, float) and not n.is_integer():
        return f"{n:,.1f}"
    return f"{int(n):,}"


def _short(n: float) -> str:
    n = float(n)
    for unit, div in (("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            v = n / div
            return f"{v:.1f}{unit}".replace(".0" + unit, unit)
    return f"{int(n)}" if n.is_integer() else f"{n:.1f}"


def _clip(label: str, chars: int) -> str:
    return label if len(label) <= chars else label[: chars - 1] + "…"


def _legend(series: list[tuple[str, str]], x: float, y: float, width: float) -> tuple[str, float]:
    """Legend swatches laid out in rows; returns (svg, height used)."""
    parts, cx, cy = [], x, y
    for name, color in series:
        w = 22 + 7.2 * len(name) + 14
        if cx + w > x + width and cx > x:
            cx, cy = x, cy + 20
        parts.append(f'<rect x="{cx:.1f}" y="{cy:.1f}" width="12" height="12" rx="2" fill="{color}"/>'
                     f'<text x="{cx + 17:.1f}" y="{cy + 10.5:.1f}" class="lg">{_e(name)}</text>')
        cx += w
    return "".join(parts), cy - y + 20


def _nice_max(v: float) -> float:
    """The smallest 4 x (1, 2, 5 x 10^k) at or above ``v``, so the 4 grid steps are round numbers."""
    if v <= 0:
        return 4.0
    step = v / 4
    exp = 10 ** math.floor(math.log10(step))
    for m in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        nice = m * exp
        if step <= nice and nice >= 1 and float(nice).is_integer():
            return 4 * nice
    return 40 * exp


def hbar_chart(chart_id: str, rows: list[tuple[str, dict[str, float]]], series: list[tuple[str, str]], *,
               width: int = 880, bar: int = 22, percent: bool = False, total_label: bool = True,
               label_chars: int = 34) -> str:
    """Horizontal (stacked) bars: one row per label, one segment per series. ``percent`` scales to 100%."""
    if not rows:
        return '<p class="empty">nothing to show</p>'
    label_w = min(max(len(_clip(r[0], label_chars)) for r in rows) * 7.0 + 16, 280)
    right = 70
    plot_w = width - label_w - right
    legend_svg, legend_h = _legend(series, label_w, 6, plot_w) if len(series) > 1 else ("", 0)
    top = legend_h + 10
    gap = 8
    height = top + len(rows) * (bar + gap) + 24
    vmax = 100.0 if percent else _nice_max(max(sum(v.values()) for _, v in rows))
    out = [f'<svg class="chart" data-chart="{_e(chart_id)}" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" role="img" xmlns="http://www.w3.org/2000/svg">', legend_svg]
    for t in range(0, 5):  # grid
        gx = label_w + plot_w * t / 4
        out.append(f'<line x1="{gx:.1f}" y1="{top - 4}" x2="{gx:.1f}" y2="{height - 20}" class="grid"/>'
                   f'<text x="{gx:.1f}" y="{height - 6}" class="ax" text-anchor="middle">'
                   f'{_e(f"{int(vmax * t / 4)}%" if percent else _short(vmax * t / 4))}</text>')
    for i, (label, values) in enumerate(rows):
        y = top + i * (bar + gap)
        total = sum(values.values())
        out.append(f'<text x="{label_w - 8:.1f}" y="{y + bar * 0.7:.1f}" class="lb" text-anchor="end">'
                   f'<title>{_e(label)}</title>{_e(_clip(label, label_chars))}</text>')
        x = label_w
        for name, color in series:
            v = values.get(name, 0)
            if not v:
                continue
            w = plot_w * (v / total * 100 if percent and total else v) / vmax
            share = f" ({v / total:.1%})" if total else ""
            out.append(f'<rect x="{x:.2f}" y="{y}" width="{max(w, 0.8):.2f}" height="{bar}" fill="{color}" '
                       f'class="seg" data-series="{_e(name)}"><title>{_e(label)} · {_e(name)}: '
                       f'{_fmt(v)}{share}</title></rect>')
            if w > 34 and (percent or len(series) > 1) and (percent or v != total):
                txt = f"{v / total:.0%}" if percent else _fmt(v) if len(_fmt(v)) * 6.5 + 8 < w else _short(v)
                out.append(f'<text x="{x + w / 2:.1f}" y="{y + bar * 0.7:.1f}" class="in" '
                           f'text-anchor="middle">{txt}</text>')
            x += w
        if total_label:
            out.append(f'<text x="{x + 6:.1f}" y="{y + bar * 0.7:.1f}" class="tot">{_e(_fmt(total))}</text>')
    out.append("</svg>")
    return "".join(out)


def hbar_pairs(chart_id: str, rows: list[tuple[str, float, float]], *, width: int = 880,
               names: tuple[str, str] = ("before", "after"), label_chars: int = 34) -> str:
    """Two bars per label (before / after), for comparing two stages."""
    if not rows:
        return '<p class="empty">nothing to show</p>'
    label_w = min(max(len(_clip(r[0], label_chars)) for r in rows) * 7.0 + 16, 280)
    plot_w = width - label_w - 110
    legend_svg, legend_h = _legend([(names[0], BEFORE), (names[1], AFTER)], label_w, 6, plot_w)
    top, bar, gap = legend_h + 10, 11, 10
    height = top + len(rows) * (2 * bar + gap) + 24
    vmax = _nice_max(max(max(b, a) for _, b, a in rows))
    out = [f'<svg class="chart" data-chart="{_e(chart_id)}" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" role="img" xmlns="http://www.w3.org/2000/svg">', legend_svg]
    for t in range(0, 5):
        gx = label_w + plot_w * t / 4
        out.append(f'<line x1="{gx:.1f}" y1="{top - 4}" x2="{gx:.1f}" y2="{height - 20}" class="grid"/>'
                   f'<text x="{gx:.1f}" y="{height - 6}" class="ax" text-anchor="middle">{_short(vmax * t / 4)}</text>')
    for i, (label, b, a) in enumerate(rows):
        y = top + i * (2 * bar + gap)
        out.append(f'<text x="{label_w - 8:.1f}" y="{y + bar + 4:.1f}" class="lb" text-anchor="end">'
                   f'<title>{_e(label)}</title>{_e(_clip(label, label_chars))}</text>')
        for j, (v, color, name) in enumerate(((b, BEFORE, names[0]), (a, AFTER, names[1]))):
            w = plot_w * v / vmax
            out.append(f'<rect x="{label_w}" y="{y + j * bar}" width="{max(w, 0.8):.2f}" height="{bar - 1}" '
                       f'fill="{color}" class="seg" data-series="{name}"><title>{_e(label)} · {name}: {_fmt(v)}'
                       f'</title></rect>')
        delta = a - b
        sign = "+" if delta > 0 else ""
        cls = "up" if delta > 0 else "down" if delta < 0 else "tot"
        out.append(f'<text x="{label_w + plot_w * max(a, b) / vmax + 6:.1f}" y="{y + bar + 4:.1f}" class="{cls}">'
                   f'{_fmt(b)} → {_fmt(a)} ({sign}{_fmt(delta)})</text>')
    out.append("</svg>")
    return "".join(out)


def histogram(chart_id: str, series: list[tuple[str, str, list[int]]], edges: list[int], *, width: int = 460,
              height: int = 230, unit: str = "chars") -> str:
    """Vertical bars per bin (edges[i] <= x < edges[i+1], last bin open); several series side by side.

    Empty bins before the first and after the last non-empty one are left out.
    """
    if not series or not any(sum(c) for _, _, c in series):
        return '<p class="empty">nothing to show</p>'
    used = [i for i in range(len(edges)) if any(c[i] for _, _, c in series)]
    lo_i, hi_i = used[0], used[-1]
    bins = list(range(lo_i, hi_i + 1))
    nb = len(bins)
    left, right, bottom = 46, 10, 40
    legend_svg, legend_h = _legend([(n, c) for n, c, _ in series], left, 4, width - left - right)
    top = legend_h + 12
    plot_w, plot_h = width - left - right, height - top - bottom
    vmax = _nice_max(max(max(c) for _, _, c in series))
    slot = plot_w / nb
    bw = (slot - max(2, slot * 0.18)) / len(series)
    out = [f'<svg class="chart" data-chart="{_e(chart_id)}" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" role="img" xmlns="http://www.w3.org/2000/svg">', legend_svg]
    for t in range(0, 5):
        gy = top + plot_h - plot_h * t / 4
        out.append(f'<line x1="{left}" y1="{gy:.1f}" x2="{width - right}" y2="{gy:.1f}" class="grid"/>'
                   f'<text x="{left - 6}" y="{gy + 4:.1f}" class="ax" text-anchor="end">{_short(vmax * t / 4)}</text>')
    for n, i in enumerate(bins):
        lo = edges[i]
        if i == len(edges) - 1:
            label = f"≥{_short(lo)}"
        elif lo == 0:
            label = f"<{_short(edges[1])}"
        else:
            label = f"{_short(lo)}–{_short(edges[i + 1])}"
        x0 = left + n * slot + max(1, slot * 0.09)
        for j, (name, color, counts) in enumerate(series):
            v = counts[i]
            h = plot_h * v / vmax
            out.append(f'<rect x="{x0 + j * bw:.2f}" y="{top + plot_h - h:.2f}" width="{max(bw - 1, 1):.2f}" '
                       f'height="{max(h, 0):.2f}" fill="{color}" class="seg" data-series="{_e(name)}">'
                       f'<title>{_e(name)} · {label} {unit}: {_fmt(v)} rows</title></rect>')
        out.append(f'<text x="{left + n * slot + slot / 2:.1f}" y="{top + plot_h + 15:.1f}" class="ax" '
                   f'text-anchor="middle">{_e(label)}</text>')
    out.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" class="ax" text-anchor="middle">'
               f'{_e(unit)} per row</text>')
    out.append("</svg>")
    return "".join(out)


def donut(chart_id: str, parts: list[tuple[str, float, str]], *, size: int = 200, center: str = "") -> str:
    """A ring of shares with a legend beside it."""
    total = sum(v for _, v, _ in parts)
    if not total:
        return '<p class="empty">nothing to show</p>'
    r, w = size / 2 - 14, 26
    cx = cy = size / 2
    legend_w = 230
    height = max(size, 24 * len(parts) + 10)
    out = [f'<svg class="chart" data-chart="{_e(chart_id)}" viewBox="0 0 {size + legend_w} {height}" '
           f'width="{size + legend_w}" height="{height}" role="img" xmlns="http://www.w3.org/2000/svg">']
    angle = -math.pi / 2
    for name, v, color in parts:
        if not v:
            continue
        frac = v / total
        if frac >= 0.9999:
            out.append(f'<circle cx="{cx}" cy="{cy}" r="{r}" fill="none" stroke="{color}" stroke-width="{w}" '
                       f'class="seg" data-series="{_e(name)}"><title>{_e(name)}: {_fmt(v)} (100%)</title></circle>')
            break
        a2 = angle + 2 * math.pi * frac
        x1, y1 = cx + r * math.cos(angle), cy + r * math.sin(angle)
        x2, y2 = cx + r * math.cos(a2), cy + r * math.sin(a2)
        large = 1 if frac > 0.5 else 0
        out.append(f'<path d="M {x1:.2f} {y1:.2f} A {r} {r} 0 {large} 1 {x2:.2f} {y2:.2f}" fill="none" '
                   f'stroke="{color}" stroke-width="{w}" class="seg" data-series="{_e(name)}">'
                   f'<title>{_e(name)}: {_fmt(v)} ({frac:.1%})</title></path>')
        angle = a2
    if center:
        out.append(f'<text x="{cx}" y="{cy + 6}" class="center" text-anchor="middle">{_e(center)}</text>')
    for i, (name, v, color) in enumerate(parts):
        y = 10 + i * 24
        out.append(f'<rect x="{size + 10}" y="{y}" width="14" height="14" rx="3" fill="{color}"/>'
                   f'<text x="{size + 32}" y="{y + 12}" class="lb">{_e(name)}</text>'
                   f'<text x="{size + legend_w - 6}" y="{y + 12}" class="lb" text-anchor="end">'
                   f'{_fmt(v)} · {v / total:.1%}</text>')
    out.append("</svg>")
    return "".join(out)


def _bins(values: pl.Series, edges: list[int]) -> list[int]:
    if values.len() == 0:
        return [0] * len(edges)
    idx = pl.Series(edges, dtype=pl.Int64).search_sorted(values.cast(pl.Int64), side="right") - 1
    got = {int(k): int(v) for k, v in idx.value_counts().iter_rows()}
    return [got.get(i, 0) for i in range(len(edges))]


# ============================================================================ HTML

CSS = """
:root{--fg:#1f2933;--muted:#5f6b7a;--line:#e4e7eb;--bg:#f5f7fa;--card:#fff;--accent:#2563eb}
*{box-sizing:border-box}
body{margin:0;font:14px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,"Noto Sans","Helvetica Neue",Arial,sans-serif;color:var(--fg);background:var(--bg)}
header{background:#0f172a;color:#fff;padding:22px 32px 18px}
header h1{margin:0 0 4px;font-size:22px;font-weight:650}
header .sub{color:#cbd5e1;font-size:13px}
header code{color:#e2e8f0;background:#1e293b;padding:1px 6px;border-radius:4px}
nav{position:sticky;top:0;z-index:2;background:#fff;border-bottom:1px solid var(--line);padding:8px 32px;display:flex;flex-wrap:wrap;gap:6px 16px}
nav a{color:var(--accent);text-decoration:none;font-size:13px}
main{max-width:1000px;margin:0 auto;padding:20px 24px 60px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:12px;margin:4px 0 18px}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:12px 14px}
.card .k{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:24px;font-weight:650;margin-top:2px}
.card .d{color:var(--muted);font-size:12px}
section{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:18px 22px;margin:16px 0}
section h2{margin:0 0 4px;font-size:17px}
section p.note{margin:0 0 12px;color:var(--muted);font-size:13px}
h3{font-size:14px;margin:16px 0 6px}
svg.chart{max-width:100%;height:auto;display:block;margin:6px 0 10px}
svg .grid{stroke:#eef1f4;stroke-width:1}
svg .ax{fill:#6b7785;font-size:11px}
svg .lb{fill:#27313d;font-size:12px}
svg .lg{fill:#27313d;font-size:12px}
svg .tot{fill:#27313d;font-size:12px;font-weight:600}
svg .up{fill:#15803d;font-size:12px;font-weight:600}
svg .down{fill:#b91c1c;font-size:12px;font-weight:600}
svg .in{fill:#fff;font-size:11px;font-weight:600}
svg .center{fill:#27313d;font-size:20px;font-weight:700}
svg .seg:hover{opacity:.8}
table{border-collapse:collapse;width:100%;font-size:13px;margin:6px 0 8px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{color:var(--muted);font-weight:600;font-size:12px;background:#fafbfc}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tr.total td{font-weight:650;border-top:2px solid var(--line)}
.ev{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px;color:#374151;white-space:pre-wrap;word-break:break-word}
.desc{color:var(--muted);font-size:12px}
td:first-child{min-width:150px}
.where{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px;color:var(--muted)}
.pill{display:inline-block;padding:0 7px;border-radius:9px;font-size:11px;background:#eef2ff;color:#3730a3}
.ok{color:#15803d}.bad{color:#b91c1c}
.empty{color:var(--muted);font-style:italic}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:14px}
details summary{cursor:pointer;color:var(--accent);font-size:13px}
footer{color:var(--muted);font-size:12px;text-align:center;margin:20px}
@media print{nav{display:none}section{break-inside:avoid}}
"""


def _table(headers: list[str], rows: list[list[Any]], numeric: Iterable[int] = (), total: list[Any] | None = None,
           raw: Iterable[int] = ()) -> str:
    numeric, raw = set(numeric), set(raw)
    out = ["<table><thead><tr>"]
    out += [f'<th class="{"n" if i in numeric else ""}">{_e(h)}</th>' for i, h in enumerate(headers)]
    out.append("</tr></thead><tbody>")
    for row in rows + ([total] if total else []):
        cls = ' class="total"' if total is not None and row is total else ""
        out.append(f"<tr{cls}>")
        for i, v in enumerate(row):
            text = v if i in raw else _e(_fmt(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
            out.append(f'<td class="{"n" if i in numeric else ""}">{text}</td>')
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _ev(text: Any, limit: int = 220) -> str:
    s = str(text)
    return f'<span class="ev">{_e(_clip(s, limit))}</span>'


def _src(source: str) -> str:
    return Path(source).name or source


def _where(where: Any) -> str:
    """``/long/path/file.jsonl:12`` -> ``file.jsonl:12`` (the full text stays in the tooltip)."""
    w = str(where)
    return f'<span class="where" title="{_e(w)}">{_e(Path(w).name or w)}</span>'


def _pct(a: float, b: float) -> str:
    return f"{a / b:.1%}" if b else "–"


class _Doc:
    def __init__(self):
        self.sections: list[tuple[str, str, str]] = []  # (anchor, title, html)

    def add(self, anchor: str, title: str, body: str, note: str = "") -> None:
        note_html = f'<p class="note">{note}</p>' if note else ""
        self.sections.append((anchor, title, f'<section id="{anchor}"><h2>{_e(title)}</h2>{note_html}{body}</section>'))


def _cards(cards: list[tuple[str, str, str]]) -> str:
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="k">{_e(k)}</div><div class="v">{_e(v)}</div><div class="d">{_e(d)}</div></div>'
        for k, v, d in cards) + "</div>"


def _lang_totals(counts: pl.DataFrame) -> dict[str, int]:
    agg = counts.group_by("lang").agg(pl.col("rows").sum())
    got = {r[0]: int(r[1]) for r in agg.iter_rows()}
    return {lang: got.get(lang, 0) for lang in LANGS}


def _summary(p: dict[str, Any], before: dict[str, Any] | None) -> str:
    counts: pl.DataFrame = p["counts"]
    kinds = counts.group_by("kind").agg(pl.col("rows").sum()).sort("kind")
    kinds_txt = " · ".join(f"{k} {_short(n)}" for k, n in kinds.iter_rows())
    langs = _lang_totals(counts)
    rows = p["rows"]
    known = rows - langs["und"]
    ms_share = f"{langs['ms'] / known:.0%}" if known else "–"
    lang_note = (f"of rows with a language; id {langs['id'] / known:.0%}, en {langs['en'] / known:.0%}" if known
                 else "no language identified (ingest --no-lang?)")
    all_chars = pl.concat(list(p["lengths"].values())) if p["lengths"] else pl.Series([], dtype=pl.Int64)
    cards = [("rows", _fmt(rows), kinds_txt or "empty"),
             ("sources", _fmt(counts["source"].n_unique()), f"{counts['format'].n_unique()} formats"),
             ("Malay", ms_share, lang_note)]
    q = p.get("quarantine")
    if q is not None:
        cards.append(("quarantined", _fmt(q["rows"]), f"{len(q['groups'])} reason{'s' if len(q['groups']) != 1 else ''}; see below"))
    if all_chars.len():
        cards.append(("median length", f"{_fmt(float(all_chars.median()))}",
                      f"characters per row; p95 {_fmt(float(all_chars.quantile(0.95, 'nearest')))}"))
    if p["tokens"]:
        all_tok = pl.concat(list(p["tokens"].values()))
        cards.append(("tokens", _short(int(all_tok.sum())), f"median {_fmt(float(all_tok.median()))} per row"))
    if before is not None:
        delta = rows - before["rows"]
        cards.insert(1, ("vs. before", f"{'+' if delta > 0 else ''}{_fmt(delta)}",
                         f"{_fmt(before['rows'])} → {_fmt(rows)} rows ({_pct(rows, before['rows'])} kept)"))
    return _cards(cards)


def _section_sources(doc: _Doc, p: dict[str, Any]) -> None:
    counts: pl.DataFrame = p["counts"]
    by_src = counts.group_by("source", "kind").agg(pl.col("rows").sum())
    rows = []
    for (source,), g in sorted(by_src.group_by("source"), key=lambda t: -int(t[1]["rows"].sum())):
        rows.append((_src(source), {k: int(n) for k, n in g.select("kind", "rows").iter_rows()}))
    kinds = [(k, KIND_COLORS[k]) for k in schemas.KINDS if k in set(counts["kind"])]
    body = hbar_chart("rows-by-source", rows, kinds)
    fmt_rows = (counts.group_by("kind", "source", "format").agg(pl.col("rows").sum())
                .sort("kind", "rows", descending=[False, True]))
    table = _table(["kind", "source", "format", "rows"],
                   [[k, _src(s), f, n] for k, s, f, n in fmt_rows.iter_rows()], numeric=[3],
                   total=["total", "", "", int(fmt_rows["rows"].sum())])
    body += f"<details><summary>table</summary>{table}</details>"
    doc.add("sources", "Rows per source and kind", body,
            "Each bar is one input file; colours are the row kinds (sft, chat, rm, ppo).")


def _section_langs(doc: _Doc, p: dict[str, Any]) -> None:
    counts: pl.DataFrame = p["counts"]
    totals = _lang_totals(counts)
    parts = [(f"{LANG_NAMES[lg]} ({lg})", n, LANG_COLORS[lg]) for lg, n in totals.items() if n]
    body = donut("lang-mix", parts, center=f"{_pct(totals['ms'], p['rows'])} ms")
    per = counts.group_by("source", "lang").agg(pl.col("rows").sum())
    rows = []
    for (source,), g in sorted(per.group_by("source"), key=lambda t: str(t[0][0])):
        rows.append((_src(source), {f"{LANG_NAMES[lg]} ({lg})": int(n) for lg, n in g.select("lang", "rows").iter_rows()}))
    series = [(f"{LANG_NAMES[lg]} ({lg})", LANG_COLORS[lg]) for lg in LANGS if totals[lg]]
    body += "<h3>per source (share of rows)</h3>" + hbar_chart("lang-by-source", rows, series, percent=True,
                                                                 total_label=True)
    note = "The <code>lang</code> column: Malay vs. Indonesian vs. English vs. Korean."
    if totals["und"] == p["rows"]:
        note += " <b>No row has a language yet</b> (ingested with <code>--no-lang</code>?)."
    doc.add("languages", "Language mix", body, note)


def _length_section(doc: _Doc, p: dict[str, Any], before: dict[str, Any] | None) -> None:
    body = []
    for key, unit, anchor in (("lengths", "characters", "chars"), ("tokens", "tokens", "tokens")):
        if not p[key]:
            continue
        stats_rows, charts = [], []
        for kind, vals in p[key].items():
            if before is not None and before.get(key) and kind in before[key]:
                series = [("before", BEFORE, _bins(before[key][kind], LENGTH_EDGES)),
                          ("after", AFTER, _bins(vals, LENGTH_EDGES))]
            else:
                series = [(kind, KIND_COLORS[kind], _bins(vals, LENGTH_EDGES))]
            charts.append(f"<div><h3>{_e(kind)}: {unit} per row</h3>"
                          f"{histogram(f'len-{anchor}-{kind}', series, LENGTH_EDGES, unit=unit)}</div>")
            if vals.len():
                stats_rows.append([kind, vals.len(), int(vals.min()), float(vals.median()),
                                   int(vals.quantile(0.95, "nearest")), int(vals.max())])
        body.append(f'<div class="grid2">{"".join(charts)}</div>')
        body.append(f"<h3>{unit} per row, by kind</h3>")
        body.append(_table(["kind", "rows", "min", "median", "p95", "max"], stats_rows, numeric=[1, 2, 3, 4, 5]))
    note = "All text of a row (every field, every message, every completion)."
    if p["token_method"]:
        note += f" Tokens by <code>{_e(p['token_method'])}</code>."
    else:
        note += " Pass <code>--model M.model</code> to add token counts."
    doc.add("lengths", "Length distributions", "".join(body), note)


def _section_ingest(doc: _Doc, rep: dict[str, Any], of: str = "") -> None:
    files = [f for f in rep.get("files", []) if isinstance(f, dict)]
    if not files:
        return
    rows, table = [], []
    for f in files:
        rec, kept, recov, quar = (int(f.get(k) or 0) for k in ("records", "kept", "recovered", "quarantined"))
        rows.append((_src(str(f.get("source", "?"))), {"kept as is": max(kept - recov, 0), "recovered": recov,
                                                        "quarantined": quar}))
        reasons = f.get("reasons") or {}
        reason_txt = ", ".join(f"{k} {v}" for k, v in reasons.items()) if isinstance(reasons, dict) else str(reasons)
        table.append([_src(str(f.get("source", "?"))), f.get("format", ""), f.get("kind", ""), rec, kept,
                      int(f.get("rows") or 0), recov, quar, reason_txt])
    t = rep.get("total") or {}
    total = ["total", "", "", *(int(t.get(k) or 0) for k in ("records", "kept", "rows", "recovered", "quarantined")),
             "every record accounted for" if t.get("accounted") else ("ACCOUNTING MISMATCH" if t else "")]
    body = hbar_chart("ingest", rows, [("kept as is", "#16a34a"), ("recovered", "#0ea5e9"),
                                       ("quarantined", "#dc2626")])
    tbl = _table(["source", "format", "kind", "records", "kept", "rows", "recovered", "quarantined", "reasons"],
                 table, numeric=[3, 4, 5, 6, 7], total=total)
    body += f"<details{' open' if len(files) <= 12 else ''}><summary>table</summary>{tbl}</details>"
    doc.add("ingest", f"Ingest{of}", body, "Records read per source file: kept unchanged, kept after a repair "
            "(recovered), or quarantined with a reason.")


def _section_rules(doc: _Doc, rules: list[dict[str, Any]], rep: dict[str, Any]) -> None:
    active = [r for r in rules if r["fixed"] or r["flagged"] or r["dropped"] or r["matched"]]
    rows = [(r["code"], {"fixed": r["fixed"], "flagged": r["flagged"], "dropped": r["dropped"],
                         **({"matched": r["matched"]} if not (r["fixed"] or r["flagged"] or r["dropped"]) else {})})
            for r in sorted(active, key=lambda r: -(r["fixed"] + r["flagged"] + r["dropped"] + r["matched"]))]
    series = [(k, c) for k, c in ACTION_COLORS.items()]
    if any("matched" in v for _, v in rows):
        series.append(("matched", "#64748b"))
    body = hbar_chart("clean-rules", rows, series) if rows else '<p class="empty">no rule matched any row</p>'
    table = []
    for r in active:
        ex = ""
        for x in r["examples"][:2]:
            if isinstance(x, dict):
                where = x.get("where") or x.get("id") or ""
                ev = x.get("evidence") or x.get("before") or x.get("text") or orjson.dumps(x).decode()
                after = f' → {_ev(x["after"], 120)}' if x.get("after") else ""
                ex += f'<div>{_where(where)} {_ev(ev, 160)}{after}</div>'
            else:
                ex += f"<div>{_ev(x, 160)}</div>"
        table.append([f"<b>{_e(r['code'])}</b><br><span class='desc'>{_e(r['description'])}</span>",
                      f'<span class="pill">{_e(r["action"])}</span>' if r["action"] else "",
                      r["fixed"], r["flagged"], r["dropped"], ex])
    body += _table(["rule", "action", "fixed", "flagged", "dropped", "examples"], table, numeric=[2, 3, 4],
                   raw=[0, 1, 5])
    idle = [r["code"] for r in rules if r not in active]
    if idle:
        body += f'<p class="note">No match: {_e(", ".join(idle))}.</p>'
    extra = [(k, v) for k, v in _scalars(rep) if k not in ("stage",)]
    if extra:
        body += "<details><summary>all figures of the stage report</summary>" + _table(
            ["figure", "value"], [[k, v] for k, v in extra]) + "</details>"
    doc.add("rules", "What each clean rule did", body,
            "From the stage's report.json: rows each rule fixed (text repaired, recorded in meta), flagged "
            "(kept, marked in meta) or dropped (moved to quarantine.jsonl).")


def _member_label(m: Any) -> str:
    if isinstance(m, dict):
        label = str(m.get("id") or m.get("row") or "?")
        if m.get("dup_kind"):
            label += f" ({m['dup_kind']}" + (f" {m['similarity']:.2f}" if isinstance(m.get("similarity"), float)
                                              else "") + ")"
        return label
    return str(m)


def _section_dups(doc: _Doc, d: dict[str, Any]) -> None:
    shown = "clusters shown" if d["partial"] else "clusters"
    cards = [(shown, _fmt(d["clusters"]), "the biggest, as the stage reported them" if d["partial"]
              else "groups of duplicate rows"),
             ("rows in them", _fmt(d["rows_in_clusters"]), "including the one kept per cluster")]
    if d["removed"]:
        cards.append(("removed", _fmt(d["removed"]), "rows dropped as duplicates (all clusters)"))
    body = _cards(cards)
    if d["sizes"]:
        rows = [(f"{size} rows", {"clusters": n}) for size, n in d["sizes"].items()]
        body += "<h3>cluster sizes</h3>" + hbar_chart("dup-sizes", rows, [("clusters", "#6366f1")])
    if d["examples"]:
        ex_rows = []
        for c in d["examples"]:
            if isinstance(c, dict):
                members = c.get("members") or c.get("ids") or c.get("rows") or []
                kept = c.get("kept")
                text = (kept.get("text") if isinstance(kept, dict) else None) or c.get("text") or c.get("example") \
                    or (members[0].get("text") if members and isinstance(members[0], dict) else "") or ""
                size = c.get("size") or (len(members) if isinstance(members, list) else "")
                ids = ", ".join(_member_label(m) for m in members[:6]) if isinstance(members, list) else str(members)
                ex_rows.append([size, _ev(ids, 160), _ev(text, 200)])
            else:
                ex_rows.append([len(c), _ev(", ".join(map(_member_label, c[:6])), 160), ""])
        body += "<h3>examples (kept row first)</h3>" + _table(["size", "members", "text"], ex_rows, numeric=[0],
                                                              raw=[1, 2])
    doc.add("duplicates", "Duplicate clusters", body, "Exact and near-duplicate groups found by the clean stage; "
            "one row per cluster is kept.")


def _section_quarantine(doc: _Doc, q: dict[str, Any]) -> None:
    if not q["rows"]:
        doc.add("quarantine", "Quarantine", '<p class="ok">No row was quarantined.</p>')
        return
    rows = [(f"{g['stage']}: {g['code']}", {"rows": g["rows"]}) for g in q["groups"]]
    body = hbar_chart("quarantine", rows, [("rows", "#dc2626")])
    table = []
    for g in q["groups"]:
        ex = "".join(f'<div>{_where(x["where"])} {_ev(x["evidence"], 160)}</div>'
                     for x in g["examples"])
        table.append([g["stage"], f"<b>{_e(g['code'])}</b><br>{_e(g['reason'])}", g["rows"], ex])
    body += _table(["stage", "code / reason", "rows", "examples"], table, numeric=[2], raw=[1, 3])
    if q["unreadable_lines"]:
        body += f'<p class="bad">{q["unreadable_lines"]} lines of quarantine.jsonl could not be read.</p>'
    doc.add("quarantine", "Quarantine", body, f"{_fmt(q['rows'])} rows set aside in quarantine.jsonl, by stage "
            "and code; nothing is lost, every one can be inspected and restored.")


def _section_meta(doc: _Doc, meta: dict[str, Any], rows: int) -> None:
    keys = meta["keys"]
    if not keys:
        return
    nice = {"recovered": "repaired at ingest", "fixes": "fixed by clean rules", "flags": "flagged",
            "orig": "translated (original kept)", "critique": "critiqued", "judge": "judged", "seed": "seed task"}
    body = hbar_chart("meta-keys", [(f"{k} ({nice[k]})" if k in nice else k, {"rows": n})
                                    for k, n in sorted(keys.items(), key=lambda kv: -kv[1])], [("rows", "#0ea5e9")])
    for key in ("fixes", "flags"):
        codes = meta["codes"].get(key) or {}
        if codes:
            body += f"<h3>{key} by rule</h3>" + hbar_chart(
                f"meta-{key}", [(c, {"rows": n}) for c, n in sorted(codes.items(), key=lambda kv: -kv[1])],
                [("rows", ACTION_COLORS["fixed" if key == "fixes" else "flagged"])])
    tr = meta.get("translations") or []
    if tr:
        body += "<h3>translated by curate</h3>" + _table(
            ["from", "to", "model", "rows"], [[t["from"] or "?", t["to"] or "?", t["model"] or "", t["rows"]] for t in tr],
            numeric=[3])
    doc.add("meta", "What stages recorded on rows", body,
            f"Keys of the <code>meta</code> column: how many of the {_fmt(rows)} rows carry each.")


def _section_compare(doc: _Doc, p: dict[str, Any], b: dict[str, Any]) -> None:
    after, before = p["content"].unique("id"), b["content"].unique("id")
    j = before.join(after, on="id", how="full", suffix="_a", coalesce=True)
    kept = j.filter(pl.col("h").is_not_null() & pl.col("h_a").is_not_null())
    same = int((kept["h"] == kept["h_a"]).sum())
    changed = kept.height - same
    dropped = int((j["h"].is_not_null() & j["h_a"].is_null()).sum())
    new = int((j["h"].is_null() & j["h_a"].is_not_null()).sum())
    body = _cards([("unchanged", _fmt(same), "same id, same text"),
                   ("changed", _fmt(changed), "same id, text fixed / translated"),
                   ("dropped", _fmt(dropped), "ids only in before"),
                   ("new", _fmt(new), "ids only in after")])
    body += hbar_chart("compare-ids", [("rows (unique ids)", {"unchanged": same, "changed": changed,
                                                              "dropped": dropped, "new": new})],
                       [("unchanged", "#94a3b8"), ("changed", "#16a34a"), ("dropped", "#dc2626"),
                        ("new", "#2563eb")])
    src_b = b["counts"].group_by("source").agg(pl.col("rows").sum())
    src_a = p["counts"].group_by("source").agg(pl.col("rows").sum())
    both = src_b.join(src_a, on="source", how="full", suffix="_a", coalesce=True).fill_null(0).sort("source")
    body += "<h3>rows per source</h3>" + hbar_pairs(
        "compare-sources", [(_src(s), int(x), int(y)) for s, x, y in both.iter_rows()])
    lb, la = _lang_totals(b["counts"]), _lang_totals(p["counts"])
    series = [(f"{LANG_NAMES[lg]} ({lg})", LANG_COLORS[lg]) for lg in LANGS if lb[lg] or la[lg]]
    body += "<h3>language mix</h3>" + hbar_chart(
        "compare-langs", [(f"before: {b['name']}", {f"{LANG_NAMES[k]} ({k})": v for k, v in lb.items()}),
                          (f"after: {p['name']}", {f"{LANG_NAMES[k]} ({k})": v for k, v in la.items()})],
        series, percent=True)
    kind_rows = []
    for kind in schemas.KINDS:
        nb = int(b["counts"].filter(pl.col("kind") == kind)["rows"].sum())
        na = int(p["counts"].filter(pl.col("kind") == kind)["rows"].sum())
        if nb or na:
            mb = float(b["lengths"][kind].median()) if kind in b["lengths"] and nb else 0
            ma = float(p["lengths"][kind].median()) if kind in p["lengths"] and na else 0
            kind_rows.append([kind, nb, na, na - nb, mb, ma])
    body += "<h3>by kind</h3>" + _table(["kind", "rows before", "rows after", "change", "median chars before",
                                         "median chars after"], kind_rows, numeric=[1, 2, 3, 4, 5])
    doc.add("compare", "Before / after", body,
            f"<b>before</b> = <code>{_e(b['path'])}</code>, <b>after</b> = <code>{_e(p['path'])}</code>. Rows are "
            "matched by their stable id (a hash of the content at ingest, carried through every stage).")


def render(p: dict[str, Any], before: dict[str, Any] | None = None, title: str | None = None) -> str:
    """The report as one HTML string."""
    doc = _Doc()
    if before is not None:
        _section_compare(doc, p, before)
    _section_sources(doc, p)
    _section_langs(doc, p)
    _length_section(doc, p, before)
    rep = p["report"] if isinstance(p["report"], dict) else {}
    rules = rules_of(rep)
    if rules:
        _section_rules(doc, rules, rep)
    dups = duplicates_of(rep)
    if dups:
        _section_dups(doc, dups)
    if rep.get("stage") == "ingest" or (rep.get("files") and rep.get("total")):
        _section_ingest(doc, rep)
    before_rep = before["report"] if before is not None and isinstance(before.get("report"), dict) else {}
    if before_rep.get("stage") == "ingest" and rep.get("stage") != "ingest":
        _section_ingest(doc, before_rep, of=f" (of {before['name']}, the before stage)")
    if p["quarantine"] is not None:
        _section_quarantine(doc, p["quarantine"])
    _section_meta(doc, p["meta"], p["rows"])
    if rep and not rules and rep.get("stage") != "ingest":
        figs = _scalars(rep)
        if figs:
            doc.add("stage", f"Stage report ({rep.get('stage', '?')})", _table(["figure", "value"],
                                                                               [[k, v] for k, v in figs]))
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = title or f"curate report · {p['name']}"
    stage = f" · stage <code>{_e(p['stage'])}</code>" if p["stage"] else ""
    cmp_txt = f" · compared with <code>{_e(before['path'])}</code>" if before is not None else ""
    nav = "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t, _ in doc.sections)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f'<title>{_e(title)}</title><style>{CSS}</style></head><body>'
            f'<header><h1>{_e(title)}</h1><div class="sub"><code>{_e(p["path"])}</code>{stage}{cmp_txt} · {now}'
            f'</div></header><nav>{nav}</nav><main>'
            f'<div id="summary">{_summary(p, before)}</div>'
            + "".join(s for _, _, s in doc.sections)
            + '</main><footer>Generated by curate · one self-contained file: no network, no scripts.</footer>'
              '</body></html>')


def write_report(dataset_dir: str | os.PathLike, out_html: str | os.PathLike, compare: str | os.PathLike | None = None,
                 model: Any = None, title: str | None = None) -> Path:
    """Write the HTML report of ``dataset_dir`` (``compare`` = the earlier stage it came from) atomically."""
    p = profile(dataset_dir, model)
    before = profile(compare, model) if compare is not None else None
    out = Path(out_html)
    io.write_bytes(out, render(p, before, title).encode("utf-8"))
    out.chmod(0o644)  # a report is meant to be shared (temp files are created 0600)
    return out
