"""The report's two chart shapes, drawn with Plotly (hover values, zoom, PNG export).

Each function returns the chart as an HTML fragment (a ``plotly-graph-div`` and the call that
draws it). The page embeds plotly.js once (:func:`plotly_js`), so it opens offline, from a
file or an e-mail attachment, without fetching anything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

__all__ = ["PALETTE", "REFERENCE", "bar_chart", "line_chart", "plotly_js"]

PALETTE = (
    "#2563eb",
    "#f97316",
    "#16a34a",
    "#dc2626",
    "#9333ea",
    "#0891b2",
    "#ca8a04",
    "#db2777",
    "#4b5563",
    "#65a30d",
)
REFERENCE = "#b91c1c"  # caps and other lines a value is read against
_FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"
_CONFIG = {"displaylogo": False, "responsive": True}


@cache
def plotly_js() -> str:
    """plotly.js itself, for one inline <script> in the page's head."""
    return get_plotlyjs()


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


def _label(value: float | None) -> str:
    """A bar's printed value: 1,423 / 2.50 / 0.0527."""
    if value is None:
        return ""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3g}"


def _layout(figure: go.Figure, title: str, width: int, height: int, **axes) -> None:
    figure.update_layout(
        title={"text": title, "x": 0.01, "font": {"size": 15}},
        width=width,
        height=height,
        margin={"l": 64, "r": 16, "t": 48, "b": 48},
        font={"family": _FONT, "size": 12, "color": "#334155"},
        paper_bgcolor="#ffffff",
        plot_bgcolor="#ffffff",
        legend={"orientation": "h", "y": -0.2},
        **axes,
    )
    figure.update_yaxes(gridcolor="#e2e8f0", zeroline=True, zerolinecolor="#cbd5e1")


def _html(figure: go.Figure) -> str:
    return figure.to_html(full_html=False, include_plotlyjs=False, config=_CONFIG)


def bar_chart(
    groups: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    title: str,
    y_label: str = "",
    ref_value: float | None = None,
    ref_label: str = "",
    vline_after: int | None = None,
    vline_label: str = "",
    width: int = 720,
    height: int = 340,
    value_labels: bool = True,
) -> str:
    """Grouped vertical bars: ``series`` is (name, one value per group). ``ref_value`` draws a
    dashed horizontal line (e.g. a cap); ``vline_after`` a dashed vertical line after that
    group (e.g. the cap on a histogram of counts)."""
    groups = [str(group) for group in groups]
    figure = go.Figure()
    for position, (name, values) in enumerate(series):
        shown = [value if _finite(value) else None for value in values]
        figure.add_bar(
            x=groups,
            y=shown,
            name=str(name),
            marker_color=PALETTE[position % len(PALETTE)],
            text=[_label(value) for value in shown] if value_labels else None,
            textposition="outside",
            hovertemplate=f"{name} · %{{x}}: %{{y:,.4g}}<extra></extra>",
        )
    if ref_value is not None:
        figure.add_hline(
            y=ref_value,
            line={"color": REFERENCE, "width": 3, "dash": "dash"},
            annotation_text=ref_label,
            annotation_font_color=REFERENCE,
        )
    if vline_after is not None and 0 <= vline_after < len(groups):
        figure.add_vline(
            x=vline_after + 0.5,
            line={"color": REFERENCE, "width": 3, "dash": "dash"},
            annotation_text=vline_label,
            annotation_font_color=REFERENCE,
        )
    _layout(
        figure,
        title,
        width,
        height,
        barmode="group",
        yaxis_title=y_label,
        xaxis={"type": "category"},
        showlegend=len(series) > 1,
    )
    return _html(figure)


