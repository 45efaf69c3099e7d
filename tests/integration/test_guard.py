"""The guard in a real Jupyter server: the bypass suite, allowed results, the period, events.

Rules checked: "No disclosure" and "Data kinds" (raw genomic data never
reaches the browser as a file, by any route, naming or disguise), "Period"
(no kernel after the end; the server stops itself), "Reporting" (every
event reaches the spool with its fields).

The bypass suite is the guard's contract: one readable id per attempt.
Add a case for every way round the guard you think of.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from hub.data.synth import SiteSpec, generate_cohorts
from tests.aio import run as run_async

from .guard_server import GuardServer, free_port, make_zoo, notebook, server_env, wait_for

pytestmark = pytest.mark.integration

RAW_FASTQ = "data/JGAD000102/reads_R1.fastq.gz"
RAW_VCF = "data/JGAD000101/genotypes.vcf.gz"


@pytest.fixture(scope="module")
def site_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("guard-data")
    generate_cohorts(
        out,
        [SiteSpec("nig", "JGAD000101", "JGAD000102", "Shizuoka")],
        samples_per_site=20,
        variants=300,
        matrix_table=False,  # the guard needs the files, not Hail's copy
    )
    return out / "nig"


@pytest.fixture(scope="module")
def server(tmp_path_factory, site_data):
    root = tmp_path_factory.mktemp("guard-server")
    home = root / "home"
    zoo = make_zoo(home, site_data)
    port = free_port()
    spool = root / "spool"
    clock = root / "now"
    clock.write_text("")
    env = server_env(root, home, site_data, spool, clock, port)
    s = GuardServer(root, home, site_data, spool, clock, port, env)
    s.zoo = zoo
    s.start()
    yield s
    s.stop()


# ---------------------------------------------------------------------------
# the bypass suite: each attempt must get 403 and leave a download-blocked event

# (id, method, path as sent on the wire, route recorded, reason recorded)
BYPASS = [
    # /files/, by every naming of the site's data
    ("files-data-via-home-link", "GET", f"/files/{RAW_FASTQ}", "files", "under-data"),
    (
        "files-data-percent-encoded",
        "GET",
        "/files/data/JGAD000102/reads%5FR1.fastq.gz",
        "files",
        "under-data",
    ),
    (
        "files-data-encoded-slashes",
        "GET",
        "/files/data%2FJGAD000102%2Freads_R1.fastq.gz",
        "files",
        "under-data",
    ),
    (
        "files-data-double-slashes",
        "GET",
        "/files//data//JGAD000102//aligned.bam",
        "files",
        "under-data",
    ),
    (
        "files-data-dot-segments",
        "GET",
        "/files/plink-x/../data/./JGAD000101/genotypes.vcf.gz",
        "files",
        "under-data",
    ),
    (
        "files-data-encoded-dot-dot",
        "GET",
        "/files/%2e%2e/home/data/JGAD000102/aligned.cram",
        "files",
        "under-data",
    ),
    (
        "files-data-zarr-chunk",
        "GET",
        "/files/data/JGAD000101/genotypes.vcf.zarr/.zgroup",
        "files",
        "under-data",
    ),
    (
        "files-data-clinical-table",
        "GET",
        "/files/data/JGAD000101/clinical.tsv",
        "files",
        "under-data",
    ),
    (
        "files-data-index",
        "GET",
        "/files/data/JGAD000101/genotypes.vcf.gz.tbi",
        "files",
        "under-data",
    ),
    ("files-data-head-request", "HEAD", f"/files/{RAW_FASTQ}", "files", "under-data"),
    ("files-data-download-flag", "GET", f"/files/{RAW_VCF}?download=1", "files", "under-data"),
    ("files-link-into-data", "GET", "/files/data_file.csv", "files", "under-data"),
    # /files/, raw data in the home under its own or another name
    ("files-copy-by-name", "GET", "/files/genotypes.vcf.gz", "files", "raw-name"),
    ("files-name-upper-case", "GET", "/files/GENOTYPES.VCF", "files", "raw-name"),
    ("files-bgzipped-vcf-as-csv", "GET", "/files/results.csv", "files", "raw-content"),
    ("files-bam-as-backup", "GET", "/files/plot.png.bak", "files", "raw-content"),
    ("files-cram-as-png", "GET", "/files/figure.png", "files", "raw-content"),
    ("files-fastq-as-notes", "GET", "/files/notes.txt", "files", "raw-content"),
    ("files-gzipped-fastq-as-dat", "GET", "/files/reads.dat", "files", "raw-content"),
    ("files-sam-as-text", "GET", "/files/alignment.txt", "files", "raw-content"),
    ("files-bcf-as-bin", "GET", "/files/table.bin", "files", "raw-content"),
    ("files-gvcf-blocks-without-header", "GET", "/files/blocks.txt", "files", "raw-content"),
    ("files-vcf-bzip2", "GET", "/files/variants.txt.bz2", "files", "raw-content"),
    ("files-vcf-xz", "GET", "/files/variants.txt.xz", "files", "raw-content"),
    ("files-bgen-as-dat", "GET", "/files/scores.dat", "files", "raw-content"),
    ("files-plink-bed-as-dat", "GET", "/files/matrix.dat", "files", "raw-content"),
    ("files-plink-bim-as-txt", "GET", "/files/markers.txt", "files", "raw-content"),
    ("files-plink-pgen-as-dat", "GET", "/files/packed.dat", "files", "raw-content"),
    ("files-plink-psam-by-name", "GET", "/files/cohort.psam", "files", "raw-name"),
    ("files-vcf-inside-zip", "GET", "/files/bundle.zip", "files", "raw-content"),
    ("files-vcf-inside-nested-zip", "GET", "/files/nested.zip", "files", "raw-content"),
    ("files-vcf-inside-tar-gz", "GET", "/files/export.tar.gz", "files", "raw-content"),
    (
        "files-records-pasted-after-100k-lines",
        "GET",
        "/files/long_table.csv",
        "files",
        "raw-content",
    ),
    ("files-genotype-matrix-tsv", "GET", "/files/genotype_matrix.tsv", "files", "raw-content"),
    ("files-notebook-with-vcf-output", "GET", "/files/analysis.ipynb", "files", "raw-content"),
    ("files-html-with-vcf-in-pre", "GET", "/files/report.html", "files", "raw-content"),
    ("files-matrixtable-part", "GET", "/files/cohort.mt/entries/part-0", "files", "raw-name"),
    ("files-zarr-store-chunk", "GET", "/files/{store-chunk}", "files", "raw-content"),
    ("files-symlink-to-raw", "GET", "/files/summary.csv", "files", "raw-name"),
    ("files-symlink-chain", "GET", "/files/link2.csv", "files", "raw-name"),
    ("files-hard-link", "GET", "/files/hardlinked.csv", "files", "raw-content"),
    ("files-over-size-cap", "GET", "/files/big.csv", "files", "too-large"),
    # the contents API, in every format
    (
        "contents-data-text",
        "GET",
        f"/api/contents/{RAW_FASTQ}?type=file&format=text",
        "contents",
        "under-data",
    ),
    (
        "contents-data-base64",
        "GET",
        f"/api/contents/{RAW_VCF}?type=file&format=base64",
        "contents",
        "under-data",
    ),
    (
        "contents-data-default",
        "GET",
        "/api/contents/data/JGAD000101/clinical.tsv",
        "contents",
        "under-data",
    ),
    (
        "contents-data-dot-segments",
        "GET",
        "/api/contents/plink-x/../data/JGAD000102/aligned.bam",
        "contents",
        "under-data",
    ),
    (
        "contents-disguised-vcf-text",
        "GET",
        "/api/contents/results.csv?type=file&format=base64",
        "contents",
        "raw-content",
    ),
    (
        "contents-disguised-bam-default",
        "GET",
        "/api/contents/plot.png.bak",
        "contents",
        "raw-content",
    ),
    (
        "contents-fastq-text",
        "GET",
        "/api/contents/notes.txt?type=file&format=text",
        "contents",
        "raw-content",
    ),
    (
        "contents-notebook-as-file",
        "GET",
        "/api/contents/analysis.ipynb?type=file&format=text",
        "contents",
        "raw-content",
    ),
    (
        "contents-notebook-as-json-format",
        "GET",
        "/api/contents/analysis.ipynb?format=json",
        "contents",
        "raw-content",
    ),
    (
        "contents-zip-base64",
        "GET",
        "/api/contents/bundle.zip?format=base64",
        "contents",
        "raw-content",
    ),
    (
        "contents-size-cap",
        "GET",
        "/api/contents/big.csv?type=file&format=text",
        "contents",
        "too-large",
    ),
    # nbconvert and view
    (
        "nbconvert-html-raw-outputs",
        "GET",
        "/nbconvert/html/analysis.ipynb",
        "nbconvert",
        "raw-content",
    ),
    (
        "nbconvert-markdown-download",
        "GET",
        "/nbconvert/markdown/analysis.ipynb?download=true",
        "nbconvert",
        "raw-content",
    ),
    (
        "nbconvert-script-raw-outputs",
        "GET",
        "/nbconvert/script/analysis.ipynb",
        "nbconvert",
        "raw-content",
    ),
    ("nbconvert-of-data", "GET", f"/nbconvert/html/{RAW_VCF}", "nbconvert", "under-data"),
    ("view-data", "GET", f"/view/{RAW_VCF}", "view", "under-data"),
    ("view-disguised", "GET", "/view/results.csv", "view", "raw-content"),
    # a route an installed extension adds, which the guard does not know
    ("extension-route-data", "GET", f"/naughty/{RAW_FASTQ}", "response", "raw-response"),
    ("extension-route-disguised-bam", "GET", "/naughty/plot.png.bak", "response", "raw-response"),
    ("extension-route-vcf-zip", "GET", "/naughty/bundle.zip", "response", "raw-response"),
]


def _path(server, path: str) -> str:
    if "{store-chunk}" in path:
        rel = server.zoo["store-chunk"].relative_to(server.home)
        path = path.replace("{store-chunk}", str(rel))
    return path


@pytest.mark.parametrize(
    "method,path,route,reason", [c[1:] for c in BYPASS], ids=[c[0] for c in BYPASS]
)
def test_bypass_attempt_is_blocked_and_audited(server, method, path, route, reason):
    mark = server.mark()
    status, headers, body = server.get(_path(server, path), method=method)
    assert status == 403, (status, body[:300])
    if method != "HEAD":
        text = body.decode()
        if headers.get("Content-Type", "").startswith("application/json"):
            text = json.loads(text)["message"]  # the API routes answer in JSON
        assert "ダウンロードを禁止しました" in text, text[:500]
        assert "Download blocked" in text, text[:500]
    blocked = server.events_since(mark, "download-blocked")
    assert blocked, f"no audit event for {path}"
    ev = blocked[-1]
    assert ev["data"]["route"] == route
    assert ev["data"]["reason"] == reason
    assert ev["user"] == "tanaka" and ev["site"] == "nig" and ev["approval_id"] == "J-DU000101"
    assert ev["event_id"] and ev["time"]


def test_the_suite_is_big_enough():
    assert len(BYPASS) >= 40
    assert len({c[0] for c in BYPASS}) == len(BYPASS)


def test_chunked_extension_route_is_cut_when_raw_data_comes_late(server):
    """Headers are gone when raw data shows up in a later chunk: the response is cut short."""
    mark = server.mark()
    status, _headers, body = server.get("/naughty-chunked/long_table.csv")
    size = (server.home / "long_table.csv").stat().st_size
    assert status == 403 or len(body) < size
    assert b"<NON_REF>" not in body
    records = [ln for ln in body.decode(errors="replace").splitlines() if ln.startswith("chr")]
    assert not records, records[:3]
    assert server.events_since(mark, "download-blocked")


def test_copy_and_rename_through_the_contents_api_do_not_launder(server):
    mark = server.mark()
    r = server.api("POST", "/api/contents/", json={"copy_from": "results.csv"})
    assert r.status_code == 201, r.text
    copy = r.json()["path"]
    assert server.get(f"/files/{copy}")[0] == 403
    r = server.api("PATCH", f"/api/contents/{copy}", json={"path": "innocent.txt"})
    assert r.status_code == 200, r.text
    assert server.get("/files/innocent.txt")[0] == 403
    assert server.get("/api/contents/innocent.txt?type=file&format=base64")[0] == 403
    assert len(server.events_since(mark, "download-blocked")) == 3


# ---------------------------------------------------------------------------
# results that are not raw data download normally

ALLOWED = [
    ("png-plot", "/files/plot.png", b"\x89PNG"),
    ("gwas-summary-table", "/files/gwas_summary.tsv", b"chrom\tpos"),
    ("allele-frequency-table", "/files/allele_frequencies.csv", b"chrom,pos,ref,alt,AC"),
    ("ucsc-bed-intervals", "/files/regions.bed", b"chr1\t0\t50"),
    ("pdf-report", "/files/report.pdf", b"%PDF"),
    ("clean-notebook", "/files/clean.ipynb", b'"cells"'),
    ("python-script", "/files/script.py", b"import hail"),
    ("contents-summary-text", "/api/contents/gwas_summary.tsv?type=file&format=text", b"rs1"),
    ("contents-png-base64", "/api/contents/plot.png?type=file&format=base64", b"iVBOR"),
    ("nbconvert-clean-notebook", "/nbconvert/html/clean.ipynb", b"<html"),
    ("listing-of-the-data-folder", "/api/contents/data/JGAD000102", b"reads_R1.fastq.gz"),
    ("metadata-of-a-raw-file", "/api/contents/genotypes.vcf.gz?content=0", b'"size"'),
    ("extension-route-plot", "/naughty/plot.png", b"\x89PNG"),
]


@pytest.mark.parametrize("path,expect", [c[1:] for c in ALLOWED], ids=[c[0] for c in ALLOWED])
def test_results_download_normally(server, path, expect):
    status, _headers, body = server.get(path)
    assert status == 200, (status, body[:300])
    assert expect in body


def test_allowed_download_is_recorded_with_its_size(server):
    mark = server.mark()
    status, _h, body = server.get("/files/plot.png")
    assert status == 200
    ev = wait_for(lambda: server.events_since(mark, "download-allowed"))[-1]
    assert ev["data"] == {"path": "plot.png", "route": "files", "size": len(body)}


def test_notebook_opens_with_raw_outputs_hidden(server):
    """JupyterLab opens notebooks through the contents API: raw outputs come back as a notice."""
    mark = server.mark()
    r = server.api("GET", "/api/contents/analysis.ipynb")
    assert r.status_code == 200, r.text
    cell = r.json()["content"]["cells"][0]
    text = "".join(o.get("text", "") for o in cell["outputs"])
    assert "data guard" in text and "データガード" in text
    assert "GT" not in text and "chr" not in text
    ev = server.events_since(mark, "download-blocked")[-1]
    assert ev["data"]["reason"] == "raw-outputs-hidden"
    # the file on disk is not changed by reading it
    assert "outputs" in (server.home / "analysis.ipynb").read_text()


# ---------------------------------------------------------------------------
# activity events


def test_kernel_code_reading_data_is_recorded(server):
    mark = server.mark()
    r = server.api("POST", "/api/kernels", json={"name": "python3"})
    assert r.status_code == 201, r.text
    kid = r.json()["id"]
    try:
        # a process in the server's container reads the data, as a kernel or a terminal would
        import subprocess

        subprocess.run(
            ["cat", str(server.data / "JGAD000102" / "aligned.bam")], capture_output=True
        )
        subprocess.run(
            ["cat", str(server.data / "JGAD000102" / "aligned.bam")], capture_output=True
        )

        def reads():
            return [
                e
                for e in server.events_since(mark, "data-access")
                if e["data"]["path"].endswith("aligned.bam") and e["data"]["channel"] == "process"
            ]

        # opens are counted per window: two reads may land in one event or in two
        wait_for(lambda: sum(e["data"]["count"] for e in reads()) >= 2, timeout=30)
        for ev in reads():
            assert ev["data"]["dataset"] == "JGAD000102"
    finally:
        assert server.api("DELETE", f"/api/kernels/{kid}").status_code == 204
    starts = server.events_since(mark, "kernel-start")
    stops = wait_for(lambda: server.events_since(mark, "kernel-stop"))
    assert starts[0]["data"]["kernel_id"] == kid
    assert stops[0]["data"] == {"kernel_id": kid, "reason": "shutdown"}


def test_save_is_recorded(server):
    mark = server.mark()
    r = server.api(
        "PUT",
        "/api/contents/saved.ipynb",
        json={"type": "notebook", "content": json.loads(notebook([]))},
    )
    assert r.status_code in (200, 201), r.text
    ev = server.events_since(mark, "notebook-save")[-1]
    assert ev["data"] == {"path": "saved.ipynb", "kind": "notebook"}


def test_every_event_is_valid_against_its_schema(server):
    import jsonschema
    import yaml

    from extensions.guard.events import SCHEMA_DIR

    schemas = {}
    for p in SCHEMA_DIR.glob("*.yaml"):
        doc = yaml.safe_load(p.read_text())
        schemas[doc["$id"]] = doc
    events = server.events()
    assert events
    for ev in events:
        schema = schemas[ev["schema"]]
        flat = {k: ev[k] for k in ("event_id", "user", "site", "approval_id", "time")} | ev["data"]
        jsonschema.validate(flat, {k: v for k, v in schema.items() if k != "$id"})
        assert ev["version"] == 1
    assert {e["schema"].rsplit("/", 1)[1] for e in events} >= {
        "server-start",
        "download-blocked",
        "download-allowed",
    }


# ---------------------------------------------------------------------------
# the period, with a moved clock


def set_clock(server, when: str) -> None:
    server.clock_file.write_text(datetime.fromisoformat(when).astimezone(UTC).isoformat())


@pytest.mark.parametrize(
    "now,level,en,ja",
    [
        (
            "2026-11-23T10:00:00+09:00",
            "info",
            "3051 days left (until 2035-03-31 JST)",
            "残り 3051 日",
        ),
        ("2035-03-18T00:00:00+09:00", "warning", "14 days left", "延長が必要な場合"),
        ("2035-03-31T23:59:59+09:00", "warning", "the period ends today", "本日 2035-03-31 で終了"),
        ("2035-04-01T00:00:00+09:00", "ended", "ended on 2035-03-31", "終了しました"),
    ],
    ids=["well-before", "first-day-of-warning", "last-second", "first-second-after"],
)
def test_period_banner(tmp_path, site_data, now, level, en, ja):
    """The banner's text at four instants (a server of its own: at the end it stops)."""
    s = _fresh_server(tmp_path, site_data, check_seconds="3600")
    # A server started after the end stops at once: start it a minute before the
    # instant, then move the clock; the next period check is an hour away.
    set_clock(s, (datetime.fromisoformat(now) - timedelta(minutes=1)).isoformat())
    try:
        s.start()
        set_clock(s, now)
        r = s.api("GET", "/visiting/period")
        assert r.status_code == 200, r.text
        banner = r.json()
        assert banner["level"] == level
        assert banner["approval_id"] == "J-DU000101"
        assert en in banner["text_en"], banner
        assert ja in banner["text_ja"], banner
    finally:
        s.stop()


