"""Counts of people by the clinical attributes, for study planning.

Parameters (all optional):

    by      null: one table per attribute (age_band, sex, prefecture, region,
            disease_name with its ICD-10 code);
            "sex" or ["sex"]: that attribute's table only;
            ["sex", "age_band"]: the cross-tab of two attributes (every
            combination of the levels present, zeros included)
    where   whom to count, as in allele_frequencies ({"region": "Kanto"})

The per-site half needs only the people table, which both cohorts give
identically (the TSVs in genotype column order), so the two engines share
one implementation. Arrays: `count:<table>` per level; the levels travel in
`meta["tables"]`.

Disclosure at the site: a query selecting fewer than `min_people` is
refused; a cell with 0 < n < `min_cell_count` is withheld (NaN), and so is
a complementary cell wherever a withheld cell would otherwise be derivable
from its table's total (one-way) or from a row or column total (cross-tab).

Combine: the result is a long pandas DataFrame, one row per level:

    attribute, value, by, by_value, icd10,  count_<site>... , count,
    withheld_sites, complete

`count` is the sum of the cells the sites released; where `withheld_sites`
> 0 (`complete` False) it is a lower bound, since the withheld cells never
left their sites (each was between 1 and min_cell_count - 1); NaN when no
site released the cell. `df.attrs` carries the sites and every suppression.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

# a module import: cohorts imports tasks.base, so it may still be loading when this runs
from .. import cohorts
from .base import DisclosureRules, SiteHalf, Step, Task, TaskError, check_parameter_names
from .disclosure import (
    complementary_suppression,
    refuse_small_query,
    rule_text,
    small_cells,
    suppression,
)

COUNT_ATTRIBUTES = ("age_band", "sex", "prefecture", "region", "disease_name")
PARAMS = ("by", "where")


def columns_of(attribute: str) -> list[str]:
    """The people-table columns a level of `attribute` is made of (diseases carry their code)."""
    return ["disease_name", "icd10"] if attribute == "disease_name" else [attribute]


def table_name(attributes: list[str]) -> str:
    return " x ".join(attributes)


def _levels(people: pd.DataFrame, attribute: str) -> list[tuple[str, ...]]:
    cols = columns_of(attribute)
    observed = {tuple(map(str, t)) for t in people[cols].itertuples(index=False, name=None)}
    return cohorts.level_order([attribute] + ["icd10"] * (len(cols) - 1), observed)


def count_table(
    people: pd.DataFrame, attributes: list[str]
) -> tuple[list[list[str]], np.ndarray, list[int]]:
    """(levels, counts, shape) of one table over `people`.

    One attribute: the levels present. Two: every pair of the levels present
    of each (zeros included), row-major, shape (levels of a, levels of b).
    """
    per = [_levels(people, a) for a in attributes]
    cols = [c for a in attributes for c in columns_of(a)]
    tally = people.groupby(cols, sort=False).size() if len(people) else pd.Series(dtype=float)
    found = {(k if isinstance(k, tuple) else (k,)): int(v) for k, v in tally.items()}
    if len(attributes) == 1:
        levels = [list(t) for t in per[0]]
    else:
        levels = [list(a) + list(b) for a in per[0] for b in per[1]]
    counts = np.asarray([found.get(tuple(lv), 0) for lv in levels], dtype=np.float64)
    return levels, counts, [len(p) for p in per]


def withheld_cells(counts: np.ndarray, shape: list[int], rules: DisclosureRules) -> np.ndarray:
    """Cells of one table withheld: under the minimum count, and their complements."""
    counts = np.asarray(counts, dtype=np.float64)
    shape = shape if len(shape) == 2 else [counts.size]
    primary = small_cells(counts, rules.min_cell_count)
    secondary = complementary_suppression(
        counts.reshape(shape), primary.reshape(shape), rules.min_cell_count
    ).ravel()
    return primary | secondary


class CohortCounts(Task):
    """People by clinical attribute (one-way tables or one cross-tab); see the module doc."""

    name = "cohort_counts"

    def validate(self, params: dict) -> dict:
        check_parameter_names(params, PARAMS)
        by = params.get("by")
        if by is not None:
            by = [by] if isinstance(by, str) else by
            if not isinstance(by, list | tuple) or not 1 <= len(by) <= 2:
                raise TaskError("by must be an attribute or a list of one or two", "by")
            for a in by:
                if a not in COUNT_ATTRIBUTES:
                    raise TaskError(f"by: {a!r} is not one of {', '.join(COUNT_ATTRIBUTES)}", "by")
            if len(by) == 2 and by[0] == by[1]:
                raise TaskError("by: a cross-tab needs two different attributes", "by")
            if set(by) == {"prefecture", "region"}:
                raise TaskError(
                    "by: region is a grouping of prefecture; cross one with another attribute", "by"
                )
            by = list(by)
        where = cohorts.validate_where(params.get("where"))
        return {"by": by, "where": {k: list(v) for k, v in where.items()}}

    def _tables(self, params: dict) -> list[list[str]]:
        by = params.get("by")
        if by is None:
            return [[a] for a in COUNT_ATTRIBUTES]
        return [by] if len(by) == 2 else [[by[0]]]

    def audited_sets(self, cohort, params: dict, state, rules: DisclosureRules) -> list:
        """The selection (its count is released) and every non-empty cell released."""
        params = self.validate(params)
        samples = cohort.samples
        mask = cohorts.select(samples, params["where"])
        refuse_small_query(int(mask.sum()), rules, cohort.site)
        people = samples[mask]
        chosen = np.flatnonzero(mask)
        sets = [mask]
        for attributes in self._tables(params):
            levels, counts, shape = count_table(people, attributes)
            withheld = withheld_cells(counts, shape, rules)
            cols = [c for a in attributes for c in columns_of(a)]
            rows_of: dict[tuple, list[int]] = {}
            for i, key in enumerate(people[cols].itertuples(index=False, name=None)):
                rows_of.setdefault(tuple(map(str, key)), []).append(i)
            for level, count, out in zip(levels, counts, withheld, strict=True):
                if out or count == 0:
                    continue
                cell = np.zeros(mask.size, dtype=bool)
                cell[chosen[rows_of[tuple(level)]]] = True
                sets.append(cell)
        return sets

    def _site_half(self, cohort, params: dict) -> SiteHalf:
        params = self.validate(params)
        people = cohort.samples
        people = people[cohorts.select(people, params["where"])]
        arrays, tables = {}, []
        for attributes in self._tables(params):
            name = table_name(attributes)
            levels, counts, shape = count_table(people, attributes)
            arrays[f"count:{name}"] = counts
            tables.append(
                {
                    "name": name,
                    "attributes": attributes,
                    "columns": [c for a in attributes for c in columns_of(a)],
                    "levels": levels,
                    "shape": shape,
                }
            )
        return SiteHalf(
            site=cohort.site,
            dataset=cohort.dataset,
            engine=cohort.engine,
            arrays=arrays,
            counts={"n_selected": int(len(people))},
            meta={"tables": tables},
        )

    def site_half_dask(self, cohort, params: dict, state: dict | None) -> SiteHalf:
        return self._site_half(cohort, params)

    def site_half_hail(self, cohort, params: dict, state: dict | None) -> SiteHalf:
        return self._site_half(cohort, params)

    def disclose(self, half: SiteHalf, rules: DisclosureRules) -> SiteHalf:
        site = half.site
        refuse_small_query(half.counts.get("n_selected", 0), rules, site)
        rule = rule_text("min_cell_count", rules.min_cell_count)
        arrays, suppressed = {}, list(half.suppressed)
        for t in half.meta["tables"]:
            key = f"count:{t['name']}"
            counts = np.array(half.arrays[key], dtype=np.float64)
            shape = t["shape"] if len(t["shape"]) == 2 else [counts.size]
            primary = small_cells(counts, rules.min_cell_count)
            secondary = complementary_suppression(
                counts.reshape(shape), primary.reshape(shape), rules.min_cell_count
            ).ravel()
            for mask, r, why in (
                (primary, rule, "fewer people than the rule allows"),
                (secondary, f"{rule} (complementary)", "else derivable from a total"),
            ):
                if mask.any():
                    suppressed.append(
                        suppression(site, "cell", mask.sum(), r, f"table {t['name']}: {why}")
                    )
            counts[primary | secondary] = np.nan
            arrays[key] = counts
        return SiteHalf(
            site=half.site,
            dataset=half.dataset,
            engine=half.engine,
            arrays=arrays,
            counts=dict(half.counts),
            variants=list(half.variants),
            suppressed=suppressed,
            meta=dict(half.meta),
        )

    def combine(self, halves: list[SiteHalf], params: dict, state: dict | None) -> Step:
        if not halves:
            raise TaskError("no site returned a result", "sites")
        sites = [h.site for h in halves]
        if len(set(sites)) != len(sites):
            raise TaskError(f"a site answered twice: {sites}", "sites")
        frames = []
        for attributes in self._tables(params):
            name = table_name(attributes)
            # the union of the sites' levels, in the natural order
            order_attrs = [
                x for a in attributes for x in ([a] + ["icd10"] * (len(columns_of(a)) - 1))
            ]
            levels = cohorts.level_order(
                order_attrs,
                {
                    tuple(lv)
                    for h in halves
                    for t in h.meta["tables"]
                    if t["name"] == name
                    for lv in t["levels"]
                },
            )
            index = {lv: i for i, lv in enumerate(levels)}
            per_site = np.zeros((len(levels), len(halves)))  # a level absent at a site: 0 people
            for k, h in enumerate(halves):
                t = next((t for t in h.meta["tables"] if t["name"] == name), None)
                if t is None:
                    raise TaskError(f"site {h.site} did not answer table {name}", "by")
                rows = [index[tuple(lv)] for lv in t["levels"]]
                per_site[rows, k] = h.arrays[f"count:{name}"]
            withheld = np.isnan(per_site)
            released = (~withheld).sum(axis=1)
            count = np.where(released > 0, np.nansum(per_site, axis=1), np.nan)
            frames.append(self._frame(attributes, levels, per_site, sites, count, withheld))
        df = pd.concat(frames, ignore_index=True)
        df.attrs.update(
            {
                "task": self.name,
                "sites": json.dumps(sites),
                "params": json.dumps(params, sort_keys=True),
                "n_selected": json.dumps({h.site: h.counts.get("n_selected") for h in halves}),
                "suppressions": json.dumps([s.to_json() for h in halves for s in h.suppressed]),
                "n_cells_withheld": int(
                    sum(int(np.isnan(a).sum()) for h in halves for a in h.arrays.values())
                ),
                "note": (
                    "count sums the cells the sites released; where withheld_sites > 0 it is "
                    "a lower bound (each withheld cell held 1 to min_cell_count - 1 people)"
                ),
            }
        )
        return Step(done=True, result=df)

    @staticmethod
    def _frame(attributes, levels, per_site, sites, count, withheld) -> pd.DataFrame:
        a = attributes[0]
        b = attributes[1] if len(attributes) == 2 else ""
        na = len(columns_of(a))
        rows = []
        for lv in levels:
            first, second = lv[:na], lv[na:]
            icd10 = first[1] if a == "disease_name" else (second[1] if b == "disease_name" else "")
            rows.append(
                {
                    "attribute": a,
                    "value": first[0],
                    "by": b,
                    "by_value": second[0] if b else "",
                    "icd10": icd10,
                }
            )
        df = pd.DataFrame(rows, columns=["attribute", "value", "by", "by_value", "icd10"])
        for k, s in enumerate(sites):
            df[f"count_{s}"] = per_site[:, k]
        df["count"] = count
        df["withheld_sites"] = withheld.sum(axis=1).astype(np.int64)
        df["complete"] = df["withheld_sites"] == 0
        return df
