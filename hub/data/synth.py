"""Synthetic cohorts for the demo sites, the tests and the benchmarks.

No real cohort can be fetched, so each site gets a realistic stand-in,
deterministic for a seed:

- genotypes of biallelic SNPs with population structure across sites
  (Balding-Nichols: one ancestral frequency per variant, a site frequency
  drawn around it with a small Fst), a low-frequency-heavy spectrum, a little
  missingness; written as a bgzipped, tabix-indexed VCF, then ingested
  (hub.data.ingest) into a VCF Zarr store and a Hail MatrixTable;
- the four basic clinical attributes (10-year age band, sex, prefecture,
  disease name with ICD-10 code), with site-specific mixes;
- a quantitative and a binary phenotype with planted causal variants,
  covariate effects and a per-site shift (the answer key goes to truth.json,
  outside the site folders);
- small FASTQ, BAM and CRAM files for the download guard's tests.

The genotypes and the VCFs are hub.data.synth_genotypes, the people and their
tables hub.data.synth_people, the sequencing files hub.data.synth_reads; this
module puts a cohort together and writes its answer key.

Large cohorts are written a chunk of variants at a time, all sites together,
so memory stays bounded by the chunk. Every site draws from its own random
streams, consumed in variant order, so the files depend on the seed and the
sizes but not on the chunk size.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from extensions.contracts.datasets import VCF
from hub.data.ingest import ingest_datasets
from hub.data.synth_genotypes import MISSING_RATE, VariantTable, variant_table, write_vcfs
from hub.data.synth_people import (
    CASE_AGE,
    CASE_FRACTION,
    CASE_MALE,
    QUANT_AGE,
    QUANT_MALE,
    Effects,
    clinical_attributes,
    plant_effects,
    traits,
    write_tables,
)
from hub.data.synth_reads import write_raw


@dataclass(frozen=True)
class SiteSpec:
    """A site to write a cohort for, and the dataset folders it goes into.

    `region` is the site's home prefecture; one not in PREFECTURES (the policy
    file may leave it empty) counts as Tokyo.
    """

    site_id: str
    analysis_dataset: str
    raw_dataset: str | None
    region: str


@dataclass
class SiteFiles:
    """Where one site's files went; paths as strings so the record is JSON as it is."""

    samples: int
    vcf: str
    vcf_index: str
    zarr: str | None
    clinical: str
    phenotypes: str
    raw_dir: str | None
    raw_files: list[str] = field(default_factory=list)
    cases: int = 0
    matrix_table: str | None = None
    # hub.data.ingest's content version of the dataset (None when not ingested)
    version: str | None = None


@dataclass
class SynthResult:
    """What was written, and the answer key; also saved as `out_dir/truth.json`.

    Effects are per standard deviation of the dosage (scaled by the ancestral
    frequency); `index` is the variant's 0-based row in every site's VCF.
    """

    out_dir: str
    seed: int
    fst: float
    variants: int
    samples_per_site: int
    missing_rate: float = MISSING_RATE
    sites: dict[str, SiteFiles] = field(default_factory=dict)
    causal_quantitative: list[dict] = field(default_factory=list)
    causal_binary: list[dict] = field(default_factory=list)
    prevalence: float = 0.0
    covariate_effects: dict[str, dict[str, float]] = field(default_factory=dict)
    site_shift: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def site_specs(sites) -> list[SiteSpec]:
    """Specs for the platform sites (hub.platform.policy.Site) that hold an analysis dataset to write into."""
    specs = []
    for site in sites:
        analysis = [d.id for d in site.datasets if d.kind == "analysis"]
        raw = [d.id for d in site.datasets if d.kind == "raw"]
        if analysis:
            specs.append(SiteSpec(site.id, analysis[0], raw[0] if raw else None, site.region))
    return specs


# ---------------------------------------------------------------------------
# checks


def _check_args(sites: Sequence[SiteSpec], samples: int, variants: int, fst: float, chunk: int):
    if not sites:
        raise ValueError("sites: at least one site is needed")
    ids = [s.site_id for s in sites]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"sites: site id listed twice: {', '.join(dup)}")
    if samples < 10:
        raise ValueError(f"samples_per_site: {samples} is too few (at least 10)")
    if variants < 10:
        raise ValueError(f"variants: {variants} is too few (at least 10)")
    if not 0 < fst < 0.5:
        raise ValueError(f"fst: {fst} is outside (0, 0.5)")
    if chunk < 1:
        raise ValueError(f"chunk_variants: {chunk} must be positive")


# ---------------------------------------------------------------------------
# random streams


@dataclass
class SiteStreams:
    """One site's random streams, kept apart so that drawing more from one (a
    bigger chunk, the missing-call mask) never shifts what another yields."""

    genotypes: np.random.Generator
    missing: np.random.Generator
    people: np.random.Generator
    raw: np.random.Generator


def site_streams(seed: int, k: int) -> SiteStreams:
    return SiteStreams(*(np.random.default_rng([seed, k + 1, j]) for j in (1, 2, 3, 7)))


# ---------------------------------------------------------------------------
# the whole cohort


