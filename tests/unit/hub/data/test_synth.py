"""Synthetic cohorts: shapes, determinism, valid attributes, planted signal, population structure."""

from __future__ import annotations

import csv
import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest

from hub.data.synth import SiteSpec, generate_cohorts
from hub.data.synth_people import AGE_BANDS, PREFECTURES

SITES = [
    SiteSpec("nig", "JGAD000101", "JGAD000102", "Shizuoka"),
    SiteSpec("ncc", "JGAD000201", None, "Tokyo"),
    SiteSpec("tommo", "JGAD000401", None, "Miyagi"),
]


def read_tsv(path):
    with open(path) as f:
        return list(csv.DictReader(f, delimiter="\t"))


def vcf_records(path):
    with gzip.open(path, "rt") as f:
        lines = [line.rstrip("\n").split("\t") for line in f if not line.startswith("##")]
    return lines[0], lines[1:]


def dosages(records):
    code = {"0/0": 0, "0/1": 1, "1/1": 2, "./.": -1}
    return np.array([[code[g] for g in r[9:]] for r in records])


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    return out, generate_cohorts(
        out, SITES, samples_per_site=30, variants=200, seed=7, zarr=False, raw_files=False
    )


def test_shapes(small):
    out, result = small
    assert set(result.sites) == {"nig", "ncc", "tommo"}
    for spec in SITES:
        header, records = vcf_records(
            out / spec.site_id / spec.analysis_dataset / "genotypes.vcf.gz"
        )
        assert len(header) == 9 + 30 and len(records) == 200
        assert header[9] == f"{spec.site_id.upper()}-000001"
        clinical = read_tsv(out / spec.site_id / spec.analysis_dataset / "clinical.tsv")
        assert len(clinical) == 30
        assert list(clinical[0]) == [
            "sample_id",
            "age_band",
            "sex",
            "prefecture",
            "disease_name",
            "icd10",
        ]
        pheno = read_tsv(out / spec.site_id / spec.analysis_dataset / "phenotypes.tsv")
        assert [p["sample_id"] for p in pheno] == header[9:]
        assert list(pheno[0]) == ["sample_id", "quant_trait", "case_status"]
    truth = json.loads((out / "truth.json").read_text())
    assert truth["variants"] == 200 and len(truth["causal_quantitative"]) == 15


def test_same_variants_at_every_site_sorted_and_biallelic(small):
    out, _ = small
    keys = []
    for spec in SITES:
        _, records = vcf_records(out / spec.site_id / spec.analysis_dataset / "genotypes.vcf.gz")
        keys.append([tuple(r[:5]) for r in records])
        for r in records:
            assert r[3] in "ACGT" and r[4] in "ACGT" and r[3] != r[4]
        positions = [(r[0], int(r[1])) for r in records]
        assert positions == sorted(positions)
    assert keys[0] == keys[1] == keys[2]


def test_info_matches_genotypes_and_pooled_polymorphic(small):
    out, _ = small
    pooled_ac = 0
    pooled_an = 0
    for spec in SITES:
        _, records = vcf_records(out / spec.site_id / spec.analysis_dataset / "genotypes.vcf.gz")
        g = dosages(records)
        ac = np.where(g < 0, 0, g).sum(axis=1)
        an = (g >= 0).sum(axis=1) * 2
        info = [dict(kv.split("=") for kv in r[7].split(";")) for r in records]
        assert [int(i["AC"]) for i in info] == ac.tolist()
        assert [int(i["AN"]) for i in info] == an.tolist()
        pooled_ac = pooled_ac + ac
        pooled_an = pooled_an + an
    assert ((pooled_ac > 0) & (pooled_ac < pooled_an)).all()


def test_clinical_values_are_valid(small):
    out, _ = small
    for spec in SITES:
        for row in read_tsv(out / spec.site_id / spec.analysis_dataset / "clinical.tsv"):
            assert row["age_band"] in AGE_BANDS
            assert row["sex"] in {"male", "female"}
            assert row["prefecture"] in PREFECTURES
            assert re.fullmatch(r"[A-Z][0-9]{2}", row["icd10"])
            assert row["disease_name"]
    assert len(PREFECTURES) == 47


