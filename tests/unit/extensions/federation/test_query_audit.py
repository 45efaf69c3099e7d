"""The query-set audit: exact auditing of sum queries, pairs of people, small differences.

The audit's verdicts are compared with a brute force that shares none of its
algebra (the span as the orthogonal complement of the null space over the
rationals, with fractions.Fraction: a person is exposed where a column of the
null space is 0, a pair of people where two columns are proportional; both
checked against ranks with people added one and two at a time) on small
random histories, then the attacks of issue 16 are
played against it: the pair of strata differing by one woman, a chain of
three sets whose combination isolates a person, one whose combination is two
people's values, subsets and supersets, two handlers of one approval, two
approvals, strata defined up front, and a history that survives a restart.
`near` is compared with symmetric differences taken one pair at a time.
"""

from __future__ import annotations

import random
import threading
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from extensions.federation import query_audit
from extensions.federation.cohorts import select
from extensions.federation.query_audit import (
    RULE_ISOLATING,
    RULE_ISOLATING_PAIR,
    RULE_MIN_COUNT,
    RULE_SMALL_DIFFERENCE,
    QueryMeta,
    QuerySetAudit,
    QuerySetRefused,
)
from extensions.federation.query_audit import basis as qa_basis
from extensions.federation.query_audit import field as qa_field
from extensions.federation.query_audit import sets as qa_sets
from extensions.federation.tasks.base import DisclosureRules

MIN = DisclosureRules().min_people  # the platform's minimum (5)


def meta(i: int, task: str = "allele_frequencies") -> QueryMeta:
    return QueryMeta.of(f"2026-04-{1 + i // 24:02d}T{i % 24:02d}:00:00+09:00", task, f"q{i}")


# -- the brute force ------------------------------------------------------------------


def rank(vectors: list[list[int]]) -> int:
    rows = [[Fraction(x) for x in v] for v in vectors]
    r = 0
    cols = len(rows[0]) if rows else 0
    for col in range(cols):
        pivot = next((i for i in range(r, len(rows)) if rows[i][col] != 0), None)
        if pivot is None:
            continue
        rows[r], rows[pivot] = rows[pivot], rows[r]
        for i in range(len(rows)):
            if i != r and rows[i][col] != 0:
                f = rows[i][col] / rows[r][col]
                rows[i] = [a - f * b for a, b in zip(rows[i], rows[r], strict=True)]
        r += 1
    return r


def exposed_by_rank(sets: list[frozenset], n: int) -> bool:
    """Whether some e_i lies in the rational span of the sets: rank(W) = rank(W + e_i)."""
    vectors = [[1 if i in s else 0 for i in range(n)] for s in sets]
    if not vectors:
        return False
    base = rank(vectors)
    return any(rank([*vectors, [int(j == i) for j in range(n)]]) == base for i in range(n))


def null_space(vectors: list[list[int]], n: int) -> list[list[Fraction]]:
    """A basis of {z : W z = 0} over the rationals (the identity's rows when W has none)."""
    rows = [[Fraction(x) for x in v] for v in vectors]
    pivots: list[int] = []
    for col in range(n):
        r = len(pivots)
        pivot = next((i for i in range(r, len(rows)) if rows[i][col] != 0), None)
        if pivot is None:
            continue
        rows[r], rows[pivot] = rows[pivot], rows[r]
        rows[r] = [x / rows[r][col] for x in rows[r]]
        for i in range(len(rows)):
            if i != r and rows[i][col] != 0:
                f = rows[i][col]
                rows[i] = [a - f * b for a, b in zip(rows[i], rows[r], strict=True)]
        pivots.append(col)
    basis = []
    for free in (c for c in range(n) if c not in pivots):
        z = [Fraction(0)] * n
        z[free] = Fraction(1)
        for i, c in enumerate(pivots):
            z[c] = -rows[i][free]
        basis.append(z)
    return basis


