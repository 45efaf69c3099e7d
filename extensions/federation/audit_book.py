"""The query-set audits a site's gateway keeps: one per approval and dataset, on disk at the site.

`query_audit.QuerySetAudit` is the algebra; this module is where its
histories live and how a gateway uses them for one query:

    scopes = [Scope("J-DU000101", reset=None)]          # from the hub: the caller's approvals
    held = book.open(scopes, dataset, sample_ids)       # loaded or created, per scope
    plan = book.check(held, masks)                      # before computing: refuses or passes
    ... compute, disclose, withhold the variants `plan.near` asks for ...
    book.record(held, plan, meta)                       # before the answer leaves

A **scope** is a pool of people who can put their answers together: an
approval (all its handlers), or, for a person with no approval covering the
dataset here (the catalogue asks on their behalf), that person alone
(`person:<name>`). A person holding two approvals that cover the dataset is
checked against both and recorded in both.

People are positions in the dataset's sample ids sorted (the same for the
Dask and the Hail copy of a dataset). A history remembers the digest of
those ids: when a dataset's people change (a new cohort ingested under the
same name), the old history is archived beside the new one and a new one is
started, and the log says so.

A **reset** is decided on the hub side (the secretariat, with a recorded
reason) and reaches the gateway with the approval (`query_audit_reset`, the
time of the latest reset): a history older than that is archived
(`<scope>.reset-<time>.vqsa.archived`, with its `.json`) and a new one
begins. Nothing here leaves the site: the histories hold the sets (positions
of people), the secret prime and the fingerprints.

Layout: `<root>/<dataset>/<scope>.vqsa` (the history) and
`<root>/<dataset>/<scope>.json` (scope, dataset, reset time, people digest).
Both are written atomically (a temporary file renamed over the old one) and
only by the gateway.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .query_audit import QueryMeta, QuerySetAudit, QuerySetRefused, Verdict, write_atomically

log = logging.getLogger("visiting.query_audit")

#: differences below this many times the minimum count are checked variant by variant
NEAR_FACTOR = 4
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class Scope:
    """Whose answers pool: an approval id, or `person:<name>`; `reset` the hub's latest reset."""

    key: str
    reset: str | None = None

    @classmethod
    def person(cls, name: str) -> Scope:
        return cls(f"person:{name}")

    @property
    def filename(self) -> str:
        return _SAFE.sub("_", self.key.replace(":", "+"))


@dataclass
class Held:
    """One scope's audit for one dataset, as loaded for a query."""

    scope: Scope
    dataset: str
    audit: QuerySetAudit
    path: Path | None
    people: str  # digest of the dataset's sorted sample ids


@dataclass
class Plan:
    """A query that passed the audit: its sets (positions in sorted-id order) and near differences.

    near: for the per-variant rule, each set's small symmetric differences with
    sets already answered (positions in sorted-id order), at most one list per set.
    """

    sets: list[np.ndarray]
    near: list[np.ndarray] = field(default_factory=list)


class AuditRefused(Exception):
    """The audit refuses the query: the verdict names the rule and the earlier queries."""

    def __init__(self, verdict: Verdict, scope: Scope):
        super().__init__(verdict.message)
        self.verdict = verdict
        self.scope = scope


#: the refusal in Japanese, per rule (the English is `Verdict.message`)
_JA = {
    "min_count": "この照会は最小人数 {m} 人未満の集団を集計するため、お答えできません。",
    "small_difference": (
        "この照会の対象者は、同じ承認で以前に回答した照会 ({earlier}) の対象者と {m} 人未満しか"
        "違わないため、二つの回答の差が少数の個人を表してしまいます。お答えできません。"
    ),
    "isolating_combination": (
        "以前に回答した照会 ({earlier}) とこの照会の回答を足し引きすると、一人の値が求まって"
        "しまうため、お答えできません。"
    ),
    "isolating_pair": (
        "以前に回答した照会 ({earlier}) とこの照会の回答を足し引きすると、二人の値の組が求まり、"
        "欠測のある変異では一人の値になってしまうため、お答えできません。"
    ),
}


def refusal_text_ja(verdict: Verdict) -> str:
    """The Japanese text of a refusal: the rule and the earlier queries (time, task), no people."""
    earlier = "、".join(f"{m.time} の {m.task}" for m in verdict.collides_with)
    if verdict.same_query_sets and not earlier:
        earlier = "この照会の別の集計"
    text = _JA.get(verdict.rule or "", "この照会はお答えできません（照会集合の監査）。")
    return text.format(m=verdict.min_count, earlier=earlier or "—")


