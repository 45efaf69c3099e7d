"""The export airlock at the demo's airlock site (ncc), through the real hub, proxy, export
and admin services, and tanaka's server in its site container.

Rules checked (POLICY.md: results may be published, the data never): at an airlock site no
file leaves the server as a direct download, whoever asks and however (his browser, his own
token through the proxy); a request freezes the files at the site in a short-lived container
on no network, with their hashes, and checks them at once; two reviewers, neither the
requester, one a site admin of ncc and one of the secretariat, approve; only then does the
requester get exactly the frozen bytes, from the hub, outside his container; a table of
people is blocked by the checks; every refusal changes nothing; every step is in the audit
store.
"""

from __future__ import annotations

import hashlib

import pytest
import requests

from extensions.contracts import events as ev

from .conftest import ModuleAudit, token_of
from .test_sites import Researcher, container_of, engine, sh  # noqa: F401  (engine: a fixture)

pytestmark = pytest.mark.integration

SITE = "ncc"
API = "/services/export/api/requests"
HOME = "/home/jovyan"

#: a researcher's results in the home: a bar plot and a table of counts per group (every
#: cell well over the minimum count); the e2e journey makes the same
RESULTS_SCRIPT = f"""
set -e
mkdir -p {HOME}/results
python3 - <<'PY'
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
plt.bar(["A", "B", "C"], [120, 95, 80])
plt.title("Cases per group")
plt.savefig("{HOME}/results/figure1.png")
with open("{HOME}/results/table2.csv", "w") as f:
    f.write("group,cases,controls\\nA,120,340\\nB,95,310\\nC,80,290\\n")
PY
"""
#: what tanaka makes at ncc: those, and a table of people copied from the cohort's file
MAKE_RESULTS = (
    RESULTS_SCRIPT + f"head -n 40 /data/JGAD000201/clinical.tsv > {HOME}/results/people.tsv\n"
)


class Person:
    """Someone calling the export service with their own hub token, as a tool would."""

    def __init__(self, stack, name: str):
        self.hub = stack.config.hub_url
        self.name = name
        self.token = token_of(stack, name)

    def call(self, method: str, path: str = "", **kwargs) -> requests.Response:
        return requests.request(
            method,
            f"{self.hub}{API}{path}",
            headers={"Authorization": f"token {self.token}"},
            timeout=300,
            **kwargs,
        )

    def review(self, request_id: str, decision: str, reason: str = "", **extra):
        body = {"decision": decision, "reason": reason, **extra}
        return self.call("POST", f"/{request_id}/reviews", json=body)


@pytest.fixture(scope="module")
def audit(site_stack):
    return ModuleAudit(site_stack)


@pytest.fixture(scope="module")
def tanaka(site_stack, engine, audit):  # noqa: F811  (audit: its snapshot comes first)
    """tanaka's server at ncc, his browser's cookie for it, and his results in his home."""
    t = Researcher(site_stack, "tanaka")
    r = t.start(SITE)
    assert r.status_code in (201, 202), r.text
    t.wait_ready(SITE)
    r = t.session.get(f"{t.hub}/user/tanaka/{SITE}/lab", timeout=60)
    assert r.status_code == 200, r.text[:300]
    code, out = sh(container_of(engine, "tanaka", SITE), MAKE_RESULTS, user="1000")
    assert code == 0, out
    yield t
    t.stop(SITE)


@pytest.fixture(scope="module")
def people(site_stack, tanaka):
    return {name: Person(site_stack, name) for name in ("tanaka", "admin-ncc", "admin-nig", "jimu")}


def home_sha256(engine, name: str) -> str:  # noqa: F811
    code, out = sh(container_of(engine, "tanaka", SITE), f"sha256sum {HOME}/{name}", user="1000")
    assert code == 0, out
    return out.split()[0]


def unchanged(person: Person, before: dict) -> None:
    after = person.call("GET", f"/{before['id']}").json()
    assert (after["state"], after["reviews"]) == (before["state"], before["reviews"])


# -- no direct download -------------------------------------------------------------------


