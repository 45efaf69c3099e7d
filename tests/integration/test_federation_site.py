"""Federated analysis from a researcher's container, through the real proxy and site gateways.

Rules checked: "Where data lives" (tanaka at nig gets pooled answers over his
approved sites; what reaches him are aggregates from each site's gateway,
which runs on that site's network next to its data and Dask cluster).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from hub.audit import AuditStore
from hub.stack import Stack, StackConfig

from .test_gateway import _pooled_counts as pooled_counts
from .test_sites import Researcher, container_of, engine, sh  # noqa: F401  (engine: a fixture)

pytestmark = pytest.mark.integration

TANAKA_SITES = ["ncc", "ncgm", "nig", "tommo"]


@pytest.fixture(scope="module")
def fed_stack(tmp_path_factory):
    state = tmp_path_factory.mktemp("federation-stack")
    s = Stack(StackConfig.ephemeral(state, sites=True))
    s.ensure_data()
    s.start_sites()
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def tanaka_at_nig(fed_stack, engine):  # noqa: F811
    t = Researcher(fed_stack, "tanaka")
    r = t.start("nig")
    assert r.status_code in (201, 202), r.text
    t.wait_ready("nig")
    yield container_of(engine, "tanaka", "nig")
    t.stop("nig")


CALL = """
import json
from extensions.analysis import connect
fed = connect()
af = fed.allele_frequencies()
print(json.dumps({
    "sites": fed.sites,
    "AC": [None if x != x else int(x) for x in af["AC"].values.tolist()],
    "AN": [None if x != x else int(x) for x in af["AN"].values.tolist()],
    "attrs": {k: str(v) for k, v in af.attrs.items()},
}))
"""


def test_pooled_allele_frequencies_from_his_container(fed_stack, tanaka_at_nig):
    code, out = sh(tanaka_at_nig, f"python3 -c '{CALL}'", user="1000")
    assert code == 0, out[-3000:]
    doc = json.loads(out.strip().splitlines()[-1])
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


def test_every_query_is_in_the_audit_log(fed_stack, tanaka_at_nig):
    audit = AuditStore(fed_stack._database_url())
    events = [e for e in audit.events(user="tanaka") if e["schema"].endswith("federation-query")]
    answered = {e["site"] for e in events if e["data"]["outcome"] == "answered"}
    assert answered >= set(TANAKA_SITES)
    assert audit.verify().ok
