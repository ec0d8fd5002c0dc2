"""Small SVG charts rendered on the server: stacked bars over time, horizontal bars.

Colours come from CSS classes (``s0`` … ``s7``) in ``static/ui.css``; every chart has
a ``<title>`` per bar for a tooltip and is paired with a table in the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any, Final

from markupsafe import Markup

WIDTH: Final = 720
HEIGHT: Final = 180
PAD_LEFT: Final = 48
PAD_BOTTOM: Final = 22


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    mag = 10 ** (len(str(int(v))) - 1)
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * mag:
            return float(m * mag)
    return float(10 * mag)


def _fmt(n: float) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:g}M"
    if n >= 1000:
        return f"{n / 1000:g}k"
    return f"{n:g}"


def stacked_bars(buckets: Sequence[dict[str, Any]], series: Sequence[str], *, label: str) -> Markup:
    """``buckets`` = [{"start": iso, "counts": {series: n}}]: one stacked bar each."""
    n = max(len(buckets), 1)
    plot_w = WIDTH - PAD_LEFT - 4
    plot_h = HEIGHT - PAD_BOTTOM - 6
    totals = [sum(b["counts"].get(s, 0) for s in series) for b in buckets]
    top = _nice_max(max(totals, default=0))
    bw = plot_w / n
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(label)}" preserveAspectRatio="none">'
    ]
    for frac in (0, 0.5, 1):
        y = 6 + plot_h * (1 - frac)
        parts.append(
            f'<line class="grid" x1="{PAD_LEFT}" x2="{WIDTH - 4}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{PAD_LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_fmt(top * frac)}</text>"
        )
    for i, b in enumerate(buckets):
        x = PAD_LEFT + i * bw
        y = 6 + plot_h
        for k, s in enumerate(series):
            c = b["counts"].get(s, 0)
            if not c:
                continue
            h = plot_h * c / top
            y -= h
            parts.append(
                f'<rect class="s{k % 8}" x="{x + 0.5:.1f}" y="{y:.1f}" '
                f'width="{max(bw - 1, 0.5):.1f}" height="{h:.1f}">'
                f"<title>{escape(b['start'])} {escape(s)}: {c}</title></rect>"
            )
    ticks = ((0, "start"), (n // 2, "middle"), (n - 1, "end")) if buckets else ()
    for i, anchor in ticks:
        x = PAD_LEFT + i * bw + (bw if anchor == "end" else 0)
        parts.append(
            f'<text class="axis" x="{x:.1f}" y="{HEIGHT - 6}" text-anchor="{anchor}">'
            f"{escape(buckets[i]['start'][5:16].replace('T', ' '))}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def legend(series: Sequence[str]) -> Markup:
    items = "".join(
        f'<li><span class="swatch s{k % 8}" aria-hidden="true"></span>{escape(s)}</li>'
        for k, s in enumerate(series)
    )
    return Markup(f'<ul class="legend">{items}</ul>')


def hbars(items: Sequence[tuple[str, float]], *, label: str, klass: str = "s0") -> Markup:
    """Horizontal bars (a distribution): one row per (name, value)."""
    row_h = 20
    h = row_h * max(len(items), 1) + 4
    top = max((v for _, v in items), default=0) or 1
    label_w = 90
    parts = [
        f'<svg class="chart hbars" viewBox="0 0 {WIDTH} {h}" role="img" '
        f'aria-label="{escape(label)}">'
    ]
    for i, (name, v) in enumerate(items):
        y = 2 + i * row_h
        w = (WIDTH - label_w - 80) * v / top
        parts.append(
            f'<text class="axis" x="{label_w - 6}" y="{y + 14}" text-anchor="end">'
            f"{escape(name)}</text>"
            f'<rect class="{klass}" x="{label_w}" y="{y + 2}" width="{max(w, 0):.1f}" '
            f'height="{row_h - 6}"><title>{escape(name)}: {v:g}</title></rect>'
            f'<text class="axis" x="{label_w + w + 6:.1f}" y="{y + 14}">{_fmt(v)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


__all__ = ["hbars", "legend", "stacked_bars"]
