#!/usr/bin/env python3
"""Draws what `make bench-max` measured: committed transfers/s and p50/p99
finality against the offered rate, one line per validator count, from the
runs it kept in target/bench/runs/*.json. Writes one SVG (no plotting
library needed): python3 tests/plot.py [RUNS_DIR] [OUT.svg]"""

import glob
import json
import os
import sys

runs_dir = sys.argv[1] if len(sys.argv) > 1 else "target/bench/runs"
out = sys.argv[2] if len(sys.argv) > 2 else "target/bench/bench.svg"

series = {}
for path in glob.glob(os.path.join(runs_dir, "*.json")):
    with open(path) as f:
        r = json.load(f)
    series.setdefault(r["validators"], []).append(r)
if not series:
    sys.exit(f"no runs in {runs_dir}: run make bench-max first")
for runs in series.values():
    runs.sort(key=lambda r: r["offered_tps"])

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
W, H, M = 460, 300, 56  # one panel, margin


def nice_max(v):
    for exp in range(0, 8):
        for step in [1, 2, 2.5, 5]:
            top = step * 10**exp
            if top >= v:
                return top
    return v


def panel(x0, title, ylabel, ys, log=False):
    """ys: list of (label, color, [(x, y)], dash)."""
    xmax = nice_max(max(x for _, _, pts, _ in ys for x, _ in pts) * 1.05)
    ymax = nice_max(max(y for _, _, pts, _ in ys for _, y in pts) * 1.05)
    px = lambda x: x0 + M + (W - M - 16) * x / xmax
    py = lambda y: H - M + 16 - (H - M - 8) * y / ymax
    svg = [f'<text x="{x0 + W / 2}" y="18" text-anchor="middle" font-weight="bold">{title}</text>']
    svg.append(f'<line x1="{px(0)}" y1="{py(0)}" x2="{px(xmax)}" y2="{py(0)}" stroke="black"/>')
    svg.append(f'<line x1="{px(0)}" y1="{py(0)}" x2="{px(0)}" y2="{py(ymax)}" stroke="black"/>')
    for i in range(6):
        x, y = xmax * i / 5, ymax * i / 5
        svg.append(f'<text x="{px(x)}" y="{py(0) + 16}" text-anchor="middle">{x:g}</text>')
        svg.append(f'<text x="{px(0) - 6}" y="{py(y) + 4}" text-anchor="end">{y:g}</text>')
        svg.append(f'<line x1="{px(0)}" y1="{py(y)}" x2="{px(xmax)}" y2="{py(y)}" stroke="#ddd"/>')
    svg.append(f'<text x="{px(xmax / 2)}" y="{H - 4}" text-anchor="middle">offered transfers/s</text>')
    svg.append(f'<text transform="translate({x0 + 12},{H / 2}) rotate(-90)" text-anchor="middle">{ylabel}</text>')
    for k, (label, color, pts, dash) in enumerate(ys):
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        svg.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/>')
        for x, y in pts:
            svg.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{color}"/>')
        svg.append(f'<text x="{px(0) + 8}" y="{py(ymax) + 14 + 14 * k}" fill="{color}">{label}</text>')
    return svg


committed, latency = [], []
for i, (n, runs) in enumerate(sorted(series.items())):
    color = COLORS[i % len(COLORS)]
    committed.append((f"{n} validators", color, [(r["offered_tps"], r["committed_tps"]) for r in runs], ""))
    for p, dash in [("p50", "4,3"), ("p99", "")]:
        pts = [(r["offered_tps"], r["latency_ms"][p]) for r in runs]
        latency.append((f"{n} validators {p}" + (" (dashed)" if dash else ""), color, pts, dash))
top = max(r["offered_tps"] for runs in series.values() for r in runs)
committed.append(("all offered committed", "#999", [(0, 0), (top, top)], "2,2"))
body = panel(0, "Throughput", "committed transfers/s", committed)
body += panel(W + 20, "Finality (submit to commit notice)", "ms", latency)
svg = (
    f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * W + 20}" height="{H + 10}" '
    'font-family="sans-serif" font-size="11">'
    '<rect width="100%" height="100%" fill="white"/>' + "".join(body) + "</svg>\n"
)
os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
with open(out, "w") as f:
    f.write(svg)
print(f"plot: {out} ({sum(len(r) for r in series.values())} runs)")
