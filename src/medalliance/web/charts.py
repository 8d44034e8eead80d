"""Small server-side SVG charts: a sparkline per result item or reading series, and a
trend chart. No script needed, so the chart sections work as plain HTMX fragments."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup


@dataclass(frozen=True, slots=True)
class Point:
    value: float
    flagged: bool = False  # abnormal (H, L, A …): drawn in red
    label: str = ""  # tooltip: date, value, member


def _scale(values: Sequence[float], size: float, pad: float) -> list[float]:
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    # Higher values go up: SVG y grows downwards.
    return [pad + (size - 2 * pad) * (1 - (v - low) / span) for v in values]


def _dots(
    xs: Sequence[float], ys: Sequence[float], points: Sequence[Point], radius: float
) -> Markup:
    """A dot per point with its tooltip; flagged ones get the class the CSS colours red."""
    circle = Markup('<circle cx="{:.1f}" cy="{:.1f}" r="{}" class="{}"><title>{}</title></circle>')
    return Markup("").join(
        circle.format(x, y, radius, "abnormal" if p.flagged else "", p.label)
        for x, y, p in zip(xs, ys, points, strict=True)
    )


def sparkline(points: Sequence[Point], *, width: int = 120, height: int = 28) -> Markup:
    """A line through the points (oldest first); empty for fewer than two."""
    if len(points) < 2:
        return Markup("")
    pad = 3.0
    step = (width - 2 * pad) / (len(points) - 1)
    xs = [pad + i * step for i in range(len(points))]
    ys = _scale([p.value for p in points], height, pad)
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
    dots = _dots(xs, ys, points, radius=2)
    return Markup(
        '<svg class="sparkline" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img">'
        '<polyline points="{line}"/>{dots}</svg>'
    ).format(w=width, h=height, line=line, dots=dots)


def trend_chart(
    points: Sequence[Point], *, width: int = 640, height: int = 200, label: str = ""
) -> Markup:
    """A larger line chart with the lowest and highest value on the axis."""
    if not points:
        return Markup("")
    pad_left, pad = 48.0, 12.0
    values = [p.value for p in points]
    n = len(points)
    step = (width - pad_left - pad) / max(n - 1, 1)
    xs = [pad_left + i * step for i in range(n)]
    ys = _scale(values, height, pad)
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
    dots = _dots(xs, ys, points, radius=3.5)
    low, high = min(values), max(values)
    return Markup(
        '<svg class="sparkline trend-chart" width="100%" viewBox="0 0 {w} {h}" role="img" '
        'aria-label="{label}">'
        '<text x="{tx}" y="{top}" text-anchor="end">{high:g}</text>'
        '<text x="{tx}" y="{bottom}" text-anchor="end">{low:g}</text>'
        '<line x1="{ax}" y1="{pad}" x2="{ax}" y2="{axis_end}"/>'
        '<polyline points="{line}"/>{dots}</svg>'
    ).format(
        w=width,
        h=height,
        label=label,
        tx=pad_left - 6,
        top=pad + 4,
        bottom=height - pad + 4,
        high=high,
        low=low,
        ax=pad_left,
        pad=pad,
        axis_end=height - pad,
        line=line,
        dots=dots,
    )
