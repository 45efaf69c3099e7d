"""gwas_linear: exact pooled linear regression of a quantitative phenotype on each variant.

The model, per variant, over everyone the query selects at every site:

    y = sum_s alpha_s [site = s] + gamma' covariates + beta x + e

with one intercept per site, the chosen covariates (`sex` as male = 1,
`age_band` as an ordinal in decades; see `regression`) and the alternate-allele
dosage x, a missing call mean-imputed with the variant's pooled mean as Hail
does. It is Hail's `linear_regression_rows(y, x, covariates=[site
indicators..., covariates...])` on the pooled cohort, with Hail's definitions:
t with n - k - 1 degrees of freedom (k = sites + covariates).

Exact, not approximate: OLS needs only sums, so each site sends

    per site     n, D'D, D'y, y'y                    (D = [1, covariates])
    per variant  n_obs, sum x, sum x^2, sum x*y, sum x*covariates
                 and over the people whose call is missing: sum y, sum covariates

(5 + 2p numbers a variant, whatever the number of people). The pooled mean
is sum x / n_obs over all sites, so the combining half imputes exactly:
x'x gains mean^2 * n_missing, x'y gains mean * sum_missing y, and so on. It
then solves each variant's (k+1)x(k+1) normal equations (covariates projected
out) for beta, its standard error, t and p.

Disclosure at each site (the shared rules of `disclosure`): a query selecting
fewer than `min_people` people there is refused; a variant whose minor allele
count min(AC, AN - AC) there is under `min_minor_allele_count` (0 included, as
for allele_frequencies), or whose missing calls there number between 1 and
`min_cell_count - 1` (the sum of y over them would be a small cell), is
withheld at that site (NaN) and listed. A variant withheld at any site has no
pooled answer: its row is NaN and `withheld_at` names the sites, so every
released number is the pooled one. Only per-variant statistics are released.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import kernels
from . import disclosure
from . import regression as rg
from .base import DisclosureRules, SiteCohort, SiteHalf, Step, Task, TaskError

PHENOTYPES = ("quant_trait", "case_status")
SITE_SUMS = ("dd", "dy", "yy")


def model_for(cohort: SiteCohort, params: dict) -> rg.ModelData:
    """The site's people in the model (selected, phenotype and covariates defined)."""
    from ..cohorts import select

    samples = cohort.samples
    data = rg.model_data(
        samples, params["phenotype"], params["covariates"], select(samples, params["where"])
    )
    if data.n == 0:
        raise TaskError(
            f"site {cohort.site}: the query selects no one with {params['phenotype']} "
            "and the covariates recorded",
            "where",
        )
    return data


def model_set(cohort: SiteCohort, params: dict, rules: DisclosureRules) -> list[np.ndarray]:
    """The one set a model's sums run over: the people in it (see `model_for`)."""
    data = model_for(cohort, params)
    disclosure.refuse_small_query(data.n, rules, cohort.site)
    mask = np.zeros(len(cohort.samples), dtype=bool)
    mask[data.columns] = True
    return [mask]


def refuse_small_query(half: SiteHalf, rules: DisclosureRules) -> None:
    disclosure.refuse_small_query(half.counts["n"], rules, half.site)


def withhold_variants(
    half: SiteHalf, names: list[str], n_obs: np.ndarray, sum_x: np.ndarray, rules: DisclosureRules
) -> SiteHalf:
    """NaN in the per-variant arrays `names` where the site's small-count rules forbid release.

    A minor allele count min(AC, AN - AC) under the rule, or a number of people
    with a missing call between 1 and min_cell_count - 1 (their sum of y is
    in the half).
    """
    n = float(half.counts["n"])
    rare = disclosure.rare_variants(sum_x, 2.0 * n_obs, rules.min_minor_allele_count)
    sparse = disclosure.small_cells(n - n_obs, rules.min_cell_count) & ~rare
    for mask, rule, why in (
        (
            rare,
            disclosure.rule_text("min_minor_allele_count", rules.min_minor_allele_count),
            "minor allele count under the minimum",
        ),
        (
            sparse,
            disclosure.rule_text("min_cell_count", rules.min_cell_count),
            "fewer people with a missing call than the minimum",
        ),
    ):
        if not mask.any():
            continue
        for name in names:
            half.arrays[name][mask] = np.nan
        listed = rg.variant_list_detail(half.variants, mask)
        detail = f"{why}: {listed}" if listed else why
        half.suppressed.append(
            disclosure.suppression(half.site, "variant", int(mask.sum()), rule, detail)
        )
    return half


def check_halves(halves: list[SiteHalf], params: dict, task: str) -> list[SiteHalf]:
    """Halves in site order, one per site, all of this task's model."""
    if not halves:
        raise TaskError("no site answered", "sites")
    halves = sorted(halves, key=lambda h: h.site)
    sites = [h.site for h in halves]
    if len(set(sites)) != len(sites):
        raise TaskError(f"{task}: a site answered twice ({', '.join(sites)})", "sites")
    for h in halves:
        model = h.meta.get("model", {})
        if (
            model.get("covariates") != params["covariates"]
            or model.get("phenotype") != params["phenotype"]
        ):
            raise TaskError(f"{task}: site {h.site} answered for another model ({model})", "sites")
    return halves


