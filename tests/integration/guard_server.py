"""A real Jupyter server with the guard, on loopback, over a home and a data folder of real files.

Used by the bypass suite and the period tests. The server is the one the
container runs (jupyter_server with the guard's enable file), started as a
process; nothing of it is mocked.
"""

from __future__ import annotations

import bz2
import gzip
import http.client
import io
import json
import lzma
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
ENABLE_FILE = REPO / "extensions" / "guard" / "jupyter-config" / "visiting-guard.json"
FIXTURES = Path(__file__).parent / "fixtures"
TOKEN = "guard-test-token"


def wait_for(fn, timeout: float = 10.0, interval: float = 0.2):
    """The first truthy value of `fn()` within `timeout` seconds; AssertionError otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"not within {timeout} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen | None, timeout: float = 20) -> None:
    """Terminate a child the test started, killing it if it does not end in time."""
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tail_of(path: Path | None, n: int = 40) -> str:
    if not path or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


@dataclass
class GuardServer:
    """A running server; `get` sends a path exactly as written (no client-side normalising)."""

    root: Path
    home: Path
    data: Path
    spool: Path
    clock_file: Path
    port: int
    env: dict = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        self.log_path = self.root / f"server-{int(time.time() * 1000)}.log"
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", "--no-browser"],
            cwd=self.home,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited:\n{self.log_tail()}")
            try:
                r = requests.get(f"{self.url}/api/status", headers=self.auth, timeout=2)
                if r.status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the server did not answer:\n{self.log_tail()}")

    def stop(self) -> None:
        stop_process(self.proc)

    def log_tail(self, n: int = 40) -> str:
        return tail_of(self.log_path, n)

    @property
    def auth(self) -> dict:
        return {"Authorization": f"token {TOKEN}"}

    def get(self, path: str, method: str = "GET", body=None, headers=None):
        """(status, headers, body bytes) for a request sent byte for byte as given."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers={**self.auth, **(headers or {})})
            r = conn.getresponse()
            try:
                data = r.read()
            except http.client.IncompleteRead as e:
                data = e.partial
            return r.status, dict(r.getheaders()), data
        finally:
            conn.close()

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, self.url + path, headers=self.auth, timeout=60, **kwargs)

    # -- events ---------------------------------------------------------------

    def events(self) -> list[dict]:
        out = []
        for p in sorted(self.spool.glob("batch-*.jsonl")) + [self.spool / "queue.jsonl"]:
            if p.exists():
                out += [json.loads(line) for line in p.read_text().splitlines() if line]
        return out

    def mark(self) -> int:
        return len(self.events())

    def events_since(self, mark: int, name: str | None = None) -> list[dict]:
        evs = self.events()[mark:]
        if name:
            evs = [e for e in evs if e["schema"].endswith("/" + name)]
        return evs


def server_env(
    root: Path, home: Path, data: Path, spool: Path, clock_file: Path, port: int, **extra
):
    cfg = root / "jupyter-config"
    cfg.mkdir(exist_ok=True)
    config = json.loads(ENABLE_FILE.read_text())
    config["ServerApp"]["jpserver_extensions"]["naughty_ext"] = True
    config["ServerApp"].update(
        {
            "port": port,
            "ip": "127.0.0.1",
            "root_dir": str(home),
            "open_browser": False,
            "allow_root": True,
        }
    )
    config["IdentityProvider"] = {"token": TOKEN}
    (cfg / "jupyter_server_config.json").write_text(json.dumps(config))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JUPYTER", "VISITING_")) and k not in ("PYTHONPATH",)
    }
    env.update(
        {
            "HOME": str(home),
            "JUPYTER_CONFIG_DIR": str(cfg),
            "JUPYTER_CONFIG_PATH": str(cfg),
            "JUPYTER_DATA_DIR": str(root / "jupyter-data"),
            "JUPYTER_RUNTIME_DIR": str(root / "jupyter-runtime"),
            "JUPYTER_PLATFORM_DIRS": "1",
            "PYTHONPATH": os.pathsep.join([str(FIXTURES), str(REPO)]),
            "JUPYTERHUB_USER": "tanaka",
            "VISITING_SITE": "nig",
            "VISITING_APPROVAL_ID": "J-DU000101",
            "VISITING_APPROVAL_END": "2035-03-31T15:00:00+00:00",
            "VISITING_APPROVAL_END_DATE": "2035-03-31",
            "VISITING_DATASETS": "JGAD000101,JGAD000102",
            "VISITING_DATA_MOUNT": str(data),
            "VISITING_AUDIT_SPOOL": str(spool),
            "VISITING_CLOCK_FILE": str(clock_file),
            "VISITING_GUARD_RULES": json.dumps({"max_bytes": 8 * 1024 * 1024}),
            "VISITING_PERIOD_CHECK_SECONDS": "0.5",
            "VISITING_DATA_ACCESS_WINDOW": "0.5",
        }
    )
    env.update(extra)
    return env


