"""The fused genotype kernels against the straightforward numpy computation.

Random int8 calls with missing alleles (-1), fill (-2, a haploid call in a
diploid array), allele indices 2 and 3 (multi-allelic sites; every ALT counts)
and arbitrary bytes. Integer sums (AC, n_called, n_obs, sum x, sum x^2) must be
equal bit for bit; the GWAS's weighted sums equal to 1e-12 of the sum of the
terms' magnitudes (a different summation order). The Dask driver is run over
stores chunked along both axes, with people and variants selected out of order.
"""

from __future__ import annotations

from functools import partial

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from extensions.federation import kernels
from extensions.federation.cohorts import ZARR, ZarrCohort
from extensions.federation.tasks import regression as rg

REL = 1e-12


def random_calls(rng, v=37, n=53, ploidy=2, missing=0.05, odd=True):
    """int8 calls: mostly 0/1, some multi-allelic 2/3, missing -1, haploid fill -2."""
    calls = rng.binomial(1, rng.uniform(0.05, 0.6, (v, 1, 1)), (v, n, ploidy)).astype(np.int8)
    if odd:
        calls[rng.random(calls.shape) < 0.03] = 2
        calls[rng.random(calls.shape) < 0.02] = 3
        if ploidy > 1:
            calls[rng.random((v, n)) < 0.04, -1] = -2  # haploid-looking calls
    calls[rng.random(calls.shape) < missing / ploidy] = -1
    return calls


def reference_dosage(calls):
    """cohorts.ZarrCohort.dosage, as numpy: NaN missing, else the count of alleles > 0."""
    missing = (calls == -1).any(axis=2)
    alt = (calls > 0).sum(axis=2, dtype=np.int16)
    return np.where(missing, np.nan, alt.astype(np.float64))


