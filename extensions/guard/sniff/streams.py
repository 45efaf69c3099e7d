"""Bounded decompression: at most `limit` bytes out of gzip (BGZF too), bzip2 or xz."""

from __future__ import annotations

import bz2
import lzma
import zlib


def _inflate(data: bytes, limit: int) -> bytes:
    """Up to `limit` bytes of a gzip stream, across members (BGZF is many members)."""
    out = bytearray()
    rest = data
    while rest and len(out) < limit:
        if rest[:2] != b"\x1f\x8b":
            break
        d = zlib.decompressobj(zlib.MAX_WBITS | 16)
        try:
            out += d.decompress(rest, limit - len(out))
        except zlib.error as e:
            if not out:
                raise ValueError(f"not a gzip stream: {e}") from None
            break
        if not d.eof:
            break  # the window ends inside this member, or the limit was reached
        rest = d.unused_data
    return bytes(out)


def _bunzip(data: bytes, limit: int) -> bytes:
    return bz2.BZ2Decompressor().decompress(data, limit)


def _unxz(data: bytes, limit: int) -> bytes:
    return lzma.LZMADecompressor().decompress(data, limit)
