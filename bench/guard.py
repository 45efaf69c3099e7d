"""Overhead of the download guard, cost of classifying a 1 GiB file, audit intake, the recogniser.

1. Latency of the contents API and /files/ for allowed files (a summary
   table, a PNG, a clean notebook) on a real jupyter_server with the guard,
   against the same server in the same home without it (default contents and
   kernel managers). Both run at once, built by the integration tests'
   GuardServer helper; requests alternate between them so they share the
   machine's noise. The first request after a file changed (the guard
   classifies it) is reported apart from the cached steady state.
2. `Sniffer.classify_path` on 1 GiB files, against plain reads of the same
   head and tail windows; bytes read come from /proc/self/io.
3. Events per second into the hub's audit intake, sent by the guard's own
   EventSpool and EventShipper through the real hub and proxy (no Docker),
   once with the hub up and once with the hub stopped and started again in
   the middle; against `AuditStore.append` of the same batches in-process.
4. The egress gate's recogniser (extensions/guard/recognise/): a 1 GiB
   file (read in windows) and a 50 MB Parquet file against sha256 of the
   same bytes, 10 MiB of summary text and typical outputs per call, and the
   memory held for 10,000 and 100,000 cohort ids against the plaintext ids
   in a set (tracemalloc). In-process, no server.

5. The egress gate (bench/gate.py): a cell printing 10 MB of summary text, 200
   plots, a terminal printing 10 MB, downloads of results, through the gate
   against straight to the same server, alternating.

    .venv/bin/python bench/guard.py [--quick] [--parts latency,sniff,recogniser,gate,intake]

Exits non-zero when a request fails or an event is lost or stored twice.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import http.client
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import tracemalloc
import zlib
from contextlib import ExitStack, suppress
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from extensions.contracts import environment  # noqa: E402
from extensions.contracts.clock import Clock  # noqa: E402
from extensions.guard.context import ServerContext  # noqa: E402
from extensions.guard.events import ActivityEvents, EventShipper, EventSpool, SpoolHandler  # noqa: E402
from extensions.guard.sniff import Sniffer  # noqa: E402
from hub.demo.stack import Stack, StackConfig  # noqa: E402
from hub.store.audit import AuditStore  # noqa: E402
from tests.integration.conftest import hub_login  # noqa: E402
from tests.integration.guard_server import (  # noqa: E402
    GuardServer,
    free_port,
    notebook,
    server_env,
)

USER, SITE, APPROVAL = "tanaka", "nig", "J-DU000101"
KIB, MIB, GIB = 1024, 1024**2, 1024**3
# what the guard's enable file sets; the server without the guard has none of it
GUARD_SETTINGS = (
    "contents_manager_class",
    "kernel_manager_class",
    "kernel_websocket_connection_class",
    "reraise_server_extension_failures",
)


PARTS = ("latency", "sniff", "recogniser", "gate", "intake")


class BenchError(Exception):
    """A request failed or an event went missing; the benchmark's numbers are not valid."""


Row = tuple[str, str, str, str, str]  # measurement, value, reference, ratio, notes


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def size_text(n: float) -> str:
    if n >= GIB:
        return f"{n / GIB:.2f} GiB"
    if n >= MIB:
        return f"{n / MIB:.2f} MiB"
    return f"{n / KIB:.1f} KiB"


# ---------------------------------------------------------------------------
# 1. request latency with the guard on and off


def summary_tsv(target: int = 100 * KIB) -> str:
    lines = ["chrom\tpos\tid\tref\talt\tbeta\tse\tp\tn\n"]
    size, i = len(lines[0]), 0
    while size < target:
        line = f"chr{i % 22 + 1}\t{10_000 + i * 37}\trs{100_000 + i}\tA\tG\t{(i % 17 - 8) / 100:.3f}\t0.021\t{(i % 97 + 1) / 1000:.2e}\t400\n"
        lines.append(line)
        size += len(line)
        i += 1
    return "".join(lines)


def png(width: int = 160, height: int = 160) -> bytes:
    """A real RGB PNG with noisy pixels (so it does not compress away)."""
    import struct

    def chunk(kind, payload):
        c = struct.pack(">I", len(payload)) + kind + payload
        return c + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)

    seed, raw = 12345, bytearray()
    for _ in range(height):
        raw.append(0)
        for _ in range(width * 3):
            seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
            raw.append(seed >> 16 & 0xFF)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(bytes(raw)))
        + chunk(b"IEND", b"")
    )


