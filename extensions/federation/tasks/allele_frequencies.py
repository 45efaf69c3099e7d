# Just over 500 lines on purpose: one task (parameters, both engines' halves, disclosure,
# pooling); its pooling reads `shared_variants` here, where tests patch it.
"""Pooled allele frequencies: AC, AN, AF per variant over every site, and each site's AF.

Parameters (all optional):

    stratify_by  null | "sex" | "age_band" | "region"   one clinical attribute
    where        {"sex": "female", "disease_name": [...], ...}   whom to count
                 (attributes: see extensions.federation.cohorts.SELECTABLE)
    variants     a list of "contig:pos:ref:alt" keys, or a region
                 "chr20" / "chr20:100000-200000" (1-based, inclusive)

Per-site half (arrays (variants, strata); one stratum "all" without
stratify_by): `ac` alternate-allele count, `an` allele number (2 per called
diploid genotype), `n_called` people with a call; `n_people` (strata,) the
people in each stratum; counts `n_selected`. On Dask one task per chunk of
the Zarr store counts the chunk's integer genotype codes per stratum
(`kernels.allele_counts`); on Hail `hl.agg.sum(GT.n_alt_alleles())` and
`hl.agg.count_where(hl.is_defined(GT))` inside `hl.agg.group_by(stratum)`.
All sums are of small integers, held exactly in float64, so the two engines
give identical halves. A query of everyone (no `where`) on either engine
reads the same counts from the site's summary cache instead, when it holds
the dataset as it is now (`extensions.federation.summary`); a query of some
people on Dask counts the site's packed calls (`extensions.federation.packed`,
two bits a call, AND and popcount per stratum mask) when the cache vouches
for them; `meta["source"]` says which ("summary", "packed" or "genotypes").

Disclosure at the site (`disclose`):
- a query selecting fewer than `min_people` people is refused (TaskError);
- a stratum with 0 < people < `min_cell_count` is withheld whole, plus a
  complementary stratum when it would otherwise be derivable from the total;
- a (variant, stratum) cell whose minor allele count min(AC, AN - AC) is
  under `min_minor_allele_count`, or with 0 < n_called < `min_cell_count`,
  has its AC, AN and n_called withheld.
Withheld values are NaN and counted in `half.suppressed`.

Combine: sums over sites. A pooled value is NaN where any site withheld its
cell (a sum over the remaining sites would be a different cohort's answer
under the same name); `withheld` and `n_sites_withheld` say where and the
attrs count them, so nothing is dropped silently. A variant a site does not
hold at all is pooled over the sites that do (`n_sites`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property, partial

import numpy as np
import pandas as pd

# a module import: cohorts imports tasks.base, so it may still be loading when this runs
from .. import cohorts, kernels, packed
from .base import (
    STRATIFY_BY,
    DisclosureRules,
    SiteCohort,
    SiteHalf,
    Step,
    Task,
    TaskError,
    check_parameter_names,
    shared_variants,
)
from .disclosure import (
    complementary_suppression,
    rare_variants,
    refuse_small_query,
    rule_text,
    small_cells,
    suppression,
)
from .variant_keys import (
    _objects,
    _validate_variants,
    key_columns,
    parse_region,
    variant_rows,
)

ALL = "all"  # the one stratum of an unstratified query
PARAMS = ("stratify_by", "where", "variants")
#: halves of everyone (no `where`) read their counts from the site's summary cache when it
#: is valid; tests and benchmarks set this False to count from the genotype calls
USE_SUMMARY = True


def strata(samples: pd.DataFrame, by: str | None) -> tuple[list[str], np.ndarray]:
    """(labels, code per row of `samples`): the strata present, in their natural order."""
    if by is None:
        return [ALL], np.zeros(len(samples), dtype=np.int64)
    values = samples[by].astype(str).to_numpy()
    labels = cohorts.level_order(by, set(values.tolist()))
    index = {label: i for i, label in enumerate(labels)}
    return labels, np.asarray([index[v] for v in values], dtype=np.int64)


def withheld_strata(n_people, rules: DisclosureRules) -> np.ndarray:
    """Strata withheld whole: under the minimum count, and their complements (see `disclose`)."""
    n_people = np.asarray(n_people, dtype=np.float64)
    primary = small_cells(n_people, rules.min_cell_count)
    return primary | complementary_suppression(n_people, primary, rules.min_cell_count)


class AlleleFrequencies(Task):
    """Pooled AC/AN/AF per variant over the sites, optionally stratified (see the module doc)."""

    name = "allele_frequencies"

    # -- parameters ------------------------------------------------------------------

    def validate(self, params: dict) -> dict:
        check_parameter_names(params, PARAMS)
        by = params.get("stratify_by")
        if by is not None and by not in STRATIFY_BY:
            raise TaskError(
                f"stratify_by: {by!r} is not one of {', '.join(STRATIFY_BY)} (or null)",
                "stratify_by",
            )
        where = cohorts.validate_where(params.get("where"))
        return {
            "stratify_by": by,
            "where": {k: list(v) for k, v in where.items()},
            "variants": _validate_variants(params.get("variants")),
        }

    # -- the site half ---------------------------------------------------------------

    def _selection(self, cohort: SiteCohort, params: dict):
        samples = cohort.samples
        mask = cohorts.select(samples, params.get("where"))
        labels, codes = strata(samples[mask], params.get("stratify_by"))
        return samples, mask, labels, codes

    def audited_sets(self, cohort, params: dict, state, rules: DisclosureRules) -> list:
        """The selection (its count is released) and each stratum released whole."""
        params = self.validate(params)
        _, mask, labels, codes = self._selection(cohort, params)
        refuse_small_query(int(codes.size), rules, cohort.site)
        sets = [mask]
        if params.get("stratify_by") is not None:
            released = ~withheld_strata(np.bincount(codes, minlength=len(labels)), rules)
            chosen = np.flatnonzero(mask)
            for k in np.flatnonzero(released):
                stratum = np.zeros(mask.size, dtype=bool)
                stratum[chosen[codes == k]] = True
                sets.append(stratum)
        return sets

    def per_variant_arrays(self, half: SiteHalf) -> list[str]:
        return ["ac", "an", "n_called"]

    def _half(
        self, cohort, params, keys, ac, an, n_called, labels, codes, source="genotypes"
    ) -> SiteHalf:
        n_people = np.bincount(codes, minlength=len(labels)).astype(np.float64)
        return SiteHalf(
            site=cohort.site,
            dataset=cohort.dataset,
            engine=cohort.engine,
            arrays={"ac": ac, "an": an, "n_called": n_called, "n_people": n_people},
            counts={"n_selected": int(codes.size)},
            variants=list(keys),
            meta={
                "stratify_by": params.get("stratify_by"),
                "strata": list(labels),
                "source": source,
            },
        )

    def _half_from_summary(self, cohort, params, labels, codes) -> SiteHalf | None:
        """The half of everyone from the site's summary cache; None when it cannot answer.

        The cache holds every person's counts per variant and stratum (see
        `extensions.federation.summary`); a query with a `where` counts other
        people, and a missing or stale cache is read past (logged there).
        """
        if not USE_SUMMARY or params.get("where"):
            return None
        cache = cohort.summary
        if cache is None:
            return None
        keys = cache.variant_keys()
        rows = variant_rows(keys, params["variants"])
        found = cache.counts(params.get("stratify_by"), labels, codes, rows)
        if found is None:
            return None
        if rows is not None:
            keys = [keys[i] for i in rows]
        ac, n_called = found["ac"], found["n_called"]
        return self._half(
            cohort, params, keys, ac, 2.0 * n_called, n_called, labels, codes, "summary"
        )

    def site_half_dask(self, cohort, params: dict, state: dict | None) -> SiteHalf:
        params = self.validate(params)
        _, mask, labels, codes = self._selection(cohort, params)
        cached = self._half_from_summary(cohort, params, labels, codes)
        if cached is not None:
            return cached
        keys = cohort.variant_keys()
        rows = variant_rows(keys, params["variants"])
        if rows is not None:
            keys = [keys[i] for i in rows]
        shape = (len(keys), len(labels))
        if not (len(keys) and codes.size):
            return self._half(
                cohort, params, keys, np.zeros(shape), np.zeros(shape), np.zeros(shape),
                labels, codes,
            )  # fmt: skip
        if cohort.packed is not None:
            # one bit mask of people per stratum, ANDed with the packed calls and counted
            n = len(cohort.sample_ids)
            sums = cohort.reduce_packed(
                packed.person_masks(np.flatnonzero(mask), codes, len(labels), n), rows
            )
            ac, n_called = sums["ac"].reshape(shape), sums["n_called"].reshape(shape)
            return self._half(
                cohort, params, keys, ac, 2.0 * n_called, n_called, labels, codes, "packed"
            )
        # the selected people grouped by stratum (an index mask, in column order within
        # one), counted chunk by chunk on the workers: only (variants x strata) comes back
        by_stratum = np.argsort(codes, kind="stable")
        sums = cohort.reduce_calls(
            partial(kernels.allele_counts, n_strata=len(labels)),
            columns=np.flatnonzero(mask)[by_stratum],
            rows=rows,
            column_args=(codes[by_stratum],),
        )
        ac, n_called = sums["ac"].reshape(shape), sums["n_called"].reshape(shape)
        return self._half(cohort, params, keys, ac, 2.0 * n_called, n_called, labels, codes)

    def site_half_hail(self, cohort, params: dict, state: dict | None) -> SiteHalf:
        params = self.validate(params)
        samples, mask, labels, codes = self._selection(cohort, params)
        cached = self._half_from_summary(cohort, params, labels, codes)
        if cached is not None:
            return cached
        hl = cohort.hail()
        mt = cohort.matrix_table()
        stratum_of = dict(zip(samples.index[mask].tolist(), codes.tolist(), strict=True))
        if not mask.all():
            chosen = hl.literal(set(stratum_of), dtype=hl.tset(hl.tstr))
            mt = mt.filter_cols(chosen.contains(mt.s))
        mt = mt.annotate_cols(
            af_stratum=hl.literal(stratum_of, dtype=hl.tdict(hl.tstr, hl.tint64))[mt.s]
        )
        mt = self._filter_rows_hail(hl, mt, params["variants"])
        zero = hl.struct(ac=hl.int64(0), nc=hl.int64(0))
        mt = mt.annotate_rows(
            af_by=hl.agg.group_by(
                mt.af_stratum,
                hl.struct(
                    ac=hl.agg.sum(mt.GT.n_alt_alleles()),
                    nc=hl.agg.count_where(hl.is_defined(mt.GT)),
                ),
            )
        )
        rows = mt.rows()
        per = hl.range(len(labels)).map(lambda i: rows.af_by.get(i, zero))
        rows = rows.select(
            key=hl.delimit(
                [
                    rows.locus.contig,
                    hl.str(rows.locus.position),
                    rows.alleles[0],
                    hl.delimit(rows.alleles[1:], ","),
                ],
                ":",
            ),
            ac=per.map(lambda s: s.ac),
            nc=per.map(lambda s: s.nc),
        )
        collected = rows.collect()
        keys = [r.key for r in collected]
        shape = (len(keys), len(labels))
        ac = np.asarray([r.ac for r in collected], dtype=np.float64).reshape(shape)
        n_called = np.asarray([r.nc for r in collected], dtype=np.float64).reshape(shape)
        return self._half(cohort, params, keys, ac, 2.0 * n_called, n_called, labels, codes)

    @staticmethod
    def _filter_rows_hail(hl, mt, variants):
        if variants is None:
            return mt
        if isinstance(variants, str):
            contig, lo, hi = parse_region(variants)
            genome = mt.locus.dtype.reference_genome
            if contig not in genome.contigs:
                return mt.filter_rows(False)
            end = min(hi, genome.lengths[contig])
            interval = hl.locus_interval(
                contig, lo, end, includes_end=True, reference_genome=genome
            )
            return hl.filter_intervals(mt, [interval])
        key = hl.delimit(
            [
                mt.locus.contig,
                hl.str(mt.locus.position),
                mt.alleles[0],
                hl.delimit(mt.alleles[1:], ","),
            ],
            ":",
        )
        return mt.filter_rows(hl.literal(set(variants), dtype=hl.tset(hl.tstr)).contains(key))

    # -- disclosure at the site ----------------------------------------------------------

    def disclose(self, half: SiteHalf, rules: DisclosureRules) -> SiteHalf:
        site = half.site
        refuse_small_query(half.counts.get("n_selected", 0), rules, site)
        labels = half.meta.get("strata", [ALL])
        by = half.meta.get("stratify_by")
        arrays = {k: np.array(v, dtype=np.float64) for k, v in half.arrays.items()}
        ac, an, n_called, n_people = (arrays[k] for k in ("ac", "an", "n_called", "n_people"))
        suppressed = list(half.suppressed)

        primary = small_cells(n_people, rules.min_cell_count)
        secondary = complementary_suppression(n_people, primary, rules.min_cell_count)
        cell_rule = rule_text("min_cell_count", rules.min_cell_count)
        for mask, rule, why in (
            (primary, cell_rule, "fewer people than the rule allows"),
            (secondary, f"{cell_rule} (complementary)", "else derivable from the total"),
        ):
            if mask.any():
                names = ", ".join(str(labels[i]) for i in np.flatnonzero(mask))
                suppressed.append(
                    suppression(site, "cell", mask.sum(), rule, f"strata of {by}: {names}; {why}")
                )
        strata_out = primary | secondary
        n_people[strata_out] = np.nan
        for a in (ac, an, n_called):
            a[:, strata_out] = np.nan

        rare = rare_variants(ac, an, rules.min_minor_allele_count)
        few = small_cells(n_called, rules.min_cell_count) & ~rare
        for mask, rule, why in (
            (
                rare,
                rule_text("min_minor_allele_count", rules.min_minor_allele_count),
                "minor allele count here under the rule",
            ),
            (few, cell_rule, "fewer called people than the rule allows"),
        ):
            if mask.any():
                unit = "variants" if by is None else "(variant, stratum) cells"
                suppressed.append(suppression(site, "variant", mask.sum(), rule, f"{unit}: {why}"))
            for a in (ac, an, n_called):
                a[mask] = np.nan
        return SiteHalf(
            site=half.site,
            dataset=half.dataset,
            engine=half.engine,
            arrays={"ac": ac, "an": an, "n_called": n_called, "n_people": n_people},
            counts=dict(half.counts),
            variants=list(half.variants),
            suppressed=suppressed,
            meta=dict(half.meta),
        )

    # -- combine ---------------------------------------------------------------------

    def combine(self, halves: list[SiteHalf], params: dict, state: dict | None) -> Step:
        by = params.get("stratify_by")
        check_halves(halves, by)
        grid = SiteGrid.of(halves, by)
        ds = pooled_dataset(halves, grid)
        if by is None:
            ds = ds.squeeze("stratum", drop=True)
        ds.attrs.update(self._attrs(halves, params, by, grid))
        return Step(done=True, result=ds)

    def _attrs(self, halves: list[SiteHalf], params: dict, by, grid: SiteGrid) -> dict:
        """The pooled dataset's attributes: the query, the sites and what was withheld."""
        suppressions = [s.to_json() for h in halves for s in h.suppressed]
        engines = sorted({h.engine for h in halves})
        return {
            "task": self.name,
            "sites": json.dumps(grid.sites),
            "engine": engines[0] if len(engines) == 1 else json.dumps(engines),
            "stratify_by": by or "",
            "params": json.dumps(params, sort_keys=True),
            "datasets": json.dumps(
                {h.site: f"{h.dataset}@{h.meta.get('version', '')}" for h in halves}
            ),
            "suppressions": json.dumps(suppressions),
            "n_withheld_pooled": int((grid.n_withheld > 0).sum()),
            "note": (
                "AC, AN, AF pooled over the sites; NaN where a site withheld its value "
                "under disclosure control (see withheld, suppressions)"
            ),
        }


