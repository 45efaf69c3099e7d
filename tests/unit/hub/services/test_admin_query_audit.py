"""The secretariat's side of the sites' query-set audit: the refusals on the admin page and
its API, the reset (API, page form, `visiting secretariat reset-query-audit`), and the
reset as the audit service tells a site's gateway.

The admin and audit services run here in this process, over HTTP on loopback, with the
registry and audit store on SQLite; only the question "whose token is this" is answered
without a hub (`as_token_of`, `GatewayAuth`), and the page's forms carry tornado's own
XSRF token instead of the hub's. tests/integration/test_query_audit_hub.py runs the same
through the real hub.

Rules checked: "No disclosure" (a refusal is shown by its time, task, dataset and rule and
the earlier queries by time and task: never the query's parameters, its message or another
person), "Security" (only the secretariat sees refusals and resets an audit, always with a
reason), "Changes" (every reset kept with its time, who and why). Time moves by a clock.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from markupsafe import escape
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from extensions.contracts.clock import JST, FixedClock
from extensions.contracts.events import FEDERATION_QUERY, QUERY_SET_AUDIT, SECRETARIAT_ACTION
from hub.cli.main import main as visiting
from hub.demo.ports import free_port
from hub.platform.messages import message
from hub.platform.operations import Operations
from hub.platform.policy import load_policy_dir
from hub.services.admin import figures
from hub.services.admin.application import make_app
from hub.services.admin.backend import Backend
from hub.services.admin.handlers import BaseHandler
from hub.services.admin.pages import PageHandler
from hub.services.audit import application as audit_service
from hub.store.audit import AuditStore
from hub.store.registry import ApprovalRegistry
from tests.aio import run as run_async

NOW = datetime(2026, 6, 2, 12, 0, tzinfo=JST)
A1, A3 = "J-DU000101", "J-DU000103"
#: what a query's parameters may hold and the page and API must never show
SAMPLE_IDS = ["NIG-000123", "NIG-000124"]
SECRET_REASON = "exactly NIG-000123 would be exposed"


def jst(*args) -> datetime:
    return datetime(*args, tzinfo=JST)


@pytest.fixture
def ops(tmp_path, policy_copy):
    clock = FixedClock(NOW)
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    bundle = load_policy_dir(policy_copy)
    registry = ApprovalRegistry(url, clock=clock)
    registry.import_policy(bundle)
    store = AuditStore(url, clock=clock)
    yield Operations(registry, store, bundle.platform, clock)
    registry.close()
    store.close()


def query_event(
    at: datetime,
    user: str,
    site: str,
    approval_id: str | None,
    task: str,
    *,
    outcome: str = "refused",
    code: str | None = QUERY_SET_AUDIT,
    rule: str | None = "isolating_combination",
    scope: str | None = None,
    collides: list[tuple[datetime, str, str]] = (),
    event_id: str | None = None,
) -> dict:
    """A federation-query record as a site's gateway sends it and the intake stores it."""
    data = {
        "task": task,
        "dataset": "JGAD000101",
        "engine": "dask",
        "parameters": {"where": {"sample_id": SAMPLE_IDS}, "by": "sex"},
        "outcome": outcome,
    }
    if outcome == "refused":
        data |= {"status": 403, "reason": SECRET_REASON, "code": code}
        if code == QUERY_SET_AUDIT:
            data["audit"] = {
                "rule": rule,
                "scope": scope or approval_id,
                "collides_with": [
                    {"time": t.isoformat(), "task": k, "query_id": q} for t, k, q in collides
                ],
            }
    else:
        data["audit"] = {"scope": scope or approval_id, "sets": 2}
    return {
        "event_id": event_id or f"q-{user}-{at.timestamp()}-{task}",
        "schema": FEDERATION_QUERY,
        "version": 1,
        "time": at.isoformat(),
        "user": user,
        "site": site,
        "approval_id": approval_id,
        "actor": f"gateway-{site}",
        "data": data,
    }


