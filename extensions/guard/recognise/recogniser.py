"""The recogniser: its settings and its entry points for bytes, text and files."""

from __future__ import annotations

import os
import re

from ..sniff import Sniffer
from .cells import _HEADER_CELLS, _NUMBER
from .clinical import _SPLIT_WORDS, _STOP_WORDS
from .cohort import DEFAULT_VOCABULARY, Cohort
from .content import KIB, MIB, _Src
from .scan import _Scan
from .verdict import Verdict


class Recogniser:
    """Recognises individual-level data in bytes and text; see the module doc.

    cohort: the people to look for (None: no ids are looked for);
    sniffer: the raw-format rules (its min_records and disabled kinds apply);
    budget_bytes: decoded bytes (decompressed, base64-decoded ...) per call;
    stream_bytes: the most decoded from one stream or member;
    full_bytes: content up to this size is scanned whole for ids and encoded
      runs; bigger content is scanned in windows (scan_head, scan_tail and
      scan_windows evenly spaced windows of scan_window bytes);
    head_bytes, tail_bytes, windows, window_bytes: the windows whose lines
      are parsed for records and tables;
    max_depth, max_members: how deep containers nest, how many members
      (archive members, tables, sheets, outputs) are looked at per call;
    min_person_rows: clinical rows without ids count from this many rows
      (df.head() shows 5);
    opaque_min_bytes: undecodable high-entropy content smaller than this is
      not reported opaque (a hash, a token);
    json_bytes: what parsing a JSON text whole may take (`content.json_cost`'s estimate:
      a 10 MB list of small dicts takes 300 MB); a JSON text over it is read as text.
    """

    def __init__(
        self,
        cohort: Cohort | None = None,
        sniffer: Sniffer | None = None,
        *,
        budget_bytes: int = 64 * MIB,
        stream_bytes: int = 16 * MIB,
        full_bytes: int = 32 * MIB,
        scan_head: int = 8 * MIB,
        scan_tail: int = 2 * MIB,
        scan_windows: int = 32,
        scan_window: int = 256 * KIB,
        head_bytes: int = 256 * KIB,
        tail_bytes: int = 64 * KIB,
        windows: int = 8,
        window_bytes: int = 32 * KIB,
        max_depth: int = 8,
        max_members: int = 256,
        max_table_rows: int = 2000,
        max_table_columns: int = 512,
        min_person_rows: int = 6,
        opaque_min_bytes: int = 1 * KIB,
        sqlite_seconds: float = 2.0,
        json_bytes: int = 192 * MIB,
    ):
        self.cohort = cohort
        self.sniffer = sniffer or Sniffer()
        self.budget_bytes = budget_bytes
        self.stream_bytes = stream_bytes
        self.full_bytes = full_bytes
        self.scan_head = scan_head
        self.scan_tail = scan_tail
        self.scan_windows = scan_windows
        self.scan_window = scan_window
        self.head_bytes = head_bytes
        self.tail_bytes = tail_bytes
        self.windows = windows
        self.window_bytes = window_bytes
        self.max_depth = max_depth
        self.max_members = max_members
        self.max_table_rows = max_table_rows
        self.max_table_columns = max_table_columns
        self.min_person_rows = min_person_rows
        self.opaque_min_bytes = opaque_min_bytes
        self.sqlite_seconds = sqlite_seconds
        self.json_bytes = json_bytes
        vocabulary: dict[str, set[str]] = {k: set(v) for k, v in DEFAULT_VOCABULARY.items()}
        for col, values in (cohort.vocabulary if cohort else {}).items():
            vocabulary.setdefault(col, set()).update(values)
        self._words: dict[str, str] = {}  # a word of a vocabulary value -> its column
        self._values: dict[str, str] = {}  # a whole value -> its column
        for col, values in vocabulary.items():
            for v in values:
                v = v.casefold().strip()
                if not v or _NUMBER.match(v):
                    continue
                self._values.setdefault(v, col)
                words = [w for w in _SPLIT_WORDS.split(v) if w]
                if len(words) == 1:
                    self._words.setdefault(words[0], col)
                else:
                    for w in words:
                        if len(w) >= 4 and w not in _STOP_WORDS and not _NUMBER.match(w):
                            self._words.setdefault(w, col)
        self._word_bytes = {w.encode("utf-8", "replace"): c for w, c in self._words.items()}
        # the columns of the cohort's per-person tables, found in C before any header is read
        self._columns = {
            k.casefold(): v
            for k, v in (cohort.columns if cohort else {}).items()
            if k.strip() and k.casefold() not in _HEADER_CELLS
        }
        self._column_set = frozenset(k.encode("utf-8", "replace") for k in self._columns)
        names = sorted(map(re.escape, self._column_set), key=len, reverse=True)
        # literals first (a lookbehind first makes the engine try every position)
        self._column_rx = re.compile(b"(?:" + b"|".join(names) + rb")(?![\w-])") if names else None

    def bytes(self, data: bytes, name: str = "") -> Verdict:
        """A whole response body, file or websocket binary buffer.

        `name`: its path or file name. Only the sniffer's store rule reads it (a
        file inside `*.mt/` or `*.vcf.zarr/` is part of a store, whatever its
        bytes: chunks are compressed in ways no recogniser reads); the rest is by
        content.
        """
        scan = _Scan(self)
        scan.run(lambda: scan.named(name) or scan.blob(_Src.of(data), (), 0, name))
        return scan.verdict()

    def text(self, text: str) -> Verdict:
        """A kernel output, a terminal chunk, a JSON string."""
        scan = _Scan(self)
        data = text.encode("utf-8", "surrogatepass")
        scan.run(lambda: scan.text_unit(_Src.of(data), (), 0))
        return scan.verdict()

    def file(self, path: str | os.PathLike, name: str = "") -> Verdict:
        """A file on disk, read in windows when it is big (a 1 GiB file costs what a few MB do)."""
        scan = _Scan(self)
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            src = _Src.of(f.read()) if size <= self.full_bytes else _Src(size, f)
            name = name or os.fspath(path)
            scan.run(lambda: scan.named(name) or scan.blob(src, (), 0, name))
        return scan.verdict()