def close(a, b, scale):
    """|a - b| within REL of the sum of the terms' magnitudes (`scale`), elementwise."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    assert np.all(np.abs(a - b) <= REL * np.maximum(scale, 1e-300)), np.max(np.abs(a - b))


# ---------------------------------------------------------------------------
# codes


def test_the_pair_table_is_the_definition_for_every_pair_of_bytes():
    pairs = np.arange(1 << 16, dtype=np.uint16).view(np.int8).reshape(-1, 1, 2)
    dosage = reference_dosage(pairs)[:, 0]
    codes = kernels.genotype_codes(pairs.reshape(-1, 1, 2))[:, 0]
    assert np.array_equal(codes == kernels.MISSING, np.isnan(dosage))
    assert np.array_equal(codes[~np.isnan(dosage)], dosage[~np.isnan(dosage)])


@pytest.mark.parametrize(
    "call, code",
    [
        ((0, 0), 0),
        ((0, 1), 1),
        ((1, 1), 2),
        ((1, -2), 1),  # haploid ALT in a diploid array
        ((0, -2), 0),
        ((-2, -2), 0),  # fill only: not missing (no -1), no ALT, as cohorts.dosage has it
        ((-1, -2), kernels.MISSING),
        ((-1, 1), kernels.MISSING),  # half-missing is missing
        ((2, 3), 2),  # multi-allelic: every ALT counts
        ((0, 3), 1),
    ],
    ids=lambda x: str(x),
)
def test_codes_of_calls(call, code):
    assert kernels.genotype_codes(np.array([[call]], dtype=np.int8))[0, 0] == code


@pytest.mark.parametrize("ploidy", [1, 2, 3])
def test_codes_equal_the_dosage_with_rows_and_columns_selected(ploidy):
    rng = np.random.default_rng(ploidy)
    calls = random_calls(rng, ploidy=ploidy)
    rows = np.array([5, 0, 30, 30, 11])
    columns = np.array([52, 3, 4, 0, 17, 17])
    dosage = reference_dosage(calls)[rows][:, columns]
    codes = kernels.genotype_codes(calls, rows, columns)
    assert codes.dtype == np.uint8
    assert np.array_equal(codes == kernels.MISSING, np.isnan(dosage))
    assert np.array_equal(codes[~np.isnan(dosage)], dosage[~np.isnan(dosage)])
    assert np.array_equal(kernels.codes_from_dosage(dosage), codes)


def test_wide_allele_indices_take_the_definition():
    calls = random_calls(np.random.default_rng(2)).astype(np.int16)
    calls[0, :3] = [[300, 0], [-1, 200], [-2, 129]]  # bio2zarr's int16 for > 127 alleles
    dosage = reference_dosage(calls)
    codes = kernels.genotype_codes(calls)
    assert np.array_equal(kernels.codes_from_dosage(dosage), codes)
    assert list(codes[0, :3]) == [1, kernels.MISSING, 1]


def test_genotype_codes_takes_a_non_contiguous_chunk():
    calls = random_calls(np.random.default_rng(1))
    view = calls[::2, 1::3]
    assert np.array_equal(kernels.genotype_codes(view), kernels.codes_of(view))


# ---------------------------------------------------------------------------
# kernels against numpy


def reference_counts(dosage, strata, n_strata):
    called = ~np.isnan(dosage)
    x = np.where(called, dosage, 0.0)
    indicator = np.zeros((strata.size, n_strata))
    indicator[np.arange(strata.size), strata] = 1.0
    return x @ indicator, called.astype(np.float64) @ indicator


@pytest.mark.parametrize("grouped", [True, False], ids=["grouped", "interleaved"])
@pytest.mark.parametrize("n_strata", [1, 3, 8])
def test_allele_counts_are_exact(grouped, n_strata):
    rng = np.random.default_rng(n_strata)
    calls = random_calls(rng, v=41, n=97)
    strata = rng.integers(0, n_strata, 97)
    if n_strata > 3:
        strata[strata == 5] = 4  # a stratum nobody is in
    order = np.argsort(strata, kind="stable") if grouped else np.arange(97)
    codes = kernels.genotype_codes(calls, columns=order)
    got = kernels.allele_counts(codes, strata[order], n_strata)
    ac, n_called = reference_counts(reference_dosage(calls)[:, order], strata[order], n_strata)
    assert np.array_equal(got["ac"], ac)
    assert np.array_equal(got["n_called"], n_called)
    if n_strata == 8:
        assert not got["n_called"][:, 5].any()


def test_allele_counts_of_no_one_and_no_variant_are_zeros_in_shape():
    empty = kernels.allele_counts(np.zeros((4, 0), np.uint8), np.zeros(0, np.int64), 3)
    assert empty["ac"].shape == empty["n_called"].shape == (4, 3)
    assert not empty["ac"].any()
    none = kernels.allele_counts(np.zeros((0, 5), np.uint8), np.zeros(5, np.int64), 2)
    assert none["ac"].shape == (0, 2)


def test_dosage_counts_are_exact():
    calls = random_calls(np.random.default_rng(3))
    dosage = reference_dosage(calls)
    got = kernels.dosage_counts(kernels.genotype_codes(calls))
    assert np.array_equal(got["n_obs"], (~np.isnan(dosage)).sum(axis=1).astype(float))
    assert np.array_equal(got["sum_x"], np.nansum(dosage, axis=1))


def model(rng, n, p):
    y = rng.normal(size=n) * 3.0 + 1.0
    Z = np.column_stack([rng.integers(2, 9, n).astype(float), rng.integers(0, 2, n)])[:, :p]
    return rg.ModelData(np.arange(n), y, np.ascontiguousarray(Z, dtype=float), ("a", "b")[:p])


@pytest.mark.parametrize("p", [0, 1, 2])
@pytest.mark.parametrize("missing", [0.0, 0.005, 0.3])
def test_linear_sums_equal_genotype_sums(p, missing, monkeypatch):
    rng = np.random.default_rng(int(missing * 1000) + p)
    monkeypatch.setattr(kernels, "CACHE_VALUES", 500)  # several blocks of variants
    calls = random_calls(rng, v=64, n=120, missing=missing)
    data = model(rng, 120, p)
    dosage = reference_dosage(calls)
    want = rg.genotype_sums(dosage, data)
    got = kernels.linear_sums(kernels.genotype_codes(calls), data.y, data.Z)
    assert list(got) == list(rg.LINEAR_PER_VARIANT)
    for k in ("n_obs", "sum_x", "sum_xx"):
        assert np.array_equal(got[k], want[k]), k
    for k, scale in linear_scales(dosage, data).items():
        close(got[k], want[k], scale)
    assert got["sum_xz"].shape == got["miss_z"].shape == (64, p)


def linear_scales(dosage, data):
    """The sums of the magnitudes of the terms of each weighted linear sum."""
    x = np.where(np.isnan(dosage), 0.0, dosage)
    m = np.isnan(dosage).astype(float)
    return {
        "sum_xy": x @ np.abs(data.y),
        "miss_y": m @ np.abs(data.y),
        "sum_xz": x @ np.abs(data.Z),
        "miss_z": m @ np.abs(data.Z),
    }


def reference_score_fisher(dosage, data, b_local, mean):
    """Per variant, with the design written out: D = [1, Z, x], score D'(y - mu), fisher D'WD."""
    V = dosage.shape[0]
    d = data.Z.shape[1] + 2
    score, fisher = np.empty((V, d)), np.empty((V, d, d))
    sw, sw2 = np.empty(V), np.empty(V)
    for i in range(V):
        x = np.where(np.isnan(dosage[i]), mean[i], dosage[i])
        D = np.column_stack([np.ones(data.n), data.Z, x])
        mu = 1.0 / (1.0 + np.exp(-(D @ b_local[i])))
        w = mu * (1 - mu)
        score[i] = D.T @ (data.y - mu)
        fisher[i] = D.T @ (D * w[:, None])
        sw[i], sw2[i] = w.sum(), w @ w
    return score, fisher, sw, sw2


@pytest.mark.parametrize(
    "path, grouped",
    [("per person", False), ("by class", True), ("by class", False)],
    ids=["per-person", "by-class-grouped", "by-class-runs-of-one"],
)
@pytest.mark.parametrize("p", [0, 2])
def test_score_fisher_equals_the_design_written_out(p, path, grouped, monkeypatch):
    rng = np.random.default_rng(10 + p)
    monkeypatch.setattr(kernels, "CACHE_VALUES", 700)
    monkeypatch.setattr(kernels, "CLASS_FRACTION", 10**9 if path == "per person" else 1)
    calls = random_calls(rng, v=30, n=90, missing=0.05)
    data = model(rng, 90, p)
    data.y = (rng.random(90) < 0.4).astype(float)
    if grouped:
        order = np.lexsort(np.column_stack([data.y, data.Z]).T)
        calls, data.y, data.Z = calls[:, order], data.y[order], data.Z[order]
        assert kernels.person_classes(data.y, data.Z)[0].size <= 2 * 7 * 2
    dosage = reference_dosage(calls)
    mean = np.nan_to_num(np.nanmean(dosage, axis=1))
    b = rng.normal(0, 0.3, (30, p + 2))
    got = kernels.score_fisher(kernels.genotype_codes(calls), data.y, data.Z, b, mean)
    score, fisher, sw, sw2 = reference_score_fisher(dosage, data, b, mean)
    # every term of every sum is at most (1 + |z| + |x|)^2 in magnitude
    x = np.where(np.isnan(dosage), mean[:, None], dosage)
    scale = ((1.0 + np.abs(data.Z).sum(axis=1))[None, :] + x) ** 2
    scale = scale.sum(axis=1)
    close(got["score"], score, scale[:, None])
    close(got["fisher"], fisher, scale[:, None, None])
    close(got["sum_w"], sw, 90.0)
    close(got["sum_w2"], sw2, 90.0)
    assert np.array_equal(got["n_obs"], (~np.isnan(dosage)).sum(axis=1).astype(float))
    assert np.array_equal(got["sum_x"], np.nansum(dosage, axis=1))
    # the regression module's entry (dosages, NaN missing) is the same kernel
    again = rg.variant_score_fisher(dosage, data, b, mean)
    for a, k in zip(again, ("score", "fisher", "sum_w", "sum_w2"), strict=True):
        close(a, got[k], np.abs(got[k]) + 1.0)


# ---------------------------------------------------------------------------
# the Dask driver: one task per chunk, selections, order


@pytest.fixture
def chunked():
    rng = np.random.default_rng(5)
    calls = random_calls(rng, v=50, n=70)
    return calls, da.from_array(calls, chunks=(8, 25, 1))  # ploidy split too: rechunked


def test_reduce_chunks_equals_the_kernel_on_the_whole_array(chunked):
    calls, dask_calls = chunked
    rng = np.random.default_rng(6)
    rows = np.array([49, 3, 3, 17, 0, 40, 8])  # out of order, repeated, across chunks
    columns = np.sort(rng.choice(70, 40, replace=False))[::-1].copy()  # reversed
    strata = rng.integers(0, 3, columns.size)
    kernel = partial(kernels.allele_counts, n_strata=3)
    got = kernels.reduce_chunks(dask_calls, kernel, columns, rows, (strata,))
    want = kernel(kernels.genotype_codes(calls, rows, columns), strata)
    for k in want:
        assert np.array_equal(got[k], want[k]), k


def test_reduce_chunks_carries_per_variant_arguments(chunked):
    calls, dask_calls = chunked
    rng = np.random.default_rng(7)
    mask = rng.random(70) < 0.7
    rows = np.array([30, 2, 44, 9])
    data = model(rng, int(mask.sum()), 2)
    data.y = (rng.random(data.n) < 0.5).astype(float)
    b = rng.normal(0, 0.2, (4, 4))
    mean = rng.uniform(0, 2, 4)
    got = kernels.reduce_chunks(
        dask_calls, kernels.score_fisher, mask, rows, (data.y, data.Z), (b, mean)
    )
    want = kernels.score_fisher(
        kernels.genotype_codes(calls, rows, np.flatnonzero(mask)), data.y, data.Z, b, mean
    )
    for k in want:
        close(got[k], want[k], np.abs(want[k]) + 1.0)  # chunks of people added in another order


def test_reduce_chunks_with_no_variants_or_no_people_gives_zeros_in_shape(chunked):
    _, dask_calls = chunked
    y, Z = np.zeros(0), np.zeros((0, 2))
    none = kernels.reduce_chunks(
        dask_calls, kernels.linear_sums, np.zeros(0, np.int64), None, (y, Z)
    )
    assert none["sum_xz"].shape == (50, 2) and not none["sum_xz"].any()
    assert not none["n_obs"].any()
    rows = kernels.reduce_chunks(dask_calls, kernels.dosage_counts, rows=np.zeros(0, np.int64))
    assert rows["n_obs"].shape == (0,)


def test_zarr_cohort_reduces_calls_as_its_dosage_gives_them(tmp_path):
    """A store chunked along both axes, with odd codes: the Dask half's counts equal the
    float64 dosage path's bit for bit, and the linear sums agree."""
    rng = np.random.default_rng(8)
    calls = random_calls(rng, v=45, n=60)
    ds = xr.Dataset({"call_genotype": (("variants", "samples", "ploidy"), calls)})
    ds.chunk({"variants": 10, "samples": 16}).to_zarr(tmp_path / ZARR, zarr_format=2)
    cohort = ZarrCohort(tmp_path, "site", "dataset")
    assert cohort.ds["call_genotype"].data.numblocks == (5, 4, 1)

    mask = rng.random(60) < 0.8
    strata = rng.integers(0, 2, 60)[mask]
    by = np.argsort(strata, kind="stable")
    rows = np.array([44, 1, 20, 2])
    got = cohort.reduce_calls(
        partial(kernels.allele_counts, n_strata=2),
        columns=np.flatnonzero(mask)[by],
        rows=rows,
        column_args=(strata[by],),
    )
    dosage = np.asarray(cohort.dosage(columns=mask, rows=rows).compute())
    ac, n_called = reference_counts(dosage, strata, 2)
    assert np.array_equal(got["ac"], ac) and np.array_equal(got["n_called"], n_called)

    data = model(rng, int(mask.sum()), 2)
    data.columns = np.flatnonzero(mask)
    sums = cohort.reduce_calls(kernels.linear_sums, data.columns, None, (data.y, data.Z))
    want = rg.genotype_sums(np.asarray(cohort.dosage(columns=mask).compute()), data)
    for k in ("n_obs", "sum_x", "sum_xx"):
        assert np.array_equal(sums[k], want[k]), k
    for k, scale in linear_scales(np.asarray(cohort.dosage(columns=mask).compute()), data).items():
        close(sums[k], want[k], scale)


