"""The sniffer: raw genomic data by name and by content, and results that are not.

Rule checked: "Data kinds" (raw data is recognised by its signature, in
containers and pasted into text; results are not mistaken for it).
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import struct
import tarfile
import time
import zipfile

import pytest

from extensions.guard.sniff import KINDS, Finding, Sniffer

VCF = (
    "##fileformat=VCFv4.2\n"
    "##contig=<ID=chr1>\n"
    '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\tS2\tS3\n"
    + "".join(
        f"chr1\t{1000 + i}\trs{i}\tA\tG\t50\tPASS\tAC=2;AN=6\tGT\t0/1\t1|1\t./.\n"
        for i in range(20)
    )
)
VCF_RECORDS = "".join(ln + "\n" for ln in VCF.splitlines() if not ln.startswith("#"))
FASTQ = "".join(f"@read{i}/1\nACGTACGTNN\n+\nIIIIIIII##\n" for i in range(10))
SAM = "".join(
    f"read{i}\t99\tchr1\t{100 + i}\t60\t10M\t=\t{300 + i}\t210\tACGTACGTAC\tIIIIIIIIII\n"
    for i in range(10)
)
BIM = "".join(f"1\trs{i}\t0\t{1000 + i}\tA\tG\n" for i in range(10))
FAM = "".join(f"FAM{i}\tIND{i}\t0\t0\t{1 + i % 2}\t-9\n" for i in range(10))
GENOTYPES = "".join(
    "\t".join([f"S{i}"] + [("0/1", "1/1", "0/0")[(i + j) % 3] for j in range(20)]) + "\n"
    for i in range(5)
)
GWAS = "chrom\tpos\tid\tref\talt\tbeta\tse\tp\n" + "".join(
    f"chr1\t{1000 + i}\trs{i}\tA\tG\t0.{i % 9}1\t0.05\t1e-{i % 8 + 1}\n" for i in range(200)
)
FREQ = "chrom,pos,ref,alt,AC,AN,AF\n" + "".join(
    f"chr1,{1000 + i},A,G,{i},400,{i / 400:.4f}\n" for i in range(200)
)
UCSC_BED = "".join(f"chr1\t{i * 100}\t{i * 100 + 50}\tregion{i}\n" for i in range(50))
NUMBERS = "".join(f"{i}\t{i * 2}\t{i % 3}\t{i % 7}\t1\t2\n" for i in range(500))


def bgzf(data: bytes) -> bytes:
    """Two BGZF-shaped gzip members (the BC extra field), as bgzip writes."""
    out = b""
    for part in (data[: len(data) // 2], data[len(data) // 2 :]):
        comp = zlib_raw(part)
        extra = b"BC" + struct.pack("<HH", 2, len(comp) + 25)
        header = b"\x1f\x8b\x08\x04" + b"\x00" * 4 + b"\x00\xff" + struct.pack("<H", len(extra))
        trailer = struct.pack("<II", crc32(part), len(part))
        out += header + extra + comp + trailer
    return out


def zlib_raw(data: bytes) -> bytes:
    import zlib

    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def crc32(data: bytes) -> int:
    import zlib

    return zlib.crc32(data) & 0xFFFFFFFF


def zip_of(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def tar_of(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def notebook(outputs) -> str:
    return json.dumps(
        {
            "cells": [{"cell_type": "code", "source": "x", "outputs": outputs, "metadata": {}}],
            "metadata": {},
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    )


@pytest.fixture
def sniffer():
    return Sniffer()


RAW_BYTES = [
    ("vcf-plain", VCF.encode(), "vcf"),
    ("vcf-records-without-header", VCF_RECORDS.encode(), "vcf"),
    ("vcf-gzip", gzip.compress(VCF.encode()), "vcf"),
    ("vcf-bgzf-two-members", bgzf(VCF.encode()), "vcf"),
    ("vcf-bzip2", bz2.compress(VCF.encode()), "vcf"),
    ("vcf-xz", lzma.compress(VCF.encode()), "vcf"),
    ("gvcf-blocks", b"chr1\t1\t.\tA\t<NON_REF>\t.\t.\tEND=100\tGT:DP\t0/0:30\n" * 5, "vcf"),
    ("sites-only-vcf", b"chr1\t100\t.\tA\tG\t.\tPASS\tAF=0.1\n" * 5, "vcf"),
    ("fastq", FASTQ.encode(), "fastq"),
    ("fastq-gzip", gzip.compress(FASTQ.encode()), "fastq"),
    ("sam-records", SAM.encode(), "sam"),
    ("sam-header", b"@HD\tVN:1.6\tSO:coordinate\n@SQ\tSN:chr1\tLN:1000\n", "sam"),
    ("bam", bgzf(b"BAM\x01" + b"\x00" * 100), "bam"),
    ("cram", b"CRAM\x03\x00" + b"\x00" * 30, "cram"),
    ("bcf", bgzf(b"BCF\x02\x02" + b"\x00" * 100), "bcf"),
    ("bgen", struct.pack("<IIII", 20, 20, 100, 20) + b"bgen" + b"\x00" * 10, "bgen"),
    ("plink-bed", b"\x6c\x1b\x01" + b"\xff" * 50, "plink"),
    ("plink-pgen", b"\x6c\x1b\x10" + b"\x00" * 50, "plink"),
    ("plink-bim", BIM.encode(), "plink"),
    ("plink-fam", FAM.encode(), "plink"),
    ("plink-pvar-lines", b"1\t1000\trs1\tA\tG\n1\t1001\trs2\tC\tT\n1\t1002\trs3\tG\tA\n", "plink"),
    ("genotype-table", GENOTYPES.encode(), "genotype-table"),
    ("vcf-in-zip", zip_of({"a/readme.txt": b"hi", "a/calls.txt": VCF.encode()}), "vcf"),
    ("vcf-in-zip-in-zip", zip_of({"inner.zip": zip_of({"x.txt": VCF.encode()})}), "vcf"),
    ("vcf-in-tar", tar_of({"calls.txt": VCF.encode()}), "vcf"),
    ("vcf-in-tar-gz", gzip.compress(tar_of({"calls.txt": VCF.encode()})), "vcf"),
    ("vcf-named-in-zip", zip_of({"cohort.vcf": b"anything"}), "vcf"),
    (
        "notebook-output",
        notebook([{"output_type": "stream", "name": "stdout", "text": VCF_RECORDS}]).encode(),
        "vcf",
    ),
    (
        "notebook-html-output",
        notebook(
            [
                {
                    "output_type": "display_data",
                    "metadata": {},
                    "data": {
                        "text/html": "<table>"
                        + "".join(
                            "<tr><td>" + "</td><td>".join(ln.split("\t")) + "</td></tr>"
                            for ln in VCF_RECORDS.splitlines()
                        )
                        + "</table>"
                    },
                }
            ]
        ).encode(),
        "vcf",
    ),
    ("html-escaped", ("<pre>" + VCF.replace("<", "&lt;") + "</pre>").encode(), "vcf"),
    ("json-strings", json.dumps({"rows": VCF_RECORDS.splitlines()}).encode(), "vcf"),
    ("records-after-a-table", (FREQ + VCF_RECORDS).encode(), "vcf"),
    ("records-behind-a-nul-byte", b"\x00" + VCF_RECORDS.encode(), "vcf"),
    ("records-between-binary-noise", bytes(range(256)) * 4 + VCF_RECORDS.encode(), "vcf"),
    ("fastq-with-crlf", FASTQ.replace("\n", "\r\n").encode(), "fastq"),
    ("plink-bim-space-separated", BIM.replace("\t", " ").encode(), "plink"),
]


@pytest.mark.parametrize("data,kind", [c[1:] for c in RAW_BYTES], ids=[c[0] for c in RAW_BYTES])
def test_raw_bytes_are_recognised(sniffer, data, kind):
    found = sniffer.classify_bytes(data, "innocent.dat")
    assert found is not None
    assert found.kind == kind, found
    assert found.describe_en() and found.describe_ja()


NOT_RAW = [
    ("gwas-summary", GWAS.encode()),
    ("allele-frequencies", FREQ.encode()),
    ("ucsc-bed", UCSC_BED.encode()),
    ("numbers", NUMBERS.encode()),
    ("png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100),
    ("pdf", b"%PDF-1.4\n%%EOF\n"),
    ("python", b"import hail as hl\nmt = hl.read_matrix_table('/data/x.mt')\n"),
    ("prose", "研究の概要。Allele frequencies differ by population.\n".encode() * 50),
    ("gzip-of-a-table", gzip.compress(GWAS.encode())),
    ("zip-of-results", zip_of({"gwas.tsv": GWAS.encode(), "plot.png": b"\x89PNG"})),
    (
        "clean-notebook",
        notebook(
            [{"output_type": "execute_result", "data": {"text/plain": "n=200"}, "metadata": {}}]
        ).encode(),
    ),
    ("empty", b""),
    ("one-fastq-like-record", b"@note\nACGT\n+\nIIII\n"),
    ("two-vcf-like-lines", b"chr1\t100\t.\tA\tG\t.\tPASS\tAF=0.1\n" * 2),
]


@pytest.mark.parametrize("data", [c[1] for c in NOT_RAW], ids=[c[0] for c in NOT_RAW])
def test_results_are_not_mistaken_for_raw_data(sniffer, data):
    assert sniffer.classify_bytes(data, "result.txt") is None


NAMES = [
    ("cohort.vcf.gz", "vcf"),
    ("Cohort.VCF.BGZ", "vcf"),
    ("sample.g.vcf", "vcf"),
    ("reads_R1.fq.gz", "fastq"),
    ("x.bam", "bam"),
    ("x.cram", "cram"),
    ("x.bcf", "bcf"),
    ("x.bgen", "bgen"),
    ("x.pgen", "plink"),
    ("x.bim", "plink"),
    ("x.fam", "plink"),
    ("work/cohort.mt/entries/rows/part-0", "hail-matrixtable"),
    ("store.vcf.zarr/call_genotype/0.0", "vcf-zarr"),
]


@pytest.mark.parametrize("name,kind", NAMES)
def test_raw_names(sniffer, name, kind):
    found = sniffer.classify_name(name)
    assert found is not None and found.kind == kind


@pytest.mark.parametrize(
    "name", ["regions.bed", "plot.png", "gwas.tsv", "vcf_summary.csv", "mt_notes.txt", ""]
)
def test_result_names(sniffer, name):
    assert sniffer.classify_name(name) is None


def test_platform_patterns_match_name_or_path():
    s = Sniffer(name_patterns=["*.dosage", "*/restricted/*"])
    assert s.classify_name("chr1.DOSAGE").kind == "pattern"
    assert s.classify_name("work/restricted/table.csv").kind == "pattern"
    assert s.classify_name("cohort.vcf") is None  # only the platform's patterns here


def test_disabled_kinds_are_not_reported():
    s = Sniffer(disabled_kinds={"genotype-table"})
    assert s.classify_bytes(GENOTYPES.encode()) is None
    assert s.classify_bytes(VCF.encode()).kind == "vcf"


def test_unknown_disabled_kind_is_an_error():
    with pytest.raises(ValueError, match="disabled_kinds: unknown kind"):
        Sniffer(disabled_kinds={"vfc"})


def test_every_kind_has_both_languages():
    for kind, (en, ja) in KINDS.items():
        assert en and ja, kind
    f = Finding("vcf", "its VCF header")
    assert "VCF" in f.describe_en() and "判定" in f.describe_ja()


def test_records_at_the_end_of_a_long_file_are_seen_by_the_tail_window(sniffer, tmp_path):
    p = tmp_path / "long.csv"
    p.write_bytes(FREQ.encode() * 2000 + VCF_RECORDS.encode())
    assert p.stat().st_size > sniffer.head_bytes + sniffer.tail_bytes
    assert sniffer.classify_path(p).kind == "vcf"


def test_a_huge_file_costs_only_its_windows(sniffer, tmp_path):
    """Reading is bounded: a 256 MiB sparse file classifies as fast as a small one."""
    p = tmp_path / "huge.csv"
    with open(p, "wb") as f:
        f.write(FREQ.encode())
        f.seek(256 * 1024 * 1024)
        f.write(b"chr1,1,A,G,1,2,0.5\n")
    start = time.perf_counter()
    assert sniffer.classify_path(p) is None
    assert time.perf_counter() - start < 2.0  # a generous bound; bench/guard.py measures it


def test_stores_are_recognised_from_any_file_inside(sniffer, tmp_path):
    mt = tmp_path / "renamed"
    (mt / "rows").mkdir(parents=True)
    (mt / "cols").mkdir()
    (mt / "metadata.json.gz").write_bytes(gzip.compress(b'{"name": "MatrixTableSpec"}'))
    (mt / "rows" / "part-0").write_bytes(b"\x00" * 10)
    assert sniffer.classify_path(mt / "rows" / "part-0").kind == "hail-matrixtable"
    z = tmp_path / "plain"
    (z / "call_genotype").mkdir(parents=True)
    (z / ".zgroup").write_text('{"zarr_format": 2}')
    (z / "call_genotype" / "0.0").write_bytes(b"\x02\x01" + b"\x00" * 10)
    assert sniffer.classify_path(z / "call_genotype" / "0.0").kind == "vcf-zarr"


def test_a_cut_gzip_stream_is_still_read_to_its_end(sniffer):
    data = gzip.compress(VCF.encode() * 50)
    assert sniffer.classify_bytes(data[: len(data) // 3], "x").kind == "vcf"


def test_damaged_containers_are_not_errors(sniffer):
    assert sniffer.classify_bytes(b"\x1f\x8b\x08\x00garbage") is None
    assert sniffer.classify_bytes(b"PK\x03\x04garbage") is None
    assert sniffer.classify_bytes(b"BZh9garbage") is None


# ---------------------------------------------------------------------------
# the record-line prefilter: the same lines as the check of every line


def _random_lines(rng) -> str:
    import random  # noqa: F401  (rng is a random.Random)

    makers = [
        lambda i: f"chr1\t{1000 + i}\trs{i}\tA\tG\t50\tPASS\tAC=2;AN=6\tGT\t0/1\t1|1\t./.",
        lambda i: f"chr1\t{1000 + i}\t.\tA\tG,T\t.\t.\t.",
        lambda i: f"chr1\t{1000 + i}\t.\tA\tG\t.\tq10;lowDP\tDP=3",
        lambda i: f"chr1\t{1000 + i}\t.\tA\tG\t.\t_x\t.",
        lambda i: f"chr1\t{1000 + i}\t.\tA\tG\t.\tÉ\t.",
        lambda i: f"chr1\t١٢{i}\t.\tA\tG\t.\tPASS\t.",
        lambda i: f"read{i}\t99\tchr1\t{100 + i}\t60\t10M\t=\t300\t210\tACGTACGTAC\tIIIIIIIIII",
        lambda i: f"read{i}\t4\t*\t0\t0\t*\t*\t0\t0\tACGT\t*",
        lambda i: f"read{i}\t0\tchr1\t{i}\t60\t5=5X\t*\t0\t0\tACGTACGTAC\t*",
        lambda i: f"1\t{1000 + i}\trs{i}\tA\tG",
        lambda i: f"1\trs{i}\t0\t{1000 + i}\tA\tG",
        lambda i: f"1 rs{i} 0.5 {1000 + i} A G",
        lambda i: f"FAM{i} IND{i} 0 0 1 -9",
        lambda i: f"FAM{i}\u3000IND{i} 0 0 2 1.5",
        lambda i: "\t".join(["0/1", "1|1", "./.", "0/0"] * 3),
        lambda i: " ".join(["0/1", "1|1", "./.", "0/0"] * 3),
        lambda i: f"1\t{1000 + i}\trs{i}\tA\tG\t{i}\t4000\t0.01\t0.1\t1e-3",
        lambda i: f"   {i}  1  {1000 + i}  rs{i}  A  G  {i}  4000  0.01  0.1  0.5",
        lambda i: f"# 1\t{1000 + i}\t.\tA\tG\t.\tPASS\t.",
        lambda i: "\t".join(
            rng.choice(["1", "x", "", " ", "PASS", ".", "12", "٣", "10M"])
            for _ in range(rng.randrange(1, 14))
        ),  # fmt: skip
        lambda i: " ".join(
            rng.choice(["1", "x", "a/b", "|", "0/1", "\xa0", "\u2003"])
            for _ in range(rng.randrange(1, 14))
        ),  # fmt: skip
    ]
    lines = [rng.choice(makers)(i) for i in range(rng.randrange(1, 40))]
    breaks = ["\n"] * 8 + ["\r\n"] * 4 + ["\r", "\x0b", "\x0c", "\x1c", "\x85", "\u2028"]
    return "".join(line + rng.choice(breaks) for line in lines)


def test_record_prefilter_finds_every_line_the_full_check_finds():
    import random

    from extensions.guard.sniff import records

    rng = random.Random(11)
    for _ in range(3000):
        text = _random_lines(rng)
        full = [line for line in text.splitlines() if records._record_kind(line)]
        fast = [line for line in records._record_candidates(text) if records._record_kind(line)]
        assert fast == full, text


def test_record_prefilter_changes_no_finding(monkeypatch):
    import random

    from extensions.guard.sniff import records

    rng = random.Random(12)
    sniffer = Sniffer()
    for _ in range(1000):
        text = _random_lines(rng)
        fast = sniffer.classify_lines(text)
        monkeypatch.setattr(records, "PREFILTER", False)
        assert fast == sniffer.classify_lines(text), text
        monkeypatch.setattr(records, "PREFILTER", True)
