"""Analysis-ready copies of a site's dataset: VCF Zarr for Dask, a MatrixTable for Hail.

A site's analysis dataset folder holds what the site curates:

    genotypes.vcf.gz (+ .tbi)   bgzipped VCF, sorted, GRCh38 (chr-prefixed contigs)
    clinical.tsv                sample_id, age_band, sex, prefecture, disease_name, icd10
    phenotypes.tsv              sample_id, quant_trait, case_status

and ingest adds, next to them:

    genotypes.vcf.zarr   VCF Zarr (bio2zarr), for Dask/xarray; its root attribute
                         `visiting_dataset` carries the dataset id and version
    genotypes.mt         Hail MatrixTable: rows keyed by locus (GRCh38) and alleles,
                         columns keyed by `s` (the sample id) with the clinical
                         attributes as strings, `quant_trait` as float64 and
                         `case_status` as bool (True: a case); globals
                         `dataset_id`, `version` and the inputs' sha256 digests
    genotypes.summary.npz   everyone's allele counts per variant, overall and by
                         stratum, and the variant keys, from the Zarr store
                         (`extensions.federation.summary`): what allele-frequency
                         queries of everyone read instead of the calls
    genotypes.packed.npy the calls packed two bits each, written with the cache,
                         which vouches for it (`extensions.federation.packed`):
                         what the Dask halves of every other query read

Everything is checked before anything is written: the VCF parses (an error
names the file, the line and what is wrong) and every VCF sample has exactly
one row in each table and vice versa. Outputs are written to hidden sibling
folders and renamed into place at the end, so a failure leaves the existing
outputs as they were. Outputs newer than all three inputs are kept unless
forced; so is a summary cache that holds the dataset as it is now (its
version, people, strata and packed calls), and a kept dataset without one gets it.

`version` is the first 16 hex digits of the sha256 of the three inputs'
sha256 digests: it changes when the genotypes, the clinical attributes or
the phenotypes do, so a result can say which data it came from.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import math
import os
import re
import shutil
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from extensions.contracts.datasets import CLINICAL, MATRIX_TABLE, PHENOTYPES, VCF, ZARR

REFERENCE_GENOME = "GRCh38"
# bump when the MatrixTable's or the Zarr attributes' layout changes
INGEST_FORMAT = 1

CLINICAL_COLUMNS = ("age_band", "sex", "prefecture", "disease_name", "icd10")
PHENOTYPE_COLUMNS = ("quant_trait", "case_status")
MISSING_VALUES = frozenset({"", "NA", "na", "NaN", "nan", "."})
CASE_VALUES = {"1": True, "0": False, "true": True, "false": False, "TRUE": True, "FALSE": False}

# how many mismatched sample ids an error lists
SHOW = 5


class IngestError(Exception):
    """A dataset that cannot be ingested; the message names the file and what is wrong."""


@dataclass
class IngestResult:
    """What ingest did with one dataset folder."""

    folder: str
    dataset_id: str
    samples: int
    variants: int
    version: str
    zarr: str | None
    matrix_table: str | None
    skipped: bool = False
    summary: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def ingest_dataset(
    folder: Path,
    *,
    force: bool = False,
    say: Callable[[str], None] = print,
    zarr: bool = True,
    matrix_table: bool = True,
    summary: bool = True,
) -> IngestResult:
    """Write `genotypes.vcf.zarr`, `genotypes.mt` and the summary cache for one dataset folder;
    see the module doc.

    Raises IngestError for inputs that are missing or malformed; nothing is
    written then. With `force`, outputs are rewritten even when up to date.
    """
    return ingest_datasets(
        [folder], force=force, say=say, zarr=zarr, matrix_table=matrix_table, summary=summary
    )[0]


def ingest_datasets(
    folders: Sequence[Path],
    *,
    force: bool = False,
    say: Callable[[str], None] = print,
    zarr: bool = True,
    matrix_table: bool = True,
    summary: bool = True,
) -> list[IngestResult]:
    """`ingest_dataset` for several folders: all are checked first, the Zarr stores are
    converted a thread per folder while Hail starts, then the MatrixTables are
    written in one Hail session, then the summary caches. Raises IngestError for
    the first bad folder, before anything is written."""
    folders = [Path(f).resolve() for f in folders]
    plans = [_plan(f, force, zarr, matrix_table) for f in folders]
    todo = [p for p in plans if p.outputs]
    for p in plans:
        if not p.outputs:
            say(f"{p.label}: up to date, kept")
    if todo:
        _write_outputs(todo, say)
    if summary:
        for p in plans:
            _write_summary(p, force, say)
    return [p.result for p in plans]


def _write_outputs(todo: list[_Plan], say: Callable[[str], None]) -> None:
    for p in todo:
        t = time.perf_counter()
        p.dataset = _check(p.folder)
        p.result.samples = len(p.dataset.samples)
        p.result.variants = p.dataset.variants
        p.result.version = p.dataset.meta["version"]
        p.result.seconds["check"] = round(time.perf_counter() - t, 3)
    try:
        _write_all(todo, say)
        for p in todo:
            p.publish()
    finally:
        for p in todo:
            p.discard()


# ---------------------------------------------------------------------------
# planning: what to write, and where


@dataclass
class _Plan:
    folder: Path
    outputs: list[str]
    result: IngestResult
    dataset: _Dataset | None = None

    @property
    def label(self) -> str:
        return f"{self.folder.parent.name}/{self.folder.name}"

    def tmp(self, name: str) -> Path:
        # hidden, beside the output, so the final rename never crosses file systems
        return self.folder / f".{name}.ingest-{os.getpid()}"

    def publish(self) -> None:
        """Swap every new output into place: the old one aside, the new one in, the old one gone."""
        for name in self.outputs:
            final, new = self.folder / name, self.tmp(name)
            old = self.folder / f".{name}.old-{os.getpid()}"
            if final.exists():
                final.rename(old)
            new.rename(final)
            shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        for name in self.outputs:
            shutil.rmtree(self.tmp(name), ignore_errors=True)


def _plan(folder: Path, force: bool, zarr: bool, matrix_table: bool) -> _Plan:
    if not folder.is_dir():
        raise IngestError(f"{folder}: no such dataset folder")
    inputs = [folder / name for name in (VCF, CLINICAL, PHENOTYPES)]
    missing = [p.name for p in inputs if not p.is_file()]
    if missing:
        raise IngestError(f"{folder}: missing {', '.join(missing)} (a dataset needs {VCF}, "
                          f"{CLINICAL} and {PHENOTYPES})")  # fmt: skip
    wanted = [name for name, on in ((ZARR, zarr), (MATRIX_TABLE, matrix_table)) if on]
    newest_input = max(p.stat().st_mtime for p in inputs)
    outputs = [
        name
        for name in wanted
        if force or not (folder / name).exists() or (folder / name).stat().st_mtime <= newest_input
    ]
    _remove_leftovers(folder)
    result = IngestResult(
        folder=str(folder),
        dataset_id=folder.name,
        samples=0,
        variants=0,
        version="",
        zarr=str(folder / ZARR) if zarr else None,
        matrix_table=str(folder / MATRIX_TABLE) if matrix_table else None,
        skipped=not outputs,
    )
    if not outputs and (folder / ZARR).exists():
        _describe_from_zarr(result, folder / ZARR)
    return _Plan(folder, outputs, result)


def _remove_leftovers(folder: Path) -> None:
    """Temporary outputs of an ingest that was killed (its process is gone)."""
    for p in folder.glob(".genotypes.*"):
        pid = p.name.rsplit("-", 1)[-1]
        if (".ingest-" in p.name or ".old-" in p.name) and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe_from_zarr(result: IngestResult, store: Path) -> None:
    """Fill a kept dataset's samples, variants and version from its Zarr store (no Hail)."""
    import zarr

    try:
        root = zarr.open_group(str(store), mode="r")
        result.variants, result.samples = root["call_genotype"].shape[:2]
        result.version = root.attrs.get("visiting_dataset", {}).get("version", "")
    except Exception:  # an older store without the attribute still counts as kept
        pass


