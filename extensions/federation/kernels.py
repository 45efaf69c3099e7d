# Over 500 lines on purpose: the fused kernels share private block helpers and the tuning
# constants that tests and benchmarks patch on this module (CACHE_VALUES, CLASS_FRACTION).
"""Per-site halves as fused kernels on the integer genotype codes of one chunk of calls.

A site's calls are a (variants, samples, ploidy) int8 array (VCF Zarr,
bio2zarr layout): allele indices, -1 missing, -2 the fill of a call of lower
ploidy. Every Dask site half needs, per variant, a few sums over people of
the alternate-allele dosage x of each call, defined as in
`cohorts.ZarrCohort.dosage`: a call is missing when any allele is -1, and x
counts its alleles > 0 (every ALT of a multi-allelic site; a haploid call
(1, -2) is x = 1). The kernels compute those sums from the int8 calls
directly, with no float64 dosage matrix and no reduction over the ploidy axis:

- `genotype_codes`: the two int8 alleles of a diploid call read as one uint16
  and mapped through a 64 KiB table (`PAIR_CODES`, built from the definition
  above over all 65,536 pairs) to one uint8 per call: x when called,
  `MISSING` otherwise. One gather a call;
- who is summed over (a query's `where`, strata, a model's complete cases) is
  an index mask over the columns, applied to the 2-byte calls before that
  gather; strata are runs of columns (people ordered by stratum) summed by
  `np.add.reduceat`;
- the counts (AC, n_called, n_obs, sum x, sum x^2) are integer sums, exact;
- the linear GWAS's weighted sums are one matrix product per cache-sized
  block of variants, X @ [1, y, Z] (X the dosages with missing as 0), and the
  sums over the few missing calls (M @ [1, y, Z]) are gathered from their
  positions;
- a logistic Newton step's score and information, with people ordered by
  phenotype and covariates, are sums over (class, dosage) of counts times the
  summand (a few dozen classes, four dosages), not over people;
- `reduce_chunks` runs a kernel as one Dask task per chunk of calls on the
  site's workers; a task returns per-variant sums only, so the bytes leaving a
  worker grow with variants, not with people.

A kernel is a function `kernel(codes, *column_args, *row_args) -> {name: array}`
over the uint8 codes of a chunk (its selected variants x its selected people),
the per-person arrays of those people and the per-variant arrays of those
variants; every array it returns has the chunk's variants on its first axis
and is a sum over the chunk's people (so the sums of the chunks of people add up).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

MISSING = 255  # the code of a missing call; any other code is the call's dosage x
CACHE_VALUES = 1 << 17  # float64 values per block of a kernel's temporaries (1 MiB: in L2)
GATHER_VALUES = 1 << 16  # calls per block of the table gather (its intp indices: 512 KiB)

Kernel = Callable[..., dict[str, np.ndarray]]


# ---------------------------------------------------------------------------
# calls to codes


def codes_of(calls: np.ndarray) -> np.ndarray:
    """uint8 code of each call of an int8 (..., ploidy) array: x, or MISSING (the definition)."""
    calls = np.asarray(calls)
    missing = (calls == -1).any(axis=-1)
    x = (calls > 0).sum(axis=-1)
    return np.where(missing, MISSING, np.minimum(x, MISSING - 1)).astype(np.uint8)


def _table(ploidy: int) -> np.ndarray:
    """The code of every int8 call of `ploidy` alleles, indexed by its bytes as one integer."""
    words = np.arange(1 << (8 * ploidy), dtype=np.uint16 if ploidy == 2 else np.uint8)
    return codes_of(words.view(np.int8).reshape(-1, ploidy))


PAIR_CODES = _table(2)  # uint16 view of a diploid call -> code (64 KiB)
SINGLE_CODES = _table(1)  # uint8 view of a haploid call -> code


def genotype_codes(
    calls: np.ndarray, rows: np.ndarray | None = None, columns: np.ndarray | None = None
) -> np.ndarray:
    """The (variants x people) uint8 codes of a chunk of int8 (variants, samples, ploidy) calls.

    rows, columns: integer positions of the variants and people to keep, in
    the order wanted (None: all). Diploid and haploid int8 calls take one
    table gather each; other ploidies and wider integers the definition in
    `codes_of`.
    """
    calls = np.asarray(calls)
    if rows is not None:
        calls = calls[rows]
    v, n, ploidy = calls.shape
    if ploidy not in (1, 2) or calls.dtype != np.int8:  # int16 when a site has > 127 alleles
        if columns is not None:
            calls = calls[:, columns]
        return codes_of(calls)
    table = PAIR_CODES if ploidy == 2 else SINGLE_CODES
    words = np.ascontiguousarray(calls).view(np.uint16 if ploidy == 2 else np.uint8)
    words = words.reshape(v, n)
    m = n if columns is None else len(columns)
    codes = np.empty((v, m), dtype=np.uint8)
    # a block of rows at a time: np.take widens the words to intp, best done in cache
    for part in _blocks(v, m, GATHER_VALUES):
        block = words[part] if columns is None else np.take(words[part], columns, axis=1)
        # every word indexes the table (one entry per word): no bounds check needed
        np.take(table, block, mode="wrap", out=codes[part])
    return codes


def codes_from_dosage(dosage: np.ndarray) -> np.ndarray:
    """The codes of float dosages (NaN missing), for a cohort held as dosages."""
    dosage = np.asarray(dosage, dtype=np.float64)
    return np.where(np.isnan(dosage), MISSING, dosage).astype(np.uint8)


def _blocks(n_rows: int, n_columns: int, values: int) -> Iterable[slice]:
    step = max(1, values // max(1, n_columns))
    return (slice(lo, min(lo + step, n_rows)) for lo in range(0, n_rows, step))


def row_blocks(n_rows: int, n_columns: int) -> Iterable[slice]:
    """Slices of rows whose float64 temporaries over `n_columns` stay near CACHE_VALUES."""
    return _blocks(n_rows, n_columns, CACHE_VALUES)


def _missing_calls(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of every missing call: few, so sums over them are taken from positions."""
    at = np.flatnonzero(codes == MISSING)
    return np.divmod(at, codes.shape[1]) if codes.shape[1] else (at, at)


