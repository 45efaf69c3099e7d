"""The secretariat's and site admins' actions: checks, effects on every access decision,
idempotence, audit records, and refused input that changes nothing (both databases)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from extensions.contracts.clock import JST, FixedClock
from extensions.contracts.events import SECRETARIAT_ACTION, SITE_ADMIN_ACTION
from hub.platform.access import approvals_at_site, decide_access
from hub.platform.operations import (
    OperationError,
    Operations,
    add_months,
    check_quota,
)
from hub.platform.policy import Quota, load_policy_dir
from hub.store.audit import AuditStore
from hub.store.registry import ApprovalRegistry, RegistryError

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=JST)
PRESENT = {("nig", "visiting/singleuser:latest"), ("nig", "visiting/singleuser:v2")}


@pytest.fixture
def clock():
    return FixedClock(NOW)


@pytest.fixture
def ops(database_url, clock, policy_copy):
    bundle = load_policy_dir(policy_copy)
    registry = ApprovalRegistry(database_url, clock=clock)
    registry.import_policy(bundle)
    audit = AuditStore(database_url, clock=clock)
    yield Operations(
        registry, audit, bundle.platform, clock, image_present=lambda s, i: (s, i) in PRESENT
    )
    registry.close()
    audit.close()


def state(ops: Operations):
    """Everything an action could change: every registry row and every audit record."""
    return ops.registry.snapshot(), [e["event_id"] for e in ops.audit.events()]


def decide(ops: Operations, user: str):
    now = ops.clock.now()
    return decide_access(
        user,
        ops.registry.approvals_of(user),
        ops.registry.roles_of(user),
        now,
        contact=ops.platform.contact,
        suspension=ops.registry.suspension_of(user, now),
    )


def actions(ops: Operations, schema=SECRETARIAT_ACTION):
    return [e for e in ops.audit.events() if e["schema"] == schema]


# -- suspend and reinstate ------------------------------------------------------------


def test_suspension_stops_every_check_and_is_recorded(ops, clock):
    assert decide(ops, "tanaka").allowed
    out = ops.suspend("jimu", user="tanaka", reason="shared his password", ban_until="2027-05-23")
    assert out.changed and out.target == {"user": "tanaka"}
    # the one question login, spawn, the enforcer and the gateways ask
    assert ops.registry.active_approvals("tanaka") == []
    assert approvals_at_site(ops.registry.active_approvals("tanaka"), "nig") == []
    d = decide(ops, "tanaka")
    assert not d.allowed and d.reason == "suspended"
    assert "suspended" in d.message_en and "secretariat@visiting.example" in d.message_en
    assert "停止" in d.message_ja
    # the co-handler on the same approval is not touched
    assert decide(ops, "yamada").allowed
    (event,) = actions(ops)
    assert event["user"] == "tanaka" and event["actor"] == "jimu"
    assert event["data"]["action"] == "suspend" and event["data"]["reason"] == "shared his password"
    assert event["data"]["ban_until"] == "2027-05-23"
    assert ops.audit.verify().ok


def test_suspend_twice_keeps_the_first_suspension(ops, clock):
    first = ops.suspend("jimu", user="tanaka", reason="first")
    clock.advance(timedelta(hours=1))
    second = ops.suspend("jimu", user="tanaka", reason="second")
    assert first.changed and not second.changed
    (s,) = ops.registry.suspensions("tanaka")
    assert s.reason == "first"
    assert [e["data"]["changed"] for e in actions(ops)] == [True, False]


def test_reinstate_lifts_and_is_idempotent(ops, clock):
    ops.suspend("jimu", user="tanaka", reason="investigation")
    clock.advance(timedelta(days=3))
    out = ops.reinstate("jimu", user="tanaka", reason="cleared")
    assert out.changed and decide(ops, "tanaka").allowed
    again = ops.reinstate("jimu", user="tanaka", reason="cleared")
    assert not again.changed and "not suspended" in again.detail["note"]
    (s,) = ops.registry.suspensions("tanaka")
    assert s.lifted_by == "jimu" and s.lift_reason == "cleared"
    # history: suspended during those three days, not after
    assert s.active_at(NOW + timedelta(days=1)) and not s.active_at(NOW + timedelta(days=4))


def test_institution_suspension_covers_every_handler(ops):
    out = ops.suspend(
        "jimu", institution="Example University Graduate School of Medicine", reason="breach"
    )
    assert sorted(out.detail["suspensions"]) == ["tanaka", "yamada"]
    assert not decide(ops, "tanaka").allowed and not decide(ops, "yamada").allowed
    assert decide(ops, "jimu").allowed
    assert {e["user"] for e in actions(ops)} == {"tanaka", "yamada"}
    assert all(
        e["data"]["institution"] == "Example University Graduate School of Medicine"
        for e in actions(ops)
    )


def test_ban_blocks_new_applications_until_its_date(ops, clock, policy_copy):
    ops.suspend("jimu", user="sato", reason="misuse", ban_until=add_months(NOW.date(), 3))
    (policy_copy / "approvals" / "J-DU000104.yaml").write_text(
        "approval_id: J-DU000104\ninstitution: Example Genome Institute\npurpose: new study\n"
        "handlers: [sato]\ndatasets: [JGAD000101]\nperiod: {start: 2026-12-01, end: 2027-11-30}\n"
    )
    before = ops.registry.snapshot()
    with pytest.raises(RegistryError, match="sato is banned from new applications until"):
        ops.registry.import_policy(load_policy_dir(policy_copy))
    assert ops.registry.snapshot() == before
    clock.move_to(datetime.combine(add_months(NOW.date(), 3) + timedelta(days=1), NOW.timetz()))
    assert ops.registry.import_policy(load_policy_dir(policy_copy)).created == ["J-DU000104"]


def test_add_months_clamps_to_the_month_end():
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2026, 11, 23), 12) == date(2027, 11, 23)
    assert add_months(date(2026, 8, 31), 6) == date(2027, 2, 28)


# -- extend and revoke ------------------------------------------------------------------


def test_extend_moves_the_end_everywhere(ops, clock, policy_copy):
    before = ops.registry.approval("J-DU000102")  # sato's, ended
    assert not decide(ops, "sato").allowed
    new_end = NOW.date() + timedelta(days=90)
    out = ops.extend("jimu", approval_id="J-DU000102", end=new_end.isoformat(), reason="paper")
    assert out.changed
    after = ops.registry.approval("J-DU000102")
    assert after.period.end == new_end and after.approved_end == before.period.end
    assert decide(ops, "sato").allowed
    assert ops.registry.usage_period_ends("J-DU000102") == after.period.ends_before
    assert ops.registry.changes("J-DU000102")[-1]["kind"] == "extended"
    again = ops.extend("jimu", approval_id="J-DU000102", end=new_end, reason="paper")
    assert not again.changed
    # importing the unchanged policy directory again keeps the extension
    ops.registry.import_policy(load_policy_dir(policy_copy))
    assert ops.registry.approval("J-DU000102").period.end == new_end


def test_revoke_ends_now_and_says_so(ops, clock):
    out = ops.revoke("jimu", approval_id="J-DU000101", reason="ethics approval withdrawn")
    assert out.changed and datetime.fromisoformat(out.detail["approval"]["revoked_at"]) == NOW
    for user in ("tanaka", "yamada"):
        d = decide(ops, user)
        assert not d.allowed and d.reason == "revoked" and "revoked" in d.message_en
        assert "取り消" in d.message_ja
    assert ops.registry.usage_period_ends("J-DU000101") == NOW
    assert not ops.revoke("jimu", approval_id="J-DU000101", reason="again").changed
    with pytest.raises(OperationError, match="was revoked; it cannot be extended"):
        ops.extend("jimu", approval_id="J-DU000101", end="2040-01-01", reason="x")


# -- the query-set audit's reset ----------------------------------------------------------


def test_reset_query_audit_is_kept_recorded_and_reaches_the_approvals(ops, clock):
    """Rule "No disclosure" and "Changes": the secretariat starts an approval's query-set
    audit afresh, with a reason; each reset is kept at the registry's clock and recorded."""
    out = ops.reset_query_audit(
        "jimu", approval_id="J-DU000101", reason="  board allowed a new sub-study  "
    )
    assert out.changed and out.action == "reset-query-audit"
    assert out.target == {"approval_id": "J-DU000101"}
    reset = out.detail["reset"]
    assert (reset["at"], reset["by"], reset["reason"]) == (
        NOW.astimezone(UTC).isoformat(),
        "jimu",
        "board allowed a new sub-study",
    )
    clock.advance(timedelta(days=40, minutes=3))
    again = ops.reset_query_audit("jimu", approval_id="J-DU000101", reason="second sub-study")
    assert again.changed  # each reset starts the audit afresh from its own time
    later = NOW + timedelta(days=40, minutes=3)
    assert datetime.fromisoformat(again.detail["reset"]["at"]) == later
    state_ = ops.approval_state("J-DU000101")
    assert [(r["by"], r["reason"]) for r in state_["query_audit_resets"]] == [
        ("jimu", "board allowed a new sub-study"),
        ("jimu", "second sub-study"),
    ]
    listed = {a["approval_id"]: a["query_audit_reset"] for a in ops.approvals_state()}
    assert listed["J-DU000101"] == later.astimezone(UTC).isoformat()
    assert listed["J-DU000103"] is None
    # the change log of the approval (what the application says) is not touched
    assert all(c["kind"] != "reset-query-audit" for c in ops.registry.changes("J-DU000101"))
    events = [e for e in actions(ops) if e["data"]["action"] == "reset-query-audit"]
    assert [e["event_id"] for e in events] == out.event_ids + again.event_ids
    first = events[0]
    assert (first["approval_id"], first["actor"], first["user"], first["site"]) == (
        "J-DU000101",
        "jimu",
        "jimu",
        None,
    )
    assert first["data"] == {
        "action": "reset-query-audit",
        "reason": "board allowed a new sub-study",
        "changed": True,
        "reset_id": reset["id"],
        "reset_at": reset["at"],
    }
    assert datetime.fromisoformat(events[1]["time"]) == later


