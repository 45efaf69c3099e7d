"""The tables of a frozen file, as the disclosure check reads them.

- `.csv` and `.tsv`: the file is one table, its first row the header;
- `.json`: each table in the document, as the recogniser reads JSON tables
  (records, rows, columns: pandas' orients);
- `.ipynb`: the tables in the cells' outputs: HTML tables (a DataFrame shown
  in a notebook) and JSON tables of `application/json` outputs.

Anything else has no tables (`tables_of` answers None).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from ..recognise.documents import _json_table

MAX_ROWS = 200_000
MAX_TABLES = 256


@dataclass(frozen=True)
class Table:
    """One table: where it is (for the reviewer), its header and its rows of cells."""

    where: str  # "" for a file that is one table; "cell 3, output 1, table 1" ...
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    #: False when the table has more than MAX_ROWS rows: only the first were read, and the
    #: disclosure check says so instead of passing what it did not read
    complete: bool = True


def tables_of(path: Path, name: str) -> list[Table] | None:
    """The tables of a file, or None when its kind holds none (an image, a text)."""
    suffix = Path(name).suffix.lower()
    if suffix in (".csv", ".tsv"):
        # read row by row: a large table never sits in memory whole
        with path.open(encoding="utf-8-sig", errors="replace", newline="") as f:
            table = delimited(f, "\t" if suffix == ".tsv" else ",")
        return [table] if table else []
    if suffix in (".json", ".ipynb"):
        try:
            doc = json.loads(path.read_text(encoding="utf-8-sig"))
        except (ValueError, UnicodeDecodeError, RecursionError):
            return []
        if suffix == ".ipynb" and isinstance(doc, dict):
            return notebook_tables(doc)
        return json_tables(doc, "")
    return None


def delimited(text, sep: str, where: str = "") -> Table | None:
    """The table of delimited text (a string, or an open file read row by row)."""
    lines = io.StringIO(text) if isinstance(text, str) else text
    rows = []
    complete = True
    for row in csv.reader(lines, delimiter=sep):
        if len(rows) > MAX_ROWS:  # the header and MAX_ROWS rows read; there is more
            complete = False
            break
        if row:
            rows.append(tuple(c.strip() for c in row))
    if not rows:
        return None
    return Table(where, rows[0], tuple(rows[1:]), complete)


def _cell(v) -> str:
    return "" if v is None else str(v)


def json_tables(doc, where: str) -> list[Table]:
    """The JSON tables in a document, walked as the recogniser walks it."""
    out: list[Table] = []
    stack = [doc]
    while stack and len(out) < MAX_TABLES:
        item = stack.pop(0)
        rows = _json_table(item)
        if rows is not None and rows and isinstance(rows[0], list) and _is_header(rows[0]):
            label = f"{where}, JSON table {len(out) + 1}" if where else f"JSON table {len(out) + 1}"
            body = tuple(tuple(_cell(c) for c in r) for r in rows[1 : MAX_ROWS + 1])
            header = tuple(_cell(c) for c in rows[0])
            complete = len(rows) <= MAX_ROWS + 1
            out.append(Table(label.lstrip(", "), header, body, complete))
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(x for x in item if isinstance(x, (dict, list)))
    return out


def _is_header(row: list) -> bool:
    return all(isinstance(c, str) for c in row)


def notebook_tables(nb: dict) -> list[Table]:
    out: list[Table] = []
    for i, cell in enumerate(nb.get("cells") or []):
        if not isinstance(cell, dict):
            continue
        for j, output in enumerate(cell.get("outputs") or []):
            if not isinstance(output, dict):
                continue
            where = f"cell {i + 1}, output {j + 1}"
            data = output.get("data") or {}
            html = data.get("text/html")
            if html:
                html = "".join(html) if isinstance(html, list) else str(html)
                for k, (header, rows) in enumerate(html_tables(html)):
                    out.append(Table(f"{where}, table {k + 1}", header, rows))
            if "application/json" in data:
                out += json_tables(data["application/json"], where)
    return out[:MAX_TABLES]


class _HTMLTables(HTMLParser):
    """Rows of cells of each <table>; a pandas header of two rows (the index's name on the
    second) is merged into one."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tables: list[list[tuple[list[str], bool]]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._in_head = False
        self._head_row = False

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "thead":
            self._in_head = True
        elif tag == "tr" and self.tables:
            self._row, self._head_row = [], self._in_head
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
            span = dict(attrs).get("colspan")
            self._span = int(span) if span and span.isdigit() else 1

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row += ["".join(self._cell).strip()] * max(1, min(self._span, 64))
            self._cell = None
        elif tag == "tr" and self._row is not None and self.tables:
            self.tables[-1].append((self._row, self._head_row))
            self._row = None
        elif tag == "thead":
            self._in_head = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def html_tables(html: str) -> list[tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]]:
    parser = _HTMLTables()
    parser.feed(html)
    out = []
    for rows in parser.tables:
        if not rows:
            continue
        heads = [r for r, head in rows if head] or [rows[0][0]]
        body = (
            [r for r, head in rows if not head]
            if any(h for _, h in rows)
            else [r for r, _ in rows[1:]]
        )
        header = list(heads[0])
        for extra in heads[1:]:  # pandas: the index's name on a second header row
            header = [a or b for a, b in zip(header, extra + [""] * len(header), strict=False)]
        out.append((tuple(header), tuple(tuple(r) for r in body[:MAX_ROWS])))
    return out
