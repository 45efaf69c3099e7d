"""The secretariat's and site admins' levers on a real platform: hub, proxy, IdP, Docker sites,
the enforcer and the admin service, with the registry and audit store they write.

Rules checked: "Sanctions" (suspension at once, everywhere; a ban in the allowed range),
"Roles" (each lever only for its role and, for site admins, their own site), "Audit"
(every action recorded with who and why), "Bad input" (refused, nothing changed).
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import docker
import pytest
import requests

from hub.demo.processes import services_of
from hub.sites.plan import resolve_endpoint
from hub.store.audit import AuditStore
from hub.store.registry import ApprovalRegistry

from .conftest import SITE_ENFORCER_INTERVAL, hub_login, token_of
from .test_sites import Researcher, container_of

pytestmark = pytest.mark.integration

ENFORCER_INTERVAL = SITE_ENFORCER_INTERVAL  # seconds: the catch-up after the enforcer was down

#: site_stack (conftest.py) runs its hub on a registry and audit store of this module's own:
#: these tests revoke sato's approval, change J-DU000101's quota at nig and count the
#: secretariat's actions in the whole log
SITE_STACK_VARIANT = {"platform": None}


@pytest.fixture(scope="module")
def engine():
    client = docker.DockerClient(base_url=resolve_endpoint("local"))
    yield client
    client.close()


@pytest.fixture(scope="module")
def registry(site_stack):
    r = ApprovalRegistry(site_stack._database_url())
    yield r
    r.close()


@pytest.fixture(scope="module")
def audit(site_stack):
    a = AuditStore(site_stack._database_url())
    yield a
    a.close()


@pytest.fixture(scope="module")
def jimu(site_stack):
    return token_of(site_stack, "jimu")


@pytest.fixture(scope="module")
def admin_nig(site_stack):
    return token_of(site_stack, "admin-nig")


def api(stack, token, method, path, body=None, **kw):
    headers = {"Authorization": f"token {token}"} if token else {}
    return requests.request(
        method,
        f"{stack.config.hub_url}/services/admin/api/{path}",
        json=body,
        headers=headers,
        timeout=120,
        **kw,
    )


def gateway_query(stack, token):
    return requests.post(
        f"{stack.config.hub_url}/services/gateway-nig/api/tasks/cohort_counts",
        json={"dataset": "JGAD000101", "params": {"by": "sex"}},
        headers={"Authorization": f"token {token}"},
        timeout=120,
    )


def state(registry, audit):
    return registry.snapshot(), audit.count()


def actions(audit, user=None):
    return [e for e in audit.events(user=user) if "-action" in e["schema"]]


def login_refusal(stack, user):
    _, r = hub_login(stack.config.hub_url, user, f"{user}-demo")
    return r


def reinstate(stack, jimu, user):
    r = api(stack, jimu, "POST", "reinstate", {"user": user, "reason": "test over"})
    assert r.status_code == 200, r.text


@pytest.fixture(autouse=True)
def nobody_left_suspended(site_stack, jimu, registry):
    """A failed test must not leave its suspensions to the next one."""
    yield
    for s in registry.suspensions():
        if s.lifted_at is None:
            reinstate(site_stack, jimu, s.username)


# -- suspension -----------------------------------------------------------------------


def test_suspend_stops_everything_within_two_seconds(site_stack, engine, jimu, audit):
    tanaka = Researcher(site_stack, "tanaka")
    token = token_of(site_stack, "tanaka")
    sites = ["nig", "ncc", "ncgm"]
    for site in sites:
        r = tanaka.start(site)
        assert r.status_code in (201, 202), r.text
    for site in sites:
        tanaka.wait_ready(site)
    kernel = requests.post(
        f"{site_stack.config.hub_url}/user/tanaka/nig/api/kernels",
        headers={"Authorization": f"token {token}"},
        json={"name": "python3"},
        timeout=60,
    )
    assert kernel.status_code == 201, kernel.text
    assert gateway_query(site_stack, token).status_code == 200
    assert all(container_of(engine, "tanaka", s) is not None for s in sites)

    t0 = time.monotonic()
    r = api(site_stack, jimu, "POST", "suspend", {"user": "tanaka", "reason": "password shared"})
    answered = time.monotonic() - t0
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["changed"] and body["enforcement"]["users"]["tanaka"]["stopped"] == sorted(sites), (
        body
    )
    gone = [container_of(engine, "tanaka", s) is None for s in sites]
    token_refused = (
        requests.get(
            f"{site_stack.config.hub_url}/hub/api/user",
            headers={"Authorization": f"token {token}"},
            timeout=10,
        ).status_code
        == 403
    )
    federation_refused = gateway_query(site_stack, token).status_code == 403
    outcomes = time.monotonic() - t0
    login = login_refusal(site_stack, "tanaka")
    assert all(gone), f"containers left after suspension: {gone}"
    assert token_refused and federation_refused
    assert answered < 2.0 and outcomes < 2.0, (answered, outcomes)
    assert login.status_code == 403 and "suspended" in login.text and "停止" in login.text
    assert "secretariat@visiting.example" in login.text
    (event,) = [e for e in actions(audit, "tanaka") if e["data"]["action"] == "suspend"]
    assert event["actor"] == "jimu" and event["data"]["reason"] == "password shared"
    stops = [e for e in audit.events(user="tanaka") if e["schema"].endswith("enforcement-stop")]
    assert {e["site"] for e in stops} >= set(sites)
    reinstate(site_stack, jimu, "tanaka")
    assert login_refusal(site_stack, "tanaka").status_code == 200


def test_enforcer_down_other_checks_hold_and_it_catches_up(site_stack, engine, jimu, audit):
    tanaka = Researcher(site_stack, "tanaka")
    token = token_of(site_stack, "tanaka")
    assert tanaka.start("nig").status_code in (201, 202)
    tanaka.wait_ready("nig")
    # this stack's enforcer (other test modules run stacks of their own, without sites)
    (enforcer,) = [
        pid
        for pid in services_of(site_stack.state_dir)
        if b"JUPYTERHUB_SERVICE_NAME=enforcer"
        in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    ]
    os.kill(enforcer, signal.SIGSTOP)
    try:
        r = api(site_stack, jimu, "POST", "suspend", {"user": "tanaka", "reason": "audit finding"})
        assert r.status_code == 200, r.text
        assert "not answering" in r.json()["enforcement"]["error"]
        # the server still runs: nobody stopped it; every other check refuses already
        assert container_of(engine, "tanaka", "nig") is not None
        refused = gateway_query(site_stack, token)
        assert refused.status_code == 403 and "no approval active now" in refused.json()["message"]
        login = login_refusal(site_stack, "tanaka")
        assert login.status_code == 403 and "suspended" in login.text
        spawn = tanaka.start("ncc")
        assert spawn.status_code in (403, 500) or "suspended" in spawn.text
    finally:
        os.kill(enforcer, signal.SIGCONT)
    # back: its next round stops the server and revokes the tokens
    deadline = time.monotonic() + 10 * ENFORCER_INTERVAL
    while time.monotonic() < deadline and container_of(engine, "tanaka", "nig") is not None:
        time.sleep(0.2)
    assert container_of(engine, "tanaka", "nig") is None
    stops = [
        e
        for e in audit.events(user="tanaka")
        if e["schema"].endswith("enforcement-stop") and "suspended" in e["data"]["reason"]
    ]
    assert stops and stops[-1]["actor"] == "enforcer"
    reinstate(site_stack, jimu, "tanaka")


def test_institution_suspension_and_reinstatement(site_stack, jimu, audit):
    inst = "Example University Graduate School of Medicine"
    r = api(site_stack, jimu, "POST", "suspend", {"institution": inst, "reason": "breach"})
    assert r.status_code == 200, r.text
    assert sorted(r.json()["detail"]["suspensions"]) == ["tanaka", "yamada"]
    for user in ("tanaka", "yamada"):
        assert login_refusal(site_stack, user).status_code == 403
        reinstate(site_stack, jimu, user)
        assert login_refusal(site_stack, user).status_code == 200
    events = actions(audit)
    assert {(e["user"], e["data"]["action"]) for e in events[-4:]} == {
        ("tanaka", "suspend"),
        ("yamada", "suspend"),
        ("tanaka", "reinstate"),
        ("yamada", "reinstate"),
    }
    listed = api(site_stack, jimu, "GET", "suspensions").json()["suspensions"]
    assert any(s["institution"] == inst and s["lifted_by"] == "jimu" for s in listed)


def test_extend_then_revoke(site_stack, jimu, audit):
    # sato's approval ended in 2021: he is refused, then extended, then revoked
    assert login_refusal(site_stack, "sato").status_code == 403
    r = api(
        site_stack,
        jimu,
        "POST",
        "approvals/J-DU000102/extend",
        {"end": "2027-03-31", "reason": "publication revision"},
    )
    assert r.status_code == 200 and r.json()["changed"], r.text
    assert login_refusal(site_stack, "sato").status_code == 200
    shown = api(site_stack, jimu, "GET", "approvals/J-DU000102").json()
    assert shown["end"] == "2027-03-31" and shown["status"] == "active"
    assert shown["changes"][-1]["kind"] == "extended"
    r = api(site_stack, jimu, "POST", "approvals/J-DU000102/revoke", {"reason": "data misuse"})
    assert r.status_code == 200 and r.json()["changed"], r.text
    refused = login_refusal(site_stack, "sato")
    assert refused.status_code == 403 and "revoked" in refused.text
    shown = api(site_stack, jimu, "GET", "approvals/J-DU000102").json()
    assert shown["status"] == "revoked"
    kinds = [e["data"]["action"] for e in actions(audit) if e["approval_id"] == "J-DU000102"]
    assert kinds == ["extend", "revoke"]


# -- roles ----------------------------------------------------------------------------


def test_site_admin_is_limited_to_their_site(site_stack, admin_nig, registry, audit):
    assert api(site_stack, admin_nig, "GET", "sites/nig").status_code == 200
    before = state(registry, audit)
    for method, path, body in [
        ("GET", "sites/ncc", None),
        ("GET", "sites/ncc/servers", None),
        ("POST", "sites/ncc/quota", {"quota": {"cpu": 2}, "reason": "x"}),
        ("POST", "sites/ncc/images", {"image": "visiting/singleuser:latest", "reason": "x"}),
        ("POST", "sites/ncc/servers/tanaka/stop", {"reason": "x"}),
        ("POST", "suspend", {"user": "tanaka", "reason": "x"}),
        ("GET", "approvals", None),
    ]:
        r = api(site_stack, admin_nig, method, path, body)
        assert r.status_code == 403, (path, r.status_code, r.text)
    assert state(registry, audit) == before


def test_site_admin_manages_quota_and_sees_servers(site_stack, admin_nig, audit):
    r = api(
        site_stack,
        admin_nig,
        "POST",
        "sites/nig/approvals/J-DU000101/quota",
        {"quota": {"cpu": 1.5, "memory": "3G"}, "reason": "larger GWAS"},
    )
    assert r.status_code == 200 and r.json()["changed"], r.text
    tanaka = Researcher(site_stack, "tanaka")
    assert tanaka.start("nig").status_code in (201, 202)
    tanaka.wait_ready("nig")
    servers = api(site_stack, admin_nig, "GET", "sites/nig/servers").json()["servers"]
    (row,) = [s for s in servers if s["user"] == "tanaka"]
    assert row["approval_id"] == "J-DU000101" and row["image"] == "visiting/singleuser:latest"
    assert row["memory_limit"] == 3 * 1024**3 and row["uptime_seconds"] >= 0
    r = api(
        site_stack, admin_nig, "POST", "sites/nig/servers/tanaka/stop", {"reason": "maintenance"}
    )
    assert r.status_code == 200 and r.json()["stopped"], r.text
    (ev,) = [e for e in actions(audit, "tanaka") if e["data"]["action"] == "stop-server"]
    assert ev["actor"] == "admin-nig" and ev["site"] == "nig"


def test_a_researcher_is_refused_everywhere(site_stack, registry, audit):
    token = token_of(site_stack, "yamada")
    before = state(registry, audit)
    for method, path in [
        ("GET", "approvals"),
        ("GET", "approvals/J-DU000101"),
        ("GET", "suspensions"),
        ("POST", "suspend"),
        ("POST", "reinstate"),
        ("POST", "approvals/J-DU000101/extend"),
        ("POST", "approvals/J-DU000101/revoke"),
        ("GET", "sites/nig"),
        ("GET", "sites/nig/servers"),
        ("POST", "sites/nig/images"),
        ("POST", "sites/nig/quota"),
        ("POST", "sites/nig/servers/tanaka/stop"),
    ]:
        body = {
            "user": "tanaka",
            "reason": "x",
            "end": "2040-01-01",
            "image": "x",
            "quota": {"cpu": 1},
        }
        r = api(site_stack, token, method, path, body if method == "POST" else None)
        assert r.status_code == 403, (path, r.status_code, r.text)
    assert api(site_stack, None, "GET", "approvals").status_code == 401
    assert state(registry, audit) == before


def test_an_expired_session_is_refused(site_stack, registry, audit):
    token = token_of(site_stack, "jimu", expires_in=1)
    # JupyterHub's own clock decides a token's expiry; wait for it to pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = api(site_stack, token, "GET", "approvals")
        if r.status_code != 200:
            break
        time.sleep(0.2)
    assert r.status_code == 403 and "expired or revoked" in r.json()["message"]
    before = state(registry, audit)
    r = api(site_stack, token, "POST", "suspend", {"user": "tanaka", "reason": "x"})
    assert r.status_code == 403
    assert state(registry, audit) == before


# -- bad input ----------------------------------------------------------------------------

BAD = [
    ("jimu", "suspend", {"user": "nobody", "reason": "x"}, 404, "user", "unknown person"),
    ("jimu", "suspend", {"user": "tanaka"}, 400, "reason", "reason is required"),
    (
        "jimu",
        "suspend",
        {"user": "tanaka", "reason": "x", "ban_until": "2030-01-01"},
        400,
        "ban_until",
        "outside the range",
    ),
    ("jimu", "reinstate", {"user": "nobody", "reason": "x"}, 404, "user", "unknown person"),
    (
        "jimu",
        "approvals/J-DU999999/extend",
        {"end": "2040-01-01", "reason": "x"},
        404,
        "approval_id",
        "unknown approval",
    ),
    (
        "jimu",
        "approvals/J-DU000101/extend",
        {"end": "2020-01-01", "reason": "x"},
        400,
        "end",
        "not after the period's start",
    ),
    ("jimu", "approvals/J-DU000101/revoke", {}, 400, "reason", "reason is required"),
    (
        "admin-nig",
        "sites/nig/images",
        {"image": "evil/miner:latest", "reason": "x"},
        400,
        "image",
        "not present on site nig's engine",
    ),
    (
        "admin-nig",
        "sites/nig/quota",
        {"quota": {"memory": "lots"}, "reason": "x"},
        400,
        "quota.memory",
        "not a size",
    ),
    ("admin-nig", "sites/nig/servers/tanaka/stop", {}, 400, "reason", "reason is required"),
]


@pytest.mark.parametrize(
    "who,path,body,status,field,words", BAD, ids=[b[1] + str(i) for i, b in enumerate(BAD)]
)
def test_bad_input_is_refused_and_changes_nothing(
    site_stack, jimu, admin_nig, registry, audit, who, path, body, status, field, words
):
    token = jimu if who == "jimu" else admin_nig
    before = state(registry, audit)
    r = api(site_stack, token, "POST", path, body)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field and words in r.json()["message"]
    assert state(registry, audit) == before


def test_a_body_that_is_not_json(site_stack, jimu, registry, audit):
    before = state(registry, audit)
    r = requests.post(
        f"{site_stack.config.hub_url}/services/admin/api/suspend",
        data=b"user=tanaka",
        headers={"Authorization": f"token {jimu}"},
        timeout=30,
    )
    assert r.status_code == 400 and "not JSON" in r.json()["message"]
    assert state(registry, audit) == before


# -- the command line ------------------------------------------------------------------


def visiting(stack, token, *argv):
    import subprocess
    import sys

    return subprocess.run(
        [
            sys.executable,
            "-m",
            "hub.cli.main",
            *argv,
            "--hub-url",
            stack.config.hub_url,
            "--token",
            token,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_command_line_acts_as_the_person(site_stack, jimu, registry, audit):
    r = visiting(site_stack, jimu, "secretariat", "suspend", "yamada", "--reason", "late report")
    assert r.returncode == 0, r.stderr
    assert "suspend" in r.stdout and "done" in r.stdout
    assert registry.suspension_of("yamada") is not None
    r = visiting(site_stack, jimu, "secretariat", "suspensions")
    assert "yamada" in r.stdout and "IN FORCE" in r.stdout
    r = visiting(site_stack, jimu, "secretariat", "reinstate", "yamada", "--reason", "report in")
    assert r.returncode == 0 and registry.suspension_of("yamada") is None
    before = state(registry, audit)
    r = visiting(
        site_stack,
        jimu,
        "secretariat",
        "suspend",
        "yamada",
        "--reason",
        "x",
        "--ban-until",
        "tomorrow",
    )
    assert r.returncode == 2 and "refused (ban_until)" in r.stderr and "is not a date" in r.stderr
    r = visiting(site_stack, jimu, "site-admin", "nig", "servers")
    assert r.returncode == 2 and "not a site admin of nig" in r.stderr
    assert state(registry, audit) == before


# -- the page ------------------------------------------------------------------------------

XSRF_RE = re.compile(r'name="_xsrf" value="([^"]+)"')


def page_session(stack, user):
    session, r = hub_login(stack.config.hub_url, user, f"{user}-demo")
    assert r.status_code == 200
    page = session.get(f"{stack.config.hub_url}/services/admin/", timeout=60)
    assert page.status_code == 200, page.text[:500]
    return session, page


def test_the_page_for_the_secretariat(site_stack, registry, audit):
    session, page = page_session(site_stack, "jimu")
    assert "事務局 / Secretariat" in page.text and "J-DU000101" in page.text
    assert "サイト管理" not in page.text  # jimu administers no site
    xsrf = XSRF_RE.search(page.text).group(1)
    before = state(registry, audit)
    r = session.post(
        f"{site_stack.config.hub_url}/services/admin/do/suspend",
        data={"_xsrf": xsrf, "user": "yamada", "reason": "x", "ban_until": "2099-01-01"},
        timeout=60,
    )
    assert r.status_code == 400
    assert 'data-field="ban_until"' in r.text and "outside the range" in r.text
    assert 'value="yamada"' in r.text  # what was typed stays in the form
    assert state(registry, audit) == before
    r = session.post(
        f"{site_stack.config.hub_url}/services/admin/do/suspend",
        data={"_xsrf": xsrf, "user": "yamada", "reason": "page test"},
        timeout=60,
    )
    assert r.status_code == 200 and "suspend: done" in r.text
    assert registry.suspension_of("yamada") is not None
    # a form without the page's xsrf token is refused
    r = session.post(
        f"{site_stack.config.hub_url}/services/admin/do/reinstate",
        data={"user": "yamada", "reason": "forged"},
        timeout=60,
    )
    assert r.status_code == 403 and registry.suspension_of("yamada") is not None


def test_the_page_for_a_site_admin_and_a_researcher(site_stack, registry, audit):
    session, page = page_session(site_stack, "admin-nig")
    assert "Site nig" in page.text and "Site ncc" not in page.text
    assert "事務局 / Secretariat" not in page.text
    xsrf = XSRF_RE.search(page.text).group(1)
    before = state(registry, audit)
    r = session.post(
        f"{site_stack.config.hub_url}/services/admin/do/site-quota",
        data={"_xsrf": xsrf, "site": "ncc", "quota.cpu": "4", "reason": "x"},
        timeout=60,
    )
    assert r.status_code == 403
    r = session.post(
        f"{site_stack.config.hub_url}/services/admin/do/site-quota",
        data={"_xsrf": xsrf, "site": "nig", "quota.cpu": "-2", "reason": "x"},
        timeout=60,
    )
    assert r.status_code == 400 and 'data-field="quota.cpu"' in r.text
    assert state(registry, audit) == before
    _, page = page_session(site_stack, "yamada")
    assert "no role that uses this page" in page.text


def test_the_report_from_the_admin_service(site_stack, jimu, admin_nig):
    base = f"{site_stack.config.hub_url}/services/admin/report"
    r = requests.get(
        base,
        params={"fiscal_year": "2026", "lang": "ja", "format": "json"},
        headers={"Authorization": f"token {jimu}"},
        timeout=300,
    )
    assert r.status_code == 200, r.text[:500]
    doc = r.json()
    assert doc["audit_chain"]["ok"] and {a["approval_id"] for a in doc["approvals"]} >= {
        "J-DU000101"
    }
    session, page = page_session(site_stack, "jimu")
    assert 'id="report-form"' in page.text
    html = session.get(base, params={"fiscal_year": "2026", "lang": "ja"}, timeout=300)
    assert html.status_code == 200 and "利用" in html.text
    pdf = session.get(base, params={"fiscal_year": "2026", "format": "pdf"}, timeout=300)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert "attachment" in pdf.headers["Content-Disposition"]
    # a site admin is not the secretariat; a bad year is named
    assert (
        requests.get(base, headers={"Authorization": f"token {admin_nig}"}, timeout=60).status_code
        == 403
    )
    bad = requests.get(
        base, params={"fiscal_year": "26"}, headers={"Authorization": f"token {jimu}"}, timeout=60
    )
    assert bad.status_code == 400 and "fiscal_year" in bad.text