def generate_cohorts(
    out_dir: Path,
    sites: Sequence[SiteSpec],
    *,
    samples_per_site: int = 200,
    variants: int = 2000,
    seed: int = 2026,
    fst: float = 0.01,
    raw_files: bool = True,
    zarr: bool = True,
    matrix_table: bool = True,
    chunk_variants: int = 10_000,
    missing_rate: float = MISSING_RATE,
    progress: Callable[[str], None] | None = None,
) -> SynthResult:
    """Write one synthetic cohort per site under `out_dir/<site>/<dataset>/`; see the module doc.

    `zarr` False writes the VCF and the tables only, no analysis-ready copies
    (fast, no Java); `matrix_table` False skips only the Hail MatrixTable.
    `missing_rate` is the chance of a missing call, per person and variant.
    Raises ValueError, naming the argument, for a bad one; nothing is written then.
    """
    _check_args(sites, samples_per_site, variants, fst, chunk_variants)
    if not 0 <= missing_rate < 0.5:
        raise ValueError(f"missing_rate: {missing_rate} is outside [0, 0.5)")
    say = progress or (lambda _msg: None)
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    table = variant_table(rng, variants, len(sites), fst)
    fx = plant_effects(rng, variants, len(sites))
    streams = [site_streams(seed, k) for k in range(len(sites))]

    site_dirs = _fresh_folders([out_dir / s.site_id / s.analysis_dataset for s in sites])
    samples = [[f"{s.site_id.upper()}-{i + 1:06d}" for i in range(samples_per_site)] for s in sites]
    vcfs = [d / VCF for d in site_dirs]
    causal_g = write_vcfs(
        vcfs, samples, sites, table, streams, {"q": fx.causal_q, "b": fx.causal_b},
        chunk_variants, say, missing_rate,
    )  # fmt: skip
    tables, cases, prevalence = _write_people(
        site_dirs, samples, sites, streams, causal_g, table, fx
    )
    ingested = (
        ingest_datasets(site_dirs, force=True, say=say, matrix_table=matrix_table)
        if zarr
        else [None] * len(sites)
    )
    result = SynthResult(str(out_dir), seed, fst, variants, samples_per_site, missing_rate)
    for k, spec in enumerate(sites):
        raw_dir, raw = None, []
        if raw_files and spec.raw_dataset:
            raw_dir = out_dir / spec.site_id / spec.raw_dataset
            raw = write_raw(streams[k].raw, raw_dir, spec.site_id)
            say(f"{spec.site_id}: raw files written")
        done = ingested[k]
        result.sites[spec.site_id] = SiteFiles(
            samples=samples_per_site,
            vcf=str(vcfs[k]),
            vcf_index=f"{vcfs[k]}.tbi",
            zarr=done.zarr if done else None,
            clinical=str(tables[k][0]),
            phenotypes=str(tables[k][1]),
            raw_dir=str(raw_dir) if raw_dir else None,
            raw_files=[str(p) for p in raw],
            cases=int(cases[k].sum()),
            matrix_table=done.matrix_table if done else None,
            version=done.version if done else None,
        )
        result.site_shift[spec.site_id] = {
            "quant_trait": float(fx.shift_q[k]),
            "case_liability": float(fx.shift_b[k]),
        }
    _fill_truth(result, table, fx, prevalence)
    (out_dir / "truth.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return result


def _fresh_folders(folders: list[Path]) -> list[Path]:
    """The analysis dataset folders, emptied of what an earlier cohort left there."""
    for d in folders:
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
    return folders


def _write_people(
    site_dirs: list[Path],
    samples: list[list[str]],
    sites: Sequence[SiteSpec],
    streams: list[SiteStreams],
    causal_g: list[dict[str, np.ndarray]],
    table: VariantTable,
    fx: Effects,
) -> tuple[list[tuple[Path, Path]], list[np.ndarray], float]:
    """Every site's people and their tables; returns the tables' paths, each site's cases and
    the prevalence. One case threshold over all sites, so site shifts show up as prevalence
    differences."""
    clinical = [
        clinical_attributes(streams[k].people, s, len(samples[k])) for k, s in enumerate(sites)
    ]
    people = [
        traits(streams[k].people, clinical[k], causal_g[k], table, fx, k) for k in range(len(sites))
    ]
    liabilities = np.concatenate([liability for _, liability in people])
    threshold = np.quantile(liabilities, 1 - CASE_FRACTION)
    cases = [liability > threshold for _, liability in people]
    tables = [
        write_tables(site_dirs[k], samples[k], clinical[k], quant, cases[k])
        for k, (quant, _) in enumerate(people)
    ]
    return tables, cases, float(np.mean(liabilities > threshold))


def _fill_truth(result: SynthResult, table: VariantTable, fx: Effects, prevalence: float) -> None:
    ids = table.ids

    def listed(idx: np.ndarray, beta: np.ndarray) -> list[dict]:
        return [
            {"variant_id": ids[v], "index": int(v), "beta": float(b), "ancestral_af": float(p)}
            for v, b, p in zip(idx, beta, table.ancestral[idx], strict=True)
        ]

    result.causal_quantitative = listed(fx.causal_q, fx.beta_q)
    result.causal_binary = listed(fx.causal_b, fx.beta_b)
    result.prevalence = prevalence
    result.covariate_effects = {
        "quant_trait": {"age_band_step": QUANT_AGE, "male": QUANT_MALE, "noise_sd": 1.0},
        # logistic noise on the liability: effects are log odds ratios before thresholding
        "case_liability": {"age_band_step": CASE_AGE, "male": CASE_MALE},
    }
