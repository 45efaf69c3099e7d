"""The egress events: the meter's readings and ledger lines as versioned events, through the
guard's event path and the audit intake into the audit store, and the secretariat's listing
of alerts and caps on the admin page.

Rule checked: "Security" and "Violations" (POLICY.md): the secretariat hears of a server
that sends out much, or shows many people's rows, the day it happens; the ledger is in the
audit store. Time moves by a clock, never by sleeping.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
import yaml
from jupyter_events import EventLogger
from markupsafe import escape

from extensions.contracts.clock import JST, FixedClock
from extensions.contracts.egress import EgressRules
from extensions.contracts.events import GUARD_BASE
from extensions.guard.context import ServerContext
from extensions.guard.events import (
    SCHEMA_DIR,
    ActivityEvents,
    EventSpool,
    SpoolHandler,
)
from extensions.guard.meter import EgressMeter
from hub.platform.messages import message
from hub.services.admin.figures import EGRESS_DAYS, egress_alerts, egress_since, mib
from hub.services.admin.pages import PageHandler
from hub.services.audit.checks import check_events
from hub.store.audit import AuditStore

MIB = 1024**2
RULES = EgressRules(alert_bytes=10 * MIB, cap_bytes=40 * MIB, alert_people=5, cap_people=20)


def jst(*args) -> datetime:
    return datetime(*args, tzinfo=JST)


def digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


class Server:
    """One researcher's server: its meter, and its events through the guard's event path
    and the intake's checks into the audit store."""

    def __init__(self, store: AuditStore, clock: FixedClock, tmp: Path, user: str, site: str):
        self.store, self.clock, self.user, self.site = store, clock, user, site
        context = ServerContext(
            user=user, site=site, approval_id="J-DU000101", approval_end=None, end_date=None
        )
        logger = EventLogger()
        self.arrived: list[dict] = []
        logger.register_handler(
            SpoolHandler(EventSpool(tmp / f"spool-{user}-{site}"), on_event=self.arrived.append)
        )
        self.events = ActivityEvents(logger, context, clock)
        self.meter = EgressMeter(RULES, clock, tmp / f"meter-{user}-{site}.json")

    def send(self, at: datetime, channel: str, name: str, nbytes: int, people=()) -> None:
        """What the gate does for one response or message: count it, report crossings."""
        self.clock.move_to(at)
        reading = self.meter.count(channel, digest(name), nbytes, [digest(p) for p in people])
        for level in reading.crossed:
            self.events.emit(f"egress-{level}", **reading.event_data(level))
        self.ship()

    def tallies(self, force: bool = False) -> None:
        for t in self.meter.tallies(force=force):
            self.events.emit("egress-tally", at=t.at, **t.event_data())
        self.ship()

    def ship(self) -> None:
        batch, self.arrived[:] = list(self.arrived), []
        assert check_events(batch, self.user, self.site) is None
        self.store.append(batch)


@pytest.fixture
def store(tmp_path):
    clock = FixedClock(jst(2026, 6, 1, 9, 0))
    s = AuditStore(f"sqlite:///{tmp_path / 'audit.sqlite'}", clock=clock)
    yield s, clock
    s.close()


def stored(store: AuditStore, name: str) -> list[dict]:
    return list(store.events(schema=GUARD_BASE + name))