def people_order(sample_ids) -> tuple[np.ndarray, str]:
    """(position in sorted order of each sample in the given order, digest of the sorted ids)."""
    ids = np.asarray([str(s) for s in sample_ids], dtype=object)
    order = np.argsort(ids, kind="stable")
    position = np.empty(ids.size, dtype=np.int64)
    position[order] = np.arange(ids.size, dtype=np.int64)
    digest = hashlib.sha256("\n".join(ids[order].tolist()).encode()).hexdigest()[:16]
    return position, digest


def as_positions(masks, position: np.ndarray) -> list[np.ndarray]:
    """Boolean masks over a cohort's sample rows as sorted positions in sorted-id order."""
    out = []
    for m in masks:
        m = np.asarray(m, dtype=bool)
        if m.shape != position.shape:
            raise ValueError("a set's mask does not match the dataset's people")
        out.append(np.sort(position[m]))
    return out


class AuditBook:
    """Every audit of a site's gateway, loaded on demand and kept in memory.

    root: the folder of the histories (None: in memory only, for tests and a
    gateway without state, which logs that it keeps no history across
    restarts); min_count: the platform's minimum count of people.
    """

    def __init__(self, root: str | os.PathLike | None, min_count: int):
        self.root = Path(root) if root is not None else None
        self.min_count = int(min_count)
        self._lock = threading.RLock()
        self._audits: dict[tuple[str, str], Held] = {}
        if self.root is None:
            log.warning("query-set audit: no state folder; histories last until a restart")
        else:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    # -- open --------------------------------------------------------------------------

    def open(self, scopes: list[Scope], dataset: str, sample_ids) -> list[Held]:
        """The audits of `scopes` for `dataset` (loaded, or new), reset where the hub says so."""
        if not scopes:
            raise ValueError("a query is audited in at least one scope")
        _, digest = people_order(sample_ids)
        n = len(sample_ids)
        with self._lock:
            return [self._open(s, dataset, n, digest) for s in scopes]

    def _open(self, scope: Scope, dataset: str, n: int, digest: str) -> Held:
        key = (scope.key, dataset)
        held = self._audits.get(key)
        if held is not None and held.scope.reset == scope.reset and held.people == digest:
            return held
        folder = None if self.root is None else self.root / _SAFE.sub("_", dataset)
        path = None if folder is None else folder / f"{scope.filename}.vqsa"
        audit = None
        if path is not None and path.exists():
            info = self._info(path)
            if info.get("reset") != scope.reset:
                self._archive(path, f"reset-{_SAFE.sub('_', scope.reset or 'none')}")
                log.info(
                    "query-set audit of %s on %s reset (hub: %s); a new history starts",
                    scope.key,
                    dataset,
                    scope.reset,
                )
            elif info.get("people") != digest:
                self._archive(path, f"people-{info.get('people', 'unknown')}")
                log.warning(
                    "query-set audit of %s on %s: the dataset's people changed; "
                    "the old history is archived and a new one starts",
                    scope.key,
                    dataset,
                )
            else:
                audit = QuerySetAudit.load(path)
                if audit.n != n or audit.min_count != self.min_count:
                    audit = self._migrated(audit, n, scope, dataset)
        elif held is not None and held.scope.reset == scope.reset and held.audit.n == n:
            audit = held.audit  # in memory only
        if audit is None:
            audit = QuerySetAudit(n, self.min_count)
            if path is not None:
                folder.mkdir(parents=True, exist_ok=True, mode=0o700)
                self._write(path, audit, scope, dataset, digest)
        held = Held(scope, dataset, audit, path, digest)
        self._audits[key] = held
        return held

    def _migrated(self, audit: QuerySetAudit, n: int, scope: Scope, dataset: str):
        if audit.n != n:  # cannot happen with the same digest; refuse to guess
            raise ValueError(f"query-set audit of {scope.key} on {dataset}: damaged (people)")
        log.warning(
            "query-set audit of %s on %s: the minimum count changed from %d to %d; "
            "the history is kept and checked with the new minimum",
            scope.key,
            dataset,
            audit.min_count,
            self.min_count,
        )
        audit.min_count = self.min_count
        return audit

    @staticmethod
    def _info(path: Path) -> dict:
        try:
            return json.loads(path.with_suffix(".json").read_text())
        except (OSError, ValueError):
            return {}

    @staticmethod
    def _archive(path: Path, why: str) -> None:
        stem = path.with_suffix("")
        for suffix in (".vqsa", ".json"):
            src = stem.with_suffix(suffix)
            if src.exists():
                src.rename(stem.parent / f"{stem.name}.{why}{suffix}.archived")

    def _write(self, path: Path, audit: QuerySetAudit, scope: Scope, dataset: str, digest: str):
        info = {"scope": scope.key, "dataset": dataset, "reset": scope.reset, "people": digest}
        write_atomically(path.with_suffix(".json"), json.dumps(info).encode())
        audit.save(path)

    # -- check and record ----------------------------------------------------------------

    def check(self, held: list[Held], sets: list[np.ndarray]) -> Plan:
        """Refuse (AuditRefused) or pass the query's sets in every scope; nothing is recorded."""
        near: list[np.ndarray] = []
        for h in held:
            verdict = h.audit.check(sets)
            if not verdict.ok:
                raise AuditRefused(verdict, h.scope)
            within = NEAR_FACTOR * self.min_count
            near.extend(d for per_set in h.audit.near(sets, within) for d in per_set)
        return Plan(sets=sets, near=_distinct(near))

    def record(self, held: list[Held], plan: Plan, meta: QueryMeta) -> None:
        """Record an answered query in every scope, on disk before returning.

        All scopes are checked again first (another query may have been recorded
        since `check`), so a query is recorded everywhere or nowhere.
        """
        with self._lock:
            for h in held:
                verdict = h.audit.check(plan.sets)
                if not verdict.ok:
                    raise AuditRefused(verdict, h.scope)
            for h in held:
                try:
                    h.audit.record(plan.sets, meta)
                except QuerySetRefused as e:  # not after the check above under the lock
                    raise AuditRefused(e.verdict, h.scope) from None
                if h.path is not None:
                    self._write(h.path, h.audit, h.scope, h.dataset, h.people)


