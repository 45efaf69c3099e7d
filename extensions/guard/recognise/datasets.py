"""What a cohort is learnt from: the ids and clinical vocabulary of a site's dataset files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

from ...contracts.datasets import CLINICAL, PERSON_TABLES
from .cells import _HEADER_CELLS, _MISSING, _NUMBER
from .content import MIB

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
_MAX_LEVELS = 64  # distinct values of a column held as its levels; more and only "numbers"


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
