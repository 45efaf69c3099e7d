"""What a scan reads: content held or read at offsets, its budget, and a first look at it."""

from __future__ import annotations

import io
import math
import os
from collections import Counter

KIB = 1024
MIB = 1024 * KIB
#: what a structural character of JSON ({ [ , :) may cost once parsed: a small dict of one
#: key, `{"a":1}`, is three of them and about 190 bytes of Python objects
JSON_TOKEN_BYTES = 64


def json_tokens(data: bytes) -> int:
    """The structural characters in (a block of) JSON text."""
    return data.count(b"{") + data.count(b"[") + data.count(b",") + data.count(b":")


def json_cost(size: int, tokens: int) -> int:
    """Roughly the most memory parsing `size` bytes of JSON with `tokens` structural
    characters takes: the text twice (its bytes and its string) and an object a character.
    An overestimate when strings hold many commas; never far under."""
    return 2 * size + JSON_TOKEN_BYTES * tokens


class _Src:
    """Content to look at: bytes held, or a file read at offsets when it is too big to hold."""

    def __init__(self, size: int, f=None, data: bytes | None = None):
        self.size = size
        self.f = f
        self.data = data

    @classmethod
    def of(cls, data: bytes) -> _Src:
        return cls(len(data), None, data)

    def read(self, a: int, b: int) -> bytes:
        b = min(b, self.size)
        if a >= b:
            return b""
        if self.data is not None:
            return self.data[a:b]
        return os.pread(self.f.fileno(), b - a, a)

    def fileobj(self):
        if self.data is not None:
            return io.BytesIO(self.data)
        self.f.seek(0)
        return self.f


class _Budget(Exception):
    """The decoded-bytes budget is spent."""


def _size(n: float) -> str:
    return f"{n / MIB:.1f} MiB" if n >= MIB else f"{n / KIB:.1f} KiB" if n >= KIB else f"{n:.0f} B"


def _entropy(sample: bytes) -> tuple[float, Counter]:
    counts = Counter(sample)
    n = len(sample)
    return -sum(c / n * math.log2(c / n) for c in counts.values()), counts


def _looks_text(sample: bytes) -> bool:
    if not sample:
        return True
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(sample) - 4:
            # not UTF-8: text in another encoding has few control bytes and no NULs
            if b"\x00" in sample:
                return False
            controls = len(sample) - len(
                sample.translate(None, bytes(range(9)) + bytes(range(14, 32)))
            )
            return controls * 100 < len(sample) and _entropy(sample[:16384])[0] < 7.0
    controls = len(sample) - len(sample.translate(None, bytes(range(9)) + bytes(range(14, 32))))
    return controls * 100 < len(sample)
