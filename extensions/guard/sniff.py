"""Recognise raw genomic data by name and by content.

The guard asks one question of a file or of bytes about to leave: is this raw
genomic data? The answer is a `Finding` (which kind, recognised how) or None.

Content is recognised by signature, never by name alone:

- magic bytes: BAM (inside BGZF), CRAM, BCF, BGEN, PLINK 1 .bed and PLINK 2
  .pgen;
- headers: VCF meta lines and the #CHROM line, SAM @HD/@SQ lines;
- record shape, so that records pasted into any text count: VCF/gVCF data
  lines, SAM alignments, FASTQ reads, PLINK .bim and .fam lines, and
  tables of genotype calls (0/1, 1|1, ...);
- stores: a Hail MatrixTable or a VCF Zarr store, from any file inside it;
- containers, recursively: gzip and BGZF, bzip2, xz, zip and tar members,
  JSON strings (notebooks, contents-API models), HTML text.

Only bounded windows are read: the head and the tail of a file, a bounded
amount of decompressed bytes, a bounded number of archive members; a 1 GB
file costs the same as a 2 MB one. Raw records placed in the middle of a
huge file, beyond both windows, are not seen; the size cap on downloads
bounds that channel.
"""

from __future__ import annotations

import bz2
import fnmatch
import functools
import html
import io
import json
import lzma
import os
import re
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

KINDS: dict[str, tuple[str, str]] = {
    # kind: (English, Japanese)
    "fastq": ("FASTQ sequencing reads", "FASTQ シーケンスリード"),
    "sam": ("SAM alignments", "SAM アラインメント"),
    "bam": ("BAM alignments", "BAM アラインメント"),
    "cram": ("CRAM alignments", "CRAM アラインメント"),
    "vcf": ("VCF variant calls", "VCF バリアントコール"),
    "bcf": ("BCF variant calls", "BCF バリアントコール"),
    "bgen": ("BGEN genotypes", "BGEN 遺伝型データ"),
    "plink": ("PLINK genotype files", "PLINK 遺伝型ファイル"),
    "genotype-table": ("a table of individual genotype calls", "個人ごとの遺伝型の表"),
    "hail-matrixtable": ("a Hail MatrixTable", "Hail MatrixTable"),
    "vcf-zarr": ("a VCF Zarr store", "VCF Zarr ストア"),
    "notebook-output": ("notebook outputs", "ノートブックの出力"),
    "pattern": (
        "a file name the platform lists as raw data",
        "プラットフォームが生データと定める名前",
    ),
    # found by the recogniser (recognise/), which uses this table for every kind it reports
    "people-table": ("a table naming people of the cohort", "コホートの個人を名指しする表"),
    "genotype-matrix": ("a matrix of individual genotypes", "個人ごとの遺伝型の行列"),
    "clinical-rows": (
        "clinical or phenotype rows, one person a row",
        "個人ごとの臨床情報・表現型の行",
    ),
}