@pytest.fixture
def refusals(ops):
    """Answers and refusals at two sites over two months; the newest on 2 June 2026."""
    earlier = jst(2026, 5, 20, 9, 0)
    events = [
        query_event(earlier, "tanaka", "nig", A1, "cohort_counts", outcome="answered",
                    event_id="q-answered-1"),
        query_event(jst(2026, 5, 20, 9, 5), "yamada", "nig", A1, "allele_frequencies",
                    outcome="answered", event_id="q-answered-2"),
        # the audit's refusals
        query_event(jst(2026, 5, 21, 10, 0), "tanaka", "nig", A1, "cohort_counts",
                    rule="small_difference", collides=[(earlier, "cohort_counts", "q-answered-1")]),
        query_event(jst(2026, 6, 2, 8, 30), "tanaka", "nig", A1, "allele_frequencies",
                    collides=[(earlier, "cohort_counts", "q-answered-1"),
                              (jst(2026, 5, 20, 9, 5), "allele_frequencies", "q-answered-2")]),
        query_event(jst(2026, 6, 1, 23, 0), "suzuki", "imsut", A3, "gwas_linear",
                    rule="min_count"),
        # the catalogue asked for someone with no approval here: their own audit
        query_event(jst(2026, 5, 30, 7, 0), "sato", "nig", None, "cohort_counts",
                    rule="isolating_pair", scope="person:sato"),
        # a scope that names another person is never shown
        query_event(jst(2026, 5, 30, 7, 5), "tanaka", "nig", A1, "cohort_counts",
                    scope="person:yamada"),
        # not the audit's: another refusal, and one before the 30 days
        query_event(jst(2026, 5, 25, 9, 0), "tanaka", "nig", A1, "cohort_counts",
                    code="small_query"),
        query_event(jst(2026, 5, 3, 23, 59), "tanaka", "nig", A1, "cohort_counts"),
    ]  # fmt: skip
    ops.audit.append(events)
    return events


# ---------------------------------------------------------------------------
# the rows


def test_refusals_newest_first_with_what_collided_and_no_parameters(ops, refusals):
    since = figures.days_since(NOW, 30)
    assert since == jst(2026, 5, 4)
    rows = figures.query_audit_refusals(ops.audit, since)
    got = [(r["time"][:16], r["user"], r["site"], r["task"], r["rule"], r["scope"]) for r in rows]
    assert got == [
        ("2026-06-01T23:30", "tanaka", "nig", "allele_frequencies", "isolating_combination", A1),
        ("2026-06-01T14:00", "suzuki", "imsut", "gwas_linear", "min_count", A3),
        ("2026-05-29T22:05", "tanaka", "nig", "cohort_counts", "isolating_combination", None),
        ("2026-05-29T22:00", "sato", "nig", "cohort_counts", "isolating_pair", "person:sato"),
        ("2026-05-21T01:00", "tanaka", "nig", "cohort_counts", "small_difference", A1),
    ]
    assert rows[0]["collides_with"] == [
        {"time": jst(2026, 5, 20, 9, 0).isoformat(), "task": "cohort_counts",
         "query_id": "q-answered-1"},
        {"time": jst(2026, 5, 20, 9, 5).isoformat(), "task": "allele_frequencies",
         "query_id": "q-answered-2"},
    ]  # fmt: skip
    assert rows[0]["dataset"] == "JGAD000101" and rows[0]["query_id"] == refusals[3]["event_id"]
    shown = json.dumps(rows)
    for never in [*SAMPLE_IDS, SECRET_REASON, "parameters", "sample_id", "yamada"]:
        assert never not in shown, never


