"""A dataset folder's inputs, checked before ingest writes anything: the VCF read through
once (an error names the file, the line and what is wrong), the clinical and phenotype
tables, every VCF sample with exactly one row in each table and vice versa, and the
dataset's version from the inputs' digests (see hub.data.ingest).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import math
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from extensions.contracts.datasets import CLINICAL, PHENOTYPES, VCF
from hub.data import IngestError

REFERENCE_GENOME = "GRCh38"
# bump when the MatrixTable's or the Zarr attributes' layout changes
INGEST_FORMAT = 1

CLINICAL_COLUMNS = ("age_band", "sex", "prefecture", "disease_name", "icd10")
PHENOTYPE_COLUMNS = ("quant_trait", "case_status")
MISSING_VALUES = frozenset({"", "NA", "na", "NaN", "nan", "."})
CASE_VALUES = {"1": True, "0": False, "true": True, "false": False, "TRUE": True, "FALSE": False}

# how many mismatched sample ids an error lists
SHOW = 5


@dataclass
class VcfSummary:
    """What reading a VCF through found: samples in header order, records, contigs in order."""

    samples: list[str]
    records: int
    contigs: list[str]


@dataclass
class CheckedDataset:
    """A checked dataset: its VCF, the samples' table rows in VCF order, the metadata."""

    vcf: Path
    summary: VcfSummary
    rows: list[dict]
    meta: dict

    @property
    def samples(self) -> list[str]:
        return self.summary.samples

    @property
    def variants(self) -> int:
        return self.summary.records


def check_dataset(folder: Path) -> CheckedDataset:
    vcf = folder / VCF
    summary = check_vcf(vcf)
    samples = summary.samples
    clinical = read_table(folder / CLINICAL, CLINICAL_COLUMNS)
    phenotypes = read_table(folder / PHENOTYPES, PHENOTYPE_COLUMNS)
    for path, table in ((folder / CLINICAL, clinical), (folder / PHENOTYPES, phenotypes)):
        _check_same_samples(vcf, samples, path, table)
    rows = []
    for s in samples:
        c, p = clinical[s], phenotypes[s]
        rows.append({
            "s": s,
            **{k: c[k] for k in CLINICAL_COLUMNS},
            "quant_trait": _float(p["quant_trait"], folder / PHENOTYPES, p["_line"]),
            "case_status": _case(p["case_status"], folder / PHENOTYPES, p["_line"]),
        })  # fmt: skip
    digests = {name: _sha256(folder / name) for name in (VCF, CLINICAL, PHENOTYPES)}
    version = hashlib.sha256("".join(digests.values()).encode()).hexdigest()[:16]
    meta = {
        "dataset_id": folder.name,
        "version": version,
        "vcf_sha256": digests[VCF],
        "clinical_sha256": digests[CLINICAL],
        "phenotypes_sha256": digests[PHENOTYPES],
        "reference_genome": REFERENCE_GENOME,
        "ingest_format": INGEST_FORMAT,
    }
    return CheckedDataset(vcf, summary, rows, meta)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


VCF_COLUMNS = [b"#CHROM", b"POS", b"ID", b"REF", b"ALT", b"QUAL", b"FILTER", b"INFO", b"FORMAT"]
CONTIG_RE = re.compile(rb"^##contig=<.*?\bID=([^,>]+)(?:.*?\blength=(\d+))?", re.S)
REF_RE = re.compile(rb"^[ACGTNacgtn]+$")
ALT_RE = re.compile(rb"^(?:[ACGTNacgtn]+|\*|<[^>]+>)(?:,(?:[ACGTNacgtn]+|\*|<[^>]+>))*$")
# the genotype columns of a biallelic record with GT first; ploidy and other keys free
SIMPLE_CALLS_RE = re.compile(
    rb"(?:[01.](?:[/|][01.])?(?::[^\t]*)?)(?:\t[01.](?:[/|][01.])?(?::[^\t]*)?)*"
)
GT_RE = re.compile(rb"^(?:\.|\d+)(?:[/|](?:\.|\d+))*$")