def clean_notebook(image: bytes) -> str:
    """An analysis notebook whose outputs are summaries and a figure, no raw records."""
    import base64

    nb = json.loads(notebook([]))
    cells = []
    b64 = base64.b64encode(image).decode()
    for i in range(12):
        cells.append(
            {
                "cell_type": "code",
                "execution_count": i + 1,
                "id": f"c{i}",
                "metadata": {},
                "source": f"df{i} = summary.groupby('chrom').agg(n=('p', 'size'), min_p=('p', 'min'))\ndf{i}.head(10)",
                "outputs": [
                    {
                        "output_type": "execute_result",
                        "execution_count": i + 1,
                        "metadata": {},
                        "data": {
                            "text/plain": [
                                "       n     min_p\nchrom\n"
                                + "".join(
                                    f"chr{c:<3} {200 + c:5d}  {c / 1000:.2e}\n"
                                    for c in range(1, 11)
                                )
                            ],
                        },
                    }
                ],
            }
        )
        cells.append(
            {
                "cell_type": "markdown",
                "id": f"m{i}",
                "metadata": {},
                "source": f"## Step {i}\nAllele frequencies by chromosome.",
            }
        )
    cells.append(
        {
            "cell_type": "code",
            "execution_count": 13,
            "id": "fig",
            "metadata": {},
            "source": "plt.plot(freqs); plt.savefig('plot.png')",
            "outputs": [
                {
                    "output_type": "display_data",
                    "metadata": {},
                    "data": {"image/png": b64, "text/plain": ["<Figure size 640x480>"]},
                }
            ],
        }
    )
    nb["cells"] = cells
    return json.dumps(nb, indent=1)


def make_home(home: Path) -> dict[str, Path]:
    home.mkdir(parents=True)
    image = png()
    files = {
        "summary.tsv": summary_tsv(),
        "plot.png": image,
        "clean.ipynb": clean_notebook(image),
        "warmup.txt": "nothing here\n",
    }
    out = {}
    for name, content in files.items():
        p = home / name
        p.write_bytes(content.encode() if isinstance(content, str) else content)
        out[name] = p
    return out


def start_server(
    tmp: Path, name: str, home: Path, data: Path, guard: bool, cleanup: ExitStack
) -> GuardServer:
    """A GuardServer in `home`; without `guard` its config lacks the guard's extension and managers."""
    root = tmp / name
    root.mkdir()
    spool, clock = root / "spool", root / "now"
    clock.write_text("")
    port = free_port()
    env = server_env(root, home, data, spool, clock, port)
    cfg = root / "jupyter-config" / "jupyter_server_config.json"
    config = json.loads(cfg.read_text())
    server_app = config["ServerApp"]
    server_app["jpserver_extensions"].pop("naughty_ext", None)  # a test fixture, not a product
    if not guard:
        server_app["jpserver_extensions"].pop("extensions.guard")
        for key in GUARD_SETTINGS:
            server_app.pop(key, None)
    cfg.write_text(json.dumps(config))
    server = GuardServer(root, home, data, spool, clock, port, env)
    cleanup.callback(server.stop)  # before start: an interrupt may come while it starts
    server.start()
    return server


class Client:
    """One keep-alive connection to a server, as a browser holds one."""

    def __init__(self, server: GuardServer):
        self.server = server
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)

    def get(self, path: str) -> tuple[float, bytes]:
        t0 = time.perf_counter()
        try:
            self.conn.request("GET", path, headers=self.server.auth)
            r = self.conn.getresponse()
            body = r.read()
        except (OSError, http.client.HTTPException) as e:
            self.conn.close()
            raise BenchError(f"GET {path} on port {self.server.port}: {e}") from None
        took = time.perf_counter() - t0
        if r.status != 200:
            raise BenchError(f"GET {path} on port {self.server.port}: {r.status} {body[:300]!r}")
        return took, body

    def close(self) -> None:
        self.conn.close()


# (label, file, URL path, whether the guard classifies the file's content on this route)
ENDPOINTS = [
    (
        "contents API text, summary.tsv",
        "summary.tsv",
        "/api/contents/summary.tsv?type=file&format=text",
        True,
    ),
    (
        "contents API base64, plot.png",
        "plot.png",
        "/api/contents/plot.png?type=file&format=base64",
        True,
    ),
    ("contents API notebook model, clean.ipynb", "clean.ipynb", "/api/contents/clean.ipynb", False),
    ("/files/ summary.tsv", "summary.tsv", "/files/summary.tsv", True),
    ("/files/ plot.png", "plot.png", "/files/plot.png", True),
    ("/files/ clean.ipynb", "clean.ipynb", "/files/clean.ipynb", True),
]