def _distinct(arrays: list[np.ndarray]) -> list[np.ndarray]:
    seen, out = set(), []
    for a in arrays:
        key = a.tobytes()
        if key not in seen:
            seen.add(key)
            out.append(a)
    return out


# -- the per-variant rule ---------------------------------------------------------------


def withhold_near_differences(half, variant_keys, arrays, missing_of, near, min_count: int):
    """Withhold the variants at which a small difference with an answered set covers too few.

    A variant's sums cover the called people of a set (and, for a regression, sums
    of the phenotype over the missing ones), so two answered sets A, S whose
    difference D = A Δ S is small differ, at variant v, by a sum over D ∩ C_v and one
    over D ∩ M_v. Wherever either holds 1 to min_count - 1 people the variant is
    withheld at this site (NaN in every per-variant array) and listed.

    variant_keys: the key of each row of the per-variant `arrays` of `half`;
    missing_of(keys, people) -> (len(keys), len(people)) bool, True where the call
    is missing (people: positions in sorted-id order); near: the differences.
    Returns the number of variants withheld.
    """
    from .tasks.disclosure import rule_text, suppression

    if not near or not len(variant_keys):
        return 0
    out = np.zeros(len(variant_keys), dtype=bool)
    people = np.unique(np.concatenate(near))
    missing = np.asarray(missing_of(list(variant_keys), people), dtype=bool)
    where = {p: i for i, p in enumerate(people.tolist())}
    for d in near:
        cols = [where[p] for p in d.tolist()]
        m = missing[:, cols].sum(axis=1)
        c = len(cols) - m
        out |= ((m >= 1) & (m < min_count)) | ((c >= 1) & (c < min_count))
    if out.any():
        for name in arrays:
            a = np.array(half.arrays[name], dtype=np.float64)
            a[out] = np.nan
            half.arrays[name] = a
        half.suppressed.append(
            suppression(
                half.site,
                "variant",
                int(out.sum()),
                rule_text("min_cell_count", min_count) + " (query-set audit)",
                "variants at which this query and an earlier one of the approval differ by "
                "the calls of fewer people than the rule allows",
            )
        )
    return int(out.sum())
