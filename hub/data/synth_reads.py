"""Small synthetic sequencing files for the download guard's tests: a random reference
fragment, read pairs sampled from it with 1 % errors (FASTQ), and the same reads as BAM
and CRAM alignments.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pysam

RAW_PAIRS = 300


def write_raw(
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
