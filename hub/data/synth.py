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

Large cohorts are written a chunk of variants at a time, all sites together,
so memory stays bounded by the chunk. Every site draws from its own random
streams, consumed in variant order, so the files depend on the seed and the
sizes but not on the chunk size.
"""

from __future__ import annotations

import csv
import gzip
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pysam

from extensions.contracts.datasets import CLINICAL, PHENOTYPES, VCF
from hub.data.ingest import ingest_datasets

# GRCh38 lengths of the chromosomes the cohorts sample from.
CONTIGS = {"chr20": 64_444_167, "chr21": 46_709_983, "chr22": 50_818_468}

AGE_BANDS = ["20-29", "30-39", "40-49", "50-59", "60-69", "70-79", "80-89"]
AGE_WEIGHTS = [0.08, 0.11, 0.15, 0.19, 0.22, 0.17, 0.08]

# The 47 prefectures in their official (JIS X 0401) order, which runs roughly
# north to south, so neighbours in the list are mostly neighbours on the map.
PREFECTURES = [
    "Hokkaido", "Aomori", "Iwate", "Miyagi", "Akita", "Yamagata", "Fukushima",
    "Ibaraki", "Tochigi", "Gunma", "Saitama", "Chiba", "Tokyo", "Kanagawa",
    "Niigata", "Toyama", "Ishikawa", "Fukui", "Yamanashi", "Nagano", "Gifu",
    "Shizuoka", "Aichi", "Mie", "Shiga", "Kyoto", "Osaka", "Hyogo", "Nara",
    "Wakayama", "Tottori", "Shimane", "Okayama", "Hiroshima", "Yamaguchi",
    "Tokushima", "Kagawa", "Ehime", "Kochi", "Fukuoka", "Saga", "Nagasaki",
    "Kumamoto", "Oita", "Miyazaki", "Kagoshima", "Okinawa",
]  # fmt: skip

CASE_DISEASE = ("Type 2 diabetes mellitus", "E11")
# (name, ICD-10, category); categories let a site weigh what it mostly sees.
DISEASES = [
    ("Essential hypertension", "I10", "general"),
    ("Dyslipidaemia", "E78", "general"),
    ("Chronic kidney disease", "N18", "general"),
    ("Atrial fibrillation", "I48", "general"),
    ("Asthma", "J45", "immune"),
    ("Rheumatoid arthritis", "M06", "immune"),
    ("Atopic dermatitis", "L20", "immune"),
    ("Ulcerative colitis", "K51", "immune"),
    ("Malignant neoplasm of stomach", "C16", "cancer"),
    ("Malignant neoplasm of colon", "C18", "cancer"),
    ("Malignant neoplasm of bronchus and lung", "C34", "cancer"),
    ("Malignant neoplasm of breast", "C50", "cancer"),
    ("Malignant neoplasm of liver", "C22", "cancer"),
    ("Acute myeloid leukaemia", "C92", "haematology"),
    ("Multiple myeloma", "C90", "haematology"),
    ("Pulmonary tuberculosis", "A15", "infection"),
    ("Chronic viral hepatitis B", "B18", "infection"),
    ("Human immunodeficiency virus disease", "B20", "infection"),
    ("Alzheimer disease", "G30", "general"),
    ("Major depressive disorder", "F32", "general"),
]
SITE_FOCUS = {
    "ncc": {"cancer": 5.0},
    "ncgm": {"infection": 5.0},
    "imsut": {"haematology": 4.0, "immune": 2.0},
}

GENOTYPE_TEXT = np.array(
    [list(b"0/0\t"), list(b"0/1\t"), list(b"1/1\t"), list(b"./.\t")], dtype=np.uint8
)
MISSING = 3
MISSING_RATE = 0.005

# Genotype text is so repetitive that level 2 is 5x faster than the default 6
# for a 1.5x larger file; at benchmark sizes compression is the bottleneck.
BGZF_MODE = "wb2"

# Covariate effects on the quantitative trait and on the case liability: per
# 10-year age band above 20-29, and for male sex.
QUANT_AGE, QUANT_MALE = 0.12, 0.4
CASE_AGE, CASE_MALE = 0.15, 0.2
CASE_FRACTION = 0.3
RAW_PAIRS = 300


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


def _streams(seed: int, k: int) -> SiteStreams:
    return SiteStreams(*(np.random.default_rng([seed, k + 1, j]) for j in (1, 2, 3, 7)))


# ---------------------------------------------------------------------------
# variants and frequencies


@dataclass
class VariantTable:
    chrom: np.ndarray
    pos: np.ndarray
    ref: np.ndarray
    alt: np.ndarray
    ancestral: np.ndarray  # ancestral ALT frequency
    site_freq: np.ndarray  # (sites, variants)

    @property
    def ids(self) -> list[str]:
        return [
            f"{c}:{p}:{r}:{a}"
            for c, p, r, a in zip(self.chrom, self.pos, self.ref, self.alt, strict=True)
        ]


def _variants(rng: np.random.Generator, n: int, n_sites: int, fst: float) -> VariantTable:
    total = sum(CONTIGS.values())
    counts = [int(n * length / total) for length in CONTIGS.values()]
    counts[-1] += n - sum(counts)
    chrom, pos = [], []
    for (name, length), k in zip(CONTIGS.items(), counts, strict=True):
        # stay clear of the telomeres; positions are 1-based
        chosen = rng.choice(length - 200_000, size=k, replace=False) + 100_001
        chrom += [name] * k
        pos.append(np.sort(chosen))
    bases = np.array(list("ACGT"))
    ref_idx = rng.integers(0, 4, n)
    alt_idx = (ref_idx + rng.integers(1, 4, n)) % 4
    # a spectrum heavy in low frequencies, as in sequenced cohorts
    ancestral = 0.01 + 0.49 * rng.beta(0.45, 1.6, n)
    # Balding-Nichols: each site's frequency scatters around the ancestral one
    a = ancestral * (1 - fst) / fst
    b = (1 - ancestral) * (1 - fst) / fst
    site_freq = np.clip(rng.beta(a, b, size=(n_sites, n)), 0.002, 0.998)
    return VariantTable(
        chrom=np.array(chrom),
        pos=np.concatenate(pos),
        ref=bases[ref_idx],
        alt=bases[alt_idx],
        ancestral=ancestral,
        site_freq=site_freq,
    )


def _genotypes(
    streams: SiteStreams, freq: np.ndarray, n_samples: int, missing_rate: float = MISSING_RATE
) -> np.ndarray:
    """ALT dosages 0/1/2, or 3 for a missing call; shape (variants, samples), int8.

    One uniform per call cut at the Hardy-Weinberg quantiles is the same
    Binomial(2, p) as `rng.binomial`, several times faster, and it uses the
    stream at a fixed rate, which keeps the output independent of the chunking.
    """
    p = freq.astype(np.float32)[:, None]
    u = streams.genotypes.random((freq.size, n_samples), dtype=np.float32)
    g = (u >= (1 - p) ** 2).astype(np.int8)
    g += u >= 1 - p * p
    g[streams.missing.random(g.shape, dtype=np.float32) < missing_rate] = MISSING
    return g


def _make_polymorphic(chunks: list[np.ndarray], lo: int) -> None:
    """Every variant carries at least one ALT and one REF allele in the pooled cohort.

    The call to change is picked from the variant's index rather than drawn, so
    the rare fix-up uses no random stream.
    """
    alt = sum(np.where(c == MISSING, 0, c).sum(axis=1) for c in chunks)
    called = sum((c != MISSING).sum(axis=1) * 2 for c in chunks)
    for v in np.flatnonzero((alt == 0) | (alt == called)):
        g = chunks[(lo + v) % len(chunks)]
        g[v, (lo + v) * 7919 % g.shape[1]] = 1


# ---------------------------------------------------------------------------
# VCF


def _vcf_header(samples: Sequence[str], site_id: str) -> bytes:
    lines = [
        "##fileformat=VCFv4.2",
        f"##source=visiting-synth (synthetic cohort for site {site_id}; not real data)",
        "##reference=GRCh38",
        *(f"##contig=<ID={c},length={n},assembly=GRCh38>" for c, n in CONTIGS.items()),
        '##FILTER=<ID=PASS,Description="All filters passed">',
        '##INFO=<ID=AC,Number=A,Type=Integer,Description="Allele count in genotypes">',
        '##INFO=<ID=AN,Number=1,Type=Integer,Description="Total number of alleles in called genotypes">',
        '##INFO=<ID=AF,Number=A,Type=Float,Description="Allele frequency">',
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        "\t".join(
            ["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *samples]
        ),
    ]
    return ("\n".join(lines) + "\n").encode()


def _vcf_lines(table: VariantTable, ids: list[str], lo: int, g: np.ndarray) -> bytes:
    """The VCF records of one chunk, genotype text built with numpy, not per call."""
    called = g != MISSING
    ac = np.where(called, g, 0).sum(axis=1)
    an = called.sum(axis=1) * 2
    text = GENOTYPE_TEXT[g].reshape(g.shape[0], -1)
    text[:, -1] = ord("\n")
    out = []
    for i in range(g.shape[0]):
        v = lo + i
        af = ac[i] / an[i] if an[i] else 0.0
        out.append(
            f"{table.chrom[v]}\t{table.pos[v]}\t{ids[v]}\t{table.ref[v]}\t{table.alt[v]}\t.\tPASS\t"
            f"AC={ac[i]};AN={an[i]};AF={af:.6g}\tGT\t".encode()
        )
        out.append(text[i].tobytes())
    return b"".join(out)


def _write_vcfs(
    vcfs: list[Path],
    samples: list[list[str]],
    sites: Sequence[SiteSpec],
    table: VariantTable,
    streams: list[SiteStreams],
    causal: dict[str, np.ndarray],
    chunk: int,
    say: Callable[[str], None],
    missing_rate: float = MISSING_RATE,
) -> list[dict[str, np.ndarray]]:
    """Write and index every site's VCF, a chunk of variants at a time for all sites
    together (the pooled polymorphism check needs them all); return each site's
    genotypes at the causal variants, (causal, samples) per set."""
    ids = table.ids
    n = table.pos.size
    picked: list[dict[str, list[np.ndarray]]] = [{name: [] for name in causal} for _ in sites]
    handles = []
    try:
        for vcf, names, spec in zip(vcfs, samples, sites, strict=True):
            handles.append(pysam.BGZFile(str(vcf), BGZF_MODE))
            handles[-1].write(_vcf_header(names, spec.site_id))
        for lo in range(0, n, chunk):
            hi = min(lo + chunk, n)
            chunks = [
                _genotypes(s, table.site_freq[k, lo:hi], len(samples[k]), missing_rate)
                for k, s in enumerate(streams)
            ]
            _make_polymorphic(chunks, lo)
            for k, g in enumerate(chunks):
                handles[k].write(_vcf_lines(table, ids, lo, g))
                for name, idx in causal.items():
                    picked[k][name].append(g[idx[(idx >= lo) & (idx < hi)] - lo])
            say(f"variants {hi}/{n}")
    finally:
        for h in handles:
            h.close()
    for vcf, spec in zip(vcfs, sites, strict=True):
        pysam.tabix_index(str(vcf), preset="vcf", force=True)
        say(f"{spec.site_id}: VCF written")
    return [{name: np.concatenate(parts) for name, parts in p.items()} for p in picked]


# ---------------------------------------------------------------------------
# people and phenotypes


@dataclass
class Effects:
    """The planted model: causal variants and effects, and per-site mean shifts."""

    causal_q: np.ndarray
    beta_q: np.ndarray
    causal_b: np.ndarray
    beta_b: np.ndarray
    shift_q: np.ndarray
    shift_b: np.ndarray


def _plant_effects(rng: np.random.Generator, variants: int, n_sites: int) -> Effects:
    # 15 + 10 causal SNPs of moderate effect: the strongest stand out in a GWAS
    # of a thousand people, the weakest need the pooled cohort
    k_q, k_b = min(15, variants // 4), min(10, variants // 4)
    return Effects(
        causal_q=np.sort(rng.choice(variants, k_q, replace=False)),
        beta_q=rng.choice([-1, 1], k_q) * rng.uniform(0.15, 0.35, k_q),
        causal_b=np.sort(rng.choice(variants, k_b, replace=False)),
        beta_b=rng.choice([-1, 1], k_b) * rng.uniform(0.2, 0.45, k_b),
        shift_q=rng.normal(0, 0.25, n_sites),
        shift_b=rng.normal(0, 0.2, n_sites),
    )


def _prefecture_weights(region: str) -> np.ndarray:
    home = PREFECTURES.index(region) if region in PREFECTURES else PREFECTURES.index("Tokyo")
    distance = np.abs(np.arange(len(PREFECTURES)) - home)
    w = np.exp(-distance / 2.5) + 0.02
    return w / w.sum()


def _disease_weights(site_id: str) -> np.ndarray:
    focus = SITE_FOCUS.get(site_id, {})
    w = np.array([focus.get(cat, 1.0) for _, _, cat in DISEASES])
    return w / w.sum()


def _clinical(rng: np.random.Generator, spec: SiteSpec, n: int) -> dict[str, np.ndarray]:
    return {
        "age_band": rng.choice(len(AGE_BANDS), size=n, p=AGE_WEIGHTS),
        "sex": rng.integers(0, 2, n),  # 0 female, 1 male
        "prefecture": rng.choice(len(PREFECTURES), size=n, p=_prefecture_weights(spec.region)),
        "disease": rng.choice(len(DISEASES), size=n, p=_disease_weights(spec.site_id)),
    }


def _standardised(g: np.ndarray, freq: np.ndarray) -> np.ndarray:
    """(samples, k) dosages centred and scaled by the ancestral frequency; missing counts as mean."""
    mean = 2 * freq
    sd = np.sqrt(2 * freq * (1 - freq))
    x = np.where(g == MISSING, mean[:, None], g).astype(float)
    return ((x - mean[:, None]) / sd[:, None]).T


def _traits(
    rng: np.random.Generator,
    clin: dict[str, np.ndarray],
    causal_g: dict[str, np.ndarray],
    table: VariantTable,
    fx: Effects,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The quantitative trait and the case liability of one site's people."""
    n = clin["sex"].size
    age = clin["age_band"].astype(float)
    xq = _standardised(causal_g["q"], table.ancestral[fx.causal_q])
    xb = _standardised(causal_g["b"], table.ancestral[fx.causal_b])
    quant = xq @ fx.beta_q + QUANT_AGE * age + QUANT_MALE * clin["sex"] + fx.shift_q[k]
    liability = xb @ fx.beta_b + CASE_AGE * age + CASE_MALE * clin["sex"] + fx.shift_b[k]
    return quant + rng.normal(0, 1, n), liability + rng.logistic(0, 1, n)


