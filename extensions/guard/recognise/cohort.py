"""The cohort: the people this server may read, held as keyed digests and found in text."""

from __future__ import annotations

import hashlib
import os
import re
import sys
import zlib
from array import array
from bisect import bisect_left
from collections.abc import Iterable
from pathlib import Path

from ...contracts.datasets import CLINICAL, PERSON_TABLES
from .cells import _NUMBER
from .datasets import _MAX_LEVELS, _MAX_VOCABULARY, _columns_of_table, _dataset_files, _ids_of_file

# One key per process: the digests mean nothing outside it, and never leave it.
_KEY = os.urandom(32)


def _digest(token: bytes) -> bytes:
    return hashlib.blake2b(token, digest_size=8, key=_KEY).digest()


_ALNUM = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789")
_MIN_ID_LENGTH = 4
_MAX_PATTERN_GROUPS = 16
_MAX_SHAPES = 16
# values of the clinical columns every cohort has, whatever its clinical.tsv holds
DEFAULT_VOCABULARY: dict[str, frozenset[str]] = {
    "sex": frozenset({"male", "female"}),
    "age_band": frozenset(f"{a}-{a + 9}" for a in range(0, 110, 10)),
}
_SHAPE_TABLE = bytes(
    ord("a") if 97 <= c <= 122 else ord("d") if 48 <= c <= 57 else c for c in range(256)
)


def _shape(token: bytes) -> tuple:
    """Runs of letters ('a', n), digits ('d', n) and single other bytes (byte, 1)."""
    runs: list[list] = []
    for c in token:
        cls = "a" if 97 <= c <= 122 else "d" if 48 <= c <= 57 else c
        if runs and runs[-1][0] == cls and cls in ("a", "d"):
            runs[-1][1] += 1
        else:
            runs.append([cls, 1])
    return tuple((c, n) for c, n in runs)


def _shape_regex(shape: tuple) -> bytes:
    out = []
    for cls, n in shape:
        if cls == "a":
            out.append(b"[a-z]{%d}" % n)
        elif cls == "d":
            out.append(b"[0-9]{%d}" % n)
        else:
            out.append(re.escape(bytes([cls])))
    return b"".join(out)


def _common_prefix(tokens: list[bytes]) -> bytes:
    lo, hi = min(tokens), max(tokens)
    n = 0
    while n < len(lo) and lo[n] == hi[n]:
        n += 1
    return lo[:n]


def _id_patterns(tokens: Iterable[bytes]) -> list[re.Pattern]:
    """Regular expressions that match every id (lower-cased) and little else, fast.

    Ids are grouped by shape and by their first run (`nig` of `nig-000001`); a
    group's pattern is its common literal prefix (never more than an id's length
    less 4, so no id is written out) and then the shape of the rest, so each
    pattern starts with a literal that the regex engine searches for.
    Alternatives of one group share that prefix (the engine factors it out).
    """
    groups: dict[bytes, dict[bytes, list[bytes]]] = {}
    for t in tokens:
        key = t.translate(_SHAPE_TABLE)  # nig-000001 -> aaa-dddddd: the shape, exact lengths
        lead = key[:1]
        run = len(key) - len(key.lstrip(lead)) if lead in (b"a", b"d") else 1
        first = t[: min(run, 2)] if lead == b"d" else t[:run]
        groups.setdefault(first, {}).setdefault(key, []).append(t)
    tail = rb"(?![a-z0-9])"
    if len(groups) <= _MAX_PATTERN_GROUPS:
        out = []
        for by_shape in groups.values():
            alts = []
            for members in by_shape.values():
                # the literal part stops 4 characters short of an id: no id is ever written out
                lcp = _common_prefix(members)[: max(0, len(members[0]) - 4)]
                alts.append(re.escape(lcp) + _shape_regex(_shape(members[0][len(lcp) :])))
            alts.sort(key=len, reverse=True)
            out.append(re.compile(b"(?:" + b"|".join(alts) + b")" + tail))
        return out
    shapes = {_shape(members[0]) for by_shape in groups.values() for members in by_shape.values()}
    if len(shapes) <= _MAX_SHAPES:
        alts = sorted((_shape_regex(s) for s in shapes), key=len, reverse=True)
        return [re.compile(b"(?:" + b"|".join(alts) + b")" + tail)]
    return [re.compile(rb"[a-z0-9](?:[a-z0-9.:-]*[a-z0-9])?" + tail)]


