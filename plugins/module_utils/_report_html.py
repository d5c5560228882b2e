# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Usage report rendering (pure): CSV text and one self-contained HTML page.

The page has no scripts and no external assets: styles are inline in a ``<style>`` block
and the charts are inline SVG drawn here (stacked bars), so it opens from a mail
attachment or an artifact store without network access.
"""

from __future__ import annotations

import csv
import html
import io
import os
import tempfile

from ansible_collections.parkingspot.ec2.plugins.module_utils._time import format_time
from ansible_collections.parkingspot.ec2.plugins.module_utils._time import to_utc

CSV_COLUMNS = (
    "pool",
    "owner",
    "instance_id",
    "market",
    "instance_type",
    "platform",
    "zone",
    "state",
    "start",
    "end",
    "end_source",
    "running",
    "hours",
    "interrupted",
    "interruption_source",
    "spot_request_id",
    "request_type",
    "valid_until",
    "cost",
    "cost_source",
    "cost_approximate",
    "on_demand_price",
    "on_demand_cost",
    "savings",
    "savings_pct",
    "feed_charge",
    "feed_hours",
)
CSV_NAME = "usage-report.csv"
HTML_NAME = "usage-report.html"
COLORS = {
    "spot": "#2b8cbe",
    "on-demand": "#f0a202",
    "interrupted": "#d7301f",
    "cost": "#2b8cbe",
    "on_demand_cost": "#bdbdbd",
}


# First characters that make a spreadsheet read a cell as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """A value as a CSV cell; text a spreadsheet would evaluate gets a leading single quote."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def render_csv(rows):
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: csv_cell(row.get(k)) for k in CSV_COLUMNS})
    return out.getvalue()


def time_series(rows, start, end, buckets=24):
    """Per bucket of ``[start, end]``: instances that ran during the bucket (even briefly) by market,
    and interruptions whose end falls in the bucket. Returns ``(labels, spot, on_demand, interruptions)``."""
    start, end = to_utc(start), to_utc(end)
    if end <= start or buckets < 1:
        return [], [], [], []
    step = (end - start) / buckets
    labels, spot, on_demand, interrupted = [], [], [], []
    spans = []
    for row in rows:
        if not row.get("start"):
            continue
        row_end = to_utc(row["end"]) if row.get("end") else (end if row.get("running") else None)
        if row_end is None:
            continue
        spans.append((to_utc(row["start"]), row_end, row["market"], bool(row.get("interrupted") and row.get("end"))))
    for idx in range(buckets):
        b_start = start + step * idx
        b_end = b_start + step
        labels.append(b_start.strftime("%m-%d %H:%M"))
        ran = [m for s, e, m, _i in spans if s < b_end and e > b_start]
        spot.append(sum(1 for m in ran if m == "spot"))
        on_demand.append(sum(1 for m in ran if m != "spot"))
        interrupted.append(sum(1 for _s, e, _m, i in spans if i and b_start <= e < b_end))
    return labels, spot, on_demand, interrupted


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if value else "0"
    return "" if value is None else str(value)


