"""The HTML report (proactive_recs_tools.report): built from hand-made tables, then rendered.

The rendering test opens the page in headless Chromium as a user would (Debian's
``chromium`` package: ``apt-get install -y chromium``) and is skipped when it is not
installed.
"""

from __future__ import annotations

import html.parser
import json
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from proactive_recs.notifications.backtest import POLICIES
from proactive_recs_tools.report import PLOT_IDS, render_report, write_report
from proactive_recs_tools.validation import Settings

REPO = Path(__file__).resolve().parents[2]
TS = pd.Timestamp
CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None
)


def report_tables() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(7)
    rows = []
    for direction, ks, models in (
        ("user_to_item", [10, 20], ["served", "als", "popularity", "random"]),
        ("item_to_user", [50, 100], ["served", "als", "heavy_users", "random"]),
    ):
        for model in models:
            for metric in ("ndcg", "recall", "precision"):
                for k in ks:
                    base = {
                        "served": 0.3,
                        "als": 0.25,
                        "popularity": 0.15,
                        "heavy_users": 0.2,
                        "random": 0.02,
                    }[model]
                    rows.append(
                        (
                            model,
                            direction,
                            "all",
                            metric,
                            k,
                            min(base * (1.5 if metric == "recall" else 1) + k / 1000, 1),
                        )
                    )
            rows.append((model, direction, "cold_items", "ndcg", ks[0], 0.05))
    model_evaluation = pd.DataFrame(
        rows, columns=["model", "direction", "segment", "metric", "k", "value"]
    )
    bins = np.arange(10)
    calibration = pd.DataFrame(
        {
            "bin": bins,
            "mean_predicted": (bins + 0.5) / 10,
            "observed_rate": np.clip((bins + 0.5) / 10 * 0.8 + rng.normal(0, 0.03, 10), 0, 1),
            "n": rng.integers(50, 500, 10),
        }
    )
    users = [f"u{i:03d}" for i in range(60)]
    audience_rows = []
    for n, user in enumerate(users):
        audience_rows.append(
            (f"d-{user}", user, "email", "weekly_digest", None, TS("2026-11-01 08:00"), n % 20 == 0)
        )
        for j in range(n % 3):
            audience_rows.append(
                (
                    f"p{j}-{user}",
                    user,
                    "push",
                    "new_arrivals",
                    f"i{j}",
                    TS("2026-11-01 09:00") + pd.Timedelta(hours=20 * j),
                    n % 20 == 0,
                )
            )
    audience = pd.DataFrame(
        audience_rows,
        columns=[
            "send_key",
            "user_id",
            "channel",
            "campaign_id",
            "item_id",
            "scheduled_send_at",
            "is_holdout",
        ],
    )
    audience["email"] = audience["user_id"] + "@example.com"
    audience["rank"] = audience.groupby("user_id").cumcount() + 1
    audience["score"] = 0.5
    history = pd.DataFrame(
        {
            "send_id": [f"s{i}" for i in range(40)],
            "user_id": users[:40],
            "campaign_id": "weekly_digest",
            "item_id": None,
            "channel": ["email"] * 30 + ["push"] * 10,
            "sent_at": [TS("2026-10-28 08:00")] * 40,
        }
    )
    policies = list(POLICIES)  # the backtest's own list, in its order
    backtest = pd.DataFrame(
        [
            (p, m, v)
            for p, cps, mx in zip(
                policies, [0.06, 0.01, 0.03, 0.04, 0.05], [4, 12, 7, 3, 9], strict=True
            )
            for m, v in (
                ("sends", 1000.0),
                ("conversions", 1000 * cps),
                ("conversions_per_send", cps),
                ("users_reached", 500.0),
                ("p95_sends_per_user_week", mx - 1.0),
                ("max_sends_per_user_week", mx),
            )
        ],
        columns=["policy", "metric", "value"],
    )
    rejected = pd.DataFrame(
        {
            "audit_row_id": [f"r{i}" for i in range(6)],
            "source_name": [
                "users",
                "users",
                "transactions",
                "transactions",
                "transactions",
                "items",
            ],
            "raw_key": ["a", "b", "c", "d", "e", "f"],
            "rejection_reason": [
                "null_id",
                "duplicate",
                "cancellation",
                "cancellation",
                "unknown_item",
                "non_product_item",
            ],
        }
    )
    campaigns = pd.DataFrame(
        {
            "campaign_id": ["weekly_digest", "new_arrivals"],
            "channel": ["email", "push"],
            "audience_size": pd.array([None, 200], dtype="Int64"),
        }
    )
    send_times = pd.DataFrame(
        {
            "user_id": users,
            "weekday_hour": [(7 + 11 * (n % 3)) % 24 for n in range(60)],
            "weekend_hour": [10 + n % 4 for n in range(60)],
            "send_time_basis": ["personal"] * 40 + ["population"] * 20,
        }
    )
    model_evaluation = pd.concat(
        [
            model_evaluation,
            pd.DataFrame(
                [
                    (m, "send_time", "all", "capture", k, v)
                    for m, k, v in (
                        ("served", 1, 0.45),
                        ("population", 1, 0.43),
                        ("uniform", 1, 0.125),
                        ("served", 3, 0.81),
                        ("population", 3, 0.84),
                        ("uniform", 3, 0.29),
                    )
                ],
                columns=model_evaluation.columns,
            ),
        ],
        ignore_index=True,
    )
    lift = pd.DataFrame(
        {
            "campaign_id": ["new_arrivals", "weekly_digest"],
            "channel": ["push", "email"],
            "week_start": [TS("2026-10-26"), TS("2026-10-26")],
            "users_treated": [400, 500],
            "users_holdout": [20, 25],
            "rate_treated": [0.05, None],
            "rate_holdout": [0.02, None],
            "lift_abs": [0.03, None],
            "lift_abs_lower": [-0.04, None],
            "lift_abs_upper": [0.07, None],
            "halo_lift_abs": [0.04, 0.01],
            "halo_lift_abs_lower": [-0.03, -0.05],
            "halo_lift_abs_upper": [0.09, 0.08],
            "is_complete": [True, True],
            "reason": [None, None],
            "cumulative_lift_abs": [0.03, 0.02],
            "cumulative_lift_abs_lower": [-0.04, -0.01],
            "cumulative_lift_abs_upper": [0.07, 0.05],
        }
    )
    return {
        "campaign_lift": lift,
        "user_send_times": send_times,
        "model_evaluation": model_evaluation,
        "calibration_curve": calibration,
        "notification_audience": audience,
        "int_notification_sends": history,
        "campaign_backtest": backtest,
        "rejected_rows": rejected,
        "stg_campaigns": campaigns,
        "stg_users": pd.DataFrame({"user_id": users}),
    }