def small_supports(sets: list[frozenset], n: int) -> tuple[set[int], set[frozenset]]:
    """(people i with e_i in the span, supports {x, y} of the span's vectors with exactly
    two non-zero entries).

    The span is the orthogonal complement of W's null space N, so w_x e_x + w_y e_y
    lies in it iff w_x N[:, x] + w_y N[:, y] = 0: e_x iff column x of a basis of N
    is 0; with both weights non-zero, iff columns x and y are proportional and
    neither is 0.
    """
    vectors = [[1 if i in s else 0 for i in range(n)] for s in sets]
    kernel = null_space(vectors, n)
    singles, groups = set(), {}
    for x in range(n):
        column = [z[x] for z in kernel]
        lead = next((v for v in column if v != 0), None)
        if lead is None:
            singles.add(x)
        else:
            groups.setdefault(tuple(v / lead for v in column), []).append(x)
    return singles, {frozenset((x, y)) for g in groups.values() for x in g for y in g if x < y}


def exposed(sets: list[frozenset], n: int) -> bool:
    return bool(small_supports(sets, n)[0])


def pairs(sets: list[frozenset], n: int) -> set[frozenset]:
    return small_supports(sets, n)[1]


def pairs_by_rank(sets: list[frozenset], n: int) -> set[frozenset]:
    """The same by its definition: span + {e_x, e_y} grows by one, by neither alone."""
    vectors = [[1 if i in s else 0 for i in range(n)] for s in sets]
    unit = [[int(j == i) for j in range(n)] for i in range(n)]
    base = rank(vectors) if vectors else 0
    alone = [rank([*vectors, unit[x]]) for x in range(n)]
    return {
        frozenset((x, y))
        for x in range(n)
        for y in range(x + 1, n)
        if alone[x] == alone[y] == base + 1 and rank([*vectors, unit[x], unit[y]]) == base + 1
    }


def reference_check(history: list[frozenset], batch: list[frozenset], m: int, n: int):
    """(ok, rule, set index) as the rules say, checked one set after another.

    A pair of people is refused when it is new: a history kept before the rule
    may hold pairs already, and the rule stops more, not every later query.
    """
    seen: list[frozenset] = []
    before = pairs(history, n)
    for k, s in enumerate(batch):
        if not s or s in history or s in seen:
            continue
        if len(s) < m:
            return False, RULE_MIN_COUNT, k
        if any(len(s ^ a) < m for a in history + seen):
            return False, RULE_SMALL_DIFFERENCE, k
        singles, after = small_supports(history + seen + [s], n)
        if singles:
            return False, RULE_ISOLATING, k
        if after - before:
            return False, RULE_ISOLATING_PAIR, k
        seen.append(s)
        before = after
    return True, None, None


