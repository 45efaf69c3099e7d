"""The report as PDF: a small page layout on matplotlib figures, written with PdfPages (A4
pages of headings, wrapped paragraphs, tables and charts, in the CJK font of
hub/report/charts.py), and `render_pdf`, which draws the blocks of hub/report/layout.py
on it, the charts as vectors."""

from __future__ import annotations

import io
import unicodedata
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from hub.report.layout import blocks

WIDTH, HEIGHT = 8.27, 11.69  # A4 portrait, inches
MARGIN = 0.65
FOOT = 0.45
LINE = 1.45  # line height, in font sizes


def char_width(c: str) -> float:
    """A character's advance in ems (an estimate good enough to wrap lines)."""
    if unicodedata.east_asian_width(c) in ("W", "F"):
        return 1.0
    if c in "il.,:;'|!()[] ":
        return 0.3
    if c.isupper() or c in "mwMW@%":
        return 0.72
    return 0.56


def wrap(text: str, width_in: float, size: float) -> list[str]:
    """`text` in lines no wider than `width_in` inches at `size` points (breaks at spaces in
    Latin text, anywhere between CJK characters)."""
    limit = width_in * 72 / size  # ems
    lines: list[str] = []
    for paragraph in str(text).split("\n"):
        line, used = "", 0.0
        word, word_w = "", 0.0

        def flush_word():
            nonlocal line, used, word, word_w
            if used + word_w > limit and line:
                lines.append(line.rstrip())
                line, used = word.lstrip(), word_w
            else:
                line, used = line + word, used + word_w
            word, word_w = "", 0.0

        for c in paragraph:
            w = char_width(c)
            if unicodedata.east_asian_width(c) in ("W", "F"):
                flush_word()
                word, word_w = c, w
                flush_word()
            elif c == " ":
                flush_word()
                word, word_w = c, w
            else:
                word, word_w = word + c, word_w + w
                if word_w > limit:  # one word longer than the line: cut it
                    lines.append((line + word[:-1]).rstrip())
                    line, used, word, word_w = "", 0.0, c, w
        flush_word()
        lines.append(line.rstrip())
    return lines


