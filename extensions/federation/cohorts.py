# Over 500 lines on purpose: the dataset as both engines see it; the Zarr and Hail cohorts
# share one sample table, one set of selection rules and one stamp of the files.
"""A site's analysis dataset as the per-site half of a task sees it, on either engine.

A dataset folder (mounted read-only at `/data/<dataset>/` in a site's
container, `var/data/<site>/<dataset>/` in the demo) holds:

    genotypes.vcf.zarr   VCF Zarr (bio2zarr layout): call_genotype [variants,
                         samples, ploidy] int8 with -1 missing, variant_position,
                         variant_allele, variant_contig, contig_id, sample_id
    genotypes.mt         the same genotypes as a Hail MatrixTable, column key `s`
    clinical.tsv         sample_id, age_band, sex, prefecture, disease_name, icd10
    phenotypes.tsv       sample_id, quant_trait, case_status
    genotypes.summary.npz  everyone's allele counts per variant, overall and by
                         stratum, and the variant keys (`summary`; written at ingest)
    genotypes.packed.npy the calls packed two bits each (`packed`; written with
                         the summary, which vouches for it)

`open_cohort(folder, site, dataset, engine)` gives a `ZarrCohort` ("dask":
xarray over the Zarr store, lazily, as dask arrays) or a `HailCohort`
("hail": the MatrixTable). Both give the same `samples` table (the TSVs
joined, in genotype column order, plus the derived `region`) and the same
`variant_keys()` ("contig:pos:ref:alt", in row order), so a task's two site
halves can be compared value for value.

Selections: `validate_where` checks a query's clinical restriction
({"sex": "female", "region": ["Kanto", "Chubu"]}) and `select` turns it into
a boolean mask over `samples`. Regions are the eight standard regions of
Japan (`REGIONS`); `region_of` maps a prefecture to its region.

Genotypes are taken as diploid (the sites hold autosomes): a call is missing
when any allele is missing, and its alternate-allele dosage counts the
non-reference alleles (so a multi-allelic site counts every ALT, as Hail's
`n_alt_alleles` does).
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Iterator, Mapping
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from ..contracts.datasets import (
    CLINICAL,
    MATRIX_TABLE,
    PACKED,
    PHENOTYPES,
    SUMMARY,
    VCF,
    VCF_INDEX,
    ZARR,
)
from .tasks.base import ENGINES, SiteCohort, TaskError

CLINICAL_COLUMNS = ("age_band", "sex", "prefecture", "disease_name", "icd10")
PHENOTYPE_COLUMNS = ("quant_trait", "case_status")
BLOCK_VALUES = 1 << 24  # dosages per block of ZarrCohort.dosage_blocks (128 MB of float64)

# The eight standard regions of Japan and their prefectures (Mie counted in
# Kinki, Niigata in Chubu, as in the common school-atlas division).
REGIONS: dict[str, tuple[str, ...]] = {
    "Hokkaido": ("Hokkaido",),
    "Tohoku": ("Aomori", "Iwate", "Miyagi", "Akita", "Yamagata", "Fukushima"),
    "Kanto": ("Ibaraki", "Tochigi", "Gunma", "Saitama", "Chiba", "Tokyo", "Kanagawa"),
    "Chubu": (
        "Niigata", "Toyama", "Ishikawa", "Fukui", "Yamanashi", "Nagano", "Gifu",
        "Shizuoka", "Aichi",
    ),
    "Kinki": ("Mie", "Shiga", "Kyoto", "Osaka", "Hyogo", "Nara", "Wakayama"),
    "Chugoku": ("Tottori", "Shimane", "Okayama", "Hiroshima", "Yamaguchi"),
    "Shikoku": ("Tokushima", "Kagawa", "Ehime", "Kochi"),
    "Kyushu-Okinawa": (
        "Fukuoka", "Saga", "Nagasaki", "Kumamoto", "Oita", "Miyazaki", "Kagoshima", "Okinawa",
    ),
}  # fmt: skip
PREFECTURE_REGION: dict[str, str] = {p: r for r, ps in REGIONS.items() for p in ps}
UNKNOWN = "unknown"  # the region of a prefecture not in the list (a blank, a typo)

SEXES = ("female", "male")
AGE_BAND_RE = re.compile(r"^\d{1,3}-\d{1,3}$")
ICD10_RE = re.compile(r"^[A-Z]\d{2}(\.\d{1,2})?$")

# What a query may restrict on, and how a value of each is checked.
SELECTABLE = ("age_band", "sex", "prefecture", "region", "disease_name", "icd10")


def region_of(prefecture: str) -> str:
    """The region of a prefecture ("Mie" -> "Kinki"); "unknown" for a name not in REGIONS."""
    return PREFECTURE_REGION.get(prefecture, UNKNOWN)


PREFECTURES = tuple(p for ps in REGIONS.values() for p in ps)  # JIS X 0401 order, north to south


def _level_key(attribute: str, value) -> tuple:
    """Sort key of one value of an attribute: the natural order, unknown values last, by name."""
    value = str(value)
    if attribute == "sex":
        order = SEXES
    elif attribute == "region":
        order = tuple(REGIONS)
    elif attribute == "prefecture":
        order = PREFECTURES
    elif attribute == "age_band":
        m = re.match(r"^(\d+)", value)
        return (0, int(m.group(1)), value) if m else (1, 0, value)
    else:
        return (0, 0, value)
    return (0, order.index(value), value) if value in order else (1, 0, value)


def level_order(attributes: str | tuple[str, ...] | list[str], levels) -> list:
    """`levels` (values of one attribute, or tuples of values of several) in their natural order.

    Sexes female, male; regions and prefectures north to south; age bands by
    their lower bound; anything else alphabetically; unrecognised values last.
    The order is the same at every site and in the combined result.
    """
    if isinstance(attributes, str):
        return sorted(levels, key=lambda v: _level_key(attributes, v))
    return sorted(
        levels,
        key=lambda t: tuple(_level_key(a, v) for a, v in zip(attributes, t, strict=True)),
    )


def _value_ok(key: str, value: str) -> bool:
    if key == "sex":
        return value in SEXES
    if key == "region":
        return value in REGIONS
    if key == "prefecture":
        return value in PREFECTURE_REGION
    if key == "age_band":
        return bool(AGE_BAND_RE.match(value))
    if key == "icd10":
        return bool(ICD10_RE.match(value))
    return bool(value.strip())  # disease_name: free text


def validate_where(where, field: str = "where") -> dict[str, tuple[str, ...]]:
    """A query's clinical restriction, checked and normalised: {attribute: (values, ...)}.

    Accepts None or {} (everyone), or a mapping of attributes in SELECTABLE to
    a value or a list of values (a person matches when their value is one of
    them; attributes combine with AND). Raises TaskError naming the field
    (e.g. "where.sex") for anything else.
    """
    if where is None:
        return {}
    if not isinstance(where, Mapping):
        raise TaskError(f"{field} must be an object of attribute: value(s)", field)
    out: dict[str, tuple[str, ...]] = {}
    for key, raw in where.items():
        f = f"{field}.{key}"
        if key not in SELECTABLE:
            raise TaskError(f"{f}: cannot select on {key!r}; one of {', '.join(SELECTABLE)}", f)
        values = [raw] if isinstance(raw, str) else raw
        if not isinstance(values, list | tuple) or not values:
            raise TaskError(f"{f} must be a value or a non-empty list of values", f)
        for v in values:
            if not isinstance(v, str) or not _value_ok(key, v):
                hint = {
                    "sex": f" (one of {', '.join(SEXES)})",
                    "region": f" (one of {', '.join(REGIONS)})",
                    "age_band": ' (like "40-49")',
                    "icd10": ' (like "E11")',
                }.get(key, "")
                raise TaskError(f"{f}: {v!r} is not a valid {key}{hint}", f)
        out[key] = tuple(dict.fromkeys(values))  # de-duplicated, order kept
    return out


def select(samples: pd.DataFrame, where: Mapping | None) -> np.ndarray:
    """Boolean mask over `samples` rows of the people matching `where` (see validate_where)."""
    checked = validate_where(where)
    mask = np.ones(len(samples), dtype=bool)
    for key, values in checked.items():
        mask &= samples[key].isin(values).to_numpy()
    return mask


def read_samples(folder: Path, order: list[str] | np.ndarray) -> pd.DataFrame:
    """The clinical and phenotype TSVs joined, indexed by sample_id in `order`, with `region`.

    Every genotyped sample must have a clinical and a phenotype row: a sample
    without one is an error, not a silent NaN.
    """
    folder = Path(folder)
    clinical = pd.read_csv(folder / CLINICAL, sep="\t", dtype=str, keep_default_na=False).set_index(
        "sample_id"
    )
    pheno = pd.read_csv(folder / PHENOTYPES, sep="\t", dtype={"sample_id": str}).set_index(
        "sample_id"
    )
    order = [str(s) for s in order]
    for name, table in ((CLINICAL, clinical), (PHENOTYPES, pheno)):
        missing = pd.Index(order).difference(table.index)
        if len(missing):
            raise ValueError(
                f"{folder / name}: no row for {len(missing)} genotyped sample(s), e.g. {missing[0]}"
            )
    df = clinical.loc[order, list(CLINICAL_COLUMNS)].join(pheno.loc[order, list(PHENOTYPE_COLUMNS)])
    df["region"] = df["prefecture"].map(region_of)
    df["quant_trait"] = pd.to_numeric(df["quant_trait"]).astype(np.float64)
    case = pd.to_numeric(df["case_status"])
    # 0/1 as integers; a missing status keeps the column float (NaN), never a nullable type
    df["case_status"] = case.astype(np.int64) if case.notna().all() else case.astype(np.float64)
    df.index.name = "sample_id"
    return df


def dataset_version(folder: Path) -> str:
    """A short content version of a dataset: the hash of its VCF's index and size."""
    vcf = folder / VCF
    try:
        st = vcf.stat()
    except OSError:
        return "unknown"
    h = hashlib.sha256(f"{st.st_size}:{int(st.st_mtime)}".encode())
    tbi = folder / VCF_INDEX
    if tbi.exists():
        h.update(tbi.read_bytes())
    return h.hexdigest()[:12]