def random_set(rng: random.Random, n: int) -> frozenset:
    size = rng.choice([rng.randint(1, n), rng.randint(n // 2, n), rng.randint(1, 4)])
    return frozenset(rng.sample(range(n), min(size, n)))


@pytest.mark.parametrize(
    "fold_after,probe",
    [(16, True), (1, True), (2, False)],
    ids=["default", "fold-each", "no-probe"],
)
@pytest.mark.parametrize("seed", range(40))
def test_verdicts_match_brute_force_on_small_random_histories(seed, fold_after, probe, monkeypatch):
    monkeypatch.setattr(qa_basis, "FOLD_AFTER", fold_after)
    if not probe:  # the pivot is then taken from the full reduced vector
        monkeypatch.setattr(qa_basis._Basis, "find_pivot", lambda *args: None)
    rng = random.Random(seed)
    n = rng.randint(3, 12)
    play_against_brute_force(rng, QuerySetAudit(n, rng.choice([1, 1, 2, 3])))


@pytest.mark.parametrize("seed", range(12))
def test_verdicts_match_brute_force_with_wider_sets_and_minimums(seed):
    """16 people and minimums of 3 and 4: pairs come from combinations of several sets."""
    rng = random.Random(1000 + seed)
    play_against_brute_force(rng, QuerySetAudit(rng.randint(8, 16), rng.choice([3, 4])))


def play_against_brute_force(rng, audit, history=None, queries=None, start=0, rounds=25):
    """Random queries, some with a repeat riding along: each verdict as the brute force's.

    history, queries: what the audit answered before (sets in order, sets per query id).
    """
    n, m = audit.n, audit.min_count
    history = [] if history is None else history
    queries = {} if queries is None else queries
    rules = []
    for i in range(start, start + rounds):
        batch = [random_set(rng, n) for _ in range(rng.choice([1, 1, 1, 2, 3]))]
        if history and rng.random() < 0.15:
            batch.append(rng.choice(history))  # an identical repeat rides along
        want = reference_check(history, batch, m, n)
        verdict = audit.check([sorted(s) for s in batch])
        assert (verdict.ok, verdict.rule, verdict.set_index) == want, (i, batch, history)
        rules.append(verdict.rule)
        if not verdict.ok:
            assert_refusal_is_truthful(verdict, batch, queries, m, n)
            continue
        audit.record([sorted(s) for s in batch], meta(i))
        queries[meta(i).query_id] = [s for s in batch if s]
        history += [s for s in dict.fromkeys(batch) if s and s not in history]
        assert len(audit) == len(history)
        assert audit.rank == rank([[int(j in s) for j in range(n)] for s in history] or [[0]])
    return rules


def modular_rank(sets: list[np.ndarray], n: int, q: int = 2**61 - 1) -> int:
    """Rank over GF(2**61 - 1) with Python integers: an implementation apart from the audit's."""
    rows = []
    for s in sets:
        v = [0] * n
        for x in s:
            v[int(x)] = 1
        rows.append(v)
    r = 0
    for col in range(n):
        pivot = next((i for i in range(r, len(rows)) if rows[i][col]), None)
        if pivot is None:
            continue
        rows[r], rows[pivot] = rows[pivot], rows[r]
        inv = pow(rows[r][col], q - 2, q)
        rows[r] = [x * inv % q for x in rows[r]]
        for i in range(r + 1, len(rows)):
            if rows[i][col]:
                f = rows[i][col]
                rows[i] = [(x - f * y) % q for x, y in zip(rows[i], rows[r], strict=True)]
        r += 1
    return r


def where_queries(seed: int, n: int, count: int) -> list[list[np.ndarray]]:
    """Selections as `where` clauses make them: unions of cells of four small attributes."""
    rng = np.random.default_rng(seed)
    table = rng.integers(0, [7, 2, 8, 6], size=(n, 4))
    queries = []
    for _ in range(count):
        mask = np.ones(n, dtype=bool)
        for a in rng.choice(4, rng.integers(1, 4), replace=False):
            levels = table[:, a].max() + 1
            values = rng.choice(levels, min(levels - 1, rng.integers(1, 4)), replace=False)
            mask &= np.isin(table[:, a], values)
        if rng.random() < 0.3:
            mask[rng.choice(n, 3, replace=False)] = False  # a regression's complete cases
        queries.append([np.flatnonzero(mask)])
    return queries


def test_medium_histories_agree_across_code_paths(monkeypatch):
    """300 people in five blocks of 64: the pivot from block fingerprints and lazy folding
    give the same verdicts as the full reduced vector and folding at every row."""
    n, queries = 300, where_queries(3, 300, 150)

    def run():
        audit, verdicts = QuerySetAudit(n, MIN), []
        for i, sets in enumerate(queries):
            verdicts.append(audit.check(sets))
            if verdicts[-1].ok:
                audit.record(sets, meta(i))
        return audit, verdicts

    audit, verdicts = run()
    monkeypatch.setattr(qa_basis, "FOLD_AFTER", 1)
    monkeypatch.setattr(qa_basis._Basis, "find_pivot", lambda *args: None)
    other, others = run()
    assert verdicts == others
    assert {None, RULE_SMALL_DIFFERENCE, RULE_ISOLATING} <= {v.rule for v in verdicts}
    assert audit.rank == other.rank == modular_rank(audit._entries, n)
    assert_ratios_are_the_rows_own(audit)
    assert_ratios_are_the_rows_own(other)


def assert_ratios_are_the_rows_own(audit):
    """The ratios kept row by row, as rows change, are those of the rows formed in full."""
    basis, f, p = audit._basis, audit._field, audit._field.p
    for j in range(basis.rank):
        d = basis.combine(basis.row(j))
        d[basis.pivots[j]] = (d[basis.pivots[j]] - 1) % p
        assert basis.keys[j] == f.dot(d, audit._ha) * f.inv(f.dot(d, audit._hb)) % p


def assert_refusal_is_truthful(verdict, batch, queries, m, n):
    """What a refusal names is enough to make the point, and names no person."""
    assert "person " not in verdict.message
    s = batch[verdict.set_index]
    earlier = [a for q in verdict.collides_with for a in queries[q.query_id]]
    same = [batch[j] for j in verdict.same_query_sets]
    if verdict.rule == RULE_SMALL_DIFFERENCE:
        assert any(0 < len(s ^ a) < m for a in earlier + same)
    elif verdict.rule == RULE_ISOLATING:
        assert exposed(earlier + same + [s], n)
    elif verdict.rule == RULE_ISOLATING_PAIR:
        assert pairs(earlier + same + [s], n)


def test_the_brute_force_null_space_agrees_with_ranks():
    """The null-space criteria of the brute force against ranks with e_i, e_x + e_y added."""
    rng = random.Random(7)
    found = 0
    for _ in range(60):
        n = rng.randint(3, 8)
        sets = [random_set(rng, n) for _ in range(rng.randint(1, n))]
        singles, two = small_supports(sets, n)
        assert bool(singles) == exposed_by_rank(sets, n)
        if not singles:  # by rank, a pair is only told apart from e_x when no e_x is in the span
            assert two == pairs_by_rank(sets, n)
            found += bool(two)
    assert found >= 10


def test_a_combination_that_needs_a_fraction_is_refused():
    """e_0 = ({0,1,2,3} + {0,4,5,6} - {1,2,3,4,5,6}) / 2: no integer combination, and still
    exposed."""
    audit = QuerySetAudit(8, 1)
    for i, s in enumerate([[0, 1, 2, 3], [1, 2, 3, 4, 5, 6]]):
        assert audit.check([s]).ok
        audit.record([s], meta(i))
    verdict = audit.check([[0, 4, 5, 6]])
    assert (verdict.ok, verdict.rule) == (False, RULE_ISOLATING)
    assert verdict.collides_with == (meta(0), meta(1))


def test_field_products_are_exact():
    f = qa_field._Field(query_audit.random_prime())
    rng = np.random.default_rng(1)
    a = rng.integers(0, f.p, 20_000)
    b = rng.integers(0, f.p, 20_000)
    a[:3], b[:3] = f.p - 1, f.p - 1
    got = f.mul(a, b)
    assert [int(x) for x in got] == [int(x) * int(y) % f.p for x, y in zip(a, b, strict=True)]
    assert f.mul(f.inv(12345), 12345)[0] == 1


def test_field_matrix_products_are_exact():
    f = qa_field._Field(query_audit.random_prime())
    rng = np.random.default_rng(2)
    a = rng.integers(0, f.p, (7, 70))
    b = rng.integers(0, f.p, (70, 5))
    a[0], b[:, 0] = f.p - 1, f.p - 1
    want = [
        [sum(int(x) * int(y) for x, y in zip(row, col, strict=True)) % f.p for col in b.T]
        for row in a
    ]
    assert f.matmul(a, b).tolist() == want


def test_each_audit_draws_its_own_prime():
    primes = {QuerySetAudit(10, 5)._field.p for _ in range(4)}
    assert len(primes) == 4
    assert all(2**49 <= p < 2**50 and qa_field._is_prime(p) for p in primes)


# -- the attacks of the issue ---------------------------------------------------------


def cohort() -> pd.DataFrame:
    """People as a site's `samples` table: 12 women of 20-29 (11 of them with one of
    three diseases, one with a fourth), and others."""
    rows = [("female", "20-29", d) for d in ["Asthma"] * 4 + ["Atopic dermatitis"] * 4]
    rows += [("female", "20-29", "Ulcerative colitis")] * 3
    rows += [("female", "20-29", "Major depressive disorder")]
    rows += [("male", "20-29", "Asthma")] * 6 + [("female", "30-39", "Asthma")] * 6
    return pd.DataFrame(rows, columns=["sex", "age_band", "disease_name"])


def test_the_pair_of_strata_differing_by_one_woman_is_refused_on_the_second_query():
    samples = cohort()
    audit = QuerySetAudit(len(samples), MIN)
    women = select(samples, {"sex": "female", "age_band": "20-29"})
    three = select(
        samples,
        {
            "sex": "female",
            "age_band": "20-29",
            "disease_name": ["Asthma", "Atopic dermatitis", "Ulcerative colitis"],
        },
    )
    assert women.sum() == 12 and three.sum() == 11  # both pass min_people on their own
    assert audit.check([women]).ok
    audit.record([women], meta(0))
    verdict = audit.check([three])
    assert (verdict.ok, verdict.rule, verdict.set_index) == (False, RULE_SMALL_DIFFERENCE, 0)
    assert verdict.collides_with == (meta(0),)
    assert "allele_frequencies answered at 2026-04-01T00:00:00+09:00" in verdict.message
    assert "fewer than 5 people" in verdict.message


def chain(p=range(0, 6), q=range(6, 12), x=12):
    """A = P + x, B = Q, C = P + Q: every pair differs by at least 6, A + B - C = e_x."""
    return [[*p, x], [*q], [*p, *q]]


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 0, 1), (1, 2, 0)], ids=["ABC", "CAB", "BCA"])
def test_a_chain_of_three_isolating_one_person_is_refused_at_the_third(order):
    sets = chain()
    audit = QuerySetAudit(40, MIN)
    for i in order[:2]:
        verdict = audit.check([sets[i]])
        assert verdict.ok
        audit.record([sets[i]], meta(i))
    verdict = audit.check([sets[order[2]]])
    assert (verdict.ok, verdict.rule) == (False, RULE_ISOLATING)
    assert verdict.collides_with == tuple(meta(i) for i in sorted(order[:2]))
    assert "one person's value" in verdict.message
    # in one query, the same combination is refused at its third set
    one = QuerySetAudit(40, MIN).check([sets[i] for i in order])
    assert (one.ok, one.rule, one.set_index, one.same_query_sets) == (
        False,
        RULE_ISOLATING,
        2,
        (0, 1),
    )


