"""The query-set audit: federated queries answered, those the sites' audit refused (by
rule), and the secretariat's resets of the audit with their reasons."""

from __future__ import annotations

from typing import Any

from extensions.contracts.events import FEDERATION_QUERY, QUERY_SET_AUDIT, SECRETARIAT_ACTION
from hub.platform.operations import RESET_QUERY_AUDIT
from hub.report.blocks import fmt_num, fmt_time, heading, para, table
from hub.report.query import Figures
from hub.report.tally import ApprovalTally
from hub.report.texts import rule_name, t


def build(F: Figures, tally: ApprovalTally) -> dict[str, Any]:
    """The approval's `query_audit`."""
    aid, lang, q = F.aid, F.lang, F.q
    answered = {"schema": FEDERATION_QUERY, "approval_id": aid, "data.outcome": "answered"}
    F.fig("query_audit/answered", t("qa_answered", lang), tally.answered, "queries", q(answered))
    refused_where = {
        "schema": FEDERATION_QUERY,
        "approval_id": aid,
        "data.outcome": "refused",
        "data.code": QUERY_SET_AUDIT,
    }
    refused = []
    for rule, n in sorted(tally.audit_refused.items(), key=lambda kv: (kv[0] is None, kv[0] or "")):
        refused.append({"rule": rule, "queries": n})
        F.fig(
            f"query_audit/refused/{rule or '-'}",
            f"{t('qa_refused', lang)} {rule_name(rule, lang)}",
            n,
            "queries",
            q(refused_where | {"data.audit.rule": rule}),
        )
    refused_total = sum(tally.audit_refused.values())
    F.fig(
        "query_audit/refused/total",
        t("qa_refused", lang),
        refused_total,
        "queries",
        q(refused_where),
    )
    F.fig(
        "query_audit/resets",
        t("qa_resets", lang),
        len(tally.audit_resets),
        "resets",
        q({"schema": SECRETARIAT_ACTION, "approval_id": aid, "data.action": RESET_QUERY_AUDIT}),
    )
    return {
        "answered": tally.answered,
        "refused": refused,
        "refused_total": refused_total,
        "resets": list(tally.audit_resets),
    }


def blocks(a: dict, lang: str) -> list[tuple]:
    """Queries answered and refused per rule, then the resets."""
    qa = a.get("query_audit")
    out = [
        heading(1, f"{t('sec_query_audit', lang)} ({a['approval_id']})"),
        para(t("qa_intro", lang), "muted"),
    ]
    if qa is None:  # a document made before the section existed
        return out + [para(t("none", lang), "muted")]
    out.append(
        (
            "kv",
            [
                (t("qa_answered", lang), fmt_num(qa["answered"])),
                (t("qa_refused", lang), fmt_num(qa["refused_total"])),
                (t("qa_resets", lang), fmt_num(len(qa["resets"]))),
            ],
        )
    )
    if qa["refused"]:
        rows = [[rule_name(r["rule"], lang), fmt_num(r["queries"])] for r in qa["refused"]]
        out.append(table([t("qa_rule", lang), t("qa_refused", lang)], rows, [0.7, 0.3]))
    out.append(heading(2, t("qa_resets", lang)))
    if qa["resets"]:
        rows = [[fmt_time(r["at"]), r["reason"]] for r in qa["resets"]]
        out.append(table([t("qa_reset_at", lang), t("reason", lang)], rows, [0.3, 0.7]))
    else:
        out.append(para(t("none", lang), "muted"))
    return out
