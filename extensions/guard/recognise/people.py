"""People of the cohort named in content: by their ids, in a table or not."""

from __future__ import annotations

import re

from .verdict import PEOPLE_TABLE

_ROW_SPACES = re.compile(rb"\S {2,}\S")


class People:
    """Part of `_Scan`: the cohort's ids found, and whether they are a table's."""

    def ids(self, data: bytes, chain, table: bool = False) -> None:
        cohort = self.r.cohort
        if cohort is None or not data:
            return
        found = cohort.find(data)
        if not found:
            return
        distinct = {d for d, _, _ in found}
        self.people |= distinct
        rows: set[int] = set()
        context = table
        for _d, s, e in found:
            start = data.rfind(b"\n", 0, s) + 1
            rows.add(start)
            if not context:
                end = data.find(b"\n", e)
                line = data[max(start, s - 2048) : min(e + 2048, len(data) if end < 0 else end)]
                context = (
                    b"\t" in line
                    or line.count(b",") >= 2
                    or line.count(b"|") >= 2
                    or b"<td" in line.lower()
                    or len(_ROW_SPACES.findall(line)) >= 2
                )
        if context or len(distinct) >= 2:
            self.hit(PEOPLE_TABLE, "", "", len(rows), chain)
