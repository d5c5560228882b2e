# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

import csv
import datetime
import io
import os
import re
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser

import pytest

from ansible_collections.parkingspot.ec2.plugins.module_utils import _report_html
from ansible_collections.parkingspot.ec2.plugins.module_utils import _usage
from ansible_collections.parkingspot.ec2.plugins.module_utils._usage_report import report_instance
from ansible_collections.parkingspot.ec2.plugins.module_utils._usage_report import report_request

UTC = datetime.timezone.utc
T0 = datetime.datetime(2024, 5, 1, tzinfo=UTC)
NOW = T0 + datetime.timedelta(hours=12)


def at(hours):
    return T0 + datetime.timedelta(hours=hours)


def sample_report():
    def inst(iid, start, tags, state="running", lifecycle="spot", transition=""):
        data = {
            "InstanceId": iid,
            "InstanceType": "m5.large",
            "Placement": {"AvailabilityZone": "us-east-1a"},
            "LaunchTime": at(start),
            "State": {"Name": state},
            "StateTransitionReason": transition,
            "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
        }
        if lifecycle:
            data["InstanceLifecycle"] = lifecycle
        return report_instance(data)

    instances = [
        inst("i-run1", 0, {"parkingspot:pool": "ci"}),
        inst("i-run2", 2, {"parkingspot:pool": "ci"}),
        inst(
            "i-gone",
            1,
            {"parkingspot:pool": "ci", "parkingspot:interrupted": "true"},
            state="terminated",
            transition="User initiated (2024-05-01 05:30:00 GMT)",
        ),
        inst("i-od", 6, {"parkingspot:pool": "ci", "parkingspot:market": "on-demand"}, lifecycle=None),
        inst("i-team", 3, {"team": "data <&> science"}),
    ]
    prices = [{"InstanceType": "m5.large", "AvailabilityZone": "us-east-1a", "SpotPrice": "0.035", "Timestamp": at(-1)}]
    requests = [
        report_request({"SpotInstanceRequestId": "sir-p1", "Type": "persistent", "State": "open", "ValidUntil": at(2)})
    ]
    rows = _usage.usage_rows(instances, requests, prices, NOW, owner_tag="team")
    groups = _usage.summarize(rows)
    return {
        "title": "Spot usage report",
        "window_start": T0,
        "window_end": NOW,
        "generated_at": "2024-05-01T12:00:00Z",
        "rows": rows,
        "groups": groups,
        "totals": _usage.totals(groups),
        "spot_requests": _usage.request_rows(requests, NOW),
        "datafeed": {"files": 2, "records": 10, "skipped": 3},
    }


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []
        self.stack = []
        self.rows = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs, [t for t, _a in self.stack]))
        if tag == "table":
            self.rows[attrs.get("id")] = 0
        if tag == "tr" and any(t == "tbody" for t, _a in self.stack):
            table_id = [a.get("id") for t, a in self.stack if t == "table"][-1]
            self.rows[table_id] += 1
        if tag not in ("meta", "line", "rect", "br") and not attrs.get("/"):
            self.stack.append((tag, attrs))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs), [t for t, _a in self.stack]))

    def handle_endtag(self, tag):
        while self.stack:
            popped, _attrs = self.stack.pop()
            if popped == tag:
                break


def test_csv_has_header_and_one_line_per_instance():
    report = sample_report()
    text = _report_html.render_csv(report["rows"])
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert len(parsed) == 5
    assert list(parsed[0].keys()) == list(_report_html.CSV_COLUMNS)
    gone = next(r for r in parsed if r["instance_id"] == "i-gone")
    assert gone["interrupted"] == "True" and gone["hours"] == "4.5" and gone["end"] == "2024-05-01T05:30:00Z"


