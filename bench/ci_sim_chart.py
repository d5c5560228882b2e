"""The HTML chart of a ci_sim run: one self-contained page of inline SVG, no scripts, no downloads.

For each policy: instances by market over time (stacked spot / on-demand), the job queue
length, and a tick for every interruption notice.  Input is the report of
``ci_sim.simulate``.
"""

from __future__ import annotations

import html

WIDTH, HEIGHT, PAD = 960, 180, 40
COLORS = {"spot": "#2a9d8f", "on_demand": "#e76f51", "queue": "#264653", "notice": "#d62828"}


def _x(t, horizon):
    return PAD + (WIDTH - 2 * PAD) * t / horizon


def _y(value, top):
    return HEIGHT - PAD / 2 - (HEIGHT - PAD) * value / top


def _step_path(points, horizon, top):
    """An SVG path of a step line through ``(t, value)`` points."""
    parts = []
    last = None
    for t, value in points:
        x, y = _x(t, horizon), _y(value, top)
        if last is None:
            parts.append(f"M{x:.1f},{y:.1f}")
        else:
            parts.append(f"H{x:.1f}V{y:.1f}")
        last = value
    return "".join(parts)


def _panel(title, samples, notices, horizon, top):
    """Instances on the left axis (``top`` shared by all panels), jobs waiting on this panel's right axis."""
    spot = [(t, s) for t, s, _o, _q in samples]
    total = [(t, s + o) for t, s, o, _q in samples]
    qtop = max([1] + [q for _t, _s, _o, q in samples])
    queue = [(t, q * top / qtop) for t, _s, _o, q in samples]
    days = int(horizon // 86400)
    grid = "".join(
        f'<line x1="{_x(d * 86400, horizon):.1f}" y1="{PAD / 2}" x2="{_x(d * 86400, horizon):.1f}" '
        f'y2="{HEIGHT - PAD / 2}" stroke="#ddd"/><text x="{_x(d * 86400, horizon) + 2:.1f}" '
        f'y="{HEIGHT - 4}" font-size="10">day {d + 1}</text>'
        for d in range(days + 1)
        if d * 86400 < horizon
    )
    ticks = "".join(
        f'<line x1="{_x(t, horizon):.1f}" y1="{PAD / 2 - 8}" x2="{_x(t, horizon):.1f}" y2="{PAD / 2}" '
        f'stroke="{COLORS["notice"]}"/>'
        for t in notices
    )
    axis = f'<text x="4" y="{_y(top, top) + 4:.1f}" font-size="10">{top}</text>'
    axis += f'<text x="4" y="{_y(0, top) + 4:.1f}" font-size="10">0</text>'
    axis += (
        f'<text x="{WIDTH - 2}" y="{_y(top, top) - 6:.1f}" font-size="10" text-anchor="end" '
        f'fill="{COLORS["queue"]}">{qtop} waiting</text>'
    )
    return (
        f"<h2>{html.escape(title)}</h2>"
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'aria-label="{html.escape(title)}">{grid}{axis}{ticks}'
        f'<path d="{_step_path(total, horizon, top)}" fill="none" stroke="{COLORS["on_demand"]}" stroke-width="1.5"/>'
        f'<path d="{_step_path(spot, horizon, top)}" fill="none" stroke="{COLORS["spot"]}" stroke-width="1.5"/>'
        f'<path d="{_step_path(queue, horizon, top)}" fill="none" stroke="{COLORS["queue"]}" '
        f'stroke-width="1" stroke-dasharray="3,2"/></svg>'
    )


def render(report):
    inputs = report["inputs"]
    horizon = inputs["days"] * 86400
    series = report["series"]
    top = 1
    for data in series.values():
        for _t, s, o, _q in data["samples"]:
            top = max(top, s + o)
    legend = (
        f'<p><span style="color:{COLORS["spot"]}">&#9632; spot instances</span> &nbsp; '
        f'<span style="color:{COLORS["on_demand"]}">&#9632; all instances (spot + on-demand)</span> &nbsp; '
        f'<span style="color:{COLORS["queue"]}">- - jobs waiting (right axis, scaled per policy)</span> &nbsp; '
        f'<span style="color:{COLORS["notice"]}">| interruption notice</span></p>'
    )
    rows = "".join(
        "<tr><td>{}</td><td>{:.2f}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>".format(
            html.escape(name),
            r["cost_usd"],
            "-" if r["effective_discount"] is None else f"{r['effective_discount'] * 100:.1f}%",
            r["jobs_cut_by_interruption"],
            r["jobs_lost_to_interruption"] + r["jobs_lost_other"],
            r["wait_seconds"]["p95"],
        )
        for name, r in report["results"].items()
    )
    described = ", ".join(f"{html.escape(str(k))}={html.escape(str(inputs[k]))}" for k in sorted(inputs))
    panels = "".join(_panel(name, data["samples"], data["notices"], horizon, top) for name, data in series.items())
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>ParkingSpot CI simulation</title>'
        "<style>body{font-family:sans-serif;margin:1em 2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}</style></head><body>"
        "<h1>ParkingSpot CI simulation</h1>"
        f"<p>{described}</p><p>Left axis: instances; right axis: jobs waiting; marks on top: interruption notices.</p>"
        "<table><tr><th>policy</th><th>cost USD</th><th>effective discount</th><th>jobs cut by interruption</th>"
        f"<th>jobs lost (any cause)</th><th>wait p95 s</th></tr>{rows}</table>"
        f"{legend}{panels}</body></html>\n"
    )
