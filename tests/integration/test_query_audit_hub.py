"""The hub's side of the sites' query-set audit on a real platform: hub, proxy, IdP, the audit,
admin and gateway services, with the registry and audit store they write.

A researcher's query that the gateway at nig refuses (it differs from an answered one by
one person) reaches the secretariat: on the admin page and its API, by time, task, dataset
and rule, never by the people or parameters. The secretariat resets the approval's audit
with a reason (through the API's checks, the command line and the page); the gateway hears
of the reset with the approval and starts afresh; the annual report counts the answers,
the refusals by rule and the reset with its reason.

Rules checked: "No disclosure" (across queries; what the secretariat is shown), "Security"
(only the secretariat sees refusals and resets, always with a reason; bad input changes
nothing), "Reporting" (the year's refusals and resets in the usage report).
"""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime

import pytest
import requests

from extensions.contracts.clock import fiscal_year_of
from extensions.federation.cohorts import open_cohort
from hub.demo.stack import Stack, StackConfig
from hub.store.audit import AuditStore
from hub.store.registry import ApprovalRegistry

from .conftest import hub_login, platform_copy, token_of
from .guard_server import wait_for

pytestmark = pytest.mark.integration

SITE, DATASET, APPROVAL = "nig", "JGAD000101", "J-DU000101"
MIN = 5  # the demo platform's min_cell_count
XSRF_RE = re.compile(r'name="_xsrf" value="([^"]+)"')


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    platform = platform_copy(tmp_path_factory.mktemp("qa-hub-platform"))
    state = tmp_path_factory.mktemp("qa-hub-stack")
    s = Stack(StackConfig.ephemeral(state, platform_dir=platform))
    s.ensure_data()
    s.start()
    wait_for(lambda: ok(f"{s.config.hub_url}/services/gateway-{SITE}/health"), timeout=60)
    yield s
    s.stop()


def ok(url):
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def tokens(stack):
    return {name: token_of(stack, name) for name in ("tanaka", "jimu", "admin-nig")}


@pytest.fixture(scope="module")
def registry(stack):
    r = ApprovalRegistry(stack._database_url())
    yield r
    r.close()


@pytest.fixture(scope="module")
def audit(stack):
    a = AuditStore(stack._database_url())
    yield a
    a.close()


@pytest.fixture(scope="module")
def people(stack):
    """The cohort at nig as the site holds it (the test's own view, to build the pair)."""
    folder = stack.bundle.platform.site_data_dir(SITE) / DATASET
    return open_cohort(folder, SITE, DATASET, "dask").samples


def a_pair(people):
    """A group (sex x age band) of more than MIN people with one member whose disease nobody
    else in it has: "the group" and "the group without that disease" differ by one person."""
    for (sex, band), g in people.groupby(["sex", "age_band"]):
        counts = g["disease_name"].value_counts()
        lone = counts[counts == 1]
        if len(g) > MIN and len(lone):
            group = {"sex": [sex], "age_band": [band]}
            return group, group | {"disease_name": sorted(set(counts.index) - {lone.index[0]})}
    raise AssertionError("the demo cohort has no group to build the pair from")


def ask(stack, token, where):
    return requests.post(
        f"{stack.config.hub_url}/services/gateway-{SITE}/api/tasks/allele_frequencies",
        json={"dataset": DATASET, "params": {"where": where}, "engine": "dask"},
        headers={"Authorization": f"token {token}"},
        timeout=600,
    )


def api(stack, token, method, path, body=None):
    return requests.request(
        method,
        f"{stack.config.hub_url}/services/admin/api/{path}",
        json=body,
        headers={"Authorization": f"token {token}"},
        timeout=120,
    )


def state(registry, audit):
    return registry.snapshot(), audit.count()


def visiting(stack, token, *argv):
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *argv, "--hub-url", stack.config.hub_url,
         "--token", token],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def refusal_rows(stack, token):
    r = api(stack, token, "GET", "query-audit?days=2")
    assert r.status_code == 200, r.text
    return {g["scope"]: g for g in r.json()["approvals"]}


