"""The data-usage report (`visiting report`): a year of activity, and the report's figures
against counts made here, independently, from `AuditStore.export`.

Rule checked: "Reporting" (once a year the using institution reports how it used the
data, and again when the period ends; every figure traceable to the audit log). The
activity goes through the guard's own event path (ActivityEvents on a jupyter_events
EventLogger, the spool handler, `to_audit_record`, the intake's `check_events`) and the
secretariat's and site admins' Operations, with a moved clock; only the HTTP hops are
left out (tests/integration covers those).
"""

from __future__ import annotations

import json
import random
import shlex
import shutil
import subprocess
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from html import escape as html_escape
from pathlib import Path

import pytest
import yaml
from jupyter_events import EventLogger
from sqlalchemy import create_engine, text

from extensions.contracts.clock import JST, FixedClock
from extensions.contracts.events import (
    DOWNLOAD_BLOCKED,
    ENFORCEMENT_STOP,
    FEDERATION_QUERY,
    QUERY_SET_AUDIT,
)
from extensions.guard.context import ServerContext
from extensions.guard.events import ActivityEvents, EventSpool, SpoolHandler
from hub.cli.main import main
from hub.platform.operations import Operations
from hub.platform.policy import load_policy_dir
from hub.report import ReportError, ReportRequest, build_report, write_report
from hub.report import tally as report_tally
from hub.report.pdf import wrap
from hub.report.request import month_starts
from hub.report.tally import EGRESS_CHANNELS, pair_sessions
from hub.report.texts import t
from hub.services.audit.checks import check_events
from hub.store.audit import AuditStore
from hub.store.registry import ApprovalRegistry
from tests.conftest import DEMO_DIR

ARTIFACTS = Path(__file__).resolve().parents[3] / "artifacts" / "report"
FY_START = datetime(2026, 4, 1, tzinfo=JST)
FY_END = datetime(2027, 4, 1, tzinfo=JST)
REPORT_TIME = datetime(2027, 4, 10, 9, 0, tzinfo=JST)
GIB = 1024**3

A1, A2, A3 = "J-DU000101", "J-DU000102", "J-DU000103"
TASKS = ("allele_frequencies", "cohort_counts", "gwas_linear")
REASONS = ("raw-name", "raw-content", "under-data", "too-large")
FILES = {
    "JGAD000101": ["genotypes.vcf.gz", "clinical.tsv", "phenotypes.tsv"],
    "JGAD000201": ["genotypes.vcf.gz", "clinical.tsv"],
    "JGAD000301": ["genotypes.vcf.gz", "phenotypes.tsv"],
    "JGAD000501": ["genotypes.vcf.gz", "clinical.tsv"],
}
SITE_DATASET = {
    "nig": "JGAD000101",
    "ncc": "JGAD000201",
    "ncgm": "JGAD000301",
    "imsut": "JGAD000501",
}


def jst(*args) -> datetime:
    return datetime(*args, tzinfo=JST)


# ---------------------------------------------------------------------------
# making activity


class Activity:
    """Researchers' servers emitting the guard's events, a site gateway's federation-query
    records and the enforcer's stops, into one audit store; the clock moves with them."""

    def __init__(self, store: AuditStore, clock: FixedClock, spool_dir: Path):
        self.store = store
        self.clock = clock
        self.spool_dir = spool_dir
        self.servers: dict[tuple, ActivityEvents] = {}
        self.arrived: list[dict] = []
        self.open: dict[tuple[str, str], datetime] = {}
        # what the test itself knows it did, per approval: (user, site, start, end)
        self.sessions: list[tuple[str, str, str, datetime, datetime]] = []

    def server(self, user: str, site: str, approval_id: str) -> ActivityEvents:
        key = (user, site, approval_id)
        if key not in self.servers:
            logger = EventLogger()
            context = ServerContext(
                user=user, site=site, approval_id=approval_id, approval_end=None, end_date=None
            )
            events = ActivityEvents(logger, context, self.clock)
            spool = EventSpool(self.spool_dir / f"{user}-{site}-{approval_id}")
            logger.register_handler(SpoolHandler(spool, on_event=self.arrived.append))
            self.servers[key] = events
        return self.servers[key]

    def emit(self, user, site, approval_id, name, at: datetime, **data) -> None:
        self.clock.move_to(at)
        self.server(user, site, approval_id).emit(name, **data)
        self.ship(user, site)

    def ship(self, user: str, site: str) -> None:
        """What the intake does with a server's batch: check it, store it."""
        batch = list(self.arrived)
        self.arrived.clear()  # the spool handlers hold this list
        assert check_events(batch, user, site) is None
        self.store.append(batch)

    def session(self, user, site, approval_id, start: datetime, hours: float, rng, stop=True):
        """One server's life: start, kernels, data opened, downloads, queries, stop."""
        end = start + timedelta(hours=hours)
        self.emit(user, site, approval_id, "server-start", start, approval_end="2035-03-31")
        step = (end - start) / 10
        at = start + step
        for _ in range(rng.randint(1, 3)):
            self.emit(user, site, approval_id, "kernel-start", at, kernel_id=f"k{rng.random()}")
            at += step / 4
        dataset = SITE_DATASET[site]
        for _ in range(rng.randint(0, 3)):
            name = rng.choice(FILES[dataset])
            self.emit(
                user,
                site,
                approval_id,
                "data-access",
                at,
                path=f"/data/{dataset}/{name}",
                dataset=dataset,
                channel=rng.choice(["contents", "process"]),
                count=rng.randint(1, 20),
            )
            at += step / 4
        for _ in range(rng.randint(0, 2)):
            self.emit(
                user,
                site,
                approval_id,
                "download-allowed",
                at,
                path="plot.png",
                route="files",
                size=rng.randint(1000, 900_000),
            )
            at += step / 4
        if rng.random() < 0.4:
            self.emit(
                user,
                site,
                approval_id,
                "download-blocked",
                at,
                path=f"/data/{dataset}/genotypes.vcf.gz",
                route="files",
                reason=rng.choice(REASONS),
            )
            at += step / 4
        for _ in range(rng.randint(0, 2)):
            self.query(user, site, approval_id, rng.choice(TASKS), dataset, at, rng)
            at += step / 4
        if stop:
            self.emit(user, site, approval_id, "server-stop", end, reason="shutdown")
            self.sessions.append((approval_id, user, site, start, end))
        return end

    def query(self, user, site, approval_id, task, dataset, at, rng) -> None:
        """A federation-query record as the site's gateway sends it (gateway.py `record`)."""
        self.clock.move_to(at)
        refused = rng.random() < 0.2
        data = {"task": task, "dataset": dataset, "engine": "dask", "parameters": {}}
        if refused:
            data |= {"outcome": "refused", "status": 403, "reason": "task not allowed"}
        else:
            suppressed = [
                {"site": site, "what": "variant", "count": rng.randint(1, 40), "rule": "mac=5"}
                for _ in range(rng.randint(0, 2))
            ]
            data |= {"outcome": "answered", "result_bytes": 1234, "suppressions": suppressed}
        event = {
            "event_id": f"q{rng.random()}",
            "user": user,
            "site": site,
            "approval_id": approval_id,
            "time": at.isoformat(),
            "schema": FEDERATION_QUERY,
            "version": 1,
            "data": data,
        }
        assert check_events([event], None, site) is None
        self.store.append([dict(event, actor=f"gateway-{site}")])

    def enforcement_stop(self, user, site, at, reason) -> None:
        """The enforcer's record of a stop (enforcer.py `Enforcer.stop`)."""
        self.clock.move_to(at)
        self.store.append(
            [
                {
                    "event_id": f"stop-{user}-{site}-{at.timestamp()}",
                    "schema": ENFORCEMENT_STOP,
                    "version": 1,
                    "time": at.isoformat(),
                    "user": user,
                    "site": site,
                    "approval_id": None,
                    "actor": "enforcer",
                    "data": {"reason": reason},
                }
            ]
        )


