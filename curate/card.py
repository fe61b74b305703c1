"""The dataset card (README.md, Hugging Face style) that ``curate export`` writes beside the files.

YAML header (license, language, task_categories, size_categories, tags, configs that point the Hub
viewer at the exported files), then: key figures, files, sources and their licenses, languages,
sizes, schema of each exported format, what ingest / cleaning / translation did, and the
limitations that follow from the licenses.

Licenses are looked up per source file (the ``source`` column) in :data:`SOURCE_LICENSES`, built
from ``datasets/raw/NOTICE.md`` and the fixtures' SOURCES.md; a file not listed is "unknown".
Stage reports are passed in, or found next to the dataset the frames were read from.
"""

from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path
from typing import Any, Iterable

import orjson
import polars as pl

from curate import io

# file name -> (origin, Hugging Face license id, license as the origin states it)
_ALPACA = ("tatsu-lab/stanford_alpaca @ 761dc5bf, seed_tasks.jsonl", "cc-by-nc-4.0",
           "code Apache-2.0, data CC BY-NC 4.0")
_GSM8K = ("gururise/AlpacaDataCleaned @ 791174f6, dataset_extensions/gsm_8k/gsm_8k_train.json", "cc-by-nc-4.0",
          "CC BY-NC 4.0 (Alpaca); GSM8K \"permissive, unknown\"")
_KOCHAT = ("airobotlab/KoChatGPT @ 5d01e3d7, data_kochatgpt/", "unknown", "none stated for the data")
_DOCTOR = ("Kent0n-Li/ChatDoctor @ e77bd7eb, chatdoctor5k.json", "apache-2.0",
           "Apache-2.0; README: academic research only, no commercial or clinical use")
_MY = ("khursani8/MYChatGPT @ 88697122 (Malay machine translations)", "cc-by-nc-4.0",
       "README: research use only, CC BY-NC 4.0 (no LICENSE file)")


def _my(path: str) -> tuple[str, str, str]:
    return (f"khursani8/MYChatGPT @ 88697122, {path} (Malay machine translation)", *_MY[1:])


_SHAREGPT = ("salesforce/DialogStudio @ 3e54576b, open-domain-dialogues/ShareGPT/original_example.json", "other",
             "repo Apache-2.0; the data follows OpenAI and ShareGPT terms")
_FASTCHAT = ("lm-sys/FastChat @ 0e6d3e4b, data/dummy_conversation.json", "apache-2.0", "Apache-2.0")

SOURCE_LICENSES: dict[str, tuple[str, str, str]] = {
    "alpaca_seed_tasks.jsonl": _ALPACA,
    "alpacacleaned_gsm8k.json": _GSM8K,
    "kochatgpt_conversation.jsonl": _KOCHAT,
    "kochatgpt_ppo.jsonl": _KOCHAT,
    "kochatgpt_ppo_anomalies.jsonl": _KOCHAT,
    "kochatgpt_seed_data.txt": _KOCHAT,
    "chatdoctor.json": _DOCTOR,
    "chatdoctor_anomalies.json": _DOCTOR,
    "malay_seed_tasks.jsonl": _my("stanford/seed_task_ms.jsonl"),
    "malay_alpaca.json": _my("stanford/malay.json"),
    "malay_chatdoctor.jsonl": _my("chatdoctor/chatdoctor5k_ms.jsonl"),
    "malay_gpt4all.jsonl": _my("gpt4all/data_ms.jsonl"),
    "malay_kochatgpt_sft.jsonl": _my("kochatgpt/mschatgpt_1_SFT.jsonl"),
    "malay_kochatgpt_rm.jsonl": _my("kochatgpt/mschatgpt_2_RM.jsonl"),
    "malay_kochatgpt_ppo.jsonl": _my("kochatgpt/mschatgpt_3_PPO.jsonl"),
    "malay_kochatgpt_conversation.jsonl": _my("kochatgpt/mychatgpt_1_SFT_conversation.jsonl"),
    "sharegpt.json": _SHAREGPT,
    "sharegpt_fastchat_identity.json": _FASTCHAT,
}
UNKNOWN = ("unknown origin", "unknown", "unknown: check the source's terms before use")
NON_COMMERCIAL = {"cc-by-nc-4.0", "cc-by-nc-sa-4.0", "cc-by-nc-nd-4.0"}

