"""The report's export-airlock part ("Results taken out"): requests, files, decisions,
outcomes and the median time to a decision, per approval, from the records the export
service writes (hub/store/exports.py), each figure against its query over the export; the
final report's list of released files; both languages; nothing when there were none."""

from __future__ import annotations

import json
import shutil
import statistics
import uuid
from datetime import datetime

import pytest

from extensions.contracts.clock import JST, FixedClock
from extensions.contracts.events import (
    EXPORT_CHECKED,
    EXPORT_RELEASE,
    EXPORT_REQUEST,
    EXPORT_REVIEW,
    EXPORT_WITHDRAW,
)
from hub.platform.policy import load_policy_dir
from hub.report import ReportRequest, build_report, write_report
from hub.report.layout import blocks
from hub.store.audit import AuditStore
from hub.store.registry import ApprovalRegistry
from tests.conftest import DEMO_DIR
from tests.unit.hub.report.test_report import evaluate, matches

A1, A2, A3 = "J-DU000101", "J-DU000102", "J-DU000103"
FY_START = datetime(2026, 4, 1, tzinfo=JST)
FY_END = datetime(2027, 4, 1, tzinfo=JST)


def jst(*args) -> datetime:
    return datetime(*args, tzinfo=JST)


class Airlock:
    """Writes the export service's records as hub.store.exports.ExportStore does."""

    def __init__(self, store: AuditStore):
        self.store = store

    def record(self, schema, user, actor, site, at, data):
        self.store.append(
            [
                {
                    "event_id": uuid.uuid4().hex,
                    "schema": schema,
                    "version": 1,
                    "time": at.astimezone(JST).isoformat(),
                    "user": user,
                    "site": site,
                    "actor": actor,
                    "data": data,
                }
            ]
        )

    def request(self, rid, user, site, at, files, paths=("out/a.csv",)):
        self.record(EXPORT_REQUEST, user, user, site, at,
                    {"request_id": rid, "state": "submitted", "paths": list(paths),
                     "purpose": "figures for the paper"})  # fmt: skip
        self.record(EXPORT_CHECKED, user, "export", site, at,
                    {"request_id": rid, "state": "checked", "files": files,
                     "bytes": 1000 * files, "failed": [], "error": None})  # fmt: skip

    def review(self, rid, user, site, at, decision, state, reviewer="rev", role="data-steward"):
        self.record(EXPORT_REVIEW, user, reviewer, site, at,
                    {"request_id": rid, "round": 1, "role": role, "decision": decision,
                     "reason": "" if decision == "approve" else "why", "override": "",
                     "state": state})  # fmt: skip

    def withdraw(self, rid, user, site, at):
        self.record(
            EXPORT_WITHDRAW, user, user, site, at, {"request_id": rid, "state": "withdrawn"}
        )

    def release(self, rid, user, site, at, name, first):
        self.record(EXPORT_RELEASE, user, user, site, at,
                    {"request_id": rid, "state": "released", "file": name, "first": first,
                     "bytes": len(name), "sha256": f"sha-{name}"})  # fmt: skip