def pair_chain(p=range(0, 6), q=range(6, 12), x=12, y=13):
    """A = P + x + y, B = Q, C = P + Q: every pair differs by at least 6, and A + B - C is
    e_x + e_y, at a variant where y's call is missing x's genotype (docs/query-audit-notes.md)."""
    return [[*p, x, y], [*q], [*p, *q]]


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 0, 1), (1, 2, 0)], ids=["ABC", "CAB", "BCA"])
def test_a_chain_of_three_giving_two_peoples_values_is_refused_at_the_third(order):
    sets = pair_chain()
    audit = QuerySetAudit(40, MIN)
    for i in order[:2]:
        assert audit.check([sets[i]]).ok
        audit.record([sets[i]], meta(i))
    verdict = audit.check([sets[order[2]]])
    assert (verdict.ok, verdict.rule) == (False, RULE_ISOLATING_PAIR)
    assert verdict.collides_with == tuple(meta(i) for i in sorted(order[:2]))
    assert "would let the values of two people be worked out together" in verdict.message
    assert "with one of them missing at a variant, one person's value" in verdict.message
    assert f"rule {RULE_ISOLATING_PAIR}" in verdict.message
    one = QuerySetAudit(40, MIN).check([sets[i] for i in order])
    assert (one.ok, one.rule, one.set_index, one.same_query_sets) == (
        False,
        RULE_ISOLATING_PAIR,
        2,
        (0, 1),
    )