def test_refusals_grouped_by_approval_with_the_resets_of_the_period(ops, refusals):
    ops.clock.move_to(jst(2026, 4, 1, 9, 0))  # before the 30 days: not shown
    ops.reset_query_audit("jimu", approval_id=A1, reason="fiscal year start")
    ops.clock.move_to(jst(2026, 5, 22, 9, 0))
    ops.reset_query_audit("jimu", approval_id=A1, reason="board decision 2026-17")
    ops.clock.move_to(jst(2026, 5, 28, 9, 0))
    ops.reset_query_audit("jimu", approval_id="J-DU000102", reason="re-consent")
    ops.clock.move_to(NOW)
    groups = figures.query_audit_section(ops, figures.days_since(NOW, 30))
    assert [(g["scope"], g["approval_id"]) for g in groups] == [
        (A1, A1),
        ("J-DU000102", "J-DU000102"),  # a reset and no refusal
        (A3, A3),
        ("person:sato", None),
    ]
    a1 = groups[0]
    assert [r["task"] for r in a1["refusals"]] == [
        "allele_frequencies",  # 2 June
        "cohort_counts",  # 30 May, its scope dropped: grouped by its approval
        "cohort_counts",  # 21 May
    ]
    assert [(x["reason"], x["by"]) for x in a1["resets"]] == [("board decision 2026-17", "jimu")]
    assert groups[1]["refusals"] == [] and groups[2]["resets"] == []


# ---------------------------------------------------------------------------
# the services over HTTP


class Served:
    """The admin service on loopback: requests as a person (their name as the token)."""

    def __init__(self, ops: Operations, port: int):
        self.ops = ops
        self.base = f"http://127.0.0.1:{port}/services/admin/"
        self.http = AsyncHTTPClient()

    async def fetch(self, method, path, token="jimu", body=None, form=None, headers=None):
        """(status, text, response) of one request; JSON `body` or a `form`."""
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"token {token}"
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body)
        if form is not None:
            data = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            resp = await self.http.fetch(
                self.base + path,
                method=method,
                body=data,
                headers=headers,
                follow_redirects=False,
                allow_nonstandard_methods=True,
            )
        except HTTPClientError as e:
            resp = e.response
        return resp.code, resp.body.decode(), resp

    async def api(self, method, path, token="jimu", body=None):
        status, text, _ = await self.fetch(method, "api/" + path, token, body)
        return status, json.loads(text)


def as_token_of(handler) -> dict | None:
    """Whose request this is: the name in `Authorization: token <name>` (no hub to ask)."""
    scheme, _, name = handler.request.headers.get("Authorization", "").partition(" ")
    return {"name": name} if scheme == "token" and name else None


def serve(ops: Operations, monkeypatch, test) -> None:
    """Run `test(served)` against the admin service over `ops`."""
    monkeypatch.setattr(BaseHandler, "get_current_user", as_token_of)
    # the page's forms: tornado's own XSRF cookie (the hub's needs a hub)
    monkeypatch.setattr(BaseHandler, "xsrf_token", web.RequestHandler.xsrf_token)
    monkeypatch.setattr(BaseHandler, "check_xsrf_cookie", web.RequestHandler.check_xsrf_cookie)

    async def main():
        backend = Backend(ops, "http://127.0.0.1:1/hub/api", "admin-token", None)
        port = free_port()
        server = make_app(backend, "/services/admin/", b"k" * 32).listen(port, address="127.0.0.1")
        try:
            await test(Served(ops, port))
        finally:
            server.stop()
            backend.pool.shutdown(wait=True)

    run_async(main())


def state(ops: Operations):
    return ops.registry.snapshot(), [e["event_id"] for e in ops.audit.events()]


