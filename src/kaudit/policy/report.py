"""Text tables and a self-contained HTML chart for simulate and diff results."""

from __future__ import annotations

import html
from typing import Any

from kaudit.policy.recommend import human_bytes


def _table(headers: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def fmt(row: list[str]) -> str:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    return [fmt(headers), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)]


def _est(flag: bool) -> str:
    return " *" if flag else ""


def simulation_text(d: dict[str, Any]) -> str:
    """``kaudit policy simulate --format table``."""
    cap, sim = d["captured"], d["simulated"]
    out = [
        f"policy:   {d['policy']}",
        f"capture:  {d['source']}: {cap['events']:,} events, {human_bytes(cap['bytes'])}",
        f"simulated: {sim['events']:,} events, {human_bytes(sim['bytes'])}"
        + (f" ({sim['bytes'] / cap['bytes']:.1%} of the capture's bytes)" if cap["bytes"] else ""),
        "",
        "by level",
    ]
    rows = [
        [
            lv,
            f"{d['events_by_level'][lv]:,}",
            human_bytes(d["bytes_by_level"][lv]) + _est(d["estimated_by_level"][lv]),
        ]
        for lv in d["events_by_level"]
    ]
    out += _table(["level", "events", "bytes"], rows, {1, 2})
    out += ["", "by rule"]
    rows = [
        [r, f"{d['events_by_rule'][r]:,}", human_bytes(d["bytes_by_rule"][r])]
        for r in d["events_by_rule"]
    ]
    out += _table(["rule", "events", "bytes"], rows, {1, 2})
    out += ["", "by day (UTC)"]
    rows = [
        [day, f"{t['events']:,}", human_bytes(t["bytes"]) + _est(t["estimated"])]
        for day, t in d["by_day"].items()
    ]
    out += _table(["day", "events", "bytes"], rows, {1, 2})
    for key, title in (("top_users", "user"), ("top_resources", "resource"), ("top_verbs", "verb")):
        out += ["", f"top {title}s"]
        rows = [
            [t["name"], f"{t['events']:,}", human_bytes(t["bytes"]) + _est(t["estimated"])]
            for t in d[key]
        ]
        out += _table([title, "events", "bytes"], rows, {1, 2})
    out += ["", "largest changes against the capture (per request class)"]
    rows = []
    for c in d["changes"]:
        rows.append(
            [
                c["class"],
                "/".join(c["captured_levels"]),
                "/".join(c["levels"]) or "dropped",
                f"{c['delta_events']:+,}",
                ("+" if c["delta_bytes"] >= 0 else "-")
                + human_bytes(abs(c["delta_bytes"]))
                + _est(c["estimated"]),
                ", ".join(c["rules"]),
            ]
        )
    out += _table(["class", "captured", "simulated", "events", "bytes", "rules"], rows, {3, 4})
    dropped = d["dropped"]
    out += [
        "",
        f"dropped: {dropped['level_none']:,} events at level None, "
        f"{dropped['omitted_stage']:,} in omitted stages",
    ]
    above = d["above_capture"]["events"]
    if above:
        out.append(
            f"above the capture: {above:,} events: the policy asks for a higher level than "
            "was captured; bodies never recorded are estimated where they would exist (marked *)"
        )
    rr = d["added_request_received"]
    if rr["events"]:
        out.append(
            f"added: {rr['events']:,} RequestReceived events ({human_bytes(rr['bytes'])}, "
            "estimated *) that the capture omitted but the policy logs"
        )
    if d["estimated"]:
        out.append("* estimated: includes bodies or stages the capture did not record")
    return "\n".join(out)