def test_alert_cap_and_ledger_reach_the_audit_store(store, tmp_path):
    audit, clock = store
    tanaka = Server(audit, clock, tmp_path, "tanaka", "nig")
    tanaka.send(jst(2026, 6, 1, 10, 0), "kernel", "plot", 2 * MIB)
    tanaka.send(jst(2026, 6, 1, 10, 1), "kernel", "plot", 2 * MIB)  # re-shown: adds nothing
    tanaka.tallies()
    tanaka.send(jst(2026, 6, 1, 11, 0), "download", "archive.bin", 9 * MIB)  # the alert
    tanaka.send(jst(2026, 6, 1, 12, 0), "download", "archive2.bin", 30 * MIB)  # the cap
    tanaka.send(jst(2026, 6, 1, 12, 5), "download", "archive3.bin", 30 * MIB)  # withheld
    clock.move_to(jst(2026, 6, 2, 0, 0, 5))
    tanaka.tallies()  # the day is over: its last lines
    alerts, caps = stored(audit, "egress-alert"), stored(audit, "egress-cap")
    assert [(e["data"]["day"], e["data"]["bytes"]) for e in alerts] == [("2026-06-01", 11 * MIB)]
    assert [(e["data"]["day"], e["data"]["bytes"]) for e in caps] == [("2026-06-01", 41 * MIB)]
    assert caps[0]["time"] == jst(2026, 6, 1, 12, 0).astimezone(UTC).isoformat(
        timespec="microseconds"
    )
    lines = [
        (e["data"]["channel"], e["data"]["bytes"], e["data"]["contents"], e["time"][:16])
        for e in stored(audit, "egress-tally")
    ]
    assert lines == [
        ("kernel", 2 * MIB, 1, "2026-06-01T01:00"),
        # the closing lines carry their last count's time: inside 1 June in Japan
        ("download", 39 * MIB, 2, "2026-06-01T03:00"),
    ]
    assert audit.verify().ok


def test_the_gate_records_validate_against_their_schemas():
    """The gate writes its records straight to its spool (extensions/guard/gate/proxy.py
    GateEvents): the same fields must validate against the versioned schemas."""
    schemas = {p.stem: yaml.safe_load(p.read_text()) for p in SCHEMA_DIR.glob("*.yaml")}
    common = {
        "event_id": "0" * 32,
        "user": "tanaka",
        "site": "nig",
        "approval_id": "J-DU000101",
        "time": "2026-06-01T01:00:00+00:00",
    }
    meter = EgressMeter(RULES, FixedClock(jst(2026, 6, 1, 10, 0)), None)
    reading = meter.count("kernel", digest("x"), 50 * MIB, [digest("a")])
    samples = {
        "egress-alert": reading.event_data("alert"),
        "egress-cap": reading.event_data("cap"),
        "egress-tally": meter.tallies()[0].event_data(),
        "gate-start": {"pid": 7, "cohort_people": 200, "terminals": "off"},
        "output-withheld": {
            "channel": "widget",
            "msg_type": "comm_msg",
            "kind": "people",
            "detail": "rows of 40 people of the cohort at once (at most 10 may be shown)",
        },
        "download-blocked": {
            "path": "api/contents/copy.tsv",
            "route": "gate",
            "reason": "individual-level",
            "kind": "people",
            "detail": "a table naming 200 people of the cohort",
        },
    }
    for name, data in samples.items():
        jsonschema.validate(common | data, schemas[name])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(common | {"channel": "screen", "kind": "people"},
                            schemas["output-withheld"])  # fmt: skip
    for name in ("egress-alert", "egress-cap", "egress-tally", "output-withheld", "gate-start"):
        assert schemas[name]["$id"] == GUARD_BASE + name and schemas[name]["version"] == "1"
        assert schemas[name]["personal-data"] is True


# ---------------------------------------------------------------------------
# the admin page


