"""The recogniser: individual-level data in any container or encoding; results that are not.

Rules checked: "Threat model: one egress gate" (DESIGN.md): raw genomic
records, tables naming people of the cohort, per-person clinical rows and
genotype matrices with or without ids are recognised inside the containers
and encodings a line of code produces; what cannot be decoded is opaque;
summaries, plots, notebooks without person rows and JupyterLab's own files
pass; the work is bounded.
"""

from __future__ import annotations

import base64
import binascii
import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import pickle
import random
import sqlite3
import struct
import tarfile
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from extensions.federation.packed import pack_codes
from extensions.guard import recognise
from extensions.guard.recognise import (
    Cohort,
    Recogniser,
    Verdict,
    compression,
    content,
    genotypes,
    structured,
)
from extensions.guard.recognise.scan import _Scan
from extensions.guard.sniff import KINDS

# ---------------------------------------------------------------------------
# a cohort, its clinical table and its genotypes

IDS = [f"NIG-{i:06d}" for i in range(1, 201)]
SEXES = ["female", "male"]
AGE_BANDS = ["20-29", "30-39", "40-49", "50-59", "60-69", "70-79"]
REGIONS = ["Tokyo", "Chiba", "Saitama", "Kanagawa", "Osaka"]
DISEASES = [
    ("Essential hypertension", "I10"),
    ("Type 2 diabetes mellitus", "E11"),
    ("Asthma", "J45"),
    ("Malignant neoplasm of stomach", "C16"),
    ("Chronic kidney disease", "N18"),
]
VOCABULARY = {
    "sex": SEXES,
    "age_band": AGE_BANDS,
    "region": REGIONS,
    "disease_name": [d for d, _ in DISEASES],
    "icd10": [c for _, c in DISEASES],
}
HEADER = ["sample_id", "age_band", "sex", "prefecture", "disease_name", "icd10"]


