"""The packed calls: two bits a call, counted with AND and popcount for queries of some people.

The kernel is checked against `kernels.allele_counts` on random codes (missing
calls, haploid calls, people not a multiple of 64, strata in any order), and a
small synthetic site (written by hub.data.synth, ingested) answers filtered queries
from the packed file and from the Zarr store with halves equal bit for bit. A
packed file the summary cache does not vouch for (replaced, truncated) is read
past with a log line, and ingest writes it again.
"""

from __future__ import annotations

import json
import logging
import os
import shutil

import numpy as np
import pytest

from extensions.contracts.datasets import PACKED
from extensions.federation import kernels, packed, summary
from extensions.federation.cohorts import ZarrCohort, open_cohort
from extensions.federation.tasks.allele_frequencies import AlleleFrequencies
from hub.data.synth import SiteSpec, generate_cohorts

SITE = SiteSpec("ncc", "JGADP1", None, "Tokyo")
TASK = AlleleFrequencies()


# ---------------------------------------------------------------------------
# the kernel


def random_codes(rng, v, n, missing=0.05, haploid=False):
    codes = rng.choice([0, 1, 2], size=(v, n), p=[0.6, 0.3, 0.1]).astype(np.uint8)
    if haploid:
        codes = np.minimum(codes, 1)
    codes[rng.random((v, n)) < missing] = kernels.MISSING
    return codes


@pytest.mark.parametrize("n", [1, 63, 64, 65, 131, 1000])
@pytest.mark.parametrize("n_strata", [1, 3])
def test_counts_equal_the_code_kernel(n, n_strata):
    rng = np.random.default_rng(n * 10 + n_strata)
    codes = random_codes(rng, 300, n)
    chosen = np.flatnonzero(rng.random(n) < 0.7)
    strata = rng.integers(0, n_strata, size=chosen.size)
    planes = packed.pack_codes(codes)
    masks = packed.person_masks(chosen, strata, n_strata, n)
    got = packed.packed_counts(planes, masks)
    order = np.argsort(strata, kind="stable")
    want = kernels.allele_counts(codes[:, chosen[order]], strata[order], n_strata)
    for k in ("ac", "n_called"):
        assert got[k].dtype == np.int64
        assert np.array_equal(got[k], want[k]), k


def test_haploid_calls_and_a_block_boundary(monkeypatch):
    monkeypatch.setattr(packed, "BLOCK_BYTES", 16 * 2 * 7)  # 7 variants a block
    rng = np.random.default_rng(5)
    codes = random_codes(rng, 50, 130, haploid=True)
    masks = packed.person_masks(np.arange(130), np.zeros(130, dtype=np.int64), 1, 130)
    got = packed.packed_counts(packed.pack_codes(codes), masks)
    want = kernels.allele_counts(codes, np.zeros(130, dtype=np.int64), 1)
    assert np.array_equal(got["ac"], want["ac"]) and np.array_equal(
        got["n_called"], want["n_called"]
    )


def test_no_people_and_no_variants():
    planes = packed.pack_codes(np.zeros((4, 10), dtype=np.uint8))
    none = packed.person_masks(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), 2, 10)
    got = packed.packed_counts(planes, none)
    assert got["ac"].shape == (4, 2) and not got["ac"].any() and not got["n_called"].any()
    empty = packed.packed_counts(planes[:0], none)
    assert empty["ac"].shape == (0, 2)


def test_a_code_above_two_does_not_pack():
    codes = np.array([[0, 3, 1]], dtype=np.uint8)
    with pytest.raises(ValueError, match="ploidy above 2"):
        packed.pack_codes(codes)


def test_reduce_over_a_file_in_tasks(tmp_path, monkeypatch):
    monkeypatch.setattr(packed, "TASK_BYTES", 16 * 1 * 37)  # 37 variants a task
    rng = np.random.default_rng(9)
    codes = random_codes(rng, 200, 40)
    np.save(tmp_path / "p.npy", packed.pack_codes(codes))
    masks = packed.person_masks(np.arange(40), np.arange(40) % 2, 2, 40)
    whole = packed.packed_counts(packed.pack_codes(codes), masks)
    got = packed.reduce_packed(tmp_path / "p.npy", 200, 40, masks)
    assert all(np.array_equal(got[k], whole[k]) for k in whole)
    rows = np.array([150, 3, 77, 36, 37, 199])  # any order, across tasks
    some = packed.reduce_packed(tmp_path / "p.npy", 200, 40, masks, rows)
    assert all(np.array_equal(some[k], whole[k][rows]) for k in whole)
    none = packed.reduce_packed(tmp_path / "p.npy", 200, 40, masks, np.zeros(0, dtype=np.int64))
    assert none["ac"].shape == (0, 2)