def _sum_codes(codes: np.ndarray, starts: np.ndarray | None = None) -> np.ndarray:
    """Sums of the codes along rows (or over runs of columns from `starts`), as integers."""
    dtype = np.uint32 if codes.shape[1] * MISSING < 1 << 32 else np.uint64
    if starts is None:
        return codes.sum(axis=1, dtype=dtype)
    return np.add.reduceat(codes, starts, axis=1, dtype=dtype)


# ---------------------------------------------------------------------------
# kernels


def allele_counts(codes: np.ndarray, strata: np.ndarray, n_strata: int) -> dict[str, np.ndarray]:
    """Per variant and stratum: `ac` (sum of x over called genotypes) and `n_called`.

    strata: the stratum (0 .. n_strata - 1) of each column; columns grouped by
    stratum take no reordering. Exact integers, as float64 (variants, n_strata).
    """
    v, m = codes.shape
    strata = np.asarray(strata, dtype=np.int64)
    ac = np.zeros((v, n_strata))
    n_called = np.zeros((v, n_strata))
    if v == 0 or m == 0:
        return {"ac": ac, "n_called": n_called}
    if (strata[1:] < strata[:-1]).any():
        order = np.argsort(strata, kind="stable")
        codes, strata = codes[:, order], strata[order]
    starts = np.flatnonzero(np.r_[True, strata[1:] != strata[:-1]])
    # a stratum's sum of codes is its AC plus MISSING for each of its missing calls
    ac[:, strata[starts]] = _sum_codes(codes, starts)
    row, col = _missing_calls(codes)
    n_missing = np.bincount(row * n_strata + strata[col], minlength=v * n_strata)
    n_missing = n_missing.reshape(v, n_strata)
    ac -= MISSING * n_missing
    n_called[:] = np.bincount(strata, minlength=n_strata) - n_missing
    return {"ac": ac, "n_called": n_called}


def dosage_counts(codes: np.ndarray) -> dict[str, np.ndarray]:
    """Per variant: `n_obs` (called genotypes) and `sum_x`, exact integers as float64."""
    v, m = codes.shape
    row, _ = _missing_calls(codes)
    n_missing = np.bincount(row, minlength=v)
    total = _sum_codes(codes).astype(np.int64)
    return {
        "n_obs": (m - n_missing).astype(np.float64),
        "sum_x": (total - MISSING * n_missing).astype(np.float64),
    }


