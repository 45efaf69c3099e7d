"""Small-count rules shared by the tasks: refuse small queries, withhold small cells and rare variants.

Every helper runs at the site, inside a task's `disclose`, before anything
leaves. What is withheld becomes NaN (shapes stay) and is reported as a
`Suppression`; a query that selects too few people is refused with a
TaskError whose message names the rule but never the count.

Primary suppression withholds each cell under the threshold. A cell's value
could still be recovered by subtraction when it is the only withheld cell of
a table whose total is known (the other cells of a one-way table add up to
the number selected, which another table of the same answer gives away), so
`complementary_suppression` also withholds the smallest released cell of
every row or column left with exactly one withheld cell. Differences between
*separate* queries (one restricted, one not) are a residual risk no single
answer can close; every query is audited at the gateway for that reason.
"""

from __future__ import annotations

import numpy as np

from .base import DisclosureRules, Suppression, TaskError


def rule_text(name: str, value: int) -> str:
    return f"{name}={value}"


#: TaskError.code of a query refused for selecting too few people
SMALL_QUERY = "small_query"


def refuse_small_query(n_selected: int, rules: DisclosureRules, site: str, field: str = "where"):
    """Raise TaskError when a query selects fewer than `rules.min_people` people at the site.

    The message names the site and the rule, not the number selected (which
    would itself be a small count).
    """
    if n_selected < rules.min_people:
        raise TaskError(
            f"site {site}: the query selects fewer than {rules.min_people} people "
            f"(rule {rule_text('min_people', rules.min_people)}); refused",
            field,
            code=SMALL_QUERY,
        )


def small_cells(counts: np.ndarray, min_cell_count: int) -> np.ndarray:
    """Mask of released counts under the rule: 0 < n < min_cell_count (NaN cells are not counted)."""
    c = np.asarray(counts, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return (c > 0) & (c < min_cell_count)


def complementary_suppression(
    counts: np.ndarray, withheld: np.ndarray, min_total: int = 0
) -> np.ndarray:
    """The secondary cells to withhold so no withheld cell is derivable from a margin.

    counts: a 1-D (one-way table) or 2-D (cross-tab) array of counts;
    withheld: the primary mask, same shape. Returns the extra mask (not
    including `withheld`). In every line (the whole 1-D table; each row and
    column of a 2-D one) holding exactly one withheld cell, the smallest
    released positive cell (or, failing that, the smallest released cell) is
    withheld too; and, with `min_total` (the minimum cell count), in every line
    whose withheld cells hold 1 to min_total - 1 people together, the smallest
    released positive cells are withheld until they hold min_total or more:
    the margin minus the released cells gives their total, which must not be
    a small cell either (the query-set audit would see the few people in it).
    Repeated until no line needs more.
    """
    counts = np.asarray(counts, dtype=np.float64)
    done = np.asarray(withheld, dtype=bool).copy()
    if counts.ndim not in (1, 2):
        raise ValueError("complementary_suppression: counts must be 1-D or 2-D")
    while True:
        changed = False
        lines = (
            [(slice(None),)]
            if counts.ndim == 1
            else [(i, slice(None)) for i in range(counts.shape[0])]
            + [(slice(None), j) for j in range(counts.shape[1])]
        )
        for line in lines:
            w = done[line]
            if min_total and w.any():
                c = counts[line]
                total = np.nansum(np.where(w, c, 0.0))
                free = ~w & ~np.isnan(c) & (c > 0)
                if 0 < total < min_total and free.any():
                    candidates = np.flatnonzero(free)
                    j = candidates[np.argmin(c[candidates])]
                    idx = np.arange(done.size).reshape(done.shape)[line][j]
                    done.flat[idx] = True
                    changed = True
                    continue
            if w.sum() != 1:
                continue
            c = counts[line]
            free = ~w & ~np.isnan(c)
            if not free.any():
                continue
            pick = free & (c > 0) if (free & (c > 0)).any() else free
            candidates = np.flatnonzero(pick)
            j = candidates[np.argmin(c[candidates])]
            idx = np.arange(done.size).reshape(done.shape)[line][j]
            done.flat[idx] = True
            changed = True
        if not changed:
            break
    return done & ~np.asarray(withheld, dtype=bool)


def rare_variants(ac: np.ndarray, an: np.ndarray, min_minor_allele_count: int) -> np.ndarray:
    """Mask of cells whose minor allele count min(AC, AN - AC) is under the rule (NaN cells: no)."""
    ac = np.asarray(ac, dtype=np.float64)
    an = np.asarray(an, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.minimum(ac, an - ac) < min_minor_allele_count


def suppression(site: str, what: str, count: int, rule: str, detail: str = "") -> Suppression:
    return Suppression(site=site, what=what, count=int(count), rule=rule, detail=detail)
