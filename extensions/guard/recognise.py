"""The one recogniser every channel of the egress gate uses: is this individual-level data?

`Recogniser.bytes` (a response body, a file, a websocket buffer) and
`Recogniser.text` (a kernel output, a terminal chunk, a JSON string) answer
with a `Verdict`: the kind of individual-level data found, if any, how it was
recognised (English and Japanese), the keyed digests of the cohort's people
named, the records or person rows seen, and whether some content could not
be decoded (opaque). Policy is the gate's (gate/policy.py); this module only
says what is there.

What is recognised:

- raw genomic data, by `sniff.Sniffer`'s rules (magic bytes, headers, three
  records of one shape);
- people of the cohort: their sample ids, learnt by `Cohort.from_data` from
  the datasets mounted at the site and held only as keyed BLAKE2b digests
  (8 bytes, a random key per process); text is scanned by regular
  expressions built from the ids' shapes (`nig-00` then four digits), so a
  scan costs about 10 ms per 10 MB;
- per-person clinical rows without ids: table rows that repeat the clinical
  vocabulary (sex, age band, region, disease name, ICD-10) as person rows;
- genotype matrices without ids: many cells of genotype codes or dosages
  over many people, in text tables and in NumPy arrays;
- all of that inside gzip/BGZF, zlib, raw deflate, bzip2, xz/lzma, zstd,
  lz4, Blosc (Zarr chunks), zip, tar, base64/base32/hex runs in text,
  notebooks, JSON and printed Python literals, HTML, Parquet, Arrow
  IPC/Feather, Excel (.xlsx), NumPy (.npy/.npz), pickle (opcodes walked,
  never loaded), SQLite, UTF-16 text, text chunks of PNG images and bytes
  after them; nested. Images, PDF and fonts are results, not opaque.
- a file named inside a Hail MatrixTable or VCF Zarr store (the sniffer's
  store rule on the name given).

Work is bounded: big inputs are read in windows (head, tail, evenly spaced
windows between them, and windows around signatures of records), decoded
bytes have a budget, and containers have a depth and a member limit. What
lies beyond the windows of a huge input is not seen; the egress meter
bounds that, as it bounds opaque content.
"""

from __future__ import annotations

import ast
import base64
import binascii
import bz2
import gzip
import hashlib
import html
import io
import json
import logging
import lzma
import math
import os
import re
import struct
import sys
import tarfile
import tempfile
import time
import zipfile
import zlib
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..contracts.datasets import CLINICAL, PERSON_TABLES
from .sniff import (
    KINDS,
    Finding,
    Sniffer,
    _inflate,  # one gzip/BGZF reader for both
)

log = logging.getLogger(__name__)

KIB = 1024
MIB = 1024 * KIB

# kinds found by this module rather than by the sniffer
PEOPLE_TABLE = "people-table"
GENOTYPE_MATRIX = "genotype-matrix"
CLINICAL_ROWS = "clinical-rows"
OWN_KINDS = frozenset({PEOPLE_TABLE, GENOTYPE_MATRIX, CLINICAL_ROWS})
_STORE_KINDS = frozenset({"hail-matrixtable", "vcf-zarr"})
# the order in which a verdict names what it found: raw records first
_PRIORITY = {GENOTYPE_MATRIX: 1, PEOPLE_TABLE: 2, CLINICAL_ROWS: 3}

# One key per process: the digests mean nothing outside it, and never leave it.
_KEY = os.urandom(32)


def _digest(token: bytes) -> bytes:
    return hashlib.blake2b(token, digest_size=8, key=_KEY).digest()


# ---------------------------------------------------------------------------
# the cohort

# ids that cannot be told from other tokens of a results table are not scanned for
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?%?$")
_ALNUM = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789")
_MIN_ID_LENGTH = 4
_MAX_PATTERN_GROUPS = 16
_MAX_SHAPES = 16
_HEADER_CELLS = frozenset(
    {"sample_id", "sample", "samples", "iid", "#iid", "fid", "#fid", "id", "s"}
)
# clinical.tsv's columns whose values are the vocabulary of per-person rows
_VOCAB_COLUMNS = {
    "sex": "sex",
    "gender": "sex",
    "age_band": "age_band",
    "ageband": "age_band",
    "age_group": "age_band",
    "prefecture": "region",
    "region": "region",
    "disease_name": "disease_name",
    "disease": "disease_name",
    "diagnosis": "disease_name",
    "icd10": "icd10",
    "icd_10": "icd10",
    "icd-10": "icd10",
}
_MAX_VOCABULARY = 1000  # distinct values of a column; more and it is not a vocabulary
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


def _dataset_files(folder: Path) -> list[Path]:
    names = PERSON_TABLES
    globs = ("*.vcf.gz", "*.vcf.bgz", "*.vcf", "*.bcf", "*.fam", "*.psam")
    out: list[Path] = []
    for d in (folder, *sorted(p for p in _subdirs(folder))):
        out += [d / n for n in names if (d / n).is_file()]
        for g in globs:
            out += sorted(p for p in d.glob(g) if p.is_file())
    return out


def _subdirs(folder: Path) -> list[Path]:
    try:
        return [
            p
            for p in folder.iterdir()
            if p.is_dir() and not p.name.startswith(".") and not p.name.endswith((".mt", ".zarr"))
        ]
    except OSError:
        return []


def _ids_of_file(path: Path, vocabulary: dict[str, set[str]]) -> list[str]:
    name = path.name.lower()
    if name.endswith(".tsv"):
        return _ids_of_table(path, vocabulary if name == CLINICAL else None)
    if name.endswith(".fam"):
        ids = []
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 2:
                    ids += fields[:2]
        return ids
    if name.endswith(".psam"):
        return _ids_of_psam(path)
    return _ids_of_vcf_header(path)


def _ids_of_table(path: Path, vocabulary: dict[str, set[str]] | None) -> list[str]:
    ids = []
    with open(path, encoding="utf-8", errors="replace") as f:
        header = f.readline().rstrip("\r\n").split("\t")
        columns = [_VOCAB_COLUMNS.get(h.strip().lower()) for h in header]
        if header and header[0].strip().lower() not in _HEADER_CELLS:
            ids.append(header[0])  # no header row: the first line is a person too
        for line in f:
            cells = line.rstrip("\r\n").split("\t")
            if cells[0]:
                ids.append(cells[0])
            if vocabulary is not None:
                for col, value in zip(columns, cells, strict=False):
                    value = value.strip()
                    if col and value and not _NUMBER.match(value) and value.lower() != "na":
                        values = vocabulary.setdefault(col, set())
                        if len(values) <= _MAX_VOCABULARY:
                            values.add(value)
    return ids


_WORD_BYTES = frozenset(bytes([c]) for c in b"abcdefghijklmnopqrstuvwxyz0123456789_-")
_MAX_LEVELS = 64  # distinct values of a column held as its levels; more and only "numbers"


def _columns_of_table(path: Path, columns: dict[str, list]) -> None:
    """The column names of a per-person table (not its id column) and their values' levels."""
    with open(path, encoding="utf-8", errors="replace") as f:
        header = [h.strip().casefold() for h in f.readline().rstrip("\r\n").split("\t")]
        if not header or header[0] not in _HEADER_CELLS:
            return  # no header row: no column names to learn
        seen = [columns.setdefault(h, [set(), True]) if h else None for h in header[1:]]
        for line in f:
            for entry, value in zip(seen, line.rstrip("\r\n").split("\t")[1:], strict=False):
                value = value.strip().casefold()
                if entry is None or not value or value in _MISSING:
                    continue
                if len(entry[0]) <= _MAX_LEVELS:
                    entry[0].add(value)
                if entry[1] and not _NUMBER.match(value):
                    entry[1] = False


def _ids_of_psam(path: Path) -> list[str]:
    ids = []
    with open(path, encoding="utf-8", errors="replace") as f:
        header = f.readline().split()
        keep = [i for i, h in enumerate(header) if h.lstrip("#").upper() in ("IID", "FID")]
        if not header or not header[0].startswith("#"):
            keep = [0, 1]  # no header: FID IID
            ids += header[:2]
        for line in f:
            fields = line.split()
            ids += [fields[i] for i in keep if i < len(fields)]
    return ids


def _ids_of_vcf_header(path: Path, limit: int = 64 * MIB) -> list[str]:
    """The sample columns of a VCF's (or BCF's) #CHROM line; the records are never read."""
    with open(path, "rb") as raw:
        magic = raw.read(2)
    opener = gzip.open if magic == b"\x1f\x8b" else open
    with opener(path, "rb") as f:
        head = f.read(5)
        if head[:3] == b"BCF":
            (l_text,) = struct.unpack("<I", f.read(4))
            lines = f.read(min(l_text, limit)).split(b"\n")
        else:
            lines = list(_header_lines(head + f.readline(), f, limit))
    for line in lines:
        if line.startswith(b"#CHROM"):
            fields = line.rstrip(b"\r\n\x00").decode("utf-8", "replace").split("\t")
            return fields[9:]
    return []


def _header_lines(line: bytes, f, limit: int):
    """Lines up to the first that is not a header line, or the #CHROM line."""
    read = len(line)
    while line and read < limit:
        yield line
        if not line.startswith(b"#") or line.startswith(b"#CHROM"):
            return
        line = f.readline()
        read += len(line)


# ---------------------------------------------------------------------------
# the verdict


@dataclass(frozen=True)
class Verdict:
    """What the recogniser found in one piece of content.

    kind: None when nothing individual-level, else a kind of `sniff.KINDS`;
    how / how_ja: how it was recognised, innermost first ("... inside gzip");
    people: keyed digests of the distinct cohort people named (also when kind is None);
    records: raw records or person rows seen (in the windows read);
    opaque: some content could not be decoded (encrypted, unknown compression, random bytes).
    """

    kind: str | None
    how: str
    how_ja: str
    people: frozenset[bytes] = frozenset()
    records: int = 0
    opaque: bool = False

    def describe_en(self) -> str:
        if self.kind is not None:
            return f"{KINDS[self.kind][0]} ({self.how})"
        if self.people:
            return self.how
        if self.opaque:
            return f"content that cannot be read here ({self.how})"
        return "no individual-level data"

    def describe_ja(self) -> str:
        if self.kind is not None:
            return f"{KINDS[self.kind][1]}（{self.how_ja}）"
        if self.people:
            return self.how_ja
        if self.opaque:
            return f"ここでは読めない内容（{self.how_ja}）"
        return "個人レベルのデータなし"


NOTHING = Verdict(None, "nothing individual-level", "個人レベルのデータなし")

Link = tuple[str, str]  # one container on the way in: (English, Japanese)


@dataclass
class _Hit:
    kind: str
    en: str
    ja: str
    records: int
    chain: tuple[Link, ...]


def _render(en: str, ja: str, chain: tuple[Link, ...]) -> tuple[str, str]:
    how = en + "".join(f", inside {c[0]}" for c in reversed(chain))
    how_ja = "".join(f"{c[1]}の中の" for c in chain) + ja
    return how, how_ja


