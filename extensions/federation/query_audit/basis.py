"""The row-reduced basis R = M W of the answered sets' span over GF(p), never mutated,
and the row-aligned arrays its versions share (see `span` for how it is kept)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .field import _Field, _matmul_mod, _sum_mod
from .sets import _SHIFTS, _bit_column, _bit_columns, _Set

#: pending rank-one updates of M folded into its dense part once there are this many
FOLD_AFTER = 16
_LIMB = 25


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

    def settled(self) -> _Basis:
        """The basis, folded once FOLD_AFTER updates are pending, else as it is."""
        return self.folded() if self.pending >= FOLD_AFTER else self

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