def test_deterministic_for_a_seed(tmp_path, small):
    out, _ = small
    again = tmp_path / "again"
    generate_cohorts(
        again, SITES, samples_per_site=30, variants=200, seed=7, zarr=False, raw_files=False
    )
    for spec in SITES:
        for name in ("genotypes.vcf.gz", "clinical.tsv", "phenotypes.tsv"):
            a = (out / spec.site_id / spec.analysis_dataset / name).read_bytes()
            b = (again / spec.site_id / spec.analysis_dataset / name).read_bytes()
            assert a == b, name
    other = tmp_path / "other"
    generate_cohorts(
        other, SITES, samples_per_site=30, variants=200, seed=8, zarr=False, raw_files=False
    )
    for name in ("genotypes.vcf.gz", "clinical.tsv", "phenotypes.tsv"):
        a = (out / "nig/JGAD000101" / name).read_bytes()
        assert (other / "nig/JGAD000101" / name).read_bytes() != a, name


def test_chunk_size_does_not_change_the_cohort(tmp_path, small):
    # the chunk size is a memory knob only: a benchmark may pick any
    out, _ = small
    generate_cohorts(
        tmp_path, SITES, samples_per_site=30, variants=200, seed=7, zarr=False,
        raw_files=False, chunk_variants=37,
    )  # fmt: skip
    for spec in SITES:
        for name in ("genotypes.vcf.gz", "clinical.tsv", "phenotypes.tsv"):
            a = (out / spec.site_id / spec.analysis_dataset / name).read_bytes()
            b = (tmp_path / spec.site_id / spec.analysis_dataset / name).read_bytes()
            assert a == b, f"{spec.site_id}/{name}"


def test_truth_is_the_answer_key(small):
    out, result = small
    truth = json.loads((out / "truth.json").read_text())
    assert truth == json.loads(json.dumps(result.to_json()))
    assert truth["seed"] == 7 and truth["fst"] == 0.01 and truth["samples_per_site"] == 30
    assert set(truth["site_shift"]) == {"nig", "ncc", "tommo"}
    assert truth["covariate_effects"]["quant_trait"]["male"] > 0
    _, records = vcf_records(out / "ncc/JGAD000201/genotypes.vcf.gz")
    for c in truth["causal_quantitative"] + truth["causal_binary"]:
        assert records[c["index"]][2] == c["variant_id"]
        assert c["beta"] != 0 and 0.01 <= c["ancestral_af"] <= 0.5
    # the answer key is kept out of the folders researchers are given
    assert not list(out.glob("*/*/truth.json"))
    for spec in SITES:
        files = result.sites[spec.site_id]
        for path in (files.vcf, files.vcf_index, files.clinical, files.phenotypes):
            assert (out / spec.site_id / spec.analysis_dataset).samefile(Path(path).parent)
        assert files.zarr is None and files.raw_dir is None and files.raw_files == []