def touch(path: Path) -> None:
    """A new mtime, so the guard's classification cache misses (its key holds mtime and ctime)."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def bench_latency(tmp: Path, n: int, cold_n: int, cleanup: ExitStack) -> list[Row]:
    home, data = tmp / "home", tmp / "data"
    data.mkdir()
    files = make_home(home)
    on = start_server(tmp, "guard-on", home, data, True, cleanup)
    off = start_server(tmp, "guard-off", home, data, False, cleanup)
    clients = {"on": Client(on), "off": Client(off)}
    for c in clients.values():
        cleanup.callback(c.close)

    # the guard is there, and only there
    if on.get("/visiting/guard")[0] != 200 or off.get("/visiting/guard")[0] != 404:
        raise BenchError("the guard is not enabled on exactly one of the two servers")
    nb_model = json.loads(clients["on"].get("/api/contents/clean.ipynb")[1])
    if nb_model.get("type") != "notebook" or len(nb_model["content"]["cells"]) != 25:
        raise BenchError("the notebook model is not the clean notebook")

    # warm both servers' code paths on a file not measured
    for _ in range(20):
        for c in clients.values():
            c.get("/files/warmup.txt")
            c.get("/api/contents/warmup.txt?type=file&format=text")

    order = [("on", "off"), ("off", "on")]
    cold: dict[tuple[str, str], list[float]] = {}
    for i in range(cold_n):
        for label, name, path, classified in ENDPOINTS:
            if not classified:
                continue
            touch(files[name])
            for side in order[i % 2]:
                cold.setdefault((label, side), []).append(clients[side].get(path)[0])

    for _ in range(10):  # warm-up of the measured routes
        for _label, _name, path, _ in ENDPOINTS:
            for c in clients.values():
                c.get(path)
    warm: dict[tuple[str, str], list[float]] = {}
    for i in range(n):
        for label, _name, path, _ in ENDPOINTS:
            for side in order[i % 2]:
                warm.setdefault((label, side), []).append(clients[side].get(path)[0])

    rows: list[Row] = []
    for label, name, _path, classified in ENDPOINTS:
        size = files[name].stat().st_size
        g, r = statistics.median(warm[label, "on"]), statistics.median(warm[label, "off"])
        rows.append(
            (
                f"{label} ({size_text(size)}), median of {n}",
                ms(g),
                ms(r),
                f"{g / r:.3f}",
                "guard on / off, cached classification",
            )
        )
        if classified:
            g, r = statistics.median(cold[label, "on"]), statistics.median(cold[label, "off"])
            rows.append(
                (
                    f"{label}, first request after a change, median of {cold_n}",
                    ms(g),
                    ms(r),
                    f"{g / r:.3f}",
                    "guard on / off, the guard classifies the file",
                )
            )
    return rows


# ---------------------------------------------------------------------------
# 2. classifying a 1 GiB file


def proc_io() -> dict[str, int]:
    with open("/proc/self/io") as f:
        return {k: int(v) for k, v in (line.split(":") for line in f)}


def io_delta(fn) -> tuple[float, object, int, int]:
    """(seconds, result, rchar, read_bytes) of fn(); rchar less what reading the counters costs."""
    a = proc_io()
    b = proc_io()
    own = b["rchar"] - a["rchar"]
    t0 = time.perf_counter()
    result = fn()
    took = time.perf_counter() - t0
    c = proc_io()
    return took, result, c["rchar"] - b["rchar"] - own, c["read_bytes"] - b["read_bytes"]


CSV_ROW = 32  # bytes per row of the benign table


def csv_block(start: int, size: int = MIB) -> bytes:
    rows = [
        f"{i:08d},{(i * 7919 % 100_000) / 1000:010.6f},{(i * 104729 % 1_000_000) / 1e4:011.6f}\n"
        for i in range(start, start + size // CSV_ROW)
    ]
    return "".join(rows).encode()


def vcf_records(n: int) -> bytes:
    return "".join(
        f"chr1\t{10_000 + i * 53}\trs{i}\tA\tG\t50\tPASS\tAC=1;AN=4\tGT:DP\t0/1:30\t1/1:28\n"
        for i in range(n)
    ).encode()


def make_big_files(tmp: Path) -> dict[str, Path]:
    out = {}
    # a real 1 GiB table: a header, then rows
    real = tmp / "cohort_table.csv"
    with open(real, "wb") as f:
        f.write(b"sample,x,y".ljust(CSV_ROW - 1) + b"\n")
        block = csv_block(0)
        f.write(block[: MIB - CSV_ROW])
        for _ in range(GIB // MIB - 1):
            f.write(block)
    out["real"] = real
    tail = vcf_records(600)  # ~40 KiB, well inside the 256 KiB tail window
    # sparse: a table's first 2 MiB, a hole, 1 MiB more of the table, then raw VCF records
    sparse = tmp / "table_with_vcf_tail.csv"
    with open(sparse, "wb") as f:
        f.write(csv_block(0, 2 * MIB))
        f.seek(GIB - len(tail) - MIB)
        f.write(csv_block(10**7))
        f.write(tail)
    out["vcf-tail"] = sparse
    # sparse: the same, but the hole reaches the raw records (NUL bytes before them)
    gap = tmp / "table_with_vcf_after_zeros.csv"
    with open(gap, "wb") as f:
        f.write(csv_block(0, 2 * MIB))
        f.seek(GIB - len(tail))
        f.write(tail)
    out["vcf-after-zeros"] = gap
    for p in out.values():
        assert p.stat().st_size == GIB, (p, p.stat().st_size)
    return out


def plain_windows(path: Path, head: int, tail: int) -> int:
    """Read what the sniffer reads, with nothing done to the bytes."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        n = len(f.read(head))
        if size > n:
            f.seek(max(n, size - tail))
            n += len(f.read(tail))
    return n