# the egress ledger the test writes: (user, site, approval, JST day, channel) -> the lines
# the gate sends through the day, (JST hour, minute, bytes, contents, people), cumulative;
# each day's last line (by time) is the day's figure
EGRESS_LINES = {
    ("tanaka", "nig", A1, (2026, 5, 12), "kernel"): [(10, 0, 1_000, 3, 0), (15, 0, 5_000, 9, 4)],
    ("tanaka", "nig", A1, (2026, 5, 12), "download"): [(11, 0, 70_000_000, 2, 0)],
    ("tanaka", "nig", A1, (2026, 5, 20), "download"): [(9, 30, 280_000_000, 3, 0)],
    ("tanaka", "nig", A1, (2026, 5, 20), "terminal"): [(9, 0, 2_000, 5, 0)],
    ("tanaka", "ncc", A1, (2026, 9, 1), "kernel"): [(13, 0, 40_000, 12, 7), (18, 0, 90_000, 20, 9)],
    # the last instant of FY2026 and the first of FY2027
    ("suzuki", "imsut", A3, (2027, 3, 31), "kernel"): [(23, 59, 3_000, 2, 1)],
    ("suzuki", "imsut", A3, (2027, 4, 1), "kernel"): [(0, 0, 500, 1, 0)],
}


def egress_activity(act: Activity) -> None:
    """The gates' ledger lines, alerts, caps and withheld outputs. One line of 12 May comes
    in late (a higher seq, an earlier time): it is not that day's last."""
    for (user, site, aid, day, channel), lines in EGRESS_LINES.items():
        for hour, minute, nbytes, contents, people in lines:
            act.emit(user, site, aid, "egress-tally", jst(*day, hour, minute),
                     day=f"{day[0]:04d}-{day[1]:02d}-{day[2]:02d}", channel=channel,
                     bytes=nbytes, contents=contents, people=people)  # fmt: skip
    act.emit("tanaka", "nig", A1, "egress-tally", jst(2026, 5, 12, 14, 0), day="2026-05-12",
             channel="kernel", bytes=4_000, contents=8, people=4)  # fmt: skip
    reading = {"bytes": 70_001_000, "people": 0, "reached_by": ["bytes"]}
    act.emit("tanaka", "nig", A1, "egress-alert", jst(2026, 5, 12, 11, 0), day="2026-05-12",
             level="alert", limit_bytes=64 * 1024**2, limit_people=30, **reading)  # fmt: skip
    for level, limit in (("alert", 64 * 1024**2), ("cap", 256 * 1024**2)):
        act.emit("tanaka", "nig", A1, f"egress-{level}", jst(2026, 5, 20, 9, 30),
                 day="2026-05-20", level=level, bytes=280_002_000, people=0,
                 reached_by=["bytes"], limit_bytes=limit, limit_people=100)  # fmt: skip
    for kind in ("people", "egress-cap"):
        act.emit("tanaka", "nig", A1, "output-withheld", jst(2026, 5, 20, 10, 0),
                 channel="kernel", msg_type="execute_result", kind=kind, people=40,
                 records=40)  # fmt: skip
    act.emit("tanaka", "nig", A1, "download-blocked", jst(2026, 5, 20, 10, 5),
             path="api/contents/copy.tsv", route="gate", reason="egress-cap", kind="egress-cap")  # fmt: skip
    act.emit("tanaka", "ncc", A1, "output-withheld", jst(2026, 9, 1, 13, 30),
             channel="terminal", msg_type="stdout", kind="raw-records", records=120)  # fmt: skip


# the sites' query-set audit: (JST time, user, site, approval, task, outcome, rule) of the
# federation-query records a gateway sends about it; rule None with outcome "refused" is a
# refusal of another kind (small_query), which the audit's figures do not count
AUDIT_QUERIES = [
    ((2026, 3, 31, 23, 59, 59), "tanaka", "nig", A1, "cohort_counts", "refused", "min_count"),
    ((2026, 4, 20, 10, 0), "tanaka", "nig", A1, "cohort_counts", "answered", None),
    ((2026, 4, 20, 10, 5), "tanaka", "nig", A1, "cohort_counts", "refused", "small_difference"),
    ((2026, 6, 2, 9, 0), "yamada", "nig", A1, "allele_frequencies", "answered", None),
    ((2026, 7, 15, 9, 0), "yamada", "nig", A1, "cohort_counts", "refused", "small_difference"),
    ((2026, 7, 15, 9, 30), "tanaka", "ncc", A1, "gwas_linear", "refused",
     "isolating_combination"),
    ((2026, 9, 1, 14, 0), "tanaka", "nig", A1, "cohort_counts", "refused", None),
    ((2027, 1, 10, 11, 0), "tanaka", "nig", A1, "cohort_counts", "refused", "min_count"),
    ((2026, 11, 2, 16, 0), "suzuki", "imsut", A3, "cohort_counts", "answered", None),
    ((2026, 11, 2, 16, 10), "suzuki", "imsut", A3, "cohort_counts", "refused", "isolating_pair"),
    ((2027, 4, 1, 0, 0), "tanaka", "nig", A1, "cohort_counts", "refused", "min_count"),
]  # fmt: skip
# the secretariat's resets of the audit: (JST time, approval, reason)
AUDIT_RESETS = [
    ((2026, 3, 31, 23, 0), A1, "cohort re-consented (FY2025)"),
    ((2026, 8, 10, 10, 0), A1, "ethics board: new sub-study on insulin response"),
    ((2027, 2, 1, 9, 30), A1, "board decision 2027-03"),
    ((2027, 4, 1, 0, 0), A1, "new fiscal year (FY2027)"),
]


def query_audit_activity(act: Activity, ops: Operations) -> None:
    """The gateways' answers and refusals by their query-set audit, and the resets."""
    for i, (at, user, site, aid, task, outcome, rule) in enumerate(AUDIT_QUERIES):
        when = jst(*at)
        data = {"task": task, "dataset": SITE_DATASET[site], "engine": "dask",
                "parameters": {"by": "sex"}, "outcome": outcome}  # fmt: skip
        if outcome == "answered":
            data |= {"result_bytes": 100, "suppressions": [], "audit": {"scope": aid, "sets": 2}}
        elif rule is None:
            data |= {"status": 403, "reason": "too few people", "code": "small_query"}
        else:
            data |= {
                "status": 403,
                "reason": f"refused ({rule})",
                "code": QUERY_SET_AUDIT,
                "audit": {"rule": rule, "scope": aid, "collides_with": [
                    {"time": (when - timedelta(minutes=5)).isoformat(), "task": task,
                     "query_id": f"qa-{i - 1}"}]},
            }  # fmt: skip
        event = {"event_id": f"qa-{i}", "user": user, "site": site, "approval_id": aid,
                 "time": when.isoformat(), "schema": FEDERATION_QUERY,
                 "version": 1, "data": data}  # fmt: skip
        assert check_events([event], None, site) is None
        act.clock.move_to(when)
        act.store.append([dict(event, actor=f"gateway-{site}")])
    for at, aid, reason in AUDIT_RESETS:
        act.clock.move_to(jst(*at))
        ops.reset_query_audit("jimu", approval_id=aid, reason=reason)