# Built-in name rules: (glob on the lower-cased base name, kind). Compression
# suffixes (.gz, .bgz, .bz2, .xz, .zst) are stripped first. PLINK's .bed is
# not here: UCSC BED interval files share the suffix, so .bed is judged by
# its magic bytes.
DEFAULT_NAME_PATTERNS: tuple[tuple[str, str], ...] = (
    ("*.fastq", "fastq"),
    ("*.fq", "fastq"),
    ("*.sam", "sam"),
    ("*.bam", "bam"),
    ("*.cram", "cram"),
    ("*.vcf", "vcf"),
    ("*.gvcf", "vcf"),
    ("*.bcf", "bcf"),
    ("*.bgen", "bgen"),
    ("*.bim", "plink"),
    ("*.fam", "plink"),
    ("*.pgen", "plink"),
    ("*.pvar", "plink"),
    ("*.psam", "plink"),
)
# Folder names that make every file below them part of a store.
STORE_DIR_PATTERNS: tuple[tuple[str, str], ...] = (
    ("*.mt", "hail-matrixtable"),
    ("*.vcf.zarr", "vcf-zarr"),
    ("*.vcz", "vcf-zarr"),
)
_CONTROL_RUNS = re.compile(rb"[\x00-\x08\x0e-\x1f]+")
_STORE_RX = [(re.compile(fnmatch.translate(p)), kind) for p, kind in STORE_DIR_PATTERNS]
COMPRESSION_SUFFIXES = (".gz", ".bgz", ".bgzf", ".bz2", ".xz", ".zst")

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True)
class Finding:
    """Raw data of `kind`, recognised `by` (a readable chain, outermost first)."""

    kind: str
    by: str
    detail_text: str = ""

    @property
    def detail(self) -> str:
        extra = f": {self.detail_text}" if self.detail_text else ""
        return f"{self.kind} recognised by {self.by}{extra}"

    def describe_en(self) -> str:
        return f"{KINDS.get(self.kind, (self.kind,))[0]}, recognised by {self.by}"

    def describe_ja(self) -> str:
        label = KINDS.get(self.kind, (self.kind, self.kind))[1]
        return f"{label}、{self.by} により判定"

    def inside(self, container: str) -> Finding:
        return Finding(self.kind, f"{container} > {self.by}", self.detail_text)


# ---------------------------------------------------------------------------
# record shapes

_NUM = r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?"
_RE_INT = re.compile(r"^\d+$")
_RE_NUM = re.compile(rf"^{_NUM}$")
_RE_BASES = re.compile(r"^[ACGTNacgtn]+$")
_RE_ALT = re.compile(
    r"^(\.|\*|<[^<>\s]+>|[ACGTNacgtn*]+|[ACGTNacgtn]*[\[\]][^\s\[\]]+[\[\]][ACGTNacgtn]*)"
    r"(,(\*|<[^<>\s]+>|[ACGTNacgtn*]+|[ACGTNacgtn]*[\[\]][^\s\[\]]+[\[\]][ACGTNacgtn]*))*$"
)
_RE_QUAL = re.compile(rf"^(\.|{_NUM})$")
_RE_FILTER = re.compile(r"^(\.|PASS|[A-Za-z_][\w.-]*(;[A-Za-z_][\w.-]*)*)$")
_RE_INFO = re.compile(r"^(\.|[A-Za-z_][\w.]*(=[^;\t]*)?(;[A-Za-z_][\w.]*(=[^;\t]*)?)*)$")
_RE_FORMAT = re.compile(r"^[A-Za-z_][\w]*(:[A-Za-z_][\w]*)*$")
_RE_CHROM = re.compile(r"^[^\s#<>][^\s<>]*$")
_RE_GT = re.compile(r"^(\.|\d+)([/|](\.|\d+))+$")
_RE_CIGAR = re.compile(r"^(\*|(\d+[MIDNSHPX=])+)$")
_RE_SEQ = re.compile(r"^(\*|[A-Za-z=.]+)$")
_RE_SEQ_READ = re.compile(r"^[ACGTNacgtn.]+$")
_RE_ALLELE = re.compile(r"^([ACGTNacgtn]+|0|\.|-|<[^<>\s]+>|[IDid])$")
_RE_ID = re.compile(r"^\S+$")


def is_vcf_record(fields: list[str]) -> bool:
    """A VCF/gVCF/pVCF data line, split on tabs (sites-only lines count too)."""
    if len(fields) < 8 or len(fields) == 9:
        return False
    chrom, pos, _id, ref, alt, qual, filt, info = fields[:8]
    if not (pos.isdigit() and (filt in (".", "PASS") or filt[:1].isalpha() or filt[:1] == "_")):
        return False  # the cheap tests first: most lines of a results table fail here
    if not (_RE_CHROM.match(chrom) and _RE_INT.match(pos)):
        return False
    if not ((_RE_BASES.match(ref) or ref == ".") and _RE_ALT.match(alt)):
        return False
    if not (_RE_QUAL.match(qual) and _RE_FILTER.match(filt) and _RE_INFO.match(info)):
        return False
    if len(fields) >= 10:
        if not _RE_FORMAT.match(fields[8]):
            return False
    return True


