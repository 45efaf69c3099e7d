"""NumPy arrays: genotype calls, dosages and calls packed two bits each, or strings."""

from __future__ import annotations

import ast
import math
import struct

from .content import KIB, _Src
from .verdict import GENOTYPE_MATRIX


class Arrays:
    """Part of `_Scan`: .npy files and the buffers of pickled arrays."""

    def npy(self, src: _Src, chain, depth) -> None:
        link = ("NumPy .npy", "NumPy .npy")
        head = src.read(0, 64 * KIB)
        try:
            if head[6] == 1:
                (hlen,), off = struct.unpack("<H", head[8:10]), 10
            else:
                (hlen,), off = struct.unpack("<I", head[8:12]), 12
            header = ast.literal_eval(head[off : off + hlen].decode("latin-1"))
            descr, shape = header["descr"], tuple(header["shape"])
        except (IndexError, struct.error, ValueError, SyntaxError, KeyError, TypeError):
            self.binary(src, head, chain, depth)
            return
        start = off + hlen
        if descr == "|O":
            self.pickle(
                _Src.of(src.read(start, start + self.allowance())), (*chain, link), depth + 1
            )
            return
        try:
            import numpy as np

            dtype = np.dtype(descr)
        except (ImportError, TypeError, ValueError):
            self.binary(src, head, chain, depth)
            return
        count = min(
            math.prod(shape) if shape else 1,
            max(1, self.allowance() // max(1, dtype.itemsize)),
            4_000_000,
        )
        data = src.read(start, start + count * dtype.itemsize)
        self.spend(len(data))
        self.ndarray(data, dtype, shape, (*chain, link), depth)

    def ndarray(self, data: bytes, dtype, shape: tuple, chain, depth) -> None:
        """A NumPy array's buffer: genotype calls or dosages, or strings to read as text."""
        import numpy as np

        if dtype.kind in "US":
            text = data.decode("utf-32-le" if dtype.kind == "U" else "latin-1", "replace")
            self.text_unit(_Src.of(text.replace("\x00", "\n").encode()), chain, depth + 1)
            return
        if dtype.kind not in "iuf" or not dtype.itemsize:
            return
        n = len(data) // dtype.itemsize
        values = np.frombuffer(data, dtype=dtype, count=n)[:4_000_000]
        if _packed_calls(values, shape):
            self.hit(
                GENOTYPE_MATRIX,
                f"a NumPy array of genotype calls packed two bits each, shape {shape}",
                f"2 ビットずつ詰めた遺伝型コールの NumPy 配列（形 {shape}）",
                int(shape[0]),
                chain,
            )
            return
        if _genotype_array(values, shape):
            self.hit(
                GENOTYPE_MATRIX,
                f"a NumPy array of genotype {'calls' if dtype.kind in 'iu' else 'dosages'}, "
                f"shape {shape}, {dtype}",
                f"遺伝型の{'コール' if dtype.kind in 'iu' else 'ドーズ'}の NumPy 配列（形 {shape}、{dtype}）",
                int(shape[0]) if shape else 0,
                chain,
            )


def _packed_calls(values, shape: tuple) -> bool:
    """Genotype calls packed two bits each (the sites' `genotypes.packed.npy` layout, or any
    like it): uint64 words as (variants, 2, words), a person's bit set in plane 0 for a
    heterozygous or missing call and in plane 1 for a homozygous-alternate or missing one,
    so the bits set in both planes (missing calls) are few beside those set in either."""
    import numpy as np

    if values.dtype.kind != "u" or values.dtype.itemsize != 8 or len(shape) != 3:
        return False
    if shape[1] != 2 or shape[0] < 10 or shape[2] < 1:
        return False
    rows = values[: (values.size // (2 * shape[2])) * 2 * shape[2]].reshape(-1, 2, shape[2])
    if len(rows) < 10:
        return False
    p0, p1 = rows[:, 0], rows[:, 1]
    either = int(np.bitwise_count(p0 | p1).sum())
    both = int(np.bitwise_count(p0 & p1).sum())
    return either >= 64 and both * 10 < either


def _genotype_array(values, shape: tuple) -> bool:
    """A NumPy array of calls (-1/0/1, 0/1/2, missing) or dosages in [0, 2] over many people?"""
    import numpy as np

    dims = sorted((int(d) for d in shape), reverse=True)
    if len(dims) < 2 or dims[0] < 20 or dims[1] < 3 or values.size < 60:
        return False
    if values.dtype.kind in "iu":
        seen = set(np.unique(values[:1_000_000]).tolist())
        return seen <= {-1, 0, 1, 2, 3, 255} and len(seen & {0, 1, 2}) >= 2
    finite = values[~np.isnan(values)]
    if finite.size < 60 or finite.min() < 0 or finite.max() > 2:
        return False
    level = np.round(finite)
    near = np.abs(finite - level) <= 0.1
    if near.mean() < 0.7:
        return False
    counts = np.sort(np.bincount(level[near].astype(np.int64), minlength=3))[::-1]
    return bool(counts[1] >= 0.05 * finite.size or (counts[1] and (finite == level).all()))
