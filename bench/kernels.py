"""The per-site halves' Dask code before and after the fused kernels, in one process.

Random calls (default 20,000 variants x 2,000 people, diploid int8 as in the
VCF Zarr store, allele frequencies uniform in 0.01..0.5, 0.5 % of calls
missing) held in memory as a dask array chunked like the stores ingest writes
(1,000 variants x all people). Both paths run through dask's synchronous
scheduler, BLAS on one thread: what one single-threaded site worker does,
without reading or decompressing the store.

- "before": the code of the tasks' Dask halves until now, copied here:
  `ZarrCohort.dosage` (a float64 dosage, NaN missing, from
  `(gt == -1).any(axis=2)` and `(gt > 0).sum(axis=2)`), then the sums as
  products with an indicator matrix (allele_frequencies) or per block of
  `ZarrCohort.dosage_blocks` (`regression.genotype_sums`, the logistic setup
  sums, and `variant_score_fisher` as it was);
- "after": `kernels.reduce_chunks` with the kernels the halves use now, given
  what the tasks give them (the logistic round's people ordered by phenotype
  and covariates, which the kernel then counts by class and dosage).

Rows: allele frequencies of everyone; of a `where` (about 60 % of people)
stratified by age band (7 strata); the linear GWAS (2 covariates, 2 % of
people left out as incomplete); the logistic GWAS's setup round and one
Newton round over every variant. Each row asserts that both paths give the
same answer (counts bit for bit, weighted sums to 1e-12 of the sum of their
terms' magnitudes) and prints the largest relative difference found.

    .venv/bin/python bench/kernels.py [--variants 20000] [--samples 2000] [--repeat 1]

About half a minute at the defaults, nearly all of it the "before" path.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", type=int, default=20_000)
    ap.add_argument("--samples", type=int, default=2_000)
    ap.add_argument("--chunk", type=int, default=1_000, help="variants per chunk of the store")
    ap.add_argument("--missing", type=float, default=0.005, help="fraction of calls missing")
    ap.add_argument("--repeat", type=int, default=1, help="runs per path; the best is kept")
    ap.add_argument("--seed", type=int, default=2026)
    return ap.parse_args(argv)


ARGS = parse_args()
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

from functools import partial  # noqa: E402

import dask  # noqa: E402
import dask.array as da  # noqa: E402
import numpy as np  # noqa: E402

from extensions.federation import kernels  # noqa: E402
from extensions.federation.cohorts import BLOCK_VALUES  # noqa: E402
from extensions.federation.tasks import regression as rg  # noqa: E402

AGE_BANDS = 7
REL = 1e-12


# ---------------------------------------------------------------------------
# the workload


def random_calls(rng, v: int, n: int, missing: float) -> np.ndarray:
    af = rng.uniform(0.01, 0.5, v)
    threshold = (af * 65536).astype(np.uint32)[:, None, None]
    calls = (rng.integers(0, 65536, (v, n, 2), dtype=np.uint16) < threshold).astype(np.int8)
    calls[rng.random((v, n), dtype=np.float32) < missing] = -1
    return calls


def random_model(rng, n: int, logistic: bool) -> rg.ModelData:
    complete = np.flatnonzero(rng.random(n) >= 0.02)
    m = complete.size
    Z = np.column_stack([rng.integers(2, 9, m) / 1.0, rng.integers(0, 2, m) / 1.0])
    y = (rng.random(m) < 0.4) * 1.0 if logistic else rng.normal(0, 1, m) + 0.1 * Z[:, 0]
    return rg.ModelData(complete, y, Z, ("age_band", "sex"))


# ---------------------------------------------------------------------------
# before: the tasks' Dask halves as they were


def old_dosage(gt, columns=None):
    """ZarrCohort.dosage as it is (and was): float64, NaN missing."""
    if columns is not None:
        gt = gt[:, np.asarray(columns), :]
    missing = (gt == -1).any(axis=2)
    alt = (gt > 0).sum(axis=2, dtype=np.int16)
    return da.where(missing, np.nan, alt.astype(np.float64))


def old_blocks(gt, columns, chunk):
    """ZarrCohort.dosage_blocks: about BLOCK_VALUES float64 dosages per block, whole chunks."""
    dos = old_dosage(gt, columns)
    n = int(dos.shape[0])
    rows = max(1, BLOCK_VALUES // int(dos.shape[1]))
    step = chunk * (rows // chunk) if rows >= chunk else rows
    for lo in range(0, n, step):
        hi = min(lo + step, n)
        yield slice(lo, hi), np.asarray(dos[lo:hi].compute())


def old_allele_frequencies(gt, mask, strata, n_strata):
    indicator = np.zeros((strata.size, n_strata))
    indicator[np.arange(strata.size), strata] = 1.0
    dosage = old_dosage(gt, None if mask.all() else mask)
    called = ~da.isnan(dosage)
    ac, n_called = dask.compute(
        da.where(called, dosage, 0.0) @ indicator, called.astype(np.float64) @ indicator
    )
    return {"ac": np.asarray(ac), "n_called": np.asarray(n_called)}


def old_linear(gt, data, chunk):
    V, p = gt.shape[0], data.Z.shape[1]
    sums = {k: np.zeros((V, p) if k in ("sum_xz", "miss_z") else V) for k in rg.LINEAR_PER_VARIANT}
    for rows, G in old_blocks(gt, data.columns, chunk):
        for k, v in rg.genotype_sums(G, data).items():
            sums[k][rows] = v
    return sums


def old_setup(gt, data, chunk):
    V = gt.shape[0]
    out = {"n_obs": np.zeros(V), "sum_x": np.zeros(V)}
    for rows, G in old_blocks(gt, data.columns, chunk):
        called = ~np.isnan(G)
        out["n_obs"][rows] = called.sum(axis=1)
        out["sum_x"][rows] = np.where(called, G, 0.0).sum(axis=1)
    return out


def old_variant_score_fisher(G, data, b_local, mean):
    """regression.variant_score_fisher as it was before the kernels."""
    p = data.Z.shape[1]
    X = np.where(np.isnan(G), mean[:, None], G)
    eta = b_local[:, :1] + b_local[:, 1 : p + 1] @ data.Z.T + b_local[:, p + 1 :] * X
    mu = rg.sigmoid(eta)
    w = mu * (1.0 - mu)
    r = data.y[None, :] - mu
    B = G.shape[0]
    d = p + 2
    score = np.empty((B, d))
    score[:, 0] = r.sum(axis=1)
    score[:, 1 : p + 1] = r @ data.Z
    score[:, p + 1] = np.einsum("ij,ij->i", r, X)
    wx = w * X
    fisher = np.empty((B, d, d))
    fisher[:, 0, 0] = w.sum(axis=1)
    fisher[:, 0, p + 1] = wx.sum(axis=1)
    fisher[:, p + 1, p + 1] = np.einsum("ij,ij->i", wx, X)
    if p:
        zz = (data.Z[:, :, None] * data.Z[:, None, :]).reshape(data.n, p * p)
        fisher[:, 1 : p + 1, 1 : p + 1] = (w @ zz).reshape(B, p, p)
        fisher[:, 0, 1 : p + 1] = w @ data.Z
        fisher[:, p + 1, 1 : p + 1] = wx @ data.Z
        fisher[:, 1 : p + 1, 0] = fisher[:, 0, 1 : p + 1]
        fisher[:, 1 : p + 1, p + 1] = fisher[:, p + 1, 1 : p + 1]
    fisher[:, p + 1, 0] = fisher[:, 0, p + 1]
    return score, fisher, w.sum(axis=1), np.einsum("ij,ij->i", w, w)


def old_variant_round(gt, data, b_local, mean, chunk):
    V, D = gt.shape[0], data.Z.shape[1] + 2
    out = {
        "score": np.zeros((V, D)),
        "fisher": np.zeros((V, D, D)),
        "n_obs": np.zeros(V),
        "sum_x": np.zeros(V),
        "sum_w": np.zeros(V),
        "sum_w2": np.zeros(V),
    }
    for sl, G in old_blocks(gt, data.columns, chunk):
        score, fisher, sw, sw2 = old_variant_score_fisher(G, data, b_local[sl], mean[sl])
        called = ~np.isnan(G)
        out["score"][sl], out["fisher"][sl] = score, fisher
        out["sum_w"][sl], out["sum_w2"][sl] = sw, sw2
        out["n_obs"][sl] = called.sum(axis=1)
        out["sum_x"][sl] = np.where(called, G, 0.0).sum(axis=1)
    return out


# ---------------------------------------------------------------------------
# measuring


def best_of(fn, repeat: int):
    best, result = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def compare(before: dict, after: dict, exact: tuple, scales: dict) -> float:
    """Assert the two answers agree; the largest difference relative to its scale."""
    worst = 0.0
    for k in before:
        a, b = np.asarray(before[k]), np.asarray(after[k])
        assert a.shape == b.shape, (k, a.shape, b.shape)
        if k in exact:
            assert np.array_equal(a, b), f"{k}: not bit for bit equal"
            continue
        scale = np.maximum(np.broadcast_to(scales[k], a.shape), 1e-300)
        rel = float(np.max(np.abs(a - b) / scale)) if a.size else 0.0
        assert rel <= REL, f"{k}: relative difference {rel:.1e}"
        worst = max(worst, rel)
    return worst


def linear_scales(calls, data):
    """Sums of the magnitudes of the terms of the weighted linear sums."""
    codes = kernels.genotype_codes(calls, columns=data.columns)
    x = np.where(codes == kernels.MISSING, 0.0, codes)
    m = (codes == kernels.MISSING) * 1.0
    return {
        "sum_xy": x @ np.abs(data.y),
        "sum_xz": x @ np.abs(data.Z),
        "miss_y": m @ np.abs(data.y),
        "miss_z": m @ np.abs(data.Z),
    }


def logistic_scales(calls, data, mean):
    """A bound on the terms' magnitudes of the score and information: (1 + |z| + x)^2."""
    codes = kernels.genotype_codes(calls, columns=data.columns)
    x = np.where(codes == kernels.MISSING, mean[:, None], codes)
    scale = (((1.0 + np.abs(data.Z).sum(axis=1))[None, :] + x) ** 2).sum(axis=1)
    return {
        "score": scale[:, None],
        "fisher": scale[:, None, None],
        "sum_w": float(data.n),
        "sum_w2": float(data.n),
    }


