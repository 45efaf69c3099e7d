"""`QuerySetAudit`: the answered selections of one approval on one dataset at a site,
checked and recorded (see the package's docstring for the rules)."""

from __future__ import annotations

import secrets
import threading

import numpy as np

from .basis import _Basis, _grown
from .field import _Field, random_prime
from .history import _History
from .sets import _as_set, _people_of_rows, _Set
from .span import _Exposure, _Span
from .verdict import RULE_MIN_COUNT, RULE_SMALL_DIFFERENCE, QueryMeta, QuerySetRefused, Verdict

#: fingerprint weights are below 2**40, so a set's weight sum fits in int64 for n <= 2**23
HASH_BITS = 40
MAX_PEOPLE = 1 << 23


class QuerySetAudit(_Span, _History):
    """The answered selections of one approval on one dataset at a site.

    n_people: the dataset's number of people (indices are positions in its
    sample order); min_count: the platform's minimum number of people
    (`DisclosureRules.min_people`). `prime` and `seed` are for tests and for
    `from_bytes`; by default both are drawn at random (see the module's
    docstring for why the prime must be).

    Thread-safe: every handler of the approval goes through the same object.
    """

    def __init__(
        self, n_people: int, min_count: int, *, prime: int | None = None, seed: int | None = None
    ):
        if not 0 < n_people <= MAX_PEOPLE:
            raise ValueError(f"n_people must be in 1..{MAX_PEOPLE}")
        if min_count < 1:
            raise ValueError("min_count must be at least 1")
        if prime is not None and prime < 1 << HASH_BITS:
            raise ValueError("the audit's prime must exceed its fingerprints' range, 2**40")
        self.n = int(n_people)
        self.min_count = int(min_count)
        self._field = _Field(random_prime() if prime is None else int(prime))
        self._seed = secrets.randbits(63) if seed is None else int(seed)
        rng = np.random.default_rng(self._seed)
        p = self._field.p
        self._ha = rng.integers(0, 1 << HASH_BITS, self.n, dtype=np.int64) % p
        self._hb = rng.integers(0, 1 << HASH_BITS, self.n, dtype=np.int64) % p
        # each person's a_x / b_x: the ratio of every vector l e_x
        self._person_keys = np.sort(self._ratios(self._ha, self._hb))
        self._words = (self.n + 63) // 64
        self._lock = threading.RLock()
        # every distinct answered set: people, bit rows, answers (metas)
        self._entries: list[np.ndarray] = []
        self._answers: list[list[QueryMeta]] = []
        self._bits = np.zeros((0, self._words), dtype=np.uint64)
        self._sizes = np.zeros(0, dtype=np.int64)
        self._by_digest: dict[bytes, int] = {}
        self._basis = _Basis.empty(self._field, self.n, self._words)
        self._version = 0
        self._pending = None  # (version, digests, what _check staged) of the last check

    # -- what the secretariat may see (no people) ---------------------------------
    @property
    def rank(self) -> int:
        """Dimension of the span of the answered sets."""
        return self._basis.rank

    def __len__(self) -> int:
        """Number of distinct sets answered."""
        return len(self._entries)

    def answers(self) -> list[QueryMeta]:
        """Every recorded answer's metadata, oldest first."""
        with self._lock:
            return sorted((m for ms in self._answers for m in ms), key=lambda m: m.time)

    # -- check and record -------------------------------------------------------
    def check(self, sets) -> Verdict:
        """Whether a query summing over `sets` may be answered, given what was answered.

        sets: the query's selections, each a boolean mask over the people or
        their indices. Nothing is recorded.
        """
        with self._lock:
            parsed = [_as_set(s, self.n, self._words) for s in sets]
            verdict, result = self._check(parsed)
            if verdict.ok:
                self._pending = (self._version, tuple(s.digest for s in parsed), result)
            return verdict

    def record(self, sets, meta: QueryMeta) -> None:
        """Record an answered query's sets. Call it before the answer leaves.

        When another answer was recorded since this query's `check` and the two
        together are unsafe, nothing is recorded and QuerySetRefused is raised:
        the answer must then be withheld.
        """
        with self._lock:
            parsed = [_as_set(s, self.n, self._words) for s in sets]
            key = (self._version, tuple(s.digest for s in parsed))
            if self._pending is not None and self._pending[:2] == key:
                staged, deferred = self._pending[2]
            else:
                verdict, result = self._check(parsed)
                if not verdict.ok:
                    raise QuerySetRefused(verdict)
                staged, deferred = result
            if deferred is not None:
                staged = staged.extend(deferred)
            mapping = {}
            for k, s in enumerate(parsed):
                if not s.idx.size:
                    continue
                e = self._by_digest.get(s.digest)
                if e is None:
                    e = self._add_entry(s)
                if not self._answers[e] or self._answers[e][-1] is not meta:
                    self._answers[e].append(meta)
                mapping[-(k + 1)] = e
            basis = staged.relabelled(mapping)
            self._basis = basis.settled()
            self._version += 1
            self._pending = None

    def near(self, sets, within: int) -> list[list[np.ndarray]]:
        """For each of the query's sets S, the people of S Δ A for every answered set A, and
        every other set A of this query, with 0 < |S Δ A| < within.

        sets: as for `check`; within: the bound (the gateway takes 4 x min_count).
        Each distinct difference is listed once per set, as sorted int64 indices:
        those with answered sets first (in the order the sets were first answered),
        then those with this query's other sets. An empty set has none. Nothing is
        recorded. The gateway withholds, variant by variant, where a difference's
        called or missing people number 1 to min_count - 1: the audit sees the sets,
        not who has a call at each variant.
        """
        with self._lock:
            parsed = [_as_set(s, self.n, self._words) for s in sets]
            out = []
            for k, s in enumerate(parsed):
                if not s.idx.size:
                    out.append([])
                    continue
                _, answered, d = self._answered_within(s, within)
                others = [t.bits for j, t in enumerate(parsed) if j != k and t.idx.size]
                query = np.array(others, dtype=np.uint64).reshape(-1, self._words) ^ s.bits
                dq = np.bitwise_count(query).sum(axis=1)
                found = [answered[d > 0], query[(dq > 0) & (dq < within)]]
                out.append(_people_of_rows(np.concatenate(found)))
            return out

    def _answered_within(self, s: _Set, within: int):
        """(entries, S Δ A as bit rows, |S Δ A|) of the answered sets A with |S Δ A| < within.

        |S Δ A| >= ||S| - |A||: only sets of about S's size are compared bit by bit.
        """
        m = len(self._entries)
        maybe = np.flatnonzero(np.abs(self._sizes[:m] - s.idx.size) < within)
        xor = self._bits[maybe] ^ s.bits
        d = np.bitwise_count(xor).sum(axis=1)
        close = d < within
        return maybe[close], xor[close], d[close]

    def _add_entry(self, s: _Set) -> int:
        e = len(self._entries)
        self._entries.append(s.idx)
        self._answers.append([])
        if e == self._bits.shape[0]:
            self._bits = _grown(self._bits, e, max(16, 2 * e))
            self._sizes = _grown(self._sizes, e, max(16, 2 * e))
        self._bits[e] = s.bits
        self._sizes[e] = s.idx.size
        self._by_digest[s.digest] = e
        return e

    def _check(self, parsed: list[_Set]):
        """(verdict, (basis, extension)): the basis with the query's sets but the last one
        added, and the arguments that add the last (None if it adds nothing)."""
        staged, deferred = self._basis, None
        seen: dict[bytes, int] = {}
        for k, s in enumerate(parsed):
            if not s.idx.size or s.digest in self._by_digest or s.digest in seen:
                continue  # nothing, or an identical repeat: nothing new is told
            if s.idx.size < self.min_count:
                return Verdict(False, RULE_MIN_COUNT, k, min_count=self.min_count), None
            verdict = self._small_difference(k, s, parsed, seen)
            if verdict is not None:
                return verdict, None
            if deferred is not None:
                staged, deferred = staged.extend(deferred), None
            exposure, deferred = self._add_to_span(staged, s, label=-(k + 1))
            if exposure is not None:
                return self._refusal(k, staged, exposure), None
            seen[s.digest] = k
        return Verdict(True), (staged, deferred)

    def _small_difference(self, k, s, parsed, seen) -> Verdict | None:
        close = self._answered_within(s, self.min_count)[0]
        if close.size:
            metas = sorted({self._answers[e][0] for e in close}, key=lambda x: x.time)
            return Verdict(False, RULE_SMALL_DIFFERENCE, k, tuple(metas), min_count=self.min_count)
        same = [
            j
            for j in seen.values()
            if np.bitwise_count(parsed[j].bits ^ s.bits).sum() < self.min_count
        ]
        if same:
            return Verdict(
                False, RULE_SMALL_DIFFERENCE, k, (), tuple(same), min_count=self.min_count
            )
        return None

    def _refusal(self, k: int, basis: _Basis, exposure: _Exposure) -> Verdict:
        labels = basis.labels[np.flatnonzero(exposure.coef)]
        metas = sorted({self._answers[int(e)][0] for e in labels if e >= 0}, key=lambda m: m.time)
        same = sorted(-int(e) - 1 for e in labels if e < 0)
        return Verdict(False, exposure.rule, k, tuple(metas), tuple(same), self.min_count)
