"""A usage report as data: the approvals in scope, their figures, and the query behind each.

The approval registry says who, what and when (institution, purpose, period,
handlers and their changes, datasets, suspensions); the audit store says what
happened. Before anything is counted the audit chain of the period must
verify; then the events of the period are read once, in seq order, and each
is added to the tally of the approval it belongs to. Only server starts and
stops are kept one by one (to pair them); everything else is a counter.

The result is one JSON-able document (`build_report`); the HTML, PDF and CSV
formats are drawn from it (hub/report/render.py).
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from extensions.contracts.clock import JST, Clock, as_utc, fiscal_year_bounds, period_start
from extensions.contracts.events import (
    DATA_ACCESS,
    DOWNLOAD_ALLOWED,
    DOWNLOAD_BLOCKED,
    EGRESS_ALERT,
    EGRESS_CAP,
    EGRESS_TALLY,
    ENFORCEMENT_STOP,
    FEDERATION_QUERY,
    KERNEL_REFUSED,
    KERNEL_START,
    OUTPUT_WITHHELD,
    PERIOD_END,
    QUERY_SET_AUDIT,
    SECRETARIAT_ACTION,
    SERVER_START,
    SERVER_STOP,
    SITE_ADMIN_ACTION,
)
from hub.platform.operations import RESET_QUERY_AUDIT
from hub.platform.policy import Quota
from hub.report.query import Figure, Query
from hub.report.texts import CHECKLIST, LANGS, checklist_item, rule_name, t
from hub.store.audit import AuditStore
from hub.store.registry import ApprovalRegistry, ApprovalView, RegistryError

#: the egress meter's channels (extensions.guard.meter.CHANNELS), in the report's order
EGRESS_CHANNELS = ("download", "kernel", "terminal", "other")

GIB = 1024**3
#: the figures of an egress-tally line, each cumulative for its day and channel
EGRESS_MEASURES = ("bytes", "contents", "people")


def _count(data: dict[str, Any], name: str) -> int:
    value = data.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class ReportError(Exception):
    """A report that cannot be produced; the message says why, for the person who asked."""


# ---------------------------------------------------------------------------
# what is asked


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


def _iso(instant: datetime) -> str:
    """An instant spelled as the audit store spells event times (so strings compare as times)."""
    return as_utc(instant).isoformat(timespec="microseconds")


def _parse(text: str) -> datetime:
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


# ---------------------------------------------------------------------------
# the quota in effect


class QuotaHistory:
    """The quota a server got when it started, replayed from the site admins' records.

    The spawner gives a server the site admins' quota for the approval at the site, over
    the approval's own quota, over the site's default (hub/plugins/spawner.py `quota_for`); the
    container keeps what it got at spawn. The site default starts as the platform file
    says and moves with each `set-site-quota` action; the approval's quota at a site
    with each `set-approval-quota` action.
    """

    def __init__(self, platform_quotas: dict[str, Quota]):
        self.platform = platform_quotas
        self.site: dict[str, list[tuple[str, Quota]]] = defaultdict(list)
        self.approval_site: dict[tuple[str, str], list[tuple[str, Quota]]] = defaultdict(list)

    def add(self, record: dict[str, Any]) -> None:
        data = record["data"]
        quota = data.get("quota")
        if not isinstance(quota, dict):
            return
        q = Quota(**{k: quota.get(k) for k in ("cpu", "memory", "home")})
        if data.get("action") == "set-site-quota":
            self.site[record["site"]].append((record["time"], q))
        elif data.get("action") == "set-approval-quota" and record["approval_id"]:
            self.approval_site[(record["approval_id"], record["site"])].append((record["time"], q))

    @staticmethod
    def _latest(history: list[tuple[str, Quota]], at: str) -> Quota | None:
        found = None
        for when, q in history:  # in seq order; a handful per site
            if when <= at:
                found = q
        return found

    def at(self, approval: ApprovalView, site: str, at: str) -> Quota:
        default = self._latest(self.site.get(site, []), at) or self.platform.get(site, Quota())
        own = self._latest(self.approval_site.get((approval.approval_id, site), []), at)
        return (own or Quota()).over(approval.quota or Quota()).over(default)


# ---------------------------------------------------------------------------
# server hours


def pair_sessions(
    user: str, site: str, marks: list[tuple[str, int, str]], since: datetime, bound: datetime
) -> tuple[list[Session], int]:
    """The sessions of one handler at one site, and the stops that closed none.

    `marks` are (time, seq, kind) in time order; kind is start, stop or estop (an
    enforcement stop) inside the period, or before:<kind> for the latest ones before it.
    A start opens a session; the next stop or enforcement stop closes it. A start while
    one is open closes that one (a server runs once per site, so it must have stopped
    without a record). A session still open at the end runs to `bound`. A server started
    before the period and not stopped before it counts from `since`.
    """
    since_iso = _iso(since)
    out: list[Session] = []
    unpaired = 0
    open_at: datetime | None = None
    started = ""
    before = [m for m in marks if m[0] < since_iso]
    if before and before[-1][2] == "before:start":
        open_at, started = since, before[-1][0]
    for time, _seq, kind in marks:
        if time < since_iso:
            continue
        at = _parse(time)
        if kind == "start":
            if open_at is not None:
                out.append(Session(user, site, open_at, at, "next-start", started))
            open_at, started = at, time
        elif open_at is not None:
            ended = "server-stop" if kind == "stop" else "enforcement-stop"
            out.append(Session(user, site, open_at, at, ended, started))
            open_at = None
        elif kind == "stop":
            unpaired += 1
    if open_at is not None:
        out.append(Session(user, site, open_at, max(open_at, bound), "bound", started))
    return out, unpaired


# ---------------------------------------------------------------------------
# one approval's tally


@dataclass
class Session:
    user: str
    site: str
    start: datetime
    end: datetime
    ended_by: str  # server-stop | enforcement-stop | next-start | bound
    started: str  # the server-start's time (before the period when carried in)

    @property
    def carried_in(self) -> bool:
        return self.started < _iso(self.start)


class ApprovalTally:
    """Counters of one approval over the report's period, filled by one pass over events."""

    def __init__(self, view: ApprovalView, handlers: set[str], sites: set[str], months: list[str]):
        self.view = view
        self.handlers = handlers
        self.sites = sites
        self.months = months  # ISO month starts (and the end), for bisect
        n = len(months) - 1
        self.events = 0
        self.sessions: Counter[str] = Counter()
        self.sessions_by_user: Counter[str] = Counter()
        # (user, site) -> [(time, seq, kind)]: the few records the pairing rule needs
        self.markers: dict[tuple[str, str], list[tuple[str, int, str]]] = defaultdict(list)
        self.kernel_starts: Counter[str] = Counter()
        self.kernel_refused = 0
        self.period_end = 0
        self.files: dict[str | None, set[str]] = defaultdict(set)
        self.opens: Counter[str | None] = Counter()
        self.federation: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        self.federation_datasets: set[str] = set()
        self.federation_month = [0] * n
        self.allowed = 0
        self.allowed_bytes = 0
        self.blocked: Counter[str] = Counter()
        self.blocked_month = [0] * n
        self.enforcement_stops: Counter[str] = Counter()
        self.suspend_actions = 0
        self.reinstate_actions = 0
        # the egress ledger: (user, site, channel, JST day) -> the day's last line so far,
        # as ((time, seq), bytes, contents, people); the lines are cumulative for the day
        self.egress_last: dict[tuple[str, str, str, str], tuple] = {}
        # (user, site, level) -> the JST days that reached it
        self.egress_days: dict[tuple[str, str, str], set[str]] = defaultdict(set)
        self.withheld: Counter[tuple[str, str]] = Counter()
        self.blocked_at: Counter[tuple[str, str]] = Counter()
        # the query-set audit: answers, its refusals by rule (None: no rule named), and the
        # secretariat's resets in seq order
        self.answered = 0
        self.audit_refused: Counter[str | None] = Counter()
        self.audit_resets: list[dict[str, Any]] = []

    def month(self, time: str) -> int:
        return bisect.bisect_right(self.months, time) - 1

    def add(self, r: dict[str, Any]) -> None:
        """A record that carries this approval's id."""
        schema = r["schema"]
        self.events += 1
        data = r["data"]
        site = r["site"]
        if schema == SERVER_START:
            self.sessions[site] += 1
            self.sessions_by_user[r["user"]] += 1
            self.markers[(r["user"], site)].append((r["time"], r["seq"], "start"))
        elif schema == SERVER_STOP:
            self.markers[(r["user"], site)].append((r["time"], r["seq"], "stop"))
        elif schema == KERNEL_START:
            self.kernel_starts[site] += 1
        elif schema == DATA_ACCESS:
            dataset = data.get("dataset")
            self.files[dataset].add(data.get("path"))
            count = data.get("count")
            self.opens[dataset] += count if isinstance(count, int) else 0
        elif schema == FEDERATION_QUERY:
            c = self.federation[(data.get("task") or "?", site)]
            c["queries"] += 1
            if data.get("outcome") == "refused":
                c["refused"] += 1
            suppressions = data.get("suppressions") or []
            c["suppressions"] += len(suppressions)
            c["suppressed_items"] += sum(
                s.get("count", 0) for s in suppressions if isinstance(s, dict)
            )
            if data.get("dataset"):
                self.federation_datasets.add(data["dataset"])
            self.federation_month[self.month(r["time"])] += 1
            if data.get("outcome") == "answered":
                self.answered += 1
            elif data.get("outcome") == "refused" and data.get("code") == QUERY_SET_AUDIT:
                audit = data.get("audit")
                rule = audit.get("rule") if isinstance(audit, dict) else None
                self.audit_refused[rule if isinstance(rule, str) else None] += 1
        elif schema == SECRETARIAT_ACTION:
            if data.get("action") == RESET_QUERY_AUDIT:
                self.audit_resets.append(
                    {"at": r["time"], "by": r["actor"], "reason": data.get("reason") or ""}
                )
        elif schema == DOWNLOAD_ALLOWED:
            self.allowed += 1
            size = data.get("size")
            self.allowed_bytes += size if isinstance(size, int) else 0
        elif schema == DOWNLOAD_BLOCKED:
            self.blocked[data.get("reason") or "?"] += 1
            self.blocked_month[self.month(r["time"])] += 1
            self.blocked_at[(r["user"], site)] += 1
        elif schema == EGRESS_TALLY:
            key = (r["user"], site, data.get("channel") or "?", data.get("day") or "?")
            line = ((r["time"], r["seq"]), *(_count(data, k) for k in EGRESS_MEASURES))
            if key not in self.egress_last or line[0] > self.egress_last[key][0]:
                self.egress_last[key] = line
        elif schema in (EGRESS_ALERT, EGRESS_CAP):
            level = "alert" if schema == EGRESS_ALERT else "cap"
            self.egress_days[(r["user"], site, level)].add(data.get("day") or "?")
        elif schema == OUTPUT_WITHHELD:
            self.withheld[(r["user"], site)] += 1
        elif schema == KERNEL_REFUSED:
            self.kernel_refused += 1
        elif schema == PERIOD_END:
            self.period_end += 1

    def add_unattributed(self, r: dict[str, Any]) -> None:
        """A record without an approval id about one of this approval's handlers."""
        schema = r["schema"]
        if schema == ENFORCEMENT_STOP:
            if r["site"] in self.sites:
                self.events += 1
                self.enforcement_stops[r["site"]] += 1
                self.markers[(r["user"], r["site"])].append((r["time"], r["seq"], "estop"))
        elif schema == SECRETARIAT_ACTION:
            data = r["data"]
            if data.get("changed") is True and data.get("action") == "suspend":
                self.events += 1
                self.suspend_actions += 1
            elif data.get("changed") is True and data.get("action") == "reinstate":
                self.events += 1
                self.reinstate_actions += 1

    def carry_in(self, r: dict[str, Any]) -> None:
        """A start, stop or enforcement stop before the period (the latest of each kind)."""
        kind = {SERVER_START: "start", SERVER_STOP: "stop", ENFORCEMENT_STOP: "estop"}[r["schema"]]
        self.markers[(r["user"], r["site"])].append((r["time"], r["seq"], "before:" + kind))

    def sessions_in(self, since: datetime, bound: datetime) -> tuple[list[Session], int]:
        """Sessions by the pairing rule, cut to [since, bound); and stops that closed nothing."""
        out: list[Session] = []
        unpaired = 0
        for (user, site), marks in self.markers.items():
            found, n = pair_sessions(user, site, sorted(marks), since, bound)
            out += found
            unpaired += n
        out.sort(key=lambda s: (s.start, s.user, s.site))
        return out, unpaired

    @property
    def active(self) -> bool:
        return self.events > 0


