"""The export service's REST API. The caller is whoever JupyterHub says their own token
(`Authorization: token ...`) belongs to; a refusal is JSON with the key of its text in the
message table (`error`), the text in Japanese and English (`message`, an object by
language), `status`, and the input that is wrong (`field`, else null), with the status of
its kind (400 bad input, 401 no token, 403 not allowed, 404 unknown or not yours to see,
409 wrong state, 503 the site unavailable)."""

from __future__ import annotations

import logging
from typing import IO, Any
from urllib.parse import quote

from jupyterhub.services.auth import HubAuth
from tornado import web

from extensions.contracts.export import FrozenFile
from hub.platform.airlock import (
    BadExportInput,
    ExportNotAllowed,
    ExportRefusal,
    ExportRequest,
    error_json,
    release_until,
)
from hub.platform.messages import Message
from hub.services._base import JsonApiHandler
from hub.services.export.desk import ExportDesk

log = logging.getLogger("visiting.export")

CHUNK = 1024 * 1024


class Unauthenticated(ExportRefusal):
    status = 401


class ApiHandler(JsonApiHandler):
    public_errors = (ExportRefusal,)

    def initialize(self, desk: ExportDesk, auth: HubAuth):
        self.desk = desk
        self.auth = auth

    def check_xsrf_cookie(self):
        return  # token-authenticated only: no cookie is ever the caller

    async def prepare(self):
        """The caller's name from their own token; a person only (a service is no requester
        or reviewer)."""
        token = self.auth.get_token(self, in_cookie=False)
        if not token:
            raise Unauthenticated("export.login")
        model = await self.auth.user_for_token(token, sync=False)
        if not model or model.get("kind", "user") != "user" or not model.get("name"):
            raise ExportNotAllowed("export.login")
        self.user: str = model["name"]

    def bad_request(self, text: str) -> Exception:
        return BadExportInput("export.bad_body", why=text)

    def error_body(self, status_code: int, exc: BaseException | None) -> dict:
        if isinstance(exc, ExportRefusal):
            body = exc.to_json()
            field = exc.field
        else:  # tornado's own: an unknown route, a method not allowed, a failure
            body = error_json(Message(f"http.{status_code}", self._reason, self._reason))
            field = None
        return body | {"status": status_code, "field": field}

    def answer(self, request: ExportRequest, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Cache-Control", "no-store")
        self.finish(request_json(request, self.desk))


def request_json(request: ExportRequest, desk: ExportDesk) -> dict[str, Any]:
    """A request as the API shows it, with the end of its release window."""
    until = release_until(request, desk.policy)
    return request.to_json() | {"release_until": until.isoformat() if until else None}


class RequestsHandler(ApiHandler):
    """GET api/requests[?site=S]: the caller's own requests; ?queue=1: the requests they may
    review now. POST api/requests {"site", "paths", "purpose"}: a new request, frozen and
    checked at the site before the answer (201)."""

    async def get(self):
        if self.get_query_argument("queue", "") in ("1", "true", "yes"):
            if not self.desk.is_reviewer(self.user):
                raise ExportNotAllowed(
                    "export.not_reviewer", site="*", roles=", ".join(self.desk.policy.reviewers)
                )
            requests = self.desk.queue(self.user)
        else:
            requests = self.desk.mine(self.user, self.get_query_argument("site", None) or None)
        self.set_header("Cache-Control", "no-store")
        self.finish({"requests": [request_json(r, self.desk) for r in requests]})

    async def post(self):
        request = await self.desk.submit(self.user, self.json_body())
        log.info("export request %s by %s at %s: %s", request.id, self.user, request.site,
                 request.state)  # fmt: skip
        self.answer(request, 201)


class RequestHandler(ApiHandler):
    """GET api/requests/<id>: one request with its files, hashes, checks and reviews (only
    for its requester and those who may review it; anyone else: 404)."""

    async def get(self, request_id: str):
        self.answer(self.desk.visible(request_id, self.user))


class ReviewsHandler(ApiHandler):
    """POST api/requests/<id>/reviews {"decision", "reason", "override"?}."""

    async def post(self, request_id: str):
        request = self.desk.review(request_id, self.user, self.json_body())
        log.info("export request %s reviewed by %s: %s", request_id, self.user, request.state)
        self.answer(request)


class WithdrawHandler(ApiHandler):
    """POST api/requests/<id>/withdraw: the requester withdraws an open request."""

    async def post(self, request_id: str):
        self.answer(self.desk.withdraw(request_id, self.user))


class FileHandler(ApiHandler):
    """GET api/requests/<id>/files/<name>: the frozen bytes of one file of an approved
    request, for its requester within the release window, as an attachment with its hash."""

    async def get(self, request_id: str, name: str):
        stream, entry = await self.desk.release(request_id, self.user, name)
        await send_released(self, stream, entry)


async def send_released(handler: web.RequestHandler, stream: IO[bytes], entry: FrozenFile) -> None:
    """The answer to a download of a released file (`ExportDesk.release`): its frozen bytes
    as an attachment named by the file's last part, with its size, media type and SHA-256
    from the manifest, never sniffed or cached; the stream is closed at the end. The export
    service's API and the admin service's page for the requester both answer with it."""
    try:
        filename = entry.name.rsplit("/", 1)[-1]
        handler.set_header("Content-Type", entry.media_type or "application/octet-stream")
        handler.set_header("Content-Length", str(entry.bytes))
        handler.set_header("X-Content-SHA256", entry.sha256)
        handler.set_header("X-Content-Type-Options", "nosniff")
        handler.set_header("Cache-Control", "no-store")
        handler.set_header("Content-Disposition", f"attachment; filename*=UTF-8''{quote(filename)}")
        while block := stream.read(CHUNK):
            handler.write(block)
            await handler.flush()
    finally:
        stream.close()
    handler.finish()


def routes(prefix: str, desk: ExportDesk, auth: HubAuth) -> list[tuple]:
    args = {"desk": desk, "auth": auth}
    api = prefix + "api/requests"
    return [
        (api, RequestsHandler, args),
        (api + r"/([A-Za-z0-9]+)", RequestHandler, args),
        (api + r"/([A-Za-z0-9]+)/reviews", ReviewsHandler, args),
        (api + r"/([A-Za-z0-9]+)/withdraw", WithdrawHandler, args),
        (api + r"/([A-Za-z0-9]+)/files/(.+)", FileHandler, args),
    ]
