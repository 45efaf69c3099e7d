"""Reading a frozen file within a bound on memory, whatever its size.

The checks run in a site container beside researchers' servers, with its own memory
limit; a file may be as large as the platform lets out (`max_file_bytes`). So:

- delimited text is read one line at a time, and a line (or a row of quoted lines)
  longer than `MAX_ROW_CHARS` is refused before it is held (`BoundedLines`): a file of
  one endless line would otherwise be read whole;
- a JSON document is parsed whole (the standard library has no streaming parser) only
  when its parse is estimated to fit in `JSON_BUDGET` (`read_json`); the estimate counts
  the structural characters, each of which becomes a Python object (a 10 MB list of
  small dicts takes 300 MB).

What does not fit raises `TooLarge`; a check says so and fails (never passes what it did
not read).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO

from ..recognise.content import json_cost, json_tokens

MIB = 1024 * 1024
#: the longest row of a delimited table (in characters, a quoted row's lines together)
MAX_ROW_CHARS = 1 * MIB
#: what parsing a JSON document may take, by `file_json_cost`'s estimate (the
#: recogniser's own bound is its `json_bytes`, by the same estimate)
JSON_BUDGET = 192 * MIB
BLOCK = 1 * MIB


class TooLarge(ValueError):
    """Content a check cannot read within its bound; the message says which bound."""


class BoundedLines:
    """The lines of a text file for `csv.reader`, refusing a row longer than `limit`
    characters. A row may span lines (a quoted cell with line breaks): the reader of the
    rows calls `row_done` after each row, and the count starts again."""

    def __init__(self, f: TextIO, limit: int | None = None):
        self.f = f
        self.limit = MAX_ROW_CHARS if limit is None else limit
        self.chars = 0

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = self.f.readline(self.limit - self.chars + 1)
        if not line:
            raise StopIteration
        self.chars += len(line)
        if self.chars > self.limit:
            raise TooLarge(f"a row longer than {self.limit:,} characters")
        return line

    def row_done(self) -> None:
        self.chars = 0


def file_json_cost(path: Path) -> int:
    """Roughly the most memory parsing the document at `path` takes (recognise.content's
    `json_cost`), its structural characters counted a block at a time."""
    size, tokens = 0, 0
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            size += len(block)
            tokens += json_tokens(block)
    return json_cost(size, tokens)


def read_json(path: Path, budget: int | None = None):
    """The JSON document at `path` (UTF-8, a BOM allowed); TooLarge when parsing it would
    take more than `budget` (default `JSON_BUDGET`), ValueError when it is not JSON."""
    budget = JSON_BUDGET if budget is None else budget
    cost = file_json_cost(path)
    if cost > budget:
        raise TooLarge(
            f"a JSON document that would take about {cost // MIB:,} MB to parse, "
            f"over the {budget // MIB:,} MB a check may hold"
        )
    return json.loads(Path(path).read_text(encoding="utf-8-sig"))
