"""How a set is added to the span of the answered sets, and what refuses it.

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

"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .basis import _Basis, _Growth
from .sets import _bit_column, _Set
from .verdict import RULE_ISOLATING, RULE_ISOLATING_PAIR


@dataclass
class _Exposure:
    """A combination of sets, with the set under test, that a rule refuses: one person's
    indicator (RULE_ISOLATING) or a vector of two people (RULE_ISOLATING_PAIR)."""

    coef: np.ndarray  # its coefficients over the basis rows (before the set under test)
    rule: str = RULE_ISOLATING


class _Span:
    """The span's growth, for `QuerySetAudit`: adding a set to a basis, or the exposure that
    refuses it. Reads the audit's `_field`, its secret fingerprint weights `_ha` and `_hb`,
    the people's ratios `_person_keys` and `_words`, the number of 64-bit words a set holds.
    """

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
