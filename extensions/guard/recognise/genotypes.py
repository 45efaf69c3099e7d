"""The genotype-matrix rule: many cells of genotype codes or dosages over many people."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from .cells import _MISSING, _cells
from .content import KIB

_DOSAGE = re.compile(r"^(?:[0-2](?:\.[0-9]*)?|\.[0-9]+)$")
_CODE_BYTES = b"0123456789.-+ \t,;|[]()'\"\r:na<>"  # what a line of genotype codes is made of

# Which lines may change the genotype matrix.
# `_Matrix.add` stops at a row's third label when the row has fewer than 20 cells, and adds
# nothing. `_GT_CANDIDATE` proves that at C speed for most lines of results (a regex over the
# whole text instead of a Python parse of each line): a line is skipped when it splits (as
# `_cells` splits it: on tabs, else commas, pipes or semicolons when there are two, else on
# whitespace) into fewer than 20 fields of which three begin, after the characters `_cells`
# strips, with a character no genotype code begins with (codes are 0, 1, 2, dosages in [0, 2],
# -1, na, nan, <na>, none, null, n/a, '.', './.', '.|.'; a label beginning so is never one).
# Lines longer than the 64 KiB `_cells` reads, and whitespace-split lines that are not ASCII,
# are never skipped. Every other line takes the full parse, so the matrix is the one the full
# parse of every line builds (tests/unit/extensions/guard/test_recognise.py compares them).
_GT_FIRST = rb"\-n<.012"
_GT_STRIP = rb" '\"\[\]\(\)\{\}"  # _STRIP_CELL less the tab
_GT_WS = rb" \t\r\x0b\x0c\x1c-\x1f"  # what str.split() splits an ASCII line on, but newlines


def _gt_skip_fields(sep: bytes) -> bytes:
    f = rb"[^\n" + sep + rb"]*+"
    bad = rb"[" + _GT_STRIP + rb"]*+[^\n" + sep + _GT_STRIP + _GT_FIRST + rb"]"
    first = rb"(?>" + bad + rb"|[^\n]*?" + sep + bad + rb")"
    later = rb"(?>[^\n]*?" + sep + bad + rb")"
    return rb"(?!" + (f + sep) * 19 + rb")" + first + later + later


def _gt_skip_words() -> bytes:
    w = rb"[" + _GT_WS + rb"]"
    f = rb"[^\n" + _GT_WS + rb"]"
    strip = rb"'\"\[\]\(\)\{\}"
    bad = rb"[" + strip + rb"]*+[^\n" + _GT_WS + strip + _GT_FIRST + rb"]"
    first = rb"(?>" + w + rb"*+" + bad + rb"|[^\n]*?" + w + bad + rb")"
    later = rb"(?>[^\n]*?" + w + bad + rb")"
    return (
        rb"(?![^\n]*[\x80-\xff])(?!"
        + (w + rb"*+" + f + rb"++") * 20
        + rb")"
        + first
        + later
        + later
    )


_GT_COMMAS = rb"(?=[^\n,]*+,[^\n,]*+,)"
_GT_PIPES = rb"(?=[^\n|]*+\|[^\n|]*+\|)"
_GT_SEMIS = rb"(?=[^\n;]*+;[^\n;]*+;)"
_GT_SKIP = (
    rb"(?![^\n]{65537})(?:(?=[^\n\t]*+\t)" + _gt_skip_fields(rb"\t")
    + rb"|(?![^\n]*\t)(?:" + _GT_COMMAS + _gt_skip_fields(rb",")
    + rb"|(?!" + _GT_COMMAS + rb")(?:" + _GT_PIPES + _gt_skip_fields(rb"\|")
    + rb"|(?!" + _GT_PIPES + rb")(?:" + _GT_SEMIS + _gt_skip_fields(rb";")
    + rb"|(?!" + _GT_SEMIS + rb")" + _gt_skip_words() + rb"))))"
)  # fmt: skip
_GT_FIRST_LINE = re.compile(rb"(?!" + _GT_SKIP + rb")")
_GT_CANDIDATE = re.compile(rb"\n(?!" + _GT_SKIP + rb")")
# the prefilters (here and in sniff/records.py) can be switched off to compare with the full parse
PREFILTER = True


def _code(cell: str, cache: dict) -> tuple | None:
    """A cell as a genotype code: ('=', level) exactly 0/1/2, ('~', level) a dosage within
    0.1 of a level, ('f', None) another number in [0, 2], ('m', None) missing; None if not one."""
    c = cache.get(cell, 0)
    if c != 0:
        return c
    low = cell.lower()
    if low in ("0", "1", "2"):
        c = ("=", int(low))
    elif low in _MISSING:
        c = ("m", None)
    elif len(low) <= 12 and _DOSAGE.match(low):
        v = float(low)
        level = round(v)
        if v > 2:
            c = None
        elif v == level:
            c = ("=", level)
        else:
            c = ("~", level) if abs(v - level) <= 0.1 else ("f", None)
    else:
        c = None
    if len(cache) < 4096:
        cache[cell] = c
    return c


@dataclass
class _Matrix:
    """Genotype-code cells seen in one table, for the genotype-matrix rule.

    Calls are 0/1/2 (missing -1, NA, nan, .); dosages are numbers in [0, 2]
    that cluster near those levels. A table of frequencies, p-values or
    standard errors spreads over [0, 1] or sits at one level (rare variants):
    it fails the clustering or the second-level test.
    """

    wide: int = 0  # rows holding >= 20 codes
    narrow: int = 0  # rows that are codes but for <= 2 label cells, >= 3 codes
    near: int = 0  # cells at a level, exactly or within 0.1
    far: int = 0  # numbers in [0, 2] away from every level
    exact: Counter = field(default_factory=Counter)  # level -> cells exactly at it
    close: Counter = field(default_factory=Counter)  # level -> dosages within 0.1 of it
    widest: int = 0
    labels: list = field(default_factory=list)  # the label cells of each row of codes

    def add(self, cells: list[str], cache: dict) -> None:
        n = len(cells)
        if n < 3:
            return
        codes = missing = other = 0
        # label cells a row may have: a wide row (>= 20 codes) max(6, n // 10); a narrow one 2,
        # so a row too short to be wide stops at its third label (most rows of results)
        allowed = max(6, n // 10) if n >= 20 else 2
        row: list[tuple] = []
        labels: list[str] = []
        for cell in cells[:4096]:
            c = _code(cell, cache)
            if c is None:
                other += 1
                if other > allowed:
                    return  # not a row of codes: stop reading it
                labels.append(cell.lower())
            else:
                codes += 1
                if c[0] == "m":
                    missing += 1
                else:
                    row.append(c)
        if codes < 3 or missing * 2 > codes:
            return
        if codes >= 20 and other <= max(6, n // 10):
            self.wide += 1
        elif other <= 2:
            self.narrow += 1
        else:
            return
        for kind, level in row:
            if kind == "=":
                self.exact[level] += 1
                self.near += 1
            elif kind == "~":
                self.close[level] += 1
                self.near += 1
            else:
                self.far += 1
        self.widest = max(self.widest, codes)
        self.labels.append(tuple(labels[:4]))

    def found(self) -> bool:
        if not (self.wide >= 3 or self.narrow >= 20):
            return False
        if self.near < 0.7 * (self.near + self.far):
            return False
        if len(self.exact) >= 2 and not self.close:
            return True  # calls: two levels present are enough (rare variants are mostly 0)
        levels = sorted((self.exact + self.close).values(), reverse=True)
        return len(levels) >= 2 and levels[1] >= 0.05 * (self.near + self.far)


class Genotypes:
    """Part of `_Scan`: the genotype-code cells of a table's lines."""

    def genotype_lines(self, data: bytes) -> _Matrix:
        """The genotype-code cells of the lines that are almost only numbers and separators."""
        matrix = _Matrix()
        cache: dict = {}
        limit = self.r.max_table_rows * 2
        if PREFILTER:
            lines = _gt_candidate_lines(data, limit)
        else:
            lines = data.split(b"\n")[:limit]
        for line in lines:
            n = len(line)
            # the cheap test first: a line of results keeps its names and exponents here
            if n < 5 or len(line.translate(None, _CODE_BYTES)) * 8 > n:
                continue
            matrix.add(_cells(line[: 64 * KIB].decode("utf-8", "replace")), cache)
        return matrix

    def cross_tabulation(self, labels: list[tuple]) -> bool:
        """Rows of small counts labelled once each by a clinical value (a crosstab of
        region by disease in a small cohort) are a table of counts, not genotypes; rows
        of codes whose clinical labels repeat (sex, then calls) are people's rows."""
        values, words = self.r._values, self.r._words
        labelled = sum(1 for lab in labels if any(c in values or c in words for c in lab))
        return labelled * 2 >= len(labels) and len(set(labels)) == len(labels)


def _gt_candidate_lines(data: bytes, limit: int) -> Iterable[bytes]:
    """The lines among the first `limit` of `data` (split on newlines) that `_GT_CANDIDATE`
    does not rule out, in order."""
    if data.count(b"\n") >= limit:
        rest = data.split(b"\n", limit)[-1]
        data = data[: len(data) - len(rest) - 1]
    if _GT_FIRST_LINE.match(data):
        end = data.find(b"\n")
        yield data if end < 0 else data[:end]
    for m in _GT_CANDIDATE.finditer(data):
        start = m.end()
        end = data.find(b"\n", start)
        yield data[start:] if end < 0 else data[start:end]
