"""The export airlock's review in the browser: the queue of the requests a person may review
now, and one request's frozen files rendered beside their checks, with the form to decide.

Every read and every decision goes through the export service's own `ExportDesk` (the
rules of hub.platform.airlock over the same ExportStore), so the page and the REST API
decide alike. The frozen bytes come from the hub's Freezer; a reviewer reading them does
not release them (only the requester's download does). Nothing of a file is ever run in
the reviewer's browser: text is escaped, a notebook's outputs are shown as escaped text
(never its HTML or JavaScript), and an image or a PDF is served by its own URL with a
Content-Security-Policy that allows no script, shown by <img> or a sandboxed <iframe>.

    GET  review                          the queue
    GET  review/<id>                     one request: files, checks, reviews, the form
    POST review/<id>                     decision, reason, override (the page's XSRF)
    GET  review/<id>/files/<name>        an image's or a PDF's frozen bytes, for the page
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import logging
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from markupsafe import Markup
from tornado import web

from extensions.contracts.clock import JST, as_utc
from hub.platform.airlock import ExportNotFound, ExportRefusal, ExportRequest
from hub.platform.messages import message
from hub.services._base import HtmlPageHandler
from hub.services.admin.handlers import BaseHandler
from hub.services.export.freezer import FreezeError

log = logging.getLogger("visiting.admin")

#: rows of a CSV/TSV shown
MAX_ROWS = 200
#: bytes of a file read for the page (a text shown beyond it is cut)
MAX_PREVIEW = 2 * 1024 * 1024
#: what a frozen image or PDF may do in the browser: nothing but show itself
FILE_CSP = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox"
#: what the review pages themselves may do: no script at all, frames and images only from
#: this service, forms only to it
PAGE_CSP = (
    "default-src 'none'; img-src 'self'; frame-src 'self'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'self'; base-uri 'none'"
)

IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
               ".svg": "image/svg+xml"}  # fmt: skip
PDF = {".pdf": "application/pdf"}
TEXT_KINDS = {".json": "json", ".txt": "text", ".md": "text", ".tsv": "tsv", ".csv": "csv",
              ".ipynb": "notebook", ".log": "text", ".tex": "text", ".bib": "text"}  # fmt: skip


def kind_of(name: str) -> str:
    """How the page shows the file `name`: csv, tsv, image, pdf, notebook, json, text."""
    ext = "." + name.rsplit(".", 1)[-1].lower() if "." in name.rsplit("/", 1)[-1] else ""
    if ext in IMAGE_TYPES:
        return "image"
    if ext in PDF:
        return "pdf"
    return TEXT_KINDS.get(ext, "text")


def served_type(name: str) -> str | None:
    """The Content-Type the file is served with for <img> or <iframe>; None: not served."""
    ext = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return IMAGE_TYPES.get(ext) or PDF.get(ext)


# ---------------------------------------------------------------------------
# what the page shows of a request


def check_summary(request: ExportRequest) -> Any:
    if request.manifest is None:
        return None
    if request.manifest.error:
        return message("review.checks.error", error=request.manifest.error)
    failed = request.failed_files
    if failed:
        return message("review.checks.failed", count=len(failed))
    return message("review.checks.ok")


def age(request: ExportRequest, now: datetime) -> Any:
    seconds = max(0, int((as_utc(now) - as_utc(request.created_at)).total_seconds()))
    return message("review.age", days=seconds // 86400, hours=seconds % 86400 // 3600)


def row_of(request: ExportRequest, now: datetime) -> dict[str, Any]:
    return {
        "id": request.id,
        "state": request.state,
        "requester": request.requester,
        "site": request.site,
        "purpose": request.purpose,
        "files": [f.name for f in request.files] if request.manifest else request.paths,
        "checks": check_summary(request),
        "failed": bool(request.failed_files) or bool(request.manifest and request.manifest.error),
        "age": age(request, now),
        "created_at": request.created_at,
    }


def jst_time(at: datetime | None) -> str:
    return as_utc(at).astimezone(JST).strftime("%Y-%m-%d %H:%M:%S JST") if at else "—"


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def table_rows(data: bytes, delimiter: str) -> tuple[list[list[str]], bool]:
    """The first MAX_ROWS rows of a CSV/TSV (the header among them), and whether more."""
    reader = csv.reader(io.StringIO(_text(data), newline=""), delimiter=delimiter)
    rows: list[list[str]] = []
    try:
        for row in reader:
            if len(rows) == MAX_ROWS:
                return rows, True
            rows.append(row)
    except csv.Error:
        pass
    return rows, False


def notebook_cells(data: bytes) -> list[dict[str, Any]] | None:
    """A notebook's cells as the page shows them: the source and each output's text, as
    text only (an output's HTML and JavaScript are named by their type, never shown); None
    when it is not a notebook."""
    try:
        nb = json.loads(_text(data))
        raw_cells = nb["cells"]
    except (ValueError, KeyError, TypeError):
        return None
    cells = []
    for c in raw_cells if isinstance(raw_cells, list) else []:
        if not isinstance(c, dict):
            continue
        outputs = []
        for o in c.get("outputs") or []:
            if not isinstance(o, dict):
                continue
            text = o.get("text")
            data_ = o.get("data") if isinstance(o.get("data"), dict) else {}
            if text is None and "text/plain" in data_:
                text = data_["text/plain"]
            if text is None and o.get("output_type") == "error":
                text = "\n".join(o.get("traceback") or [o.get("ename", "error")])
            others = sorted(k for k in data_ if k != "text/plain")
            outputs.append({"text": _joined(text), "others": others})
        cells.append(
            {"type": str(c.get("cell_type", "")), "source": _joined(c.get("source")),
             "outputs": outputs}
        )  # fmt: skip
    return cells


def _joined(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "".join(str(v) for v in value)
    return str(value)


def preview(name: str, media_type: str, data: bytes, cut: bool) -> dict[str, Any]:
    """What the page shows of one frozen file (autoescaped by the template)."""
    kind = kind_of(name)
    out: dict[str, Any] = {"kind": kind, "cut": cut}
    if kind in ("csv", "tsv"):
        out["rows"], out["more"] = table_rows(data, "," if kind == "csv" else "\t")
    elif kind == "notebook":
        cells = notebook_cells(data)
        if cells is None:
            out.update(kind="text", text=_text(data))
        else:
            out["cells"] = cells
    elif kind == "json":
        try:
            out["text"] = json.dumps(json.loads(_text(data)), indent=2, ensure_ascii=False)
        except ValueError:
            out["text"] = _text(data)
    elif kind == "text":
        if b"\0" in data[:4096]:
            out.update(kind="binary", media_type=media_type or "application/octet-stream")
        else:
            out["text"] = _text(data)
    return out


# ---------------------------------------------------------------------------
# handlers


class ReviewBase(BaseHandler, HtmlPageHandler):
    public_errors = (ExportRefusal,)

    def set_default_headers(self):
        super().set_default_headers()
        self.set_header("Content-Security-Policy", PAGE_CSP)
        self.set_header("X-Content-Type-Options", "nosniff")

    @property
    def desk(self):
        desk = getattr(self.backend, "desk", None)
        if desk is None:
            raise web.HTTPError(404, "the export airlock is not run by this hub")
        return desk

    async def read_frozen(self, request: ExportRequest, name: str, limit: int | None):
        """(bytes, cut, error message) of one frozen file, its hash checked when read whole."""
        entry = request.file(name)
        if entry is None:
            raise ExportNotFound("export.no_file", id=request.id, name=name)

        def read():
            stream = self.desk.freezer.open_file(request.id, request.site, name)
            try:
                h = hashlib.sha256()
                kept = bytearray()
                while block := stream.read(1024 * 1024):
                    h.update(block)
                    if limit is None or len(kept) < limit:
                        kept += block
                cut = limit is not None and len(kept) > limit
                return bytes(kept[:limit] if cut else kept), cut, h.hexdigest()
            finally:
                stream.close()

        try:
            data, cut, sha = await asyncio.to_thread(read)
        except FreezeError as e:
            log.error("file %s of %s at %s: %s", name, request.id, request.site, e)
            return b"", False, message("review.file.unavailable")
        if sha != entry.sha256:
            log.error("file %s of %s no longer matches its hash", name, request.id)
            return b"", False, message("review.file.hash_mismatch")
        return data, cut, None


class ReviewQueueHandler(ReviewBase):
    """GET review: the requests the person may review now."""

    @web.authenticated
    async def get(self):
        desk = self.desk
        now = desk.clock.now()
        rows = [row_of(r, now) for r in desk.queue(self.actor)]
        self.set_header("Cache-Control", "no-store")
        self.finish(
            self.env.get_template("review.html").render(
                user=self.actor,
                prefix=self.backend.prefix,
                reviewer=desk.is_reviewer(self.actor),
                rows=rows,
                flash=self.get_argument("done", ""),
                jst=jst_time,
                text=message,
            )
        )


class ReviewRequestHandler(ReviewBase):
    """GET review/<id>: the request's files beside their checks; POST: a decision."""

    @web.authenticated
    async def get(self, request_id: str):
        await self.render_request(request_id)

    async def render_request(self, request_id, status=200, error=None, values=None):
        desk = self.desk
        request = desk.visible(request_id, self.actor)
        files = []
        for f in request.files:
            item: dict[str, Any] = {"entry": f, "kind": kind_of(f.name), "error": None}
            if item["kind"] in ("image", "pdf"):
                item["url"] = f"{self.backend.prefix}review/{request.id}/files/{quote(f.name)}"
            else:
                data, cut, err = await self.read_frozen(request, f.name, MAX_PREVIEW)
                item["error"] = err
                if err is None:
                    item.update(preview(f.name, f.media_type, data, cut))
            files.append(item)
        self.set_status(status)
        self.set_header("Cache-Control", "no-store")
        self.finish(
            self.env.get_template("review_request.html").render(
                user=self.actor,
                prefix=self.backend.prefix,
                request=request,
                row=row_of(request, desk.clock.now()),
                files=files,
                may_review=request.id in {r.id for r in desk.queue(self.actor)},
                xsrf=Markup(self.xsrf_form_html()),
                error=error,
                values=values or {},
                max_rows=MAX_ROWS,
                max_preview=MAX_PREVIEW,
                jst=jst_time,
                text=message,
            )
        )

    @web.authenticated
    async def post(self, request_id: str):
        body = {k: self.get_body_argument(k, "") for k in ("decision", "reason", "override")}
        try:
            request = self.desk.review(request_id, self.actor, body)
        except ExportRefusal as e:
            if e.status == 404:
                raise
            await self.render_request(request_id, e.status, error=e, values=body)
            return
        log.info("export request %s reviewed by %s on the page: %s", request_id, self.actor,
                 request.state)  # fmt: skip
        done = message("review.done", id=request.id, state=request.state)
        self.redirect(f"{self.backend.prefix}review?" + urlencode({"done": str(done)}))


class ReviewFileHandler(ReviewBase):
    """GET review/<id>/files/<name>: an image's or a PDF's frozen bytes for the page, to
    those who may see the request; with no script allowed, and never as HTML."""

    @web.authenticated
    async def get(self, request_id: str, name: str):
        request = self.desk.visible(request_id, self.actor)
        media_type = served_type(name)
        if request.manifest is None or media_type is None:
            raise ExportNotFound("export.no_file", id=request_id, name=name)
        data, _, err = await self.read_frozen(request, name, None)
        if err is not None:
            raise web.HTTPError(503, "%s", str(err))
        filename = name.rsplit("/", 1)[-1]
        self.set_header("Content-Type", media_type)
        self.set_header("Content-Security-Policy", FILE_CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-store")
        self.set_header("Cross-Origin-Resource-Policy", "same-origin")
        disposition = "attachment" if media_type == "image/svg+xml" else "inline"
        self.set_header("Content-Disposition", f"{disposition}; filename*=UTF-8''{quote(filename)}")
        self.finish(data)


def review_routes(prefix: str, args: dict) -> list[tuple]:
    return [
        (prefix + "review", ReviewQueueHandler, args),
        (prefix + r"review/([A-Za-z0-9]+)", ReviewRequestHandler, args),
        (prefix + r"review/([A-Za-z0-9]+)/files/(.+)", ReviewFileHandler, args),
    ]
