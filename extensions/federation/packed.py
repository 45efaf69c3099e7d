"""Packed genotype codes: two bits a call, for queries that must read every call of some people.

A filtered allele-frequency query (`where=`: women aged 50 and over) counts
people no summary holds, so it reads the calls. Through the VCF Zarr store
that is a decompression and a table gather per call (`kernels`); here the
same codes are kept once more, packed, and counted with bitwise AND and
popcount, 64 people a machine word.

    genotypes.packed.npy   numpy's .npy of uint64, shape (variants, 2, words),
                           words = ceil(samples / 64), people in the Zarr's
                           column order, variants in its row order. Plane 0
                           has a person's bit set when the call's code
                           (`kernels.genotype_codes`) is 1 or missing, plane 1
                           when it is 2 or missing: so het = p0 & ~p1,
                           hom-alt = p1 & ~p0, missing = p0 & p1.

It is written at ingest with the summary cache (`summary.write_summary`) and
trusted only through it: the cache's `meta["packed"]` records the file's
shape, size and modification time, and the cache itself is valid only for
the dataset's version and people now. A file that does not match is read
past (logged): the caller counts from the Zarr store, so a stale copy costs
time, never a wrong answer. Datasets whose calls have codes above 2 (ploidy
above 2) get no packed copy.

Counting (`packed_counts`) for a selection of people given as one bit mask
per stratum, per variant:

    n_called = |mask| - popcount(p0 & p1 & mask)
    AC       = popcount(p0 & mask) + 2 popcount(p1 & mask) - 3 popcount(p0 & p1 & mask)

the same integers `kernels.allele_counts` sums from the codes, so a half
counted from the packed copy equals one counted from the Zarr bit for bit.
The file never leaves the site; it is a dataset file like the Zarr store.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import numpy as np

from ..contracts.datasets import PACKED, VCF
from . import kernels

log = logging.getLogger("visiting.packed")

PACKED_FORMAT = 1
#: cohorts read the packed calls when valid; tests and benchmarks set this False to make
#: every half read the Zarr store
USE = True
WORD_BITS = 64
#: variants per task when counting (a block of planes and its temporaries stay a few MiB)
TASK_BYTES = 1 << 25
#: variants counted at once inside a task (the AND and popcount temporaries in L2)
BLOCK_BYTES = 1 << 19


def words_for(n_samples: int) -> int:
    return max(1, -(-n_samples // WORD_BITS))


def _bits(flags: np.ndarray, words: int) -> np.ndarray:
    """(..., n) bool -> (..., words) little-endian uint64: person j is bit j % 64 of word j // 64."""
    packed = np.packbits(flags, axis=-1, bitorder="little")
    padded = np.zeros((*packed.shape[:-1], words * 8), dtype=np.uint8)
    padded[..., : packed.shape[-1]] = packed
    return padded.view("<u8")


def pack_codes(codes: np.ndarray, words: int | None = None) -> np.ndarray:
    """The (variants, 2, words) planes of (variants, people) uint8 codes (0, 1, 2 or MISSING).

    Raises ValueError for a code the two planes cannot hold (above 2).
    """
    codes = np.asarray(codes, dtype=np.uint8)
    v, n = codes.shape
    words = words_for(n) if words is None else words
    missing = codes == kernels.MISSING
    if ((codes > 2) & ~missing).any():
        raise ValueError("a call has more than two alternate alleles (ploidy above 2)")
    flags = np.empty((v, 2, n), dtype=bool)
    np.logical_or(codes == 1, missing, out=flags[:, 0])
    np.logical_or(codes == 2, missing, out=flags[:, 1])
    return _bits(flags, words)


def person_masks(selected: np.ndarray, strata: np.ndarray, n_strata: int, n: int) -> np.ndarray:
    """(n_strata, words) bit masks: the people at column positions `selected` by stratum."""
    flags = np.zeros((n_strata, n), dtype=bool)
    flags[np.asarray(strata, dtype=np.int64), np.asarray(selected, dtype=np.int64)] = True
    return _bits(flags, words_for(n))