def test_the_difference_of_two_peoples_values_is_refused_too():
    """A = P + x, B = P + Q + y, C = Q: A - B + C = e_x - e_y, a pair with weights 1, -1."""
    p, q = range(0, 6), range(6, 12)
    sets = [[*p, 12], [*p, *q, 13], [*q]]
    assert pairs([frozenset(s) for s in sets], 20) == {frozenset({12, 13})}
    audit = QuerySetAudit(20, MIN)
    for i, s in enumerate(sets[:2]):
        audit.record([s], meta(i))
    verdict = audit.check([sets[2]])
    assert (verdict.rule, verdict.collides_with) == (RULE_ISOLATING_PAIR, (meta(0), meta(1)))


def test_a_set_of_two_people_is_refused_where_the_minimum_allows_it():
    verdict = QuerySetAudit(10, 2).check([[3, 7]])
    assert (verdict.ok, verdict.rule, verdict.collides_with, verdict.same_query_sets) == (
        False,
        RULE_ISOLATING_PAIR,
        (),
        (),
    )
    assert verdict.message.startswith("this query's answer would be the values of two people")


def test_a_history_kept_before_the_pair_rule_is_not_locked_by_its_pairs(monkeypatch):
    """A history answered before the rule may hold e_x + e_y already: later queries are
    answered unless they add a pair of their own."""
    sets = pair_chain()
    with monkeypatch.context() as before_the_rule:
        before_the_rule.setattr(QuerySetAudit, "_new_pair", lambda *args: None)
        old = QuerySetAudit(20, 3)
        for i, s in enumerate(sets):
            old.record([s], meta(i))
    history = [frozenset(s) for s in sets]
    assert pairs(history, 20) == {frozenset({12, 13})}
    audit = QuerySetAudit.from_bytes(old.to_bytes())
    queries = {meta(i).query_id: [history[i]] for i in range(3)}
    rules = play_against_brute_force(random.Random(3), audit, history, queries, 3, rounds=25)
    assert None in rules and RULE_ISOLATING_PAIR in rules


