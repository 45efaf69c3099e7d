"""The per-site summary cache: every person's allele counts per variant, overall and by stratum.

Most federated allele-frequency queries count everyone at a site, overall or
by one clinical attribute. Ingest writes those counts once per dataset
version (`write_summary`), next to the genotypes, and such a query reads
them instead of every call (`read_summary`). The cache is a file of the
dataset folder like the others: it never leaves the site, and what a query
releases from it goes through the same disclosure control as a count from
the genotypes.

    genotypes.summary.npz   (numpy's zip of arrays, deflated; written atomically)
      meta                  JSON (UTF-8 bytes): format, the dataset version it
                            was computed for (`cohorts.dataset_version`),
                            variants, samples, per attribute its stratum labels
                            and the digest of every person's stratum, and the
                            MatrixTable's row order ("same", "permuted", "unknown"),
                            and the record of the packed calls written with it
                            (`packed`: shape, size, modification time; null when
                            the calls do not fit two bits)
      samples               sample ids in genotype column order, "\\n"-separated UTF-8
      keys                  variant keys "contig:pos:ref:alt" in the Zarr's row
                            order, "\\n"-separated UTF-8
      hail_rows             when "permuted": the Zarr row of each MatrixTable row
      <attribute>.ac        (variants, strata) alternate-allele counts
      <attribute>.n_called  (variants, strata) people with a call
      <attribute>.n_people  (strata,) people in each stratum

for the attributes in `ATTRIBUTES` ("all": one stratum of everyone), strata
in `cohorts.level_order` order (those `allele_frequencies.strata` gives),
counts as the smallest unsigned integers that hold them: exact, so a half
read from the cache equals one counted from the calls bit for bit.

A cache is used only when it opens, has this format, was computed for the
dataset's version now and for the same people in the same order; and a
stratification only when its labels and every person's stratum are the
ones it was computed with (a corrected clinical.tsv changes them). Anything
else is logged and the caller reads the genotypes: a missing or stale cache
costs time, never a wrong answer.

Hail orders a MatrixTable's rows by locus in the reference's contig order and
then by alleles, which may differ from the VCF's order (contigs sorted by
name, two records at one position). The cache keeps the Zarr's order and the
permutation to Hail's, computed from the keys; when it cannot be (a contig
outside the primary assembly, a key twice) a Hail cohort reads the
MatrixTable as before.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import weakref
import zipfile
from functools import cached_property, partial
from pathlib import Path

import numpy as np

from ..contracts.datasets import SUMMARY, VCF
from . import cohorts, kernels, packed

log = logging.getLogger("visiting.summary")

SUMMARY_FORMAT = 1
ALL = "all"
#: what the cache counts by: everyone, then each clinical attribute a query may stratify by
ATTRIBUTES = (ALL, "sex", "age_band", "region", "prefecture", "disease_name")
#: Hail's order of GRCh38's primary contigs (its reference lists them first, in this order)
PRIMARY_CONTIGS = (*(f"chr{i}" for i in range(1, 23)), "chrX", "chrY", "chrM")
#: counts held at once while writing, per block of variants (float64: 32 MiB)
BLOCK_COUNTS = 1 << 22


# ---------------------------------------------------------------------------
# writing


def write_summary(folder: str | Path) -> Path:
    """Count every person's alleles per variant and stratum from the Zarr store; write the cache.

    Reads the calls a block of variants at a time (one task per chunk,
    `kernels.allele_counts` per attribute), so memory holds the counts, not
    the calls. Written to a hidden file beside the cache and renamed into
    place, with the mode of the dataset's VCF. Returns the cache's path.
    """
    folder = Path(folder)
    cohort = cohorts.ZarrCohort(folder, site="", dataset=folder.name)
    version = cohorts.dataset_version(folder)  # before reading: a change meanwhile makes it stale
    samples = cohort.samples
    keys = cohort.zarr_variant_keys()
    by = {name: _strata(samples, name) for name in ATTRIBUTES}
    counts = _count(cohort, by, len(keys))
    packed_record = packed.write_packed(folder, cohort)

    arrays: dict[str, np.ndarray] = {
        "samples": _blob(cohort.sample_ids),
        "keys": _blob(keys),
    }
    order = hail_order(keys)
    if order is None:
        in_hail = "unknown"
    elif np.array_equal(order, np.arange(len(keys))):
        in_hail = "same"
    else:
        in_hail, arrays["hail_rows"] = "permuted", _compact(order)
    attributes = {}
    for name, (labels, codes) in by.items():
        attributes[name] = {"labels": list(labels), "digest": strata_digest(labels, codes)}
        arrays[f"{name}.n_people"] = np.bincount(codes, minlength=len(labels)).astype(np.int64)
        for what in ("ac", "n_called"):
            arrays[f"{name}.{what}"] = _compact(counts[name][what])
    meta = {
        "format": SUMMARY_FORMAT,
        "dataset": folder.name,
        "version": version,
        "variants": len(keys),
        "samples": len(cohort.sample_ids),
        "attributes": attributes,
        "hail_order": in_hail,
        "packed": packed_record,
    }
    arrays["meta"] = _blob([json.dumps(meta, sort_keys=True)])
    return _write_atomically(folder / SUMMARY, arrays, like=folder / VCF)


def ensure_summary(folder: str | Path, force: bool = False) -> bool:
    """Write the cache unless one valid for the dataset as it is now is there; True if written."""
    if not force and summary_is_current(folder):
        return False
    write_summary(folder)
    return True


def summary_is_current(folder: str | Path) -> bool:
    """Whether the cache holds the dataset as it is now: version, people, every stratification,
    and the packed calls it recorded."""
    cohort = cohorts.ZarrCohort(folder, site="", dataset=Path(folder).name)
    cache = cohort.summary
    if cache is None:
        return False
    if "packed" not in cache.meta:  # written before the packed calls were
        return False
    record = cache.meta["packed"]
    if record is not None and not packed.matches(folder, record):
        return False
    samples = cohort.samples
    held = cache.meta["attributes"]
    for name in ATTRIBUTES:
        labels, codes = _strata(samples, name)
        if name not in held or held[name]["digest"] != strata_digest(labels, codes):
            return False
    return True


def _strata(samples, attribute: str) -> tuple[list[str], np.ndarray]:
    from .tasks.allele_frequencies import strata  # the task's strata, so the two agree

    return strata(samples, None if attribute == ALL else attribute)


def stratified_counts(codes: np.ndarray, *strata: np.ndarray, n_strata: tuple[int, ...]) -> dict:
    """`kernels.allele_counts` of one chunk for several stratifications of the same people.

    strata: one array of stratum codes per stratification; returns "k.ac" and
    "k.n_called" for the k-th.
    """
    out = {}
    for k, (codes_k, n) in enumerate(zip(strata, n_strata, strict=True)):
        for what, a in kernels.allele_counts(codes, codes_k, n).items():
            out[f"{k}.{what}"] = a
    return out


def _count(cohort, by: dict, n_variants: int) -> dict[str, dict[str, np.ndarray]]:
    """{attribute: {"ac", "n_called": (variants, strata) uint32}} from the calls, block by block."""
    names = list(by)
    n_strata = tuple(len(by[name][0]) for name in names)
    kernel = partial(stratified_counts, n_strata=n_strata)
    out = {
        name: {what: np.zeros((n_variants, n), dtype=np.uint32) for what in ("ac", "n_called")}
        for name, n in zip(names, n_strata, strict=True)
    }
    chunk = cohort.variant_chunk
    step = max(chunk, chunk * (BLOCK_COUNTS // (2 * sum(n_strata)) // chunk))
    for lo in range(0, n_variants, step):
        rows = np.arange(lo, min(lo + step, n_variants))
        sums = cohort.reduce_calls(kernel, rows=rows, column_args=tuple(by[n][1] for n in names))
        for k, name in enumerate(names):
            for what in ("ac", "n_called"):
                out[name][what][rows] = sums[f"{k}.{what}"]
    return out


def _compact(a: np.ndarray) -> np.ndarray:
    """Non-negative integers (float64 or integer) as the smallest unsigned type that holds them."""
    top = int(a.max(initial=0))
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if top <= np.iinfo(dtype).max:
            return np.asarray(a).astype(dtype)
    raise ValueError(f"count {top} does not fit 64 bits")


def _blob(texts) -> np.ndarray:
    return np.frombuffer("\n".join(texts).encode("utf-8"), dtype=np.uint8)


def _texts(blob: np.ndarray) -> list[str]:
    text = blob.tobytes().decode("utf-8")
    return text.split("\n") if text else []


def strata_digest(labels, codes: np.ndarray) -> str:
    """A digest of the labels and every person's stratum among them, in column order."""
    h = hashlib.sha256(json.dumps(list(labels)).encode())
    h.update(np.asarray(codes, dtype="<i8").tobytes())
    return h.hexdigest()[:32]


