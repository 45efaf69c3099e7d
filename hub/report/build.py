"""A usage report as data: the approvals in scope, their figures, and the query behind each.

The approval registry says who, what and when (institution, purpose, period,
handlers and their changes, datasets, suspensions); the audit store says what
happened. Before anything is counted the audit chain of the period must
verify; then the events of the period are read once, in seq order, and each
is added to the tally of the approval it belongs to (hub/report/tally.py). Each
approval's section is then made part by part (hub/report/sections/).

The result is one JSON-able document (`build_report`); the HTML, PDF and CSV
formats are drawn from it (hub/report/render.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from extensions.contracts.clock import JST, Clock, as_utc
from extensions.contracts.events import (
    ENFORCEMENT_STOP,
    SECRETARIAT_ACTION,
    SERVER_START,
    SERVER_STOP,
    SITE_ADMIN_ACTION,
)
from hub.platform.policy import Quota
from hub.report import sections
from hub.report.query import Figures
from hub.report.request import ReportError, ReportRequest, Window, iso, month_starts, report_window
from hub.report.tally import EXPORT_SCHEMAS, ApprovalTally, QuotaHistory
from hub.report.texts import t
from hub.store.audit import AuditStore
from hub.store.registry import ApprovalRegistry, ApprovalView

__all__ = ["ReportError", "ReportRequest", "build_report"]


@dataclass
class Period:
    """What the report counts over: the window, the chain verified up to `until_seq`, the
    months, and each candidate approval's tally and changes."""

    window: Window
    now: datetime
    until_seq: int
    months: list[datetime]
    dataset_site: dict[str, str]
    tallies: dict[str, ApprovalTally]
    changes: dict[str, list[dict]]
    quotas: QuotaHistory | None = None
    # the pass over the period's events
    late: int = 0  # stored after the chain was verified: not counted
    in_period: int = 0
    first_seq: int | None = None
    last_seq: int | None = None

    @property
    def bound(self) -> datetime:
        """Where a session still open ends: the period's end, or now when earlier."""
        return min(self.window.until, max(self.now, self.window.since))


def build_report(
    registry: ApprovalRegistry,
    audit: AuditStore,
    request: ReportRequest,
    clock: Clock | None = None,
) -> dict[str, Any]:
    """The report as a JSON-able document. ReportError when it cannot be produced (unknown
    approval or institution, a final report before the end, an audit chain that does not
    verify for the period)."""
    request.check()
    now = as_utc((clock or registry.clock).now())
    window, candidates = report_window(request, registry, now)
    verified = audit.verify(until=window.until)
    if not verified.ok:  # what is counted must be what was verified
        raise ReportError(
            f"the audit chain for {window.label} does not verify: {verified.reason}; "
            "no report was written"
        )
    period = _tallies(registry, window, candidates, now, verified.last_seq or 0)
    _count_period(audit, period)
    _carry_in(audit, period)
    period.quotas = _quota_history(registry, audit, period)
    approvals = []
    for view in candidates:
        tally = period.tallies[view.approval_id]
        if window.overlap(view) is None and not tally.active and not request.approval_id:
            continue
        approvals.append(approval_section(registry, view, period, request.lang))
    return _document(request, period, verified, approvals)


def _tallies(
    registry: ApprovalRegistry,
    window: Window,
    candidates: list[ApprovalView],
    now: datetime,
    until_seq: int,
) -> Period:
    """An empty tally per candidate approval, over its handlers and sites in the window."""
    months = month_starts(window.since, window.until)
    month_iso = [iso(m) for m in months]
    dataset_site = {d: s["id"] for s in registry.sites() for d in s["datasets"]}
    period = Period(window, now, until_seq, months, dataset_site, {}, {})
    for view in candidates:
        handlers, datasets, changes = sections.approval.handler_history(registry, view, window)
        sites = {dataset_site[d] for d in datasets if d in dataset_site} | set(view.sites)
        period.tallies[view.approval_id] = ApprovalTally(view, handlers, sites, month_iso)
        period.changes[view.approval_id] = changes
    return period


def _count_period(audit: AuditStore, period: Period) -> None:
    """The one pass over the period's events: each to the tally of its approval, and an
    enforcement stop or a secretariat action without one to each approval of the person."""
    by_user: dict[str, list[ApprovalTally]] = defaultdict(list)
    for tally in period.tallies.values():
        for h in tally.handlers:
            by_user[h].append(tally)
    for r in audit.events(since=period.window.since, until=period.window.until):
        if r["seq"] > period.until_seq:
            period.late += 1  # stored after the chain was verified
            continue
        period.in_period += 1
        seq = r["seq"]
        period.first_seq = seq if period.first_seq is None else min(period.first_seq, seq)
        period.last_seq = seq if period.last_seq is None else max(period.last_seq, seq)
        aid = r["approval_id"]
        if aid is not None:
            tally = period.tallies.get(aid)
            if tally is not None:
                tally.add(r)
        elif r["schema"] in (ENFORCEMENT_STOP, SECRETARIAT_ACTION):
            for tally in by_user.get(r["user"], ()):
                tally.add_unattributed(r)
        elif r["schema"] in EXPORT_SCHEMAS:  # the requester's approvals at the request's site
            for tally in by_user.get(r["user"], ()):
                tally.add_export(r)


