"""Benchmark: the HTML report's hand-drawn SVG charts vs the same charts in Vega-Lite (issue 17).

The candidate library path is altair (Vega-Lite specs) rendered to inline SVG offline by
vl-convert-python: no JavaScript, no network, the report stays one file. To compare like with
like, this script swaps the four chart functions of ``curate.report_html`` (``hbar_chart``,
``hbar_pairs``, ``histogram``, ``donut``) for Vega-Lite versions drawing the same data with the
same colours and ids, and writes the *same* report both ways, in one run, each in a fresh process
(vl-convert starts a JavaScript runtime once per process, as a ``curate report`` run would):

* CPU seconds of ``write_report`` (profile + render), the polars floor beside it;
* the two HTML files, for headless Chromium screenshots (``--out DIR``).

    .venv/bin/python bench/report_vegalite.py [--rows 0] [--out /tmp/report-bench]

``--rows N`` builds an N-row SFT dataset (bench/tokens.py's corpus) instead of the test fixtures.
Needs ``pip install altair vl-convert-python`` (bench only: curate keeps its own charts, see
docs/report.md for the figures).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

FONT = "-apple-system,BlinkMacSystemFont,Segoe UI,Roboto,Noto Sans,Helvetica Neue,Arial,sans-serif"


def vegalite_charts(R) -> None:
    """Replace report_html ``R``'s chart functions with Vega-Lite ones (same arguments, same ids)."""
    import altair as alt
    import vl_convert as vlc

    config = {"font": FONT, "view": {"stroke": None},
              "axis": {"labelColor": "#27313d", "titleColor": "#6b7785", "gridColor": "#eef1f4",
                       "domain": False, "ticks": False, "labelFontSize": 12, "titleFontWeight": "normal"},
              "legend": {"orient": "top", "labelFontSize": 12, "symbolType": "square", "title": None}}

    def svg(chart_id: str, chart) -> str:
        spec = chart.to_dict()
        spec["config"] = config
        out = vlc.vegalite_to_svg(spec)
        out = out.replace(' xmlns:xlink="http://www.w3.org/1999/xlink"', "")
        return out.replace("<svg ", f'<svg class="chart" data-chart="{R._e(chart_id)}" role="img" ', 1)

    def hbar_chart(chart_id, rows, series, *, width=880, bar=22, percent=False, total_label=True, label_chars=34):
        if not rows:
            return '<p class="empty">nothing to show</p>'
        order = [R._clip(label, label_chars) for label, _ in rows]
        data = [{"label": R._clip(label, label_chars), "series": name, "value": values.get(name, 0),
                 "total": sum(values.values()), "o": k}
                for label, values in rows for k, (name, _) in enumerate(series) if values.get(name)]
        base = alt.Chart(alt.Data(values=data))
        y = alt.Y("label:N", sort=order, title=None, axis=alt.Axis(labelLimit=280))
        x = alt.X("sum(value):Q", title=None, stack="normalize" if percent else "zero",
                  axis=alt.Axis(format="%" if percent else "~s", tickCount=4))
        color = alt.Color("series:N", scale=alt.Scale(domain=[n for n, _ in series], range=[c for _, c in series]),
                          legend=alt.Legend() if len(series) > 1 else None)
        bars = base.mark_bar(height=bar).encode(y=y, x=x, color=color, order="o:Q",
                                                tooltip=["label:N", "series:N", "value:Q"])
        layers = [bars]
        if total_label and not percent:
            layers.append(base.mark_text(align="left", dx=6, fontWeight=600, fontSize=12).encode(
                y=y, x="sum(value):Q", text=alt.Text("sum(value):Q", format=",")))
        return svg(chart_id, alt.layer(*layers).properties(width=width - 320, height=len(rows) * (bar + 8)))

    def hbar_pairs(chart_id, rows, *, width=880, names=("before", "after"), label_chars=34):
        if not rows:
            return '<p class="empty">nothing to show</p>'
        order = [R._clip(label, label_chars) for label, _, _ in rows]
        data = [{"label": R._clip(label, label_chars), "series": name, "value": v,
                 "note": f"{R._fmt(b)} → {R._fmt(a)} ({'+' if a > b else ''}{R._fmt(a - b)})", "max": max(a, b)}
                for label, b, a in rows for name, v in zip(names, (b, a))]
        base = alt.Chart(alt.Data(values=data))
        y = alt.Y("label:N", sort=order, title=None, axis=alt.Axis(labelLimit=280))
        bars = base.mark_bar().encode(
            y=y, yOffset=alt.YOffset("series:N", sort=list(names)), x=alt.X("value:Q", title=None,
                                                                          axis=alt.Axis(format="~s", tickCount=4)),
            color=alt.Color("series:N", scale=alt.Scale(domain=list(names), range=[R.BEFORE, R.AFTER])))
        notes = base.transform_filter(alt.datum.series == names[1]).mark_text(
            align="left", dx=6, fontWeight=600, fontSize=12).encode(y=y, x="max:Q", text="note:N")
        return svg(chart_id, alt.layer(bars, notes).properties(width=width - 420, height=len(rows) * 32))

    def histogram(chart_id, series, edges, *, width=460, height=230, unit="chars"):
        if not series or not any(sum(c) for _, _, c in series):
            return '<p class="empty">nothing to show</p>'
        used = [i for i in range(len(edges)) if any(c[i] for _, _, c in series)]
        bins = list(range(used[0], used[-1] + 1))

        def label(i):
            if i == len(edges) - 1:
                return f"≥{R._short(edges[i])}"
            if edges[i] == 0:
                return f"<{R._short(edges[1])}"
            return f"{R._short(edges[i])}–{R._short(edges[i + 1])}"
        data = [{"bin": label(i), "series": name, "rows": counts[i]} for i in bins for name, _, counts in series]
        chart = alt.Chart(alt.Data(values=data)).mark_bar().encode(
            x=alt.X("bin:N", sort=[label(i) for i in bins], title=f"{unit} per row", axis=alt.Axis(labelAngle=0)),
            xOffset=alt.XOffset("series:N", sort=[n for n, _, _ in series]),
            y=alt.Y("rows:Q", title=None, axis=alt.Axis(format="~s", tickCount=4)),
            color=alt.Color("series:N", scale=alt.Scale(domain=[n for n, _, _ in series],
                                                        range=[c for _, c, _ in series])),
            tooltip=["series:N", "bin:N", "rows:Q"])
        return svg(chart_id, chart.properties(width=width - 60, height=height - 90))

    def donut(chart_id, parts, *, size=200, center=""):
        total = sum(v for _, v, _ in parts)
        if not total:
            return '<p class="empty">nothing to show</p>'
        data = [{"name": f"{name}  {R._fmt(v)} · {v / total:.1%}", "v": v, "o": k}
                for k, (name, v, _) in enumerate(parts)]
        base = alt.Chart(alt.Data(values=data))
        ring = base.mark_arc(innerRadius=size / 2 - 40, outerRadius=size / 2 - 14).encode(
            theta="v:Q", order="o:Q",
            color=alt.Color("name:N", sort=[d["name"] for d in data],
                            scale=alt.Scale(domain=[d["name"] for d in data], range=[c for _, _, c in parts]),
                            legend=alt.Legend(orient="right", labelFontSize=12)))
        text = alt.Chart(alt.Data(values=[{"t": center}])).mark_text(fontSize=20, fontWeight=700).encode(text="t:N")
        return svg(chart_id, alt.layer(ring, text).properties(width=size, height=size))

    R.hbar_chart, R.hbar_pairs, R.histogram, R.donut = hbar_chart, hbar_pairs, histogram, donut