def diff_text(d: dict[str, Any]) -> str:
    """``kaudit policy diff --format table``."""
    old, new = d["old"], d["new"]
    out = [
        f"old: {d['old_policy']}: {old['events']:,} events, {human_bytes(old['bytes'])}",
        f"new: {d['new_policy']}: {new['events']:,} events, {human_bytes(new['bytes'])}",
        f"capture: {d['source']}",
        f"delta: {d['delta_events']:+,} events, "
        + ("+" if d["delta_bytes"] >= 0 else "-")
        + human_bytes(abs(d["delta_bytes"])),
        "",
    ]
    rows = []
    for c in d["changes"]:
        rows.append(
            [
                c["user_class"],
                c["resource"],
                c["verb"],
                "/".join(c["old_levels"]) + " " + ",".join(c["old_rules"]),
                "/".join(c["new_levels"]) + " " + ",".join(c["new_rules"]),
                f"{c['delta_events']:+,}",
                ("+" if c["delta_bytes"] >= 0 else "-")
                + human_bytes(abs(c["delta_bytes"]))
                + _est(c["new"]["estimated"] or c["old"]["estimated"]),
            ]
        )
    out += _table(
        ["who", "resource", "verb", "old (rules)", "new (rules)", "events", "bytes"],
        rows,
        {5, 6},
    )
    out.append(f"\n{d['unchanged_classes']:,} request classes unchanged")
    return "\n".join(out)


_COLORS = {
    "Metadata": "#4e79a7",
    "Request": "#f28e2b",
    "RequestResponse": "#e15759",
    "captured": "#bab0ac",
}


def _bars(title: str, items: list[tuple[str, float, str]], unit: str) -> str:
    """A horizontal bar chart as inline SVG."""
    width, label_w, row_h = 760, 220, 22
    height = 30 + row_h * max(1, len(items))
    top = max((v for _, v, _ in items), default=0) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{html.escape(title)}">',
        f'<text x="0" y="16" font-weight="bold">{html.escape(title)}</text>',
    ]
    for i, (label, value, color) in enumerate(items):
        y = 26 + i * row_h
        w = (width - label_w - 110) * value / top
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{html.escape(label)}</text>'
            f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{row_h - 6}" '
            f'fill="{color}"><title>{html.escape(label)}: {value:,.0f} {unit}</title></rect>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 14}">'
            f"{html.escape(human_bytes(value) if unit == 'bytes' else f'{value:,.0f}')}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def chart_html(d: dict[str, Any]) -> str:
    """A self-contained HTML page (inline SVG, no scripts, no network) of a simulation."""
    levels = [
        (lv, float(d["bytes_by_level"][lv]), _COLORS.get(lv, "#76b7b2"))
        for lv in d["bytes_by_level"]
    ]
    levels.append(("captured (all levels)", float(d["captured"]["bytes"]), _COLORS["captured"]))
    rules = [(r, float(b), "#59a14f") for r, b in d["bytes_by_rule"].items()]
    rule_events = [(r, float(n), "#edc948") for r, n in d["events_by_rule"].items()]
    days = [(day, float(t["bytes"]), "#4e79a7") for day, t in d["by_day"].items()]
    title = f"kaudit policy simulate: {d['policy']}"
    body = "".join(
        f"<section>{svg}</section>"
        for svg in (
            _bars("Bytes by level", levels, "bytes"),
            _bars("Bytes by rule", rules, "bytes"),
            _bars("Events by rule", rule_events, "events"),
            _bars("Bytes by day (UTC)", days, "bytes"),
        )
    )
    note = (
        "<p>Some figures include estimates for bodies or stages the capture did not record.</p>"
        if d["estimated"]
        else ""
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font:13px system-ui,sans-serif;margin:24px}"
        "section{margin:18px 0}svg text{font:12px system-ui,sans-serif}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>"
        f"<p>Capture: {html.escape(d['source'])}: {d['captured']['events']:,} events, "
        f"{html.escape(human_bytes(d['captured']['bytes']))}. Simulated: "
        f"{d['simulated']['events']:,} events, "
        f"{html.escape(human_bytes(d['simulated']['bytes']))}.</p>{note}{body}"
        "</body></html>\n"
    )


__all__ = ["chart_html", "diff_text", "simulation_text"]