def is_pvar_record(fields: list[str]) -> bool:
    """A PLINK 2 .pvar line with only CHROM POS ID REF ALT (VCF's first five columns)."""
    return (
        len(fields) == 5
        and bool(_RE_CHROM.match(fields[0]) and _RE_INT.match(fields[1]))
        and bool(_RE_BASES.match(fields[3]) and _RE_ALT.match(fields[4]))
        and fields[4] != "."
    )


def is_sam_record(fields: list[str]) -> bool:
    if len(fields) < 11:
        return False
    qname, flag, rname, pos, mapq, cigar, rnext, pnext, tlen, seq, qual = fields[:11]
    if not (_RE_ID.match(qname) and _RE_INT.match(flag) and int(flag) < 4096):
        return False
    if not (_RE_ID.match(rname) and _RE_INT.match(pos) and _RE_INT.match(mapq)):
        return False
    if not (_RE_CIGAR.match(cigar) and _RE_ID.match(rnext) and _RE_INT.match(pnext)):
        return False
    if not re.match(r"^-?\d+$", tlen) or not _RE_SEQ.match(seq):
        return False
    return qual == "*" or (seq != "*" and len(qual) == len(seq))


def is_bim_record(fields: list[str]) -> bool:
    return (
        len(fields) == 6
        and bool(_RE_CHROM.match(fields[0]) and _RE_ID.match(fields[1]))
        and bool(_RE_NUM.match(fields[2]) and _RE_INT.match(fields[3]))
        and bool(_RE_ALLELE.match(fields[4]) and _RE_ALLELE.match(fields[5]))
    )


def is_fam_record(fields: list[str]) -> bool:
    # FID and IID are identifiers; father and mother are an IID or 0.
    if len(fields) != 6 or fields[4] not in ("0", "1", "2"):
        return False
    if not (_RE_NUM.match(fields[5]) or fields[5] == "NA"):
        return False
    if _RE_NUM.match(fields[0]) and _RE_NUM.match(fields[1]) and _RE_NUM.match(fields[2]):
        return False  # an all-number row is a numeric table, not a pedigree
    return (
        fields[2] == "0"
        or fields[3] == "0"
        or fields[2] == fields[0]
        or bool(re.search(r"[A-Za-z]", fields[2]))
    )


def is_genotype_row(fields: list[str], min_calls: int = 8) -> bool:
    """A row holding many individual genotype calls (0/1, 1|1, ./., 0/1:30:99)."""
    calls = 0
    for f in fields:
        if _RE_GT.match(f.split(":", 1)[0]):
            calls += 1
    return calls >= min_calls and calls >= len(fields) // 2


# ---------------------------------------------------------------------------
# the sniffer