# ---------------------------------------------------------------------------
# checking the inputs


@dataclass
class VcfSummary:
    """What reading a VCF through found: samples in header order, records, contigs in order."""

    samples: list[str]
    records: int
    contigs: list[str]


@dataclass
class _Dataset:
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


def _check(folder: Path) -> _Dataset:
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
    return _Dataset(vcf, summary, rows, meta)


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
    n_cols = 0
    records = 0
    done: dict[bytes, None] = {}  # contigs passed, in order
    last_chrom, last_pos = None, 0
    lineno = 0

    def bad(what: str):
        return IngestError(f"{path}: line {lineno}: {what}")

    try:
        with gzip.open(path, "rb") as f:
            for lineno, line in enumerate(f, 1):  # noqa: B007 (bad() reads lineno)
                if lineno == 1 and not line.startswith(b"##fileformat=VCF"):
                    raise bad("not a VCF: the first line must be ##fileformat=VCFv4.x")
                if line.startswith(b"##"):
                    if line.startswith(b"##contig="):
                        m = CONTIG_RE.match(line)
                        if m:
                            contigs[m.group(1)] = int(m.group(2)) if m.group(2) else None
                    continue
                line = line.rstrip(b"\r\n")
                if samples is None:
                    samples = _header_samples(line, bad)
                    n_cols = len(VCF_COLUMNS) + len(samples)
                    tabs = b"\t" * (len(samples) - 1)
                    continue
                if not line:
                    raise bad("empty line")
                cols = line.split(b"\t", 9)
                if len(cols) < 10 or cols[9].count(b"\t") + 10 != n_cols:
                    found = len(cols) if len(cols) < 10 else cols[9].count(b"\t") + 10
                    raise bad(
                        f"{found} columns where the header has {n_cols} "
                        f"(9 + {len(samples)} samples): a truncated or malformed line"
                    )
                chrom, pos_text = cols[0], cols[1]
                if contigs and chrom not in contigs:
                    raise bad(f"contig {chrom.decode(errors='replace')!r} is not in the header")
                if not pos_text.isdigit() or int(pos_text) < 1:
                    raise bad(f"POS {pos_text.decode(errors='replace')!r} is not a position")
                pos = int(pos_text)
                length = contigs.get(chrom)
                if length is not None and pos > length:
                    raise bad(f"POS {pos} is beyond the end of {chrom.decode()} ({length})")
                if chrom != last_chrom:
                    if chrom in done:
                        raise bad(f"{chrom.decode()} appears again after other contigs: not sorted")
                    if last_chrom is not None:
                        done[last_chrom] = None
                    last_chrom, last_pos = chrom, 0
                if pos < last_pos:
                    raise bad(f"POS {pos} after {last_pos}: not sorted by position")
                last_pos = pos
                if not REF_RE.match(cols[3]):
                    raise bad(f"REF {cols[3][:20].decode(errors='replace')!r} is not a sequence")
                if not ALT_RE.match(cols[4]) and cols[4] != b".":
                    raise bad(
                        f"ALT {cols[4][:20].decode(errors='replace')!r} is not an allele list"
                    )
                if not cols[8].split(b":")[0] == b"GT":
                    raise bad(f"FORMAT {cols[8].decode(errors='replace')!r} does not start with GT")
                biallelic = b"," not in cols[4] and cols[4] != b"."
                if biallelic and (
                    (cols[8] == b"GT" and _diploid_biallelic_calls(cols[9], tabs))
                    or SIMPLE_CALLS_RE.fullmatch(cols[9])
                ):
                    records += 1
                    continue
                _check_calls(cols[9], cols[4], samples, bad)
                records += 1
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise IngestError(
            f"{path}: the compressed file is damaged or cut short after line {lineno} ({e})"
        ) from None
    if samples is None:
        raise IngestError(f"{path}: no #CHROM header line")
    if records == 0:
        raise IngestError(f"{path}: no variant records")
    seen = [c.decode() for c in done] + [last_chrom.decode()]
    return VcfSummary(samples, records, seen)


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


