"""The export airlock's review in the browser: the admin service's review queue, a request's
frozen files rendered beside their checks, and the form that decides.

The admin service runs here in this process on loopback, with the registry, the audit and
export stores on SQLite and the export service's own desk (`ExportDesk`) over them; whose
request it is comes from `Authorization: token <name>` (no hub), and the forms carry
tornado's own XSRF token instead of the hub's. The site's side is a Freezer reading frozen
files from a folder in tmp_path.

Rules checked: "No disclosure" (a site admin of another site sees nothing of a request;
the requester never reviews their own), "Security" (a frozen file's content is never run
in the reviewer's browser: text escaped, an SVG only as an image with a script-less
Content-Security-Policy), "Publication" (a decision on the page is the same rule as the
REST API's: one per person, an override reason for failed checks; reading a file does not
release it).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
from markupsafe import escape
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from extensions.contracts.clock import JST
from extensions.contracts.export import CheckResult, FrozenFile, Manifest
from hub.demo.ports import free_port
from hub.platform.messages import message
from hub.platform.operations import Operations
from hub.services.admin import review
from hub.services.admin.application import make_app
from hub.services.admin.backend import Backend
from hub.services.admin.handlers import BaseHandler
from hub.services.export.desk import ExportDesk
from hub.services.export.freezer import FreezeError, Freezer
from tests.aio import run as run_async
from tests.unit.hub.services.airlock_world import airlock_world

NOW = datetime(2026, 6, 2, 12, 0, tzinfo=JST)
XSRF_RE = re.compile(r'name="_xsrf" value="([^"]+)"')

HOSTILE_CSV = (
    "age_band,n\n<script>alert('csv')</script>,12\n50-59,\"<img src=x onerror=alert(1)>\"\n"
)
HOSTILE_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    '<script>alert(\'svg\')</script><rect width="10" height="10"/></svg>'
)
HOSTILE_NOTEBOOK = json.dumps(
    {
        "cells": [
            {"cell_type": "code", "source": ["print('<b>x</b>')"], "outputs": [
                {"output_type": "stream", "name": "stdout", "text": ["<b>x</b>\n"]},
                {"output_type": "display_data", "data": {
                    "text/html": ["<script>alert('nb-html')</script>"],
                    "application/javascript": ["alert('nb-js')"],
                    "text/plain": ["<IPython.core.display.HTML object>"]}},
            ]},
            {"cell_type": "markdown", "source": ["# Table <i>2</i>"]},
        ],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
    }
)  # fmt: skip
PDF_BYTES = b"%PDF-1.4\n% a tiny test file\n%%EOF\n"
PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


class FolderFreezer(Freezer):
    """Frozen files in <root>/<site>/<request id>/<name>."""

    def __init__(self, root: Path):
        self.root = root
        self.reads: list[str] = []

    def freeze(self, request_id, site, username, paths, rules, datasets=()):
        raise AssertionError("the admin service never freezes")

    def open_file(self, request_id, site, name):
        self.reads.append(name)
        path = self.root / site / request_id / name
        if not path.is_file():
            raise FreezeError("not frozen")
        return io.BytesIO(path.read_bytes())


@pytest.fixture
def world(tmp_path, policy_copy):
    """The demo's people plus a site admin of ncc; an export store over the registry's DB."""
    w = airlock_world(tmp_path, policy_copy, NOW)
    freezer = FolderFreezer(tmp_path / "frozen")
    desk = ExportDesk(w.store, w.registry, w.bundle.platform, freezer, w.clock)
    ops = Operations(w.registry, w.audit, w.bundle.platform, w.clock)
    yield desk, ops
    w.close()


def frozen(desk: ExportDesk, requester: str, site: str, files: dict[str, bytes],
           failed: tuple[str, ...] = ()) -> str:  # fmt: skip
    """A request frozen at `site` with these files; the names in `failed` fail disclosure."""
    request = desk.store.create(requester, site, f"Figures of {requester}'s paper", list(files))
    entries = []
    for name, data in files.items():
        path = desk.freezer.root / site / request.id / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        ok = name not in failed
        checks = (CheckResult("kind", True), CheckResult("disclosure", ok, "" if ok else "n=2"))
        sha = hashlib.sha256(data).hexdigest()
        entries.append(FrozenFile(name, len(data), sha, "application/octet-stream", checks))
    desk.store.record_manifest(request.id, Manifest(request.id, tuple(entries)))
    return request.id


class Served:
    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}/services/admin/"
        self.http = AsyncHTTPClient()
        self.sessions: dict[str, tuple[str, str]] = {}

    async def fetch(self, method, path, token="jimu", form=None, headers=None):
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"token {token}"
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            resp = await self.http.fetch(
                self.base + path, method=method, body=body, headers=headers,
                follow_redirects=False,
            )  # fmt: skip
        except HTTPClientError as e:
            resp = e.response
        return resp.code, resp.body, resp

    async def page(self, path, token="jimu"):
        status, body, resp = await self.fetch("GET", path, token)
        return status, body.decode(), resp

    async def decide(self, request_id, token, **form):
        """Post the request page's form as `token`, with the XSRF token its page gave (the
        one of the person's earlier page when this one has no form: a page left open)."""
        _, html, resp = await self.page(f"review/{request_id}", token)
        found = XSRF_RE.search(html)
        if found:
            cookie = resp.headers["Set-Cookie"].split(";", 1)[0]
            self.sessions[token] = (found.group(1), cookie)
        # tornado's XSRF token is the browser's, not the person's: a page without the form
        # (the requester's) posts with one a browser holds
        xsrf, cookie = self.sessions.get(token) or next(iter(self.sessions.values()))
        status, body, resp = await self.fetch(
            "POST", f"review/{request_id}", token, form={"_xsrf": xsrf, **form},
            headers={"Cookie": cookie},
        )  # fmt: skip
        return status, body.decode(), resp