# ---------------------------------------------------------------------------
# text: cells, genotype codes, clinical vocabulary

_SPLIT_WORDS = re.compile(r"[\s,;|\"'\[\](){}<>=]+")
_STOP_WORDS = frozenset(
    "of and the with without other type disease disorder unspecified due from in on to by "
    "for not acute chronic".split()
)
_ICD10 = re.compile(r"^[a-z][0-9]{2}(?:\.[0-9]{1,2})?$")
_STRIP_CELL = " \t'\"[](){}"
_MISSING = frozenset({"-1", "na", "nan", "<na>", ".", "none", "null", "n/a", "./.", ".|."})
_DOSAGE = re.compile(r"^(?:[0-2](?:\.[0-9]*)?|\.[0-9]+)$")
_CODE_BYTES = b"0123456789.-+ \t,;|[]()'\"\r:na<>"  # what a line of genotype codes is made of
_DELIMITERS = bytes(32 if chr(c) in ",;|\"'[](){}<>=" else c for c in range(256))
_ICD10_BYTES = re.compile(rb"^[a-z][0-9]{2}(?:\.[0-9]{1,2})?$")
_ROW_SPACES = re.compile(rb"\S {2,}\S")

# -- which lines may change the genotype matrix ---------------------------------------------
# `_Matrix.add` stops at a row's third label when the row has fewer than 20 cells, and adds
# nothing. `_GT_CANDIDATE` proves that at C speed for most lines of results (a regex over the
# whole text instead of a Python parse of each line): a line is skipped when it splits (as
# `_cells` splits it: on tabs, else commas, pipes or semicolons when there are two, else on
# whitespace) into fewer than 20 fields of which three begin, after the characters `_cells`
# strips, with a character no genotype code begins with (codes are 0, 1, 2, dosages in [0, 2],
# -1, na, nan, <na>, none, null, n/a, '.', './.', '.|.'; a label beginning so is never one).
# Lines longer than the 64 KiB `_cells` reads, and whitespace-split lines that are not ASCII,
# are never skipped. Every other line takes the full parse, so the matrix is the one the full
# parse of every line builds (tests/unit/test_recognise.py compares them).
_GT_FIRST = rb"\-n<.012"
_GT_STRIP = rb" '\"\[\]\(\)\{\}"  # _STRIP_CELL less the tab
_GT_WS = rb" \t\r\x0b\x0c\x1c-\x1f"  # what str.split() splits an ASCII line on, but newlines


def _gt_skip_fields(sep: bytes) -> bytes:
    f = rb"[^\n" + sep + rb"]*+"
    bad = rb"[" + _GT_STRIP + rb"]*+[^\n" + sep + _GT_STRIP + _GT_FIRST + rb"]"
    first = rb"(?>" + bad + rb"|[^\n]*?" + sep + bad + rb")"
    later = rb"(?>[^\n]*?" + sep + bad + rb")"
    return rb"(?!" + (f + sep) * 19 + rb")" + first + later + later


def _gt_skip_words() -> bytes:
    w = rb"[" + _GT_WS + rb"]"
    f = rb"[^\n" + _GT_WS + rb"]"
    strip = rb"'\"\[\]\(\)\{\}"
    bad = rb"[" + strip + rb"]*+[^\n" + _GT_WS + strip + _GT_FIRST + rb"]"
    first = rb"(?>" + w + rb"*+" + bad + rb"|[^\n]*?" + w + bad + rb")"
    later = rb"(?>[^\n]*?" + w + bad + rb")"
    return (
        rb"(?![^\n]*[\x80-\xff])(?!"
        + (w + rb"*+" + f + rb"++") * 20
        + rb")"
        + first
        + later
        + later
    )


_GT_COMMAS = rb"(?=[^\n,]*+,[^\n,]*+,)"
_GT_PIPES = rb"(?=[^\n|]*+\|[^\n|]*+\|)"
_GT_SEMIS = rb"(?=[^\n;]*+;[^\n;]*+;)"
_GT_SKIP = (
    rb"(?![^\n]{65537})(?:(?=[^\n\t]*+\t)" + _gt_skip_fields(rb"\t")
    + rb"|(?![^\n]*\t)(?:" + _GT_COMMAS + _gt_skip_fields(rb",")
    + rb"|(?!" + _GT_COMMAS + rb")(?:" + _GT_PIPES + _gt_skip_fields(rb"\|")
    + rb"|(?!" + _GT_PIPES + rb")(?:" + _GT_SEMIS + _gt_skip_fields(rb";")
    + rb"|(?!" + _GT_SEMIS + rb")" + _gt_skip_words() + rb"))))"
)  # fmt: skip
_GT_FIRST_LINE = re.compile(rb"(?!" + _GT_SKIP + rb")")
_GT_CANDIDATE = re.compile(rb"\n(?!" + _GT_SKIP + rb")")
# the prefilters (here and in sniff.py) can be switched off to compare with the full parse
PREFILTER = True


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


def _code(cell: str, cache: dict) -> tuple | None:
    """A cell as a genotype code: ('=', level) exactly 0/1/2, ('~', level) a dosage within
    0.1 of a level, ('f', None) another number in [0, 2], ('m', None) missing; None if not one."""
    c = cache.get(cell, 0)
    if c != 0:
        return c
    low = cell.lower()
    if low in ("0", "1", "2"):
        c = ("=", int(low))
    elif low in _MISSING:
        c = ("m", None)
    elif len(low) <= 12 and _DOSAGE.match(low):
        v = float(low)
        level = round(v)
        if v > 2:
            c = None
        elif v == level:
            c = ("=", level)
        else:
            c = ("~", level) if abs(v - level) <= 0.1 else ("f", None)
    else:
        c = None
    if len(cache) < 4096:
        cache[cell] = c
    return c