# ---------------------------------------------------------------------------
# the report


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


def report_window(
    request: ReportRequest, registry: ApprovalRegistry, now: datetime
) -> tuple[Window, list[ApprovalView]]:
    """The period the report covers and the approvals it may cover; ReportError when the
    request names an approval or institution the registry does not know."""
    approvals = registry.approvals()
    if request.approval_id:
        try:
            candidates = [registry.approval(request.approval_id)]
        except RegistryError:
            raise ReportError(f"--approval: unknown approval {request.approval_id!r}") from None
    elif request.institution:
        candidates = [a for a in approvals if a.institution == request.institution]
        if not candidates:
            known = "; ".join(sorted({a.institution for a in approvals})) or "none"
            raise ReportError(
                f"--institution: no approval is held by {request.institution!r} (known: {known})"
            )
    else:
        candidates = approvals
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


def _handler_history(
    registry: ApprovalRegistry, view: ApprovalView, window: Window
) -> tuple[set[str], set[str], list[dict]]:
    """Handlers at some instant in the window, datasets likewise, and the changes in it."""
    changes = registry.changes(view.approval_id)
    since, until = _iso(window.since), _iso(window.until)
    handlers, datasets = set(view.handlers), set(view.datasets)
    # undo what changed after the window, to get the state at its end
    for c in reversed(changes):
        if _iso(_parse(c["at"])) < until:
            break
        diff = c["changes"]
        if "handlers" in diff and c["kind"] == "updated":
            handlers = set(diff["handlers"][0] or [])
        if "datasets" in diff and c["kind"] == "updated":
            datasets = set(diff["datasets"][0] or [])
    in_window = []
    for c in changes:
        at = _iso(_parse(c["at"]))
        if not since <= at < until:
            continue
        diff = c["changes"]
        entry = {"at": c["at"], "kind": c["kind"], "changes": diff, "source": c["source"]}
        if "handlers" in diff:
            old, new = set(diff["handlers"][0] or []), set(diff["handlers"][1] or [])
            handlers |= old
            entry["handlers_added"] = sorted(new - old)
            entry["handlers_removed"] = sorted(old - new)
        if "datasets" in diff:
            datasets |= set(diff["datasets"][0] or [])
        in_window.append(entry)
    return handlers, datasets, in_window


