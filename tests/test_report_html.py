"""The HTML report: built from real ingested fixtures, checked as HTML and rendered in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import orjson
import polars as pl
import pytest
from click.testing import CliRunner

from curate import io, report_html, tokens
from curate.cli import cli
from curate.ingest import ingest_to_dir
from tests import debian

SOURCES = ("malay_alpaca.json", "malay_alpaca_anomalies.json", "malay_gpt4all.jsonl", "malay_gpt4all_anomalies.jsonl",
           "malay_kochatgpt_conversation.jsonl", "malay_kochatgpt_rm.jsonl", "kochatgpt_ppo.jsonl",
           "kochatgpt_ppo_anomalies.jsonl", "chatdoctor.json")


def _lang_by_source(source: str) -> str:
    """Test data: a language per file, so the language charts have several languages to show."""
    name = Path(source).name
    return "ko" if name.startswith("kochatgpt") else "en" if name.startswith("chatdoctor") else "ms"


@pytest.fixture(scope="module")
def stages(fixtures, tmp_path_factory):
    """An ingest output dir (real fixtures, real report.json and quarantine.jsonl) and a later stage
    made from it: non-Malay rows quarantined, some outputs edited, a clean-style report.json."""
    root = tmp_path_factory.mktemp("report")
    raw, norm = root / "ingested", root / "normalized"
    ingest_to_dir([fixtures / s for s in SOURCES], raw, detect_lang=False)
    frames = {k: f.collect().with_columns(pl.col("source").map_elements(_lang_by_source, return_dtype=pl.String)
                                          .alias("lang")) for k, f in io.read_dataset(raw).items()}
    with io.DatasetWriter(norm, stage="ingest", inputs=[raw]) as w:  # the ingest output, languages set
        for kind, frame in frames.items():
            w.write_frame(kind, frame)
        for name in ("report.json", "quarantine.jsonl"):
            w.write_bytes(name, (raw / name).read_bytes())
    clean = root / "clean"
    out, quarantine = {}, []
    for kind, df in frames.items():
        for r in df.filter(pl.col("lang") != "ms").to_dicts():
            quarantine.append({"stage": "clean", "code": "wrong_language", "reason": f"text is {r['lang']}, not ms",
                               "evidence": r["lang"], "id": r["id"], "source": r["source"], "line": r["line"],
                               "where": f"{r['source']}:{r['line']}", "row": r})
        kept = df.filter(pl.col("lang") == "ms")
        if kind == "sft":
            edit = pl.col("line") % 2 == 0
            kept = kept.with_columns(pl.when(edit).then(pl.col("output").str.strip_chars() + "!")
                                     .otherwise(pl.col("output")).alias("output"),
                                     pl.when(edit).then(pl.lit('{"fixes":[{"code":"literal_escapes"}]}'))
                                     .otherwise(pl.col("meta")).alias("meta"))
        out[kind] = kept
    io.write_dataset(out, clean)
    io.write_jsonl(clean / "quarantine.jsonl", quarantine)
    io.write_json(clean / "report.json", {
        "stage": "clean",
        "rules": [{"code": "literal_escapes", "description": "literal \\n to newlines", "action": "fix",
                   "fixed": 7, "flagged": 0, "dropped": 0,
                   "examples": [{"where": "malay_alpaca.json:6", "before": "a\\nb", "after": "a\nb"}]},
                  {"code": "wrong_language", "description": "not the target language", "action": "drop",
                   "fixed": 0, "flagged": 0, "dropped": len(quarantine)},
                  {"code": "refusal", "action": "flag", "counts": {"flagged": 4}}],
        "duplicates": {"clusters": [{"ids": ["aaa", "bbb", "ccc"], "text": "Siapakah anda?"},
                                    {"ids": ["ddd", "eee"], "text": "Apa khabar?"}], "removed": 3},
    })
    return {"norm": norm, "clean": clean, "frames": frames, "clean_frames": out, "quarantine": quarantine}


@pytest.fixture(scope="module")
def model(stages, tmp_path_factory):
    path = tmp_path_factory.mktemp("spm") / "m.model"
    tokens.train(stages["frames"], path, vocab_size=1000)
    return path


def _text(html: str) -> str:
    return re.sub(r"<[^>]+>", " ", html)


def test_report_is_self_contained_and_shows_the_ingest(stages, tmp_path):
    out = report_html.write_report(stages["norm"], tmp_path / "r.html")
    html = out.read_text(encoding="utf-8")
    # no network: nothing fetched (the SVG namespace URI is an identifier, not a request)
    assert re.findall(r"https?://[^\"' <]+", html.replace('xmlns="http://www.w3.org/2000/svg"', "")) == []
    assert "<script" not in html and "<link" not in html and "<img" not in html
    assert html.startswith("<!doctype html>") and html.rstrip().endswith("</html>")
    for chart in ("rows-by-source", "lang-mix", "lang-by-source", "len-chars-sft", "len-chars-chat", "ingest",
                  "quarantine"):
        assert f'data-chart="{chart}"' in html, chart
    rep = orjson.loads((stages["norm"] / "report.json").read_bytes())
    text = _text(html)
    total_rows = sum(df.height for df in stages["frames"].values())
    assert f"{total_rows:,}" in text
    assert f"{rep['total']['quarantined']:,}" in text
    for f in rep["files"]:
        assert Path(f["source"]).name in html
    for q in io.read_jsonl(stages["norm"] / "quarantine.jsonl"):
        assert q["code"] in html
    assert oct(out.stat().st_mode & 0o777) == "0o644"


def test_compare_counts_rows_by_id(stages, tmp_path):
    html = report_html.write_report(stages["clean"], tmp_path / "c.html", compare=stages["norm"]).read_text()
    before = pl.concat([df.select("id") for df in stages["frames"].values()]).unique()
    after = pl.concat([df.select("id") for df in stages["clean_frames"].values()]).unique()
    dropped = before.join(after, on="id", how="anti").height
    assert dropped > 0
    changed = int(stages["clean_frames"]["sft"].filter(pl.col("line") % 2 == 0).select(pl.col("id").n_unique()).item())
    cards = dict(re.findall(r'<div class="k">([^<]+)</div><div class="v">([^<]+)</div>', html))
    assert cards["dropped"] == f"{dropped:,}"
    assert cards["changed"] == f"{changed:,}"
    assert cards["new"] == "0"
    for chart in ("compare-ids", "compare-sources", "compare-langs", "clean-rules", "dup-sizes", "meta-fixes"):
        assert f'data-chart="{chart}"' in html, chart
    # the clean rules, whichever shape their figures came in
    assert "literal_escapes" in html and "wrong_language" in html and "refusal" in html
    # the before stage's ingest accounting is shown when the after stage has none
    assert 'id="ingest"' in html


def test_token_lengths_with_a_model(stages, model, tmp_path):
    html = report_html.write_report(stages["norm"], tmp_path / "t.html", model=model).read_text()
    assert 'data-chart="len-tokens-sft"' in html
    n = int(tokens.token_counts(stages["frames"]["sft"], model)["tokens"].sum())
    p = report_html.profile(stages["norm"], model)
    assert int(p["tokens"]["sft"].sum()) == n


def test_reports_of_any_shape_are_read_defensively():
    assert report_html.rules_of(None) == [] and report_html.rules_of({"rules": "garbage"}) == []
    by_dict = report_html.rules_of({"rules": {"mojibake": {"fixed": 3, "examples": [{"before": "x"}]},
                                              "refusal": {"counts": {"dropped": 2, "flagged": 1}},
                                              "noinput": 5, "junk": "?"}})
    got = {r["code"]: (r["fixed"], r["flagged"], r["dropped"], r["matched"]) for r in by_dict}
    assert got == {"mojibake": (3, 0, 0, 0), "refusal": (0, 1, 2, 0), "noinput": (0, 0, 0, 5)}
    by_list = report_html.rules_of({"per_rule": [{"rule": "a", "drop": ["x", "y"]}, "junk"]})
    assert [(r["code"], r["dropped"]) for r in by_list] == [("a", 2)]
    d = report_html.duplicates_of({"near_duplicates": [["a", "b"], ["c", "d", "e"], ["f", "g"]]})
    assert d["clusters"] == 3 and d["sizes"] == {2: 2, 3: 1} and d["rows_in_clusters"] == 7
    assert report_html.duplicates_of({"stage": "x"}) is None
    assert report_html.duplicates_of({"duplicates": 4})["clusters"] == 4


def test_broken_side_files_do_not_stop_the_report(stages, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(stages["clean"], broken)
    (broken / "report.json").write_text("{not json")
    with open(broken / "quarantine.jsonl", "a") as fh:
        fh.write("{half a line\n")
    html = report_html.write_report(broken, tmp_path / "b.html").read_text()
    assert "could not be read" in html and 'data-chart="rows-by-source"' in html


def test_cli_report_and_ingest_report_flag(stages, fixtures, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["report", str(stages["clean"]), "--compare", str(stages["norm"]), "-o",
                              str(tmp_path / "cli.html")])
    assert res.exit_code == 0, res.output
    assert 'data-chart="compare-ids"' in (tmp_path / "cli.html").read_text()
    res = runner.invoke(cli, ["ingest", str(fixtures / "malay_gpt4all_anomalies.jsonl"), "-o", str(tmp_path / "ing"),
                              "--no-lang", "-q", "--report", str(tmp_path / "ing.html")])
    assert res.exit_code == 0, res.output
    html = (tmp_path / "ing.html").read_text()
    assert 'data-chart="ingest"' in html and "malay_gpt4all_anomalies.jsonl" in html


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars"]


def test_report_renders_in_headless_chromium(stages, model, tmp_path):
    browser = debian.require("chromium")   # the one Debian package this test needs: skips with how to install it
    page = report_html.write_report(stages["clean"], tmp_path / "r.html", compare=stages["norm"], model=model)
    url = page.resolve().as_uri()
    base = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = dom.stdout
    charts = re.findall(r'<svg class="chart" data-chart="([^"]+)"', rendered)
    assert {"compare-ids", "rows-by-source", "lang-mix", "len-chars-sft", "len-tokens-sft", "clean-rules",
            "quarantine"} <= set(charts)
    assert len(re.findall(r'<rect [^>]*class="seg"', rendered)) > 50
    png = tmp_path / "r.png"
    shot = subprocess.run([*base, "--window-size=1100,2400", f"--screenshot={png}", url], capture_output=True,
                          text=True, timeout=120)
    assert shot.returncode == 0 and png.is_file(), shot.stderr[-2000:]
    from PIL import Image

    img = Image.open(png).convert("RGB")
    assert img.size == (1100, 2400)
    colors = img.getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 200, "the screenshot looks blank"
    counts = {rgb: n for n, rgb in colors}

    def pixels(hex_color: str) -> int:
        return counts.get(tuple(int(hex_color[i:i + 2], 16) for i in (1, 3, 5)), 0)

    # the charts were painted: the dropped (red) and Malay (green) fills cover real area
    assert pixels(report_html.ACTION_COLORS["dropped"]) > 500
    assert pixels(report_html.LANG_COLORS["ms"]) > 500
    assert pixels(report_html.AFTER) > 500


def test_report_of_a_real_clean_run(stages, tmp_path):
    """The clean engine's own report.json and quarantine, whatever rules it has today."""
    from curate.clean import engine

    out = tmp_path / "cleaned"
    result = engine.clean_dir(stages["norm"], out)
    html = report_html.write_report(out, tmp_path / "c.html", compare=stages["norm"]).read_text()
    rules = report_html.rules_of(orjson.loads((out / "report.json").read_bytes()))
    assert rules, "the clean report has per-rule figures"
    busy = [r for r in rules if r["fixed"] or r["flagged"] or r["dropped"]]
    assert busy and 'data-chart="clean-rules"' in html
    for r in busy:
        assert f"<b>{r['code']}</b>" in html
    dropped = sum(df.height for df in stages["frames"].values()) - sum(df.height for df in result.frames.values())
    q = report_html._quarantine(out / "quarantine.jsonl")
    assert q["rows"] == dropped > 0
    assert f"{q['rows']:,} rows set aside" in html


def test_translations_are_counted_from_meta(tmp_path):
    from curate import schemas

    rows = [{"prompt": f"Soalan {i}", "lang": "ms", "source": "t.jsonl", "line": i,
             "meta": {"orig": {"prompt": f"Question {i}"}, "translated": {"from": "en" if i % 3 else "ko", "to": "ms",
                                                                         "model": "m"}}} for i in range(9)]
    io.write_dataset({"ppo": schemas.from_rows("ppo", rows)}, tmp_path / "tr")
    got = {(t["from"], t["to"]): t["rows"] for t in report_html.translations(
        pl.Series([orjson.dumps(r["meta"]).decode() for r in rows] + [None, "{}"]))}
    assert got == {("en", "ms"): 6, ("ko", "ms"): 3}
    html = report_html.write_report(tmp_path / "tr", tmp_path / "tr.html").read_text()
    assert "translated by curate" in html and "<td class=\"n\">6</td>" in html