@pytest.fixture(scope="module")
def airlock(tmp_path_factory):
    base = tmp_path_factory.mktemp("report-exports")
    policy = base / "policy"
    shutil.copytree(DEMO_DIR, policy)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISITING_STATE_DIR", str(base / "state"))
        mp.setenv("VISITING_DATA_ROOT", str(base / "data"))
        mp.delenv("VISITING_DATABASE_URL", raising=False)
        url = f"sqlite:///{base / 'registry.sqlite'}"
        clock = FixedClock(jst(2026, 3, 1, 9, 0))
        registry = ApprovalRegistry(url, clock=clock)
        store = AuditStore(url, clock=clock)
        registry.import_policy(load_policy_dir(policy))
        a = Airlock(store)
        # FY2025: not counted in FY2026
        a.request("r0", "tanaka", "nig", jst(2026, 3, 31, 23, 0), 9)
        # r1: approved by two reviewers after 24 hours, then downloaded (three downloads)
        a.request("r1", "tanaka", "nig", jst(2026, 5, 1, 10, 0), 2, ("out/a.csv", "out/b.png"))
        a.review("r1", "tanaka", "nig", jst(2026, 5, 1, 15, 0), "approve", "under-review")
        a.review("r1", "tanaka", "nig", jst(2026, 5, 2, 10, 0), "approve", "approved",
                 reviewer="rev2", role="site-admin")  # fmt: skip
        a.release("r1", "tanaka", "nig", jst(2026, 5, 3, 9, 0), "a.csv", True)
        a.release("r1", "tanaka", "nig", jst(2026, 5, 3, 9, 5), "a.csv", False)
        a.release("r1", "tanaka", "nig", jst(2026, 5, 4, 9, 0), "b.png", False)
        # r2: changes asked, then rejected 6 hours after the request
        a.request("r2", "yamada", "ncc", jst(2026, 6, 1, 10, 0), 3)
        a.review("r2", "yamada", "ncc", jst(2026, 6, 1, 12, 0), "changes", "changes-requested")
        a.review("r2", "yamada", "ncc", jst(2026, 6, 1, 16, 0), "reject", "rejected")
        # r3: withdrawn
        a.request("r3", "tanaka", "ncgm", jst(2026, 7, 1, 10, 0), 1)
        a.withdraw("r3", "tanaka", "ncgm", jst(2026, 7, 2, 10, 0))
        # r4: approved after 12 hours, never downloaded
        a.request("r4", "tanaka", "nig", jst(2026, 8, 1, 9, 0), 4)
        a.review("r4", "tanaka", "nig", jst(2026, 8, 1, 21, 0), "approve", "approved")
        # at a site of none of tanaka's approvals: not counted
        a.request("rx", "tanaka", "imsut", jst(2026, 9, 1, 9, 0), 5)
        # sato's approval (2019-2021): one released request
        a.request("s1", "sato", "ncc", jst(2020, 5, 1, 9, 0), 2)
        a.review("s1", "sato", "ncc", jst(2020, 5, 1, 11, 30), "approve", "approved")
        a.release("s1", "sato", "ncc", jst(2020, 5, 2, 9, 0), "table1.csv", True)
        a.release("s1", "sato", "ncc", jst(2020, 5, 2, 9, 1), "fig1.pdf", False)
        clock.move_to(jst(2027, 4, 10, 9, 0))
        yield {"registry": registry, "store": store, "clock": clock, "base": base}
        registry.close()
        store.close()


def report(airlock, **kw):
    return build_report(
        airlock["registry"], airlock["store"], ReportRequest(**kw), airlock["clock"]
    )


def approval(doc, aid):
    return next(a for a in doc["approvals"] if a["approval_id"] == aid)


def figures(a) -> dict:
    prefix = f"{a['approval_id']}/exports/"
    return {f["id"].removeprefix(prefix): f for f in a["figures"] if f["id"].startswith(prefix)}


def exported(airlock, since, until) -> list[dict]:
    path = airlock["base"] / f"{since:%Y}.jsonl"
    with open(path, "w", encoding="utf-8") as out:
        airlock["store"].export(out, since=since, until=until)
    return [json.loads(line) for line in path.read_text().splitlines()]


def median_hours(records: list[dict], query: dict) -> float:
    """The median rule, read independently: per request, its request to its first review
    that approved or rejected it."""
    asked, settled = {}, {}
    for r in sorted((r for r in records if matches(r, query)), key=lambda r: r["seq"]):
        rid = r["data"]["request_id"]
        if r["schema"] == EXPORT_REQUEST:
            asked.setdefault(rid, r["time"])
        elif r["data"]["state"] in ("approved", "rejected"):
            settled.setdefault(rid, r["time"])
    hours = [
        (datetime.fromisoformat(settled[k]) - datetime.fromisoformat(v)).total_seconds() / 3600
        for k, v in asked.items()
        if k in settled
    ]
    return round(statistics.median(hours), 2) if hours else 0


