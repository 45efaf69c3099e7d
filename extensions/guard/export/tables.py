"""The tables of a frozen file, as the disclosure check reads them.

- `.csv` and `.tsv`: the file is one table, its first row the header;
- `.json`: each table in the document, as the recogniser reads JSON tables
  (records, rows, columns: pandas' orients);
- `.ipynb`: the tables in the cells' outputs: HTML tables (a DataFrame shown
  in a notebook) and JSON tables of `application/json` outputs.

Anything else has no tables (`tables_of` answers None).

A table's rows are read as the check goes, one at a time and at most `MAX_ROWS` of them
(`Table.rows`): a delimited file's rows come from the file and are never held together.
What is not read raises `Unread`, and the check fails saying so instead of passing what
nobody checked. A JSON document is parsed whole within `bounded.JSON_BUDGET`.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from ..recognise.documents import _json_table
from .bounded import BoundedLines, TooLarge, read_json

#: the most rows of one table the disclosure check reads: bounded by the time a freeze
#: may take, not by memory (a row is read, added up and dropped): genome-wide summary
#: statistics of an imputed GWAS (10 to 17 million variants) are read whole, about 45 s
#: a GiB on one core (bench/export.py)
MAX_ROWS = 20_000_000
MAX_TABLES = 256


class Unread(Exception):
    """The rest of a table is not read (the message says why: its length, a row too long
    or unreadable, the check's own bound); the check fails and says so."""


@dataclass(frozen=True)
class Table:
    """One table: where it is (for the reviewer), its header, and where its rows come from."""

    where: str  # "" for a file that is one table; "cell 3, output 1, table 1" ...
    header: tuple[str, ...]
    #: the rows under the header, anew at each call (a file's are read from disk as they
    #: are asked for); iterate them through `rows`, which keeps to MAX_ROWS
    source: Callable[[], Iterable[Sequence[str]]]

    def rows(self) -> Iterator[tuple[str, ...]]:
        """The rows under the header, one at a time, as tuples of cells; Unread after
        MAX_ROWS rows when there is another one."""
        limit = MAX_ROWS  # read when the rows are, so a test may lower it
        it = iter(self.source())
        try:
            for n, row in enumerate(it):
                if n >= limit:
                    raise Unread(f"over {limit:,} rows")
                yield tuple(row)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()


def tables_of(path: Path, name: str) -> list[Table] | None:
    """The tables of a file, or None when its kind holds none (an image, a text).
    TooLarge for a JSON document too large to parse within the bound; Unread for a
    delimited file whose header cannot be read."""

    suffix = Path(name).suffix.lower()
    if suffix in (".csv", ".tsv"):
        table = delimited_file(path, "\t" if suffix == ".tsv" else ",")
        return [table] if table else []
    if suffix in (".json", ".ipynb"):
        try:
            doc = read_json(path)
        except TooLarge:
            raise
        except (ValueError, UnicodeDecodeError, RecursionError):
            return []
        if suffix == ".ipynb" and isinstance(doc, dict):
            return notebook_tables(doc)
        return json_tables(doc, "")
    return None


def delimited_rows(path: Path, sep: str) -> Iterator[tuple[str, ...]]:
    """The non-empty rows of a delimited file, header first, cells stripped, read one at a
    time; Unread for a row longer than bounded.MAX_ROW_CHARS or one csv cannot read."""
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as f:
        lines = BoundedLines(f)
        reader = csv.reader(lines, delimiter=sep)
        n = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except (TooLarge, csv.Error) as e:
                at = f"row {n:,}" if n else "the header"  # rows counted under the header
                raise Unread(f"{at} could not be read ({e})") from None
            lines.row_done()
            if row:
                n += 1
                yield tuple(c.strip() for c in row)


def delimited_file(path: Path, sep: str, where: str = "") -> Table | None:
    """The table of a delimited file (None when it has no row): its header is read now,
    its rows when they are asked for, from the file again."""
    first = delimited_rows(path, sep)
    try:
        header = next(first, None)
    finally:
        first.close()
    if header is None:
        return None
    return Table(where, header, lambda: _body(path, sep))


def _body(path: Path, sep: str) -> Iterator[tuple[str, ...]]:
    rows = delimited_rows(path, sep)
    try:
        next(rows, None)  # the header
        yield from rows
    finally:
        rows.close()


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
            header = tuple(_cell(c) for c in rows[0])
            out.append(Table(label.lstrip(", "), header, _json_rows(rows)))
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(x for x in item if isinstance(x, (dict, list)))
    return out


def _json_rows(rows: list) -> Callable[[], Iterator[tuple[str, ...]]]:
    return lambda: (tuple(_cell(c) for c in r) for r in itertools.islice(rows, 1, None))


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
                    out.append(Table(f"{where}, table {k + 1}", header, _held(rows)))
            if "application/json" in data:
                out += json_tables(data["application/json"], where)
    return out[:MAX_TABLES]


def _held(rows: tuple) -> Callable[[], tuple]:
    return lambda: rows


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
        out.append((tuple(header), tuple(tuple(r) for r in body)))
    return out
