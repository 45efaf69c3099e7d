"""The layout of a dataset folder, defined once.

A site keeps each dataset in one folder named by its id; inside a researcher's
container the approved ones are mounted read-only at `/data/<dataset-id>/`.
Synthetic data and ingest write these names; the cohorts, the summary cache,
the gateway and the guard's recogniser read them.

An analysis dataset holds the VCF with its tabix index, the same calls as a VCF
Zarr store (the Dask engine) and a Hail MatrixTable (the Hail engine), the
per-site summary cache with the calls packed two bits each, and the two per-person tables. A raw dataset holds
sequencing reads (FASTQ) and has none of the analysis stores.
"""

from __future__ import annotations

from pathlib import Path

VCF = "genotypes.vcf.gz"
VCF_INDEX = "genotypes.vcf.gz.tbi"
ZARR = "genotypes.vcf.zarr"
MATRIX_TABLE = "genotypes.mt"
SUMMARY = "genotypes.summary.npz"
#: the calls packed two bits each, for queries of some people (trusted through the summary)
PACKED = "genotypes.packed.npy"
#: the clinical attributes per person (sample_id, age_band, sex, prefecture, disease_name, icd10)
CLINICAL = "clinical.tsv"
#: the phenotypes per person (sample_id, quant_trait, case_status)
PHENOTYPES = "phenotypes.tsv"
PERSON_TABLES = (CLINICAL, PHENOTYPES)

#: the store each analysis engine reads
ENGINE_STORES = {"dask": ZARR, "hail": MATRIX_TABLE}


def is_analysis_dataset(folder: Path) -> bool:
    """Whether `folder` holds an analysis dataset (its Zarr store is the mark)."""
    return (folder / ZARR).exists()


def engine_ready(folder: Path, engine: str) -> bool:
    """Whether `folder` holds the store `engine` reads."""
    store = ENGINE_STORES.get(engine)
    return store is not None and (folder / store).exists()
