"""Text: scanned whole or in windows for ids and encoded runs, then read for structure."""

from __future__ import annotations

import html
import re

from .content import KIB, MIB, _Src

# signatures of raw records, looked for between the windows of a long text
_HINTS = (b"\t0/0", b"\t0|0")


class Text:
    """Part of `_Scan`: where a text is read, and each window of it."""

    def scan_ranges(self, size: int) -> list[tuple[int, int]]:
        """Where a big content is scanned for ids and encoded runs."""
        r = self.r
        if size <= r.full_bytes:
            return [(0, size)]
        out = [(0, r.scan_head)]
        step = (size - r.scan_head - r.scan_tail) // (r.scan_windows + 1)
        for k in range(1, r.scan_windows + 1):
            a = r.scan_head + k * step
            out.append((a, a + r.scan_window))
        out.append((size - r.scan_tail, size))
        return out

    def text_unit(self, src: _Src, chain, depth, *, table_context: bool = False) -> None:
        """Text: ids everywhere, JSON and HTML by structure, encoded runs, records and tables in windows."""
        if src.size == 0 or self.raw_found:
            return
        if depth > self.r.max_depth:
            self.too_deep(src, chain)
            return
        data = self.whole(src) if src.size <= self.r.full_bytes else None
        if data is not None:
            self.ids(data, chain, table=table_context)
            stripped = data[:256].lstrip(b"\xef\xbb\xbf \t\r\n")
            if stripped[:1] in (b"{", b"[") and self.json(data, chain, depth):
                return
            self.encoded(data, chain, depth)
        else:
            for a, b in self.scan_ranges(src.size):
                piece = src.read(a, b)  # each window read once, for ids and encoded runs
                self.ids(piece, chain, table=table_context)
                self.encoded(piece, chain, depth)
                if self.raw_found:
                    return
        if not self.raw_found:
            self.structure(src, data, chain)

    def structure(self, src: _Src, data: bytes | None, chain) -> None:
        """Records and tables in the windows of a text: head, evenly spaced, tail, and around hints."""
        r = self.r
        size = src.size
        if size <= r.head_bytes + r.tail_bytes + r.windows * r.window_bytes:
            spans = [(0, size)]
        else:
            spans = [(0, r.head_bytes)]
            step = (size - r.head_bytes - r.tail_bytes) // (r.windows + 1)
            for k in range(1, r.windows + 1):
                a = r.head_bytes + k * step
                spans.append((a, a + r.window_bytes))
            spans.append((size - r.tail_bytes, size))
            if data is not None:
                spans += self.hinted(data, spans)
        for a, b in spans:
            piece = data[a:b] if data is not None else src.read(a, b)
            self.window(piece, chain, a > 0, b < size)
            if self.raw_found:
                return

    def hinted(self, data: bytes, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Windows around signatures of raw records that lie outside the other windows."""
        out: list[tuple[int, int]] = []
        lo, hi = self.r.head_bytes, len(data) - self.r.tail_bytes
        for hint in _HINTS:
            if data.find(hint[2:3], lo, hi) < 0:
                continue  # no '/' (or '|') at all: found at memchr speed, unlike "\t0" + ...
            at = lo
            for _ in range(4):
                at = data.find(hint, at, hi)
                if at < 0:
                    break
                if not any(a <= at < b for a, b in spans + out):
                    out.append((max(0, at - 4 * KIB), at + 60 * KIB))
                at += 64 * KIB
        return out

    def window(self, piece: bytes, chain, partial_head: bool, partial_tail: bool) -> None:
        """One window of text: raw records (the sniffer) and tables (genotypes, clinical rows)."""
        text = piece.decode("utf-8", "replace")
        if "<t" in text or "<T" in text or "&#9;" in text:
            if re.search(r"(?i)<(table|td|tr|pre)\b", text[: 1 * MIB]) or "&#9;" in text:
                converted = _html_text(text)
                self.lines_of(converted, (*chain, ("HTML", "HTML")), False, False)
                if self.raw_found:
                    return
        self.lines_of(text, chain, partial_head, partial_tail)


def _html_text(text: str) -> str:
    text = re.sub(r"(?i)</t[dh]>\s*<t[dh]\b[^>]*>", "\t", text)
    text = re.sub(r"(?i)</tr>|<br\s*/?>|</p>|</li>|</div>|</h\d>", "\n", text)
    text = re.sub(r"<[^>]*>", "", text)
    return html.unescape(text)