def withheld_labels(sites: list[str], masks: list[np.ndarray], V: int) -> np.ndarray:
    labels = np.full(V, "", dtype=object)
    for site, mask in zip(sites, masks, strict=True):
        idx = np.flatnonzero(mask)
        labels[idx] = [f"{x},{site}" if x else site for x in labels[idx]]
    return labels


class GwasLinear(Task):
    """Exact pooled per-variant linear regression from per-site sufficient statistics."""

    name = "gwas_linear"
    max_rounds = 1

    def validate(self, params: dict) -> dict:
        return rg.validate_model_params(params, PHENOTYPES)

    # -- per-site half -------------------------------------------------------------

    def audited_sets(self, cohort, params: dict, state, rules: DisclosureRules) -> list:
        return model_set(cohort, self.validate(params), rules)

    def _half(self, cohort: SiteCohort, params: dict, data: rg.ModelData, sums: dict) -> SiteHalf:
        arrays = {**rg.covariate_sums(data), **sums}
        return SiteHalf(
            site=cohort.site,
            dataset=cohort.dataset,
            engine=cohort.engine,
            arrays=arrays,
            counts={"n": data.n},
            variants=cohort.variant_keys(),
            meta={
                "model": {"phenotype": params["phenotype"], "covariates": list(data.covariates)},
                "per_variant": list(rg.LINEAR_PER_VARIANT),
            },
        )

    def site_half_dask(self, cohort: SiteCohort, params: dict, state: dict | None) -> SiteHalf:
        data = model_for(cohort, params)
        # the model's people as an index mask, summed chunk by chunk on the workers
        sums = cohort.reduce_calls(
            kernels.linear_sums, columns=data.columns, column_args=(data.y, data.Z)
        )
        return self._half(cohort, params, data, {k: sums[k] for k in rg.LINEAR_PER_VARIANT})

    def site_half_hail(self, cohort: SiteCohort, params: dict, state: dict | None) -> SiteHalf:
        data = model_for(cohort, params)
        hl = cohort.hail()
        mt = rg.hail_model_columns(hl, cohort.matrix_table(), data, len(cohort.samples))
        sums = rg.hail_genotype_sums(hl, mt, data.Z.shape[1])
        return self._half(cohort, params, data, sums)

    # -- disclosure at the site ----------------------------------------------------

    def disclose(self, half: SiteHalf, rules: DisclosureRules) -> SiteHalf:
        refuse_small_query(half, rules)
        n_obs = half.arrays["n_obs"].copy()
        sum_x = half.arrays["sum_x"].copy()
        return withhold_variants(half, list(rg.LINEAR_PER_VARIANT), n_obs, sum_x, rules)

    # -- combining half ------------------------------------------------------------

    def combine(self, halves: list[SiteHalf], params: dict, state: dict | None) -> Step:
        halves = check_halves(halves, params, self.name)
        sites = [h.site for h in halves]
        p = len(params["covariates"])
        keys, rows = rg.align_variants([h.variants for h in halves])
        V = len(keys)
        aligned = []
        for h, r in zip(halves, rows, strict=True):
            d = {k: h.arrays[k] for k in SITE_SUMS}
            d["n"] = h.counts["n"]
            for k in rg.LINEAR_PER_VARIANT:
                d[k] = rg.take_rows(h.arrays[k], r)
            aligned.append(d)
        withheld = [np.isnan(d["n_obs"]) for d in aligned]
        pooled = rg.pool_linear(aligned, p)
        fit = rg.solve_linear(pooled)
        n = int(pooled.n)
        result = pd.DataFrame(
            {
                "n": np.full(V, n, dtype=np.int64),
                "sum_x": fit["sum_x"],
                "y_transpose_x": fit["y_transpose_x"],
                "beta": fit["beta"],
                "standard_error": fit["standard_error"],
                "t_stat": fit["t_stat"],
                "p_value": fit["p_value"],
                "withheld_at": withheld_labels(sites, withheld, V),
            },
            index=pd.Index(keys, name="variant"),
        )
        result.attrs["model"] = {
            "method": "exact pooled OLS from per-site sufficient statistics",
            "phenotype": params["phenotype"],
            "covariates": ["site:" + s for s in sites] + list(params["covariates"]),
            "encoding": {"sex": "male=1, female=0", "age_band": "lower bound in decades"},
            "x": "alternate-allele dosage, missing calls mean-imputed with the pooled mean",
            "n": n,
            "n_by_site": {h.site: int(h.counts["n"]) for h in halves},
            "degrees_of_freedom": int(fit["df"]),
            "variants_without_pooled_answer": int(np.any(withheld, axis=0).sum()) if V else 0,
        }
        return Step(done=True, result=result)
