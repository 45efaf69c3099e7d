"""The export airlock's store: requests, their frozen files and their reviews.

Three tables (hub.store.db: export_requests, export_files, export_reviews) in the
registry's database, created by this store. Every change of a request is decided by the
rules (hub.platform.airlock) over the request as it is read in the same transaction, and
written with the request's `version` moved on: a change decided over a stale read (two
reviewers at once) is decided again over the new state, and a refusal writes nothing.
Each change is then recorded in the audit chain (extensions.contracts.events
EXPORT_REQUEST, EXPORT_CHECKED, EXPORT_REVIEW, EXPORT_WITHDRAW, EXPORT_RELEASE), with the
requester as `user`, who acted as `actor`, and the reasons they gave.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from extensions.contracts.clock import Clock
from extensions.contracts.events import (
    EXPORT_CHECKED,
    EXPORT_RELEASE,
    EXPORT_REQUEST,
    EXPORT_REVIEW,
    EXPORT_WITHDRAW,
)
from extensions.contracts.export import Manifest
from hub.platform.airlock import (
    REVIEW_STATES,
    ExportNotFound,
    ExportRequest,
    ExportWrongState,
    Review,
    check_paths,
    check_purpose,
    check_release,
    check_withdraw,
    decide_review,
    may_review_now,
)
from hub.platform.policy_models import ExportPolicy
from hub.store.audit import AuditStore
from hub.store.db import (
    ExportBase,
    ExportFileRow,
    ExportRequestRow,
    ExportReviewRow,
    create_tables,
    make_engine,
)

#: the actor of what the service itself does (the site's freezing, reported back)
SERVICE_ACTOR = "export"
#: how often a change decided over a stale read is decided again
_ATTEMPTS = 5


class _Stale(Exception):
    """The request changed between the read and the write."""


@dataclass(frozen=True)
class _Change:
    """What one act writes: the request's new values and, for a review, the review."""

    values: dict[str, Any]
    review: Review | None = None
    event: tuple[str, str, dict[str, Any]] | None = None  # schema, actor, data