def _dosage_block(codes: np.ndarray, row: np.ndarray, col: np.ndarray, fill) -> np.ndarray:
    """float64 x of a block of codes, `fill` (a number, or one per row) at its missing calls."""
    x = codes.astype(np.float64)
    x[row, col] = fill if np.ndim(fill) == 0 else fill[row]
    return x


def linear_sums(codes: np.ndarray, y: np.ndarray, Z: np.ndarray) -> dict[str, np.ndarray]:
    """The linear GWAS's per-variant sums (`regression.genotype_sums`) from codes.

    y (m,), Z (m, p): the phenotype and covariates of the codes' columns.
    n_obs, sum_x, sum_xx exact; sum_xy, sum_xz (p) from one product per block
    X @ [1, y, Z]; miss_y, miss_z (p) over the missing calls, from their positions.
    """
    v, m = codes.shape
    y = np.asarray(y, dtype=np.float64)
    Z = np.asarray(Z, dtype=np.float64)
    p = Z.shape[1]
    design = np.empty((m, 2 + p))
    design[:, 0] = 1.0
    design[:, 1] = y
    design[:, 2:] = Z
    out = {
        "n_obs": np.zeros(v),
        "sum_x": np.zeros(v),
        "sum_xx": np.zeros(v),
        "sum_xy": np.zeros(v),
        "sum_xz": np.zeros((v, p)),
        "miss_y": np.zeros(v),
        "miss_z": np.zeros((v, p)),
    }
    if v == 0 or m == 0:
        return out
    for rows in row_blocks(v, m):
        block = codes[rows]
        b = block.shape[0]
        row, col = _missing_calls(block)
        x = _dosage_block(block, row, col, 0.0)
        product = x @ design
        out["sum_x"][rows] = product[:, 0]
        out["sum_xy"][rows] = product[:, 1]
        out["sum_xz"][rows] = product[:, 2:]
        out["sum_xx"][rows] = np.einsum("ij,ij->i", x, x)
        n_missing = np.bincount(row, minlength=b)
        out["n_obs"][rows] = m - n_missing
        out["miss_y"][rows] = np.bincount(row, weights=y[col], minlength=b)
        for k in range(p):
            out["miss_z"][rows, k] = np.bincount(row, weights=Z[col, k], minlength=b)
    return out


def _score_fisher_of_sums(r, rZ, rx, w, wZ, wZZ, wx, wxZ, wxx):
    """score [1, Z, x]'r and fisher [1, Z, x]'W[1, Z, x] from their per-variant parts."""
    B, p = rZ.shape
    d = p + 2
    score = np.empty((B, d))
    score[:, 0], score[:, 1 : p + 1], score[:, p + 1] = r, rZ, rx
    fisher = np.empty((B, d, d))
    fisher[:, 0, 0] = w
    fisher[:, 0, p + 1] = fisher[:, p + 1, 0] = wx
    fisher[:, p + 1, p + 1] = wxx
    if p:
        fisher[:, 1 : p + 1, 1 : p + 1] = wZZ
        fisher[:, 0, 1 : p + 1] = fisher[:, 1 : p + 1, 0] = wZ
        fisher[:, p + 1, 1 : p + 1] = fisher[:, 1 : p + 1, p + 1] = wxZ
    return score, fisher


def _outer_rows(Z: np.ndarray) -> np.ndarray:
    """(n, p*p): each row's z z' flattened."""
    n, p = Z.shape
    return (Z[:, :, None] * Z[:, None, :]).reshape(n, p * p)


