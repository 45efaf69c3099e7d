"""Formats that are results (images, PDF, fonts) and formats that cannot be decoded here."""

from __future__ import annotations

import re
import struct
import zlib

from .content import KIB, MIB, _Src

_KNOWN = (
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF87a", "GIF image"),
    (b"GIF89a", "GIF image"),
    (b"%PDF-", "PDF document"),
    (b"wOFF", "WOFF font"),
    (b"wOF2", "WOFF2 font"),
    (b"OTTO", "OpenType font"),
    (b"\x00\x01\x00\x00\x00", "TrueType font"),
    (b"\x00asm", "WebAssembly module"),
    (b"II*\x00", "TIFF image"),
    (b"MM\x00*", "TIFF image"),
    (b"\x00\x00\x01\x00", "icon"),
)
_CANNOT = (
    (b"7z\xbc\xaf\x27\x1c", "7z archive"),
    (b"Rar!\x1a\x07", "RAR archive"),
    (b"\xff\x06\x00\x00sNaPpY", "snappy stream"),
    (b"-----BEGIN PGP MESSAGE", "PGP message"),
    (b"Salted__", "OpenSSL encrypted file"),
    (b"age-encryption.org/", "age encrypted file"),
)


class Media:
    """Part of `_Scan`: images and PDF pass but for the text and ids they carry."""

    def known(self, src: _Src, head: bytes, chain, depth, name) -> bool:
        for magic, label in _CANNOT:
            if head.startswith(magic):
                self.mark_opaque(
                    f"a {label} (cannot be decoded here)", f"{label}（ここでは展開できない）", chain
                )
                return True
        label = next((label for magic, label in _KNOWN if head.startswith(magic)), None)
        if label is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            label = "WebP image"
        if label is None:
            return False
        if label == "PNG image":
            self.png(src, chain, depth)
        elif label == "PDF document":
            self.pdf(src, chain)
        # a zip appended to an image (a polyglot) is read as the zip it also is
        if b"PK\x05\x06" in src.read(max(0, src.size - 64 * KIB), src.size):
            link = (f"a zip inside a {label}", f"{label} の中の zip")
            self.zip(src, (*chain, link), depth + 1, fallback=False)
        return True

    def png(self, src: _Src, chain, depth) -> None:
        """Text chunks and whatever follows the image end are read; pixels are not."""
        at, seen = 8, 0
        while at + 8 <= src.size and seen < 10000:
            seen += 1
            length, kind = struct.unpack(">I4s", src.read(at, at + 8))
            if kind in (b"tEXt", b"iTXt", b"zTXt") and length <= 4 * MIB:
                body = src.read(at + 8, at + 8 + length)
                if kind == b"zTXt":
                    key, _, rest = body.partition(b"\x00")
                    try:
                        body = (
                            key
                            + b"\n"
                            + zlib.decompressobj().decompress(rest[1:], self.allowance())
                        )
                    except zlib.error:
                        pass
                self.text_unit(
                    _Src.of(body.replace(b"\x00", b"\n")),
                    (*chain, ("PNG text", "PNG のテキスト")),
                    depth + 1,
                )
            at += 12 + length
            if kind == b"IEND":
                break
        if src.size - at >= 64:
            rest = src.read(at, min(src.size, at + self.allowance()))
            self.blob(
                _Src.of(rest),
                (*chain, ("bytes after a PNG image", "PNG 画像の後のバイト列")),
                depth + 1,
            )

    def pdf(self, src: _Src, chain) -> None:
        """Only the ids: in the file and in its first deflated streams (cheap; text is not parsed)."""
        data = src.read(0, min(src.size, 16 * MIB))
        self.ids(data, chain)
        budget = min(self.allowance(), 4 * MIB)
        for m in re.finditer(rb"stream\r?\n", data[: 16 * MIB]):
            if budget <= 0:
                break
            try:
                out = zlib.decompressobj().decompress(data[m.end() : m.end() + budget], budget)
            except zlib.error:
                continue
            budget -= len(out)
            self.spend(len(out))
            self.ids(out, (*chain, ("a PDF stream", "PDF のストリーム")))
