"""The pooled references of bench/federation.py, at their best, and the exactness comparisons.

On the same people pooled (bench/federation_data.py):

- `plink2` on the pooled pgen, `--threads 2`: `--freq` (with `--keep` for the
  filtered query), `--glm` linear on quant_trait and logistic ('no-firth', as
  Hail's Wald test) on case_status, covariates an indicator per site but the
  first (PLINK adds the intercept), age in decades, sex;
- `hail` on the pooled MatrixTable, local[2]: `variant_qc` (after
  `filter_cols` for the filtered query), `linear_regression_rows` and
  `logistic_regression_rows(test='wald')` with covariates one indicator per
  site, age in decades, sex (the federated model); each in a process of its
  own whose JVM start is not timed;
- `numpy_pooled`: the best plain code on the pooled Zarr store, which is the
  sites' own fused kernels (`extensions.federation.kernels`) run by
  `kernels.reduce_chunks` over every chunk of the pooled calls on dask's
  threads (two, BLAS on one each): `allele_counts`; `linear_sums` with the
  design [1, site indicators but the first, age, sex] solved by
  `regression.pool_linear`/`solve_linear`; Newton-Raphson with
  `score_fisher` and Hail's rules (start, tolerance 1e-6, 25 iterations,
  converged / exploded) for the logistic model.

Every reference's answer is keyed by "contig:pos:ref:alt" for the comparisons.
"""

from __future__ import annotations

import math
import tempfile
from functools import partial
from pathlib import Path

import numpy as np

from bench.federation_procs import run_tool

PLINK_MEMORY_MB = 3000
TOLERANCE = 1e-6  # Hail's logistic_regression_rows defaults, and the task's
MAX_ITERATIONS = 25


# ---------------------------------------------------------------------------
# the pooled people


def pooled_table(pooled: Path):
    """samples.tsv in the pooled store's column order, with the model's columns."""
    import pandas as pd

    return pd.read_csv(pooled / "samples.tsv", sep="\t", dtype={"sample_id": str}).set_index(
        "sample_id"
    )


def design(table) -> tuple[np.ndarray, list[str]]:
    """Z of the pooled model with an intercept: an indicator per site but the first, age, sex."""
    sites = list(dict.fromkeys(table["site"]))
    Z = np.column_stack(
        [(table["site"] == s).to_numpy(float) for s in sites[1:]]
        + [table["age"].to_numpy(float), table["male"].to_numpy(float)]
    )
    return Z, sites


# ---------------------------------------------------------------------------
# numpy_pooled: the kernels over the pooled calls


def pooled_calls(pooled: Path):
    import warnings

    import xarray as xr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ds = xr.open_zarr(pooled / "pooled.vcf.zarr", chunks={}, consolidated=False)
    keys = [str(k) for k in ds["variant_id"].values]
    return ds["call_genotype"].data, keys