# -- site admins ------------------------------------------------------------------------


def test_site_admin_images_and_quotas(ops):
    out = ops.add_image("admin-nig", site="nig", image="visiting/singleuser:v2", reason="new Hail")
    assert out.changed
    assert ops.registry.site_settings("nig")["images"] == [
        "visiting/singleuser:latest",
        "visiting/singleuser:v2",
    ]
    assert not ops.add_image(
        "admin-nig", site="nig", image="visiting/singleuser:v2", reason="again"
    ).changed
    ops.retire_image("admin-nig", site="nig", image="visiting/singleuser:latest", reason="old")
    settings = ops.registry.site_settings("nig")
    assert settings["images"] == ["visiting/singleuser:v2"]
    assert settings["default_image"] == "visiting/singleuser:v2"
    ops.set_site_quota("admin-nig", site="nig", quota={"memory": "3G"}, reason="bigger nodes")
    assert ops.registry.site_settings("nig")["quota"] == {
        "cpu": 1.0,
        "memory": 3 * 1024**3,
        "home": 2 * 1024**3,
    }
    ops.set_approval_quota(
        "admin-nig", site="nig", approval_id="J-DU000101", quota={"cpu": 1.5}, reason="GWAS"
    )
    assert ops.registry.approval_quota("J-DU000101", "nig") == Quota(cpu=1.5)
    assert ops.registry.approval_quota("J-DU000101", "ncc") is None
    events = actions(ops, SITE_ADMIN_ACTION)
    assert [e["data"]["action"] for e in events] == [
        "add-image",
        "add-image",
        "retire-image",
        "set-site-quota",
        "set-approval-quota",
    ]
    assert all(e["site"] == "nig" and e["actor"] == "admin-nig" for e in events)