def _fresh_server(tmp_path, site_data, check_seconds="0.5", **env_extra):
    home = tmp_path / "home"
    home.mkdir()
    (home / "data").symlink_to(site_data, target_is_directory=True)
    port = free_port()
    clock = tmp_path / "now"
    clock.write_text("")
    env = server_env(
        tmp_path,
        home,
        site_data,
        tmp_path / "spool",
        clock,
        port,
        VISITING_PERIOD_CHECK_SECONDS=check_seconds,
        **env_extra,
    )
    return GuardServer(tmp_path, home, site_data, tmp_path / "spool", clock, port, env)


def test_at_the_end_kernels_stop_and_the_server_stops_itself(tmp_path, site_data):
    s = _fresh_server(tmp_path, site_data)
    set_clock(s, "2035-03-31T20:00:00+09:00")
    s.start()
    try:
        r = s.api("POST", "/api/kernels", json={"name": "python3"})
        assert r.status_code == 201, r.text
        kid = r.json()["id"]
        set_clock(s, "2035-04-01T00:00:01+09:00")
        s.proc.wait(timeout=30)
    finally:
        s.stop()
    names = [e["schema"].rsplit("/", 1)[1] for e in s.events()]
    assert "period-warning" in names
    end = next(e for e in s.events() if e["schema"].endswith("/period-end"))
    assert end["data"]["kernels_stopped"] == 1
    stop = next(e for e in s.events() if e["schema"].endswith("/kernel-stop"))
    assert stop["data"] == {"kernel_id": kid, "reason": "period-end"}
    assert names[-1] == "server-stop"
    assert s.events()[-1]["data"]["reason"] == "period-end"


