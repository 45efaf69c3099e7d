"""Federated analysis from a notebook kernel in a researcher's container, through the real
proxy and site gateways.

Rules checked: "Where data lives" (tanaka at nig gets pooled answers over his
approved sites; what reaches him are aggregates from each site's gateway,
which runs on that site's network next to its data and Dask cluster) and
"Who may use" (the gateways answer the person whose token comes with the
call, whoever's kernel it runs in: sato, whose approval ended, is refused;
yamada is answered as yamada).

The code runs as JupyterLab runs a cell: a kernel started through the hub's
proxy at /user/tanaka/nig/ with tanaka's own token, an `execute_request` on
the kernel's websocket, the outputs read from iopub (see kernel_client.py).
So the single-user server's data guard sees every output on its way out.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from extensions.contracts.clock import FileClock
from hub.store.audit import AuditStore

from .conftest import token_of, write_clock
from .guard_server import wait_for
from .kernel_client import Kernel
from .test_gateway import _pooled_counts as pooled_counts
from .test_sites import Researcher

pytestmark = pytest.mark.integration

TANAKA_SITES = ["ncc", "ncgm", "nig", "tommo"]
GUARD_NOTICE = "[data guard]"


@pytest.fixture(scope="module")
def fed_stack(site_stack):
    """The session's site stack (conftest.py); its clock says the real time, and sato's
    token is made with the clock moved back."""
    return site_stack


@pytest.fixture(scope="module")
def tokens(fed_stack):
    """Own API tokens of tanaka, yamada and sato, each made as a person makes one.

    sato's approval ended on 2021-03-31, so today he cannot log in; his token is
    made with the hub's clock in 2020, when he could (as test_gateway does). That
    happens before tanaka's server starts: while the clock says 2020 his approval
    (from 2024-04-01) has not begun, and a running server would be told so.
    """
    clock = FileClock(fed_stack.config.clock_file)
    clock.set(datetime(2020, 6, 1, 3, 0, tzinfo=UTC))
    try:
        sato = token_of(fed_stack, "sato")
    finally:
        write_clock(fed_stack.config.clock_file, "")
    return {
        "sato": sato,
        "tanaka": token_of(fed_stack, "tanaka"),
        "yamada": token_of(fed_stack, "yamada"),
    }


@pytest.fixture(scope="module")
def tanaka_at_nig(fed_stack, tokens):
    """tanaka's server at nig, as his browser reaches it: its URL behind the hub's proxy."""
    t = Researcher(fed_stack, "tanaka")
    r = t.start("nig")
    assert r.status_code in (201, 202), r.text
    t.wait_ready("nig")
    yield f"{fed_stack.config.hub_url}/user/tanaka/nig/"
    t.stop("nig")


@pytest.fixture(scope="module")
def kernel(tanaka_at_nig, tokens):
    """A python3 kernel of tanaka's server, started and driven with his own token."""
    with Kernel(tanaka_at_nig, tokens["tanaka"], username="tanaka") as k:
        yield k


def queries_since(audit: AuditStore, seen: set[str], at_least: int) -> list[dict]:
    """The federation-query events not in `seen`, once there are `at_least` of them."""

    def new():
        events = [
            e
            for e in audit.events()
            if e["event_id"] not in seen and e["schema"].endswith("federation-query")
        ]
        return events if len(events) >= at_least else None

    return wait_for(new, timeout=30)


def in_kernel(kernel, code: str, timeout: float = 900) -> dict:
    """Run a cell; its last stdout line is a JSON document, which is returned."""
    run = kernel.execute(code, timeout=timeout).raise_for_error()
    # the guard replaces an output that holds raw records with a notice on stderr; the
    # documents printed here are aggregates and messages, which it must let through
    assert GUARD_NOTICE not in run.stderr, run.stderr
    lines = run.stdout.strip().splitlines()
    assert lines, f"the cell printed nothing; stderr:\n{run.stderr[-3000:]}"
    return json.loads(lines[-1])


POOLED = """
import json
from extensions.federation import connect

fed = connect()  # tanaka, by the token of the server his kernel runs in
af = fed.allele_frequencies()

def counts(a):
    return [None if x != x else int(x) for x in a.values.tolist()]

print(json.dumps({
    "sites": fed.sites,
    "AC": counts(af["AC"]),
    "AN": counts(af["AN"]),
    "attrs": {k: str(v) for k, v in af.attrs.items()},
}))
"""