# -- refusals: each leaves the registry and the audit store as they were ------------------

REFUSED = [
    # (actor, action, kwargs, field, status, message)
    ("jimu", "suspend", {"user": "nobody", "reason": "x"}, "user", 404, "unknown person"),
    ("jimu", "suspend", {"user": "tanaka", "reason": " "}, "reason", 400, "reason is required"),
    ("jimu", "suspend", {"user": "tanaka"}, "reason", 400, "reason is required"),
    ("jimu", "suspend", {"reason": "x"}, "user", 400, "either a user or an institution"),
    (
        "jimu",
        "suspend",
        {"user": "tanaka", "institution": "Example University", "reason": "x"},
        "user",
        400,
        "either a user or an institution",
    ),
    ("jimu", "suspend", {"institution": "Nowhere", "reason": "x"}, "institution", 404, "unknown"),
    (
        "jimu",
        "suspend",
        {"user": "tanaka", "reason": "x", "ban_until": "2026-12-01"},
        "ban_until",
        400,
        "outside the range",
    ),
    (
        "jimu",
        "suspend",
        {"user": "tanaka", "reason": "x", "ban_until": "2028-11-24"},
        "ban_until",
        400,
        "outside the range",
    ),
    (
        "jimu",
        "suspend",
        {"user": "tanaka", "reason": "x", "ban_until": "next year"},
        "ban_until",
        400,
        "is not a date",
    ),
    (
        "jimu",
        "suspend",
        {"user": "tanaka", "reason": "x", "ban_until": "2027-06-01", "ban_indefinite": True},
        "ban_until",
        400,
        "not both",
    ),
    ("tanaka", "suspend", {"user": "yamada", "reason": "x"}, None, 403, "secretariat role"),
    ("admin-nig", "suspend", {"user": "tanaka", "reason": "x"}, None, 403, "secretariat role"),
    ("jimu", "reinstate", {"user": "nobody", "reason": "x"}, "user", 404, "unknown person"),
    ("jimu", "reinstate", {"user": "tanaka", "reason": ""}, "reason", 400, "reason is required"),
    (
        "jimu",
        "extend",
        {"approval_id": "J-DU999999", "end": "2040-01-01", "reason": "x"},
        "approval_id",
        404,
        "unknown approval",
    ),
    (
        "jimu",
        "extend",
        {"approval_id": "J-DU000101", "end": "2030-01-01", "reason": "x"},
        "end",
        400,
        "before the current end",
    ),
    (
        "jimu",
        "extend",
        {"approval_id": "J-DU000101", "end": "2020-01-01", "reason": "x"},
        "end",
        400,
        "not after the period's start",
    ),
    (
        "jimu",
        "extend",
        {"approval_id": "J-DU000101", "end": "31/03/2036", "reason": "x"},
        "end",
        400,
        "is not a date",
    ),
    ("jimu", "revoke", {"approval_id": "J-DU999999", "reason": "x"}, "approval_id", 404, "unknown"),
    (
        "jimu",
        "reset_query_audit",
        {"approval_id": "J-DU999999", "reason": "x"},
        "approval_id",
        404,
        "unknown approval 'J-DU999999'",
    ),
    (
        "jimu",
        "reset_query_audit",
        {"approval_id": "", "reason": "x"},
        "approval_id",
        400,
        "an approval id is required",
    ),
    (
        "jimu",
        "reset_query_audit",
        {"approval_id": "J-DU000101"},
        "reason",
        400,
        "reason is required",
    ),
    (
        "jimu",
        "reset_query_audit",
        {"approval_id": "J-DU000101", "reason": " \n\t "},
        "reason",
        400,
        "reason is required",
    ),
    (
        "jimu",
        "reset_query_audit",
        {"approval_id": "J-DU000101", "reason": ["a", "list"]},
        "reason",
        400,
        "reason is required",
    ),
    (
        "jimu",
        "reset_query_audit",
        {"approval_id": "J-DU000101", "reason": "x" * 2001},
        "reason",
        400,
        "longer than 2000 characters",
    ),
    (
        "tanaka",
        "reset_query_audit",
        {"approval_id": "J-DU000101", "reason": "my own approval"},
        None,
        403,
        "secretariat role",
    ),
    (
        "admin-nig",
        "reset_query_audit",
        {"approval_id": "J-DU000101", "reason": "x"},
        None,
        403,
        "secretariat role",
    ),
    ("yamada", "revoke", {"approval_id": "J-DU000101", "reason": "x"}, None, 403, "secretariat"),
    (
        "admin-nig",
        "add_image",
        {"site": "ncc", "image": "visiting/singleuser:v2", "reason": "x"},
        None,
        403,
        "not a site admin of ncc",
    ),
    (
        "admin-nig",
        "add_image",
        {"site": "nig", "image": "evil/miner:latest", "reason": "x"},
        "image",
        400,
        "not present on site nig's engine",
    ),
    (
        "admin-nig",
        "add_image",
        {"site": "nig", "image": "a b", "reason": "x"},
        "image",
        400,
        "not an image name",
    ),
    (
        "admin-nig",
        "retire_image",
        {"site": "nig", "image": "visiting/singleuser:latest", "reason": "x"},
        "image",
        400,
        "only image",
    ),
    ("admin-nig", "add_image", {"site": "mars", "image": "x", "reason": "x"}, "site", 404, "site"),
    (
        "admin-nig",
        "set_site_quota",
        {"site": "nig", "quota": {"cpu": -1}, "reason": "x"},
        "quota.cpu",
        400,
        "more than 0",
    ),
    (
        "admin-nig",
        "set_site_quota",
        {"site": "nig", "quota": {"memory": "lots"}, "reason": "x"},
        "quota.memory",
        400,
        "not a size",
    ),
    (
        "admin-nig",
        "set_site_quota",
        {"site": "nig", "quota": {"gpu": 1}, "reason": "x"},
        "quota.gpu",
        400,
        "unknown field",
    ),
    (
        "admin-nig",
        "set_site_quota",
        {"site": "nig", "quota": {}, "reason": "x"},
        "quota",
        400,
        "sets nothing",
    ),
    (
        "admin-nig",
        "set_approval_quota",
        {"site": "nig", "approval_id": "J-DU000103", "quota": {"cpu": 1}, "reason": "x"},
        "approval_id",
        400,
        "covers no dataset at site nig",
    ),
    (
        "tanaka",
        "set_site_quota",
        {"site": "nig", "quota": {"cpu": 8}, "reason": "x"},
        None,
        403,
        "not a site admin",
    ),
    (
        "jimu",
        "set_site_quota",
        {"site": "nig", "quota": {"cpu": 8}, "reason": "x"},
        None,
        403,
        "not a site admin",
    ),
]