class Sniffer:
    """Classifies names, bytes, text and files; every read is bounded.

    head_bytes / tail_bytes: the windows read from a file;
    decompressed_bytes: how much of a compressed stream is inflated;
    archive_members: how many members of a zip or tar are looked at;
    min_records: how many lines of one record shape make raw data.
    """

    def __init__(
        self,
        name_patterns: Iterable = DEFAULT_NAME_PATTERNS,
        head_bytes: int = 1 * MIB,
        tail_bytes: int = 256 * KIB,
        decompressed_bytes: int = 4 * MIB,
        archive_members: int = 256,
        max_depth: int = 4,
        min_records: int = 3,
        disabled_kinds: Iterable[str] = (),
    ):
        self.name_patterns: list[tuple[str, str]] = []
        for p in name_patterns:
            pattern, kind = (p, "pattern") if isinstance(p, str) else p
            self.name_patterns.append((pattern.lower(), kind))
        self._name_rx = [
            (re.compile(fnmatch.translate(p)), p, kind) for p, kind in self.name_patterns
        ]
        self.head_bytes = head_bytes
        self.tail_bytes = tail_bytes
        self.decompressed_bytes = decompressed_bytes
        self.archive_members = archive_members
        self.max_depth = max_depth
        self.min_records = min_records
        self.disabled = frozenset(disabled_kinds)
        unknown = self.disabled - set(KINDS)
        if unknown:
            raise ValueError(f"disabled_kinds: unknown kind(s) {sorted(unknown)}")

    def _found(self, kind: str, by: str, detail: str = "") -> Finding | None:
        return None if kind in self.disabled else Finding(kind, by, detail)

    # -- names ---------------------------------------------------------------

    def classify_name(self, name: str) -> Finding | None:
        """Raw data by its name: the base name, or a store folder on its path.

        Platform patterns are matched against the base name and the whole path.
        """
        if not name:
            return None
        path = name.replace("\\", "/").lower()
        parts = [p for p in path.split("/") if p]
        if not parts:
            return None
        base = parts[-1]
        stripped = base
        for suffix in COMPRESSION_SUFFIXES:
            if stripped.endswith(suffix):
                stripped = stripped[: -len(suffix)]
                break
        for rx, pattern, kind in self._name_rx:
            if kind == "pattern":
                if rx.match(base) or rx.match(path):
                    return self._found(kind, f"its name matching {pattern!r}")
            elif rx.match(stripped):
                return self._found(kind, f"its name ({pattern})")
        for part in parts:
            for rx, kind in _STORE_RX:
                if rx.match(part):
                    return self._found(kind, f"its place in the store {part!r}")
        return None

    # -- files ---------------------------------------------------------------

    def classify_path(self, path: str | os.PathLike) -> Finding | None:
        """Raw data by the content of a file (or the store it belongs to)."""
        path = os.fspath(path)
        finding = self._store_of(path)
        if finding is not None:
            return finding
        if os.path.isdir(path):
            return None
        try:
            size = os.path.getsize(path)
            with open(path, "rb") as f:
                head = f.read(self.head_bytes)
                if zipfile.is_zipfile(f) if head[:2] == b"PK" else False:
                    f.seek(0)
                    return self._zip(f, os.path.basename(path), 1)
                tail = b""
                if size > len(head):
                    f.seek(max(len(head), size - self.tail_bytes))
                    tail = f.read(self.tail_bytes)
        except OSError:
            return None
        finding = self.classify_bytes(head, os.path.basename(path), truncated=bool(tail))
        if finding is None and tail:
            finding = self._text(tail, partial_head=True)
            if finding is not None:
                finding = finding.inside("the end of the file")
        return finding

    def _store_of(self, path: str) -> Finding | None:
        """A Hail MatrixTable or VCF Zarr store that `path` is part of, by its metadata."""
        d = path if os.path.isdir(path) else os.path.dirname(path)
        for _ in range(6):
            if not d or d == os.path.dirname(d):
                return None
            try:
                names = set(os.listdir(d))
            except OSError:
                return None
            if "metadata.json.gz" in names and {"rows", "cols"} <= names:
                if self._hail_metadata(os.path.join(d, "metadata.json.gz")):
                    return self._found(
                        "hail-matrixtable", f"the MatrixTable metadata in {os.path.basename(d)!r}"
                    )
            if names & {".zgroup", "zarr.json"} and (
                "call_genotype" in names or "variant_position" in names
            ):
                return self._found("vcf-zarr", f"the VCF Zarr arrays in {os.path.basename(d)!r}")
            d = os.path.dirname(d)
        return None

    def _hail_metadata(self, path: str) -> bool:
        try:
            with open(path, "rb") as f:
                data = _inflate(f.read(64 * KIB), 256 * KIB)
        except (OSError, ValueError):
            return False
        return b"MatrixTableSpec" in data

    # -- bytes ---------------------------------------------------------------

    def classify_bytes(
        self, data: bytes, name: str = "", truncated: bool = False, depth: int = 0
    ) -> Finding | None:
        """Raw data in `data` (the first bytes of something, or all of it)."""
        if not data or depth > self.max_depth:
            return None
        magic = self._magic(data)
        if magic is not None:
            return magic
        if data[:2] == b"\x1f\x8b":
            bgzf = len(data) >= 18 and data[3] & 4 and data[12:14] == b"BC"
            try:
                inner = _inflate(data, self.decompressed_bytes)
            except ValueError:
                inner = b""
            if inner:
                container = "BGZF" if bgzf else "gzip"
                if inner[:4] == b"BAM\x01":
                    return self._found("bam", "its magic bytes (BAM in BGZF)")
                if inner[:3] == b"BCF" and inner[3:4] in (b"\x02", b"\x01"):
                    return self._found("bcf", "its magic bytes (BCF in BGZF)")
                if _is_tar(inner):
                    return self._tar(inner, name, depth + 1, container)
                found = self.classify_bytes(inner, _strip(name), True, depth + 1)
                return found.inside(container) if found else None
            return None
        for magic_bytes, container, decompress in (
            (b"BZh", "bzip2", _bunzip),
            (b"\xfd7zXZ\x00", "xz", _unxz),
        ):
            if data.startswith(magic_bytes):
                try:
                    inner = decompress(data, self.decompressed_bytes)
                except (OSError, ValueError, EOFError, lzma.LZMAError):
                    return None
                if _is_tar(inner):
                    return self._tar(inner, name, depth + 1, container)
                found = self.classify_bytes(inner, _strip(name), True, depth + 1)
                return found.inside(container) if found else None
        if data[:4] == b"PK\x03\x04":
            return self._zip(io.BytesIO(data), name, depth + 1)
        if _is_tar(data):
            return self._tar(data, name, depth + 1, "tar")
        return self._text(data, partial_tail=truncated)

    def classify_magic(self, data: bytes) -> Finding | None:
        """Raw data by the magic bytes at the start of `data` alone (no containers, no text)."""
        return self._magic(data)

    def _magic(self, data: bytes) -> Finding | None:
        if data[:4] == b"CRAM":
            return self._found("cram", "its magic bytes (CRAM)")
        if data[:4] == b"BAM\x01":
            return self._found("bam", "its magic bytes (BAM)")
        if data[:3] == b"BCF" and data[3:4] in (b"\x02", b"\x01"):
            return self._found("bcf", "its magic bytes (BCF)")
        if len(data) >= 20 and data[16:20] == b"bgen":
            offset, header = struct.unpack("<II", data[:8])
            if 20 <= header <= offset + 4:
                return self._found("bgen", "its magic bytes (BGEN)")
        if data[:2] == b"\x6c\x1b" and len(data) >= 3:
            if data[2] == 0x01:
                return self._found("plink", "its magic bytes (PLINK .bed)")
            if data[2] in (0x02, 0x03, 0x04, 0x10, 0x11, 0x20, 0x21):
                return self._found("plink", "its magic bytes (PLINK 2 .pgen)")
        return None

    # -- archives ------------------------------------------------------------

    def _zip(self, fileobj, name: str, depth: int) -> Finding | None:
        if depth > self.max_depth:
            return None
        try:
            z = zipfile.ZipFile(fileobj)
        except (zipfile.BadZipFile, OSError, ValueError):
            return None
        with z:
            for info in z.infolist()[: self.archive_members]:
                if info.is_dir():
                    continue
                where = f"zip member {info.filename!r}"
                found = self.classify_name(info.filename)
                if found is None:
                    try:
                        with z.open(info) as member:
                            data = member.read(self.head_bytes)
                    except (zipfile.BadZipFile, OSError, ValueError, RuntimeError, EOFError):
                        continue  # encrypted or damaged members are not readable here
                    truncated = info.file_size > len(data)
                    if data[:4] == b"PK\x03\x04" and not truncated:
                        found = self._zip(io.BytesIO(data), info.filename, depth + 1)
                    else:
                        found = self.classify_bytes(data, info.filename, truncated, depth)
                if found is not None:
                    return found.inside(where)
        return None

    def _tar(self, data: bytes, name: str, depth: int, container: str) -> Finding | None:
        if depth > self.max_depth:
            return None
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as t:
                for n, member in enumerate(t):
                    if n >= self.archive_members:
                        break
                    if not member.isfile():
                        continue
                    where = f"{container} member {member.name!r}"
                    found = self.classify_name(member.name)
                    if found is None:
                        f = t.extractfile(member)
                        if f is None:
                            continue
                        chunk = f.read(self.head_bytes)
                        found = self.classify_bytes(
                            chunk, member.name, member.size > len(chunk), depth
                        )
                    if found is not None:
                        return found.inside(where)
        except (tarfile.TarError, EOFError, OSError):
            return None  # a tar cut short by the decompression bound ends here
        return None

    # -- text ----------------------------------------------------------------

    def classify_text(self, text: str) -> Finding | None:
        return self._text(text.encode("utf-8", "surrogatepass"))

    def _text(
        self, data: bytes, partial_head: bool = False, partial_tail: bool = False
    ) -> Finding | None:
        if b"\x00" in data:
            # binary, or text behind NUL bytes: read what lies between them as lines
            data = _CONTROL_RUNS.sub(b"\n", data)
        text = data.decode("utf-8", "replace")
        stripped = text.lstrip("\ufeff \t\r\n")
        if stripped[:1] in "{[" and stripped:
            found = self._json(stripped)
            if found is not None:
                return found
        if re.search(r"<(html|pre|table|body|div|td)\b", text[:65536], re.I) or "&#9;" in text:
            found = self._lines(_html_text(text), partial_head, partial_tail)
            if found is not None:
                return found.inside("HTML text")
        return self._lines(text, partial_head, partial_tail)

    def _json(self, text: str) -> Finding | None:
        try:
            doc = json.loads(text)
        except ValueError:
            # cut off by a window: undo the string escapes and read it as text
            unescaped = text.replace("\\t", "\t").replace("\\n", "\n").replace('\\"', '"')
            found = self._lines(unescaped, False, True)
            return found.inside("JSON text") if found else None
        if isinstance(doc, dict) and isinstance(doc.get("cells"), list):
            return self._notebook(doc)
        strings = "\n".join(_json_strings(doc, budget=self.decompressed_bytes))
        found = self._lines(strings, False, False)
        return found.inside("JSON strings") if found else None

    def _notebook(self, nb: dict) -> Finding | None:
        cells = [c for c in nb["cells"] if isinstance(c, dict)]
        if "notebook-output" not in self.disabled:
            for cell in cells:
                for out in cell.get("outputs") or []:
                    if isinstance(out, dict):
                        found = self.classify_output(out)
                        if found is not None:
                            return found
        for cell in cells:
            source = cell.get("source")
            source = "".join(source) if isinstance(source, list) else source
            if isinstance(source, str):
                found = self._lines(source, False, False)
                if found is not None:
                    return found.inside(f"a {cell.get('cell_type', 'notebook')} cell")
        return None

    def classify_output(self, out: dict) -> Finding | None:
        """Raw records in one notebook output (stream, display data, error)."""
        if "notebook-output" in self.disabled:
            return None
        text = output_text(out)
        if not text:
            return None
        found = self._lines(text, False, False)
        if found is None and re.search(r"<(pre|table|td)\b", text, re.I):
            found = self._lines(_html_text(text), False, False)
        return found.inside("a notebook output") if found else None

    def classify_lines(
        self, text: str, partial_head: bool = False, partial_tail: bool = False
    ) -> Finding | None:
        """Raw records in plain text by headers and record shapes (no JSON, HTML or containers).

        partial_head / partial_tail: the text is a window cut inside a line at that end.
        """
        return self._lines(text, partial_head, partial_tail)

    def _lines(self, text: str, partial_head: bool, partial_tail: bool) -> Finding | None:
        """Raw data by headers and record shapes; only candidate lines are split and checked."""
        if partial_head:
            text = text[text.find("\n") + 1 :] if "\n" in text else ""
        if partial_tail and "\n" in text:
            text = text[: text.rfind("\n")]
        if not text:
            return None
        at_line_start = "\n" + text
        if any("\n" + h in at_line_start for h in _VCF_HEADERS):
            found = self._found("vcf", "its VCF header")
            if found:
                return found
        if any("\n" + h in at_line_start for h in _SAM_HEADERS):
            found = self._found("sam", "its SAM header")
            if found:
                return found
        kinds: dict[str, int] = {}
        for line in _record_candidates(text) if PREFILTER else text.splitlines():
            # a line worth a closer look: four tabs or more, or five spaces or more
            if line.count("\t") < 4 and line.count(" ") < 5:
                continue
            line = line.strip("\r")
            if line.startswith("#"):
                continue
            kind = _record_kind(line)
            if kind is None or kind in self.disabled:
                continue
            kinds[kind] = n = kinds.get(kind, 0) + 1
            if n >= self.min_records:
                return Finding(kind, f"{n} lines shaped like its records")
        if "\n+" in at_line_start and "\n@" in at_line_start:
            n = sum(1 for m in _FASTQ.finditer(text) if len(m.group(2)) == len(m.group(1)))
            if n >= 2:
                return self._found("fastq", f"{n} FASTQ records")
        return None


