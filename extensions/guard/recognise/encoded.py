"""Encoded runs in text: base64, base32, hex, hex dumps and backslash-escaped text."""

from __future__ import annotations

import base64
import binascii
import re
from collections import Counter

from .content import MIB, _Src

_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_"
_RUNS = bytes(
    (ord("a") if c in _B64_ALPHABET else ord("n") if c == 10 else ord("r") if c == 13 else 32)
    for c in range(256)
)
_RUN_MIN = 64
_RUN = re.compile(rb"a{64,}(?:r?na{60,})*(?:r?na+)?")
_HEX = frozenset(b"0123456789abcdefABCDEF")
# a line of a hex dump without offsets (`od -An -t x1`): 4 to 32 hex bytes and nothing else
_BARE_DUMP_LINE = re.compile(rb"(?m)^[ \t]*((?:[0-9a-fA-F]{2} +){3,31}[0-9a-fA-F]{2})[ \t\r]*$")
_MIN_ESCAPES = 16  # `\t` and `\n` in a text before it is read unescaped too


def _unescape(data: bytes) -> bytes:
    """One level of backslash escapes (`\\t`, `\\n`, `\\r`, quotes, `\\\\`) undone, in C."""
    keep = b"\x00\x01\x02" if b"\x00\x01\x02" not in data else None
    if keep:
        data = data.replace(b"\\\\", keep)
    data = data.replace(b"\\t", b"\t").replace(b"\\n", b"\n").replace(b"\\r", b"\r")
    data = data.replace(b"\\'", b"'").replace(b'\\"', b'"')
    return data.replace(keep, b"\\") if keep else data


_HEX_CLASSES = bytes(ord("h") if c in _HEX else 32 if c == 32 else ord("x") for c in range(256))
# a line of a hex dump: its offset, then its columns of hex bytes (one or two bytes a group)
_DUMP_LINE = re.compile(
    rb"(?m)^([0-9a-fA-F]{6,16}):?((?: {1,2}[0-9a-fA-F]{2}(?:[0-9a-fA-F]{2})?(?![0-9a-fA-F])){4,})"
)
_B32 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567=")


