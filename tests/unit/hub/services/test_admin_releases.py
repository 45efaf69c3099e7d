"""The export airlock's release in the browser: a person's own export requests on the admin
service, the download of an approved request's frozen files, and the withdrawal.

The admin service runs here as in test_admin_review.py (its helpers: the service on
loopback, `Authorization: token <name>` instead of the hub's OAuth, tornado's own XSRF
token, frozen files in a folder of tmp_path).

Rules checked: "Release" (approved files are downloadable by the requester, for a limited
time, with their hashes; the same files, not newer ones; every download in the audit
store), "No disclosure" (another person, even a reviewer of the request, finds nothing of
it here), "Security" (a file is found by its name in the manifest only; a form without the
page's XSRF token changes nothing).
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta

import pytest
from markupsafe import escape

from extensions.contracts.clock import JST
from extensions.contracts.export import STATES
from hub.platform.airlock import ExportRequest
from hub.platform.messages import MESSAGES, message
from hub.platform.operations import Operations
from hub.platform.policy_models import ExportPolicy
from hub.services.admin import releases
from hub.services.export.desk import ExportDesk
from tests.unit.hub.services.airlock_world import airlock_world
from tests.unit.hub.services.test_admin_review import FolderFreezer, Served, frozen, serve

NOW = datetime(2026, 6, 2, 12, 0, tzinfo=JST)
TABLE = b"age_band,n\n40-49,12\n50-59,17\n"
FIGURE = b"\x89PNG\r\n\x1a\n" + b"\1" * 40


@pytest.fixture
def world(tmp_path, policy_copy):
    """The review tests' world: the demo's people, the stores, frozen files in tmp_path."""
    w = airlock_world(tmp_path, policy_copy, NOW)
    freezer = FolderFreezer(tmp_path / "frozen")
    desk = ExportDesk(w.store, w.registry, w.bundle.platform, freezer, w.clock)
    yield desk, Operations(w.registry, w.audit, w.bundle.platform, w.clock)
    w.close()


def approved(desk: ExportDesk, requester: str = "tanaka") -> str:
    rid = frozen(desk, requester, "nig", {"results/table.csv": TABLE, "fig/one.png": FIGURE})
    for reviewer in ("admin-nig", "jimu"):
        desk.review(rid, reviewer, {"decision": "approve", "reason": "aggregate counts"})
    assert desk.store.get(rid).state == "approved"
    return rid


def listed(html: str) -> list[tuple[str, str]]:
    return re.findall(r'data-export-id="(\w+)" data-export-state="([\w-]+)"', html)


def downloads(html: str) -> list[tuple[str, str]]:
    return re.findall(r'<a class="export-download" href="([^"]+)" data-sha256="(\w+)"', html)


def both(key: str, **fields) -> tuple[str, str]:
    m = message(key, **fields)
    return str(escape(m.ja)), str(escape(m.en))


async def withdraw(s: Served, request_id: str, token: str, xsrf: bool = True):
    """Post the withdraw form as `token`, with the XSRF cookie and token their list gave."""
    _, _, resp = await s.page("exports", token)
    cookie = next(c for c in resp.headers.get_list("Set-Cookie") if c.startswith("_xsrf="))
    cookie = cookie.split(";", 1)[0]
    form = {"_xsrf": cookie.split("=", 1)[1]} if xsrf else {}
    status, body, resp = await s.fetch(
        "POST", f"exports/{request_id}/withdraw", token, form=form, headers={"Cookie": cookie}
    )
    return status, body.decode(), resp


def releases_in_audit(desk: ExportDesk) -> list[dict]:
    return [e for e in desk.store.audit.events() if e["schema"].endswith("export-release")]


# ---------------------------------------------------------------------------
# the list


def test_the_requester_sees_their_own_requests_newest_first(world, monkeypatch):
    desk, _ = world
    done = approved(desk)
    desk.clock.advance(timedelta(hours=1))
    checked = frozen(desk, "tanaka", "ncc", {"out/small.csv": b"a\n2\n"}, failed=("out/small.csv",))
    desk.clock.advance(timedelta(hours=1))
    asked = desk.store.create("tanaka", "nig", "Slides", ["talk/figure.png"]).id
    other = frozen(desk, "suzuki", "nig", {"theirs.csv": b"x\n1\n"})

    async def test(s: Served):
        status, html, resp = await s.page("exports", "tanaka")
        assert status == 200, html[:400]
        assert resp.headers["Cache-Control"] == "no-store"
        assert "script-src" not in resp.headers["Content-Security-Policy"]
        assert listed(html) == [(asked, "submitted"), (checked, "checked"), (done, "approved")]
        assert other not in html and "theirs.csv" not in html
        # each state in both languages; the site, the purpose, the time in Japan
        for state in ("submitted", "checked", "approved"):
            ja, en = both(f"export.state.{state}")
            assert ja in html and en in html
        assert "Figures of tanaka&#39;s paper" in html and "2026-06-02 12:00:00 JST" in html
        # the files with their sizes and hashes, the checks' outcome
        assert hashlib.sha256(TABLE).hexdigest() in html and f"{len(TABLE)} B" in html
        assert str(message("review.checks.ok")) in html
        assert str(message("review.checks.failed", count=1)) in html
        assert 'data-check="disclosure" data-check-ok="no"' in html
        assert str(message("export.mine.not_frozen")) in html and "talk/figure.png" in html
        # the reviews by role and decision, not by the reviewers' names
        assert str(message("export.role.site-admin")) in html
        assert str(message("review.form.approve")) in html and "aggregate counts" in html
        assert "admin-nig" not in html and "jimu" not in html
        # the approved request's files to download, each with its hash, until the window ends
        base = f"/services/admin/exports/{done}/files/"
        assert downloads(html) == [
            (base + "results/table.csv", hashlib.sha256(TABLE).hexdigest()),
            (base + "fig/one.png", hashlib.sha256(FIGURE).hexdigest()),
        ]
        ja, en = both("export.mine.until", until="2026-06-09 12:00")
        assert ja in html and en in html
        assert (
            f'data-export-id="{done}" data-export-state="approved" data-export-site="nig" '
            'data-release-until="2026-06-09T03:00:00+00:00"' in html
        )
        # a withdraw button on the open requests only
        forms = re.findall(r'action="/services/admin/exports/(\w+)/withdraw"', html)
        assert forms == [asked, checked]

        # anyone else: their own list, which here is empty, even for the request's reviewers
        for who in ("yamada", "admin-nig", "jimu"):
            status, html, _ = await s.page("exports", who)
            assert status == 200 and listed(html) == [], who
            assert 'id="exports-none"' in html and message("export.mine.none").ja in html
            assert done not in html and "results/table.csv" not in html
        # the way there: the admin page for everyone, the review queue for its reviewers
        _, html, _ = await s.page("", "tanaka")
        assert '<p id="exports-link"><a href="/services/admin/exports">' in html
        _, html, _ = await s.page("review", "admin-nig")
        assert 'id="exports-link" href="/services/admin/exports"' in html

    serve(world, monkeypatch, test)


def test_every_state_and_role_has_its_text():
    assert {f"export.state.{s}" for s in STATES} <= set(MESSAGES)
    assert {"export.role.site-admin", "export.role.secretariat"} <= set(MESSAGES)


# ---------------------------------------------------------------------------
# the download


def test_a_download_is_the_frozen_bytes_with_their_hash_and_is_recorded(world, monkeypatch):
    desk, _ = world
    rid = approved(desk)

    async def test(s: Served):
        status, body, resp = await s.fetch("GET", f"exports/{rid}/files/results/table.csv",
                                           "tanaka")  # fmt: skip
        assert status == 200, body[:300]
        assert body == TABLE
        assert resp.headers["X-Content-SHA256"] == hashlib.sha256(TABLE).hexdigest()
        assert resp.headers["Content-Length"] == str(len(TABLE))
        assert resp.headers["Content-Type"] == "application/octet-stream"
        assert resp.headers["Content-Disposition"] == "attachment; filename*=UTF-8''table.csv"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Cache-Control"] == "no-store"
        request = desk.store.get(rid)
        assert request.state == "released" and request.released_at == NOW
        # released: said so, and the files are still there until the window ends
        desk.clock.advance(timedelta(days=1))
        _, html, _ = await s.page("exports", "tanaka")
        assert listed(html) == [(rid, "released")]
        assert str(escape(message("export.mine.released", at="2026-06-02 12:00"))) in html
        assert len(downloads(html)) == 2
        status, body, _ = await s.fetch("GET", f"exports/{rid}/files/fig/one.png", "tanaka")
        assert status == 200 and body == FIGURE

    serve(world, monkeypatch, test)
    events = releases_in_audit(desk)
    assert [(e["actor"], e["user"], e["data"]["file"], e["data"]["first"]) for e in events] == [
        ("tanaka", "tanaka", "results/table.csv", True),
        ("tanaka", "tanaka", "fig/one.png", False),
    ]
    assert events[0]["data"]["sha256"] == hashlib.sha256(TABLE).hexdigest()


def test_only_the_frozen_files_and_only_while_the_window_is_open(world, monkeypatch):
    desk, _ = world
    rid = approved(desk)
    desk.clock.advance(timedelta(minutes=1))
    waiting = frozen(desk, "tanaka", "nig", {"results/table.csv": TABLE})

    async def fetch_error(s: Served, path: str, token: str = "tanaka"):
        status, body, _ = await s.fetch("GET", path, token)
        return status, body.decode()

    async def test(s: Served):
        # not approved yet: 409, in both languages
        status, html = await fetch_error(s, f"exports/{waiting}/files/results/table.csv")
        assert status == 409
        ja, en = both("export.not_approved", id=waiting, state="checked")
        assert ja in html and en in html and "<h1>エラー / Error 409</h1>" in html
        # another person, even one of its reviewers, finds nothing: 404, no file named
        for who in ("yamada", "admin-nig", "jimu", "admin-ncc"):
            status, html = await fetch_error(s, f"exports/{rid}/files/results/table.csv", who)
            assert status == 404, who
            assert str(escape(message("export.not_found", id=rid).en)) in html
            assert TABLE.decode() not in html
        # a name not in the manifest, or one that walks out of it: 404 before the site is asked
        reads = len(desk.freezer.reads)
        for name in ("results/other.csv", "results/../results/table.csv", "results/%2e%2e/x",
                     "table.csv", "/results/table.csv"):  # fmt: skip
            status, html = await fetch_error(s, f"exports/{rid}/files/{name}")
            assert status == 404, name
        assert len(desk.freezer.reads) == reads
        # a frozen file changed since its hash was taken is not sent (the same files only)
        (desk.freezer.root / "nig" / rid / "fig" / "one.png").write_bytes(b"newer")
        status, html = await fetch_error(s, f"exports/{rid}/files/fig/one.png")
        assert status == 503 and b"newer" not in html.encode()
        # the window ends 7 days after the approval: refused, and the page says so
        desk.clock.advance(timedelta(days=7))
        status, html = await fetch_error(s, f"exports/{rid}/files/results/table.csv")
        assert status == 409
        ja, en = both("export.release_expired", id=rid, until="2026-06-09 12:00")
        assert ja in html and en in html
        _, html, _ = await s.page("exports", "tanaka")
        assert listed(html) == [(waiting, "checked"), (rid, "approved")]
        assert downloads(html) == []
        ja, en = both("export.mine.over", until="2026-06-09 12:00")
        assert ja in html and en in html

    serve(world, monkeypatch, test)
    assert releases_in_audit(desk) == []
    assert desk.store.get(rid).state == "approved" and desk.store.get(rid).released_at is None


def test_a_row_of_the_list():
    policy = ExportPolicy(release_days=7)
    request = ExportRequest("r1", "tanaka", "nig", "p", ("a.csv",), "approved", NOW,
                            decided_at=NOW)  # fmt: skip
    row = releases.export_row(request, policy, NOW + timedelta(days=7, seconds=-1), "/s/")
    assert row["downloadable"] and row["window"].key == "export.mine.until"
    row = releases.export_row(request, policy, NOW + timedelta(days=7), "/s/")
    assert not row["downloadable"] and row["window"].key == "export.mine.over"
    assert not row["open"] and row["files"] == [] and not row["frozen"]


# ---------------------------------------------------------------------------
# withdrawing


def test_the_requester_withdraws_an_open_request_by_the_form(world, monkeypatch):
    desk, _ = world
    rid = frozen(desk, "tanaka", "nig", {"results/table.csv": TABLE})

    async def test(s: Served):
        # without the page's XSRF token: refused, nothing changes
        status, _, _ = await withdraw(s, rid, "tanaka", xsrf=False)
        assert status == 403 and desk.store.get(rid).state == "checked"
        # another person, or a reviewer of the request: not here
        for who in ("yamada", "admin-nig"):
            status, html, _ = await withdraw(s, rid, who)
            assert status == 404, who
            assert str(escape(message("export.not_found", id=rid).en)) in html
        assert desk.store.get(rid).state == "checked"
        # the requester: withdrawn, and the list says so
        status, _, resp = await withdraw(s, rid, "tanaka")
        assert status == 302
        assert resp.headers["Location"] == f"/services/admin/exports?withdrawn={rid}"
        assert desk.store.get(rid).state == "withdrawn"
        _, html, _ = await s.page(resp.headers["Location"].removeprefix("/services/admin/"),
                                  "tanaka")  # fmt: skip
        assert listed(html) == [(rid, "withdrawn")]
        ja, en = both("export.mine.withdrawn", id=rid)
        assert ja in html and en in html
        assert f"exports/{rid}/withdraw" not in html
        # a second time: the list again, with why it is refused
        status, html, _ = await withdraw(s, rid, "tanaka")
        assert status == 409
        ja, en = both("export.closed", id=rid, state="withdrawn")
        assert ja in html and en in html and 'data-key="export.closed"' in html
        # a flash for a request that is not the person's withdrawn one says nothing
        _, html, _ = await s.page(f"exports?withdrawn={rid}", "yamada")
        assert 'id="flash"' not in html

    serve(world, monkeypatch, test)
    withdrawals = [e for e in desk.store.audit.events() if e["schema"].endswith("export-withdraw")]
    assert [(e["actor"], e["data"]["request_id"]) for e in withdrawals] == [("tanaka", rid)]
