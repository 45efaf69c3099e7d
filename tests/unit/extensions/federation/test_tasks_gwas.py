"""gwas_linear and gwas_logistic on synthetic numpy data split across three sites.

The federated answers (per-site halves, disclosure, combine, JSON between
them as over the wire) are compared with pooled fits of the same data done
here independently: np.linalg.lstsq with site indicator columns for the
linear model, a plain numpy Newton-Raphson (Hail's algorithm) for the
logistic one.

Agreement asserted: linear beta, SE, t, p to 1e-10 relative; logistic beta,
SE, z, p to 1e-8 relative, with the same iteration counts.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from extensions.federation import kernels
from extensions.federation.tasks import regression as rg
from extensions.federation.tasks.base import DisclosureRules, SiteCohort, SiteHalf, TaskError
from extensions.federation.tasks.gwas_linear import GwasLinear
from extensions.federation.tasks.gwas_logistic import GwasLogistic

AGE_BANDS = ["20-29", "30-39", "40-49", "50-59", "60-69", "70-79", "80-89"]
NO_RULES = DisclosureRules(min_cell_count=0, min_minor_allele_count=0)


class ArrayCohort(SiteCohort):
    """A site's cohort held in memory: a samples table and a dosage matrix (NaN missing)."""

    engine = "dask"

    def __init__(self, site: str, samples: pd.DataFrame, dosage: np.ndarray, keys: list[str]):
        self.site = site
        self.dataset = f"{site}-cohort"
        self._samples = samples
        self.dosage = dosage
        self.keys = keys

    @property
    def samples(self):
        return self._samples

    def variant_keys(self):
        return list(self.keys)

    def dosage_blocks(self, block=None, columns=None, rows=None):
        d = self.dosage
        if columns is not None:
            d = d[:, np.asarray(columns)]
        if rows is not None:
            d = d[np.asarray(rows, dtype=np.int64)]
        step = block or 7  # an odd block size, so blocks do not line up with anything
        for lo in range(0, d.shape[0], step):
            yield slice(lo, min(lo + step, d.shape[0])), d[lo : lo + step].copy()


def make_sites(seed=7, sizes=(150, 220, 90), variants=60, missing=0.02):
    """Three sites sharing variants: frequencies drifting by site, missing calls and phenotypes."""
    rng = np.random.default_rng(seed)
    af = np.concatenate([rng.uniform(0.02, 0.5, variants - 4), [0.0, 0.005, 0.9, 0.5]])
    keys = [f"chr20:{1000 + 17 * i}:A:G" for i in range(variants)]
    effects = np.zeros(variants)
    effects[[1, 5, 9]] = [0.6, -0.4, 0.3]
    cohorts = []
    for s, n in enumerate(sizes):
        f = np.clip(af + rng.normal(0, 0.03, variants) * (af > 0), 0, 1)
        f[variants - 4] = 0.0  # monomorphic everywhere
        G = rng.binomial(2, f[:, None], size=(variants, n)).astype(float)
        G[rng.random(G.shape) < missing] = np.nan
        age = rng.integers(0, 7, n)
        male = rng.integers(0, 2, n)
        g0 = np.nan_to_num(G, nan=0.0)
        quant = 0.5 * s + 0.12 * age + 0.4 * male + effects @ g0 + rng.normal(0, 1, n)
        eta = -1.0 + 0.3 * s + 0.15 * age + 0.2 * male + effects @ g0
        case = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
        # variant 20 is carried by cases only (quasi-complete separation): Newton crawls
        G[20] = 0.0
        G[20, np.flatnonzero(case)[:6]] = 1.0
        samples = pd.DataFrame(
            {
                "age_band": [AGE_BANDS[a] for a in age],
                "sex": np.where(male == 1, "male", "female"),
                "prefecture": "Tokyo",
                "disease_name": "Essential hypertension",
                "icd10": "I10",
                "region": "Kanto",
                "quant_trait": quant,
                "case_status": pd.array(case.astype(int), dtype="Int64"),
            },
            index=pd.Index([f"S{s}-{i:04d}" for i in range(n)], name="sample_id"),
        )
        # a few people without a phenotype or covariate are left out, as Hail does
        samples.iloc[3, samples.columns.get_loc("quant_trait")] = np.nan
        samples.iloc[4, samples.columns.get_loc("sex")] = "unknown"
        samples.iloc[5, samples.columns.get_loc("case_status")] = pd.NA
        cohorts.append(ArrayCohort(f"site{s}", samples, G, keys))
    return cohorts


