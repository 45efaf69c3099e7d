"""The federation benchmark's workload: the demo's sites and the same people pooled, written once.

The people and genotypes are `hub.data.synth`'s (its variant table, planted
effects, per-site random streams, clinical attributes and traits, so the
same seed gives the same cohort as `generate_cohorts`), written once and
never parsed again: at 5 x 10,000 x 200,000 (1e10 calls) the sites' VCF
text is 40 GB, which ingest's vcf2zarr, `bcftools merge`, `plink2 --vcf`
and Hail's `import_vcf` would each read in full. Instead each chunk of
calls goes at once into every format that needs it:

- per site, the analysis dataset as ingest leaves it and a gateway reads it:
  `sites/<site>/<dataset>/` with `genotypes.vcf.gz` (synth's writer, bgzipped
  and tabix-indexed: the dataset's version, which the summary cache is
  checked against), `genotypes.vcf.zarr` in ingest's layout (bio2zarr's:
  call_genotype int8 (variants, samples, 2), chunks of 1,000 variants x up
  to 10,000 people, Blosc zstd 7 with bit shuffle; sample_id,
  variant_position, variant_allele, variant_contig, contig_id),
  `clinical.tsv` and `phenotypes.tsv` (synth's writer), and the summary cache
  ingest writes (`extensions.federation.summary.write_summary`). No
  MatrixTable: the benchmark's sites answer on the Dask engine, the demo's
  default;
- pooled, for the references: `pooled/pooled.vcf.zarr` (the same layout,
  every site's people in site order), `pooled/pooled.bed/.bim/.fam` written
  from the same calls (A1 = ALT) and made a pgen by `plink2 --make-pgen`, the
  pooled MatrixTable by Hail's `import_plink` with the people's site,
  phenotypes and covariates as column fields, and the tables the tools read
  (`samples.tsv`, PLINK's `pheno.tsv`, `covar.tsv`).

A unit test checks that the sites' VCF, Zarr stores and tables equal what
`generate_cohorts` and ingest write for the same seed.

Everything goes into a partial folder renamed into place at the end, so an
interrupted generation leaves nothing a later run would take for a cache.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent

SEED = 2026
#: bumped when what is written changes, so an older cache is not taken for this one
FORMAT = 3
VARIANT_CHUNK = 1000  # bio2zarr's defaults, so the sites' stores chunk as ingest's do
SAMPLE_CHUNK = 10_000
PLINK_MEMORY_MB = 3000
#: the pooled MatrixTable's partitions are about this many variants
MT_PARTITION_VARIANTS = 10_000


@dataclass(frozen=True)
class Sizes:
    sites: int
    samples: int
    variants: int

    @property
    def name(self) -> str:
        return f"{self.sites}x{self.samples}x{self.variants}-seed{SEED}-v{FORMAT}"

    @property
    def label(self) -> str:
        return f"{self.sites} x {self.samples:,} x {self.variants:,}"

    @property
    def calls(self) -> int:
        return self.sites * self.samples * self.variants


def cache_root() -> Path:
    base = Path(os.environ.get("VISITING_CACHE", Path.home() / ".cache" / "visiting"))
    return base / "bench-federation"


def site_specs():
    """The demo platform's sites that hold an analysis dataset, as `hub.data.synth` writes them."""
    from hub.data.synth import site_specs as specs_of
    from hub.platform.policy import load_platform

    return specs_of(load_platform(REPO / "policies" / "demo").sites.values())


# ---------------------------------------------------------------------------
# writers


def _codec():
    import numcodecs

    return numcodecs.Blosc(cname="zstd", clevel=7, shuffle=numcodecs.Blosc.BITSHUFFLE)


