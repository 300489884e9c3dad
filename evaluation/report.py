"""A small self-contained HTML report of an evaluation: tables and inline SVG plots, no assets.

``render_report`` is pure (evaluation in, HTML text out); ``write_report`` writes DIR/index.html and
DIR/figures.json.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evaluation import BASELINES
from evaluation.metrics import Outcome, summarise

if TYPE_CHECKING:
    from evaluation.runner import Evaluation

PALETTE = ("#7f7f7f", "#bcbd22", "#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#ff7f0e")
W, H, PAD_L, PAD_B, PAD_T, PAD_R = 560, 300, 56, 40, 16, 120


def _fmt(x: float) -> str:
    return f"{x:.3f}" if x < 10 else f"{x:.0f}"


def line_chart(
    title: str,
    xs: Sequence[Any],
    series: Mapping[str, Sequence[float]],
    x_label: str,
    y_label: str,
) -> str:
    """An SVG line chart; ``xs`` are labels placed evenly, one polyline per series."""
    ymax = max((v for ys in series.values() for v in ys), default=0.0) or 1.0
    ymax *= 1.05
    n = max(len(xs), 1)
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def px(i: int) -> float:
        return PAD_L + (pw * i / (n - 1) if n > 1 else pw / 2)

    def py(v: float) -> float:
        return PAD_T + ph * (1 - v / ymax)

    out = [_svg_open(title)]
    out += _axes(ymax, y_label, x_label)
    step = max(1, n // 10)
    for i, x in enumerate(xs):
        if i % step == 0 or i == n - 1:
            out.append(
                f'<text x="{px(i):.1f}" y="{H - PAD_B + 14}" font-size="10" '
                f'text-anchor="middle">{html.escape(str(x))}</text>'
            )
    for s, (name, ys) in enumerate(series.items()):
        color = PALETTE[s % len(PALETTE)]
        pts = " ".join(f"{px(i):.1f},{py(v):.1f}" for i, v in enumerate(ys))
        dash = ' stroke-dasharray="5,3"' if name in BASELINES else ""
        out.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{pts}"/>'
        )
        for i, v in enumerate(ys):
            out.append(
                f'<circle cx="{px(i):.1f}" cy="{py(v):.1f}" r="2.5" fill="{color}">'
                f"<title>{html.escape(name)} {html.escape(str(xs[i]))}: {v:.4f}</title></circle>"
            )
        out.append(_legend(s, name, color))
    out.append("</svg>")
    return "".join(out)


def bar_chart(title: str, values: Mapping[str, float], y_label: str) -> str:
    ymax = max(values.values(), default=0.0) or 1.0
    ymax *= 1.1
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B
    n = max(len(values), 1)
    bw = pw / n
    out = [_svg_open(title)]
    out += _axes(ymax, y_label, "")
    for s, (name, v) in enumerate(values.items()):
        color = PALETTE[s % len(PALETTE)]
        h = ph * v / ymax
        x = PAD_L + s * bw + bw * 0.15
        out.append(
            f'<rect x="{x:.1f}" y="{PAD_T + ph - h:.1f}" width="{bw * 0.7:.1f}" height="{h:.1f}" '
            f'fill="{color}"><title>{html.escape(name)}: {v:.4f}</title></rect>'
        )
        out.append(
            f'<text x="{x + bw * 0.35:.1f}" y="{PAD_T + ph - h - 4:.1f}" font-size="10" '
            f'text-anchor="middle">{v:.3f}</text>'
        )
        out.append(
            f'<text x="{x + bw * 0.35:.1f}" y="{H - PAD_B + 14}" font-size="10" '
            f'text-anchor="middle">{html.escape(name)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def _svg_open(title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" font-family="sans-serif" role="img">'
        f"<title>{html.escape(title)}</title>"
    )


def _axes(ymax: float, y_label: str, x_label: str) -> list[str]:
    ph = H - PAD_T - PAD_B
    out = [
        f'<line x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{H - PAD_B}" stroke="#333"/>',
        f'<line x1="{PAD_L}" y1="{H - PAD_B}" x2="{W - PAD_R}" y2="{H - PAD_B}" stroke="#333"/>',
    ]
    for t in range(5):
        v = ymax * t / 4
        y = PAD_T + ph * (1 - t / 4)
        out.append(
            f'<line x1="{PAD_L}" y1="{y:.1f}" x2="{W - PAD_R}" y2="{y:.1f}" stroke="#eee"/>'
            f'<text x="{PAD_L - 4}" y="{y + 3:.1f}" font-size="10" text-anchor="end">'
            f"{_fmt(v)}</text>"
        )
    out.append(
        f'<text x="14" y="{PAD_T + ph / 2:.1f}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 14 {PAD_T + ph / 2:.1f})">{html.escape(y_label)}</text>'
    )
    if x_label:
        out.append(
            f'<text x="{PAD_L + (W - PAD_L - PAD_R) / 2:.1f}" y="{H - 6}" font-size="11" '
            f'text-anchor="middle">{html.escape(x_label)}</text>'
        )
    return out


def _legend(index: int, name: str, color: str) -> str:
    y = PAD_T + 8 + 16 * index
    x = W - PAD_R + 10
    return (
        f'<rect x="{x}" y="{y - 8}" width="10" height="10" fill="{color}"/>'
        f'<text x="{x + 14}" y="{y + 1}" font-size="11">{html.escape(name)}</text>'
    )


def report_data(ev: Evaluation) -> dict[str, Any]:
    """Everything the report plots, as plain numbers (also written to figures.json)."""
    ks = list(range(1, ev.k + 1))
    by_k: dict[str, dict[str, list[float]]] = {"ndcg": {}, "hr": {}}
    by_day: dict[str, dict[str, list[float]]] = {"ndcg": {}, "hr": {}}
    share: dict[str, float] = {}
    for name in ev.strategies:
        outs = ev.outcomes[name]
        sums = [summarise(outs, k) for k in ks]
        by_k["ndcg"][name] = [t.ndcg / max(t.n, 1) for t in sums]
        by_k["hr"][name] = [t.hr / max(t.n, 1) for t in sums]
        days: list[list[Outcome]] = [[] for _ in ev.test_days]
        for o in outs:
            days[o.day_index].append(o)
        per_day = [summarise(d, ev.k) for d in days]
        by_day["ndcg"][name] = [t.ndcg / t.n if t.n else 0.0 for t in per_day]
        by_day["hr"][name] = [t.hr / t.n if t.n else 0.0 for t in per_day]
        share[name] = summarise(outs, ev.k).target_share
    pairs_per_day = [0] * len(ev.test_days)
    for o in ev.outcomes[ev.strategies[0]] if ev.strategies else []:
        pairs_per_day[o.day_index] += 1
    return {
        "figures": ev.figures(),
        "ks": ks,
        "days": [d.isoformat() for d in ev.test_days],
        "pairs_per_day": pairs_per_day,
        "by_k": by_k,
        "by_day": by_day,
        "target_share": share,
        "seconds": {k: round(v, 1) for k, v in ev.seconds.items()},
    }


def render_report(ev: Evaluation, title: str = "", wall_s: float | None = None) -> str:
    data = report_data(ev)
    fig = data["figures"]
    k = ev.k
    rows = []
    for name, m in fig["strategies"].items():
        kind = "baseline" if name in BASELINES else "tastegraph"
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{kind}</td>"
            f"<td>{m[f'hr@{k}']:.4f}</td><td>{m[f'recall@{k}']:.4f}</td>"
            f"<td>{m[f'ndcg@{k}']:.4f}</td><td>{data['target_share'][name]:.4f}</td></tr>"
        )
    short_days = [d[5:] for d in data["days"]]
    charts = [
        line_chart(f"NDCG@K, K = 1..{k}", data["ks"], data["by_k"]["ndcg"], "K", "NDCG@K"),
        line_chart(f"HR@K, K = 1..{k}", data["ks"], data["by_k"]["hr"], "K", "HR@K"),
        line_chart(
            f"NDCG@{k} per test day", short_days, data["by_day"]["ndcg"], "day", f"NDCG@{k}"
        ),
        line_chart(f"HR@{k} per test day", short_days, data["by_day"]["hr"], "day", f"HR@{k}"),
        bar_chart(f"Share of all target items reached in a top {k}", data["target_share"], "share"),
    ]
    timing = ", ".join(f"{key} {v:.0f} s" for key, v in data["seconds"].items())
    wall = f"; wall time {wall_s:.0f} s" if wall_s is not None else ""
    heading = html.escape(title or "evaluation")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tastegraph evaluate: {heading}</title>
<style>body{{font-family:sans-serif;max-width:1180px;margin:1em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}
td:first-child,td:nth-child(2){{text-align:left}}figure{{display:inline-block;margin:6px}}
figcaption{{font-size:13px;text-align:center}}</style></head><body>
<h1>tastegraph evaluate: {heading}</h1>
<p>Protocol {fig["protocol"]} (next-day discovery): for each test day and each user who buys
that day, the items they buy and never touched before, ranked with everything known before the
day, items they interacted with excluded. {fig["pairs"]} (user, day) pairs over
{len(ev.test_days)} test days,
{ev.n_events} events, {ev.n_items} items; K = {k}. Baselines dashed.</p>
<table><tr><th>strategy</th><th>kind</th><th>HR@{k}</th><th>Recall@{k}</th><th>NDCG@{k}</th>
<th>share of targets reached</th></tr>
{"".join(rows)}</table>
<div>{"".join(f"<figure>{c}</figure>" for c in charts)}</div>
<p style="font-size:12px">Time: {html.escape(timing)}{wall}. Figures as JSON: figures.json.</p>
</body></html>
"""


def write_report(
    ev: Evaluation, directory: Path, title: str = "", wall_s: float | None = None
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "figures.json").write_text(json.dumps(report_data(ev), indent=1))
    path = directory / "index.html"
    path.write_text(render_report(ev, title, wall_s))
    return path
