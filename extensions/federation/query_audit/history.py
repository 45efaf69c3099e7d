"""The query-set audit on disk: its history as compressed bytes, rebuilt on load."""

from __future__ import annotations

import json
import os
import struct
import tempfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .basis import _Basis
from .sets import _as_set
from .verdict import QueryMeta

if TYPE_CHECKING:
    from .audit import QuerySetAudit

_MAGIC = b"VQSA\x00\x01"
_FORMAT_VERSION = 1


class _History:
    """Saving and loading, for `QuerySetAudit`: the sets, their answers, the basis's order
    and pivots; the basis's matrix is rebuilt from them."""

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
            basis = basis.settled()
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
