"""Who may log in, and what a refused person reads (rules "Who may use", "Period")."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from extensions.contracts.clock import JST, Period
from hub.platform.access import decide_access, role_group
from hub.store.registry import ApprovalView

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=JST)


def approval(aid, start, end):
    return ApprovalView(
        aid,
        "Inst",
        "Purpose",
        ("u",),
        ("JGAD000101",),
        Period(date.fromisoformat(start), date.fromisoformat(end)),
        None,
        {"JGAD000101": "nig"},
    )


@pytest.mark.parametrize(
    "approvals,roles,allowed,reason,text",
    [
        pytest.param(
            [approval("A1", "2024-04-01", "2035-03-31")], [], True, "active", "", id="active"
        ),
        pytest.param(
            [approval("A1", "2019-04-01", "2021-03-31")],
            [],
            False,
            "ended",
            "ended on 2021-03-31",
            id="ended",
        ),
        pytest.param(
            [approval("A1", "2040-04-01", "2045-03-31")],
            [],
            False,
            "not-started",
            "starts on 2040-04-01",
            id="not-started",
        ),
        pytest.param([], [], False, "no-approval", "has no approved application", id="none"),
        pytest.param([], ["secretariat"], True, "role", "", id="secretariat"),
        pytest.param([], ["site-admin:nig"], True, "role", "", id="site-admin"),
        pytest.param(
            [
                approval("A1", "2019-04-01", "2021-03-31"),
                approval("A2", "2030-04-01", "2031-03-31"),
            ],
            [],
            False,
            "not-started",
            "A2 starts on 2030-04-01",
            id="ended-and-upcoming-says-upcoming",
        ),
        pytest.param(
            [
                approval("A1", "2019-04-01", "2021-03-31"),
                approval("A2", "2022-04-01", "2023-03-31"),
            ],
            [],
            False,
            "ended",
            "A2 ended on 2023-03-31",
            id="two-ended-says-latest",
        ),
        pytest.param(
            [
                approval("A1", "2019-04-01", "2021-03-31"),
                approval("A2", "2026-11-23", "2026-11-23"),
            ],
            [],
            True,
            "active",
            "",
            id="one-day-approval-today",
        ),
    ],
)
def test_decide_access(approvals, roles, allowed, reason, text):
    d = decide_access("u", approvals, roles, NOW, contact="office@example")
    assert (d.allowed, d.reason) == (allowed, reason)
    if not allowed:
        assert text in d.message_en
        assert "office@example" in d.message_en and "office@example" in d.message_ja
        # Japanese first, then English, in the one message a person reads
        assert d.message.index(d.message_ja) < d.message.index(d.message_en)


def test_japanese_messages():
    ended = decide_access("u", [approval("A1", "2019-04-01", "2021-03-31")], [], NOW)
    assert "2021-03-31 に終了しました" in ended.message_ja
    upcoming = decide_access("u", [approval("A1", "2040-04-01", "2045-03-31")], [], NOW)
    assert "2040-04-01 に始まります" in upcoming.message_ja
    none = decide_access("u", [], [], NOW)
    assert "承認された利用申請がありません" in none.message_ja


def test_active_approvals_go_to_auth_state():
    d = decide_access("u", [approval("A1", "2024-04-01", "2035-03-31")], [], NOW)
    state = d.auth_state(NOW)
    assert state["allowed"] is True
    assert state["approvals"][0]["approval_id"] == "A1"
    assert state["approvals"][0]["sites"] == {"nig": ["JGAD000101"]}


def test_role_groups():
    assert role_group("site-admin:nig") == "site-admin-nig"
    assert role_group("secretariat") == "secretariat"
