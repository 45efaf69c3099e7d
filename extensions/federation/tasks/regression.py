# Over 500 lines on purpose: the numerics both GWAS tasks and both engines must share bit for
# bit (design, sums, solves, p-values and their Hail twins), read as one namespace (`rg`).
"""The maths the two GWAS tasks share: design, per-site sums, pooled solves, p-values.

Model and encoding (both tasks, both engines, and the pooled references in the
tests build the design through `model_data`):

- the people in a site's half are those the query selects (`where`) whose
  phenotype and every chosen covariate are defined; as in Hail's
  `linear_regression_rows` / `logistic_regression_rows`, a person missing any
  of them is left out, and `n` counts the rest;
- covariates: `sex` as 1 for male, 0 for female; `age_band` as an ordinal,
  the band's lower bound in decades ("20-29" -> 2.0, ..., "80-89" -> 8.0),
  one column with one effect per decade (how the synthetic cohorts are made,
  and one column keeps every site half small; a band that is absent at one
  site then costs nothing, where a one-hot level would). A value that does not
  parse counts as missing;
- every site has its own intercept: the pooled design's first columns are one
  indicator per site (sites in sorted order), then the covariates in the
  order asked for, then the variant's dosage x last (Hail's layout);
- x is the alternate-allele dosage; a missing call is mean-imputed with the
  variant's pooled mean over the people in the model (Hail's rule, the mean
  of the non-missing dosages over all sites), which the combining half knows
  exactly from the sites' sums.

Local layout at a site: D = [1, Z] (intercept, then the p covariates); the
combining half maps the local intercept to the site's indicator column.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass

import numpy as np

from .. import kernels
from .base import TaskError, shared_variants

COVARIATES = ("age_band", "sex")
SEX_CODES = {"male": 1.0, "female": 0.0}


# ---------------------------------------------------------------------------
# design


@dataclass
class ModelData:
    """One site's people in the model: who (column positions), y and covariates Z."""

    columns: np.ndarray  # int64 positions into the cohort's samples (genotype column order)
    y: np.ndarray  # (n,) float64
    Z: np.ndarray  # (n, p) float64
    covariates: tuple[str, ...]

    @property
    def n(self) -> int:
        return int(self.y.size)


def age_band_decade(band) -> float:
    """ "40-49" -> 4.0 (the lower bound in decades); NaN for anything that does not parse."""
    try:
        lower = str(band).split("-", 1)[0].rstrip("+").strip()
        return float(int(lower)) / 10.0
    except (TypeError, ValueError):
        return math.nan


def covariate_column(samples, name: str) -> np.ndarray:
    """One covariate as float64 over every person in `samples`, NaN where undefined."""
    if name == "sex":
        return samples["sex"].map(SEX_CODES).to_numpy(dtype=float, na_value=np.nan)
    if name == "age_band":
        return np.array([age_band_decade(b) for b in samples["age_band"]], dtype=float)
    raise TaskError(f"covariates: {name!r} is not one of {', '.join(COVARIATES)}", "covariates")


def phenotype_column(samples, name: str) -> np.ndarray:
    return samples[name].to_numpy(dtype=float, na_value=np.nan)


def model_data(
    samples, phenotype: str, covariates, selected: np.ndarray | None = None
) -> ModelData:
    """The people of `samples` in the model: selected, with phenotype and covariates defined."""
    y = phenotype_column(samples, phenotype)
    Z = (
        np.column_stack([covariate_column(samples, c) for c in covariates])
        if covariates
        else (np.empty((len(samples), 0)))
    )
    keep = np.isfinite(y) & np.isfinite(Z).all(axis=1)
    if selected is not None:
        keep &= np.asarray(selected, dtype=bool)
    cols = np.flatnonzero(keep)
    return ModelData(cols, y[cols].copy(), np.ascontiguousarray(Z[cols]), tuple(covariates))


def local_design(data: ModelData) -> np.ndarray:
    """D = [1, Z] of a site's people."""
    return np.column_stack([np.ones(data.n), data.Z])


def global_columns(site_pos: int, n_sites: int, p: int) -> np.ndarray:
    """Where a site's local [1, Z] columns sit in the pooled [site indicators, Z] layout."""
    return np.concatenate([[site_pos], n_sites + np.arange(p)]).astype(np.int64)


# ---------------------------------------------------------------------------
# linear: per-site sufficient statistics


