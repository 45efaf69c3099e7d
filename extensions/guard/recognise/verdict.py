"""What a scan found: the kinds this package adds to the sniffer's, and the `Verdict`."""

from __future__ import annotations

from dataclasses import dataclass

from ..sniff import KINDS

# kinds found by this package rather than by the sniffer
PEOPLE_TABLE = "people-table"
GENOTYPE_MATRIX = "genotype-matrix"
CLINICAL_ROWS = "clinical-rows"
OWN_KINDS = frozenset({PEOPLE_TABLE, GENOTYPE_MATRIX, CLINICAL_ROWS})
# the order in which a verdict names what it found: raw records first
_PRIORITY = {GENOTYPE_MATRIX: 1, PEOPLE_TABLE: 2, CLINICAL_ROWS: 3}


@dataclass(frozen=True)
class Verdict:
    """What the recogniser found in one piece of content.

    kind: None when nothing individual-level, else a kind of `sniff.KINDS`;
    how / how_ja: how it was recognised, innermost first ("... inside gzip");
    people: keyed digests of the distinct cohort people named (also when kind is None);
    records: raw records or person rows seen (in the windows read);
    opaque: some content could not be decoded (encrypted, unknown compression, random bytes).
    """

    kind: str | None
    how: str
    how_ja: str
    people: frozenset[bytes] = frozenset()
    records: int = 0
    opaque: bool = False

    def describe_en(self) -> str:
        if self.kind is not None:
            return f"{KINDS[self.kind][0]} ({self.how})"
        if self.people:
            return self.how
        if self.opaque:
            return f"content that cannot be read here ({self.how})"
        return "no individual-level data"

    def describe_ja(self) -> str:
        if self.kind is not None:
            return f"{KINDS[self.kind][1]}（{self.how_ja}）"
        if self.people:
            return self.how_ja
        if self.opaque:
            return f"ここでは読めない内容（{self.how_ja}）"
        return "個人レベルのデータなし"


NOTHING = Verdict(None, "nothing individual-level", "個人レベルのデータなし")
Link = tuple[str, str]  # one container on the way in: (English, Japanese)


@dataclass
class _Hit:
    kind: str
    en: str
    ja: str
    records: int
    chain: tuple[Link, ...]


def _render(en: str, ja: str, chain: tuple[Link, ...]) -> tuple[str, str]:
    how = en + "".join(f", inside {c[0]}" for c in reversed(chain))
    how_ja = "".join(f"{c[1]}の中の" for c in chain) + ja
    return how, how_ja