def test_a_refusal_reaches_the_secretariat_and_a_reset_starts_the_audit_afresh(
    stack, tokens, registry, audit, people
):
    group, without_one = a_pair(people)
    tanaka, jimu = tokens["tanaka"], tokens["jimu"]
    assert ask(stack, tanaka, group).status_code == 200
    r = ask(stack, tanaka, without_one)
    assert r.status_code == 403 and r.json()["code"] == "query_set_audit", r.text[:1000]

    # the secretariat sees it: who, where, what, which rule, the earlier query by time and task
    rows = wait_for(lambda: refusal_rows(stack, jimu).get(APPROVAL), timeout=30)
    (row,) = rows["refusals"]
    assert (row["user"], row["site"], row["dataset"], row["task"], row["rule"]) == (
        "tanaka", SITE, DATASET, "allele_frequencies", "small_difference",
    )  # fmt: skip
    (earlier,) = row["collides_with"]
    assert earlier["task"] == "allele_frequencies" and earlier["time"] < row["time"]
    answered = {e["event_id"] for e in audit.events() if e["data"].get("outcome") == "answered"}
    assert earlier["query_id"] in answered
    shown = api(stack, jimu, "GET", "query-audit").text
    assert not any(i in shown for i in people.index), "the secretariat's list named a person"
    assert "disease_name" not in shown and "parameters" not in shown

    # nobody else sees it or resets; bad input changes nothing
    for who in ("tanaka", "admin-nig"):
        assert api(stack, tokens[who], "GET", "query-audit").status_code == 403
    before = state(registry, audit)
    for who, path, body, status, field in (
        ("tanaka", f"approvals/{APPROVAL}/query-audit/reset", {"reason": "mine"}, 403, None),
        ("jimu", f"approvals/{APPROVAL}/query-audit/reset", {"reason": " "}, 400, "reason"),
        ("jimu", "approvals/J-DU999999/query-audit/reset", {"reason": "x"}, 404, "approval_id"),
    ):
        r = api(stack, tokens[who], "POST", path, body)
        assert r.status_code == status and r.json()["field"] == field, r.text
    r = visiting(stack, tanaka, "secretariat", "reset-query-audit", APPROVAL, "--reason", "x")
    assert r.returncode == 2 and "secretariat role" in r.stderr
    assert state(registry, audit) == before
    # the gateway still refuses
    assert ask(stack, tanaka, without_one).status_code == 403

    # the secretariat resets with a reason, from the command line
    r = visiting(
        stack, jimu, "secretariat", "reset-query-audit", APPROVAL, "--reason", "board decision 17"
    )
    assert r.returncode == 0, r.stderr
    assert "reset-query-audit" in r.stdout and "done" in r.stdout
    (reset,) = registry.query_audit_resets(APPROVAL)
    assert (reset.by, reset.reason) == ("jimu", "board decision 17")
    shown = api(stack, jimu, "GET", f"approvals/{APPROVAL}").json()
    assert [x["reason"] for x in shown["query_audit_resets"]] == ["board decision 17"]

    # the gateway hears of it with the approval: a fresh history answers the query, and
    # the one-person difference is refused again the other way round
    r = ask(stack, tanaka, without_one)
    assert r.status_code == 200, r.text[:1000]
    r = ask(stack, tanaka, group)
    assert r.status_code == 403 and r.json()["audit"]["rule"] == "small_difference"

    # the page: the refusals and the reset, in both languages
    session, login = hub_login(stack.config.hub_url, "jimu", "jimu-demo")
    assert login.status_code == 200
    page = session.get(f"{stack.config.hub_url}/services/admin/", timeout=60)
    assert page.status_code == 200, page.text[:500]
    assert "照会集合監査による拒否" in page.text and "Query-set audit refusals" in page.text
    assert page.text.count('data-rule="small_difference"') == 3  # before and after the reset
    assert "board decision 17" in page.text
    assert not any(i in page.text for i in people.index)

    # the usage report of the year counts the answers, the refusals by rule and the reset
    year = fiscal_year_of(reset.at)
    r = requests.get(
        f"{stack.config.hub_url}/services/admin/report",
        params={"fiscal_year": year, "approval": APPROVAL, "format": "json"},
        headers={"Authorization": f"token {jimu}"},
        timeout=300,
    )
    assert r.status_code == 200, r.text[:500]
    (a,) = r.json()["approvals"]
    qa = a["query_audit"]
    assert qa["answered"] >= 2
    assert {x["rule"]: x["queries"] for x in qa["refused"]} == {"small_difference": 3}
    assert [x["reason"] for x in qa["resets"]] == ["board decision 17"]


def test_the_page_form_resets_with_the_hubs_xsrf_and_names_a_bad_field(stack, registry, audit):
    session, r = hub_login(stack.config.hub_url, "jimu", "jimu-demo")
    assert r.status_code == 200
    base = f"{stack.config.hub_url}/services/admin/"
    page = session.get(base, timeout=60)
    assert page.status_code == 200 and 'action="/services/admin/do/reset-query-audit"' in page.text
    xsrf = XSRF_RE.search(page.text).group(1)
    before = state(registry, audit)
    r = session.post(
        base + "do/reset-query-audit",
        data={"_xsrf": xsrf, "approval_id": APPROVAL, "reason": ""},
        timeout=60,
    )
    assert r.status_code == 400 and 'data-field="reason"' in r.text
    r = session.post(
        base + "do/reset-query-audit",
        data={"approval_id": APPROVAL, "reason": "forged"},
        timeout=60,
    )
    assert r.status_code == 403
    assert state(registry, audit) == before
    r = session.post(
        base + "do/reset-query-audit",
        data={"_xsrf": xsrf, "approval_id": APPROVAL, "reason": "page reset"},
        timeout=60,
    )
    assert r.status_code == 200 and "reset-query-audit: done" in r.text
    latest = registry.query_audit_resets(APPROVAL)[-1]
    assert (latest.by, latest.reason) == ("jimu", "page reset")
    listed = api(stack, token_of(stack, "jimu"), "GET", "approvals").json()["approvals"]
    latest_at = {a["approval_id"]: a["query_audit_reset"] for a in listed}[APPROVAL]
    assert datetime.fromisoformat(latest_at) == latest.at