class Cohort:
    """The people this server may read: learnt at gate start from the data mounted at the site.

    Ids are held only as keyed digests (BLAKE2b, 8 bytes, a key drawn once per
    process) in a sorted array, and compared lower-cased. Ids shorter than 4
    characters or that are plain numbers are not held: in a table of results
    they cannot be told from positions and counts (`skipped` counts them).
    `vocabulary` holds the values of clinical.tsv's attribute columns (sex,
    age band, region, disease name, ICD-10), which are not identifying.
    `columns` holds the column names of clinical.tsv and phenotypes.tsv (but the
    id column), each with its levels (at most 64 distinct values) or None (more
    values, all numbers: a quantitative trait).
    """

    def __init__(
        self,
        digests: Iterable[int],
        patterns: list[re.Pattern],
        vocabulary: dict[str, frozenset[str]] | None = None,
        sources: Iterable[str] = (),
        skipped: int = 0,
        columns: dict[str, frozenset[str] | None] | None = None,
    ):
        self._digests = array("Q", sorted(set(digests)))
        self._patterns = patterns
        self.vocabulary: dict[str, frozenset[str]] = dict(vocabulary or {})
        self.sources: tuple[str, ...] = tuple(sources)
        self.skipped = skipped
        self.columns: dict[str, frozenset[str] | None] = dict(columns or {})

    # -- building ------------------------------------------------------------

    @classmethod
    def from_ids(
        cls,
        ids: Iterable[str],
        vocabulary: dict[str, Iterable[str]] | None = None,
        columns: dict[str, Iterable[str] | None] | None = None,
    ) -> Cohort:
        """A cohort of these ids (tests, benchmarks); `vocabulary`: column -> values;
        `columns`: a per-person table's column -> its levels, or None for numbers."""
        cohort = cls._build(ids, vocabulary or {}, ())
        cohort.columns = {
            name.casefold(): None if levels is None else frozenset(v.casefold() for v in levels)
            for name, levels in (columns or {}).items()
        }
        return cohort

    @classmethod
    def from_data(
        cls, root: str | os.PathLike = "/data", datasets: list[str] | None = None
    ) -> Cohort:
        """The people of the datasets under `root` (every folder in it, or the ones named).

        Read from each dataset folder (and folders one level below): the first
        column of clinical.tsv and phenotypes.tsv, the sample columns of VCF and
        BCF headers (*.vcf.gz, *.vcf.bgz, *.vcf, *.bcf; the header only), PLINK
        .fam (FID and IID) and .psam (IID, FID) files. A file that cannot be
        read is skipped; `sources` lists the files read.
        """
        root = Path(root)
        if datasets is None:
            try:
                folders = sorted(
                    p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                )
            except OSError:
                folders = []
            if (root / CLINICAL).is_file():
                folders.insert(0, root)
        else:
            folders = [root / d for d in datasets]
        ids: list[str] = []
        vocabulary: dict[str, set[str]] = {}
        sources: list[str] = []
        columns: dict[str, list] = {}
        for folder in folders:
            for path in _dataset_files(folder):
                try:
                    found = _ids_of_file(path, vocabulary)
                    if path.name.lower() in PERSON_TABLES:
                        _columns_of_table(path, columns)
                except (OSError, ValueError, EOFError, zlib.error):
                    continue
                ids.extend(found)
                sources.append(str(path))
        cohort = cls._build(ids, vocabulary, sources)
        for name, (levels, numbers) in columns.items():
            if len(levels) <= _MAX_LEVELS:
                cohort.columns[name] = frozenset(levels)
            elif numbers:
                cohort.columns[name] = None  # a quantitative trait: its values are numbers
        return cohort

    @classmethod
    def _build(cls, ids: Iterable[str], vocabulary: dict, sources: Iterable[str]) -> Cohort:
        tokens: set[bytes] = set()
        skipped = 0
        for i in ids:
            t = str(i).strip().lower().encode("utf-8", "surrogatepass")
            if len(t) < _MIN_ID_LENGTH or _NUMBER.match(t.decode("utf-8", "replace")):
                skipped += 1
                continue
            tokens.add(t)
        digests = [int.from_bytes(_digest(t), "big") for t in tokens]
        patterns = _id_patterns(tokens) if tokens else []
        vocab = {
            col: frozenset(v.casefold() for v in values if v)
            for col, values in vocabulary.items()
            if len(values) <= _MAX_VOCABULARY
        }
        return cls(digests, patterns, vocab, sources, skipped)

    # -- asking --------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._digests)

    def __contains__(self, sample_id: str) -> bool:
        d = _digest(str(sample_id).strip().lower().encode("utf-8", "surrogatepass"))
        return self._has(int.from_bytes(d, "big"))

    @property
    def nbytes(self) -> int:
        """Memory held for the ids: the digest array and the compiled patterns' sources."""
        return sys.getsizeof(self._digests) + sum(
            sys.getsizeof(p.pattern) + 200 for p in self._patterns
        )

    def _has(self, value: int) -> bool:
        a = self._digests
        i = bisect_left(a, value)
        return i < len(a) and a[i] == value

    def people_in(self, text: str) -> set[bytes]:
        """Keyed digests of the cohort's people named in `text`."""
        return {d for d, _, _ in self.find(text.encode("utf-8", "surrogatepass"))}

    def find(self, data: bytes, limit: int = 1_000_000) -> list[tuple[bytes, int, int]]:
        """(digest, start, end) of each cohort id in `data`, compared lower-cased.

        An id counts where it is not part of a longer word: `'NIG-000001'`,
        `<td>NIG-000001</td>` and PLINK's `NIG-000001_NIG-000001` all name it.
        """
        if not self._patterns or not data:
            return []
        low = data.lower()
        out = []
        for rx in self._patterns:
            for m in rx.finditer(low):
                s = m.start()
                if s and low[s - 1] in _ALNUM:
                    continue
                d = _digest(m.group())
                if self._has(int.from_bytes(d, "big")):
                    out.append((d, s, m.end()))
                    if len(out) >= limit:
                        return out
        return out