_FASTQ = re.compile(r"^@[^\n]+\n([ACGTNacgtn.]+)\r?\n\+[^\n]*\n([^\n]+?)\r?$", re.M)

# -- which lines may be records -----------------------------------------------------------
# `_record_kind` is asked only about lines that `_record_rules` finds (at C speed over the
# whole text); the others are shown not to be records by what each rule of `_record_kind`
# needs before anything else:
# - VCF: 8 tab-separated fields or more, POS all digits, FILTER beginning with '.' or a letter
#   ('_' and PASS included);
# - SAM: 11 tab-separated fields or more, FLAG all digits, CIGAR beginning as one does;
# - PLINK 2 .pvar: exactly 5 tab-separated fields, POS all digits;
# - PLINK .bim / .fam: exactly 6 tab-separated fields, or 6 whitespace-separated ones;
# - a table of genotype calls: 8 '/' or '|' or more (looked for only when the text has 8).
# `\d`, `\w` and `\s` are Unicode's, as in the record rules. Lines are what str.splitlines()
# makes of the text when its only line breaks are "\n" and "\r\n"; any other text is checked
# line by line. Skipping a line that is no record changes nothing, so the finding is the one
# every line's check gives (tests/unit/test_sniff.py compares them).
_ODD_BREAKS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
# the prefilter can be switched off to compare with the check of every line
PREFILTER = True


