"""Arithmetic in GF(p), p < 2**50, on int64 numpy arrays, and the drawing of p.

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

"""

from __future__ import annotations

import secrets

import numpy as np

#: the prime is drawn from [2**(PRIME_BITS-1), 2**PRIME_BITS)
PRIME_BITS = 50
#: rows of int64 residues (< 2**50) that can be added without overflow
_SUM_CHUNK = 8191
_LIMB17 = 17


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
