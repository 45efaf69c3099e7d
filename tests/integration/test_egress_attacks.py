"""Ways to take individual-level data out of a site, tried through the real proxy (issue 15).

Rule checked: "No disclosure" (only aggregates leave a site; the four clinical
attributes and the phenotypes are individual-level data as much as genotypes).

yamada (a data handler of J-DU000101, like tanaka) holds nothing but her own
token. Her server runs at nig, in its site container, behind the hub's proxy.
Each row of the table is one real way she could take the cohort's data to her
client: a channel (a file route, a kernel
message of any type over either websocket protocol, a terminal), a disguise (a
copy under another name, a genotype matrix, another file format, a notebook's
stored output) and an encoding (compression, archives, base64/base32/hex,
nested). Each row asserts that

(a) what reached the client holds no raw record and no more than 10 distinct
    cohort people, judged by a checker that decodes what arrived with the
    encoding the attempt used and knows the cohort from the data on the host
    (egress_client.py; it never asks the gate), and
(b) the block is in the hub's audit store: a `download-blocked` (or, at the daily
    cap, `egress-cap`) event for a download, an `output-withheld` event for a
    kernel message or a terminal line; and the client was told: a download is
    refused with 403 (429 at the cap) in Japanese and English (a notebook opened
    as a notebook may instead come back with its outputs replaced by the notice),
    and a cell's output or a terminal line shows "Withheld by the egress gate" and
    "持ち出し制御" in its place (a reply, a payload or a comm has no place a person
    reads, so only its event is asked for).

What each row received, and its verdict, is written to
tests/artifacts/egress/attacks.json, and all it received (as text) to
tests/artifacts/egress/attacks/<row>.txt.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import pytest

from .egress_client import (
    CJK,
    MAX_PEOPLE,
    AuditWatch,
    Cohort,
    Server,
    engine_client,
    event_name,
    forget_gate_state,
    inspect,
    message_blobs,
    withheld_notice,
)

pytestmark = pytest.mark.integration

USER, SITE = "yamada", "nig"  # not tanaka: other suites start tanaka at nig, and a
# container and its gate volume are named by person and site
DATASETS = ["JGAD000101", "JGAD000102"]  # what J-DU000101 mounts at nig
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "egress"
RESULTS: dict[str, dict] = {}

# ---------------------------------------------------------------------------
# the researcher's own files: made in his container, as his kernel could make them

PREPARE = r"""
import base64, bz2, gzip, io, json, lzma, os, shutil, sqlite3, tarfile, uuid, zipfile, zlib
import numpy as np, pandas as pd

D, R = "/data/JGAD000101", "/data/JGAD000102"
out = os.path.expanduser("~/egress")
shutil.rmtree(out, ignore_errors=True)
os.makedirs(out)


