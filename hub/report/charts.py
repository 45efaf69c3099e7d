"""The report's charts (matplotlib, Agg) and the CJK font they and the PDF are drawn with.

Each chart is a function that draws on a matplotlib Axes, so the same drawing goes into
the HTML (as a PNG) and onto a PDF page (as vectors).
"""

from __future__ import annotations

import base64
import glob
import io
import os
from collections.abc import Callable
from functools import cache
from typing import Any

import matplotlib

matplotlib.use("Agg")

from matplotlib import font_manager  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from hub.report.request import ReportError  # noqa: E402
from hub.report.texts import t  # noqa: E402

#: Where Debian's fonts-noto-cjk puts the font (scripts/setup.sh installs it); the first
#: file that exists is used.
CJK_FONT_FILES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJKjp-Regular.otf",
)
CJK_FONT_GLOBS = ("/usr/share/fonts/**/NotoSansCJK*-Regular.*", "/usr/share/fonts/**/*CJK*.tt?")

PALETTE = ("#1f5fa6", "#e07b1a", "#2f9e44", "#c92a2a", "#7048e8", "#868e96")


class FontMissing(ReportError):
    """No CJK font to draw Japanese text with."""


@cache
def cjk_font() -> str:
    """Register the CJK font with matplotlib and return its family name."""
    candidates = [p for p in CJK_FONT_FILES if os.path.exists(p)]
    if not candidates:
        for pattern in CJK_FONT_GLOBS:
            candidates += sorted(glob.glob(pattern, recursive=True))
    if not candidates:
        raise FontMissing(
            "no CJK font for the report's Japanese text: install Debian's fonts-noto-cjk "
            "(bash scripts/setup.sh)"
        )
    path = candidates[0]
    font_manager.fontManager.addfont(path)
    return font_manager.FontProperties(fname=path).get_name()


def rc(lang: str) -> dict[str, Any]:
    """matplotlib settings for drawing the report in `lang`."""
    try:
        families = [cjk_font(), "DejaVu Sans"]  # the CJK font draws Latin text well too
    except FontMissing:
        if lang == "ja":
            raise
        families = ["DejaVu Sans"]
    return {
        "font.family": families,
        "pdf.fonttype": 3,  # Type 3 keeps ToUnicode maps: pdftotext reads the Japanese back
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.titlesize": 11,
        "axes.labelsize": 9,
        "xtick.labelsize": 8,
        "ytick.labelsize": 8,
        "legend.fontsize": 8,
    }


def _month_labels(months: list[str]) -> list[str]:
    # "2026-04" -> "26-04": twelve of them fit under a chart
    return [m[2:] for m in months]


def draw_server_hours(ax: Axes, monthly: dict, lang: str) -> None:
    months = monthly["months"]
    x = range(len(months))
    bottom = [0.0] * len(months)
    for i, (site, hours) in enumerate(sorted(monthly["server_hours"].items())):
        ax.bar(x, hours, bottom=bottom, label=site, color=PALETTE[i % len(PALETTE)])
        bottom = [b + h for b, h in zip(bottom, hours, strict=True)]
    ax.set_title(t("chart_hours", lang))
    ax.set_ylabel(t("hours", lang))
    _months_axis(ax, months)
    if monthly["server_hours"]:
        ax.legend(loc="upper left", ncols=min(5, len(monthly["server_hours"])), frameon=False)


def draw_federation(ax: Axes, monthly: dict, lang: str) -> None:
    months = monthly["months"]
    ax.bar(range(len(months)), monthly["federation_queries"], color=PALETTE[0])
    ax.set_title(t("chart_federation", lang))
    ax.set_ylabel(t("queries", lang))
    _months_axis(ax, months)


def draw_blocked(ax: Axes, monthly: dict, lang: str) -> None:
    months = monthly["months"]
    ax.bar(range(len(months)), monthly["downloads_blocked"], color=PALETTE[3])
    ax.set_title(t("chart_blocked", lang))
    ax.set_ylabel(t("count", lang))
    _months_axis(ax, months)


def _months_axis(ax: Axes, months: list[str]) -> None:
    step = max(1, len(months) // 12)
    ticks = list(range(0, len(months), step))
    ax.set_xticks(ticks, [_month_labels(months)[i] for i in ticks], rotation=45)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_xlim(-0.6, max(len(months), 1) - 0.4)


CHARTS: tuple[tuple[str, Callable[[Axes, dict, str], None]], ...] = (
    ("server_hours", draw_server_hours),
    ("federation", draw_federation),
    ("blocked", draw_blocked),
)


def png_base64(draw: Callable[[Axes, dict, str], None], monthly: dict, lang: str) -> str:
    """One chart as a base64 PNG (for <img src="data:image/png;base64,...">)."""
    with matplotlib.rc_context(rc(lang)):
        fig = Figure(figsize=(7.0, 2.6), dpi=110)
        ax = fig.add_subplot()
        draw(ax, monthly, lang)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")