def set_approval(policy: Path, approval_id: str, **fields) -> None:
    path = policy / "approvals" / f"{approval_id}.yaml"
    doc = yaml.safe_load(path.read_text())
    doc.update(fields)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))


@pytest.fixture(scope="module")
def year(tmp_path_factory):
    """Fiscal year 2026 of two approvals and three handlers across sites, with a handler
    added and removed mid-year, an approval that starts inside the year, a suspension,
    a quota change, servers left running across both year ends, and events on the
    boundaries. Built once for the module (about 1500 events)."""
    base = tmp_path_factory.mktemp("report-year")
    policy = base / "policy"
    shutil.copytree(DEMO_DIR, policy)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISITING_STATE_DIR", str(base / "state"))
        mp.setenv("VISITING_DATA_ROOT", str(base / "data"))
        mp.delenv("VISITING_DATABASE_URL", raising=False)
        url = f"sqlite:///{base / 'registry.sqlite'}"
        clock = FixedClock(jst(2026, 3, 1, 9, 0))
        # tanaka alone at first; suzuki's approval starts inside the year
        set_approval(policy, A1, handlers=["tanaka"])
        set_approval(
            policy,
            A3,
            datasets=["JGAD000101", "JGAD000501"],
            period={"start": "2026-10-01", "end": "2027-09-30"},
        )
        registry = ApprovalRegistry(url, clock=clock)
        store = AuditStore(url, clock=clock)
        registry.import_policy(load_policy_dir(policy))
        ops = Operations(registry, store, load_policy_dir(policy).platform, clock)
        act = Activity(store, clock, base / "spool")
        rng = random.Random(2026)

        # FY2025: a server that runs across the year start (no stop until 02:00)
        act.emit("tanaka", "nig", A1, "server-start", jst(2026, 3, 31, 20, 0), approval_end="x")
        act.emit("tanaka", "nig", A1, "server-stop", jst(2026, 4, 1, 2, 0), reason="shutdown")
        # the last instant of FY2025 and the first of FY2026
        for at in (jst(2026, 3, 31, 23, 59, 59, 999999), jst(2026, 4, 1, 0, 0, 0)):
            act.emit("tanaka", "ncc", A1, "download-blocked", at, path="a.bam", route="files",
                     reason="raw-name")  # fmt: skip

        # tanaka all year at nig and ncc, except while suspended
        suspended = (jst(2026, 11, 23, 10, 0), jst(2026, 12, 1, 9, 0))
        day = jst(2026, 4, 3, 9, 0)
        while day < jst(2027, 3, 30):
            if not suspended[0] - timedelta(days=1) <= day < suspended[1]:
                site = rng.choice(["nig", "ncc"])
                act.session("tanaka", site, A1, day + timedelta(hours=rng.randint(0, 8)),
                            rng.choice([0.5, 1, 2.5, 4, 7.25]), rng)  # fmt: skip
            day += timedelta(days=rng.randint(3, 9))

        # yamada becomes a handler on 1 July and leaves on 15 January
        clock.move_to(jst(2026, 7, 1, 9, 0))
        set_approval(policy, A1, handlers=["tanaka", "yamada"])
        registry.import_policy(load_policy_dir(policy))
        day = jst(2026, 7, 2, 10, 0)
        while day < jst(2027, 1, 14):
            act.session("yamada", "ncgm", A1, day, rng.choice([1, 3, 6]), rng)
            day += timedelta(days=rng.randint(5, 15))
        # a server without a stop record: it counts until the next start
        act.emit("yamada", "ncgm", A1, "server-start", jst(2026, 8, 3, 10, 0), approval_end="x")
        act.sessions.append((A1, "yamada", "ncgm", jst(2026, 8, 3, 10, 0), jst(2026, 8, 4, 10, 0)))
        act.session("yamada", "ncgm", A1, jst(2026, 8, 4, 10, 0), 2, rng)
        clock.move_to(jst(2027, 1, 15, 9, 0))
        set_approval(policy, A1, handlers=["tanaka"])
        registry.import_policy(load_policy_dir(policy))

        # site admins of nig give A1 more at their site from 1 October
        clock.move_to(jst(2026, 10, 1, 8, 0))
        ops.set_approval_quota(
            "admin-nig", site="nig", approval_id=A1, quota={"cpu": 4, "memory": "8G"},
            reason="bigger GWAS",
        )  # fmt: skip

        # tanaka suspended with a server running at nig; the enforcer stops it
        act.emit("tanaka", "nig", A1, "server-start", jst(2026, 11, 23, 9, 0), approval_end="x")
        clock.move_to(suspended[0])
        ops.suspend("jimu", user="tanaka", reason="shared his screen with a student")
        act.enforcement_stop("tanaka", "nig", suspended[0] + timedelta(seconds=30), "suspended")
        act.sessions.append(
            (A1, "tanaka", "nig", jst(2026, 11, 23, 9, 0), suspended[0] + timedelta(seconds=30))
        )
        clock.move_to(suspended[1])
        ops.reinstate("jimu", user="tanaka", reason="investigated: no data left the platform")

        # suzuki from 1 October at imsut and nig
        day = jst(2026, 10, 1, 13, 0)
        while day < jst(2027, 3, 25):
            act.session("suzuki", rng.choice(["imsut", "nig"]), A3, day, rng.choice([2, 5]), rng)
            day += timedelta(days=rng.randint(4, 12))
        # a server still running when the year ends: cut at the boundary
        act.emit("suzuki", "imsut", A3, "server-start", jst(2027, 3, 31, 22, 0), approval_end="x")
        act.sessions.append((A3, "suzuki", "imsut", jst(2027, 3, 31, 22, 0), FY_END))
        act.emit("suzuki", "imsut", A3, "server-stop", jst(2027, 4, 1, 3, 0), reason="shutdown")
        # the last instant of FY2026 and the first of FY2027
        for at in (jst(2027, 3, 31, 23, 59, 59), jst(2027, 4, 1, 0, 0, 0)):
            act.emit("suzuki", "imsut", A3, "download-blocked", at, path="b.cram", route="files",
                     reason="raw-name")  # fmt: skip

        # sato's approval ended in 2021: a little activity in its period, one event after it
        act.session("sato", "ncc", A2, jst(2020, 6, 1, 10, 0), 3, rng)
        act.emit("sato", "ncc", A2, "kernel-refused", jst(2021, 4, 1, 0, 0), kernel_name="py")

        egress_activity(act)
        query_audit_activity(act, ops)

        clock.move_to(REPORT_TIME)
        yield {
            "url": url,
            "policy": policy,
            "registry": registry,
            "store": store,
            "clock": clock,
            "activity": act,
            "base": base,
        }
        registry.close()
        store.close()