@functools.cache
def _record_rules(calls: bool) -> tuple[re.Pattern, re.Pattern]:
    f = r"[^\r\n\t]*+\t"  # a tab-separated field and its tab
    end = r"[^\r\n\t]*+(?![^\r\n])"  # the line's last field
    sp = r"[^\S\r\n]"  # whitespace within a line
    rules = (
        # field 0, then POS / FLAG all digits: .pvar, .bim/.fam, SAM (a CIGAR), VCF (FILTER)
        rf"{f}(?:\d++\t{f}{f}(?:{end}|{f}(?:{end}|(?=\*|\d++[MIDNSHPX=]){f * 5}"
        rf"|{f}(?:\.|[^\W\d])))"
        rf"|(?!\d++\t){f * 4}{end})"  # .bim/.fam
        rf"|{sp}*+(?:\S++{sp}++){{5}}\S++{sp}*+(?![^\r\n])"  # .bim/.fam, whitespace-separated
    )
    if calls:
        rules += r"|(?:[^\r\n/|]*+[/|]){8}"
    return re.compile(rf"(?={rules})[^\r\n]*"), re.compile(rf"\n(?={rules})([^\r\n]*)")


def _record_candidates(text: str) -> Iterable[str]:
    """The lines of `text` that may be records, in order (see `_record_rules`)."""
    if any(c in text for c in _ODD_BREAKS) or text.count("\r") != text.count("\r\n"):
        return text.splitlines()
    first, rest = _record_rules(text.count("/") + text.count("|") >= 8)
    return _matched_lines(text, first, rest)


