"""Binary content of no known format: raw deflate, bytes of genotype codes, high entropy."""

from __future__ import annotations

import re
import zlib

from .content import KIB, _entropy, _looks_text, _size, _Src
from .verdict import GENOTYPE_MATRIX


class Binary:
    """Part of `_Scan`: binary content that is none of the known formats."""

    def binary(self, src: _Src, head: bytes, chain, depth) -> None:
        sample = head[: 64 * KIB]
        # raw deflate has no magic: tried on anything binary (it fails within bytes on the rest)
        inner = self.decode(src, lambda d, n: zlib.decompressobj(-15).decompress(d, n))
        if len(inner) >= 64 and (_looks_text(inner[:4096]) or self.r.sniffer.classify_magic(inner)):
            self.blob(_Src.of(inner), (*chain, ("raw deflate", "raw deflate")), depth + 1)
            return
        bits, counts = _entropy(sample)
        if bits >= 7.2:
            if src.size >= self.r.opaque_min_bytes:
                self.mark_opaque(
                    f"{_size(src.size)} of high-entropy bytes of no known format",
                    f"既知の形式でない高エントロピーのバイト列 {_size(src.size)}",
                    chain,
                )
            return
        if len(sample) >= 256 and set(counts) <= {0, 1, 2, 3, 0xFF}:
            # calls of many people change from byte to byte; a per-variant code (a contig
            # index, sorted) runs long
            levels = sum(1 for v in (0, 1, 2) if counts.get(v, 0) * 100 >= len(sample))
            part = sample[: 16 * KIB]
            changes = sum(1 for a, b in zip(part, part[1:], strict=False) if a != b)
            if levels >= 2 and changes * 100 >= len(part):
                self.hit(
                    GENOTYPE_MATRIX,
                    f"{_size(src.size)} of bytes that are all genotype codes (0, 1, 2, missing)",
                    f"すべて遺伝型コード（0、1、2、欠測）のバイト列 {_size(src.size)}",
                    0,
                    chain,
                )
                return
        # binary with text inside (an HDF5 file, a UTF-16 table): its strings are read
        whole = self.whole(src)
        for a, b in [(0, src.size)] if whole is not None else self.scan_ranges(src.size):
            piece = whole[a:b] if whole is not None else src.read(a, b)
            self.ids(piece, chain)
            if piece.count(b"\x00") * 4 > len(piece):
                self.ids(piece.replace(b"\x00", b""), chain)
        text = re.sub(rb"[\x00-\x08\x0e-\x1f]+", b"\n", head[: self.r.head_bytes])
        self.window(
            text, (*chain, ("text inside binary content", "バイナリの中のテキスト")), False, True
        )
