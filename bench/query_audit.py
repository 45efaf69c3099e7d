"""What the query-set audit costs at a site: 10,000 people, 1,000 answered sets.

Two histories of 1,000 distinct answered sets over 10,000 people, each built
through the audit's own `check` and `record`, in the same process:

- "strata": selections as researchers write them. A synthetic site table
  (the demo's age bands and their weights, sex, prefectures around Tokyo and
  their regions, the demo's 20 diseases; 2 % of people without a phenotype)
  and random `where` clauses on one to three attributes through the tasks'
  own `cohorts.select`, some stratified by sex or age band (one set per
  stratum), some restricted to complete cases (a regression's set). Sets
  above 5,000 people are skipped; what the audit refuses is counted, not
  kept.
- "random": sets of random people, sizes log-uniform in 5..5,000. Every set
  adds a dimension, so the span reaches rank 1,000: the worst case for the
  basis.

Then, per history: `check` of 50 fresh queries (not recorded): one set each,
and queries of 8 strata, every rule on (the pair rule `isolating_pair`
included); `near` of the same queries at the gateway's bound (4 x min count),
and of 50 near copies of answered sets (one answered set with 1 to 19 people
added or dropped, so that a difference is found and formed); `record` of 20
more; the stored history's size (`to_bytes`) and the time to load it
(`from_bytes` rebuilds the basis). The issue asks for a check under 50 ms
per query at 10,000 people and 1,000 answered sets, and `near` well under
10 ms; the last lines say whether both hold.
The reference, in the same run: numpy's `matrix_rank` (an SVD) of the same
stacked matrix, the answered sets plus the query's, the least a recomputation
from scratch would cost (it only tells whether the query adds a dimension; an
exposure test from scratch needs one rank per person). The ratio is the
reference's time over the audit's.

BLAS runs single-threaded (as a gateway answering queries would), unless
--threads says otherwise.

    .venv/bin/python bench/query_audit.py [--people 10000] [--sets 1000] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--people", type=int, default=10_000)
    ap.add_argument("--sets", type=int, default=1_000, help="distinct answered sets")
    ap.add_argument("--queries", type=int, default=50, help="fresh queries timed per kind")
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads")
    ap.add_argument("--seed", type=int, default=2026)
    return ap.parse_args(argv)


ARGS = parse_args()
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from extensions.federation.cohorts import REGIONS, region_of, select  # noqa: E402
from extensions.federation.query_audit import QueryMeta, QuerySetAudit  # noqa: E402
from extensions.federation.tasks.base import DisclosureRules  # noqa: E402
from hub.data.synth_people import AGE_BANDS, AGE_WEIGHTS, DISEASES, PREFECTURES  # noqa: E402

MIN = DisclosureRules().min_people
MAX_SET = 5000
STRATA = 8
#: the gateway's bound for `near` (audit_book.NEAR_FACTOR x min count)
WITHIN = 4 * MIN
CHECK_LIMIT = 0.050
NEAR_LIMIT = 0.010


def site_table(rng: np.random.Generator, n: int) -> pd.DataFrame:
    home = PREFECTURES.index("Tokyo")
    w = np.exp(-np.abs(np.arange(len(PREFECTURES)) - home) / 2.5) + 0.02
    prefecture = rng.choice(PREFECTURES, n, p=w / w.sum())
    return pd.DataFrame(
        {
            "age_band": rng.choice(AGE_BANDS, n, p=AGE_WEIGHTS),
            "sex": rng.choice(["female", "male"], n),
            "region": [region_of(p) for p in prefecture],
            "disease_name": rng.choice([d[0] for d in DISEASES], n),
            "complete": rng.random(n) >= 0.02,
        }
    )


VALUES = {
    "age_band": AGE_BANDS,
    "sex": ["female", "male"],
    "region": list(REGIONS),
    "disease_name": [d[0] for d in DISEASES],
}


def strata_query(rng: np.random.Generator, samples: pd.DataFrame) -> list[np.ndarray]:
    """The sets one researcher's query sums over: a `where`, maybe strata, maybe complete cases."""
    attributes = rng.choice(list(VALUES), rng.integers(1, 4), replace=False)
    where = {}
    for a in attributes:
        values = VALUES[a]
        k = int(rng.integers(1, max(2, (len(values) + 1) // 2) + 1))
        where[str(a)] = [str(v) for v in rng.choice(values, min(k, len(values)), replace=False)]
    mask = select(samples, where)
    if rng.random() < 0.3:
        mask &= samples["complete"].to_numpy()
    by = rng.choice(["", "", "sex", "age_band"])
    if not by:
        return [mask]
    column = samples[by].to_numpy()
    return [mask & (column == v) for v in VALUES[by] if (mask & (column == v)).any()]


def random_set(rng: np.random.Generator, n: int) -> np.ndarray:
    size = int(np.exp(rng.uniform(np.log(MIN), np.log(MAX_SET))))
    return rng.choice(n, size, replace=False)


def random_strata(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    people = rng.choice(n, int(rng.integers(STRATA * 50, MAX_SET)), replace=False)
    return np.array_split(people, STRATA)


def fresh_queries(rng, samples, kind: str, count: int):
    """`count` queries of one set and `count` of several strata, not yet asked."""
    n = len(samples)
    if kind == "random":
        return [[random_set(rng, n)] for _ in range(count)], [
            random_strata(rng, n) for _ in range(count)
        ]
    singles, multi = [], []
    while len(singles) < count or len(multi) < count:
        sets = strata_query(rng, samples)
        if max(np.count_nonzero(s) for s in sets) > MAX_SET:
            continue
        (singles if len(sets) == 1 else multi).append(sets)
    return singles[:count], multi[:count]


def build(audit: QuerySetAudit, make, target: int) -> dict:
    """Check and record queries from `make` until `target` distinct sets are answered."""
    refused: dict[str, int] = {}
    asked = 0
    t0 = time.perf_counter()
    while len(audit) < target and asked < 50 * target:
        sets = make()
        asked += 1
        if any(
            np.count_nonzero(s) > MAX_SET if s.dtype == bool else s.size > MAX_SET for s in sets
        ):
            continue
        verdict = audit.check(sets)
        if verdict.ok:
            audit.record(sets, QueryMeta.of(f"2026-05-01T00:00:{asked:06d}", "bench", str(asked)))
        else:
            refused[verdict.rule] = refused.get(verdict.rule, 0) + 1
    return {"asked": asked, "refused": refused, "seconds": time.perf_counter() - t0}


def stacked(audit: QuerySetAudit, extra: list[np.ndarray]) -> np.ndarray:
    rows = list(audit._entries) + [np.flatnonzero(s) if s.dtype == bool else s for s in extra]
    w = np.zeros((len(rows), audit.n))
    for i, idx in enumerate(rows):
        w[i, idx] = 1.0
    return w


def time_checks(audit: QuerySetAudit, queries: list[list[np.ndarray]]) -> np.ndarray:
    times = []
    for sets in queries:
        t0 = time.perf_counter()
        audit.check(sets)
        times.append(time.perf_counter() - t0)
    return np.array(times)


def time_near(audit: QuerySetAudit, queries: list[list[np.ndarray]]) -> tuple[np.ndarray, float]:
    """Seconds per `near` call and the mean number of differences it found per query."""
    times, found = [], []
    for sets in queries:
        t0 = time.perf_counter()
        near = audit.near(sets, WITHIN)
        times.append(time.perf_counter() - t0)
        found.append(sum(len(per) for per in near))
    return np.array(times), float(np.mean(found))


def near_copies(rng: np.random.Generator, audit: QuerySetAudit, count: int):
    """Answered sets with 1 to WITHIN - 1 people added or dropped: `near` finds and forms them."""
    queries = []
    for e in rng.choice(len(audit), count):
        mask = np.zeros(audit.n, dtype=bool)
        mask[audit._entries[e]] = True
        flip = rng.choice(audit.n, int(rng.integers(1, WITHIN)), replace=False)
        mask[flip] = ~mask[flip]
        queries.append([mask])
    return queries


def time_reference(audit: QuerySetAudit, queries: list[list[np.ndarray]], repeat=3) -> float:
    times = []
    for sets in queries[:repeat]:
        w = stacked(audit, sets)
        t0 = time.perf_counter()
        np.linalg.matrix_rank(w)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def time_records(audit: QuerySetAudit, make, count: int) -> np.ndarray:
    times = []
    while len(times) < count:
        sets = make()
        if audit.check(sets).ok:
            t0 = time.perf_counter()
            audit.record(sets, QueryMeta.of("2026-06-01T00:00:00", "bench", "r"))
            times.append(time.perf_counter() - t0)
    return np.array(times)


def ms(x: float) -> str:
    return f"{1e3 * x:,.1f}"


def main() -> int:
    rng = np.random.default_rng(ARGS.seed)
    n = ARGS.people
    samples = site_table(rng, n)
    rows = []
    built = {}
    workloads = {
        "strata": (lambda: strata_query(rng, samples), "where"),
        "random": (lambda: [random_set(rng, n)], "random"),
    }
    for name, (make, kind) in workloads.items():
        audit = QuerySetAudit(n, MIN)
        built[name] = info = build(audit, make, ARGS.sets)
        info["rank"] = audit.rank
        singles, multi = fresh_queries(rng, samples, kind, ARGS.queries)
        for label, queries in (("one set", singles), ("strata", multi)):
            t = time_checks(audit, queries)
            ref = time_reference(audit, queries)
            k = np.mean([len(q) for q in queries])
            rows.append((name, f"{label} ({k:.1f} sets)", t, ref, *time_near(audit, queries)))
        info["near copies"] = time_near(audit, near_copies(rng, audit, ARGS.queries))
        info["record"] = time_records(audit, make, 20)
        t0 = time.perf_counter()
        data = audit.to_bytes()
        info["save"] = time.perf_counter() - t0
        info["bytes"] = len(data)
        t0 = time.perf_counter()
        QuerySetAudit.from_bytes(data)
        info["load"] = time.perf_counter() - t0
        info["matrix_mb"] = audit.rank**2 * 8 / 1e6

    print(
        f"Query-set audit: {n:,} people, {ARGS.sets:,} answered sets, "
        f"BLAS threads {ARGS.threads}; check of {ARGS.queries} fresh queries each"
    )
    print()
    head = (
        f"{'history':8} {'query':18} {'check ms median':>16} {'p95':>7} {'max':>7} "
        f"{'matrix_rank ms':>15} {'ratio':>7} {'near ms med/max':>16} {'found':>6}"
    )
    print(head)
    print("-" * len(head))
    for name, label, t, ref, near, found in rows:
        print(
            f"{name:8} {label:18} {ms(np.median(t)):>16} {ms(np.percentile(t, 95)):>7} "
            f"{ms(t.max()):>7} {ms(ref):>15} {ref / np.median(t):>6.0f}x "
            f"{ms(np.median(near)) + ' / ' + ms(near.max()):>16} {found:>6.1f}"
        )
    for name, info in built.items():
        near, found = info["near copies"]
        print(
            f"{name:8} {'near copies':18} {'':>16} {'':>7} {'':>7} {'':>15} {'':>7} "
            f"{ms(np.median(near)) + ' / ' + ms(near.max()):>16} {found:>6.1f}"
        )
    print()
    head = (
        f"{'history':8} {'asked':>6} {'rank':>5} {'build s':>8} {'record ms med/max':>18} "
        f"{'stored MB':>10} {'load s':>7} {'M MB':>6}  refused while building"
    )
    print(head)
    print("-" * len(head))
    for name, info in built.items():
        refused = ", ".join(f"{k} {v}" for k, v in sorted(info["refused"].items())) or "-"
        rec = info["record"]
        print(
            f"{name:8} {info['asked']:>6} {info['rank']:>5} {info['seconds']:>8.1f} "
            f"{ms(np.median(rec)) + ' / ' + ms(rec.max()):>18} {info['bytes'] / 1e6:>10.2f} "
            f"{info['load']:>7.1f} {info['matrix_mb']:>6.1f}  {refused}"
        )
    print()
    checks = np.concatenate([row[2] for row in rows])
    nears = np.concatenate([row[4] for row in rows] + [i["near copies"][0] for i in built.values()])
    print(
        f"check under {ms(CHECK_LIMIT)} ms per query: median {ms(np.median(checks))}, "
        f"p95 {ms(np.percentile(checks, 95))}, max {ms(checks.max())} ms: "
        f"{'met' if np.percentile(checks, 95) < CHECK_LIMIT else 'NOT MET'}"
    )
    print(
        f"near well under {ms(NEAR_LIMIT)} ms (within {WITHIN}): median {ms(np.median(nears))}, "
        f"p95 {ms(np.percentile(nears, 95))}, max {ms(nears.max())} ms: "
        f"{'met' if np.percentile(nears, 95) < NEAR_LIMIT / 2 else 'NOT MET'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