def test_the_api_lists_refusals_for_the_secretariat_only(ops, refusals, monkeypatch):
    async def test(s: Served):
        status, doc = await s.api("GET", "query-audit")
        assert status == 200, doc
        assert doc["days"] == 30 and doc["since"] == jst(2026, 5, 4).isoformat()
        assert [g["scope"] for g in doc["approvals"]] == [A1, A3, "person:sato"]
        assert doc["approvals"][0]["refusals"][0]["rule"] == "isolating_combination"
        # whole Japan-time days: suzuki's refusal came on 1 June at 23:00 JST
        _, short = await s.api("GET", "query-audit?days=1")
        assert [g["scope"] for g in short["approvals"]] == [A1]
        _, short = await s.api("GET", "query-audit?days=2")
        assert [g["scope"] for g in short["approvals"]] == [A1, A3]
        for user in ("tanaka", "admin-nig"):
            status, doc = await s.api("GET", "query-audit", token=user)
            assert status == 403 and "secretariat role" in doc["message"]
        for bad in ("0", "367", "abc", "-3"):
            status, doc = await s.api("GET", f"query-audit?days={bad}")
            assert status == 400 and doc["field"] == "days", doc
        status, _ = await s.api("GET", "query-audit", token=None)
        assert status == 401

    serve(ops, monkeypatch, test)


RESET_REFUSED = [
    # (who, approval, body, status, field, words)
    ("jimu", A1, {}, 400, "reason", "reason is required"),
    ("jimu", A1, {"reason": "   "}, 400, "reason", "reason is required"),
    ("jimu", A1, {"reason": "x" * 2001}, 400, "reason", "longer than 2000 characters"),
    ("jimu", "J-DU999999", {"reason": "x"}, 404, "approval_id", "unknown approval 'J-DU999999'"),
    ("tanaka", A1, {"reason": "x"}, 403, None, "secretariat role"),
    ("admin-nig", A1, {"reason": "x"}, 403, None, "secretariat role"),
    ("jimu", A1, b"reason=x", 400, None, "not JSON"),
    ("jimu", A1, [], 400, None, "must be a JSON object"),
]


@pytest.mark.parametrize(
    "who,approval_id,body,status,field,words",
    RESET_REFUSED,
    ids=[f"{r[0]}-{r[3]}-{r[4]}-{i}" for i, r in enumerate(RESET_REFUSED)],
)
def test_a_refused_reset_changes_nothing(
    ops, monkeypatch, who, approval_id, body, status, field, words
):
    async def test(s: Served):
        before = state(ops)
        got, doc = await s.api("POST", f"approvals/{approval_id}/query-audit/reset", who, body)
        assert got == status and doc["field"] == field and words in doc["message"], doc
        assert state(ops) == before

    serve(ops, monkeypatch, test)


def test_a_reset_through_the_api_and_the_approvals(ops, monkeypatch):
    async def test(s: Served):
        status, doc = await s.api(
            "POST", f"approvals/{A1}/query-audit/reset", body={"reason": "board decision 2026-17"}
        )
        assert status == 200 and doc["changed"] and doc["action"] == "reset-query-audit", doc
        assert doc["detail"]["reset"]["at"] == NOW.astimezone(UTC).isoformat()
        assert len(doc["audit_event_ids"]) == 1
        _, shown = await s.api("GET", f"approvals/{A1}")
        assert [r["reason"] for r in shown["query_audit_resets"]] == ["board decision 2026-17"]
        _, listed = await s.api("GET", "approvals")
        latest = {a["approval_id"]: a["query_audit_reset"] for a in listed["approvals"]}
        assert latest[A1] == NOW.astimezone(UTC).isoformat() and latest[A3] is None

    serve(ops, monkeypatch, test)
    (event,) = [e for e in ops.audit.events(schema=SECRETARIAT_ACTION)]
    assert (event["actor"], event["approval_id"], event["data"]["action"]) == (
        "jimu",
        A1,
        "reset-query-audit",
    )


XSRF_RE = re.compile(r'name="_xsrf" value="([^"]+)"')