@pytest.mark.parametrize(
    "actor,action,kwargs,field,status,message",
    REFUSED,
    ids=[f"{r[1]}-{i}" for i, r in enumerate(REFUSED)],
)
def test_refused_action_changes_nothing(ops, actor, action, kwargs, field, status, message):
    before = state(ops)
    with pytest.raises(OperationError) as e:
        getattr(ops, action)(actor, **kwargs)
    assert message in e.value.message
    assert e.value.field == field and e.value.status == status
    assert state(ops) == before


def test_check_quota_reads_forms():
    assert check_quota({"cpu": "1.5", "memory": "2G", "home": ""}) == Quota(
        cpu=1.5, memory=2 * 1024**3
    )


# -- the enforcer's decision ---------------------------------------------------------------


def test_enforcer_judges_suspension_revocation_and_extension(ops, clock):
    from hub.services.enforcer.judge import judge

    now = clock.now()
    assert not judge(ops.registry, "tanaka", "nig", now).stop
    assert judge(ops.registry, "tanaka", "imsut", now).stop  # no approval there
    ops.suspend("jimu", user="tanaka", reason="x")
    verdict = judge(ops.registry, "tanaka", "nig", now)
    assert verdict.stop and "suspended" in verdict.reason and "jimu" in verdict.reason
    assert not judge(ops.registry, "yamada", "nig", now).stop
    ops.reinstate("jimu", user="tanaka", reason="x")
    ops.revoke("jimu", approval_id="J-DU000101", reason="x")
    verdict = judge(ops.registry, "yamada", "nig", now)
    assert verdict.stop and "revoked" in verdict.reason
    # sato's ended approval, extended: his server may run again
    assert judge(ops.registry, "sato", "ncc", now).stop
    ops.extend("jimu", approval_id="J-DU000102", end="2027-03-31", reason="x")
    assert not judge(ops.registry, "sato", "ncc", now).stop
