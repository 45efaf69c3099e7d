"""The export airlock's rules (hub.platform.airlock) as an allow/deny matrix.

Rules checked: "Publication" (results leave only through the airlock's review: one site
admin of the request's own site and one secretariat member, never the requester, each once;
a failed automatic check is approved only with a written override), "Sanctions" (a
suspended requester's requests are frozen: no review, no release, no withdrawal), "No
disclosure" (only the requester receives the files, only within the release window, never
after a rejection or a withdrawal). Time is a fixed instant, moved by hand.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from extensions.contracts.export import CheckResult, FrozenFile, Manifest
from hub.platform.airlock import (
    BadExportInput,
    ExportNotAllowed,
    ExportRefusal,
    ExportRequest,
    ExportWrongState,
    Review,
    check_paths,
    check_release,
    check_withdraw,
    decide_review,
    may_review_now,
    may_see,
    release_until,
    reviewer_roles,
)
from hub.platform.policy_models import ExportPolicy

NOW = datetime(2026, 6, 2, 3, 0, tzinfo=UTC)
POLICY = ExportPolicy()

#: who holds which platform roles
ROLES = {
    "tanaka": (),  # the requester, a data handler
    "yamada": (),  # another data handler
    "admin_nig": ("site-admin:nig",),
    "admin_nig2": ("site-admin:nig",),
    "admin_ncc": ("site-admin:ncc",),
    "jimu": ("secretariat",),
    "jimu2": ("secretariat",),
    "both": ("secretariat", "site-admin:nig"),
}


def frozen(name: str, ok: bool = True) -> FrozenFile:
    checks = (CheckResult("kind", True), CheckResult("disclosure", ok, "" if ok else "cell of 2"))
    return FrozenFile(name, 10, "0" * 64, "text/csv", checks)


def request(state="checked", *, reviews=(), failed=False, error="", **kw) -> ExportRequest:
    files = (frozen("results/table.csv"), frozen("results/small.csv", ok=not failed))
    return ExportRequest(
        id="e1",
        requester="tanaka",
        site="nig",
        purpose="paper",
        paths=("results/table.csv", "results/small.csv"),
        state=state,
        created_at=NOW - timedelta(hours=2),
        checked_at=NOW - timedelta(hours=1),
        manifest=Manifest("e1", files, error=error),
        reviews=tuple(reviews),
        **kw,
    )


def approval(by: str, role: str, round: int = 1) -> Review:
    return Review(by, role, "approve", "", "", NOW - timedelta(minutes=30), round)


def review(req, by, decision="approve", reason="", override="", suspended=False):
    return decide_review(
        req, by, ROLES[by], decision, reason, override, POLICY, NOW, requester_suspended=suspended
    )


# ---------------------------------------------------------------------------
# the review matrix

ALLOWED = [
    # (id, request, reviewer, decision, reason, override, role it fills, state after)
    ("site-admin-approves-first", request(), "admin_nig", "approve", "", "",
     "site-admin", "under-review"),
    ("secretariat-approves-first", request(), "jimu", "approve", "", "",
     "secretariat", "under-review"),
    ("second-role-completes-the-approval",
     request("under-review", reviews=[approval("admin_nig", "site-admin")]), "jimu",
     "approve", "", "", "secretariat", "approved"),
    ("a-person-with-both-roles-fills-the-pending-one",
     request("under-review", reviews=[approval("jimu", "secretariat")]), "both",
     "approve", "", "", "site-admin", "approved"),
    ("reject-needs-one-reviewer", request(), "jimu", "reject", "names a person", "",
     "secretariat", "rejected"),
    ("reject-after-one-approval",
     request("under-review", reviews=[approval("admin_nig", "site-admin")]), "admin_nig2",
     "reject", "too fine", "", "site-admin", "rejected"),
    ("changes-requested", request(), "admin_nig", "changes", "round the counts", "",
     "site-admin", "changes-requested"),
    ("failed-check-with-override", request(failed=True), "jimu", "approve", "",
     "counts of 2 are of variants, not people", "secretariat", "under-review"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("req", "by", "decision", "reason", "override", "role", "state"),
    [a[1:] for a in ALLOWED],
    ids=[a[0] for a in ALLOWED],
)
def test_a_review_allowed(req, by, decision, reason, override, role, state):
    outcome = review(req, by, decision, reason, override)
    assert (outcome.review.role, outcome.state) == (role, state)
    assert outcome.review.reviewer == by and outcome.review.at == NOW
    assert outcome.review.override == override


DENIED = [
    # (id, request, reviewer, decision, reason, override, suspended, refusal, key)
    ("self-review", request(), "tanaka", "approve", "", "", False,
     ExportNotAllowed, "export.own_request"),
    ("self-review-even-as-secretariat", replace(request(), requester="jimu"), "jimu",
     "approve", "", "", False, ExportNotAllowed, "export.own_request"),
    ("a-data-handler-is-no-reviewer", request(), "yamada", "approve", "", "", False,
     ExportNotAllowed, "export.not_reviewer"),
    ("site-admin-of-another-site", request(), "admin_ncc", "approve", "", "", False,
     ExportNotAllowed, "export.not_reviewer"),
    ("second-review-by-the-same-person",
     request("under-review", reviews=[approval("admin_nig", "site-admin")]), "admin_nig",
     "approve", "", "", False, ExportNotAllowed, "export.already_reviewed"),
    ("second-review-by-the-same-person-in-another-role",
     request("under-review", reviews=[approval("both", "site-admin")]), "both",
     "approve", "", "", False, ExportNotAllowed, "export.already_reviewed"),
    ("a-role-approves-once",
     request("under-review", reviews=[approval("admin_nig", "site-admin")]), "admin_nig2",
     "approve", "", "", False, ExportWrongState, "export.role_done"),
    ("failed-check-without-override", request(failed=True), "jimu", "approve", "", "", False,
     BadExportInput, "export.override_needed"),
    ("failed-check-blank-override", request(failed=True), "jimu", "approve", "", "   ", False,
     BadExportInput, "export.override_needed"),
    ("not-frozen-at-the-site", request(error="no such file"), "jimu", "approve", "",
     "anyway", False, ExportWrongState, "export.not_frozen"),
    ("still-freezing", request("submitted"), "jimu", "approve", "", "", False,
     ExportWrongState, "export.not_checked"),
    ("awaiting-changes", request("changes-requested"), "jimu", "approve", "", "", False,
     ExportWrongState, "export.awaiting_changes"),
    ("after-reject", request("rejected"), "jimu", "approve", "", "", False,
     ExportWrongState, "export.closed"),
    ("after-withdraw", request("withdrawn"), "jimu", "approve", "", "", False,
     ExportWrongState, "export.closed"),
    ("after-approval", request("approved"), "jimu", "reject", "late", "", False,
     ExportWrongState, "export.closed"),
    ("suspended-requester-frozen", request(), "jimu", "approve", "", "", True,
     ExportWrongState, "export.frozen"),
    ("suspended-requester-frozen-for-reject", request(), "jimu", "reject", "no", "", True,
     ExportWrongState, "export.frozen"),
    ("reject-without-reason", request(), "jimu", "reject", " ", "", False,
     BadExportInput, "export.reason_needed"),
    ("changes-without-reason", request(), "jimu", "changes", "", "", False,
     BadExportInput, "export.reason_needed"),
    ("unknown-decision", request(), "jimu", "maybe", "", "", False,
     BadExportInput, "export.bad_decision"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("req", "by", "decision", "reason", "override", "suspended", "refusal", "key"),
    [d[1:] for d in DENIED],
    ids=[d[0] for d in DENIED],
)
def test_a_review_refused(req, by, decision, reason, override, suspended, refusal, key):
    with pytest.raises(refusal) as e:
        review(req, by, decision, reason, override, suspended)
    assert e.value.key == key
    # a person reads why, in both languages
    body = e.value.to_json()
    assert body["error"] == key and body["message"]["ja"] and body["message"]["en"]
    assert e.value.status == {BadExportInput: 400, ExportNotAllowed: 403,
                              ExportWrongState: 409}[refusal]  # fmt: skip


def test_the_reviewers_the_platform_file_names():
    only_secretariat = ExportPolicy(reviewers=("secretariat",))
    outcome = decide_review(
        request(), "jimu", ROLES["jimu"], "approve", "", "", only_secretariat, NOW
    )
    assert outcome.state == "approved"
    with pytest.raises(ExportNotAllowed) as e:
        decide_review(
            request(), "admin_nig", ROLES["admin_nig"], "approve", "", "", only_secretariat, NOW
        )
    assert e.value.key == "export.not_reviewer"


def test_one_decision_per_reviewer_per_round():
    old = approval("admin_nig", "site-admin", round=1)
    req = request("checked", reviews=[old], round=2)
    assert req.current_reviews == ()
    assert review(req, "admin_nig").state == "under-review"


# ---------------------------------------------------------------------------
# who sees a request, and whose queue it is in

SEES = [
    ("requester", "tanaka", True),
    ("site-admin-of-its-site", "admin_nig", True),
    ("secretariat", "jimu", True),
    ("site-admin-of-another-site", "admin_ncc", False),
    ("another-data-handler", "yamada", False),
]


@pytest.mark.parametrize(("who", "sees"), [s[1:] for s in SEES], ids=[s[0] for s in SEES])
def test_who_sees_a_request(who, sees):
    assert may_see(request(), who, ROLES[who], POLICY) is sees


def test_the_review_queue():
    reviewed = request("under-review", reviews=[approval("admin_nig", "site-admin")])
    assert may_review_now(request(), "admin_nig", ROLES["admin_nig"], POLICY)
    assert not may_review_now(reviewed, "admin_nig", ROLES["admin_nig"], POLICY)
    assert may_review_now(reviewed, "jimu", ROLES["jimu"], POLICY)
    assert not may_review_now(request(), "admin_ncc", ROLES["admin_ncc"], POLICY)
    assert not may_review_now(request("submitted"), "jimu", ROLES["jimu"], POLICY)
    assert not may_review_now(
        replace(request(), requester="jimu"), "jimu", ("secretariat",), POLICY
    )
    assert reviewer_roles(ROLES["both"], "nig", POLICY.reviewers) == ("site-admin", "secretariat")
    assert reviewer_roles(ROLES["both"], "ncc", POLICY.reviewers) == ("secretariat",)


# ---------------------------------------------------------------------------
# withdraw and release

APPROVED_AT = NOW - timedelta(days=1)


def approved(state="approved") -> ExportRequest:
    reviews = [approval("admin_nig", "site-admin"), approval("jimu", "secretariat")]
    return replace(request(state, reviews=reviews), decided_at=APPROVED_AT)


WITHDRAW = [
    ("requester-withdraws-checked", request(), "tanaka", False, None),
    ("requester-withdraws-under-review", request("under-review"), "tanaka", False, None),
    ("requester-withdraws-changes-requested", request("changes-requested"), "tanaka", False,
     None),
    ("another-person", request(), "jimu", False, "export.not_requester"),
    ("after-approval", approved(), "tanaka", False, "export.closed"),
    ("after-reject", request("rejected"), "tanaka", False, "export.closed"),
    ("twice", request("withdrawn"), "tanaka", False, "export.closed"),
    ("suspended-requester-frozen", request(), "tanaka", True, "export.frozen"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("req", "who", "suspended", "key"), [w[1:] for w in WITHDRAW], ids=[w[0] for w in WITHDRAW]
)
def test_withdraw(req, who, suspended, key):
    if key is None:
        assert check_withdraw(req, who, requester_suspended=suspended) == "withdrawn"
        return
    with pytest.raises(ExportRefusal) as e:
        check_withdraw(req, who, requester_suspended=suspended)
    assert e.value.key == key


RELEASE = [
    ("requester-within-the-window", approved(), "tanaka", NOW, False, None),
    ("requester-again-once-released", approved("released"), "tanaka", NOW, False, None),
    ("requester-at-the-last-second", approved(), "tanaka",
     APPROVED_AT + timedelta(days=7, seconds=-1), False, None),
    ("another-person", approved(), "jimu", NOW, False, "export.not_requester"),
    ("after-the-window", approved(), "tanaka", APPROVED_AT + timedelta(days=7), False,
     "export.release_expired"),
    ("after-reject", replace(request("rejected"), decided_at=APPROVED_AT), "tanaka", NOW,
     False, "export.not_approved"),
    ("after-withdraw", request("withdrawn"), "tanaka", NOW, False, "export.not_approved"),
    ("while-under-review", request("under-review"), "tanaka", NOW, False,
     "export.not_approved"),
    ("suspended-requester-frozen", approved(), "tanaka", NOW, True, "export.frozen"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("req", "who", "now", "suspended", "key"),
    [r[1:] for r in RELEASE],
    ids=[r[0] for r in RELEASE],
)
def test_release(req, who, now, suspended, key):
    if key is None:
        assert check_release(req, who, now, POLICY, requester_suspended=suspended) == "released"
        return
    with pytest.raises(ExportRefusal) as e:
        check_release(req, who, now, POLICY, requester_suspended=suspended)
    assert e.value.key == key


def test_the_release_window_follows_the_platform_file():
    assert release_until(approved(), POLICY) == APPROVED_AT + timedelta(days=7)
    assert release_until(approved(), ExportPolicy(release_days=1)) == NOW
    assert release_until(request("rejected"), POLICY) is None
    with pytest.raises(ExportWrongState) as e:
        check_release(approved(), "tanaka", NOW, ExportPolicy(release_days=1),
                      requester_suspended=False)  # fmt: skip
    assert "2026-06-02 12:00" in e.value.text.en  # Japan time


# ---------------------------------------------------------------------------
# paths

PATHS_OK = [
    (["results/table.csv"], ("results/table.csv",)),
    (["./results//table.csv", "fig.png"], ("results/table.csv", "fig.png")),
]
PATHS_BAD = [
    ("none", [], "export.no_paths", "paths"),
    ("not-a-list", "fig.png", "export.no_paths", "paths"),
    ("empty", ["fig.png", " "], "export.path_empty", "paths[1]"),
    ("dot", ["."], "export.path_empty", "paths[0]"),
    ("absolute", ["/etc/passwd"], "export.path_absolute", "paths[0]"),
    ("home-tilde", ["~/fig.png"], "export.path_absolute", "paths[0]"),
    ("parent", ["results/../../other/fig.png"], "export.path_parent", "paths[0]"),
    ("twice", ["fig.png", "./fig.png"], "export.path_twice", "paths[1]"),
    ("too-many", [f"f{i}.csv" for i in range(51)], "export.too_many_files", "paths"),
]


@pytest.mark.parametrize(("paths", "normal"), PATHS_OK)
def test_paths_are_normalised(paths, normal):
    assert check_paths(paths, POLICY.checks) == normal


@pytest.mark.parametrize(
    ("paths", "key", "field"), [p[1:] for p in PATHS_BAD], ids=[p[0] for p in PATHS_BAD]
)
def test_a_bad_path_is_named(paths, key, field):
    with pytest.raises(BadExportInput) as e:
        check_paths(paths, POLICY.checks)
    assert (e.value.key, e.value.field) == (key, field)
    if key in ("export.path_absolute", "export.path_parent", "export.path_twice"):
        assert paths[int(field[6:-1])] in e.value.text.en