@pytest.mark.parametrize(
    "route",
    [
        "files/results/figure1.png",
        "files/results/table2.csv?download=1",
        "nbconvert/html/results/table2.csv",
        "view/results/figure1.png",
    ],
)
def test_the_airlock_site_refuses_a_direct_download_and_names_the_airlock(tanaka, people, route):
    """In his browser, and with his own token through the proxy (as a script would try)."""
    url = f"{tanaka.hub}/user/tanaka/{SITE}/{route}"
    for r in (
        tanaka.session.get(url, timeout=60),
        requests.get(url, headers={"Authorization": f"token {people['tanaka'].token}"}, timeout=60),
    ):
        assert r.status_code == 403, (route, r.status_code, r.text[:200])
        assert b"\x89PNG" not in r.content and b"cases,controls" not in r.content
        r.encoding = "utf-8"
        assert "export request (the airlock)" in r.text, r.text[:400]
        assert "持ち出し申請（エアロック）" in r.text


def test_the_refused_downloads_are_in_the_audit_store(tanaka, audit):
    blocked = [
        e
        for e in audit.events(user="tanaka")
        if e["schema"].endswith("/download-blocked") and e["site"] == SITE
    ]
    assert blocked and all(e["data"].get("reason") == "airlock" for e in blocked), blocked[:2]


# -- the journey ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def approved(tanaka, people, engine):  # noqa: F811
    """tanaka asks for his plot and table; admin-ncc and jimu approve. Returns the request as
    it was answered at creation, and the hashes of the originals at that moment."""
    before = {n: home_sha256(engine, f"results/{n}") for n in ("figure1.png", "table2.csv")}
    r = people["tanaka"].call(
        "POST",
        json={
            "site": SITE,
            "paths": ["results/figure1.png", "results/table2.csv"],
            "purpose": "Figure 1 and Table 2 of the paper",
        },
    )
    assert r.status_code == 201, r.text
    created = r.json()
    return created, before


def test_a_request_is_frozen_with_its_hashes_and_checked_at_once(approved):
    created, originals = approved
    assert created["state"] == "checked", created
    files = {f["name"]: f for f in created["manifest"]["files"]}
    assert set(files) == {"results/figure1.png", "results/table2.csv"}
    for name, f in files.items():
        assert f["sha256"] == originals[name.split("/")[1]]
        assert f["ok"], f["checks"]
        assert {c["check"] for c in f["checks"]} >= {"kind", "size", "recogniser"}


def test_refused_reviews_change_nothing(approved, people):
    created, _ = approved
    rid = created["id"]
    for who, status, key in [
        ("tanaka", 403, "export.own_request"),
        # another site's admin does not even see that the request exists
        ("admin-nig", 404, "export.not_found"),
    ]:
        r = people[who].review(rid, "approve")
        assert r.status_code == status, (who, r.text)
        body = r.json()
        assert body["error"] == key and body["message"]["ja"] and body["message"]["en"], body
        unchanged(people["tanaka"], created)
    # not his to download before it is approved
    r = people["tanaka"].call("GET", f"/{rid}/files/results/figure1.png")
    assert r.status_code == 409 and r.json()["error"] == "export.not_approved", r.text
    unchanged(people["tanaka"], created)


def test_two_reviewers_approve_and_one_cannot_act_twice(approved, people):
    created, _ = approved
    rid = created["id"]
    # the reviewers' queues hold it
    for who in ("admin-ncc", "jimu"):
        queue = people[who].call("GET", params={"queue": "1"}).json()
        assert rid in {q["id"] for q in queue["requests"]}, (who, queue)
    r = people["admin-ncc"].review(rid, "approve", "a plot and a table of counts per group")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "under-review"
    second = r.json()
    r = people["admin-ncc"].review(rid, "approve")
    assert r.status_code == 403 and r.json()["error"] == "export.already_reviewed", r.text
    unchanged(people["tanaka"], second)
    r = people["jimu"].review(rid, "approve", "fine to publish")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "approved"
    assert {(x["reviewer"], x["role"]) for x in r.json()["reviews"]} == {
        ("admin-ncc", "site-admin"),
        ("jimu", "secretariat"),
    }


