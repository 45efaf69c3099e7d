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

Everything is checked before anything is written (hub.data.ingest_checks): the
VCF parses (an error names the file, the line and what is wrong) and every VCF
sample has exactly one row in each table and vice versa. Outputs are written
to hidden sibling folders and renamed into place at the end, so a failure
leaves the existing outputs as they were. Outputs newer than all three inputs are kept unless
forced; so is a summary cache that holds the dataset as it is now (its
version, people, strata and packed calls), and a kept dataset without one gets it.

`version` is the first 16 hex digits of the sha256 of the three inputs'
sha256 digests: it changes when the genotypes, the clinical attributes or
the phenotypes do, so a result can say which data it came from.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from extensions.contracts.datasets import CLINICAL, MATRIX_TABLE, PHENOTYPES, VCF, ZARR
from hub.data import IngestError
from hub.data.ingest_checks import (
    CLINICAL_COLUMNS,
    REFERENCE_GENOME,
    CheckedDataset,
    check_dataset,
)


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
        p.dataset = check_dataset(p.folder)
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
    dataset: CheckedDataset | None = None

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


def write_zarr(dataset: CheckedDataset, out: Path) -> None:
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


def write_matrix_table(hl, dataset: CheckedDataset, out: Path) -> None:
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
