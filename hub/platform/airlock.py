"""The export airlock's rules: who may see, review, withdraw and receive an export request.

Pure decisions over a request as the store holds it (`ExportRequest`), the person
acting, the platform roles they hold and the platform's `rules.export`
(`ExportPolicy`); the store (hub.store.exports) writes what they decide, the export
service (hub.services.export) asks them. The states and decisions are the contract's
(extensions.contracts.export):

    submitted --frozen at the site--> checked --an approval--> under-review
    checked | under-review --every required role approved--> approved --first download--> released
    checked | under-review --a reject--> rejected;  --changes--> changes-requested
    any open state --the requester withdraws--> withdrawn

Each refusal is an `ExportRefusal` of the status it answers with (400 bad input, 403 not
allowed, 404 hidden, 409 wrong state), carrying the key of its text in the message
table; a refused act changes nothing.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from extensions.contracts.clock import JST, as_utc
from extensions.contracts.export import (
    DECISIONS,
    OPEN_STATES,
    ExportRules,
    FrozenFile,
    Manifest,
)
from hub.platform.access import SECRETARIAT, SITE_ADMIN_PREFIX
from hub.platform.messages import LANGS, Message, message
from hub.platform.policy_models import ExportPolicy

#: the states in which reviewers act (before: still freezing; changes-requested: the
#: requester's turn)
REVIEW_STATES = ("checked", "under-review")
#: the states whose files may be downloaded, within the release window
RELEASE_STATES = ("approved", "released")


# ---------------------------------------------------------------------------
# refusals


class ExportRefusal(Exception):
    """An act the airlock refuses; `text` is what the person reads (both languages),
    `key` its key in the message table, `field` the input that is wrong (or None)."""

    status = 400

    def __init__(self, key: str, field: str | None = None, **fields: Any):
        self.key = key
        self.field = field
        self.text: Message = message(key, **fields)
        super().__init__(str(self.text))

    @property
    def message(self) -> str:
        return str(self.text)

    def to_json(self) -> dict[str, Any]:
        return error_json(self.text)


def error_json(text: Message) -> dict[str, Any]:
    """A refusal as the export API answers it: its key and its text in every language."""
    return {"error": text.key, "message": {lang: getattr(text, lang) for lang in LANGS}}


class BadExportInput(ExportRefusal):
    status = 400


class ExportNotAllowed(ExportRefusal):
    status = 403


class ExportNotFound(ExportRefusal):
    status = 404


class ExportWrongState(ExportRefusal):
    status = 409


class ExportUnavailable(ExportRefusal):
    """The site cannot freeze or give back files now (not the person's doing)."""

    status = 503


# ---------------------------------------------------------------------------
# what the rules read


@dataclass(frozen=True)
class Review:
    """One reviewer's decision on one round of a request."""

    reviewer: str
    role: str  # one of the policy's reviewers: site-admin | secretariat
    decision: str  # one of DECISIONS
    reason: str
    override: str  # why failed checks are overridden (an approval only), else ""
    at: datetime
    round: int = 1

    def to_json(self) -> dict[str, Any]:
        return {
            "reviewer": self.reviewer,
            "role": self.role,
            "decision": self.decision,
            "reason": self.reason,
            "override": self.override,
            "at": self.at.isoformat(),
            "round": self.round,
        }


@dataclass(frozen=True)
class ExportRequest:
    """A request as the store holds it."""

    id: str
    requester: str
    site: str
    purpose: str
    paths: tuple[str, ...]
    state: str
    created_at: datetime
    round: int = 1
    checked_at: datetime | None = None
    decided_at: datetime | None = None
    released_at: datetime | None = None
    manifest: Manifest | None = None
    reviews: tuple[Review, ...] = field(default_factory=tuple)

    @property
    def current_reviews(self) -> tuple[Review, ...]:
        return tuple(r for r in self.reviews if r.round == self.round)

    @property
    def files(self) -> tuple[FrozenFile, ...]:
        """The frozen files; none before the site's manifest."""
        return self.manifest.files if self.manifest else ()

    def file(self, name: str) -> FrozenFile | None:
        """The frozen file `name`, or None when the request holds no such file."""
        return next((f for f in self.files if f.name == name), None)

    @property
    def failed_files(self) -> tuple[str, ...]:
        """The files whose automatic checks failed."""
        return tuple(f.name for f in self.files if not f.ok)

    def approved_roles(self) -> set[str]:
        return {r.role for r in self.current_reviews if r.decision == "approve"}

    def to_json(self) -> dict[str, Any]:
        iso = {
            name: (getattr(self, name).isoformat() if getattr(self, name) else None)
            for name in ("created_at", "checked_at", "decided_at", "released_at")
        }
        return {
            "id": self.id,
            "requester": self.requester,
            "site": self.site,
            "purpose": self.purpose,
            "paths": list(self.paths),
            "state": self.state,
            "round": self.round,
            **iso,
            "manifest": _manifest_json(self.manifest),
            "reviews": [r.to_json() for r in self.reviews],
        }


def _manifest_json(manifest: Manifest | None) -> dict[str, Any] | None:
    if manifest is None:
        return None
    return {
        "ok": manifest.ok,
        "error": manifest.error,
        "files": [
            {
                "name": f.name,
                "bytes": f.bytes,
                "sha256": f.sha256,
                "media_type": f.media_type,
                "ok": f.ok,
                "checks": [{"check": c.check, "ok": c.ok, "detail": c.detail} for c in f.checks],
            }
            for f in manifest.files
        ],
    }


# ---------------------------------------------------------------------------
# a new request


def check_purpose(purpose: Any) -> str:
    if not isinstance(purpose, str) or not purpose.strip():
        raise BadExportInput("export.purpose_needed", "purpose")
    return purpose.strip()


def check_paths(paths: Any, rules: ExportRules) -> tuple[str, ...]:
    """The requested paths, normalised ('a//b/./c' -> 'a/b/c'), relative to the home: none
    empty, absolute, with '..' or named twice, and at most `rules.max_files` of them."""
    if not isinstance(paths, list) or not paths:
        raise BadExportInput("export.no_paths", "paths")
    if len(paths) > rules.max_files:
        raise BadExportInput(
            "export.too_many_files", "paths", max=rules.max_files, count=len(paths)
        )
    seen: list[str] = []
    for i, raw in enumerate(paths):
        where = f"paths[{i}]"
        if not isinstance(raw, str) or not raw.strip() or "\0" in raw:
            raise BadExportInput("export.path_empty", where, index=i + 1)
        if raw.startswith(("/", "~")) or raw.strip().startswith("/"):
            raise BadExportInput("export.path_absolute", where, path=raw)
        if ".." in raw.replace("\\", "/").split("/"):
            raise BadExportInput("export.path_parent", where, path=raw)
        path = posixpath.normpath(raw.strip())
        if path in (".", ""):
            raise BadExportInput("export.path_empty", where, index=i + 1)
        if path in seen:
            raise BadExportInput("export.path_twice", where, path=raw)
        seen.append(path)
    return tuple(seen)


# ---------------------------------------------------------------------------
# who is who


def reviewer_roles(held: Sequence[str], site: str, required: Sequence[str]) -> tuple[str, ...]:
    """The required reviewer roles a person holding the platform roles `held` fills for a
    request of `site`, in the policy's order: `site-admin` only as an admin of that
    very site, `secretariat` as a member of the secretariat."""
    fills = {
        "site-admin": f"{SITE_ADMIN_PREFIX}{site}" in held,
        "secretariat": SECRETARIAT in held,
    }
    return tuple(role for role in required if fills.get(role, False))


def may_see(
    request: ExportRequest, username: str, held: Sequence[str], policy: ExportPolicy
) -> bool:
    """The requester, and whoever may review requests of its site, see a request."""
    return username == request.requester or bool(
        reviewer_roles(held, request.site, policy.reviewers)
    )


def may_review_now(
    request: ExportRequest, username: str, held: Sequence[str], policy: ExportPolicy
) -> bool:
    """Whether the request belongs in this person's review queue: reviewable now, not their
    own, not yet decided on by them in this round, and a role of theirs still has a say."""
    if request.state not in REVIEW_STATES or username == request.requester:
        return False
    if any(r.reviewer == username for r in request.current_reviews):
        return False
    return bool(reviewer_roles(held, request.site, policy.reviewers))


# ---------------------------------------------------------------------------
# acts


@dataclass(frozen=True)
class ReviewOutcome:
    """What a review writes: the review and the request's state after it."""

    review: Review
    state: str


def decide_review(
    request: ExportRequest,
    reviewer: str,
    held: Sequence[str],
    decision: Any,
    reason: Any,
    override: Any,
    policy: ExportPolicy,
    now: datetime,
    *,
    requester_suspended: bool = False,
) -> ReviewOutcome:
    """A reviewer's decision on a request, or the refusal: the decision must be one of
    DECISIONS with a reason for reject and changes; the request checked or under review,
    frozen without error for an approval, its requester not suspended; the reviewer not
    the requester, holding a required role for the request's site, not having decided in
    this round; an approval fills a role not yet approved, and one of a file whose checks
    failed needs an override reason."""
    if decision not in DECISIONS:
        raise BadExportInput("export.bad_decision", "decision")
    reason = reason.strip() if isinstance(reason, str) else ""
    override = override.strip() if isinstance(override, str) else ""
    if decision != "approve" and not reason:
        raise BadExportInput("export.reason_needed", "reason")
    _check_reviewable(request, requester_suspended)
    if reviewer == request.requester:
        raise ExportNotAllowed("export.own_request")
    roles = reviewer_roles(held, request.site, policy.reviewers)
    if not roles:
        raise ExportNotAllowed(
            "export.not_reviewer", site=request.site, roles=", ".join(policy.reviewers)
        )
    if any(r.reviewer == reviewer for r in request.current_reviews):
        raise ExportNotAllowed("export.already_reviewed", id=request.id)
    done = request.approved_roles()
    pending = [r for r in roles if r not in done]
    if decision == "approve":
        role = _approving_role(request, pending, roles)
        _check_approvable(request, override)
        state = "approved" if done | {role} >= set(policy.reviewers) else "under-review"
    else:
        role = (pending or list(roles))[0]
        state = "rejected" if decision == "reject" else "changes-requested"
    review = Review(
        reviewer=reviewer,
        role=role,
        decision=decision,
        reason=reason,
        override=override if decision == "approve" else "",
        at=now,
        round=request.round,
    )
    return ReviewOutcome(review, state)


def _check_reviewable(request: ExportRequest, requester_suspended: bool) -> None:
    if request.state not in OPEN_STATES:
        raise ExportWrongState("export.closed", id=request.id, state=request.state)
    if requester_suspended:
        raise ExportWrongState("export.frozen", id=request.id)
    if request.state == "submitted":
        raise ExportWrongState("export.not_checked", id=request.id)
    if request.state == "changes-requested":
        raise ExportWrongState("export.awaiting_changes", id=request.id)


def _approving_role(request: ExportRequest, pending: list[str], roles: Sequence[str]) -> str:
    if not pending:
        raise ExportWrongState("export.role_done", id=request.id, role=", ".join(roles))
    return pending[0]


def _check_approvable(request: ExportRequest, override: str) -> None:
    if request.manifest is None or request.manifest.error:
        error = request.manifest.error if request.manifest else "no manifest"
        raise ExportWrongState("export.not_frozen", id=request.id, error=error)
    failed = request.failed_files
    if failed and not override:
        raise BadExportInput("export.override_needed", "override", files=", ".join(failed))


def check_withdraw(request: ExportRequest, username: str, *, requester_suspended: bool) -> str:
    """The requester withdraws an open request (not while suspended: it is frozen); the
    new state."""
    if username != request.requester:
        raise ExportNotAllowed("export.not_requester", id=request.id)
    if request.state not in OPEN_STATES:
        raise ExportWrongState("export.closed", id=request.id, state=request.state)
    if requester_suspended:
        raise ExportWrongState("export.frozen", id=request.id)
    return "withdrawn"


def release_until(request: ExportRequest, policy: ExportPolicy) -> datetime | None:
    """The first instant the files of an approved request may no longer be downloaded."""
    if request.decided_at is None or request.state not in RELEASE_STATES:
        return None
    return as_utc(request.decided_at) + timedelta(days=policy.release_days)


def check_release(
    request: ExportRequest,
    username: str,
    now: datetime,
    policy: ExportPolicy,
    *,
    requester_suspended: bool,
) -> str:
    """The requester downloads the files of an approved request within `release_days` of
    its approval; the state after (released)."""
    if username != request.requester:
        raise ExportNotAllowed("export.not_requester", id=request.id)
    if request.state not in RELEASE_STATES:
        raise ExportWrongState("export.not_approved", id=request.id, state=request.state)
    if requester_suspended:
        raise ExportWrongState("export.frozen", id=request.id)
    until = release_until(request, policy)
    if until is None or as_utc(now) >= until:
        shown = until.astimezone(JST).strftime("%Y-%m-%d %H:%M") if until else "-"
        raise ExportWrongState("export.release_expired", id=request.id, until=shown)
    return "released"