def check_vcf(path: Path) -> VcfSummary:
    """Read a bgzipped VCF through once and say what it holds.

    Raises IngestError naming the file, the line and what is wrong: not
    BGZF, no header, bad or duplicate sample names, a record with the wrong
    number of columns (a truncated line), a POS that is no position on its
    contig, bad alleles, an unreadable genotype, records out of order.
    """
    _check_bgzf(path)
    contigs: dict[bytes, int | None] = {}
    samples: list[str] | None = None
    order = _Order()
    records = 0
    lineno = 0

    def bad(what: str):
        return IngestError(f"{path}: line {lineno}: {what}")

    try:
        with gzip.open(path, "rb") as f:
            for lineno, line in enumerate(f, 1):  # noqa: B007 (bad() reads lineno)
                if lineno == 1 and not line.startswith(b"##fileformat=VCF"):
                    raise bad("not a VCF: the first line must be ##fileformat=VCFv4.x")
                if line.startswith(b"##"):
                    if line.startswith(b"##contig=") and (m := CONTIG_RE.match(line)):
                        contigs[m.group(1)] = int(m.group(2)) if m.group(2) else None
                    continue
                line = line.rstrip(b"\r\n")
                if samples is None:
                    samples = _header_samples(line, bad)
                    tabs = b"\t" * (len(samples) - 1)
                    continue
                cols = _columns(line, samples, bad)
                order.see(cols[0], _position(cols, contigs, bad), bad)
                _check_alleles(cols, samples, tabs, bad)
                records += 1
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise IngestError(
            f"{path}: the compressed file is damaged or cut short after line {lineno} ({e})"
        ) from None
    if samples is None:
        raise IngestError(f"{path}: no #CHROM header line")
    if records == 0:
        raise IngestError(f"{path}: no variant records")
    return VcfSummary(samples, records, order.contigs())


@dataclass
class _Order:
    """Where a walk through a VCF's records is: the contigs it passed, in order, and the
    current contig and position; records out of order are refused."""

    done: dict[bytes, None] = field(default_factory=dict)
    chrom: bytes | None = None
    pos: int = 0

    def see(self, chrom: bytes, pos: int, bad) -> None:
        if chrom != self.chrom:
            if chrom in self.done:
                raise bad(f"{chrom.decode()} appears again after other contigs: not sorted")
            if self.chrom is not None:
                self.done[self.chrom] = None
            self.chrom, self.pos = chrom, 0
        if pos < self.pos:
            raise bad(f"POS {pos} after {self.pos}: not sorted by position")
        self.pos = pos

    def contigs(self) -> list[str]:
        return [c.decode() for c in self.done] + [self.chrom.decode()]


def _columns(line: bytes, samples: list[str], bad) -> list[bytes]:
    """A record's nine fixed columns and its genotype columns as one field."""
    if not line:
        raise bad("empty line")
    n_cols = len(VCF_COLUMNS) + len(samples)
    cols = line.split(b"\t", 9)
    if len(cols) < 10 or cols[9].count(b"\t") + 10 != n_cols:
        found = len(cols) if len(cols) < 10 else cols[9].count(b"\t") + 10
        raise bad(
            f"{found} columns where the header has {n_cols} "
            f"(9 + {len(samples)} samples): a truncated or malformed line"
        )
    return cols


def _position(cols: list[bytes], contigs: dict[bytes, int | None], bad) -> int:
    """The record's POS, on a contig of the header and within its length."""
    chrom, pos_text = cols[0], cols[1]
    if contigs and chrom not in contigs:
        raise bad(f"contig {chrom.decode(errors='replace')!r} is not in the header")
    if not pos_text.isdigit() or int(pos_text) < 1:
        raise bad(f"POS {pos_text.decode(errors='replace')!r} is not a position")
    pos = int(pos_text)
    length = contigs.get(chrom)
    if length is not None and pos > length:
        raise bad(f"POS {pos} is beyond the end of {chrom.decode()} ({length})")
    return pos


def _check_alleles(cols: list[bytes], samples: list[str], tabs: bytes, bad) -> None:
    """REF, ALT, a FORMAT starting with GT, and genotypes that name alleles of the record."""
    if not REF_RE.match(cols[3]):
        raise bad(f"REF {cols[3][:20].decode(errors='replace')!r} is not a sequence")
    if not ALT_RE.match(cols[4]) and cols[4] != b".":
        raise bad(f"ALT {cols[4][:20].decode(errors='replace')!r} is not an allele list")
    if not cols[8].split(b":")[0] == b"GT":
        raise bad(f"FORMAT {cols[8].decode(errors='replace')!r} does not start with GT")
    biallelic = b"," not in cols[4] and cols[4] != b"."
    if biallelic and (
        (cols[8] == b"GT" and _diploid_biallelic_calls(cols[9], tabs))
        or SIMPLE_CALLS_RE.fullmatch(cols[9])
    ):
        return
    _check_calls(cols[9], cols[4], samples, bad)


def _diploid_biallelic_calls(calls: bytes, tabs: bytes) -> bool:
    """Whether the genotype columns are all "a/b" or "a|b" with a, b in 0, 1, "." (what
    sequencing cohorts mostly hold), checked by byte slices: ~5x faster than a regex."""
    return (
        len(calls) == 4 * len(tabs) + 3
        and calls[3::4] == tabs
        and not calls[1::4].translate(None, b"/|")
        and not (calls[0::4] + calls[2::4]).translate(None, b"01.")
    )