def _matched_lines(text: str, first: re.Pattern, rest: re.Pattern) -> Iterator[str]:
    m = first.match(text)
    if m:
        yield m.group()
    for m in rest.finditer(text):
        yield m.group(1)


_VCF_HEADERS = ("##fileformat=VCF", "#CHROM\tPOS\tID\tREF\tALT")
_SAM_HEADERS = ("@HD\tVN:", "@SQ\tSN:", "@RG\tID:")


def _record_kind(line: str) -> str | None:
    fields = line.split("\t")
    if len(fields) >= 8 and is_vcf_record(fields):
        return "vcf"
    if len(fields) >= 11 and is_sam_record(fields):
        return "sam"
    if len(fields) == 5 and is_pvar_record(fields):
        return "plink"
    ws = line.split() if len(fields) < 6 else fields
    if len(ws) == 6 and (is_bim_record(ws) or is_fam_record(ws)):
        return "plink"
    if len(ws) >= 8 and line.count("/") + line.count("|") >= 8 and is_genotype_row(ws):
        return "genotype-table"
    return None


# ---------------------------------------------------------------------------
# helpers


def output_text(out: dict) -> str:
    """The text of a notebook output: streams, text and HTML data, tracebacks."""
    parts = []
    text = out.get("text")
    if text:
        parts.append(text if isinstance(text, str) else "".join(map(str, text)))
    for mime, value in (out.get("data") or {}).items():
        if mime.startswith("image/") and mime != "image/svg+xml":
            continue
        if isinstance(value, list):
            value = "".join(map(str, value))
        parts.append(value if isinstance(value, str) else json.dumps(value))
    if out.get("traceback"):
        parts.append("\n".join(map(str, out["traceback"])))
    return "\n".join(parts)


