"""Bringing the registry in line with a validated policy directory.

Idempotent: an unchanged approval is left alone, a changed one is updated and
the change recorded with what changed (field -> [old, new]), a new one is
refused when it names a person banned from new applications. Sites, datasets
and platform roles follow the files. What the secretariat and site admins
decided later (suspensions, extensions, quotas) lives in tables of its own and
is never touched here.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from extensions.contracts.clock import jst_date
from hub.platform.policy_models import Approval, Platform, PolicyBundle
from hub.store.db import (
    ApprovalChangeRow,
    ApprovalDatasetRow,
    ApprovalHandlerRow,
    ApprovalRow,
    DatasetRow,
    RoleGrantRow,
    SiteRow,
    SuspensionRow,
)
from hub.store.views import ImportReport, RegistryError, SuspensionView


def import_policy(s: Session, bundle: PolicyBundle, now: datetime) -> ImportReport:
    """Sync sites, datasets, approvals and roles in the session `s` (one transaction)."""
    report = ImportReport()
    sync_sites(s, bundle.platform, report)
    s.flush()
    sync_approvals(s, bundle, now, report)
    if bundle.accounts:
        sync_roles(s, bundle, report)
    return report


def _content_hash(content: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[Any]]:
    return {
        k: [old.get(k), new.get(k)] for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)
    }


def sync_approvals(s: Session, bundle: PolicyBundle, now: datetime, report: ImportReport) -> None:
    """Create new approvals, update changed ones (recording what changed), note the rest."""
    existing = {row.id: row for row in s.scalars(select(ApprovalRow))}
    for approval in bundle.approvals.values():
        content = approval.content()
        digest = _content_hash(content)
        row = existing.get(approval.approval_id)
        if row is None:
            _refuse_banned(s, approval, now)
            row = ApprovalRow(id=approval.approval_id, created_at=now)
            s.add(row)
            _fill(row, approval, content, digest, now)
            row.change_log.append(
                ApprovalChangeRow(at=now, kind="created", changes={}, source=approval.source)
            )
            report.created.append(approval.approval_id)
        elif row.content_hash == digest:
            report.unchanged.append(approval.approval_id)
        else:
            changes = _diff(row.content, content)
            _fill(row, approval, content, digest, now)
            row.change_log.append(
                ApprovalChangeRow(at=now, kind="updated", changes=changes, source=approval.source)
            )
            report.updated[approval.approval_id] = changes
    report.not_in_directory = sorted(set(existing) - set(bundle.approvals))


def _refuse_banned(s: Session, approval: Approval, now: datetime) -> None:
    """A new application may not name a person banned from applying (nothing is imported)."""
    today = jst_date(now)
    for handler in sorted(set(approval.handlers)):
        for r in s.scalars(select(SuspensionRow).where(SuspensionRow.username == handler)):
            if SuspensionView.from_row(r).banned_on(today):
                until = "indefinitely" if r.ban_indefinite else f"until {r.ban_until}"
                raise RegistryError(
                    f"{approval.source or approval.approval_id}: {handler} is banned from "
                    f"new applications {until} (suspended {r.suspended_at:%Y-%m-%d}: "
                    f"{r.reason}); nothing was imported"
                )


def _fill(row: ApprovalRow, approval: Approval, content: dict, digest: str, now: datetime) -> None:
    row.institution = approval.institution
    row.purpose = approval.purpose
    row.start_date = approval.period.start
    row.end_date = approval.period.end
    row.starts_at = approval.period.starts_at
    row.ends_before = approval.period.ends_before
    row.quota = approval.quota.to_dict() if approval.quota else None
    row.content = content
    row.content_hash = digest
    row.source = approval.source
    row.updated_at = now
    row.handlers = [ApprovalHandlerRow(username=h) for h in sorted(set(approval.handlers))]
    row.datasets = [ApprovalDatasetRow(dataset_id=d) for d in sorted(set(approval.datasets))]


def sync_sites(s: Session, platform: Platform, report: ImportReport) -> None:
    """Sites and their datasets as platform.yaml lists them; new or changed sites are
    reported."""
    sites = {r.id: r for r in s.scalars(select(SiteRow))}
    datasets = {r.id: r for r in s.scalars(select(DatasetRow))}
    for site in platform.sites.values():
        values = {
            "name": site.name,
            "name_ja": site.name_ja,
            "region": site.region,
            "docker_endpoint": site.docker_endpoint,
            "network": site.network,
            "images": list(site.images),
            "default_image": site.default_image,
            "quota": site.quota.to_dict(),
        }
        if _upsert(s, SiteRow, sites.get(site.id), site.id, values):
            report.sites_changed.append(site.id)
    # datasets refer to sites, and the two tables have no ORM relationship to order inserts
    s.flush()
    for site in platform.sites.values():
        for d in site.datasets:
            values = {"site_id": site.id, "kind": d.kind, "title": d.title, "files": list(d.files)}
            _upsert(s, DatasetRow, datasets.get(d.id), d.id, values)


def _upsert(s: Session, table: type, row: Any, row_id: str, values: dict[str, Any]) -> bool:
    """Add a row with `values`, or set them on the existing `row`; whether anything changed."""
    if row is None:
        s.add(table(id=row_id, **values))
        return True
    if any(getattr(row, k) != v for k, v in values.items()):
        for k, v in values.items():
            setattr(row, k, v)
        return True
    return False


def sync_roles(s: Session, bundle: PolicyBundle, report: ImportReport) -> None:
    """Platform roles as users.yaml grants them; people whose roles changed are reported."""
    current: dict[str, set[str]] = {}
    for g in s.scalars(select(RoleGrantRow)):
        current.setdefault(g.username, set()).add(g.role)
    for username, account in bundle.accounts.items():
        wanted = set(account.roles)
        have = current.get(username, set())
        if wanted == have:
            continue
        for role in have - wanted:
            s.delete(s.get(RoleGrantRow, (username, role)))
        for role in wanted - have:
            s.add(RoleGrantRow(username=username, role=role))
        report.roles_changed.append(username)