class PdfLayout:
    """Writes top to bottom, starting a new page when the next block does not fit. Use it
    inside matplotlib.rc_context(charts.rc(lang)): text takes its font when it is made."""

    def __init__(self, pdf: PdfPages, footer: str):
        self.pdf = pdf
        self.footer = footer
        self.fig: Figure | None = None
        self.page = 0
        self.y = 0.0

    @property
    def text_width(self) -> float:
        return WIDTH - 2 * MARGIN

    def new_page(self) -> None:
        self._finish()
        self.fig = Figure(figsize=(WIDTH, HEIGHT))
        self.page += 1
        self.y = HEIGHT - MARGIN

    def _finish(self) -> None:
        if self.fig is None:
            return
        self.fig.text(
            MARGIN / WIDTH, FOOT / HEIGHT, self.footer, fontsize=7, color="#666", va="bottom"
        )
        self.fig.text(
            (WIDTH - MARGIN) / WIDTH,
            FOOT / HEIGHT,
            str(self.page),
            fontsize=7,
            color="#666",
            ha="right",
            va="bottom",
        )
        self.pdf.savefig(self.fig)
        self.fig = None

    def close(self) -> None:
        self._finish()

    def need(self, height: float) -> None:
        if self.fig is None or self.y - height < MARGIN + FOOT:
            self.new_page()

    def _text(self, x: float, s: str, size: float, **kwargs) -> None:
        self.fig.text(x / WIDTH, self.y / HEIGHT, s, fontsize=size, va="top", **kwargs)

    def space(self, inches: float) -> None:
        self.y -= inches

    def heading(self, s: str, level: int = 1) -> None:
        size = {0: 17, 1: 14, 2: 11.5}[level]
        lh = size * LINE / 72
        self.need(lh * 3)  # keep a heading with what follows it
        if level < 2 and self.y < HEIGHT - MARGIN - 0.01:
            self.space(0.12)
        for line in wrap(s, self.text_width, size):
            self._text(MARGIN, line, size, weight="bold", color="#123")
            self.y -= lh
        if level == 1:
            self.fig.add_artist(
                Line2D(
                    [MARGIN / WIDTH, (WIDTH - MARGIN) / WIDTH],
                    [(self.y + 0.05) / HEIGHT] * 2,
                    color="#123",
                    linewidth=0.6,
                )
            )
        self.space(0.05)

    def para(self, s: str, size: float = 9, color: str = "#000", indent: float = 0) -> None:
        lh = size * LINE / 72
        for line in wrap(s, self.text_width - indent, size):
            self.need(lh)
            self._text(MARGIN + indent, line, size, color=color)
            self.y -= lh
        self.space(0.04)

    def table(
        self,
        headers: Sequence[str],
        rows: Sequence[Sequence[Any]],
        widths: Sequence[float],
        size: float = 8.5,
        empty_rows: int = 0,
    ) -> None:
        """Columns of `widths` (fractions of the text width); cells wrap; the header row
        is repeated on a new page."""
        lh = size * LINE / 72
        cols = [w * self.text_width for w in widths]
        xs = [MARGIN + sum(cols[:i]) for i in range(len(cols))]

        def draw_row(cells, bold=False, boxed=False):
            wrapped = [wrap(str(c), cols[i] - 0.08, size) for i, c in enumerate(cells)]
            height = max(1, max(len(w) for w in wrapped)) * lh + 0.04
            if self.fig is None or self.y - height < MARGIN + FOOT:
                self.new_page()
                if not bold and any(headers):
                    draw_row(headers, bold=True)
            top = self.y
            for i, lines in enumerate(wrapped):
                for j, line in enumerate(lines):
                    self.fig.text(
                        (xs[i] + 0.04) / WIDTH,
                        (top - 0.02 - j * lh) / HEIGHT,
                        line,
                        fontsize=size,
                        va="top",
                        weight="bold" if bold else "normal",
                    )
            self.y -= height
            self.fig.add_artist(
                Line2D(
                    [MARGIN / WIDTH, (WIDTH - MARGIN) / WIDTH],
                    [self.y / HEIGHT] * 2,
                    color="#333" if bold else "#bbb",
                    linewidth=0.6 if bold else 0.3,
                )
            )

        self.need(lh * 3)
        if any(headers):
            draw_row(headers, bold=True)
        for row in rows:
            draw_row(row)
        for _ in range(empty_rows):  # blank lines to fill in
            draw_row([""] * len(headers))
            self.y -= lh
        self.space(0.1)

    def chart(
        self, draw: Callable[[Axes, dict, str], None], monthly: dict, lang: str, height=2.5
    ) -> None:
        self.need(height)
        ax = self.fig.add_axes(
            (
                (MARGIN + 0.55) / WIDTH,
                (self.y - height + 0.5) / HEIGHT,
                (self.text_width - 0.7) / WIDTH,
                (height - 0.85) / HEIGHT,
            )
        )
        draw(ax, monthly, lang)
        self.y -= height


# ---------------------------------------------------------------------------
# the report


PARA_COLORS = {"alert": "#a61e1e", "ok": "#1b5e20", "muted": "#555"}


def render_pdf(doc: dict[str, Any]) -> bytes:
    import matplotlib

    from hub.report.charts import CHARTS, rc

    draw = dict(CHARTS)
    r = doc["report"]
    lang = r["lang"]
    buf = io.BytesIO()
    with matplotlib.rc_context(rc(lang)), PdfPages(buf, metadata=_pdf_metadata(doc)) as pdf:
        page = PdfLayout(pdf, f"{r['title']} — {r['label']}")
        for block in blocks(doc):
            kind = block[0]
            if kind == "title":
                page.heading(block[1], level=0)
            elif kind == "heading":
                page.heading(block[2], level=block[1])
            elif kind == "para":
                page.para(block[1], color=PARA_COLORS.get(block[2], "#000"))
            elif kind == "kv":
                page.table(["", ""], [[k, v] for k, v in block[1]], [0.35, 0.65])
            elif kind == "table":
                _, headers, rows, widths, empty = block
                page.table(headers, rows, widths, empty_rows=empty)
            elif kind == "chart":
                page.chart(draw[block[1]], block[2], lang)
            elif kind == "sources":
                _, headers, rows, _figures = block
                page.table(headers[:3], rows, [0.32, 0.12, 0.56], size=6.5)
        page.close()
    return buf.getvalue()


def _pdf_metadata(doc: dict[str, Any]) -> dict[str, Any]:
    r = doc["report"]
    return {
        "Title": r["title"],
        "Subject": r["label"],
        "Creator": "visiting report",
        # the same document for the same log: no wall-clock date in the file
        "CreationDate": datetime.fromisoformat(r["generated_at"]),
    }