def _json_strings(doc, budget: int) -> Iterator[str]:
    stack = [doc]
    used = 0
    while stack and used < budget:
        item = stack.pop()
        if isinstance(item, str):
            used += len(item)
            yield item
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            if item and all(isinstance(x, str) for x in item):
                # notebook-style lines keep their newlines; other lists are one item each
                sep = "" if all(x.endswith("\n") for x in item[:-1]) else "\n"
                joined = sep.join(item)
                used += len(joined)
                yield joined
            else:
                stack.extend(reversed(item))


def _html_text(text: str) -> str:
    text = re.sub(r"(?i)</t[dh]>\s*<t[dh][^>]*>", "\t", text)
    text = re.sub(r"(?i)</tr>|<br\s*/?>", "\n", text)
    text = re.sub(r"<[^>]*>", "", text)
    return html.unescape(text)


def _strip(name: str) -> str:
    lower = name.lower()
    for suffix in COMPRESSION_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _is_tar(data: bytes) -> bool:
    return len(data) >= 262 and data[257:262] == b"ustar"


def _inflate(data: bytes, limit: int) -> bytes:
    """Up to `limit` bytes of a gzip stream, across members (BGZF is many members)."""
    out = bytearray()
    rest = data
    while rest and len(out) < limit:
        if rest[:2] != b"\x1f\x8b":
            break
        d = zlib.decompressobj(zlib.MAX_WBITS | 16)
        try:
            out += d.decompress(rest, limit - len(out))
        except zlib.error as e:
            if not out:
                raise ValueError(f"not a gzip stream: {e}") from None
            break
        if not d.eof:
            break  # the window ends inside this member, or the limit was reached
        rest = d.unused_data
    return bytes(out)


def _bunzip(data: bytes, limit: int) -> bytes:
    return bz2.BZ2Decompressor().decompress(data, limit)


def _unxz(data: bytes, limit: int) -> bytes:
    return lzma.LZMADecompressor().decompress(data, limit)
