"""One call of the recogniser: the budgets left, what was found, and the dispatch on content.

`_Scan` is made of one part a kind of content or evidence (a class a module:
`compression.Compression`, `archives.Archives` ...); the parts call one another
through it and report through `hit`, `mark_opaque` and `people`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .archives import Archives
from .arrays import Arrays
from .binary import Binary
from .clinical import Clinical
from .compression import Compression
from .content import KIB, _Budget, _looks_text, _Src
from .documents import Documents
from .encoded import Encoded
from .genotypes import Genotypes
from .media import Media
from .people import People
from .pickles import Pickles
from .records import Records
from .structured import Structured
from .tables import Tables
from .text import Text
from .verdict import _PRIORITY, NOTHING, OWN_KINDS, PEOPLE_TABLE, Link, Verdict, _Hit, _render

if TYPE_CHECKING:
    from .recogniser import Recogniser

log = logging.getLogger(__name__)


_STORE_KINDS = frozenset({"hail-matrixtable", "vcf-zarr"})


class _Scan(
    Compression,
    Archives,
    Structured,
    Arrays,
    Pickles,
    Media,
    Binary,
    Text,
    Encoded,
    Documents,
    Records,
    People,
    Tables,
    Genotypes,
    Clinical,
):
    """One call of the recogniser: the budgets left and what was found so far."""

    def __init__(self, r: Recogniser):
        self.r = r
        self.people: set[bytes] = set()
        self.hits: list[_Hit] = []
        self.opaque: list[tuple[str, str, tuple[Link, ...]]] = []
        self.budget = r.budget_bytes
        self.members = r.max_members
        self.cut = False  # a budget stopped the scan early
        self.tokens: set[bytes] = set()

    def named(self, name: str) -> bool:
        """A file of a Hail MatrixTable or VCF Zarr store, by its place in the store."""
        found = self.r.sniffer.classify_name(name) if name else None
        if found is not None and found.kind in _STORE_KINDS:
            self.sniffed(found, 0, ())
            return True
        return False

    def run(self, fn) -> None:
        try:
            fn()
        except _Budget:
            self.cut = True
        except (RecursionError, MemoryError):
            raise
        except Exception as e:  # a parser's bug on crafted content never stops the gate
            log.debug("recogniser: %s reading content", type(e).__name__, exc_info=True)
            self.mark_opaque(
                f"content that could not be read to its end ({type(e).__name__})",
                f"最後まで読めなかった内容（{type(e).__name__}）",
                (),
            )

    @property
    def raw_found(self) -> bool:
        return any(h.kind not in OWN_KINDS for h in self.hits)

    def hit(self, kind: str, en: str, ja: str, records: int, chain: tuple[Link, ...]) -> None:
        if kind not in self.r.sniffer.disabled:
            self.hits.append(_Hit(kind, en, ja, records, chain))

    def mark_opaque(self, en: str, ja: str, chain: tuple[Link, ...]) -> None:
        self.opaque.append((en, ja, chain))

    def verdict(self) -> Verdict:
        people = frozenset(self.people)
        opaque = bool(self.opaque)
        if self.hits:
            best = min(self.hits, key=lambda h: _PRIORITY.get(h.kind, 0))
            records = sum(h.records for h in self.hits if h.kind == best.kind)
            en, ja = best.en, best.ja
            if best.kind == PEOPLE_TABLE:
                n = len(people)
                en = f"{n} sample id{'s' if n != 1 else ''} of the cohort in a table"
                ja = f"表の中のコホートのサンプルID {n} 件"
            how, how_ja = _render(en, ja, best.chain)
            return Verdict(best.kind, how, how_ja, people, records, opaque)
        if people:
            n = len(people)
            return Verdict(
                None,
                f"{n} sample id{'s' if n != 1 else ''} of the cohort named",
                f"コホートのサンプルID {n} 件の記載",
                people,
                0,
                opaque,
            )
        if opaque:
            how, how_ja = _render(*self.opaque[0])
            return Verdict(None, how, how_ja, people, 0, True)
        return NOTHING

    def allowance(self) -> int:
        """How many bytes the next decoding may produce."""
        if self.budget <= 0:
            raise _Budget
        return min(self.budget, self.r.stream_bytes)

    def spend(self, n: int) -> None:
        self.budget -= n

    def member(self) -> bool:
        self.members -= 1
        return self.members >= 0

    def blob(self, src: _Src, chain: tuple[Link, ...], depth: int, name: str = "") -> None:
        """Any content: by its magic bytes, else as text, else as binary."""
        if src.size == 0 or self.raw_found:
            return
        if depth > self.r.max_depth:
            self.too_deep(src, chain)
            return
        head = src.read(0, 64 * KIB)
        finding = self.r.sniffer.classify_magic(head)
        if finding is not None:
            self.sniffed(finding, 0, chain)
            return
        for handler in (self.compressed, self.archive, self.structured, self.known):
            if handler(src, head, chain, depth, name):
                return
        if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
            data = self.whole(src) or src.read(0, self.r.scan_head)
            text = data.decode("utf-16", "replace").encode("utf-8", "surrogatepass")
            self.text_unit(_Src.of(text), (*chain, ("UTF-16 text", "UTF-16 テキスト")), depth + 1)
        elif _looks_text(head[: 16 * KIB]):
            self.text_unit(src, chain, depth)
        else:
            self.binary(src, head, chain, depth)

    def too_deep(self, src: _Src, chain) -> None:
        if src.size >= self.r.opaque_min_bytes:
            n = self.r.max_depth
            self.mark_opaque(
                f"content nested in more than {n} containers", f"{n} 重を超える入れ子の内容", chain
            )

    def whole(self, src: _Src) -> bytes | None:
        """All of `src` when it is small enough to hold, else None."""
        if src.data is not None:
            return src.data
        if src.size <= self.r.full_bytes:
            return src.read(0, src.size)
        return None
