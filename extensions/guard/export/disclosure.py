"""The platform's small-count rules, applied to the tables of a file about to leave.

The same rules the federation's tasks apply to their answers
(extensions/federation/tasks/disclosure.py), read off a results table:

- a **count cell** (a column named n, count, N, cases, controls, n_*, *_n,
  count_*, *_count) above 0 and under `min_cell_count` fails;
- a **minor allele count** (columns ac, mac, ac_*, *_ac, allele_count) under
  `min_minor_allele_count` fails: min(AC, AN - AC) where the table has the
  matching AN column, else the value as it is (an AC alone may be the minor
  one). A count of 0 names no one and passes, as it does for count cells;
- **dominance**: where a table names its contributors (a column site, centre,
  institution, biobank, provider, contributor, person, participant, donor),
  the rows of one stratum (the same values in the other text columns and the
  locus columns) add up to a total; a total whose largest contributor holds
  more than `dominance_share` of it fails. Rows whose contributor is "total",
  "all" or "pooled" are totals themselves, not contributors.

A failure names the table, row (1 = the first row under the header) and column.

The rules read a table a row at a time (`check_table`) and keep only what they add up:
the number of failures and the first few (`Findings`), and per stratum its total and its
largest contributor (`Dominance`, within `MAX_STRATA_BYTES`). So a table costs the same
memory at ten rows and at the 20 million the check reads (tables.MAX_ROWS).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from ...contracts.export import ExportRules
from .tables import Table, Unread

COUNT_COLUMN = re.compile(
    r"^(n|count|counts|cases|controls|n_\w+|\w+_n|count_\w+|\w+_count|num_\w+|n\.\w+)$",
    re.IGNORECASE,
)
ALLELE_COUNT_COLUMN = re.compile(
    r"^(ac|mac|ac_\w+|\w+_ac|mac_\w+|allele_count|minor_allele_count)$", re.IGNORECASE
)
CONTRIBUTOR_COLUMN = re.compile(
    r"^(site|sites|site_id|centre|center|institution|biobank|provider|contributor|person|"
    r"person_id|participant|participant_id|donor|donor_id)$",
    re.IGNORECASE,
)
LOCUS_COLUMN = re.compile(
    r"^(chrom|chr|#chrom|pos|position|bp|start|end|locus|variant|variant_id|rsid|id|ref|alt)$",
    re.IGNORECASE,
)
TOTAL_LABELS = frozenset({"total", "all", "pooled", "overall", "合計", "全体"})
MAX_SHOWN = 3
#: rows that decide whether a column is numeric (then no part of a stratum's key)
NUMERIC_PROBE = 200
MIB = 1024 * 1024
#: what the dominance rule may hold of its strata, by the estimates below (Python objects:
#: a key's tuple and its cells' strings, a stratum's list, its dict slot)
MAX_STRATA_BYTES = 128 * MIB
KEY_BYTES, CELL_BYTES, STRATUM_BYTES = 120, 56, 200


@dataclass(frozen=True)
class Finding:
    where: str
    row: int
    column: str
    what: str

    def text(self) -> str:
        at = f"{self.where}, " if self.where else ""
        return f"{at}row {self.row}, column {self.column}: {self.what}"


def number(cell: str) -> float | None:
    text = cell.strip().replace(",", "") if cell else ""
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return None if value != value else value  # NaN is no count


def _fmt(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


@dataclass
class Checked:
    """What the check of one table found: rows read, failures, and why it stopped early
    ("" when it read the whole table)."""

    rows: int
    findings: Findings
    unread: str = ""


class Findings:
    """Failures in the order they are reported: how many, and only the first MAX_SHOWN
    of them (what the reviewer's detail shows), however many there are."""

    def __init__(self) -> None:
        self.count = 0
        self.shown: list[Finding] = []

    def add(self, finding: Finding) -> None:
        self.count += 1
        if len(self.shown) < MAX_SHOWN:
            self.shown.append(finding)

    def extend(self, other: Findings) -> None:
        self.count += other.count
        self.shown += other.shown[: MAX_SHOWN - len(self.shown)]

    def __bool__(self) -> bool:
        return self.count > 0

    def __len__(self) -> int:
        return self.count


def check_table(table: Table, rules: ExportRules) -> Checked:
    """What in one table breaks the rules, read a row at a time: the small cells, then the
    rare alleles, then the dominant contributors, as if each rule had read the table alone.
    A table cut short (Unread: too long, a row that cannot be read, too many strata to add
    up) keeps what the rows read so far showed, and says why it stopped."""
    header = [h.strip() for h in table.header]
    small, rare = SmallCells(table.where, header, rules), RareAlleles(table.where, header, rules)
    dom = Dominance.of(table, header, rules)
    n, unread = 0, ""
    rows = table.rows()
    try:
        for n, row in enumerate(rows, start=1):
            small.add(n, row)
            rare.add(n, row)
            if dom is not None:
                dom.add(n, row)
    except Unread as e:
        unread = str(e)
    finally:
        rows.close()
    found = Findings()
    found.extend(small.findings)
    found.extend(rare.findings)
    if dom is not None:
        found.extend(dom.findings())
    return Checked(n, found, unread)


class SmallCells:
    """Count cells above 0 and under min_cell_count."""

    def __init__(self, where: str, header: list[str], rules: ExportRules):
        self.where, self.rules = where, rules
        self.columns = [
            (i, h)
            for i, h in enumerate(header)
            if COUNT_COLUMN.match(h) and not ALLELE_COUNT_COLUMN.match(h)
        ]
        self.findings = Findings()

    def add(self, r: int, row: tuple[str, ...]) -> None:
        for i, h in self.columns:
            v = number(row[i]) if i < len(row) else None
            if v is not None and 0 < v < self.rules.min_cell_count:
                what = f"{_fmt(v)}, a count under {self.rules.min_cell_count}"
                self.findings.add(Finding(self.where, r, h, what))


def _an_column(header: list[str], ac: str) -> int | None:
    """The AN column that goes with an AC column (AC_nig -> AN_nig, ac -> an)."""
    want = re.sub(r"^m?ac", "an", ac, flags=re.IGNORECASE)
    want = re.sub(r"_ac$", "_an", want, flags=re.IGNORECASE)
    for i, h in enumerate(header):
        if h.lower() == want.lower() and h.lower() != ac.lower():
            return i
    return None


class RareAlleles:
    """Minor allele counts above 0 and under min_minor_allele_count."""

    def __init__(self, where: str, header: list[str], rules: ExportRules):
        self.where, self.rules = where, rules
        self.columns = [
            (i, h, None if h.lower().startswith("mac") else _an_column(header, h))
            for i, h in enumerate(header)
            if ALLELE_COUNT_COLUMN.match(h)
        ]
        self.findings = Findings()

    def add(self, r: int, row: tuple[str, ...]) -> None:
        least = self.rules.min_minor_allele_count
        for i, h, an_i in self.columns:
            ac = number(row[i]) if i < len(row) else None
            if ac is None:
                continue
            an = number(row[an_i]) if an_i is not None and an_i < len(row) else None
            mac = min(ac, an - ac) if an is not None else ac
            if 0 < mac < least:
                of = f" (AC {_fmt(ac)} of AN {_fmt(an)})" if an is not None else ""
                what = f"minor allele count {_fmt(mac)}{of}, under {least}"
                self.findings.add(Finding(self.where, r, h, what))


class Dominance:
    """Contributors' shares of each stratum's total, added up as the rows come: per count
    column and stratum only the total and the largest contributor (its row, its name and
    its value) are kept, each stratum's key once. What they hold is counted, and a table
    with more strata than `MAX_STRATA_BYTES` holds stops the check (Unread)."""

    def __init__(self, where, header, who, counts, keys, rules):
        self.where, self.header, self.who, self.rules = where, header, who, rules
        self.counts, self.keys = counts, keys
        # per count column: stratum -> [total, row, contributor, its value], first seen first
        self.strata: list[dict[tuple, list]] = [{} for _ in counts]
        self._keys: dict[tuple, tuple] = {}  # each stratum's key held once for all columns
        self.held = 0

    @classmethod
    def of(cls, table: Table, header: list[str], rules: ExportRules) -> Dominance | None:
        """The check for a table that names its contributors, else None. Which columns make
        a stratum depends on its first NUMERIC_PROBE rows, read once before the check."""
        who = next((i for i, h in enumerate(header) if CONTRIBUTOR_COLUMN.match(h)), None)
        if who is None:
            return None
        counts = [
            (i, h)
            for i, h in enumerate(header)
            if i != who and (COUNT_COLUMN.match(h) or ALLELE_COUNT_COLUMN.match(h))
        ]
        candidates = [i for i, h in enumerate(header) if i != who and (i, h) not in counts]
        numeric = _numeric_columns(
            table, [i for i in candidates if not LOCUS_COLUMN.match(header[i])]
        )
        keys = [i for i in candidates if i not in numeric]
        return cls(table.where, header, who, counts, keys, rules)

    def add(self, r: int, row: tuple[str, ...]) -> None:
        who = self.who
        if who >= len(row) or row[who].strip().casefold() in TOTAL_LABELS:
            return
        key = None
        for (i, _), strata in zip(self.counts, self.strata, strict=True):
            if i >= len(row):
                continue
            v = number(row[i])
            if v is None or v <= 0:
                continue
            if key is None:
                key = self._key(tuple(row[k] if k < len(row) else "" for k in self.keys), r)
            s = strata.get(key)
            if s is None:
                self._hold(STRATUM_BYTES + len(row[who]), r)
                strata[key] = [v, r, row[who], v]
                continue
            s[0] += v  # in row order, as sum() of the values would add them
            if v > s[3]:  # the first of equal largest, as max() picks it
                s[1], s[2], s[3] = r, row[who], v

    def _key(self, key: tuple, r: int) -> tuple:
        held = self._keys.get(key)
        if held is None:
            self._hold(KEY_BYTES + sum(CELL_BYTES + len(c) for c in key), r)
            held = self._keys[key] = key
        return held

    def _hold(self, n: int, r: int) -> None:
        self.held += n
        if self.held > MAX_STRATA_BYTES:
            raise Unread(
                f"more strata than the check adds up in {MAX_STRATA_BYTES // MIB} MB by row {r:,}"
            )

    def findings(self) -> Findings:
        out = Findings()
        share = self.rules.dominance_share
        for (_, h), strata in zip(self.counts, self.strata, strict=True):
            for key, (total, r, name, top) in strata.items():
                if total > 0 and top / total > share:
                    stratum = f" for ({', '.join(key)})" if any(key) else ""
                    what = (
                        f"{self.header[self.who]} {name} holds {_fmt(top)} of the total "
                        f"{_fmt(total)}{stratum} ({top / total:.0%}), over the dominance share "
                        f"of {share:.0%}"
                    )
                    out.add(Finding(self.where, r, h, what))
        return out


def _numeric_columns(table: Table, columns: list[int]) -> set[int]:
    """Which of `columns` hold only numbers in the table's first NUMERIC_PROBE rows (empty
    cells aside, and at least one number)."""
    seen: dict[int, bool] = {}  # column -> all its cells so far are numbers
    rows = table.rows()
    try:
        for row in itertools.islice(rows, NUMERIC_PROBE):
            for i in columns:
                if i < len(row) and row[i].strip() and seen.get(i, True):
                    seen[i] = number(row[i]) is not None
    except Unread:  # the check reads as far and says so
        pass
    finally:
        rows.close()
    return {i for i, numeric in seen.items() if numeric}


def summary(findings: Findings) -> str:
    """A short detail for the reviewer: how many, and the first few with where they are."""
    shown = "; ".join(f.text() for f in findings.shown[:MAX_SHOWN])
    more = f"; and {findings.count - MAX_SHOWN} more" if findings.count > MAX_SHOWN else ""
    return f"{findings.count} cell(s) break the disclosure rules: {shown}{more}"