def write_db(path: Path, tables: dict[str, pd.DataFrame]) -> Path:
    with duckdb.connect(str(path)) as con:
        for name, frame in tables.items():
            con.register("incoming", frame)
            con.execute(f'create table "{name}" as select * from incoming')
            con.unregister("incoming")
    return path


class PlotFinder(html.parser.HTMLParser):
    """Which of the plot elements hold an <svg> or <img>, and their text."""

    def __init__(self):
        super().__init__()
        self.open: list[tuple[str, int]] = []  # (plot id, depth at which it opened)
        self.depth = 0
        self.images: dict[str, int] = {}
        self.text: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        self.depth += 1
        attrs = dict(attrs)
        if attrs.get("id") in PLOT_IDS:
            self.open.append((attrs["id"], self.depth))
            self.images.setdefault(attrs["id"], 0)
            self.text.setdefault(attrs["id"], "")
        # a chart: a Plotly figure's div (before the page's script drew it), or what a
        # browser drew (Plotly's <svg class="main-svg">), or an image
        is_figure = tag == "div" and "plotly-graph-div" in (attrs.get("class") or "")
        is_drawn = tag == "svg" and "main-svg" in (attrs.get("class") or "")
        if (is_figure or is_drawn or tag == "img") and self.open:
            self.images[self.open[-1][0]] += 1

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if self.open and self.open[-1][1] == self.depth:
            self.open.pop()
        self.depth -= 1

    def handle_data(self, data):
        if self.open:
            self.text[self.open[-1][0]] += data


VOID = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
}


def find_plots(page: str) -> PlotFinder:
    finder = PlotFinder()
    # Void elements have no end tag in serialized HTML: close them at once.
    for tag in VOID:
        page = page.replace(f"<{tag} ", f"<{tag}/ ").replace(f"<{tag}>", f"<{tag}/>")
    finder.feed(page)
    return finder


