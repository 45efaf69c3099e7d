"""Synthetic cohorts for the demo sites, the tests and the benchmarks.

No real cohort can be fetched, so each site gets a realistic stand-in,
deterministic for a seed:

- genotypes of biallelic SNPs with population structure across sites
  (Balding-Nichols: one ancestral frequency per variant, a site frequency
  drawn around it with a small Fst), a low-frequency-heavy spectrum, a little
  missingness; written as a bgzipped, tabix-indexed VCF and a VCF Zarr copy;
- the four basic clinical attributes (10-year age band, sex, prefecture,
  disease name with ICD-10 code), with site-specific mixes;
- a quantitative and a binary phenotype with planted causal variants,
  covariate effects and a per-site shift (the answer key goes to truth.json,
  outside the site folders);
- small FASTQ, BAM and CRAM files for the download guard's tests.

Large cohorts are written a chunk of variants at a time, all sites together,
so memory stays bounded by the chunk.
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


@dataclass(frozen=True)
class SiteSpec:
    """A site to write a cohort for, and the dataset folders it goes into."""

    site_id: str
    analysis_dataset: str
    raw_dataset: str | None
    region: str


@dataclass
class SiteFiles:
    samples: int
    vcf: str
    zarr: str | None
    clinical: str
    phenotypes: str
    raw_dir: str | None


@dataclass
class SynthResult:
    out_dir: str
    seed: int
    fst: float
    variants: int
    samples_per_site: int
    sites: dict[str, SiteFiles] = field(default_factory=dict)
    causal_quantitative: list[dict] = field(default_factory=list)
    causal_binary: list[dict] = field(default_factory=list)
    prevalence: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)


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


def _genotypes(rng: np.random.Generator, freq: np.ndarray, n_samples: int) -> np.ndarray:
    """Codes 0/1/2 (ALT dosage) or 3 (missing), shape (variants, samples), int8."""
    g = rng.binomial(2, freq[:, None], size=(freq.size, n_samples)).astype(np.int8)
    g[rng.random(g.shape) < MISSING_RATE] = MISSING
    return g


def _make_polymorphic(chunks: list[np.ndarray], rng: np.random.Generator) -> None:
    """Every variant carries at least one ALT and one REF allele in the pooled cohort."""
    alt = sum(np.where(c == MISSING, 0, c).sum(axis=1) for c in chunks)
    called = sum((c != MISSING).sum(axis=1) * 2 for c in chunks)
    for v in np.flatnonzero((alt == 0) | (alt == called)):
        site = rng.integers(len(chunks))
        sample = rng.integers(chunks[site].shape[1])
        chunks[site][v, sample] = 1


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


# ---------------------------------------------------------------------------
# people


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


# ---------------------------------------------------------------------------
# raw sequencing files


def _write_raw(rng: np.random.Generator, folder: Path, site_id: str, n_pairs: int = 300) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    contig, length, read_len = "chr21_fragment", 20_000, 100
    reference = "".join(rng.choice(list("ACGT"), size=length))
    ref_path = folder / "reference.fa"
    with open(ref_path, "w") as f:
        f.write(f">{contig} synthetic fragment for {site_id} (not real sequence)\n")
        for i in range(0, length, 60):
            f.write(reference[i : i + 60] + "\n")
    pysam.faidx(str(ref_path))

    comp = str.maketrans("ACGT", "TGCA")
    starts = np.sort(rng.integers(0, length - 500, n_pairs))
    inserts = rng.integers(250, 400, n_pairs)
    reads = []  # (name, pos, seq, qual, is_read1, mate_pos, tlen)
    fq1, fq2 = [], []
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
        with gzip.GzipFile(folder / path, "wb", mtime=0) as f:
            f.write("".join(records).encode())

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
    reads.sort(key=lambda r: r[1])
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


def _segment(header, name, pos, seq, qual, is_r1, mate_pos, tlen, reference, site_id):
    a = pysam.AlignedSegment(header)
    a.query_name = name
    a.query_sequence = seq
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
    chunk_variants: int = 10_000,
    progress: Callable[[str], None] | None = None,
) -> SynthResult:
    """Write one synthetic cohort per site under `out_dir/<site>/<dataset>/`; see the module doc."""
    _check_args(sites, samples_per_site, variants, fst, chunk_variants)
    say = progress or (lambda _msg: None)
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    table = _variants(rng, variants, len(sites), fst)
    ids = table.ids

    # the answer key: which variants carry effects, and how large
    k_quant, k_bin = min(15, variants // 4), min(10, variants // 4)
    causal_q = np.sort(rng.choice(variants, k_quant, replace=False))
    causal_b = np.sort(rng.choice(variants, k_bin, replace=False))
    beta_q = rng.choice([-1, 1], k_quant) * rng.uniform(0.15, 0.35, k_quant)
    beta_b = rng.choice([-1, 1], k_bin) * rng.uniform(0.2, 0.45, k_bin)
    site_shift_q = rng.normal(0, 0.25, len(sites))
    site_shift_b = rng.normal(0, 0.2, len(sites))

    site_rngs = [np.random.default_rng([seed, i + 1]) for i in range(len(sites))]
    site_dirs, handles, samples = [], [], []
    causal_g_q = [[] for _ in sites]
    causal_g_b = [[] for _ in sites]
    result = SynthResult(str(out_dir), seed, fst, variants, samples_per_site)
    try:
        for spec in sites:
            d = out_dir / spec.site_id / spec.analysis_dataset
            if d.exists():
                shutil.rmtree(d)
            d.mkdir(parents=True)
            site_dirs.append(d)
            names = [f"{spec.site_id.upper()}-{i + 1:06d}" for i in range(samples_per_site)]
            samples.append(names)
            h = pysam.BGZFile(str(d / "genotypes.vcf.gz"), "wb")
            h.write(_vcf_header(names, spec.site_id))
            handles.append(h)

        for lo in range(0, variants, chunk_variants):
            hi = min(lo + chunk_variants, variants)
            chunk = [
                _genotypes(site_rngs[k], table.site_freq[k, lo:hi], samples_per_site)
                for k in range(len(sites))
            ]
            _make_polymorphic(chunk, rng)
            for k, g in enumerate(chunk):
                handles[k].write(_vcf_lines(table, ids, lo, g))
                for causal, store in ((causal_q, causal_g_q), (causal_b, causal_g_b)):
                    sel = causal[(causal >= lo) & (causal < hi)]
                    if sel.size:
                        store[k].append(g[sel - lo])
            say(f"variants {hi}/{variants}")
    finally:
        for h in handles:
            h.close()

    for k, spec in enumerate(sites):
        vcf = site_dirs[k] / "genotypes.vcf.gz"
        pysam.tabix_index(str(vcf), preset="vcf", force=True)
        say(f"{spec.site_id}: VCF written")

    # phenotypes need every site's causal genotypes to set one prevalence threshold
    liabilities, people = [], []
    for k, spec in enumerate(sites):
        crng = site_rngs[k]
        clin = _clinical(crng, spec, samples_per_site)
        xq = _standardised(np.concatenate(causal_g_q[k]), table.ancestral[causal_q])
        xb = _standardised(np.concatenate(causal_g_b[k]), table.ancestral[causal_b])
        age = clin["age_band"].astype(float)
        quant = (
            xq @ beta_q
            + 0.12 * age
            + 0.4 * clin["sex"]
            + site_shift_q[k]
            + crng.normal(0, 1, samples_per_site)
        )
        liability = (
            xb @ beta_b
            + 0.15 * age
            + 0.2 * clin["sex"]
            + site_shift_b[k]
            + crng.logistic(0, 1, samples_per_site)
        )
        liabilities.append(liability)
        people.append((clin, quant))
    threshold = np.quantile(np.concatenate(liabilities), 0.7)  # about 30 % cases

    for k, spec in enumerate(sites):
        clin, quant = people[k]
        cases = (liabilities[k] > threshold).astype(int)
        clinical_path = site_dirs[k] / "clinical.tsv"
        with open(clinical_path, "w", newline="") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(["sample_id", "age_band", "sex", "prefecture", "disease_name", "icd10"])
            for i, name in enumerate(samples[k]):
                disease = CASE_DISEASE if cases[i] else DISEASES[clin["disease"][i]][:2]
                w.writerow([
                    name,
                    AGE_BANDS[clin["age_band"][i]],
                    "male" if clin["sex"][i] else "female",
                    PREFECTURES[clin["prefecture"][i]],
                    *disease,
                ])  # fmt: skip
        pheno_path = site_dirs[k] / "phenotypes.tsv"
        with open(pheno_path, "w", newline="") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(["sample_id", "quant_trait", "case_status"])
            for i, name in enumerate(samples[k]):
                w.writerow([name, f"{quant[i]:.6f}", cases[i]])

        zarr_path = None
        if zarr:
            zarr_path = site_dirs[k] / "genotypes.vcf.zarr"
            _to_zarr(site_dirs[k] / "genotypes.vcf.gz", zarr_path)
            say(f"{spec.site_id}: VCF Zarr written")
        raw_dir = None
        if raw_files and spec.raw_dataset:
            raw_dir = out_dir / spec.site_id / spec.raw_dataset
            if raw_dir.exists():
                shutil.rmtree(raw_dir)
            _write_raw(np.random.default_rng([seed, k + 1, 7]), raw_dir, spec.site_id)
            say(f"{spec.site_id}: raw files written")
        result.sites[spec.site_id] = SiteFiles(
            samples=samples_per_site,
            vcf=str(site_dirs[k] / "genotypes.vcf.gz"),
            zarr=str(zarr_path) if zarr_path else None,
            clinical=str(clinical_path),
            phenotypes=str(pheno_path),
            raw_dir=str(raw_dir) if raw_dir else None,
        )

    result.causal_quantitative = [
        {"variant_id": ids[v], "index": int(v), "beta": float(b)}
        for v, b in zip(causal_q, beta_q, strict=True)
    ]
    result.causal_binary = [
        {"variant_id": ids[v], "index": int(v), "beta": float(b)}
        for v, b in zip(causal_b, beta_b, strict=True)
    ]
    result.prevalence = float(np.mean(np.concatenate(liabilities) > threshold))
    (out_dir / "truth.json").write_text(json.dumps(result.to_json(), indent=2))
    return result


def _to_zarr(vcf: Path, out: Path) -> None:
    from bio2zarr import vcf as vcf2zarr

    if out.exists():
        shutil.rmtree(out)
    vcf2zarr.convert([str(vcf)], str(out), worker_processes=0, show_progress=False)
