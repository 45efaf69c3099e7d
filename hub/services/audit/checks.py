"""Who sent a request to the audit intake, what it may store, and what a server is told of
its approval: pure decisions over the hub's token model and the registry's views."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

from extensions.contracts.events import FEDERATION_QUERY
from hub.platform.access import approvals_at_site, decide_access
from hub.store.registry import ApprovalView, SuspensionView

SERVER_SCOPE = re.compile(r"^access:servers!server=([^/]+)/(.+)$")
GATEWAY_SERVICE = re.compile(r"^gateway-([a-z][a-z0-9-]*)$")
MAX_EVENTS = 5000


def server_of(model: dict) -> tuple[str, str] | None:
    """(user, server name) a token belongs to, from its scopes; None for other tokens."""
    if model.get("kind") != "user":
        return None
    for scope in model.get("scopes", []):
        m = SERVER_SCOPE.match(scope)
        if m and m.group(1) == model.get("name"):
            return m.group(1), m.group(2)
    return None


def gateway_of(model: dict) -> str | None:
    """The site whose federation gateway this token belongs to; None for other tokens."""
    if model.get("kind") != "service":
        return None
    m = GATEWAY_SERVICE.match(model.get("name", ""))
    return m.group(1) if m else None


def check_events(events, user: str | None, site: str) -> str | None:
    """Why a batch may not be stored, or None.

    From a server (`user` set): only events of that user at its site. From a
    site's gateway (`user` None): only federation-query events of its site.
    """
    sender = "a gateway" if user is None else "a server"
    where = f"the {'gateway' if user is None else 'server'} at {site}"
    if not isinstance(events, list):
        return "'events' must be a list"
    if len(events) > MAX_EVENTS:
        return f"at most {MAX_EVENTS} events per request"
    for i, e in enumerate(events):
        if not isinstance(e, dict):
            return f"events[{i}] is not an object"
        if user is None and e.get("schema") != FEDERATION_QUERY:
            return f"events[{i}].schema: a gateway sends only {FEDERATION_QUERY}"
        if user is not None and e.get("user") != user:
            return f"events[{i}].user is {e.get('user')!r}; this token is {user}'s"
        if e.get("site") != site:
            return f"events[{i}].site is {e.get('site')!r}; this token is of {where}"
        if e.get("actor") is not None:
            return f"events[{i}].actor is set by the hub, not by {sender}"
    return None


def period_of(
    approvals: Sequence[ApprovalView],
    suspension: SuspensionView | None,
    site: str,
    approval_id: str,
    now: datetime,
) -> dict | None:
    """What a server at `site` is told about `approval_id`, given every approval naming its
    user and the user's suspension in force; None when that approval does not name the user
    or covers no dataset at `site` (the server may not ask about it)."""
    approval = next(
        (a for a in approvals_at_site(approvals, site) if a.approval_id == approval_id), None
    )
    if approval is None:
        return None
    # the platform's decision over this one approval: "suspended", else the approval's own
    # status (active, not-started, ended, revoked); the user's name is used only when no
    # approval is given, never here
    status = decide_access("", [approval], (), now, suspension=suspension).reason
    return {
        "approval_id": approval.approval_id,
        "end_date": approval.period.end.isoformat(),
        "ends_before": approval.ends_before.isoformat(),
        "status": status,
        "suspended": status == "suspended",
    }