def covariate_sums(data: ModelData) -> dict[str, np.ndarray]:
    """D'D, D'y, y'y of a site (no genotypes)."""
    D = local_design(data)
    return {"dd": D.T @ D, "dy": D.T @ data.y, "yy": np.array([data.y @ data.y])}


def genotype_sums(G: np.ndarray, data: ModelData) -> dict[str, np.ndarray]:
    """Per-variant sums of a block of dosages G (variants x people in the model, NaN missing).

    The definition: the Dask half computes the same sums from the calls' integer
    codes with `kernels.linear_sums`.

    n_obs, sum_x, sum_xx, sum_xy and sum_xz (p columns) over called dosages;
    miss_z and miss_y over the people whose call is missing, so that the
    pooled half can add the imputed value times them.
    """
    obs = ~np.isnan(G)
    X = np.where(obs, G, 0.0)
    M = (~obs).astype(np.float64)
    return {
        "n_obs": obs.sum(axis=1).astype(np.float64),
        "sum_x": X.sum(axis=1),
        "sum_xx": np.einsum("ij,ij->i", X, X),
        "sum_xy": X @ data.y,
        "sum_xz": X @ data.Z,
        "miss_y": M @ data.y,
        "miss_z": M @ data.Z,
    }


LINEAR_PER_VARIANT = ("n_obs", "sum_x", "sum_xx", "sum_xy", "sum_xz", "miss_y", "miss_z")


@dataclass
class PooledLinear:
    """The pooled sums of the model the combining half solves, per variant."""

    n: float  # people in the model over all sites
    k: int  # covariate columns (site indicators + covariates)
    A: np.ndarray  # (k, k) C'C
    b: np.ndarray  # (k,) C'y
    yy: float
    xx: np.ndarray  # (V,) x'x with x imputed
    q: np.ndarray  # (V, k) C'x
    xy: np.ndarray  # (V,) x'y
    sum_x: np.ndarray  # (V,) 1'x (imputed)


def pool_linear(sites: list[dict], p: int) -> PooledLinear:
    """Pool the sites' sums into the sums of the pooled design with imputed x.

    `sites`: one dict per site in indicator order, holding "dd", "dy", "yy", "n"
    and the per-variant arrays of `genotype_sums`, already aligned to the same
    variants (NaN where the site withheld a variant; the result is NaN there).
    """
    S = len(sites)
    k = S + p
    A = np.zeros((k, k))
    b = np.zeros(k)
    yy = 0.0
    n = 0.0
    for s, h in enumerate(sites):
        idx = global_columns(s, S, p)
        A[np.ix_(idx, idx)] += h["dd"]
        b[idx] += h["dy"]
        yy += float(h["yy"][0])
        n += float(h["n"])
    n_obs = sum(h["n_obs"] for h in sites)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sum(h["sum_x"] for h in sites) / n_obs
    V = mean.size
    xx = np.zeros(V)
    xy = np.zeros(V)
    q = np.zeros((V, k))
    for s, h in enumerate(sites):
        n_miss = float(h["n"]) - h["n_obs"]
        xx += h["sum_xx"] + mean * mean * n_miss
        xy += h["sum_xy"] + mean * h["miss_y"]
        q[:, s] = h["sum_x"] + mean * n_miss
        q[:, S:] += h["sum_xz"] + mean[:, None] * h["miss_z"]
    return PooledLinear(n, k, A, b, yy, xx, q, xy, mean * n)


def solve_linear(P: PooledLinear) -> dict[str, np.ndarray]:
    """Per-variant OLS of y on [C, x] from pooled sums, with Hail's definitions.

    Projecting the covariates out (x'Mx = x'x - q'A^-1 q, etc.) is the
    (k+1)x(k+1) normal equations solved for x's coefficient:
    beta = x'My / x'Mx, se = sqrt((y'My / x'Mx - beta^2) / (n - k - 1)),
    t = beta / se, p = 2 T_{n-k-1}(-|t|). A variant whose x is (numerically) in
    the span of the covariates (e.g. monomorphic) gets NaN, not noise.
    """
    df = P.n - P.k - 1
    Ainv_b = np.linalg.solve(P.A, P.b)
    Ainv_q = np.linalg.solve(P.A, P.q.T).T if P.q.size else P.q
    xMx = P.xx - np.einsum("ij,ij->i", P.q, Ainv_q)
    xMy = P.xy - P.q @ Ainv_b
    yMy = P.yy - P.b @ Ainv_b
    degenerate = ~(xMx > 1e-9 * np.maximum(P.xx, 1e-300))
    with np.errstate(invalid="ignore", divide="ignore"):
        beta = np.where(degenerate, np.nan, xMy / xMx)
        se = np.sqrt((yMy / xMx - beta * beta) / df)
        t = beta / se
    p_value = t_two_sided_p(t, df)
    return {
        "beta": beta,
        "standard_error": se,
        "t_stat": t,
        "p_value": p_value,
        "sum_x": P.sum_x,
        "y_transpose_x": P.xy,
        "df": df,
    }


