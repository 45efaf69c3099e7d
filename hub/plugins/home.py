"""What the hub's home page shows a logged-in person: one row per site they may work at."""

from __future__ import annotations

from functools import cache

from hub.platform.access import approvals_at_site
from hub.platform.traits import PlatformTraits


@cache
def _context(platform_dir: str | None) -> PlatformTraits:
    # the same platform folder, registry and clock as the authenticator and the spawner
    return PlatformTraits(platform_dir=platform_dir) if platform_dir else PlatformTraits()


def site_rows(user, platform_dir: str | None = None) -> list[dict]:
    """Rows for the home page: site, approved datasets there, approval and its end, server state.

    Called by JupyterHub with the current user (or None) when a page is rendered.
    """
    if user is None:
        return []
    ctx = _context(platform_dir)
    platform = ctx.platform
    now = ctx.clock.now()
    active = ctx.registry.active_approvals(user.name, now)
    rows = []
    for site in platform.sites.values():
        covering = approvals_at_site(active, site.id)
        if not covering:
            continue
        approval = covering[0]
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