def clinical_rows(n: int = 200, seed: int = 7) -> list[list[str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        disease, code = rng.choice(DISEASES)
        rows.append([IDS[i], rng.choice(AGE_BANDS), rng.choice(SEXES), rng.choice(REGIONS),
                     disease, code])  # fmt: skip
    return rows


ROWS = clinical_rows()
CLINICAL = "\t".join(HEADER) + "\n" + "".join("\t".join(r) + "\n" for r in ROWS)
CLINICAL_NO_IDS = "\t".join(HEADER[1:]) + "\n" + "".join("\t".join(r[1:]) + "\n" for r in ROWS)
GENOTYPES = np.random.default_rng(3).choice([0, 1, 2], size=(60, 40), p=[0.5, 0.35, 0.15])
MATRIX_CSV = (
    "variant,"
    + ",".join(f"v{j}" for j in range(40))
    + "\n"
    + "".join(
        f"chr20:{1000 + i}:A:G," + ",".join(map(str, row)) + "\n" for i, row in enumerate(GENOTYPES)
    )
)
DOSAGES = np.clip(GENOTYPES + np.random.default_rng(4).normal(0, 0.03, GENOTYPES.shape), 0, 2)
DOSAGE_TSV = "".join("\t".join(f"{x:.3f}" for x in row) + "\n" for row in DOSAGES)
VCF = (
    "##fileformat=VCFv4.2\n"
    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(IDS[:10]) + "\n"
    + "".join(
        f"chr20\t{1000 + i}\t.\tA\tG\t.\tPASS\tAC=3\tGT\t"
        + "\t".join(("0/0", "0/1", "1/1")[(i + j) % 3] for j in range(10)) + "\n"
        for i in range(40)
    )
)  # fmt: skip
VCF_RECORDS = "".join(line + "\n" for line in VCF.splitlines() if not line.startswith("#"))
FASTQ = "".join(f"@read{i}/1\nACGTACGTNN\n+\nIIIIIIII##\n" for i in range(10))
SAM = "".join(
    f"read{i}\t99\tchr1\t{100 + i}\t60\t10M\t=\t{300 + i}\t210\tACGTACGTAC\tIIIIIIIIII\n"
    for i in range(10)
)


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return Cohort.from_ids(IDS, VOCABULARY)


@pytest.fixture(scope="module")
def rec(cohort) -> Recogniser:
    return Recogniser(cohort)


# ---------------------------------------------------------------------------
# encodings a line of code produces


def bgzf(data: bytes) -> bytes:
    out = b""
    for i in range(0, len(data), 4096):
        comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        body = comp.compress(data[i : i + 4096]) + comp.flush()
        extra = b"BC" + struct.pack("<HH", 2, len(body) + 25)
        header = b"\x1f\x8b\x08\x04" + b"\x00" * 4 + b"\x00\xff" + struct.pack("<H", 6) + extra
        out += (
            header
            + body
            + struct.pack("<II", zlib.crc32(data[i : i + 4096]), len(data[i : i + 4096]))
        )
    return out + bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


def raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def codec(name: str):
    def encode(data: bytes) -> bytes:
        pa = pytest.importorskip("pyarrow")
        sink = pa.BufferOutputStream()
        with pa.CompressedOutputStream(sink, name) as out:
            out.write(data)
        return sink.getvalue().to_pybytes()

    return encode


def zipped(data: bytes, name: str = "results/table.txt") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("README.txt", "summary results\n")
        z.writestr(name, data)
    return buf.getvalue()


def tarred(data: bytes, mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as t:
        info = tarfile.TarInfo("out/table.txt")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def notebook_output(data: bytes) -> bytes:
    nb = {
        "cells": [
            {"cell_type": "code", "source": "print(open('t.txt').read())", "metadata": {},
             "outputs": [{"output_type": "stream", "name": "stdout", "text": data.decode()}]}
        ],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
    }  # fmt: skip
    return json.dumps(nb).encode()


def contents_model(data: bytes) -> bytes:
    return json.dumps(
        {"type": "file", "format": "base64", "content": base64.b64encode(data).decode()}
    ).encode()


ENCODINGS = {
    "plain": lambda d: d,
    "gzip": gzip.compress,
    "bgzf": bgzf,
    "zlib": zlib.compress,
    "raw-deflate": raw_deflate,
    "bzip2": bz2.compress,
    "xz": lzma.compress,
    "lzma-alone": lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE),
    "zstd": codec("zstd"),
    "lz4": codec("lz4"),
    "zip": zipped,
    "tar": tarred,
    "tar.gz": lambda d: tarred(d, "w:gz"),
    "base64": lambda d: base64.b64encode(d),
    "base64-lines": base64.encodebytes,
    "base32": base64.b32encode,
    "hex": lambda d: d.hex().encode(),
    "base64-of-gzip-in-a-print": lambda d: (
        b"data = '" + base64.b64encode(gzip.compress(d)) + b"'\n"
    ),
    "notebook-output": notebook_output,
    "contents-model-base64": contents_model,
    "html-pre": lambda d: b"<html><body><pre>" + d.replace(b"<", b"&lt;") + b"</pre></body></html>",
    "zip-in-zip": lambda d: zipped(zipped(d), "inner.zip"),
    "gzip-in-tar-in-xz": lambda d: lzma.compress(tarred(gzip.compress(d))),
    "zlib-in-base64-in-json": lambda d: json.dumps(
        {"blob": base64.b64encode(zlib.compress(d)).decode()}
    ).encode(),
}

CONTENTS = {
    # name: (content, kind, people named)
    "clinical-table": (CLINICAL, "people-table", 200),
    "clinical-rows-without-ids": (CLINICAL_NO_IDS, "clinical-rows", 0),
    "vcf": (VCF, "vcf", 10),
    "vcf-records": (VCF_RECORDS, "vcf", 0),
    "genotype-matrix-csv": (MATRIX_CSV, "genotype-matrix", 0),
    "dosage-matrix": (DOSAGE_TSV, "genotype-matrix", 0),
    "fastq": (FASTQ, "fastq", 0),
    "sam": (SAM, "sam", 0),
}


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("content", list(CONTENTS))
def test_individual_level_content_is_found_in_every_encoding(rec, content, encoding):
    text, kind, people = CONTENTS[content]
    v = rec.bytes(ENCODINGS[encoding](text.encode()))
    assert v.kind == kind, v
    assert len(v.people) == people, v
    assert not v.opaque, v
    assert v.records > 0


@pytest.mark.parametrize("encoding", ["plain", "base64", "hex", "base64-of-gzip-in-a-print",
                                      "notebook-output", "html-pre"])  # fmt: skip
@pytest.mark.parametrize("content", list(CONTENTS))
def test_the_same_in_text_from_a_kernel_or_a_terminal(rec, content, encoding):
    text, kind, people = CONTENTS[content]
    v = rec.text(ENCODINGS[encoding](text.encode()).decode())
    assert v.kind == kind and len(v.people) == people, v


def test_how_names_the_way_in_innermost_first(rec):
    v = rec.text("x = '" + base64.b64encode(gzip.compress(CLINICAL.encode())).decode() + "'")
    assert v.how == "200 sample ids of the cohort in a table, inside gzip, inside base64 text"
    assert v.how_ja == "base64 テキストの中のgzipの中の表の中のコホートのサンプルID 200 件"
    assert "VCF" in rec.text(VCF).describe_en()
    assert "遺伝型" in rec.text(MATRIX_CSV).describe_ja()


# ---------------------------------------------------------------------------
# structured formats


def dataframe(ids: bool = True):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(ROWS, columns=HEADER)
    return df if ids else df.drop(columns="sample_id")


def xlsx(rows: list[list[str]]) -> bytes:
    """A minimal workbook as Excel writes it: shared strings and one sheet."""
    strings = sorted({c for r in rows for c in r})
    index = {s: i for i, s in enumerate(strings)}

    def col(i: int) -> str:
        return chr(65 + i) if i < 26 else chr(64 + i // 26) + chr(65 + i % 26)

    sheet = "".join(
        f'<row r="{r + 1}">'
        + "".join(f'<c r="{col(c)}{r + 1}" t="s"><v>{index[v]}</v></c>' for c, v in enumerate(row))
        + "</row>"
        for r, row in enumerate(rows)
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr(
            "xl/workbook.xml", "<workbook><sheets><sheet name='Sheet1'/></sheets></workbook>"
        )
        z.writestr(
            "xl/sharedStrings.xml",
            "<sst>" + "".join(f"<si><t>{s}</t></si>" for s in strings) + "</sst>",
        )
        z.writestr(
            "xl/worksheets/sheet1.xml", f"<worksheet><sheetData>{sheet}</sheetData></worksheet>"
        )
    return buf.getvalue()


def sqlite_db(tmp_path: Path, rows: list[list[str]], header: list[str]) -> bytes:
    path = tmp_path / "people.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(f"CREATE TABLE people ({', '.join(h + ' TEXT' for h in header)})")
    conn.executemany(f"INSERT INTO people VALUES ({', '.join('?' * len(header))})", rows)
    conn.commit()
    conn.close()
    return path.read_bytes()


def npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def arrow_bytes(df, how: str) -> bytes:
    pa = pytest.importorskip("pyarrow")
    table = pa.Table.from_pandas(df)
    if how == "parquet":
        import pyarrow.parquet as pq

        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
    elif how == "feather":
        import pyarrow.feather as feather

        sink = pa.BufferOutputStream()
        feather.write_feather(table, sink)
    else:
        import pyarrow.ipc as ipc

        sink = pa.BufferOutputStream()
        with ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
    return sink.getvalue().to_pybytes()


STRUCTURED = {
    "parquet": lambda tmp: arrow_bytes(dataframe(), "parquet"),
    "parquet-without-ids": lambda tmp: arrow_bytes(dataframe(False), "parquet"),
    "feather": lambda tmp: arrow_bytes(dataframe(), "feather"),
    "arrow-stream": lambda tmp: arrow_bytes(dataframe(), "stream"),
    "parquet-in-zip": lambda tmp: zipped(arrow_bytes(dataframe(), "parquet"), "t.parquet"),
    "xlsx": lambda tmp: xlsx([HEADER, *ROWS]),
    "xlsx-without-ids": lambda tmp: xlsx([HEADER[1:], *(r[1:] for r in ROWS)]),
    "sqlite": lambda tmp: sqlite_db(tmp, ROWS, HEADER),
    "pickle-dataframe": lambda tmp: pickle.dumps(dataframe()),
    "pickle-dataframe-without-ids": lambda tmp: pickle.dumps(dataframe(False)),
    "pickle-protocol-2": lambda tmp: pickle.dumps(dataframe(), protocol=2),
    "joblib-style-zlib-pickle": lambda tmp: zlib.compress(pickle.dumps(dataframe(False))),
    "json-records": lambda tmp: dataframe().to_json(orient="records").encode(),
    "json-columns-without-ids": lambda tmp: dataframe(False).to_json().encode(),
    "printed-dict-without-ids": lambda tmp: str(dataframe(False).to_dict()).encode(),
    "printed-list-of-lists-of-calls": lambda tmp: str(GENOTYPES.tolist()).encode(),
    "html-table": lambda tmp: dataframe().to_html().encode(),
    "html-table-without-ids": lambda tmp: dataframe(False).head(40).to_html().encode(),
    "npy-calls": lambda tmp: npy(np.stack([GENOTYPES.T > 0, GENOTYPES.T > 1], -1).astype(np.int8)),
    "npy-dosages": lambda tmp: npy(DOSAGES),
    "npy-packed-calls": lambda tmp: npy(pack_codes(GENOTYPES.astype(np.uint8))),
    "npz": lambda tmp: npz(calls=GENOTYPES.astype(np.int8)),
    "pickle-numpy": lambda tmp: pickle.dumps(GENOTYPES.astype(np.int8)),
    "pickle-numpy-protocol-2": lambda tmp: pickle.dumps(DOSAGES, protocol=2),
    "pickle-dosage-dataframe": lambda tmp: pickle.dumps(
        pytest.importorskip("pandas").DataFrame(DOSAGES)
    ),
    "raw-int8-buffer": lambda tmp: GENOTYPES.astype(np.int8).tobytes(),
    "zarr-blosc-chunk-of-calls": lambda tmp: (
        pytest.importorskip("numcodecs")
        .Blosc(cname="zstd", clevel=7, shuffle=2)
        .encode(np.stack([GENOTYPES > 0, GENOTYPES > 1], -1).astype(np.int8))
    ),
    "zarr-blosc-chunk-of-sample-ids": lambda tmp: (
        pytest.importorskip("numcodecs")
        .Blosc(cname="lz4", shuffle=1)
        .encode(pytest.importorskip("numcodecs").VLenUTF8().encode(np.array(IDS, dtype=object)))
    ),
}
STRUCTURED_EXPECT = {
    "parquet-without-ids": ("clinical-rows", 0),
    "xlsx-without-ids": ("clinical-rows", 0),
    "pickle-dataframe-without-ids": ("clinical-rows", 0),
    "joblib-style-zlib-pickle": ("clinical-rows", 0),
    "json-columns-without-ids": ("clinical-rows", 0),
    "html-table-without-ids": ("clinical-rows", 0),
    "printed-dict-without-ids": ("clinical-rows", 0),
}


@pytest.mark.parametrize("name", list(STRUCTURED))
def test_structured_formats_are_read(rec, tmp_path, name):
    v = rec.bytes(STRUCTURED[name](tmp_path))
    matrix = any(w in name for w in ("npy", "npz", "numpy", "dosage", "int8", "calls"))
    kind, people = STRUCTURED_EXPECT.get(
        name, ("genotype-matrix", 0) if matrix else ("people-table", 200)
    )
    assert v.kind == kind, v
    assert len(v.people) == people, v
    assert not v.opaque


def test_calls_beside_a_repeated_clinical_label_are_a_genotype_matrix(rec):
    lines = [f"{SEXES[i % 2]}  " + "  ".join(map(str, GENOTYPES[i][:25])) for i in range(30)]
    v = rec.text("\n".join(lines))
    assert v.kind == "genotype-matrix"


def test_a_pickle_is_walked_never_loaded(rec, tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    data = pickle.dumps([Evil(), *IDS[:30]])
    v = rec.bytes(data)
    assert not marker.exists()
    assert len(v.people) == 30 and v.kind == "people-table"


def test_sqlite_is_read_from_a_private_copy_that_is_removed(rec, tmp_path, monkeypatch):
    made = []
    real = structured.tempfile.TemporaryDirectory

    def spy(*a, **k):
        d = real(*a, **k)
        made.append(d.name)
        return d

    monkeypatch.setattr(structured.tempfile, "TemporaryDirectory", spy)
    assert rec.bytes(sqlite_db(tmp_path, ROWS, HEADER)).kind == "people-table"
    assert made and not any(os.path.exists(d) for d in made)


# ---------------------------------------------------------------------------
# results that pass


def af_table(sep: str = "\t") -> str:
    head = sep.join(["chrom", "pos", "rsid", "ref", "alt", "AC", "AN", "AF"]) + "\n"
    return head + "".join(
        sep.join([f"chr{i % 22 + 1}", str(10_000 + i * 37), f"rs{i}", "A", "G", str(i % 9),
                  "400", f"{(i % 9) / 400:.4f}"]) + "\n"
        for i in range(500)
    )  # fmt: skip


def gwas_table() -> str:
    return "chrom\tpos\tid\tref\talt\tbeta\tse\tp\tn\n" + "".join(
        f"chr20\t{1000 + i * 53}\trs{i}\tA\tG\t{(i % 17 - 8) / 100:.3f}\t0.021\t"
        f"{(i % 97 + 1) / 1000:.2e}\t400\n"
        for i in range(500)
    )


def per_population_af() -> str:
    """Rare variants: frequencies near 0 in five columns (must not read as dosages)."""
    rng = random.Random(5)
    return "      AF_nig  AF_ncc  AF_ncgm  AF_tommo  AF_imsut\n" + "".join(
        f"{i:<6}" + "  ".join(f"{rng.random() * 0.02:.4f}" for _ in range(5)) + "\n"
        for i in range(60)
    )


def counts_by_stratum() -> str:
    return dataframe().groupby(["sex", "age_band"]).size().reset_index(name="n").to_string()


def counts_four_attributes() -> str:
    df = dataframe()
    return (
        df.groupby(["sex", "age_band", "prefecture", "icd10"]).size().reset_index(name="n").to_csv()
    )


def crosstab_of_small_counts() -> str:
    """Region by disease in a small cohort: most cells are 0, 1 or 2, yet they are counts."""
    pd = pytest.importorskip("pandas")
    rng = random.Random(9)
    diseases = [f"Disease {chr(65 + k)}" for k in range(22)]
    cells = {d: [rng.choice([0, 0, 0, 1, 1, 2]) for _ in REGIONS] for d in diseases}
    return pd.DataFrame(cells, index=pd.Index(REGIONS, name="prefecture")).to_string()


def png(width: int = 64, height: int = 64) -> bytes:
    def chunk(kind, payload):
        c = struct.pack(">I", len(payload)) + kind + payload
        return c + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)

    rng = random.Random(1)
    raw = b"".join(
        b"\x00" + bytes(rng.getrandbits(8) for _ in range(width * 3)) for _ in range(height)
    )
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"tEXt", b"Software\x00matplotlib")
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def svg_plot() -> str:
    rng = random.Random(2)
    points = "".join(
        f'<use xlink:href="#m" x="{72 + i * 0.07:.3f}" y="{300 - rng.random() * 200:.3f}"/>\n'
        for i in range(4000)
    )
    return (
        '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg">\n'
        '<defs><path id="m" d="M 0 1.5 C 0.397805 1.5 0.77937 1.341951 1.06066 1.06066 '
        'C 1.341951 0.77937 1.5 0.397805 1.5 0 z"/></defs>\n' + points + "</svg>\n"
    )


def pdf() -> bytes:
    stream = zlib.compress(b"BT /F1 12 Tf 72 712 Td (Manhattan plot, chr20) Tj ET\n" * 50)
    return (
        b"%PDF-1.4\n1 0 obj << /Length " + str(len(stream)).encode() + b" /Filter /FlateDecode >>\n"
        b"stream\n" + stream + b"\nendstream\nendobj\ntrailer << >>\n%%EOF\n"
    )


def summary_notebook() -> str:
    pd = pytest.importorskip("pandas")
    table = pd.read_csv(io.StringIO(af_table()), sep="\t").head(10)
    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": "# Allele frequencies\nPooled."},
        {"cell_type": "code", "metadata": {}, "execution_count": 1,
         "source": "freq = client.run('allele-frequencies')\nfreq.head(10)",
         "outputs": [{"output_type": "execute_result", "execution_count": 1, "metadata": {},
                      "data": {"text/plain": table.to_string(), "text/html": table.to_html()}}]},
        {"cell_type": "code", "metadata": {}, "execution_count": 2, "source": "plot(freq)",
         "outputs": [{"output_type": "display_data", "metadata": {},
                      "data": {"image/png": base64.b64encode(png()).decode(),
                               "text/plain": "<Figure size 640x480 with 1 Axes>"}}]},
        {"cell_type": "code", "metadata": {}, "execution_count": 3, "source": "counts",
         "outputs": [{"output_type": "stream", "name": "stdout", "text": counts_by_stratum()}]},
    ]  # fmt: skip
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


TRACEBACK = """---------------------------------------------------------------------------
KeyError                                  Traceback (most recent call last)
Cell In[3], line 1
----> 1 df.loc["chr20:100001"]
File /opt/venv/lib/python3.11/site-packages/pandas/core/indexing.py:1191, in _LocIndexer.__getitem__(self, key)
   1189 maybe_callable = com.apply_if_callable(key, self.obj)
KeyError: 'chr20:100001'
"""
PIP_LOG = (
    "".join(
        f"Collecting package{i}==1.{i}.0\n  Downloading package{i}-1.{i}.0-py3-none-any.whl (12{i} kB)\n"
        f"  Hash: sha256:{os.urandom(32).hex()}\n"
        for i in range(40)
    )
    + "Successfully installed "
    + " ".join(f"package{i}-1.{i}.0" for i in range(40))
    + "\n"
)
WOFF2 = b"wOF2" + os.urandom(30_000)
JS_ASSET = (
    "(self.webpackChunk=self.webpackChunk||[]).push([[4324],{1:(e,t,n)=>{"
    + "var a=[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15];function f(x){return x*2}" * 200
    + '".jp-Icon{background:url(data:font/woff2;base64,'
    + base64.b64encode(WOFF2).decode()
    + ')}"}}]);\n'
)
CSS_ASSET = ".jp-Notebook{color:var(--jp-ui-font-color1)}\n" * 500 + (
    "@font-face{src:url(data:image/svg+xml;base64,"
    + base64.b64encode(svg_plot()[:3000].encode()).decode()
    + ")}\n"
)

NORMAL = {
    "allele-frequency-table": lambda: af_table().encode(),
    "allele-frequency-csv": lambda: af_table(",").encode(),
    "allele-frequency-parquet": lambda: arrow_bytes(
        pytest.importorskip("pandas").read_csv(io.StringIO(af_table()), sep="\t"), "parquet"
    ),
    "gwas-results": lambda: gwas_table().encode(),
    "gwas-results-gzip": lambda: gzip.compress(gwas_table().encode()),
    "per-population-rare-frequencies": lambda: per_population_af().encode(),
    "counts-by-sex-and-age-band": lambda: counts_by_stratum().encode(),
    "counts-by-four-attributes": lambda: counts_four_attributes().encode(),
    "counts-as-a-series": lambda: repr(dataframe().groupby(["sex", "age_band"]).size()).encode(),
    "crosstab-of-region-by-disease": lambda: (
        pytest.importorskip("pandas")
        .crosstab(dataframe().prefecture, dataframe().disease_name)
        .to_string()
        .encode()
    ),
    "crosstab-of-small-counts": lambda: crosstab_of_small_counts().encode(),
    "png-plot": png,
    "svg-plot": lambda: svg_plot().encode(),
    "pdf": pdf,
    "notebook-of-summaries": lambda: summary_notebook().encode(),
    "python-traceback": lambda: TRACEBACK.encode(),
    "pip-log-with-hashes": lambda: PIP_LOG.encode(),
    "javascript-bundle-with-a-font": lambda: JS_ASSET.encode(),
    "css-with-an-svg": lambda: CSS_ASSET.encode(),
    "json-settings-schema": lambda: json.dumps(
        {
            "title": "Notebook",
            "properties": {f"p{i}": {"type": "number", "default": i % 3} for i in range(200)},
        }
    ).encode(),  # fmt: skip
    "numpy-array-of-p-values": lambda: npy(np.random.default_rng(0).random((100, 30))),
    "numpy-array-of-betas": lambda: npy(np.random.default_rng(0).normal(0, 0.1, (100, 30))),
    "numpy-array-of-random-words-in-two-planes": lambda: npy(
        np.random.default_rng(0).integers(0, 2**63, size=(100, 2, 4), dtype=np.uint64)
    ),
    "head-without-ids": lambda: dataframe(False).head().to_string().encode(),
    "int8-contig-index-of-variants": lambda: np.repeat(np.arange(3, dtype=np.int8), 700).tobytes(),
    "blosc-chunk-of-allele-counts": lambda: (
        pytest.importorskip("numcodecs")
        .Blosc(cname="zstd")
        .encode(np.random.default_rng(0).integers(0, 400, 2000).astype(np.int32))
    ),
    "short-hash": lambda: os.urandom(64),
}


@pytest.mark.parametrize("name", list(NORMAL))
def test_normal_results_pass(rec, name):
    v = rec.bytes(NORMAL[name]())
    assert v.kind is None and not v.opaque and not v.people, v
    assert v.describe_en() == "no individual-level data"
    assert v.describe_ja() == "個人レベルのデータなし"


def test_a_head_of_five_rows_names_five_people(rec):
    v = rec.text(dataframe().head().to_string())
    assert v.kind == "people-table" and len(v.people) == 5 and v.records == 5


def test_a_head_without_ids_is_nothing_but_more_rows_are_clinical_rows(rec):
    assert rec.text(dataframe(False).head().to_string()).kind is None
    v = rec.text(dataframe(False).head(30).to_string())
    assert v.kind == "clinical-rows" and v.records == 30 and not v.people


def test_one_id_in_prose_is_counted_but_is_no_table(rec):
    v = rec.text("ValueError: sample NIG-000001 has no genotypes")
    assert v.kind is None and len(v.people) == 1
    assert "1 sample id" in v.describe_en() and "サンプルID 1 件" in v.describe_ja()


def test_a_list_of_ids_is_a_table_of_people(rec):
    v = rec.text(repr(IDS[:12]))
    assert v.kind == "people-table" and len(v.people) == 12


@pytest.mark.parametrize(
    "text, n",
    [
        ("'NIG-000001'", 1),
        ('"NIG-000001",', 1),
        ("<td>NIG-000001</td>", 1),
        ("NIG-000001_NIG-000002 0 0 1 -9", 2),  # PLINK's FID_IID
        ("nig-000003", 1),  # case does not hide an id
        ("XNIG-000001 NIG-0000011 NIG-000999 NIG-00001", 0),  # longer tokens, not cohort ids
        ("chr20:100001 rs123 0.05", 0),
    ],
)
def test_ids_inside_punctuation(cohort, text, n):
    assert len(cohort.people_in(text)) == n


# ---------------------------------------------------------------------------
# what a terminal or a kernel shows of a file, whole and in chunks of 4 KiB that start anywhere


def wrapped(encoded: bytes, width: int = 76) -> str:
    """Lines of `width` characters, as `base64 file` and `base32 file` print them."""
    text = encoded.decode()
    return "".join(text[i : i + width] + "\n" for i in range(0, len(text), width))


def _printable(chunk: bytes) -> str:
    return "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)


def od_dump(data: bytes, ascii_column: bool = True) -> str:
    """`od -A x -t x1z -v file` (hex offsets, an ASCII column) or `od -t x1 file` (octal offsets)."""
    out = []
    for off in range(0, len(data), 16):
        chunk = data[off : off + 16]
        cells = "".join(f" {b:02x}" for b in chunk)
        if ascii_column:
            out.append(f"{off:06x}{cells:<48}  >{_printable(chunk)}<\n")
        else:
            out.append(f"{off:07o}{cells}\n")
    return "".join(out) + (f"{len(data):06x}\n" if ascii_column else f"{len(data):07o}\n")


def xxd_dump(data: bytes) -> str:
    out = []
    for off in range(0, len(data), 16):
        chunk = data[off : off + 16]
        groups = " ".join(chunk[i : i + 2].hex() for i in range(0, len(chunk), 2))
        out.append(f"{off:08x}: {groups:<39}  {_printable(chunk)}\n")
    return "".join(out)


def hexdump_c(data: bytes) -> str:
    out = []
    for off in range(0, len(data), 16):
        chunk = data[off : off + 16]
        cells = [f"{b:02x}" for b in chunk]
        body = f"{' '.join(cells[:8]):<23}  {' '.join(cells[8:]):<23}"
        out.append(f"{off:08x}  {body}  |{_printable(chunk)}|\n")
    return "".join(out) + f"{len(data):08x}\n"


def user_expressions(data: bytes) -> dict:
    """An execute_reply's content holding `repr` of the file in a user expression's result."""
    result = {"status": "ok", "data": {"text/plain": repr(data.decode())}, "metadata": {}}
    return {"status": "ok", "execution_count": 3, "user_expressions": {"t": result}}


# name: (the file inside a container, where the file starts in it, the text shown of the container)
SHOWN = {
    "base32 file": (lambda d: d, 0, lambda c: wrapped(base64.b32encode(c))),
    "base64 file": (lambda d: d, 0, lambda c: wrapped(base64.b64encode(c))),
    "tar cf - file | base64": (tarred, 512, lambda c: wrapped(base64.b64encode(c))),
    "print(binascii.hexlify(data))": (lambda d: d, 0, lambda c: repr(binascii.hexlify(c)) + "\n"),
    # the dump formats (checked equal to the tools' own output)
    "od -A x -t x1z -v file": (lambda d: d, 0, od_dump),
    "od -t x1 file": (lambda d: d, 0, lambda c: od_dump(c, ascii_column=False)),
    "xxd file": (lambda d: d, 0, xxd_dump),
    "hexdump -C file": (lambda d: d, 0, hexdump_c),
    # escaped text: tabs and newlines arrive as the two characters `\t` and `\n`
    "repr(open(file).read())": (lambda d: d, 0, lambda c: repr(c.decode()) + "\n"),
    "a user_expressions reply": (lambda d: d, 0, lambda c: json.dumps(user_expressions(c))),
    "a kernel message as JSON text": (
        lambda d: d,
        0,
        lambda c: json.dumps({"msg_type": "execute_reply", "content": user_expressions(c)}),
    ),
    "a notebook exported as a script": (
        lambda d: d,
        0,
        lambda c: (
            "# %%\nimport io\n\nimport pandas as pd\n\n# %%\ntable = "
            + json.dumps(c.decode())
            + "\ndf = pd.read_csv(io.StringIO(table), sep='\\t')\n"
        ),
    ),
}


def terminal_chunks(text: str, seed: int, size: int = 4096) -> list[tuple[int, str]]:
    """(offset, chunk): `text` cut every `size` characters from an arbitrary first cut."""
    at = random.Random(seed).randrange(1, size)
    out = [(0, text[:at])]
    while at < len(text):
        out.append((at, text[at : at + size]))
        at += size
    return out


def rows_shown(source: str, offset: int, container_size: int, shown: str, a: int, b: int) -> int:
    """How many of the source's rows lie wholly within characters [a, b) of what is shown
    (the text's characters are spread evenly over the container's bytes), less a line of
    slack at each end."""
    scale = len(shown) / container_size
    rows, at = 0, 0
    for line in source.encode().split(b"\n")[1:-1]:
        at = source.encode().find(line, at)
        start, end = (offset + at) * scale, (offset + at + len(line)) * scale
        rows += a + 160 <= start and end <= b - 160
        at += len(line)
    return rows


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("shown", list(SHOWN))
@pytest.mark.parametrize("source, kind", [(CLINICAL, "people-table"), (VCF, "vcf")])
def test_an_encoded_file_is_found_whole_and_in_every_chunk_a_terminal_sends(
    rec, shown, source, kind, seed
):
    wrap, offset, show = SHOWN[shown]
    container = wrap(source.encode())
    text = show(container)
    v = rec.text(text)
    assert v.kind == kind and len(v.people) == len(rec.cohort.people_in(source)), v
    assert rec.bytes(text.encode()).kind == kind
    for a, chunk in terminal_chunks(text, seed):
        worth = rows_shown(source, offset, len(container), text, a, a + len(chunk))
        if worth > 10:
            v = rec.text(chunk)
            assert v.kind is not None, (a, worth, v)
            if kind == "people-table":
                assert len(v.people) >= worth, (a, worth, v)


def test_a_table_of_numbers_with_a_long_index_is_no_hex_dump(rec):
    rng = random.Random(3)
    text = "".join(
        f"{100000 + i:06d} " + " ".join(f"{rng.randrange(10, 99)}" for _ in range(16)) + "\n"
        for i in range(200)
    )
    v = rec.text(text)
    assert v.kind is None and not v.opaque, v


@pytest.mark.parametrize("shown", list(SHOWN))
def test_encoded_results_in_chunks_pass(rec, shown):
    wrap, _, show = SHOWN[shown]
    text = show(wrap(gwas_table().encode()))
    for _, chunk in terminal_chunks(text, 0):
        v = rec.text(chunk)
        assert v.kind is None and not v.people, v


# ---------------------------------------------------------------------------
# a phenotype table without ids: the cohort's column names as its header

PHENO_COLUMNS = {
    **{name: VOCABULARY[col] for name, col in [("age_band", "age_band"), ("sex", "sex"),
       ("prefecture", "region"), ("disease_name", "disease_name"), ("icd10", "icd10")]},
    "quant_trait": None,
    "case_status": ["0", "1"],
}  # fmt: skip


def phenotypes(n: int = 200):
    pd = pytest.importorskip("pandas")
    rng = random.Random(11)
    return pd.DataFrame(
        {
            "quant_trait": [round(rng.gauss(0, 1), 6) for _ in range(n)],
            "case_status": [rng.choice([0, 1]) for _ in range(n)],
        }
    )


@pytest.fixture(scope="module")
def rec_columns() -> Recogniser:
    return Recogniser(Cohort.from_ids(IDS, VOCABULARY, PHENO_COLUMNS))


PHENOTYPE_TABLES = {
    # name: (the text shown, per-person rows)
    "cut -f2- phenotypes.tsv": (lambda: phenotypes().to_csv(sep="\t", index=False), 200),
    "to_csv": (lambda: phenotypes().to_csv(index=False), 200),
    "a DataFrame printed": (lambda: phenotypes().to_string(), 200),
    "a DataFrame as HTML": (lambda: phenotypes().to_html(), 200),
    "one column": (lambda: phenotypes()[["quant_trait"]].to_string(), 200),
    "head(12)": (lambda: phenotypes().head(12).to_string(), 12),
}


@pytest.mark.parametrize("name", list(PHENOTYPE_TABLES))
def test_a_phenotype_table_without_ids_is_per_person_rows(rec_columns, name):
    text, rows = PHENOTYPE_TABLES[name][0](), PHENOTYPE_TABLES[name][1]
    for v in (rec_columns.text(text), rec_columns.bytes(gzip.compress(text.encode()))):
        assert v.kind == "clinical-rows" and v.records == rows and not v.people, v
        assert "quant_trait" in v.how
    # a terminal's first chunk holds the header; later chunks are numbers (the egress meter's)
    assert rec_columns.text(text[:4096]).kind == "clinical-rows"


def summaries_of_phenotypes() -> dict[str, str]:
    df = dataframe().join(phenotypes())
    return {
        "head(10)": phenotypes().head(10).to_string(),
        "counts per case_status": df.groupby(["prefecture", "case_status"])
        .size()
        .reset_index(name="n")
        .to_string(),
        "counts per case_status as a series": df.groupby(["prefecture", "sex", "case_status"])
        .size()
        .to_string(),
        "value_counts": df.case_status.value_counts().to_string(),
        "means per stratum": df.groupby(["prefecture", "sex"])[["quant_trait"]].mean().to_string(),
        "means per stratum, reset": df.groupby(["prefecture", "sex"])[["quant_trait"]]
        .mean()
        .reset_index()
        .to_string(),
        "describe": df[["quant_trait", "case_status"]].describe().to_string(),
        "GWAS results under a quant_trait title line": "quant_trait\n" + gwas_table(),
        "GWAS results titled in prose": "GWAS of quant_trait (case_status as covariate)\n"
        + gwas_table(),
        "GWAS results with a trait column": "trait\tchrom\tpos\tbeta\tp\n"
        + "".join(f"quant_trait\tchr20\t{1000 + i}\t0.01\t0.5\n" for i in range(50)),
    }


def test_summaries_of_phenotypes_pass(rec_columns):
    for name, text in summaries_of_phenotypes().items():
        v = rec_columns.text(text)
        assert v.kind is None and not v.people, (name, v)


def test_cohort_from_data_learns_the_columns_of_its_tables(tmp_path):
    write_dataset(tmp_path / "ds", IDS[:100])
    rng = random.Random(2)
    (tmp_path / "ds" / "phenotypes.tsv").write_text(
        "sample_id\tquant_trait\tcase_status\n"
        + "".join(f"{i}\t{rng.gauss(0, 1):.6f}\t{rng.choice([0, 1])}\n" for i in IDS[:100])
    )
    c = Cohort.from_data(tmp_path)
    assert c.columns["quant_trait"] is None and c.columns["case_status"] == {"0", "1"}
    assert "tokyo" in c.columns["prefecture"] and "sample_id" not in c.columns
    v = Recogniser(c).text(phenotypes().to_string())
    assert v.kind == "clinical-rows" and v.records == 200


# ---------------------------------------------------------------------------
# opaque content


def test_random_bytes_are_opaque(rec):
    v = rec.bytes(os.urandom(100_000))
    assert v.opaque and v.kind is None and "high-entropy" in v.how


def test_base64_of_random_bytes_printed_is_opaque(rec):
    v = rec.text("token = '" + base64.b64encode(os.urandom(50_000)).decode() + "'")
    assert v.opaque and v.kind is None


def test_an_encrypted_zip_member_is_opaque(rec):
    data = bytearray(zipped(b"secret"))
    # set the encrypted flag of the second member's local and central headers
    for magic in (b"PK\x03\x04", b"PK\x01\x02"):
        at = data.rfind(magic)
        flag_at = at + (6 if magic == b"PK\x03\x04" else 8)
        data[flag_at] |= 1
    assert rec.bytes(bytes(data)).opaque


def test_zstd_without_a_decoder_is_opaque(rec, monkeypatch):
    data = codec("zstd")(CLINICAL.encode())
    monkeypatch.setattr(compression, "_codec", lambda name: None)
    v = rec.bytes(data)
    assert v.opaque and v.kind is None
    assert v.how == "zstd stream (cannot be decoded here)"
    assert v.how_ja == "zstd ストリーム（ここでは展開できない）"


def test_a_file_of_a_store_is_known_by_its_place_in_the_store(rec):
    chunk = os.urandom(5000)  # a blosc-compressed Zarr chunk reads as random bytes
    v = rec.bytes(chunk, name="data/JGAD000101/genotypes.vcf.zarr/call_genotype/0.0.0")
    assert v.kind == "vcf-zarr" and "store" in v.how
    assert rec.bytes(chunk, name="0.0.0").opaque


def test_a_plot_with_data_appended_is_read_after_the_image(rec):
    v = rec.bytes(png() + gzip.compress(CLINICAL.encode()))
    assert v.kind == "people-table"


# ---------------------------------------------------------------------------
# the cohort from the data at the site


def write_dataset(folder: Path, ids: list[str], fam: bool = False) -> None:
    folder.mkdir(parents=True)
    rows = clinical_rows(len(ids))
    for r, i in zip(rows, ids, strict=True):
        r[0] = i
    (folder / "clinical.tsv").write_text(
        "\t".join(HEADER) + "\n" + "".join("\t".join(r) + "\n" for r in rows)
    )
    (folder / "phenotypes.tsv").write_text(
        "sample_id\tquant_trait\tcase_status\n" + "".join(f"{i}\t0.5\t1\n" for i in ids)
    )
    header = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t"
    (folder / "genotypes.vcf.gz").write_bytes(
        bgzf((header + "\t".join(ids) + "\n" + "chr20\t1\t.\tA\tG\t.\tPASS\t.\tGT\t"
              + "\t".join("0/1" for _ in ids) + "\n").encode())
    )  # fmt: skip
    if fam:
        (folder / "plink").mkdir()
        (folder / "plink" / "cohort.fam").write_text(
            "".join(f"FAM{k}\tEXTRA-{k:05d}\t0\t0\t1\t-9\n" for k in range(5))
        )
        (folder / "cohort.psam").write_text("#IID\tSEX\nPSAM-00001\t1\nPSAM-00002\t2\n")


def test_cohort_from_data_reads_every_source(tmp_path):
    write_dataset(tmp_path / "ds-nig", [f"NIG-{i:06d}" for i in range(1, 31)])
    write_dataset(tmp_path / "ds-ncc", [f"NCC-{i:06d}" for i in range(1, 21)], fam=True)
    (tmp_path / "ds-ncc" / "phenotypes.tsv").write_text("sample_id\tq\nNCC-LATE01\t1\n")
    c = Cohort.from_data(tmp_path)
    assert len(c) == 30 + 20 + 1 + 10 + 2
    assert c.people_in("NIG-000030 NCC-000020 NCC-LATE01 EXTRA-00004 PSAM-00002 FAM3")
    assert len(c.people_in("NIG-000030 NCC-000020 NCC-LATE01 EXTRA-00004 PSAM-00002")) == 5
    assert {"sex", "age_band", "region", "disease_name", "icd10"} <= set(c.vocabulary)
    assert "tokyo" in c.vocabulary["region"]
    assert any(s.endswith("genotypes.vcf.gz") for s in c.sources)


def test_cohort_from_named_datasets_only(tmp_path):
    write_dataset(tmp_path / "a", ["AAA-0001", "AAA-0002"])
    write_dataset(tmp_path / "b", ["BBB-0001"])
    c = Cohort.from_data(tmp_path, datasets=["b"])
    assert len(c) == 1 and "BBB-0001" in c and "AAA-0001" not in c


def test_a_vcf_header_only_is_read(tmp_path, monkeypatch):
    folder = tmp_path / "ds"
    folder.mkdir()
    body = "chr20\t1\t.\tA\tG\t.\tPASS\t.\tGT\t0/1\n" * 200_000
    (folder / "genotypes.vcf.gz").write_bytes(
        gzip.compress(("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\t"
                       "FORMAT\tVCF-00001\n" + body).encode(), 1)
    )  # fmt: skip
    t0 = time.perf_counter()
    c = Cohort.from_data(tmp_path)
    assert time.perf_counter() - t0 < 0.5
    assert "VCF-00001" in c


def test_a_missing_data_root_is_an_empty_cohort(tmp_path):
    c = Cohort.from_data(tmp_path / "nothing")
    assert len(c) == 0 and c.people_in("NIG-000001") == set()


def test_ids_are_held_only_as_keyed_digests(tmp_path):
    c = Cohort.from_ids(IDS)
    held = bytes(c._digests) + b"".join(p.pattern for p in c._patterns)
    assert not any(i.lower().encode() in held or i.encode() in held for i in IDS)
    d = c.people_in("NIG-000001")
    assert len(d) == 1 and len(next(iter(d))) == 8
    assert next(iter(d)) != hashlib.blake2b(b"nig-000001", digest_size=8).digest()


def test_numbers_and_short_tokens_are_not_held_as_ids():
    c = Cohort.from_ids(["100234", "12", "A1", "1.5e3", "HG00096"])
    assert len(c) == 1 and c.skipped == 4
    assert c.people_in("pos 100234 n 12 A1") == set()


def test_memory_held_for_ids_is_eight_bytes_an_id_and_a_little():
    c = Cohort.from_ids(f"NIG-{i:06d}" for i in range(100_000))
    assert 800_000 <= c.nbytes < 900_000


def test_many_id_shapes_still_work():
    ids = [
        f"{random.Random(i).choice('ABCDEFGHIJKLMNOPQRST')}{chr(65 + i % 26)}{i:05d}"
        for i in range(500)
    ]
    ids += [f"S{i}-X" for i in range(1000, 1100)]
    c = Cohort.from_ids(ids)
    text = " ".join(ids[::7]) + " ZZ99999 S99-X"
    assert len(c.people_in(text)) == len(ids[::7])


# ---------------------------------------------------------------------------
# bounds


def test_a_200_mb_input_returns_quickly(rec):
    block = af_table().encode()
    data = block * (200 * 1024 * 1024 // len(block))
    t0 = time.perf_counter()
    v = rec.bytes(data)
    took = time.perf_counter() - t0
    assert v.kind is None and not v.opaque
    assert took < 2.0, took


def test_records_in_the_middle_of_a_long_text_are_found_near_their_signature(rec):
    pad = gwas_table() * 60  # about 2 MB
    v = rec.text(pad + VCF_RECORDS + pad)
    assert v.kind == "vcf"


def test_a_gzip_bomb_is_bounded(rec):
    bomb = gzip.compress(b"\0" * (1024 * 1024), 9) * 512  # 512 MiB of zeros in 512 members
    t0 = time.perf_counter()
    v = rec.bytes(bomb)
    assert time.perf_counter() - t0 < 2.0
    assert v.kind is None


def test_deep_nesting_is_bounded(rec):
    data = CLINICAL.encode()
    for _ in range(30):
        data = gzip.compress(data, 1)
    v = rec.bytes(data)
    assert v.kind is None and v.opaque  # beyond the depth limit: not decoded, metered as opaque
    assert "nested in more than" in v.how


def test_many_archive_members_are_bounded(rec):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for k in range(2000):
            z.writestr(f"m{k}.txt", b"summary\n")
        z.writestr("last.tsv", CLINICAL)
    t0 = time.perf_counter()
    rec.bytes(buf.getvalue())
    assert time.perf_counter() - t0 < 2.0


def test_a_big_file_is_read_in_windows(rec, tmp_path):
    path = tmp_path / "big.tsv"
    with open(path, "wb") as f:
        f.write(af_table().encode())
        f.seek(300 * 1024 * 1024)
        f.write(b"\n" + VCF_RECORDS.encode())
    t0 = time.perf_counter()
    v = rec.file(path)
    assert time.perf_counter() - t0 < 2.0
    assert v.kind == "vcf"


def test_a_json_text_too_large_to_parse_is_read_as_text(cohort):
    """Parsing JSON whole is bounded (json_bytes, by content.json_cost: 8 MB of small dicts
    would take 300 MB); over the bound the text is scanned as a text too big to hold is."""
    import tracemalloc

    tiny = b"[" + b",".join([b'{"a":1}'] * 1_000_000) + b"]"
    rec = Recogniser(cohort)
    assert content.json_cost(len(tiny), content.json_tokens(tiny)) > rec.json_bytes
    tracemalloc.start()
    v = rec.bytes(tiny)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert v.kind is None and peak < 64 * 1024 * 1024, peak
    doc = json.dumps({"samples": IDS[:3], "note": "x" * 1000}).encode()
    assert len(Recogniser(cohort).bytes(doc).people) == 3
    assert len(Recogniser(cohort, json_bytes=1).bytes(doc).people) == 3  # not parsed, still seen


@pytest.mark.parametrize("name", ["parquet", "xlsx", "parquet-in-zip", "npy-dosages"])
def test_a_file_too_big_to_hold_is_read_where_it_lies(cohort, tmp_path, name):
    path = tmp_path / "big"
    path.write_bytes(STRUCTURED[name](tmp_path))
    small = Recogniser(cohort, full_bytes=1024, scan_head=4096, scan_tail=1024)
    assert path.stat().st_size > small.full_bytes
    assert small.file(path).kind in ("people-table", "genotype-matrix")


def test_text_of_ten_megabytes_of_summaries_is_fast(rec):
    text = gwas_table() * (10 * 1024 * 1024 // len(gwas_table()))
    rec.text(text[:100_000])
    t0 = time.perf_counter()
    v = rec.text(text)
    took = time.perf_counter() - t0
    assert v.kind is None
    assert took < 0.5, took  # about 0.1 s on the development machine


@pytest.mark.parametrize("name", ["parquet", "arrow-stream", "xlsx", "sqlite", "pickle-dataframe",
                                  "npy-dosages", "parquet-in-zip", "html-table"])  # fmt: skip
def test_damaged_content_never_raises(rec, tmp_path, name):
    data = STRUCTURED[name](tmp_path)
    rng = random.Random(name)
    for _ in range(30):
        d = bytearray(data[: rng.randrange(1, len(data) + 1)])
        for _ in range(rng.randint(0, 6)):
            d[rng.randrange(len(d))] = rng.randrange(256)
        assert isinstance(rec.bytes(bytes(d)), Verdict)
        assert isinstance(rec.text(bytes(d).decode("latin-1")), Verdict)


def test_a_parser_error_reads_as_opaque(rec, monkeypatch):
    def broken(self, *args):
        raise KeyError("a bug")

    monkeypatch.setattr(_Scan, "npy", broken)
    v = rec.bytes(STRUCTURED["npy-dosages"](None))
    assert v.opaque and v.kind is None and "KeyError" in v.how


# ---------------------------------------------------------------------------
# the verdict


def test_every_kind_reported_is_in_the_kinds_table_in_both_languages():
    for kind in recognise.OWN_KINDS:
        en, ja = KINDS[kind]
        assert en and ja


def test_the_sniffers_disabled_kinds_are_not_reported(cohort):
    from extensions.guard.sniff import Sniffer

    r = Recogniser(cohort, Sniffer(disabled_kinds={"clinical-rows"}))
    assert r.text(CLINICAL_NO_IDS).kind is None


def test_a_verdict_is_frozen_and_describes_itself():
    v = Verdict("vcf", "its VCF header", "VCF ヘッダー", frozenset(), 3, False)
    with pytest.raises(AttributeError):
        v.kind = None
    assert v.describe_en() == "VCF variant calls (its VCF header)"
    assert v.describe_ja() == "VCF バリアントコール（VCF ヘッダー）"
    opaque = Verdict(None, "zstd stream (cannot be decoded here)", "zstd", frozenset(), 0, True)
    assert opaque.describe_en().startswith("content that cannot be read here")


# ---------------------------------------------------------------------------
# the prefilters: the same verdicts as the full parse of every line


@pytest.fixture
def full_parse(monkeypatch):
    """Switch the C-speed prefilters (recognise/genotypes.py, sniff/records.py) off for one call."""
    from extensions.guard.sniff import records as sniff_records

    def run(fn):
        with monkeypatch.context() as m:
            m.setattr(genotypes, "PREFILTER", False)
            m.setattr(sniff_records, "PREFILTER", False)
            return fn()

    return run


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("content", list(CONTENTS))
def test_prefilters_change_no_verdict_on_individual_level_content(
    rec, full_parse, content, encoding
):
    data = ENCODINGS[encoding](CONTENTS[content][0].encode())
    assert rec.bytes(data) == full_parse(lambda: rec.bytes(data))
    text = data.decode("utf-8", "surrogateescape")
    assert rec.text(text) == full_parse(lambda: rec.text(text))


@pytest.mark.parametrize("name", list(NORMAL))
def test_prefilters_change_no_verdict_on_results(rec, full_parse, name):
    data = NORMAL[name]()
    assert rec.bytes(data) == full_parse(lambda: rec.bytes(data))


# cells a table of results or of genotypes may hold, and ones made to be near either
_CELLS = (
    ["0", "1", "2", "-1", "NA", "nan", "<NA>", ".", "None", "null", "N/A", "./.", ".|.", "..."]
    + ["0.0", "1.", "2.0", "2.000", "1.95", "0.03", ".5", "0.999999999", "1.23456789012"]
    + ["2.5", "2.05", "3", "10", "-0.5", "-2", "1e-3", "5.000e-01", "0.5e1", "00", "01", "+1"]
    + ["rs123", "A", "G", "chr1", "male", "female", "20-29", "Tokyo", "E11.9", "NIG-000001"]
    + ["", " ", "'1'", '"0"', "[1", "2]", "(0)", "{2}", " 1 ", "na n", "1 2", "é", "Ｋ", "٣"]
    + ["1\r", "x\r", "\x0b1", "1\x1c", "0\x85", "1\u2028", "\xa02", "|", ";", ",", "\t"]
)


def _random_table(rng: random.Random) -> str:
    seps = ["\t", ",", "|", ";", " ", "  ", " \t ", ", ", "\x1c"]
    codes = ["0", "1", "2", "0.5", "1.98", "NA", "./."]
    lines = []
    for _ in range(rng.randrange(1, 60)):
        sep = rng.choice(seps)
        n = rng.choice([1, 2, 3, 4, 5, 8, 10, 18, 19, 20, 21, 25, 40])
        share = rng.random()
        cells = [
            rng.choice(codes) if rng.random() < share else rng.choice(_CELLS) for _ in range(n)
        ]
        line = sep.join(cells)
        if rng.random() < 0.2:
            line = rng.choice([" ", "  ", "\t", "'", "["]) + line
        if rng.random() < 0.2:
            line += rng.choice(["\r", " ", "\t", ",", "]"])
        lines.append(line)
    return "\n".join(lines) + rng.choice(["", "\n", "\r\n"])


def test_genotype_prefilter_matches_the_full_parse_on_random_tables(rec, full_parse):
    rng = random.Random(20261207)
    found = 0
    for _ in range(3000):
        data = _random_table(rng).encode("utf-8").lower()
        scan = _Scan(rec)
        fast = scan.genotype_lines(data)
        assert fast == full_parse(lambda d=data, s=scan: s.genotype_lines(d)), data
        found += fast.found()
    assert found  # some of them are genotype matrices


def test_genotype_prefilter_matches_the_full_parse_on_summary_tables(rec, full_parse):
    rng = random.Random(5)
    for sep in ("\t", ",", "|", ";", " ", "   "):
        lines = ["chrom pos id ref alt ac an af beta p".replace(" ", sep)]
        for i in range(3000):
            ac = rng.randrange(0, 4000)
            cells = ["1", str(1000 + i), f"rs{i}", "A", "G", str(ac), "4000", f"{ac / 4000:.6f}",
                     f"{rng.gauss(0, 0.1):.5f}", f"{rng.random():.3e}"]  # fmt: skip
            lines.append(sep.join(cells))
        data = "\n".join(lines).encode().lower()
        scan = _Scan(rec)
        assert scan.genotype_lines(data) == full_parse(lambda d=data, s=scan: s.genotype_lines(d))


def test_genotype_prefilter_reads_only_the_rows_the_full_parse_reads(rec, full_parse):
    rows = "label\tx\ty\n" * 3990 + "0\t1\t2\t1\t0\n" * 40
    data = rows.encode()
    scan = _Scan(rec)
    fast = scan.genotype_lines(data)
    assert fast == full_parse(lambda: scan.genotype_lines(data))
    assert fast.narrow == 10  # the first 4000 lines only


def test_a_hex_dump_without_offsets_is_read_again_whole_and_in_terminal_chunks():
    """`od -An -t x1 -v clinical.tsv`: lines of hex bytes only (the attack suite's od row)."""
    ids = [f"NIG-{i:06d}" for i in range(1, 201)]
    table = "sample_id\tage_band\tsex\n" + "".join(f"{i}\t20-29\tfemale\n" for i in ids)
    raw = table.encode()
    lines = [" " + " ".join(f"{b:02x}" for b in raw[i : i + 16]) for i in range(0, len(raw), 16)]
    dump = "\n".join(lines) + "\n"
    r = Recogniser(Cohort.from_ids(ids))
    assert len(r.text(dump).people) == 200
    for start in range(0, len(dump), 4096):
        chunk = dump[start : start + 4096]
        assert len(r.text(chunk).people) > 10
    numbers = "".join(
        f"{i % 90 + 10} {i % 80 + 10} {i % 70 + 10} {i % 60 + 10}\n" for i in range(50)
    )
    assert r.text(numbers).kind is None