@pytest.mark.parametrize("removed", [1, 2, MIN - 1])
@pytest.mark.parametrize("first", ["superset", "subset"])
def test_subsets_and_supersets_differing_by_fewer_than_the_minimum_are_refused(first, removed):
    big = list(range(30))
    small = big[removed:]
    sets = {"superset": big, "subset": small}
    other = "subset" if first == "superset" else "superset"
    audit = QuerySetAudit(50, MIN)
    audit.record([sets[first]], meta(0))
    verdict = audit.check([sets[other]])
    assert (verdict.ok, verdict.rule, verdict.collides_with) == (
        False,
        RULE_SMALL_DIFFERENCE,
        (meta(0),),
    )
    # at the minimum it is answered
    assert audit.check([big[MIN:] if first == "superset" else big + list(range(30, 30 + MIN))]).ok


def test_a_set_under_the_minimum_is_refused():
    verdict = QuerySetAudit(50, MIN).check([range(10), range(MIN - 1)])
    assert (verdict.ok, verdict.rule, verdict.set_index) == (False, RULE_MIN_COUNT, 1)


def test_identical_repeats_are_answered_and_kept_once():
    audit = QuerySetAudit(50, MIN)
    strata = [range(0, 10), range(10, 25)]
    for i in range(3):
        assert audit.check(strata).ok
        audit.record(strata, meta(i))
    assert len(audit) == 2 and audit.rank == 2
    assert audit.answers() == [meta(0), meta(0), meta(1), meta(1), meta(2), meta(2)]


def test_a_second_handler_of_the_approval_cannot_complete_an_attack_the_first_began():
    audit = QuerySetAudit(40, MIN)  # one object per approval and dataset, for all its handlers
    a, b, c = chain()
    audit.record([a], QueryMeta.of("2026-04-01T10:00:00+09:00", "allele_frequencies", "alice-1"))
    audit.record([b], QueryMeta.of("2026-04-01T11:00:00+09:00", "gwas_linear", "alice-2"))
    verdict = audit.check([c])  # bob
    assert (verdict.ok, verdict.rule) == (False, RULE_ISOLATING)
    assert [m.task for m in verdict.collides_with] == ["allele_frequencies", "gwas_linear"]
    # near duplicates of alice's sets are refused for bob too
    assert audit.check([a[1:]]).rule == RULE_SMALL_DIFFERENCE


def test_two_checks_racing_cannot_both_be_recorded():
    """Each passes its check alone; the second to record is refused and nothing is kept."""
    audit = QuerySetAudit(40, MIN)
    a, b, c = chain()
    audit.record([a], meta(0))
    alice, bob = [b], [c]
    assert audit.check(alice).ok and audit.check(bob).ok
    audit.record(alice, meta(1))
    with pytest.raises(QuerySetRefused) as refused:
        audit.record(bob, meta(2))
    assert refused.value.verdict.rule == RULE_ISOLATING
    assert len(audit) == 2 and meta(2) not in audit.answers()


def test_a_check_beside_another_querys_record_keeps_each_basis_its_own_rows():
    """A check stages rows on the shared row buffer; another query recorded from the same
    basis meanwhile gets a copy, and the first query is then worked out again."""
    audit = QuerySetAudit(100, MIN)
    audit.record([range(0, 30)], meta(0))
    assert audit.check([range(30, 60), range(60, 90)]).ok
    staged = audit._pending[2][0]
    staged_bits = staged.bits.copy()
    audit.record([range(40, 80)], meta(1))
    assert np.array_equal(staged.bits, staged_bits)
    audit.record([range(30, 60), range(60, 90)], meta(2))
    fresh = QuerySetAudit(100, MIN, prime=audit._field.p, seed=audit._seed)
    for i, sets in enumerate([[range(0, 30)], [range(40, 80)], [range(30, 60), range(60, 90)]]):
        fresh.record(sets, meta(i))
    assert fresh.to_bytes() == audit.to_bytes()
    assert np.array_equal(fresh._basis.bits, audit._basis.bits)
    assert np.array_equal(fresh._basis.keys, audit._basis.keys)