def dosage_score_fisher(x: np.ndarray, y: np.ndarray, Z: np.ndarray, b_local: np.ndarray):
    """The logistic model's per-variant score and information at each variant's coefficients.

    x (B, n) imputed dosages; y (n,), Z (n, p); b_local (B, p+2) as
    [b_site, b_Z..., b_x]. Returns score (B, p+2), fisher (B, p+2, p+2) in the
    local layout [1, Z..., x], and per variant sum w and sum w^2 (w = mu(1-mu)).
    """
    p = Z.shape[1]
    B = x.shape[0]
    # eta, then mu = 1 / (1 + exp(-eta)) in place (the same operations as regression.sigmoid)
    mu = b_local[:, 1 : p + 1] @ Z.T
    mu += b_local[:, :1]
    mu += b_local[:, p + 1 :] * x
    np.negative(mu, out=mu)
    with np.errstate(over="ignore"):
        np.exp(mu, out=mu)
    mu += 1.0
    np.reciprocal(mu, out=mu)
    w = mu * (1.0 - mu)
    r = np.subtract(y[None, :], mu, out=mu)  # mu is not needed after w
    r_sums = (r.sum(axis=1), r @ Z, np.einsum("ij,ij->i", r, x))
    wx = np.multiply(w, x, out=r)  # nor r after its sums
    score, fisher = _score_fisher_of_sums(
        *r_sums,
        w.sum(axis=1),
        w @ Z,
        (w @ _outer_rows(Z)).reshape(B, p, p),
        wx.sum(axis=1),
        wx @ Z,
        np.einsum("ij,ij->i", wx, x),
    )
    return score, fisher, w.sum(axis=1), np.einsum("ij,ij->i", w, w)


