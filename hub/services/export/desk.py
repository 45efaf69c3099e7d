"""The export service's work behind its handlers: who the caller is to the platform (roles,
approvals, suspension, from the registry), and each act over the store and the site's
freezer. The rules are hub.platform.airlock's; nothing here decides on its own."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from typing import IO, Any

from extensions.contracts.clock import Clock
from extensions.contracts.export import Manifest
from hub.platform.access import approvals_at_site, decide_access
from hub.platform.airlock import (
    BadExportInput,
    ExportNotAllowed,
    ExportNotFound,
    ExportRequest,
    ExportUnavailable,
    check_paths,
    check_purpose,
    check_release,
    may_see,
    reviewer_roles,
)
from hub.platform.policy_models import Platform
from hub.services.export.freezer import FreezeError, Freezer
from hub.store.exports import ExportStore

log = logging.getLogger("visiting.export")


class ExportDesk:
    """Requests in, reviews, withdrawals and released files out, for one caller at a time."""

    def __init__(
        self, store: ExportStore, registry, platform: Platform, freezer: Freezer, clock: Clock
    ):
        self.store = store
        self.registry = registry
        self.platform = platform
        self.freezer = freezer
        self.clock = clock

    @property
    def policy(self):
        return self.store.policy

    # -- who the caller is -----------------------------------------------------------------

    def roles(self, username: str) -> list[str]:
        return self.registry.roles_of(username)

    def suspended(self, username: str) -> bool:
        return self.registry.suspension_of(username, self.clock.now()) is not None

    def is_reviewer(self, username: str) -> bool:
        """Whether the person reviews requests of some site."""
        held = self.roles(username)
        return any(
            reviewer_roles(held, site, self.policy.reviewers) for site in self.platform.sites
        )

    def datasets_at(self, username: str, site: str) -> tuple[str, ...]:
        """The datasets at `site` of the person's approvals active now; ExportNotAllowed when
        none is (or they are suspended): only a data handler at the site may export there."""
        now = self.clock.now()
        decision = decide_access(
            username,
            self.registry.approvals_of(username),
            (),
            now,
            suspension=self.registry.suspension_of(username, now),
        )
        approvals = approvals_at_site(decision.approvals, site) if decision.allowed else []
        if not approvals:
            raise ExportNotAllowed("export.no_approval", site=site)
        return tuple(sorted({d for a in approvals for d in a.datasets_at(site)}))

    def visible(self, request_id: str, username: str) -> ExportRequest:
        """The request, if this person may see it; ExportNotFound otherwise (a request one
        may not see is not there)."""
        request = self.store.get(request_id)
        if request is None or not may_see(request, username, self.roles(username), self.policy):
            raise ExportNotFound("export.not_found", id=request_id)
        return request

    # -- acts --------------------------------------------------------------------------

    async def submit(self, username: str, body: dict[str, Any]) -> ExportRequest:
        """A new request, frozen and checked at the site before the answer (in a thread)."""
        site = body.get("site")
        if not isinstance(site, str) or site not in self.platform.sites:
            raise BadExportInput("export.unknown_site", "site", site=site)
        purpose = check_purpose(body.get("purpose"))
        paths = check_paths(body.get("paths"), self.policy.checks)
        datasets = self.datasets_at(username, site)
        request = self.store.create(username, site, purpose, list(paths))
        manifest = await asyncio.to_thread(self._freeze, request, datasets)
        return self.store.record_manifest(request.id, manifest)

    def _freeze(self, request: ExportRequest, datasets: Sequence[str]) -> Manifest:
        try:
            return self.freezer.freeze(
                request.id,
                request.site,
                request.requester,
                request.paths,
                self.policy.checks,
                datasets,
            )
        except FreezeError as e:
            # the reviewers see that the site could not freeze it; the requester may ask again
            log.error("request %s at %s could not be frozen: %s", request.id, request.site, e)
            return Manifest(request.id, (), error="the site could not freeze the files")

    def mine(self, username: str, site: str | None = None) -> list[ExportRequest]:
        requests = self.store.list_for_requester(username)
        return [r for r in requests if site is None or r.site == site]

    def queue(self, username: str) -> list[ExportRequest]:
        return self.store.queue_for(username, self.roles(username))

    def review(self, request_id: str, username: str, body: dict[str, Any]) -> ExportRequest:
        request = self.visible(request_id, username)
        return self.store.review(
            request.id,
            username,
            self.roles(username),
            body.get("decision"),
            body.get("reason", ""),
            body.get("override", ""),
            requester_suspended=self.suspended(request.requester),
        )

    def withdraw(self, request_id: str, username: str) -> ExportRequest:
        request = self.visible(request_id, username)
        return self.store.withdraw(
            request.id, username, requester_suspended=self.suspended(request.requester)
        )

    async def release(self, request_id: str, username: str, name: str) -> tuple[IO[bytes], Any]:
        """The frozen bytes of one file of an approved request, for its requester, checked
        against the manifest's hash; the first download releases the request."""
        request = self.visible(request_id, username)
        entry = request.file(name)
        if entry is None or not entry.sha256:
            raise ExportNotFound("export.no_file", id=request_id, name=name)
        suspended = self.suspended(request.requester)
        # refused before the site is asked; decided again when the release is written
        check_release(
            request, username, self.clock.now(), self.policy, requester_suspended=suspended
        )
        try:
            stream = await asyncio.to_thread(self.freezer.open_file, request.id, request.site, name)
        except FreezeError as e:
            log.error("file %s of %s at %s: %s", name, request.id, request.site, e)
            raise ExportUnavailable("export.site_unavailable", site=request.site) from None
        try:
            if await asyncio.to_thread(_sha256, stream) != entry.sha256:
                log.error("file %s of %s no longer matches its hash; not sent", name, request.id)
                raise ExportUnavailable("export.site_unavailable", site=request.site)
            self.store.mark_released(request.id, username, name, requester_suspended=suspended)
        except BaseException:
            stream.close()
            raise
        return stream, entry


def _sha256(stream: IO[bytes]) -> str:
    h = hashlib.sha256()
    while block := stream.read(1024 * 1024):
        h.update(block)
    stream.seek(0)
    return h.hexdigest()