def numpy_allele_frequencies(pooled: Path, where: dict | None = None):
    import pandas as pd

    from extensions.federation import kernels
    from extensions.federation.cohorts import select

    calls, keys = pooled_calls(pooled)
    columns = None
    if where:
        columns = np.flatnonzero(select(pooled_table(pooled), where))
    m = calls.shape[1] if columns is None else columns.size
    sums = kernels.reduce_chunks(
        calls,
        partial(kernels.allele_counts, n_strata=1),
        columns=columns,
        column_args=(np.zeros(m, dtype=np.int64),),
    )
    ac, an = sums["ac"][:, 0], 2.0 * sums["n_called"][:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        af = ac / an
    return pd.DataFrame({"AC": ac, "AN": an, "AF": af}, index=keys)


def numpy_linear(pooled: Path):
    import pandas as pd

    from extensions.federation import kernels
    from extensions.federation.tasks import regression as rg

    calls, keys = pooled_calls(pooled)
    table = pooled_table(pooled)
    Z, _ = design(table)
    y = table["quant_trait"].to_numpy(float)
    data = rg.ModelData(np.arange(y.size), y, Z, tuple(f"z{i}" for i in range(Z.shape[1])))
    sums = kernels.reduce_chunks(calls, kernels.linear_sums, column_args=(y, Z))
    one = {**rg.covariate_sums(data), "n": data.n, **sums}
    fit = rg.solve_linear(rg.pool_linear([one], Z.shape[1]))
    columns = ("beta", "standard_error", "t_stat", "p_value")
    return pd.DataFrame({k: fit[k] for k in columns}, index=keys)


def numpy_logistic(pooled: Path):
    """Wald logistic regression per variant by Newton-Raphson on the kernels' sums (Hail's rules)."""
    import pandas as pd

    from extensions.federation import kernels
    from extensions.federation.tasks import regression as rg

    calls, keys = pooled_calls(pooled)
    table = pooled_table(pooled)
    Z, _ = design(table)
    y = table["case_status"].to_numpy(float)
    data = rg.ModelData(np.arange(y.size), y, Z, ())
    V, d = len(keys), Z.shape[1] + 2

    counts = kernels.reduce_chunks(calls, kernels.dosage_counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = counts["sum_x"] / counts["n_obs"]
    # the covariate-only model, from Hail's start
    b = np.zeros(d - 1)
    b[0] = math.log(y.mean() / (1 - y.mean()))
    for _ in range(MAX_ITERATIONS):
        score, fisher, _, _ = rg.null_score_fisher(data, b)
        delta = np.linalg.solve(fisher, score)
        if np.max(np.abs(delta)) < TOLERANCE:
            break
        b = b + delta
    else:
        raise ValueError("the covariate-only model did not converge")

    out = np.full((V, 4), np.nan)
    converged = np.zeros(V, dtype=bool)
    exploded = np.zeros(V, dtype=bool)
    iterations = np.zeros(V, dtype=np.int64)
    active = np.flatnonzero(np.isfinite(mean))
    coef = np.zeros((active.size, d))
    coef[:, :-1] = b
    order = np.lexsort(np.column_stack([y, Z]).T)  # people by class (see kernels.score_fisher)
    for it in range(1, MAX_ITERATIONS + 1):
        s = kernels.reduce_chunks(
            calls,
            kernels.score_fisher,
            columns=order,
            rows=active,
            column_args=(y[order], Z[order]),
            row_args=(coef, mean[active]),
        )
        delta, singular = rg.newton_deltas(s["fisher"], s["score"])
        boom = singular | np.isnan(delta[:, 0])
        done = ~boom & (np.max(np.abs(delta), axis=1) < TOLERANCE)
        if done.any():
            se = np.sqrt(rg.inverse_diagonal_last(s["fisher"][done]))
            z = coef[done, -1] / se
            out[active[done]] = np.column_stack([coef[done, -1], se, z, rg.normal_two_sided_p(z)])
            converged[active[done]] = True
        exploded[active[boom]] = True
        going = ~boom & ~done
        iterations[active[~going | (it == MAX_ITERATIONS)]] = it
        active, coef = active[going], (coef + np.nan_to_num(delta))[going]
        if not active.size:
            break
    return pd.DataFrame(
        {
            "beta": out[:, 0],
            "standard_error": out[:, 1],
            "z_stat": out[:, 2],
            "p_value": out[:, 3],
            "converged": converged,
            "exploded": exploded,
            "n_iterations": iterations,
        },
        index=keys,
    )


NUMPY = {
    "allele_frequencies": numpy_allele_frequencies,
    "allele_frequencies_where": None,  # numpy_allele_frequencies with a where (see its caller)
    "gwas_linear": numpy_linear,
    "gwas_logistic": numpy_logistic,
}


# ---------------------------------------------------------------------------
# plink2


def plink_args(pooled: Path, task: str, keep: Path) -> list[str]:
    glm = [
        "--glm", "hide-covar", "omit-ref", "no-firth", "cols=chrom,pos,ref,alt,nobs,beta,se,tz,p",
        "--pheno", str(pooled / "pheno.tsv"), "--covar", str(pooled / "covar.tsv"),
    ]  # fmt: skip
    return {
        "allele_frequencies": ["--freq"],
        "allele_frequencies_where": ["--freq", "--keep", str(keep)],
        "gwas_linear": [*glm, "--pheno-name", "quant_trait"],
        "gwas_logistic": [*glm, "--1", "--pheno-name", "case_status"],
    }[task]


def plink(pooled: Path, task: str, where: dict, peaks: dict, timeout: float | None):
    """(seconds, answer) of plink2 on the pooled pgen for `task` (`where`: whom the filtered
    query counts, a --keep file)."""
    from extensions.federation.cohorts import select

    with tempfile.TemporaryDirectory(prefix="visiting-bench-plink-") as d:
        prefix = Path(d) / task
        keep = Path(d) / "keep.txt"
        ids = pooled_table(pooled).index[select(pooled_table(pooled), where)]
        keep.write_text("#IID\n" + "".join(f"{x}\n" for x in ids))
        args = plink_args(pooled, task, keep)
        seconds = run_tool(
            ["plink2", "--pfile", str(pooled / "pooled"), *args, "--threads", "2",
             "--memory", str(PLINK_MEMORY_MB), "--out", str(prefix)], peaks, timeout,
        )  # fmt: skip
        return seconds, read_plink(prefix, task)


def read_plink(prefix: Path, task: str):
    import pandas as pd

    if task.startswith("allele_frequencies"):
        return pd.read_csv(f"{prefix}.afreq", sep="\t").set_index("ID")
    [path] = prefix.parent.glob(f"{prefix.name}*.glm.*")
    t = pd.read_csv(path, sep="\t", na_values=["NA"])
    if "TEST" in t:
        t = t[t["TEST"] == "ADD"]
    return t.set_index("ID")


# ---------------------------------------------------------------------------
# Hail (run in a process of its own by bench/federation.py)


def hail_key(hl, t):
    return hl.delimit([t.locus.contig, hl.str(t.locus.position), t.alleles[0], t.alleles[1]], ":")


def hail_model(hl, mt):
    sites = sorted(set(mt.site.collect()))
    age = hl.float64(hl.int32(mt.age_band.split("-")[0])) / 10
    sex = hl.if_else(mt.sex == "male", 1.0, 0.0)
    covariates = [hl.if_else(mt.site == s, 1.0, 0.0) for s in sites] + [age, sex]
    return hl.float64(mt.GT.n_alt_alleles()), covariates


def hail_reference(hl, mt_path: Path, task: str, where: dict | None):
    """The Hail reference of `task` on the pooled MatrixTable, as a pandas DataFrame."""
    mt = hl.read_matrix_table(str(mt_path))
    if task.startswith("allele_frequencies"):
        if task == "allele_frequencies_where":
            for attribute, values in where.items():
                chosen = {values} if isinstance(values, str) else set(values)
                mt = mt.filter_cols(hl.literal(chosen).contains(mt[attribute]))
        mt = hl.variant_qc(mt)
        rows = mt.rows()
        rows = rows.select(
            key=hail_key(hl, rows),
            AC=rows.variant_qc.AC[1],
            AN=rows.variant_qc.AN,
            AF=rows.variant_qc.AF[1],
        )
        return rows.key_by().drop("locus", "alleles").to_pandas().set_index("key")
    x, covariates = hail_model(hl, mt)
    if task == "gwas_linear":
        ht = hl.linear_regression_rows(y=mt.quant_trait, x=x, covariates=covariates)
        ht = ht.select(
            key=hail_key(hl, ht),
            beta=ht.beta,
            standard_error=ht.standard_error,
            t_stat=ht.t_stat,
            p_value=ht.p_value,
        )
    else:
        ht = hl.logistic_regression_rows(
            test="wald", y=hl.float64(mt.case_status), x=x, covariates=covariates
        )
        ht = ht.select(
            key=hail_key(hl, ht),
            beta=ht.beta,
            standard_error=ht.standard_error,
            z_stat=ht.z_stat,
            p_value=ht.p_value,
            converged=ht.fit.converged,
            exploded=ht.fit.exploded,
            n_iterations=ht.fit.n_iterations,
        )
    return ht.key_by().drop("locus", "alleles").to_pandas().set_index("key")


def hail_warm_up(hl, mt_path: Path) -> None:
    """Untimed: the first compiled code paths, on a corner of the MatrixTable."""
    mt = hl.read_matrix_table(str(mt_path)).head(200)
    hl.variant_qc(mt).rows().variant_qc.AF.collect()
    x, covariates = hail_model(hl, mt)
    hl.linear_regression_rows(y=mt.quant_trait, x=x, covariates=covariates).beta.collect()


# ---------------------------------------------------------------------------
# exactness


def max_abs(a, b) -> tuple[float, int]:
    """Max |a - b| over the pairs where both are defined (equal infinities count as 0)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = ~np.isnan(a) & ~np.isnan(b)
    with np.errstate(invalid="ignore"):
        d = np.where(a[ok] == b[ok], 0.0, np.abs(a[ok] - b[ok]))
    return (float(np.max(d)) if ok.any() else float("nan")), int(ok.sum())


def max_rel(a, b) -> tuple[float, int]:
    """Max |a - b| / |b| over the pairs where both are finite; equal values (0 and 0, as
    for a p-value both sides underflow) count as 0, a 0 against a non-zero as 1."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if not ok.any():
        return float("nan"), 0
    a, b = a[ok], b[ok]
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.where(a == b, 0.0, np.abs(a - b) / np.maximum(np.abs(a), np.abs(b)))
        d = np.where(b != 0, np.abs(a - b) / np.abs(b), d)
    return float(np.max(d)), int(ok.sum())


def frequencies_frame(result):
    """AC, AN, AF of the federated allele_frequencies result (an xarray Dataset) by key."""
    import pandas as pd

    return pd.DataFrame(
        {k: np.asarray(result[k].values, float) for k in ("AC", "AN", "AF")},
        index=[str(v) for v in result["variant"].values],
    )


def compare_frequencies(fed, ref, reference: str) -> dict:
    """Over the variants the federation released: max |AF difference|, AC and AN identical."""
    ref = ref.reindex(fed.index)
    released = np.isfinite(fed["AF"].to_numpy())
    column = "ALT_FREQS" if reference == "plink2" else "AF"
    diff, n = max_abs(fed["AF"].to_numpy()[released], ref[column].to_numpy()[released])
    out = {"AF": diff, "n": n, "released": int(released.sum()), "variants": len(fed)}
    if reference == "plink2":  # AF to 6 significant digits, no AC column
        out["AN_identical"] = bool(
            np.array_equal(fed["AN"].to_numpy()[released], ref["OBS_CT"].to_numpy()[released])
        )
    else:
        out["AC_AN_identical"] = all(
            np.array_equal(fed[k].to_numpy()[released], ref[k].to_numpy(float)[released])
            for k in ("AC", "AN")
        )
    return out


def compare_regression(fed, ref, reference: str, task: str) -> dict:
    """Max relative difference of beta, SE and p over the variants both answer; for logistic
    also whether the converged / exploded flags agree. plink2 leaves a person with a missing
    call out where the others mean-impute: its beta is compared in units of the SE and p as
    log10."""
    ref = ref.reindex(fed.index)
    released = np.isfinite(fed["beta"].to_numpy())
    out: dict = {"released": int(released.sum()), "variants": len(fed)}
    if reference == "plink2":
        se = fed["standard_error"].to_numpy()
        out["beta"], out["n"] = max_abs(fed["beta"].to_numpy() / se, ref["BETA"].to_numpy() / se)
        out["standard_error"], _ = max_rel(se, ref["SE"].to_numpy())
        with np.errstate(divide="ignore"):
            out["p_value"], _ = max_abs(np.log10(fed["p_value"]), np.log10(ref["P"]))
        out["units"] = "plink"
        return out
    for k in ("beta", "standard_error", "p_value"):
        out[k], n = max_rel(fed[k].to_numpy()[released], ref[k].to_numpy(float)[released])
        out["n"] = min(out.get("n", n), n)
    if task == "gwas_logistic":
        answered = fed["withheld_at"].to_numpy() == ""
        out["flags_identical"] = all(
            np.array_equal(
                fed[k].to_numpy(bool)[answered], ref[k].to_numpy(bool, na_value=False)[answered]
            )
            for k in ("converged", "exploded")
        )
        out["converged"] = int(fed["converged"].to_numpy(bool)[answered].sum())
        out["answered"] = int(answered.sum())
    return out