@pytest.fixture(scope="module")
def larger(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth-larger")
    result = generate_cohorts(
        out, SITES, samples_per_site=400, variants=300, seed=11, zarr=False, raw_files=False
    )
    g, y, cases, ncc_diseases = [], [], [], []
    for spec in SITES:
        _, records = vcf_records(out / spec.site_id / spec.analysis_dataset / "genotypes.vcf.gz")
        g.append(dosages(records))
        pheno = read_tsv(out / spec.site_id / spec.analysis_dataset / "phenotypes.tsv")
        y.append([float(p["quant_trait"]) for p in pheno])
        cases.append([int(p["case_status"]) for p in pheno])
    ncc = read_tsv(out / "ncc/JGAD000201/clinical.tsv")
    ncc_diseases = [r["icd10"] for r in ncc]
    return result, g, np.concatenate(y), np.concatenate(cases), ncc_diseases


def test_planted_effect_is_found(larger):
    result, g, y, _, _ = larger
    pooled = np.concatenate(g, axis=1).astype(float)
    pooled[pooled < 0] = np.nan
    strongest = max(result.causal_quantitative, key=lambda c: abs(c["beta"]))
    x = pooled[strongest["index"]]
    ok = ~np.isnan(x)
    r = np.corrcoef(x[ok], y[ok])[0, 1]
    assert np.sign(r) == np.sign(strongest["beta"])
    assert abs(r) > 0.08  # about 4 standard errors at 1,200 people
    # a variant with no planted effect is, on the whole, uncorrelated
    causal = {c["index"] for c in result.causal_quantitative}
    null = [i for i in range(300) if i not in causal][:100]
    null_r = [abs(np.corrcoef(np.nan_to_num(pooled[i], nan=1.0), y)[0, 1]) for i in null]
    assert np.median(null_r) < 0.05


def test_prevalence_and_case_disease(larger):
    _, _, _, cases, ncc_diseases = larger
    assert 0.2 <= cases.mean() <= 0.4
    # the cancer centre sees more cancers than a general cohort would
    non_case = [d for d in ncc_diseases if d != "E11"]
    assert sum(d.startswith("C") for d in non_case) / len(non_case) > 0.4


def test_population_structure(larger):
    _, g, _, _, _ = larger
    freqs = np.array([np.where(x < 0, 0, x).sum(axis=1) / ((x >= 0).sum(axis=1) * 2) for x in g])
    mean = freqs.mean(axis=0)
    keep = (mean > 0.05) & (mean < 0.95)
    # Hudson-like ratio of between-site variance to total; Fst 0.01 plus sampling noise
    fst_hat = np.mean(freqs[:, keep].var(axis=0) / (mean[keep] * (1 - mean[keep])))
    assert 0.004 < fst_hat < 0.05


def test_hardy_weinberg_and_missingness(larger):
    # within a site, calls follow Binomial(2, p): heterozygotes near 2pq
    _, g, _, _, _ = larger
    for x in g:
        called = x >= 0
        p = np.where(called, x, 0).sum(axis=1) / (called.sum(axis=1) * 2)
        het = ((x == 1).sum(axis=1) / called.sum(axis=1)).mean()
        assert het / (2 * p * (1 - p)).mean() == pytest.approx(1, abs=0.05)
        assert 0.003 < (~called).mean() < 0.008  # about 0.5 % missing calls


def test_low_frequencies_dominate(larger):
    _, g, _, _, _ = larger
    pooled = np.concatenate(g, axis=1)
    called = pooled >= 0
    af = np.where(called, pooled, 0).sum(axis=1) / (called.sum(axis=1) * 2)
    maf = np.minimum(af, 1 - af)
    assert np.median(maf) < 0.15 and (maf > 0.3).mean() < 0.25


@pytest.mark.parametrize(
    "kwargs,message",
    [
        pytest.param(
            {"samples_per_site": 5}, "samples_per_site: 5 is too few", id="too-few-samples"
        ),
        pytest.param({"variants": 3}, "variants: 3 is too few", id="too-few-variants"),
        pytest.param({"fst": 0.0}, r"fst: 0.0 is outside \(0, 0.5\)", id="fst-zero"),
        pytest.param({"fst": 0.7}, "fst: 0.7 is outside", id="fst-too-large"),
        pytest.param({"sites": []}, "sites: at least one site", id="no-sites"),
        pytest.param(
            {"sites": [SITES[0], SITES[0]]}, "site id listed twice: nig", id="duplicate-site"
        ),
        pytest.param({"chunk_variants": 0}, "chunk_variants: 0 must be positive", id="zero-chunk"),
        pytest.param({"missing_rate": 0.5}, "missing_rate: 0.5 is outside", id="missing-rate"),
        pytest.param(
            {"missing_rate": -0.1}, "missing_rate: -0.1 is outside", id="missing-negative"
        ),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    args = {"sites": SITES, "samples_per_site": 20, "variants": 20} | kwargs
    with pytest.raises(ValueError, match=message):
        generate_cohorts(tmp_path, args.pop("sites"), **args)
    assert not any(tmp_path.iterdir()), "nothing written on bad arguments"


def test_the_missing_rate_is_a_setting_and_recorded(tmp_path):
    # the demo's cohorts are made with fewer missing calls than the default (hub.demo.stack)
    args = {"samples_per_site": 400, "variants": 200, "zarr": False, "raw_files": False}
    generate_cohorts(tmp_path, SITES[:1], missing_rate=0.0, **args)
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["missing_rate"] == 0.0
    with gzip.open(tmp_path / "nig" / SITES[0].analysis_dataset / "genotypes.vcf.gz", "rt") as f:
        calls = [c for line in f if not line.startswith("#") for c in line.split("\t")[9:]]
    assert len(calls) == 400 * 200 and not any(c.startswith(".") for c in calls)