def test_pooled_allele_frequencies_from_his_kernel(fed_stack, kernel):
    doc = in_kernel(kernel, POOLED)
    assert doc["sites"] == TANAKA_SITES
    ac, an = pooled_counts(fed_stack, TANAKA_SITES)
    got_ac = np.array([np.nan if x is None else x for x in doc["AC"]])
    released = ~np.isnan(got_ac)
    assert released.sum() > 0.5 * len(got_ac)
    assert np.array_equal(got_ac[released], ac[released])
    got_an = np.array([np.nan if x is None else x for x in doc["AN"]])
    assert np.array_equal(got_an[released], an[released])
    # only aggregates came back: a few numbers per variant and site, not per person
    sent = json.loads(doc["attrs"]["bytes_from_sites"])
    assert set(sent) == set(TANAKA_SITES)
    assert all(b < 64 * len(got_ac) for b in sent.values())
    assert json.loads(doc["attrs"]["sites"]) == TANAKA_SITES
    assert "datasets" in doc["attrs"] and "suppressions" in doc["attrs"]


AS_SATO = """
import json
from extensions.federation import connect
from extensions.federation.client import FederationError

as_sato = connect(token={token!r})
outcome = {{"sites": as_sato.sites, "own": "answered", "same_call": "answered"}}
try:
    as_sato.allele_frequencies()
except FederationError as e:
    outcome["own"] = str(e)
# the very call tanaka made (the cell above): the same gateways and datasets, sato's token
as_sato.gateways = dict((globals().get("fed") or connect()).gateways)
try:
    as_sato.allele_frequencies()
except FederationError as e:
    outcome["same_call"] = {{"message": str(e), "site": e.site, "status": e.status}}
print(json.dumps(outcome))
"""


def test_the_same_call_as_sato_is_refused(fed_stack, kernel, tokens):
    audit = AuditStore(fed_stack._database_url())
    seen = {e["event_id"] for e in audit.events()}
    doc = in_kernel(kernel, AS_SATO.format(token=tokens["sato"]))
    # no gateway lists a dataset for him, so connect() finds no site to analyse at
    assert doc["sites"] == []
    assert doc["own"] == "you hold no approval for an analysis dataset at any site"
    # and each gateway refuses the call itself, naming him and why
    refused = doc["same_call"]
    assert isinstance(refused, dict), refused
    assert refused["status"] == 403 and refused["site"] in TANAKA_SITES
    assert f"site {refused['site']} refused (403)" in refused["message"]
    assert "sato holds no approval active now for dataset" in refused["message"]
    events = queries_since(audit, seen, len(TANAKA_SITES))
    assert {e["user"] for e in events} == {"sato"}
    assert sorted(e["site"] for e in events) == TANAKA_SITES
    assert all(e["data"]["outcome"] == "refused" and e["data"]["status"] == 403 for e in events)


AS_YAMADA = """
import json
from extensions.federation import connect

as_yamada = connect(token={token!r})
af = as_yamada.allele_frequencies()
nig = as_yamada.gateways["nig"]
# a dataset of their approval that is not at nig: the gateway says whom it refuses
r = as_yamada.session.post(
    nig.url + "api/tasks/allele_frequencies",
    json={{"dataset": "JGAD000201", "params": {{}}}},
    timeout=120,
)
print(json.dumps({{
    "sites": as_yamada.sites,
    "approvals": sorted({{d["approval_id"] for g in as_yamada.gateways.values() for d in g.datasets}}),
    "released": int(af["AC"].notnull().sum()),
    "outside": {{"status": r.status_code, "message": r.json().get("message")}},
}}))
"""


def test_another_users_token_is_answered_as_that_user(fed_stack, kernel, tokens):
    """yamada shares tanaka's approval: from tanaka's kernel, his token is answered as him."""
    audit = AuditStore(fed_stack._database_url())
    seen = {e["event_id"] for e in audit.events()}
    doc = in_kernel(kernel, AS_YAMADA.format(token=tokens["yamada"]))
    assert doc["sites"] == TANAKA_SITES and doc["approvals"] == ["J-DU000101"]
    assert doc["released"] > 0
    assert doc["outside"] == {
        "status": 403,
        "message": "yamada holds no approval active now for dataset JGAD000201 at site nig",
    }
    new = queries_since(audit, seen, len(TANAKA_SITES) + 1)
    # every query of that cell was recorded as yamada's, none as tanaka's
    assert {e["user"] for e in new} == {"yamada"}
    answered = {e["site"] for e in new if e["data"]["outcome"] == "answered"}
    assert answered == set(TANAKA_SITES)
    assert all(e["approval_id"] == "J-DU000101" for e in new if e["data"]["outcome"] == "answered")
    outside = [e for e in new if e["data"]["outcome"] == "refused"]
    assert [(e["site"], e["data"]["dataset"]) for e in outside] == [("nig", "JGAD000201")]


def test_every_query_is_in_the_audit_log(fed_stack, kernel):
    audit = AuditStore(fed_stack._database_url())
    events = [e for e in audit.events(user="tanaka") if e["schema"].endswith("federation-query")]
    answered = {e["site"] for e in events if e["data"]["outcome"] == "answered"}
    assert answered >= set(TANAKA_SITES)
    assert audit.verify().ok


