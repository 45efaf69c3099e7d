"""Compressed content: gzip and BGZF, zlib, bzip2, xz and lzma, zstd, lz4, Blosc."""

from __future__ import annotations

import bz2
import io
import lzma
import struct
import zlib

from ..sniff import Finding
from ..sniff.streams import _inflate  # one gzip/BGZF reader for both
from .content import MIB, _size, _Src


class Compression:
    """Part of `_Scan`: a stream is decoded within the budget and its content read again."""

    def compressed(self, src: _Src, head: bytes, chain, depth, name) -> bool:
        if head[:2] == b"\x1f\x8b":
            bgzf = len(head) >= 18 and head[3] & 4 and head[12:14] == b"BC"
            self.gzip(src, bool(bgzf), chain, depth)
            return True
        if _is_blosc(head, src.size):
            self.blosc(src, chain, depth)
            return True
        if head[:3] == b"BZh" and head[4:10] == b"1AY&SY":
            self.stream(
                src, "bzip2", lambda d, n: bz2.BZ2Decompressor().decompress(d, n), chain, depth
            )
            return True
        if head[:6] == b"\xfd7zXZ\x00":
            self.stream(
                src, "xz", lambda d, n: lzma.LZMADecompressor().decompress(d, n), chain, depth
            )
            return True
        if head[:4] == b"\x28\xb5\x2f\xfd":
            self.stream(src, "zstd", _codec("zstd"), chain, depth)
            return True
        if head[:4] == b"\x04\x22\x4d\x18":
            self.stream(src, "lz4", _codec("lz4"), chain, depth)
            return True
        if len(head) >= 2 and head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0:
            inner = self.decode(src, lambda d, n: zlib.decompressobj().decompress(d, n))
            if inner:
                self.blob(_Src.of(inner), (*chain, ("zlib", "zlib")), depth + 1)
                return True
        if head[:1] == b"\x5d" and head[1:5] in (b"\x00\x00\x80\x00", b"\x00\x00\x00\x01",
                                                   b"\x00\x00\x00\x04", b"\x00\x00\x00\x02"):  # fmt: skip
            inner = self.decode(
                src, lambda d, n: lzma.LZMADecompressor(lzma.FORMAT_ALONE).decompress(d, n)
            )
            if inner:
                self.blob(_Src.of(inner), (*chain, ("lzma", "lzma")), depth + 1)
                return True
        return False

    def blosc(self, src: _Src, chain, depth) -> None:
        """A Blosc-compressed chunk (Zarr v2's default), decoded by numcodecs when importable."""
        (nbytes,) = struct.unpack("<I", src.read(4, 8))
        try:
            from numcodecs import blosc
        except ImportError:
            self.mark_opaque(
                "a Blosc chunk (cannot be decoded here)",
                "Blosc のチャンク（ここでは展開できない）",
                chain,
            )
            return
        if nbytes > self.allowance():
            self.mark_opaque(
                f"a Blosc chunk of {_size(nbytes)} (more than is decoded here)",
                f"Blosc のチャンク {_size(nbytes)}（ここで展開する量を超える）",
                chain,
            )
            return
        try:
            inner = blosc.decompress(self.whole(src) or src.read(0, src.size))
        except (RuntimeError, ValueError, TypeError):
            self.mark_opaque("a damaged Blosc chunk", "壊れた Blosc のチャンク", chain)
            return
        self.spend(len(inner))
        self.blob(_Src.of(bytes(inner)), (*chain, ("Blosc", "Blosc")), depth + 1)

    def decode(self, src: _Src, fn) -> bytes:
        """Up to the allowance of `fn(data, limit)`'s output; b'' when it fails at once."""
        limit = self.allowance()
        data = self.whole(src)
        if data is None:
            data = src.read(0, max(4 * MIB, limit))  # a stream's head decodes on its own
        try:
            out = fn(data, limit)
        except (OSError, ValueError, EOFError, lzma.LZMAError, zlib.error):
            return b""
        self.spend(len(out))
        return out

    def stream(self, src: _Src, label: str, fn, chain, depth) -> None:
        if fn is None:
            self.mark_opaque(
                f"{label} stream (cannot be decoded here)",
                f"{label} ストリーム（ここでは展開できない）",
                chain,
            )
            return
        inner = self.decode(src, fn)
        if inner:
            self.blob(_Src.of(inner), (*chain, (label, label)), depth + 1)
        elif src.size >= self.r.opaque_min_bytes:
            self.mark_opaque(f"a damaged {label} stream", f"壊れた {label} ストリーム", chain)

    def gzip(self, src: _Src, bgzf: bool, chain, depth) -> None:
        label = "BGZF" if bgzf else "gzip"
        inner = self.decode(src, _inflate)
        if not inner:
            if src.size >= self.r.opaque_min_bytes:
                self.mark_opaque(f"a damaged {label} stream", f"壊れた {label} ストリーム", chain)
            return
        link = (label, label)
        if bgzf and inner[:4] == b"BAM\x01":
            self.sniffed(Finding("bam", "its magic bytes (BAM in BGZF)"), 0, chain)
            return
        if bgzf and inner[:3] == b"BCF":
            self.sniffed(Finding("bcf", "its magic bytes (BCF in BGZF)"), 0, chain)
            return
        self.blob(_Src.of(inner), (*chain, link), depth + 1)
        if not bgzf or self.raw_found or src.size <= 4 * MIB:
            return
        # BGZF blocks decode on their own: windows in the middle and at the end
        step = src.size // (self.r.windows + 1)
        for k in range(1, self.r.windows + 2):
            at = src.size - MIB if k == self.r.windows + 1 else k * step
            piece = src.read(at, at + 2 * MIB)
            start = _bgzf_block(piece)
            if start < 0:
                continue
            try:
                text = _inflate(piece[start:], min(self.allowance(), self.r.window_bytes * 8))
            except (ValueError, zlib.error):
                continue
            self.spend(len(text))
            self.window(
                text,
                (
                    *chain,
                    (
                        f"{label} (a block at byte {at + start})",
                        f"{label}（{at + start} バイト目のブロック）",
                    ),
                ),
                True,
                True,
            )
            if self.raw_found:
                return


