"""Recognise raw genomic data by name and by content.

The guard asks one question of a file or of bytes about to leave: is this raw
genomic data? The answer is a `Finding` (which kind, recognised how) or None.

Content is recognised by signature, never by name alone:

- magic bytes: BAM (inside BGZF), CRAM, BCF, BGEN, PLINK 1 .bed and PLINK 2
  .pgen;
- headers: VCF meta lines and the #CHROM line, SAM @HD/@SQ lines;
- record shape, so that records pasted into any text count: VCF/gVCF data
  lines, SAM alignments, FASTQ reads, PLINK .bim and .fam lines, and
  tables of genotype calls (0/1, 1|1, ...);
- stores: a Hail MatrixTable or a VCF Zarr store, from any file inside it;
- containers, recursively: gzip and BGZF, bzip2, xz, zip and tar members,
  JSON strings (notebooks, contents-API models), HTML text.

Only bounded windows are read: the head and the tail of a file, a bounded
amount of decompressed bytes, a bounded number of archive members; a 1 GB
file costs the same as a 2 MB one. Raw records placed in the middle of a
huge file, beyond both windows, are not seen; the size cap on downloads
bounds that channel.

The modules: `findings` (the kinds, the name rules and a `Finding`),
`records` (the shape of each kind's records, and which lines may be one),
`sniffer` (the `Sniffer`: names, files, bytes, containers, text) and
`streams` (bounded decompression, shared with the recogniser).
"""

from .findings import (
    COMPRESSION_SUFFIXES,
    DEFAULT_NAME_PATTERNS,
    KINDS,
    STORE_DIR_PATTERNS,
    Finding,
)
from .records import (
    is_bim_record,
    is_fam_record,
    is_genotype_row,
    is_pvar_record,
    is_sam_record,
    is_vcf_record,
)
from .sniffer import Sniffer, output_text

__all__ = [
    "COMPRESSION_SUFFIXES",
    "DEFAULT_NAME_PATTERNS",
    "KINDS",
    "STORE_DIR_PATTERNS",
    "Finding",
    "Sniffer",
    "is_bim_record",
    "is_fam_record",
    "is_genotype_row",
    "is_pvar_record",
    "is_sam_record",
    "is_vcf_record",
    "output_text",
]