def test_html_tables_and_charts():
    page = _report_html.render_html(sample_report())
    collector = _Collector()
    collector.feed(page)
    assert collector.rows == {"groups": 2, "instances": 5, "spot-requests": 1}
    charts = {a["id"]: a for t, a, _p in collector.tags if t == "svg"}
    assert set(charts) == {"chart-pool-size", "chart-interruptions", "chart-cost"}
    bars = [a for t, a, _p in collector.tags if t == "rect" and a.get("class") == "bar"]
    series = {a["data-series"] for a in bars}
    assert series == {"spot", "on-demand", "interrupted", "spot cost", "on-demand cost"}
    assert all(float(a["height"]) > 0 for a in bars)
    assert sum(1 for a in bars if a["data-series"] == "interrupted") == 1
    # self-contained: no scripts, no external references
    assert "<script" not in page.lower()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page)
    assert "@import" not in page and "url(" not in page
    # user data is escaped
    assert "data &lt;&amp;&gt; science" in page and "data <&> science" not in page
    assert "3 malformed lines skipped" in page


def test_empty_report_draws_no_data_placeholders():
    report = sample_report()
    report.update(rows=[], groups=[], totals=_usage.totals([]), spot_requests=[], datafeed=None)
    page = _report_html.render_html(report)
    assert page.count(">no data</text>") == 3
    assert 'class="bar"' not in page


def test_time_series_counts_alive_and_interruptions():
    labels, spot, on_demand, interrupted = _report_html.time_series(sample_report()["rows"], T0, NOW, buckets=12)
    assert len(labels) == 12
    # bucket 4 is 04:00-05:00: i-run1, i-run2, i-gone, i-team ran in it (all spot)
    assert spot[4] == 4 and on_demand[4] == 0
    assert on_demand[11] == 1
    assert interrupted[5] == 1 and sum(interrupted) == 1


def test_time_series_counts_instances_shorter_than_a_bucket():
    short = {"start": "2024-05-01T03:10:00Z", "end": "2024-05-01T03:11:00Z", "market": "spot", "interrupted": True}
    labels, spot, on_demand, interrupted = _report_html.time_series([short], T0, NOW, buckets=12)
    assert spot == [0, 0, 0, 1] + [0] * 8
    assert interrupted[3] == 1 and on_demand == [0] * 12


def test_write_if_changed_is_atomic_and_idempotent(tmp_path):
    target = tmp_path / "r.csv"
    assert _report_html.write_if_changed(str(target), "a\n") is True
    assert _report_html.write_if_changed(str(target), "a\n") is False
    assert _report_html.write_if_changed(str(target), "b\n") is True
    assert target.read_text() == "b\n"
    assert [p.name for p in tmp_path.iterdir()] == ["r.csv"]


def test_check_dest_names_option(tmp_path):
    _report_html.check_dest(str(tmp_path / "new" / "dir"))  # creatable: fine
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(ValueError, match=r"^dest: .* not a directory"):
        _report_html.check_dest(str(afile))
    with pytest.raises(ValueError, match=r"^dest: "):
        _report_html.check_dest(str(afile / "below"))
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ValueError, match=r"^dest: .*not writable"):
            _report_html.check_dest(str(locked))