# ---------------------------------------------------------------------------
# writing


def _write_all(plans: list[_Plan], say: Callable[[str], None]) -> None:
    zarr_jobs = [p for p in plans if ZARR in p.outputs]
    mt_jobs = [p for p in plans if MATRIX_TABLE in p.outputs]
    for p in plans:
        _ensure_index(p.dataset.vcf)
    # bio2zarr in threads (see vcf_to_zarr) while the JVM starts in this one; at most
    # four at once, as each holds a few hundred MB at benchmark sizes
    workers = max(1, min(len(zarr_jobs), _cpus(), 4))
    with ThreadPoolExecutor(workers) as pool:
        futures = [(p, pool.submit(_timed, write_zarr, p.dataset, p.tmp(ZARR))) for p in zarr_jobs]
        hl = None
        if mt_jobs:
            t = time.perf_counter()
            hl = _hail()
            say(f"Hail started ({time.perf_counter() - t:.1f} s)")
        for p, future in futures:
            p.result.seconds["zarr"] = future.result()
            say(f"{p.label}: VCF Zarr written")
    for p in mt_jobs:
        p.result.seconds["matrix_table"] = _timed(
            write_matrix_table, hl, p.dataset, p.tmp(MATRIX_TABLE)
        )
        say(f"{p.label}: MatrixTable written ({p.dataset.variants} variants x "
            f"{len(p.dataset.samples)} samples)")  # fmt: skip