def fixtures_stages(root: Path) -> tuple[Path, Path, Path]:
    """The test fixtures ingested, and a later 'clean' stage made from them (as tests/test_report_html.py)."""
    import shutil

    sys.path.insert(0, str(ROOT / "tests"))
    import test_report_html as T

    from curate import tokens
    if not (root / "clean").exists():
        class Factory:
            def mktemp(self, name):
                p = root / f"tmp-{name}"
                p.mkdir(parents=True, exist_ok=True)
                return p
        fn = getattr(T.stages, "__wrapped__", None) or T.stages._get_wrapped_function()
        st = fn(ROOT / "tests" / "data" / "fixtures", Factory())
        shutil.copytree(st["clean"], root / "clean")
        shutil.copytree(st["norm"], root / "normalized")
        tokens.train(st["frames"], root / "m.model", vocab_size=1000)
    return root / "clean", root / "normalized", root / "m.model"


def worker(kind: str, ds: str, compare: str, model: str, out: str) -> None:
    t0 = time.process_time()
    from curate import report_html as R
    if kind == "vegalite":
        vegalite_charts(R)
    R.write_report(ds, out, compare=compare or None, model=model or None)
    print(f"{time.process_time() - t0:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=0)
    ap.add_argument("--out", default="/tmp/report-bench")
    ap.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    from libs import line, polars_floor
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.rows:
        from tokens import corpus

        from curate import io
        ds = out / f"sft-{args.rows}"
        io.write_dataset({"sft": corpus(args.rows)}, ds)
        ds, compare, model = ds, "", ""
    else:
        ds, compare, model = fixtures_stages(out / "stages")
    floor = polars_floor()
    print(f"report of {ds}" + (f" compared with {compare}" if compare else ""))
    print(line("polars floor (sort + group-by 1M rows)", floor, floor))
    for kind in ("svg", "vegalite", "svg", "vegalite"):
        html = out / f"report-{kind}.html"
        res = subprocess.run([sys.executable, __file__, "--worker", kind, str(ds), str(compare), str(model), str(html)],
                             capture_output=True, text=True)
        if res.returncode:
            raise SystemExit(res.stderr[-3000:])
        cpu = float(res.stdout.split()[-1])
        label = "hand-drawn SVG (curate)" if kind == "svg" else "Vega-Lite: altair + vl-convert"
        print(line(f"{label}, incl. imports", cpu, floor) + f"   {html.stat().st_size / 1024:,.0f} KiB  {html}")


if __name__ == "__main__":
    main()