def _check_bgzf(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(18)
    if head[:2] != b"\x1f\x8b":
        raise IngestError(f"{path}: not compressed with bgzip (compress it with `bgzip`)")
    # BGZF: a gzip member with the FEXTRA flag and a "BC" subfield
    if len(head) < 18 or not head[3] & 4 or head[12:14] != b"BC":
        raise IngestError(f"{path}: gzip, but not BGZF (recompress it with `bgzip`)")


def _header_samples(line: bytes, bad) -> list[str]:
    if not line.startswith(b"#CHROM"):
        raise bad("expected the #CHROM header line")
    cols = line.split(b"\t")
    if cols[: len(VCF_COLUMNS)] != VCF_COLUMNS:
        raise bad("the #CHROM line must name the 9 fixed columns, FORMAT included")
    samples = [c.decode() for c in cols[len(VCF_COLUMNS) :]]
    if not samples:
        raise bad("no samples in the #CHROM line")
    seen: set[str] = set()
    for s in samples:
        if not s or s != s.strip():
            raise bad(f"sample name {s!r} is empty or has surrounding blanks")
        if s in seen:
            raise bad(f"sample {s!r} appears twice in the #CHROM line")
        seen.add(s)
    return samples


def _check_calls(text: bytes, alt: bytes, samples: list[str], bad) -> None:
    n_alleles = 1 + (0 if alt == b"." else alt.count(b",") + 1)
    for s, field_ in zip(samples, text.split(b"\t"), strict=True):
        gt = field_.split(b":", 1)[0]
        if not GT_RE.match(gt):
            raise bad(f"sample {s}: genotype {gt[:20].decode(errors='replace')!r} is not a GT")
        for allele in re.split(rb"[/|]", gt):
            if allele != b"." and int(allele) >= n_alleles:
                raise bad(
                    f"sample {s}: allele {int(allele)} in {gt.decode()} but {n_alleles} alleles"
                )


def read_table(path: Path, columns: Sequence[str]) -> dict[str, dict]:
    """A sample table (tab-separated, a header with sample_id and `columns`) by sample id;
    each row also has `_line`. Raises IngestError for a missing column, a short row,
    or a sample listed twice."""
    rows: dict[str, dict] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader, None)
        if header is None:
            raise IngestError(f"{path}: empty file")
        need = ["sample_id", *columns]
        absent = [c for c in need if c not in header]
        if absent:
            raise IngestError(f"{path}: line 1: no column {', '.join(absent)} "
                              f"(need {', '.join(need)})")  # fmt: skip
        index = {c: header.index(c) for c in need}
        for row in reader:
            line = reader.line_num
            if not row or row == [""]:
                continue
            if len(row) != len(header):
                raise IngestError(
                    f"{path}: line {line}: {len(row)} fields where the header has {len(header)}"
                )
            sample = row[index["sample_id"]]
            if sample in rows:
                first = rows[sample]["_line"]
                raise IngestError(
                    f"{path}: line {line}: sample {sample!r} again (first on line {first})"
                )
            rows[sample] = {c: row[i] for c, i in index.items()} | {"_line": line}
    return rows


def _check_same_samples(vcf: Path, samples: list[str], path: Path, table: dict) -> None:
    in_vcf = set(samples)
    absent = [s for s in samples if s not in table]
    extra = [s for s in table if s not in in_vcf]
    if not absent and not extra:
        return
    parts = []
    if absent:
        parts.append(f"{len(absent)} VCF sample(s) not in {path.name}: {_first(absent)}")
    if extra:
        parts.append(f"{len(extra)} row(s) of {path.name} not in the VCF: {_first(extra)}")
    raise IngestError(f"{path}: samples differ from {vcf.name}: " + "; ".join(parts))


def _first(names: list[str]) -> str:
    more = f", ... ({len(names) - SHOW} more)" if len(names) > SHOW else ""
    return ", ".join(names[:SHOW]) + more


def _float(text: str, path: Path, line: int) -> float | None:
    if text in MISSING_VALUES:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise IngestError(f"{path}: line {line}: quant_trait {text!r} is not a number")
    return value


def _case(text: str, path: Path, line: int) -> bool | None:
    if text in MISSING_VALUES:
        return None
    if text not in CASE_VALUES:
        raise IngestError(f"{path}: line {line}: case_status {text!r} is not 0 or 1")
    return CASE_VALUES[text]