def hail_order(keys: list[str]) -> np.ndarray | None:
    """The key-list position of each row in Hail's order (locus, then alleles); None if unknown.

    Unknown when a contig is not one of PRIMARY_CONTIGS (Hail's rank of the
    others is its reference's business) or a key appears twice (Hail's order
    of equal keys is not defined).
    """
    rank = {c: i for i, c in enumerate(PRIMARY_CONTIGS)}
    sort_keys = []
    for key in keys:
        contig, pos, ref, alts = key.split(":", 3)
        if contig not in rank:
            return None
        sort_keys.append((rank[contig], int(pos), ref, *alts.split(",")))
    if len(set(keys)) != len(keys):
        return None
    # alleles compare as arrays of strings: ("A", "C") < ("A", "C", "G") < ("A", "G")
    return np.asarray(sorted(range(len(keys)), key=sort_keys.__getitem__), dtype=np.int64)


def _write_atomically(path: Path, arrays: dict[str, np.ndarray], like: Path) -> Path:
    """`np.savez_compressed`'s layout, deflated at level 1: a fifth of the time, 15 % larger."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for name, a in arrays.items():
                with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.asarray(a), allow_pickle=False)
        try:
            os.chmod(tmp, stat.S_IMODE(like.stat().st_mode))
        except OSError:
            pass  # keep the umask's mode
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# ---------------------------------------------------------------------------
# reading


class Stale(Exception):
    """Why a cache cannot answer (logged; the caller reads the genotypes)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class SiteSummary:
    """An open, valid summary cache, rows in one engine's order (see `read_summary`).

    The file stays open while the object lives, so a cache replaced meanwhile
    is read whole from the version that was checked.
    """

    def __init__(self, path: Path, npz, meta: dict, sample_ids: list[str], keys, rows):
        self.path = path
        self.meta = meta
        self.sample_ids = sample_ids
        self._npz = npz
        self._zarr_keys = keys
        self._rows = rows  # Zarr row of each row in this order; None: the Zarr's order
        self._members: dict[str, np.ndarray] = {}  # arrays read (an open cache is reused)
        weakref.finalize(self, npz.close)

    @property
    def version(self) -> str:
        return self.meta["version"]

    def _member(self, name: str) -> np.ndarray:
        """An array of the file, inflated once (a few MB at most: counts per variant)."""
        a = self._members.get(name)
        if a is None:
            a = self._members[name] = self._npz[name]
        return a

    @property
    def n_variants(self) -> int:
        return int(self.meta["variants"])

    @cached_property
    def _keys(self) -> tuple[str, ...]:
        keys = self._zarr_keys
        return tuple(keys if self._rows is None else [keys[i] for i in self._rows])

    def variant_keys(self) -> list[str]:
        """ "contig:pos:ref:alt" of every variant, in row order."""
        return list(self._keys)

    def counts(
        self, attribute: str | None, labels, codes: np.ndarray, rows: np.ndarray | None = None
    ) -> dict[str, np.ndarray] | None:
        """{"ac", "n_called"}: (variants of `rows`, strata) float64 of everyone, or None.

        attribute: one of ATTRIBUTES (None: everyone, one stratum); labels,
        codes: the strata of every person now (`allele_frequencies.strata`),
        which must be those the cache counted, else None (logged).
        """
        name = ALL if attribute is None else attribute
        held = self.meta["attributes"].get(name)
        if held is None:
            log.info("summary cache %s: no counts by %s", self.path, name)
            return None
        if held["labels"] != list(labels) or held["digest"] != strata_digest(labels, codes):
            log.warning(
                "summary cache %s: the strata of %s differ from the clinical attributes now; "
                "reading the genotypes",
                self.path,
                name,
            )
            return None
        index = self._rows
        if rows is not None:
            rows = np.asarray(rows, dtype=np.int64)
            index = rows if index is None else index[rows]
        out = {}
        for what in ("ac", "n_called"):
            try:
                a = self._member(f"{name}.{what}")
                if a.shape != (self.n_variants, len(labels)):
                    raise ValueError(f"{name}.{what} has shape {a.shape}")
            except Exception as e:  # a damaged member shows only when it is read
                log.warning(
                    "summary cache %s: unreadable (%s: %s); reading the genotypes",
                    self.path,
                    type(e).__name__,
                    e,
                )
                return None
            out[what] = (a if index is None else a[index]).astype(np.float64)
        return out


