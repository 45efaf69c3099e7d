"""What a report is asked for and the period it covers: the request, its checks, the
window in Japan time and the months it touches."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from extensions.contracts.clock import JST, as_utc, fiscal_year_bounds, period_start
from hub.report.texts import LANGS
from hub.store.registry import ApprovalRegistry, ApprovalView, RegistryError


class ReportError(Exception):
    """A report that cannot be produced; the message says why, for the person who asked."""


@dataclass(frozen=True)
class ReportRequest:
    """`fiscal_year` for the annual report, or `final` with `approval_id` for the report due
    when an approval's period ends. `institution` narrows an annual report."""

    fiscal_year: int | None = None
    approval_id: str | None = None
    institution: str | None = None
    final: bool = False
    lang: str = "ja"

    def check(self) -> None:
        if self.lang not in LANGS:
            raise ReportError(f"--lang: {self.lang!r} is not one of {', '.join(LANGS)}")
        if self.approval_id and self.institution:
            raise ReportError("give either --approval or --institution, not both")
        if self.final:
            if self.fiscal_year is not None:
                raise ReportError("--final covers the whole approved period; give no --fiscal-year")
            if not self.approval_id:
                raise ReportError("--final needs --approval ID")
        elif self.fiscal_year is None:
            raise ReportError("give --fiscal-year YEAR (or --approval ID --final)")

    @property
    def scope(self) -> dict[str, str]:
        if self.approval_id:
            return {"approval_id": self.approval_id}
        if self.institution:
            return {"institution": self.institution}
        return {"all": "all"}


def iso(instant: datetime) -> str:
    """An instant spelled as the audit store spells event times (so strings compare as times)."""
    return as_utc(instant).isoformat(timespec="microseconds")


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


def month_starts(since: datetime, until: datetime) -> list[datetime]:
    """The first instants (UTC) of the Japan-time months that [since, until) touches, and
    the first instant after the last of them."""
    local = as_utc(since).astimezone(JST)
    year, month = local.year, local.month
    out = []
    while True:
        start = period_start(date(year, month, 1))
        if start >= until:
            break
        out.append(start)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    out.append(period_start(date(year, month, 1)))
    return out


@dataclass
class Window:
    since: datetime
    until: datetime
    kind: str  # annual | final
    fiscal_year: int | None

    @property
    def label(self) -> str:
        last = (self.until - timedelta(microseconds=1)).astimezone(JST).date()
        return f"{self.since.astimezone(JST).date()} .. {last}"

    def overlap(self, view: ApprovalView) -> tuple[datetime, datetime] | None:
        """The part of the window in which the approval could be used, if any."""
        start = max(self.since, view.period.starts_at)
        end = min(self.until, view.ends_before)
        return (start, end) if start < end else None


def _candidates(request: ReportRequest, registry: ApprovalRegistry) -> list[ApprovalView]:
    """The approvals the request may cover; ReportError for an approval or institution the
    registry does not know."""
    approvals = registry.approvals()
    if request.approval_id:
        try:
            return [registry.approval(request.approval_id)]
        except RegistryError:
            raise ReportError(f"--approval: unknown approval {request.approval_id!r}") from None
    if request.institution:
        candidates = [a for a in approvals if a.institution == request.institution]
        if not candidates:
            known = "; ".join(sorted({a.institution for a in approvals})) or "none"
            raise ReportError(
                f"--institution: no approval is held by {request.institution!r} (known: {known})"
            )
        return candidates
    return approvals


def report_window(
    request: ReportRequest, registry: ApprovalRegistry, now: datetime
) -> tuple[Window, list[ApprovalView]]:
    """The period the report covers and the approvals it may cover; ReportError when the
    request names an approval or institution the registry does not know, or asks for a
    final report before the approval's period has ended."""
    candidates = _candidates(request, registry)
    if request.final:
        view = candidates[0]
        if view.ends_before > now:
            raise ReportError(
                f"approval {view.approval_id} has not ended: its period runs to {view.period.end} "
                "(the final report is due when it ends; use --fiscal-year for the annual one)"
            )
        return Window(view.period.starts_at, view.ends_before, "final", None), candidates
    since, until = fiscal_year_bounds(request.fiscal_year)
    return Window(since, until, "annual", request.fiscal_year), candidates