@pytest.fixture(scope="module")
def report_ja(year):
    return build_report(
        year["registry"], year["store"], ReportRequest(fiscal_year=2026, lang="ja"), year["clock"]
    )


@pytest.fixture(scope="module")
def exported(year):
    """The year's records as `visiting audit export` writes them (JSON lines), read back."""
    path = year["base"] / "fy2026.jsonl"
    with open(path, "w", encoding="utf-8") as out:
        year["store"].export(out, since=FY_START, until=FY_END)
    return path, [json.loads(line) for line in path.read_text().splitlines()]


# ---------------------------------------------------------------------------
# an independent reading of the export


def field(record: dict, name: str):
    value = record
    for part in name.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def matches(record: dict, query: dict) -> bool:
    if not query["since"] <= record["time"] < query["until"]:
        return False
    if record["seq"] > query["until_seq"]:
        return False
    for name, wanted in query["where"].items():
        value = field(record, name)
        if isinstance(wanted, list):
            if value not in wanted:
                return False
        elif value != wanted:
            return False
    return True


def evaluate(records: list[dict], query: dict):
    hits = [r for r in records if matches(r, query)]
    kind, _, arg = query["measure"].partition(":")
    if kind == "count":
        return len(hits)
    if kind == "sum":
        return sum(field(r, arg) or 0 for r in hits)
    if kind == "distinct":
        return len({field(r, arg) for r in hits})
    if kind == "sum-len":
        return sum(len(field(r, arg) or []) for r in hits)
    if kind == "sum-each":
        lst, _, item = arg.rpartition(".")
        return sum(x.get(item, 0) for r in hits for x in (field(r, lst) or []))
    if kind == "sum-daily-last":
        last = {}
        for r in hits:
            key = (r["user"], r["site"], field(r, "data.channel"), field(r, "data.day"))
            if key not in last or (r["time"], r["seq"]) > (last[key]["time"], last[key]["seq"]):
                last[key] = r
        return sum(field(r, arg) or 0 for r in last.values())
    raise AssertionError(query["measure"])


def approval(doc, approval_id):
    return next(a for a in doc["approvals"] if a["approval_id"] == approval_id)


def figure(a, fid):
    return next(f["value"] for f in a["figures"] if f["id"] == f"{a['approval_id']}/{fid}")


# ---------------------------------------------------------------------------
# the figures


def test_every_figure_equals_its_query_over_the_export(report_ja, exported):
    _, records = exported
    checked = 0
    for a in report_ja["approvals"]:
        for f in a["figures"]:
            if f["query"]["measure"] == "server-hours":
                continue
            assert evaluate(records, f["query"]) == f["value"], f["id"]
            checked += 1
    assert checked > 100


def test_counts_from_the_export(report_ja, exported):
    """The headline numbers, counted here straight from the exported lines."""
    _, records = exported
    by = defaultdict(Counter)
    for r in records:
        by[(r["approval_id"], r["schema"].rsplit("/", 1)[1])][r["site"]] += 1
    for aid in (A1, A3):
        a = approval(report_ja, aid)
        u = a["usage"]
        assert u["sessions"] == sum(by[(aid, "server-start")].values())
        for row in u["by_site"]:
            assert row["sessions"] == by[(aid, "server-start")][row["site"]]
            assert row["kernel_starts"] == by[(aid, "kernel-start")][row["site"]]
        assert u["federation_total"] == sum(by[(aid, "federation-query")].values())
        blocked = Counter(
            r["data"]["reason"]
            for r in records
            if r["approval_id"] == aid and r["schema"].endswith("/download-blocked")
        )
        assert u["downloads_blocked"] == dict(blocked)
        allowed = [
            r["data"]["size"]
            for r in records
            if r["approval_id"] == aid and r["schema"].endswith("/download-allowed")
        ]
        assert u["downloads_allowed"] == {"count": len(allowed), "bytes": sum(allowed)}
        files = defaultdict(set)
        opens = Counter()
        for r in records:
            if r["approval_id"] == aid and r["schema"].endswith("/data-access"):
                files[r["data"]["dataset"]].add(r["data"]["path"])
                opens[r["data"]["dataset"]] += r["data"]["count"]
        assert {d["dataset"]: (d["files"], d["opens"]) for d in u["data_access"]} == {
            d: (len(files[d]), opens[d]) for d in files
        }
    # sato's approval ended in 2021: not in FY2026's report
    assert {a["approval_id"] for a in report_ja["approvals"]} == {A1, A3}


def test_server_hours_follow_the_pairing_rule(report_ja, year):
    """Hours from what the test did: paired sessions, the server with no stop counted to
    the next start, the one stopped by the enforcer, the ones running across both year
    ends cut at the boundary."""
    expected = defaultdict(float)
    for aid, _user, site, start, end in year["activity"].sessions:
        start, end = max(start, FY_START), min(end, FY_END)
        if end > start:
            expected[(aid, site)] += (end - start).total_seconds() / 3600
    # the server started on 31 March 2026 at 20:00 and stopped at 02:00: two hours in FY2026
    expected[(A1, "nig")] += 2
    for aid in (A1, A3):
        a = approval(report_ja, aid)
        for row in a["usage"]["by_site"]:
            assert row["server_hours"] == pytest.approx(expected[(aid, row["site"])], abs=0.01)
    ended = Counter(s["ended_by"] for s in approval(report_ja, A1)["sessions"])
    assert ended["next-start"] == 1 and ended["enforcement-stop"] == 1
    carried = [s for s in approval(report_ja, A1)["sessions"] if s["carried_in"]]
    assert (
        len(carried) == 1 and carried[0]["end"] == jst(2026, 4, 1, 2, 0).astimezone(UTC).isoformat()
    )
    last = [s for s in approval(report_ja, A3)["sessions"] if s["ended_by"] == "bound"]
    assert len(last) == 1 and last[0]["end"] == FY_END.astimezone(UTC).isoformat()


def test_cpu_and_memory_hours_use_the_quota_at_each_start(report_ja, year):
    """A1's quota is 2 cores / 4G; nig's admins gave it 4 cores / 8G from 1 October."""
    change = jst(2026, 10, 1, 8, 0)
    cpu = mem = 2.0  # the carried-in session: 2 h at 2 cores / 4 GiB
    cpu, mem = 2 * 2.0, 2 * 4.0
    for aid, _user, site, start, end in year["activity"].sessions:
        if aid == A1 and site == "nig":
            hours = (min(end, FY_END) - max(start, FY_START)).total_seconds() / 3600
            cpu += hours * (4 if start >= change else 2)
            mem += hours * (8 if start >= change else 4)
    nig = next(r for r in approval(report_ja, A1)["usage"]["by_site"] if r["site"] == "nig")
    assert nig["cpu_hours"] == pytest.approx(cpu, abs=0.01)
    assert nig["memory_gib_hours"] == pytest.approx(mem, abs=0.01)
    assert {(q["cpu"], q["memory"]) for q in nig["quotas"]} == {(2.0, 4 * GIB), (4.0, 8 * GIB)}
    # suzuki's approval has no quota of its own: the site's default, 1 core / 2G
    imsut = next(r for r in approval(report_ja, A3)["usage"]["by_site"] if r["site"] == "imsut")
    assert imsut["cpu_hours"] == pytest.approx(imsut["server_hours"], abs=0.01)


