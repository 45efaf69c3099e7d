"""The blocks a report is laid out in, and how its values are spelled.

What a person reads is a list of blocks, drawn by the HTML and PDF renderers:

    ("title", text)
    ("heading", level, text)                 level 1 or 2
    ("para", text, style)                    style: normal | muted | alert | ok
    ("kv", [(label, value), ...])
    ("table", headers, rows, widths, empty)  widths: fractions of the page; empty: blank rows to fill in
    ("chart", name, monthly)                 name: a chart of hub/report/charts.py
    ("sources", headers, rows, figures)      every figure with its query
"""

from __future__ import annotations

import json
from datetime import datetime

from extensions.contracts.clock import JST


def heading(level: int, text: str) -> tuple:
    return ("heading", level, text)


def para(text: str, style: str = "normal") -> tuple:
    return ("para", text, style)


def table(headers: list[str], rows: list[list], widths: list[float], empty: int = 0) -> tuple:
    return ("table", headers, rows, widths, empty)


def fmt_time(iso: str | None) -> str:
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).astimezone(JST).strftime("%Y-%m-%d %H:%M JST")


def fmt_num(value: float | int) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    return f"{value:,}"


def fmt_bytes(n: int) -> str:
    size, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            break
        size /= 1024
    short = f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
    return f"{short} ({n:,} bytes)" if unit != "B" else short


def fmt_quota(quotas: list[dict]) -> str:
    parts = []
    for q in quotas:
        cpu = "-" if q["cpu"] is None else f"{q['cpu']:g}"
        mem = "-" if q["memory"] is None else fmt_bytes(q["memory"]).split(" (")[0]
        parts.append(f"{cpu} / {mem}")
    return ", ".join(parts) or "-"


def where_text(query: dict) -> str:
    """A figure's query in one line: its measure and conditions, event ids shortened."""
    parts = []
    for k, v in query["where"].items():
        if k == "schema":
            v = [s.rsplit("/", 1)[1] for s in v] if isinstance(v, list) else v.rsplit("/", 1)[1]
        parts.append(f"{k}={json.dumps(v, ensure_ascii=False)}")
    return f"{query['measure']} where " + ", ".join(parts)