@dataclass
class _Matrix:
    """Genotype-code cells seen in one table, for the genotype-matrix rule.

    Calls are 0/1/2 (missing -1, NA, nan, .); dosages are numbers in [0, 2]
    that cluster near those levels. A table of frequencies, p-values or
    standard errors spreads over [0, 1] or sits at one level (rare variants):
    it fails the clustering or the second-level test.
    """

    wide: int = 0  # rows holding >= 20 codes
    narrow: int = 0  # rows that are codes but for <= 2 label cells, >= 3 codes
    near: int = 0  # cells at a level, exactly or within 0.1
    far: int = 0  # numbers in [0, 2] away from every level
    exact: Counter = field(default_factory=Counter)  # level -> cells exactly at it
    close: Counter = field(default_factory=Counter)  # level -> dosages within 0.1 of it
    widest: int = 0
    labels: list = field(default_factory=list)  # the label cells of each row of codes

    def add(self, cells: list[str], cache: dict) -> None:
        n = len(cells)
        if n < 3:
            return
        codes = missing = other = 0
        # label cells a row may have: a wide row (>= 20 codes) max(6, n // 10); a narrow one 2,
        # so a row too short to be wide stops at its third label (most rows of results)
        allowed = max(6, n // 10) if n >= 20 else 2
        row: list[tuple] = []
        labels: list[str] = []
        for cell in cells[:4096]:
            c = _code(cell, cache)
            if c is None:
                other += 1
                if other > allowed:
                    return  # not a row of codes: stop reading it
                labels.append(cell.lower())
            else:
                codes += 1
                if c[0] == "m":
                    missing += 1
                else:
                    row.append(c)
        if codes < 3 or missing * 2 > codes:
            return
        if codes >= 20 and other <= max(6, n // 10):
            self.wide += 1
        elif other <= 2:
            self.narrow += 1
        else:
            return
        for kind, level in row:
            if kind == "=":
                self.exact[level] += 1
                self.near += 1
            elif kind == "~":
                self.close[level] += 1
                self.near += 1
            else:
                self.far += 1
        self.widest = max(self.widest, codes)
        self.labels.append(tuple(labels[:4]))

    def found(self) -> bool:
        if not (self.wide >= 3 or self.narrow >= 20):
            return False
        if self.near < 0.7 * (self.near + self.far):
            return False
        if len(self.exact) >= 2 and not self.close:
            return True  # calls: two levels present are enough (rare variants are mostly 0)
        levels = sorted((self.exact + self.close).values(), reverse=True)
        return len(levels) >= 2 and levels[1] >= 0.05 * (self.near + self.far)


# ---------------------------------------------------------------------------
# formats

_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_"
_RUNS = bytes(
    (ord("a") if c in _B64_ALPHABET else ord("n") if c == 10 else ord("r") if c == 13 else 32)
    for c in range(256)
)
_RUN_MIN = 64
_RUN = re.compile(rb"a{64,}(?:r?na{60,})*(?:r?na+)?")
_HEX = frozenset(b"0123456789abcdefABCDEF")
# a line of a hex dump: its offset, then its columns of hex bytes (one or two bytes a group)
# a line of a hex dump without offsets (`od -An -t x1`): 4 to 32 hex bytes and nothing else
_BARE_DUMP_LINE = re.compile(rb"(?m)^[ \t]*((?:[0-9a-fA-F]{2} +){3,31}[0-9a-fA-F]{2})[ \t\r]*$")
_MIN_ESCAPES = 16  # `\t` and `\n` in a text before it is read unescaped too


def _unescape(data: bytes) -> bytes:
    """One level of backslash escapes (`\\t`, `\\n`, `\\r`, quotes, `\\\\`) undone, in C."""
    keep = b"\x00\x01\x02" if b"\x00\x01\x02" not in data else None
    if keep:
        data = data.replace(b"\\\\", keep)
    data = data.replace(b"\\t", b"\t").replace(b"\\n", b"\n").replace(b"\\r", b"\r")
    data = data.replace(b"\\'", b"'").replace(b'\\"', b'"')
    return data.replace(keep, b"\\") if keep else data


_HEX_CLASSES = bytes(ord("h") if c in _HEX else 32 if c == 32 else ord("x") for c in range(256))
_DUMP_LINE = re.compile(
    rb"(?m)^([0-9a-fA-F]{6,16}):?((?: {1,2}[0-9a-fA-F]{2}(?:[0-9a-fA-F]{2})?(?![0-9a-fA-F])){4,})"
)
_B32 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567=")
# signatures of raw records, looked for between the windows of a long text
_HINTS = (b"\t0/0", b"\t0|0")
_KNOWN = (
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF87a", "GIF image"),
    (b"GIF89a", "GIF image"),
    (b"%PDF-", "PDF document"),
    (b"wOFF", "WOFF font"),
    (b"wOF2", "WOFF2 font"),
    (b"OTTO", "OpenType font"),
    (b"\x00\x01\x00\x00\x00", "TrueType font"),
    (b"\x00asm", "WebAssembly module"),
    (b"II*\x00", "TIFF image"),
    (b"MM\x00*", "TIFF image"),
    (b"\x00\x00\x01\x00", "icon"),
)
_CANNOT = (
    (b"7z\xbc\xaf\x27\x1c", "7z archive"),
    (b"Rar!\x1a\x07", "RAR archive"),
    (b"\xff\x06\x00\x00sNaPpY", "snappy stream"),
    (b"-----BEGIN PGP MESSAGE", "PGP message"),
    (b"Salted__", "OpenSSL encrypted file"),
    (b"age-encryption.org/", "age encrypted file"),
)
_PICKLE_STRINGS = frozenset(
    {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING",
     "SHORT_BINSTRING"}
)  # fmt: skip
_PICKLE_BYTES = frozenset({"SHORT_BINBYTES", "BINBYTES", "BINBYTES8", "BYTEARRAY8"})
_PICKLE_INTS = frozenset({"BININT", "BININT1", "BININT2", "INT", "LONG1", "LONG", "LONG4"})
_DTYPE = re.compile(r"^[<>|=]?([iuf])([1248])$")


def _entropy(sample: bytes) -> tuple[float, Counter]:
    counts = Counter(sample)
    n = len(sample)
    return -sum(c / n * math.log2(c / n) for c in counts.values()), counts


def _looks_text(sample: bytes) -> bool:
    if not sample:
        return True
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(sample) - 4:
            # not UTF-8: text in another encoding has few control bytes and no NULs
            if b"\x00" in sample:
                return False
            controls = len(sample) - len(
                sample.translate(None, bytes(range(9)) + bytes(range(14, 32)))
            )
            return controls * 100 < len(sample) and _entropy(sample[:16384])[0] < 7.0
    controls = len(sample) - len(sample.translate(None, bytes(range(9)) + bytes(range(14, 32))))
    return controls * 100 < len(sample)


def _size(n: float) -> str:
    return f"{n / MIB:.1f} MiB" if n >= MIB else f"{n / KIB:.1f} KiB" if n >= KIB else f"{n:.0f} B"


def _html_text(text: str) -> str:
    text = re.sub(r"(?i)</t[dh]>\s*<t[dh]\b[^>]*>", "\t", text)
    text = re.sub(r"(?i)</tr>|<br\s*/?>|</p>|</li>|</div>|</h\d>", "\n", text)
    text = re.sub(r"<[^>]*>", "", text)
    return html.unescape(text)


class _Budget(Exception):
    """The decoded-bytes budget is spent."""


# ---------------------------------------------------------------------------
# the recogniser


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
      not reported opaque (a hash, a token).
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


class _Src:
    """Content to look at: bytes held, or a file read at offsets when it is too big to hold."""

    def __init__(self, size: int, f=None, data: bytes | None = None):
        self.size = size
        self.f = f
        self.data = data

    @classmethod
    def of(cls, data: bytes) -> _Src:
        return cls(len(data), None, data)

    def read(self, a: int, b: int) -> bytes:
        b = min(b, self.size)
        if a >= b:
            return b""
        if self.data is not None:
            return self.data[a:b]
        return os.pread(self.f.fileno(), b - a, a)

    def fileobj(self):
        if self.data is not None:
            return io.BytesIO(self.data)
        self.f.seek(0)
        return self.f


class _Scan:
    """One call of the recogniser: the budgets left and what was found so far."""

    def __init__(self, r: Recogniser):
        self.r = r
        self.people: set[bytes] = set()
        self.hits: list[_Hit] = []
        self.opaque: list[tuple[str, str, tuple[Link, ...]]] = []
        self.budget = r.budget_bytes
        self.members = r.max_members
        self.cut = False  # a budget stopped the scan early
        self.tokens: set[bytes] = set()

    def named(self, name: str) -> bool:
        """A file of a Hail MatrixTable or VCF Zarr store, by its place in the store."""
        found = self.r.sniffer.classify_name(name) if name else None
        if found is not None and found.kind in _STORE_KINDS:
            self.sniffed(found, 0, ())
            return True
        return False

    def run(self, fn) -> None:
        try:
            fn()
        except _Budget:
            self.cut = True
        except (RecursionError, MemoryError):
            raise
        except Exception as e:  # a parser's bug on crafted content never stops the gate
            log.debug("recogniser: %s reading content", type(e).__name__, exc_info=True)
            self.mark_opaque(
                f"content that could not be read to its end ({type(e).__name__})",
                f"最後まで読めなかった内容（{type(e).__name__}）",
                (),
            )

    # -- results -------------------------------------------------------------

    @property
    def raw_found(self) -> bool:
        return any(h.kind not in OWN_KINDS for h in self.hits)

    def hit(self, kind: str, en: str, ja: str, records: int, chain: tuple[Link, ...]) -> None:
        if kind not in self.r.sniffer.disabled:
            self.hits.append(_Hit(kind, en, ja, records, chain))

    def mark_opaque(self, en: str, ja: str, chain: tuple[Link, ...]) -> None:
        self.opaque.append((en, ja, chain))

    def verdict(self) -> Verdict:
        people = frozenset(self.people)
        opaque = bool(self.opaque)
        if self.hits:
            best = min(self.hits, key=lambda h: _PRIORITY.get(h.kind, 0))
            records = sum(h.records for h in self.hits if h.kind == best.kind)
            en, ja = best.en, best.ja
            if best.kind == PEOPLE_TABLE:
                n = len(people)
                en = f"{n} sample id{'s' if n != 1 else ''} of the cohort in a table"
                ja = f"表の中のコホートのサンプルID {n} 件"
            how, how_ja = _render(en, ja, best.chain)
            return Verdict(best.kind, how, how_ja, people, records, opaque)
        if people:
            n = len(people)
            return Verdict(
                None,
                f"{n} sample id{'s' if n != 1 else ''} of the cohort named",
                f"コホートのサンプルID {n} 件の記載",
                people,
                0,
                opaque,
            )
        if opaque:
            how, how_ja = _render(*self.opaque[0])
            return Verdict(None, how, how_ja, people, 0, True)
        return NOTHING

    # -- budgets -------------------------------------------------------------

    def allowance(self) -> int:
        """How many bytes the next decoding may produce."""
        if self.budget <= 0:
            raise _Budget
        return min(self.budget, self.r.stream_bytes)

    def spend(self, n: int) -> None:
        self.budget -= n

    def member(self) -> bool:
        self.members -= 1
        return self.members >= 0

    # -- dispatch on content -------------------------------------------------

    def blob(self, src: _Src, chain: tuple[Link, ...], depth: int, name: str = "") -> None:
        """Any content: by its magic bytes, else as text, else as binary."""
        if src.size == 0 or self.raw_found:
            return
        if depth > self.r.max_depth:
            self.too_deep(src, chain)
            return
        head = src.read(0, 64 * KIB)
        finding = self.r.sniffer.classify_magic(head)
        if finding is not None:
            self.sniffed(finding, 0, chain)
            return
        for handler in (self.compressed, self.archive, self.structured, self.known):
            if handler(src, head, chain, depth, name):
                return
        if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
            data = self.whole(src) or src.read(0, self.r.scan_head)
            text = data.decode("utf-16", "replace").encode("utf-8", "surrogatepass")
            self.text_unit(_Src.of(text), (*chain, ("UTF-16 text", "UTF-16 テキスト")), depth + 1)
        elif _looks_text(head[: 16 * KIB]):
            self.text_unit(src, chain, depth)
        else:
            self.binary(src, head, chain, depth)

    def too_deep(self, src: _Src, chain) -> None:
        if src.size >= self.r.opaque_min_bytes:
            n = self.r.max_depth
            self.mark_opaque(
                f"content nested in more than {n} containers", f"{n} 重を超える入れ子の内容", chain
            )

    def whole(self, src: _Src) -> bytes | None:
        """All of `src` when it is small enough to hold, else None."""
        if src.data is not None:
            return src.data
        if src.size <= self.r.full_bytes:
            return src.read(0, src.size)
        return None

    # -- compression ---------------------------------------------------------

    def compressed(self, src: _Src, head: bytes, chain, depth, name) -> bool:
        if head[:2] == b"\x1f\x8b":
            bgzf = len(head) >= 18 and head[3] & 4 and head[12:14] == b"BC"
            self.gzip(src, bool(bgzf), chain, depth)
            return True
        if _is_blosc(head, src.size):
            self.blosc(src, chain, depth)
            return True
        if head[:3] == b"BZh" and head[4:10] == b"1AY&SY":
            self.stream(
                src, "bzip2", lambda d, n: bz2.BZ2Decompressor().decompress(d, n), chain, depth
            )
            return True
        if head[:6] == b"\xfd7zXZ\x00":
            self.stream(
                src, "xz", lambda d, n: lzma.LZMADecompressor().decompress(d, n), chain, depth
            )
            return True
        if head[:4] == b"\x28\xb5\x2f\xfd":
            self.stream(src, "zstd", _codec("zstd"), chain, depth)
            return True
        if head[:4] == b"\x04\x22\x4d\x18":
            self.stream(src, "lz4", _codec("lz4"), chain, depth)
            return True
        if len(head) >= 2 and head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0:
            inner = self.decode(src, lambda d, n: zlib.decompressobj().decompress(d, n))
            if inner:
                self.blob(_Src.of(inner), (*chain, ("zlib", "zlib")), depth + 1)
                return True
        if head[:1] == b"\x5d" and head[1:5] in (b"\x00\x00\x80\x00", b"\x00\x00\x00\x01",
                                                   b"\x00\x00\x00\x04", b"\x00\x00\x00\x02"):  # fmt: skip
            inner = self.decode(
                src, lambda d, n: lzma.LZMADecompressor(lzma.FORMAT_ALONE).decompress(d, n)
            )
            if inner:
                self.blob(_Src.of(inner), (*chain, ("lzma", "lzma")), depth + 1)
                return True
        return False

    def blosc(self, src: _Src, chain, depth) -> None:
        """A Blosc-compressed chunk (Zarr v2's default), decoded by numcodecs when importable."""
        (nbytes,) = struct.unpack("<I", src.read(4, 8))
        try:
            from numcodecs import blosc
        except ImportError:
            self.mark_opaque(
                "a Blosc chunk (cannot be decoded here)",
                "Blosc のチャンク（ここでは展開できない）",
                chain,
            )
            return
        if nbytes > self.allowance():
            self.mark_opaque(
                f"a Blosc chunk of {_size(nbytes)} (more than is decoded here)",
                f"Blosc のチャンク {_size(nbytes)}（ここで展開する量を超える）",
                chain,
            )
            return
        try:
            inner = blosc.decompress(self.whole(src) or src.read(0, src.size))
        except (RuntimeError, ValueError, TypeError):
            self.mark_opaque("a damaged Blosc chunk", "壊れた Blosc のチャンク", chain)
            return
        self.spend(len(inner))
        self.blob(_Src.of(bytes(inner)), (*chain, ("Blosc", "Blosc")), depth + 1)

    def decode(self, src: _Src, fn) -> bytes:
        """Up to the allowance of `fn(data, limit)`'s output; b'' when it fails at once."""
        limit = self.allowance()
        data = self.whole(src)
        if data is None:
            data = src.read(0, max(4 * MIB, limit))  # a stream's head decodes on its own
        try:
            out = fn(data, limit)
        except (OSError, ValueError, EOFError, lzma.LZMAError, zlib.error):
            return b""
        self.spend(len(out))
        return out

    def stream(self, src: _Src, label: str, fn, chain, depth) -> None:
        if fn is None:
            self.mark_opaque(
                f"{label} stream (cannot be decoded here)",
                f"{label} ストリーム（ここでは展開できない）",
                chain,
            )
            return
        inner = self.decode(src, fn)
        if inner:
            self.blob(_Src.of(inner), (*chain, (label, label)), depth + 1)
        elif src.size >= self.r.opaque_min_bytes:
            self.mark_opaque(f"a damaged {label} stream", f"壊れた {label} ストリーム", chain)

    def gzip(self, src: _Src, bgzf: bool, chain, depth) -> None:
        label = "BGZF" if bgzf else "gzip"
        inner = self.decode(src, _inflate)
        if not inner:
            if src.size >= self.r.opaque_min_bytes:
                self.mark_opaque(f"a damaged {label} stream", f"壊れた {label} ストリーム", chain)
            return
        link = (label, label)
        if bgzf and inner[:4] == b"BAM\x01":
            self.sniffed(Finding("bam", "its magic bytes (BAM in BGZF)"), 0, chain)
            return
        if bgzf and inner[:3] == b"BCF":
            self.sniffed(Finding("bcf", "its magic bytes (BCF in BGZF)"), 0, chain)
            return
        self.blob(_Src.of(inner), (*chain, link), depth + 1)
        if not bgzf or self.raw_found or src.size <= 4 * MIB:
            return
        # BGZF blocks decode on their own: windows in the middle and at the end
        step = src.size // (self.r.windows + 1)
        for k in range(1, self.r.windows + 2):
            at = src.size - MIB if k == self.r.windows + 1 else k * step
            piece = src.read(at, at + 2 * MIB)
            start = _bgzf_block(piece)
            if start < 0:
                continue
            try:
                text = _inflate(piece[start:], min(self.allowance(), self.r.window_bytes * 8))
            except (ValueError, zlib.error):
                continue
            self.spend(len(text))
            self.window(
                text,
                (
                    *chain,
                    (
                        f"{label} (a block at byte {at + start})",
                        f"{label}（{at + start} バイト目のブロック）",
                    ),
                ),
                True,
                True,
            )
            if self.raw_found:
                return

    # -- archives ------------------------------------------------------------

    def archive(self, src: _Src, head: bytes, chain, depth, name) -> bool:
        if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
            self.zip(src, chain, depth)
            return True
        if len(head) >= 262 and head[257:262] == b"ustar":
            self.tar(src, chain, depth)
            return True
        return False

    def zip(self, src: _Src, chain, depth, fallback: bool = True) -> None:
        try:
            z = zipfile.ZipFile(src.fileobj())
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            if fallback:
                self.binary(src, src.read(0, 64 * KIB), chain, depth)
            return
        with z:
            names = set(z.namelist()[:10000])
            if "xl/workbook.xml" in names:
                self.xlsx(z, chain, depth)
                return
            for info in z.infolist():
                if self.raw_found or not self.member():
                    return
                if info.is_dir():
                    continue
                link = (f"zip member {info.filename!r}", f"zip のメンバー {info.filename!r}")
                found = self.r.sniffer.classify_name(info.filename)
                if found is not None and found.kind != "pattern":
                    self.sniffed(found, 0, (*chain, link))
                    return
                if info.flag_bits & 1:
                    self.mark_opaque(
                        "an encrypted zip member", "暗号化された zip のメンバー", (*chain, link)
                    )
                    continue
                try:
                    with z.open(info) as member:
                        data = member.read(self.allowance())
                except (zipfile.BadZipFile, OSError, ValueError, RuntimeError, EOFError,
                        NotImplementedError, zlib.error, lzma.LZMAError):  # fmt: skip
                    self.mark_opaque(
                        "a zip member that cannot be read here",
                        "ここでは読めない zip のメンバー",
                        (*chain, link),
                    )
                    continue
                self.spend(len(data))
                self.blob(_Src.of(data), (*chain, link), depth + 1, info.filename)

    def tar(self, src: _Src, chain, depth) -> None:
        try:
            with tarfile.open(fileobj=src.fileobj(), mode="r:") as t:
                for member in t:
                    if self.raw_found or not self.member():
                        return
                    if not member.isfile():
                        continue
                    link = (f"tar member {member.name!r}", f"tar のメンバー {member.name!r}")
                    found = self.r.sniffer.classify_name(member.name)
                    if found is not None and found.kind != "pattern":
                        self.sniffed(found, 0, (*chain, link))
                        return
                    if member.isreg() and not member.issparse():
                        # read where it lies: a tar cut short (one terminal chunk of
                        # `tar cf - f | base64`) still gives the part of the member it holds
                        at = member.offset_data
                        data = src.read(at, at + min(member.size, self.allowance()))
                    else:
                        f = t.extractfile(member)
                        if f is None:
                            continue
                        data = f.read(self.allowance())
                    self.spend(len(data))
                    self.blob(_Src.of(data), (*chain, link), depth + 1, member.name)
        except (tarfile.TarError, EOFError, OSError):
            return  # a tar cut short by a window or a budget ends here

    def xlsx(self, z: zipfile.ZipFile, chain, depth) -> None:
        def read(name: str) -> str:
            try:
                with z.open(name) as f:
                    data = f.read(min(self.allowance(), 8 * MIB))
            except (KeyError, zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError,
                    EOFError, zlib.error):  # fmt: skip
                self.mark_opaque(
                    f"an Excel part that cannot be read here ({name})",
                    f"ここでは読めない Excel の部分（{name}）",
                    chain,
                )
                return ""
            self.spend(len(data))
            return data.decode("utf-8", "replace")

        shared_xml = read("xl/sharedStrings.xml")
        shared = [
            html.unescape("".join(re.findall(r"<t\b[^>]*>(.*?)</t>", si, re.S)))
            for si in re.findall(r"<si>(.*?)</si>", shared_xml, re.S)
        ]
        self.ids(shared_xml.encode(), (*chain, ("Excel shared strings", "Excel の共有文字列")))
        sheets = sorted(n for n in z.namelist() if re.match(r"xl/worksheets/sheet\d+\.xml$", n))
        for name in sheets:
            if self.raw_found or not self.member():
                return
            rows = _xlsx_rows(read(name), shared, self.r.max_table_rows)
            sheet = name.rsplit("/", 1)[-1][:-4]
            self.table(rows, (*chain, (f"Excel {sheet}", f"Excel の {sheet}")), depth)

    # -- structured formats --------------------------------------------------

    def structured(self, src: _Src, head: bytes, chain, depth, name) -> bool:
        if head[:4] == b"PAR1":
            self.arrow(src, "Parquet", chain, depth)
            return True
        if head[:6] == b"ARROW1" or head[:4] == b"FEA1":
            self.arrow(src, "Arrow IPC" if head[:6] == b"ARROW1" else "Feather", chain, depth)
            return True
        if head[:4] == b"\xff\xff\xff\xff" and len(head) > 8:
            if self.arrow(src, "Arrow IPC stream", chain, depth, quiet=True):
                return True
        if head[:6] == b"\x93NUMPY":
            self.npy(src, chain, depth)
            return True
        if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
            self.pickle(src, chain, depth)
            return True
        if head[:16] == b"SQLite format 3\x00":
            self.sqlite(src, chain, depth)
            return True
        return False

    def arrow(self, src: _Src, label: str, chain, depth, quiet: bool = False) -> bool:
        link = (label, label)
        try:
            import pyarrow as pa
            import pyarrow.ipc as ipc
            import pyarrow.parquet as pq
        except ImportError:
            self.mark_opaque(
                f"{label} (cannot be read here)", f"{label}（ここでは読めない）", chain
            )
            return True
        rows = self.r.max_table_rows
        try:
            source = (
                pa.BufferReader(src.data) if src.data is not None else pa.memory_map(src.f.name)
            )
            if label == "Parquet":
                pf = pq.ParquetFile(source)
                columns = pf.schema_arrow.names[: self.r.max_table_columns]
                batch = next(pf.iter_batches(batch_size=rows, columns=columns), None)
                table = pa.Table.from_batches([batch]) if batch is not None else None
            elif label == "Feather":
                import pyarrow.feather as feather

                table = feather.read_table(source).slice(0, rows)
            elif label == "Arrow IPC":
                reader = ipc.open_file(source)
                table = (
                    pa.Table.from_batches([reader.get_batch(0)])
                    if reader.num_record_batches
                    else None
                )
            else:
                reader = ipc.open_stream(source)
                table = pa.Table.from_batches([reader.read_next_batch()])
            cells = _arrow_rows(table, rows, self.r.max_table_columns) if table is not None else []
        except (pa.ArrowException, OSError, ValueError, StopIteration, IndexError, SystemError):
            if quiet:
                return False
            self.mark_opaque(
                f"{label} that cannot be read here", f"ここでは読めない {label}", chain
            )
            return True
        self.table(cells, (*chain, link), depth)
        return True

    def npy(self, src: _Src, chain, depth) -> None:
        link = ("NumPy .npy", "NumPy .npy")
        head = src.read(0, 64 * KIB)
        try:
            if head[6] == 1:
                (hlen,), off = struct.unpack("<H", head[8:10]), 10
            else:
                (hlen,), off = struct.unpack("<I", head[8:12]), 12
            header = ast.literal_eval(head[off : off + hlen].decode("latin-1"))
            descr, shape = header["descr"], tuple(header["shape"])
        except (IndexError, struct.error, ValueError, SyntaxError, KeyError, TypeError):
            self.binary(src, head, chain, depth)
            return
        start = off + hlen
        if descr == "|O":
            self.pickle(
                _Src.of(src.read(start, start + self.allowance())), (*chain, link), depth + 1
            )
            return
        try:
            import numpy as np

            dtype = np.dtype(descr)
        except (ImportError, TypeError, ValueError):
            self.binary(src, head, chain, depth)
            return
        count = min(
            math.prod(shape) if shape else 1,
            max(1, self.allowance() // max(1, dtype.itemsize)),
            4_000_000,
        )
        data = src.read(start, start + count * dtype.itemsize)
        self.spend(len(data))
        self.ndarray(data, dtype, shape, (*chain, link), depth)

    def ndarray(self, data: bytes, dtype, shape: tuple, chain, depth) -> None:
        """A NumPy array's buffer: genotype calls or dosages, or strings to read as text."""
        import numpy as np

        if dtype.kind in "US":
            text = data.decode("utf-32-le" if dtype.kind == "U" else "latin-1", "replace")
            self.text_unit(_Src.of(text.replace("\x00", "\n").encode()), chain, depth + 1)
            return
        if dtype.kind not in "iuf" or not dtype.itemsize:
            return
        n = len(data) // dtype.itemsize
        values = np.frombuffer(data, dtype=dtype, count=n)[:4_000_000]
        if _packed_calls(values, shape):
            self.hit(
                GENOTYPE_MATRIX,
                f"a NumPy array of genotype calls packed two bits each, shape {shape}",
                f"2 ビットずつ詰めた遺伝型コールの NumPy 配列（形 {shape}）",
                int(shape[0]),
                chain,
            )
            return
        if _genotype_array(values, shape):
            self.hit(
                GENOTYPE_MATRIX,
                f"a NumPy array of genotype {'calls' if dtype.kind in 'iu' else 'dosages'}, "
                f"shape {shape}, {dtype}",
                f"遺伝型の{'コール' if dtype.kind in 'iu' else 'ドーズ'}の NumPy 配列（形 {shape}、{dtype}）",
                int(shape[0]) if shape else 0,
                chain,
            )

    def pickle(self, src: _Src, chain, depth) -> None:
        """Strings, numbers and buffers of a pickle, by walking its opcodes; never loaded."""
        import pickletools

        link = ("pickle", "pickle")
        data = self.whole(src) or src.read(0, self.allowance())
        strings: list[str] = []
        events: list[tuple[str, object]] = []
        memo: dict[int, object] = {}
        last: object = None
        try:
            for k, (op, arg, _pos) in enumerate(pickletools.genops(io.BytesIO(data))):
                if k >= 2_000_000:
                    break
                name = op.name
                if name in _PICKLE_STRINGS:
                    s = arg if isinstance(arg, str) else bytes(arg).decode("latin-1")
                    strings.append(s)
                    events.append(("s", s))
                    last = s
                elif name in _PICKLE_BYTES:
                    events.append(("b", bytes(arg)))
                    last = None
                elif name in _PICKLE_INTS and isinstance(arg, int):
                    events.append(("i", arg))
                    last = None
                elif name in ("TUPLE1", "TUPLE2", "TUPLE3", "TUPLE"):
                    events.append(("t", name))
                    last = None
                elif name == "MARK":
                    events.append(("m", None))
                elif name == "MEMOIZE":
                    memo[len(memo)] = last
                elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
                    memo[int(arg)] = last
                elif name in ("BINGET", "LONG_BINGET", "GET"):
                    got = memo.get(int(arg))
                    if isinstance(got, str):
                        strings.append(got)
                        events.append(("s", got))
                    last = got
                elif name == "STOP":
                    break
                elif name not in ("FRAME", "PROTO"):
                    last = None
        except (ValueError, EOFError, struct.error, UnicodeDecodeError):
            pass  # a pickle cut short: what was read stands
        self.spend(len(data))
        chain = (*chain, link)
        self.pickled_arrays(events, chain, depth)
        if strings:
            text = "\n".join(s for s in strings if len(s) < 64 * KIB)
            self.text_unit(
                _Src.of(text.encode("utf-8", "surrogatepass")),
                (*chain, ("its strings", "その文字列")),
                depth + 1,
            )
            rows = self.columns_to_rows(strings)
            if rows:
                self.table(
                    rows, (*chain, ("its string columns", "その文字列の列")), depth, header=False
                )

    def pickled_arrays(self, events: list, chain, depth) -> None:
        try:
            import numpy as np
        except ImportError:
            return

        shapes: list[tuple[int, tuple]] = []
        dtypes: list[tuple[int, str]] = []
        for k, (kind, value) in enumerate(events):
            if kind == "t":
                take = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}.get(value)
                if take is None:  # TUPLE: back to the MARK
                    j = k - 1
                    while j >= 0 and events[j][0] == "i":
                        j -= 1
                    take = k - 1 - j if j >= 0 and events[j][0] == "m" else 0
                prev = events[k - take : k] if take else []
                if prev and all(e[0] == "i" for e in prev):
                    shapes.append((k, tuple(int(e[1]) for e in prev)))
            elif kind == "s" and _DTYPE.match(value):
                dtypes.append((k, value))
        for k, (kind, value) in enumerate(events):
            if self.raw_found:
                return
            raw = value if kind == "b" else None
            if kind == "s" and len(value) >= 60 and max(map(ord, value[:4096])) < 256:
                raw = value.encode("latin-1")  # protocol 2 writes buffers as latin-1 text
            if raw is None or len(raw) < 60:
                continue
            near = [d for j, d in dtypes if abs(j - k) <= 64]
            matched = False
            for code in near:
                dtype = np.dtype(code)
                n = len(raw) // dtype.itemsize
                for j, shape in shapes:
                    if (
                        abs(j - k) <= 64
                        and math.prod(shape) == n
                        and n * dtype.itemsize == len(raw)
                    ):
                        self.ndarray(
                            raw,
                            dtype,
                            shape,
                            (*chain, ("a NumPy buffer", "NumPy のバッファ")),
                            depth,
                        )
                        matched = True
                        break
                if matched:
                    break
            if not matched and kind == "b" and self.member():
                self.blob(_Src.of(raw), (*chain, ("pickled bytes", "pickle のバイト列")), depth + 1)

    def sqlite(self, src: _Src, chain, depth) -> None:
        import sqlite3

        data = self.whole(src)
        if data is None:
            self.mark_opaque(
                f"an SQLite database too big to read here ({_size(src.size)})",
                f"ここで読むには大きすぎる SQLite データベース（{_size(src.size)}）",
                chain,
            )
            return
        deadline = time.monotonic() + self.r.sqlite_seconds
        with tempfile.TemporaryDirectory(prefix="visiting-recognise-") as tmp:
            path = os.path.join(tmp, "copy.sqlite")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            try:
                conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
            except sqlite3.Error:
                self.mark_opaque(
                    "an SQLite database that cannot be opened",
                    "開けない SQLite データベース",
                    chain,
                )
                return
            try:
                conn.set_progress_handler(lambda: time.monotonic() > deadline, 10000)
                names = [
                    n
                    for (n,) in conn.execute(
                        "SELECT name FROM sqlite_master WHERE type='table' LIMIT 64"
                    )
                ]
                for table in names:
                    if self.raw_found or not self.member():
                        return
                    quoted = '"' + table.replace('"', '""') + '"'
                    cur = conn.execute(f"SELECT * FROM {quoted} LIMIT {self.r.max_table_rows}")
                    header = [c[0] for c in cur.description or ()]
                    rows = [header, *cur.fetchall()]
                    link = (f"SQLite table {table!r}", f"SQLite の表 {table!r}")
                    self.table(rows, (*chain, link), depth)
            except sqlite3.Error:
                self.mark_opaque(
                    "an SQLite database that cannot be read here",
                    "ここでは読めない SQLite データベース",
                    chain,
                )
            finally:
                conn.close()

    # -- formats that are results --------------------------------------------

    def known(self, src: _Src, head: bytes, chain, depth, name) -> bool:
        for magic, label in _CANNOT:
            if head.startswith(magic):
                self.mark_opaque(
                    f"a {label} (cannot be decoded here)", f"{label}（ここでは展開できない）", chain
                )
                return True
        label = next((label for magic, label in _KNOWN if head.startswith(magic)), None)
        if label is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            label = "WebP image"
        if label is None:
            return False
        if label == "PNG image":
            self.png(src, chain, depth)
        elif label == "PDF document":
            self.pdf(src, chain)
        # a zip appended to an image (a polyglot) is read as the zip it also is
        if b"PK\x05\x06" in src.read(max(0, src.size - 64 * KIB), src.size):
            link = (f"a zip inside a {label}", f"{label} の中の zip")
            self.zip(src, (*chain, link), depth + 1, fallback=False)
        return True

    def png(self, src: _Src, chain, depth) -> None:
        """Text chunks and whatever follows the image end are read; pixels are not."""
        at, seen = 8, 0
        while at + 8 <= src.size and seen < 10000:
            seen += 1
            length, kind = struct.unpack(">I4s", src.read(at, at + 8))
            if kind in (b"tEXt", b"iTXt", b"zTXt") and length <= 4 * MIB:
                body = src.read(at + 8, at + 8 + length)
                if kind == b"zTXt":
                    key, _, rest = body.partition(b"\x00")
                    try:
                        body = (
                            key
                            + b"\n"
                            + zlib.decompressobj().decompress(rest[1:], self.allowance())
                        )
                    except zlib.error:
                        pass
                self.text_unit(
                    _Src.of(body.replace(b"\x00", b"\n")),
                    (*chain, ("PNG text", "PNG のテキスト")),
                    depth + 1,
                )
            at += 12 + length
            if kind == b"IEND":
                break
        if src.size - at >= 64:
            rest = src.read(at, min(src.size, at + self.allowance()))
            self.blob(
                _Src.of(rest),
                (*chain, ("bytes after a PNG image", "PNG 画像の後のバイト列")),
                depth + 1,
            )

    def pdf(self, src: _Src, chain) -> None:
        """Only the ids: in the file and in its first deflated streams (cheap; text is not parsed)."""
        data = src.read(0, min(src.size, 16 * MIB))
        self.ids(data, chain)
        budget = min(self.allowance(), 4 * MIB)
        for m in re.finditer(rb"stream\r?\n", data[: 16 * MIB]):
            if budget <= 0:
                break
            try:
                out = zlib.decompressobj().decompress(data[m.end() : m.end() + budget], budget)
            except zlib.error:
                continue
            budget -= len(out)
            self.spend(len(out))
            self.ids(out, (*chain, ("a PDF stream", "PDF のストリーム")))

    # -- binary that is none of the above ------------------------------------

    def binary(self, src: _Src, head: bytes, chain, depth) -> None:
        sample = head[: 64 * KIB]
        # raw deflate has no magic: tried on anything binary (it fails within bytes on the rest)
        inner = self.decode(src, lambda d, n: zlib.decompressobj(-15).decompress(d, n))
        if len(inner) >= 64 and (_looks_text(inner[:4096]) or self.r.sniffer.classify_magic(inner)):
            self.blob(_Src.of(inner), (*chain, ("raw deflate", "raw deflate")), depth + 1)
            return
        bits, counts = _entropy(sample)
        if bits >= 7.2:
            if src.size >= self.r.opaque_min_bytes:
                self.mark_opaque(
                    f"{_size(src.size)} of high-entropy bytes of no known format",
                    f"既知の形式でない高エントロピーのバイト列 {_size(src.size)}",
                    chain,
                )
            return
        if len(sample) >= 256 and set(counts) <= {0, 1, 2, 3, 0xFF}:
            # calls of many people change from byte to byte; a per-variant code (a contig
            # index, sorted) runs long
            levels = sum(1 for v in (0, 1, 2) if counts.get(v, 0) * 100 >= len(sample))
            part = sample[: 16 * KIB]
            changes = sum(1 for a, b in zip(part, part[1:], strict=False) if a != b)
            if levels >= 2 and changes * 100 >= len(part):
                self.hit(
                    GENOTYPE_MATRIX,
                    f"{_size(src.size)} of bytes that are all genotype codes (0, 1, 2, missing)",
                    f"すべて遺伝型コード（0、1、2、欠測）のバイト列 {_size(src.size)}",
                    0,
                    chain,
                )
                return
        # binary with text inside (an HDF5 file, a UTF-16 table): its strings are read
        whole = self.whole(src)
        for a, b in [(0, src.size)] if whole is not None else self.scan_ranges(src.size):
            piece = whole[a:b] if whole is not None else src.read(a, b)
            self.ids(piece, chain)
            if piece.count(b"\x00") * 4 > len(piece):
                self.ids(piece.replace(b"\x00", b""), chain)
        text = re.sub(rb"[\x00-\x08\x0e-\x1f]+", b"\n", head[: self.r.head_bytes])
        self.window(
            text, (*chain, ("text inside binary content", "バイナリの中のテキスト")), False, True
        )

    # -- text ----------------------------------------------------------------

    def scan_ranges(self, size: int) -> list[tuple[int, int]]:
        """Where a big content is scanned for ids and encoded runs."""
        r = self.r
        if size <= r.full_bytes:
            return [(0, size)]
        out = [(0, r.scan_head)]
        step = (size - r.scan_head - r.scan_tail) // (r.scan_windows + 1)
        for k in range(1, r.scan_windows + 1):
            a = r.scan_head + k * step
            out.append((a, a + r.scan_window))
        out.append((size - r.scan_tail, size))
        return out

    def text_unit(self, src: _Src, chain, depth, *, table_context: bool = False) -> None:
        """Text: ids everywhere, JSON and HTML by structure, encoded runs, records and tables in windows."""
        if src.size == 0 or self.raw_found:
            return
        if depth > self.r.max_depth:
            self.too_deep(src, chain)
            return
        data = self.whole(src) if src.size <= self.r.full_bytes else None
        if data is not None:
            self.ids(data, chain, table=table_context)
            stripped = data[:256].lstrip(b"\xef\xbb\xbf \t\r\n")
            if stripped[:1] in (b"{", b"[") and self.json(data, chain, depth):
                return
            self.encoded(data, chain, depth)
        else:
            for a, b in self.scan_ranges(src.size):
                piece = src.read(a, b)  # each window read once, for ids and encoded runs
                self.ids(piece, chain, table=table_context)
                self.encoded(piece, chain, depth)
                if self.raw_found:
                    return
        if not self.raw_found:
            self.structure(src, data, chain)

    def structure(self, src: _Src, data: bytes | None, chain) -> None:
        """Records and tables in the windows of a text: head, evenly spaced, tail, and around hints."""
        r = self.r
        size = src.size
        if size <= r.head_bytes + r.tail_bytes + r.windows * r.window_bytes:
            spans = [(0, size)]
        else:
            spans = [(0, r.head_bytes)]
            step = (size - r.head_bytes - r.tail_bytes) // (r.windows + 1)
            for k in range(1, r.windows + 1):
                a = r.head_bytes + k * step
                spans.append((a, a + r.window_bytes))
            spans.append((size - r.tail_bytes, size))
            if data is not None:
                spans += self.hinted(data, spans)
        for a, b in spans:
            piece = data[a:b] if data is not None else src.read(a, b)
            self.window(piece, chain, a > 0, b < size)
            if self.raw_found:
                return

    def hinted(self, data: bytes, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Windows around signatures of raw records that lie outside the other windows."""
        out: list[tuple[int, int]] = []
        lo, hi = self.r.head_bytes, len(data) - self.r.tail_bytes
        for hint in _HINTS:
            if data.find(hint[2:3], lo, hi) < 0:
                continue  # no '/' (or '|') at all: found at memchr speed, unlike "\t0" + ...
            at = lo
            for _ in range(4):
                at = data.find(hint, at, hi)
                if at < 0:
                    break
                if not any(a <= at < b for a, b in spans + out):
                    out.append((max(0, at - 4 * KIB), at + 60 * KIB))
                at += 64 * KIB
        return out

    def window(self, piece: bytes, chain, partial_head: bool, partial_tail: bool) -> None:
        """One window of text: raw records (the sniffer) and tables (genotypes, clinical rows)."""
        text = piece.decode("utf-8", "replace")
        if "<t" in text or "<T" in text or "&#9;" in text:
            if re.search(r"(?i)<(table|td|tr|pre)\b", text[: 1 * MIB]) or "&#9;" in text:
                converted = _html_text(text)
                self.lines_of(converted, (*chain, ("HTML", "HTML")), False, False)
                if self.raw_found:
                    return
        self.lines_of(text, chain, partial_head, partial_tail)

    def lines_of(self, text: str, chain, partial_head: bool, partial_tail: bool) -> None:
        finding = self.r.sniffer.classify_lines(text, partial_head, partial_tail)
        if finding is not None:
            self.sniffed(finding, _count_records(finding.kind, text), chain)
            return
        lines = text.splitlines()
        if partial_head and lines:
            lines = lines[1:]
        if partial_tail and lines:
            lines = lines[:-1]
        self.table_lines(lines, chain, text)

    def sniffed(self, finding: Finding, records: int, chain) -> None:
        en, ja = _sniff_how(finding)
        self.hit(finding.kind, en, ja, records, chain)

    # -- ids -----------------------------------------------------------------

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

    # -- encoded runs ----------------------------------------------------------

    def encoded(self, data: bytes, chain, depth) -> None:
        """base64, base32 and hex runs of 64 characters or more are decoded and looked at."""
        mapped = data.translate(_RUNS)
        at = mapped.find(b"a" * _RUN_MIN)
        runs = 0
        while at >= 0 and runs < 64:
            m = _RUN.match(mapped, at)
            end = m.end() if m else at + _RUN_MIN
            run = re.sub(rb"\s+", b"", data[at:end])
            runs += 1
            decoded, label = _decode_run(run)
            if decoded is not None and len(decoded) >= 16:
                if len(decoded) > self.allowance():
                    decoded = decoded[: self.allowance()]
                self.spend(len(decoded))
                self.blob(
                    _Src.of(decoded), (*chain, (f"{label} text", f"{label} テキスト")), depth + 1
                )
                if self.raw_found:
                    return
            at = mapped.find(b"a" * _RUN_MIN, end)
        # the C prefilter: hex byte columns (`61 62 63 09` or `6162 6309 6465`) then a dump line
        at = -1
        if b" " in data:
            hexed = data.translate(_HEX_CLASSES)
            at = hexed.find(b"hh hh hh hh")
            if at < 0:
                at = hexed.find(b"hhhh hhhh hhhh")
        if at >= 0 and _DUMP_LINE.search(data, data.rfind(b"\n", 0, at) + 1):
            self.dump(data, chain, depth)
            if self.raw_found:
                return
        elif at >= 0 and _BARE_DUMP_LINE.search(data, data.rfind(b"\n", 0, at) + 1):
            self.bare_dump(data, chain, depth)
            if self.raw_found:
                return
        # a table shown as a string's repr or in JSON-escaped text: tabs and newlines arrive as
        # the two characters `\t` and `\n` (memchr for a backslash, then two counts, in C)
        if b"\\" in data and data.count(b"\\t") + data.count(b"\\n") >= _MIN_ESCAPES:
            self.text_unit(
                _Src.of(_unescape(data)),
                (*chain, ("escaped text", "エスケープされたテキスト")),
                depth + 1,
            )

    def bare_dump(self, data: bytes, chain, depth) -> None:
        """A hex dump without its offsets (`od -An -t x1`, `xxd -p` with spaces): lines of hex
        bytes only, at least three in a row of one width, reassembled and read again."""
        lines = [m.group(1).replace(b" ", b"") for m in _BARE_DUMP_LINE.finditer(data, 0, 16 * MIB)]
        if len(lines) < 3:
            return
        width = Counter(len(h) for h in lines).most_common(1)[0][0]
        if sum(1 for h in lines if len(h) == width) * 2 < len(lines):
            return
        try:
            decoded = binascii.unhexlify(b"".join(h for h in lines if len(h) <= width))
        except binascii.Error:
            return
        decoded = decoded[: self.allowance()]
        self.spend(len(decoded))
        self.blob(_Src.of(decoded), (*chain, ("a hex dump", "16 進ダンプ")), depth + 1)

    def dump(self, data: bytes, chain, depth) -> None:
        """A hex dump (`od -t x1`, `od -A x -t x1z`, `xxd`, `hexdump -C`): its bytes reassembled.

        A line is an offset, columns of hex bytes (1 or 2 a group) and perhaps an ASCII
        column (`|...|`, `>...<`, or after two spaces). Lines count when their offsets step
        by the bytes a line holds (in hex or, od's default, in octal); a line's bytes are
        cut to that many (an ASCII column that starts like hex is not read as bytes).
        """
        lines = []
        for m in _DUMP_LINE.finditer(data, 0, 16 * MIB):
            hexes = m.group(2).replace(b" ", b"")
            if len(hexes) % 2 == 0:
                lines.append((m.group(1), hexes))
            if len(lines) >= 1_000_000:
                break
        if len(lines) < 3:
            return
        width = Counter(len(h) // 2 for _, h in lines).most_common(1)[0][0]
        steps: Counter = Counter()
        for base in (16, 8):
            try:
                offsets = [int(o, base) for o, _ in lines]
            except ValueError:
                continue
            steps.update((base, b - a) for a, b in zip(offsets, offsets[1:], strict=False))
        if steps[(16, width)] * 2 < len(lines) - 1 and steps[(8, width)] * 2 < len(lines) - 1:
            return  # offsets that do not step by a line's bytes: a table of numbers, not a dump
        try:
            decoded = binascii.unhexlify(b"".join(h[: 2 * width] for _, h in lines))
        except binascii.Error:
            return
        decoded = decoded[: self.allowance()]
        self.spend(len(decoded))
        self.blob(_Src.of(decoded), (*chain, ("a hex dump", "16 進ダンプ")), depth + 1)

    # -- JSON ----------------------------------------------------------------

    def json(self, data: bytes, chain, depth) -> bool:
        try:
            doc = json.loads(data.removeprefix(b"\xef\xbb\xbf"))
        except (ValueError, RecursionError):
            doc = self.python_literal(data)
            if doc is None:
                return False
            self.json_doc(doc, (*chain, ("a Python literal", "Python のリテラル")), depth)
            return True
        if (
            isinstance(doc, dict)
            and isinstance(doc.get("content"), dict)
            and doc.get("type") == "notebook"
        ):
            doc = doc["content"]  # a contents-API model of a notebook
        if isinstance(doc, dict) and isinstance(doc.get("cells"), list):
            self.notebook(doc, chain, depth)
        else:
            self.json_doc(doc, (*chain, ("JSON", "JSON")), depth)
        return True

    def python_literal(self, data: bytes):
        """A printed dict or list (`print(df.to_dict())`, `print(g.tolist())`), read safely."""
        if len(data) > 2 * MIB:
            return None
        try:
            return ast.literal_eval(data.decode("utf-8", "replace").strip())
        except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError):
            return None

    def notebook(self, nb: dict, chain, depth) -> None:
        for i, cell in enumerate(nb["cells"]):
            if not isinstance(cell, dict) or self.raw_found:
                continue
            where = (f"cell {i + 1} of a notebook", f"ノートブックのセル {i + 1}")
            for out in cell.get("outputs") or []:
                if not isinstance(out, dict):
                    continue
                for label, value in _output_parts(out):
                    if self.raw_found:
                        return
                    link = (f"its output ({label})", f"その出力（{label}）")
                    if label.startswith("image/") and label != "image/svg+xml":
                        self.image(value, (*chain, where, link), depth)
                    else:
                        self.text_unit(
                            _Src.of(value.encode("utf-8", "surrogatepass")),
                            (*chain, where, link),
                            depth + 1,
                        )
            source = cell.get("source")
            source = "".join(source) if isinstance(source, list) else source
            if isinstance(source, str) and source:
                link = ("its source", "そのソース")
                self.text_unit(
                    _Src.of(source.encode("utf-8", "surrogatepass")),
                    (*chain, where, link),
                    depth + 1,
                )
            for att in (cell.get("attachments") or {}).values():
                if isinstance(att, dict):
                    for mime, value in att.items():
                        if isinstance(value, str):
                            self.image(
                                value,
                                (*chain, where, (f"an attachment ({mime})", f"添付（{mime}）")),
                                depth,
                            )
        if nb.get("metadata"):
            self.json_doc(
                nb["metadata"], (*chain, ("notebook metadata", "ノートブックのメタデータ")), depth
            )

    def image(self, value, chain, depth) -> None:
        """An image in a notebook: passed if it is one, read as encoded content if not."""
        if isinstance(value, list):
            value = "".join(map(str, value))
        if not isinstance(value, str):
            return
        raw = re.sub(rb"\s+", b"", value.encode("ascii", "replace"))
        try:
            start = base64.b64decode(raw[:64] + b"=" * (-len(raw[:64]) % 4))
        except (binascii.Error, ValueError):
            start = b""
        if start.startswith(b"\x89PNG"):
            try:
                image = base64.b64decode(raw + b"=" * (-len(raw) % 4))
            except (binascii.Error, ValueError):
                image = b""
            self.png(_Src.of(image), chain, depth)
        elif not (any(start.startswith(m) for m, _ in _KNOWN) or start[:4] == b"RIFF"):
            self.text_unit(_Src.of(raw), chain, depth + 1)

    def json_doc(self, doc, chain, depth) -> None:
        """Tables in JSON (records, rows, columns) and its strings, long ones one by one."""
        strings: list[str] = []
        budget = [self.allowance()]

        def walk(item, level: int) -> None:
            if budget[0] <= 0 or level > 64:
                return
            if isinstance(item, str):
                budget[0] -= len(item)
                strings.append(item)
                return
            rows = _json_table(item)
            if rows is not None:
                self.table(rows, (*chain, ("a JSON table", "JSON の表")), depth)
                return
            if isinstance(item, dict):
                for key, value in item.items():
                    strings.append(str(key))
                    walk(value, level + 1)
            elif isinstance(item, (list, tuple)):
                if item and all(isinstance(x, str) for x in item):
                    sep = "" if all(x.endswith("\n") for x in item[:-1]) else "\n"
                    joined = sep.join(item)
                    budget[0] -= len(joined)
                    strings.append(joined)
                    if sep and self.member():
                        rows = self.columns_to_rows(item)
                        if rows:
                            self.table(
                                rows,
                                (*chain, ("a JSON list", "JSON のリスト")),
                                depth,
                                header=False,
                            )
                    return
                for x in item:
                    walk(x, level + 1)

        walk(doc, 0)
        short = []
        for s in strings:
            if self.raw_found:
                return
            if len(s) >= 256 or "\n" in s:
                self.text_unit(
                    _Src.of(s.encode("utf-8", "surrogatepass")),
                    (*chain, ("a JSON string", "JSON の文字列")),
                    depth + 1,
                )
            else:
                short.append(s)
        if short:
            self.text_unit(
                _Src.of("\n".join(short).encode("utf-8", "surrogatepass")),
                (*chain, ("its short strings", "その短い文字列")),
                depth + 1,
            )

    # -- tables --------------------------------------------------------------

    def table(self, rows: list, chain, depth, header: bool = True) -> None:
        """Rows of cells from a structured format: ids, records, genotype codes, clinical rows."""
        if not rows:
            return
        lines = [
            "\t".join("" if c is None else str(c) for c in row)
            for row in rows[: self.r.max_table_rows + 1]
        ]
        text = "\n".join(lines)
        data = text.encode("utf-8", "surrogatepass")
        self.ids(data, chain, table=True)
        finding = self.r.sniffer.classify_lines(text)
        if finding is not None:
            self.sniffed(finding, _count_records(finding.kind, text), chain)
            return
        self.table_lines(lines, chain)
        # cells holding content of their own (bytes, long text) are looked at too
        for row in rows[: self.r.max_table_rows]:
            for c in row:
                if isinstance(c, (bytes, bytearray)) and len(c) >= 64 and self.member():
                    self.blob(
                        _Src.of(bytes(c)), (*chain, ("a binary cell", "バイナリのセル")), depth + 1
                    )
                elif isinstance(c, str) and len(c) >= 256 and self.member():
                    self.text_unit(
                        _Src.of(c.encode("utf-8", "surrogatepass")),
                        (*chain, ("a text cell", "テキストのセル")),
                        depth + 1,
                    )
                if self.raw_found:
                    return

    def table_lines(self, lines: list[str], chain, text: str | None = None) -> None:
        """Genotype matrices and per-person clinical rows among `lines` (`text`: them joined)."""
        data = (text if text is not None else "\n".join(lines)).encode("utf-8", "replace").lower()
        matrix = self.genotype_lines(data)
        blocks: list[list[tuple]] = []
        current: list[tuple] = []
        maybe_rows = self.vocabulary_columns(data) >= 2
        for line in lines[: self.r.max_table_rows * 2] if maybe_rows else ():
            if len(line) > 64 * KIB:
                line = line[: 64 * KIB]
            if not line.strip():
                continue  # blank lines (HTML made text has many) neither start nor end a table
            row = self.clinical_row(line)
            if row is None:
                if current:
                    blocks.append(current)
                current = []
            else:
                current.append(row)
        if current:
            blocks.append(current)
        if matrix.found() and not self.cross_tabulation(matrix.labels):
            rows = matrix.wide if matrix.wide >= 3 else matrix.narrow
            self.hit(
                GENOTYPE_MATRIX,
                f"{rows} rows of genotype codes or dosages, up to {matrix.widest} a row",
                f"遺伝型コードまたはドーズの {rows} 行（1 行に最大 {matrix.widest}）",
                rows,
                chain,
            )
        person_rows = 0
        columns: set[str] = set()
        for block in blocks:
            if self.person_block(block):
                person_rows += len(block)
                for _, cols, _ in block:
                    columns |= cols
        if not person_rows and self.r._column_rx is not None and self.tokens & self.r._column_set:
            self.value_table(data, chain)  # the text's words (a set made in C) name a column
        if person_rows:
            names = ", ".join(sorted(columns))
            self.hit(
                CLINICAL_ROWS,
                f"{person_rows} rows of clinical attributes ({names}), one person a row",
                f"臨床属性（{names}）の {person_rows} 行、1 行に 1 人",
                person_rows,
                chain,
            )

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

    def cross_tabulation(self, labels: list[tuple]) -> bool:
        """Rows of small counts labelled once each by a clinical value (a crosstab of
        region by disease in a small cohort) are a table of counts, not genotypes; rows
        of codes whose clinical labels repeat (sex, then calls) are people's rows."""
        values, words = self.r._values, self.r._words
        labelled = sum(1 for lab in labels if any(c in values or c in words for c in lab))
        return labelled * 2 >= len(labels) and len(set(labels)) == len(labels)

    def genotype_lines(self, data: bytes) -> _Matrix:
        """The genotype-code cells of the lines that are almost only numbers and separators."""
        matrix = _Matrix()
        cache: dict = {}
        limit = self.r.max_table_rows * 2
        if PREFILTER:
            lines = _gt_candidate_lines(data, limit)
        else:
            lines = data.split(b"\n")[:limit]
        for line in lines:
            n = len(line)
            # the cheap test first: a line of results keeps its names and exponents here
            if n < 5 or len(line.translate(None, _CODE_BYTES)) * 8 > n:
                continue
            matrix.add(_cells(line[: 64 * KIB].decode("utf-8", "replace")), cache)
        return matrix

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


# ---------------------------------------------------------------------------
# helpers


def _gt_candidate_lines(data: bytes, limit: int) -> Iterable[bytes]:
    """The lines among the first `limit` of `data` (split on newlines) that `_GT_CANDIDATE`
    does not rule out, in order."""
    if data.count(b"\n") >= limit:
        rest = data.split(b"\n", limit)[-1]
        data = data[: len(data) - len(rest) - 1]
    if _GT_FIRST_LINE.match(data):
        end = data.find(b"\n")
        yield data if end < 0 else data[:end]
    for m in _GT_CANDIDATE.finditer(data):
        start = m.end()
        end = data.find(b"\n", start)
        yield data[start:] if end < 0 else data[start:end]


def _is_blosc(head: bytes, size: int) -> bool:
    """A Blosc 1 frame: version 2, a typesize, and its compressed size equal to the content's."""
    if len(head) < 16 or head[0] != 2 or not 1 <= head[3] <= 255:
        return False
    nbytes, blocksize, cbytes = struct.unpack("<III", head[4:16])
    return cbytes == size and 16 <= cbytes and (nbytes == 0 or 0 < blocksize <= max(nbytes, 1))


def _bgzf_block(piece: bytes) -> int:
    at = 0
    while True:
        at = piece.find(b"\x1f\x8b\x08\x04", at)
        if at < 0 or at + 18 > len(piece):
            return -1
        if piece[at + 12 : at + 14] == b"BC":
            return at
        at += 1


def _codec(name: str):
    """A decoder for zstd or lz4 frames from what is importable here, or None."""
    if name == "zstd":
        try:
            from compression import zstd  # Python 3.14

            return lambda d, n: zstd.ZstdDecompressor().decompress(d, n)
        except ImportError:
            pass
        try:
            import zstandard

            return lambda d, n: zstandard.ZstdDecompressor().stream_reader(io.BytesIO(d)).read(n)
        except ImportError:
            pass
    if name == "lz4":
        try:
            import lz4.frame

            return lambda d, n: lz4.frame.LZ4FrameDecompressor().decompress(d, max_length=n)
        except ImportError:
            pass
    try:
        import pyarrow as pa
    except ImportError:
        return None
    if not pa.Codec.is_available(name):
        return None

    def decode(data: bytes, limit: int) -> bytes:
        stream = pa.CompressedInputStream(pa.py_buffer(data), name)
        out = bytearray()
        try:
            while len(out) < limit:
                chunk = stream.read(min(MIB, limit - len(out)))
                if not chunk:
                    break
                out += chunk
        except (OSError, pa.ArrowException):
            if not out:
                raise ValueError(f"not a {name} stream") from None
        return bytes(out)

    return decode


def _decode_run(run: bytes) -> tuple[bytes | None, str]:
    """A run of text as hex, base32 or base64 (standard or URL-safe), whichever it is.

    The run may start in the middle of a quantum (a terminal chunk starts anywhere in
    `base64 file` output) and end in one (the chunk ends anywhere): its end is cut to a
    whole quantum, and when the run read from its first character is not text and has
    no known magic, the other alignments (2 for hex, 8 for base32, 4 for base64) are
    tried on a sample and the one that reads as text is taken.
    """
    if set(run) <= _HEX:
        return _aligned(run, 2, binascii.unhexlify), "hex"
    body = run.rstrip(b"=")
    if b"=" in body:
        body = body.split(b"=", 1)[0]
    if set(body) <= _B32:
        decoded = _aligned(body, 8, base64.b32decode)
        if decoded is not None:
            return decoded, "base32"
    if b"-" in body or b"_" in body:
        fn = base64.urlsafe_b64decode
    else:
        fn = lambda b: base64.b64decode(b, validate=True)  # noqa: E731
    decoded = _aligned(body, 4, fn)
    return (decoded, "base64") if decoded is not None else (None, "")


# the lengths a quantum's last part may have (hex: none; base32: 0, 2, 4, 5, 7 of 8; base64: not 1)
_QUANTUM_ENDS = {2: (0,), 8: (0, 2, 4, 5, 7), 4: (0, 2, 3)}
_ALIGN_SAMPLE = 1200  # characters of a run tried at another alignment (a multiple of 8)
_TEXT_BYTES = bytes([9, 10, 13, *range(32, 127)])
_MAGIC_STARTS = (b"\x1f\x8b", b"PK\x03\x04", b"BZh", b"\xfd7zXZ", b"\x28\xb5\x2f\xfd",
                 b"\x04\x22\x4d\x18", b"PAR1", b"ARROW1", b"\x93NUMPY", b"\x89PNG",
                 b"SQLite format 3", b"BAM\x01", b"BCF")  # fmt: skip


def _quantum_cut(part: bytes, q: int) -> bytes:
    """`part` cut at its end to whole quanta (and a last part that decodes), padded for base32/64."""
    ends = _QUANTUM_ENDS[q]
    n = len(part)
    while n % q not in ends:
        n -= 1
    part = part[:n]
    return part + b"=" * (-n % q) if q > 2 else part


def _text_score(sample: bytes) -> float:
    """About 2 for ASCII text, 1 and more for other UTF-8 text, 3 for a known magic, below 1 else."""
    if not sample:
        return 0.0
    if sample.startswith(_MAGIC_STARTS) or sample[257:262] == b"ustar":
        return 3.0
    score = 1 - len(sample.translate(None, _TEXT_BYTES)) / len(sample)
    try:
        sample.decode("utf-8")
        score += 1
    except UnicodeDecodeError as e:
        if e.start >= len(sample) - 3:  # a character cut by the sample's end
            score += 1
    return score


def _aligned(body: bytes, q: int, fn) -> bytes | None:
    """`fn` of `body` read from its first character, or from the alignment that reads as text."""
    try:
        decoded = fn(_quantum_cut(body, q))
    except (binascii.Error, ValueError):
        decoded = None
    score = _text_score(decoded[: _ALIGN_SAMPLE * 3 // 4]) if decoded else -1.0
    if score >= 1.5 or len(body) < q + 16:
        return decoded
    best, best_score = 0, score
    for a in range(1, q):
        try:
            s = _text_score(fn(_quantum_cut(body[a : a + _ALIGN_SAMPLE], q)))
        except (binascii.Error, ValueError):
            continue
        if s > best_score + 0.5:
            best, best_score = a, s
    if best == 0:
        return decoded
    try:
        return fn(_quantum_cut(body[best:], q))
    except (binascii.Error, ValueError):
        return decoded


def _count_records(kind: str, text: str) -> int:
    """Records of `kind` in a window of text, counted by a cheap line shape."""
    if kind == "fastq":
        return text.count("\n+")
    tabs = {"vcf": 7, "sam": 10, "genotype-table": 7}.get(kind, 4)
    return (
        sum(
            1
            for line in text.splitlines()
            if line and line[0] not in "#@" and line.count("\t") >= tabs
        )
        or 3
    )


def _sniff_how(finding: Finding) -> tuple[str, str]:
    by = finding.by
    m = re.match(r"(\d+) lines shaped like its records", by)
    if m:
        return by.replace(
            "its records", f"{finding.kind} records"
        ), f"{finding.kind} のレコードの形をした {m.group(1)} 行"
    m = re.match(r"its magic bytes \((.*)\)", by)
    if m:
        return by, f"マジックバイト（{m.group(1)}）"
    m = re.match(r"(\d+) FASTQ records", by)
    if m:
        return by, f"FASTQ レコード {m.group(1)} 件"
    if by.startswith("its name"):
        return f"{by} in an archive", "アーカイブの中の名前"
    if by.startswith("its place in the store"):
        return by, "ストアの中の位置"
    m = re.match(r"its (\w+) header", by)
    if m:
        return by, f"{m.group(1)} ヘッダー"
    return by, "内容の形"


def _output_parts(out: dict) -> list[tuple[str, str]]:
    parts = []
    text = out.get("text")
    if text:
        parts.append(("stream", text if isinstance(text, str) else "".join(map(str, text))))
    for mime, value in (out.get("data") or {}).items():
        if isinstance(value, list):
            value = "".join(map(str, value))
        if not isinstance(value, str):
            value = json.dumps(value)
        parts.append((mime, value))
    if out.get("traceback"):
        parts.append(("traceback", "\n".join(map(str, out["traceback"]))))
    return parts


def _scalar(x) -> bool:
    return x is None or isinstance(x, (str, int, float, bool))


def _json_table(item) -> list | None:
    """Rows of a JSON table: records, rows, or columns (pandas' orients); None if not one."""
    if isinstance(item, (list, tuple)) and len(item) >= 2:
        if all(isinstance(x, dict) for x in item[:50]) and all(
            all(_scalar(v) for v in x.values()) for x in item[:50]
        ):
            keys = list(item[0].keys())
            return [keys] + [list(x.values()) for x in item if isinstance(x, dict)]
        if all(isinstance(x, (list, tuple)) for x in item[:50]) and all(
            all(_scalar(v) for v in x[:100]) for x in item[:50]
        ):
            return [list(x) for x in item if isinstance(x, (list, tuple))]
    if isinstance(item, dict) and len(item) >= 2:
        values = list(item.values())
        if all(isinstance(v, (list, tuple)) and all(_scalar(x) for x in v[:50]) for v in values):
            n = len(values[0])
            if n >= 2 and all(len(v) == n for v in values):
                return [list(item.keys())] + [list(r) for r in zip(*values, strict=True)]
        if all(isinstance(v, dict) for v in values) and all(
            all(_scalar(x) for x in list(v.values())[:50]) for v in values
        ):
            index = list(values[0].keys())
            if len(index) >= 2 and all(list(v.keys()) == index for v in values[:50]):
                return [list(item.keys())] + [[v.get(i) for v in values] for i in index]
    return None


def _arrow_rows(table, rows: int, columns: int) -> list[list]:
    import pyarrow as pa
    import pyarrow.compute as pc

    table = table.slice(0, rows).select(list(range(min(columns, table.num_columns))))
    table.validate(full=True)  # damaged offsets or text raise here (ArrowInvalid), not below
    out_columns = []
    for col in table.columns:
        try:
            # through binary: text that is not UTF-8 is read with replacements, not refused
            raw = pc.cast(pc.cast(col, pa.string()), pa.binary()).to_pylist()
            values = [None if v is None else v.decode("utf-8", "replace") for v in raw]
        except (pa.ArrowException, NotImplementedError):
            values = [v if isinstance(v, (bytes, bytearray)) else str(v) for v in col.to_pylist()]
        out_columns.append(values)
    return [list(table.column_names)] + [list(r) for r in zip(*out_columns, strict=True)]


def _xlsx_rows(xml: str, shared: list[str], limit: int) -> list[list[str]]:
    rows = []
    for row in re.finditer(r"<row\b[^>]*>(.*?)</row>", xml, re.S):
        cells: dict[int, str] = {}
        for c in re.finditer(r"<c\b([^>]*?)(?:/>|>(.*?)</c>)", row.group(1), re.S):
            attrs, body = c.group(1), c.group(2) or ""
            ref = re.search(r'\br="([A-Z]+)', attrs)
            col = 0
            for ch in ref.group(1) if ref else "":
                col = col * 26 + ord(ch) - 64
            kind = re.search(r'\bt="(\w+)"', attrs)
            v = re.search(r"<v>(.*?)</v>", body, re.S)
            if kind and kind.group(1) == "s" and v:
                i = int(v.group(1)) if v.group(1).isdigit() else -1
                value = shared[i] if 0 <= i < len(shared) else ""
            elif kind and kind.group(1) == "inlineStr":
                value = "".join(re.findall(r"<t\b[^>]*>(.*?)</t>", body, re.S))
            else:
                value = v.group(1) if v else ""
            cells[col or len(cells) + 1] = html.unescape(value)
        if cells:
            rows.append([cells.get(i, "") for i in range(1, max(cells) + 1)])
        if len(rows) > limit:
            break
    return rows


def _packed_calls(values, shape: tuple) -> bool:
    """Genotype calls packed two bits each (the sites' `genotypes.packed.npy` layout, or any
    like it): uint64 words as (variants, 2, words), a person's bit set in plane 0 for a
    heterozygous or missing call and in plane 1 for a homozygous-alternate or missing one,
    so the bits set in both planes (missing calls) are few beside those set in either."""
    import numpy as np

    if values.dtype.kind != "u" or values.dtype.itemsize != 8 or len(shape) != 3:
        return False
    if shape[1] != 2 or shape[0] < 10 or shape[2] < 1:
        return False
    rows = values[: (values.size // (2 * shape[2])) * 2 * shape[2]].reshape(-1, 2, shape[2])
    if len(rows) < 10:
        return False
    p0, p1 = rows[:, 0], rows[:, 1]
    either = int(np.bitwise_count(p0 | p1).sum())
    both = int(np.bitwise_count(p0 & p1).sum())
    return either >= 64 and both * 10 < either


def _genotype_array(values, shape: tuple) -> bool:
    """A NumPy array of calls (-1/0/1, 0/1/2, missing) or dosages in [0, 2] over many people?"""
    import numpy as np

    dims = sorted((int(d) for d in shape), reverse=True)
    if len(dims) < 2 or dims[0] < 20 or dims[1] < 3 or values.size < 60:
        return False
    if values.dtype.kind in "iu":
        seen = set(np.unique(values[:1_000_000]).tolist())
        return seen <= {-1, 0, 1, 2, 3, 255} and len(seen & {0, 1, 2}) >= 2
    finite = values[~np.isnan(values)]
    if finite.size < 60 or finite.min() < 0 or finite.max() > 2:
        return False
    level = np.round(finite)
    near = np.abs(finite - level) <= 0.1
    if near.mean() < 0.7:
        return False
    counts = np.sort(np.bincount(level[near].astype(np.int64), minlength=3))[::-1]
    return bool(counts[1] >= 0.05 * finite.size or (counts[1] and (finite == level).all()))
