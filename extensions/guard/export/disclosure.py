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
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

from ...contracts.export import ExportRules
from .tables import Table

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


def check_table(table: Table, rules: ExportRules) -> list[Finding]:
    """What in one table breaks the rules; empty when it passes."""
    header = [h.strip() for h in table.header]
    found: list[Finding] = []
    found += small_cells(table, header, rules)
    found += rare_alleles(table, header, rules)
    found += dominance(table, header, rules)
    return found


def small_cells(table: Table, header: list[str], rules: ExportRules) -> list[Finding]:
    out = []
    columns = [
        (i, h)
        for i, h in enumerate(header)
        if COUNT_COLUMN.match(h) and not ALLELE_COUNT_COLUMN.match(h)
    ]
    for r, row in enumerate(table.rows, start=1):
        for i, h in columns:
            v = number(row[i]) if i < len(row) else None
            if v is not None and 0 < v < rules.min_cell_count:
                out.append(
                    Finding(table.where, r, h, f"{_fmt(v)}, a count under {rules.min_cell_count}")
                )
    return out


def _an_column(header: list[str], ac: str) -> int | None:
    """The AN column that goes with an AC column (AC_nig -> AN_nig, ac -> an)."""
    want = re.sub(r"^m?ac", "an", ac, flags=re.IGNORECASE)
    want = re.sub(r"_ac$", "_an", want, flags=re.IGNORECASE)
    for i, h in enumerate(header):
        if h.lower() == want.lower() and h.lower() != ac.lower():
            return i
    return None


def rare_alleles(table: Table, header: list[str], rules: ExportRules) -> list[Finding]:
    out = []
    columns = [
        (i, h, None if h.lower().startswith("mac") else _an_column(header, h))
        for i, h in enumerate(header)
        if ALLELE_COUNT_COLUMN.match(h)
    ]
    for r, row in enumerate(table.rows, start=1):
        for i, h, an_i in columns:
            ac = number(row[i]) if i < len(row) else None
            if ac is None:
                continue
            an = number(row[an_i]) if an_i is not None and an_i < len(row) else None
            mac = min(ac, an - ac) if an is not None else ac
            if 0 < mac < rules.min_minor_allele_count:
                of = f" (AC {_fmt(ac)} of AN {_fmt(an)})" if an is not None else ""
                out.append(
                    Finding(
                        table.where,
                        r,
                        h,
                        f"minor allele count {_fmt(mac)}{of}, under {rules.min_minor_allele_count}",
                    )
                )
    return out


def dominance(table: Table, header: list[str], rules: ExportRules) -> list[Finding]:
    who = next((i for i, h in enumerate(header) if CONTRIBUTOR_COLUMN.match(h)), None)
    if who is None:
        return []
    counts = [
        (i, h)
        for i, h in enumerate(header)
        if i != who and (COUNT_COLUMN.match(h) or ALLELE_COUNT_COLUMN.match(h))
    ]
    keys = [
        i
        for i, h in enumerate(header)
        if i != who
        and (i, h) not in counts
        and (LOCUS_COLUMN.match(h) or not _numeric_column(table, i))
    ]
    out = []
    for i, h in counts:
        strata: dict[tuple, list[tuple[int, str, float]]] = defaultdict(list)
        for r, row in enumerate(table.rows, start=1):
            if max(i, who) >= len(row) or row[who].strip().casefold() in TOTAL_LABELS:
                continue
            v = number(row[i])
            if v is not None and v > 0:
                key = tuple(row[k] if k < len(row) else "" for k in keys)
                strata[key].append((r, row[who], v))
        for key, parts in strata.items():
            total = sum(v for _, _, v in parts)
            r, name, top = max(parts, key=lambda p: p[2])
            if total > 0 and top / total > rules.dominance_share:
                stratum = f" for ({', '.join(key)})" if any(key) else ""
                out.append(
                    Finding(
                        table.where,
                        r,
                        h,
                        f"{header[who]} {name} holds {_fmt(top)} of the total {_fmt(total)}"
                        f"{stratum} ({top / total:.0%}), over the dominance share of "
                        f"{rules.dominance_share:.0%}",
                    )
                )
    return out


def _numeric_column(table: Table, i: int) -> bool:
    values = [row[i] for row in table.rows[:200] if i < len(row) and row[i].strip()]
    return bool(values) and all(number(v) is not None for v in values)


def summary(findings: list[Finding]) -> str:
    """A short detail for the reviewer: how many, and the first few with where they are."""
    shown = "; ".join(f.text() for f in findings[:MAX_SHOWN])
    more = f"; and {len(findings) - MAX_SHOWN} more" if len(findings) > MAX_SHOWN else ""
    return f"{len(findings)} cell(s) break the disclosure rules: {shown}{more}"