def test_handlers_changes_suspension_and_period_inside_the_year(report_ja):
    a1 = approval(report_ja, A1)
    assert a1["handlers"] == ["tanaka"]
    assert a1["handlers_in_window"] == ["tanaka", "yamada"]
    moves = [(c["handlers_added"], c["handlers_removed"]) for c in a1["changes"]]
    assert moves == [(["yamada"], []), ([], ["yamada"])]
    assert [u["user"] for u in a1["usage"]["by_user"]] == ["tanaka", "yamada"]
    sec = a1["security"]
    assert [s["username"] for s in sec["suspensions"]] == ["tanaka"]
    assert sec["suspensions"][0]["lifted_at"] == jst(2026, 12, 1, 9, 0).astimezone(UTC).isoformat()
    assert (sec["suspension_actions"], sec["reinstatements"], sec["enforcement_stops_total"]) == (
        1,
        1,
        1,
    )
    # no session of tanaka while suspended
    for s in a1["sessions"]:
        if s["user"] == "tanaka":
            start = datetime.fromisoformat(s["start"])
            assert not jst(2026, 11, 23, 10, 1) <= start < jst(2026, 12, 1, 9, 0)
    a3 = approval(report_ja, A3)
    assert a3["in_window"]["from"] == jst(2026, 10, 1).astimezone(UTC).isoformat()
    assert a3["in_window"]["until"] == FY_END.astimezone(UTC).isoformat()
    assert {d["dataset"]: d["used"] for d in a3["datasets"]} == {
        "JGAD000101": True,
        "JGAD000501": True,
    }


def test_boundary_events_land_in_the_right_year(year):
    """23:59:59(.999999) JST on 31 March is the old year; 00:00:00 JST on 1 April the new."""
    reg, store, clock = year["registry"], year["store"], year["clock"]

    def blocked(fy, aid):
        doc = build_report(reg, store, ReportRequest(fiscal_year=fy, approval_id=aid), clock)
        return approval(doc, aid)["usage"]["downloads_blocked"].get("raw-name", 0), doc

    fy25, _ = blocked(2025, A1)
    assert fy25 == 1  # 2026-03-31 23:59:59.999999 JST
    a1 = [
        e for e in store.events(since=FY_START, until=FY_END, approval_id=A1)
        if e["data"].get("path") == "a.bam"
    ]  # fmt: skip
    assert [e["time"] for e in a1] == ["2026-03-31T15:00:00.000000+00:00"]
    fy27, doc27 = blocked(2027, A3)
    assert fy27 == 1  # 2027-04-01 00:00:00 JST
    # the server running across the end of FY2026 counts in FY2027 from 00:00 to 03:00
    imsut = next(r for r in approval(doc27, A3)["usage"]["by_site"] if r["site"] == "imsut")
    assert imsut["server_hours"] == pytest.approx(3.0)
    fy26 = [e for e in store.events(since=FY_START, until=FY_END, approval_id=A3)
            if e["data"].get("path") == "b.cram"]  # fmt: skip
    assert [e["time"] for e in fy26] == ["2027-03-31T14:59:59.000000+00:00"]


def test_boundaries_on_both_databases(database_url):
    """The [since, until) bounds in UTC on SQLite and PostgreSQL alike."""
    clock = FixedClock(REPORT_TIME)
    store = AuditStore(database_url, clock=clock)
    reg = ApprovalRegistry(database_url, clock=clock)
    try:
        reg.import_policy(load_policy_dir(DEMO_DIR))
        instants = [
            jst(2026, 3, 31, 23, 59, 59, 999999),
            jst(2026, 4, 1, 0, 0, 0),
            jst(2027, 3, 31, 23, 59, 59),
            jst(2027, 4, 1, 0, 0, 0),
        ]
        store.append(
            {
                "event_id": f"b{i}",
                "schema": DOWNLOAD_BLOCKED,
                "version": 1,
                "time": at.isoformat(),
                "user": "tanaka",
                "site": "nig",
                "approval_id": A1,
                "data": {"path": "x.vcf", "route": "files", "reason": "raw-name"},
            }
            for i, at in enumerate(instants)
        )
        counts = {
            fy: approval(
                build_report(reg, store, ReportRequest(fiscal_year=fy, approval_id=A1), clock), A1
            )["usage"]["downloads_blocked_total"]
            for fy in (2025, 2026, 2027)
        }
        assert counts == {2025: 1, 2026: 2, 2027: 1}
    finally:
        store.close()
        reg.close()


def test_jq_rechecks_print_the_figures(report_ja, exported):
    """The `recheck` line of each figure, run with jq over the export, prints its value."""
    path, _ = exported
    done = 0
    for f in approval(report_ja, A1)["figures"]:
        if f["query"]["measure"] == "server-hours" or "/monthly/" in f["id"]:
            continue
        export, _, program = f["recheck"].partition(" | jq -s ")
        assert (
            export
            == f"visiting audit export --since {f['query']['since']} --until {f['query']['until']}"
        )
        out = subprocess.run(
            ["jq", "-s", shlex.split(program)[0], str(path)], capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == f["value"], f["id"]
        done += 1
    assert done > 30


# ---------------------------------------------------------------------------
# the formats


def test_four_formats_and_the_pdf_reads_back_in_japanese(report_ja, tmp_path):
    paths = write_report(report_ja, ["html", "pdf", "csv", "json"], tmp_path / "out")
    names = sorted(p.name for p in paths)
    assert names == [f"usage-report-FY2026-all-ja.{x}" for x in ("csv", "html", "json", "pdf")]
    out = tmp_path / "out"
    doc = json.loads((out / "usage-report-FY2026-all-ja.json").read_text())
    assert doc["approvals"][0]["figures"][0]["query"]["where"]["approval_id"] == A1
    html = (out / "usage-report-FY2026-all-ja.html").read_text()
    for heading in (
        "2026年度 データ利用報告書（年次）",
        "利用状況",
        "セキュリティ",
        "自己点検チェックリスト",
    ):
        assert heading in html
    assert html.count("data:image/png;base64,") == 6  # three charts per approval
    rows = (out / "usage-report-FY2026-all-ja.csv").read_text(encoding="utf-8-sig").splitlines()
    assert rows[0].startswith("approval_id,figure,label,value")
    assert len(rows) == 1 + sum(len(a["figures"]) for a in report_ja["approvals"])

    pdf = out / "usage-report-FY2026-all-ja.pdf"
    extracted = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True)
    assert extracted.returncode == 0, extracted.stderr
    words = extracted.stdout
    for heading in (
        "2026年度 データ利用報告書（年次）",
        "承認番号 J-DU000101",
        "利用状況",
        "セキュリティ",
        "成果発表",
        "自己点検チェックリスト",
        "集計の規則",
    ):
        assert heading in words, heading
    assert "月別・サイト別のサーバー利用時間" in words  # a chart's title
    rendered = subprocess.run(
        ["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", str(pdf), str(tmp_path / "page")],
        capture_output=True,
    )
    assert rendered.returncode == 0, rendered.stderr
    page = next(tmp_path.glob("page*.png"))
    assert page.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(page, ARTIFACTS / "report-FY2026-ja-page1.png")
    shutil.copy(pdf, ARTIFACTS / pdf.name)