def plain_whole(path: Path) -> int:
    n = 0
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(8 * MIB):
            n += len(chunk)
    return n


def bench_sniffer(tmp: Path, reps: int) -> list[Row]:
    files = make_big_files(tmp)
    sniffer = Sniffer()  # the guard's windows
    labels = {
        "real": "1 GiB CSV (real file), benign",
        "vcf-tail": "1 GiB CSV (sparse), raw VCF records in its last 40 KiB",
        "vcf-after-zeros": "1 GiB CSV (sparse), raw VCF records after a hole of NUL bytes",
    }
    rows: list[Row] = []
    for key, path in files.items():
        sniffer.classify_path(path)  # page cache and code warm
        plain_windows(path, sniffer.head_bytes, sniffer.tail_bytes)
        s_times, p_times = [], []
        for i in range(reps):
            # alternate which goes first
            steps = [
                ("s", lambda p=path: sniffer.classify_path(p)),
                ("p", lambda p=path: plain_windows(p, sniffer.head_bytes, sniffer.tail_bytes)),
            ]
            for which, fn in steps if i % 2 == 0 else reversed(steps):
                took, result, rchar, read_bytes = io_delta(fn)
                if which == "s":
                    s_times.append(took)
                    s_io, finding = (rchar, read_bytes), result
                else:
                    p_times.append(took)
                    p_io = (rchar, read_bytes)
        s, p = statistics.median(s_times), statistics.median(p_times)
        found = finding.detail if finding else "nothing found"
        rows.append(
            (
                f"classify_path, {labels[key]}, median of {reps}",
                ms(s),
                ms(p),
                f"{s / p:.1f}",
                f"vs plain reads of the same windows; found: {found}",
            )
        )
        rows.append(
            (
                f"bytes read by classify_path, {labels[key]}",
                f"{size_text(s_io[0])} (rchar)",
                f"{size_text(p_io[0])} (rchar)",
                f"{s_io[0] / p_io[0]:.2f}",
                f"{s_io[0] / GIB:.4%} of the file; from disk (read_bytes): {size_text(s_io[1])}",
            )
        )
    took, n, rchar, _ = io_delta(lambda: plain_whole(files["real"]))
    rows.append(
        (
            "plain read of the whole 1 GiB CSV (what an unbounded check would cost)",
            ms(took),
            "",
            "",
            f"{size_text(rchar)} (rchar), {n / took / MIB:.0f} MiB/s from the page cache",
        )
    )
    return rows


# ---------------------------------------------------------------------------
# 3. audit intake throughput


def server_token(hub: str) -> str:
    """tanaka logs in through the IdP and asks the hub for a token of his server at nig only."""
    session, r = hub_login(hub, USER, f"{USER}-demo")
    if r.status_code != 200:
        raise BenchError(f"{USER} could not log in: {r.status_code}")
    r = session.post(
        f"{hub}/hub/api/users/{USER}/tokens",
        json={
            "note": "guard benchmark",
            "expires_in": 3600,
            "scopes": [f"access:servers!server={USER}/{SITE}"],
        },
        headers={"X-XSRFToken": session.cookies.get("_xsrf", path="/hub/") or ""},
        timeout=30,
    )
    if r.status_code != 201:
        raise BenchError(f"the hub refused a server token: {r.status_code} {r.text[:300]}")
    return r.json()["token"]


def wait_for_intake(url: str, token: str, timeout: float = 60) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while True:
        try:
            r = requests.post(
                url + "api/events",
                json={"events": []},
                headers={"Authorization": f"token {token}"},
                timeout=10,
            )
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text[:200]}"
        except requests.RequestException as e:
            last = str(e)
        if time.monotonic() > deadline:
            raise BenchError(f"the audit intake does not take events: {last}")
        time.sleep(0.2)


class Emitter:
    """tanaka's server at nig as the guard sets it up: ActivityEvents into a SpoolHandler."""

    def __init__(self, spool: EventSpool):
        from jupyter_events import EventLogger

        self.spool = spool
        logger = EventLogger()
        context = ServerContext.from_env(
            {"JUPYTERHUB_USER": USER, environment.SITE: SITE, environment.APPROVAL_ID: APPROVAL}
        )
        self.events = ActivityEvents(logger, context, Clock())
        logger.register_handler(SpoolHandler(spool))
        self.ids: list[str] = []

    def emit(self, n: int, batch: int) -> None:
        """`n` download-allowed events, sealed into batch files of `batch`."""
        for i in range(n):
            k = len(self.ids)
            self.ids.append(
                self.events.emit(
                    "download-allowed", path=f"results/table_{k}.tsv", route="files", size=1000 + k
                )
            )
            if (i + 1) % batch == 0:
                self.spool.seal()
        self.spool.seal()


def stored_counts(store: AuditStore, ids: list[str]) -> tuple[int, int]:
    """(distinct ids of `ids` stored, records holding one of them)."""
    wanted = set(ids)
    seen = [e["event_id"] for e in store.events(user=USER) if e["event_id"] in wanted]
    return len(set(seen)), len(seen)


