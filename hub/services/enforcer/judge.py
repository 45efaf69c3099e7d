"""Whether a person's server at a site may keep running: the platform's access decision
(`hub.platform.access.decide_access`) over the approvals covering that site."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hub.platform.access import approvals_at_site, decide_access
from hub.store.registry import ApprovalRegistry


@dataclass(frozen=True)
class Verdict:
    user: str
    server: str
    stop: bool
    reason: str


def judge(registry: ApprovalRegistry, user: str, server: str, now: datetime) -> Verdict:
    """Whether `user`'s server named `server` (a site id) may keep running at `now`.

    The decision is the login's (`decide_access`) over the approvals covering the site, with
    no roles: a platform role lets a person log in, but starts no server at a site.
    """
    suspension = registry.suspension_of(user, now)
    approvals = registry.approvals_of(user)
    # latest end first, the same ends by approval id: the approval a server there runs under
    here = approvals_at_site(sorted(approvals, key=lambda a: a.approval_id), server)
    decision = decide_access(user, here, (), now, suspension=suspension)
    if decision.reason == "suspended":
        return Verdict(
            user,
            server,
            True,
            f"{user} is suspended (suspension {suspension.id} by {suspension.suspended_by})",
        )
    if decision.allowed:
        return Verdict(
            user, server, False, f"approval {decision.approvals[0].approval_id} is active"
        )
    if decision.reason == "no-approval":
        return Verdict(user, server, True, f"no approval covers site {server}")
    # the verdict names the approval with the latest period at the site, whatever its state
    latest = max((a for a in approvals if server in a.sites), key=lambda a: a.period.end)
    return Verdict(
        user,
        server,
        True,
        f"approval {latest.approval_id} is {latest.status_at(now)} "
        f"(period {latest.period.start} .. {latest.period.end})",
    )