def as_token_of(handler) -> dict | None:
    scheme, _, name = handler.request.headers.get("Authorization", "").partition(" ")
    return {"name": name} if scheme == "token" and name else None


def serve(world, monkeypatch, test) -> None:
    desk, ops = world
    monkeypatch.setattr(BaseHandler, "get_current_user", as_token_of)
    monkeypatch.setattr(BaseHandler, "xsrf_token", web.RequestHandler.xsrf_token)
    monkeypatch.setattr(BaseHandler, "check_xsrf_cookie", web.RequestHandler.check_xsrf_cookie)

    async def main():
        backend = Backend(ops, "http://127.0.0.1:1/hub/api", "admin-token", None)
        backend.desk = desk
        port = free_port()
        server = make_app(backend, "/services/admin/", b"k" * 32).listen(port, address="127.0.0.1")
        try:
            await test(Served(port))
        finally:
            server.stop()
            backend.pool.shutdown(wait=True)

    run_async(main())


def queued(html: str) -> list[str]:
    return re.findall(r'<tr data-request="([A-Za-z0-9]+)"', html)


# ---------------------------------------------------------------------------
# the queue


def test_the_queue_lists_exactly_what_the_person_may_review(world, monkeypatch):
    desk, _ = world
    at_nig = frozen(desk, "tanaka", "nig", {"results/table.csv": b"a,b\n1,2\n"})
    desk.clock.advance(timedelta(hours=1))
    at_ncc = frozen(desk, "tanaka", "ncc", {"results/t.csv": b"a\n1\n"},
                    failed=("results/t.csv",))  # fmt: skip
    desk.clock.advance(timedelta(hours=1))
    own = frozen(desk, "admin-nig", "nig", {"notes.txt": b"mine"})
    desk.clock.advance(timedelta(days=2, hours=3))

    async def test(s: Served):
        status, html, _ = await s.page("review", "admin-nig")
        assert status == 200, html[:400]
        assert queued(html) == [at_nig]  # not ncc's, not their own
        title = message("review.title")
        assert f"{title.ja} / {title.en}" in html and "持ち出し申請の審査" in html
        assert "Figures of tanaka&#39;s paper" in html and "results/table.csv" in html
        assert str(message("review.checks.ok")) in html
        assert str(message("review.age", days=2, hours=5)) in html
        status, html, _ = await s.page("review", "admin-ncc")
        assert queued(html) == [at_ncc]
        assert str(message("review.checks.failed", count=1)) in html
        status, html, _ = await s.page("review", "jimu")
        assert queued(html) == [at_nig, at_ncc, own]  # oldest first
        # the requester reviews nothing; their own request is not in any queue of theirs
        status, html, _ = await s.page("review", "tanaka")
        assert status == 200 and queued(html) == []
        assert message("review.not_reviewer").en in html
        # a site admin of another site does not even see the request, nor its files
        for path in (f"review/{at_nig}", f"review/{at_nig}/files/results/table.csv"):
            status, html, _ = await s.page(path, "admin-ncc")
            assert status == 404 and "results/table.csv" not in html, html
            assert str(escape(message("export.not_found", id=at_nig).en)) in html
        # the link from the admin page, for the reviewers only
        _, html, _ = await s.page("", "admin-nig")
        assert 'href="/services/admin/review"' in html
        _, html, _ = await s.page("", "tanaka")
        assert 'id="review-link"' not in html

    serve(world, monkeypatch, test)