def person_classes(y: np.ndarray, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Runs of consecutive people with the same (y, z): their first columns and [y, z] values.

    With binary y and coded covariates (sex, age decade) people ordered by
    (y, z) make a few dozen runs, whatever their number.
    """
    keys = np.column_stack([y, Z])
    if not len(keys):
        return np.zeros(0, dtype=np.int64), keys
    starts = np.flatnonzero(np.r_[True, (keys[1:] != keys[:-1]).any(axis=1)])
    return starts, keys[starts]


def _class_counts(block, row, col, starts) -> np.ndarray:
    """(B, classes, top + 2): people of each class with dosage 0 .. top, then missing."""
    B, m = block.shape
    K = starts.size
    called = block.copy()
    called[row, col] = 0
    top = int(called.max(initial=0))
    n = np.empty((B, K, top + 2))
    for rows in _blocks(B, m, GATHER_VALUES):  # passes over cache-sized blocks
        for c in range(1, top + 1):
            n[rows, :, c] = np.add.reduceat(called[rows] == c, starts, axis=1, dtype=np.uint32)
    run = np.searchsorted(starts, col, side="right") - 1
    n[:, :, top + 1] = np.bincount(row * K + run, minlength=B * K).reshape(B, K)
    n[:, :, 0] = np.diff(np.r_[starts, m]) - n[:, :, 1:].sum(axis=2)
    return n


def _class_score_fisher(block, row, col, starts, values, b_local, mean):
    """`score_fisher`'s sums of a block of codes from counts of people by (class, dosage).

    Within a class (a run of people with one y and z) the summands depend on
    x only, which takes a few values (0, 1, 2 and the imputation mean), so the
    sums over people are sums over (class, x) of counts times the summand.
    """
    B, m = block.shape
    y, Z = values[:, 0], values[:, 1:]
    p = Z.shape[1]
    n = _class_counts(block, row, col, starts)
    top = n.shape[2] - 2
    levels = np.empty((B, top + 2))  # x of each level: 0 .. top, then the imputed mean
    levels[:, : top + 1] = np.arange(top + 1)
    levels[:, top + 1] = mean
    # eta as the per-person path forms it: (b_Z z + b_site) + b_x x
    mu = b_local[:, 1 : p + 1] @ Z.T
    mu += b_local[:, :1]
    mu = mu[:, :, None] + b_local[:, p + 1 :, None] * levels[:, None, :]
    with np.errstate(over="ignore"):
        mu = 1.0 / (1.0 + np.exp(-mu))
    w = mu * (1.0 - mu)
    nr = n * (y[None, :, None] - mu)
    nw = n * w
    r_k, w_k = nr.sum(axis=2), nw.sum(axis=2)
    wx_k = np.einsum("bkl,bl->bk", nw, levels)
    score, fisher = _score_fisher_of_sums(
        r_k.sum(axis=1),
        r_k @ Z,
        np.einsum("bkl,bl->b", nr, levels),
        w_k.sum(axis=1),
        w_k @ Z,
        (w_k @ _outer_rows(Z)).reshape(B, p, p),
        wx_k.sum(axis=1),
        wx_k @ Z,
        np.einsum("bkl,bl->b", nw, levels * levels),
    )
    by_dosage = n[:, :, : top + 1].sum(axis=1)
    return {
        "score": score,
        "fisher": fisher,
        "sum_w": w_k.sum(axis=1),
        "sum_w2": np.einsum("bkl,bkl->b", nw, w),
        "n_obs": m - n[:, :, top + 1].sum(axis=1),
        "sum_x": by_dosage @ np.arange(top + 1.0),
    }


def _person_score_fisher(block, row, col, y, Z, b_local, mean):
    """`score_fisher`'s sums of a block of codes, every person's summand formed."""
    x = _dosage_block(block, row, col, mean)
    score, fisher, sum_w, sum_w2 = dosage_score_fisher(x, y, Z, b_local)
    return {
        "score": score,
        "fisher": fisher,
        "sum_w": sum_w,
        "sum_w2": sum_w2,
        **dosage_counts(block),
    }


CLASS_FRACTION = 8  # counting by class when the people make at most 1/8 as many classes


def score_fisher(
    codes: np.ndarray, y: np.ndarray, Z: np.ndarray, b_local: np.ndarray, mean: np.ndarray
) -> dict[str, np.ndarray]:
    """A logistic Newton step's per-variant sums from codes, a block of variants at a time.

    y, Z: the columns' phenotype and covariates; b_local (v, p+2), mean (v,):
    each variant's coefficients and imputation mean. Returns score, fisher,
    sum_w, sum_w2 (`dosage_score_fisher`) and n_obs, sum_x (exact). People
    ordered by (y, z) (see `person_classes`) are counted by class and dosage;
    otherwise every person's summand is formed.
    """
    v, m = codes.shape
    y = np.asarray(y, dtype=np.float64)
    Z = np.asarray(Z, dtype=np.float64)
    d = Z.shape[1] + 2
    out = {
        "score": np.zeros((v, d)),
        "fisher": np.zeros((v, d, d)),
        "sum_w": np.zeros(v),
        "sum_w2": np.zeros(v),
        **dosage_counts(codes[:, :0]),
    }
    if v == 0 or m == 0:
        return out
    starts, values = person_classes(y, Z)
    by_class = starts.size * CLASS_FRACTION <= m
    # by class, the float64 temporaries are (variants, classes, dosages): longer blocks
    blocks = _blocks(v, 8 * starts.size, CACHE_VALUES) if by_class else row_blocks(v, m)
    for rows in blocks:
        block = codes[rows]
        row, col = _missing_calls(block)
        b = np.asarray(b_local[rows], dtype=np.float64)
        mu = np.asarray(mean[rows], dtype=np.float64)
        if by_class:
            sums = _class_score_fisher(block, row, col, starts, values, b, mu)
        else:
            sums = _person_score_fisher(block, row, col, y, Z, b, mu)
        for k, a in sums.items():
            out[k][rows] = a
    return out


# ---------------------------------------------------------------------------
# running a kernel over a site's calls


#: the largest flat index of a `Sparse` held as int32 (larger arrays index with int64)
COMPACT_MAX = 2**31 - 1


@dataclass(frozen=True)
class Sparse:
    """A float64 array of mostly zeros as it travels from a worker: the positions (in the
    flattened array) and values of its non-zeros; exact."""

    shape: tuple[int, ...]
    at: np.ndarray
    values: np.ndarray

    @property
    def nbytes(self) -> int:
        return self.at.nbytes + self.values.nbytes

    def dense(self) -> np.ndarray:
        a = np.zeros(self.shape, dtype=self.values.dtype)
        a.flat[self.at] = self.values
        return a


#: a float array travels as `Sparse` when at most this share of it is non-zero (sums over
#: the few missing calls) and it is large enough to matter
SPARSE_SHARE = 0.25
SPARSE_MIN = 1024


#: the integer types counts travel as, narrowest first (unsigned for counts, which are >= 0)
COUNT_TYPES = (np.uint8, np.uint16, np.int32)


def _narrowest(a: np.ndarray) -> np.ndarray | None:
    """Whole numbers (integers, or float64 holding only them) as the narrowest of COUNT_TYPES
    that holds them all; None when none does (or they are not whole numbers)."""
    if not a.size:
        return None
    if a.dtype == np.float64:
        if not np.isfinite(a).all() or not np.array_equal(a, np.rint(a)):
            return None
    elif a.dtype.kind not in "iu":
        return None
    lo, hi = a.min(), a.max()
    for dtype in COUNT_TYPES:
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return a.astype(dtype)
    return None


def compact(sums: dict[str, np.ndarray]) -> dict[str, np.ndarray | Sparse]:
    """The sums a worker sends back, exact and fewer bytes: whole numbers (counts, float64
    or integer) as the narrowest integers that hold them, float arrays of mostly zeros as
    `Sparse`; `widen` turns them back into float64 where they arrive."""
    out = {}
    for k, a in sums.items():
        narrow = _narrowest(a)
        if narrow is not None:
            a = narrow
        elif a.dtype == np.float64 and a.size >= SPARSE_MIN:
            at = np.flatnonzero(a)
            if at.size <= SPARSE_SHARE * a.size:
                index = np.int32 if a.size <= COMPACT_MAX else np.int64
                a = Sparse(a.shape, at.astype(index), a.flat[at])
        out[k] = a
    return out


def widen(sums: dict[str, np.ndarray | Sparse]) -> dict[str, np.ndarray]:
    out = {}
    for k, a in sums.items():
        if isinstance(a, Sparse):
            a = a.dense()
        elif a.dtype.kind in "iu":
            a = a.astype(np.float64)
        out[k] = a
    return out


def score_fisher_upper(codes, y, Z, b_local, mean) -> dict[str, np.ndarray]:
    """`score_fisher` with the information matrix as its upper triangle (`fisher_upper`, row
    by row): it is symmetric, so a worker sends d(d+1)/2 numbers a variant, not d^2."""
    out = score_fisher(codes, y, Z, b_local, mean)
    fisher = out.pop("fisher")
    i, j = np.triu_indices(fisher.shape[1])
    out["fisher_upper"] = fisher[:, i, j]
    return out


def fisher_of_upper(upper: np.ndarray, d: int) -> np.ndarray:
    """The symmetric (variants, d, d) information from its upper triangle."""
    i, j = np.triu_indices(d)
    fisher = np.empty((len(upper), d, d))
    fisher[:, i, j] = upper
    fisher[:, j, i] = upper
    return fisher


#: glibc's malloc in a kernel's process: blocks under MMAP_THRESHOLD come from the heap, and
#: up to TRIM_THRESHOLD of free heap is kept. Dask's nanny sets MALLOC_TRIM_THRESHOLD_ to
#: 64 KiB, which also fixes the mmap threshold at 128 KiB: every MiB-sized temporary of a
#: kernel is then a fresh mapping, page-faulted in and unmapped again (a kernel ran at
#: two thirds of its speed). A worker holds at most these few MiB more.
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 64 << 20
_malloc_tuned = False


def tune_malloc() -> None:
    """Set MMAP_THRESHOLD and TRIM_THRESHOLD in this process, once (glibc only; else nothing)."""
    global _malloc_tuned
    if _malloc_tuned:
        return
    _malloc_tuned = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, TRIM_THRESHOLD)  # M_TRIM_THRESHOLD
        libc.mallopt(-3, MMAP_THRESHOLD)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass  # not glibc: its own defaults


def _chunk_sums(kernel: Kernel, calls, rows, people, row_args) -> dict[str, np.ndarray]:
    tune_malloc()
    columns, *column_args = people
    return compact(kernel(genotype_codes(calls, rows, columns), *column_args, *row_args))


def _add(*parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    parts = [widen(p) for p in parts]
    return compact({k: sum(p[k] for p in parts) for k in parts[0]})


def positions(index, n: int) -> np.ndarray:
    index = np.arange(n) if index is None else np.asarray(index)
    return np.flatnonzero(index) if index.dtype == bool else index.astype(np.int64)


def reduce_chunks(
    calls,
    kernel: Kernel,
    columns: np.ndarray | None = None,
    rows: np.ndarray | None = None,
    column_args: tuple = (),
    row_args: tuple = (),
) -> dict[str, np.ndarray]:
    """A kernel's per-variant sums over a dask array of calls, one task per chunk.

    calls: (variants, samples, ploidy) int8 dask array; columns: positions (or
    a boolean mask) of the people summed over, in the order the kernel wants
    them (None: everyone), with `column_args` holding one row per such person;
    rows: positions of the variants (None: all), any order, with `row_args`
    one row per such variant. The tasks run where dask computes (the site's
    workers under a distributed Client) and each returns the sums of its chunk
    only; the chunks of people are added there too. Returns {name: array with
    one row per variant of `rows`, in that order}.
    """
    import dask

    if calls.numblocks[2] > 1:
        calls = calls.rechunk({2: -1})
    n_variants, n_samples = calls.shape[:2]
    columns = positions(columns, n_samples)
    column_args = [np.asarray(a) for a in column_args]
    rows = positions(rows, n_variants)
    order = np.argsort(rows, kind="stable")
    rows = rows[order]
    row_args = [np.asarray(a)[order] for a in row_args]

    variant_edges = np.cumsum((0, *calls.chunks[0]))
    sample_edges = np.cumsum((0, *calls.chunks[1]))
    blocks = calls.to_delayed().reshape(len(calls.chunks[0]), len(calls.chunks[1]))
    people = {}  # chunk of samples -> one graph key holding its positions and arrays
    for j, (lo, hi) in enumerate(zip(sample_edges[:-1], sample_edges[1:], strict=True)):
        inside = (columns >= lo) & (columns < hi)
        if not inside.any():
            continue
        pos = columns[inside] - lo
        if pos.size == hi - lo and (pos == np.arange(hi - lo)).all():
            pos = None  # everyone in the chunk, in order: no gather
        piece = (pos, *(a[inside] for a in column_args))
        people[j] = dask.delayed(piece, pure=True, traverse=False)
    chunk_sums = dask.delayed(_chunk_sums, pure=True)
    add = dask.delayed(_add, pure=True)
    totals = []
    for i, (lo, hi) in enumerate(zip(variant_edges[:-1], variant_edges[1:], strict=True)):
        first, last = np.searchsorted(rows, [lo, hi])
        if first == last or not people:
            continue
        local = rows[first:last] - lo
        if local.size == hi - lo and (local == np.arange(hi - lo)).all():
            local = None
        args = dask.delayed(tuple(a[first:last] for a in row_args), pure=True, traverse=False)
        parts = [
            chunk_sums(kernel, blocks[i, j], local, piece, args) for j, piece in people.items()
        ]
        totals.append(parts[0] if len(parts) == 1 else add(*parts))
    if not totals:  # no variants or no people: the kernel's zeros, in shape
        codes = np.zeros((rows.size, 0), dtype=np.uint8)
        found = kernel(codes, *(a[:0] for a in column_args), *row_args)
    else:
        found = joined(dask.compute(*totals))
    return in_order(found, order)


def joined(parts) -> dict[str, np.ndarray]:
    """The tasks' results (compacted sums of consecutive blocks of variants) as one float64
    array each."""
    done = [widen(d) for d in parts]
    return {k: np.concatenate([d[k] for d in done]) for k in done[0]}


def in_order(found: dict[str, np.ndarray], order: np.ndarray | None) -> dict[str, np.ndarray]:
    """Rows computed in sorted order put back in the order asked: row i of each array is
    the variant at `order[i]` of the request (None, or the identity: as they are)."""
    if order is None or (order == np.arange(order.size)).all():
        return found
    out = {}
    for k, a in found.items():
        out[k] = np.empty_like(a)
        out[k][order] = a
    return out


def reduce_dosage_blocks(
    blocks: Iterable[tuple[slice, np.ndarray]],
    kernel: Kernel,
    column_args: tuple = (),
    row_args: tuple = (),
) -> dict[str, np.ndarray]:
    """A kernel's sums over (rows, dosage) blocks of a cohort held as dosages, in this process.

    The blocks cover the people of `column_args` and the variants of
    `row_args`, in their order.
    """
    column_args = [np.asarray(a) for a in column_args]
    row_args = [np.asarray(a) for a in row_args]
    parts = [
        kernel(codes_from_dosage(G), *column_args, *(a[rows] for a in row_args))
        for rows, G in blocks
    ]
    if not parts:  # no variants: the kernel's zeros, in shape
        codes = np.zeros((0, 0), dtype=np.uint8)
        return kernel(codes, *(a[:0] for a in column_args), *(a[:0] for a in row_args))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _register_sizes() -> None:
    """Dask's memory accounting of a `Sparse` (its arrays), where dask is installed."""
    try:
        from dask.sizeof import sizeof
    except ImportError:  # the kernels run without dask too (a cohort held as dosages)
        return
    sizeof.register(Sparse)(lambda s: s.nbytes)


_register_sizes()