class ExportStore:
    """Export requests over the registry's database, with every change in the audit chain."""

    def __init__(
        self,
        database_url: str,
        policy: ExportPolicy | None = None,
        audit: AuditStore | None = None,
        clock: Clock | None = None,
    ):
        self.database_url = database_url
        self.policy = policy or ExportPolicy()
        self.audit = audit
        self.clock = clock or Clock()
        self.engine = make_engine(database_url)
        create_tables(self.engine, ExportBase.metadata)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as s:
            with s.begin():
                yield s

    # -- read ------------------------------------------------------------------------

    @staticmethod
    def _query():
        return select(ExportRequestRow).options(
            selectinload(ExportRequestRow.reviews), selectinload(ExportRequestRow.files)
        )

    def get(self, request_id: str) -> ExportRequest | None:
        with self._session() as s:
            row = s.scalars(self._query().where(ExportRequestRow.id == request_id)).first()
            return _view(row) if row is not None else None

    def list_for_requester(self, username: str) -> list[ExportRequest]:
        """A person's own requests, newest first."""
        stmt = self._query().where(ExportRequestRow.requester == username)
        with self._session() as s:
            rows = s.scalars(stmt.order_by(ExportRequestRow.created_at.desc())).all()
            return [_view(r) for r in rows]

    def queue_for(self, reviewer: str, roles: Sequence[str]) -> list[ExportRequest]:
        """The requests this person (holding these platform roles) may review now, oldest
        first."""
        stmt = self._query().where(ExportRequestRow.state.in_(REVIEW_STATES))
        with self._session() as s:
            rows = s.scalars(stmt.order_by(ExportRequestRow.created_at)).all()
            views = [_view(r) for r in rows]
        return [v for v in views if may_review_now(v, reviewer, roles, self.policy)]

    # -- acts ------------------------------------------------------------------------

    def create(self, requester: str, site: str, purpose: Any, paths: Any) -> ExportRequest:
        """A new request (submitted), its paths and purpose checked by the rules."""
        purpose = check_purpose(purpose)
        paths = check_paths(paths, self.policy.checks)
        now = self.clock.now()
        request_id = uuid.uuid4().hex[:16]
        with self._session() as s:
            s.add(
                ExportRequestRow(
                    id=request_id,
                    requester=requester,
                    site=site,
                    purpose=purpose,
                    paths=list(paths),
                    state="submitted",
                    round=1,
                    version=1,
                    created_at=now,
                )
            )
        self._record(
            EXPORT_REQUEST,
            requester,
            requester,
            site,
            {"request_id": request_id, "state": "submitted", "paths": list(paths),
             "purpose": purpose},
        )  # fmt: skip
        return self.get(request_id)

    def record_manifest(self, request_id: str, manifest: Manifest) -> ExportRequest:
        """The site's manifest of a submitted request: its files, and the request checked."""
        if manifest.request_id != request_id:
            raise ValueError(f"the manifest is of request {manifest.request_id}, not {request_id}")

        def decide(req: ExportRequest) -> _Change:
            if req.state != "submitted":
                raise ExportWrongState("export.closed", id=req.id, state=req.state)
            failed = [f.name for f in manifest.files if not f.ok]
            data = {"request_id": req.id, "state": "checked", "files": len(manifest.files),
                    "bytes": sum(f.bytes for f in manifest.files),
                    "failed": failed, "error": manifest.error}  # fmt: skip
            values = {
                "state": "checked",
                "checked_at": self.clock.now(),
                "manifest": _manifest_dict(manifest),
            }
            return _Change(values, event=(EXPORT_CHECKED, SERVICE_ACTOR, data))

        return self._change(request_id, decide, files=manifest)

    def review(
        self,
        request_id: str,
        reviewer: str,
        roles: Sequence[str],
        decision: Any,
        reason: Any = "",
        override: Any = "",
        *,
        requester_suspended: bool = False,
    ) -> ExportRequest:
        """A reviewer's decision, written with the request's new state, or the refusal."""

        def decide(req: ExportRequest) -> _Change:
            now = self.clock.now()
            outcome = decide_review(
                req, reviewer, roles, decision, reason, override, self.policy, now,
                requester_suspended=requester_suspended,
            )  # fmt: skip
            values: dict[str, Any] = {"state": outcome.state}
            if outcome.state in ("approved", "rejected", "changes-requested"):
                values["decided_at"] = now
            r = outcome.review
            data = {"request_id": req.id, "round": r.round, "role": r.role,
                    "decision": r.decision, "reason": r.reason, "override": r.override,
                    "state": outcome.state}  # fmt: skip
            return _Change(values, review=r, event=(EXPORT_REVIEW, reviewer, data))

        return self._change(request_id, decide)

    def withdraw(
        self, request_id: str, username: str, *, requester_suspended: bool = False
    ) -> ExportRequest:
        """The requester withdraws an open request."""

        def decide(req: ExportRequest) -> _Change:
            state = check_withdraw(req, username, requester_suspended=requester_suspended)
            data = {"request_id": req.id, "state": state}
            return _Change({"state": state}, event=(EXPORT_WITHDRAW, username, data))

        return self._change(request_id, decide)

    def mark_released(
        self, request_id: str, username: str, name: str = "", *, requester_suspended: bool = False
    ) -> ExportRequest:
        """The requester receives a file of an approved request (`name`); the first download
        moves the request to released. Every download is recorded."""

        def decide(req: ExportRequest) -> _Change:
            now = self.clock.now()
            state = check_release(
                req, username, now, self.policy, requester_suspended=requester_suspended
            )
            values: dict[str, Any] = {"state": state}
            if req.released_at is None:
                values["released_at"] = now
            frozen = req.file(name)
            data = {"request_id": req.id, "state": state, "file": name,
                    "first": req.released_at is None}  # fmt: skip
            if frozen is not None:  # what left: its size and hash, for the report and the audit
                data |= {"bytes": frozen.bytes, "sha256": frozen.sha256}
            return _Change(values, event=(EXPORT_RELEASE, username, data))

        return self._change(request_id, decide)

    # -- the one way a request changes ---------------------------------------------------

    def _change(
        self,
        request_id: str,
        decide: Callable[[ExportRequest], _Change],
        files: Manifest | None = None,
    ) -> ExportRequest:
        """Decide over the request as read now and write the decision in the same
        transaction, only if nobody changed the request meanwhile (else decide again)."""
        for _ in range(_ATTEMPTS):
            try:
                request, change = self._try_change(request_id, decide, files)
            except _Stale:
                continue
            if change.event is not None:
                schema, actor, data = change.event
                self._record(schema, request.requester, actor, request.site, data)
            return self.get(request_id)
        raise ExportWrongState("export.closed", id=request_id, state="changing")

    def _try_change(self, request_id, decide, files) -> tuple[ExportRequest, _Change]:
        try:
            with self._session() as s:
                row = s.scalars(self._query().where(ExportRequestRow.id == request_id)).first()
                if row is None:
                    raise ExportNotFound("export.not_found", id=request_id)
                request = _view(row)
                change = decide(request)  # a refusal raises: nothing is written
                moved = s.execute(
                    update(ExportRequestRow)
                    .where(ExportRequestRow.id == request_id)
                    .where(ExportRequestRow.version == row.version)
                    .values(**change.values, version=row.version + 1)
                    .execution_options(synchronize_session=False)
                )
                if moved.rowcount != 1:
                    raise _Stale()
                if change.review is not None:
                    s.add(_review_row(request_id, change.review))
                if files is not None:
                    s.add_all(_file_rows(request_id, files))
        except IntegrityError:  # the same reviewer's decision written meanwhile
            raise _Stale() from None
        return request, change

    def _record(self, schema: str, user: str, actor: str, site: str, data: dict[str, Any]) -> None:
        if self.audit is None:
            return
        self.audit.append(
            [
                {
                    "event_id": uuid.uuid4().hex,
                    "schema": schema,
                    "version": 1,
                    "time": self.clock.now().isoformat(),
                    "user": user,
                    "site": site,
                    "actor": actor,
                    "data": data,
                }
            ]
        )


