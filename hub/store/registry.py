"""The approval registry: sites, datasets, approvals, their handlers and changes, roles,
and what the secretariat and site admins decided since.

The tables are in hub.store.db, the views handed out in hub.store.views and
the import of a policy directory in hub.store.policy_import; this module is
the queries and changes the platform asks for.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from extensions.contracts.clock import Clock, Period, as_utc
from hub.platform.policy_models import Platform, PolicyBundle, Quota
from hub.store import policy_import
from hub.store.db import (
    ApprovalChangeRow,
    ApprovalHandlerRow,
    ApprovalOverrideRow,
    ApprovalQuotaRow,
    ApprovalRow,
    Base,
    DatasetRow,
    QueryAuditResetRow,
    RoleGrantRow,
    SiteRow,
    SiteSettingRow,
    SuspensionRow,
    create_tables,
    make_engine,
)
from hub.store.views import (
    ApprovalView,
    ImportReport,
    QueryAuditResetView,
    RegistryError,
    SuspensionView,
)

# what other modules import from here: the views and the error live in hub.store.views
__all__ = [
    "ApprovalRegistry",
    "ApprovalView",
    "ImportReport",
    "QueryAuditResetView",
    "RegistryError",
    "SuspensionView",
]


class ApprovalRegistry:
    """Approvals, handlers, datasets and roles, with the queries the platform needs."""

    def __init__(self, database_url: str, clock: Clock | None = None):
        self.database_url = database_url
        self.clock = clock or Clock()
        self.engine = make_engine(database_url)
        create_tables(self.engine, Base.metadata)

    @classmethod
    def for_platform(cls, platform: Platform, clock: Clock | None = None) -> ApprovalRegistry:
        return cls(platform.database_url, clock=clock)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as s:
            with s.begin():
                yield s

    def close(self) -> None:
        self.engine.dispose()

    # -- import -----------------------------------------------------------

    def import_policy(self, bundle: PolicyBundle) -> ImportReport:
        """Bring the registry in line with a validated policy directory, in one transaction."""
        with self.session() as s:
            return policy_import.import_policy(s, bundle, self.clock.now())

    # -- queries ----------------------------------------------------------

    def _view(self, s: Session, row: ApprovalRow) -> ApprovalView:
        dataset_ids = [d.dataset_id for d in row.datasets]
        sites = dict(
            s.execute(
                select(DatasetRow.id, DatasetRow.site_id).where(DatasetRow.id.in_(dataset_ids))
            ).all()
        )
        override = s.get(ApprovalOverrideRow, row.id)
        end = row.end_date
        if override is not None and override.end_date is not None:
            end = override.end_date
        return ApprovalView(
            approval_id=row.id,
            institution=row.institution,
            purpose=row.purpose,
            handlers=tuple(h.username for h in row.handlers),
            datasets=tuple(dataset_ids),
            period=Period(row.start_date, end),
            quota=Quota(**row.quota) if row.quota else None,
            dataset_sites=sites,
            revoked_at=override.revoked_at if override is not None else None,
            approved_end=row.end_date if end != row.end_date else None,
        )

    def approval(self, approval_id: str) -> ApprovalView:
        with self.session() as s:
            row = s.get(ApprovalRow, approval_id)
            if row is None:
                raise RegistryError(f"unknown approval {approval_id!r}")
            return self._view(s, row)

    def approvals(self) -> list[ApprovalView]:
        with self.session() as s:
            return [
                self._view(s, r) for r in s.scalars(select(ApprovalRow).order_by(ApprovalRow.id))
            ]

    def approvals_of(self, username: str) -> list[ApprovalView]:
        """Every approval naming `username` as a data handler, whatever its period."""
        with self.session() as s:
            rows = s.scalars(
                select(ApprovalRow)
                .join(ApprovalHandlerRow)
                .where(ApprovalHandlerRow.username == username)
                .order_by(ApprovalRow.start_date, ApprovalRow.id)
            )
            return [self._view(s, r) for r in rows]

    def active_approvals(self, username: str, at: datetime | None = None) -> list[ApprovalView]:
        """The approvals of `username` that hold at the instant `at` (default: now): the period
        (with any extension) holds it, the approval is not revoked, and the person is not
        suspended. Every check of the platform (login, spawn, enforcer, gateways) asks this."""
        at = as_utc(at or self.clock.now())
        if self.suspension_of(username, at) is not None:
            return []
        return sorted(
            (a for a in self.approvals_of(username) if a.status_at(at) == "active"),
            key=lambda a: a.approval_id,
        )

    def usage_period_ends(self, approval_id: str) -> datetime:
        """The first instant (UTC) at which the approval no longer holds."""
        return self.approval(approval_id).ends_before

    # -- people --------------------------------------------------------------

    def is_known(self, username: str) -> bool:
        """Whether `username` is a data handler of any approval or holds a platform role."""
        with self.session() as s:
            return (
                s.scalar(
                    select(ApprovalHandlerRow.username).where(
                        ApprovalHandlerRow.username == username
                    )
                )
                is not None
                or s.scalar(select(RoleGrantRow.username).where(RoleGrantRow.username == username))
                is not None
            )

    def handlers_of_institution(self, institution: str) -> list[str]:
        """Every data handler of the approvals held by `institution`."""
        with self.session() as s:
            return sorted(
                set(
                    s.scalars(
                        select(ApprovalHandlerRow.username)
                        .join(ApprovalRow)
                        .where(ApprovalRow.institution == institution)
                    )
                )
            )

    def institutions(self) -> list[str]:
        with self.session() as s:
            return sorted(set(s.scalars(select(ApprovalRow.institution))))

    # -- suspensions ----------------------------------------------------------

    def suspension_of(self, username: str, at: datetime | None = None) -> SuspensionView | None:
        """The suspension of `username` in force at `at` (default: now), if any."""
        at = as_utc(at or self.clock.now())
        for v in self.suspensions(username):
            if v.active_at(at):
                return v
        return None

    def suspensions(self, username: str | None = None) -> list[SuspensionView]:
        """Suspensions, lifted ones included, oldest first."""
        with self.session() as s:
            q = select(SuspensionRow).order_by(SuspensionRow.id)
            if username is not None:
                q = q.where(SuspensionRow.username == username)
            return [SuspensionView.from_row(r) for r in s.scalars(q)]

    def banned(self, username: str, day: date) -> SuspensionView | None:
        """The suspension whose ban on new applications holds on `day`, if any."""
        for v in self.suspensions(username):
            if v.banned_on(day):
                return v
        return None

    def suspend(
        self,
        username: str,
        *,
        reason: str,
        by: str,
        ban_until: date | None = None,
        ban_indefinite: bool = False,
        institution: str | None = None,
    ) -> tuple[SuspensionView, bool]:
        """Suspend `username` now. Returns the suspension in force and whether it is new: a
        person already suspended keeps the suspension they have (the call is idempotent)."""
        if not self.is_known(username):
            raise RegistryError(f"unknown person {username!r}: not a data handler of any approval")
        now = self.clock.now()
        current = self.suspension_of(username, now)
        if current is not None:
            return current, False
        with self.session() as s:
            row = SuspensionRow(
                username=username,
                institution=institution,
                reason=reason,
                suspended_at=now,
                suspended_by=by,
                ban_until=ban_until,
                ban_indefinite=ban_indefinite,
            )
            s.add(row)
            s.flush()
            return SuspensionView.from_row(row), True

    def reinstate(self, username: str, *, reason: str, by: str) -> SuspensionView | None:
        """Lift the suspension of `username` now; None when they were not suspended. A ban on
        new applications stays as it was decided."""
        if not self.is_known(username):
            raise RegistryError(f"unknown person {username!r}: not a data handler of any approval")
        now = self.clock.now()
        current = self.suspension_of(username, now)
        if current is None:
            return None
        with self.session() as s:
            row = s.get(SuspensionRow, current.id)
            row.lifted_at = now
            row.lifted_by = by
            row.lift_reason = reason
            s.flush()
            return SuspensionView.from_row(row)

    # -- the secretariat's changes to an approval -------------------------------

    def _override(self, s: Session, approval_id: str, by: str) -> ApprovalOverrideRow:
        row = s.get(ApprovalOverrideRow, approval_id)
        if row is None:
            row = ApprovalOverrideRow(approval_id=approval_id, updated_at=self.clock.now())
            s.add(row)
        row.updated_at = self.clock.now()
        row.updated_by = by
        return row

    def extend(
        self, approval_id: str, end: date, *, reason: str, by: str
    ) -> tuple[ApprovalView, bool]:
        """Move an approval's last day to `end` (later than its current last day). Returns the
        approval and whether it changed: extending to the current end again changes nothing."""
        view = self.approval(approval_id)
        if view.revoked_at is not None:
            raise RegistryError(f"approval {approval_id} was revoked; it cannot be extended")
        if end == view.period.end:
            return view, False
        if end < view.period.end:
            raise RegistryError(
                f"the new end {end} is before the current end {view.period.end} of "
                f"{approval_id}; an extension moves the end later (revoke ends it early)"
            )
        with self.session() as s:
            row = self._override(s, approval_id, by)
            row.end_date = end
            s.add(
                ApprovalChangeRow(
                    approval_id=approval_id,
                    at=self.clock.now(),
                    kind="extended",
                    changes={"end": [view.period.end.isoformat(), end.isoformat()]},
                    source=f"{by}: {reason}",
                )
            )
        return self.approval(approval_id), True

    def revoke(self, approval_id: str, *, reason: str, by: str) -> tuple[ApprovalView, bool]:
        """End an approval now. Returns the approval and whether it changed (a second revoke,
        or revoking one that has ended, changes nothing)."""
        view = self.approval(approval_id)
        now = self.clock.now()
        if view.revoked_at is not None or view.status_at(now) == "ended":
            return view, False
        with self.session() as s:
            row = self._override(s, approval_id, by)
            row.revoked_at = now
            s.add(
                ApprovalChangeRow(
                    approval_id=approval_id,
                    at=now,
                    kind="revoked",
                    changes={"revoked_at": [None, now.isoformat()]},
                    source=f"{by}: {reason}",
                )
            )
        return self.approval(approval_id), True

    # -- the query-set audit's resets ---------------------------------------------

    def reset_query_audit(self, approval_id: str, *, reason: str, by: str) -> QueryAuditResetView:
        """Record, now, that the approval's query-set audit starts afresh at every site.
        Each call is a new reset (the gateways archive what was answered up to it)."""
        with self.session() as s:
            if s.get(ApprovalRow, approval_id) is None:
                raise RegistryError(f"unknown approval {approval_id!r}")
            row = QueryAuditResetRow(
                approval_id=approval_id, reset_at=self.clock.now(), reset_by=by, reason=reason
            )
            s.add(row)
            s.flush()
            return QueryAuditResetView.from_row(row)

    def query_audit_resets(self, approval_id: str | None = None) -> list[QueryAuditResetView]:
        """Resets of one approval's query-set audit (default: every approval's), oldest first."""
        with self.session() as s:
            q = select(QueryAuditResetRow).order_by(
                QueryAuditResetRow.reset_at, QueryAuditResetRow.id
            )
            if approval_id is not None:
                q = q.where(QueryAuditResetRow.approval_id == approval_id)
            return [QueryAuditResetView.from_row(r) for r in s.scalars(q)]

    def latest_query_audit_resets(
        self, approval_ids: Iterable[str] | None = None
    ) -> dict[str, datetime]:
        """approval id -> the time of its latest query-audit reset, for the approvals that
        have one (of `approval_ids`, default every approval)."""
        q = select(QueryAuditResetRow.approval_id, func.max(QueryAuditResetRow.reset_at))
        if approval_ids is not None:
            q = q.where(QueryAuditResetRow.approval_id.in_(list(approval_ids)))
        q = q.group_by(QueryAuditResetRow.approval_id)
        with self.session() as s:
            return {aid: as_utc(at) for aid, at in s.execute(q).all()}

    # -- what site admins set ---------------------------------------------------

    def site_settings(self, site_id: str) -> dict[str, Any]:
        """A site's image allow-list, default image and default quota now: what its admins
        set, else what the platform file says."""
        with self.session() as s:
            site = s.get(SiteRow, site_id)
            if site is None:
                raise RegistryError(f"unknown site {site_id!r}")
            setting = s.get(SiteSettingRow, site_id)
            images = list(site.images)
            quota = dict(site.quota)
            if setting is not None and setting.images is not None:
                images = list(setting.images)
            if setting is not None and setting.quota is not None:
                quota = dict(setting.quota)
            default = site.default_image if site.default_image in images else None
            return {
                "site": site_id,
                "images": images,
                "default_image": default or (images[0] if images else None),
                "quota": quota,
                "platform_images": list(site.images),
                "platform_quota": dict(site.quota),
                "updated_by": setting.updated_by if setting else None,
                "updated_at": setting.updated_at.isoformat() if setting else None,
            }

    def _setting(self, s: Session, site_id: str, by: str) -> SiteSettingRow:
        if s.get(SiteRow, site_id) is None:
            raise RegistryError(f"unknown site {site_id!r}")
        row = s.get(SiteSettingRow, site_id)
        if row is None:
            row = SiteSettingRow(site_id=site_id, updated_at=self.clock.now(), updated_by=by)
            s.add(row)
        row.updated_at = self.clock.now()
        row.updated_by = by
        return row

    def set_site_images(self, site_id: str, images: list[str], *, by: str) -> bool:
        """Replace a site's image allow-list; False when it already was that list."""
        if list(images) == self.site_settings(site_id)["images"]:
            return False
        with self.session() as s:
            self._setting(s, site_id, by).images = list(images)
        return True

    def set_site_quota(self, site_id: str, quota: Quota, *, by: str) -> bool:
        """Replace a site's default quota; False when it already was that quota."""
        if quota.to_dict() == self.site_settings(site_id)["quota"]:
            return False
        with self.session() as s:
            self._setting(s, site_id, by).quota = quota.to_dict()
        return True

    def approval_quota(self, approval_id: str, site_id: str) -> Quota | None:
        """The quota a site's admins set for one approval's servers there, if any."""
        with self.session() as s:
            row = s.get(ApprovalQuotaRow, (approval_id, site_id))
            return Quota(**row.quota) if row is not None else None

    def approval_quotas(self, site_id: str) -> dict[str, dict]:
        with self.session() as s:
            rows = s.scalars(select(ApprovalQuotaRow).where(ApprovalQuotaRow.site_id == site_id))
            return {r.approval_id: dict(r.quota) for r in rows}

    def set_approval_quota(self, approval_id: str, site_id: str, quota: Quota, *, by: str) -> bool:
        """Set the quota of one approval's servers at a site; False when unchanged."""
        view = self.approval(approval_id)
        if site_id not in view.sites:
            raise RegistryError(f"approval {approval_id} covers no dataset at site {site_id}")
        if self.approval_quota(approval_id, site_id) == quota:
            return False
        with self.session() as s:
            row = s.get(ApprovalQuotaRow, (approval_id, site_id))
            if row is None:
                row = ApprovalQuotaRow(approval_id=approval_id, site_id=site_id)
                s.add(row)
            row.quota = quota.to_dict()
            row.updated_at = self.clock.now()
            row.updated_by = by
        return True

    def changes(self, approval_id: str) -> list[dict[str, Any]]:
        with self.session() as s:
            rows = s.scalars(
                select(ApprovalChangeRow)
                .where(ApprovalChangeRow.approval_id == approval_id)
                .order_by(ApprovalChangeRow.id)
            )
            return [
                {"at": r.at.isoformat(), "kind": r.kind, "changes": r.changes, "source": r.source}
                for r in rows
            ]

    def roles_of(self, username: str) -> list[str]:
        with self.session() as s:
            return sorted(
                s.scalars(select(RoleGrantRow.role).where(RoleGrantRow.username == username))
            )

    def sites(self) -> list[dict[str, Any]]:
        with self.session() as s:
            return [
                {
                    "id": r.id,
                    "name": r.name,
                    "name_ja": r.name_ja,
                    "datasets": sorted(
                        s.scalars(select(DatasetRow.id).where(DatasetRow.site_id == r.id))
                    ),
                }
                for r in s.scalars(select(SiteRow).order_by(SiteRow.id))
            ]

    def snapshot(self) -> dict[str, list[tuple]]:
        """Every row of every table, for tests that prove a refused action changed nothing."""
        out: dict[str, list[tuple]] = {}
        with self.engine.connect() as conn:
            for table in Base.metadata.sorted_tables:
                rows = conn.execute(table.select()).all()
                out[table.name] = sorted(tuple(map(repr, r)) for r in rows)
        return out