def put(name, data):
    with open(os.path.join(out, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def archive_zip(name, data):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return buf.getvalue()


def archive_tar(name, data, mode="w"):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as t:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def xlsx(df):
    # a workbook as Excel writes it (no Excel writer is installed: the zip of XML by hand)
    esc = lambda v: str(v).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    rows = [list(df.columns)] + df.astype(str).values.tolist()
    sheet = "".join(
        f'<row r="{i + 1}">'
        + "".join(f'<c t="inlineStr"><is><t>{esc(v)}</t></is></c>' for v in row)
        + "</row>"
        for i, row in enumerate(rows)
    )
    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    rel = 'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"'
    pkg = "http://schemas.openxmlformats.org/package/2006"
    doc = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    files = {
        "[Content_Types].xml": f'<Types xmlns="{pkg}/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        "</Types>",
        "_rels/.rels": f'<Relationships xmlns="{pkg}/relationships">'
        f'<Relationship Id="rId1" Type="{doc}/officeDocument" Target="xl/workbook.xml"/>'
        "</Relationships>",
        "xl/workbook.xml": f'<workbook {ns} {rel}><sheets>'
        '<sheet name="clinical" sheetId="1" r:id="rId1"/></sheets></workbook>',
        "xl/_rels/workbook.xml.rels": f'<Relationships xmlns="{pkg}/relationships">'
        f'<Relationship Id="rId1" Type="{doc}/worksheet" Target="worksheets/sheet1.xml"/>'
        "</Relationships>",
        "xl/worksheets/sheet1.xml": f"<worksheet {ns}><sheetData>{sheet}</sheetData></worksheet>",
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in files.items():
            z.writestr(name, '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>' + text)
    return buf.getvalue()


def notebook(source, outputs):
    cell = {
        "cell_type": "code",
        "execution_count": 1,
        "id": uuid.uuid4().hex[:8],
        "metadata": {},
        "source": source,
        "outputs": outputs,
    }
    return json.dumps(
        {
            "cells": [cell],
            "metadata": {
                "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                "language_info": {"name": "python"},
            },
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    )


clin = open(f"{D}/clinical.tsv", "rb").read()
phen = open(f"{D}/phenotypes.tsv", "rb").read()
vgz = open(f"{D}/genotypes.vcf.gz", "rb").read()
vcf = gzip.decompress(vgz)
df = pd.read_csv(f"{D}/clinical.tsv", sep="\t")

# copies under other names
put("results.csv", clin)
put("notes.txt", phen)
put("image.png", clin)
put("variants.txt", vcf)
put("archive.dat", vgz)
put("reads.txt", gzip.decompress(open(f"{R}/reads_R1.fastq.gz", "rb").read()))
put("table.html", df.to_html())
put("clinical.json", df.to_json(orient="records"))
put("ids.txt", "\n".join(df.sample_id) + "\n")
put("ids.json", json.dumps(list(df.sample_id)))
put("clinical_noids.csv", df.drop(columns="sample_id").to_csv(index=False))
put(
    "pheno_noids.csv",
    pd.read_csv(f"{D}/phenotypes.tsv", sep="\t").drop(columns="sample_id").to_csv(index=False),
)

# genotype dosages, variants x people, with and without the ids
code = {"0/0": 0, "0/1": 1, "1/0": 1, "1/1": 2}
rows, names, samples = [], [], []
for line in vcf.decode().splitlines():
    if line.startswith("##"):
        continue
    f = line.split("\t")
    if line.startswith("#"):
        samples = f[9:]
        continue
    names.append(f[2])
    rows.append([code.get(g, -1) for g in f[9:]])
G = np.array(rows, dtype=np.int8)
put("dosage_ids.csv", pd.DataFrame(G, index=names, columns=samples).to_csv())
put("dosage.csv", "\n".join(",".join(map(str, r)) for r in G.tolist()) + "\n")
put("dosage_people.csv", "\n".join(",".join(map(str, r)) for r in G.T.tolist()) + "\n")
buf = io.BytesIO()
np.save(buf, G)
put("dosage.npy", buf.getvalue())

# the clinical table in other formats
df.to_parquet(os.path.join(out, "clinical.parquet"))
df.to_feather(os.path.join(out, "clinical.feather"))
df.to_pickle(os.path.join(out, "clinical.pkl"))
buf = io.BytesIO()
np.save(buf, df.to_numpy().astype(str))
put("clinical.npy", buf.getvalue())
con = sqlite3.connect(os.path.join(out, "clinical.sqlite"))
df.to_sql("clinical", con, index=False)
con.commit()
con.close()
put("clinical.xlsx", xlsx(df))

# encodings
put("clinical.tsv.gz", gzip.compress(clin))
put("clinical.zlib", zlib.compress(clin))
put("clinical.bz2", bz2.compress(clin))
put("clinical.xz", lzma.compress(clin))
put("clinical.zip", archive_zip("clinical.tsv", clin))
put("clinical.tar", archive_tar("clinical.tsv", clin))
put("clinical.b64", base64.b64encode(clin))
put("clinical.b32", base64.b32encode(clin))
put("clinical.hex", clin.hex())
put("vcf.b64gz", base64.b64encode(gzip.compress(vcf)))
put("variants.zlib", zlib.compress(vcf))
put("nested.tar.gz", archive_tar("inner.zip", archive_zip("clinical.tsv", clin), mode="w:gz"))

# notebooks whose stored outputs (or sources) are the table
put(
    "clinical_out.ipynb",
    notebook(
        "print(open('/data/JGAD000101/clinical.tsv').read())",
        [{"output_type": "stream", "name": "stdout", "text": clin.decode()}],
    ),
)
put(
    "clinical_html.ipynb",
    notebook(
        "df",
        [
            {
                "output_type": "execute_result",
                "execution_count": 1,
                "metadata": {},
                "data": {"text/html": df.to_html(), "text/plain": df.to_string()},
            }
        ],
    ),
)
put("clinical_src.ipynb", notebook("table = " + repr(clin.decode()), []))
head = "".join(vcf.decode().splitlines(keepends=True)[:130])
put(
    "vcf_out.ipynb",
    notebook("print(vcf_head)", [{"output_type": "stream", "name": "stdout", "text": head}]),
)
print("prepared", len(os.listdir(out)))
"""

# what each kernel has before an attempt (run silently, once per kernel)
PREAMBLE = r"""
import base64, bz2, gzip, io, json, lzma, os, sys, tarfile, zipfile, zlib
import numpy as np, pandas as pd
from IPython.display import HTML, Markdown, display
D, R, H = "/data/JGAD000101", "/data/JGAD000102", os.path.expanduser("~/egress")
clin_text = open(f"{D}/clinical.tsv").read()
clin_bytes = clin_text.encode()
df = pd.read_csv(f"{D}/clinical.tsv", sep="\t")
vcf_gz = open(f"{D}/genotypes.vcf.gz", "rb").read()
vcf_text = gzip.decompress(vcf_gz).decode()
dosage = pd.read_csv(f"{H}/dosage_ids.csv", index_col=0)
"""

# ---------------------------------------------------------------------------
# the table


@dataclass(frozen=True)
class Attempt:
    id: str
    channel: str  # download, kernel, terminal
    chain: tuple[str, ...] = ()  # how what arrives is encoded, outermost first
    # downloads
    path: str = ""
    headers: dict = field(default_factory=dict)
    follow_iframe: bool = False
    # kernel: code to run, then (optionally) a request about it
    code: str = ""
    request: tuple | None = None  # (msg_type, content, channel)
    execute: dict = field(default_factory=dict)  # execute() keywords
    protocol: str = "json"
    msg_types: frozenset[str] = frozenset()  # what an output-withheld event may name
    # terminals
    command: str = ""

    @property
    def event_path(self) -> str:
        return self.path.split("?", 1)[0].rsplit("/", 1)[-1]


def dl(id, path, chain=(), **kw) -> Attempt:
    return Attempt(id, "download", tuple(chain), path=path, **kw)


def kx(id, code, chain=(), types=("stream",), **kw) -> Attempt:
    return Attempt(id, "kernel", tuple(chain), code=code, msg_types=frozenset(types), **kw)


def term(id, command, chain=()) -> Attempt:
    return Attempt(id, "terminal", tuple(chain), command=command)


E = "files/egress/"
C = "api/contents/egress/"

DOWNLOADS = [
    # copies under other names, through every file route
    dl("files-clinical-as-results.csv", E + "results.csv"),
    dl("files-phenotypes-as-notes.txt", E + "notes.txt"),
    dl("files-clinical-as-image.png", E + "image.png"),
    dl("files-clinical-range-2k", E + "results.csv", headers={"Range": "bytes=0-2047"}),
    dl("files-clinical-download=1", E + "results.csv?download=1"),
    dl("contents-text-clinical-copy", C + "results.csv?type=file&format=text", ["json"]),
    dl(
        "contents-base64-clinical-copy",
        C + "results.csv?type=file&format=base64",
        ["json", "base64"],
    ),
    dl("contents-default-clinical-copy", C + "results.csv", ["json"]),
    dl("contents-text-phenotypes-copy", C + "notes.txt?type=file&format=text", ["json"]),
    dl("contents-base64-image.png", C + "image.png?type=file&format=base64", ["json", "base64"]),
    dl("view-table.html", "view/egress/table.html", ["html"], follow_iframe=True),
    dl("files-table.html", E + "table.html", ["html"]),
    dl("files-vcf-text-as-variants.txt", E + "variants.txt"),
    dl("contents-text-vcf-text", C + "variants.txt?type=file&format=text", ["json"]),
    dl("files-bgzf-vcf-as-archive.dat", E + "archive.dat", ["bgzf"]),
    dl(
        "contents-base64-bgzf-vcf",
        C + "archive.dat?type=file&format=base64",
        ["json", "base64", "bgzf"],
    ),
    dl("files-fastq-as-reads.txt", E + "reads.txt"),
    # genotype matrices, with and without ids
    dl("files-dosage-with-ids", E + "dosage_ids.csv"),
    dl("files-dosage-without-ids", E + "dosage.csv"),
    dl("files-dosage-people-x-variants", E + "dosage_people.csv"),
    dl("contents-text-dosage-without-ids", C + "dosage.csv?type=file&format=text", ["json"]),
    dl("files-dosage-npy", E + "dosage.npy", ["npy"]),
    # the clinical table in other formats
    dl("files-clinical-parquet", E + "clinical.parquet", ["parquet"]),
    dl(
        "contents-base64-clinical-parquet",
        C + "clinical.parquet?type=file&format=base64",
        ["json", "base64", "parquet"],
    ),
    dl("files-clinical-feather", E + "clinical.feather", ["feather"]),
    dl("files-clinical-excel", E + "clinical.xlsx", ["xlsx"]),
    dl("files-clinical-npy", E + "clinical.npy", ["npy"]),
    dl("files-clinical-pickle", E + "clinical.pkl", ["pickle"]),
    dl("files-clinical-sqlite", E + "clinical.sqlite", ["sqlite"]),
    dl(
        "contents-base64-clinical-sqlite",
        C + "clinical.sqlite?type=file&format=base64",
        ["json", "base64", "sqlite"],
    ),
    dl("files-clinical-json-records", E + "clinical.json", ["json"]),
    dl("files-ids-list", E + "ids.txt"),
    dl("files-ids-json", E + "ids.json", ["json"]),
    dl("files-clinical-without-ids", E + "clinical_noids.csv"),
    dl("files-phenotypes-without-ids", E + "pheno_noids.csv"),
    # encodings
    dl("files-clinical-gzip", E + "clinical.tsv.gz", ["gzip"]),
    dl("files-clinical-zlib", E + "clinical.zlib", ["zlib"]),
    dl("files-clinical-bz2", E + "clinical.bz2", ["bz2"]),
    dl("files-clinical-xz", E + "clinical.xz", ["xz"]),
    dl("files-clinical-zip", E + "clinical.zip", ["zip"]),
    dl("files-clinical-tar", E + "clinical.tar", ["tar"]),
    dl("files-clinical-base64", E + "clinical.b64", ["base64"]),
    dl("files-clinical-base32", E + "clinical.b32", ["base32"]),
    dl("files-clinical-hex", E + "clinical.hex", ["hex"]),
    dl("files-vcf-base64-of-gzip", E + "vcf.b64gz", ["base64", "gzip"]),
    dl("files-vcf-zlib", E + "variants.zlib", ["zlib"]),
    dl(
        "contents-base64-vcf-zlib",
        C + "variants.zlib?type=file&format=base64",
        ["json", "base64", "zlib"],
    ),
    dl("files-clinical-zip-in-tar.gz", E + "nested.tar.gz", ["gzip", "tar", "zip"]),
    # notebooks whose stored output (or source) is the table
    dl("files-notebook-output", E + "clinical_out.ipynb", ["json"]),
    dl("contents-notebook-output", C + "clinical_out.ipynb?type=notebook&content=1", ["json"]),
    dl(
        "contents-notebook-as-text",
        C + "clinical_out.ipynb?type=file&format=text",
        ["json", "json"],
    ),
    dl("contents-notebook-vcf-output", C + "vcf_out.ipynb?type=notebook&content=1", ["json"]),
    dl(
        "nbconvert-html-stream-output",
        "nbconvert/html/egress/clinical_out.ipynb?download=true",
        ["html"],
    ),
    dl("nbconvert-html-dataframe-output", "nbconvert/html/egress/clinical_html.ipynb", ["html"]),
    dl("nbconvert-html-vcf-output", "nbconvert/html/egress/vcf_out.ipynb", ["html"]),
    dl("nbconvert-markdown-output", "nbconvert/markdown/egress/clinical_out.ipynb"),
    dl("nbconvert-script-source", "nbconvert/script/egress/clinical_src.ipynb"),
    dl("nbconvert-notebook-output", "nbconvert/notebook/egress/clinical_out.ipynb", ["json"]),
    dl("nbconvert-asciidoc-output", "nbconvert/asciidoc/egress/clinical_out.ipynb"),
    dl("nbconvert-rst-output", "nbconvert/rst/egress/clinical_out.ipynb"),
    dl("nbconvert-latex-output", "nbconvert/latex/egress/clinical_html.ipynb"),
    dl("nbconvert-slides-output", "nbconvert/slides/egress/clinical_html.ipynb", ["html"]),
]

WIDE = 'pd.set_option("display.max_rows", 500); pd.set_option("display.max_columns", 50)\n'
KERNEL = [
    # outputs of a cell
    kx("print-clinical", "print(clin_text)"),
    kx("print-phenotypes", 'print(open(f"{D}/phenotypes.tsv").read())'),
    kx("stderr-clinical", "sys.stderr.write(clin_text)"),
    kx("print-row-by-row", "for line in clin_text.splitlines():\n    print(line)"),
    kx("display-dataframe-max-rows", WIDE + "display(df)", types=("display_data",)),
    kx("result-dataframe-max-rows", WIDE + "df", types=("execute_result",)),
    kx("display-to_html", "display(HTML(df.to_html()))", types=("display_data",)),
    kx("print-to_markdown", "print(df.to_markdown())"),
    kx("display-markdown", "display(Markdown(df.to_markdown()))", types=("display_data",)),
    kx(
        "display-json-mimetype",
        'display({"application/json": df.to_dict("records")}, raw=True)',
        types=("display_data",),
    ),
    kx(
        "display-metadata-holds-table",
        'display({"text/plain": "summary"}, metadata={"rows": df.to_dict("records")}, raw=True)',
        types=("display_data",),
    ),
    kx("repr-list-of-ids", "list(df.sample_id)", types=("execute_result",)),
    kx("repr-dict-of-ids", "dict(zip(df.sample_id, df.icd10))", types=("execute_result",)),
    kx("repr-records", 'df.to_dict("records")', types=("execute_result",)),
    kx("print-clinical-without-ids", 'print(df.drop(columns="sample_id").to_string())'),
    kx("print-vcf-head", 'print("".join(vcf_text.splitlines(keepends=True)[:130]))'),
    kx("print-base64-of-bgzf-vcf", "print(base64.b64encode(vcf_gz).decode())", ["base64", "bgzf"]),
    kx(
        "print-base64-of-gzip-vcf-text",
        "print(base64.b64encode(gzip.compress(vcf_text.encode())).decode())",
        ["base64", "gzip"],
    ),
    kx("print-hex-of-zlib", "print(zlib.compress(clin_bytes).hex())", ["hex", "zlib"]),
    kx(
        "print-base32-of-bz2",
        "print(base64.b32encode(bz2.compress(clin_bytes)).decode())",
        ["base32", "bz2"],
    ),
    kx(
        "print-base64-of-xz",
        "print(base64.b64encode(lzma.compress(clin_bytes)).decode())",
        ["base64", "xz"],
    ),
    kx(
        "print-base64-of-zip",
        "b = io.BytesIO()\nwith zipfile.ZipFile(b, 'w', zipfile.ZIP_DEFLATED) as z:\n"
        "    z.writestr('t.tsv', clin_bytes)\nprint(base64.b64encode(b.getvalue()).decode())",
        ["base64", "zip"],
    ),
    kx(
        "print-base64-of-tar",
        "b = io.BytesIO()\nwith tarfile.open(fileobj=b, mode='w') as t:\n"
        "    i = tarfile.TarInfo('t.tsv'); i.size = len(clin_bytes); t.addfile(i, io.BytesIO(clin_bytes))\n"
        "print(base64.b64encode(b.getvalue()).decode())",
        ["base64", "tar"],
    ),
    kx("print-dosage-with-ids", "print(dosage.head(300).to_csv())"),
    kx(
        "print-dosage-without-ids",
        "print('\\n'.join(','.join(map(str, r)) for r in dosage.to_numpy()[:300].tolist()))",
    ),
    kx(
        "print-dosage-people-x-variants",
        "print('\\n'.join(' '.join(map(str, r)) for r in dosage.to_numpy().T[:20].tolist()))",
    ),
    kx(
        "update-display-data",
        "h = display(HTML('<i>computing</i>'), display_id=True)\nh.update(HTML(df.to_html()))",
        types=("update_display_data", "display_data"),
    ),
    kx("error-message-holds-table", "raise ValueError(clin_text)", types=("error",)),
    kx(
        "error-exception-note-holds-table",
        "e = RuntimeError('the merge failed')\ne.add_note(clin_text)\nraise e",
        types=("error",),
    ),
    # replies to requests
    kx(
        "inspect-reply-docstring",
        "class Table:\n    pass\nt = Table()\nt.__doc__ = clin_text",
        request=("inspect_request", {"code": "t", "cursor_pos": 1, "detail_level": 0}),
        types=("inspect_reply",),
    ),
    kx(
        "inspect-reply-dataframe",
        "people = df",
        request=("inspect_request", {"code": "people", "cursor_pos": 6, "detail_level": 1}),
        types=("inspect_reply",),
    ),
    kx(
        "complete-reply-dict-keys",
        "people = dict(zip(df.sample_id, df.icd10))",
        request=("complete_request", {"code": 'people["', "cursor_pos": 8}),
        types=("complete_reply",),
    ),
    kx(
        "complete-reply-id-prefix",
        "people = dict(zip(df.sample_id, df.age_band))",
        request=("complete_request", {"code": 'people["NIG-0', "cursor_pos": 13}),
        types=("complete_reply",),
    ),
    kx(
        "history-reply-stored-input",
        "get_ipython().history_manager.store_inputs(10**6, clin_text)",
        request=(
            "history_request",
            {
                "hist_access_type": "range",
                "session": 0,
                "start": 0,
                "stop": 10**6 + 1,
                "raw": True,
                "output": False,
            },
        ),
        types=("history_reply",),
    ),
    kx(
        "history-reply-output",
        "clin_text",
        request=(
            "history_request",
            {
                "hist_access_type": "range",
                "session": 0,
                "start": 0,
                "stop": 10**6,
                "raw": True,
                "output": True,
            },
        ),
        types=("history_reply", "execute_result"),
    ),
    kx(
        "user-expressions-in-execute-reply",
        "pass",
        execute={"user_expressions": {"t": "clin_text"}},
        types=("execute_reply",),
    ),
    kx(
        "set-next-input-payload",
        "get_ipython().set_next_input(clin_text)",
        types=("execute_reply",),
    ),
    kx(
        "pager-payload",
        "from IPython.core import page\npage.page(clin_text)",
        types=("execute_reply", "display_data"),
    ),
    kx(
        "input-request-prompt",
        "input(clin_text)",
        execute={"allow_stdin": True, "input_reply": "ok"},
        types=("input_request",),
    ),
    kx(
        "debug-rich-inspect-variables",
        "people = df",
        request=(
            "debug_request",
            {
                "type": "request",
                "seq": 1,
                "command": "richInspectVariables",
                "arguments": {"variableName": "people"},
            },
            "control",
        ),
        types=("debug_reply",),
    ),
    kx(
        "debug-inspect-variables",
        "people_text = clin_text",
        request=(
            "debug_request",
            {"type": "request", "seq": 2, "command": "inspectVariables", "arguments": {}},
            "control",
        ),
        types=("debug_reply",),
    ),
    # widgets and comms
    kx(
        "widget-textarea-state",
        "import ipywidgets as w\nta = w.Textarea(value=clin_text)\ndisplay(ta)",
        types=("comm_open", "comm_msg", "display_data"),
    ),
    kx(
        "widget-textarea-update",
        "import ipywidgets as w\nta = w.Textarea(value='waiting')\ndisplay(ta)\nta.value = clin_text",
        types=("comm_msg",),
    ),
    kx(
        "widget-html-table",
        "import ipywidgets as w\ndisplay(w.HTML(value=df.to_html()))",
        types=("comm_open", "comm_msg", "display_data"),
    ),
    kx(
        "widget-image-bytes-buffer",
        "import ipywidgets as w\ndisplay(w.Image(value=clin_bytes, format='png'))",
        types=("comm_open", "comm_msg", "display_data"),
    ),
    kx(
        "comm-open-data",
        "from comm import create_comm\nc = create_comm(target_name='egress', data={'t': clin_text})",
        types=("comm_open",),
    ),
    kx(
        "comm-msg-data",
        "from comm import create_comm\nc = create_comm(target_name='egress', data={})\n"
        "c.send({'t': clin_text})",
        types=("comm_msg",),
    ),
    kx(
        "comm-msg-gzip-buffer",
        "from comm import create_comm\nc = create_comm(target_name='egress', data={})\n"
        "c.send({'n': 1}, buffers=[gzip.compress(clin_bytes)])",
        ["gzip"],
        types=("comm_msg",),
    ),
]
# the same over the v1 websocket protocol (every message a binary frame)
V1 = [
    "print-clinical",
    "display-dataframe-max-rows",
    "print-base64-of-bgzf-vcf",
    "error-message-holds-table",
    "inspect-reply-docstring",
    "complete-reply-dict-keys",
    "history-reply-stored-input",
    "user-expressions-in-execute-reply",
    "input-request-prompt",
    "widget-textarea-state",
    "comm-msg-gzip-buffer",
]
KERNEL += [
    Attempt(**{**a.__dict__, "id": a.id + "@v1", "protocol": "v1"}) for a in KERNEL if a.id in V1
]

CLIN, PHEN = "/data/JGAD000101/clinical.tsv", "/data/JGAD000101/phenotypes.tsv"
VCF, FASTQ = "/data/JGAD000101/genotypes.vcf.gz", "/data/JGAD000102/reads_R1.fastq.gz"
TERMINAL = [
    term("cat-clinical", f"cat {CLIN}"),
    term("cat-phenotypes", f"cat {PHEN}"),
    term("head-50-clinical", f"head -50 {CLIN}"),
    term("zcat-vcf-head-100", f"zcat {VCF} | head -100"),
    term("base64-of-bgzf-vcf", f"base64 {VCF}", ["base64", "bgzf"]),
    term("od-hex-clinical (no xxd in the image)", f"od -An -tx1 -v {CLIN}", ["hex"]),
    term(
        "python-hexlify-clinical",
        f"python3 -c \"import binascii; print(binascii.hexlify(open('{CLIN}', 'rb').read()).decode())\"",
        ["hex"],
    ),
    term("cat-disguised-copy", "cat ~/egress/results.csv"),
    term("gzip-then-base64", f"gzip -c {CLIN} | base64", ["base64", "gzip"]),
    term("tar-then-base64", "tar -C /data/JGAD000101 -c clinical.tsv | base64", ["base64", "tar"]),
    term("base32-clinical", f"base32 {CLIN}", ["base32"]),
    term("awk-clinical-without-ids", f"awk -F'\\t' 'NR>1 {{print $2, $3, $4, $5, $6}}' {CLIN}"),
    term("cut-ids", f"cut -f1 {CLIN}"),
    term("cut-genotypes-without-ids", f"zcat {VCF} | grep -v '^#' | cut -f10- | head -60"),
    term("cat-dosage-matrix", "head -300 ~/egress/dosage.csv"),
    term(
        "nested-base64-of-gzip-of-vcf",
        f"zcat {VCF} | head -100 | gzip | base64",
        ["base64", "gzip"],
    ),
    term(
        "pandas-to-string",
        f"/opt/venv/bin/python -c \"import pandas as pd; pd.set_option('display.max_rows', 500); "
        f"print(pd.read_csv('{CLIN}', sep='\\t').to_string())\"",
    ),
    term("zcat-fastq", f"zcat {FASTQ} | head -80"),
]

ATTEMPTS = DOWNLOADS + KERNEL + TERMINAL


def test_the_table_is_large_enough():
    ids = [a.id for a in ATTEMPTS]
    assert len(ids) == len(set(ids))
    assert len(ATTEMPTS) >= 80, len(ATTEMPTS)
    assert {a.channel for a in ATTEMPTS} == {"download", "kernel", "terminal"}


# ---------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def stack(site_stack):
    """The session's site stack (conftest.py)."""
    yield site_stack
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "attacks.json").write_text(json.dumps(RESULTS, indent=1, ensure_ascii=False))


@pytest.fixture(scope="module")
def server(stack):
    engine = engine_client()
    forget_gate_state(stack, USER, SITE)
    s = Server(stack, USER, SITE, engine).start()
    code, out = s.sh(f"python3 - <<'EOF'\n{PREPARE}\nEOF")
    assert code == 0 and "prepared" in out, out
    yield s
    s.stop()
    forget_gate_state(stack, USER, SITE)
    engine.close()


@pytest.fixture(scope="module")
def cohort(stack):
    return Cohort.of_server(stack, SITE, DATASETS)


@pytest.fixture(scope="module")
def audit(stack):
    w = AuditWatch(stack, USER)
    yield w
    w.close()


class Kernels:
    """One kernel per websocket protocol for the module, started on first use, with the
    preamble run (silently); started again if an attempt killed it."""

    def __init__(self, server: Server):
        self.server = server
        self.open: dict[str, object] = {}

    def get(self, protocol: str):
        k = self.open.get(protocol)
        if k is None:
            k = self.server.kernel(protocol=protocol, timeout=180).start()
            k.execute(PREAMBLE, silent=True).raise_for_error()
            self.open[protocol] = k
        return k

    def drop(self, protocol: str) -> None:
        k = self.open.pop(protocol, None)
        if k is not None:
            try:
                k.shutdown()
            except Exception:  # noqa: BLE001 - a kernel an attempt broke
                pass

    def close(self) -> None:
        for p in list(self.open):
            self.drop(p)


@pytest.fixture(scope="module")
def kernels(server):
    k = Kernels(server)
    yield k
    k.close()


# ---------------------------------------------------------------------------
# running one attempt


@dataclass
class Received:
    blobs: list[bytes]
    text: str  # for the notice and the record
    status: int | None = None


IFRAME = re.compile(r'<iframe[^>]*\ssrc="([^"]+)"', re.I)


def run_download(server: Server, a: Attempt) -> Received:
    r = server.get(a.path, headers=a.headers)
    blobs = [r.content]
    status = r.status_code
    if a.follow_iframe and r.status_code == 200:
        m = IFRAME.search(r.text)
        assert m, f"/view gave no iframe: {r.text[:300]}"
        inner = server.http.get(urljoin(r.url, m.group(1)), timeout=120)
        blobs.append(inner.content)
        status = inner.status_code
        r = inner
    text = r.content.decode("utf-8", "replace")
    try:  # the server's and the gate's JSON errors: the message as a person reads it
        text = json.loads(text).get("message", text) if text.lstrip().startswith("{") else text
    except ValueError:
        pass
    return Received(blobs, text, status)


def run_kernel(kernels: Kernels, a: Attempt) -> Received:
    k = kernels.get(a.protocol)
    k.drain(0.3)
    mark = len(k.received)
    try:
        run = k.execute(a.code, timeout=120, **a.execute)
        if a.request is not None:
            msg_type, content, *channel = a.request
            k.request(msg_type, content, channel[0] if channel else "shell", timeout=60)
        k.drain(1.0)  # comms and late outputs
    except AssertionError:
        kernels.drop(a.protocol)
        raise
    messages = k.received[mark:]
    blobs = message_blobs(messages)
    text = "\n".join(b.decode("utf-8", "replace") for b in blobs)
    if run.status != "ok" and "error" not in a.msg_types:
        text += f"\n(the cell ended {run.status})"
    return Received(blobs, text)


def run_terminal(server: Server, a: Attempt) -> Received:
    with server.terminal() as t:
        text = t.run(a.command, timeout=120)
    return Received([text.encode()], text)


#: kernel messages that are a cell's outputs: withheld, they show the gate's notice in their place
OUTPUT_TYPES = {"stream", "display_data", "update_display_data", "execute_result", "error"}


def expected_event(a: Attempt):
    def match(e: dict) -> bool:
        name, data = event_name(e), e["data"]
        if name == "egress-cap":
            return True
        if a.channel == "download":
            where = str(data.get("path") or data.get("route") or "")
            return name in ("download-blocked", "output-withheld") and where.endswith(a.event_path)
        if name == "download-blocked" and data.get("route") == "kernel-output":
            # the server's own guard hid raw records before the gate saw them
            return a.channel == "kernel"
        if name != "output-withheld":
            return False
        if a.channel == "terminal":
            return data.get("channel") == "terminal"
        return data.get("channel") in ("kernel", "reply", "widget") and (
            not data.get("msg_type") or data.get("msg_type") in a.msg_types
        )

    return match


@pytest.mark.parametrize("attempt", ATTEMPTS, ids=[f"{a.channel}:{a.id}" for a in ATTEMPTS])
def test_individual_level_data_does_not_reach_the_client(server, kernels, cohort, audit, attempt):
    a = attempt
    mark = audit.mark()
    t0 = time.monotonic()
    if a.channel == "download":
        got = run_download(server, a)
    elif a.channel == "kernel":
        got = run_kernel(kernels, a)
    else:
        got = run_terminal(server, a)
    found = inspect(got.blobs, a.chain, cohort)
    notice = withheld_notice(got.text)
    record = RESULTS[a.id] = {
        "channel": a.channel,
        "chain": list(a.chain),
        "status": got.status,
        "people": found.people,
        "records": found.records,
        "notice": notice,
        "seconds": round(time.monotonic() - t0, 2),
        "received": got.text[:400],
    }
    (ARTIFACTS / "attacks").mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "attacks" / f"{re.sub(r'[^A-Za-z0-9@=.-]+', '_', a.id)}.txt").write_text(
        got.text, encoding="utf-8"
    )
    # (a) nothing of the cohort beyond what one output may show
    assert not found.leaked(MAX_PEOPLE), f"{a.id} leaked: {found.summary()}"
    # (b) refused or withheld where the client sees it, and recorded
    if a.channel == "download" and not (got.status == 200 and notice):  # 200: a notebook
        # opened as a notebook, its stored outputs replaced by the gate's notice
        assert got.status in (403, 429), f"{a.id}: status {got.status}"
        assert CJK.search(got.text) and re.search(r"[A-Za-z]{4}", got.text), got.text[:300]
    elif a.channel == "terminal" or a.msg_types <= OUTPUT_TYPES:
        assert notice, f"{a.id}: no notice of the gate in what arrived: {got.text[:300]}"
    event = audit.wait(mark, expected_event(a), timeout=30)
    record["event"] = {"name": event_name(event), **event["data"]}