def _overlap(view: ApprovalView, window: Window) -> tuple[datetime, datetime] | None:
    start = max(window.since, view.period.starts_at)
    end = min(window.until, view.ends_before)
    return (start, end) if start < end else None


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
    clock = clock or registry.clock
    now = as_utc(clock.now())
    lang = request.lang
    window, candidates = report_window(request, registry, now)
    since, until = window.since, window.until

    # the whole chain up to the period's end: what is counted must be what was verified
    verified = audit.verify(until=until)
    if not verified.ok:
        raise ReportError(
            f"the audit chain for {window.label} does not verify: {verified.reason}; "
            "no report was written"
        )
    until_seq = verified.last_seq or 0

    months = month_starts(since, until)
    month_iso = [_iso(m) for m in months]
    dataset_site = {d: s["id"] for s in registry.sites() for d in s["datasets"]}

    tallies: dict[str, ApprovalTally] = {}
    by_user: dict[str, list[ApprovalTally]] = defaultdict(list)
    histories: dict[str, list[dict]] = {}
    for view in candidates:
        handlers, datasets, changes = _handler_history(registry, view, window)
        sites = {dataset_site[d] for d in datasets if d in dataset_site} | set(view.sites)
        tally = ApprovalTally(view, handlers, sites, month_iso)
        tallies[view.approval_id] = tally
        histories[view.approval_id] = changes
        for h in handlers:
            by_user[h].append(tally)

    # the one pass over the period's events
    late = in_period = 0
    first_seq = last_seq = None
    for r in audit.events(since=since, until=until):
        if r["seq"] > until_seq:
            late += 1  # stored after the chain was verified
            continue
        in_period += 1
        first_seq = r["seq"] if first_seq is None else min(first_seq, r["seq"])
        last_seq = r["seq"] if last_seq is None else max(last_seq, r["seq"])
        aid = r["approval_id"]
        if aid is not None:
            tally = tallies.get(aid)
            if tally is not None:
                tally.add(r)
        elif r["schema"] in (ENFORCEMENT_STOP, SECRETARIAT_ACTION):
            for tally in by_user.get(r["user"], ()):
                tally.add_unattributed(r)

    # servers already running when the period starts: the latest marker before it
    for tally in tallies.values():
        aid = tally.view.approval_id
        latest: dict[tuple[str, str], dict] = {}
        for schema in (SERVER_START, SERVER_STOP):
            for r in audit.events(until=since, approval_id=aid, schema=schema):
                key = (r["user"], r["site"])
                if r["seq"] <= until_seq and (key not in latest or r["time"] > latest[key]["time"]):
                    latest[key] = r
        for user in tally.handlers:
            for r in audit.events(until=since, user=user, schema=ENFORCEMENT_STOP):
                key = (r["user"], r["site"])
                if r["site"] in tally.sites and r["seq"] <= until_seq:
                    if key not in latest or r["time"] > latest[key]["time"]:
                        latest[key] = r
        for r in latest.values():
            tally.carry_in(r)

    quotas = QuotaHistory(
        {
            s["id"]: Quota(**registry.site_settings(s["id"])["platform_quota"])
            for s in registry.sites()
        }
    )
    for r in audit.events(until=until, schema=SITE_ADMIN_ACTION):
        if r["seq"] <= until_seq:
            quotas.add(r)

    bound = min(until, max(now, since))
    approvals = []
    for view in candidates:
        tally = tallies[view.approval_id]
        overlap = _overlap(view, window)
        if overlap is None and not tally.active and not request.approval_id:
            continue
        approvals.append(
            _approval_section(
                registry,
                view,
                tally,
                histories[view.approval_id],
                window,
                bound,
                months,
                until_seq,
                quotas,
                dataset_site,
                lang,
            )
        )

    provisional = now < until
    activity = any(a["activity"] for a in approvals)
    notes = []
    if late:
        notes.append(
            f"{late} event(s) of the period were stored after the chain was verified and are "
            f"not counted (the figures cover seq <= {until_seq})."
        )
    return {
        "report": {
            "kind": window.kind,
            "fiscal_year": window.fiscal_year,
            "title": t(
                "title_annual" if window.kind == "annual" else "title_final",
                lang,
                year=window.fiscal_year,
            ),
            "since": since.isoformat(),
            "until": until.isoformat(),
            "label": window.label,
            "generated_at": now.isoformat(),
            "provisional": provisional,
            "lang": lang,
            "scope": request.scope,
            "activity": activity,
            "summary": t("no_activity", lang) if not activity else None,
        },
        "audit_chain": {
            "ok": True,
            "verified_records": verified.records,
            "verified_through_seq": until_seq,
            "records_in_period": in_period,
            "first_seq_in_period": first_seq,
            "last_seq_in_period": last_seq,
            "message": verified.message(),
            "recheck": f"visiting audit verify --until {_iso(until)}",
        },
        "approvals": approvals,
        "months": [m.astimezone(JST).strftime("%Y-%m") for m in months[:-1]],
        "notes": notes,
    }