class Encoded:
    """Part of `_Scan`: runs of encoded bytes decoded and read again."""

    def encoded(self, data: bytes, chain, depth) -> None:
        """base64, base32 and hex runs of 64 characters or more are decoded and looked at."""
        mapped = data.translate(_RUNS)
        at = mapped.find(b"a" * _RUN_MIN)
        runs = 0
        while at >= 0 and runs < 64:
            m = _RUN.match(mapped, at)
            end = m.end() if m else at + _RUN_MIN
            run = re.sub(rb"\s+", b"", data[at:end])
            runs += 1
            decoded, label = _decode_run(run)
            if decoded is not None and len(decoded) >= 16:
                if len(decoded) > self.allowance():
                    decoded = decoded[: self.allowance()]
                self.spend(len(decoded))
                self.blob(
                    _Src.of(decoded), (*chain, (f"{label} text", f"{label} テキスト")), depth + 1
                )
                if self.raw_found:
                    return
            at = mapped.find(b"a" * _RUN_MIN, end)
        # the C prefilter: hex byte columns (`61 62 63 09` or `6162 6309 6465`) then a dump line
        at = -1
        if b" " in data:
            hexed = data.translate(_HEX_CLASSES)
            at = hexed.find(b"hh hh hh hh")
            if at < 0:
                at = hexed.find(b"hhhh hhhh hhhh")
        if at >= 0 and _DUMP_LINE.search(data, data.rfind(b"\n", 0, at) + 1):
            self.dump(data, chain, depth)
            if self.raw_found:
                return
        elif at >= 0 and _BARE_DUMP_LINE.search(data, data.rfind(b"\n", 0, at) + 1):
            self.bare_dump(data, chain, depth)
            if self.raw_found:
                return
        # a table shown as a string's repr or in JSON-escaped text: tabs and newlines arrive as
        # the two characters `\t` and `\n` (memchr for a backslash, then two counts, in C)
        if b"\\" in data and data.count(b"\\t") + data.count(b"\\n") >= _MIN_ESCAPES:
            self.text_unit(
                _Src.of(_unescape(data)),
                (*chain, ("escaped text", "エスケープされたテキスト")),
                depth + 1,
            )

    def bare_dump(self, data: bytes, chain, depth) -> None:
        """A hex dump without its offsets (`od -An -t x1`, `xxd -p` with spaces): lines of hex
        bytes only, at least three in a row of one width, reassembled and read again."""
        lines = [m.group(1).replace(b" ", b"") for m in _BARE_DUMP_LINE.finditer(data, 0, 16 * MIB)]
        if len(lines) < 3:
            return
        width = Counter(len(h) for h in lines).most_common(1)[0][0]
        if sum(1 for h in lines if len(h) == width) * 2 < len(lines):
            return
        try:
            decoded = binascii.unhexlify(b"".join(h for h in lines if len(h) <= width))
        except binascii.Error:
            return
        decoded = decoded[: self.allowance()]
        self.spend(len(decoded))
        self.blob(_Src.of(decoded), (*chain, ("a hex dump", "16 進ダンプ")), depth + 1)

    def dump(self, data: bytes, chain, depth) -> None:
        """A hex dump (`od -t x1`, `od -A x -t x1z`, `xxd`, `hexdump -C`): its bytes reassembled.

        A line is an offset, columns of hex bytes (1 or 2 a group) and perhaps an ASCII
        column (`|...|`, `>...<`, or after two spaces). Lines count when their offsets step
        by the bytes a line holds (in hex or, od's default, in octal); a line's bytes are
        cut to that many (an ASCII column that starts like hex is not read as bytes).
        """
        lines = []
        for m in _DUMP_LINE.finditer(data, 0, 16 * MIB):
            hexes = m.group(2).replace(b" ", b"")
            if len(hexes) % 2 == 0:
                lines.append((m.group(1), hexes))
            if len(lines) >= 1_000_000:
                break
        if len(lines) < 3:
            return
        width = Counter(len(h) // 2 for _, h in lines).most_common(1)[0][0]
        steps: Counter = Counter()
        for base in (16, 8):
            try:
                offsets = [int(o, base) for o, _ in lines]
            except ValueError:
                continue
            steps.update((base, b - a) for a, b in zip(offsets, offsets[1:], strict=False))
        if steps[(16, width)] * 2 < len(lines) - 1 and steps[(8, width)] * 2 < len(lines) - 1:
            return  # offsets that do not step by a line's bytes: a table of numbers, not a dump
        try:
            decoded = binascii.unhexlify(b"".join(h[: 2 * width] for _, h in lines))
        except binascii.Error:
            return
        decoded = decoded[: self.allowance()]
        self.spend(len(decoded))
        self.blob(_Src.of(decoded), (*chain, ("a hex dump", "16 進ダンプ")), depth + 1)


def _decode_run(run: bytes) -> tuple[bytes | None, str]:
    """A run of text as hex, base32 or base64 (standard or URL-safe), whichever it is.

    The run may start in the middle of a quantum (a terminal chunk starts anywhere in
    `base64 file` output) and end in one (the chunk ends anywhere): its end is cut to a
    whole quantum, and when the run read from its first character is not text and has
    no known magic, the other alignments (2 for hex, 8 for base32, 4 for base64) are
    tried on a sample and the one that reads as text is taken.
    """
    if set(run) <= _HEX:
        return _aligned(run, 2, binascii.unhexlify), "hex"
    body = run.rstrip(b"=")
    if b"=" in body:
        body = body.split(b"=", 1)[0]
    if set(body) <= _B32:
        decoded = _aligned(body, 8, base64.b32decode)
        if decoded is not None:
            return decoded, "base32"
    if b"-" in body or b"_" in body:
        fn = base64.urlsafe_b64decode
    else:
        fn = lambda b: base64.b64decode(b, validate=True)  # noqa: E731
    decoded = _aligned(body, 4, fn)
    return (decoded, "base64") if decoded is not None else (None, "")


# the lengths a quantum's last part may have (hex: none; base32: 0, 2, 4, 5, 7 of 8; base64: not 1)
_QUANTUM_ENDS = {2: (0,), 8: (0, 2, 4, 5, 7), 4: (0, 2, 3)}
_ALIGN_SAMPLE = 1200  # characters of a run tried at another alignment (a multiple of 8)
_TEXT_BYTES = bytes([9, 10, 13, *range(32, 127)])
_MAGIC_STARTS = (b"\x1f\x8b", b"PK\x03\x04", b"BZh", b"\xfd7zXZ", b"\x28\xb5\x2f\xfd",
                 b"\x04\x22\x4d\x18", b"PAR1", b"ARROW1", b"\x93NUMPY", b"\x89PNG",
                 b"SQLite format 3", b"BAM\x01", b"BCF")  # fmt: skip


def _quantum_cut(part: bytes, q: int) -> bytes:
    """`part` cut at its end to whole quanta (and a last part that decodes), padded for base32/64."""
    ends = _QUANTUM_ENDS[q]
    n = len(part)
    while n % q not in ends:
        n -= 1
    part = part[:n]
    return part + b"=" * (-n % q) if q > 2 else part


def _text_score(sample: bytes) -> float:
    """About 2 for ASCII text, 1 and more for other UTF-8 text, 3 for a known magic, below 1 else."""
    if not sample:
        return 0.0
    if sample.startswith(_MAGIC_STARTS) or sample[257:262] == b"ustar":
        return 3.0
    score = 1 - len(sample.translate(None, _TEXT_BYTES)) / len(sample)
    try:
        sample.decode("utf-8")
        score += 1
    except UnicodeDecodeError as e:
        if e.start >= len(sample) - 3:  # a character cut by the sample's end
            score += 1
    return score


def _aligned(body: bytes, q: int, fn) -> bytes | None:
    """`fn` of `body` read from its first character, or from the alignment that reads as text."""
    try:
        decoded = fn(_quantum_cut(body, q))
    except (binascii.Error, ValueError):
        decoded = None
    score = _text_score(decoded[: _ALIGN_SAMPLE * 3 // 4]) if decoded else -1.0
    if score >= 1.5 or len(body) < q + 16:
        return decoded
    best, best_score = 0, score
    for a in range(1, q):
        try:
            s = _text_score(fn(_quantum_cut(body[a : a + _ALIGN_SAMPLE], q)))
        except (binascii.Error, ValueError):
            continue
        if s > best_score + 0.5:
            best, best_score = a, s
    if best == 0:
        return decoded
    try:
        return fn(_quantum_cut(body[best:], q))
    except (binascii.Error, ValueError):
        return decoded