class ZarrWriter:
    """A VCF Zarr store in ingest's layout, written a chunk of variants at a time."""

    def __init__(self, path: Path, sample_ids: list[str], table, dataset_id: str):
        import zarr

        from hub.data.synth_genotypes import CONTIGS

        V, N = table.pos.size, len(sample_ids)
        g = zarr.open_group(str(path), mode="w", zarr_format=2)
        g.attrs.update(
            {
                "vcf_zarr_version": "0.5",
                "source": "visiting bench/federation_data.py (ingest's layout, written directly)",
                "visiting_dataset": {"dataset_id": dataset_id, "reference_genome": "GRCh38"},
            }
        )
        self.calls = g.create_array(
            "call_genotype",
            shape=(V, N, 2),
            chunks=(min(V, VARIANT_CHUNK), min(N, SAMPLE_CHUNK), 2),
            dtype="int8",
            fill_value=None,
            compressors=_codec(),
            attributes={"_ARRAY_DIMENSIONS": ["variants", "samples", "ploidy"]},
        )
        contigs = list(CONTIGS)
        small = {
            "sample_id": (["samples"], np.asarray(sample_ids)),
            "contig_id": (["contigs"], np.asarray(contigs)),
            "contig_length": (["contigs"], np.asarray(list(CONTIGS.values()), dtype=np.int64)),
            "variant_contig": (
                ["variants"],
                np.asarray([contigs.index(c) for c in table.chrom], dtype=np.int8),
            ),
            "variant_position": (["variants"], table.pos.astype(np.int32)),
            "variant_allele": (["variants", "alleles"], np.column_stack([table.ref, table.alt])),
            "variant_id": (["variants"], np.asarray(table.ids)),
        }
        for name, (dims, values) in small.items():
            text = values.dtype.kind in "US"
            chunks = (min(values.shape[0], VARIANT_CHUNK), *values.shape[1:])
            a = g.create_array(
                name,
                shape=values.shape,
                chunks=chunks if dims[0] == "variants" else values.shape,
                dtype=str if text else values.dtype,
                fill_value="" if text else None,
                compressors=_codec(),
                attributes={"_ARRAY_DIMENSIONS": dims},
            )
            a[...] = values.astype(object) if text else values

    def write(self, lo: int, dosage: np.ndarray) -> None:
        self.calls[lo : lo + dosage.shape[0]] = calls_of(dosage)


#: synth's dosage codes (0, 1, 2, 3 missing) as diploid calls, as bio2zarr reads "0/0" ... "./."
CALLS = np.array([[0, 0], [0, 1], [1, 1], [-1, -1]], dtype=np.int8)
#: the same codes in a PLINK 1 .bed (A1 = ALT): 0 ALT alleles 0b11, 1 0b10, 2 0b00, missing 0b01
BED_CODES = np.array([3, 2, 0, 1], dtype=np.uint8)
BED_MAGIC = bytes([0x6C, 0x1B, 0x01])  # variant-major


def calls_of(dosage: np.ndarray) -> np.ndarray:
    """(variants, people, 2) int8 calls of synth's (variants, people) dosage codes."""
    return CALLS[dosage]


def bed_rows(dosage: np.ndarray) -> bytes:
    """The .bed bytes of (variants, people) dosage codes: 2 bits a call, 4 calls a byte."""
    codes = BED_CODES[dosage]
    pad = (-codes.shape[1]) % 4
    if pad:
        codes = np.pad(codes, ((0, 0), (0, pad)), constant_values=1)
    q = codes.reshape(codes.shape[0], -1, 4)
    packed = q[:, :, 0] | (q[:, :, 1] << 2) | (q[:, :, 2] << 4) | (q[:, :, 3] << 6)
    return packed.astype(np.uint8).tobytes()


# ---------------------------------------------------------------------------
# the whole workload