# --- headless Chromium ---------------------------------------------------------------------


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _chromium_run(binary, tmp_path, *args):
    cmd = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def _png_pixels(data):
    """Decode an 8-bit, non-interlaced RGB/RGBA PNG (what Chromium writes) into rows of tuples."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, color, _c, _f, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    rows = []
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + b) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        rows.append([tuple(line[x * bpp : x * bpp + 3]) for x in range(width)])
        prev = line
    return rows


def test_report_renders_in_headless_chromium(tmp_path):
    binary = _chromium()
    if not binary:
        pytest.skip("headless Chromium not installed (Debian package 'chromium'); rendering test skipped")
    page = tmp_path / "usage-report.html"
    page.write_text(_report_html.render_html(sample_report()), encoding="utf-8")

    # 1. the page as shipped: load it, fail on any console error (it has no scripts, so none expected)
    shot = tmp_path / "shot.png"
    result = _chromium_run(
        binary, tmp_path, f"--screenshot={shot}", "--window-size=1000,1400", "--hide-scrollbars", page.as_uri()
    )
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert not [line for line in console if "Uncaught" in line or "rror" in line], console
    assert shot.exists(), result.stderr[-2000:]
    pixels = _png_pixels(shot.read_bytes())
    spot_blue = sum(row.count((0x2B, 0x8C, 0xBE)) for row in pixels)
    od_orange = sum(row.count((0xF0, 0xA2, 0x02)) for row in pixels)
    red = sum(row.count((0xD7, 0x30, 0x1F)) for row in pixels)
    assert spot_blue > 500 and od_orange > 50 and red > 20, (spot_blue, od_orange, red)

    # 2. a probe copy: a script measures the laid-out bars of each chart and writes the result into the DOM
    probe = tmp_path / "probe.html"
    probe.write_text(
        page.read_text().replace(
            "</body>",
            """<script>
var out = [];
document.querySelectorAll("svg.chart").forEach(function (svg) {
  var drawn = 0;
  svg.querySelectorAll("rect.bar").forEach(function (r) {
    var b = r.getBBox(); if (b.width > 0 && b.height > 0) { drawn += 1; }
  });
  out.push(svg.id + "=" + drawn);
});
document.body.setAttribute("data-probe", out.join(","));
</script></body>""",
        ),
        encoding="utf-8",
    )
    result = _chromium_run(binary, tmp_path, "--dump-dom", probe.as_uri())
    match = re.search(r'data-probe="([^"]*)"', result.stdout)
    assert match, result.stderr[-2000:]
    drawn = dict(item.split("=") for item in match.group(1).split(","))
    assert set(drawn) == {"chart-pool-size", "chart-interruptions", "chart-cost"}
    assert all(int(n) > 0 for n in drawn.values()), drawn


@pytest.mark.parametrize(
    "value, cell",
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("team=a", "team=a"),
        ("ci", "ci"),
        (-1.5, "-1.5"),
        (None, ""),
    ],
)
def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(value, cell):
    rows = [{"pool": value, "owner": value, "instance_id": "i-1", "savings": -1.5}]
    parsed = next(csv.DictReader(io.StringIO(_report_html.render_csv(rows))))
    assert parsed["pool"] == cell and parsed["owner"] == cell
    assert parsed["savings"] == "-1.5"  # numbers stay numbers


def test_write_all_replaces_both_or_neither(tmp_path, monkeypatch):
    csv_path, html_path = str(tmp_path / "r.csv"), str(tmp_path / "r.html")
    assert _report_html.write_all_if_changed({csv_path: "c1", html_path: "h1"}) is True
    assert _report_html.write_all_if_changed({csv_path: "c1", html_path: "h1"}) is False
    real_replace = os.replace

    def failing_replace(src, dst):
        if dst == html_path:
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(_report_html.os, "replace", failing_replace)
    with pytest.raises(OSError):
        _report_html.write_all_if_changed({csv_path: "c2", html_path: "h2"})
    monkeypatch.setattr(_report_html.os, "replace", real_replace)
    assert (tmp_path / "r.csv").read_text() == "c1" and (tmp_path / "r.html").read_text() == "h1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv", "r.html"]


def test_write_all_removes_a_new_file_when_its_partner_fails(tmp_path, monkeypatch):
    csv_path, html_path = str(tmp_path / "r.csv"), str(tmp_path / "r.html")
    real_replace = os.replace

    def failing_replace(src, dst):
        if dst == html_path:
            raise OSError("boom")
        return real_replace(src, dst)

    monkeypatch.setattr(_report_html.os, "replace", failing_replace)
    with pytest.raises(OSError):
        _report_html.write_all_if_changed({csv_path: "c", html_path: "h"})
    assert list(tmp_path.iterdir()) == []