# ---------------------------------------------------------------------------
# rows and views


def _manifest_dict(manifest: Manifest) -> dict[str, Any]:
    return json.loads(manifest.to_json())


def _file_rows(request_id: str, manifest: Manifest) -> list[ExportFileRow]:
    return [
        ExportFileRow(
            request_id=request_id,
            name=f.name,
            position=i,
            bytes=f.bytes,
            sha256=f.sha256,
            media_type=f.media_type,
            ok=f.ok,
            checks=[{"check": c.check, "ok": c.ok, "detail": c.detail} for c in f.checks],
        )
        for i, f in enumerate(manifest.files)
    ]


def _review_row(request_id: str, r: Review) -> ExportReviewRow:
    return ExportReviewRow(
        request_id=request_id,
        round=r.round,
        reviewer=r.reviewer,
        role=r.role,
        decision=r.decision,
        reason=r.reason,
        override=r.override,
        at=r.at,
    )


def _view(row: ExportRequestRow) -> ExportRequest:
    manifest = Manifest.from_json(json.dumps(row.manifest)) if row.manifest else None
    return ExportRequest(
        id=row.id,
        requester=row.requester,
        site=row.site,
        purpose=row.purpose,
        paths=tuple(row.paths),
        state=row.state,
        created_at=row.created_at,
        round=row.round,
        checked_at=row.checked_at,
        decided_at=row.decided_at,
        released_at=row.released_at,
        manifest=manifest,
        reviews=tuple(
            Review(r.reviewer, r.role, r.decision, r.reason, r.override, r.at, r.round)
            for r in row.reviews
        ),
    )