def _carry_in(audit: AuditStore, period: Period) -> None:
    """Servers already running when the period starts: the latest marker before it, per
    handler and site."""
    for tally in period.tallies.values():
        latest: dict[tuple[str, str], dict] = {}
        for r in _markers_before(audit, tally, period.window.since, period.until_seq):
            key = (r["user"], r["site"])
            if key not in latest or r["time"] > latest[key]["time"]:
                latest[key] = r
        for r in latest.values():
            tally.carry_in(r)


def _markers_before(
    audit: AuditStore, tally: ApprovalTally, since: datetime, until_seq: int
) -> Iterator[dict]:
    """The approval's server starts and stops before `since`, then the enforcer's stops of
    its handlers at its sites (verified records only)."""
    aid = tally.view.approval_id
    for schema in (SERVER_START, SERVER_STOP):
        for r in audit.events(until=since, approval_id=aid, schema=schema):
            if r["seq"] <= until_seq:
                yield r
    for user in tally.handlers:
        for r in audit.events(until=since, user=user, schema=ENFORCEMENT_STOP):
            if r["site"] in tally.sites and r["seq"] <= until_seq:
                yield r


def _quota_history(registry: ApprovalRegistry, audit: AuditStore, period: Period) -> QuotaHistory:
    """The platform file's quotas, moved by the site admins' actions up to the period's end."""
    quotas = QuotaHistory(
        {
            s["id"]: Quota(**registry.site_settings(s["id"])["platform_quota"])
            for s in registry.sites()
        }
    )
    for r in audit.events(until=period.window.until, schema=SITE_ADMIN_ACTION):
        if r["seq"] <= period.until_seq:
            quotas.add(r)
    return quotas


def approval_section(
    registry: ApprovalRegistry, view: ApprovalView, period: Period, lang: str
) -> dict[str, Any]:
    """One approval's section: its figures made part by part (in the order of the figures'
    list), then the whole in the document's order."""
    aid, window, tally = view.approval_id, period.window, period.tallies[view.approval_id]
    F = Figures(aid, iso(window.since), iso(window.until), period.until_seq, lang)
    hours = sections.usage.server_hours(
        tally, view, window, period.bound, period.months, period.quotas
    )
    usage = sections.usage.build(F, tally, hours)
    data_access = sections.data_access.build(F, tally, period.dataset_site)
    federation = sections.federation.build(F, tally)
    downloads = sections.downloads.build(F, tally)
    egress = sections.egress.build(F, tally)
    query_audit = sections.query_audit.build(F, tally)
    monthly = sections.monthly.build(F, tally, window, period.months, usage.hours.month)
    security = sections.security.build(F, tally, registry, window)
    exports = sections.exports.build(F, tally, window)
    head = sections.approval.build(
        view, tally, period.changes[aid], window, period.dataset_site, usage
    )
    usage_part = (
        usage.document()
        | {"data_access": data_access}
        | federation
        | downloads
        | {"monthly": monthly}
    )
    return (
        head
        | {
            "usage": usage_part,
            "egress": egress,
            "query_audit": query_audit,
            "sessions": usage.session_list(),
            "security": security,
        }
        | exports
        | sections.fill_in.build(lang)
        | {"figures": [f.to_json() for f in F.figures]}
    )


def _document(request: ReportRequest, period: Period, verified, approvals: list[dict]) -> dict:
    """The whole report: what it covers, the chain's verification, the approvals, notes."""
    window, lang, now = period.window, request.lang, period.now
    activity = any(a["activity"] for a in approvals)
    notes = []
    if period.late:
        notes.append(
            f"{period.late} event(s) of the period were stored after the chain was verified "
            f"and are not counted (the figures cover seq <= {period.until_seq})."
        )
    title = "title_annual" if window.kind == "annual" else "title_final"
    return {
        "report": {
            "kind": window.kind,
            "fiscal_year": window.fiscal_year,
            "title": t(title, lang, year=window.fiscal_year),
            "since": window.since.isoformat(),
            "until": window.until.isoformat(),
            "label": window.label,
            "generated_at": now.isoformat(),
            "provisional": now < window.until,
            "lang": lang,
            "scope": request.scope,
            "activity": activity,
            "summary": t("no_activity", lang) if not activity else None,
        },
        "audit_chain": {
            "ok": True,
            "verified_records": verified.records,
            "verified_through_seq": period.until_seq,
            "records_in_period": period.in_period,
            "first_seq_in_period": period.first_seq,
            "last_seq_in_period": period.last_seq,
            "message": verified.message(),
            "recheck": f"visiting audit verify --until {iso(window.until)}",
        },
        "approvals": approvals,
        "months": [m.astimezone(JST).strftime("%Y-%m") for m in period.months[:-1]],
        "notes": notes,
    }