def line_chart(
    series: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    diagonal: bool = True,
    width: int = 560,
    height: int = 420,
) -> str:
    """Lines with points (name, x values, y values); ``diagonal`` draws y = x dashed (perfect
    calibration)."""
    figure = go.Figure()
    top = 1.0
    for position, (name, xs, ys) in enumerate(series):
        points = [(x, y) for x, y in zip(xs, ys, strict=True) if _finite(x) and _finite(y)]
        top = max([top, *(max(x, y) for x, y in points)])
        figure.add_scatter(
            x=[x for x, _ in points],
            y=[y for _, y in points],
            name=str(name),
            mode="lines+markers",
            line={"color": PALETTE[position % len(PALETTE)], "width": 2.5},
            marker={"size": 9},
            hovertemplate=f"{name}: predicted %{{x:.3f}}, observed %{{y:.3f}}<extra></extra>",
        )
    if diagonal:
        figure.add_scatter(
            x=[0, top],
            y=[0, top],
            name="perfect calibration",
            mode="lines",
            line={"color": "#94a3b8", "width": 1.5, "dash": "dash"},
            hoverinfo="skip",
        )
    _layout(figure, title, width, height, xaxis_title=x_label, yaxis_title=y_label)
    return _html(figure)


def heatmap_chart(
    rows: Sequence[str],
    columns: Sequence[str],
    values: Sequence[Sequence[float]],
    *,
    title: str,
    value_label: str,
    width: int = 760,
    height: int = 240,
) -> str:
    """A grid of values (one list per row), darker = more; the value shows on hover."""
    figure = go.Figure(
        go.Heatmap(
            z=[[value if _finite(value) else None for value in row] for row in values],
            x=[str(c) for c in columns],
            y=[str(r) for r in rows],
            colorscale="Blues",
            colorbar={"title": value_label},
            hovertemplate=f"%{{y}} %{{x}}: %{{z:,.4g}} {value_label}<extra></extra>",
        )
    )
    _layout(figure, title, width, height, xaxis={"type": "category"})
    return _html(figure)


def interval_chart(
    groups: Sequence[str],
    values: Sequence[float],
    lower: Sequence[float],
    upper: Sequence[float],
    *,
    title: str,
    y_label: str,
    width: int = 720,
    height: int = 340,
) -> str:
    """Points with their intervals (error bars) per group, and a dashed line at 0."""
    points = [
        (str(g), v, v - lo, hi - v)
        for g, v, lo, hi in zip(groups, values, lower, upper, strict=True)
        if _finite(v) and _finite(lo) and _finite(hi)
    ]
    figure = go.Figure()
    figure.add_scatter(
        x=[p[0] for p in points],
        y=[p[1] for p in points],
        mode="markers",
        marker={"color": PALETTE[0], "size": 11},
        error_y={
            "type": "data",
            "symmetric": False,
            "array": [p[3] for p in points],
            "arrayminus": [p[2] for p in points],
            "color": PALETTE[0],
        },
        hovertemplate="%{x}: %{y:,.4g}<extra></extra>",
        name=y_label,
    )
    figure.add_hline(y=0, line={"color": REFERENCE, "width": 2, "dash": "dash"})
    _layout(figure, title, width, height, yaxis_title=y_label, xaxis={"type": "category"})
    return _html(figure)


def band_chart(
    series: Sequence[tuple[str, Sequence, Sequence[float], Sequence[float], Sequence[float]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    width: int = 720,
    height: int = 360,
) -> str:
    """Lines over time with a shaded interval each (name, x, value, lower, upper), and a
    dashed line at 0: an estimate that narrows as evidence accumulates."""
    figure = go.Figure()
    for position, (name, xs, values, lower, upper) in enumerate(series):
        points = [
            (x, v, lo, hi)
            for x, v, lo, hi in zip(xs, values, lower, upper, strict=True)
            if _finite(v) and _finite(lo) and _finite(hi)
        ]
        if not points:
            continue
        colour = PALETTE[position % len(PALETTE)]
        x = [p[0] for p in points]
        figure.add_scatter(  # the band: upper edge forwards, lower edge back
            x=x + x[::-1],
            y=[p[3] for p in points] + [p[2] for p in points][::-1],
            fill="toself",
            fillcolor=colour,
            opacity=0.18,
            line={"width": 0},
            hoverinfo="skip",
            showlegend=False,
        )
        figure.add_scatter(
            x=x,
            y=[p[1] for p in points],
            name=str(name),
            mode="lines+markers",
            line={"color": colour, "width": 2.5},
            marker={"size": 8},
            hovertemplate=f"{name} %{{x}}: %{{y:,.4g}}<extra></extra>",
        )
    figure.add_hline(y=0, line={"color": REFERENCE, "width": 2, "dash": "dash"})
    _layout(figure, title, width, height, xaxis_title=x_label, yaxis_title=y_label)
    return _html(figure)
