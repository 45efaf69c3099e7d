"""The export airlock's store (hub.store.exports) on SQLite and on PostgreSQL.

Rules checked: "Publication" (a request passes submitted, checked, under review and
approved, then released on the first download), "Security" (a refused act leaves the
request and its reviews as they were; two decisions of one person are never both
written), "Changes" (every change is an audit event naming who acted and why). Time moves
by a clock.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from extensions.contracts.clock import FixedClock
from extensions.contracts.events import (
    EXPORT_CHECKED,
    EXPORT_RELEASE,
    EXPORT_REQUEST,
    EXPORT_REVIEW,
    EXPORT_WITHDRAW,
)
from extensions.contracts.export import CheckResult, FrozenFile, Manifest
from hub.platform.airlock import (
    BadExportInput,
    ExportNotAllowed,
    ExportNotFound,
    ExportRefusal,
    ExportWrongState,
)
from hub.store.audit import AuditStore
from hub.store.exports import ExportStore

NOW = datetime(2026, 6, 2, 3, 0, tzinfo=UTC)
NIG_ADMIN, SECRETARIAT = ("site-admin:nig",), ("secretariat",)


@pytest.fixture
def stores(database_url):
    clock = FixedClock(NOW)
    audit = AuditStore(database_url, clock=clock)
    store = ExportStore(database_url, audit=audit, clock=clock)
    yield store, audit
    store.close()
    audit.close()


def manifest(request_id: str, failed: bool = False) -> Manifest:
    files = (
        FrozenFile("results/table.csv", 120, "a" * 64, "text/csv", (CheckResult("kind", True),)),
        FrozenFile(
            "fig.png", 2048, "b" * 64, "image/png", (CheckResult("disclosure", not failed, "x"),)
        ),
    )
    return Manifest(request_id, files)


def checked(store, failed=False, requester="tanaka", site="nig"):
    store.clock.advance(timedelta(minutes=1))
    req = store.create(requester, site, "figures for a paper", ["results/table.csv", "fig.png"])
    return store.record_manifest(req.id, manifest(req.id, failed))


def snapshot(store, request_id):
    req = store.get(request_id)
    return req.state, req.reviews, req.decided_at, req.released_at


def test_a_request_from_submission_to_release(stores):
    store, audit = stores
    req = store.create(
        "tanaka", "nig", " figures for a paper ", ["./results//table.csv", "fig.png"]
    )
    assert (req.state, req.paths, req.purpose) == (
        "submitted",
        ("results/table.csv", "fig.png"),
        "figures for a paper",
    )
    assert req.created_at == NOW and req.manifest is None
    req = store.record_manifest(req.id, manifest(req.id))
    assert req.state == "checked" and req.checked_at == NOW
    assert [f.sha256 for f in req.manifest.files] == ["a" * 64, "b" * 64]
    store.clock.advance(timedelta(hours=1))
    req = store.review(req.id, "admin_nig", NIG_ADMIN, "approve", "looks fine")
    assert req.state == "under-review" and req.decided_at is None
    req = store.review(req.id, "jimu", SECRETARIAT, "approve")
    assert req.state == "approved" and req.decided_at == NOW + timedelta(hours=1)
    assert [(r.reviewer, r.role, r.decision) for r in req.reviews] == [
        ("admin_nig", "site-admin", "approve"),
        ("jimu", "secretariat", "approve"),
    ]
    store.clock.advance(timedelta(days=1))
    req = store.mark_released(req.id, "tanaka", "fig.png")
    assert req.state == "released" and req.released_at == NOW + timedelta(days=1, hours=1)
    store.clock.advance(timedelta(hours=1))
    again = store.mark_released(req.id, "tanaka", "results/table.csv")
    assert again.released_at == req.released_at  # the first download is the release

    events = list(audit.events())
    assert [e["schema"] for e in events] == [
        EXPORT_REQUEST, EXPORT_CHECKED, EXPORT_REVIEW, EXPORT_REVIEW, EXPORT_RELEASE,
        EXPORT_RELEASE,
    ]  # fmt: skip
    assert {e["user"] for e in events} == {"tanaka"} and {e["site"] for e in events} == {"nig"}
    assert [e["actor"] for e in events] == [
        "tanaka", "export", "admin_nig", "jimu", "tanaka", "tanaka"
    ]  # fmt: skip
    assert events[2]["data"] | {"request_id": None} == {
        "request_id": None, "round": 1, "role": "site-admin", "decision": "approve",
        "reason": "looks fine", "override": "", "state": "under-review",
    }  # fmt: skip
    assert [e["data"]["first"] for e in events[4:]] == [True, False]
    assert events[4]["data"]["file"] == "fig.png"
    # what left, by size and hash; and what was asked, by files and bytes
    assert (events[4]["data"]["bytes"], events[4]["data"]["sha256"]) == (2048, "b" * 64)
    assert (events[1]["data"]["files"], events[1]["data"]["bytes"]) == (2, 2168)
    assert audit.verify().ok


def test_the_queue_and_the_requesters_list(stores):
    store, _ = stores
    a = checked(store)
    b = checked(store, requester="yamada", site="ncc")
    store.clock.advance(timedelta(minutes=1))
    c = store.create("tanaka", "nig", "later", ["x.csv"])  # still freezing
    store.review(a.id, "admin_nig", NIG_ADMIN, "approve")
    assert [r.id for r in store.queue_for("jimu", SECRETARIAT)] == [a.id, b.id]
    assert store.queue_for("admin_nig", NIG_ADMIN) == []  # decided on a; b is not its site
    assert [r.id for r in store.queue_for("admin_ncc", ("site-admin:ncc",))] == [b.id]
    assert [r.id for r in store.queue_for("yamada", SECRETARIAT)] == [a.id]  # not their own
    assert [r.id for r in store.list_for_requester("tanaka")] == [c.id, a.id]
    assert store.get("nope") is None


REFUSED = [
    # (id, act, refusal, key)
    ("self-review", lambda s, i: s.review(i, "tanaka", SECRETARIAT, "approve"),
     ExportNotAllowed, "export.own_request"),
    ("site-admin-of-another-site",
     lambda s, i: s.review(i, "admin_ncc", ("site-admin:ncc",), "approve"),
     ExportNotAllowed, "export.not_reviewer"),
    ("second-review-by-the-same-person",
     lambda s, i: s.review(i, "admin_nig", NIG_ADMIN, "reject", "no"),
     ExportNotAllowed, "export.already_reviewed"),
    ("a-role-approves-once", lambda s, i: s.review(i, "admin_nig2", NIG_ADMIN, "approve"),
     ExportWrongState, "export.role_done"),
    ("failed-check-without-override", lambda s, i: s.review(i, "jimu", SECRETARIAT, "approve"),
     BadExportInput, "export.override_needed"),
    ("suspended-requester-frozen",
     lambda s, i: s.review(i, "jimu", SECRETARIAT, "approve", override="ok",
                           requester_suspended=True),
     ExportWrongState, "export.frozen"),
    ("withdraw-by-another", lambda s, i: s.withdraw(i, "jimu"),
     ExportNotAllowed, "export.not_requester"),
    ("release-before-approval", lambda s, i: s.mark_released(i, "tanaka"),
     ExportWrongState, "export.not_approved"),
    ("manifest-twice", lambda s, i: s.record_manifest(i, manifest(i)),
     ExportWrongState, "export.closed"),
    ("unknown-request", lambda s, i: s.review("nope", "jimu", SECRETARIAT, "approve"),
     ExportNotFound, "export.not_found"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("act", "refusal", "key"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_a_refused_act_changes_nothing(stores, act, refusal, key):
    store, audit = stores
    req = checked(store, failed=True)
    store.review(req.id, "admin_nig", NIG_ADMIN, "approve", override="variant counts")
    before, events = snapshot(store, req.id), audit.count()
    with pytest.raises(refusal) as e:
        act(store, req.id)
    assert e.value.key == key
    assert snapshot(store, req.id) == before and audit.count() == events


def test_reject_withdraw_and_the_release_window(stores):
    store, audit = stores
    rejected = checked(store)
    store.review(rejected.id, "jimu", SECRETARIAT, "reject", "a table of 3 people")
    assert store.get(rejected.id).state == "rejected"
    with pytest.raises(ExportWrongState):
        store.mark_released(rejected.id, "tanaka")
    withdrawn = checked(store)
    assert store.withdraw(withdrawn.id, "tanaka").state == "withdrawn"
    [event] = audit.events(schema=EXPORT_WITHDRAW)
    assert (event["actor"], event["data"]["request_id"]) == ("tanaka", withdrawn.id)
    with pytest.raises(ExportWrongState):
        store.withdraw(withdrawn.id, "tanaka")
    late = checked(store)
    store.review(late.id, "admin_nig", NIG_ADMIN, "approve")
    store.review(late.id, "jimu", SECRETARIAT, "approve")
    store.clock.advance(timedelta(days=7))
    with pytest.raises(ExportWrongState) as e:
        store.mark_released(late.id, "tanaka")
    assert e.value.key == "export.release_expired"
    assert store.get(late.id).state == "approved"


def test_bad_input_is_refused_before_anything_is_stored(stores):
    store, audit = stores
    with pytest.raises(BadExportInput) as e:
        store.create("tanaka", "nig", "paper", ["fig.png", "../../etc/passwd"])
    assert e.value.field == "paths[1]"
    with pytest.raises(BadExportInput):
        store.create("tanaka", "nig", "  ", ["fig.png"])
    assert store.list_for_requester("tanaka") == [] and audit.count() == 0
    req = store.create("tanaka", "nig", "paper", ["fig.png"])
    with pytest.raises(ValueError, match="not "):
        store.record_manifest(req.id, manifest("other"))


def test_two_reviewers_at_once_never_both_fill_one_role(stores):
    store, _ = stores
    req = checked(store)
    results: list = []

    def approve(who):
        try:
            results.append(store.review(req.id, who, NIG_ADMIN, "approve").state)
        except ExportRefusal as e:
            results.append(e.key)

    threads = [threading.Thread(target=approve, args=(w,)) for w in ("admin_nig", "admin_nig2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["export.role_done", "under-review"]
    assert len(store.get(req.id).reviews) == 1