# ---------------------------------------------------------------------------
# a site


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    generate_cohorts(
        root, [SITE], samples_per_site=70, variants=260, seed=12, raw_files=False,
        matrix_table=False, missing_rate=0.03, chunk_variants=100,
    )  # fmt: skip
    return root / SITE.site_id / SITE.analysis_dataset


@pytest.fixture
def copy(site, tmp_path):
    dest = tmp_path / SITE.analysis_dataset
    shutil.copytree(site, dest)
    return dest


def half(folder, params, use_packed, monkeypatch):
    monkeypatch.setattr(packed, "USE", use_packed)
    cohort = open_cohort(folder, SITE.site_id, folder.name, "dask")
    return TASK.site_half(cohort, TASK.validate(params), None)


def assert_same_half(a, b):
    assert a.variants == b.variants and a.counts == b.counts
    assert a.meta["strata"] == b.meta["strata"]
    for k, x in a.arrays.items():
        assert x.dtype == b.arrays[k].dtype and x.shape == b.arrays[k].shape, k
        assert np.array_equal(x, b.arrays[k]), k


def test_ingest_writes_the_packed_calls_and_the_cache_records_them(site):
    cohort = ZarrCohort(site, SITE.site_id, site.name)
    record = cohort.summary.meta["packed"]
    assert record["shape"] == [260, 2, 2] and packed.matches(site, record)
    calls = np.asarray(cohort.ds["call_genotype"].values)
    assert np.array_equal(cohort.packed, packed.pack_codes(kernels.genotype_codes(calls)))
    assert (site / PACKED).stat().st_mode == (site / "genotypes.vcf.gz").stat().st_mode


WHERE = [
    {"where": {"sex": "female"}},
    {"where": {"age_band": ["50-59", "60-69", "70-79"]}, "stratify_by": "sex"},
    {"where": {"sex": "male"}, "stratify_by": "age_band", "variants": "chr21"},
    {"where": {"sex": "female"}, "stratify_by": "region", "variants": ["chr22:1:A:T"]},
]


@pytest.mark.parametrize("params", WHERE)
def test_a_filtered_half_from_the_packed_calls_equals_the_zarrs(site, params, monkeypatch):
    if "variants" in params and isinstance(params["variants"], list):
        keys = ZarrCohort(site, SITE.site_id, site.name).zarr_variant_keys()
        params = {**params, "variants": [*keys[5:250:9], *params["variants"]]}
    fast = half(site, params, True, monkeypatch)
    slow = half(site, params, False, monkeypatch)
    assert fast.meta["source"] == "packed" and slow.meta["source"] == "genotypes"
    assert_same_half(fast, slow)
    assert len(fast.variants) > 1 and fast.arrays["ac"].sum() > 0


def assert_read_past(folder, monkeypatch, caplog):
    params = {"where": {"sex": "female"}, "stratify_by": "age_band"}
    with caplog.at_level(logging.WARNING, "visiting.packed"):
        got = half(folder, params, True, monkeypatch)
    assert got.meta["source"] == "genotypes"
    assert "reading the Zarr" in caplog.text
    assert_same_half(got, half(folder, params, False, monkeypatch))


def test_a_replaced_packed_file_is_read_past(copy, monkeypatch, caplog):
    path = copy / PACKED
    planes = np.load(path)
    planes[:, 0] = 0  # as if another dataset's calls: same size, another time
    np.save(path, planes)
    assert_read_past(copy, monkeypatch, caplog)


def test_a_truncated_packed_file_is_read_past(copy, monkeypatch, caplog):
    path = copy / PACKED
    st = path.stat()
    with open(path, "r+b") as f:
        f.truncate(st.st_size - 16)
    assert_read_past(copy, monkeypatch, caplog)


