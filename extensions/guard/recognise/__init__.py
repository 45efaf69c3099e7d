"""The one recogniser every channel of the egress gate uses: is this individual-level data?

`Recogniser.bytes` (a response body, a file, a websocket buffer) and
`Recogniser.text` (a kernel output, a terminal chunk, a JSON string) answer
with a `Verdict`: the kind of individual-level data found, if any, how it was
recognised (English and Japanese), the keyed digests of the cohort's people
named, the records or person rows seen, and whether some content could not
be decoded (opaque). Policy is the gate's (gate/policy.py); this package only
says what is there.

What is recognised:

- raw genomic data, by `sniff.Sniffer`'s rules (magic bytes, headers, three
  records of one shape);
- people of the cohort: their sample ids, learnt by `Cohort.from_data` from
  the datasets mounted at the site and held only as keyed BLAKE2b digests
  (8 bytes, a random key per process); text is scanned by regular
  expressions built from the ids' shapes (`nig-00` then four digits), so a
  scan costs about 10 ms per 10 MB;
- per-person clinical rows without ids: table rows that repeat the clinical
  vocabulary (sex, age band, region, disease name, ICD-10) as person rows;
- genotype matrices without ids: many cells of genotype codes or dosages
  over many people, in text tables and in NumPy arrays;
- all of that inside gzip/BGZF, zlib, raw deflate, bzip2, xz/lzma, zstd,
  lz4, Blosc (Zarr chunks), zip, tar, base64/base32/hex runs in text,
  notebooks, JSON and printed Python literals, HTML, Parquet, Arrow
  IPC/Feather, Excel (.xlsx), NumPy (.npy/.npz), pickle (opcodes walked,
  never loaded), SQLite, UTF-16 text, text chunks of PNG images and bytes
  after them; nested. Images, PDF and fonts are results, not opaque.
- a file named inside a Hail MatrixTable or VCF Zarr store (the sniffer's
  store rule on the name given).

Work is bounded: big inputs are read in windows (head, tail, evenly spaced
windows between them, and windows around signatures of records), decoded
bytes have a budget, and containers have a depth and a member limit. What
lies beyond the windows of a huge input is not seen; the egress meter
bounds that, as it bounds opaque content.

The modules: `recogniser` (the settings and the three entry points),
`scan` (one call: budgets, findings, dispatch on content), `verdict`;
the evidence: `people` (cohort ids; the `cohort` and the `datasets` it is
learnt from), `records` (the sniffer's raw records), `genotypes`,
`clinical`, `tables`; the containers and encodings: `compression`,
`archives`, `structured` (Parquet, Arrow, SQLite), `arrays` (NumPy),
`pickles`, `documents` (JSON, notebooks), `encoded` (base64, hex dumps),
`text`, `binary`, `media` (formats that are results); shared: `content`
(what is read and its budget) and `cells` (a table's cells).
"""

from .cohort import DEFAULT_VOCABULARY, Cohort
from .recogniser import Recogniser
from .verdict import (
    CLINICAL_ROWS,
    GENOTYPE_MATRIX,
    NOTHING,
    OWN_KINDS,
    PEOPLE_TABLE,
    Link,
    Verdict,
)

__all__ = [
    "CLINICAL_ROWS",
    "DEFAULT_VOCABULARY",
    "GENOTYPE_MATRIX",
    "NOTHING",
    "OWN_KINDS",
    "PEOPLE_TABLE",
    "Cohort",
    "Link",
    "Recogniser",
    "Verdict",
]
