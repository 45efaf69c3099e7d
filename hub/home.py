"""What the hub's home page shows a logged-in person: one row per site they may work at."""

from __future__ import annotations

import os
from functools import cache

from .periods import clock_from_env
from .policy import load_platform
from .registry import ApprovalRegistry
from .traits import PLATFORM_ENV, REPO_ROOT


@cache
def _context(platform_dir: str):
    platform = load_platform(platform_dir)
    return platform, ApprovalRegistry.for_platform(platform)


def site_rows(user, platform_dir: str | None = None, clock=None) -> list[dict]:
    """Rows for the home page: site, approved datasets there, approval and its end, server state.

    Called by JupyterHub with the current user (or None) when a page is rendered.
    """
    if user is None:
        return []
    platform, registry = _context(
        platform_dir or os.environ.get(PLATFORM_ENV, str(REPO_ROOT / "policies" / "demo"))
    )
    now = (clock or clock_from_env()).now()
    rows = []
    for site in platform.sites.values():
        covering = [a for a in registry.active_approvals(user.name, now) if a.datasets_at(site.id)]
        if not covering:
            continue
        approval = max(covering, key=lambda a: a.period.end)
        spawner = user.spawners.get(site.id) if hasattr(user, "spawners") else None
        rows.append(
            {
                "site": site.id,
                "name": site.name,
                "name_ja": site.name_ja,
                "datasets": [
                    {
                        "id": d,
                        "title": platform.datasets[d].title,
                        "kind": platform.datasets[d].kind,
                    }
                    for d in approval.datasets_at(site.id)
                ],
                "approval_id": approval.approval_id,
                "end": approval.period.end.isoformat(),
                "days_left": approval.period.days_left(now),
                "active": bool(spawner and spawner.active),
                "ready": bool(spawner and spawner.ready),
                "url": user.server_url(site.id) if hasattr(user, "server_url") else "",
            }
        )
    return rows