def test_no_kernel_starts_after_the_end(tmp_path, site_data):
    s = _fresh_server(tmp_path, site_data, check_seconds="3600")  # the server stays up
    set_clock(s, "2035-03-31T23:59:00+09:00")
    s.start()
    set_clock(s, "2035-04-02T09:00:00+09:00")
    try:
        r = s.api("POST", "/api/kernels", json={"name": "python3"})
        assert r.status_code == 403, r.text
        assert "終了しました" in r.json()["message"]
        assert "ended on 2035-03-31" in r.json()["message"]
        r = s.api(
            "POST",
            "/api/sessions",
            json={"path": "a.ipynb", "type": "notebook", "kernel": {"name": "python3"}},
        )
        assert r.status_code in (403, 500), r.text
        assert s.api("GET", "/api/kernels").json() == []
    finally:
        s.stop()
    assert any(e["schema"].endswith("/kernel-refused") for e in s.events())


# ---------------------------------------------------------------------------
# the live channel: what a kernel prints while the researcher watches


def run_in_kernel(server, kernel_id: str, code: str, subprotocol: str | None) -> list[dict]:
    """Execute `code` over the kernel's websocket as JupyterLab does; the iopub messages."""
    import asyncio
    import uuid

    from jupyter_server.services.kernels.connection.base import (
        deserialize_msg_from_ws_v1,
        serialize_msg_to_ws_v1,
    )
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    from .guard_server import TOKEN

    async def go():
        url = f"ws://127.0.0.1:{server.port}/api/kernels/{kernel_id}/channels"
        request = HTTPRequest(url, headers={"Authorization": f"token {TOKEN}"})
        ws = await websocket_connect(request, subprotocols=[subprotocol] if subprotocol else None)
        msg_id = uuid.uuid4().hex
        header = {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "username": "tanaka",
            "session": uuid.uuid4().hex,
            "date": datetime.now(UTC).isoformat(),
            "version": "5.3",
        }
        content = {"code": code, "silent": False, "store_history": False}
        msg = {"header": header, "parent_header": {}, "metadata": {}, "content": content}
        if subprotocol:
            parts = [json.dumps(msg[k]).encode() for k in ("header", "parent_header")]
            parts += [json.dumps(msg[k]).encode() for k in ("metadata", "content")]
            await ws.write_message(serialize_msg_to_ws_v1(parts, "shell"), binary=True)
        else:
            await ws.write_message(json.dumps(dict(msg, channel="shell")))
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            raw = await asyncio.wait_for(ws.read_message(), 60)
            if raw is None:
                break
            if isinstance(raw, bytes):
                channel, parts = deserialize_msg_from_ws_v1(raw)
                m = {
                    "channel": channel,
                    "header": json.loads(parts[0]),
                    "parent_header": json.loads(parts[1]),
                    "content": json.loads(parts[3]),
                }
            else:
                m = json.loads(raw)
            if m["channel"] != "iopub" or m["parent_header"].get("msg_id") != msg_id:
                continue
            seen.append(m)
            if m["header"]["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                break
        ws.close()
        return seen

    return run_async(go())


PRINT_RECORDS = (
    "import gzip\n"
    "lines = gzip.open('data/JGAD000101/genotypes.vcf.gz', 'rt').read().splitlines()\n"
    "print('\\n'.join(l for l in lines if not l.startswith('#'))[:4000])\n"
)
DISPLAY_RECORDS = (
    "import gzip\n"
    "from IPython.display import HTML, display\n"
    "rows = [l.split('\\t') for l in gzip.open('data/JGAD000101/genotypes.vcf.gz', 'rt')"
    " if not l.startswith('#')][:10]\n"
    "display(HTML('<table>' + ''.join('<tr>' + ''.join(f'<td>{c}</td>' for c in r) + '</tr>'"
    " for r in rows) + '</table>'))\n"
)
PRINT_SUMMARY = "print('variants: 300, samples: 20, mean call rate 0.98')\n"


@pytest.mark.parametrize("subprotocol", [None, "v1.kernel.websocket.jupyter.org"])
@pytest.mark.parametrize(
    "code,hidden",
    [(PRINT_RECORDS, True), (DISPLAY_RECORDS, True), (PRINT_SUMMARY, False)],
    ids=["print-vcf-records", "display-html-table-of-records", "print-a-summary"],
)
def test_live_kernel_outputs_with_raw_records_are_hidden(server, subprotocol, code, hidden):
    r = server.api("POST", "/api/kernels", json={"name": "python3"})
    assert r.status_code == 201, r.text
    kid = r.json()["id"]
    mark = server.mark()
    try:
        messages = run_in_kernel(server, kid, code, subprotocol)
    finally:
        server.api("DELETE", f"/api/kernels/{kid}")
    outputs = [
        m for m in messages if m["header"]["msg_type"] in ("stream", "display_data", "error")
    ]
    assert outputs, messages
    text = json.dumps([m["content"] for m in outputs], ensure_ascii=False)
    assert "Traceback" not in text, text[:2000]
    blocked = [
        e
        for e in server.events_since(mark, "download-blocked")
        if e["data"]["route"] == "kernel-output"
    ]
    if hidden:
        assert "GT" not in text and "\\t0/1" not in text and "<td>chr" not in text, text[:500]
        assert "data guard" in text and "データガード" in text
        assert blocked and blocked[-1]["data"]["reason"] == "raw-outputs-hidden"
        assert blocked[-1]["data"]["kind"] == "vcf"
    else:
        assert "mean call rate" in text
        assert not blocked


# ---------------------------------------------------------------------------
# the home quota (VISITING_HOME_QUOTA): saves through the contents API


def test_saves_beyond_the_home_quota_are_refused(tmp_path, site_data):
    """What fits is saved; what would take the home over its quota gets 507, a message in
    Japanese and English, and is not written. Kernels and terminals are not held by it."""
    import base64

    from extensions.guard.managers import home_bytes

    s = _fresh_server(tmp_path, site_data, check_seconds="3600", VISITING_HOME_QUOTA="65536")
    s.start()
    try:
        mark = s.mark()
        r = s.api(
            "PUT",
            "/api/contents/fits.txt",
            json={"type": "file", "format": "text", "content": "x" * 20_000},
        )
        assert r.status_code == 201, r.text
        big = base64.b64encode(b"\0" * 50_000).decode()
        r = s.api(
            "PUT",
            "/api/contents/too-big.csv",
            json={"type": "file", "format": "base64", "content": big},
        )
        assert r.status_code == 507, r.text
        ja, en = r.json()["message"].split("\n")
        assert "ホーム領域の容量上限 64 KiB" in ja and "現在の使用量 19.5 KiB" in ja, ja
        assert "quota of 64 KiB" in en and "site admin" in en, en
        assert not (s.home / "too-big.csv").exists()
        # a chunked upload, as JupyterLab sends a large file: the chunk that goes over is refused
        chunk = base64.b64encode(b"\1" * 30_000).decode()
        upload = {"type": "file", "format": "base64", "content": chunk}
        r = s.api("PUT", "/api/contents/upload.bin", json={**upload, "chunk": 1})
        assert r.status_code == 201, r.text
        r = s.api("PUT", "/api/contents/upload.bin", json={**upload, "chunk": -1})
        assert r.status_code == 507, r.text
        assert (s.home / "upload.bin").stat().st_size == 30_000
        # a smaller version of a file replaces it, and a folder is made, however full the home
        r = s.api(
            "PUT", "/api/contents/fits.txt", json={"type": "file", "format": "text", "content": "y"}
        )
        assert r.status_code == 200, r.text
        assert s.api("PUT", "/api/contents/results", json={"type": "directory"}).status_code == 201
        home = s.api("GET", "/visiting/guard").json()["home"]
        assert home == {"used": home_bytes(s.home), "quota": 65536}
        assert home["used"] == 30_001
    finally:
        s.stop()
    saves = [e["data"]["path"].strip("/") for e in s.events_since(mark, "notebook-save")]
    assert saves == ["fits.txt", "upload.bin", "fits.txt"]
    assert "guard: refused to save too-big.csv" in s.log_path.read_text()
