# Over 500 lines on purpose: one Task whose rounds (setup, null fit, variant fits) are its
# methods over one state; apart they would pass that state between modules.
"""gwas_logistic: exact pooled logistic regression (Wald test) by federated Newton-Raphson.

Method: EXACT, not meta-analysis. The fit is Hail's
`logistic_regression_rows(test='wald', covariates=[site indicators...,
covariates...])` on the pooled cohort, step for step. Newton-Raphson needs, at
the current coefficients, only the score X'(y - mu) and the information
X'WX, and both are sums over people, so each site sends its part of them and
the client adds them up. The client carries the coefficients between rounds
in `Step.state`; the gateways keep nothing.

    round 1          setup: per site n and cases; per variant n_obs and sum x
                     (the pooled imputation mean, and the disclosure checks)
    rounds 2..       null model (covariates and site intercepts only): per site
                     D'(y - mu) and D'WD at the current coefficients, until every
                     coefficient moves by less than `tolerance` (Hail's 1e-6);
                     the start is Hail's (logit of the case fraction in the
                     first column, zeros elsewhere)
    rounds ...       every variant at once, each from [null coefficients, 0]: per
                     variant the score and information of [1, covariates, x] at
                     that variant's coefficients; a variant leaves the
                     iteration when it converges, explodes (singular
                     information) or reaches `max_iterations` (Hail's 25)

Hail's rules are followed exactly: the step is fisher \\ score; a variant has
converged when every coordinate of the step is below the tolerance, and its
answer is then the current coefficients (not updated by that last step), with
SE from the inverse of the information there, z = beta / SE and p =
2 Phi(-|z|). Missing calls are mean-imputed with the pooled mean of the
variant. Variants that do not converge or explode are in the result with
`converged` / `exploded` set and NaN statistics, never dropped; so are
variants withheld at a site (`withheld_at`).

Per site and round this sends (p+2)(p+3) numbers a variant for p covariates,
whatever the number of people; rounds are typically 1 + 5 + 6.

Disclosure at each site: as gwas_linear (queries under `min_people` refused;
variants with a minor allele count under the minimum, or a count of missing
calls between 1 and the minimum, withheld), and cases and controls at a site must each number 0 or
at least `min_cell_count`. The coefficients come from the client, so a site
also checks what a round's weights mu(1-mu) could single out: the effective
number of people they reach, (sum w)^2 / sum w^2, must be at least
`min_people` (per variant; for the null model, or the query is refused), so
that no crafted coefficients can turn a round into a sum over a few people.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import kernels
from . import disclosure
from . import regression as rg
from .base import DisclosureRules, SiteCohort, SiteHalf, Step, Task, TaskError
from .gwas_linear import (
    check_halves,
    model_for,
    model_set,
    refuse_small_query,
    withheld_labels,
    withhold_variants,
)

PHENOTYPES = ("case_status",)
DEFAULT_MAX_ITERATIONS = 25  # Hail's default for the Wald test
MAX_ITERATIONS = 50
DEFAULT_TOLERANCE = 1e-6  # Hail's default
MAX_ABS_COEFFICIENT = 1e4  # beyond this no honest fit goes; a site refuses such state
PHASES = ("setup", "null", "variants")
# columns of the per-variant fit record the client carries
FIT = ("beta", "standard_error", "z_stat", "p_value", "n_iterations", "converged", "exploded")


def _max_iterations(value):
    if value is None:
        return DEFAULT_MAX_ITERATIONS
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ITERATIONS:
        raise TaskError(
            f"max_iterations: a whole number from 1 to {MAX_ITERATIONS}", "max_iterations"
        )
    return value


def _tolerance(value):
    if value is None:
        return DEFAULT_TOLERANCE
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1e-12 <= value <= 1e-2:
        raise TaskError("tolerance: a number from 1e-12 to 1e-2", "tolerance")
    return float(value)


class GwasLogistic(Task):
    """Exact pooled per-variant logistic regression (Wald) by federated Newton-Raphson."""

    name = "gwas_logistic"
    max_rounds = 1 + 2 * MAX_ITERATIONS

    def validate(self, params: dict) -> dict:
        return rg.validate_model_params(
            params,
            PHENOTYPES,
            {"max_iterations": _max_iterations, "tolerance": _tolerance},
        )

    def initial_state(self, params: dict) -> dict | None:
        return {"phase": "setup"}

    # -- per-site half -------------------------------------------------------------

    def audited_sets(self, cohort, params: dict, state, rules: DisclosureRules) -> list:
        """The people in the model, in every round (each round sums over them only)."""
        return model_set(cohort, self.validate(params), rules)

    def variant_keys_of(self, half: SiteHalf, cohort: SiteCohort, state: dict | None) -> list[str]:
        if half.meta.get("phase") != "variants":
            return list(half.variants)
        keys = cohort.variant_keys()
        return [keys[r] for r in self._rows(state, cohort)]

    def site_half_dask(self, cohort: SiteCohort, params: dict, state: dict | None) -> SiteHalf:
        return self._site_half(cohort, params, state, self._variant_sums_dask)

    def site_half_hail(self, cohort: SiteCohort, params: dict, state: dict | None) -> SiteHalf:
        return self._site_half(cohort, params, state, self._variant_sums_hail)

    def _site_half(self, cohort, params, state, variant_sums) -> SiteHalf:
        phase = (state or {}).get("phase", "setup")
        if phase not in PHASES:
            raise TaskError(f"state.phase: one of {', '.join(PHASES)}", "state")
        data = model_for(cohort, params)
        if not np.isin(data.y, (0.0, 1.0)).all():
            raise TaskError(f"site {cohort.site}: {params['phenotype']} is not 0/1", "phenotype")
        half = SiteHalf(
            site=cohort.site,
            dataset=cohort.dataset,
            engine=cohort.engine,
            counts={"n": data.n},
            meta={
                "model": {"phenotype": params["phenotype"], "covariates": params["covariates"]},
                "phase": phase,
            },
        )
        if phase == "setup":
            half.counts["n_cases"] = int(data.y.sum())
            half.variants = cohort.variant_keys()
            half.arrays.update(self._setup_sums(cohort, data))
            half.meta["per_variant"] = ["n_obs", "sum_x"]
        elif phase == "null":
            S, p, pos = self._layout(state, cohort.site, params)
            b = _state_array(state, "b", (S + p,))
            score, fisher, sw, sw2 = rg.null_score_fisher(data, b[rg.global_columns(pos, S, p)])
            half.arrays.update(
                score=score, fisher=fisher, _sum_w=np.array([sw]), _sum_w2=np.array([sw2])
            )
        else:
            S, p, pos = self._layout(state, cohort.site, params)
            rows = self._rows(state, cohort)
            A = rows.size
            b = _state_array(state, "b", (A, S + p + 1))
            mean = _state_array(state, "mean", (A,))
            if ((mean < 0) | (mean > 2)).any():
                raise TaskError("state.mean: imputation means are dosages, from 0 to 2", "state")
            local = np.append(rg.global_columns(pos, S, p), S + p)
            half.arrays.update(variant_sums(cohort, data, rows, b[:, local], mean))
            half.meta["per_variant"] = ["score", "fisher"]
        return half

    @staticmethod
    def _layout(state, site, params):
        sites = state.get("sites")
        if not isinstance(sites, list) or site not in sites:
            raise TaskError(f"state.sites: site {site} is not part of this fit", "state")
        return len(sites), len(params["covariates"]), sites.index(site)

    @staticmethod
    def _rows(state, cohort) -> np.ndarray:
        rows_by_site = state.get("rows")
        if not isinstance(rows_by_site, dict):
            raise TaskError("state.rows: missing", "state")
        doc = rows_by_site.get(cohort.site, rows_by_site.get("*"))
        if doc is None:
            raise TaskError(f"state.rows: none for site {cohort.site}", "state")
        rows = rg.unpack(doc, "state.rows")
        V = len(cohort.variant_keys())
        if rows.dtype != np.int64 or rows.ndim != 1 or ((rows < 0) | (rows >= V)).any():
            raise TaskError("state.rows: variant rows out of range", "state")
        return rows

    @staticmethod
    def _setup_sums(cohort, data) -> dict:
        if cohort.engine == "hail":
            hl = cohort.hail()
            mt = rg.hail_model_columns(hl, cohort.matrix_table(), data, len(cohort.samples))
            return rg.hail_genotype_sums(hl, mt, data.Z.shape[1], minimal=True)
        return cohort.reduce_calls(kernels.dosage_counts, columns=data.columns)

    @staticmethod
    def _variant_sums_dask(cohort, data, rows, b_local, mean) -> dict:
        # people ordered by (y, covariates): the kernel counts them by class and dosage
        by_class = np.lexsort(np.column_stack([data.y, data.Z]).T)
        s = cohort.reduce_calls(
            kernels.score_fisher_upper,  # the symmetric information as its upper triangle
            columns=data.columns[by_class],
            rows=rows,
            column_args=(data.y[by_class], data.Z[by_class]),
            row_args=(b_local, mean),
        )
        return {
            "score": s["score"],
            "fisher": kernels.fisher_of_upper(s["fisher_upper"], s["score"].shape[1]),
            "_n_obs": s["n_obs"],
            "_sum_x": s["sum_x"],
            "_sum_w": s["sum_w"],
            "_sum_w2": s["sum_w2"],
        }

    @staticmethod
    def _variant_sums_hail(cohort, data, rows, b_local, mean) -> dict:
        hl = cohort.hail()
        mt = rg.hail_model_columns(hl, cohort.matrix_table(), data, len(cohort.samples))
        s = rg.hail_variant_score_fisher(hl, mt, data.Z.shape[1], rows, b_local, mean)
        return {
            "score": s["score"],
            "fisher": s["fisher"],
            "_n_obs": s["n_obs"],
            "_sum_x": s["sum_x"],
            "_sum_w": s["sum_w"],
            "_sum_w2": s["sum_w2"],
        }

    # -- disclosure at the site ----------------------------------------------------

    def disclose(self, half: SiteHalf, rules: DisclosureRules) -> SiteHalf:
        """Small-count rules; arrays named with a leading "_" are read here and never leave."""
        refuse_small_query(half, rules)
        private = {k: half.arrays.pop(k) for k in list(half.arrays) if k.startswith("_")}
        phase = half.meta.get("phase")
        if phase == "setup":
            n, cases = half.counts["n"], half.counts["n_cases"]
            if disclosure.small_cells(np.array([cases, n - cases]), rules.min_cell_count).any():
                raise TaskError(
                    f"site {half.site}: fewer than {rules.min_cell_count} cases or controls "
                    "among the people selected; the query is refused there",
                    "where",
                )
            n_obs, sum_x = half.arrays["n_obs"].copy(), half.arrays["sum_x"].copy()
            return withhold_variants(half, ["n_obs", "sum_x"], n_obs, sum_x, rules)
        n_eff = _effective_n(private["_sum_w"], private["_sum_w2"])
        if phase == "null":
            if not n_eff[0] >= rules.min_people:
                raise TaskError(
                    f"site {half.site}: these coefficients weigh fewer than {rules.min_people} "
                    "people; the round is refused there",
                    "state",
                )
            return half
        half = withhold_variants(
            half, ["score", "fisher"], private["_n_obs"], private["_sum_x"], rules
        )
        narrow = ~(n_eff >= rules.min_people) & ~np.isnan(half.arrays["score"][:, 0])
        if narrow.any():
            half.arrays["score"][narrow] = np.nan
            half.arrays["fisher"][narrow] = np.nan
            half.suppressed.append(
                disclosure.suppression(
                    half.site,
                    "variant",
                    int(narrow.sum()),
                    disclosure.rule_text("min_people", rules.min_people),
                    "the round's weights reach fewer people than the minimum",
                )
            )
        return half

    # -- combining half ------------------------------------------------------------

    def combine(self, halves: list[SiteHalf], params: dict, state: dict | None) -> Step:
        halves = check_halves(halves, params, self.name)
        state = state or {"phase": "setup"}
        phases = {h.meta.get("phase") for h in halves}
        if phases != {state["phase"]}:
            raise TaskError(f"sites answered phase {phases}, expected {state['phase']}", "state")
        if state["phase"] != "setup" and [h.site for h in halves] != state["sites"]:
            missing = sorted(set(state["sites"]) - {h.site for h in halves})
            raise TaskError(
                f"{self.name}: an iterative fit needs every site in every round; "
                f"missing now: {', '.join(missing) or '-'}",
                "sites",
            )
        if state["phase"] == "setup":
            return self._after_setup(halves, params)
        if state["phase"] == "null":
            return self._after_null_round(halves, params, state)
        return self._after_variant_round(halves, params, state)

    def _after_setup(self, halves, params) -> Step:
        sites = [h.site for h in halves]
        keys, rows = rg.align_variants([h.variants for h in halves])
        V = len(keys)
        n_obs = [rg.take_rows(h.arrays["n_obs"], r) for h, r in zip(halves, rows, strict=True)]
        sum_x = [rg.take_rows(h.arrays["sum_x"], r) for h, r in zip(halves, rows, strict=True)]
        withheld = np.array([np.isnan(a) for a in n_obs]).reshape(len(sites), V)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = sum(sum_x) / sum(n_obs)
        active = np.flatnonzero(~withheld.any(axis=0) & np.isfinite(mean))
        n = sum(h.counts["n"] for h in halves)
        cases = sum(h.counts["n_cases"] for h in halves)
        if cases in (0, n):
            raise TaskError(
                f"{params['phenotype']}: all people selected are cases, or none", "phenotype"
            )
        k = len(sites) + len(params["covariates"])
        b0 = np.zeros(k)
        b0[0] = math.log((cases / n) / (1 - cases / n))  # Hail's start
        fit = np.full((V, len(FIT)), np.nan)
        fit[:, FIT.index("converged")] = 0.0
        fit[:, FIT.index("exploded")] = 0.0
        if all(r is rows[0] for r in rows):
            site_rows = {"*": rows[0][active]}
        else:
            site_rows = {s: r[active] for s, r in zip(sites, rows, strict=True)}
        return Step(
            done=False,
            state={
                "phase": "null",
                "sites": sites,
                "keys": "\n".join(keys),
                "n": int(n),
                "n_by_site": {h.site: int(h.counts["n"]) for h in halves},
                "withheld": rg.pack(withheld),
                "variant_rows": {s: rg.pack(r) for s, r in site_rows.items()},
                "active": rg.pack(active.astype(np.int64)),
                "mean_all": rg.pack(mean),
                "b": rg.pack(b0),
                "iteration": 1,
                "fit": rg.pack(fit),
                "rounds": 1,
            },
        )

    def _after_null_round(self, halves, params, state) -> Step:
        S, p = len(state["sites"]), len(params["covariates"])
        k = S + p
        score, fisher = np.zeros(k), np.zeros((k, k))
        for s, h in enumerate(halves):
            idx = rg.global_columns(s, S, p)
            score[idx] += h.arrays["score"]
            fisher[np.ix_(idx, idx)] += h.arrays["fisher"]
        b = rg.unpack(state["b"], "state.b")
        it = int(state["iteration"])
        delta, singular = rg.newton_deltas(fisher[None], score[None])
        state = dict(state, rounds=state["rounds"] + 1)
        if singular[0] or np.isnan(delta[0, 0]):
            raise TaskError(
                "the covariate-only model exploded (singular information): a covariate "
                "is constant or separates cases from controls",
                "covariates",
            )
        if np.max(np.abs(delta[0])) < params["tolerance"]:
            return self._start_variants(state, b, it, params)
        if it >= params["max_iterations"]:
            raise TaskError(
                f"the covariate-only model did not converge in {params['max_iterations']} iterations",
                "max_iterations",
            )
        return Step(done=False, state=dict(state, b=rg.pack(b + delta[0]), iteration=it + 1))

    def _start_variants(self, state, b_null, null_iterations, params) -> Step:
        active = rg.unpack(state["active"], "state.active")
        mean_all = rg.unpack(state["mean_all"], "state.mean_all")
        b = np.zeros((active.size, b_null.size + 1))
        b[:, :-1] = b_null
        # every variant starts together, so all active ones are at the same iteration
        state = dict(
            state,
            phase="variants",
            null={"b": b_null.tolist(), "n_iterations": null_iterations},
            b=rg.pack(b),
            iteration=1,
            mean=rg.pack(mean_all[active]),
            rows=state.pop("variant_rows"),
        )
        del state["mean_all"]
        if active.size == 0:
            return self._finish(state, params)
        return Step(done=False, state=state)

    def _after_variant_round(self, halves, params, state) -> Step:
        S, p = len(state["sites"]), len(params["covariates"])
        m = S + p + 1
        active = rg.unpack(state["active"], "state.active")
        A = active.size
        b = rg.unpack(state["b"], "state.b")
        it = int(state["iteration"])
        fit = rg.unpack(state["fit"], "state.fit")
        withheld = rg.unpack(state["withheld"], "state.withheld")
        score, fisher = np.zeros((A, m)), np.zeros((A, m, m))
        for s, h in enumerate(halves):
            idx = np.append(rg.global_columns(s, S, p), m - 1)
            score[:, idx] += h.arrays["score"]
            fisher[:, idx[:, None], idx[None, :]] += h.arrays["fisher"]
            # a site may still withhold a variant in a later round (its weights rule)
            withheld[s, active] |= np.isnan(h.arrays["score"][:, 0])
        lost = withheld[:, active].any(axis=0)
        ok = ~lost
        delta = np.full((A, m), np.nan)
        singular = np.zeros(A, dtype=bool)
        delta[ok], singular[ok] = rg.newton_deltas(fisher[ok], score[ok])
        exploded = ok & (singular | np.isnan(delta[:, 0]))
        with np.errstate(invalid="ignore"):
            step = np.max(np.abs(delta), axis=1)
        converged = ok & ~exploded & (step < params["tolerance"])
        going = ok & ~exploded & ~converged
        maxed = going & (it >= params["max_iterations"])
        going &= ~maxed

        col = {name: FIT.index(name) for name in FIT}
        rows = active[converged]
        if rows.size:
            var = rg.inverse_diagonal_last(fisher[converged])
            with np.errstate(invalid="ignore"):
                se = np.sqrt(var)
                z = b[converged, -1] / se
            fit[rows, col["beta"]] = np.where(np.isfinite(se), b[converged, -1], np.nan)
            fit[rows, col["standard_error"]] = se
            fit[rows, col["z_stat"]] = z
            fit[rows, col["p_value"]] = rg.normal_two_sided_p(z)
            fit[rows, col["converged"]] = 1.0
        # Hail 0.2.139 reports max_iterations for a fit that ran out of them
        fit[active[converged | exploded | maxed], col["n_iterations"]] = it
        fit[active[exploded], col["exploded"]] = 1.0

        state = dict(
            state,
            rounds=state["rounds"] + 1,
            fit=rg.pack(fit),
            withheld=rg.pack(withheld),
            active=rg.pack(active[going]),
            b=rg.pack(b[going] + delta[going]),
            iteration=it + 1,
            mean=rg.pack(rg.unpack(state["mean"], "state.mean")[going]),
            rows={s: rg.pack(rg.unpack(r, "state.rows")[going]) for s, r in state["rows"].items()},
        )
        if not going.any():
            return self._finish(state, params)
        return Step(done=False, state=state)

    def _finish(self, state, params) -> Step:
        keys = state["keys"].split("\n") if state["keys"] else []
        fit = rg.unpack(state["fit"], "state.fit")
        withheld = rg.unpack(state["withheld"], "state.withheld")
        col = {name: FIT.index(name) for name in FIT}
        n_iter = fit[:, col["n_iterations"]]
        result = pd.DataFrame(
            {
                "n": np.full(len(keys), state["n"], dtype=np.int64),
                "beta": fit[:, col["beta"]],
                "standard_error": fit[:, col["standard_error"]],
                "z_stat": fit[:, col["z_stat"]],
                "p_value": fit[:, col["p_value"]],
                "n_iterations": pd.array(
                    [None if np.isnan(v) else int(v) for v in n_iter], dtype="Int64"
                ),
                "converged": fit[:, col["converged"]] == 1.0,
                "exploded": fit[:, col["exploded"]] == 1.0,
                "withheld_at": withheld_labels(state["sites"], list(withheld), len(keys)),
            },
            index=pd.Index(keys, name="variant"),
        )
        fitted = ~withheld.any(axis=0)
        result.attrs["model"] = {
            "method": "exact pooled logistic regression (Wald) by federated Newton-Raphson",
            "phenotype": params["phenotype"],
            "covariates": ["site:" + s for s in state["sites"]] + list(params["covariates"]),
            "encoding": {"sex": "male=1, female=0", "age_band": "lower bound in decades"},
            "x": "alternate-allele dosage, missing calls mean-imputed with the pooled mean",
            "n": state["n"],
            "n_by_site": state["n_by_site"],
            "null_model": state.get("null"),
            "rounds": state["rounds"],
            "not_converged": int(
                (fitted & ~result["converged"].to_numpy() & ~result["exploded"].to_numpy()).sum()
            ),
            "exploded": int(result["exploded"].sum()),
            "variants_without_pooled_answer": int((~fitted).sum()),
        }
        return Step(done=True, result=result)


def _state_array(state: dict, name: str, shape: tuple) -> np.ndarray:
    a = rg.unpack(state.get(name), f"state.{name}")
    if a.dtype != np.float64 or a.shape != shape:
        raise TaskError(f"state.{name}: expected float64 of shape {shape}, got {a.shape}", "state")
    if not np.isfinite(a).all() or (np.abs(a) > MAX_ABS_COEFFICIENT).any():
        raise TaskError(
            f"state.{name}: coefficients must be finite and at most {MAX_ABS_COEFFICIENT:g}",
            "state",
        )
    return a


def _effective_n(sum_w: np.ndarray, sum_w2: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sum_w2 > 0, sum_w * sum_w / sum_w2, 0.0)
