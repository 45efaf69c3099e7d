"""Query-set auditing at a site: no sequence of answers singles out one person.

Every federated answer is a sum over a set of people: allele counts over the
people a `where` selects (one set per stratum), a regression's sufficient
statistics over its complete cases, a count the catalogue releases. Each
answer passes the disclosure rules on its own, but answers can be added and
subtracted. A `QuerySetAudit` (one per approval and dataset, shared by every
handler of the approval, kept at the site) holds the sets answered so far,
each as the indices of its people in the dataset's sample order, and is asked
*before* an answer leaves:

    verdict = audit.check(sets)        # refuses, or lets the answer be computed
    ...compute and disclose the answer...
    audit.record(sets, QueryMeta(...)) # before the answer is sent; raises
                                       # QuerySetRefused if another answer
                                       # recorded meanwhile makes it unsafe

It refuses a query when

- `min_count`: one of its sets holds fewer than `min_count` people (and any);
- `small_difference`: one of its sets differs from an answered set (or from
  another set of the same query) by fewer than `min_count` people, one inside
  the other included; the difference of the two answers would be a sum over
  that handful. Identical repeats are answered: they tell nothing new;
- `isolating_combination`: with this query's sets, some person's indicator
  vector e_i lies in the linear span of the answered sets' indicator vectors,
  so that some combination of answers, added and subtracted with any
  coefficients, is that one person's value, whatever the data (exact auditing
  of sum queries, Chin and Ozsoyoglu's criterion);
- `isolating_pair`: with this query's sets, the span would hold a new vector
  with exactly two non-zero entries, e_x + c e_y: a combination of answers that
  is two people's values together. A variant's sums cover only the people
  with a call there, so where y's call is missing that combination is x's
  value (docs/query-audit-notes.md). A history kept before this rule may hold
  such vectors already; they do not refuse every later query, only new ones do.

A refusal (`Verdict`) names its rule and the earlier queries it collides with,
by the time and task of their first answer, never a person nor a count.

`near` lists, for a query's sets, the small symmetric differences with sets
already answered, for the gateway's per-variant rule (a difference whose
called or missing people at a variant are too few is withheld there).

How the span is kept
--------------------
The answered sets that were linearly independent when answered are the basis
rows W (r x n, 0/1). Their row space is kept in *row-reduced* form R = M W:
every row R_j has a pivot column p_j where R_j is 1 and every other row is 0.
That form decides the exposure test at once:

    Claim: e_i is in the row space iff i is a pivot p_j and R_j = e_i.
    Proof: any x in the row space is x = sum_j l_j R_j; reading column p_k,
    where only R_k is non-zero (and is 1), gives x[p_k] = l_k. So
    x = sum_j x[p_j] R_j: a vector of the row space is fixed by its values at
    the pivots. For x = e_i with i no pivot, every x[p_j] is 0, so x = 0, a
    contradiction; with i = p_k, x = R_k. Conversely R_k = e_i is in it.
    Only the "reduced" property is used, not the echelon order of the
    pivots, so a row can be added with any of its non-zero columns as pivot.

Adding a set v: its reduction v' = v - c W with c = v[P] M (v' is 0 at every
pivot); v' = 0 means v is a combination of answered sets (no new row, no new
exposure). Otherwise, with q a column where v' is non-zero and u = v'/v'[q],
the new rows are u and R_j - R_j[q] u. So a person becomes exposed exactly
when v' has a single non-zero entry, or when some row's off-pivot part
D_j = R_j - e_{p_j} is a multiple of u (then R_j - R_j[q] u = e_{p_j}).

The n-long rows are never formed on the way. M (r x r) is kept, with two
secret random fingerprints of every row (R a and R b in GF(p), a and b drawn
per audit from [0, 2^40)); those of v' come from c and the sets' own W a, W b.
- v' = 0 is taken from v'.a = v'.b = 0: for a non-zero v' that happens with
  probability below 2^-40 * 2^-40 = 2^-80.
- v' = l e_x gives (v'.a) b_x = (v'.b) a_x, and D_j = l u gives
  (D_j.a)(u.b) = (D_j.b)(u.a): exact consequences, so these tests never miss;
  what they flag is then confirmed on the full vectors (a refusal's cost).
- A pivot q is found from the fingerprints of v' over blocks of 64 people: a
  block whose fingerprint is non-zero holds a non-zero v'[q] for certain.

Vectors of two people. A vector of the span is x = sum_j x[p_j] R_j, so one
with support {a, b} is either a multiple of a row R_j whose off-pivot part
D_j = R_j - e_{p_j} is a single entry l e_x, or R_j - l R_k for two rows with
D_j = l D_k (three or more non-zero pivot values give three or more entries).
The fingerprints decide both, as exact consequences again: D_j = l e_x gives
(D_j.a)/(D_j.b) = a_x/b_x, and D_j = l D_k gives equal ratios. So each row
keeps its ratio (D_j.a)/(D_j.b) mod p, the people's ratios a_x/b_x are kept
sorted, and adding a set recomputes the ratios of the rows it changes (those
with R_j[q] != 0, and u) with one batch inverse; a changed row whose ratio is a
person's, or equals another row's, is a candidate, confirmed on full vectors.
A candidate x that was in the span before is recognised by its old reduced
form (x[q] = sum_j x[p_j] R_j[q]) and not refused again.

A check costs O(r^2) additions, O(r n / 64) for the block fingerprints and the
small-difference rule (bit rows, popcounts) and O(r + n) multiplications, with
O(r log r) more for the ratios.
Adding a row changes M by a rank-one update, kept in a low-rank form
(M = T + A B) and folded into T every FOLD_AFTER rows (an O(r^2 k) product).

Why arithmetic modulo a large random prime
------------------------------------------
The rank tests are exact, in the field GF(p) for a prime p < 2**50 (so that a
product of two residues can be reduced exactly with a float64 quotient and
wrapping int64 arithmetic). GF(p) is not the same as the rationals: a
combination of answers can need a fraction, and then a prime dividing its
denominator misses it. With the sets {1,2}, {2,3} and {1,3},
e_1 = ({1,2} + {1,3} - {2,3}) / 2 over the rationals, but over GF(2) the three
vectors add up to 0 and e_1 is not in their span. What holds is this: for a
0/1 matrix W of rational rank r, if p does not divide one chosen non-zero
r x r minor of W then W has rank r over GF(p) too, and then every e_i in the
rational span is in the GF(p) span (rank_p [W; e_i] <= rank_Q [W; e_i] =
rank_Q W = rank_p W). So a prime misses a combination only if it divides that
minor, and a k x k 0/1 determinant is at most (k+1)^((k+1)/2) / 2^k in size
(Hadamard): at k = 1,000 about 2^3989, divisible by at most 81 primes above
2^49. The prime is drawn at random from the about 1.6e13 primes in
[2^49, 2^50) for each audit, is kept with its history at the site and is never
shown: no query can be built around it. A check can then go wrong (either
way) only if p divides one of at most r + 1 such minors of the sets then in
play (one for the rank, one per pivot column for refusing too much); with no
earlier check gone wrong those sets do not depend on p, so over 1,000 checks
at r = 1,000 the chance is below 1,000 * 1,001 * 81 / 1.6e13 = 5e-6 by the
worst-case (Hadamard) bound, and far below it for real selections, whose
minors are small; the fingerprints add 2^-80 a check.

The pair rule misses nothing under the same condition: if rank_p W = rank_Q W
and a rational e_x + c e_y is in the span, rank_p [W; e_x; e_y] <=
rank_Q [W; e_x; e_y] <= r + 1, so the GF(p) span meets the plane of e_x and
e_y too, in e_x, e_y (refused as isolating) or a vector of support 2. It can
refuse too much only if p divides a minor of R that is not 0 over the
rationals, an entry of a row or a 2 x 2 minor of two rows (each an r x r minor
of W over det W[:, P], by Cramer's rule): with one such minor per row and per
pair of rows, about r^2 / 2 = 5e5 at r = 1,000, below 5e5 * 81 / 1.6e13 =
2.5e-6 a check in the worst case (a refusal too many, never an answer too
many). A row whose off-pivot part has both fingerprints 0 (probability below
2^-80) has no ratio and is not matched.

Nothing here imports a web framework or Dask: the gateway wires it in.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import struct
import tempfile
import threading
import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

RULE_MIN_COUNT = "min_count"
RULE_SMALL_DIFFERENCE = "small_difference"
RULE_ISOLATING = "isolating_combination"
RULE_ISOLATING_PAIR = "isolating_pair"
RULES = (RULE_MIN_COUNT, RULE_SMALL_DIFFERENCE, RULE_ISOLATING, RULE_ISOLATING_PAIR)

#: the prime is drawn from [2**(PRIME_BITS-1), 2**PRIME_BITS)
PRIME_BITS = 50
#: fingerprint weights are below 2**40, so a set's weight sum fits in int64 for n <= 2**23
HASH_BITS = 40
MAX_PEOPLE = 1 << 23
#: pending rank-one updates of M folded into its dense part once there are this many
FOLD_AFTER = 16
#: rows of int64 residues (< 2**50) that can be added without overflow
_SUM_CHUNK = 8191
_LIMB = 25
_LIMB17 = 17
_MAGIC = b"VQSA\x00\x01"
_FORMAT_VERSION = 1


# -- what is recorded and what is answered ----------------------------------------


@dataclass(frozen=True)
class QueryMeta:
    """An answered query as a refusal may name it: when, which task, its id (no people)."""

    time: str
    task: str
    query_id: str = ""

    @classmethod
    def of(cls, time: datetime | str, task: str, query_id: str = "") -> QueryMeta:
        return cls(time.isoformat() if isinstance(time, datetime) else str(time), task, query_id)

    def to_json(self) -> dict:
        return {"time": self.time, "task": self.task, "query_id": self.query_id}

    @classmethod
    def from_json(cls, doc: dict) -> QueryMeta:
        return cls(str(doc["time"]), str(doc["task"]), str(doc.get("query_id", "")))


@dataclass(frozen=True)
class Verdict:
    """The answer to `check`: ok, or the rule that refuses and what it collides with.

    set_index: which of the query's sets the rule refused (in the order given);
    collides_with: the earlier queries involved (the first answer of each
    answered set in the colliding combination or pair), oldest first;
    same_query_sets: other sets of this same query involved.
    Neither names a person or a count of people.
    """

    ok: bool
    rule: str | None = None
    set_index: int | None = None
    collides_with: tuple[QueryMeta, ...] = ()
    same_query_sets: tuple[int, ...] = ()
    min_count: int = 0

    @property
    def message(self) -> str:
        if self.ok:
            return "answered"
        if self.rule == RULE_MIN_COUNT:
            return (
                f"the query sums over fewer than {self.min_count} people "
                f"(rule {RULE_MIN_COUNT}={self.min_count}); refused"
            )
        earlier = _describe(self.collides_with, self.same_query_sets)
        if self.rule == RULE_SMALL_DIFFERENCE:
            return (
                f"the people this query sums over differ from those of {earlier} by fewer "
                f"than {self.min_count} people, so the difference of the two answers would "
                f"describe that handful (rule {RULE_SMALL_DIFFERENCE}={self.min_count}); refused"
            )
        alone = not (self.collides_with or self.same_query_sets)
        if self.rule == RULE_ISOLATING_PAIR:
            if alone:
                return (
                    "this query's answer would be the values of two people together, and with "
                    "one of them missing at a variant, one person's value "
                    f"(rule {RULE_ISOLATING_PAIR}); refused"
                )
            return (
                f"together with {earlier}, this query's answer would let the values of two "
                "people be worked out together by adding and subtracting answers, and with one "
                "of them missing at a variant, one person's value "
                f"(rule {RULE_ISOLATING_PAIR}); refused"
            )
        if alone:
            return (
                f"this query's answer would be one person's value (rule {RULE_ISOLATING}); refused"
            )
        return (
            f"together with {earlier}, this query's answer would let one person's value be "
            f"worked out by adding and subtracting answers (rule {RULE_ISOLATING}); refused"
        )

    def to_json(self) -> dict:
        return {
            "ok": self.ok,
            "rule": self.rule,
            "set_index": self.set_index,
            "collides_with": [m.to_json() for m in self.collides_with],
            "same_query_sets": list(self.same_query_sets),
            "message": self.message,
        }


def _describe(earlier: tuple[QueryMeta, ...], same: tuple[int, ...]) -> str:
    parts = []
    if earlier:
        last = earlier[-1]
        text = f"the earlier query {last.task} answered at {last.time}"
        if len(earlier) > 1:
            text += f" and {len(earlier) - 1} earlier queries before it"
        parts.append(text)
    if same:
        parts.append("another selection of this same query")
    return " and ".join(parts)


class QuerySetRefused(Exception):
    """`record` found the query unsafe (another answer was recorded since its check)."""

    def __init__(self, verdict: Verdict):
        super().__init__(verdict.message)
        self.verdict = verdict


# -- arithmetic in GF(p), p < 2**50, on int64 arrays --------------------------------


def _is_prime(n: int) -> bool:
    """Deterministic Miller-Rabin for n < 3.3e24 (bases: the primes up to 41)."""
    if n < 2:
        return False
    small = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41)
    for q in small:
        if n % q == 0:
            return n == q
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for a in small:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def random_prime(bits: int = PRIME_BITS) -> int:
    """A prime drawn uniformly from the primes in [2**(bits-1), 2**bits), from `secrets`."""
    while True:
        n = secrets.randbits(bits - 1) | (1 << (bits - 1)) | 1
        if _is_prime(n):
            return n


class _Field:
    """Residues mod p in int64 numpy arrays.

    Products are reduced exactly: the quotient floor(a*b/p) is estimated in
    float64 (relative error < 2**-51, so off by at most one for p < 2**50) and
    a*b - q*p is taken in wrapping int64 arithmetic, where it is exact because
    its true value lies in (-2p, 2p).
    """

    def __init__(self, p: int):
        if not (2 < p < 1 << PRIME_BITS) or not _is_prime(p):
            raise ValueError(f"the audit's modulus must be an odd prime below 2**{PRIME_BITS}")
        self.p = p
        self._inv_p = 1.0 / p

    def mul(self, a, b) -> np.ndarray:
        """a * b mod p, elementwise (arrays or ints in [0, p), broadcasting; at least 1-D)."""
        a = np.atleast_1d(np.asarray(a, dtype=np.int64))
        b = np.atleast_1d(np.asarray(b, dtype=np.int64))
        q = np.floor(a.astype(np.float64) * b.astype(np.float64) * self._inv_p)
        r = a * b - q.astype(np.int64) * self.p
        return r % self.p

    def matmul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """a @ b mod p for residue matrices, exactly, with float64 BLAS.

        Each side is cut into three 17-bit limbs; a product of limbs is below
        2**34 and a sum of k of them stays exact in float64 for k < 2**17.
        """
        return self.matmul_limbs(self.limbs(a), self.limbs(b))

    @staticmethod
    def limbs(x: np.ndarray) -> list[np.ndarray]:
        """Residues as three float64 arrays of 17-bit limbs, low first."""
        mask = (1 << _LIMB17) - 1
        return [((x >> (_LIMB17 * i)) & mask).astype(np.float64) for i in range(3)]

    def matmul_limbs(self, la: list[np.ndarray], lb: list[np.ndarray]) -> np.ndarray:
        if la[0].shape[-1] >= 1 << 17:
            raise ValueError("matmul: inner dimension too large for exact float64 limbs")
        out = None
        for d in range(5):
            g = sum(la[i] @ lb[d - i] for i in range(max(0, d - 2), min(d, 2) + 1))
            g = g.astype(np.int64) % self.p
            if d:
                g = self.mul(g, pow(2, _LIMB17 * d, self.p))
            out = g if out is None else out + g
        return out % self.p

    def dot(self, a, b) -> int:
        """sum(a * b) mod p for 1-D residue arrays."""
        return int(_sum_mod(self.mul(a, b), self.p))

    def inv(self, x: int) -> int:
        return pow(int(x) % self.p, self.p - 2, self.p)

    def inv_many(self, x: np.ndarray) -> np.ndarray:
        """1 / x mod p elementwise for non-zero residues, with a single modular power.

        Montgomery's trick on a product tree: pairwise products up to the root,
        its inverse, and back down, each inverse the parent's times the sibling
        (2 log2(len) vector products instead of one power per entry).
        """
        levels, y = [], np.asarray(x, dtype=np.int64)
        if not y.size:
            return y.copy()
        while y.size > 1:
            if y.size % 2:
                y = np.append(y, 1)
            levels.append(y)
            y = self.mul(y[0::2], y[1::2])
        out = np.array([self.inv(int(y[0]))], dtype=np.int64)
        for y in reversed(levels):
            up = out[: y.size // 2]  # the level above may have been padded with a 1
            down = np.empty(y.size, dtype=np.int64)
            down[0::2] = self.mul(up, y[1::2])
            down[1::2] = self.mul(up, y[0::2])
            out = down
        return out[: np.asarray(x).size]


def _sum_mod(x: np.ndarray, p: int, axis: int = 0) -> np.ndarray:
    """Sum of residues along an axis, mod p, in chunks that cannot overflow int64."""
    x = np.asarray(x, dtype=np.int64)
    if x.shape[axis] <= _SUM_CHUNK:
        return x.sum(axis=axis) % p
    total = None
    for lo in range(0, x.shape[axis], _SUM_CHUNK):
        part = np.take(x, np.arange(lo, min(lo + _SUM_CHUNK, x.shape[axis])), axis=axis)
        s = part.sum(axis=axis) % p
        total = s if total is None else (total + s) % p
    return total


def _matmul_mod(x: np.ndarray, y: np.ndarray, p: int) -> np.ndarray:
    """x @ y mod p where one side is 0/1 and the other holds residues (sums fit in int64)."""
    inner = x.shape[-1]
    if inner <= _SUM_CHUNK:
        return (x @ y) % p
    total = None
    for lo in range(0, inner, _SUM_CHUNK):
        hi = min(lo + _SUM_CHUNK, inner)
        s = (x[..., lo:hi] @ y[lo:hi]) % p
        total = s if total is None else (total + s) % p
    return total


# -- sets of people ----------------------------------------------------------------


@dataclass(frozen=True)
class _Set:
    idx: np.ndarray  # sorted unique int32 indices
    bits: np.ndarray  # uint64 words, bit x of word x >> 6 is person x
    digest: bytes


def _as_set(raw, n: int, words: int) -> _Set:
    arr = np.asarray(raw)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise ValueError(f"a boolean selection must have one entry per person ({n})")
        idx = np.flatnonzero(arr)
    else:
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError("a selection is a boolean mask or integer indices of people")
        idx = np.unique(arr.astype(np.int64).ravel())
        if idx.size and (idx[0] < 0 or idx[-1] >= n):
            raise ValueError(f"a selection's indices must lie in 0..{n - 1}")
    idx = idx.astype(np.int32)
    mask = np.zeros(words * 64, dtype=bool)
    mask[idx] = True
    bits = np.packbits(mask, bitorder="little").view(np.uint64)
    return _Set(idx, bits, hashlib.blake2b(bits.tobytes(), digest_size=16).digest())


_SHIFTS = np.arange(64, dtype=np.uint64)


def _bit_columns(bits: np.ndarray, word: int) -> np.ndarray:
    """The 0/1 (rows x 64) block of the people word*64 .. word*64+63."""
    return ((bits[:, word, None] >> _SHIFTS) & np.uint64(1)).astype(np.int64)


def _bit_column(bits: np.ndarray, x: int) -> np.ndarray:
    return ((bits[:, x >> 6] >> np.uint64(x & 63)) & np.uint64(1)).astype(np.int64)


def _people_of_rows(rows: np.ndarray) -> list[np.ndarray]:
    """The people (sorted int64 indices) of each distinct bit row, in order of first occurrence.

    Only the rows' non-zero words are expanded: near differences hold a few people.
    """
    first: dict[bytes, int] = {}
    for i, row in enumerate(rows):
        first.setdefault(row.tobytes(), i)
    if not first:
        return []
    rows = rows[list(first.values())]
    row, word = np.nonzero(rows)
    at, bit = np.nonzero((rows[row, word][:, None] >> _SHIFTS) & np.uint64(1))
    people = word[at].astype(np.int64) * 64 + bit
    return np.split(people, np.searchsorted(row[at], np.arange(1, rows.shape[0])))


# -- the basis in row-reduced form --------------------------------------------------


class _Rows:
    """Row-aligned arrays that bases share: a basis of rank r reads their first r rows.

    bits: W's rows as bit rows; limbs: the 17-bit limbs of W's fingerprints over
    blocks of 64 people (float64, for `find_pivot`'s product). A row is written
    once and never changed, so a basis whose last row is the last written appends
    in place (amortised O(1) instead of copying r rows), and another basis that
    extends the same one (a check beside the record of another query) gets a copy.
    """

    def __init__(self, bits: np.ndarray, limbs: list[np.ndarray], used: int):
        self.bits, self.limbs, self.used = bits, limbs, used

    @classmethod
    def empty(cls, words: int) -> _Rows:
        return cls(np.zeros((0, words), dtype=np.uint64), [np.zeros((0, words))] * 3, 0)

    def appended(self, r: int, bits: np.ndarray, limbs: list[np.ndarray]) -> _Rows:
        """Rows 0..r-1 of these and the given row r (self, grown in place, when it can be)."""
        rows = self
        if self.used != r or r == self.bits.shape[0]:
            size = max(16, 2 * (r + 1))
            rows = _Rows(_grown(self.bits, r, size), [_grown(x, r, size) for x in self.limbs], r)
        rows.bits[r] = bits
        for x, row in zip(rows.limbs, limbs, strict=True):
            x[r] = row
        rows.used = r + 1
        return rows


def _grown(x: np.ndarray, r: int, size: int) -> np.ndarray:
    out = np.empty((size, *x.shape[1:]), dtype=x.dtype)
    out[:r] = x[:r]
    return out


@dataclass(frozen=True)
class _Growth:
    """Set s added to a basis, as the check worked it out, for `_Basis.extend` to apply.

    sums: s's fingerprints (v.a, v.b, v.a per block of 64 people); c = v[P] M;
    q: the new pivot; inv = 1 / v'[q]; label: names the set (see `_Basis.labels`);
    col: R's column q (every old row R_j loses col[j] u); ra, rb, keys: the rows'
    fingerprints and ratios once s is added, the new row u last.
    """

    s: _Set
    sums: tuple
    c: np.ndarray
    q: int
    inv: int
    label: int
    col: np.ndarray
    ra: np.ndarray
    rb: np.ndarray
    keys: np.ndarray


class _Basis:
    """Row-reduced basis R = M W of the answered sets' span over GF(p); never mutated.

    W: the r basis sets (`sets`; `rows` holds their bit rows and block fingerprints),
    in the order they were added;
    M = pad(T) + A @ B: T (r0 x r0) dense, A (r x k) and B (k x r) the k rank-one
    updates not yet folded in; `pivots[j]` is row j's pivot column; `wa`, `wb`
    are W a and W b, `ra`, `rb` are R a and R b (mod p); `labels[j]` names the
    answered set behind W's row j (an entry id; -(k+1) for set k of a query
    under check); `keys[j]` is the ratio (D_j.a)/(D_j.b) of row j's off-pivot
    part D_j = R_j - e_{p_j} (see `QuerySetAudit._ratios`).
    """

    def __init__(
        self, field, n, T, A, B, pivots, pivot_row, rows, sets, wa, wb, ra, rb, labels, keys
    ):
        self.f, self.n = field, n
        self.T, self.A, self.B = T, A, B
        self.pivots, self.pivot_row = pivots, pivot_row
        self.rows, self.sets = rows, sets
        self.wa, self.wb, self.ra, self.rb = wa, wb, ra, rb
        self.labels, self.keys = labels, keys
        self._flat = None

    @property
    def bits(self) -> np.ndarray:
        """W's rows as bit rows (r x words)."""
        return self.rows.bits[: self.rank]

    @property
    def block_limbs(self) -> list[np.ndarray]:
        """The limbs of W's fingerprints over blocks of 64 people (3 of r x words)."""
        return [x[: self.rank] for x in self.rows.limbs]

    @classmethod
    def empty(cls, field: _Field, n: int, words: int) -> _Basis:
        z = np.zeros(0, dtype=np.int64)
        return cls(
            field,
            n,
            np.zeros((0, 0), dtype=np.int64),
            np.zeros((0, 0), dtype=np.int64),
            np.zeros((0, 0), dtype=np.int64),
            z,
            np.full(n, -1, dtype=np.int64),
            _Rows.empty(words),
            (),
            z,
            z,
            z,
            z,
            z,
            z,
        )

    @property
    def rank(self) -> int:
        return self.pivots.size

    @property
    def pending(self) -> int:
        return self.B.shape[0]

    # M's rows, columns and combinations, without forming M
    def row_sum(self, rows: np.ndarray) -> np.ndarray:
        """sum of M's rows `rows` (mod p): the coefficients c = v[P] M of a set v."""
        p, r, r0 = self.f.p, self.rank, self.T.shape[0]
        c = np.zeros(r, dtype=np.int64)
        dense = rows[rows < r0]
        if dense.size:
            c[:r0] = _sum_mod(self.T[dense], p)
        if self.pending and rows.size:
            y = _sum_mod(self.A[rows], p)
            c = (c + _sum_mod(self.f.mul(self.B, y[:, None]), p)) % p
        return c

    def column(self, w: np.ndarray) -> np.ndarray:
        """M @ w for a 0/1 vector w over W's rows (mod p): e.g. R's column q."""
        p, r, r0 = self.f.p, self.rank, self.T.shape[0]
        out = np.zeros(r, dtype=np.int64)
        if r0:
            out[:r0] = _matmul_mod(self.T, w[:r0], p)
        if self.pending:
            y = _matmul_mod(self.B, w, p)
            out = (out + _sum_mod(self.f.mul(self.A, y[None, :]), p, axis=1)) % p
        return out

    def row(self, j: int) -> np.ndarray:
        """M's row j (mod p): row j of R as a combination of W's rows."""
        p, r, r0 = self.f.p, self.rank, self.T.shape[0]
        out = np.zeros(r, dtype=np.int64)
        if j < r0:
            out[:r0] = self.T[j]
        if self.pending:
            out = (out + _sum_mod(self.f.mul(self.B, self.A[j][:, None]), p)) % p
        return out

    def combine(self, coef: np.ndarray) -> np.ndarray:
        """coef @ W (mod p): a combination of the basis sets as a vector over people.

        Used only to confirm a fingerprint match. Two float64 bincounts of the
        coefficients' 25-bit halves stay exact (sums below r * 2**25 < 2**53).
        """
        p = self.f.p
        if self._flat is None:
            sizes = [s.size for s in self.sets]
            idx = np.concatenate(self.sets) if self.sets else np.zeros(0, np.int32)
            rowid = np.repeat(np.arange(len(sizes)), sizes)
            self._flat = (idx, rowid)
        idx, rowid = self._flat
        w = np.asarray(coef, dtype=np.int64)[rowid]
        lo = np.bincount(idx, weights=(w & ((1 << _LIMB) - 1)), minlength=self.n)
        hi = np.bincount(idx, weights=(w >> _LIMB), minlength=self.n)
        hi = self.f.mul(hi.astype(np.int64) % p, (1 << _LIMB) % p)
        return (hi + lo.astype(np.int64)) % p

    def reduced(self, s: _Set, c: np.ndarray) -> np.ndarray:
        """v' = v - c W (mod p), the full reduced vector of set s."""
        v = (-self.combine(c)) % self.f.p
        v[s.idx] = (v[s.idx] + 1) % self.f.p
        return v

    def reduced_at(self, s: _Set, c: np.ndarray, x: int) -> int:
        """v'[x] alone, in O(r)."""
        w = _bit_column(self.bits, x)
        in_v = int((s.bits[x >> 6] >> np.uint64(x & 63)) & np.uint64(1))
        return (in_v - int(_matmul_mod(c, w, self.f.p))) % self.f.p

    def find_pivot(self, s: _Set, c: np.ndarray, s_blocks: np.ndarray) -> tuple[int, int] | None:
        """Some column q with v'[q] != 0, and v'[q]; None if none is found this way.

        The fingerprint v'.a over each block of 64 people is s's own block sum of
        a minus c times the basis sets' block sums. A block where it is non-zero
        holds a non-zero v'[x] for certain, and only that block is formed.
        """
        p = self.f.p
        fp = (s_blocks - self.f.matmul_limbs(self.f.limbs(c[None, :]), self.block_limbs)[0]) % p
        for word in np.flatnonzero(fp)[:1]:
            block = _matmul_mod(c, _bit_columns(self.bits, int(word)), p)
            mine = ((s.bits[word] >> _SHIFTS) & np.uint64(1)).astype(np.int64)
            vx = (mine - block) % p
            nz = np.flatnonzero(vx)
            nz = nz[int(word) * 64 + nz < self.n]
            if nz.size:
                return int(word) * 64 + int(nz[0]), int(vx[nz[0]])
        return None

    def extend(self, g: _Growth) -> _Basis:
        """The basis with set g.s added (pivot g.q; see `_Growth`)."""
        va, vb, s_blocks = g.sums
        f, p, r, k = self.f, self.f.p, self.rank, self.pending
        # u = tau @ [W; v]: the new row, 1 at q and 0 at every old pivot
        tau = np.empty(r + 1, dtype=np.int64)
        tau[:r] = f.mul(-g.c % p, g.inv)
        tau[r] = g.inv
        # every old row R_j loses R_j[q] u: M' = pad(M) + (e_r - pad(col)) tau
        A = np.zeros((r + 1, k + 1), dtype=np.int64)
        A[:r, :k] = self.A
        A[:r, k] = -g.col % p
        A[r, k] = 1
        B = np.zeros((k + 1, r + 1), dtype=np.int64)
        B[:k, :r] = self.B
        B[k] = tau
        pivot_row = self.pivot_row.copy()
        pivot_row[g.q] = r
        grown = _Basis(
            f,
            self.n,
            self.T,
            A,
            B,
            np.append(self.pivots, g.q),
            pivot_row,
            self.rows.appended(r, g.s.bits, [x[0] for x in f.limbs(s_blocks[None, :])]),
            (*self.sets, g.s.idx),
            np.append(self.wa, va),
            np.append(self.wb, vb),
            g.ra,
            g.rb,
            np.append(self.labels, g.label),
            g.keys,
        )
        return grown

    def folded(self) -> _Basis:
        """The same basis with the pending updates folded into T: T + A B, one product."""
        if not self.pending:
            return self
        p, r, r0 = self.f.p, self.rank, self.T.shape[0]
        T = np.zeros((r, r), dtype=np.int64)
        T[:r0, :r0] = self.T
        T = (T + self.f.matmul(self.A, self.B)) % p
        empty = np.zeros((r, 0), dtype=np.int64)
        b = _Basis(
            self.f,
            self.n,
            T,
            empty,
            empty.T.copy(),
            self.pivots,
            self.pivot_row,
            self.rows,
            self.sets,
            self.wa,
            self.wb,
            self.ra,
            self.rb,
            self.labels,
            self.keys,
        )
        b._flat = self._flat
        return b

    def relabelled(self, mapping: dict[int, int]) -> _Basis:
        labels = np.array([mapping.get(int(x), int(x)) for x in self.labels], dtype=np.int64)
        b = _Basis(
            self.f,
            self.n,
            self.T,
            self.A,
            self.B,
            self.pivots,
            self.pivot_row,
            self.rows,
            self.sets,
            self.wa,
            self.wb,
            self.ra,
            self.rb,
            labels,
            self.keys,
        )
        b._flat = self._flat
        return b


