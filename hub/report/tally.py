"""One approval's tally: counters filled by one pass over the period's audit events.

Only server starts and stops are kept one by one (to pair them into sessions);
everything else is a counter. The quota a server got is replayed from the site
admins' records (`QuotaHistory`).
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from extensions.contracts.events import (
    DATA_ACCESS,
    DOWNLOAD_ALLOWED,
    DOWNLOAD_BLOCKED,
    EGRESS_ALERT,
    EGRESS_CAP,
    EGRESS_TALLY,
    ENFORCEMENT_STOP,
    EXPORT_CHECKED,
    EXPORT_RELEASE,
    EXPORT_REQUEST,
    EXPORT_REVIEW,
    EXPORT_WITHDRAW,
    FEDERATION_QUERY,
    KERNEL_REFUSED,
    KERNEL_START,
    OUTPUT_WITHHELD,
    PERIOD_END,
    QUERY_SET_AUDIT,
    SECRETARIAT_ACTION,
    SERVER_START,
    SERVER_STOP,
)
from hub.platform.operations import RESET_QUERY_AUDIT
from hub.platform.policy import Quota
from hub.report.request import iso, parse
from hub.store.registry import ApprovalView

#: the egress meter's channels (extensions.guard.meter.CHANNELS), in the report's order
EGRESS_CHANNELS = ("download", "kernel", "terminal", "other")
#: the export airlock's records, counted by the requester (`user`) and the request's site
EXPORT_SCHEMAS = (EXPORT_REQUEST, EXPORT_CHECKED, EXPORT_REVIEW, EXPORT_WITHDRAW, EXPORT_RELEASE)
#: the states of a review that settle a request
EXPORT_SETTLED = ("approved", "rejected")
#: the figures of an egress-tally line, each cumulative for its day and channel
EGRESS_MEASURES = ("bytes", "contents", "people")


def _count(data: dict[str, Any], name: str) -> int:
    value = data.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


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
        return self.started < iso(self.start)


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
    since_iso = iso(since)
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
        at = parse(time)
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


class ApprovalTally:
    """Counters of one approval over the report's period, filled by one pass over events."""

    def __init__(self, view: ApprovalView, handlers: set[str], sites: set[str], months: list[str]):
        self.view = view
        self.handlers = handlers
        self.sites = sites
        self.months = months  # ISO month starts (and the end), for bisect
        n = len(months) - 1
        self.events = 0
        # usage: sessions per site and per handler, kernels, files and their opens
        self.sessions: Counter[str] = Counter()
        self.sessions_by_user: Counter[str] = Counter()
        # (user, site) -> [(time, seq, kind)]: the few records the pairing rule needs
        self.markers: dict[tuple[str, str], list[tuple[str, int, str]]] = defaultdict(list)
        self.kernel_starts: Counter[str] = Counter()
        self.files: dict[str | None, set[str]] = defaultdict(set)
        self.opens: Counter[str | None] = Counter()
        # federated queries per (task, site), and per month
        self.federation: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        self.federation_datasets: set[str] = set()
        self.federation_month = [0] * n
        # downloads allowed, and blocked by reason, month and (user, site)
        self.allowed = 0
        self.allowed_bytes = 0
        self.blocked: Counter[str] = Counter()
        self.blocked_month = [0] * n
        self.blocked_at: Counter[tuple[str, str]] = Counter()
        # security: the enforcer's stops per site, suspensions, refused kernels, period ends
        self.enforcement_stops: Counter[str] = Counter()
        self.suspend_actions = 0
        self.reinstate_actions = 0
        self.kernel_refused = 0
        self.period_end = 0
        # the egress ledger: (user, site, channel, JST day) -> the day's last line so far,
        # as ((time, seq), bytes, contents, people); the lines are cumulative for the day
        self.egress_last: dict[tuple[str, str, str, str], tuple] = {}
        # (user, site, level) -> the JST days that reached it
        self.egress_days: dict[tuple[str, str, str], set[str]] = defaultdict(set)
        self.withheld: Counter[tuple[str, str]] = Counter()
        # the query-set audit: answers, its refusals by rule (None: no rule named), and the
        # secretariat's resets in seq order
        self.answered = 0
        self.audit_refused: Counter[str | None] = Counter()
        self.audit_resets: list[dict[str, Any]] = []
        # the export airlock (records without an approval id, by requester and site)
        self.export_requests = 0
        self.export_files = 0
        self.export_bytes = 0
        self.export_decisions: Counter[str] = Counter()
        self.export_rejected = 0
        self.export_withdrawn = 0
        self.export_released = 0
        self.export_requested_at: dict[str, str] = {}  # request id -> its request's time
        self.export_settled_at: dict[str, str] = {}  # request id -> its first settling review
        # (request id, file) -> the time of its first download, in seq order
        # (request, file) -> when it first left, its bytes and hash
        self.export_files_released: dict[tuple[str, str], dict[str, Any]] = {}

    def month(self, time: str) -> int:
        return bisect.bisect_right(self.months, time) - 1

    def add(self, r: dict[str, Any]) -> None:
        """A record that carries this approval's id."""
        self.events += 1
        count = self._COUNTERS.get(r["schema"])
        if count is not None:
            count(self, r, r["data"], r["site"])

    # -- one counter per kind of record

    def _server_start(self, r: dict, data: dict, site: str) -> None:
        self.sessions[site] += 1
        self.sessions_by_user[r["user"]] += 1
        self.markers[(r["user"], site)].append((r["time"], r["seq"], "start"))

    def _server_stop(self, r: dict, data: dict, site: str) -> None:
        self.markers[(r["user"], site)].append((r["time"], r["seq"], "stop"))

    def _kernel_start(self, r: dict, data: dict, site: str) -> None:
        self.kernel_starts[site] += 1

    def _data_access(self, r: dict, data: dict, site: str) -> None:
        dataset = data.get("dataset")
        self.files[dataset].add(data.get("path"))
        count = data.get("count")
        self.opens[dataset] += count if isinstance(count, int) else 0

    def _federation_query(self, r: dict, data: dict, site: str) -> None:
        c = self.federation[(data.get("task") or "?", site)]
        c["queries"] += 1
        if data.get("outcome") == "refused":
            c["refused"] += 1
        suppressions = data.get("suppressions") or []
        c["suppressions"] += len(suppressions)
        c["suppressed_items"] += sum(s.get("count", 0) for s in suppressions if isinstance(s, dict))
        if data.get("dataset"):
            self.federation_datasets.add(data["dataset"])
        self.federation_month[self.month(r["time"])] += 1
        if data.get("outcome") == "answered":
            self.answered += 1
        elif data.get("outcome") == "refused" and data.get("code") == QUERY_SET_AUDIT:
            audit = data.get("audit")
            rule = audit.get("rule") if isinstance(audit, dict) else None
            self.audit_refused[rule if isinstance(rule, str) else None] += 1

    def _secretariat_action(self, r: dict, data: dict, site: str) -> None:
        if data.get("action") == RESET_QUERY_AUDIT:
            self.audit_resets.append(
                {"at": r["time"], "by": r["actor"], "reason": data.get("reason") or ""}
            )

    def _download_allowed(self, r: dict, data: dict, site: str) -> None:
        self.allowed += 1
        size = data.get("size")
        self.allowed_bytes += size if isinstance(size, int) else 0

    def _download_blocked(self, r: dict, data: dict, site: str) -> None:
        self.blocked[data.get("reason") or "?"] += 1
        self.blocked_month[self.month(r["time"])] += 1
        self.blocked_at[(r["user"], site)] += 1

    def _egress_tally(self, r: dict, data: dict, site: str) -> None:
        key = (r["user"], site, data.get("channel") or "?", data.get("day") or "?")
        line = ((r["time"], r["seq"]), *(_count(data, k) for k in EGRESS_MEASURES))
        if key not in self.egress_last or line[0] > self.egress_last[key][0]:
            self.egress_last[key] = line

    def _egress_level(self, r: dict, data: dict, site: str) -> None:
        level = "alert" if r["schema"] == EGRESS_ALERT else "cap"
        self.egress_days[(r["user"], site, level)].add(data.get("day") or "?")

    def _output_withheld(self, r: dict, data: dict, site: str) -> None:
        self.withheld[(r["user"], site)] += 1

    def _kernel_refused(self, r: dict, data: dict, site: str) -> None:
        self.kernel_refused += 1

    def _period_end(self, r: dict, data: dict, site: str) -> None:
        self.period_end += 1

    _COUNTERS: dict[str, Callable[[ApprovalTally, dict, dict, str], None]] = {
        SERVER_START: _server_start,
        SERVER_STOP: _server_stop,
        KERNEL_START: _kernel_start,
        DATA_ACCESS: _data_access,
        FEDERATION_QUERY: _federation_query,
        SECRETARIAT_ACTION: _secretariat_action,
        DOWNLOAD_ALLOWED: _download_allowed,
        DOWNLOAD_BLOCKED: _download_blocked,
        EGRESS_TALLY: _egress_tally,
        EGRESS_ALERT: _egress_level,
        EGRESS_CAP: _egress_level,
        OUTPUT_WITHHELD: _output_withheld,
        KERNEL_REFUSED: _kernel_refused,
        PERIOD_END: _period_end,
    }

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

    def add_export(self, r: dict[str, Any]) -> None:
        """An export-airlock record of one of this approval's handlers at one of its sites."""
        if r["site"] not in self.sites:
            return
        self.events += 1
        schema, data = r["schema"], r["data"]
        rid = data.get("request_id")
        rid = rid if isinstance(rid, str) else "?"
        if schema == EXPORT_REQUEST:
            self.export_requests += 1
            self.export_requested_at.setdefault(rid, r["time"])
        elif schema == EXPORT_CHECKED:
            self.export_files += _count(data, "files")
            self.export_bytes += _count(data, "bytes")
        elif schema == EXPORT_REVIEW:
            self.export_decisions[data.get("decision") or "?"] += 1
            state = data.get("state")
            if state == "rejected":
                self.export_rejected += 1
            if state in EXPORT_SETTLED:
                self.export_settled_at.setdefault(rid, r["time"])
        elif schema == EXPORT_WITHDRAW:
            self.export_withdrawn += 1
        elif schema == EXPORT_RELEASE:
            if data.get("first") is True:
                self.export_released += 1
            name = data.get("file")
            if isinstance(name, str) and name and (rid, name) not in self.export_files_released:
                self.export_files_released[(rid, name)] = {
                    "released_at": r["time"],
                    "bytes": data.get("bytes"),
                    "sha256": data.get("sha256"),
                }

    @property
    def has_exports(self) -> bool:
        return bool(
            self.export_requests
            or self.export_files
            or self.export_decisions
            or self.export_withdrawn
            or self.export_released
            or self.export_files_released
        )

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