def test_what_a_task_returns_grows_with_variants_not_people():
    rng = np.random.default_rng(9)
    sizes = {}
    for n in (40, 400):
        calls = da.from_array(random_calls(rng, v=30, n=n), chunks=(10, 100, 2))
        data = model(rng, n, 2)
        got = kernels.reduce_chunks(calls, kernels.linear_sums, None, None, (data.y, data.Z))
        sizes[n] = sum(a.nbytes for a in got.values())
    assert sizes[40] == sizes[400] == 30 * 8 * (5 + 2 * 2)


def test_counts_leave_a_worker_as_int32_and_arrive_as_the_same_float64():
    """What a chunk's task returns is compacted (whole numbers as int32, half the bytes) and
    widened again where it arrives: the sums are the very same; fractions stay float64."""
    sums = {
        "ac": np.array([0.0, 3.0, 4000.0]),
        "sum_xy": np.array([0.5, 1.25, -2.0]),
        "huge": np.array([0.0, 2.0**40]),
        "empty": np.zeros(0),
        "negative": np.array([-3.0, 5.0]),
        "integers": np.array([1, 300], dtype=np.int64),
    }
    packed = kernels.compact(sums)
    assert packed["negative"].dtype == np.int32 and packed["integers"].dtype == np.uint16
    assert packed["ac"].dtype == np.uint16 and packed["ac"].nbytes == sums["ac"].nbytes // 4
    assert [packed[k].dtype for k in ("sum_xy", "huge", "empty")] == [np.float64] * 3
    back = kernels.widen(packed)
    for k, a in sums.items():
        assert back[k].dtype == np.float64
        np.testing.assert_array_equal(back[k], a)
    added = kernels.widen(kernels._add(packed, packed))
    np.testing.assert_array_equal(added["ac"], 2 * sums["ac"])
    np.testing.assert_array_equal(added["sum_xy"], 2 * sums["sum_xy"])


