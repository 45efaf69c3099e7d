"""Sets of people as the audit holds them: sorted indices, bit rows (64 people a word)
and a digest that recognises a repeat."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


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
