"""Synthetic cohorts read by the independent tools: bcftools, plink2, samtools, tabix, and the Zarr copy.

Also `visiting synth` itself, as a site admin runs it.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys

import numpy as np
import pysam
import pytest
import zarr

from hub.data.synth import SiteSpec, generate_cohorts
from hub.data.synth_genotypes import CONTIGS

pytestmark = pytest.mark.integration

SITES = [
    SiteSpec("nig", "JGAD000101", "JGAD000102", "Shizuoka"),
    SiteSpec("tommo", "JGAD000401", "JGAD000402", "Miyagi"),
]
VARIANTS = 400
SAMPLES = 40


def tool(name):
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (make setup installs it)")
    return path


def run(*argv, cwd=None):
    r = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=300)
    assert r.returncode == 0, f"{argv[0]} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return r.stdout


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("cohort")
    generate_cohorts(
        out, SITES, samples_per_site=SAMPLES, variants=VARIANTS, seed=3, chunk_variants=150
    )
    return out


def vcf_of(cohort, spec):
    return cohort / spec.site_id / spec.analysis_dataset / "genotypes.vcf.gz"


def genotype_counts(vcf):
    """ALT allele count and AN per variant from the calls, as htslib (via pysam) parses them."""
    ac, an = [], []
    with pysam.VariantFile(str(vcf)) as f:
        for rec in f:
            alleles = [a for s in rec.samples.values() for a in s["GT"] if a is not None]
            ac.append(sum(alleles))
            an.append(len(alleles))
    return np.array(ac), np.array(an)


@pytest.mark.parametrize("spec", SITES, ids=[s.site_id for s in SITES])
def test_bcftools_reads_every_record(cohort, spec):
    out = run(tool("bcftools"), "view", "-H", str(vcf_of(cohort, spec)))
    assert len(out.splitlines()) == VARIANTS
    # bcftools' own recount from the genotypes agrees with the INFO fields we wrote
    vcf = str(vcf_of(cohort, spec))
    ours = run(tool("bcftools"), "query", "-f", "%INFO/AC %INFO/AN\n", vcf).splitlines()
    recount = run(
        tool("bcftools"), "+fill-tags", vcf, "--", "-t", "AC,AN"
    )  # rewrites AC/AN from the calls
    theirs = run_stdin(tool("bcftools"), "query", "-f", "%INFO/AC %INFO/AN\n", "-", data=recount)
    assert ours == theirs.splitlines()


def run_stdin(*argv, data: str):
    r = subprocess.run(argv, input=data, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


@pytest.mark.parametrize("spec", SITES, ids=[s.site_id for s in SITES])
def test_tabix_lists_the_contigs(cohort, spec):
    out = run(tool("tabix"), "-l", str(vcf_of(cohort, spec)))
    assert out.split() == list(CONTIGS)


@pytest.mark.parametrize("spec", SITES, ids=[s.site_id for s in SITES])
def test_plink2_reads_and_agrees(cohort, spec, tmp_path):
    plink2 = tool("plink2")
    prefix = tmp_path / spec.site_id
    run(plink2, "--vcf", str(vcf_of(cohort, spec)), "--make-pgen", "--out", str(prefix))
    # exact counts, not the 6-digit frequencies of plain --freq
    run(plink2, "--pfile", str(prefix), "--freq", "counts", "--out", str(prefix))
    lines = (tmp_path / f"{spec.site_id}.acount").read_text().splitlines()
    header = lines[0].lstrip("#").split("\t")
    rows = [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]
    ac, an = genotype_counts(vcf_of(cohort, spec))
    assert len(rows) == VARIANTS
    np.testing.assert_array_equal([int(r["ALT_CTS"]) for r in rows], ac)
    np.testing.assert_array_equal([int(r["OBS_CT"]) for r in rows], an)
    # and the plain --freq report, whose ALT_FREQS plink2 prints to 6 significant digits
    run(plink2, "--pfile", str(prefix), "--freq", "--out", str(prefix))
    lines = (tmp_path / f"{spec.site_id}.afreq").read_text().splitlines()
    header = lines[0].lstrip("#").split("\t")
    freqs = [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]
    np.testing.assert_allclose([float(r["ALT_FREQS"]) for r in freqs], ac / an, rtol=1e-5)
    assert [r["ID"] for r in freqs] == [r["ID"] for r in rows]


@pytest.mark.parametrize("spec", SITES, ids=[s.site_id for s in SITES])
def test_zarr_counts_equal_vcf_counts(cohort, spec):
    store = zarr.open(str(vcf_of(cohort, spec)).replace(".vcf.gz", ".vcf.zarr"), mode="r")
    gt = store["call_genotype"][:]  # (variants, samples, ploidy), -1 = missing
    assert gt.shape == (VARIANTS, SAMPLES, 2)
    z_ac = (gt == 1).sum(axis=(1, 2))
    z_an = (gt >= 0).sum(axis=(1, 2))
    ac, an = genotype_counts(vcf_of(cohort, spec))
    np.testing.assert_array_equal(z_ac, ac)
    np.testing.assert_array_equal(z_an, an)
    assert list(store["sample_id"][:]) == [
        f"{spec.site_id.upper()}-{i + 1:06d}" for i in range(SAMPLES)
    ]


@pytest.mark.parametrize("name", ["aligned.bam", "aligned.cram"])
def test_samtools_reads_alignments(cohort, name):
    path = cohort / "nig" / "JGAD000102" / name
    run(tool("samtools"), "quickcheck", "-v", str(path))
    ref = cohort / "nig" / "JGAD000102" / "reference.fa"
    flagstat = run(
        tool("samtools"), "flagstat", "--input-fmt-option", f"reference={ref}", str(path)
    )
    assert "600 + 0 in total" in flagstat and "600 + 0 properly paired" in flagstat
    idx = run(tool("samtools"), "idxstats", str(path))
    assert idx.split("\t")[:3] == ["chr21_fragment", "20000", "600"]


def test_raw_files_are_small(cohort):
    raw = cohort / "nig" / "JGAD000102"
    names = sorted(p.name for p in raw.iterdir())
    assert names == sorted(
        ["reference.fa", "reference.fa.fai", "reads_R1.fastq.gz", "reads_R2.fastq.gz",
         "aligned.bam", "aligned.bam.bai", "aligned.cram", "aligned.cram.crai"]
    )  # fmt: skip
    assert all((raw / n).stat().st_size < 1_000_000 for n in names)


def test_fastq_pairs(cohort):
    for mate in ("R1", "R2"):
        with gzip.open(cohort / "nig" / "JGAD000102" / f"reads_{mate}.fastq.gz", "rt") as f:
            lines = f.read().splitlines()
        assert len(lines) == 4 * 300
        assert lines[0].startswith("@NIG:1:FC01:00001/")
        assert len(lines[1]) == len(lines[3]) == 100 and lines[2] == "+"


def test_visiting_synth_command(tmp_path, policy_copy):
    r = subprocess.run(
        [sys.executable, "-m", "hub.cli", "synth", "--platform", str(policy_copy), "--out", str(tmp_path / "d"),
         "--samples", "12", "--variants", "50", "--no-raw", "--no-zarr", "--quiet"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"wrote 5 sites x 12 samples x 50 variants to {tmp_path / 'd'}"
    for site, ds in (("nig", "JGAD000101"), ("imsut", "JGAD000501")):
        assert (tmp_path / "d" / site / ds / "genotypes.vcf.gz.tbi").exists()