# ---------------------------------------------------------------------------
# logistic: per-site score and information


def sigmoid(eta: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-eta))


def null_score_fisher(data: ModelData, b_local: np.ndarray):
    """Covariate-only model at local coefficients [b_site, b_Z]: D'(y-mu), D'WD, sum w, sum w^2."""
    D = local_design(data)
    mu = sigmoid(D @ b_local)
    w = mu * (1.0 - mu)
    return D.T @ (data.y - mu), D.T @ (D * w[:, None]), float(w.sum()), float(w @ w)


def variant_score_fisher(G: np.ndarray, data: ModelData, b_local: np.ndarray, mean: np.ndarray):
    """Per-variant score and information of the model with x, at each variant's coefficients.

    G: (B, n) dosages, NaN missing; b_local: (B, p+2) as [b_site, b_Z..., b_x];
    mean: (B,) the pooled imputation means. Returns score (B, p+2),
    fisher (B, p+2, p+2) in the local layout [1, Z..., x], and per variant
    sum w and sum w^2 (the effective number of people the weights reach).
    """
    X = np.where(np.isnan(G), mean[:, None], G)
    return kernels.dosage_score_fisher(X, data.y, data.Z, b_local)


def newton_deltas(fisher: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """fisher \\ score per variant; (deltas, singular) with NaN deltas where singular."""
    V, m = score.shape
    try:
        return np.linalg.solve(fisher, score[..., None])[..., 0], np.zeros(V, dtype=bool)
    except np.linalg.LinAlgError:
        pass
    out = np.full((V, m), np.nan)
    singular = np.zeros(V, dtype=bool)
    for i in range(V):
        try:
            out[i] = np.linalg.solve(fisher[i], score[i])
        except np.linalg.LinAlgError:
            singular[i] = True
    return out, singular


def inverse_diagonal_last(fisher: np.ndarray) -> np.ndarray:
    """[fisher^-1]_{last,last} per variant (the Wald variance of x); NaN where singular."""
    V, m, _ = fisher.shape
    e = np.zeros((V, m, 1))
    e[:, -1, 0] = 1.0
    sol, singular = newton_deltas(fisher, e[..., 0])
    out = sol[:, -1].copy()
    out[singular] = np.nan
    return out


# ---------------------------------------------------------------------------
# distributions


def normal_two_sided_p(z: np.ndarray) -> np.ndarray:
    """2 * Phi(-|z|) = erfc(|z| / sqrt 2), NaN kept."""
    z = np.asarray(z, dtype=float)
    erfc = np.frompyfunc(math.erfc, 1, 1)
    out = np.full(z.shape, np.nan)
    ok = np.isfinite(z)
    out[ok] = erfc(np.abs(z[ok]) / math.sqrt(2.0)).astype(float)
    out[np.isinf(z)] = 0.0
    return out


def t_two_sided_p(t: np.ndarray, df: float) -> np.ndarray:
    """2 * T_df(-|t|), Student's t with df degrees of freedom, NaN kept.

    Equals I_{df/(df+t^2)}(df/2, 1/2) (regularized incomplete beta), computed
    by its continued fraction to relative accuracy ~1e-14, also for tiny p.
    """
    t = np.asarray(t, dtype=float)
    out = np.full(t.shape, np.nan)
    ok = np.isfinite(t)
    if df <= 0:
        return out
    t2 = t[ok] ** 2
    x = df / (df + t2)
    one_minus_x = t2 / (df + t2)
    out[ok] = betainc_regularized(df / 2.0, 0.5, x, one_minus_x)
    out[np.isinf(t)] = 0.0
    return out


def betainc_regularized(a: float, b: float, x: np.ndarray, one_minus_x: np.ndarray) -> np.ndarray:
    """I_x(a, b) for scalar a, b > 0 and an array x (1-x given, to keep its precision)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(one_minus_x, dtype=float)
    out = np.empty_like(x)
    lbeta = log_beta(a, b)
    direct = x < (a + 1.0) / (a + b + 2.0)
    with np.errstate(divide="ignore"):
        # log x and log(1-x), each from whichever of x, 1-x is the smaller
        log_x = np.where(x < 0.5, np.log(x), np.log1p(-y))
        log_y = np.where(y < 0.5, np.log(y), np.log1p(-x))
        # I_x(a,b) = x^a (1-x)^b / (a B(a,b)) * cf(x; a, b), and the mirror for large x
        front = np.exp(a * log_x + b * log_y - lbeta)
        if direct.any():
            out[direct] = front[direct] / a * _beta_cf(a, b, x[direct])
        if (~direct).any():
            out[~direct] = 1.0 - front[~direct] / b * _beta_cf(b, a, y[~direct])
    out[x <= 0] = 0.0
    out[y <= 0] = 1.0
    return out


def log_beta(a: float, b: float) -> float:
    """log B(a, b); for a large argument by Stirling's series, free of the cancellation
    of lgamma(a) + lgamma(b) - lgamma(a + b) (which would cost ~1e-11 at a = 10^4)."""
    big, small_ = max(a, b), min(a, b)
    if big < 20.0:
        return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    # lgamma(big) - lgamma(big + small) = -(big - 1/2) log1p(small / big)
    #     - small log(big + small) + small + corr(big) - corr(big + small)
    ratio = (
        -(big - 0.5) * math.log1p(small_ / big)
        - small_ * math.log(big + small_)
        + small_
        + _stirling_correction(big)
        - _stirling_correction(big + small_)
    )
    return math.lgamma(small_) + ratio


def _stirling_correction(x: float) -> float:
    """lgamma(x) - ((x - 1/2) log x - x + log(2 pi)/2), for x >= 20 (error < 1e-17)."""
    x2 = x * x
    return (1 / 12 - (1 / 360 - (1 / 1260 - (1 / 1680 - 1 / (1188 * x2)) / x2) / x2) / x2) / x


def _beta_cf(a: float, b: float, x: np.ndarray, eps: float = 1e-16, max_iter: int = 100_000):
    """Continued fraction of the incomplete beta (modified Lentz), vectorised over x."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = np.ones_like(x)
    d = 1.0 - qab * x / qap
    d = np.where(np.abs(d) < tiny, tiny, d)
    d = 1.0 / d
    h = d.copy()
    active = np.ones(x.shape, dtype=bool)
    for m in range(1, max_iter + 1):
        m2 = 2 * m
        xa = x[active]
        ca, da, ha = c[active], d[active], h[active]
        for aa in (
            m * (b - m) * xa / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * xa / ((a + m2) * (qap + m2)),
        ):
            da = 1.0 + aa * da
            da = np.where(np.abs(da) < tiny, tiny, da)
            ca = 1.0 + aa / ca
            ca = np.where(np.abs(ca) < tiny, tiny, ca)
            da = 1.0 / da
            delta = da * ca
            ha = ha * delta
        c[active], d[active], h[active] = ca, da, ha
        done = np.abs(delta - 1.0) < eps
        idx = np.flatnonzero(active)
        active[idx[done]] = False
        if not active.any():
            break
    return h


# ---------------------------------------------------------------------------
# disclosure helpers


def variant_list_detail(keys: list[str], mask: np.ndarray, limit: int = 5) -> str:
    hit = [keys[i] for i in np.flatnonzero(mask)[:limit]] if keys else []
    more = int(mask.sum()) - len(hit)
    return ", ".join(hit) + (f" and {more} more" if more > 0 and hit else "")


# ---------------------------------------------------------------------------
# aligning sites' variants, and state arrays


def align_variants(variant_lists: list[list[str]]) -> tuple[list[str], list[np.ndarray]]:
    """The union of the sites' variants (first site's order, then new ones), and per site
    the row of each union variant in that site's list (-1 where the site lacks it).

    When every site holds the same list (`shared_variants`), every site's rows
    are one and the same arange (the logistic fit's state then names them once)."""
    shared = shared_variants(variant_lists)
    if shared is not None:
        rows = np.arange(len(shared), dtype=np.int64)
        return list(shared), [rows for _ in variant_lists]
    keys = list(dict.fromkeys(k for vs in variant_lists for k in vs))
    where = {k: i for i, k in enumerate(keys)}
    maps = []
    for vs in variant_lists:
        m = np.full(len(keys), -1, dtype=np.int64)
        m[[where[k] for k in vs]] = np.arange(len(vs))
        maps.append(m)
    return keys, maps


def take_rows(a: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """a[rows] along the first axis with NaN where rows == -1."""
    n = rows.size
    if n == len(a) and (not n or (rows[0] == 0 and (np.diff(rows) == 1).all())):
        return np.array(a, dtype=np.float64)  # every row in order (one list at every site)
    out = np.full((rows.size, *a.shape[1:]), np.nan)
    ok = rows >= 0
    out[ok] = a[rows[ok]]
    return out


def pack(a: np.ndarray) -> dict:
    """A numpy array as JSON (dtype, shape, base64 of its bytes): exact and compact."""
    a = np.ascontiguousarray(a)
    return {"dtype": str(a.dtype), "shape": list(a.shape), "b64": base64.b64encode(a).decode()}


PACKABLE = ("float64", "int64", "bool")


def unpack(doc, field: str) -> np.ndarray:
    """The array `pack` wrote; TaskError naming the field for anything malformed."""
    try:
        dtype = str(doc["dtype"])
        if dtype not in PACKABLE:
            raise ValueError(f"dtype {dtype}")
        shape = tuple(int(s) for s in doc["shape"])
        raw = base64.b64decode(doc["b64"], validate=True)
        return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    except (KeyError, TypeError, ValueError) as e:
        raise TaskError(f"{field}: not an array this task wrote ({e})", field) from None


# ---------------------------------------------------------------------------
# parameters


def validate_model_params(
    params: dict, phenotypes: tuple[str, ...], extra: dict | None = None
) -> dict:
    """phenotype, covariates, where (and the task's `extra` names -> checkers), checked.

    Raises TaskError naming the field; unknown parameters are refused, not ignored.
    """
    from ..cohorts import validate_where

    if not isinstance(params, dict):
        raise TaskError("params must be an object", "params")
    extra = extra or {}
    known = {"phenotype", "covariates", "where", *extra}
    for key in params:
        if key not in known:
            raise TaskError(
                f"{key}: not a parameter of this task (parameters: {', '.join(sorted(known))})",
                str(key),
            )
    phenotype = params.get("phenotype", phenotypes[0])
    if phenotype not in phenotypes:
        raise TaskError(
            f"phenotype: {phenotype!r} is not one of {', '.join(phenotypes)}", "phenotype"
        )
    covariates = params.get("covariates", list(COVARIATES))
    if isinstance(covariates, str) or not isinstance(covariates, list | tuple):
        raise TaskError("covariates: must be a list (possibly empty) of names", "covariates")
    for c in covariates:
        if c not in COVARIATES:
            raise TaskError(
                f"covariates: {c!r} is not one of {', '.join(COVARIATES)}", "covariates"
            )
    if len(set(covariates)) != len(covariates):
        raise TaskError("covariates: a covariate is named twice", "covariates")
    where = validate_where(params.get("where"))
    out = {
        "phenotype": phenotype,
        "covariates": list(covariates),
        "where": {k: list(v) for k, v in where.items()},
    }
    for name, check in extra.items():
        out[name] = check(params.get(name))
    return out


# ---------------------------------------------------------------------------
# Hail: the same sums as row aggregations over the MatrixTable


def hail_model_columns(hl, mt, data: ModelData, n_columns: int):
    """The MatrixTable restricted to the model's people, with `gwas_y`, `gwas_z` (array) on columns.

    The cohort's `samples` are in the MatrixTable's column order, so the
    model's column positions index the columns directly.
    """
    pos = np.full(n_columns, -1, dtype=np.int64)
    pos[data.columns] = np.arange(data.n)
    mt = mt.add_col_index("gwas_col")
    mt = mt.annotate_cols(
        gwas_pos=hl.literal(pos.tolist(), hl.tarray(hl.tint64))[hl.int32(mt.gwas_col)]
    )
    mt = mt.filter_cols(mt.gwas_pos >= 0)
    y = hl.literal(data.y.tolist(), hl.tarray(hl.tfloat64))
    Z = hl.literal(data.Z.tolist(), hl.tarray(hl.tarray(hl.tfloat64)))
    return mt.annotate_cols(gwas_y=y[hl.int32(mt.gwas_pos)], gwas_z=Z[hl.int32(mt.gwas_pos)])


def hail_dosage(hl, mt):
    """Alternate-allele dosage of each call, missing where the call is."""
    return hl.float64(mt.GT.n_alt_alleles())


def _zeros(hl, p: int):
    return hl.literal([0.0] * p, hl.tarray(hl.tfloat64))


def hail_genotype_sums(hl, mt, p: int, minimal: bool = False) -> dict[str, np.ndarray]:
    """`genotype_sums` as Hail row aggregations (hl.agg.sum / hl.agg.array_sum), in row order.

    minimal: only n_obs and sum_x (what the logistic task's first round needs).
    """
    x = hail_dosage(hl, mt)
    called = hl.is_defined(x)
    scalars = [hl.float64(hl.agg.count_where(called)), hl.agg.sum(x)]
    names = ["n_obs", "sum_x"]
    if not minimal:
        scalars += [
            hl.agg.sum(x * x),
            hl.agg.sum(x * mt.gwas_y),
            hl.agg.filter(~called, hl.agg.sum(mt.gwas_y)),
        ]
        names += ["sum_xx", "sum_xy", "miss_y"]
    v = hl.array(scalars)
    if not minimal and p:
        zeros = _zeros(hl, p)
        sum_xz = hl.agg.filter(called, hl.agg.array_sum(mt.gwas_z.map(lambda c: x * c)))
        miss_z = hl.agg.filter(~called, hl.agg.array_sum(mt.gwas_z))
        v = v.extend(hl.or_else(sum_xz, zeros)).extend(hl.or_else(miss_z, zeros))
    values = mt.annotate_rows(gwas_v=v).rows().gwas_v.collect()
    a = np.array(values, dtype=np.float64).reshape(
        len(values), len(names) + (0 if minimal else 2 * p)
    )
    out = {name: a[:, i].copy() for i, name in enumerate(names)}
    if not minimal:
        s = len(names)
        out["sum_xz"] = a[:, s : s + p].copy()
        out["miss_z"] = a[:, s + p : s + 2 * p].copy()
    return out


def hail_variant_score_fisher(
    hl, mt, p: int, rows: np.ndarray, b_local: np.ndarray, mean: np.ndarray
) -> dict[str, np.ndarray]:
    """`variant_score_fisher` (plus n_obs, sum_x) as Hail row aggregations for rows `rows`."""
    n_rows = int(mt.count_rows())
    rpos = np.full(n_rows, -1, dtype=np.int64)
    rpos[rows] = np.arange(rows.size)
    mt = mt.add_row_index("gwas_row")
    mt = mt.annotate_rows(
        gwas_rp=hl.literal(rpos.tolist(), hl.tarray(hl.tint64))[hl.int32(mt.gwas_row)]
    )
    mt = mt.filter_rows(mt.gwas_rp >= 0)
    b_lit = hl.literal(b_local.tolist(), hl.tarray(hl.tarray(hl.tfloat64)))
    m_lit = hl.literal(mean.tolist(), hl.tarray(hl.tfloat64))
    mt = mt.annotate_rows(gwas_b=b_lit[hl.int32(mt.gwas_rp)], gwas_m=m_lit[hl.int32(mt.gwas_rp)])
    g = hail_dosage(hl, mt)
    x = hl.coalesce(g, mt.gwas_m)
    eta = mt.gwas_b[0] + mt.gwas_b[p + 1] * x
    for j in range(p):
        eta = eta + mt.gwas_b[1 + j] * mt.gwas_z[j]
    mu = 1.0 / (1.0 + hl.exp(-eta))
    w = mu * (1.0 - mu)
    r = mt.gwas_y - mu
    d = [hl.float64(1.0), *[mt.gwas_z[j] for j in range(p)], x]
    D = p + 2
    v = hl.array(
        [
            hl.float64(mt.gwas_rp),
            hl.float64(hl.agg.count_where(hl.is_defined(g))),
            hl.agg.sum(g),
            hl.agg.sum(w),
            hl.agg.sum(w * w),
        ]
    )
    v = v.extend(hl.agg.array_sum(hl.array([di * r for di in d])))
    v = v.extend(hl.agg.array_sum(hl.array([d[i] * d[j] * w for i in range(D) for j in range(D)])))
    values = mt.annotate_rows(gwas_v=v).rows().gwas_v.collect()
    a = np.array(values, dtype=np.float64).reshape(len(values), 5 + D + D * D)
    order = a[:, 0].astype(np.int64)
    out = np.full((rows.size, a.shape[1] - 1), np.nan)
    out[order] = a[:, 1:]
    return {
        "n_obs": out[:, 0],
        "sum_x": out[:, 1],
        "sum_w": out[:, 2],
        "sum_w2": out[:, 3],
        "score": out[:, 4 : 4 + D].copy(),
        "fisher": out[:, 4 + D :].reshape(rows.size, D, D).copy(),
    }