def test_the_page_shows_refusals_and_resets_in_both_languages(ops, refusals, monkeypatch):
    ops.clock.move_to(jst(2026, 5, 22, 9, 0))
    ops.reset_query_audit("jimu", approval_id=A1, reason="board decision 2026-17")
    ops.clock.move_to(NOW)

    async def test(s: Served):
        status, html, _ = await s.fetch("GET", "")
        assert status == 200, html[:500]
        title = message("admin.query_audit.title", days=30)
        assert f"{title.ja} / {title.en}" in html
        assert "照会集合監査による拒否" in html and "Query-set audit refusals" in html
        assert str(escape(message("admin.query_audit.note").en)) in html
        # the newest refusal: Japan time, its rule in both languages, what it collided with
        assert 'data-user="tanaka" data-site="nig" data-rule="isolating_combination"' in html
        assert "2026-06-02 08:30:00 JST" in html
        rule = message("query_audit.rule.isolating_combination")
        assert str(escape(f"{rule.ja} / {rule.en}")) in html
        assert "2026-05-20 09:00:00 JST cohort_counts<br>" in html
        assert "2026-05-20 09:05:00 JST allele_frequencies" in html
        assert str(message("query_audit.rule.min_count")) in html
        own = message("admin.query_audit.own")
        assert str(escape(f"{own.ja} / {own.en}: sato")) in html
        # the reset: when, by whom, why; and the approval's latest in the approvals table
        assert "2026-05-22 09:00:00 JST</td><td>jimu</td><td>board decision 2026-17" in html
        assert "最終リセット / Last reset: 2026-05-22 09:00:00 JST" in html
        assert html.count('action="/services/admin/do/reset-query-audit"') == 3  # each approval
        for never in [*SAMPLE_IDS, "exactly NIG", "sample_id"]:
            assert never not in html, never
        # only the secretariat sees the section
        status, other, _ = await s.fetch("GET", "", token="admin-nig")
        assert status == 200 and 'id="query-audit"' not in other

    serve(ops, monkeypatch, test)


def test_an_empty_period_says_so():
    html = PageHandler.env.get_template("admin.html").render(
        user="jimu", roles=["secretariat"], platform=type("P", (), {"name": "t"})(),
        prefix="/services/admin/", xsrf="", flash="", secretariat=True, today="2026-06-02",
        fiscal_year=2026, sites=[], services=None, approvals=[], suspensions=[],
        institutions=[], form="", errors={}, values={}, egress=[], egress_days=30,
        query_audit=[], query_audit_days=7,
    )  # fmt: skip
    title = message("admin.query_audit.title", days=7)
    assert f"{title.ja} / {title.en}" in html
    assert message("admin.query_audit.none").ja in html and "data-rule=" not in html


def test_the_page_form_resets_and_names_a_bad_field(ops, monkeypatch):
    async def test(s: Served):
        _, html, resp = await s.fetch("GET", "")
        xsrf = XSRF_RE.search(html).group(1)
        cookie = resp.headers["Set-Cookie"].split(";", 1)[0]
        before = state(ops)
        status, page, _ = await s.fetch(
            "POST", "do/reset-query-audit", form={"_xsrf": xsrf, "approval_id": A1,
            "reason": " "}, headers={"Cookie": cookie},
        )  # fmt: skip
        assert status == 400
        assert 'data-field="reason"' in page and "a reason is required" in page
        assert state(ops) == before
        # not the secretariat: refused outright
        status, _, _ = await s.fetch(
            "POST", "do/reset-query-audit", token="tanaka",
            form={"_xsrf": xsrf, "approval_id": A1, "reason": "mine"}, headers={"Cookie": cookie},
        )  # fmt: skip
        assert status == 403 and state(ops) == before
        # a form without the page's XSRF token is refused
        status, _, _ = await s.fetch(
            "POST", "do/reset-query-audit", form={"approval_id": A1, "reason": "forged"},
        )  # fmt: skip
        assert status == 403 and state(ops) == before
        status, _, resp = await s.fetch(
            "POST", "do/reset-query-audit", form={"_xsrf": xsrf, "approval_id": A1,
            "reason": "page test"}, headers={"Cookie": cookie},
        )  # fmt: skip
        assert status == 302 and "reset-query-audit%3A+done" in resp.headers["Location"]
        assert [r.reason for r in ops.registry.query_audit_resets(A1)] == ["page test"]

    serve(ops, monkeypatch, test)