# ---------------------------------------------------------------------------
# the files a researcher's home might hold


def bgzip(data: bytes) -> bytes:
    import pysam  # noqa: F401  (bgzip through the real htslib)

    return subprocess.run(["bgzip", "-c"], input=data, capture_output=True, check=True).stdout


def tiny_png() -> bytes:
    import struct
    import zlib

    def chunk(kind, payload):
        c = struct.pack(">I", len(payload)) + kind + payload
        return c + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes([x * 8 % 256, 100, 200] * 32) for x in range(32))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 32, 32, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def notebook(outputs: list[dict], source: str = "print('hello')") -> str:
    return json.dumps(
        {
            "cells": [
                {
                    "cell_type": "code",
                    "execution_count": 1,
                    "id": "c1",
                    "metadata": {},
                    "outputs": outputs,
                    "source": source,
                }
            ],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    )


def make_zoo(home: Path, data: Path) -> dict[str, Path]:
    """Raw data in disguise and real results, in a home folder; returns named paths."""
    analysis = data / "JGAD000101"
    raw = data / "JGAD000102"
    vcf_gz = (analysis / "genotypes.vcf.gz").read_bytes()
    vcf = gzip.decompress(vcf_gz)
    vcf_lines = vcf.decode().splitlines()
    records = "\n".join([ln for ln in vcf_lines if not ln.startswith("#")][:5]) + "\n"
    fastq = gzip.decompress((raw / "reads_R1.fastq.gz").read_bytes())
    bam = (raw / "aligned.bam").read_bytes()
    cram = (raw / "aligned.cram").read_bytes()

    home.mkdir(parents=True, exist_ok=True)
    (home / "data").symlink_to(data, target_is_directory=True)
    w = {}

    def put(name: str, content: bytes | str) -> Path:
        p = home / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content.encode() if isinstance(content, str) else content)
        w[name] = p
        return p

    put("genotypes.vcf.gz", vcf_gz)
    put("GENOTYPES.VCF", vcf)
    put("results.csv", vcf_gz)  # bgzipped VCF under a table's name
    put("plot.png.bak", bam)  # BAM named like a picture's backup
    put("figure.png", cram)  # CRAM named like a picture
    put("notes.txt", fastq[:200_000])
    put("reads.dat", gzip.compress(fastq[:200_000]))
    sam = subprocess.run(
        ["samtools", "view", "-h", str(raw / "aligned.bam")], capture_output=True, check=True
    ).stdout
    put("alignment.txt", sam[:100_000])
    bcf = subprocess.run(
        ["bcftools", "view", "-Ob", str(analysis / "genotypes.vcf.gz")],
        capture_output=True,
        check=True,
    ).stdout
    put("table.bin", bcf)
    put(
        "blocks.txt",
        "".join(
            f"chr1\t{1 + i * 100}\t.\tA\t<NON_REF>\t.\t.\tEND={100 + i * 100}\tGT:DP:GQ\t0/0:30:99\n"
            for i in range(20)
        ),
    )
    put("variants.txt.bz2", bz2.compress(vcf))
    put("variants.txt.xz", lzma.compress(vcf))
    # BGEN v1.2 header: offset, header length, M, N, magic
    import struct

    put("scores.dat", struct.pack("<IIII", 20, 20, 100, 20) + b"bgen" + b"\x00" * 200)
    # PLINK sets made by plink2 from the site's VCF
    plink_dir = home.parent / "plink-work"
    plink_dir.mkdir(exist_ok=True)
    for fmt in ("--make-bed", "--make-pgen"):
        subprocess.run(
            [
                "plink2",
                "--vcf",
                str(analysis / "genotypes.vcf.gz"),
                fmt,
                "--out",
                str(plink_dir / "cohort"),
                "--allow-extra-chr",
            ],
            capture_output=True,
            check=True,
        )
    put("matrix.dat", (plink_dir / "cohort.bed").read_bytes())
    put("markers.txt", (plink_dir / "cohort.bim").read_bytes())
    put("packed.dat", (plink_dir / "cohort.pgen").read_bytes())
    put("cohort.psam", (plink_dir / "cohort.psam").read_bytes())
    # archives
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("summary/readme.txt", "results")
        z.writestr("summary/genotypes.vcf", vcf)
    put("bundle.zip", buf.getvalue())
    inner = buf.getvalue()
    buf2 = io.BytesIO()
    with zipfile.ZipFile(buf2, "w") as z:
        z.writestr("outer.txt", "nothing here")
        z.writestr("inner.zip", inner)
    put("nested.zip", buf2.getvalue())
    buf3 = io.BytesIO()
    with tarfile.open(fileobj=buf3, mode="w:gz") as t:
        info = tarfile.TarInfo("export/calls.txt")
        info.size = len(vcf)
        t.addfile(info, io.BytesIO(vcf))
    put("export.tar.gz", buf3.getvalue())
    # raw records pasted into text
    numbers = "".join(f"{i},{i * 2},{i % 7}\n" for i in range(100_000))
    put("long_table.csv", "a,b,c\n" + numbers + records)
    geno_rows = "\n".join(
        "\t".join([f"S{i:03d}"] + [("0/1", "1/1", "0/0")[(i + j) % 3] for j in range(30)])
        for i in range(10)
    )
    put("genotype_matrix.tsv", geno_rows + "\n")
    put(
        "analysis.ipynb",
        notebook(
            [
                {
                    "output_type": "stream",
                    "name": "stdout",
                    "text": [ln + "\n" for ln in vcf_lines[-6:]],
                }
            ]
        ),
    )
    html = (
        "<html><body><pre>"
        + "\n".join(vcf_lines[:40]).replace("<", "&lt;")
        + "</pre></body></html>"
    )
    put("report.html", html)
    # stores
    mt = home / "cohort.mt"
    for sub in ("rows", "cols", "entries", "globals"):
        (mt / sub).mkdir(parents=True)
    (mt / "metadata.json.gz").write_bytes(
        gzip.compress(json.dumps({"name": "MatrixTableSpec", "hail_version": "0.2"}).encode())
    )
    (mt / "entries" / "part-0").write_bytes(b"\x00" * 100)
    w["cohort.mt/entries/part-0"] = mt / "entries" / "part-0"
    shutil.copytree(analysis / "genotypes.vcf.zarr", home / "store")
    chunk = next(p for p in (home / "store" / "call_genotype").rglob("*") if p.is_file())
    w["store-chunk"] = chunk
    # links, copies, renames
    (home / "summary.csv").symlink_to(home / "genotypes.vcf.gz")
    (home / "link2.csv").symlink_to(home / "summary.csv")
    (home / "data_file.csv").symlink_to(raw / "reads_R1.fastq.gz")
    os.link(home / "results.csv", home / "hardlinked.csv")
    # big, not raw
    put("big.csv", b"x,y\n" + b"1,2\n" * (3 * 1024 * 1024))

    # ---- real results, which must download
    put("plot.png", tiny_png())
    put(
        "gwas_summary.tsv",
        "chrom\tpos\tid\tref\talt\tbeta\tse\tp\n"
        + "".join(
            f"chr1\t{1000 + i}\trs{i}\tA\tG\t0.{i % 9}1\t0.05\t1e-{i % 8 + 1}\n" for i in range(200)
        ),
    )
    put(
        "allele_frequencies.csv",
        "chrom,pos,ref,alt,AC,AN,AF\n"
        + "".join(f"chr1,{1000 + i},A,G,{i},400,{i / 400:.4f}\n" for i in range(200)),
    )
    put("regions.bed", "".join(f"chr1\t{i * 100}\t{i * 100 + 50}\tregion{i}\n" for i in range(50)))
    put("report.pdf", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")
    put(
        "clean.ipynb",
        notebook(
            [
                {
                    "output_type": "display_data",
                    "metadata": {},
                    "data": {"image/png": "iVBORw0KGgo=", "text/plain": ["<Figure>"]},
                },
                {
                    "output_type": "execute_result",
                    "execution_count": 1,
                    "metadata": {},
                    "data": {"text/plain": ["   n  cases\n0  200  47"]},
                },
            ]
        ),
    )
    put(
        "script.py",
        "import hail as hl\nmt = hl.read_matrix_table('/data/x.mt')\nprint(mt.count())\n",
    )
    return w
