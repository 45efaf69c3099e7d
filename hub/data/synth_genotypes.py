"""Synthetic genotypes: variants with population structure across sites, calls drawn
from each site's frequencies, written as bgzipped, tabix-indexed VCFs a chunk of
variants at a time for all sites together (hub.data.synth puts a cohort together).

Balding-Nichols: one ancestral frequency per variant, a site frequency drawn
around it with a small Fst; a low-frequency-heavy spectrum; a little missingness.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pysam

if TYPE_CHECKING:
    from hub.data.synth import SiteSpec, SiteStreams

# GRCh38 lengths of the chromosomes the cohorts sample from.
CONTIGS = {"chr20": 64_444_167, "chr21": 46_709_983, "chr22": 50_818_468}

GENOTYPE_TEXT = np.array(
    [list(b"0/0\t"), list(b"0/1\t"), list(b"1/1\t"), list(b"./.\t")], dtype=np.uint8
)
MISSING = 3
MISSING_RATE = 0.005

# Genotype text is so repetitive that level 2 is 5x faster than the default 6
# for a 1.5x larger file; at benchmark sizes compression is the bottleneck.
BGZF_MODE = "wb2"


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


def variant_table(rng: np.random.Generator, n: int, n_sites: int, fst: float) -> VariantTable:
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


def genotypes(
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


def make_polymorphic(chunks: list[np.ndarray], lo: int) -> None:
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


def vcf_header(samples: Sequence[str], site_id: str) -> bytes:
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


def vcf_lines(table: VariantTable, ids: list[str], lo: int, g: np.ndarray) -> bytes:
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


def write_vcfs(
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
            handles[-1].write(vcf_header(names, spec.site_id))
        for lo in range(0, n, chunk):
            hi = min(lo + chunk, n)
            chunks = [
                genotypes(s, table.site_freq[k, lo:hi], len(samples[k]), missing_rate)
                for k, s in enumerate(streams)
            ]
            make_polymorphic(chunks, lo)
            for k, g in enumerate(chunks):
                handles[k].write(vcf_lines(table, ids, lo, g))
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