def over_the_wire(half: SiteHalf) -> SiteHalf:
    return SiteHalf.from_json(json.loads(json.dumps(half.to_json())))


def run(task, cohorts, params, rules=NO_RULES):
    """The whole federated protocol in process: validate, halves, disclose, JSON, combine."""
    params = task.validate(params)
    state = task.initial_state(params)
    for _ in range(task.max_rounds):
        state = json.loads(json.dumps(state)) if state is not None else None
        halves = [
            over_the_wire(task.disclose(task.site_half(c, params, state), rules)) for c in cohorts
        ]
        step = task.combine(halves, params, state)
        if step.done:
            return step.result
        state = step.state
    raise AssertionError("did not finish")


# ---------------------------------------------------------------------------
# pooled references, computed here without the task's code


def pooled_design(cohorts, phenotype, covariates, where=None):
    """Pooled y, C = [site indicators, covariates] and G over the people in the model."""
    ys, Cs, Gs = [], [], []
    S = len(cohorts)
    for s, c in enumerate(cohorts):
        df = c.samples
        y = df[phenotype].to_numpy(dtype=float, na_value=np.nan)
        cols = []
        for name in covariates:
            if name == "sex":
                cols.append(df["sex"].map({"male": 1.0, "female": 0.0}).to_numpy(dtype=float))
            else:
                cols.append(np.array([int(b[:2]) / 10 for b in df["age_band"]]))
        Z = np.column_stack(cols) if cols else np.empty((len(df), 0))
        keep = np.isfinite(y) & np.isfinite(Z).all(axis=1)
        for attribute, value in (where or {}).items():
            keep &= (df[attribute] == value).to_numpy()
        ind = np.zeros((keep.sum(), S))
        ind[:, s] = 1
        ys.append(y[keep])
        Cs.append(np.hstack([ind, Z[keep]]))
        Gs.append(c.dosage[:, keep])
    return np.concatenate(ys), np.vstack(Cs), np.hstack(Gs)


def impute(g):
    return np.where(np.isnan(g), np.nanmean(g), g)


def pooled_ols(y, C, G):
    out = []
    n, k = C.shape
    for g in G:
        X = np.column_stack([C, impute(g)])
        if np.ptp(X[:, -1]) == 0:
            out.append((np.nan,) * 4)
            continue
        beta, *_ = np.linalg.lstsq(X, y, rcond=None)
        resid = y - X @ beta
        sigma2 = resid @ resid / (n - k - 1)
        _, R = np.linalg.qr(X)
        Rinv = np.linalg.solve(R, np.eye(k + 1))
        se = math.sqrt(sigma2 * (Rinv[-1] @ Rinv[-1]))
        t = beta[-1] / se
        out.append((beta[-1], se, t, student_t_two_sided(t, n - k - 1)))
    return np.array(out)


def student_t_two_sided(t, df):
    stats = pytest.importorskip("scipy.stats")
    return 2 * stats.t.sf(abs(t), df)


def pooled_logistic(y, C, G, max_iter=25, tol=1e-6):
    """Hail's Newton-Raphson (null model first, then each variant from it), plain numpy."""

    def fit(X, b):
        for it in range(1, max_iter + 1):
            mu = 1 / (1 + np.exp(-(X @ b)))
            score = X.T @ (y - mu)
            fisher = X.T @ (X * (mu * (1 - mu))[:, None])
            delta = np.linalg.solve(fisher, score)
            if np.max(np.abs(delta)) < tol:
                return b, fisher, it, True
            b = b + delta
        return b, fisher, max_iter, False

    b0 = np.zeros(C.shape[1])
    b0[0] = math.log(y.mean() / (1 - y.mean()))
    b_null, _, _, ok = fit(C, b0)
    assert ok
    out = []
    for g in G:
        X = np.column_stack([C, impute(g)])
        if np.ptp(X[:, -1]) == 0:
            out.append((np.nan,) * 5)
            continue
        b, fisher, it, ok = fit(X, np.append(b_null, 0.0))
        if not ok:
            out.append((np.nan,) * 4 + (it,))
            continue
        se = math.sqrt(np.linalg.inv(fisher)[-1, -1])
        z = b[-1] / se
        out.append((b[-1], se, z, math.erfc(abs(z) / math.sqrt(2)), it))
    return np.array(out)