# -- combine: the sites' halves on one grid, then pooled ----------------------------------


def check_halves(halves: list[SiteHalf], by) -> None:
    """Refused unless one half a site, each of the stratification asked for."""
    if not halves:
        raise TaskError("no site returned a result", "sites")
    sites = [h.site for h in halves]
    if len(set(sites)) != len(sites):
        raise TaskError(f"a site answered twice: {sites}", "sites")
    for h in halves:
        if h.meta.get("stratify_by") != by:
            raise TaskError(f"site {h.site} answered a different stratification", "stratify_by")


@dataclass
class SiteGrid:
    """The sites' halves on one grid of (variant, stratum, site): NaN where a site withheld a
    value or does not hold the variant (`held` says which), n_people (stratum, site)."""

    sites: list[str]
    keys: list[str]
    labels: list[str]
    ac: np.ndarray
    an: np.ndarray
    n_called: np.ndarray
    held: np.ndarray  # (variant, site)
    n_people: np.ndarray

    @classmethod
    def of(cls, halves: list[SiteHalf], by) -> SiteGrid:
        # every site holding the same variants (the usual case): no matching key by key
        shared = shared_variants([h.variants for h in halves])
        if shared is None:
            keys = list(dict.fromkeys(k for h in halves for k in h.variants))
            row = {k: i for i, k in enumerate(keys)}
        else:
            keys = list(shared)
        labels = (
            [ALL]
            if by is None
            else cohorts.level_order(by, {s for h in halves for s in h.meta["strata"]})
        )
        col = {s: j for j, s in enumerate(labels)}
        V, S, K = len(keys), len(labels), len(halves)

        site_ac = np.full((V, S, K), np.nan)
        site_an = np.full((V, S, K), np.nan)
        site_nc = np.full((V, S, K), np.nan)
        held = np.zeros((V, K), dtype=bool)
        n_people = np.zeros((S, K))
        for k, h in enumerate(halves):
            if shared is None:
                r = np.asarray([row[v] for v in h.variants], dtype=np.int64)
            else:
                r = slice(None)
            c = np.asarray([col[s] for s in h.meta["strata"]], dtype=np.int64)
            held[r, k] = True
            for a, name in ((site_ac, "ac"), (site_an, "an"), (site_nc, "n_called")):
                # a stratum nobody at the site is in: zero people, zero alleles (exact)
                block = np.zeros((len(h.variants), S))
                block[:, c] = h.arrays[name]
                a[r, :, k] = block
            n_people[c, k] = h.arrays["n_people"]
        sites = [h.site for h in halves]
        return cls(sites, keys, labels, site_ac, site_an, site_nc, held, n_people)

    @cached_property
    def withheld(self) -> np.ndarray:
        """(variant, stratum, site): a site holds the variant and withheld its value."""
        return self.held[:, None, :] & np.isnan(self.ac)

    @cached_property
    def n_withheld(self) -> np.ndarray:
        return self.withheld.sum(axis=2)

    def pooled(self, a: np.ndarray) -> np.ndarray:
        """The sum over the sites holding each variant; NaN where any of them withheld it."""
        total = np.where(self.held[:, None, :], a, 0.0).sum(axis=2)
        total[self.n_withheld > 0] = np.nan
        return total


