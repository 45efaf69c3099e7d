"""The report document (hub/report/build.py) in four formats: JSON, CSV, HTML and PDF.

What a person reads is laid out once, as a list of blocks (hub/report/layout.py), and
drawn by two renderers: HTML (hub/report/html.py, charts as embedded PNG) and PDF
(hub/report/pdf.py, matplotlib pages, the charts as vectors). JSON is the document
itself; CSV is its figures, one a row, with their queries (hub/report/data_formats.py).
Everything is rendered in memory first and written only when every format succeeded.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from hub.report.data_formats import render_csv, render_json
from hub.report.html import render_html
from hub.report.layout import blocks

__all__ = [
    "FORMATS",
    "blocks",
    "file_stem",
    "render_csv",
    "render_html",
    "render_json",
    "render_pdf",
    "write_report",
]

FORMATS = ("html", "pdf", "csv", "json")


def render_pdf(doc: dict[str, Any]) -> bytes:
    from hub.report import pdf  # matplotlib's PDF backend only when a PDF is asked for

    return pdf.render_pdf(doc)


RENDERERS = {"json": render_json, "csv": render_csv, "html": render_html, "pdf": render_pdf}


def file_stem(doc: dict[str, Any]) -> str:
    r = doc["report"]
    tag = f"FY{r['fiscal_year']}" if r["kind"] == "annual" else "final"
    scope = r["scope"]
    if "approval_id" in scope:
        name = scope["approval_id"]
    elif "institution" in scope:
        slug = re.sub(r"[^A-Za-z0-9]+", "-", scope["institution"]).strip("-")[:60]
        digest = hashlib.sha256(scope["institution"].encode()).hexdigest()[:8]
        name = slug or f"institution-{digest}"
    else:
        name = "all"
    return f"usage-report-{tag}-{name}-{r['lang']}"


def write_report(doc: dict[str, Any], formats: list[str], out_dir: str | os.PathLike) -> list[Path]:
    """Render every format in memory, then write them to `out_dir` (created if missing)."""
    rendered = {fmt: RENDERERS[fmt](doc) for fmt in formats}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    stem = file_stem(doc)
    for fmt, content in rendered.items():
        path = out / f"{stem}.{fmt}"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(content)
        os.replace(tmp, path)
        paths.append(path)
    return paths
