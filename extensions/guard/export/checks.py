"""The automatic checks of a frozen file: one CheckResult for each of contracts CHECKS.

- `kind`: the suffix is one the platform lets out, and the content agrees with it
  (kinds.py);
- `size`: within `max_file_bytes` (a file over it is not frozen at all: freeze.py);
- `recogniser`: the egress gate's recogniser, with the site's cohort, finds nothing
  individual-level: no raw records, no person named, no per-person rows, no genotype
  matrix, nothing it cannot read (opaque content may hide any of those);
- `disclosure`: the tables of the file keep the platform's small-count rules
  (disclosure.py); a file that is not a table passes with "not a table".

Each check reads within a bound on memory, whatever the file's size (bounded.py): the
kind from the file's head, the recogniser in windows, the tables a row at a time. What a
check cannot read within its bound fails it, saying what was not checked.

Details are short and say what was found and where, for the reviewer.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

from ...contracts.export import CHECKS, CheckResult, ExportRules
from ..recognise import Cohort, Recogniser
from . import bounded, disclosure, kinds
from .bounded import TooLarge
from .tables import Unread, tables_of

log = logging.getLogger("visiting.export")


class FileChecks:
    """The checks of one request's files, with the site's rules and recogniser."""

    def __init__(self, rules: ExportRules, recogniser: Recogniser):
        self.rules = rules
        self.recogniser = recogniser
        #: the last file's sniff (its inputs: the file as it was, by path, name, inode, size
        #: and mtime, and the JSON bound; and the result or the TooLarge it raised): the freeze asks for a file's media type and
        #: its kind check one after the other, and a JSON file's sniff parses it whole
        self._sniffed: tuple[tuple, tuple | TooLarge] | None = None

    def _sniff(self, path: Path, name: str) -> tuple[bool, str, str]:
        """kinds.sniff of `path`, once per file as it is."""
        st = os.stat(path)
        key = (str(path), name, st.st_ino, st.st_size, st.st_mtime_ns, bounded.JSON_BUDGET)
        if self._sniffed is None or self._sniffed[0] != key:
            try:
                self._sniffed = (key, kinds.sniff(path, name))
            except TooLarge as e:
                self._sniffed = (key, e)
        result = self._sniffed[1]
        if isinstance(result, TooLarge):
            raise result
        return result

    @classmethod
    def for_site(cls, rules: ExportRules, data_root: str, datasets: list[str] | None = None):
        """The checks with a cohort learnt from the datasets mounted at `data_root`, as the
        egress gate learns it (every dataset folder there, or the ones named)."""
        return cls(rules, Recogniser(Cohort.from_data(data_root, datasets)))

    def __call__(self, path: Path, name: str, size: int) -> tuple[CheckResult, ...]:
        results = {
            "kind": self.kind(path, name),
            "size": self.size(size),
            "recogniser": self.recognise(path, name),
            "disclosure": self.disclosure(path, name),
        }
        return tuple(results[c] for c in CHECKS)

    def media_type(self, path: Path, name: str) -> str:
        try:
            return self._sniff(path, name)[2]
        except TooLarge:  # a JSON document not parsed: shown as text, its kind check failed
            return "text/plain"

    def kind(self, path: Path, name: str) -> CheckResult:
        suffix = Path(name).suffix.lower()
        allowed = {s.lower() for s in self.rules.allowed_suffixes}
        if suffix not in allowed:
            shown = f"'{suffix}'" if suffix else "no suffix"
            return CheckResult("kind", False, f"{shown} is not a kind the platform lets out")
        try:
            ok, what, _ = self._sniff(path, name)
        except TooLarge as e:
            return CheckResult("kind", False, f"{suffix} file not checked: {e}")
        if ok:
            return CheckResult("kind", True, f"{suffix} file: {what}")
        return CheckResult("kind", False, f"named {suffix} but the content is {what}")

    def size(self, size: int) -> CheckResult:
        limit = self.rules.max_file_bytes
        if size > limit:
            return CheckResult("size", False, f"{size} bytes, over the limit of {limit} bytes")
        return CheckResult("size", True, f"{size} bytes (limit {limit})")

    def recognise(self, path: Path, name: str) -> CheckResult:
        try:
            verdict = self.recogniser.file(path, name=name)
        except Exception as e:  # a reader's bug must not pass a file
            log.exception("the recogniser failed on %s", name)
            return CheckResult("recogniser", False, f"could not be read: {type(e).__name__}")
        if verdict.kind is None and not verdict.people and not verdict.opaque:
            return CheckResult("recogniser", True, "no individual-level data")
        detail = verdict.describe_en()
        n = len(verdict.people)
        if n and verdict.kind is not None:
            detail += f"; names {n} {'person' if n == 1 else 'people'} of the cohort"
        elif n:
            detail = f"names {n} {'person' if n == 1 else 'people'} of the cohort ({detail})"
        return CheckResult("recogniser", False, detail[:500])

    def disclosure(self, path: Path, name: str) -> CheckResult:
        try:
            tables = tables_of(path, name)
            if tables is None:
                return CheckResult("disclosure", True, "not a table")
            if not tables:
                return CheckResult("disclosure", True, "no table found")
            checked = [(t, disclosure.check_table(t, self.rules)) for t in tables]
        except TooLarge as e:
            return CheckResult("disclosure", False, f"not checked: {e}"[:300])
        except (OSError, UnicodeDecodeError, ValueError, csv.Error, Unread) as e:
            return CheckResult("disclosure", False, f"the table could not be read: {e}"[:300])
        findings = disclosure.Findings()
        unread: dict[str, list[str]] = {}  # why -> the tables it stopped
        for table, c in checked:
            findings.extend(c.findings)
            if c.unread:
                unread.setdefault(c.unread, []).append(table.where or name)
        if unread:
            head = "; ".join(
                f"{why}, the rest not checked: {', '.join(where)}" for why, where in unread.items()
            )
            rest = f"; {disclosure.summary(findings)}" if findings else ""
            return CheckResult("disclosure", False, (head + rest)[:1000])
        if findings:
            return CheckResult("disclosure", False, disclosure.summary(findings)[:1000])
        rows = sum(c.rows for _, c in checked)
        what = "1 table" if len(tables) == 1 else f"{len(tables)} tables"
        return CheckResult("disclosure", True, f"{what}, {rows} rows: within the rules")
