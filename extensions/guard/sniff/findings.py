"""What the sniffer answers: the kinds of raw data, the name rules, and a `Finding`."""

from __future__ import annotations

from dataclasses import dataclass

KINDS: dict[str, tuple[str, str]] = {
    # kind: (English, Japanese)
    "fastq": ("FASTQ sequencing reads", "FASTQ シーケンスリード"),
    "sam": ("SAM alignments", "SAM アラインメント"),
    "bam": ("BAM alignments", "BAM アラインメント"),
    "cram": ("CRAM alignments", "CRAM アラインメント"),
    "vcf": ("VCF variant calls", "VCF バリアントコール"),
    "bcf": ("BCF variant calls", "BCF バリアントコール"),
    "bgen": ("BGEN genotypes", "BGEN 遺伝型データ"),
    "plink": ("PLINK genotype files", "PLINK 遺伝型ファイル"),
    "genotype-table": ("a table of individual genotype calls", "個人ごとの遺伝型の表"),
    "hail-matrixtable": ("a Hail MatrixTable", "Hail MatrixTable"),
    "vcf-zarr": ("a VCF Zarr store", "VCF Zarr ストア"),
    "notebook-output": ("notebook outputs", "ノートブックの出力"),
    "pattern": (
        "a file name the platform lists as raw data",
        "プラットフォームが生データと定める名前",
    ),
    # found by the recogniser (recognise/), which uses this table for every kind it reports
    "people-table": ("a table naming people of the cohort", "コホートの個人を名指しする表"),
    "genotype-matrix": ("a matrix of individual genotypes", "個人ごとの遺伝型の行列"),
    "clinical-rows": (
        "clinical or phenotype rows, one person a row",
        "個人ごとの臨床情報・表現型の行",
    ),
}
# Built-in name rules: (glob on the lower-cased base name, kind). Compression
# suffixes (.gz, .bgz, .bz2, .xz, .zst) are stripped first. PLINK's .bed is
# not here: UCSC BED interval files share the suffix, so .bed is judged by
# its magic bytes.
DEFAULT_NAME_PATTERNS: tuple[tuple[str, str], ...] = (
    ("*.fastq", "fastq"),
    ("*.fq", "fastq"),
    ("*.sam", "sam"),
    ("*.bam", "bam"),
    ("*.cram", "cram"),
    ("*.vcf", "vcf"),
    ("*.gvcf", "vcf"),
    ("*.bcf", "bcf"),
    ("*.bgen", "bgen"),
    ("*.bim", "plink"),
    ("*.fam", "plink"),
    ("*.pgen", "plink"),
    ("*.pvar", "plink"),
    ("*.psam", "plink"),
)
# Folder names that make every file below them part of a store.
STORE_DIR_PATTERNS: tuple[tuple[str, str], ...] = (
    ("*.mt", "hail-matrixtable"),
    ("*.vcf.zarr", "vcf-zarr"),
    ("*.vcz", "vcf-zarr"),
)
COMPRESSION_SUFFIXES = (".gz", ".bgz", ".bgzf", ".bz2", ".xz", ".zst")


@dataclass(frozen=True)
class Finding:
    """Raw data of `kind`, recognised `by` (a readable chain, outermost first)."""

    kind: str
    by: str
    detail_text: str = ""

    @property
    def detail(self) -> str:
        extra = f": {self.detail_text}" if self.detail_text else ""
        return f"{self.kind} recognised by {self.by}{extra}"

    def describe_en(self) -> str:
        return f"{KINDS.get(self.kind, (self.kind,))[0]}, recognised by {self.by}"

    def describe_ja(self) -> str:
        label = KINDS.get(self.kind, (self.kind, self.kind))[1]
        return f"{label}、{self.by} により判定"

    def inside(self, container: str) -> Finding:
        return Finding(self.kind, f"{container} > {self.by}", self.detail_text)