def test_the_requester_downloads_exactly_the_frozen_bytes(approved, people, engine, tanaka):  # noqa: F811
    created, originals = approved
    rid = created["id"]
    assert people["tanaka"].call("GET", f"/{rid}").json()["state"] == "approved"
    # the original is edited after the request: nothing released changes
    code, out = sh(
        container_of(engine, "tanaka", SITE),
        f"echo 'D,1,2' >> {HOME}/results/table2.csv",
        user="1000",
    )
    assert code == 0, out
    assert home_sha256(engine, "results/table2.csv") != originals["table2.csv"]
    for name in ("results/figure1.png", "results/table2.csv"):
        r = people["tanaka"].call("GET", f"/{rid}/files/{name}")
        assert r.status_code == 200, r.text[:300]
        digest = hashlib.sha256(r.content).hexdigest()
        assert digest == originals[name.split("/")[1]] == r.headers["X-Content-SHA256"]
        assert "attachment" in r.headers["Content-Disposition"]
    assert b"D,1,2" not in r.content
    # and in his browser, from the hub's page outside his container
    page = tanaka.session.get(f"{tanaka.hub}/services/admin/exports", timeout=60)
    assert page.status_code == 200, page.text[:300]
    assert f'data-export-id="{rid}"' in page.text
    r = tanaka.session.get(
        f"{tanaka.hub}/services/admin/exports/{rid}/files/results/figure1.png", timeout=60
    )
    assert (
        r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == originals["figure1.png"]
    )
    assert people["tanaka"].call("GET", f"/{rid}").json()["state"] == "released"


def test_nobody_else_downloads_a_released_file(approved, people):
    created, _ = approved
    for who in ("jimu", "admin-ncc"):
        r = people[who].call("GET", f"/{created['id']}/files/results/figure1.png")
        assert r.status_code in (403, 404), (who, r.status_code)
        assert b"\x89PNG" not in r.content


def test_every_step_is_in_the_audit_store(approved, audit):
    rid = approved[0]["id"]
    steps = [
        e["schema"]
        for e in audit.events()
        if e["schema"]
        in {ev.EXPORT_REQUEST, ev.EXPORT_CHECKED, ev.EXPORT_REVIEW, ev.EXPORT_RELEASE}
        and e["data"].get("request_id") == rid
    ]
    assert steps.count(ev.EXPORT_REQUEST) == 1 and steps.count(ev.EXPORT_CHECKED) == 1
    assert steps.count(ev.EXPORT_REVIEW) == 2 and steps.count(ev.EXPORT_RELEASE) >= 2
    assert audit.verify().ok


# -- a table of people ----------------------------------------------------------------------


def test_a_table_of_people_is_blocked_by_the_checks_and_a_rejection_is_final(people):
    r = people["tanaka"].call(
        "POST",
        json={"site": SITE, "paths": ["results/people.tsv"], "purpose": "the cohort's table"},
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["state"] == "checked"
    (entry,) = created["manifest"]["files"]
    assert not entry["ok"]
    failed = {c["check"] for c in entry["checks"] if not c["ok"]}
    assert "recogniser" in failed, entry["checks"]
    rid = created["id"]
    # an approval without a written override is refused, and changes nothing
    r = people["admin-ncc"].review(rid, "approve")
    assert r.status_code == 400 and r.json()["error"] == "export.override_needed", r.text
    unchanged(people["tanaka"], created)
    r = people["admin-ncc"].review(rid, "reject", "individual-level data")
    assert r.status_code == 200 and r.json()["state"] == "rejected", r.text
    # nothing after a rejection: no approval, no download
    r = people["jimu"].review(rid, "approve", "too late")
    assert r.status_code == 409, r.text
    r = people["tanaka"].call("GET", f"/{rid}/files/results/people.tsv")
    assert r.status_code == 409 and r.json()["message"]["en"], r.text
    assert people["tanaka"].call("GET", f"/{rid}").json()["state"] == "rejected"


# -- the report -------------------------------------------------------------------------------


def test_the_annual_report_counts_the_requests_and_their_decisions(site_stack, audit):
    """The data-usage report of this fiscal year for tanaka's approval, from the stack's own
    registry and audit store: this module's two requests (three files), two approvals and
    one rejection, one request released; each figure with its recount query."""
    from datetime import datetime

    from extensions.contracts.clock import JST
    from hub.report import ReportRequest, build_report
    from hub.store.registry import ApprovalRegistry

    now = datetime.now(JST)
    fiscal_year = now.year if now.month >= 4 else now.year - 1
    registry = ApprovalRegistry(site_stack._database_url())
    try:
        doc = build_report(
            registry,
            audit.store,
            ReportRequest(fiscal_year=fiscal_year, approval_id="J-DU000101", lang="en"),
        )
    finally:
        registry.close()
    (section,) = [a for a in doc["approvals"] if a["approval_id"] == "J-DU000101"]
    exports = section["exports"]
    assert (exports["requests"], exports["files"], exports["released"], exports["rejected"]) == (
        2,
        3,
        1,
        1,
    ), exports
    assert exports["decisions"] == {"approve": 2, "reject": 1, "changes": 0}, exports
    assert exports["median_decision_hours"] is not None and exports["median_decision_hours"] < 1