def test_an_empty_queue_says_so(world, monkeypatch):
    async def test(s: Served):
        status, html, _ = await s.page("review", "jimu")
        assert status == 200 and message("review.none").ja in html and queued(html) == []

    serve(world, monkeypatch, test)


def test_no_desk_no_review_pages(world, monkeypatch):
    desk, ops = world

    async def test(s: Served):
        status, _, _ = await s.page("review", "jimu")
        assert status == 404

    world_without = (None, ops)
    serve(world_without, monkeypatch, test)


# ---------------------------------------------------------------------------
# the files, rendered


def test_hostile_content_is_never_run(world, monkeypatch):
    desk, _ = world
    big = "n\n" + "".join(f"{i}\n" for i in range(300))
    files = {
        "out/hostile.csv": HOSTILE_CSV.encode(),
        "out/big.tsv": big.encode(),
        "out/figure.svg": HOSTILE_SVG.encode(),
        "out/figure.png": PNG_BYTES,
        "out/paper.pdf": PDF_BYTES,
        "out/analysis.ipynb": HOSTILE_NOTEBOOK.encode(),
        "out/summary.json": b'{"note": "<script>alert(\'json\')</script>"}',
        "out/readme.txt": b"</pre><script>alert('txt')</script>",
    }
    rid = frozen(desk, "tanaka", "nig", files, failed=("out/big.tsv",))

    async def test(s: Served):
        status, html, resp = await s.page(f"review/{rid}", "admin-nig")
        assert status == 200, html[:400]
        assert "script-src" not in resp.headers["Content-Security-Policy"]
        assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert "<script" not in html.lower() and "<img src=x" not in html
        assert "onerror=" not in html.replace("&lt;img src=x onerror=", "")
        # the CSV as a table, its cells escaped
        assert "<th>age_band</th><th>n</th>" in html
        assert "<td>&lt;script&gt;alert(&#39;csv&#39;)&lt;/script&gt;</td>" in html
        assert "&lt;img src=x onerror=alert(1)&gt;" in html
        # the first 200 rows of a long table, and the note that says so
        assert "<td>198</td>" in html and "<td>199</td>" not in html
        assert str(escape(message("review.file.truncated", rows=200).en)) in html
        # the notebook: code and text outputs escaped, its HTML and JavaScript never shown
        assert "print(&#39;&lt;b&gt;x&lt;/b&gt;&#39;)" in html and "&lt;b&gt;x&lt;/b&gt;\n" in html
        assert "nb-html" not in html and "nb-js" not in html
        assert "(application/javascript, text/html)" in html
        assert "# Table &lt;i&gt;2&lt;/i&gt;" in html
        # JSON and text as escaped <pre>
        assert "&lt;script&gt;alert(&#39;json&#39;)&lt;/script&gt;" in html
        assert "&lt;/pre&gt;&lt;script&gt;alert(&#39;txt&#39;)" in html
        # images by <img>, the PDF in a sandboxed frame; never the SVG's markup in the page
        base = f"/services/admin/review/{rid}/files/out/"
        assert f'<img class="frozen" src="{base}figure.svg"' in html
        assert f'<img class="frozen" src="{base}figure.png"' in html
        assert f'<iframe class="frozen" sandbox src="{base}paper.pdf"' in html
        assert "<svg" not in html and "<rect" not in html
        # each file beside its checks
        assert 'data-file="out/big.tsv" data-kind="tsv" data-ok="no"' in html
        assert '<tr data-check="disclosure" data-check-ok="no">' in html

        # the SVG itself: an image with no script allowed, never a page
        status, body, resp = await s.fetch("GET", f"review/{rid}/files/out/figure.svg", "admin-nig")
        assert status == 200 and body == HOSTILE_SVG.encode()
        assert resp.headers["Content-Type"] == "image/svg+xml"
        csp = resp.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "sandbox" in csp and "script" not in csp
        assert resp.headers["Content-Disposition"].startswith("attachment;")
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        status, body, resp = await s.fetch("GET", f"review/{rid}/files/out/paper.pdf", "jimu")
        assert status == 200 and body == PDF_BYTES
        assert resp.headers["Content-Type"] == "application/pdf"
        assert "sandbox" in resp.headers["Content-Security-Policy"]
        # a text file is not served by this route (only shown, escaped, on the page)
        status, _, _ = await s.fetch("GET", f"review/{rid}/files/out/hostile.csv", "admin-nig")
        assert status == 404

    serve(world, monkeypatch, test)
    # reading the files released nothing
    assert desk.store.get(rid).state == "checked" and desk.store.get(rid).released_at is None