def test_every_export_figure_per_approval(airlock):
    doc = report(airlock, fiscal_year=2026, lang="en")
    a1 = approval(doc, A1)
    assert a1["exports"] == {
        "requests": 4,
        "files": 10,
        "bytes": 10_000,
        "decisions": {"approve": 3, "reject": 1, "changes": 1},
        "released": 1,
        "rejected": 1,
        "withdrawn": 1,
        "median_decision_hours": 12.0,  # of 24, 6 and 12
    }
    values = {k: f["value"] for k, f in figures(a1).items()}
    assert values == {
        "requests": 4,
        "files": 10,
        "bytes": 10_000,
        "decisions/approve": 3,
        "decisions/reject": 1,
        "decisions/changes": 1,
        "released": 1,
        "rejected": 1,
        "withdrawn": 1,
        "median_decision_hours": 12.0,
    }
    # the annual report has no list of files
    assert "released_files" not in a1["exports"]


def test_every_export_figure_equals_its_query(airlock):
    doc = report(airlock, fiscal_year=2026, lang="ja")
    records = exported(airlock, FY_START, FY_END)
    figs = figures(approval(doc, A1))
    assert len(figs) == 10
    for name, f in figs.items():
        q = f["query"]
        assert q["where"]["approval_id"] is None and "tanaka" in q["where"]["user"]
        if q["measure"] == "median-hours":
            assert q["rule"] == "export-decision"
            assert median_hours(records, q) == f["value"]
        else:
            assert evaluate(records, q) == f["value"], name
        assert f["recheck"].startswith("visiting audit export")


def test_no_export_records_no_export_part(airlock):
    # sato's approval in FY2026: its request was in 2020
    doc = report(airlock, fiscal_year=2026, approval_id=A2, lang="en")
    a2 = approval(doc, A2)
    assert "exports" not in a2 and not figures(a2)
    html = write_report(doc, ["html"], airlock["base"] / "none")[0].read_text()
    assert "Results taken out" not in html
    doc = report(airlock, fiscal_year=2026, lang="en")
    html = write_report(doc, ["html"], airlock["base"] / "a1")[0].read_text()
    assert "Results taken out" in html


def test_final_report_lists_released_files(airlock):
    doc = report(airlock, approval_id=A2, final=True, lang="en")
    e = approval(doc, A2)["exports"]
    assert (e["requests"], e["files"], e["released"], e["median_decision_hours"]) == (1, 2, 1, 2.5)
    assert e["decisions"] == {"approve": 1, "reject": 0, "changes": 0}
    assert [(f["request_id"], f["name"], f["bytes"], f["sha256"]) for f in e["released_files"]] == [
        ("s1", "table1.csv", 10, "sha-table1.csv"),
        ("s1", "fig1.pdf", 8, "sha-fig1.pdf"),
    ]
    at = [datetime.fromisoformat(f["released_at"]) for f in e["released_files"]]
    assert at == [jst(2020, 5, 2, 9, 0), jst(2020, 5, 2, 9, 1)]
    records = exported(airlock, datetime(2019, 4, 1, tzinfo=JST), datetime(2021, 4, 1, tzinfo=JST))
    for f in figures(approval(doc, A2)).values():
        if f["query"]["measure"] != "median-hours":
            assert evaluate(records, f["query"]) == f["value"]


@pytest.mark.parametrize(
    "lang, words",
    [
        ("ja", ["成果物の持ち出し", "持ち出し申請", "申請から判断までの時間（中央値、時間）",
                "持ち出されたファイル", "table1.csv", "2020-05-02 09:00 JST", "申請されたバイト数",
                "sha-table1.csv"]),
        ("en", ["Results taken out", "Export requests", "Median time from request to decision",
                "Files released", "table1.csv", "2020-05-02 09:00 JST", "Bytes requested",
                "sha-table1.csv"]),
    ],
)  # fmt: skip
def test_export_part_in_both_languages(airlock, lang, words):
    doc = report(airlock, approval_id=A2, final=True, lang=lang)
    text = json.dumps(blocks(doc), ensure_ascii=False)
    for w in words:
        assert w in text
    kv = next(b for b in blocks(doc) if b[0] == "kv" and any("2.50" == v for _, v in b[1]))
    assert len(kv[1]) == 10