def test_ingest_writes_a_missing_packed_file_again(copy):
    (copy / PACKED).unlink()
    assert not summary.summary_is_current(copy)
    assert summary.ensure_summary(copy)
    assert summary.summary_is_current(copy) and (copy / PACKED).exists()
    assert not summary.ensure_summary(copy)  # kept when current


def test_a_cache_from_before_the_packed_calls_is_written_again(copy):
    path = copy / summary.SUMMARY
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(summary._texts(arrays["meta"])[0])
    del meta["packed"]
    arrays["meta"] = summary._blob([json.dumps(meta, sort_keys=True)])
    st = path.stat()
    np.savez_compressed(path, **arrays)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert ZarrCohort(copy, SITE.site_id, copy.name).packed is None
    assert not summary.summary_is_current(copy)
    assert summary.ensure_summary(copy)
    assert ZarrCohort(copy, SITE.site_id, copy.name).packed is not None


# ---------------------------------------------------------------------------
# every kernel over the packed calls


def test_unpack_is_the_inverse_of_pack():
    rng = np.random.default_rng(3)
    codes = random_codes(rng, 40, 131)
    planes = packed.pack_codes(codes)
    assert np.array_equal(packed.unpack_codes(planes, 131), codes)
    columns = np.array([130, 0, 64, 63, 5])
    assert np.array_equal(packed.unpack_codes(planes, 131, columns), codes[:, columns])


@pytest.mark.parametrize("task_calls", [1 << 22, 7 * 30])  # one task; blocks of 7 variants
def test_a_kernel_over_the_packed_file_equals_it_over_the_codes(tmp_path, monkeypatch, task_calls):
    monkeypatch.setattr(packed, "KERNEL_CALLS", task_calls)
    rng = np.random.default_rng(4)
    codes = random_codes(rng, 90, 50)
    path = tmp_path / "p.npy"
    np.save(path, packed.pack_codes(codes))
    columns = rng.permutation(50)[:30]
    y, Z = rng.normal(size=30), rng.normal(size=(30, 2))
    rows = np.array([80, 2, 40, 41, 0, 89])
    got = packed.reduce_kernel(path, 90, 50, kernels.linear_sums, columns, rows, (y, Z))
    want = kernels.linear_sums(codes[rows][:, columns], y, Z)
    for k, a in want.items():
        np.testing.assert_allclose(got[k], a, rtol=1e-13, atol=1e-12, err_msg=k)
    assert np.array_equal(got["n_obs"], want["n_obs"]) and np.array_equal(
        got["sum_x"], want["sum_x"]
    )
    none = packed.reduce_kernel(
        path, 90, 50, kernels.linear_sums, columns[:0], rows, (y[:0], Z[:0])
    )
    assert none["sum_xz"].shape == (6, 2)


@pytest.mark.parametrize("name", ["gwas_linear", "gwas_logistic"])
def test_gwas_halves_from_the_packed_calls_equal_the_zarrs(site, name, monkeypatch):
    from extensions.federation.tasks import TASKS

    task = TASKS[name]()
    pheno = "quant_trait" if name == "gwas_linear" else "case_status"
    params = task.validate({"phenotype": pheno, "covariates": ["age_band", "sex"]})
    halves = []
    for use in (True, False):
        monkeypatch.setattr(packed, "USE", use)
        cohort = open_cohort(site, SITE.site_id, site.name, "dask")
        assert (cohort.packed is not None) is use
        halves.append(task.site_half(cohort, params, None))
    fast, slow = halves
    assert fast.variants == slow.variants and sorted(fast.arrays) == sorted(slow.arrays)
    for k, a in slow.arrays.items():
        np.testing.assert_allclose(fast.arrays[k], a, rtol=1e-12, atol=1e-9, err_msg=k)


@pytest.mark.parametrize(
    "columns",
    [[0, 1, 2, 5, 6, 9], [3], [9, 2, 4], list(range(10)), [0, 2, 4, 6, 8], []],
)
def test_gather_columns_is_a_gather(columns):
    a = np.arange(30, dtype=np.uint8).reshape(3, 10)
    got = packed.gather_columns(a, np.asarray(columns, dtype=np.int64))
    assert np.array_equal(got, a[:, columns]) and got.shape == (3, len(columns))