def _egress_section(tally: ApprovalTally, aid: str, q, fig, lang: str) -> dict[str, Any]:
    """The egress ledger per handler, site and channel (the sum over Japan-time days of each
    day's last egress-tally line), the days at the alert and at the cap, and the outputs
    withheld and downloads blocked per handler and site."""
    ledger: dict[tuple[str, str, str], dict[str, int]] = {}
    for (user, site, channel, _day), (_order, *values) in sorted(tally.egress_last.items()):
        row = ledger.setdefault((user, site, channel), dict.fromkeys((*EGRESS_MEASURES, "days"), 0))
        for name, value in zip(EGRESS_MEASURES, values, strict=True):
            row[name] += value
        row["days"] += 1
    order = {c: i for i, c in enumerate(EGRESS_CHANNELS)}
    rows = []
    for (user, site, channel), row in sorted(
        ledger.items(), key=lambda kv: (kv[0][0], kv[0][1], order.get(kv[0][2], 99), kv[0][2])
    ):
        rows.append({"user": user, "site": site, "channel": channel} | row)
        where = {
            "schema": EGRESS_TALLY,
            "approval_id": aid,
            "user": user,
            "site": site,
            "data.channel": channel,
        }
        key = f"egress/{user}/{site}/{channel}"
        for name in EGRESS_MEASURES:
            fig(
                f"{key}/{name}",
                f"{t('egress_' + name, lang)} {user} {site} {channel}",
                row[name],
                name,
                q(where, f"sum-daily-last:data.{name}", "egress-ledger"),
            )
        fig(
            f"{key}/days",
            f"{t('egress_days', lang)} {user} {site} {channel}",
            row["days"],
            "days",
            q(where, "distinct:data.day"),
        )
    pairs = sorted(
        {(u, s) for (u, s, _c) in ledger}
        | {(u, s) for (u, s, _lvl) in tally.egress_days}
        | set(tally.withheld)
        | set(tally.blocked_at)
    )
    people_sites = []
    for user, site in pairs:
        at = {"approval_id": aid, "user": user, "site": site}
        row = {
            "user": user,
            "site": site,
            "bytes": sum(r["bytes"] for r in rows if (r["user"], r["site"]) == (user, site)),
            "days_alert": len(tally.egress_days.get((user, site, "alert"), ())),
            "days_cap": len(tally.egress_days.get((user, site, "cap"), ())),
            "outputs_withheld": tally.withheld.get((user, site), 0),
            "downloads_blocked": tally.blocked_at.get((user, site), 0),
        }
        people_sites.append(row)
        key = f"egress/{user}/{site}"
        fig(
            f"{key}/days_alert",
            f"{t('egress_days_alert', lang)} {user} {site}",
            row["days_alert"],
            "days",
            q({"schema": EGRESS_ALERT} | at, "distinct:data.day"),
        )
        fig(
            f"{key}/days_cap",
            f"{t('egress_days_cap', lang)} {user} {site}",
            row["days_cap"],
            "days",
            q({"schema": EGRESS_CAP} | at, "distinct:data.day"),
        )
        fig(
            f"{key}/outputs_withheld",
            f"{t('outputs_withheld', lang)} {user} {site}",
            row["outputs_withheld"],
            "outputs",
            q({"schema": OUTPUT_WITHHELD} | at),
        )
        fig(
            f"{key}/downloads_blocked",
            f"{t('downloads_blocked', lang)} {user} {site}",
            row["downloads_blocked"],
            "downloads",
            q({"schema": DOWNLOAD_BLOCKED} | at),
        )
    total = sum(r["bytes"] for r in rows)
    fig(
        "egress/bytes/total",
        t("egress_bytes", lang),
        total,
        "bytes",
        q(
            {"schema": EGRESS_TALLY, "approval_id": aid},
            "sum-daily-last:data.bytes",
            "egress-ledger",
        ),
    )
    return {
        "ledger": rows,
        "by_user_site": people_sites,
        "bytes_total": total,
        "days_alert": sum(r["days_alert"] for r in people_sites),
        "days_cap": sum(r["days_cap"] for r in people_sites),
        "outputs_withheld": sum(tally.withheld.values()),
    }


