"""The clinical-rows rule: per-person rows of clinical attributes or of the cohort's columns."""

from __future__ import annotations

import re
from collections import Counter

from .cells import _MISSING, _NUMBER
from .verdict import CLINICAL_ROWS

_SPLIT_WORDS = re.compile(r"[\s,;|\"'\[\](){}<>=]+")
_STOP_WORDS = frozenset(
    "of and the with without other type disease disorder unspecified due from in on to by "
    "for not acute chronic".split()
)
_ICD10 = re.compile(r"^[a-z][0-9]{2}(?:\.[0-9]{1,2})?$")
_DELIMITERS = bytes(32 if chr(c) in ",;|\"'[](){}<>=" else c for c in range(256))
_ICD10_BYTES = re.compile(rb"^[a-z][0-9]{2}(?:\.[0-9]{1,2})?$")
_WORD_BYTES = frozenset(bytes([c]) for c in b"abcdefghijklmnopqrstuvwxyz0123456789_-")


class Clinical:
    """Part of `_Scan`: clinical vocabulary in rows, and values under the cohort's columns."""

    def vocabulary_columns(self, data: bytes) -> int:
        """How many clinical columns have at least min_person_rows words in `data` (lower-cased)."""
        tokens = data.translate(_DELIMITERS).split()
        present = set(tokens)
        self.tokens = present  # the words of the last table's text (value_table's prefilter)
        words = self.r._word_bytes
        per_column: Counter = Counter()
        for w in present & words.keys():
            per_column[words[w]] += tokens.count(w)
        need = self.r.min_person_rows
        if sum(1 for n in per_column.values() if n >= need) == 1 and "icd10" not in per_column:
            codes = [
                t
                for t in present
                if len(t) in (3, 5, 6) and t[1:3].isdigit() and _ICD10_BYTES.match(t)
            ]
            per_column["icd10"] = sum(tokens.count(t) for t in codes[:64])
        return sum(1 for n in per_column.values() if n >= need)

    def clinical_row(self, line: str) -> tuple | None:
        """(key, vocabulary columns, holds a count) of a line naming >= 2 clinical columns."""
        words = [w for w in _SPLIT_WORDS.split(line.lower()) if w]
        if len(words) < 2 or len(words) > 64:
            return None
        cols = set()
        key = []
        for w in words:
            col = self.r._words.get(w)
            if col is None and 3 <= len(w) <= 6 and _ICD10.match(w):
                col = "icd10"
            if col is not None:
                cols.add(col)
            if not _NUMBER.match(w):
                key.append(w)
        if len(cols) < 2:
            return None
        # a count is one of the last two cells (n, then a share perhaps), not the row index
        tail = [int(w) for w in words[-2:] if w.isdigit() and w is not words[0] and len(w) < 10]
        return tuple(key), cols, (tail[-1] if tail else None)

    def person_block(self, block: list[tuple]) -> bool:
        """Consecutive clinical lines are person rows, not a table of counts?

        A count table lists each combination once; person rows repeat one.
        Rows that are all distinct are person rows when they carry three
        attributes or more and no column of counts: integers >= 1 at the end
        of most rows, some >= 2 (a 0/1 case status is not a count).
        """
        if len(block) < self.r.min_person_rows:
            return False
        keys = [k for k, _, _ in block]
        if len(set(keys)) < len(keys):
            return True
        mean_cols = sum(len(c) for _, c, _ in block) / len(block)
        tails = [t for _, _, t in block if t is not None]
        counted = len(tails) * 5 >= len(block) * 4 and min(tails) >= 1 and max(tails) >= 2
        return mean_cols >= 3 and not counted

    def value_table(self, data: bytes, chain) -> None:
        """Per-person values under a header of the cohort's table columns (phenotypes without ids).

        A header is a line whose cells are mostly columns of clinical.tsv or phenotypes.tsv
        and none a number; its rows have as many cells (or one more, an index), and under
        each known column a value of its levels, a number for a quantitative trait, or
        missing. More than 10 such rows are per-person rows, unless the known categorical
        cells never repeat a combination (a table of counts or means per stratum) or the
        index labels are all distinct words (a summary per group).
        """
        columns = self.r._columns
        for k, m in enumerate(self.r._column_rx.finditer(data)):
            if k >= 64:
                return
            if m.start() and data[m.start() - 1 : m.start()] in _WORD_BYTES:
                continue  # part of a longer name
            start = data.rfind(b"\n", 0, m.start()) + 1
            end = data.find(b"\n", m.end())
            end = len(data) if end < 0 else end
            line = data[start:end].decode("utf-8", "replace")
            sep = "\t" if "\t" in line else "," if "," in line else None
            header = [c.strip(" '\"\r") for c in line.split(sep)]
            header = [c for c in header if c] if sep is None else header
            known = [columns.get(c, 0) != 0 for c in header]
            if len(header) > 64 or sum(known) * 2 < len(header):
                continue
            if any(_NUMBER.match(c) for c in header):
                continue
            rows = 0
            index: list[str] = []
            keys: list[tuple] = []
            for row in data[end + 1 :].split(b"\n", self.r.max_table_rows)[: self.r.max_table_rows]:
                if not row.strip():
                    continue  # blank lines (HTML made text has many) do not end the table
                cells = [c.strip(" '\"\r") for c in row.decode("utf-8", "replace").split(sep)]
                cells = [c for c in cells if c] if sep is None else cells
                if len(cells) == len(header) + 1:
                    index.append(cells[0])
                    cells = cells[1:]
                elif len(cells) != len(header):
                    break
                key = []
                for name, value in zip(header, cells, strict=True):
                    levels = columns.get(name, 0)
                    if levels == 0 or value in _MISSING:
                        continue
                    if levels is None:
                        if not _NUMBER.match(value):
                            break
                    elif value not in levels:
                        break
                    else:
                        key.append(value)
                else:
                    rows += 1
                    keys.append(tuple(key))
                    continue
                break
            if rows <= 10:
                continue
            if any(keys) and len(set(keys)) == len(keys):
                continue  # each combination once: counts or means per stratum
            if index and len(set(index)) == len(index) and not any(map(_NUMBER.match, index)):
                continue  # labelled groups, one row each
            names = ", ".join(c for c, kn in zip(header, known, strict=True) if kn)
            self.hit(
                CLINICAL_ROWS,
                f"{rows} rows of per-person values under the cohort's columns ({names})",
                f"コホートの列（{names}）の下の個人ごとの値 {rows} 行",
                rows,
                chain,
            )
            return

    def columns_to_rows(self, strings: list[str]) -> list[list[str]] | None:
        """Rows from strings stored a column at a time (a pickled or JSON DataFrame)."""
        runs: list[tuple[str, list[str]]] = []
        for s in strings[:200_000]:
            col = self.r._values.get(s.casefold().strip()) if len(s) < 128 else None
            if col is not None and runs and runs[-1][0] == col:
                runs[-1][1].append(s)
            elif col is not None:
                runs.append((col, [s]))
            else:
                runs.append(("", []))
        by_length: dict[int, list[list[str]]] = {}
        for col, values in runs:
            if col and len(values) >= self.r.min_person_rows:
                by_length.setdefault(len(values), []).append(values)
        for values in by_length.values():
            if len(values) >= 2:
                return [list(r) for r in zip(*values, strict=True)]
        return None