def test_the_command_line_resets_through_the_api(ops, monkeypatch, capsys):
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    monkeypatch.delenv("VISITING_TOKEN", raising=False)

    async def test(s: Served):
        hub = s.base.removesuffix("/services/admin/")

        def command(*argv):
            return visiting(["secretariat", *argv, "--hub-url", hub])

        loop = asyncio.get_running_loop()
        code = await loop.run_in_executor(
            None, command, "reset-query-audit", A1, "--reason", "board decision", "--token", "jimu"
        )
        assert code == 0
        out = capsys.readouterr().out
        assert f'reset-query-audit {{"approval_id": "{A1}"}}: done' in out
        assert "starts afresh from 2026-06-02T03:00:00+00:00" in out
        before = state(ops)
        for argv in (
            ("reset-query-audit", A1, "--reason", "  ", "--token", "jimu"),
            ("reset-query-audit", "J-DU999999", "--reason", "x", "--token", "jimu"),
            ("reset-query-audit", A1, "--reason", "x", "--token", "tanaka"),
        ):
            assert await loop.run_in_executor(None, command, *argv) == 2
        err = capsys.readouterr().err.splitlines()
        assert err == [
            "visiting: refused (reason): a reason is required for every action",
            "visiting: refused (approval_id): unknown approval 'J-DU999999'",
            "visiting: refused: tanaka does not have the secretariat role",
        ]
        assert state(ops) == before

    serve(ops, monkeypatch, test)
    assert [(r.by, r.reason) for r in ops.registry.query_audit_resets(A1)] == [
        ("jimu", "board decision")
    ]


# ---------------------------------------------------------------------------
# what a site's gateway is told


class GatewayAuth:
    """The hub's answer for a token: the gateway of `site`, or a person's server."""

    def __init__(self, model: dict):
        self.model = model

    async def user_for_token(self, token, sync=True):
        return self.model


def gateway_asks(registry: ApprovalRegistry, model: dict, user: str) -> tuple[int, dict]:
    async def main():
        port = free_port()
        app = audit_service.make_app(None, GatewayAuth(model), "/services/audit/", registry)
        server = app.listen(port, address="127.0.0.1")
        try:
            resp = await AsyncHTTPClient().fetch(
                f"http://127.0.0.1:{port}/services/audit/api/approvals/{user}",
                headers={"Authorization": "token t"},
                raise_error=False,
            )
            return resp.code, json.loads(resp.body)
        finally:
            server.stop()

    return run_async(main())


def test_the_gateway_is_told_the_latest_reset_of_each_approval(ops):
    gateway = {"kind": "service", "name": "gateway-nig"}
    status, doc = gateway_asks(ops.registry, gateway, "tanaka")
    assert status == 200
    assert [(a["approval_id"], a["query_audit_reset"]) for a in doc["approvals"]] == [(A1, None)]
    ops.reset_query_audit("jimu", approval_id=A1, reason="first")
    ops.clock.advance(timedelta(hours=5))
    ops.reset_query_audit("jimu", approval_id=A1, reason="second")
    _, doc = gateway_asks(ops.registry, gateway, "tanaka")
    (a1,) = doc["approvals"]
    assert a1["query_audit_reset"] == (NOW + timedelta(hours=5)).astimezone(UTC).isoformat()
    assert a1["datasets"] == ["JGAD000101", "JGAD000102"] and a1["end"] == "2035-03-31"
    # a person's server may not ask
    status, _ = gateway_asks(ops.registry, {"kind": "user", "name": "tanaka"}, "tanaka")
    assert status == 403