def _write_summary(plan: _Plan, force: bool, say: Callable[[str], None]) -> None:
    """The dataset's summary cache from its Zarr store, unless a valid one is kept.

    Only from a Zarr store newer than the inputs (one written now, or kept as
    up to date): a cache counted from an older store would carry the new
    version. A cache that cannot be written is said and left out: queries
    then read the genotypes, and the next ingest tries again.
    """
    from extensions.federation import summary

    folder = plan.folder
    store = folder / ZARR
    newest_input = max((folder / name).stat().st_mtime for name in (VCF, CLINICAL, PHENOTYPES))
    if not store.exists() or store.stat().st_mtime <= newest_input:
        return
    t = time.perf_counter()
    try:
        written = summary.ensure_summary(folder, force=force)
    except Exception as e:  # numpy, zarr and the file system raise many types
        say(f"{plan.label}: summary cache not written ({type(e).__name__}: {e}); "
            "queries read the genotypes")  # fmt: skip
        return
    plan.result.summary = str(folder / summary.SUMMARY)
    if written:
        plan.result.seconds["summary"] = round(time.perf_counter() - t, 3)
        say(f"{plan.label}: summary cache written")


def _timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return round(time.perf_counter() - t, 3)


def _ensure_index(vcf: Path) -> None:
    """bio2zarr reads through the tabix index; a dataset that comes without one gets one."""
    tbi, csi = Path(f"{vcf}.tbi"), Path(f"{vcf}.csi")
    if (tbi.exists() and tbi.stat().st_mtime >= vcf.stat().st_mtime) or csi.exists():
        return
    import pysam

    try:
        pysam.tabix_index(str(vcf), preset="vcf", force=True)
    except (OSError, ValueError) as e:
        raise IngestError(f"{vcf}: tabix could not index it: {e}") from None


def vcf_to_zarr(vcf: Path, out: Path) -> None:
    """bio2zarr's vcf2zarr into `out` (replaced if there).

    No worker processes: they are spawned, which breaks any caller script
    without an `if __name__ == "__main__"` guard; callers convert several
    files a thread each instead (~1.5x on two cores).
    """
    from bio2zarr import vcf as vcf2zarr

    if out.exists():
        shutil.rmtree(out)
    vcf2zarr.convert([str(vcf)], str(out), worker_processes=0, show_progress=False)


def write_zarr(dataset: _Dataset, out: Path) -> None:
    import zarr

    try:
        vcf_to_zarr(dataset.vcf, out)
    except Exception as e:  # bio2zarr raises many types; the VCF was checked, so say where
        raise IngestError(f"{dataset.vcf}: vcf2zarr failed: {type(e).__name__}: {e}") from e
    root = zarr.open_group(str(out), mode="r+")
    root.attrs["visiting_dataset"] = dataset.meta
    os.utime(out)  # the store's own time is when it was finished (see _plan)


def _hail():
    from extensions.federation.hail_session import ensure_hail

    return ensure_hail()


def write_matrix_table(hl, dataset: _Dataset, out: Path) -> None:
    """The dataset as a MatrixTable at `out`: GT entries, the samples' columns, the metadata."""
    schema = hl.tstruct(
        s=hl.tstr,
        **{c: hl.tstr for c in CLINICAL_COLUMNS},
        quant_trait=hl.tfloat64,
        case_status=hl.tbool,
    )
    known = set(hl.get_reference(REFERENCE_GENOME).contigs)
    foreign = [c for c in dataset.summary.contigs if c not in known]
    if foreign:
        raise IngestError(
            f"{dataset.vcf}: contig {foreign[0]!r} is not in {REFERENCE_GENOME} "
            "(its names are chr1 ... chr22, chrX, chrY, chrM)"
        )
    rows = [{**r, **{c: r[c] or None for c in CLINICAL_COLUMNS}} for r in dataset.rows]
    cols = hl.Table.parallelize(rows, schema, key="s", n_partitions=1)
    try:
        mt = hl.import_vcf(
            str(dataset.vcf),
            reference_genome=REFERENCE_GENOME,
            force_bgz=True,
            array_elements_required=False,
        )
        mt = mt.annotate_cols(**cols[mt.s])
        mt = mt.annotate_globals(**dataset.meta)
        mt.write(str(out), overwrite=True)
    except Exception as e:  # Hail's FatalError and py4j errors carry a Java stack trace
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise IngestError(f"{dataset.vcf}: Hail could not import it: {first}") from e
    os.utime(out)


def _cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