def png_pixels(path: Path) -> np.ndarray:
    """Decode an 8-bit RGB/RGBA, non-interlaced PNG (as Chromium writes) into (h, w, c)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0, header
    channels = 3 if color == 2 else 4
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8)
    raw = raw.reshape(height, 1 + width * channels)
    out = np.zeros((height, width * channels), dtype=np.uint8)
    prev = np.zeros(width * channels, dtype=np.int32)
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        if kind == 0:
            row = line
        elif kind == 1:  # Sub: a running sum per channel
            row = np.cumsum(line.reshape(width, channels), axis=0).reshape(-1) % 256
        elif kind == 2:  # Up
            row = (line + prev) % 256
        else:  # Average / Paeth depend on the left neighbour: byte by byte
            cur, up, left_of = line.tolist(), prev.tolist(), [0] * channels
            values = []
            for x, byte in enumerate(cur):
                a = values[x - channels] if x >= channels else 0
                b = up[x]
                if kind == 3:
                    values.append((byte + (a + b) // 2) & 255)
                    continue
                c = up[x - channels] if x >= channels else left_of[0]
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                values.append((byte + pred) & 255)
            row = np.array(values, dtype=np.int32)
        out[y] = row
        prev = row
    return out.reshape(height, width, channels)


def test_missing_tables_give_not_built_notes():
    with duckdb.connect(":memory:") as con:
        page = render_report(con, Settings())
    finder = find_plots(page)
    assert set(finder.images) == set(PLOT_IDS)
    for plot_id in PLOT_IDS:
        assert finder.images[plot_id] == 0, plot_id
        assert "Not built yet" in finder.text[plot_id], plot_id
    assert "model_evaluation" in finder.text["plot-model-metrics"]
    assert "calibration_curve" in finder.text["plot-calibration"]
    assert "campaign_backtest" in finder.text["plot-backtest"]
    assert "Not built yet: rejected_rows" in page.replace("<code>", "").replace("</code>", "")


def test_report_draws_every_plot_and_is_self_contained(tmp_path):
    db = write_db(tmp_path / "run.duckdb", report_tables())
    out = write_report(
        db,
        tmp_path / "out" / "report.html",
        Settings(run_date="2026-11-01", caps={"email": 3, "push": 2}),
    )
    page = out.read_text()
    finder = find_plots(page)
    for plot_id in PLOT_IDS:
        assert finder.images.get(plot_id, 0) >= 1, plot_id
        assert "Not built yet" not in finder.text[plot_id]
    assert finder.images["plot-model-metrics"] == 2  # one chart per direction
    assert finder.images["plot-sends-per-user"] == 2  # email and push
    assert finder.images["plot-lift"] == 2  # per week, and cumulative since the first week
    # No network: plotly.js is inline, once; no script, stylesheet, font or image is fetched.
    lowered = page.lower()
    for needle in ("<script src", "<link", "@import", 'src="http', "src='http"):
        assert needle not in lowered, needle
    assert lowered.count("<script") == 1 + sum(finder.images.values())  # plotly.js + 1 a chart
    assert "hovertemplate" in page  # values on hover
    assert "cap 3" in page and "cap 2" in page
    assert "cancellation" in page  # rejected rows per reason


def test_cli_writes_the_report(tmp_path):
    db = write_db(tmp_path / "run.duckdb", {"stg_users": pd.DataFrame({"user_id": ["a"]})})
    out = tmp_path / "r" / "report.html"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "proactive_recs_tools.report",
            "--duckdb",
            str(db),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert out.exists() and "Not built yet" in out.read_text()
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "proactive_recs_tools.report",
            "--duckdb",
            str(tmp_path / "nope.duckdb"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (apt-get install -y chromium); CI installs it",
)
def test_report_renders_in_headless_chromium(tmp_path):
    db = write_db(tmp_path / "run.duckdb", report_tables())
    out = write_report(db, tmp_path / "report.html", Settings(run_date="2026-11-01"))
    url = out.resolve().as_uri()

    # every host unresolvable (chromium() maps them away): the page draws from what it carries
    dom = chromium("--dump-dom", "--virtual-time-budget=10000", url, profile=tmp_path / "dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    finder = find_plots(dom.stdout)
    for plot_id in PLOT_IDS:
        assert finder.images.get(plot_id, 0) >= 1, f"{plot_id} has no image in the rendered DOM"

    shot = tmp_path / "report.png"
    result = chromium(
        f"--screenshot={shot}",
        "--virtual-time-budget=10000",
        "--window-size=1280,4000",
        "--hide-scrollbars",
        url,
        profile=tmp_path / "profile-shot",
    )
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    pixels = png_pixels(shot)
    assert pixels.shape[:2] == (4000, 1280)
    colours = np.unique(pixels[..., :3].reshape(-1, 3), axis=0)
    assert len(colours) > 50, f"screenshot looks blank: {len(colours)} distinct colours"
    # The plots' palette is on screen (blue bars, orange series, red cap lines).
    for hex_colour in ("#2563eb", "#f97316", "#b91c1c"):
        rgb = [int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)]
        assert (colours == rgb).all(axis=1).any(), hex_colour
    (tmp_path / "report.json").write_text(json.dumps({"colours": int(len(colours))}))