def _is_blosc(head: bytes, size: int) -> bool:
    """A Blosc 1 frame: version 2, a typesize, and its compressed size equal to the content's."""
    if len(head) < 16 or head[0] != 2 or not 1 <= head[3] <= 255:
        return False
    nbytes, blocksize, cbytes = struct.unpack("<III", head[4:16])
    return cbytes == size and 16 <= cbytes and (nbytes == 0 or 0 < blocksize <= max(nbytes, 1))


def _bgzf_block(piece: bytes) -> int:
    at = 0
    while True:
        at = piece.find(b"\x1f\x8b\x08\x04", at)
        if at < 0 or at + 18 > len(piece):
            return -1
        if piece[at + 12 : at + 14] == b"BC":
            return at
        at += 1


def _codec(name: str):
    """A decoder for zstd or lz4 frames from what is importable here, or None."""
    if name == "zstd":
        try:
            from compression import zstd  # Python 3.14

            return lambda d, n: zstd.ZstdDecompressor().decompress(d, n)
        except ImportError:
            pass
        try:
            import zstandard

            return lambda d, n: zstandard.ZstdDecompressor().stream_reader(io.BytesIO(d)).read(n)
        except ImportError:
            pass
    if name == "lz4":
        try:
            import lz4.frame

            return lambda d, n: lz4.frame.LZ4FrameDecompressor().decompress(d, max_length=n)
        except ImportError:
            pass
    try:
        import pyarrow as pa
    except ImportError:
        return None
    if not pa.Codec.is_available(name):
        return None

    def decode(data: bytes, limit: int) -> bytes:
        stream = pa.CompressedInputStream(pa.py_buffer(data), name)
        out = bytearray()
        try:
            while len(out) < limit:
                chunk = stream.read(min(MIB, limit - len(out)))
                if not chunk:
                    break
                out += chunk
        except (OSError, pa.ArrowException):
            if not out:
                raise ValueError(f"not a {name} stream") from None
        return bytes(out)

    return decode