def packed_counts(planes, masks: np.ndarray) -> dict[str, np.ndarray]:
    """Per variant and mask: `ac` and `n_called` of the masked people, exact, as int64.

    planes: (variants, 2, words) uint64 (an array or a memory map); masks:
    (strata, words) uint64.
    """
    masks = np.asarray(masks, dtype=np.uint64)
    v = len(planes)
    s, words = masks.shape
    ac = np.zeros((v, s), dtype=np.int64)
    n_called = np.zeros((v, s), dtype=np.int64)
    in_mask = np.bitwise_count(masks).sum(axis=1, dtype=np.int64)
    step = max(1, BLOCK_BYTES // (16 * words))
    for lo in range(0, v, step):
        block = np.asarray(planes[lo : lo + step])
        p0, p1 = block[:, 0], block[:, 1]
        both = p0 & p1
        tmp = np.empty_like(p0)
        for k, m in enumerate(masks):
            c0 = np.bitwise_count(np.bitwise_and(p0, m, out=tmp)).sum(axis=1, dtype=np.int64)
            c1 = np.bitwise_count(np.bitwise_and(p1, m, out=tmp)).sum(axis=1, dtype=np.int64)
            cm = np.bitwise_count(np.bitwise_and(both, m, out=tmp)).sum(axis=1, dtype=np.int64)
            ac[lo : lo + step, k] = c0 + 2 * c1 - 3 * cm
            n_called[lo : lo + step, k] = in_mask[k] - cm
    return {"ac": ac, "n_called": n_called}


# ---------------------------------------------------------------------------
# writing


def write_packed(folder: str | Path, cohort) -> dict | None:
    """Pack the cohort's calls into `folder / PACKED`; the record `summary` keeps, or None.

    cohort: the dataset's `ZarrCohort`. Reads the calls a few chunks of
    variants at a time into a memory map of a hidden file, renamed into place
    with the VCF's mode. None (and no file) when a call's code does not fit
    two planes; an older packed file is then removed.
    """
    folder = Path(folder)
    path = folder / PACKED
    calls = cohort.ds["call_genotype"].data
    v, n = (int(x) for x in calls.shape[:2])
    words = words_for(n)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype="<u8", shape=(v, 2, words))
        chunk = int(calls.chunksize[0])
        step = max(chunk, chunk * (TASK_BYTES // max(1, n * calls.shape[2] * chunk)))
        try:
            for lo in range(0, v, step):
                hi = min(lo + step, v)
                out[lo:hi] = pack_codes(kernels.genotype_codes(np.asarray(calls[lo:hi])), words)
        except ValueError as e:
            log.info("packed copy of %s: none (%s)", folder, e)
            del out
            path.unlink(missing_ok=True)
            return None
        out.flush()
        del out
        try:
            os.chmod(tmp, stat.S_IMODE((folder / VCF).stat().st_mode))
        except OSError:
            pass  # keep the umask's mode
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    st = path.stat()
    return {
        "format": PACKED_FORMAT,
        "shape": [v, 2, words],
        "bytes": st.st_size,
        "mtime_ns": st.st_mtime_ns,
    }


# ---------------------------------------------------------------------------
# reading


def matches(folder: str | Path, record: dict | None) -> bool:
    """Whether the packed file in `folder` is the one `record` (from the summary) describes."""
    if not record:
        return False
    try:
        st = (Path(folder) / PACKED).stat()
    except OSError:
        return False
    return (
        record.get("format") == PACKED_FORMAT
        and st.st_size == record.get("bytes")
        and st.st_mtime_ns == record.get("mtime_ns")
    )


def open_packed(folder: str | Path, record: dict | None, n_variants: int, n_samples: int):
    """The packed planes as a read-only memory map if `record` vouches for them now, else None
    (logged)."""
    path = Path(folder) / PACKED
    if not record:
        return None
    if not matches(folder, record):
        log.warning(
            "packed copy %s: not the one the summary cache recorded; reading the Zarr", path
        )
        return None
    try:
        planes = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as e:  # a truncated or foreign file raises many types
        log.warning("packed copy %s: unreadable (%s); reading the Zarr", path, e)
        return None
    want = (n_variants, 2, words_for(n_samples))
    if planes.shape != want or planes.dtype != np.dtype("<u8"):
        log.warning("packed copy %s: shape %s, not %s; reading the Zarr", path, planes.shape, want)
        return None
    return planes


#: calls per task of `reduce_kernel` (its codes; the unpacked bits take twice that)
KERNEL_CALLS = 1 << 22


def unpack_codes(planes: np.ndarray, n: int, columns: np.ndarray | None = None) -> np.ndarray:
    """The (variants, people) uint8 codes of (variants, 2, words) planes: the inverse of
    `pack_codes`, for the people at `columns` in that order (None: all n)."""
    planes = np.ascontiguousarray(planes, dtype="<u8")
    bits = np.unpackbits(planes.view(np.uint8), axis=-1, count=n, bitorder="little")
    # code = p0 + 2 p1 + 252 (p0 & p1): 0, 1, 2, and 255 (MISSING) when both are set; a few
    # passes of uint8 arithmetic, several times faster than a table gather
    low, high = bits[:, 0], bits[:, 1]
    both = low & high
    both *= kernels.MISSING - 3
    low += high
    low += high
    low += both
    if columns is None:
        return np.ascontiguousarray(low)
    return gather_columns(low, columns)


def gather_columns(a: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """a[:, columns]; increasing columns with few gaps (a model's complete cases) as copies
    of their runs, which is faster than a gather."""
    columns = np.asarray(columns, dtype=np.int64)
    steps = np.diff(columns)
    if columns.size and (steps > 0).all():
        breaks = np.flatnonzero(steps != 1)
        if breaks.size < 256:
            starts = columns[np.r_[0, breaks + 1]]
            ends = columns[np.r_[breaks, columns.size - 1]] + 1
            return np.concatenate(
                [a[:, lo:hi] for lo, hi in zip(starts, ends, strict=True)], axis=1
            )
    return a[:, columns]


def _read_planes(path: str, lo: int, hi: int, rows) -> np.ndarray:
    """Variants lo..hi of the packed file (only those at `rows`, relative to lo, if given)."""
    planes = np.load(path, mmap_mode="r", allow_pickle=False)[lo:hi]
    return planes if rows is None else planes[rows]


def _kernel_task(kernel, path: str, lo: int, hi: int, rows, n: int, people, row_args):
    kernels.tune_malloc()
    columns, *column_args = people
    codes = unpack_codes(_read_planes(path, lo, hi, rows), n, columns)
    return kernels.compact(kernel(codes, *column_args, *row_args))


def _count_task(path: str, lo: int, hi: int, rows, masks) -> dict[str, np.ndarray]:
    # counts as the narrowest integers that hold them
    return kernels.compact(packed_counts(_read_planes(path, lo, hi, rows), masks))


def _over_blocks(n_variants: int, rows: np.ndarray, step: int, row_args=()):
    """(lo, hi, local rows or None for all, the row_args of those rows) of each block of
    `step` variants holding some of the sorted `rows`."""
    for lo in range(0, n_variants, step):
        first, last = np.searchsorted(rows, [lo, lo + step])
        if first == last:
            continue
        hi = min(lo + step, n_variants)
        local = rows[first:last] - lo
        if local.size == hi - lo:
            local = None  # every variant of the block
        yield lo, hi, local, tuple(a[first:last] for a in row_args)


def reduce_kernel(
    path: str | Path,
    n_variants: int,
    n_samples: int,
    kernel,
    columns: np.ndarray | None = None,
    rows: np.ndarray | None = None,
    column_args: tuple = (),
    row_args: tuple = (),
) -> dict[str, np.ndarray]:
    """`kernels.reduce_chunks` over the packed calls: the same kernel on the same codes, one
    task per block of variants where dask computes, so the same sums, without the Zarr's
    decompression. Arguments as there."""
    import dask

    columns = kernels.positions(columns, n_samples)
    if columns.size == n_samples and (columns == np.arange(n_samples)).all():
        columns = None  # everyone, in order: no gather
    m = n_samples if columns is None else columns.size
    column_args = tuple(np.asarray(a) for a in column_args)
    rows = kernels.positions(rows, n_variants)
    order = np.argsort(rows, kind="stable")
    rows = rows[order]
    row_args = [np.asarray(a)[order] for a in row_args]
    if rows.size == 0 or m == 0:  # the kernel's zeros, in shape
        codes = np.zeros((rows.size, 0), dtype=np.uint8)
        found = kernel(codes, *(a[:0] for a in column_args), *row_args)
        return kernels.in_order(found, order)
    people = dask.delayed((columns, *column_args), pure=True, traverse=False)
    task = dask.delayed(_kernel_task, pure=True)
    step = max(1, KERNEL_CALLS // m)
    parts = [
        task(kernel, str(path), lo, hi, local, n_samples, people, args)
        for lo, hi, local, args in _over_blocks(n_variants, rows, step, row_args)
    ]
    return kernels.in_order(kernels.joined(dask.compute(*parts)), order)


def reduce_packed(
    path: str | Path, n_variants: int, n_samples: int, masks: np.ndarray, rows=None
) -> dict[str, np.ndarray]:
    """`packed_counts` over the file, a task per block of variants where dask computes (the
    site's workers under a distributed Client); rows: positions of the variants to count, in
    order (None: all). Returns {"ac", "n_called"}: (rows, strata) exact counts as float64."""
    import dask

    masks = np.asarray(masks, dtype=np.uint64)
    rows = kernels.positions(rows, n_variants)
    order = np.argsort(rows, kind="stable")
    rows = rows[order]
    task = dask.delayed(_count_task, pure=True)
    step = max(1, TASK_BYTES // (16 * words_for(n_samples)))
    parts = [
        task(str(path), lo, hi, local, masks)
        for lo, hi, local, _ in _over_blocks(n_variants, rows, step)
    ]
    if not parts:
        empty = np.zeros((0, len(masks)))
        return {"ac": empty, "n_called": empty.copy()}
    return kernels.in_order(kernels.joined(dask.compute(*parts)), order)
