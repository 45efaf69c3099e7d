"""The catalogue service through the real hub, proxy and the sites' gateways.

Rules checked: "No disclosure" (every count comes from a site's gateway under
its disclosure control: a selection under the minimum is withheld per site, a
small cell is withheld in the table), "Who may use" (anyone with an approval
active now, also for datasets outside it; nobody else; the catalogue's own
token may ask the gateways for counts of people and nothing else),
"Reporting" (each request is a catalogue-query event; each site query a
federation-query event naming the catalogue and the person).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
import requests

from extensions.contracts.clock import FileClock
from hub.demo.stack import Stack, StackConfig
from hub.sites.containers import service_token
from hub.store.audit import AuditStore

from .conftest import hub_login, token_of
from .guard_server import wait_for

pytestmark = pytest.mark.integration

SITES = ["imsut", "ncc", "ncgm", "nig", "tommo"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    state = tmp_path_factory.mktemp("catalogue-stack")
    clock = state / "now"
    clock.write_text("")
    s = Stack(StackConfig.ephemeral(state, clock_file=clock))
    s.ensure_data()
    s.start()
    for site in SITES:
        wait_for(
            lambda site=site: ok(f"{s.config.hub_url}/services/gateway-{site}/health"), timeout=60
        )
    wait_for(
        lambda: (
            requests.get(
                f"{s.config.hub_url}/services/catalogue/api/datasets", timeout=5
            ).status_code
            == 401
        ),
        timeout=60,
    )
    yield s
    s.stop()


def ok(url):
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def tokens(stack):
    """tanaka's token, and sato's: made while his approval was active (the hub's clock moved
    back to 2020), used now that it has ended."""
    clock = FileClock(stack.config.clock_file)
    clock.set(datetime(2020, 6, 1, 3, 0, tzinfo=UTC))
    try:
        sato = token_of(stack, "sato")
    finally:
        stack.config.clock_file.write_text("")
    return {"tanaka": token_of(stack, "tanaka"), "sato": sato}


def api(stack, token, path, **params):
    return requests.get(
        f"{stack.config.hub_url}/services/catalogue/api/{path}",
        params=params,
        headers={"Authorization": f"token {token}"},
        timeout=300,
    )


def clinical(stack) -> dict[str, pd.DataFrame]:
    platform = stack.bundle.platform
    out = {}
    for site in SITES:
        ds = next(d for d in platform.sites[site].datasets if d.kind == "analysis")
        out[site] = pd.read_csv(platform.site_data_dir(site) / ds.id / "clinical.tsv", sep="\t")
    return out


def test_datasets_with_metadata_approval_and_people(stack, tokens):
    r = api(stack, tokens["tanaka"], "datasets")
    assert r.status_code == 200, r.text
    rows = {d["dataset"]: d for d in r.json()["datasets"]}
    platform = stack.bundle.platform
    assert set(rows) == set(platform.datasets)
    approved = set(stack.bundle.approvals["J-DU000101"].datasets)
    tables = clinical(stack)
    for ds_id, d in rows.items():
        assert d["approved"] == (ds_id in approved), ds_id
        assert d["site"] == platform.datasets[ds_id].site
        # JGA-style fields from catalogue.yaml
        assert d["study"].startswith("JGAS") and d["policy"].startswith("JGAP")
        assert d["nbdc_research_id"].startswith("hum") and d["release_date"]
        if d["kind"] == "analysis":
            assert d["people"] == len(tables[d["site"]])
        else:
            assert d["people"] is None


def test_counts_pooled_and_per_site_equal_the_clinical_tables(stack, tokens):
    r = api(stack, tokens["tanaka"], "counts", icd10="E11", by="sex")
    assert r.status_code == 200, r.text
    doc = r.json()
    tables = clinical(stack)
    minimum = stack.bundle.platform.disclosure.min_cell_count
    want = {s: int((t["icd10"] == "E11").sum()) for s, t in tables.items()}
    got = {s["site"]: s for s in doc["sites"]}
    for site, n in want.items():
        if n >= minimum:
            assert got[site]["status"] == "answered" and got[site]["n"] == n, site
        else:
            assert got[site]["status"] == "withheld" and got[site]["n"] is None, site
    assert doc["total"]["n"] == sum(n for n in want.values() if n >= minimum)
    # the table by sex: each released cell is the true count, none under the minimum
    for row in doc["table"]:
        for site in SITES:
            v = row.get(f"count_{site}")
            if v is None:
                continue
            t = tables[site]
            assert v == int(((t["icd10"] == "E11") & (t["sex"] == row["value"])).sum())
            assert v == 0 or v >= minimum


def test_a_narrow_selection_is_withheld_site_by_site(stack, tokens):
    tables = clinical(stack)
    minimum = stack.bundle.platform.disclosure.min_cell_count
    where = {"age_band": "30-39", "icd10": "E11"}
    r = api(stack, tokens["tanaka"], "counts", **where)
    assert r.status_code == 200, r.text
    doc = r.json()
    want = {
        s: int(((t["age_band"] == "30-39") & (t["icd10"] == "E11")).sum())
        for s, t in tables.items()
    }
    withheld = sorted(s for s, n in want.items() if n < minimum)
    # the demo's cohorts make this selection small at some sites, not at all
    assert withheld and len(withheld) < len(SITES), want
    assert doc["total"]["withheld_sites"] == withheld
    assert doc["total"]["complete"] is False
    assert doc["total"]["n"] == sum(n for n in want.values() if n >= minimum)


def test_small_cells_in_a_table_are_withheld_and_reported(stack, tokens):
    r = api(stack, tokens["tanaka"], "counts", by="disease_name")
    assert r.status_code == 200, r.text
    doc = r.json()
    minimum = stack.bundle.platform.disclosure.min_cell_count
    released = [row[f"count_{s}"] for row in doc["table"] for s in SITES]
    assert None in released  # some disease is rare at some site
    assert all(v is None or v == 0 or v >= minimum for v in released)
    assert doc["suppressions"] and all(
        s["rule"].startswith("min_cell_count") for s in doc["suppressions"]
    )


def test_refused_without_an_active_approval(stack, tokens):
    r = api(stack, tokens["sato"], "counts")
    assert r.status_code == 403, r.text
    r = api(stack, tokens["sato"], "datasets")
    assert r.status_code == 403
    r = requests.get(f"{stack.config.hub_url}/services/catalogue/api/counts", timeout=30)
    assert r.status_code == 401


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"sex": "unknown"}, "sex"),
        ({"age_band": "forties"}, "age_band"),
        ({"region": "Atlantis"}, "region"),
        ({"icd10": "diabetes"}, "icd10"),
        ({"by": "income"}, "by"),
        ({"name": "tanaka"}, "name"),
    ],
)
def test_bad_filters_are_refused_naming_the_field(stack, tokens, params, field):
    audit = AuditStore(stack._database_url())
    before = audit.count()
    r = api(stack, tokens["tanaka"], "counts", **params)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field and r.json()["message"]
    assert audit.count() == before  # nothing asked of the sites, nothing recorded


def test_queries_are_audited_with_the_person(stack, tokens):
    audit = AuditStore(stack._database_url())
    r = api(stack, tokens["tanaka"], "counts", region="Kanto", by="age_band")
    assert r.status_code == 200, r.text

    def recorded():
        mine = [
            e
            for e in audit.events(user="tanaka")
            if e["schema"].endswith("catalogue-query")
            and e["data"]["filters"] == {"region": ["Kanto"]}
        ]
        site = [
            e
            for e in audit.events(user="catalogue")
            if e["schema"].endswith("federation-query")
            and e["data"].get("on_behalf_of") == "tanaka"
            and e["data"].get("parameters", {}).get("where") == {"region": ["Kanto"]}
        ]
        return (mine, site) if mine and len(site) >= len(SITES) else None

    mine, site = wait_for(recorded, timeout=60)
    assert sorted(mine[-1]["data"]["answered"]) == SITES
    assert {e["site"] for e in site} == set(SITES)
    assert all(e["data"]["via"] == "catalogue" for e in site)


def test_the_catalogue_token_may_count_people_and_nothing_else(stack):
    token = service_token(stack.state_dir, "catalogue")
    url = f"{stack.config.hub_url}/services/gateway-nig/api/tasks"
    body = {"dataset": "JGAD000101", "params": {}}
    headers = {"Authorization": f"token {token}"}
    # counts only for a person it names: the person's query-set audit takes them
    r = requests.post(f"{url}/cohort_counts", json=body, headers=headers, timeout=120)
    assert r.status_code == 400 and "X-Visiting-On-Behalf-Of" in r.json()["message"], r.text
    headers["X-Visiting-On-Behalf-Of"] = "tanaka"
    r = requests.post(f"{url}/cohort_counts", json=body, headers=headers, timeout=120)
    assert r.status_code == 200, r.text
    for task in ("allele_frequencies", "gwas_linear", "gwas_logistic"):
        r = requests.post(f"{url}/{task}", json=body, headers=headers, timeout=120)
        assert r.status_code == 403, r.text
        assert "may ask only for cohort_counts" in r.json()["message"]


def test_the_page_and_the_guide_in_a_browser_session(stack):
    session, r = hub_login(stack.config.hub_url, "tanaka", "tanaka-demo")
    assert r.status_code == 200
    page = session.get(f"{stack.config.hub_url}/services/catalogue/", timeout=300)
    assert page.status_code == 200, page.text[:500]
    assert "データセットカタログ / Dataset catalogue" in page.text
    assert 'data-dataset="JGAD000501"' in page.text and 'id="site-counts"' in page.text
    bad = session.get(f"{stack.config.hub_url}/services/catalogue/?sex=unknown", timeout=300)
    assert bad.status_code == 400
    assert 'data-field="sex"' in bad.text
    guide = session.get(f"{stack.config.hub_url}/services/catalogue/guide/", timeout=60)
    assert guide.status_code == 200 and "guide" in guide.text.lower()
    page = session.get(
        f"{stack.config.hub_url}/services/catalogue/guide/what-the-guard-blocks", timeout=60
    )
    assert page.status_code == 200 and "ダウンロードを禁止しました" in page.text
    missing = session.get(f"{stack.config.hub_url}/services/catalogue/guide/nope", timeout=60)
    assert missing.status_code == 404