def rel_diff(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    both = np.isfinite(a) & np.isfinite(b)
    assert (np.isfinite(a) == np.isfinite(b)).all(), "NaN in one answer and not the other"
    return float(np.max(np.abs(a[both] - b[both]) / np.abs(b[both]))) if both.any() else 0.0


# ---------------------------------------------------------------------------
# gwas_linear


@pytest.mark.parametrize(
    "covariates", [["age_band", "sex"], ["sex"], []], ids=["age+sex", "sex", "sites-only"]
)
def test_linear_equals_pooled_lstsq(covariates):
    cohorts = make_sites()
    result = run(GwasLinear(), cohorts, {"covariates": covariates})
    y, C, G = pooled_design(cohorts, "quant_trait", covariates)
    ref = pooled_ols(y, C, G)
    assert result["n"].iloc[0] == y.size
    for i, col in enumerate(["beta", "standard_error", "t_stat", "p_value"]):
        assert rel_diff(result[col], ref[:, i]) < 1e-10, col
    # the monomorphic variant has no answer rather than noise
    assert np.isnan(result["beta"].iloc[-4])
    assert (result["withheld_at"] == "").all()


def test_linear_with_a_selection_equals_pooled_on_the_selected():
    cohorts = make_sites()
    where = {"sex": "female"}
    result = run(GwasLinear(), cohorts, {"covariates": ["age_band"], "where": where})
    y, C, G = pooled_design(cohorts, "quant_trait", ["age_band"], where)
    ref = pooled_ols(y, C, G)
    assert result["n"].iloc[0] == y.size
    for i, col in enumerate(["beta", "standard_error", "t_stat", "p_value"]):
        assert rel_diff(result[col], ref[:, i]) < 1e-10, col


def test_linear_result_carries_the_model():
    result = run(GwasLinear(), make_sites(), {})
    model = result.attrs["model"]
    assert model["covariates"] == ["site:site0", "site:site1", "site:site2", "age_band", "sex"]
    assert model["degrees_of_freedom"] == model["n"] - 5 - 1
    assert set(result.columns) >= {"beta", "standard_error", "t_stat", "p_value", "withheld_at"}


# ---------------------------------------------------------------------------
# gwas_logistic


@pytest.mark.parametrize("class_fraction", [1, 10**9], ids=["by-class", "per-person"])
def test_logistic_equals_pooled_newton_raphson(class_fraction, monkeypatch):
    """Exact federated Newton-Raphson: same answers and iteration counts as a pooled fit,
    with the site's kernel counting people by (y, covariates) class or summing per person."""
    monkeypatch.setattr(kernels, "CLASS_FRACTION", class_fraction)
    cohorts = make_sites()
    result = run(GwasLogistic(), cohorts, {})
    y, C, G = pooled_design(cohorts, "case_status", ["age_band", "sex"])
    ref = pooled_logistic(y, C, G)
    fitted = np.isfinite(ref[:, 0])
    assert result["converged"].to_numpy()[fitted].all()
    for i, col in enumerate(["beta", "standard_error", "z_stat", "p_value"]):
        assert rel_diff(result[col], ref[:, i]) < 1e-8, col
    iterations = result["n_iterations"].to_numpy(dtype=float, na_value=np.nan)
    assert (iterations[fitted] == ref[fitted, 4]).all()
    # the monomorphic variant's information is singular: exploded, reported, no numbers
    mono = result.iloc[-4]
    assert mono["exploded"] and not mono["converged"] and np.isnan(mono["beta"])
    assert result.attrs["model"]["exploded"] == 1
    assert result.attrs["model"]["null_model"]["n_iterations"] >= 2


def test_logistic_non_convergence_is_reported_not_hidden():
    cohorts = make_sites()
    # (as in Hail, the limit holds for the null model too, which needs 4 iterations here)
    result = run(GwasLogistic(), cohorts, {"max_iterations": 6})
    y, C, G = pooled_design(cohorts, "case_status", ["age_band", "sex"])
    ref = pooled_logistic(y, C, G, max_iter=6)
    stuck = ~result["converged"] & ~result["exploded"]
    assert stuck.iloc[20]  # the variant only cases carry
    assert result.attrs["model"]["not_converged"] == int(stuck.sum())
    assert result.loc[stuck, "beta"].isna().all()
    assert (result.loc[stuck, "n_iterations"] == 6).all()  # as Hail reports them
    assert (np.isnan(ref[stuck.to_numpy(), 0])).all()
    done = result["converged"].to_numpy()
    assert rel_diff(result["beta"].to_numpy()[done], ref[done, 0]) < 1e-8


def test_logistic_with_sites_holding_different_variants():
    cohorts = make_sites()
    # the last site lacks two variants and holds one of its own, in another order
    c = cohorts[2]
    keep = [i for i in range(len(c.keys)) if i not in (2, 7)][::-1]
    extra = np.full((1, c.dosage.shape[1]), 1.0)
    c.dosage = np.vstack([c.dosage[keep], extra])
    c.keys = [c.keys[i] for i in keep] + ["chr20:999999:C:T"]
    result = run(GwasLogistic(), cohorts, {})
    assert result.loc[cohorts[0].keys[2], "withheld_at"] == "site2"
    assert result.loc["chr20:999999:C:T", "withheld_at"] == "site0,site1"
    assert np.isnan(result.loc[cohorts[0].keys[7], "beta"])
    lin = run(GwasLinear(), cohorts, {})
    assert lin.loc[cohorts[0].keys[7], "withheld_at"] == "site2"
    # the variants every site holds equal the pooled fit over those variants
    common = [k for k in cohorts[0].keys if k in set(c.keys)]
    for co in cohorts:
        rows = [co.keys.index(k) for k in common]
        co.dosage, co.keys = co.dosage[rows], common
    y, C, G = pooled_design(cohorts, "case_status", ["age_band", "sex"])
    ref = pooled_logistic(y, C, G)
    assert rel_diff(result.loc[common, "beta"], ref[:, 0]) < 1e-8


# ---------------------------------------------------------------------------
# distributions


@pytest.mark.parametrize("df", [1, 3, 30, 447, 20_000])
def test_t_p_values_match_scipy(df):
    stats = pytest.importorskip("scipy.stats")
    t = np.concatenate([[0.0, 1e-8, 0.3, -1.2, 2.5, 4.0, -9.0, 25.0, 60.0], np.linspace(-7, 7, 41)])
    ours = rg.t_two_sided_p(t, df)
    ref = 2 * stats.t.sf(np.abs(t), df)
    # near p = 1 scipy itself is good to ~1e-8 absolute (p = 1 - 6.4e-9 at t = 1e-8, df 1)
    tail = (ref > 1e-300) & (ref < 0.99)
    np.testing.assert_allclose(ours[tail], ref[tail], rtol=1e-12)
    np.testing.assert_allclose(ours[ref >= 0.99], ref[ref >= 0.99], atol=1e-8)
    assert np.isnan(rg.t_two_sided_p(np.array([np.nan]), df)).all()


def test_normal_p_values_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    z = np.array([0.0, 0.5, -1.96, 3.0, 8.0, -30.0])
    np.testing.assert_allclose(rg.normal_two_sided_p(z), 2 * stats.norm.sf(np.abs(z)), rtol=1e-12)


# ---------------------------------------------------------------------------
# disclosure


def test_rare_variants_are_withheld_at_the_site_and_reported():
    cohorts = make_sites(missing=0.0)
    rules = DisclosureRules()  # 5 and 5
    task = GwasLinear()
    params = task.validate({})
    halves = [task.disclose(task.site_half(c, params, None), rules) for c in cohorts]
    result = task.combine(halves, params, None).result
    for h, c in zip(halves, cohorts, strict=True):
        # the rule is on the people in the model (phenotype and covariates recorded)
        df = c.samples
        in_model = df["quant_trait"].notna() & df["sex"].isin(["male", "female"])
        ac = c.dosage[:, in_model.to_numpy()].sum(axis=1)
        mac = np.minimum(ac, 2 * in_model.sum() - ac)
        rare = np.isnan(h.arrays["n_obs"])
        assert rare.sum() > 0
        assert (rare == (mac < 5)).all()
        for name in ("sum_x", "sum_xx", "sum_xy", "sum_xz", "miss_y", "miss_z"):
            assert np.isnan(h.arrays[name][rare]).all()
        sup = [s for s in h.suppressed if s.rule == "min_minor_allele_count=5"]
        assert sup and sup[0].count == rare.sum()
        labelled = [h.site in sites.split(",") for sites in result["withheld_at"]]
        assert (np.array(labelled) == rare).all()
    no_answer = result["withheld_at"] != ""
    assert result.loc[no_answer, ["beta", "standard_error", "p_value"]].isna().all().all()
    # every released number is the pooled one
    y, C, G = pooled_design(cohorts, "quant_trait", ["age_band", "sex"])
    ref = pooled_ols(y, C, G)
    released = ~no_answer.to_numpy()
    assert released.sum() > 20
    assert rel_diff(result["beta"].to_numpy()[released], ref[released, 0]) < 1e-10


def test_a_small_cell_of_missing_calls_is_withheld():
    cohorts = make_sites(missing=0.0)
    c = cohorts[1]
    c.dosage[10, :2] = np.nan  # two people without a call: their sum of y would be released
    c.dosage[11, :7] = np.nan  # seven: fine
    task = GwasLinear()
    params = task.validate({})
    half = task.disclose(task.site_half(c, params, None), DisclosureRules())
    assert np.isnan(half.arrays["miss_y"][10]) and np.isnan(half.arrays["n_obs"][10])
    assert np.isfinite(half.arrays["miss_y"][11])
    assert any("missing call" in s.detail and s.rule == "min_cell_count=5" for s in half.suppressed)


@pytest.mark.parametrize("task_class", [GwasLinear, GwasLogistic], ids=["linear", "logistic"])
def test_a_query_selecting_too_few_people_is_refused(task_class):
    cohorts = make_sites()
    small = cohorts[2]
    small._samples = small.samples.iloc[:4]
    small.dosage = small.dosage[:, :4]
    task = task_class()
    params = task.validate({"covariates": []})
    with pytest.raises(TaskError) as e:
        task.disclose(task.site_half(small, params, task.initial_state(params)), DisclosureRules())
    assert e.value.field == "where" and "fewer than 5 people" in e.value.message
    assert "4" not in e.value.message  # the small count itself is not told


def test_logistic_refuses_a_site_with_few_cases():
    c = make_sites()[0]
    y = c.samples["case_status"].copy()
    y[:] = 0
    y.iloc[:3] = 1
    c.samples["case_status"] = y
    task = GwasLogistic()
    params = task.validate({})
    with pytest.raises(TaskError, match="cases or controls"):
        task.disclose(task.site_half(c, params, task.initial_state(params)), DisclosureRules())


def test_crafted_coefficients_cannot_single_out_a_few_people():
    """The client sends the coefficients; a site checks how many people the weights reach."""
    cohorts = make_sites(missing=0.0)
    df = cohorts[0].samples
    cell = (df["age_band"] == "80-89") & (df["sex"] == "male")
    df.loc[cell, "age_band"] = "70-79"
    df.loc[df.index[10:13], ["age_band", "sex"]] = ["80-89", "male"]  # a cell of three people
    task = GwasLogistic()
    params = task.validate({"covariates": ["age_band", "sex"]})
    rules = DisclosureRules(min_cell_count=5, min_minor_allele_count=0)
    setup = [task.disclose(task.site_half(c, params, {"phase": "setup"}), rules) for c in cohorts]
    state = task.combine(setup, params, {"phase": "setup"}).state
    # weights ~0 for everyone but the people aged 80-89 and male: eta = 50 (age - 8) + 25 (male - 1)
    sites = state["sites"]
    crafted = dict(state, b=rg.pack(np.array([-425.0, 0.0, 0.0, 50.0, 25.0])))
    with pytest.raises(TaskError) as e:
        task.disclose(task.site_half(cohorts[0], params, crafted), rules)
    assert e.value.field == "state"
    # the same in a variant round: those variants are withheld, and reported
    n_active = rg.unpack(state["active"], "a").size
    b = np.zeros((n_active, len(sites) + 3))
    b[:, 0], b[:, 3], b[:, 4] = -425.0, 50.0, 25.0
    crafted = dict(
        state,
        phase="variants",
        b=rg.pack(b),
        rows=state["variant_rows"],
        mean=rg.pack(rg.unpack(state["mean_all"], "m")[rg.unpack(state["active"], "a")]),
        iteration=1,
    )
    half = task.disclose(task.site_half(cohorts[0], params, crafted), rules)
    assert np.isnan(half.arrays["score"]).all()
    assert any(s.rule == "min_people=5" for s in half.suppressed)
    assert not any(k.startswith("_") for k in half.to_json()["arrays"])


@pytest.mark.parametrize(
    "state",
    [
        {"phase": "guess"},
        {"phase": "null", "sites": ["elsewhere"]},
        {"phase": "null", "sites": ["site0", "site1", "site2"], "b": "not an array"},
        {
            "phase": "null",
            "sites": ["site0", "site1", "site2"],
            "b": rg.pack(np.array([np.inf, 0, 0, 0, 0])),
        },
        {
            "phase": "variants",
            "sites": ["site0", "site1", "site2"],
            "rows": {"*": rg.pack(np.array([0, 10_000]))},
        },
    ],
    ids=["phase", "site", "b-text", "b-inf", "rows-out-of-range"],
)
def test_malformed_state_is_refused_at_the_site(state):
    task = GwasLogistic()
    params = task.validate({})
    with pytest.raises(TaskError) as e:
        task.site_half(make_sites()[0], params, state)
    assert e.value.field.startswith("state")


# ---------------------------------------------------------------------------
# parameters


@pytest.mark.parametrize(
    "task_class,params,field",
    [
        (GwasLinear, {"phenotype": "height"}, "phenotype"),
        (GwasLinear, {"covariates": ["bmi"]}, "covariates"),
        (GwasLinear, {"covariates": "sex"}, "covariates"),
        (GwasLinear, {"covariates": ["sex", "sex"]}, "covariates"),
        (GwasLinear, {"where": {"sex": "other"}}, "where.sex"),
        (GwasLinear, {"where": {"eye_colour": "blue"}}, "where.eye_colour"),
        (GwasLinear, {"block_size": 10}, "block_size"),
        (GwasLogistic, {"phenotype": "quant_trait"}, "phenotype"),
        (GwasLogistic, {"max_iterations": 0}, "max_iterations"),
        (GwasLogistic, {"max_iterations": "25"}, "max_iterations"),
        (GwasLogistic, {"tolerance": -1}, "tolerance"),
    ],
    ids=[
        "linear-phenotype",
        "linear-covariate-unknown",
        "linear-covariates-not-list",
        "linear-covariate-twice",
        "linear-where-value",
        "linear-where-attribute",
        "linear-unknown-param",
        "logistic-phenotype",
        "logistic-max-iterations-zero",
        "logistic-max-iterations-text",
        "logistic-tolerance",
    ],
)
def test_bad_params_name_the_field(task_class, params, field):
    with pytest.raises(TaskError) as e:
        task_class().validate(params)
    assert e.value.field == field
    assert field.split(".")[0] in e.value.message


def test_defaults():
    assert GwasLinear().validate({}) == {
        "phenotype": "quant_trait",
        "covariates": ["age_band", "sex"],
        "where": {},
    }
    p = GwasLogistic().validate({"covariates": ["sex"]})
    assert (p["phenotype"], p["max_iterations"], p["tolerance"]) == ("case_status", 25, 1e-6)


# ---------------------------------------------------------------------------
# what leaves a site


def halves_bytes(task, cohorts, params):
    """Bytes each site sends per round, and the number of rounds."""
    params = task.validate(params)
    state = task.initial_state(params)
    sizes = []
    while True:
        halves = [task.disclose(task.site_half(c, params, state), NO_RULES) for c in cohorts]
        sizes.append([h.nbytes() for h in halves])
        step = task.combine([over_the_wire(h) for h in halves], params, state)
        if step.done:
            return sizes
        state = json.loads(json.dumps(step.state))


@pytest.mark.parametrize("task_class", [GwasLinear, GwasLogistic], ids=["linear", "logistic"])
def test_bytes_per_site_do_not_grow_with_people(task_class):
    small = halves_bytes(task_class(), make_sites(sizes=(150, 220, 90), missing=0), {})
    large = halves_bytes(task_class(), make_sites(sizes=(300, 440, 180), missing=0), {})
    assert len(small[0]) == 3
    # same rounds' sizes: per variant and per site, never per person
    assert small[0] == large[0]
    assert small[-1][0] <= small[0][0] * 10


def test_halves_hold_aggregates_only():
    cohorts = make_sites()
    task = GwasLinear()
    params = task.validate({})
    half = task.site_half(cohorts[0], params, None)
    n = half.counts["n"]
    V = len(cohorts[0].keys)
    for name, a in half.arrays.items():
        assert n not in a.shape, name  # nothing indexed by person
        assert a.shape[0] in (V, 3, 1), name