class IntakeReplies:
    """Counts what the intake answered the shipper: events taken, and duplicates it skipped.

    Installed as tornado's AsyncHTTPClient implementation, under the unchanged EventShipper;
    a duplicate is an event sent again after its first reply was lost (the hub went away).
    """

    @staticmethod
    def install() -> type:
        from tornado.httpclient import AsyncHTTPClient
        from tornado.simple_httpclient import SimpleAsyncHTTPClient

        class Counting(SimpleAsyncHTTPClient):
            stored = 0
            duplicates = 0

            def fetch_impl(self, request, callback):
                def done(response):
                    if request.method == "POST" and response.code == 200:
                        reply = json.loads(response.body)
                        Counting.stored += reply["stored"]
                        Counting.duplicates += reply["duplicates"]
                    callback(response)

                super().fetch_impl(request, done)

        AsyncHTTPClient.configure(Counting)
        return Counting


def shipper_for(spool: EventSpool, url: str, token: str, batch: int) -> EventShipper:
    # retries every 0.05 s, backing off to 1 s (the container's: 1 s to 30 s), so that the
    # time after the outage is the intake's and not the back-off's
    return EventShipper(spool, url, token, batch_size=batch, interval=0.05, max_backoff=1)


async def wait_delivered(shipper: EventShipper, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while shipper.delivered < n:
        if time.monotonic() > deadline:
            raise BenchError(f"only {shipper.delivered} of {n} events delivered in {timeout:.0f} s")
        await asyncio.sleep(0.005)


async def ship_hub_up(url: str, token: str, spool_dir: Path, n: int, batch: int) -> dict:
    emitter = Emitter(EventSpool(spool_dir))
    emitter.emit(n, batch)
    batches = [EventSpool.read(p) for p in emitter.spool.batches()]
    shipper = shipper_for(emitter.spool, url, token, batch)
    t0 = time.perf_counter()
    shipper.start()
    try:
        await wait_delivered(shipper, n, timeout=300)
    finally:
        await shipper.stop()
    return {"took": time.perf_counter() - t0, "ids": emitter.ids, "batches": batches,
            "failures": shipper.failures}  # fmt: skip


async def ship_hub_restart(
    stack: Stack, url: str, token: str, spool_dir: Path, n: int, batch: int, gap: float
) -> dict:
    """Half the events spooled before, half while the hub is away; the hub stops mid-delivery."""
    loop = asyncio.get_running_loop()
    emitter = Emitter(EventSpool(spool_dir))
    emitter.emit(n // 2, batch)
    shipper = shipper_for(emitter.spool, url, token, batch)
    out: dict = {"ids": emitter.ids}
    t0 = time.perf_counter()
    shipper.start()
    try:
        await wait_delivered(shipper, n // 4, timeout=300)
        out["delivered_at_stop"] = shipper.delivered
        t_stop = time.perf_counter()
        await loop.run_in_executor(None, stack.stop_hub)
        t_gone = time.perf_counter()
        out["delivered_when_gone"] = shipper.delivered
        emitter.emit(n - n // 2, batch)  # the server goes on working while the hub is away
        await asyncio.sleep(max(0.0, gap - (time.perf_counter() - t_gone)))
        t_start = time.perf_counter()
        await loop.run_in_executor(None, stack.start_hub)
        t_back = time.perf_counter()
        await wait_delivered(shipper, n, timeout=300)
        t_done = time.perf_counter()
    finally:
        await shipper.stop()
    out.update(
        took=t_done - t0, stop=t_gone - t_stop, gap=t_start - t_gone, start=t_back - t_start,
        away=t_back - t_stop, catch_up=t_done - t_back, failures=shipper.failures,
    )  # fmt: skip
    return out


def stop_orphaned_services(state_dir: Path, timeout: float = 10) -> None:
    """Stop the hub's managed services left behind by a hub that died before its own clean-up.

    The hub starts its services in sessions of their own, so stopping the hub's process
    group misses them when the hub is stopped while it starts (an interrupt then). They
    are found by this stack's private state folder in their environment.
    """
    mark = f"VISITING_STATE_DIR={state_dir}".encode()
    left = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if (
                mark in environ.read_bytes().split(b"\0")
                and int(environ.parent.name) != os.getpid()
            ):
                left.append(int(environ.parent.name))
        except (OSError, ValueError):
            continue
    for pid in left:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        left = [pid for pid in left if Path(f"/proc/{pid}").exists() and not _zombie(pid)]
        time.sleep(0.1)
    for pid in left:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def bench_intake(tmp: Path, n: int, batch: int, gap: float, cleanup: ExitStack):
    stack = Stack(StackConfig.ephemeral(tmp / "stack", sites=False))
    cleanup.callback(stop_orphaned_services, stack.state_dir)
    cleanup.callback(stack.stop)
    stack.start()
    hub = stack.config.hub_url
    url = f"{hub}/services/audit/"
    token = server_token(hub)
    wait_for_intake(url, token)
    store = AuditStore(stack._database_url())
    cleanup.callback(store.close)
    replies = IntakeReplies.install()

    failures: list[str] = []
    up = asyncio.run(ship_hub_up(url, token, tmp / "spool-up", n, batch))
    up["duplicates"], replies.duplicates = replies.duplicates, 0
    # the reference: the same batches appended in-process to a store of the same kind
    ref_store = AuditStore(f"sqlite:///{tmp / 'reference.sqlite'}")
    cleanup.callback(ref_store.close)
    t0 = time.perf_counter()
    for b in up["batches"]:
        ref_store.append(b)
    ref_rate = n / (time.perf_counter() - t0)
    if ref_store.count() != n:
        failures.append(f"the in-process reference stored {ref_store.count()} of {n}")

    before = store.count(user=USER)
    down = asyncio.run(ship_hub_restart(stack, url, token, tmp / "spool-restart", n, batch, gap))
    down["duplicates"] = replies.duplicates
    after = store.count(user=USER)
    verify = store.verify()

    rows: list[Row] = []
    for label, run, note in (
        ("hub up", up, ""),
        (f"hub away for {down['away']:.1f} s mid-delivery", down,
         f"stop began after {down['delivered_at_stop']} delivered; hub away {down['away']:.1f} s "
         f"(stop {down['stop']:.1f} + {down['gap']:.1f} + start {down['start']:.1f}), "
         f"caught up {down['catch_up']:.2f} s after; "
         f"{n / (down['took'] - down['away']):,.0f} events/s with the hub there; "),
    ):  # fmt: skip
        distinct, records = stored_counts(store, run["ids"])
        lost, doubled = len(run["ids"]) - distinct, records - distinct
        if lost or doubled:
            failures.append(f"{label}: {lost} events lost, {doubled} stored twice")
        rate = len(run["ids"]) / run["took"]
        rows.append(
            (f"audit intake via hub and proxy, EventShipper, {label}", f"{rate:,.0f} events/s",
             f"{ref_rate:,.0f} events/s", f"{rate / ref_rate:.2f}",
             f"{note}{len(run['ids'])} sent in batches of {batch}, {distinct} stored, {lost} lost, "
             f"{doubled} doubled; {run['failures']} failed tries, {run['duplicates']} resent and "
             "skipped by the intake; reference: AuditStore.append in-process")
        )  # fmt: skip
    rows.append(
        ("audit store after both runs", f"{after:,} records", "", "",
         f"{after - before} added by the second run; AuditStore.verify: {verify.message()}")
    )  # fmt: skip
    if not verify.ok:
        failures.append(verify.message())
    if down["failures"] == 0:
        failures.append("the hub outage did not interrupt delivery (no failed tries)")
    return rows, failures


# ---------------------------------------------------------------------------
# 4. the recogniser


def summary_parquet(path: Path, target: int = 50 * MIB) -> int:
    """A per-variant results table (chrom, pos, rsid, ref, alt, beta, se, p, AF) of about `target`."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    start, n = 0, 250_000
    sink = pa.BufferOutputStream()
    writer = None
    while sink.tell() < target:
        table = pa.table(
            {
                "chrom": pa.array([f"chr{20 + start // 1_000_000 % 3}"] * n).dictionary_encode(),
                "pos": np.arange(start, start + n) * 37 + 10_000,
                "rsid": [f"rs{i}" for i in range(start, start + n)],
                "ref": pa.array(rng.choice(list("ACGT"), n)).dictionary_encode(),
                "alt": pa.array(rng.choice(list("ACGT"), n)).dictionary_encode(),
                "beta": rng.normal(0, 0.05, n),
                "se": rng.uniform(0.01, 0.05, n),
                "p": rng.uniform(0, 1, n),
                "af": rng.beta(0.5, 2, n),
            }
        )
        writer = writer or pq.ParquetWriter(sink, table.schema)
        writer.write_table(table)
        start += n
    writer.close()
    path.write_bytes(sink.getvalue().to_pybytes())
    return start


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(8 * MIB):
            h.update(chunk)
    return h.hexdigest()


def alternate(reps: int, measured, reference) -> tuple[float, float, object]:
    """Medians of `measured` and `reference`, run in turns (who goes first alternates)."""
    m_times, r_times, result = [], [], None
    for i in range(reps):
        order = [("m", measured), ("r", reference)]
        for which, fn in order if i % 2 == 0 else reversed(order):
            t0 = time.perf_counter()
            out = fn()
            took = time.perf_counter() - t0
            if which == "m":
                m_times.append(took)
                result = out
            else:
                r_times.append(took)
    return statistics.median(m_times), statistics.median(r_times), result


def held_memory(build) -> tuple[int, object]:
    """Bytes still allocated after `build()` returns (tracemalloc), and what it built."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        built = build()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return after - before, built


def verdict_note(v) -> str:
    found = v.kind or ("opaque" if v.opaque else "nothing individual-level")
    return f"found: {found}" + (f" ({v.how})" if v.kind else "")


def bench_recogniser(tmp: Path, reps: int) -> list[Row]:
    from extensions.guard.recognise import Cohort, Recogniser

    ids = [f"NIG-{i:06d}" for i in range(1, 100_001)]
    recogniser = Recogniser(Cohort.from_ids(ids))
    rows: list[Row] = []

    # a 1 GiB file: the table of bench 2, and the same with raw records at its end
    big = tmp / "cohort_table.csv"
    with open(big, "wb") as f:
        f.write(b"sample,x,y".ljust(CSV_ROW - 1) + b"\n")
        block = csv_block(0)
        f.write(block[: MIB - CSV_ROW])
        for _ in range(GIB // MIB - 1):
            f.write(block)
    tail = tmp / "table_with_vcf_tail.csv"
    with open(tail, "wb") as f:
        f.write(csv_block(0, 2 * MIB))
        f.seek(GIB - 40 * KIB - MIB)
        f.write(csv_block(10**7))
        f.write(vcf_records(600))
    for path, label in ((big, "1 GiB CSV (real file), benign"),
                        (tail, "1 GiB CSV (sparse), raw VCF records in its last 40 KiB")):  # fmt: skip
        recogniser.file(path)
        sha256_file(path)  # both from the page cache
        took, ref, v = alternate(
            reps, lambda p=path: recogniser.file(p), lambda p=path: sha256_file(p)
        )
        _, _, rchar, _ = io_delta(lambda p=path: recogniser.file(p))
        rows.append(
            (f"Recogniser.file, {label}, median of {reps}", ms(took), ms(ref), f"{took / ref:.3f}",
             f"vs sha256 of the whole file; reads {size_text(rchar)} (rchar); {verdict_note(v)}")
        )  # fmt: skip
    data = big.read_bytes()
    took, ref, v = alternate(
        max(3, reps // 4), lambda: recogniser.bytes(data), lambda: hashlib.sha256(data).digest()
    )
    rows.append(
        (f"Recogniser.bytes, the same 1 GiB held in memory, median of {max(3, reps // 4)}",
         ms(took), ms(ref), f"{took / ref:.3f}",
         f"vs sha256 of the same bytes; windows only; {verdict_note(v)}")
    )  # fmt: skip
    data = b""  # the memory back
    big.unlink()
    tail.unlink()

    # a 50 MB Parquet file of per-variant results
    parquet = tmp / "gwas.parquet"
    variants = summary_parquet(parquet)
    data = parquet.read_bytes()
    took, ref, v = alternate(
        reps, lambda: recogniser.bytes(data), lambda: hashlib.sha256(data).digest()
    )
    rows.append(
        (f"Recogniser.bytes, Parquet of {variants:,} per-variant results ({size_text(len(data))}), "
         f"median of {reps}", ms(took), ms(ref), f"{took / ref:.2f}",
         f"vs sha256 of the same bytes; reads its first {recogniser.max_table_rows} rows; "
         f"{verdict_note(v)}")
    )  # fmt: skip
    took, ref, v = alternate(reps, lambda: recogniser.file(parquet), lambda: parquet.read_bytes())
    rows.append(
        (f"Recogniser.file, the same Parquet file, median of {reps}", ms(took), ms(ref),
         f"{took / ref:.2f}", f"vs a plain read of the file; {verdict_note(v)}")
    )  # fmt: skip
    data = b""  # the memory back

    # kernel outputs and responses as a researcher's server sends them
    text = summary_tsv(10 * MIB)
    took, ref, v = alternate(
        reps, lambda: recogniser.text(text), lambda: hashlib.sha256(text.encode()).digest()
    )
    rows.append(
        (f"Recogniser.text, 10 MiB of summary text (a cell printing a results table), median of {reps}",
         ms(took), ms(ref), f"{took / ref:.1f}",
         f"target <= 100 ms; vs encoding and sha256 of the same text; {verdict_note(v)}")
    )  # fmt: skip
    image = png()
    head = "".join(
        f"{k}  NIG-{k + 1:06d}   50-59  female      Tokyo  Essential hypertension   I10\n"
        for k in range(5)
    )
    typical = [
        ("text", "df.head() of 5 clinical rows with ids", head),
        ("text", "a stream line", "epoch 3: loss 0.4121\n"),
        ("text", "summary table, 100 KiB", summary_tsv()),
        ("bytes", "PNG plot", image),
        ("bytes", "notebook of summaries and a plot", clean_notebook(image).encode()),
    ]
    n = 200  # calls a measurement
    for how, label, content in typical:
        call = recogniser.text if how == "text" else recogniser.bytes
        raw = content.encode() if isinstance(content, str) else content
        took, ref, v = alternate(
            9,
            lambda c=content, f=call: [f(c) for _ in range(n)][-1],
            lambda r=raw: [hashlib.sha256(r).digest() for _ in range(n)][-1],
        )
        rows.append(
            (f"Recogniser.{how}, {label} ({size_text(len(raw))}), per call",
             f"{took / n * 1e6:.0f} µs", f"{ref / n * 1e6:.1f} µs", f"{took / ref:.1f}",
             f"vs sha256 of the same bytes; {verdict_note(v)}, {len(v.people)} people")
        )  # fmt: skip

    # memory held for the cohort's ids
    for n in (10_000, 100_000):
        ids = [f"NIG-{i:06d}" for i in range(n)]
        held, cohort = held_memory(lambda ids=ids: Cohort.from_ids(ids))
        plain, _ = held_memory(lambda ids=ids: {i.lower() for i in ids})
        rows.append(
            (f"memory held for {n:,} cohort ids (Cohort.from_ids, tracemalloc)", size_text(held),
             size_text(plain), f"{held / plain:.2f}",
             f"vs the plaintext ids in a set (which the recogniser never keeps); "
             f"Cohort.nbytes says {size_text(cohort.nbytes)}; {held / n:.1f} bytes an id")
        )  # fmt: skip
    return rows


# ---------------------------------------------------------------------------


def interrupted(_signum, _frame):
    """SIGTERM unwinds through the same clean-up as Ctrl-C."""
    raise KeyboardInterrupt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer requests, repetitions and events")
    ap.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"which parts to run, comma-separated (default: all of {','.join(PARTS)})",
    )
    args = ap.parse_args()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        ap.error(
            f"--parts: unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}"
        )
    n, cold_n, reps, events, batch, gap = (
        (30, 5, 5, 1000, 50, 2.0) if args.quick else (200, 20, 20, 5000, 50, 3.0)
    )
    signal.signal(signal.SIGTERM, interrupted)
    # also when started with SIGINT ignored (`cmd &` from a script): the hub stops its
    # services with SIGINT, and an ignored SIGINT would be inherited by them
    signal.signal(signal.SIGINT, signal.default_int_handler)

    started = time.perf_counter()
    rows: list[Row] = []
    failures: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="visiting-bench-guard-"))
    try:
        for part in parts:
            (tmp / part).mkdir()
        if "latency" in parts:
            with ExitStack() as cleanup:
                rows += bench_latency(tmp / "latency", n, cold_n, cleanup)
        if "sniff" in parts:
            rows += bench_sniffer(tmp / "sniff", reps)
            shutil.rmtree(tmp / "sniff")  # 1 GiB of disk back before the stack starts
        if "recogniser" in parts:
            rows += bench_recogniser(tmp / "recogniser", reps)
            shutil.rmtree(tmp / "recogniser")
        if "gate" in parts:
            from gate import run as bench_gate

            for name, on, off in bench_gate(quick=args.quick):
                rows.append(
                    (
                        name,
                        f"{on * 1000:.0f} ms",
                        f"{off * 1000:.0f} ms",
                        f"{on / off:.2f}",
                        "gate on / off, same server",
                    )
                )
        if "intake" in parts:
            with ExitStack() as cleanup:
                intake_rows, failures = bench_intake(tmp / "intake", events, batch, gap, cleanup)
                rows += intake_rows
    except BenchError as e:
        print(f"guard benchmark failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nguard: {', '.join(parts)}\n")
    print("| measurement | value | reference | ratio | notes |")
    print("| --- | ---: | ---: | ---: | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    summary = []
    if "latency" in parts:
        steady = [float(r[3]) for r in rows if r[4] == "guard on / off, cached classification"]
        summary.append(
            f"guard on/off steady-state ratio {min(steady):.3f}..{max(steady):.3f} (target <= 1.05)"
        )
    if "sniff" in parts:
        sniff = next(
            r for r in rows if r[0].startswith("bytes read by classify_path, 1 GiB CSV (real")
        )
        summary.append(f"classify_path reads {sniff[1].split(' (')[0]} of a 1 GiB file")
    if "recogniser" in parts:
        big = next(r for r in rows if r[0].startswith("Recogniser.file, 1 GiB CSV (real"))
        text = next(r for r in rows if r[0].startswith("Recogniser.text, 10 MiB"))
        memory = next(r for r in rows if r[0].startswith("memory held for 100,000"))
        summary.append(
            f"the recogniser takes {big[1]} on a 1 GiB file ({big[3]}x its sha256), {text[1]} on "
            f"10 MiB of summary text, holds {memory[1]} for 100,000 ids"
        )
    if "gate" in parts:
        gate = [r for r in rows if r[4] == "gate on / off, same server"]
        summary.append(
            "gate on/off "
            + ", ".join(f"{r[0].split(':')[0]} {r[3]}" for r in gate)
            + " (targets: outputs <= 1.10, downloads <= 1.05)"
        )
    if "intake" in parts:
        intake = next(r for r in rows if r[0].endswith("hub up"))
        summary.append(f"intake {intake[1]} with the hub up ({intake[3]}x in-process append)")
    print(
        f"\nsummary: {'; '.join(summary)}; "
        f"{'no' if not failures else len(failures)} failures; took {time.perf_counter() - started:.0f} s"
    )
    for f in failures:
        print(f"FAILED: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