def pooled_dataset(halves: list[SiteHalf], grid: SiteGrid):
    """The pooled and per-site values as an xarray Dataset over (variant, stratum, site)."""
    import xarray as xr

    V, S = len(grid.keys), len(grid.labels)
    withheld, n_withheld = grid.withheld, grid.n_withheld
    n_sites = np.broadcast_to(grid.held.sum(axis=1)[:, None], (V, S))
    site_ac, site_an, site_nc = grid.ac, grid.an, grid.n_called
    ac, an, nc = grid.pooled(site_ac), grid.pooled(site_an), grid.pooled(site_nc)
    with np.errstate(invalid="ignore", divide="ignore"):
        af = np.where(an > 0, ac / an, np.nan)
        site_af = np.where(site_an > 0, site_ac / site_an, np.nan)

    contig, position, ref, alt = key_columns(grid.keys)
    dims3, dims2 = ("variant", "stratum", "site"), ("variant", "stratum")
    return xr.Dataset(
        {
            "AC": (dims2, ac),
            "AN": (dims2, an),
            "AF": (dims2, af),
            "n_called": (dims2, nc),
            "site_AC": (dims3, site_ac),
            "site_AN": (dims3, site_an),
            "site_AF": (dims3, site_af),
            "site_n_called": (dims3, site_nc),
            "withheld": (dims3, withheld),
            "n_sites_withheld": (dims2, n_withheld),
            "n_sites": (dims2, np.array(n_sites)),
            "n_people": (("stratum", "site"), grid.n_people),
            "n_selected": (("site",), [float(h.counts.get("n_selected", 0)) for h in halves]),
        },
        coords={  # strings as object arrays: no copy into fixed-width unicode
            "variant": _objects(grid.keys),
            "contig": ("variant", _objects(contig)),
            "position": ("variant", position),
            "ref": ("variant", _objects(ref)),
            "alt": ("variant", _objects(alt)),
            "stratum": grid.labels,
            "site": grid.sites,
        },
    )