def test_english_report(year, tmp_path):
    doc = build_report(
        year["registry"],
        year["store"],
        ReportRequest(
            fiscal_year=2026,
            institution="Example University Graduate School of Medicine",
            lang="en",
        ),
        year["clock"],
    )
    assert [a["approval_id"] for a in doc["approvals"]] == [A1]
    paths = write_report(doc, ["pdf", "html"], tmp_path)
    assert (
        paths[0].name == "usage-report-FY2026-Example-University-Graduate-School-of-Medicine-en.pdf"
    )
    words = subprocess.run(["pdftotext", str(paths[0]), "-"], capture_output=True, text=True).stdout
    for heading in ("Annual data-usage report, fiscal year 2026", "Usage", "Security",
                    "Self-assessment checklist", "Server hours per month and site"):  # fmt: skip
        assert heading in words, heading


def test_final_report_covers_the_whole_period(year, tmp_path):
    reg, store, clock = year["registry"], year["store"], year["clock"]
    doc = build_report(reg, store, ReportRequest(approval_id=A2, final=True, lang="en"), clock)
    r = doc["report"]
    assert (r["kind"], r["label"]) == ("final", "2019-04-01 .. 2021-03-31")
    a2 = approval(doc, A2)
    assert a2["usage"]["sessions"] == 1 and a2["usage"]["server_hours"] == pytest.approx(3.0)
    # the refused kernel came at 2021-04-01 00:00 JST: after the period
    assert a2["security"]["kernel_refused"] == 0
    assert write_report(doc, ["json"], tmp_path)[0].name == "usage-report-final-J-DU000102-en.json"
    with pytest.raises(
        ReportError, match="J-DU000101 has not ended: its period runs to 2035-03-31"
    ):
        build_report(reg, store, ReportRequest(approval_id=A1, final=True), clock)


def test_a_year_without_activity_says_so(year, tmp_path):
    reg, store, clock = year["registry"], year["store"], year["clock"]
    doc = build_report(reg, store, ReportRequest(fiscal_year=2030, approval_id=A1), clock)
    assert doc["report"]["activity"] is False
    assert doc["report"]["summary"] == "この期間の利用記録はありません。"
    assert approval(doc, A1)["usage"]["server_hours"] == 0
    paths = write_report(doc, ["html", "pdf"], tmp_path)
    assert "この期間の利用記録はありません。" in paths[0].read_text()
    words = subprocess.run(["pdftotext", str(paths[1]), "-"], capture_output=True, text=True).stdout
    assert "この期間の利用記録はありません。" in words
    # an institution whose only approval began later: no approval, no activity
    doc = build_report(
        reg,
        store,
        ReportRequest(fiscal_year=2018, institution="Example Genome Institute", lang="en"),
        clock,
    )
    assert (
        doc["approvals"] == []
        and doc["report"]["summary"] == "No activity was recorded in this period."
    )


# ---------------------------------------------------------------------------
# a tampered log, and the command


def tampered_copy(year, tmp_path) -> tuple[str, int]:
    """A copy of the year's database with one FY2026 record changed, as someone with
    database access could; returns its URL and the record's seq."""
    db = tmp_path / "tampered.sqlite"
    shutil.copy(year["url"].removeprefix("sqlite:///"), db)
    url = f"sqlite:///{db}"
    seq = next(
        e["seq"]
        for e in year["store"].events(since=FY_START, until=FY_END, approval_id=A1)
        if e["schema"].endswith("/download-allowed")
    )
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_events SET data = :d WHERE seq = :seq"),
            {"d": '{"path":"plot.png","route":"files","size":1}', "seq": seq},
        )
    engine.dispose()
    return url, seq


def test_a_tampered_log_stops_the_report(year, tmp_path):
    url, seq = tampered_copy(year, tmp_path)
    store = AuditStore(url, clock=year["clock"])
    reg = ApprovalRegistry(url, clock=year["clock"])
    try:
        with pytest.raises(ReportError) as e:
            build_report(reg, store, ReportRequest(fiscal_year=2026), year["clock"])
    finally:
        store.close()
        reg.close()
    assert str(e.value) == (
        f"the audit chain for 2026-04-01 .. 2027-03-31 does not verify: record {seq} was "
        "altered: its hash does not match its content; no report was written"
    )


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_command_writes_the_report(year, capsys, tmp_path, monkeypatch):
    clock_file = tmp_path / "now"
    clock_file.write_text(REPORT_TIME.isoformat())
    monkeypatch.setenv("VISITING_CLOCK_FILE", str(clock_file))
    out = tmp_path / "reports"
    code, stdout, err = run(
        capsys, "report", "--fiscal-year", "2026", "--approval", A3, "--format", "json,csv",
        "--lang", "en", "--output", str(out), "--dir", str(year["policy"]),
        "--database", year["url"],
    )  # fmt: skip
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [
        "usage-report-FY2026-J-DU000103-en.csv",
        "usage-report-FY2026-J-DU000103-en.json",
    ]
    assert f"wrote {out / 'usage-report-FY2026-J-DU000103-en.json'}" in stdout
    assert "1 approval(s)" in stdout


def test_command_refuses_a_tampered_log_and_writes_nothing(year, capsys, tmp_path):
    url, seq = tampered_copy(year, tmp_path)
    out = tmp_path / "reports"
    code, stdout, err = run(
        capsys, "report", "--fiscal-year", "2026", "--output", str(out),
        "--dir", str(year["policy"]), "--database", url,
    )  # fmt: skip
    assert code == 2 and stdout == ""
    assert err.strip().splitlines() == [
        f"visiting: the audit chain for 2026-04-01 .. 2027-03-31 does not verify: record {seq} "
        "was altered: its hash does not match its content; no report was written"
    ]
    assert not out.exists()


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--fiscal-year", "26"], "--fiscal-year: '26' is not a year like 2026"),
        (["--fiscal-year", "2026", "--format", "docx"], "--format: unknown format 'docx'"),
        (["--fiscal-year", "2026", "--format", ""], "--format: unknown format ''"),
        (["--fiscal-year", "2026", "--lang", "fr"], "--lang: 'fr' is not one of ja, en"),
        (["--format", "json"], "give --fiscal-year YEAR (or --approval ID --final)"),
        (["--final"], "--final needs --approval ID"),
        (["--final", "--approval", A1, "--fiscal-year", "2026"], "--final covers the whole"),
        (["--fiscal-year", "2026", "--approval", A1, "--institution", "X"], "either --approval"),
        (
            ["--fiscal-year", "2026", "--approval", "J-NOPE"],
            "--approval: unknown approval 'J-NOPE'",
        ),
        (
            ["--fiscal-year", "2026", "--institution", "Nowhere"],
            "--institution: no approval is held",
        ),
        (["--approval", A1, "--final"], "J-DU000101 has not ended"),
    ],
    ids=[
        "short-year",
        "unknown-format",
        "empty-format",
        "unknown-lang",
        "no-year",
        "final-without-approval",
        "final-with-year",
        "approval-and-institution",
        "unknown-approval",
        "unknown-institution",
        "final-before-end",
    ],
)
def test_command_refuses_bad_flags_in_one_line(year, capsys, tmp_path, argv, message):
    out = tmp_path / "reports"
    code, stdout, err = run(
        capsys, "report", *argv, "--output", str(out), "--dir", str(year["policy"]),
        "--database", year["url"],
    )  # fmt: skip
    assert code == 2 and stdout == ""
    assert len(err.strip().splitlines()) == 1 and message in err
    assert not out.exists()