#: the files and stores whose change makes an open cohort stale (`dataset_stamp`)
STAMPED = (VCF, VCF_INDEX, CLINICAL, PHENOTYPES, SUMMARY, PACKED, ZARR, MATRIX_TABLE)


def dataset_stamp(folder: Path) -> tuple:
    """Size and modification time of every file a cohort reads (absent ones as None): an open
    cohort, with the tables and caches it holds, serves while the stamp is unchanged."""
    out = []
    for name in STAMPED:
        try:
            st = (Path(folder) / name).stat()
        except OSError:
            out.append(None)
            continue
        out.append((st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(out)


def _keys(contigs, positions, refs, alts) -> list[str]:
    return [f"{c}:{p}:{r}:{a}" for c, p, r, a in zip(contigs, positions, refs, alts, strict=True)]


class ZarrCohort(SiteCohort):
    """Engine "dask": the dataset's VCF Zarr store opened with xarray, arrays as dask arrays.

    Nothing is read until asked: `samples` reads the TSVs and sample_id,
    `variant_keys()` the small per-variant arrays, `reduce_calls()` runs a
    kernel of `extensions.federation.kernels` on every chunk of calls (what the
    tasks' Dask halves use), `dosage()` is a lazy (variants x samples) float64
    dask array and `dosage_blocks()` computes it a block of variants at a
    time (on the site's Dask cluster when a distributed Client is the default).
    """

    engine = "dask"

    def __init__(self, folder: str | Path, site: str, dataset: str):
        self.folder = Path(folder)
        self.site = site
        self.dataset = dataset
        self.path = self.folder / ZARR
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no VCF Zarr store in the dataset folder")

    @cached_property
    def ds(self):
        """The store as an xarray Dataset of dask arrays (dims variants, samples, ploidy, ...)."""
        import xarray as xr

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # no consolidated metadata
            return xr.open_zarr(self.path, chunks={}, consolidated=False)

    @cached_property
    def sample_ids(self) -> list[str]:
        return [str(s) for s in self.ds["sample_id"].values]

    @cached_property
    def samples(self) -> pd.DataFrame:
        return read_samples(self.folder, self.sample_ids)

    @property
    def n_variants(self) -> int:
        return int(self.ds.sizes["variants"])

    def variant_keys(self) -> list[str]:
        return list(self._variant_keys)

    @cached_property
    def _variant_keys(self) -> tuple[str, ...]:
        cache = self.summary
        return tuple(cache.variant_keys() if cache is not None else self.zarr_variant_keys())

    def zarr_variant_keys(self) -> list[str]:
        """The variant keys built from the store's per-variant arrays (what the cache holds)."""
        ds = self.ds
        contig_ids = np.asarray(ds["contig_id"].values).astype(object)
        contigs = contig_ids[np.asarray(ds["variant_contig"].values)]
        alleles = np.asarray(ds["variant_allele"].values).astype(object)
        alts = [",".join(a for a in row[1:] if a) for row in alleles]
        return _keys(contigs, np.asarray(ds["variant_position"].values), alleles[:, 0], alts)

    @cached_property
    def summary(self):
        """The dataset's summary cache if valid for these genotypes now, else None (`summary`)."""
        from .summary import read_summary

        return read_summary(self.folder, self.sample_ids, self.engine, self.n_variants)

    @cached_property
    def packed(self):
        """The calls packed two bits each (`packed`) as a read-only memory map, when the summary
        cache vouches for them now; else None."""
        from . import packed

        if not packed.USE or not (self.folder / PACKED).exists():
            return None
        cache = self.summary
        if cache is None:
            return None
        return packed.open_packed(
            self.folder, cache.meta.get("packed"), self.n_variants, len(self.sample_ids)
        )

    def reduce_packed(self, masks: np.ndarray, rows: np.ndarray | None = None) -> dict:
        """`packed.packed_counts` of the people in `masks` over the packed calls, a task per
        block of variants where dask computes; call only when `packed` is not None."""
        from .packed import reduce_packed

        return reduce_packed(
            self.folder / PACKED, self.n_variants, len(self.sample_ids), masks, rows
        )

    @property
    def variant_chunk(self) -> int:
        """Variants per chunk of the genotype array (blocks are best a multiple of it)."""
        return int(self.ds["call_genotype"].data.chunksize[0])

    def dosage(self, columns: np.ndarray | None = None, rows: np.ndarray | None = None):
        """Lazy alternate-allele dosage, (variants x samples) float64 dask array, NaN where missing.

        columns: optional boolean mask or integer index of the samples to keep;
        rows: optional integer index of the variants to keep, in order. Both
        are applied in the graph, so what is not wanted is never computed and
        a reduction of the result (`dosage() @ weights`) runs on the workers
        and brings back only its aggregates.
        """
        import dask.array as da

        gt = self.ds["call_genotype"].data
        if rows is not None:
            gt = gt[np.asarray(rows, dtype=np.int64)]
        if columns is not None and not (
            np.asarray(columns).dtype == bool and np.asarray(columns).all()
        ):
            gt = gt[:, np.asarray(columns), :]
        missing = (gt == -1).any(axis=2)
        alt = (gt > 0).sum(axis=2, dtype=np.int16)
        return da.where(missing, np.nan, alt.astype(np.float64))

    def reduce_calls(
        self,
        kernel,
        columns: np.ndarray | None = None,
        rows: np.ndarray | None = None,
        column_args: tuple = (),
        row_args: tuple = (),
    ) -> dict[str, np.ndarray]:
        """A kernel's per-variant sums over `call_genotype`, one task per Zarr chunk.

        See `SiteCohort.reduce_calls` and `kernels.reduce_chunks`: the tasks read
        and reduce their chunk where dask computes (the site's workers when a
        distributed Client is the default) and return per-variant sums only.
        With valid packed calls (`packed`) the tasks read those instead: the
        same codes, so the same sums.
        """
        from .kernels import reduce_chunks

        if self.packed is not None:  # the same codes, without the Zarr's decompression
            from .packed import reduce_kernel

            return reduce_kernel(
                self.folder / PACKED, self.n_variants, len(self.sample_ids), kernel,
                columns, rows, column_args, row_args,
            )  # fmt: skip
        return reduce_chunks(
            self.ds["call_genotype"].data, kernel, columns, rows, column_args, row_args
        )

    def default_block(self, n_columns: int | None = None) -> int:
        """Variants per block of `dosage_blocks`: about BLOCK_VALUES dosages, whole chunks if possible."""
        n = max(1, n_columns if n_columns is not None else len(self.sample_ids))
        rows = max(1, BLOCK_VALUES // n)
        chunk = self.variant_chunk
        return chunk * (rows // chunk) if rows >= chunk else rows

    def dosage_blocks(
        self,
        block: int | None = None,
        columns: np.ndarray | None = None,
        rows: np.ndarray | None = None,
    ) -> Iterator[tuple[slice, np.ndarray]]:
        """Yield (row slice, dosage) a block of variants at a time, computed with dask.

        block: variants per block (default `default_block()`: ~128 MB of
        float64); columns, rows: as in `dosage`, the slices then index into
        the selected rows. Each dosage array is float64, (variants in the
        block) x (samples), NaN where missing. At most one block is in memory
        here at a time.
        """
        dos = self.dosage(columns, rows)
        n = int(dos.shape[0])
        step = int(block) if block is not None else self.default_block(int(dos.shape[1]))
        if step < 1:
            raise ValueError(f"block: {block} must be positive")
        for lo in range(0, n, step):
            hi = min(lo + step, n)
            yield slice(lo, hi), np.asarray(dos[lo:hi].compute())


class HailCohort(SiteCohort):
    """Engine "hail": the dataset's MatrixTable (`genotypes.mt`, column key `s` = sample_id).

    Rows are in locus order, which is the VCF's (and so the Zarr store's) for
    a VCF sorted to the reference; `variant_keys()` gives them in that order.
    """

    engine = "hail"

    def __init__(self, folder: str | Path, site: str, dataset: str):
        self.folder = Path(folder)
        self.site = site
        self.dataset = dataset
        self.path = self.folder / MATRIX_TABLE
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no Hail MatrixTable in the dataset folder")

    @staticmethod
    def hail():
        """The hail module, started once in this process."""
        from .hail_session import ensure_hail

        return ensure_hail()

    def matrix_table(self):
        """The dataset's MatrixTable (read lazily; a new handle each call)."""
        hl = self.hail()
        return hl.read_matrix_table(str(self.path))

    @cached_property
    def sample_ids(self) -> list[str]:
        mt = self.matrix_table()
        return [str(s) for s in mt.s.collect()]

    @cached_property
    def samples(self) -> pd.DataFrame:
        return read_samples(self.folder, self.sample_ids)

    def variant_keys(self) -> list[str]:
        return list(self._variant_keys)

    @cached_property
    def summary(self):
        """The dataset's summary cache if valid for this MatrixTable now, else None (`summary`)."""
        from .summary import read_summary

        n_rows = self.matrix_table().count_rows()
        return read_summary(self.folder, self.sample_ids, self.engine, n_rows)

    @cached_property
    def _variant_keys(self) -> tuple[str, ...]:
        cache = self.summary
        if cache is not None:
            return tuple(cache.variant_keys())
        hl = self.hail()
        rows = self.matrix_table().rows()
        key = hl.delimit(
            [
                rows.locus.contig,
                hl.str(rows.locus.position),
                rows.alleles[0],
                hl.delimit(rows.alleles[1:], ","),
            ],
            ":",
        )
        return tuple(rows.select(k=key).k.collect())


def open_cohort(folder: str | Path, site: str, dataset: str, engine: str) -> SiteCohort:
    """The dataset at `folder` as a cohort on `engine` ("dask" or "hail")."""
    if engine == "dask":
        return ZarrCohort(folder, site, dataset)
    if engine == "hail":
        return HailCohort(folder, site, dataset)
    raise TaskError(f"engine {engine!r} is not one of {', '.join(ENGINES)}", "engine")