def bar_chart(chart_id, title, labels, series, y_label, width=760, height=260):
    """A stacked bar chart as inline SVG. ``series`` is ``[(name, color, values)]``."""
    esc = html.escape
    left, right, top, bottom = 56, 12, 28, 56
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(values[i] for _n, _c, values in series) for i in range(len(labels))]
    peak = max(totals) if totals else 0
    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" id="{esc(chart_id)}" class="chart" role="img" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        ),
        f"<title>{esc(title)}</title>",
        f'<text x="{left}" y="18" class="chart-title">{esc(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" class="axis"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" class="axis"/>',
        (
            f'<text x="12" y="{top + plot_h / 2:.1f}" class="axis-label" '
            f'transform="rotate(-90 12 {top + plot_h / 2:.1f})">{esc(y_label)}</text>'
        ),
    ]
    if not labels or peak <= 0:
        parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" class="empty">no data</text>')
        parts.append("</svg>")
        return "\n".join(parts)
    for tick in range(5):
        value = peak * tick / 4
        y = top + plot_h - plot_h * tick / 4
        parts.append(f'<line x1="{left - 4}" y1="{y:.1f}" x2="{left}" y2="{y:.1f}" class="axis"/>')
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{esc(_fmt(round(value, 4)))}</text>'
        )
    slot = plot_w / len(labels)
    bar_w = max(slot * 0.7, 1.0)
    label_every = max(1, len(labels) // 8)
    for i, label in enumerate(labels):
        x = left + slot * i + (slot - bar_w) / 2
        base = top + plot_h
        for name, color, values in series:
            value = values[i]
            if value <= 0:
                continue
            h = plot_h * value / peak
            base -= h
            parts.append(
                f'<rect class="bar" data-series="{esc(name)}" x="{x:.1f}" y="{base:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}" fill="{color}"><title>{esc(label)} {esc(name)}: {esc(_fmt(value))}</title></rect>'
            )
        if i % label_every == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h + 14}" class="tick" '
                f'text-anchor="middle">{esc(label)}</text>'
            )
    lx = left
    for name, color, _values in series:
        parts.append(f'<rect x="{lx}" y="{height - 16}" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{lx + 14}" y="{height - 7}" class="legend">{esc(name)}</text>')
        lx += 24 + 8 * len(name)
    parts.append("</svg>")
    return "\n".join(parts)