def test_command_needs_an_output_folder(year, capsys, tmp_path):
    code, _, err = run(capsys, "report", "--fiscal-year", "2026", "--database", year["url"])
    assert code == 2 and "--output DIR is required" in err
    afile = tmp_path / "file"
    afile.write_text("")
    code, _, err = run(
        capsys, "report", "--fiscal-year", "2026", "--output", str(afile), "--database", year["url"]
    )
    assert code == 2 and "exists and is not a folder" in err


# ---------------------------------------------------------------------------
# egress


def expected_ledger(since: datetime, until: datetime) -> dict[tuple, dict[str, int]]:
    """The ledger from what the test sent: per (user, site, channel) the sum over days of
    each day's last line by time, for the lines whose time is in [since, until)."""
    out: dict[tuple, dict[str, int]] = {}
    for (user, site, _aid, day, channel), lines in EGRESS_LINES.items():
        lines = [x for x in lines if since <= jst(*day, x[0], x[1]) < until]
        if not lines:
            continue
        _h, _m, nbytes, contents, people = max(lines)  # the latest line of the day
        row = out.setdefault((user, site, channel), dict(bytes=0, contents=0, people=0, days=0))
        row["bytes"] += nbytes
        row["contents"] += contents
        row["people"] += people
        row["days"] += 1
    return out


def test_egress_ledger_per_handler_site_and_channel(report_ja):
    """The sum of each day's last tally; a line that arrives late with an earlier time is
    not the day's last; 1 April 00:00 JST belongs to the next year."""
    got = {}
    for aid in (A1, A3):
        for r in approval(report_ja, aid)["egress"]["ledger"]:
            got[(r["user"], r["site"], r["channel"])] = {
                k: r[k] for k in ("bytes", "contents", "people", "days")
            }
    assert got == expected_ledger(FY_START, FY_END)
    assert got[("tanaka", "nig", "kernel")]["bytes"] == 5_000
    assert got[("tanaka", "nig", "download")] == {
        "bytes": 350_000_000, "contents": 5, "people": 0, "days": 2,
    }  # fmt: skip
    a1 = approval(report_ja, A1)
    assert a1["egress"]["bytes_total"] == sum(
        v["bytes"] for k, v in got.items() if k[0] == "tanaka"
    )
    assert figure(a1, "egress/bytes/total") == a1["egress"]["bytes_total"]
    assert [r["channel"] for r in a1["egress"]["ledger"] if r["site"] == "nig"] == [
        "download", "kernel", "terminal",
    ]  # fmt: skip


def test_egress_days_at_alert_and_cap_and_blocks(report_ja, exported):
    _, records = exported

    def n(user, site, name, reason=None):
        return sum(
            1
            for r in records
            if (r["user"], r["site"], r["approval_id"]) == (user, site, A1)
            and r["schema"].endswith("/" + name)
        )

    rows = {(r["user"], r["site"]): r for r in approval(report_ja, A1)["egress"]["by_user_site"]}
    nig = rows[("tanaka", "nig")]
    assert (nig["days_alert"], nig["days_cap"], nig["outputs_withheld"]) == (2, 1, 2)
    assert nig["downloads_blocked"] == n("tanaka", "nig", "download-blocked") >= 1
    ncc = rows[("tanaka", "ncc")]
    assert (ncc["days_alert"], ncc["days_cap"], ncc["outputs_withheld"]) == (0, 0, 1)
    assert ncc["downloads_blocked"] == n("tanaka", "ncc", "download-blocked")
    a1 = approval(report_ja, A1)["egress"]
    assert (a1["days_alert"], a1["days_cap"], a1["outputs_withheld"]) == (2, 1, 3)
    # the gate's new reasons read as words in the downloads table
    assert approval(report_ja, A1)["usage"]["downloads_blocked"]["egress-cap"] == 1


def test_egress_line_of_1_april_is_the_next_years(year):
    doc = build_report(
        year["registry"], year["store"], ReportRequest(fiscal_year=2027, approval_id=A3),
        year["clock"],
    )  # fmt: skip
    ledger = approval(doc, A3)["egress"]["ledger"]
    assert [(r["site"], r["channel"], r["bytes"], r["days"]) for r in ledger] == [
        ("imsut", "kernel", 500, 1)
    ]


@pytest.mark.parametrize(
    "lang,words",
    [
        ("ja", ["データの持ち出し（外部への送信量） (J-DU000101)", "取扱者・サイト・チャネル別の送信量",
                "警告に達した日数", "上限に達した日数", "差し止めた出力", "1日の送信上限 (egress-cap)",
                "各日の最後の記録"]),
        ("en", ["Egress (J-DU000101)", "Ledger per handler, site and channel", "Days at the alert",
                "Days at the cap", "Outputs withheld", "the day&#x27;s egress cap (egress-cap)",
                "The last record of each day"]),
    ],
)  # fmt: skip
def test_egress_section_in_both_languages(year, lang, words):
    from hub.report.render import render_html

    doc = build_report(
        year["registry"], year["store"], ReportRequest(fiscal_year=2026, lang=lang), year["clock"]
    )
    html = render_html(doc).decode()
    for w in words:
        assert w in html, w
    assert "333.8 MiB (350,000,000 bytes)" in html  # tanaka's downloads at nig


def test_an_approval_before_the_gate_has_no_ledger(year):
    """sato's year 2020: no ledger line, no alert; the blocked downloads still count."""
    doc = build_report(
        year["registry"], year["store"], ReportRequest(fiscal_year=2020, approval_id=A2),
        year["clock"],
    )  # fmt: skip
    a2 = approval(doc, A2)
    e = a2["egress"]
    assert e["ledger"] == [] and e["bytes_total"] == 0
    assert (e["days_alert"], e["days_cap"], e["outputs_withheld"]) == (0, 0, 0)
    assert (
        sum(r["downloads_blocked"] for r in e["by_user_site"])
        == (a2["usage"]["downloads_blocked_total"])
    )


# ---------------------------------------------------------------------------
# the query-set audit


def expected_audit(aid: str, since: datetime, until: datetime) -> tuple[Counter, list[str]]:
    refused = Counter(
        rule
        for at, _u, _s, a, _t, outcome, rule in AUDIT_QUERIES
        if a == aid and outcome == "refused" and rule and since <= jst(*at) < until
    )
    resets = [r for at, a, r in AUDIT_RESETS if a == aid and since <= jst(*at) < until]
    return refused, resets


