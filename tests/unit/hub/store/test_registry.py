"""The approval registry with a moved clock, idempotent import and recorded changes.

Rules checked: "Who may use", "Period", "Changes" (POLICY.md).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from extensions.contracts.clock import JST, FixedClock
from hub.platform.policy import load_policy_dir
from hub.store.registry import ApprovalRegistry, RegistryError


@pytest.fixture
def registry(database_url):
    # every test runs on SQLite and on PostgreSQL (database_url, tests/conftest.py)
    clock = FixedClock(datetime(2026, 11, 23, 12, 0, tzinfo=JST))
    reg = ApprovalRegistry(database_url, clock=clock)
    yield reg
    reg.close()


def test_two_opening_a_new_database_at_once_both_get_the_tables(database_url):
    # both see no tables and both create them; the one that loses retries and finds them
    start, opened, errors = threading.Barrier(2), [], []

    def work():
        try:
            start.wait()
            opened.append(ApprovalRegistry(database_url))
        except Exception as e:  # reported below; a thread's exception is lost otherwise
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        assert not errors
        assert len(opened) == 2 and opened[0].approvals() == opened[1].approvals() == []
    finally:
        for reg in opened:
            reg.close()


@pytest.fixture
def imported(registry, policy_copy):
    registry.import_policy(load_policy_dir(policy_copy))
    return registry


def test_import_creates_then_changes_nothing(registry, policy_copy):
    bundle = load_policy_dir(policy_copy)
    first = registry.import_policy(bundle)
    assert first.created == ["J-DU000101", "J-DU000102", "J-DU000103"]
    snapshot = registry.snapshot()
    second = registry.import_policy(load_policy_dir(policy_copy))
    assert second.created == [] and second.updated == {} and not second.changed
    assert second.unchanged == ["J-DU000101", "J-DU000102", "J-DU000103"]
    assert registry.snapshot() == snapshot


def test_changed_file_updates_and_records_the_change(imported, policy_copy):
    path = policy_copy / "approvals" / "J-DU000101.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["period"]["end"] = "2036-03-31"
    doc["handlers"].append("kimura")
    path.write_text(yaml.safe_dump(doc))
    imported.clock.advance(timedelta(days=3))
    report = imported.import_policy(load_policy_dir(policy_copy))
    assert report.updated == {
        "J-DU000101": {
            "end": ["2035-03-31", "2036-03-31"],
            "handlers": [["tanaka", "yamada"], ["kimura", "tanaka", "yamada"]],
        }
    }
    view = imported.approval("J-DU000101")
    assert str(view.period.end) == "2036-03-31"
    assert view.handlers == ("kimura", "tanaka", "yamada")
    changes = imported.changes("J-DU000101")
    assert [c["kind"] for c in changes] == ["created", "updated"]
    assert changes[1]["changes"]["end"] == ["2035-03-31", "2036-03-31"]
    assert [a.approval_id for a in imported.active_approvals("kimura")] == ["J-DU000101"]


def test_approval_removed_from_folder_is_kept_and_reported(imported, policy_copy):
    (policy_copy / "approvals" / "J-DU000103.yaml").unlink()
    report = imported.import_policy(load_policy_dir(policy_copy))
    assert report.not_in_directory == ["J-DU000103"]
    assert imported.approval("J-DU000103").handlers == ("suzuki",)


# The period of J-DU000101 is 2024-04-01 .. 2035-03-31 (JST, end inclusive).
@pytest.mark.parametrize(
    "instant,active",
    [
        pytest.param(datetime(2024, 3, 31, 23, 59, 59, tzinfo=JST), False, id="before-start"),
        pytest.param(datetime(2024, 4, 1, 0, 0, 0, tzinfo=JST), True, id="first-day-00:00"),
        pytest.param(datetime(2035, 3, 31, 23, 59, 0, tzinfo=JST), True, id="last-day-23:59"),
        pytest.param(datetime(2035, 3, 31, 23, 59, 59, tzinfo=JST), True, id="last-day-23:59:59"),
        pytest.param(datetime(2035, 4, 1, 0, 0, 0, tzinfo=JST), False, id="next-day"),
    ],
)
def test_active_approvals_follow_the_clock(imported, instant, active):
    imported.clock.move_to(instant)
    got = [a.approval_id for a in imported.active_approvals("tanaka")]
    assert got == (["J-DU000101"] if active else [])
    # an explicit instant gives the same answer as the clock
    assert [a.approval_id for a in imported.active_approvals("tanaka", at=instant)] == got


def test_queries_the_platform_needs(imported):
    view = imported.approval("J-DU000101")
    assert view.sites == ("ncc", "ncgm", "nig", "tommo")
    assert view.datasets_at("nig") == ("JGAD000101", "JGAD000102")
    assert view.datasets_at("imsut") == ()
    assert imported.usage_period_ends("J-DU000101") == datetime(2035, 3, 31, 15, 0, tzinfo=UTC)
    assert [a.approval_id for a in imported.approvals_of("sato")] == ["J-DU000102"]
    assert imported.active_approvals("sato") == []
    assert imported.active_approvals("takahashi") == []
    assert imported.roles_of("admin-nig") == ["site-admin:nig"]
    assert imported.roles_of("tanaka") == []
    assert [s["id"] for s in imported.sites()] == ["imsut", "ncc", "ncgm", "nig", "tommo"]


def test_unknown_approval(imported):
    with pytest.raises(RegistryError, match="unknown approval 'J-DU999999'"):
        imported.approval("J-DU999999")


def test_roles_follow_users_file(imported, policy_copy):
    path = policy_copy / "users.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["users"][5]["roles"] = ["site-admin:ncc"]
    path.write_text(yaml.safe_dump(doc))
    report = imported.import_policy(load_policy_dir(policy_copy))
    assert report.roles_changed == ["admin-nig"]
    assert imported.roles_of("admin-nig") == ["site-admin:ncc"]


def test_query_audit_resets_are_all_kept_with_the_clocks_time(imported, policy_copy):
    """Rule "Changes": each reset of an approval's query-set audit is kept with its time (the
    registry's clock), who decided it and why; importing the policy again keeps them."""
    clock = imported.clock
    assert imported.query_audit_resets() == [] and imported.latest_query_audit_resets() == {}
    first = imported.reset_query_audit("J-DU000101", reason="cohort re-consented", by="jimu")
    clock.advance(timedelta(days=3, hours=2))
    imported.reset_query_audit("J-DU000103", reason="new sub-study", by="jimu")
    clock.advance(timedelta(minutes=5))
    last = imported.reset_query_audit("J-DU000101", reason="board decision 2026-42", by="jimu2")
    assert first.at == datetime(2026, 11, 23, 12, 0, tzinfo=JST)
    assert last.at == datetime(2026, 11, 26, 14, 5, tzinfo=JST) and last.at.tzinfo is not None
    assert [(r.approval_id, r.by, r.reason) for r in imported.query_audit_resets("J-DU000101")] == [
        ("J-DU000101", "jimu", "cohort re-consented"),
        ("J-DU000101", "jimu2", "board decision 2026-42"),
    ]
    assert len(imported.query_audit_resets()) == 3
    assert imported.latest_query_audit_resets() == {
        "J-DU000101": last.at,
        "J-DU000103": datetime(2026, 11, 26, 14, 0, tzinfo=JST),
    }
    assert imported.latest_query_audit_resets(["J-DU000102", "J-DU000103"]) == {
        "J-DU000103": datetime(2026, 11, 26, 14, 0, tzinfo=JST)
    }
    assert last.to_json() == {
        "id": last.id,
        "approval_id": "J-DU000101",
        "at": last.at.isoformat(),
        "by": "jimu2",
        "reason": "board decision 2026-42",
    }
    imported.import_policy(load_policy_dir(policy_copy))
    assert len(imported.query_audit_resets()) == 3


def test_a_reset_of_an_unknown_approval_stores_nothing(imported):
    before = imported.snapshot()
    with pytest.raises(RegistryError, match="unknown approval 'J-DU999999'"):
        imported.reset_query_audit("J-DU999999", reason="x", by="jimu")
    assert imported.snapshot() == before