LANG_NAMES = {"ms": "Malay", "id": "Indonesian", "en": "English", "ko": "Korean", "other": "other",
              "und": "not identified"}
KIND_TAGS = {"sft": ["sft", "instruction-tuning"], "chat": ["chat", "conversational"],
             "rm": ["rlhf", "reward-modeling", "preference"], "ppo": ["rlhf", "ppo"]}
KIND_NAMES = {"sft": "single-turn instructions (SFT)", "chat": "multi-turn chats", "rm": "ranked completions "
              "(reward model / preference)", "ppo": "prompts only (PPO / RL)"}
FORMAT_SCHEMAS = {
    "messages": "`messages`: list of `{role, content}` (roles `system` / `user` / `assistant`) - TRL "
                "conversational, OpenAI chat fine-tuning",
    "prompt_completion": "`prompt`, `completion` (TRL prompt-completion; for chats both are message lists: the "
                         "history, then the last assistant answer)",
    "alpaca": "JSON array of `{instruction, input, output}` (`input` is \"\" when there is none)",
    "pairs": "`prompt`, `chosen`, `rejected` - every ordered pair the ranking implies, ties skipped (TRL DPO / "
             "reward trainer)",
    "ranked": "`prompt`, `completions` (best first), `ranks` (0 = best)",
    "prompt": "`prompt`",
}


def license_of(source: str) -> tuple[str, str, str]:
    """(origin, Hugging Face license id, stated license) of a source file, by its file name."""
    name = Path(str(source)).name
    if name in SOURCE_LICENSES:
        return SOURCE_LICENSES[name]
    base = re.sub(r"_anomalies(?=\.)", "", name)
    if base in SOURCE_LICENSES:
        return SOURCE_LICENSES[base]
    return UNKNOWN


def size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                         (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")):
        if n < limit:
            return label
    return "n>1B"


# ---------------------------------------------------------------------------- stage reports

def dataset_paths(frames: dict[str, pl.LazyFrame | pl.DataFrame]) -> list[Path]:
    """Files the frames were scanned from (best effort, from the lazy plan); [] for in-memory frames."""
    paths = []
    for f in frames.values():
        if not isinstance(f, pl.LazyFrame):
            continue
        try:
            plan = f.explain(optimized=False)
        except Exception:  # noqa: BLE001 - a plan we can't read just means no reports found
            continue
        for m in re.finditer(r"SCAN \[([^\]]+)\]", plan):
            for part in m.group(1).split(", "):
                p = Path(part.strip())
                if p.suffix in (".parquet", ".jsonl", ".ndjson", ".json") and p.exists():
                    paths.append(p)
    return paths


def reports_for(frames: dict[str, pl.LazyFrame | pl.DataFrame], limit: int = 8) -> list[dict[str, Any]]:
    """``report.json`` of the dataset the frames come from, then of each stage before it when a report
    names its input (``input`` / ``inputs`` / ``input_dir``), oldest first."""
    seen: set[Path] = set()
    todo = [p.parent for p in dataset_paths(frames)]
    found: list[dict[str, Any]] = []
    while todo and len(found) < limit:
        d = todo.pop(0).resolve()
        if d in seen:
            continue
        seen.add(d)
        rep_path = d / "report.json"
        try:
            rep = orjson.loads(rep_path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue
        if not isinstance(rep, dict):
            continue
        found.append(rep)
        for key in ("input", "inputs", "input_dir", "in"):
            v = rep.get(key)
            for item in (v if isinstance(v, list) else [v]):
                if isinstance(item, str):
                    p = Path(item)
                    todo.append(p if p.is_dir() else p.parent)
    return found[::-1]


def _as_list(reports: Any) -> list[dict[str, Any]]:
    if reports is None:
        return []
    if isinstance(reports, dict):
        if "stage" in reports or "files" in reports or "rules" in reports:
            return [reports]
        return [dict(v, stage=v.get("stage", k)) for k, v in reports.items() if isinstance(v, dict)]
    return [r for r in reports if isinstance(r, dict)]


# ---------------------------------------------------------------------------- facts

def _facts(frames: dict[str, pl.LazyFrame | pl.DataFrame]) -> dict[str, Any]:
    from curate.report_html import _meta_summary

    parts, metas = [], []
    for kind, f in frames.items():
        lf = f.lazy()
        parts.append(lf.select(pl.lit(kind).alias("kind"), pl.col("source").fill_null("?"),
                               pl.col("lang").fill_null("und")))
        metas.append(lf.select("meta"))
    if not parts:
        return {"counts": pl.DataFrame(schema={"kind": pl.String, "source": pl.String, "lang": pl.String,
                                               "rows": pl.UInt32}), "meta": {"keys": {}, "codes": {}}}
    counts = pl.concat(parts).group_by("kind", "source", "lang").agg(pl.len().alias("rows")).collect()
    meta = _meta_summary(pl.concat(metas).collect())
    return {"counts": counts, "meta": meta}


def _yaml_list(key: str, values: Iterable[str]) -> list[str]:
    values = list(values)
    if not values:
        return []
    return [f"{key}:"] + [f"- {orjson.dumps(v).decode()}" for v in values]


def _md_table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    def cell(v: Any) -> str:
        s = f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)
        return s.replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" if h.startswith("#") or h in (
        "rows", "records", "kept", "recovered", "quarantined", "fixed", "flagged", "dropped", "share") else "---"
        for h in headers) + "|"]
    out += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return out