def test_mostly_zero_sums_travel_sparse_and_come_back_exact():
    rng = np.random.default_rng(12)
    miss = np.zeros((500, 3))
    miss[rng.integers(0, 500, 40), rng.integers(0, 3, 40)] = rng.normal(size=40)
    dense = rng.normal(size=(500, 3))
    packed = kernels.compact({"miss_z": miss, "sum_xz": dense, "few": np.zeros(10)})
    assert isinstance(packed["miss_z"], kernels.Sparse)
    assert packed["miss_z"].nbytes < miss.nbytes // 5
    assert isinstance(packed["sum_xz"], np.ndarray) and isinstance(packed["few"], np.ndarray)
    back = kernels.widen(packed)
    np.testing.assert_array_equal(back["miss_z"], miss)
    assert back["miss_z"].dtype == np.float64 and back["miss_z"].shape == (500, 3)
    added = kernels.widen(kernels._add(packed, packed))
    np.testing.assert_array_equal(added["miss_z"], 2 * miss)
    from dask.sizeof import sizeof

    assert sizeof(packed["miss_z"]) == packed["miss_z"].nbytes


def test_the_information_travels_as_its_upper_triangle():
    rng = np.random.default_rng(13)
    data = model(rng, 80, 2)
    codes = kernels.genotype_codes(random_calls(rng, v=30, n=80))
    b = rng.normal(scale=0.1, size=(30, 4))
    mean = np.full(30, 0.5)
    full = kernels.score_fisher(codes, data.y, data.Z, b, mean)
    upper = kernels.score_fisher_upper(codes, data.y, data.Z, b, mean)
    assert upper["fisher_upper"].shape == (30, 10) and "fisher" not in upper
    back = kernels.fisher_of_upper(upper["fisher_upper"], 4)
    np.testing.assert_allclose(back, full["fisher"], rtol=1e-14, atol=1e-12)
    np.testing.assert_array_equal(back, np.swapaxes(back, 1, 2))