def test_concurrent_records_from_threads_never_complete_an_attack():
    audit = QuerySetAudit(40, MIN)
    a, b, c = chain()
    outcomes = []

    def handler(sets, i):
        if audit.check([sets]).ok:
            try:
                audit.record([sets], meta(i))
                outcomes.append("answered")
            except QuerySetRefused:
                outcomes.append("refused")
        else:
            outcomes.append("refused")

    threads = [threading.Thread(target=handler, args=(s, i)) for i, s in enumerate((a, b, c))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["answered", "answered", "refused"]
    assert len(audit) == 2


def test_another_approvals_history_does_not_affect_this_one():
    a, b, c = chain()
    one, other = QuerySetAudit(40, MIN), QuerySetAudit(40, MIN)
    one.record([a], meta(0))
    one.record([b], meta(1))
    assert not one.check([c]).ok
    assert other.check([c]).ok and other.check([a[1:]]).ok


def test_strata_defined_up_front_are_answered():
    """Age strata with their total, sex strata with theirs, then age x sex: cells of 8."""
    ages = ["20-29", "30-39", "40-49", "50-59", "60-69", "70-79", "80-89"]
    samples = pd.DataFrame(
        [(age, sex) for age in ages for sex in ("female", "male") for _ in range(8)],
        columns=["age_band", "sex"],
    )
    audit = QuerySetAudit(len(samples), MIN)
    everyone = np.ones(len(samples), dtype=bool)
    queries = [
        [select(samples, {"age_band": a}) for a in ages] + [everyone],
        [select(samples, {"sex": s}) for s in ("female", "male")] + [everyone],
        [select(samples, {"age_band": a, "sex": s}) for a in ages for s in ("female", "male")],
        [select(samples, {"age_band": ages[:3]}), select(samples, {"age_band": ages[3:]})],
    ]
    for i, sets in enumerate(queries):
        verdict = audit.check(sets)
        assert verdict.ok, verdict.message
        audit.record(sets, meta(i))
    assert audit.rank == 14  # the age x sex cells span everything answered


# -- persistence ------------------------------------------------------------------------


def history_of(seed: int, n: int = 60, queries: int = 60):
    rng = random.Random(seed)
    audit = QuerySetAudit(n, 3)
    for i in range(queries):
        batch = [sorted(random_set(rng, n)) for _ in range(rng.choice([1, 2]))]
        if audit.check(batch).ok:
            audit.record(batch, meta(i))
    return audit, rng


@pytest.mark.parametrize("seed", range(4))
def test_a_restart_keeps_the_verdicts(seed, tmp_path, monkeypatch):
    monkeypatch.setattr(qa_basis, "FOLD_AFTER", 8)
    audit, rng = history_of(seed, n=200)
    while not audit._basis.pending:  # folded and pending updates both to be stored
        extra = sorted(random_set(rng, 200))
        if audit.check([extra]).ok:
            audit.record([extra], meta(99))
    assert audit.rank > 8
    path = tmp_path / "audit.bin"
    audit.save(path)
    assert path.stat().st_mode & 0o777 == 0o600
    restored = QuerySetAudit.load(path)
    assert (restored.rank, len(restored), restored.answers()) == (
        audit.rank,
        len(audit),
        audit.answers(),
    )
    assert restored._field.p == audit._field.p
    assert np.array_equal(restored._basis.keys, audit._basis.keys)
    for i in range(40):
        batch = [sorted(random_set(rng, 200)) for _ in range(rng.choice([1, 2]))]
        v1, v2 = audit.check(batch), restored.check(batch)
        assert v1 == v2
        if v1.ok:
            audit.record(batch, meta(100 + i))
            restored.record(batch, meta(100 + i))
    assert restored.to_bytes() == audit.to_bytes()


def test_the_chain_is_still_refused_after_a_restart():
    a, b, c = chain()
    audit = QuerySetAudit(40, MIN)
    audit.record([a], meta(0))
    audit.record([b], meta(1))
    restored = QuerySetAudit.from_bytes(audit.to_bytes())
    verdict = restored.check([c])
    assert (verdict.rule, verdict.collides_with) == (RULE_ISOLATING, (meta(0), meta(1)))
    assert restored.check([a[:-1]]).rule == RULE_SMALL_DIFFERENCE


def test_the_pair_chain_is_still_refused_after_a_restart():
    a, b, c = pair_chain()
    audit = QuerySetAudit(40, MIN)
    audit.record([a], meta(0))
    audit.record([b], meta(1))
    restored = QuerySetAudit.from_bytes(audit.to_bytes())
    assert np.array_equal(restored._basis.keys, audit._basis.keys)
    verdict = restored.check([c])
    assert (verdict.rule, verdict.collides_with) == (RULE_ISOLATING_PAIR, (meta(0), meta(1)))


def test_a_damaged_history_is_refused_not_trusted():
    data = history_of(1)[0].to_bytes()
    with pytest.raises(ValueError):
        QuerySetAudit.from_bytes(b"not an audit")
    with pytest.raises(ValueError):
        QuerySetAudit.from_bytes(data[:-20])


def test_the_stored_history_is_small():
    """1,000 sets of 5..5,000 among 10,000 people: well under a few MB."""
    rng = np.random.default_rng(5)
    audit = QuerySetAudit(10_000, MIN)
    for i in range(1000):
        size = int(np.exp(rng.uniform(np.log(5), np.log(5000))))
        s = rng.choice(10_000, size, replace=False)
        audit._add_entry(qa_sets._as_set(s, audit.n, audit._words))
        audit._answers[-1].append(meta(i))
    assert len(audit.to_bytes()) < 1.5e6


# -- near sets --------------------------------------------------------------------------


def brute_near(history: list[frozenset], batch: list[frozenset], k: int, within: int):
    """S Δ A for each answered A, then each other set A of the query, one at a time."""
    if not batch[k]:
        return []
    out = []
    for a in history + [b for j, b in enumerate(batch) if j != k and b]:
        d = tuple(sorted(batch[k] ^ a))
        if 0 < len(d) < within and d not in out:
            out.append(d)
    return out


@pytest.mark.parametrize("seed", range(5))
def test_near_lists_the_small_symmetric_differences(seed):
    rng = random.Random(seed)
    n = rng.choice([30, 64, 65, 150])
    audit = QuerySetAudit(n, 2)
    history: list[frozenset] = []

    def nearby(s: frozenset) -> frozenset:
        return s ^ frozenset(rng.sample(range(n), rng.randint(1, 12)))

    for i in range(60):
        batch = [
            nearby(rng.choice(history)) if history and rng.random() < 0.6 else random_set(rng, n)
            for _ in range(rng.choice([1, 2, 3]))
        ]
        within = rng.randint(1, 16)
        got = audit.near([sorted(s) for s in batch], within)
        assert [[tuple(d.tolist()) for d in per] for per in got] == [
            brute_near(history, batch, k, within) for k in range(len(batch))
        ]
        assert all(d.dtype == np.int64 for per in got for d in per)
        if audit.check([sorted(s) for s in batch]).ok:
            audit.record([sorted(s) for s in batch], meta(i))
            history += [s for s in dict.fromkeys(batch) if s and s not in history]
    assert len(history) >= 10


def test_near_takes_masks_and_records_nothing():
    audit = QuerySetAudit(100, MIN)
    audit.record([range(0, 40)], meta(0))
    stored = audit.to_bytes()
    mask = np.zeros(100, dtype=bool)
    mask[3:40] = True
    got = audit.near([mask, range(0, 45), []], 4 * MIN)
    assert [[d.tolist() for d in per] for per in got] == [
        [[0, 1, 2], [0, 1, 2, 40, 41, 42, 43, 44]],
        [[40, 41, 42, 43, 44], [0, 1, 2, 40, 41, 42, 43, 44]],
        [],
    ]
    assert audit.near([range(0, 40), range(50, 100)], 4 * MIN) == [[], []]
    assert audit.to_bytes() == stored and len(audit) == 1
