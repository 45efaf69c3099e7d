"""The export airlock's release in the browser: a person's own export requests on the hub,
outside their server, and the download of an approved request's frozen files.

Whose requests they are is the OAuth user's (`actor`), never a form field. Every read and
every act goes through the export service's own `ExportDesk`, so the page and the REST API
decide alike: a download is `ExportDesk.release` (the requester only, an approved request
within its release window, the file found by its name in the request's manifest, its bytes
checked against the manifest's hash; each one recorded in the audit store), answered as the
export service answers it (`send_released`). These pages know only the person's own
requests: another's request is not here (404), even for one of its reviewers.

    GET  exports                          the person's requests, newest first
    GET  exports/<id>/files/<name>        a frozen file of an approved request
    POST exports/<id>/withdraw            withdraw an open request (the page's XSRF)
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from markupsafe import Markup
from tornado import web

from extensions.contracts.clock import JST, as_utc
from extensions.contracts.export import OPEN_STATES
from hub.platform.airlock import ExportNotFound, ExportRefusal, ExportRequest, release_until
from hub.platform.messages import message
from hub.platform.policy_models import ExportPolicy
from hub.services.admin.review import ReviewBase, check_summary, jst_time
from hub.services.export.handlers import send_released

log = logging.getLogger("visiting.admin")


def jst_minute(at: datetime) -> str:
    """An instant as the release texts name it (as the refusal of a late download does)."""
    return as_utc(at).astimezone(JST).strftime("%Y-%m-%d %H:%M")


def export_row(
    request: ExportRequest, policy: ExportPolicy, now: datetime, prefix: str
) -> dict[str, Any]:
    """What the page shows of one of the person's requests: its files with their hashes,
    the checks, the reviews, and whether its files may be downloaded now and until when."""
    until = release_until(request, policy)
    downloadable = until is not None and as_utc(now) < until
    base = f"{prefix}exports/{request.id}/files/"
    files = [
        {"entry": f, "url": base + quote(f.name) if downloadable else None} for f in request.files
    ]
    if until is None:
        window = None
    elif downloadable:
        window = message("export.mine.until", until=jst_minute(until))
    else:
        window = message("export.mine.over", until=jst_minute(until))
    return {
        "request": request,
        "state": message(f"export.state.{request.state}"),
        "checks": check_summary(request),
        "frozen": request.manifest is not None,
        "files": files,
        "until": until,
        "downloadable": downloadable,
        "window": window,
        "released": (
            message("export.mine.released", at=jst_minute(request.released_at))
            if request.released_at
            else None
        ),
        "open": request.state in OPEN_STATES,
    }


class ExportsBase(ReviewBase):
    """The requester's pages: the review pages' desk, headers and bilingual errors."""

    def own(self, request_id: str) -> ExportRequest:
        """The person's own request; ExportNotFound for any other (as for one not there)."""
        request = self.desk.visible(request_id, self.actor)
        if request.requester != self.actor:
            raise ExportNotFound("export.not_found", id=request_id)
        return request

    async def render_list(self, status: int = 200, error: ExportRefusal | None = None):
        desk = self.desk
        now = desk.clock.now()
        prefix = self.backend.prefix
        requests = desk.mine(self.actor)
        withdrawn = self.get_query_argument("withdrawn", "")
        flash = None
        if any(r.id == withdrawn and r.state == "withdrawn" for r in requests):
            flash = message("export.mine.withdrawn", id=withdrawn)
        self.set_status(status)
        self.set_header("Cache-Control", "no-store")
        self.finish(
            self.env.get_template("exports.html").render(
                user=self.actor,
                prefix=prefix,
                reviewer=desk.is_reviewer(self.actor),
                rows=[export_row(r, desk.policy, now, prefix) for r in requests],
                release_days=desk.policy.release_days,
                flash=flash,
                error=error,
                xsrf=Markup(self.xsrf_form_html()),
                jst=jst_time,
                text=message,
            )
        )


class ExportsHandler(ExportsBase):
    """GET exports: the person's own requests (every site), newest first."""

    @web.authenticated
    async def get(self):
        await self.render_list()


class ExportFileHandler(ExportsBase):
    """GET exports/<id>/files/<name>: the frozen bytes of one file of the person's approved
    request, within its release window, as an attachment with its hash."""

    @web.authenticated
    async def get(self, request_id: str, name: str):
        self.own(request_id)
        stream, entry = await self.desk.release(request_id, self.actor, name)
        log.info("export request %s: %s downloaded by %s on the page", request_id, name,
                 self.actor)  # fmt: skip
        await send_released(self, stream, entry)


class ExportWithdrawHandler(ExportsBase):
    """POST exports/<id>/withdraw: the person withdraws their own open request."""

    @web.authenticated
    async def post(self, request_id: str):
        self.own(request_id)
        try:
            request = self.desk.withdraw(request_id, self.actor)
        except ExportRefusal as e:
            if e.status == 404:
                raise
            await self.render_list(e.status, error=e)
            return
        log.info("export request %s withdrawn by %s on the page", request.id, self.actor)
        self.redirect(f"{self.backend.prefix}exports?" + urlencode({"withdrawn": request.id}))


def release_routes(prefix: str, args: dict) -> list[tuple]:
    return [
        (prefix + "exports", ExportsHandler, args),
        (prefix + r"exports/([A-Za-z0-9]+)/files/(.+)", ExportFileHandler, args),
        (prefix + r"exports/([A-Za-z0-9]+)/withdraw", ExportWithdrawHandler, args),
    ]
