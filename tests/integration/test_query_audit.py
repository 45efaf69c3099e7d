"""The query-set audit through the real hub, proxy and gateways: answers cannot be combined to
single out a person.

Rule checked: "No disclosure" across queries. Every request goes as a researcher's
would: their own token, through the hub's proxy, to the site's gateway (run by
the hub beside it here; test_federation_site restarts a gateway container).
The selections are built from the demo cohort at nig the way an attacker would:
a group of people (sex x age band) and one member whose disease nobody else in
the group has, so that "the group" and "the group without that disease" differ
by one person.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from extensions.federation.cohorts import open_cohort
from hub.demo.processes import processes_of
from hub.demo.stack import Stack, StackConfig
from hub.store.audit import AuditStore

from .conftest import platform_copy, token_of
from .guard_server import wait_for

pytestmark = pytest.mark.integration

SITE, DATASET = "nig", "JGAD000101"
MIN = 5  # the demo platform's min_cell_count
OTHER = {
    "approval_id": "J-DU009911",
    "institution": "Example University",
    "purpose": "Query-set audit tests: another approval on the same dataset",
    "handlers": ["takahashi"],
    "datasets": [DATASET],
    "period": {"start": "2024-04-01", "end": "2035-03-31"},
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    platform = platform_copy(tmp_path_factory.mktemp("audit-platform"), approvals=[OTHER])
    state = tmp_path_factory.mktemp("query-audit-stack")
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
    return {name: token_of(stack, name) for name in ("tanaka", "yamada", "takahashi")}


@pytest.fixture(scope="module")
def audit(stack):
    return AuditStore(stack._database_url())


@pytest.fixture(scope="module")
def people(stack):
    """The cohort at nig as the site holds it (the test's own view, to build attacks)."""
    folder = stack.bundle.platform.site_data_dir(SITE) / DATASET
    return open_cohort(folder, SITE, DATASET, "dask").samples


#: the groups two tests build their selections from; the others go to `plan`
CHAIN_GROUP = ("male", "60-69")
NEAR_GROUP = ("female", "60-69")


def groups(people, size: int = MIN + 1):
    """(sex, age band, the lone member's disease, the other diseases) of every group of at least
    `size` people where one member has a disease nobody else in the group has."""
    out = []
    for (sex, band), g in people.groupby(["sex", "age_band"]):
        counts = g["disease_name"].value_counts()
        lone = counts[counts == 1]
        if len(g) >= size and len(lone) and (sex, band) not in (CHAIN_GROUP, NEAR_GROUP):
            others = sorted(set(counts.index) - {lone.index[0]})
            out.append((sex, band, lone.index[0], others))
    assert len(out) >= 8, "the demo cohort has too few groups to build the attacks from"
    return out


def where(sex, band, diseases=None):
    w = {"sex": [sex], "age_band": [band]}
    if diseases is not None:
        w["disease_name"] = list(diseases)
    return w


def ask(stack, token, params, task="allele_frequencies", engine="dask", state=None):
    body = {"dataset": DATASET, "params": params, "engine": engine}
    if state is not None:
        body["state"] = state
    return requests.post(
        f"{stack.config.hub_url}/services/gateway-{SITE}/api/tasks/{task}",
        json=body,
        headers={"Authorization": f"token {token}"},
        timeout=600,
    )


def answered(r):
    assert r.status_code == 200, r.text[:2000]
    return r.json()


def refused(r, rule):
    assert r.status_code == 403, r.text[:2000]
    doc = r.json()
    assert doc["code"] == "query_set_audit" and doc["audit"]["rule"] == rule, doc
    return doc


@pytest.fixture(scope="module")
def plan(people):
    """Disjoint groups, one per test, so that no test's answers meet another's."""
    return iter(groups(people))


def test_the_pair_is_refused_at_every_engine_and_names_the_earlier_query(
    stack, tokens, plan, people, audit
):
    for engine in ("dask", "hail"):
        sex, band, lone, others = next(plan)
        first = answered(ask(stack, tokens["tanaka"], {"where": where(sex, band)}, engine=engine))
        assert first["counts"]["n_selected"] >= MIN + 1
        r = ask(stack, tokens["tanaka"], {"where": where(sex, band, others)}, engine=engine)
        doc = refused(r, "small_difference")
        [earlier] = doc["audit"]["collides_with"]
        assert earlier["task"] == "allele_frequencies" and earlier["time"]
        # the message names the rule and the earlier query, in both languages, and nobody
        assert "small_difference" in doc["message"] and earlier["time"] in doc["message"]
        assert "お答えできません" in doc["message"]
        ids = set(people.index)
        assert not any(i in r.text for i in ids), "a refusal named a person"
    # the refusal is audited with its rule and the query it collided with
    events = wait_for(
        lambda: (
            [
                e
                for e in audit.events()
                if e["schema"].endswith("federation-query")
                and e["data"].get("code") == "query_set_audit"
            ]
            or None
        ),
        timeout=30,
    )
    assert events[-1]["approval_id"] == "J-DU000101"
    assert events[-1]["data"]["audit"]["rule"] == "small_difference"
    answered_ids = {e["event_id"] for e in audit.events() if e["data"].get("outcome") == "answered"}
    assert events[-1]["data"]["audit"]["collides_with"][0]["query_id"] in answered_ids


def test_variants_where_a_near_set_differs_by_few_calls_are_withheld(stack, tokens, people):
    """Two selections differing by 5 to 19 people are both answered, but at a variant where the
    difference holds 1 to 4 missing (or called) people the second answer withholds it: so no
    released variant's difference covers 1 to 4 people, whatever the calls missing."""
    sex, band = NEAR_GROUP
    chosen = people[(people["sex"] == sex) & (people["age_band"] == band)]
    diseases = chosen["disease_name"].value_counts()
    # drop diseases until 5..19 people are left out
    left_out, kept = [], list(diseases.index)
    for d, _n in sorted(diseases.items(), key=lambda t: t[1]):
        if sum(diseases[x] for x in left_out) >= MIN:
            break
        left_out.append(d)
        kept.remove(d)
    d_size = int(sum(diseases[x] for x in left_out))
    assert MIN <= d_size < 4 * MIN and len(chosen) - d_size >= MIN
    token = tokens["takahashi"]
    a = answered(ask(stack, token, {"where": where(sex, band)}))
    w = where(sex, band, kept)
    b = answered(ask(stack, token, {"where": w}))
    called_a = np.asarray(a["arrays"]["n_called"]["data"], dtype=float)
    called_b = np.asarray(b["arrays"]["n_called"]["data"], dtype=float)
    both = ~np.isnan(called_a) & ~np.isnan(called_b)
    diff = called_a[both] - called_b[both]
    assert ((diff == 0) | (diff >= MIN)).all(), "a released difference covers 1..4 people"
    # what was withheld is what the calls of the difference say, counted independently here
    folder = stack.bundle.platform.site_data_dir(SITE) / DATASET
    cohort = open_cohort(folder, SITE, DATASET, "dask")
    out = chosen.index[chosen["disease_name"].isin(left_out)]
    rows = np.flatnonzero(np.isin(cohort.samples.index, out))
    gt = np.asarray(cohort.ds["call_genotype"].values[:, rows, :])
    missing = (gt == -1).any(axis=2).sum(axis=1)
    called = len(rows) - missing
    expected = ((missing >= 1) & (missing < MIN)) | ((called >= 1) & (called < MIN))
    assert expected.any(), "the demo data has no missing calls in the difference"
    rule = [s for s in b["suppressed"] if "query-set audit" in s["rule"]]
    assert rule and rule[0]["count"] == int(expected.sum())
    assert np.isnan(called_b[expected]).all()


def test_a_chain_of_three_that_isolates_one_person_is_refused_at_the_third(stack, tokens, people):
    # A = P + x, B = Q, C = P + Q: pairwise far apart, A + B - C = x
    sex, band = CHAIN_GROUP
    g = people[(people["sex"] == sex) & (people["age_band"] == band)]
    counts = g["disease_name"].value_counts()
    lone = list(counts[counts == 1].index)
    p_side, q_side, n_p, n_q = [], [], 0, 0
    for d, n in counts[counts > 1].items():
        if n_p <= n_q:
            p_side.append(d)
            n_p += n
        else:
            q_side.append(d)
            n_q += n
    assert lone and n_p >= MIN + 1 and n_q >= MIN + 1, "no chain in the demo cohort"
    a = {"where": where(sex, band, p_side + [lone[0]])}
    b = {"where": where(sex, band, q_side)}
    c = {"where": where(sex, band, p_side + q_side)}
    answered(ask(stack, tokens["tanaka"], a))
    answered(ask(stack, tokens["tanaka"], b))
    doc = refused(ask(stack, tokens["tanaka"], c), "isolating_combination")
    assert len(doc["audit"]["collides_with"]) == 2


def test_subsets_and_supersets_close_to_an_answered_set_are_refused_both_ways(stack, tokens, plan):
    sex, band, lone, others = next(plan)
    answered(ask(stack, tokens["tanaka"], {"where": where(sex, band)}))
    refused(ask(stack, tokens["tanaka"], {"where": where(sex, band, others)}), "small_difference")
    sex, band, lone, others = next(plan)
    answered(ask(stack, tokens["tanaka"], {"where": where(sex, band, others)}))
    refused(ask(stack, tokens["tanaka"], {"where": where(sex, band)}), "small_difference")


def test_a_second_handler_cannot_finish_what_the_first_began_but_another_approval_can_ask(
    stack, tokens, plan
):
    sex, band, lone, others = next(plan)
    answered(ask(stack, tokens["tanaka"], {"where": where(sex, band)}))
    # yamada holds the same approval: the history is the approval's
    refused(ask(stack, tokens["yamada"], {"where": where(sex, band, others)}), "small_difference")
    # takahashi's approval has its own history: the same query is answered there
    answered(ask(stack, tokens["takahashi"], {"where": where(sex, band, others)}))


def test_regressions_are_audited_on_their_complete_cases(stack, tokens, plan):
    sex, band, lone, others = next(plan)
    model = {"phenotype": "quant_trait", "covariates": []}
    answered(ask(stack, tokens["takahashi"], {**model, "where": where(sex, band)}, "gwas_linear"))
    r = ask(stack, tokens["takahashi"], {**model, "where": where(sex, band, others)}, "gwas_linear")
    refused(r, "small_difference")


def test_stratified_queries_and_repeats_are_answered(stack, tokens):
    for by in ("sex", "age_band", "region", None):
        answered(ask(stack, tokens["takahashi"], {"stratify_by": by}))
    # an identical repeat tells nothing new
    answered(ask(stack, tokens["takahashi"], {"stratify_by": "sex"}))
    answered(ask(stack, tokens["takahashi"], {"stratify_by": "sex"}, engine="hail"))


def test_the_catalogue_counts_are_audited_with_the_persons_approval(stack, tokens, plan, people):
    """The catalogue's counts go into the history of tanaka's approval: the group's count there,
    then the group without the lone member's disease code, is withheld at nig with the reason."""
    sex, band, lone, others = next(plan)
    g = people[(people["sex"] == sex) & (people["age_band"] == band)]
    codes = sorted(set(g.loc[g["disease_name"].isin(others), "icd10"]))
    assert set(g.loc[g["disease_name"] == lone, "icd10"]).isdisjoint(codes)

    def counts(**filters):
        r = requests.get(
            f"{stack.config.hub_url}/services/catalogue/api/counts",
            params={"sex": sex, "age_band": band, **filters},
            headers={"Authorization": f"token {tokens['tanaka']}"},
            timeout=300,
        )
        assert r.status_code == 200, r.text[:500]
        [nig] = [s for s in r.json()["sites"] if s["site"] == SITE]
        return nig

    assert counts()["status"] == "answered"
    assert counts(by="region")["status"] == "answered"  # the same people, another table
    nig = counts(icd10=codes)
    assert nig["status"] == "withheld" and "small_difference" in nig["message"], nig
    # the same selection asked directly by his co-handler is refused too
    refused(ask(stack, tokens["yamada"], {"where": where(sex, band, others)}), "small_difference")


def gateway_pids(stack) -> list[int]:
    """The gateway of nig: the Python process the hub started (not Hail's JVM, its child)."""
    out = []
    for pid, env in processes_of(stack.state_dir).items():
        if env.get("JUPYTERHUB_SERVICE_NAME") != f"gateway-{SITE}":
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"extensions.federation.gateway" in cmdline:
            out.append(pid)
    return out


def test_a_restarted_gateway_keeps_the_history(stack, tokens, plan):
    sex, band, lone, others = next(plan)
    answered(ask(stack, tokens["tanaka"], {"where": where(sex, band)}))
    (pid,) = gateway_pids(stack)
    os.kill(pid, signal.SIGKILL)
    time.sleep(1)
    wait_for(
        lambda: (
            gateway_pids(stack) not in ([], [pid])
            and ok(f"{stack.config.hub_url}/services/gateway-{SITE}/health")
        ),
        timeout=90,
    )
    refused(ask(stack, tokens["tanaka"], {"where": where(sex, band, others)}), "small_difference")