def render_card(frames: dict[str, pl.LazyFrame | pl.DataFrame], manifest: dict[str, Any],
                reports: Any = None, name: str | None = None) -> str:
    """The card as Markdown text (see :func:`write_card`)."""
    from curate.report_html import duplicates_of, rules_of

    reports = _as_list(reports)
    facts = _facts(frames)
    counts: pl.DataFrame = facts["counts"]
    total = int(counts["rows"].sum()) if counts.height else 0
    got = {k: int(n) for k, n in counts.group_by("kind").agg(pl.col("rows").sum()).iter_rows()}
    by_kind = {k: got[k] for k in ("sft", "chat", "rm", "ppo") if k in got}
    # ties in name order: the card is the same on every run (group_by gives groups in any order)
    by_lang = {lg: int(n) for lg, n in counts.group_by("lang").agg(pl.col("rows").sum())
               .sort(["rows", "lang"], descending=[True, False], nulls_last=True).iter_rows()}
    by_source = counts.group_by("source").agg(pl.col("rows").sum()).sort(["rows", "source"], descending=[True, False],
                                                                         nulls_last=True)
    src_rows = [(s, int(n), *license_of(s)) for s, n in by_source.iter_rows()]
    licenses = sorted({lic for *_, lic, _ in src_rows})
    files = manifest.get("files", []) if isinstance(manifest, dict) else []

    # ---- YAML header
    y = ["---"]
    if len(licenses) == 1 and licenses[0] != "other":
        y.append(f"license: {licenses[0]}")
    else:
        y += ["license: other", "license_name: mixed-per-source",
              f"license_details: {orjson.dumps('Each source keeps its own license; see Sources and licenses: ' + ', '.join(licenses)).decode()}"]
    y += _yaml_list("language", [lg for lg in by_lang if lg not in ("und", "other")])
    y += _yaml_list("task_categories", ["text-generation"])
    tags = []
    for k in by_kind:
        tags += [t for t in KIND_TAGS.get(k, []) if t not in tags]
    if "ms" in by_lang:
        tags.append("malay")
    y += _yaml_list("tags", tags + ["curate"])
    y += _yaml_list("size_categories", [size_category(total)])
    if name:
        y.append(f"pretty_name: {orjson.dumps(name).decode()}")
    configs: dict[str, list[dict[str, str]]] = {}
    for f in files:
        if f.get("records"):
            configs.setdefault(f"{f['kind']}_{f['format']}", []).append(
                {"split": f["split"], "path": Path(f["path"]).name})
    if configs:
        y.append("configs:")
        for cfg, parts in configs.items():
            y.append(f"- config_name: {cfg}")
            y.append("  data_files:")
            for p in parts:
                y.append(f"  - split: {p['split']}")
                y.append(f"    path: {orjson.dumps(p['path']).decode()}")
    y.append("---")

    # ---- body
    title = name or "Malay-first instruction data (curate export)"
    md = ["", f"# {title}", ""]
    kinds_txt = ", ".join(f"{n:,} {KIND_NAMES.get(k, k)}" for k, n in by_kind.items())
    ms_share = by_lang.get("ms", 0) / total if total else 0
    md.append(f"{total:,} row{'s' if total != 1 else ''}: {kinds_txt}. {ms_share:.0%} of rows are Malay (`ms`). Built with "
              "curate from the public sources below; "
              f"card written {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d}.")
    nc = sorted(lic for lic in licenses if lic in NON_COMMERCIAL)
    unclear = sorted(lic for lic in licenses if lic in ("unknown", "other"))
    if nc or unclear:
        why = []
        if nc:
            why.append(f"non-commercial / research-only ({', '.join(nc)})")
        if unclear:
            why.append(f"without a stated or standard license ({', '.join(unclear)}: see the table)")
        md += ["", f"> **License warning:** some sources are {' and some '.join(why)}. The whole dataset inherits the "
               "most restrictive terms: use it for research only, and do not redistribute it as a product dataset."]

    md += ["", "## Key figures", ""]
    key = [["rows", total]] + [[f"rows: {k}", n] for k, n in by_kind.items()]
    for rep in reports:
        t = rep.get("total") if isinstance(rep.get("total"), dict) else None
        if rep.get("stage") == "ingest" and t:
            key += [["ingest: records read", int(t.get("records") or 0)],
                    ["ingest: recovered (repaired)", int(t.get("recovered") or 0)],
                    ["ingest: quarantined", int(t.get("quarantined") or 0)]]
        rules = rules_of(rep)
        if rules:
            stage = rep.get("stage", "clean")
            key += [[f"{stage}: rows fixed (sum over rules)", sum(r["fixed"] for r in rules)],
                    [f"{stage}: rows flagged", sum(r["flagged"] for r in rules)],
                    [f"{stage}: rows dropped", sum(r["dropped"] for r in rules)]]
        dups = duplicates_of(rep)
        if dups:
            key += [["duplicate rows removed", dups["removed"]]]
        llm = rep.get("llm") if isinstance(rep.get("llm"), dict) else None
        if llm:
            stage = rep.get("stage", "llm")
            tok = llm.get("tokens") if isinstance(llm.get("tokens"), dict) else {}
            key += [[f"{stage}: LLM requests", int(llm.get("requests_sent") or 0)],
                    [f"{stage}: prompt / completion tokens",
                     f"{int(tok.get('prompt') or 0):,} / {int(tok.get('completion') or 0):,}"]]
            spent = (llm.get("cost_usd") or {}).get("spent") if isinstance(llm.get("cost_usd"), dict) else None
            if spent is not None:
                key.append([f"{stage}: cost (USD)", f"{spent:,.4f}"])
    meta_keys = facts["meta"].get("keys", {})
    if meta_keys.get("orig"):
        key.append(["rows machine-translated (original kept in meta.orig)", meta_keys["orig"]])
    md += _md_table(["figure", "value"], key)

    if files:
        md += ["", "## Files", ""]
        md += _md_table(["file", "kind", "format", "split", "records", "skipped"],
                        [[f"`{Path(f['path']).name}`", f["kind"], f["format"], f["split"], f["records"],
                          f.get("skipped", 0)] for f in files])
        if any(f.get("skipped") for f in files):
            md += ["", "Skipped rows are rows a format cannot hold (e.g. multi-turn chats in `alpaca`, unranked "
                   "completions in `pairs`)."]
        if isinstance(manifest, dict) and manifest.get("test_size"):
            md += ["", f"The test split is {manifest['test_size']:.1%} of rows, chosen by a hash of each row's id: the "
                   "same row lands in the same split on every export."]

    md += ["", "## Sources and licenses", ""]
    md += _md_table(["source file", "rows", "origin", "license"],
                    [[f"`{Path(s).name}`", n, origin, f"`{lic}`: {stated}"] for s, n, origin, lic, stated in src_rows])

    md += ["", "## Languages", "", "Language of each row's text (the `lang` column; Malay and Indonesian are told "
           "apart).", ""]
    md += _md_table(["language", "code", "rows", "share"],
                    [[LANG_NAMES.get(lg, lg), f"`{lg}`", n, f"{n / total:.1%}" if total else "-"]
                     for lg, n in by_lang.items()])

    md += ["", "## Sizes", ""]
    split_rows: dict[tuple[str, str], int] = {}
    for f in files:
        split_rows[(f["kind"], f["split"])] = max(split_rows.get((f["kind"], f["split"]), 0), int(f.get("rows_in") or 0))
    if split_rows:
        md += _md_table(["kind", "split", "rows"], [[k, s, n] for (k, s), n in sorted(split_rows.items())])
    else:
        md += _md_table(["kind", "rows"], [[k, n] for k, n in by_kind.items()])

    md += ["", "## Schema", ""]
    fmts: dict[str, list[str]] = {}
    for f in files:
        if f["kind"] not in fmts.setdefault(f["format"], []):
            fmts[f["format"]].append(f["kind"])
    for fmt, kinds in fmts.items():
        md.append(f"- **{fmt}** ({', '.join(kinds)}): {FORMAT_SCHEMAS.get(fmt, fmt)}")
    if not fmts:
        md.append("- canonical curate schemas (`curate schemas`)")

    md += ["", "## Processing", ""]
    stages = [str(r.get("stage", "?")) for r in reports]
    md.append(f"Stages: {' -> '.join(stages + ['export']) if stages else 'export (no stage reports found)'}.")
    for rep in reports:
        stage = rep.get("stage", "?")
        if stage == "ingest" and isinstance(rep.get("total"), dict):
            t = rep["total"]
            md += ["", f"- **ingest**: {int(t.get('records') or 0):,} records read from "
                   f"{len(rep.get('files') or []):,} files; {int(t.get('recovered') or 0):,} repaired (broken JSON, "
                   f"key variants, ...), {int(t.get('quarantined') or 0):,} quarantined with a reason."]
        rules = rules_of(rep)
        if rules:
            md += ["", f"- **{stage}**: the rules that changed something:", ""]
            md += _md_table(["rule", "action", "fixed", "flagged", "dropped"],
                            [[f"`{r['code']}`", r["action"], r["fixed"], r["flagged"], r["dropped"]]
                             for r in rules if r["fixed"] or r["flagged"] or r["dropped"]])
        elif stage not in ("ingest",):
            md += ["", f"- **{stage}**"]
    codes = facts["meta"].get("codes", {})
    if codes.get("fixes"):
        md += ["", "Fixes recorded on rows (`meta.fixes`, before/after kept): " + ", ".join(
            f"`{c}` {n:,}" for c, n in sorted(codes["fixes"].items(), key=lambda kv: -kv[1])) + "."]
    if codes.get("flags"):
        md += ["", "Flags on rows kept (`meta.flags`): " + ", ".join(
            f"`{c}` {n:,}" for c, n in sorted(codes["flags"].items(), key=lambda kv: -kv[1])) + "."]
    trans = facts["meta"].get("translations") or []
    if trans:
        md += ["", "Translation by curate (original text kept in `meta.orig`, so both languages stay aligned):", ""]
        md += _md_table(["from", "to", "model", "rows"],
                        [[f"`{t['from'] or '?'}`", f"`{t['to'] or '?'}`", t["model"] or "", t["rows"]] for t in trans])
    elif meta_keys.get("orig"):
        md += ["", f"Translation: {meta_keys['orig']:,} rows were machine-translated; the original text is kept in "
               "`meta.orig` so both languages stay aligned."]
    else:
        md += ["", "Translation: none applied by curate (the Malay sources were machine-translated upstream by "
               "their authors)." if "ms" in by_lang else "Translation: none applied."]

    names = " ".join(Path(str(src)).name for src, *_ in src_rows)
    limits = []
    if "malay_" in names or "ms" in by_lang:
        limits.append("Much of the Malay text is machine translation (ChatGPT) and can read unnaturally; some rows "
                      "may still be Indonesian or English despite cleaning.")
    if "chatdoctor" in names:
        limits.append("Medical conversations (ChatDoctor) are not medical advice.")
    if len(licenses) > 1:
        limits.append("Licenses differ per source (above); the most restrictive one applies to the whole.")
    if limits:
        md += ["", "## Limitations", ""] + [f"- {x}" for x in limits]
    md.append("")
    return "\n".join(y + md)


def write_card(frames: dict[str, pl.LazyFrame | pl.DataFrame], out_dir: str | Path, manifest: dict[str, Any],
               reports: Any = None, name: str | None = None) -> Path:
    """Write ``out_dir/README.md``. ``reports``: stage reports (a list, or one report.json dict); None
    finds them next to the dataset the frames were read from."""
    if reports is None:
        reports = reports_for(frames)
    path = Path(out_dir) / "README.md"
    io.write_bytes(path, render_card(frames, manifest, reports, name).encode("utf-8"))
    return path