def test_a_file_that_no_longer_matches_its_hash_is_flagged(world, monkeypatch):
    desk, _ = world
    rid = frozen(desk, "tanaka", "nig", {"a.csv": b"x\n1\n", "b.png": PNG_BYTES})
    (desk.freezer.root / "nig" / rid / "a.csv").write_bytes(b"x\n2\n")
    (desk.freezer.root / "nig" / rid / "b.png").write_bytes(b"changed")

    async def test(s: Served):
        status, html, _ = await s.page(f"review/{rid}", "jimu")
        assert status == 200 and str(escape(message("review.file.hash_mismatch").en)) in html
        assert "<td>2</td>" not in html
        status, _, _ = await s.fetch("GET", f"review/{rid}/files/b.png", "jimu")
        assert status == 503

    serve(world, monkeypatch, test)


def test_kinds_and_previews():
    assert [review.kind_of(n) for n in ("a.CSV", "b.tsv", "c.svg", "d.pdf", "e.ipynb",
                                        "f.json", "g", "h.jpeg")] == [
        "csv", "tsv", "image", "pdf", "notebook", "json", "text", "image"]  # fmt: skip
    assert review.preview("x.bin", "application/x", b"\0\1\2", False)["kind"] == "binary"
    assert review.preview("x.ipynb", "", b"not json", False)["kind"] == "text"


# ---------------------------------------------------------------------------
# deciding


def test_a_decision_on_the_page_follows_the_rules(world, monkeypatch):
    desk, _ = world
    rid = frozen(desk, "tanaka", "nig", {"t.csv": b"a\n1\n", "small.csv": b"a\n2\n"},
                 failed=("small.csv",))  # fmt: skip

    async def test(s: Served):
        # a failed check needs an override reason: refused, named in both languages
        status, html, _ = await s.decide(rid, "admin-nig", decision="approve", reason="")
        assert status == 400, html[:300]
        text = message("export.override_needed", files="small.csv")
        assert str(escape(text.ja)) in html and str(escape(text.en)) in html
        assert 'data-key="export.override_needed" data-field="override"' in html
        assert desk.store.get(rid).state == "checked"
        # changes without a reason: refused
        status, html, _ = await s.decide(rid, "admin-nig", decision="changes", reason=" ")
        assert status == 400 and message("export.reason_needed").en in html
        # approved with an override: under review, out of this person's queue
        status, _, resp = await s.decide(rid, "admin-nig", decision="approve",
                                         override="n=2 is a published count")  # fmt: skip
        assert status == 302, _
        assert resp.headers["Location"].startswith("/services/admin/review?done=")
        request = desk.store.get(rid)
        assert request.state == "under-review"
        assert [(r.reviewer, r.role, r.override) for r in request.reviews] == [
            ("admin-nig", "site-admin", "n=2 is a published count")
        ]
        _, html, _ = await s.page("review", "admin-nig")
        assert queued(html) == []
        # a second decision by the same person: refused, both languages, nothing changes
        status, html, _ = await s.decide(rid, "admin-nig", decision="reject", reason="no")
        assert status == 403
        text = message("export.already_reviewed", id=rid)
        assert str(escape(text.ja)) in html and str(escape(text.en)) in html
        assert len(desk.store.get(rid).reviews) == 1
        # the requester cannot decide on their own request, nor can the other site's admin
        status, html, _ = await s.decide(rid, "tanaka", decision="approve", override="x")
        assert status == 403 and message("export.own_request").en in html
        status, html, _ = await s.page(f"review/{rid}", "admin-ncc")
        assert status == 404 and "small.csv" not in html
        # the secretariat's approval completes it
        status, _, resp = await s.decide(rid, "jimu", decision="approve", override="agreed")
        assert status == 302
        done = message("review.done", id=rid, state="approved")
        flash = resp.headers["Location"]
        _, html, _ = await s.page(flash.removeprefix("/services/admin/"), "jimu")
        assert str(escape(done.ja)) in html and str(escape(done.en)) in html
        assert desk.store.get(rid).state == "approved"
        # a form without the page's XSRF token is refused
        status, _, _ = await s.fetch("POST", f"review/{rid}", "jimu",
                                     form={"decision": "reject", "reason": "forged"})  # fmt: skip
        assert status == 403 and desk.store.get(rid).state == "approved"

    serve(world, monkeypatch, test)