def main() -> int:
    rng = np.random.default_rng(ARGS.seed)
    V, N = ARGS.variants, ARGS.samples
    t = time.perf_counter()
    calls = random_calls(rng, V, N, ARGS.missing)
    gt = da.from_array(calls, chunks=(ARGS.chunk, N, 2))
    print(
        f"{V:,} variants x {N:,} people, chunks of {ARGS.chunk:,} variants, "
        f"{ARGS.missing:.1%} missing; made in {time.perf_counter() - t:.1f} s; "
        f"1 thread, best of {ARGS.repeat}"
    )

    everyone = np.ones(N, dtype=bool)
    where = rng.random(N) < 0.6
    bands = rng.integers(0, AGE_BANDS, N)
    linear = random_model(rng, N, logistic=False)
    logistic = random_model(rng, N, logistic=True)
    setup = kernels.dosage_counts(kernels.genotype_codes(calls, columns=logistic.columns))
    mean = setup["sum_x"] / setup["n_obs"]
    b = np.column_stack(
        [np.full(V, -0.4), rng.normal(0, 0.1, (V, 2)), rng.normal(0, 0.3, V)]
    )  # [site, age, sex, x]: a round after the start

    # as the task orders them: by (y, covariates), so that the kernel counts classes
    by_class = np.lexsort(np.column_stack([logistic.y, logistic.Z]).T)

    def af_after(mask, strata, n_strata):
        by = np.argsort(strata, kind="stable")
        return kernels.reduce_chunks(
            gt,
            partial(kernels.allele_counts, n_strata=n_strata),
            np.flatnonzero(mask)[by],
            None,
            (strata[by],),
        )

    cases = [
        (
            "allele_frequencies, everyone",
            N,
            lambda: old_allele_frequencies(gt, everyone, np.zeros(N, np.int64), 1),
            lambda: af_after(everyone, np.zeros(N, np.int64), 1),
            ("ac", "n_called"),
            {},
        ),
        (
            "allele_frequencies, where (60 %) by age band",
            int(where.sum()),
            lambda: old_allele_frequencies(gt, where, bands[where], AGE_BANDS),
            lambda: af_after(where, bands[where], AGE_BANDS),
            ("ac", "n_called"),
            {},
        ),
        (
            "gwas_linear sums",
            linear.n,
            lambda: old_linear(gt, linear, ARGS.chunk),
            lambda: kernels.reduce_chunks(
                gt, kernels.linear_sums, linear.columns, None, (linear.y, linear.Z)
            ),
            ("n_obs", "sum_x", "sum_xx"),
            linear_scales(calls, linear),
        ),
        (
            "gwas_logistic setup (n_obs, sum_x)",
            logistic.n,
            lambda: old_setup(gt, logistic, ARGS.chunk),
            lambda: kernels.reduce_chunks(gt, kernels.dosage_counts, logistic.columns),
            ("n_obs", "sum_x"),
            {},
        ),
        (
            "gwas_logistic Newton round, all variants",
            logistic.n,
            lambda: old_variant_round(gt, logistic, b, mean, ARGS.chunk),
            lambda: kernels.reduce_chunks(
                gt,
                kernels.score_fisher,
                logistic.columns[by_class],
                None,
                (logistic.y[by_class], logistic.Z[by_class]),
                (b, mean),
            ),
            ("n_obs", "sum_x"),
            logistic_scales(calls, logistic, mean),
        ),
    ]

    header = f"{'site half (Dask)':44} {'before s':>9} {'after s':>8} {'ns/call':>8} {'speed-up':>9} {'max rel diff':>13}"
    print(header)
    print("-" * len(header))
    with dask.config.set(scheduler="synchronous"):
        for name, people, before, after, exact, scales in cases:
            t_before, r_before = best_of(before, ARGS.repeat)
            t_after, r_after = best_of(after, ARGS.repeat)
            worst = compare(r_before, r_after, exact, scales)
            per_call = t_after / (V * people) * 1e9
            print(
                f"{name:44} {t_before:9.2f} {t_after:8.3f} {per_call:8.2f} "
                f"{t_before / t_after:8.1f}x {worst:13.1e}"
            )
    print(
        "ns/call: the kernel's time per call summed over (variants x people summed over); "
        "counts are bit for bit equal (max rel diff 0 unless weighted sums)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