def _write_tsvs(
    folder: Path,
    names: list[str],
    clin: dict[str, np.ndarray],
    quant: np.ndarray,
    cases: np.ndarray,
) -> tuple[Path, Path]:
    # cases are the type 2 diabetes patients: the binary trait is that diagnosis
    clinical_path = folder / CLINICAL
    with open(clinical_path, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["sample_id", "age_band", "sex", "prefecture", "disease_name", "icd10"])
        for i, name in enumerate(names):
            disease = CASE_DISEASE if cases[i] else DISEASES[clin["disease"][i]][:2]
            w.writerow([
                name,
                AGE_BANDS[clin["age_band"][i]],
                "male" if clin["sex"][i] else "female",
                PREFECTURES[clin["prefecture"][i]],
                *disease,
            ])  # fmt: skip
    pheno_path = folder / PHENOTYPES
    with open(pheno_path, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["sample_id", "quant_trait", "case_status"])
        for i, name in enumerate(names):
            w.writerow([name, f"{quant[i]:.6f}", int(cases[i])])
    return clinical_path, pheno_path


# ---------------------------------------------------------------------------
# raw sequencing files


def _write_raw(
    rng: np.random.Generator, folder: Path, site_id: str, n_pairs: int = RAW_PAIRS
) -> list[Path]:
    """A random reference fragment, read pairs sampled from it with 1 % errors,
    and the same reads as BAM and CRAM alignments; returns the files."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    contig, length = "chr21_fragment", 20_000
    reference = "".join(rng.choice(list("ACGT"), size=length))
    ref_path = folder / "reference.fa"
    with open(ref_path, "w") as f:
        f.write(f">{contig} synthetic fragment for {site_id} (not real sequence)\n")
        for i in range(0, length, 60):
            f.write(reference[i : i + 60] + "\n")
    pysam.faidx(str(ref_path))
    reads = _simulate_pairs(rng, folder, site_id, reference, n_pairs)
    header = {
        "HD": {"VN": "1.6", "SO": "coordinate"},
        "SQ": [{"SN": contig, "LN": length}],
        "RG": [
            {
                "ID": f"{site_id}-rg1",
                "SM": f"{site_id.upper()}-000001",
                "PL": "ILLUMINA",
                "LB": "lib1",
            }
        ],
        "PG": [{"ID": "visiting-synth", "PN": "visiting-synth", "VN": "1"}],
    }
    for path, mode, extra in (
        ("aligned.bam", "wb", {}),
        ("aligned.cram", "wc", {"reference_filename": str(ref_path)}),
    ):
        with pysam.AlignmentFile(str(folder / path), mode, header=header, **extra) as out:
            for name, pos, seq, qual, is_r1, mate_pos, tlen in reads:
                out.write(
                    _segment(
                        out.header, name, pos, seq, qual, is_r1, mate_pos, tlen, reference, site_id
                    )
                )
        pysam.index(str(folder / path))
    return sorted(folder.iterdir())


def _simulate_pairs(
    rng: np.random.Generator, folder: Path, site_id: str, reference: str, n_pairs: int
) -> list[tuple]:
    """Write reads_R1/R2.fastq.gz; return the alignments, coordinate-sorted, as
    (name, pos, forward-strand seq, qual, is_read1, mate_pos, tlen)."""
    read_len = 100
    comp = str.maketrans("ACGT", "TGCA")
    starts = np.sort(rng.integers(0, len(reference) - 500, n_pairs))
    inserts = rng.integers(250, 400, n_pairs)
    reads, fq1, fq2 = [], [], []
    for i, (s, ins) in enumerate(zip(starts, inserts, strict=True)):
        name = f"{site_id.upper()}:1:FC01:{i + 1:05d}"
        r1_seq = _mutate(rng, reference[s : s + read_len])
        mate = s + ins - read_len
        r2_fwd = _mutate(rng, reference[mate : mate + read_len])
        r2_seq = r2_fwd.translate(comp)[::-1]
        q1 = _quals(rng, read_len)
        q2 = _quals(rng, read_len)
        fq1.append(f"@{name}/1\n{r1_seq}\n+\n{q1}\n")
        fq2.append(f"@{name}/2\n{r2_seq}\n+\n{q2}\n")
        reads.append((name, int(s), r1_seq, q1, True, int(mate), int(ins)))
        reads.append((name, int(mate), r2_fwd, q2[::-1], False, int(s), -int(ins)))
    for path, records in (("reads_R1.fastq.gz", fq1), ("reads_R2.fastq.gz", fq2)):
        # mtime=0: no timestamp in the gzip header, so the bytes depend on the seed only
        with gzip.GzipFile(folder / path, "wb", mtime=0) as f:
            f.write("".join(records).encode())
    reads.sort(key=lambda r: r[1])
    return reads


def _segment(header, name, pos, seq, qual, is_r1, mate_pos, tlen, reference, site_id):
    a = pysam.AlignedSegment(header)
    a.query_name = name
    a.query_sequence = seq
    # paired, proper pair, read 1 forward with its mate reversed (FR orientation)
    a.flag = 1 | 2 | (64 if is_r1 else 128) | (32 if is_r1 else 16)
    a.reference_id = 0
    a.reference_start = pos
    a.mapping_quality = 60
    a.cigarstring = f"{len(seq)}M"
    a.next_reference_id = 0
    a.next_reference_start = mate_pos
    a.template_length = tlen
    a.query_qualities = pysam.qualitystring_to_array(qual)
    mismatches = sum(1 for x, y in zip(seq, reference[pos : pos + len(seq)], strict=True) if x != y)
    a.set_tags([("NM", mismatches), ("RG", f"{site_id}-rg1")])
    return a


def _mutate(rng: np.random.Generator, seq: str, rate: float = 0.01) -> str:
    s = np.array(list(seq))
    hits = np.flatnonzero(rng.random(s.size) < rate)
    for h in hits:
        s[h] = rng.choice([b for b in "ACGT" if b != s[h]])
    return "".join(s)


def _quals(rng: np.random.Generator, n: int) -> str:
    q = np.clip(rng.normal(34, 4, n), 2, 41).astype(int)
    return "".join(chr(33 + x) for x in q)


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
    table = _variants(rng, variants, len(sites), fst)
    fx = _plant_effects(rng, variants, len(sites))
    streams = [_streams(seed, k) for k in range(len(sites))]

    site_dirs = [out_dir / s.site_id / s.analysis_dataset for s in sites]
    for d in site_dirs:
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
    samples = [[f"{s.site_id.upper()}-{i + 1:06d}" for i in range(samples_per_site)] for s in sites]
    vcfs = [d / VCF for d in site_dirs]
    causal_g = _write_vcfs(
        vcfs, samples, sites, table, streams, {"q": fx.causal_q, "b": fx.causal_b},
        chunk_variants, say, missing_rate,
    )  # fmt: skip

    # one case threshold over all sites, so site shifts show up as prevalence differences
    clinical = [_clinical(streams[k].people, s, samples_per_site) for k, s in enumerate(sites)]
    traits = [
        _traits(streams[k].people, clinical[k], causal_g[k], table, fx, k)
        for k in range(len(sites))
    ]
    liabilities = np.concatenate([liability for _, liability in traits])
    threshold = np.quantile(liabilities, 1 - CASE_FRACTION)

    result = SynthResult(str(out_dir), seed, fst, variants, samples_per_site, missing_rate)
    tsvs = []
    for k in range(len(sites)):
        quant, liability = traits[k]
        tsvs.append(
            _write_tsvs(site_dirs[k], samples[k], clinical[k], quant, liability > threshold)
        )
    ingested = (
        ingest_datasets(site_dirs, force=True, say=say, matrix_table=matrix_table)
        if zarr
        else [None] * len(sites)
    )
    for k, spec in enumerate(sites):
        cases = traits[k][1] > threshold
        clinical_path, pheno_path = tsvs[k]
        done = ingested[k]
        raw_dir, raw = None, []
        if raw_files and spec.raw_dataset:
            raw_dir = out_dir / spec.site_id / spec.raw_dataset
            raw = _write_raw(streams[k].raw, raw_dir, spec.site_id)
            say(f"{spec.site_id}: raw files written")
        result.sites[spec.site_id] = SiteFiles(
            samples=samples_per_site,
            vcf=str(vcfs[k]),
            vcf_index=f"{vcfs[k]}.tbi",
            zarr=done.zarr if done else None,
            clinical=str(clinical_path),
            phenotypes=str(pheno_path),
            raw_dir=str(raw_dir) if raw_dir else None,
            raw_files=[str(p) for p in raw],
            cases=int(cases.sum()),
            matrix_table=done.matrix_table if done else None,
            version=done.version if done else None,
        )
        result.site_shift[spec.site_id] = {
            "quant_trait": float(fx.shift_q[k]),
            "case_liability": float(fx.shift_b[k]),
        }
    _fill_truth(result, table, fx, float(np.mean(liabilities > threshold)))
    (out_dir / "truth.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return result


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