def read_summary(
    folder: str | Path,
    sample_ids: list[str] | None = None,
    engine: str = "dask",
    n_variants: int | None = None,
) -> SiteSummary | None:
    """The dataset's summary cache if it is there and valid now, rows in `engine`'s order; else None.

    sample_ids: the genotype columns now (the cache must have the same, in
    order); n_variants: the rows of the genotypes now. A missing, unreadable
    or stale cache is logged and gives None.
    """
    path = Path(folder) / SUMMARY
    if not path.exists():
        log.info("summary cache %s: none; reading the genotypes", path)
        return None
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as e:  # a truncated or foreign file raises many types
        log.warning("summary cache %s: unreadable (%s); reading the genotypes", path, e)
        return None
    try:
        return _valid(path, npz, sample_ids, engine, n_variants)
    except Stale as e:
        npz.close()
        log.warning("summary cache %s: %s; reading the genotypes", path, e.reason)
        return None
    except Exception as e:
        npz.close()
        log.warning(
            "summary cache %s: unreadable (%s: %s); reading the genotypes",
            path,
            type(e).__name__,
            e,
        )
        return None


def _valid(path: Path, npz, sample_ids, engine: str, n_variants) -> SiteSummary:
    meta = json.loads(_texts(npz["meta"])[0])
    if meta.get("format") != SUMMARY_FORMAT:
        raise Stale(f"format {meta.get('format')!r}, not {SUMMARY_FORMAT}")
    version = cohorts.dataset_version(path.parent)
    if version == "unknown":  # no VCF: nothing to tell one version of the data from another
        raise Stale("the dataset has no version (no genotypes.vcf.gz)")
    if meta.get("version") != version:
        raise Stale(f"computed for version {meta.get('version')}, the dataset is at {version}")
    ids = _texts(npz["samples"])
    keys = _texts(npz["keys"])
    if len(ids) != meta["samples"] or len(keys) != meta["variants"]:
        raise Stale("damaged: its sample ids or variant keys do not match their counts")
    if sample_ids is not None and ids != [str(s) for s in sample_ids]:
        raise Stale("its sample ids differ from the genotypes' columns")
    if n_variants is not None and n_variants != meta["variants"]:
        raise Stale(f"{meta['variants']} variants, the genotypes have {n_variants}")
    rows = None
    if engine == "hail":
        if meta.get("hail_order") == "unknown":
            raise Stale("the MatrixTable's row order is not known from the keys")
        if meta.get("hail_order") == "permuted":
            rows = np.asarray(npz["hail_rows"], dtype=np.int64)
            if rows.shape != (len(keys),):
                raise Stale("damaged: the MatrixTable's row order has the wrong length")
    elif engine != "dask":
        raise Stale(f"no row order for engine {engine!r}")
    return SiteSummary(path, npz, meta, ids, keys, rows)