def test_query_audit_answers_refusals_by_rule_and_resets(report_ja, exported):
    """Per approval: the federated queries answered (every answered federation-query of
    the year, the gateways' own and the audit's), the audit's refusals per rule (a refusal
    of another code is not one), and the year's resets with their reasons, oldest first."""
    _, records = exported
    for aid in (A1, A3):
        a = approval(report_ja, aid)
        qa = a["query_audit"]
        answered = sum(
            1
            for r in records
            if r["approval_id"] == aid
            and r["schema"] == FEDERATION_QUERY
            and r["data"].get("outcome") == "answered"
        )
        assert qa["answered"] == answered == figure(a, "query_audit/answered") > 0
        refused, resets = expected_audit(aid, FY_START, FY_END)
        assert {r["rule"]: r["queries"] for r in qa["refused"]} == dict(refused)
        assert qa["refused_total"] == sum(refused.values())
        for rule, n in refused.items():
            assert figure(a, f"query_audit/refused/{rule}") == n
        assert [r["reason"] for r in qa["resets"]] == resets
        assert all(r["by"] == "jimu" for r in qa["resets"])
        assert figure(a, "query_audit/resets") == len(resets)
    a1 = approval(report_ja, A1)["query_audit"]
    assert [(r["rule"], r["queries"]) for r in a1["refused"]] == [
        ("isolating_combination", 1),
        ("min_count", 1),  # 10 January; not 31 March 2026 nor 1 April 2027
        ("small_difference", 2),
    ]
    assert [r["at"] for r in a1["resets"]] == [
        jst(2026, 8, 10, 10, 0).astimezone(UTC).isoformat(timespec="microseconds"),
        jst(2027, 2, 1, 9, 30).astimezone(UTC).isoformat(timespec="microseconds"),
    ]
    assert approval(report_ja, A3)["query_audit"]["refused"] == [
        {"rule": "isolating_pair", "queries": 1}
    ]


def test_query_audit_of_the_year_before_and_after(year):
    reg, store, clock = year["registry"], year["store"], year["clock"]
    for fy, since, until in ((2025, jst(2025, 4, 1), FY_START), (2027, FY_END, jst(2028, 4, 1))):
        doc = build_report(reg, store, ReportRequest(fiscal_year=fy, approval_id=A1), clock)
        qa = approval(doc, A1)["query_audit"]
        refused, resets = expected_audit(A1, since, until)
        assert {r["rule"]: r["queries"] for r in qa["refused"]} == dict(refused) == {"min_count": 1}
        assert [r["reason"] for r in qa["resets"]] == resets and len(resets) == 1


@pytest.mark.parametrize(
    "lang,words",
    [
        ("ja", ["照会集合監査 (J-DU000101)", "回答した連合解析クエリ", "照会集合監査が拒否したクエリ",
                "以前の照会との差が少なすぎる (small_difference)",
                "以前の回答との組み合わせで個人を特定できる (isolating_combination)",
                "監査のリセット", "2026-08-10 10:00 JST",
                "ethics board: new sub-study on insulin response", "board decision 2027-03",
                "照会集合監査：回答数は"]),
        ("en", ["Query-set audit (J-DU000101)", "Federated queries answered",
                "Queries refused by the query-set audit",
                "differs from an earlier query by too few people (small_difference)",
                "Resets of the audit", "Reset at", "2027-02-01 09:30 JST",
                "Query-set audit: answered queries are"]),
    ],
)  # fmt: skip
def test_query_audit_section_in_both_languages(year, lang, words):
    from hub.report.render import blocks, render_html

    doc = build_report(
        year["registry"], year["store"], ReportRequest(fiscal_year=2026, lang=lang), year["clock"]
    )
    html = render_html(doc).decode()
    for w in words:
        assert html_escape(w) in html, w
    # the reasons, not who reset: the report is the institution's
    text = json.dumps(blocks(doc), ensure_ascii=False)
    assert "board decision 2027-03" in text
    assert "jimu" not in text
    # a year without any: the section says none
    empty = build_report(
        year["registry"], year["store"],
        ReportRequest(fiscal_year=2030, approval_id=A1, lang=lang), year["clock"],
    )  # fmt: skip
    qa = approval(empty, A1)["query_audit"]
    assert qa == {"answered": 0, "refused": [], "refused_total": 0, "resets": []}
    assert t("qa_resets", lang) in render_html(empty).decode()


# ---------------------------------------------------------------------------
# small parts


def test_report_event_ids_are_guard_schemas():
    """Every guard event the report's tally counts has its schema under extensions/guard/events."""
    from extensions.contracts.events import GUARD_BASE, GUARD_EVENTS
    from extensions.guard.meter import CHANNELS

    ids = [v for k, v in vars(report_tally).items() if k.isupper() and isinstance(v, str)]
    guard = {i.removeprefix(GUARD_BASE) for i in ids if i.startswith(GUARD_BASE)} - {""}
    assert guard >= {"egress-tally", "egress-alert", "egress-cap", "output-withheld"}
    assert guard <= set(GUARD_EVENTS)
    assert EGRESS_CHANNELS == CHANNELS


def test_pairing_rule():
    since, bound = datetime(2026, 3, 31, 15, tzinfo=UTC), datetime(2026, 4, 30, tzinfo=UTC)

    def iso(day, hour):
        return datetime(2026, 4, day, hour, tzinfo=UTC).isoformat(timespec="microseconds")

    marks = [
        ("2026-03-30T00:00:00.000000+00:00", 1, "before:start"),  # running at the start
        (iso(1, 0), 2, "stop"),
        (iso(2, 0), 3, "stop"),  # closes nothing
        (iso(3, 0), 4, "start"),
        (iso(3, 5), 5, "start"),  # the first had no stop: it ends here
        (iso(3, 6), 6, "estop"),
        (iso(9, 0), 7, "start"),  # never stopped: runs to the bound
    ]
    sessions, unpaired = pair_sessions("u", "nig", marks, since, bound)
    assert unpaired == 1
    got = [(s.start.isoformat(), s.end.isoformat(), s.ended_by, s.carried_in) for s in sessions]
    assert got == [
        (since.isoformat(), iso(1, 0).replace(".000000", ""), "server-stop", True),
        (iso(3, 0).replace(".000000", ""), iso(3, 5).replace(".000000", ""), "next-start", False),
        (
            iso(3, 5).replace(".000000", ""),
            iso(3, 6).replace(".000000", ""),
            "enforcement-stop",
            False,
        ),
        (iso(9, 0).replace(".000000", ""), bound.isoformat(), "bound", False),
    ]


def test_months_of_a_fiscal_year_are_japan_months():
    months = month_starts(FY_START.astimezone(UTC), FY_END.astimezone(UTC))
    assert len(months) == 13
    assert months[0] == FY_START and months[-1] == FY_END
    assert months[6] == jst(2026, 10, 1)


def test_wrap_breaks_latin_at_spaces_and_japanese_anywhere():
    lines = wrap("the quick brown fox jumps over the lazy dog", 1.0, 10)
    assert all(len(line) <= 16 for line in lines) and " ".join(lines).split() == (
        "the quick brown fox jumps over the lazy dog".split()
    )
    ja = "データ取扱者の変更は事務局に届け出た。" * 3
    lines = wrap(ja, 1.5, 10)
    assert "".join(lines) == ja and len(lines) > 3