def _query_audit_section(tally: ApprovalTally, aid: str, q, fig, lang: str) -> dict[str, Any]:
    """The federated queries answered, those the sites' query-set audit refused (by rule),
    and the secretariat's resets of the audit with their reasons."""
    answered_where = {"schema": FEDERATION_QUERY, "approval_id": aid, "data.outcome": "answered"}
    fig(
        "query_audit/answered",
        t("qa_answered", lang),
        tally.answered,
        "queries",
        q(answered_where),
    )
    refused_where = {
        "schema": FEDERATION_QUERY,
        "approval_id": aid,
        "data.outcome": "refused",
        "data.code": QUERY_SET_AUDIT,
    }
    refused = []
    for rule, n in sorted(tally.audit_refused.items(), key=lambda kv: (kv[0] is None, kv[0] or "")):
        refused.append({"rule": rule, "queries": n})
        fig(
            f"query_audit/refused/{rule or '-'}",
            f"{t('qa_refused', lang)} {rule_name(rule, lang)}",
            n,
            "queries",
            q(refused_where | {"data.audit.rule": rule}),
        )
    refused_total = sum(tally.audit_refused.values())
    fig(
        "query_audit/refused/total",
        t("qa_refused", lang),
        refused_total,
        "queries",
        q(refused_where),
    )
    fig(
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


@dataclass
class _Figures:
    """The figures of one approval's section as they are made, each with the query that
    recounts it from the audit store (`q`: over the report's window unless a span is given)."""

    aid: str
    since_iso: str
    until_iso: str
    until_seq: int
    lang: str
    figures: list[Figure] = field(default_factory=list)

    def q(self, where: dict, measure: str = "count", rule: str | None = None, span=None) -> Query:
        s, u = span or (self.since_iso, self.until_iso)
        return Query(s, u, self.until_seq, where, measure, rule)

    def fig(self, fid, label, value, unit, query=None, **extra) -> Figure:
        f = Figure(f"{self.aid}/{fid}", label, value, unit, self.aid, query, extra=extra)
        self.figures.append(f)
        return f


def _usage_section(
    F: _Figures,
    tally: ApprovalTally,
    view: ApprovalView,
    window: Window,
    bound: datetime,
    months: list[datetime],
    quotas: QuotaHistory,
) -> dict[str, Any]:
    """Sessions and server, CPU and memory hours by site, user and month."""
    aid, lang, q, fig = F.aid, F.lang, F.q, F.fig
    # -- sessions and server hours
    sessions, unpaired = tally.sessions_in(window.since, bound)
    sites_all = sorted(tally.sites | set(tally.sessions) | {s.site for s in sessions})
    hours_site: dict[str, float] = defaultdict(float)
    hours_user: dict[str, float] = defaultdict(float)
    cpu_site: dict[str, float] = defaultdict(float)
    mem_site: dict[str, float] = defaultdict(float)
    hours_month: dict[str, list[float]] = defaultdict(lambda: [0.0] * (len(months) - 1))
    quota_seen: dict[str, set[tuple]] = defaultdict(set)
    for s in sessions:
        start, end = max(s.start, window.since), min(s.end, window.until)
        if end <= start:
            continue
        hours = (end - start).total_seconds() / 3600
        quota = quotas.at(view, s.site, s.started)
        hours_site[s.site] += hours
        hours_user[s.user] += hours
        cpu_site[s.site] += hours * (quota.cpu or 0)
        mem_site[s.site] += hours * (quota.memory or 0) / GIB
        quota_seen[s.site].add((quota.cpu, quota.memory))
        i = bisect.bisect_right(months, start) - 1
        while start < end:
            piece_end = min(end, months[i + 1])
            hours_month[s.site][i] += (piece_end - start).total_seconds() / 3600
            start, i = piece_end, i + 1
    session_where = {"schema": SERVER_START, "approval_id": aid}
    hours_where = {"schema": [SERVER_START, SERVER_STOP], "approval_id": aid}
    per_site = []
    for site in sites_all:
        row = {
            "site": site,
            "sessions": tally.sessions.get(site, 0),
            "server_hours": round(hours_site.get(site, 0.0), 3),
            "cpu_hours": round(cpu_site.get(site, 0.0), 3),
            "memory_gib_hours": round(mem_site.get(site, 0.0), 3),
            "kernel_starts": tally.kernel_starts.get(site, 0),
            "quotas": [
                {"cpu": c, "memory": m} for c, m in sorted(quota_seen.get(site, ()), key=str)
            ],
        }
        per_site.append(row)
        fig(
            f"sessions/{site}",
            f"{t('sessions', lang)} {site}",
            row["sessions"],
            "sessions",
            q(session_where | {"site": site}),
        )
        hq = q(hours_where | {"site": site}, "server-hours", "server-hours")
        fig(
            f"server_hours/{site}",
            f"{t('server_hours', lang)} {site}",
            row["server_hours"],
            "h",
            hq,
        )
        fig(
            f"cpu_hours/{site}",
            f"{t('cpu_hours', lang)} {site}",
            row["cpu_hours"],
            "core-h",
            q(hours_where | {"site": site}, "server-hours", "cpu-hours"),
        )
        fig(
            f"memory_gib_hours/{site}",
            f"{t('memory_hours', lang)} {site}",
            row["memory_gib_hours"],
            "GiB-h",
            q(hours_where | {"site": site}, "server-hours", "cpu-hours"),
        )
        fig(
            f"kernel_starts/{site}",
            f"{t('kernel_starts', lang)} {site}",
            row["kernel_starts"],
            "kernels",
            q({"schema": KERNEL_START, "approval_id": aid, "site": site}),
        )
    total_sessions = sum(tally.sessions.values())
    total_hours = round(sum(hours_site.values()), 3)
    fig("sessions/total", t("sessions", lang), total_sessions, "sessions", q(session_where))
    fig(
        "server_hours/total",
        t("server_hours", lang),
        total_hours,
        "h",
        q(hours_where, "server-hours", "server-hours"),
    )
    fig(
        "cpu_hours/total",
        t("cpu_hours", lang),
        round(sum(cpu_site.values()), 3),
        "core-h",
        q(hours_where, "server-hours", "cpu-hours"),
    )
    fig(
        "memory_gib_hours/total",
        t("memory_hours", lang),
        round(sum(mem_site.values()), 3),
        "GiB-h",
        q(hours_where, "server-hours", "cpu-hours"),
    )
    per_user = []
    for user in sorted(tally.handlers | set(tally.sessions_by_user) | set(hours_user)):
        row = {
            "user": user,
            "sessions": tally.sessions_by_user.get(user, 0),
            "server_hours": round(hours_user.get(user, 0.0), 3),
        }
        per_user.append(row)
        fig(
            f"sessions/user/{user}",
            f"{t('sessions', lang)} {user}",
            row["sessions"],
            "sessions",
            q(session_where | {"user": user}),
        )
        fig(
            f"server_hours/user/{user}",
            f"{t('server_hours', lang)} {user}",
            row["server_hours"],
            "h",
            q(hours_where | {"user": user}, "server-hours", "server-hours"),
        )
    return {
        "sessions": sessions,
        "unpaired": unpaired,
        "per_site": per_site,
        "per_user": per_user,
        "total_sessions": total_sessions,
        "total_hours": total_hours,
        "cpu_site": cpu_site,
        "mem_site": mem_site,
        "hours_site": hours_site,
        "hours_month": hours_month,
        "hours_where": hours_where,
    }


def _data_access_section(F: _Figures, tally: ApprovalTally, dataset_site: dict[str, str]) -> list:
    """Files read and opens of each dataset."""
    aid, lang, q, fig = F.aid, F.lang, F.q, F.fig
    # -- files of each dataset
    data_access = []
    for dataset in sorted(set(tally.files) | set(tally.opens), key=lambda d: (d is None, d or "")):
        where = {"schema": DATA_ACCESS, "approval_id": aid, "data.dataset": dataset}
        row = {
            "dataset": dataset,
            "site": dataset_site.get(dataset or ""),
            "files": len(tally.files.get(dataset, ())),
            "opens": tally.opens.get(dataset, 0),
        }
        data_access.append(row)
        name = dataset or "(outside a dataset)"
        fig(
            f"data_access/{name}/files",
            f"{t('files', lang)} {name}",
            row["files"],
            "files",
            q(where, "distinct:data.path"),
        )
        fig(
            f"data_access/{name}/opens",
            f"{t('opens', lang)} {name}",
            row["opens"],
            "opens",
            q(where, "sum:data.count"),
        )
    return data_access


def _federation_section(F: _Figures, tally: ApprovalTally) -> tuple[list, int]:
    """Federated queries by task and site: answered, refused, suppressions."""
    aid, lang, q, fig = F.aid, F.lang, F.q, F.fig
    # -- federation queries
    federation = []
    for (task, site), c in sorted(tally.federation.items()):
        where = {"schema": FEDERATION_QUERY, "approval_id": aid, "site": site, "data.task": task}
        row = {"task": task, "site": site} | {
            k: c.get(k, 0) for k in ("queries", "refused", "suppressions", "suppressed_items")
        }
        federation.append(row)
        key = f"federation/{task}/{site}"
        fig(
            f"{key}/queries",
            f"{t('queries', lang)} {task} {site}",
            row["queries"],
            "queries",
            q(where),
        )
        fig(
            f"{key}/refused",
            f"{t('refused', lang)} {task} {site}",
            row["refused"],
            "queries",
            q(where | {"data.outcome": "refused"}),
        )
        fig(
            f"{key}/suppressions",
            f"{t('suppressions', lang)} {task} {site}",
            row["suppressions"],
            "suppressions",
            q(where, "sum-len:data.suppressions"),
        )
        fig(
            f"{key}/suppressed_items",
            f"{t('suppressed_items', lang)} {task} {site}",
            row["suppressed_items"],
            "items",
            q(where, "sum-each:data.suppressions.count"),
        )
    fed_total = sum(r["queries"] for r in federation)
    fig(
        "federation/total",
        t("federation", lang),
        fed_total,
        "queries",
        q({"schema": FEDERATION_QUERY, "approval_id": aid}),
    )
    return federation, fed_total


def _downloads_section(F: _Figures, tally: ApprovalTally) -> tuple[dict, int]:
    """Downloads allowed and blocked (by reason); the blocked ones' query and total."""
    aid, lang, q, fig = F.aid, F.lang, F.q, F.fig
    # -- downloads
    allowed_where = {"schema": DOWNLOAD_ALLOWED, "approval_id": aid}
    fig(
        "downloads/allowed",
        t("downloads_allowed", lang),
        tally.allowed,
        "downloads",
        q(allowed_where),
    )
    fig(
        "downloads/allowed_bytes",
        t("downloads_allowed_bytes", lang),
        tally.allowed_bytes,
        "bytes",
        q(allowed_where, "sum:data.size"),
    )
    blocked_where = {"schema": DOWNLOAD_BLOCKED, "approval_id": aid}
    for reason, n in sorted(tally.blocked.items()):
        fig(
            f"downloads/blocked/{reason}",
            f"{t('downloads_blocked', lang)} {reason}",
            n,
            "downloads",
            q(blocked_where | {"data.reason": reason}),
        )
    blocked_total = sum(tally.blocked.values())
    fig(
        "downloads/blocked/total",
        t("downloads_blocked", lang),
        blocked_total,
        "downloads",
        q(blocked_where),
    )
    return blocked_where, blocked_total


def _monthly_section(
    F: _Figures,
    tally: ApprovalTally,
    window: Window,
    months: list[datetime],
    hours_month: dict[str, list[float]],
    hours_where: dict,
    blocked_where: dict,
) -> dict[str, Any]:
    """The per-month series the charts draw."""
    aid, lang, q, fig = F.aid, F.lang, F.q, F.fig
    # -- per month (the charts)
    month_names = [m.astimezone(JST).strftime("%Y-%m") for m in months[:-1]]
    monthly = {
        "months": month_names,
        "server_hours": {
            site: [round(h, 3) for h in hours_month[site]] for site in sorted(hours_month)
        },
        "federation_queries": list(tally.federation_month),
        "downloads_blocked": list(tally.blocked_month),
    }
    for i, name in enumerate(month_names):
        span = (_iso(max(months[i], window.since)), _iso(min(months[i + 1], window.until)))
        fig(
            f"monthly/{name}/federation",
            f"{t('federation', lang)} {name}",
            tally.federation_month[i],
            "queries",
            q({"schema": FEDERATION_QUERY, "approval_id": aid}, span=span),
        )
        fig(
            f"monthly/{name}/blocked",
            f"{t('downloads_blocked', lang)} {name}",
            tally.blocked_month[i],
            "downloads",
            q(blocked_where, span=span),
        )
        for site in sorted(hours_month):
            fig(
                f"monthly/{name}/server_hours/{site}",
                f"{t('server_hours', lang)} {site} {name}",
                round(hours_month[site][i], 3),
                "h",
                q(hours_where | {"site": site}, "server-hours", "server-hours", span=span),
            )
    return monthly


def _security_section(
    F: _Figures, tally: ApprovalTally, registry: ApprovalRegistry, window: Window
) -> tuple[list[str], list[dict]]:
    """Enforcement stops, suspensions and reinstatements, refused kernels, period ends;
    the handlers in the window and the suspensions that overlap it."""
    aid, lang, q, fig = F.aid, F.lang, F.q, F.fig
    # -- security
    handlers = sorted(tally.handlers)
    sites = sorted(tally.sites)
    stop_where = {"schema": ENFORCEMENT_STOP, "approval_id": None, "user": handlers, "site": sites}
    fig(
        "security/enforcement_stops",
        t("enforcement_stops", lang),
        sum(tally.enforcement_stops.values()),
        "stops",
        q(stop_where),
    )
    sec_where = {
        "schema": SECRETARIAT_ACTION,
        "approval_id": None,
        "user": handlers,
        "data.changed": True,
    }
    fig(
        "security/suspensions",
        t("suspension_actions", lang),
        tally.suspend_actions,
        "actions",
        q(sec_where | {"data.action": "suspend"}),
    )
    fig(
        "security/reinstatements",
        t("reinstatements", lang),
        tally.reinstate_actions,
        "actions",
        q(sec_where | {"data.action": "reinstate"}),
    )
    fig(
        "security/kernel_refused",
        t("kernel_refused", lang),
        tally.kernel_refused,
        "kernels",
        q({"schema": KERNEL_REFUSED, "approval_id": aid}),
    )
    fig(
        "security/period_end",
        t("period_end_events", lang),
        tally.period_end,
        "events",
        q({"schema": PERIOD_END, "approval_id": aid}),
    )
    suspensions = []
    for h in handlers:
        for s in registry.suspensions(h):
            if s.suspended_at < window.until and (
                s.lifted_at is None or s.lifted_at > window.since
            ):
                suspensions.append(s.to_json())
    suspensions.sort(key=lambda s: s["suspended_at"])
    return handlers, suspensions


def _approval_section(
    registry: ApprovalRegistry,
    view: ApprovalView,
    tally: ApprovalTally,
    changes: list[dict],
    window: Window,
    bound: datetime,
    months: list[datetime],
    until_seq: int,
    quotas: QuotaHistory,
    dataset_site: dict[str, str],
    lang: str,
) -> dict[str, Any]:
    """One approval's section of the report: its sections in order, then the whole."""
    aid = view.approval_id
    F = _Figures(aid, _iso(window.since), _iso(window.until), until_seq, lang)
    u = _usage_section(F, tally, view, window, bound, months, quotas)
    sessions, unpaired = u["sessions"], u["unpaired"]
    per_site, per_user = u["per_site"], u["per_user"]
    total_sessions, total_hours = u["total_sessions"], u["total_hours"]
    cpu_site, mem_site, hours_site = u["cpu_site"], u["mem_site"], u["hours_site"]
    data_access = _data_access_section(F, tally, dataset_site)
    federation, fed_total = _federation_section(F, tally)
    blocked_where, blocked_total = _downloads_section(F, tally)
    egress = _egress_section(tally, aid, F.q, F.fig, lang)
    query_audit = _query_audit_section(tally, aid, F.q, F.fig, lang)
    monthly = _monthly_section(
        F, tally, window, months, u["hours_month"], u["hours_where"], blocked_where
    )
    handlers, suspensions = _security_section(F, tally, registry, window)

    overlap = _overlap(view, window)
    datasets_used = {d for d in tally.files if d} | tally.federation_datasets
    sites_used = (
        {s for s, n in tally.sessions.items() if n}
        | {s for s in hours_site}
        | {site for (_task, site) in tally.federation}
    )
    return {
        "approval_id": aid,
        "institution": view.institution,
        "purpose": view.purpose,
        "period": {
            "start": view.period.start.isoformat(),
            "end": view.period.end.isoformat(),
            "approved_end": (view.approved_end or view.period.end).isoformat(),
            "extended": view.approved_end is not None,
            "revoked_at": view.revoked_at.isoformat() if view.revoked_at else None,
            "ends_before": view.ends_before.isoformat(),
        },
        "in_window": (
            {"from": overlap[0].isoformat(), "until": overlap[1].isoformat()} if overlap else None
        ),
        "handlers": list(view.handlers),
        "handlers_in_window": handlers,
        "changes": changes,
        "datasets": [
            {
                "dataset": d,
                "site": view.dataset_sites.get(d) or dataset_site.get(d),
                "used": d in datasets_used,
            }
            for d in view.datasets
        ],
        "sites": list(view.sites),
        "sites_used": sorted(sites_used),
        "activity": tally.active or bool(sessions),
        "usage": {
            "sessions": total_sessions,
            "server_hours": total_hours,
            "cpu_hours": round(sum(cpu_site.values()), 3),
            "memory_gib_hours": round(sum(mem_site.values()), 3),
            "by_site": per_site,
            "by_user": per_user,
            "sessions_without_stop": sum(
                1 for s in sessions if s.ended_by in ("bound", "next-start")
            ),
            "stops_without_start": unpaired,
            "data_access": data_access,
            "federation": federation,
            "federation_total": fed_total,
            "downloads_allowed": {"count": tally.allowed, "bytes": tally.allowed_bytes},
            "downloads_blocked": dict(sorted(tally.blocked.items())),
            "downloads_blocked_total": blocked_total,
            "monthly": monthly,
        },
        "egress": egress,
        "query_audit": query_audit,
        "sessions": [
            {
                "user": s.user,
                "site": s.site,
                "start": s.start.isoformat(),
                "end": s.end.isoformat(),
                "ended_by": s.ended_by,
                "carried_in": s.carried_in,
            }
            for s in sessions
        ],
        "security": {
            "suspensions": suspensions,
            "suspension_actions": tally.suspend_actions,
            "reinstatements": tally.reinstate_actions,
            "enforcement_stops": dict(sorted(tally.enforcement_stops.items())),
            "enforcement_stops_total": sum(tally.enforcement_stops.values()),
            "kernel_refused": tally.kernel_refused,
            "period_end": tally.period_end,
        },
        "publications": [],
        "self_assessment": [
            {"id": key, "item": checklist_item(key, lang), "answer": None, "note": ""}
            for key in CHECKLIST
        ],
        "figures": [f.to_json() for f in F.figures],
    }
