"""The gateway's audit book: scopes, histories on disk, resets, the per-variant rule, and the
sets each task says its answer sums over (checked against what `disclose` releases)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from extensions.federation.audit_book import (
    AuditBook,
    AuditRefused,
    Scope,
    as_positions,
    people_order,
    refusal_text_ja,
    withhold_near_differences,
)
from extensions.federation.query_audit import QueryMeta
from extensions.federation.tasks.allele_frequencies import AlleleFrequencies
from extensions.federation.tasks.base import DisclosureRules, SiteCohort, SiteHalf
from extensions.federation.tasks.cohort_counts import CohortCounts
from extensions.federation.tasks.gwas_linear import GwasLinear

RULES = DisclosureRules(5, 5)
IDS = [f"P{i:04d}" for i in range(60)]


def mask(*ranges):
    m = np.zeros(len(IDS), dtype=bool)
    for a, b in ranges:
        m[a:b] = True
    return m


def meta(task="allele_frequencies", t="2026-12-07T01:00:00+00:00"):
    return QueryMeta(t, task, "q-" + t)


def sets_of(*masks):
    position, _ = people_order(IDS)
    return as_positions(masks, position)


def test_people_are_positions_in_sorted_id_order_whatever_the_engines_order():
    shuffled = list(reversed(IDS))
    pos_a, digest_a = people_order(IDS)
    pos_b, digest_b = people_order(shuffled)
    assert digest_a == digest_b
    # the same person, wherever a cohort holds them, is the same position
    assert pos_a[IDS.index("P0007")] == pos_b[shuffled.index("P0007")] == 7
    with pytest.raises(ValueError, match="does not match"):
        as_positions([np.ones(3, dtype=bool)], pos_a)


def test_a_pair_is_refused_and_the_history_survives_a_new_book(tmp_path):
    book = AuditBook(tmp_path, 5)
    scope = [Scope("J-DU000101")]
    held = book.open(scope, "JGAD000101", IDS)
    plan = book.check(held, sets_of(mask((0, 20))))
    book.record(held, plan, meta())
    # a restarted gateway reads the history from disk
    again = AuditBook(tmp_path, 5)
    held = again.open(scope, "JGAD000101", IDS)
    with pytest.raises(AuditRefused) as refused:
        again.check(held, sets_of(mask((0, 19))))
    v = refused.value.verdict
    assert v.rule == "small_difference" and v.collides_with[0].task == "allele_frequencies"
    assert refused.value.scope.key == "J-DU000101"
    # an identical repeat is answered
    again.record(held, again.check(held, sets_of(mask((0, 20)))), meta(t="2026-12-07T02:00Z"))
    # another approval, another history
    other = again.open([Scope("J-DU009911")], "JGAD000101", IDS)
    again.check(other, sets_of(mask((0, 19))))


def test_a_person_with_two_approvals_is_checked_and_recorded_in_both(tmp_path):
    book = AuditBook(tmp_path, 5)
    a, b = Scope("J-A"), Scope("J-B")
    book.record(
        book.open([a], "D", IDS),
        book.check(book.open([a], "D", IDS), sets_of(mask((0, 20)))),
        meta(),
    )
    both = book.open([b, a], "D", IDS)
    with pytest.raises(AuditRefused) as refused:
        book.check(both, sets_of(mask((0, 18))))
    assert refused.value.scope == a
    plan = book.check(both, sets_of(mask((30, 50))))
    book.record(both, plan, meta(t="2026-12-07T03:00Z"))
    assert len(book.open([a], "D", IDS)[0].audit) == 2
    assert len(book.open([b], "D", IDS)[0].audit) == 1


def test_record_checks_again_and_records_nowhere_when_refused(tmp_path):
    book = AuditBook(tmp_path, 5)
    a, b = Scope("J-A"), Scope("J-B")
    both = book.open([a, b], "D", IDS)
    plan = book.check(both, sets_of(mask((0, 20))))
    # meanwhile a query of the same approval is answered that makes this one unsafe
    only_a = book.open([a], "D", IDS)
    book.record(only_a, book.check(only_a, sets_of(mask((0, 18)))), meta())
    with pytest.raises(AuditRefused):
        book.record(both, plan, meta(t="2026-12-07T04:00Z"))
    assert len(book.open([b], "D", IDS)[0].audit) == 0


def test_a_reset_by_the_hub_archives_the_history_and_starts_afresh(tmp_path):
    book = AuditBook(tmp_path, 5)
    held = book.open([Scope("J-A")], "D", IDS)
    book.record(held, book.check(held, sets_of(mask((0, 20)))), meta())
    reset = Scope("J-A", reset="2026-12-08T00:00:00+00:00")
    held = book.open([reset], "D", IDS)
    assert len(held[0].audit) == 0
    book.check(held, sets_of(mask((0, 19))))  # answered now
    archived = sorted(p.name for p in (tmp_path / "D").iterdir() if p.name.endswith(".archived"))
    assert archived and all("reset-2026-12-08" in n for n in archived)
    # a new book (a restart) keeps the new, empty history: the reset is not applied twice
    fresh = AuditBook(tmp_path, 5).open([reset], "D", IDS)
    assert len(fresh[0].audit) == 0


def test_new_people_in_a_dataset_start_a_new_history_and_keep_the_old_one(tmp_path):
    book = AuditBook(tmp_path, 5)
    held = book.open([Scope("J-A")], "D", IDS)
    book.record(held, book.check(held, sets_of(mask((0, 20)))), meta())
    more = IDS + ["P9999"]
    held = AuditBook(tmp_path, 5).open([Scope("J-A")], "D", more)
    assert held[0].audit.n == len(more) and len(held[0].audit) == 0
    assert any("people-" in p.name for p in (tmp_path / "D").iterdir())


def test_scope_file_names_cannot_leave_the_folder(tmp_path):
    book = AuditBook(tmp_path, 5)
    [held] = book.open([Scope("person:../../etc/x")], "../D", IDS)
    book.record([held], book.check([held], sets_of(mask((0, 20)))), meta())
    assert held.path.resolve().is_relative_to(tmp_path.resolve())


def test_the_japanese_refusal_names_the_rule_and_the_earlier_query_only(tmp_path):
    book = AuditBook(None, 5)
    held = book.open([Scope("J-A")], "D", IDS)
    book.record(held, book.check(held, sets_of(mask((0, 20)))), meta())
    with pytest.raises(AuditRefused) as refused:
        book.check(held, sets_of(mask((0, 17))))
    text = refusal_text_ja(refused.value.verdict)
    assert "2026-12-07T01:00:00+00:00 の allele_frequencies" in text and "5 人未満" in text
    assert not any(i in text for i in IDS)


def half_of(n_variants: int) -> SiteHalf:
    return SiteHalf(
        site="nig",
        dataset="D",
        engine="dask",
        arrays={"ac": np.ones((n_variants, 1)), "n_people": np.array([20.0])},
        variants=[f"chr1:{i}:A:G" for i in range(n_variants)],
    )


def test_the_per_variant_rule_withholds_where_the_difference_covers_one_to_four():
    half = half_of(4)
    d = np.arange(6)  # a difference of six people
    missing = np.zeros((4, 60), dtype=bool)
    missing[1, 0] = True  # one of them missing at variant 1: 1 missing, 5 called
    missing[2, :2] = True  # two missing at variant 2
    missing[3, :6] = True  # all six missing at variant 3: nothing of them in the sums

    def missing_of(keys, people):
        assert keys == half.variants and list(people) == list(d)
        return missing[:, people]

    n = withhold_near_differences(half, half.variants, ["ac"], missing_of, [d], 5)
    assert n == 2
    assert np.isnan(half.arrays["ac"][[1, 2], 0]).all()
    assert not np.isnan(half.arrays["ac"][[0, 3], 0]).any()
    [s] = half.suppressed
    assert s.count == 2 and "query-set audit" in s.rule
    # nothing near: nothing read, nothing withheld
    assert withhold_near_differences(half_of(3), [], ["ac"], None, [], 5) == 0


# -- the sets each task names, against what its disclosure releases ------------------------


class TableCohort(SiteCohort):
    site, dataset, engine = "nig", "D", "dask"

    def __init__(self, samples):
        self._samples = samples

    @property
    def samples(self):
        return self._samples

    def variant_keys(self):
        return []


def cohort(seed=1, n=80):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "sex": rng.choice(["female", "male"], n),
            "age_band": rng.choice(
                ["20-29", "30-39", "40-49", "90-99"], n, p=[0.4, 0.3, 0.27, 0.03]
            ),
            "prefecture": rng.choice(["Tokyo", "Osaka", "Hokkaido"], n),
            "disease_name": rng.choice(["a", "b", "c"], n),
            "icd10": "E11",
            "quant_trait": rng.normal(size=n),
            "case_status": rng.integers(0, 2, n),
        },
        index=pd.Index([f"P{i:04d}" for i in range(n)], name="sample_id"),
    )
    df.loc[df.index[:3], "quant_trait"] = np.nan
    df["region"] = df["prefecture"].map(
        {"Tokyo": "Kanto", "Osaka": "Kinki", "Hokkaido": "Hokkaido"}
    )
    return TableCohort(df)


def test_allele_frequency_sets_are_the_selection_and_the_released_strata():
    c = cohort()
    task = AlleleFrequencies()
    params = {"stratify_by": "age_band", "where": {"sex": ["female"]}}
    sets = task.audited_sets(c, params, None, RULES)
    female = (c.samples["sex"] == "female").to_numpy()
    assert (sets[0] == female).all()
    bands = c.samples["age_band"].to_numpy()
    sizes = {b: int((female & (bands == b)).sum()) for b in set(bands[female])}
    released = {b for b, n in sizes.items() if n >= 5}
    # a lone small stratum takes its smallest neighbour with it (complementary)
    if len(released) < len(sizes) and len(sizes) - len(released) == 1:
        released.discard(min(released, key=sizes.get))
    got = {bands[s][0] for s in sets[1:]}
    assert got == released
    for s in sets[1:]:
        assert (s <= female).all() and len(set(bands[s])) == 1


def test_count_sets_are_the_selection_and_the_released_cells():
    c = cohort()
    task = CohortCounts()
    params = task.validate({"by": "age_band", "where": {}})
    sets = task.audited_sets(c, params, None, RULES)
    half = task.disclose(task.site_half_dask(c, params, None), RULES)
    released = half.arrays["count:age_band"]
    sizes = sorted(int(s.sum()) for s in sets[1:])
    assert sizes == sorted(int(x) for x in released if np.isfinite(x) and x > 0)
    assert sets[0].all()


def test_a_model_is_audited_on_its_complete_cases_and_small_ones_are_refused():
    c = cohort()
    task = GwasLinear()
    [s] = task.audited_sets(c, {"phenotype": "quant_trait", "covariates": ["sex"]}, None, RULES)
    assert s.sum() == len(c.samples) - 3 and not s[:3].any()
    from extensions.federation.tasks.base import TaskError

    with pytest.raises(TaskError) as small:
        task.audited_sets(
            c,
            {"phenotype": "quant_trait", "covariates": [], "where": {"age_band": ["90-99"]}},
            None,
            RULES,
        )
    assert small.value.code == "small_query"
