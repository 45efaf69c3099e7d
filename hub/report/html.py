"""The report as one HTML page: the blocks of hub/report/layout.py, charts as embedded PNG."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from hub.report.blocks import fmt_num, where_text
from hub.report.layout import blocks

CSS = """
body{font-family:"Noto Sans CJK JP","Noto Sans JP","Hiragino Sans",sans-serif;max-width:60rem;
margin:2rem auto;padding:0 1rem;color:#111;line-height:1.5}
h1{font-size:1.6rem}h2{border-bottom:1px solid #123;margin-top:2rem;font-size:1.25rem}
h3{font-size:1.05rem;margin-top:1.2rem}
table{border-collapse:collapse;margin:.4rem 0;width:100%}
th,td{border-bottom:1px solid #ccc;padding:.2rem .4rem;text-align:left;vertical-align:top}
th{border-bottom:2px solid #333}table.kv th{width:30%;border-bottom:1px solid #ccc}
td.fill{height:1.6rem}.muted{color:#555}.alert{color:#a61e1e;font-weight:bold}
.ok{color:#1b5e20}img{max-width:100%}code{font-size:.75rem;word-break:break-all}
details{margin:.5rem 0}
"""

e = html.escape


def render_html(doc: dict[str, Any]) -> bytes:
    lang = doc["report"]["lang"]
    parts = [
        f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{e(doc['report']['title'])}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
    ]
    for block in blocks(doc):
        parts.append(_DRAW[block[0]](block, lang))
    parts.append("</body>\n</html>\n")
    return "".join(parts).encode()


def _title(block: tuple, lang: str) -> str:
    return f"<h1>{e(block[1])}</h1>\n"


def _heading(block: tuple, lang: str) -> str:
    return f"<h{block[1] + 1}>{e(block[2])}</h{block[1] + 1}>\n"


def _para(block: tuple, lang: str) -> str:
    return f'<p class="{block[2]}">{e(block[1])}</p>\n'


def _kv(block: tuple, lang: str) -> str:
    rows = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in block[1])
    return f'<table class="kv">{rows}</table>\n'


def _table(block: tuple, lang: str) -> str:
    _, headers, rows, _widths, empty = block
    head = "".join(f"<th>{e(h)}</th>" for h in headers) if any(headers) else ""
    body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    body += ("<tr>" + '<td class="fill"></td>' * len(headers) + "</tr>") * empty
    return f"<table><tr>{head}</tr>{body}</table>\n" if head else f"<table>{body}</table>\n"


def _chart(block: tuple, lang: str) -> str:
    from hub.report.charts import CHARTS, png_base64  # matplotlib only when drawing

    img = png_base64(dict(CHARTS)[block[1]], block[2], lang)
    return f'<p><img alt="{e(block[1])}" src="data:image/png;base64,{img}"></p>\n'


def _sources(block: tuple, lang: str) -> str:
    """Every figure with its label, value, query and the line that re-runs it, folded."""
    _, headers, _rows, figures = block
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join(
        f"<tr><td>{e(f['id'].split('/', 1)[1])}<br>"
        f'<span class="muted">{e(f["label"])}</span></td>'
        f"<td>{e(fmt_num(f['value']))}</td>"
        f"<td>{e(where_text(f['query']) if 'query' in f else f['source'])}</td>"
        f"<td><code>{e(f.get('recheck', ''))}</code></td></tr>"
        for f in figures
    )
    return (
        f"<details><summary>{len(figures)} {e(headers[0])}</summary>"
        f"<table><tr>{head}</tr>{body}</table>"
        "</details>\n"
    )


_DRAW: dict[str, Callable[[tuple, str], str]] = {
    "title": _title,
    "heading": _heading,
    "para": _para,
    "kv": _kv,
    "table": _table,
    "chart": _chart,
    "sources": _sources,
}