def test_a_restarted_gateway_container_keeps_the_query_set_audit(fed_stack, tokens):
    """The history lives in the site's volume: after the gateway's container restarts, the
    second query of a singling-out pair is still refused."""
    import requests

    from extensions.federation.cohorts import open_cohort
    from hub.sites import containers as sites
    from hub.sites.engine import docker_client
    from hub.sites.plan import SitePlan

    from .test_query_audit import DATASET, SITE, groups, where

    folder = fed_stack.bundle.platform.site_data_dir(SITE) / DATASET
    sex, band, _lone, others = groups(open_cohort(folder, SITE, DATASET, "dask").samples)[0]

    def ask(w):
        return requests.post(
            f"{fed_stack.config.hub_url}/services/gateway-{SITE}/api/tasks/allele_frequencies",
            json={"dataset": DATASET, "params": {"where": w}},
            headers={"Authorization": f"token {tokens['tanaka']}"},
            timeout=300,
        )

    r = ask(where(sex, band))
    assert r.status_code == 200, r.text[:500]
    site = fed_stack.bundle.platform.sites[SITE]
    client = docker_client(site.docker_endpoint)
    try:
        gateway = client.containers.get(SitePlan.for_site(site).gateway_name)
        mounts = {m["Destination"]: m.get("Name") for m in gateway.attrs["Mounts"]}
        assert mounts[sites.QUERY_AUDIT_MOUNT] == sites.query_audit_volume(SITE)
        gateway.restart(timeout=10)
    finally:
        client.close()

    def answers():
        try:
            return requests.get(
                f"{fed_stack.config.hub_url}/services/gateway-{SITE}/health", timeout=5
            ).ok
        except requests.RequestException:
            return False

    wait_for(answers, timeout=90)
    r = ask(where(sex, band, others))
    assert r.status_code == 403 and r.json()["code"] == "query_set_audit", r.text[:500]


WORKERS_AS_THE_SCHEDULER_SEES_THEM = """
import json, os, sys
from distributed import Client

c = Client(sys.argv[1], timeout=60)
c.wait_for_workers(int(sys.argv[2]), timeout=120)
workers = c.scheduler_info()["workers"].values()
names = sys.argv[3].split(",")
# the names travel with the function (its default); the worker's own argv is not ours
blas = c.run(lambda names=names: {k: os.environ.get(k) for k in names})
print(json.dumps({
    "workers": [{k: w[k] for k in ("name", "nthreads", "memory_limit")} for w in workers],
    "blas": sorted(blas.values(), key=json.dumps),
}))
"""


def test_site_workers_are_sized_by_the_platform_file(fed_stack):
    """Each site's scheduler reports the workers its `dask:` block asks for: that many,
    each with Dask threads equal to its cores and Dask's memory limit equal to its memory;
    each worker process runs one BLAS thread per Dask thread, and its container has the
    block's CPU and memory quota (issue 17: site workers sized to the site).

    Rule checked: "Where data lives" (the site's own workers, next to its data, run the
    gateway's tasks within what the platform gives the site)."""
    from hub.sites import containers as sites
    from hub.sites.engine import docker_client
    from hub.sites.plan import SitePlan

    for site in fed_stack.bundle.platform.sites.values():
        d = site.dask
        plan = SitePlan.for_site(site)
        client = docker_client(site.docker_endpoint)
        try:
            scheduler = client.containers.get(plan.scheduler_name)
            argv = [plan.scheduler_address, str(d.workers), ",".join(sites.ONE_BLAS_THREAD)]
            rc, out = scheduler.exec_run(
                ["python", "-c", WORKERS_AS_THE_SCHEDULER_SEES_THEM, *argv]
            )
            out = out.decode(errors="replace")
            assert rc == 0, (site.id, out[-3000:])
            seen = json.loads(out.strip().splitlines()[-1])
            assert {w["name"] for w in seen["workers"]} == {
                f"{site.id}-{n}" for n in range(1, d.workers + 1)
            }, (site.id, seen)
            for w in seen["workers"]:
                # the demo gives whole cores, so threads are exactly the cores
                assert w["nthreads"] == d.threads == d.cores, (site.id, w)
                assert w["memory_limit"] == d.memory, (site.id, w)
            assert seen["blas"] == [sites.ONE_BLAS_THREAD] * d.workers, (site.id, seen)
            for w in sites.worker_plans(site):
                c = client.containers.get(w.name)
                host = c.attrs["HostConfig"]
                assert (host["NanoCpus"], host["Memory"]) == (round(d.cores * 1e9), d.memory)
                env = dict(e.split("=", 1) for e in c.attrs["Config"]["Env"])
                assert {k: env.get(k) for k in sites.ONE_BLAS_THREAD} == sites.ONE_BLAS_THREAD
        finally:
            client.close()