def generate(sizes: Sizes, dest: Path, say: Callable[[str], None], hail=True) -> dict:
    """Write the sites and the pooled references into `dest` (via a partial folder)."""
    from bench.federation_procs import run_tool, self_peak

    specs = site_specs()[: sizes.sites]
    if len(specs) < sizes.sites:
        raise ValueError(f"the demo platform has {len(specs)} sites with an analysis dataset")
    work = dest.with_name(f"{dest.name}.partial-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    seconds: dict[str, float] = {}
    peaks: dict[str, int] = {}
    try:
        t0 = time.perf_counter()
        people = write_calls(sizes, specs, work, say)
        seconds["genotypes: sites' VCF and VCF Zarr, pooled VCF Zarr and .bed"] = (
            time.perf_counter() - t0
        )
        t0 = time.perf_counter()
        write_summaries(work, specs, say)
        seconds["summary caches (summary.write_summary, as ingest writes them)"] = (
            time.perf_counter() - t0
        )
        pooled = work / "pooled"
        write_pooled_tables(people, pooled)
        seconds["pooled pgen (plink2 --make-pgen)"] = run_tool(
            ["plink2", "--bfile", str(pooled / "pooled"), "--make-pgen", "--threads", "2",
             "--memory", str(PLINK_MEMORY_MB), "--out", str(pooled / "pooled")], peaks,
        )  # fmt: skip
        say("pooled pgen written")
        if hail:
            t0 = time.perf_counter()
            write_pooled_matrix_table(pooled, sizes)
            seconds["pooled MatrixTable (hl.import_plink, write)"] = time.perf_counter() - t0
            say("pooled MatrixTable written")
        manifest = {
            "sizes": sizes.__dict__,
            "seed": SEED,
            "format": FORMAT,
            "sites": {s.site_id: s.analysis_dataset for s in specs},
            "pooled_people": int(len(people)),
            "matrix_table": bool(hail),
            "seconds": seconds,
            "peak_rss": {"generator": self_peak(), **peaks},
            "disk_bytes": folder_bytes(work),
            "written": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(dest, ignore_errors=True)
        work.rename(dest)
        return manifest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def write_calls(sizes: Sizes, specs, work: Path, say):
    """Every site's calls and tables, the pooled store and .bed; the pooled people's table."""
    import pandas as pd
    import pysam

    from extensions.contracts.datasets import VCF, ZARR
    from hub.data import synth, synth_genotypes, synth_people

    N, V = sizes.samples, sizes.variants
    rng = np.random.default_rng(SEED)
    table = synth_genotypes.variant_table(rng, V, len(specs), 0.01)
    fx = synth_people.plant_effects(rng, V, len(specs))
    streams = [synth.site_streams(SEED, k) for k in range(len(specs))]
    names = [[f"{s.site_id.upper()}-{i + 1:06d}" for i in range(N)] for s in specs]
    folders = [work / "sites" / s.site_id / s.analysis_dataset for s in specs]
    for f in folders:
        f.mkdir(parents=True)
    pooled = work / "pooled"
    pooled.mkdir()
    stores = [
        ZarrWriter(f / ZARR, n, table, s.analysis_dataset)
        for f, n, s in zip(folders, names, specs, strict=True)
    ]
    everyone = [x for n in names for x in n]
    pooled_store = ZarrWriter(pooled / "pooled.vcf.zarr", everyone, table, "pooled")
    causal = {"q": fx.causal_q, "b": fx.causal_b}
    picked = [{k: [] for k in causal} for _ in specs]
    ids = table.ids
    vcfs = [pysam.BGZFile(str(f / VCF), synth_genotypes.BGZF_MODE) for f in folders]
    last = time.monotonic()
    try:
        for vcf, n, spec in zip(vcfs, names, specs, strict=True):
            vcf.write(synth_genotypes.vcf_header(n, spec.site_id))
        with open(pooled / "pooled.bed", "wb") as bed:
            bed.write(BED_MAGIC)
            for lo in range(0, V, VARIANT_CHUNK):
                hi = min(lo + VARIANT_CHUNK, V)
                chunks = [
                    synth_genotypes.genotypes(s, table.site_freq[k, lo:hi], N)
                    for k, s in enumerate(streams)
                ]
                synth_genotypes.make_polymorphic(chunks, lo)
                for k, g in enumerate(chunks):
                    vcfs[k].write(synth_genotypes.vcf_lines(table, ids, lo, g))
                    stores[k].write(lo, g)
                    for name, idx in causal.items():
                        picked[k][name].append(g[idx[(idx >= lo) & (idx < hi)] - lo])
                joined = np.concatenate(chunks, axis=1)
                pooled_store.write(lo, joined)
                bed.write(bed_rows(joined))
                if time.monotonic() - last > 60 or hi == V:
                    say(f"genotypes: {hi:,} of {V:,} variants")
                    last = time.monotonic()
    finally:
        for vcf in vcfs:
            vcf.close()
    for f in folders:
        pysam.tabix_index(str(f / VCF), preset="vcf", force=True)
    say("sites' VCFs indexed")
    with open(pooled / "pooled.bim", "w") as bim:
        for c, p, i, r, a in zip(table.chrom, table.pos, table.ids, table.ref, table.alt, strict=True):  # fmt: skip
            bim.write(f"{c}\t{i}\t0\t{p}\t{a}\t{r}\n")
    with open(pooled / "pooled.fam", "w") as fam:
        fam.writelines(f"0\t{x}\t0\t0\t0\t-9\n" for x in everyone)

    causal_g = [{k: np.concatenate(v) for k, v in p.items()} for p in picked]
    clinical = [
        synth_people.clinical_attributes(streams[k].people, s, N) for k, s in enumerate(specs)
    ]
    traits = [
        synth_people.traits(streams[k].people, clinical[k], causal_g[k], table, fx, k)
        for k in range(len(specs))
    ]
    threshold = np.quantile(np.concatenate([t[1] for t in traits]), 1 - synth_people.CASE_FRACTION)
    parts = []
    for k, spec in enumerate(specs):
        quant, liability = traits[k]
        synth_people.write_tables(folders[k], names[k], clinical[k], quant, liability > threshold)
        parts.append(
            pd.DataFrame(
                {
                    "site": spec.site_id,
                    "age_band": [synth_people.AGE_BANDS[i] for i in clinical[k]["age_band"]],
                    "sex": np.where(clinical[k]["sex"] == 1, "male", "female"),
                    "quant_trait": np.round(quant, 6),
                    "case_status": (liability > threshold).astype(np.int64),
                },
                index=pd.Index(names[k], name="sample_id"),
            )
        )
    say("sites' tables written")
    return pd.concat(parts)


def write_summaries(work: Path, specs, say) -> None:
    """Each site's summary cache, as ingest writes it after the Zarr store."""
    import dask

    from extensions.federation.summary import write_summary

    with dask.config.set(scheduler="threads", num_workers=2):
        for s in specs:
            write_summary(work / "sites" / s.site_id / s.analysis_dataset)
            say(f"{s.site_id}: summary cache written")


def refresh_summaries(root: Path, manifest: dict, say) -> float:
    """Bring each site's summary cache and packed calls up to date, as the next ingest would
    for a workload written before they changed (`summary.ensure_summary`); the seconds."""
    import dask

    from extensions.federation.summary import ensure_summary

    t0 = time.perf_counter()
    with dask.config.set(scheduler="threads", num_workers=2):
        for site, dataset in manifest["sites"].items():
            if ensure_summary(root / "sites" / site / dataset):
                say(f"{site}: summary cache and packed calls written again")
    return time.perf_counter() - t0


def write_pooled_tables(people, pooled: Path) -> None:
    """samples.tsv; PLINK's pheno.tsv and covar.tsv (an indicator per site but the first, age,
    sex)."""
    import pandas as pd

    from extensions.federation.tasks.regression import covariate_column

    # the tasks' encoding: age as the band's lower bound in decades, sex as male = 1
    age, sex = covariate_column(people, "age_band"), covariate_column(people, "sex")
    table = people.assign(age=age, male=sex)
    table.to_csv(pooled / "samples.tsv", sep="\t")
    ids = table.index.to_series(name="#IID")
    pd.DataFrame(
        {
            "#IID": ids,
            "quant_trait": [repr(float(v)) for v in table["quant_trait"]],
            "case_status": table["case_status"].to_numpy(),
        }
    ).to_csv(pooled / "pheno.tsv", sep="\t", index=False)
    covar = pd.DataFrame({"#IID": ids})
    for site in list(dict.fromkeys(table["site"]))[1:]:
        covar[f"site_{site}"] = (table["site"] == site).astype(int).to_numpy()
    covar["age"] = age
    covar["sex"] = sex
    covar.to_csv(pooled / "covar.tsv", sep="\t", index=False)


def write_pooled_matrix_table(pooled: Path, sizes: Sizes) -> None:
    """The pooled .bed as a MatrixTable with the people's site, phenotypes and covariates."""
    import pandas as pd

    from extensions.federation.hail_session import ensure_hail

    hl = ensure_hail()
    try:
        table = pd.read_csv(pooled / "samples.tsv", sep="\t", dtype={"sample_id": str})
        cols = hl.Table.from_pandas(
            table[["sample_id", "site", "age_band", "sex", "quant_trait", "case_status"]]
        ).key_by("sample_id")
        parts = max(1, sizes.variants // MT_PARTITION_VARIANTS)
        mt = hl.import_plink(
            bed=str(pooled / "pooled.bed"),
            bim=str(pooled / "pooled.bim"),
            fam=str(pooled / "pooled.fam"),
            reference_genome="GRCh38",
            contig_recoding={},
            a2_reference=True,
            min_partitions=parts,
        )
        mt = mt.key_cols_by(s=mt.s).select_cols()
        mt = mt.annotate_cols(**cols[mt.s])
        mt.write(str(pooled / "pooled.mt"), overwrite=True)
    finally:
        hl.stop()


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
