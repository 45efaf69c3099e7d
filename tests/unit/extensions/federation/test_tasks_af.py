"""allele_frequencies and cohort_counts on the Dask engine, against pooled numpy answers.

Tiny synthetic cohorts (three sites, 40 people, 120 variants; VCF Zarr, no
MatrixTable) are read back independently with pysam and the TSVs; the
federated answer (site halves, disclosure, a JSON trip, combine) must equal
the pooled count exactly, as integers. Disclosure rules are tested on
hand-made halves with known counts.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pysam
import pytest

from extensions.federation import cohorts
from extensions.federation.cohorts import open_cohort, region_of, select, validate_where
from extensions.federation.tasks import TASKS
from extensions.federation.tasks.allele_frequencies import AlleleFrequencies
from extensions.federation.tasks.base import DisclosureRules, SiteHalf, TaskError
from extensions.federation.tasks.cohort_counts import CohortCounts
from extensions.federation.tasks.disclosure import complementary_suppression, small_cells
from hub.data.synth import SiteSpec, generate_cohorts
from hub.data.synth_people import PREFECTURES

EXACT = DisclosureRules(min_cell_count=0, min_minor_allele_count=0)  # nothing withheld
SITES = (
    SiteSpec("nig", "JGADT1", None, "Shizuoka"),
    SiteSpec("ncc", "JGADT2", None, "Tokyo"),
    SiteSpec("tommo", "JGADT3", None, "Miyagi"),
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    generate_cohorts(
        root, SITES, samples_per_site=40, variants=120, seed=7, raw_files=False,
        matrix_table=False,
    )  # fmt: skip
    return {s.site_id: root / s.site_id / s.analysis_dataset for s in SITES}


@pytest.fixture(scope="module")
def pooled(tiny):
    """The pooled cohort read independently: people (TSVs) and (variants x people) calls."""
    people, dosage, keys = [], [], None
    for folder in tiny.values():
        clinical = pd.read_csv(folder / "clinical.tsv", sep="\t", dtype=str)
        with pysam.VariantFile(str(folder / "genotypes.vcf.gz")) as vcf:
            names = list(vcf.header.samples)
            rows, site_keys = [], []
            for rec in vcf:
                site_keys.append(f"{rec.chrom}:{rec.pos}:{rec.ref}:{rec.alts[0]}")
                gts = [rec.samples[s]["GT"] for s in names]
                rows.append([np.nan if None in g else sum(a > 0 for a in g) for g in gts])
        assert keys is None or keys == site_keys
        keys = site_keys
        people.append(clinical.set_index("sample_id").loc[names])
        dosage.append(np.asarray(rows, dtype=float))
    people = pd.concat(people)
    people["region"] = people["prefecture"].map(region_of)
    return people, np.concatenate(dosage, axis=1), keys


def federate(task, folders, params, rules=EXACT, engine="dask"):
    """What the client and the gateways do: validate, halves, disclosure, JSON both ways, combine."""
    params = task.validate(params)
    halves = []
    for site, folder in folders.items():
        cohort = open_cohort(folder, site, folder.name, engine)
        half = task.disclose(task.site_half(cohort, task.validate(params), None), rules)
        halves.append(SiteHalf.from_json(json.loads(json.dumps(half.to_json()))))
    step = task.combine(halves, params, None)
    assert step.done
    return step.result, halves


def pooled_counts(people, dosage, mask):
    d = dosage[:, mask]
    called = ~np.isnan(d)
    return np.where(called, d, 0).sum(axis=1), 2 * called.sum(axis=1), called.sum(axis=1)


# ---------------------------------------------------------------------------
# exactness


def test_pooled_ac_an_af_equal_numpy_exactly(tiny, pooled):
    people, dosage, keys = pooled
    ds, halves = federate(AlleleFrequencies(), tiny, {})
    ac, an, nc = pooled_counts(people, dosage, np.ones(len(people), bool))
    assert list(ds.variant.values) == keys
    assert np.array_equal(ds.AC.values, ac)
    assert np.array_equal(ds.AN.values, an)
    assert np.array_equal(ds.n_called.values, nc)
    assert np.array_equal(ds.AF.values, ac / an)
    assert ds.AC.dims == ("variant",) and ds.site_AF.dims == ("variant", "site")
    # each site's AF is its own cohort's
    start = 0
    for k, site in enumerate(tiny):
        mask = np.zeros(len(people), bool)
        mask[start : start + 40] = True
        start += 40
        s_ac, s_an, _ = pooled_counts(people, dosage, mask)
        assert np.array_equal(ds.site_AF.values[:, k], s_ac / s_an), site
    assert json.loads(ds.attrs["suppressions"]) == []
    assert ds.attrs["n_withheld_pooled"] == 0
    assert json.loads(ds.attrs["sites"]) == list(tiny)


@pytest.mark.parametrize("by", ["sex", "age_band", "region"])
def test_strata_equal_numpy_and_add_up(tiny, pooled, by):
    people, dosage, _ = pooled
    ds, _ = federate(AlleleFrequencies(), tiny, {"stratify_by": by})
    labels = list(ds.stratum.values)
    assert sorted(labels) == sorted(set(people[by]))
    assert labels == cohorts.level_order(by, labels)
    for label in labels:
        ac, an, _ = pooled_counts(people, dosage, (people[by] == label).to_numpy())
        assert np.array_equal(ds.AC.sel(stratum=label).values, ac), label
        assert np.array_equal(ds.AN.sel(stratum=label).values, an), label
        assert ds.n_people.sel(stratum=label).sum().item() == (people[by] == label).sum()
    total, _ = federate(AlleleFrequencies(), tiny, {})
    assert np.array_equal(ds.AC.sum("stratum").values, total.AC.values)


def test_where_selects_the_same_people_as_pandas(tiny, pooled):
    people, dosage, _ = pooled
    where = {"sex": "female", "region": ["Kanto", "Chubu", "Tohoku"]}
    ds, halves = federate(AlleleFrequencies(), tiny, {"where": where})
    mask = ((people.sex == "female") & people.region.isin(where["region"])).to_numpy()
    ac, an, _ = pooled_counts(people, dosage, mask)
    assert np.array_equal(ds.AC.values, ac) and np.array_equal(ds.AN.values, an)
    assert sum(h.counts["n_selected"] for h in halves) == mask.sum()


@pytest.mark.parametrize(
    "variants",
    [["chr21:KEY"], "chr21", "chr20:1-30000000"],
    ids=["keys", "contig", "region"],
)
def test_variant_selection(tiny, pooled, variants):
    people, dosage, keys = pooled
    if variants == ["chr21:KEY"]:
        variants = [keys[5], keys[50], keys[-1]]
        want = [5, 50, len(keys) - 1]
    else:
        contig, lo, hi = (variants.split(":")[0], 1, 10**9)
        if ":" in variants:
            lo, hi = map(int, variants.split(":")[1].split("-"))
        want = [
            i
            for i, k in enumerate(keys)
            if k.split(":")[0] == contig and lo <= int(k.split(":")[1]) <= hi
        ]
    ds, _ = federate(AlleleFrequencies(), tiny, {"variants": variants})
    ac, _, _ = pooled_counts(people, dosage, np.ones(len(people), bool))
    assert list(ds.variant.values) == [keys[i] for i in want]
    assert np.array_equal(ds.AC.values, ac[want])


def test_dosage_blocks_cover_every_row_once(tiny, pooled):
    _, dosage, _ = pooled
    cohort = open_cohort(tiny["nig"], "nig", "JGADT1", "dask")
    seen = np.full((dosage.shape[0], 40), -1.0)
    for rows, block in cohort.dosage_blocks(block=17):
        assert block.dtype == np.float64
        seen[rows] = block
    assert np.array_equal(seen, dosage[:, :40], equal_nan=True)
    assert cohort.samples.index.tolist() == [f"NIG-{i:06d}" for i in range(1, 41)]
    assert list(cohort.samples.columns[:5]) == list(cohorts.CLINICAL_COLUMNS)


# ---------------------------------------------------------------------------
# disclosure on hand-made halves


def af_half(ac, an, n_people, labels=("all",), by=None, n_selected=None):
    ac = np.asarray(ac, float).reshape(len(ac), -1)
    an = np.asarray(an, float).reshape(ac.shape)
    return SiteHalf(
        site="nig",
        dataset="D",
        engine="dask",
        arrays={"ac": ac, "an": an, "n_called": an / 2, "n_people": np.asarray(n_people, float)},
        counts={"n_selected": int(n_selected if n_selected is not None else sum(n_people))},
        variants=[f"chr20:{i + 1}:A:G" for i in range(ac.shape[0])],
        meta={"stratify_by": by, "strata": list(labels)},
    )


def test_minor_allele_count_rule_withholds_the_variant():
    ac = [0, 1, 4, 5, 50, 95, 96, 100]
    half = af_half(ac, [100] * 8, [50])
    out = AlleleFrequencies().disclose(half, DisclosureRules(5, 5))
    withheld = np.isnan(out.arrays["ac"][:, 0])
    # min(AC, AN - AC) < 5: 0, 1, 4 and 96 (4 REF alleles), 100 (0 REF alleles)
    assert withheld.tolist() == [True, True, True, False, False, False, True, True]
    assert np.isnan(out.arrays["an"][withheld]).all()
    assert np.isnan(out.arrays["n_called"][withheld]).all()
    [s] = out.suppressed
    assert (s.what, s.count, s.rule) == ("variant", 5, "min_minor_allele_count=5")
    assert not np.isnan(half.arrays["ac"]).any()  # the input half is left as it was


def test_pooled_is_nan_where_any_site_withheld_and_says_so():
    task = AlleleFrequencies()
    a = task.disclose(af_half([2, 40, 60], [100] * 3, [50]), DisclosureRules(5, 5))
    b = af_half([30, 3, 70], [100] * 3, [50])
    b.site = "ncc"
    b = task.disclose(b, DisclosureRules(5, 5))
    ds = task.combine([a, b], task.validate({}), None).result
    assert np.isnan(ds.AC.values[:2]).all() and ds.AC.values[2] == 130
    assert ds.AF.values[2] == 130 / 200
    assert ds.withheld.values.tolist() == [[True, False], [False, True], [False, False]]
    assert ds.n_sites_withheld.values.tolist() == [1, 1, 0]
    assert ds.site_AC.values[0, 1] == 30  # the other site's released value is still shown
    assert ds.attrs["n_withheld_pooled"] == 2
    assert [s["site"] for s in json.loads(ds.attrs["suppressions"])] == ["nig", "ncc"]


def test_small_stratum_is_withheld_with_a_complement():
    labels = ["Hokkaido", "Tohoku", "Kanto", "Chubu"]
    n_people = [3, 40, 7, 60]
    ac = np.tile([[20, 20, 20, 20]], (2, 1))
    an = np.tile([[6, 80, 14, 120]], (2, 1))
    half = af_half(ac, an, n_people, labels, by="region")
    out = AlleleFrequencies().disclose(half, DisclosureRules(5, 0))
    # Hokkaido (3) is under the rule; Kanto, the smallest released stratum, goes with it,
    # or the total minus the others would give Hokkaido away
    assert np.isnan(out.arrays["n_people"]).tolist() == [True, False, True, False]
    assert np.isnan(out.arrays["ac"]).all(axis=0).tolist() == [True, False, True, False]
    rules = [s.rule for s in out.suppressed]
    assert rules == ["min_cell_count=5", "min_cell_count=5 (complementary)"]
    assert "Hokkaido" in out.suppressed[0].detail and "Kanto" in out.suppressed[1].detail


@pytest.mark.parametrize("n", [0, 1, 4])
def test_a_query_selecting_too_few_people_is_refused(n):
    half = af_half([1], [2 * n], [n], n_selected=n)
    with pytest.raises(TaskError) as e:
        AlleleFrequencies().disclose(half, DisclosureRules(5, 5))
    assert "min_people=5" in e.value.message and e.value.field == "where"
    assert f" {n} " not in e.value.message  # the small count itself is not told


def test_a_restricted_query_is_refused_at_the_site_that_has_too_few(tiny):
    task = AlleleFrequencies()
    # one prefecture far from two of the sites' home regions: a handful of people at most
    with pytest.raises(TaskError) as e:
        federate(task, tiny, {"where": {"prefecture": "Okinawa"}}, rules=DisclosureRules(5, 5))
    assert "fewer than 5 people" in e.value.message and "min_people" in e.value.message


def test_thresholds_zero_release_everything(tiny):
    _, halves = federate(AlleleFrequencies(), tiny, {"stratify_by": "region"})
    assert all(not h.suppressed for h in halves)
    assert not any(np.isnan(a).any() for h in halves for a in h.arrays.values())


def test_default_rules_withhold_exactly_the_rare_variants(tiny, pooled):
    people, dosage, _ = pooled
    ds, halves = federate(AlleleFrequencies(), tiny, {}, rules=DisclosureRules(5, 5))
    expect_any = np.zeros(dosage.shape[0], bool)
    for k, h in enumerate(halves):
        mask = np.zeros(len(people), bool)
        mask[40 * k : 40 * (k + 1)] = True
        ac, an, _ = pooled_counts(people, dosage, mask)
        rare = np.minimum(ac, an - ac) < 5
        assert np.array_equal(np.isnan(h.arrays["ac"][:, 0]), rare)
        assert sum(s.count for s in h.suppressed) == rare.sum()
        expect_any |= rare
    assert np.array_equal(np.isnan(ds.AC.values), expect_any)
    ac, _, _ = pooled_counts(people, dosage, np.ones(len(people), bool))
    assert np.array_equal(ds.AC.values[~expect_any], ac[~expect_any])


# ---------------------------------------------------------------------------
# parameters


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"stratify_by": "prefecture"}, "stratify_by"),
        ({"stratify_by": 3}, "stratify_by"),
        ({"where": {"blood_type": "A"}}, "where.blood_type"),
        ({"where": {"sex": "F"}}, "where.sex"),
        ({"where": {"region": "Kansai"}}, "where.region"),
        ({"where": {"age_band": "forties"}}, "where.age_band"),
        ({"where": {"sex": []}}, "where.sex"),
        ({"where": ["sex"]}, "where"),
        ({"variants": ["rs123"]}, "variants"),
        ({"variants": "chr20:500-100"}, "variants"),
        ({"variants": 17}, "variants"),
        ({"samples": ["NIG-000001"]}, "samples"),
    ],
    ids=lambda v: json.dumps(v) if isinstance(v, dict) else v,
)
def test_bad_parameters_name_the_field(params, field):
    with pytest.raises(TaskError) as e:
        AlleleFrequencies().validate(params)
    assert e.value.field == field
    assert e.value.message.startswith(field.split(".")[0])


def test_validate_normalises_and_is_idempotent():
    task = AlleleFrequencies()
    p = task.validate({"where": {"sex": "male"}, "variants": "chr20:1,000-2,000"})
    assert p == {
        "stratify_by": None,
        "where": {"sex": ["male"]},
        "variants": "chr20:1000-2000",
    }
    assert task.validate(json.loads(json.dumps(p))) == p


def test_unknown_engine_is_refused(tiny):
    with pytest.raises(TaskError) as e:
        open_cohort(tiny["nig"], "nig", "JGADT1", "spark")
    assert e.value.field == "engine"


def test_site_half_json_round_trip(tiny):
    task = AlleleFrequencies()
    cohort = open_cohort(tiny["nig"], "nig", "JGADT1", "dask")
    half = task.disclose(
        task.site_half(cohort, task.validate({"stratify_by": "sex"}), None),
        DisclosureRules(5, 5),
    )
    assert half.suppressed and np.isnan(half.arrays["ac"]).any()
    back = SiteHalf.from_json(json.loads(json.dumps(half.to_json())))
    assert back.variants == half.variants and back.meta == half.meta
    assert back.counts == half.counts
    assert [s.to_json() for s in back.suppressed] == [s.to_json() for s in half.suppressed]
    for k, a in half.arrays.items():
        assert back.arrays[k].dtype == a.dtype and back.arrays[k].shape == a.shape
        assert np.array_equal(back.arrays[k], a, equal_nan=True), k
    # aggregates only: nothing per person, and the size does not depend on the people
    assert back.nbytes() == 8 * (3 * len(half.variants) * 2 + 2) + 8


# ---------------------------------------------------------------------------
# selection helpers


def test_every_prefecture_has_one_of_eight_regions():
    assert len(cohorts.REGIONS) == 8
    assert sorted(cohorts.PREFECTURE_REGION) == sorted(PREFECTURES)
    assert list(cohorts.PREFECTURES) == PREFECTURES  # north to south, as JIS X 0401
    assert region_of("Mie") == "Kinki" and region_of("Okinawa") == "Kyushu-Okinawa"
    assert region_of("Atlantis") == "unknown"


def test_select_combines_attributes_with_and_values_with_or():
    df = pd.DataFrame(
        {
            "sex": ["female", "male", "female", "female"],
            "region": ["Kanto", "Kanto", "Kinki", "Tohoku"],
        }
    )
    assert select(df, None).all()
    assert select(df, {"sex": "female", "region": ["Kanto", "Kinki"]}).tolist() == [
        True,
        False,
        True,
        False,
    ]
    assert validate_where({"sex": ["male", "male"]}) == {"sex": ("male",)}


def test_level_order_is_natural():
    assert cohorts.level_order("age_band", ["80-89", "20-29", "100-109"]) == [
        "20-29",
        "80-89",
        "100-109",
    ]
    assert cohorts.level_order("sex", ["male", "female"]) == ["female", "male"]
    assert cohorts.level_order("region", ["Kinki", "Hokkaido", "unknown"]) == [
        "Hokkaido",
        "Kinki",
        "unknown",
    ]


# ---------------------------------------------------------------------------
# cohort_counts


def test_counts_equal_pandas_on_the_pooled_people(tiny, pooled):
    people, _, _ = pooled
    df, _ = federate(CohortCounts(), tiny, {})
    assert set(df.attribute) == {"age_band", "sex", "prefecture", "region", "disease_name"}
    for attribute in ("age_band", "sex", "prefecture", "region"):
        got = df[df.attribute == attribute].set_index("value")["count"]
        want = people[attribute].value_counts()
        assert got.to_dict() == want.astype(float).to_dict(), attribute
    diseases = df[df.attribute == "disease_name"]
    want = people.groupby(["disease_name", "icd10"]).size()
    got = dict(
        zip(zip(diseases.value, diseases.icd10, strict=True), diseases["count"], strict=True)
    )
    assert got == want.astype(float).to_dict()
    assert (df.withheld_sites == 0).all() and df.complete.all()
    per_site = df[[f"count_{s}" for s in tiny]].sum(axis=1)
    assert np.array_equal(per_site.values, df["count"].values)


def test_cross_tab_equals_pandas_crosstab(tiny, pooled):
    people, _, _ = pooled
    df, _ = federate(CohortCounts(), tiny, {"by": ["sex", "age_band"], "where": {}})
    want = pd.crosstab(people.sex, people.age_band).stack()
    got = df.set_index(["value", "by_value"])["count"]
    assert got.to_dict() == want.astype(float).to_dict()
    assert (df.attribute == "sex").all() and (df.by == "age_band").all()


def test_small_cells_are_withheld_and_pooled_is_the_released_sum(tiny, pooled):
    people, _, _ = pooled
    rules = DisclosureRules(min_cell_count=5, min_minor_allele_count=5)
    df, halves = federate(CohortCounts(), tiny, {"by": "prefecture"}, rules=rules)
    sites = list(tiny)
    per_site = df[[f"count_{s}" for s in sites]].to_numpy()
    released = per_site[~np.isnan(per_site)]
    assert ((released == 0) | (released >= 5)).all()
    truth = np.stack(
        [
            people.iloc[40 * k : 40 * (k + 1)]
            .prefecture.value_counts()
            .reindex(df.value)
            .fillna(0)
            .to_numpy()
            for k in range(3)
        ],
        axis=1,
    )
    small = (truth > 0) & (truth < 5)
    assert (np.isnan(per_site) >= small).all()  # every small cell withheld (plus complements)
    assert np.array_equal(per_site[~np.isnan(per_site)], truth[~np.isnan(per_site)])
    assert np.array_equal(df.withheld_sites.values, np.isnan(per_site).sum(axis=1))
    released_sum = np.where(np.isnan(per_site), 0, per_site).sum(axis=1)
    all_withheld = np.isnan(per_site).all(axis=1)
    assert np.array_equal(df["count"].values[~all_withheld], released_sum[~all_withheld])
    assert np.isnan(df["count"].values[all_withheld]).all()
    assert (df["count"].fillna(0).values <= truth.sum(axis=1)).all()
    reported = sum(s["count"] for s in json.loads(df.attrs["suppressions"]))
    assert reported == np.isnan(per_site).sum() == df.attrs["n_cells_withheld"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"by": "blood_type"}, "by"),
        ({"by": ["sex", "sex"]}, "by"),
        ({"by": ["sex", "age_band", "region"]}, "by"),
        ({"by": ["prefecture", "region"]}, "by"),
        ({"where": {"sex": "X"}}, "where.sex"),
        ({"stratify_by": "sex"}, "stratify_by"),
    ],
)
def test_cohort_counts_bad_parameters_name_the_field(params, field):
    with pytest.raises(TaskError) as e:
        CohortCounts().validate(params)
    assert e.value.field == field


def test_complementary_suppression_in_a_cross_tab():
    counts = np.array([[2.0, 10, 20], [30, 40, 50]])
    primary = np.array([[True, False, False], [False, False, False]])
    extra = complementary_suppression(counts, primary)
    both = primary | extra
    # no row or column is left with a single withheld cell
    for line in [*both, *both.T]:
        assert line.sum() != 1
    assert extra.sum() == 3  # row 0: 10; column 0: 30; then row 1 needs 40


def test_the_withheld_cells_of_a_line_hold_zero_or_at_least_the_minimum_together():
    """The margin minus the released cells is the withheld cells' total: not a small cell."""
    counts = np.array([1.0, 1, 7, 36, 14])
    primary = small_cells(counts, 5)
    assert (primary | complementary_suppression(counts, primary)).sum() == 2  # total 2
    both = primary | complementary_suppression(counts, primary, min_total=5)
    assert counts[both].sum() >= 5 and both.tolist() == [True, True, True, False, False]
    # every random one-way table and cross-tab: 0 or >= 5 withheld per line
    rng = np.random.default_rng(7)
    for _ in range(300):
        shape = (int(rng.integers(2, 5)), int(rng.integers(2, 5))) if rng.random() < 0.5 else (6,)
        counts = rng.integers(0, 12, shape).astype(float)
        primary = small_cells(counts, 5)
        both = primary | complementary_suppression(counts, primary, min_total=5)
        if counts.ndim == 1:
            lines = [(both, counts)]
        else:
            lines = [*zip(both, counts, strict=True), *zip(both.T, counts.T, strict=True)]
        for w, c in lines:
            total = c[w].sum()
            assert total == 0 or total >= 5 or (~w & (c > 0)).sum() == 0, (counts, both)


def test_registry_lists_the_tasks():
    assert TASKS["allele_frequencies"] is AlleleFrequencies
    assert TASKS["cohort_counts"] is CohortCounts
    assert all(TASKS[name].name == name for name in TASKS)
