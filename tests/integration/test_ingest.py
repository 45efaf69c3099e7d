"""Ingest: a site's VCF and tables into VCF Zarr and a Hail MatrixTable, checked against bcftools.

Real Hail (one session for the module), real bcftools, a small synthetic
cohort; malformed inputs fail with a message naming the file and the line,
and leave the outputs that were there untouched.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pysam
import pytest
import zarr

from hub.cli.main import main
from hub.data import IngestError
from hub.data.ingest import ingest_dataset
from hub.data.ingest_checks import check_vcf
from hub.data.synth import SiteSpec, generate_cohorts

pytestmark = pytest.mark.integration

SITES = [
    SiteSpec("nig", "JGAD000101", None, "Shizuoka"),
    SiteSpec("ncc", "JGAD000201", None, "Tokyo"),
]
SAMPLES = 24
VARIANTS = 150
HEADER_LINES = 12  # of synth's VCFs; errors give the file's own line numbers
REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "policies" / "demo"


def bcftools(*args: str) -> str:
    path = shutil.which("bcftools")
    if path is None:
        pytest.skip("bcftools is not installed (scripts/setup.sh installs it)")
    r = subprocess.run([path, *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture(scope="module")
def hl(tmp_path_factory):
    from extensions.federation.hail_session import ensure_hail

    return ensure_hail(tmp_dir=tmp_path_factory.mktemp("hail"), cores=2)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, hl):
    """Two sites written by synth, which ingests them (Zarr and MatrixTable)."""
    out = tmp_path_factory.mktemp("cohort")
    result = generate_cohorts(
        out, SITES, samples_per_site=SAMPLES, variants=VARIANTS, seed=5, raw_files=False
    )
    for spec in SITES:
        files = result.sites[spec.site_id]
        assert files.matrix_table and Path(files.matrix_table).is_dir()
        assert files.version and len(files.version) == 16
    return out


def folder_of(cohort: Path, spec: SiteSpec) -> Path:
    return cohort / spec.site_id / spec.analysis_dataset


@pytest.fixture(params=SITES, ids=lambda s: s.site_id)
def dataset(request, cohort):
    return folder_of(cohort, request.param)


def read_tsv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


# ---------------------------------------------------------------------------
# the MatrixTable is the VCF and the tables


def test_matrix_table_has_the_vcf_samples_and_variants(hl, dataset):
    vcf = str(dataset / "genotypes.vcf.gz")
    mt = hl.read_matrix_table(str(dataset / "genotypes.mt"))
    samples = bcftools("query", "-l", vcf).split()
    records = bcftools("view", "-H", vcf).count("\n")
    assert mt.count() == (records, len(samples)) == (VARIANTS, SAMPLES)
    assert mt.s.collect() == samples
    assert list(mt.row_key) == ["locus", "alleles"] and list(mt.col_key) == ["s"]
    assert mt.locus.dtype.reference_genome.name == "GRCh38"
    sites = [
        line.split("\t")
        for line in bcftools("query", "-f", "%CHROM\t%POS\t%REF\t%ALT\n", vcf).splitlines()
    ]
    rows = mt.rows().collect()
    assert [[r.locus.contig, str(r.locus.position), *r.alleles] for r in rows] == sites


def test_genotype_calls_equal_bcftools_for_every_entry(hl, dataset):
    vcf = str(dataset / "genotypes.vcf.gz")
    expected = [
        line.rstrip("\t").split("\t")
        for line in bcftools("query", "-f", "[%GT\t]\n", vcf).splitlines()
    ]
    mt = hl.read_matrix_table(str(dataset / "genotypes.mt"))
    gt = mt.select_entries(gt=hl.or_else(hl.str(mt.GT), "./."))
    got = [r.e for r in gt.localize_entries("e").select("e").collect()]
    got = [[e.gt for e in row] for row in got]
    assert len(got) == VARIANTS and all(len(row) == SAMPLES for row in got)
    assert got == expected
    assert any("./." in row for row in expected)  # missing calls are among those compared


def test_column_fields_equal_the_tables(hl, dataset):
    mt = hl.read_matrix_table(str(dataset / "genotypes.mt"))
    cols = {c.s: c for c in mt.cols().collect()}
    clinical = read_tsv(dataset / "clinical.tsv")
    phenotypes = {r["sample_id"]: r for r in read_tsv(dataset / "phenotypes.tsv")}
    assert set(cols) == {r["sample_id"] for r in clinical} == set(phenotypes)
    for row in clinical:
        c = cols[row["sample_id"]]
        for field in ("age_band", "sex", "prefecture", "disease_name", "icd10"):
            assert c[field] == row[field], (row["sample_id"], field)
        p = phenotypes[row["sample_id"]]
        assert c.quant_trait == float(p["quant_trait"])
        assert c.case_status is bool(int(p["case_status"]))
    assert mt.quant_trait.dtype == hl.tfloat64 and mt.case_status.dtype == hl.tbool


def test_globals_carry_the_dataset_and_its_version(hl, dataset):
    g = hl.eval(hl.read_matrix_table(str(dataset / "genotypes.mt")).globals)
    digest = hashlib.sha256((dataset / "genotypes.vcf.gz").read_bytes()).hexdigest()
    assert g.dataset_id == dataset.name
    assert g.vcf_sha256 == digest
    assert g.reference_genome == "GRCh38"
    attrs = zarr.open_group(str(dataset / "genotypes.vcf.zarr"), mode="r").attrs
    assert attrs["visiting_dataset"]["version"] == g.version


def test_versions_differ_between_sites(hl, cohort):
    versions = {
        hl.eval(hl.read_matrix_table(str(folder_of(cohort, s) / "genotypes.mt")).version)
        for s in SITES
    }
    assert len(versions) == len(SITES)


def test_zarr_call_genotype_equals_the_matrix_table(hl, dataset):
    store = zarr.open_group(str(dataset / "genotypes.vcf.zarr"), mode="r")
    calls = np.asarray(store["call_genotype"][:])  # (variants, samples, ploidy), -1 missing
    mt = hl.read_matrix_table(str(dataset / "genotypes.mt"))
    assert list(store["sample_id"][:]) == mt.s.collect()
    alleles = mt.select_entries(
        a=hl.if_else(hl.is_defined(mt.GT), [mt.GT[0], mt.GT[1]], [-1, -1])
    ).localize_entries("e")
    got = np.array([[e.a for e in r.e] for r in alleles.select("e").collect()])
    assert calls.shape == got.shape == (VARIANTS, SAMPLES, 2)
    assert np.array_equal(calls, got)


# ---------------------------------------------------------------------------
# up to date, forced


def test_outputs_newer_than_inputs_are_kept_unless_forced(hl, cohort, tmp_path):
    folder = tmp_path / "JGAD000101"
    shutil.copytree(folder_of(cohort, SITES[0]), folder)
    kept = ingest_dataset(folder, say=lambda _m: None)
    assert kept.skipped and kept.samples == SAMPLES and kept.variants == VARIANTS
    before = snapshot(folder)

    os.utime(folder / "phenotypes.tsv")  # an input newer than the outputs
    again = ingest_dataset(folder, say=lambda _m: None)
    assert not again.skipped and again.version == kept.version  # same bytes, same version
    assert snapshot(folder) != before

    forced = ingest_dataset(folder, force=True, say=lambda _m: None)
    assert not forced.skipped
    assert set(forced.seconds) == {"check", "zarr", "matrix_table", "summary"}
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]


# ---------------------------------------------------------------------------
# malformed inputs: a clear error, and the outputs as they were


def snapshot(folder: Path) -> dict:
    """Every output file with its size and modification time, and the hidden entries."""
    out = {}
    for name in ("genotypes.mt", "genotypes.vcf.zarr"):
        for p in sorted((folder / name).rglob("*")):
            st = p.stat()
            out[str(p.relative_to(folder))] = (st.st_size, st.st_mtime_ns)
    out["hidden"] = sorted(p.name for p in folder.iterdir() if p.name.startswith("."))
    return out


def rewrite_vcf(folder: Path, edit) -> None:
    """Replace the VCF by `edit(lines)` (text lines without newlines), bgzipped, no index."""
    vcf = folder / "genotypes.vcf.gz"
    with gzip.open(vcf, "rt") as f:
        lines = f.read().splitlines()
    text = "\n".join(edit(lines)) + "\n"
    with pysam.BGZFile(str(vcf), "wb") as f:
        f.write(text.encode())
    Path(f"{vcf}.tbi").unlink()


def first_record(lines: list[str]) -> int:
    return next(i for i, line in enumerate(lines) if not line.startswith("#"))


def truncate_last(lines):
    lines[-1] = lines[-1][: len(lines[-1]) // 2]
    return lines


def bad_pos(lines):
    i = first_record(lines) + 3
    cols = lines[i].split("\t")
    cols[1] = "12x4"
    lines[i] = "\t".join(cols)
    return lines


def drop_clinical_row(folder: Path) -> None:
    path = folder / "clinical.tsv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:3] + lines[4:]))  # the third sample


def cut_compressed(folder: Path) -> None:
    vcf = folder / "genotypes.vcf.gz"
    data = vcf.read_bytes()
    vcf.write_bytes(data[: len(data) * 2 // 3])


def foreign_contig(lines):
    # passes the VCF check (the header declares it), but is no GRCh38 contig: Hail refuses
    return [
        line.replace("chr20", "20") if line.startswith(("##contig=<ID=chr20", "chr20")) else line
        for line in lines
    ]


CASES = {
    "truncated-line": (
        lambda f: rewrite_vcf(f, truncate_last),
        [f"line {HEADER_LINES + VARIANTS}:", "truncated or malformed line"],
    ),
    "bad-pos": (
        lambda f: rewrite_vcf(f, bad_pos),
        [f"line {HEADER_LINES + 4}:", "POS '12x4' is not a position"],
    ),
    "sample-missing-from-clinical": (
        drop_clinical_row,
        ["clinical.tsv", "1 VCF sample(s) not in clinical.tsv: NIG-000003"],
    ),
    "cut-compressed-file": (cut_compressed, ["damaged or cut short"]),
    "contig-not-grch38": (
        lambda f: rewrite_vcf(f, foreign_contig),
        ["contig '20' is not in GRCh38"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_input_is_refused_and_outputs_stay(hl, cohort, tmp_path, case):
    break_it, expected = CASES[case]
    folder = tmp_path / "JGAD000101"
    shutil.copytree(folder_of(cohort, SITES[0]), folder)
    before = snapshot(folder)
    break_it(folder)
    with pytest.raises(IngestError) as e:
        ingest_dataset(folder, force=True, say=lambda _m: None)
    message = str(e.value)
    assert message.startswith(str(folder)), message
    for part in expected:
        assert part in message, message
    assert snapshot(folder) == before


def test_vcf_check_summary(cohort):
    vcf = folder_of(cohort, SITES[0]) / "genotypes.vcf.gz"
    with gzip.open(vcf, "rt") as f:
        assert sum(1 for line in f if line.startswith("#")) == HEADER_LINES
    summary = check_vcf(vcf)
    assert summary.records == VARIANTS and summary.contigs == ["chr20", "chr21", "chr22"]


def write_vcf(path: Path, alt: str, fmt: str, calls: list[str]) -> Path:
    text = (
        "##fileformat=VCFv4.2\n##contig=<ID=chr21,length=46709983>\n"
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ta\tb\tc\n"
        f"chr21\t100\t.\tA\t{alt}\t.\tPASS\t.\t{fmt}\t" + "\t".join(calls) + "\n"
    )
    with pysam.BGZFile(str(path), "wb") as f:
        f.write(text.encode())
    return path


@pytest.mark.parametrize(
    "alt, fmt, calls",
    [
        ("G", "GT", ["0", "1", "."]),
        ("G", "GT:DP", ["0/1:12", "1|1:3", "./.:0"]),
        ("G,T", "GT", ["0/2", "1/1", "2|2"]),
    ],
    ids=["haploid", "more-format-keys", "multiallelic"],
)
def test_vcf_check_reads_other_call_shapes(tmp_path, alt, fmt, calls):
    vcf = write_vcf(tmp_path / "x.vcf.gz", alt, fmt, calls)
    assert check_vcf(vcf).samples == ["a", "b", "c"]
    calls[1] = "3/1" + calls[1][len(calls[1].split(":")[0]) :]
    write_vcf(vcf, alt, fmt, calls)
    with pytest.raises(IngestError, match=r"line 4: sample b: allele 3 in 3/1 but"):
        check_vcf(vcf)


# ---------------------------------------------------------------------------
# the command


def test_site_ingest_command(hl, cohort, capsys, policy_copy):
    data = Path(os.environ["VISITING_DATA_ROOT"])
    shutil.copytree(folder_of(cohort, SITES[0]), data / "nig" / "JGAD000101")
    assert main(["site", "ingest", "nig", "--platform", str(policy_copy), "--force"]) == 0
    out = capsys.readouterr().out
    assert f"nig/JGAD000101: {SAMPLES} samples x {VARIANTS} variants, version " in out
    assert main(["site", "ingest", "nig", "--platform", str(policy_copy)]) == 0
    assert "nig/JGAD000101: up to date, kept" in capsys.readouterr().out


def test_site_ingest_command_refuses_a_bad_site():
    r = subprocess.run(
        [sys.executable, "-m", "hub.cli", "site", "ingest", "nowhere", "--platform", str(DEMO)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0
    assert "unknown site 'nowhere' (known: nig, ncc, ncgm, tommo, imsut)" in r.stderr


def test_site_ingest_command_refuses_a_malformed_dataset(hl, cohort, capsys, policy_copy):
    data = Path(os.environ["VISITING_DATA_ROOT"])
    folder = data / "ncc" / "JGAD000201"
    shutil.copytree(folder_of(cohort, SITES[1]), folder)
    drop_clinical_row(folder)
    assert main(["site", "ingest", "ncc", "--platform", str(policy_copy)]) == 2
    err = capsys.readouterr().err
    assert "not in clinical.tsv: NCC-000003" in err and "nothing was changed" in err
