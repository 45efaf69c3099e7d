"""What the secretariat and site admins may do, checked and recorded: the one place the
admin service, the `visiting secretariat` / `visiting site-admin` commands and the tests
go through.

Every action

- needs a reason, and says who does it (`actor`);
- is checked completely before anything changes: a bad field raises
  `OperationError` naming the field, and the registry and the audit store are
  left as they were;
- is idempotent: asking again for what already holds changes nothing and is
  answered with `changed: False` (and still recorded, so the log shows the request);
  a reset of an approval's query-set audit is the exception: each one starts the
  audit afresh from its own time, so each is a change;
- goes into the audit store with the actor, the person or approval acted on,
  and the reason.

What takes effect elsewhere (servers stopped, tokens revoked) is the
enforcer's work; this module only decides and records.
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from extensions.contracts.clock import Clock, jst_date
from extensions.contracts.events import SECRETARIAT_ACTION, SITE_ADMIN_ACTION
from hub.platform.access import SECRETARIAT, SITE_ADMIN_PREFIX
from hub.platform.operation_checks import (
    MAX_CPU,
    MAX_HOME,
    MAX_MEMORY,
    MAX_REASON,
    OperationError,
    add_months,
    check_ban,
    check_date,
    check_image,
    check_quota,
    check_reason,
)
from hub.platform.policy_models import Platform, Quota
from hub.store.audit import AuditStore
from hub.store.registry import ApprovalRegistry, RegistryError
from hub.store.views import ApprovalView

# what other modules import from here: the checks live in hub.platform.operation_checks
__all__ = [
    "MAX_CPU",
    "MAX_HOME",
    "MAX_MEMORY",
    "MAX_REASON",
    "RESET_QUERY_AUDIT",
    "OperationError",
    "Operations",
    "Outcome",
    "add_months",
    "check_date",
    "check_quota",
    "check_reason",
]

#: the secretariat-action that resets an approval's query-set audit (the report counts them)
RESET_QUERY_AUDIT = "reset-query-audit"


@dataclass
class Outcome:
    """What an action did."""

    action: str
    changed: bool
    target: dict[str, Any]
    detail: dict[str, Any] = field(default_factory=dict)
    event_ids: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "changed": self.changed,
            "target": self.target,
            "detail": self.detail,
            "audit_event_ids": self.event_ids,
        }


# ---------------------------------------------------------------------------
# the actions


class Operations:
    """The secretariat's and site admins' actions over one registry and audit store."""

    def __init__(
        self,
        registry: ApprovalRegistry,
        audit: AuditStore,
        platform: Platform,
        clock: Clock | None = None,
        image_present: Callable[[str, str], bool] | None = None,
    ):
        self.registry = registry
        self.audit = audit
        self.platform = platform
        self.clock = clock or registry.clock
        # (site, image) -> whether the site's engine holds the image
        self.image_present = image_present

    # -- who may -----------------------------------------------------------------

    def require_secretariat(self, actor: str) -> None:
        if SECRETARIAT not in self.registry.roles_of(actor):
            raise OperationError(
                f"{actor} does not have the secretariat role", field=None, status=403
            )

    def require_site_admin(self, actor: str, site: str) -> None:
        if site not in self.platform.sites:
            raise OperationError(f"unknown site {site!r}", field="site", status=404)
        if f"{SITE_ADMIN_PREFIX}{site}" not in self.registry.roles_of(actor):
            raise OperationError(f"{actor} is not a site admin of {site}", field=None, status=403)

    def admin_sites(self, actor: str) -> list[str]:
        """The sites `actor` administers."""
        roles = self.registry.roles_of(actor)
        return [s for s in self.platform.sites if f"{SITE_ADMIN_PREFIX}{s}" in roles]

    # -- recording -----------------------------------------------------------------

    def _record(
        self,
        schema: str,
        actor: str,
        action: str,
        *,
        user: str,
        reason: str,
        changed: bool,
        site: str | None = None,
        approval_id: str | None = None,
        **data: Any,
    ) -> str:
        event_id = uuid.uuid4().hex
        self.audit.append(
            [
                {
                    "event_id": event_id,
                    "schema": schema,
                    "version": 1,
                    "time": self.clock.now().isoformat(),
                    "user": user,
                    "site": site,
                    "approval_id": approval_id,
                    "actor": actor,
                    "data": {"action": action, "reason": reason, "changed": changed, **data},
                }
            ]
        )
        return event_id

    # -- the secretariat -----------------------------------------------------------

    def suspend(
        self,
        actor: str,
        *,
        reason: Any = None,
        user: Any = None,
        institution: Any = None,
        ban_until: Any = None,
        ban_indefinite: Any = False,
    ) -> Outcome:
        """Suspend one data handler, or every handler of an institution's approvals."""
        self.require_secretariat(actor)
        reason = check_reason(reason)
        today = jst_date(self.clock.now())
        until, indefinite = check_ban(ban_until, ban_indefinite, self.platform.sanctions, today)
        users = self._to_suspend(actor, user, institution)
        done: dict[str, dict] = {}
        event_ids = []
        changed_any = False
        for name in users:
            view, changed = self.registry.suspend(
                name,
                reason=reason,
                by=actor,
                ban_until=until,
                ban_indefinite=indefinite,
                institution=institution or None,
            )
            changed_any |= changed
            done[name] = view.to_json() | {"new": changed}
            event_ids.append(
                self._record(
                    SECRETARIAT_ACTION,
                    actor,
                    "suspend",
                    user=name,
                    reason=reason,
                    changed=changed,
                    suspension_id=view.id,
                    institution=institution or None,
                    ban_until=view.ban_until.isoformat() if view.ban_until else None,
                    ban_indefinite=view.ban_indefinite,
                )
            )
        target = {"institution": institution} if institution else {"user": user}
        return Outcome("suspend", changed_any, target, {"suspensions": done}, event_ids)

    def _to_suspend(self, actor: str, user: Any, institution: Any) -> list[str]:
        """The person named, or every handler of the institution's approvals; never the
        actor."""
        if bool(user) == bool(institution):
            raise OperationError("name either a user or an institution", field="user")
        if institution:
            if institution not in self.registry.institutions():
                raise OperationError(
                    f"unknown institution {institution!r}: no approval is held by it",
                    field="institution",
                    status=404,
                )
            users = self.registry.handlers_of_institution(institution)
        else:
            users = [self._known_person(user)]
        if actor in users:
            raise OperationError("a secretariat member cannot suspend themselves", field="user")
        return users

    def _known_person(self, user: Any) -> str:
        if not isinstance(user, str) or not self.registry.is_known(user):
            raise OperationError(
                f"unknown person {user!r}: not a data handler of any approval",
                field="user",
                status=404,
            )
        return user

    def reinstate(self, actor: str, *, user: Any, reason: Any = None) -> Outcome:
        self.require_secretariat(actor)
        reason = check_reason(reason)
        self._known_person(user)
        lifted = self.registry.reinstate(user, reason=reason, by=actor)
        event = self._record(
            SECRETARIAT_ACTION,
            actor,
            "reinstate",
            user=user,
            reason=reason,
            changed=lifted is not None,
            suspension_id=lifted.id if lifted else None,
        )
        detail = {"suspension": lifted.to_json() if lifted else None}
        if lifted is None:
            detail["note"] = f"{user} was not suspended"
        return Outcome("reinstate", lifted is not None, {"user": user}, detail, [event])

    def _approval(self, approval_id: Any) -> ApprovalView:
        if not isinstance(approval_id, str) or not approval_id:
            raise OperationError("an approval id is required", field="approval_id")
        try:
            return self.registry.approval(approval_id)
        except RegistryError:
            raise OperationError(
                f"unknown approval {approval_id!r}", field="approval_id", status=404
            ) from None

    def extend(self, actor: str, *, approval_id: Any, end: Any, reason: Any = None) -> Outcome:
        self.require_secretariat(actor)
        reason = check_reason(reason)
        view = self._approval(approval_id)
        new_end = check_date(end, "end")
        if new_end <= view.period.start:
            raise OperationError(
                f"the new end {new_end} is not after the period's start {view.period.start}",
                field="end",
            )
        old_end = view.period.end
        try:
            after, changed = self.registry.extend(approval_id, new_end, reason=reason, by=actor)
        except RegistryError as e:
            raise OperationError(str(e), field="end") from None
        event = self._record(
            SECRETARIAT_ACTION,
            actor,
            "extend",
            user=actor,
            approval_id=approval_id,
            reason=reason,
            changed=changed,
            end=[old_end.isoformat(), new_end.isoformat()],
        )
        return Outcome(
            "extend", changed, {"approval_id": approval_id}, {"approval": after.to_json()}, [event]
        )

    def revoke(self, actor: str, *, approval_id: Any, reason: Any = None) -> Outcome:
        self.require_secretariat(actor)
        reason = check_reason(reason)
        self._approval(approval_id)
        after, changed = self.registry.revoke(approval_id, reason=reason, by=actor)
        event = self._record(
            SECRETARIAT_ACTION,
            actor,
            "revoke",
            user=actor,
            approval_id=approval_id,
            reason=reason,
            changed=changed,
            handlers=list(after.handlers),
        )
        return Outcome(
            "revoke", changed, {"approval_id": approval_id}, {"approval": after.to_json()}, [event]
        )

    def reset_query_audit(self, actor: str, *, approval_id: Any, reason: Any = None) -> Outcome:
        """Start the approval's query-set audit afresh at every site. The gateways read the
        reset with the approval and archive the answers recorded before it; a reset needs a
        reason because it lets queries through that the earlier answers would have refused."""
        self.require_secretariat(actor)
        reason = check_reason(reason)
        self._approval(approval_id)
        reset = self.registry.reset_query_audit(approval_id, reason=reason, by=actor)
        event = self._record(
            SECRETARIAT_ACTION,
            actor,
            RESET_QUERY_AUDIT,
            user=actor,
            approval_id=approval_id,
            reason=reason,
            changed=True,
            reset_id=reset.id,
            reset_at=reset.at.isoformat(),
        )
        return Outcome(
            RESET_QUERY_AUDIT,
            True,
            {"approval_id": approval_id},
            {"reset": reset.to_json()},
            [event],
        )

    def approval_state(self, approval_id: Any) -> dict[str, Any]:
        """An approval's state, handlers, sites, period, changes, query-audit resets and its
        handlers' suspensions."""
        view = self._approval(approval_id)
        now = self.clock.now()
        return view.to_json() | {
            "status": view.status_at(now),
            "changes": self.registry.changes(view.approval_id),
            "query_audit_resets": [
                r.to_json() for r in self.registry.query_audit_resets(view.approval_id)
            ],
            "suspensions": {
                h: [s.to_json() for s in self.registry.suspensions(h)] for h in view.handlers
            },
            "suspended_now": [h for h in view.handlers if self.registry.suspension_of(h, now)],
        }

    def approvals_state(self) -> list[dict[str, Any]]:
        now = self.clock.now()
        resets = self.registry.latest_query_audit_resets()
        return [
            a.to_json()
            | {
                "status": a.status_at(now),
                "suspended_now": [h for h in a.handlers if self.registry.suspension_of(h, now)],
                "query_audit_reset": (
                    resets[a.approval_id].isoformat() if a.approval_id in resets else None
                ),
            }
            for a in self.registry.approvals()
        ]

    # -- site admins -----------------------------------------------------------------

    def _site_record(self, actor: str, site: str, action: str, **kwargs) -> str:
        kwargs.setdefault("user", actor)
        return self._record(SITE_ADMIN_ACTION, actor, action, site=site, **kwargs)

    def add_image(self, actor: str, *, site: Any, image: Any, reason: Any = None) -> Outcome:
        self.require_site_admin(actor, site)
        reason = check_reason(reason)
        image = check_image(image)
        if self.image_present is None or not self.image_present(site, image):
            raise OperationError(
                f"the image {image!r} is not present on site {site}'s engine; build or load it "
                f"there first",
                field="image",
            )
        images = self.registry.site_settings(site)["images"]
        changed = image not in images
        if changed:
            self.registry.set_site_images(site, images + [image], by=actor)
        event = self._site_record(
            actor, site, "add-image", reason=reason, changed=changed, image=image
        )
        return Outcome("add-image", changed, {"site": site, "image": image}, {}, [event])

    def retire_image(self, actor: str, *, site: Any, image: Any, reason: Any = None) -> Outcome:
        self.require_site_admin(actor, site)
        reason = check_reason(reason)
        image = check_image(image)
        images = self.registry.site_settings(site)["images"]
        changed = image in images
        if changed and len(images) == 1:
            raise OperationError(
                f"{image} is the only image of site {site}; add another before retiring it",
                field="image",
            )
        if changed:
            self.registry.set_site_images(site, [i for i in images if i != image], by=actor)
        event = self._site_record(
            actor, site, "retire-image", reason=reason, changed=changed, image=image
        )
        detail = {} if changed else {"note": f"{image} is not on the allow-list of {site}"}
        return Outcome("retire-image", changed, {"site": site, "image": image}, detail, [event])

    def set_site_quota(self, actor: str, *, site: Any, quota: Any, reason: Any = None) -> Outcome:
        self.require_site_admin(actor, site)
        reason = check_reason(reason)
        q = check_quota(quota)
        current = Quota(**self.registry.site_settings(site)["quota"])
        new = q.over(current)
        changed = self.registry.set_site_quota(site, new, by=actor)
        event = self._site_record(
            actor, site, "set-site-quota", reason=reason, changed=changed, quota=new.to_dict()
        )
        return Outcome("set-site-quota", changed, {"site": site}, {"quota": new.to_dict()}, [event])

    def set_approval_quota(
        self, actor: str, *, site: Any, approval_id: Any, quota: Any, reason: Any = None
    ) -> Outcome:
        self.require_site_admin(actor, site)
        reason = check_reason(reason)
        view = self._approval(approval_id)
        if site not in view.sites:
            raise OperationError(
                f"approval {approval_id} covers no dataset at site {site}", field="approval_id"
            )
        q = check_quota(quota)
        changed = self.registry.set_approval_quota(approval_id, site, q, by=actor)
        event = self._site_record(
            actor,
            site,
            "set-approval-quota",
            approval_id=approval_id,
            reason=reason,
            changed=changed,
            quota=q.to_dict(),
        )
        return Outcome(
            "set-approval-quota",
            changed,
            {"site": site, "approval_id": approval_id},
            {"quota": q.to_dict()},
            [event],
        )

    def record_server_stop(
        self, actor: str, *, site: str, user: str, reason: str, stopped: bool
    ) -> str:
        """The audit record of a site admin stopping a server (the service does the stop)."""
        return self._site_record(
            actor, site, "stop-server", user=user, reason=reason, changed=stopped
        )
