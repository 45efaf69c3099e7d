"""The cells of a table as every rule reads them: numbers, missing values, id headers."""

from __future__ import annotations

import re

# ids that cannot be told from other tokens of a results table are not scanned for
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?%?$")
_HEADER_CELLS = frozenset(
    {"sample_id", "sample", "samples", "iid", "#iid", "fid", "#fid", "id", "s"}
)
_STRIP_CELL = " \t'\"[](){}"
_MISSING = frozenset({"-1", "na", "nan", "<na>", ".", "none", "null", "n/a", "./.", ".|."})


def _cells(line: str) -> list[str]:
    if "\t" in line:
        parts = line.split("\t")
    elif line.count(",") >= 2:
        parts = line.split(",")
    elif line.count("|") >= 2:
        parts = line.split("|")
    elif line.count(";") >= 2:
        parts = line.split(";")
    else:
        parts = line.split()
    return [c for c in (p.strip(_STRIP_CELL) for p in parts) if c and c != "..."]