_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}
table{border-collapse:collapse;font-size:12px;margin:8px 0}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:left}th{background:#f2f2f2}
td.num{text-align:right}tr.interrupted td{background:#fde0dc}
.chart{display:block;margin:12px 0;background:#fafafa;border:1px solid #e5e5e5}
.chart-title{font-size:13px;font-weight:600}.tick,.legend,.axis-label{font-size:10px;fill:#444}
.axis{stroke:#666;stroke-width:1}.empty{font-size:13px;fill:#888;text-anchor:middle}
.meta{color:#555;font-size:12px}
"""


def _table(table_id, columns, rows, row_class=None):
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cls = row_class(row) if row_class else ""
        cells = []
        for c in columns:
            value = row.get(c)
            num = isinstance(value, (int, float)) and not isinstance(value, bool)
            td = '<td class="num">' if num else "<td>"
            cells.append(f"{td}{esc(_fmt(value))}</td>")
        tr = f'<tr class="{cls}">' if cls else "<tr>"
        body.append(tr + "".join(cells) + "</tr>")
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def render_html(report):
    """The whole page. ``report`` has ``title``, ``window_start``, ``window_end``, ``generated_at``,
    ``rows``, ``groups``, ``totals``, ``spot_requests`` and ``datafeed`` (or None)."""
    esc = html.escape
    rows, groups = report["rows"], report["groups"]
    labels, spot, on_demand, interrupted = time_series(rows, report["window_start"], report["window_end"])
    group_labels = [f"{g['kind']}:{g['name']}" for g in groups]
    charts = [
        bar_chart(
            "chart-pool-size",
            "Instances that ran in each interval, by market",
            labels,
            [("spot", COLORS["spot"], spot), ("on-demand", COLORS["on-demand"], on_demand)],
            "instances",
        ),
        bar_chart(
            "chart-interruptions",
            "Interruptions by the cloud over time",
            labels,
            [("interrupted", COLORS["interrupted"], interrupted)],
            "interruptions",
        ),
        _cost_chart(groups, group_labels),
    ]
    t = report["totals"]
    summary = (
        f"{t['instances']} instances ({t['spot']} spot, {t['on_demand']} on-demand, {t['running']} running), "
        f"{t['interrupted']} interrupted, {_fmt(t['hours'])} instance-hours, cost {_fmt(t['cost'])} USD vs "
        f"{_fmt(t['on_demand_cost'])} USD on-demand, saved {_fmt(t['savings'])} USD"
        + (f" ({t['savings_pct']}%)" if t.get("savings_pct") is not None else "")
    )
    feed = report.get("datafeed")
    feed_line = ""
    if feed:
        feed_line = (
            f'<p class="meta">Spot data feed: {feed["files"]} files, {feed["records"]} records, '
            f"{feed['skipped']} malformed lines skipped.</p>"
        )
    group_cols = (
        "kind",
        "name",
        "instances",
        "spot",
        "on_demand",
        "running",
        "interrupted",
        "hours",
        "cost",
        "on_demand_cost",
        "savings",
        "savings_pct",
        "unpriced",
    )
    row_cols = (
        "pool",
        "owner",
        "instance_id",
        "market",
        "instance_type",
        "zone",
        "state",
        "start",
        "end",
        "hours",
        "interrupted",
        "interruption_source",
        "cost",
        "cost_source",
        "on_demand_cost",
        "savings",
    )
    req_cols = (
        "spot_request_id",
        "request_type",
        "state",
        "status_code",
        "instance_id",
        "valid_until",
        "expired",
        "re_evaluated",
    )
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{esc(report['title'])}</title>",
            f"<style>{_STYLE}</style></head><body>",
            f"<h1>{esc(report['title'])}</h1>",
            (
                f'<p class="meta">Window {esc(format_time(to_utc(report["window_start"])))} to '
                f"{esc(format_time(to_utc(report['window_end'])))}; generated {esc(report['generated_at'])}. "
                "Costs are estimates: spot at the price history in effect (time-weighted) or the data feed charge, "
                "on-demand at list price.</p>"
            ),
            f'<p id="summary">{esc(summary)}</p>',
            feed_line,
            "<h2>Charts</h2>",
            *charts,
            "<h2>Per pool / owner</h2>",
            _table("groups", group_cols, groups),
            "<h2>Instances</h2>",
            _table("instances", row_cols, rows, lambda r: "interrupted" if r.get("interrupted") else ""),
            "<h2>Spot requests</h2>",
            _table("spot-requests", req_cols, report.get("spot_requests") or []),
            "</body></html>",
            "",
        ]
    )


def _cost_chart(groups, group_labels):
    return bar_chart(
        "chart-cost",
        "Cost vs on-demand per pool / owner (USD)",
        [label for label in group_labels for _bar in (0, 1)],
        [
            ("spot cost", COLORS["cost"], [v for g in groups for v in (g["cost"], 0.0)]),
            ("on-demand cost", COLORS["on_demand_cost"], [v for g in groups for v in (0.0, g["on_demand_cost"])]),
        ],
        "USD",
    )


def check_dest(dest):
    """Raise ``ValueError`` naming ``dest`` when the report cannot be written there."""
    if os.path.exists(dest):
        if not os.path.isdir(dest):
            raise ValueError(f"dest: {dest} exists and is not a directory")
        if not os.access(dest, os.W_OK | os.X_OK):
            raise ValueError(f"dest: directory {dest} is not writable")
        return
    parent = os.path.dirname(os.path.abspath(dest))
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"dest: cannot create {dest}: {parent} is not a writable directory")


def write_if_changed(path, content):
    """Atomically replace ``path`` with ``content`` when it differs; return whether it changed."""
    data = content.encode("utf-8")
    try:
        with open(path, "rb") as handle:
            if handle.read() == data:
                return False
    except FileNotFoundError:
        pass
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".parkingspot-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


def write_all_if_changed(contents):
    """Replace every ``path: text`` of ``contents`` that differs, all or none; return whether any changed.

    Every new file is first written in full to a temporary name beside its target; only then are they
    renamed into place. When a rename fails, the files already replaced get their previous content back
    (or are removed when they did not exist), so readers never see a new CSV with an old HTML page.
    """
    staged = []
    try:
        for path, text in sorted(contents.items()):
            data = text.encode("utf-8")
            try:
                with open(path, "rb") as handle:
                    old = handle.read()
            except FileNotFoundError:
                old = None
            if old == data:
                continue
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".parkingspot-")
            staged.append((path, tmp, old))
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(tmp, 0o644)
        done = []
        try:
            for path, tmp, old in staged:
                os.replace(tmp, path)
                done.append((path, old))
        except BaseException:
            for path, old in reversed(done):
                if old is None:
                    os.unlink(path)
                else:
                    _restore(path, old)
            raise
    finally:
        for _path, tmp, _old in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return bool(staged)


def _restore(path, data):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".parkingspot-")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
