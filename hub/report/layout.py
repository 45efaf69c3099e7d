"""The report laid out as a person reads it: a list of blocks (hub/report/blocks.py) that
the HTML and PDF renderers draw.

The document's head, then each approval's parts in reading order (hub/report/sections/),
the notes, the counting rules, and where each figure comes from.
"""

from __future__ import annotations

from typing import Any

from hub.report.blocks import fmt_num, fmt_time, heading, para, where_text
from hub.report.sections import READING_ORDER
from hub.report.texts import rule, t

#: the counting rules, in the order the report states them
RULES = (
    "window",
    "sessions",
    "server-hours",
    "cpu-hours",
    "egress-ledger",
    "query-audit",
    "attribution",
)


def blocks(doc: dict[str, Any]) -> list[tuple]:
    """Every block of the report, in reading order."""
    r = doc["report"]
    lang = r["lang"]
    out = _head(doc)
    for a in doc["approvals"]:
        out += approval_blocks(a, lang)
    if doc["notes"]:
        out.append(heading(1, "Notes"))
        out += [para(n, "muted") for n in doc["notes"]]
    out.append(heading(1, t("sec_rules", lang)))
    out += [para(rule(key, lang)) for key in RULES]
    for a in doc["approvals"]:
        out += source_blocks(a, lang)
    return out


def _head(doc: dict[str, Any]) -> list[tuple]:
    """The title, what the report covers, and whether it is provisional, verified, empty."""
    r = doc["report"]
    lang = r["lang"]
    scope = r["scope"]
    scope_text = scope.get("approval_id") or scope.get("institution") or t("scope_all", lang)
    out: list[tuple] = [
        ("title", r["title"]),
        (
            "kv",
            [
                (t("platform", lang), t("platform_name", lang)),
                (t("covers", lang), f"{r['label']} ({t('japan_time', lang)})"),
                (t("scope", lang), scope_text),
                (t("generated", lang), fmt_time(r["generated_at"])),
            ],
        ),
    ]
    if r["provisional"]:
        out.append(para(t("provisional", lang, now=fmt_time(r["generated_at"])), "alert"))
    out.append(para(f"{t('sec_audit', lang)}: {_audit_line(doc['audit_chain'], lang)}", "ok"))
    if not r["activity"]:
        out.append(para(t("no_activity", lang), "alert"))
    if not doc["approvals"]:
        out.append(para(t("no_approvals", lang), "alert"))
    return out


def _audit_line(chain: dict, lang: str) -> str:
    if not chain["records_in_period"]:
        return t("audit_ok_empty", lang)
    return t(
        "audit_ok",
        lang,
        records=f"{chain['records_in_period']:,}",
        first=chain["first_seq_in_period"],
        last=chain["last_seq_in_period"],
    )


def approval_blocks(a: dict, lang: str) -> list[tuple]:
    """One approval's parts in reading order."""
    return [block for part in READING_ORDER for block in part.blocks(a, lang)]


def source_blocks(a: dict, lang: str) -> list[tuple]:
    """Each figure (but the monthly points) with its value and its query."""
    rows = [
        [f["id"].split("/", 1)[1], fmt_num(f["value"]), where_text(f["query"])]
        for f in a["figures"]
        if "query" in f and not f["id"].split("/", 2)[1].startswith("monthly")
    ]
    return [
        heading(1, f"{t('sec_sources', lang)} ({a['approval_id']})"),
        para(t("sources_intro", lang), "muted"),
        (
            "sources",
            [t("figure", lang), t("value", lang), t("query", lang), t("recheck", lang)],
            rows,
            a["figures"],
        ),
    ]
