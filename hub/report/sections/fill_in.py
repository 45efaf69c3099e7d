"""The parts the institution fills in: its publications and the self-assessment checklist."""

from __future__ import annotations

from typing import Any

from hub.report.blocks import heading, para, table
from hub.report.texts import CHECKLIST, checklist_item, t

PUBLICATION_FIELDS = ("pub_title", "pub_authors", "pub_venue", "pub_date", "pub_doi")


def build(lang: str) -> dict[str, Any]:
    """The approval's `publications` (none yet) and `self_assessment` (unanswered)."""
    return {
        "publications": [],
        "self_assessment": [
            {"id": key, "item": checklist_item(key, lang), "answer": None, "note": ""}
            for key in CHECKLIST
        ],
    }


def blocks(a: dict, lang: str) -> list[tuple]:
    """Blank rows for publications; the checklist with room for an answer and a note."""
    aid = a["approval_id"]
    checklist = [[str(i + 1), c["item"], "", ""] for i, c in enumerate(a["self_assessment"])]
    return [
        heading(1, f"{t('sec_publications', lang)} ({aid})"),
        para(t("publications_intro", lang), "muted"),
        table([t(k, lang) for k in PUBLICATION_FIELDS], [], [0.3, 0.2, 0.2, 0.1, 0.2], 3),
        heading(1, f"{t('sec_checklist', lang)} ({aid})"),
        para(t("checklist_intro", lang), "muted"),
        table(
            ["#", t("sec_checklist", lang), t("answer", lang), t("note", lang)],
            checklist,
            [0.05, 0.55, 0.12, 0.28],
        ),
    ]
