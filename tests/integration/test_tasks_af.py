"""Federated allele frequencies against Hail, PLINK 2 and bcftools on the pooled cohort.

Three synthetic sites (150 people, 400 variants each; tests/integration/
cohort_fixtures.py) run their halves on the real engines: Dask over the VCF
Zarr and Hail over the MatrixTable. With every disclosure threshold at 0
(nothing withheld, so the comparison is of the whole cohort) the federated
AC, AN and n_called are identical to Hail `variant_qc` on the pooled
MatrixTable (the sites' MatrixTables joined by columns), to `plink2 --freq
counts` and to `bcftools +fill-tags` on the pooled VCF, and AF = AC/AN is
bit-identical to Hail's; PLINK 2 prints AF to 6 significant digits, so
against `.afreq` the agreement is that printing precision. The two engines
give identical per-site halves, with and without disclosure control.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from extensions.federation.cohorts import PREFECTURE_REGION
from extensions.federation.tasks.allele_frequencies import AlleleFrequencies
from extensions.federation.tasks.base import ENGINES, DisclosureRules, SiteHalf, TaskError
from extensions.federation.tasks.cohort_counts import CohortCounts
from tests.integration.cohort_fixtures import pooled_cohort_fixture, run  # noqa: F401

pytestmark = pytest.mark.integration

EXACT = DisclosureRules(min_cell_count=0, min_minor_allele_count=0)
DEFAULT = DisclosureRules()  # 5 and 5, the demo platform's


def federate(pooled, task, params, engine, rules=EXACT):
    params = task.validate(params)
    halves = []
    for site in pooled.sites:
        half = task.site_half(pooled.cohort(site, engine), params, None)
        half = task.disclose(half, rules)
        halves.append(SiteHalf.from_json(json.loads(json.dumps(half.to_json()))))
    return task.combine(halves, params, None).result, halves


def hail_key(hl, t):
    return hl.delimit([t.locus.contig, hl.str(t.locus.position), t.alleles[0], t.alleles[1]], ":")


def max_abs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, float) - np.asarray(b, float))))


@pytest.fixture(scope="module")
def hail_qc(pooled_cohort):
    """Hail variant_qc on the pooled MatrixTable: key -> AC, AN, AF, n_called."""
    from extensions.federation.hail_session import ensure_hail

    hl = ensure_hail()
    mt = hl.variant_qc(pooled_cohort.pooled_matrix_table())
    rows = mt.rows()
    rows = rows.select(
        key=hail_key(hl, rows),
        AC=rows.variant_qc.AC[1],
        AN=rows.variant_qc.AN,
        AF=rows.variant_qc.AF[1],
        n_called=rows.variant_qc.n_called,
    )
    df = rows.to_pandas().set_index("key")
    assert mt.count_cols() == 3 * 150
    return df


@pytest.mark.parametrize("engine", ["dask", "hail"])
def test_federated_equals_hail_variant_qc(pooled_cohort, hail_qc, engine):
    ds, halves = federate(pooled_cohort, AlleleFrequencies(), {}, engine)
    ref = hail_qc.loc[list(ds.variant.values)]
    assert len(ref) == ds.sizes["variant"] == 400
    figures = {
        "AC": max_abs(ds.AC, ref.AC),
        "AN": max_abs(ds.AN, ref.AN),
        "n_called": max_abs(ds.n_called, ref.n_called),
        "AF": max_abs(ds.AF, ref.AF),
    }
    print(f"\n[{engine}] federated vs Hail variant_qc, max |diff|: {figures}")
    assert figures == {"AC": 0.0, "AN": 0.0, "n_called": 0.0, "AF": 0.0}
    assert np.array_equal(ds.AF.values, ref.AF.to_numpy())  # bit for bit
    assert all(not h.suppressed for h in halves)


@pytest.mark.parametrize("engine", ["dask", "hail"])
def test_federated_equals_plink2_freq(pooled_cohort, engine):
    ds, _ = federate(pooled_cohort, AlleleFrequencies(), {}, engine)
    counts = pooled_cohort.plink2("--freq", "counts", out="freq")
    acount = pd.read_csv(f"{counts}.acount", sep="\t").set_index("ID")
    afreq = pd.read_csv(f"{pooled_cohort.plink2('--freq', out='freq')}.afreq", sep="\t").set_index(
        "ID"
    )
    keys = list(ds.variant.values)
    acount, afreq = acount.loc[keys], afreq.loc[keys]
    ac_diff = max_abs(ds.AC, acount.ALT_CTS)
    an_diff = max_abs(ds.AN, acount.OBS_CT)
    af_counts = max_abs(ds.AF, acount.ALT_CTS / acount.OBS_CT)
    rel = np.abs(ds.AF.values - afreq.ALT_FREQS.to_numpy()) / ds.AF.values
    print(
        f"\n[{engine}] federated vs plink2 --freq: max |AC diff| {ac_diff}, max |AN diff| "
        f"{an_diff}, AF vs ALT_CTS/OBS_CT {af_counts}; vs .afreq (6 significant digits) "
        f"max |diff| {max_abs(ds.AF, afreq.ALT_FREQS):.2e}, max relative {rel.max():.2e}"
    )
    assert ac_diff == an_diff == af_counts == 0.0
    assert rel.max() <= 5e-6  # half a unit in the 6th significant digit


def test_federated_equals_bcftools_fill_tags(pooled_cohort):
    ds, _ = federate(pooled_cohort, AlleleFrequencies(), {}, "dask")
    filled = run([
        "bash", "-c",
        f"bcftools +fill-tags {pooled_cohort.pooled_vcf} -- -t AC,AN | "
        "bcftools query -f '%ID\\t%INFO/AC\\t%INFO/AN\\n'",
    ])  # fmt: skip
    rows = [line.split("\t") for line in filled.stdout.splitlines()]
    ref = pd.DataFrame(rows, columns=["ID", "AC", "AN"]).set_index("ID").astype(int)
    ref = ref.loc[list(ds.variant.values)]
    assert max_abs(ds.AC, ref.AC) == max_abs(ds.AN, ref.AN) == 0.0


@pytest.mark.parametrize("by", ["sex", "age_band", "region"])
def test_strata_equal_hail_group_by_on_the_pooled_table(pooled_cohort, by):
    from extensions.federation.hail_session import ensure_hail

    hl = ensure_hail()
    ds, _ = federate(pooled_cohort, AlleleFrequencies(), {"stratify_by": by}, "hail")
    mt = pooled_cohort.pooled_matrix_table()
    if by == "region":
        mt = mt.annotate_cols(region=hl.literal(PREFECTURE_REGION)[mt.prefecture])
    rows = mt.annotate_rows(by=hl.agg.group_by(mt[by], hl.agg.call_stats(mt.GT, mt.alleles))).rows()
    rows = rows.select(key=hail_key(hl, rows), by=rows.by)
    ref = {r.key: r.by for r in rows.collect()}
    labels = list(ds.stratum.values)
    keys = list(ds.variant.values)
    want_ac = np.array([[ref[k][s].AC[1] if s in ref[k] else 0 for s in labels] for k in keys])
    want_an = np.array([[ref[k][s].AN if s in ref[k] else 0 for s in labels] for k in keys])
    assert max_abs(ds.AC, want_ac) == 0.0 and max_abs(ds.AN, want_an) == 0.0
    people = mt.aggregate_cols(hl.agg.counter(mt[by]))
    assert dict(zip(labels, ds.n_people.sum("site").values.tolist(), strict=True)) == people


def test_where_equals_hail_on_the_filtered_pooled_table(pooled_cohort):
    from extensions.federation.hail_session import ensure_hail

    hl = ensure_hail()
    where = {"sex": "female", "age_band": ["50-59", "60-69", "70-79"]}
    ds, _ = federate(pooled_cohort, AlleleFrequencies(), {"where": where}, "dask")
    mt = pooled_cohort.pooled_matrix_table()
    mt = mt.filter_cols(
        (mt.sex == "female") & hl.literal(set(where["age_band"])).contains(mt.age_band)
    )
    mt = hl.variant_qc(mt)
    rows = mt.rows()
    ref = rows.select(key=hail_key(hl, rows), AC=rows.variant_qc.AC[1], AN=rows.variant_qc.AN)
    ref = ref.to_pandas().set_index("key").loc[list(ds.variant.values)]
    assert max_abs(ds.AC, ref.AC) == max_abs(ds.AN, ref.AN) == 0.0
    assert ds.n_selected.sum().item() == mt.count_cols()


PARAMS = [
    {},
    {"stratify_by": "sex"},
    {"stratify_by": "age_band", "where": {"region": ["Kanto", "Chubu", "Tohoku"]}},
    {"stratify_by": "region"},
    {"variants": "chr21:10000000-40000000"},
    {"where": {"disease_name": "Type 2 diabetes mellitus"}},
]


@pytest.mark.parametrize("params", PARAMS, ids=lambda p: json.dumps(p) or "all")
def test_dask_and_hail_halves_are_identical(pooled_cohort, params):
    """Identical before disclosure (thresholds 0) and after it (the default thresholds of 5)."""
    task = AlleleFrequencies()
    params = task.validate(params)
    for site in pooled_cohort.sites:
        raw = {e: task.site_half(pooled_cohort.cohort(site, e), params, None) for e in ENGINES}
        for rules in (EXACT, DEFAULT):
            dask_half, hail_half = (task.disclose(raw[e], rules) for e in ENGINES)
            assert dask_half.variants == hail_half.variants, site
            assert dask_half.counts == hail_half.counts
            # the same meta but where each read its counts: a query of some people counts
            # the packed calls on Dask, the MatrixTable on Hail
            sources = dask_half.meta.pop("source"), hail_half.meta.pop("source")
            assert dask_half.meta == hail_half.meta
            want = ("packed", "genotypes") if params.get("where") else ("summary", "summary")
            assert sources == want, (site, params)
            assert [s.to_json() for s in dask_half.suppressed] == [
                s.to_json() for s in hail_half.suppressed
            ]
            assert dask_half.arrays.keys() == hail_half.arrays.keys()
            for k, a in dask_half.arrays.items():
                b = hail_half.arrays[k]
                assert a.dtype == b.dtype and a.shape == b.shape, (site, k)
                assert np.array_equal(a, b, equal_nan=True), (site, k, rules)


def test_cohorts_agree_on_people_and_variants(pooled_cohort):
    for site in pooled_cohort.sites:
        z, h = pooled_cohort.cohort(site, "dask"), pooled_cohort.cohort(site, "hail")
        assert z.variant_keys() == h.variant_keys()
        pd.testing.assert_frame_equal(z.samples, h.samples)
        # the MatrixTable's own column fields say the same as the TSVs
        mt = h.matrix_table()
        cols = mt.cols().to_pandas().set_index("s")
        assert (cols.loc[h.samples.index, "sex"].to_numpy() == h.samples.sex.to_numpy()).all()


def test_default_rules_withhold_where_a_site_is_rare_and_report_it(pooled_cohort):
    from extensions.federation.hail_session import ensure_hail

    hl = ensure_hail()
    ds, halves = federate(pooled_cohort, AlleleFrequencies(), {}, "hail", rules=DEFAULT)
    rare_anywhere = np.zeros(ds.sizes["variant"], bool)
    for k, site in enumerate(pooled_cohort.sites):
        qc = hl.variant_qc(pooled_cohort.cohort(site, "hail").matrix_table()).rows()
        qc = qc.select(key=hail_key(hl, qc), mac=hl.min(qc.variant_qc.AC))
        mac = qc.to_pandas().set_index("key").loc[list(ds.variant.values), "mac"].to_numpy()
        rare = mac < DEFAULT.min_minor_allele_count
        assert np.array_equal(ds.withheld.values[:, k], rare), site
        assert sum(s.count for s in halves[k].suppressed if s.what == "variant") == rare.sum()
        rare_anywhere |= rare
    assert np.array_equal(np.isnan(ds.AC.values), rare_anywhere)
    assert ds.attrs["n_withheld_pooled"] == rare_anywhere.sum() > 0
    exact, _ = federate(pooled_cohort, AlleleFrequencies(), {}, "hail")
    assert np.array_equal(ds.AC.values[~rare_anywhere], exact.AC.values[~rare_anywhere])


def test_too_few_people_is_refused_on_both_engines(pooled_cohort):
    task = AlleleFrequencies()
    params = task.validate({"where": {"prefecture": "Okinawa", "sex": "male"}})
    for engine in ("dask", "hail"):
        half = task.site_half(pooled_cohort.cohort("nig", engine), params, None)
        with pytest.raises(TaskError) as e:
            task.disclose(half, DEFAULT)
        assert "min_people=5" in e.value.message


def test_cohort_counts_same_on_both_engines(pooled_cohort):
    task = CohortCounts()
    results = {e: federate(pooled_cohort, task, {}, e, rules=DEFAULT)[0] for e in ("dask", "hail")}
    pd.testing.assert_frame_equal(results["dask"], results["hail"])
    assert results["dask"].attrs["suppressions"] == results["hail"].attrs["suppressions"]