# -- the audit ----------------------------------------------------------------------


@dataclass
class _Exposure:
    """A combination of sets, with the set under test, that a rule refuses: one person's
    indicator (RULE_ISOLATING) or a vector of two people (RULE_ISOLATING_PAIR)."""

    coef: np.ndarray  # its coefficients over the basis rows (before the set under test)
    rule: str = RULE_ISOLATING


class QuerySetAudit:
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
            self._basis = basis.folded() if basis.pending >= FOLD_AFTER else basis
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

    def _add_to_span(self, basis: _Basis, s: _Set, label: int):
        """(None, the _Growth adding s), (None, None) if s adds nothing, or (exposure, None)
        if adding s would single out a person or put a new pair of people in the span."""
        f, p = self._field, self._field.p
        sums = self._sums(s)
        va, vb = sums[0], sums[1]
        rows = basis.pivot_row[s.idx]
        c = basis.row_sum(rows[rows >= 0])
        # fingerprints of v' = v - c W
        ha = (va - f.dot(c, basis.wa)) % p
        hb = (vb - f.dot(c, basis.wb)) % p
        if ha == 0 and hb == 0:
            # v' = 0: s is a combination of answered sets and tells nothing new. Both
            # fingerprints of a non-zero v' vanish with probability below 2**-80 (a and
            # b are secret, independent and uniform over 2**40 values each), so the
            # n-long v' is not formed to make sure
            return None, None
        full = None
        # v' a single person? then (v'.a) b_x = (v'.b) a_x at that x, exactly
        maybe = np.flatnonzero(f.mul(self._hb, ha) == f.mul(self._ha, hb))
        if maybe.size:
            full = basis.reduced(s, c)
            if np.count_nonzero(full) == 1:
                return _Exposure(c), None  # v' = v - c W
        if full is not None:
            q = int(np.flatnonzero(full)[0])
            vq = int(full[q])
        else:
            found = basis.find_pivot(s, c, sums[2])
            if found is None:
                full = basis.reduced(s, c)
                q = int(np.flatnonzero(full)[0])
                vq = int(full[q])
            else:
                q, vq = found
        inv = f.inv(vq)
        ua, ub = ha * inv % p, hb * inv % p
        # a row whose off-pivot part D_j is a multiple of u becomes e_{p_j}
        if basis.rank:
            da = (basis.ra - self._ha[basis.pivots]) % p
            db = (basis.rb - self._hb[basis.pivots]) % p
            for j in np.flatnonzero(f.mul(da, ub) == f.mul(db, ua)):
                exposure = self._confirm_row(basis, s, c, int(j), q, inv, full)
                if exposure is not None:
                    return exposure, None
        growth = self._grow(basis, s, sums, c, q, inv, label)
        exposure = self._new_pair(basis, growth)
        if exposure is not None:
            return exposure, None
        return None, growth

    def _grow(self, basis: _Basis, s: _Set, sums, c, q: int, inv: int, label: int) -> _Growth:
        """What adding s with pivot q does to the rows' fingerprints and ratios."""
        f, p, r = self._field, self._field.p, basis.rank
        col = basis.column(_bit_column(basis.bits, q))
        ua = (sums[0] - f.dot(c, basis.wa)) % p * inv % p
        ub = (sums[1] - f.dot(c, basis.wb)) % p * inv % p
        ra = np.append((basis.ra - f.mul(col, ua)) % p, ua)
        rb = np.append((basis.rb - f.mul(col, ub)) % p, ub)
        # only the rows that lose a multiple of u, and u, have a new off-pivot part
        changed = np.append(np.flatnonzero(col), r)
        pivots = np.append(basis.pivots, q)[changed]
        keys = np.append(basis.keys, 0)
        keys[changed] = self._ratios(
            (ra[changed] - self._ha[pivots]) % p, (rb[changed] - self._hb[pivots]) % p
        )
        return _Growth(s, sums, c, q, inv, label, col, ra, rb, keys)

    def _ratios(self, da: np.ndarray, db: np.ndarray) -> np.ndarray:
        """da / db mod p: equal for two vectors whose fingerprints (D.a, D.b) are proportional,
        as are those of proportional vectors, exactly. p stands for db = 0 (an infinite ratio),
        -1 for da = db = 0 (no ratio; for a non-zero D, probability below 2**-80)."""
        f, p = self._field, self._field.p
        out = np.full(da.size, -1, dtype=np.int64)
        finite = db != 0
        out[finite] = f.mul(da[finite], f.inv_many(db[finite]))
        out[~finite & (da != 0)] = p
        return out

    def _new_pair(self, basis: _Basis, g: _Growth) -> _Exposure | None:
        """A vector of support 2 that adding g.s puts in the span, confirmed in full, or None.

        Rows R'_j of the grown basis, off-pivot parts D'_j, ratios g.keys. A vector of
        the span is x = sum_j x[p_j] R'_j; two non-zero pivot values need
        a D'_j + b D'_k = 0, one needs D'_j a single entry. So the candidates are a
        row whose ratio is some person's a_x / b_x and two rows of equal ratio, at
        least one of which changed (`_pair_candidates`).
        """
        f, p, r = self._field, self._field.p, basis.rank
        for j, k, lam in self._pair_candidates(basis, g):
            coef = self._grown_row(basis, g, j)
            if k >= 0:
                coef = (coef - f.mul(self._grown_row(basis, g, k), lam)) % p
            x = basis.combine(coef[:r])
            x[g.s.idx] = (x[g.s.idx] + coef[r]) % p
            if np.count_nonzero(x) == 2:
                return _Exposure(coef[:r], RULE_ISOLATING_PAIR)
        return None

    def _grown_row(self, basis: _Basis, g: _Growth, j: int) -> np.ndarray:
        """Row j of the grown basis (u for j = r) over W's rows and then v:
        R'_j = R_j - col_j u with u = inv (v - c W)."""
        f, p, r = self._field, self._field.p, basis.rank
        out = np.empty(r + 1, dtype=np.int64)
        if j == r:
            out[:r] = f.mul(-g.c % p, g.inv)
            out[r] = g.inv
        else:
            lam = int(g.col[j]) * g.inv % p
            out[:r] = (basis.row(j) + f.mul(g.c, lam)) % p
            out[r] = -lam % p
        return out

    def _pair_candidates(self, basis: _Basis, g: _Growth):
        """(j, -1, 0) for a row R'_j that may have support 2, (j, k, lam) for two rows with
        D'_j = lam D'_k, as the fingerprints say; lazily, as the first is usually the one.

        A vector x was in the span before (a history kept before this rule may hold
        pairs) iff x[q] = sum_j x[p_j] col[j], its old reduced form: iff its
        coefficients over the rows R' (u last) are orthogonal to (col, -1). Such
        pairs are not refused again; a changed row alone never was in the span.
        """
        f, p = self._field, self._field.p
        col = np.append(g.col, p - 1)
        changed = col != 0
        keys = g.keys
        rows = np.flatnonzero(changed & (keys >= 0))
        person = self._person_keys
        at = np.minimum(np.searchsorted(person, keys[rows]), person.size - 1)
        for j in rows[person[at] == keys[rows]]:
            yield int(j), -1, 0
        ordered = np.sort(keys)
        tied = ordered[1:][(ordered[1:] == ordered[:-1]) & (ordered[1:] >= 0)]
        if not tied.size:
            return
        pivots = np.append(basis.pivots, g.q)
        for value in np.unique(tied):
            group = np.flatnonzero(keys == value)
            # D'.a, or D'.b where every D'.a of the group is 0 (ratio 0)
            fp, h = (g.ra, self._ha) if value else (g.rb, self._hb)
            d = (fp[group] - h[pivots[group]]) % p
            # lam = d_j / d_k; x = R'_j - lam R'_k is new iff col_j - lam col_k != 0
            c = col[group]
            new = (f.mul(c[:, None], d[None, :]) - f.mul(d[:, None], c[None, :])) % p != 0
            new &= changed[group][:, None] | changed[group][None, :]
            for a, b in zip(*np.nonzero(np.triu(new, 1)), strict=True):
                j, k = int(group[a]), int(group[b])
                yield j, k, int(d[a]) * f.inv(int(d[b])) % p

    def _sums(self, s: _Set) -> tuple[int, int, np.ndarray]:
        """Fingerprints of set s: v.a, v.b, and v.a over each block of 64 people (mod p)."""
        p = self._field.p
        weights = self._ha[s.idx]
        # sums of at most 64 values below 2**40: exact in float64
        blocks = np.bincount(s.idx >> 6, weights=weights, minlength=self._words)
        return (
            int(weights.sum()) % p,
            int(self._hb[s.idx].sum()) % p,
            blocks.astype(np.int64) % p,
        )

    def _confirm_row(self, basis, s, c, j, q, inv, full) -> _Exposure | None:
        """Whether R_j - R_j[q] u is exactly e_{p_j} (a fingerprint match, checked in full)."""
        f, p = self._field, self._field.p
        mj = basis.row(j)
        rj = basis.combine(mj)
        full = basis.reduced(s, c) if full is None else full
        lam = int(rj[q])
        d = rj.copy()
        d[basis.pivots[j]] = (d[basis.pivots[j]] - 1) % p
        if np.any((d - f.mul(full, lam * inv % p)) % p):
            return None
        # e_{p_j} = R_j - lam u, u = (v - c W) inv: coefficients over W's rows
        coef = (mj + f.mul(c, lam * inv % p)) % p
        return _Exposure(coef)

    # -- persistence ----------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The history, compressed: the sets, their answers, the basis's order and pivots.

        The basis's matrix is rebuilt on load (O(r^3) in all); the secret prime
        and fingerprint seed are in it, so the bytes stay at the site.
        """
        with self._lock:
            basis = self._basis
            blobs, entries = [], []
            for idx, answers in zip(self._entries, self._answers, strict=True):
                blob, encoding = _encode_set(idx, self.n)
                blobs.append(blob)
                entries.append(
                    {
                        "size": int(idx.size),
                        "encoding": encoding,
                        "bytes": len(blob),
                        "answers": [m.to_json() for m in answers],
                    }
                )
            header = {
                "format": "visiting-query-set-audit",
                "version": _FORMAT_VERSION,
                "people": self.n,
                "min_count": self.min_count,
                "prime": self._field.p,
                "seed": self._seed,
                "entries": entries,
                "basis": [int(x) for x in basis.labels],
                "pivots": [int(x) for x in basis.pivots],
            }
            head = json.dumps(header, separators=(",", ":")).encode()
            body = struct.pack("<I", len(head)) + head + b"".join(blobs)
            return _MAGIC + zlib.compress(body, 6)

    @classmethod
    def from_bytes(cls, data: bytes) -> QuerySetAudit:
        """An audit from `to_bytes`; raises ValueError for anything else or anything damaged."""
        if not data.startswith(_MAGIC):
            raise ValueError("not a query-set audit history")
        try:
            body = zlib.decompress(data[len(_MAGIC) :])
            (size,) = struct.unpack_from("<I", body)
            header = json.loads(body[4 : 4 + size])
        except (zlib.error, struct.error, ValueError) as e:
            raise ValueError(f"damaged query-set audit history: {e}") from None
        if header.get("format") != "visiting-query-set-audit" or header.get("version") != 1:
            raise ValueError("unknown query-set audit history format")
        audit = cls(
            header["people"], header["min_count"], prime=header["prime"], seed=header["seed"]
        )
        pos = 4 + size
        for entry in header["entries"]:
            blob = body[pos : pos + entry["bytes"]]
            pos += entry["bytes"]
            idx = _decode_set(blob, entry["encoding"], audit.n)
            if idx.size != entry["size"]:
                raise ValueError("damaged query-set audit history: a set's size")
            e = audit._add_entry(_as_set(idx, audit.n, audit._words))
            audit._answers[e] = [QueryMeta.from_json(m) for m in entry["answers"]]
        audit._basis = audit._replay(header["basis"], header["pivots"])
        return audit

    def _replay(self, labels: list[int], pivots: list[int]) -> _Basis:
        """The basis rebuilt from its sets in their order and their pivots (no checks)."""
        if len(labels) != len(pivots) or len(set(pivots)) != len(pivots):
            raise ValueError("damaged query-set audit history: the basis")
        f = self._field
        basis = _Basis.empty(f, self.n, self._words)
        for e, q in zip(labels, pivots, strict=True):
            if not (0 <= e < len(self._entries) and 0 <= q < self.n):
                raise ValueError("damaged query-set audit history: the basis")
            s = _as_set(self._entries[e], self.n, self._words)
            rows = basis.pivot_row[s.idx]
            c = basis.row_sum(rows[rows >= 0])
            vq = basis.reduced_at(s, c, q)
            if vq == 0:
                raise ValueError("damaged query-set audit history: a pivot")
            basis = basis.extend(self._grow(basis, s, self._sums(s), c, q, f.inv(vq), e))
            if basis.pending >= FOLD_AFTER:
                basis = basis.folded()
        return basis.folded()

    def save(self, path: str | os.PathLike) -> None:
        """Write the history to `path` atomically (a temporary file renamed over it), mode 0600."""
        write_atomically(path, self.to_bytes())

    @classmethod
    def load(cls, path: str | os.PathLike) -> QuerySetAudit:
        return cls.from_bytes(Path(path).read_bytes())


def write_atomically(path: str | os.PathLike, data: bytes) -> None:
    """`data` in `path`, whole or not at all: a temporary file (mode 0600) renamed over it,
    the file and its folder synced."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _encode_set(idx: np.ndarray, n: int) -> tuple[bytes, str]:
    """The smaller of sorted indices (uint16 or uint32) and a bit mask."""
    dtype, name = (np.uint16, "u16") if n <= 1 << 16 else (np.uint32, "u32")
    as_idx = idx.astype(dtype).tobytes()
    mask = np.zeros(n, dtype=bool)
    mask[idx] = True
    as_bits = np.packbits(mask, bitorder="little").tobytes()
    return (as_idx, name) if len(as_idx) <= len(as_bits) else (as_bits, "bits")


def _decode_set(blob: bytes, encoding: str, n: int) -> np.ndarray:
    if encoding == "u16":
        idx = np.frombuffer(blob, dtype=np.uint16)
    elif encoding == "u32":
        idx = np.frombuffer(blob, dtype=np.uint32)
    elif encoding == "bits":
        bits = np.unpackbits(np.frombuffer(blob, dtype=np.uint8), bitorder="little")
        if bits.size < n or bits[n:].any():
            raise ValueError("damaged query-set audit history: a set's bits")
        idx = np.flatnonzero(bits[:n])
    else:
        raise ValueError(f"damaged query-set audit history: encoding {encoding!r}")
    idx = idx.astype(np.int64)
    if idx.size and (idx[-1] >= n or np.any(np.diff(idx) <= 0)):
        raise ValueError("damaged query-set audit history: a set's people")
    return idx
