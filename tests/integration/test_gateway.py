"""Federation gateways through the real hub and proxy: who may ask, what comes back, the audit.

Rules checked: "Where data lives" (only aggregates leave a site), "Who may
use" (an active approval covering the dataset at that site, checked by the
gateway itself), "No disclosure" (small counts withheld and reported),
"Reporting" (every query and refusal is a federation-query event).
"""

from __future__ import annotations

import numpy as np
import pytest
import requests
import zarr

from extensions.contracts.clock import FileClock
from extensions.federation.client import FederationError, connect
from hub.demo.stack import Stack, StackConfig
from hub.store.audit import AuditStore

from .conftest import token_of
from .guard_server import wait_for

pytestmark = pytest.mark.integration

TANAKA_SITES = ["ncc", "ncgm", "nig", "tommo"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    state = tmp_path_factory.mktemp("gateway-stack")
    clock = state / "now"
    clock.write_text("")
    s = Stack(StackConfig.ephemeral(state, clock_file=clock))
    s.ensure_data()
    s.start()
    for site in s.bundle.platform.sites:
        wait_for(
            lambda site=site: http_ok(f"{s.config.hub_url}/services/gateway-{site}/health"),
            timeout=60,
        )
    yield s
    s.stop()


def http_ok(url):
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def audit(stack):
    return AuditStore(stack._database_url())


@pytest.fixture(scope="module")
def tanaka_token(stack):
    return token_of(stack, "tanaka")


@pytest.fixture(scope="module")
def fed(stack, tanaka_token):
    return connect(hub_url=stack.config.hub_url, token=tanaka_token)


def test_every_site_has_a_gateway_behind_the_proxy(stack):
    for site in stack.bundle.platform.sites:
        assert http_ok(f"{stack.config.hub_url}/services/gateway-{site}/health"), site


def test_connect_finds_the_sites_of_his_approvals(fed):
    assert fed.sites == TANAKA_SITES
    assert all(d["approval_id"] == "J-DU000101" for g in fed.gateways.values() for d in g.datasets)


def _pooled_counts(stack, sites):
    """AC and AN per variant over the sites' Zarr stores, computed here from the genotypes."""
    ac = an = None
    for site in sites:
        ds = next(d for d in stack.bundle.platform.sites[site].datasets if d.kind == "analysis")
        z = zarr.open(str(stack.bundle.platform.site_data_dir(site) / ds.id / "genotypes.vcf.zarr"))
        gt = np.asarray(z["call_genotype"])
        called = gt >= 0
        site_ac = (gt * called).sum(axis=(1, 2))
        site_an = called.sum(axis=(1, 2))
        ac = site_ac if ac is None else ac + site_ac
        an = site_an if an is None else an + site_an
    return ac, an


def test_pooled_allele_frequencies_equal_the_pooled_genotypes(stack, fed, audit):
    before = audit.count()
    af = fed.allele_frequencies()
    ac, an = _pooled_counts(stack, TANAKA_SITES)
    pooled_ac = np.asarray(af["AC"])
    released = ~np.isnan(pooled_ac)
    assert released.sum() > 0.5 * len(pooled_ac)  # most variants pass the minor-allele-count rule
    assert np.array_equal(pooled_ac[released], ac[released])
    assert np.array_equal(np.asarray(af["AN"])[released], an[released])
    # what was withheld is reported, per site and rule
    assert "min_minor_allele_count" in af.attrs["suppressions"]
    assert sorted(eval_json(af.attrs["sites"])) == TANAKA_SITES
    # one answered query per site in the audit store, with its size
    events = [e for e in audit.events(user="tanaka") if e["schema"].endswith("federation-query")]
    answered = [e for e in events[-4:] if e["data"]["outcome"] == "answered"]
    assert {e["site"] for e in answered} == set(TANAKA_SITES)
    assert all(e["actor"] == f"gateway-{e['site']}" for e in answered)
    assert all(e["data"]["result_bytes"] > 0 for e in answered)
    assert audit.count() >= before + 4
    assert audit.verify().ok


def eval_json(text):
    import json

    return json.loads(text)


def _ask(stack, site, token, task="allele_frequencies", body=None):
    headers = {"Authorization": f"token {token}"} if token else {}
    return requests.post(
        f"{stack.config.hub_url}/services/gateway-{site}/api/tasks/{task}",
        json=body if body is not None else {"dataset": "JGAD000101", "params": {}},
        headers=headers,
        timeout=120,
    )


def test_a_person_without_an_approval_is_refused_and_audited(stack, audit):
    token = token_of(stack, "jimu")  # the secretariat: logs in, holds no data approval
    r = _ask(stack, "nig", token)
    assert r.status_code == 403 and "no approval active now" in r.json()["message"]
    ev = wait_for(
        lambda: [
            e
            for e in audit.events(user="jimu")
            if e["schema"].endswith("federation-query") and e["data"]["outcome"] == "refused"
        ]
    )[-1]
    assert ev["data"]["status"] == 403 and ev["site"] == "nig"


def test_an_ended_approval_is_refused_even_with_a_token_from_before(stack):
    clock = FileClock(stack.config.clock_file)
    from datetime import UTC, datetime

    clock.set(datetime(2020, 6, 1, 3, 0, tzinfo=UTC))
    try:
        token = token_of(stack, "sato")  # admitted then: the approval ran until 2021-03-31
    finally:
        stack.config.clock_file.write_text("")
    r = _ask(stack, "nig", token)
    assert r.status_code == 403, r.text
    assert "sato holds no approval active now" in r.json()["message"]


REFUSALS = [
    ("no-token", None, "allele_frequencies", {"dataset": "JGAD000101"}, 401, "token"),
    ("task-not-allowed", "tanaka", "dump_genotypes", {"dataset": "JGAD000101"}, 403, "not allowed"),
    (
        "dataset-of-another-site",
        "tanaka",
        "allele_frequencies",
        {"dataset": "JGAD000201"},
        403,
        "no approval",
    ),
    ("raw-dataset", "tanaka", "allele_frequencies", {"dataset": "JGAD000102"}, 400, "JGAD000102"),
    ("no-dataset", "tanaka", "allele_frequencies", {}, 400, "dataset"),
    (
        "params-not-an-object",
        "tanaka",
        "allele_frequencies",
        {"dataset": "JGAD000101", "params": [1]},
        400,
        "params",
    ),
    (
        "bad-stratum",
        "tanaka",
        "allele_frequencies",
        {"dataset": "JGAD000101", "params": {"stratify_by": "income"}},
        400,
        "stratify_by",
    ),
    (
        "bad-engine",
        "tanaka",
        "allele_frequencies",
        {"dataset": "JGAD000101", "engine": "spark"},
        400,
        "engine",
    ),
]


@pytest.mark.parametrize(
    "who,task,body,status,words", [c[1:] for c in REFUSALS], ids=[c[0] for c in REFUSALS]
)
def test_the_gateway_refuses_with_a_clear_message(
    stack, tanaka_token, who, task, body, status, words
):
    token = tanaka_token if who == "tanaka" else None
    r = _ask(stack, "nig", token, task, body)
    assert r.status_code == status, r.text
    assert words in r.json()["message"], r.text


def test_a_site_that_is_down_is_named_unless_partial(stack, fed):
    fed.gateways["ncc"].url = "http://127.0.0.1:9/services/gateway-ncc/"  # nothing listens
    try:
        with pytest.raises(FederationError, match="site ncc did not answer"):
            fed.allele_frequencies()
        af = fed.allele_frequencies(partial=True)
        assert "ncc" in af.attrs["missing_sites"]
        assert sorted(eval_json(af.attrs["sites"])) == ["ncgm", "nig", "tommo"]
    finally:
        fed.discover()


def test_a_linear_gwas_over_his_sites(fed):
    gwas = fed.gwas_linear(covariates=["sex", "age_band"])
    assert {"beta", "standard_error", "p_value"} <= set(gwas.columns)
    released = gwas["beta"].notna()
    assert released.sum() > 0, "every variant withheld"
    assert ((gwas.loc[released, "p_value"] >= 0) & (gwas.loc[released, "p_value"] <= 1)).all()
    assert sorted(eval_json(gwas.attrs["sites"])) == TANAKA_SITES