def test_the_secretariat_sees_one_row_per_person_site_and_day(store, tmp_path):
    audit, clock = store
    tanaka = Server(audit, clock, tmp_path, "tanaka", "nig")
    tanaka.send(jst(2026, 6, 1, 10, 0), "download", "a", 12 * MIB)  # alert on 1 June
    tanaka.send(jst(2026, 6, 1, 23, 0), "download", "b", 30 * MIB)  # cap on 1 June
    tanaka.send(jst(2026, 6, 2, 9, 0), "kernel", "c", 11 * MIB)  # alert on 2 June
    suzuki = Server(audit, clock, tmp_path, "suzuki", "imsut")
    people = [f"NIG-{i:06d}" for i in range(6)]
    suzuki.send(jst(2026, 6, 2, 8, 0), "kernel", "rows", 3_000, people)  # alert by people
    suzuki.send(jst(2026, 4, 1, 8, 0), "kernel", "old", 20 * MIB)  # two months before
    rows = egress_alerts(audit, egress_since(jst(2026, 6, 2, 12, 0), EGRESS_DAYS))
    got = [(r["day"], r["user"], r["site"], r["level"], r["bytes"], r["reached_by"]) for r in rows]
    assert got == [
        ("2026-06-02", "tanaka", "nig", "alert", 11 * MIB, ["bytes"]),
        ("2026-06-02", "suzuki", "imsut", "alert", 3_000, ["people"]),
        ("2026-06-01", "tanaka", "nig", "cap", 42 * MIB, ["bytes"]),
    ]
    assert rows[1]["people"] == 6 and rows[0]["approval_id"] == "J-DU000101"
    # the period is whole Japan-time days: 30 days to 2 June start on 4 May 00:00 JST
    assert egress_since(jst(2026, 6, 2, 12, 0), 30) == jst(2026, 5, 4)
    assert egress_since(datetime(2026, 6, 1, 15, 0, tzinfo=UTC), 1) == jst(2026, 6, 2)


def page(**ctx) -> str:
    base = {
        "user": "jimu",
        "roles": ["secretariat"],
        "platform": type("P", (), {"name": "Visiting (test)"})(),
        "prefix": "/services/admin/",
        "xsrf": "",
        "flash": "",
        "secretariat": True,
        "today": "2026-06-02",
        "fiscal_year": 2026,
        "sites": [],
        "services": None,
        "approvals": [],
        "suspensions": [],
        "institutions": [],
        "form": "",
        "errors": {},
        "values": {},
        "egress_days": EGRESS_DAYS,
    }
    return PageHandler.env.get_template("admin.html").render(**(base | ctx))


def test_the_page_lists_alerts_and_caps_in_both_languages():
    rows = [
        {"user": "tanaka", "site": "nig", "day": "2026-06-01", "level": "cap",
         "bytes": 42 * MIB, "people": 0, "reached_by": ["bytes"],
         "time": "2026-06-01T14:00:00.000000+00:00", "approval_id": "J-DU000101"},
        {"user": "suzuki", "site": "imsut", "day": "2026-06-01", "level": "alert",
         "bytes": 3_000, "people": 6, "reached_by": ["people"],
         "time": "2026-06-01T00:00:00.000000+00:00", "approval_id": "J-DU000103"},
    ]  # fmt: skip
    html = page(egress=rows)
    title = message("admin.egress.title", days=EGRESS_DAYS)
    assert f"{title.ja} / {title.en}" in html
    assert 'data-user="tanaka" data-site="nig" data-day="2026-06-01" data-level="cap"' in html
    assert "上限（出力停止） / cap: outputs withheld" in html
    assert "警告 / alert" in html and "人数 / people" in html
    assert "42.0 MiB" in html and "2026-06-01 23:00:00 JST" in html
    assert str(escape(message("admin.egress.note").en)) in html
    empty = page(egress=[])
    assert message("admin.egress.none").ja in empty and 'data-level="' not in empty


def test_sizes_on_the_page():
    assert mib(None) == "—" and mib(3 * MIB // 2) == "1.5 MiB" and mib(0) == "0.0 MiB"


def test_an_hour_later_is_the_same_day(store, tmp_path):
    """Moving the clock inside the Japan-time day reports nothing again."""
    audit, clock = store
    s = Server(audit, clock, tmp_path, "tanaka", "nig")
    s.send(jst(2026, 6, 1, 10, 0), "download", "a", 12 * MIB)
    s.send(jst(2026, 6, 1, 10, 0) + timedelta(hours=1), "download", "b", 1 * MIB)
    assert len(stored(audit, "egress-alert")) == 1
