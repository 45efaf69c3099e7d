"""The export airlock: time from request to "checked" at the site, and a reviewer's queue.

No Docker. Two parts, one table:

- **Freeze and check.** The site's real module through `LocalFreezer` over temporary
  folders (`python -m extensions.guard.export freeze`: the copy out of the home, the
  SHA-256, and all four checks with the real `Recogniser` over a small synthetic cohort
  learnt from a dataset folder). Workloads: --small-files files of --small-mb MB each
  (CSV tables of aggregate counts and PNGs), and one CSV of GWAS summary statistics of
  --large-mb MB. Reference in the same process: `cp` of the same files into a fresh folder
  plus `sha256sum` of the copies (the floor: copying and hashing), so the ratio is what the
  checks and the module's start cost on top. The size limits of the rules are raised for
  the large file (the platform's default `max_file_bytes` is 100 MiB). Also the site
  module's peak resident memory (its own VmHWM, which it prints as it exits: a child's
  getrusage maximum starts at its parent's).
- **A reviewer's queue.** --requests open requests made through `ExportStore` on SQLite,
  each with three frozen files (a CSV, a PNG, a TSV) in a folder and a checked manifest of
  their hashes. Two real tornado apps on loopback, with only the hub's "whose token is
  this" answered without a hub: the export service, a site admin listing the queue (GET
  api/requests?queue=1) and opening one request (GET api/requests/<id>); and the admin
  service's review pages (GET review: the queue; GET review/<id>: one request with its
  two tables rendered from the frozen bytes, then the PNG the page shows). Every answer is
  checked (status, the requests listed, the files shown). Reference: the bare SQL select
  of the same rows (the requests, their files and reviews) with sqlite3.

    .venv/bin/python bench/export.py [--quick] [--small-files 10] [--small-mb 10]
                                     [--large-mb 1024] [--requests 100] [--repeat 3]
                                     [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import shutil
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from extensions.contracts.clock import JST, FixedClock  # noqa: E402
from extensions.contracts.export import CheckResult, ExportRules, FrozenFile, Manifest  # noqa: E402
from hub.services.export.freezer import SITE_MODULE, Freezer, LocalFreezer  # noqa: E402

MB = 1024 * 1024
NOW = datetime(2026, 6, 2, 12, 0, tzinfo=JST)
PREFIX = "/services/export/"
SITE, USER, REVIEWER = "nig", "tanaka", "admin-nig"
DEMO_POLICY = REPO / "policies" / "demo"
ADMIN_PREFIX = "/services/admin/"

# the site's module, printing its own peak resident memory as it exits
METERED = f"""
import atexit, re, runpy, sys

def peak():
    with open("/proc/self/status") as f:
        print("site-peak-kib", re.search(r"VmHWM:\\s+(\\d+)", f.read()).group(1), file=sys.stderr)

atexit.register(peak)
runpy.run_module({SITE_MODULE!r}, run_name="__main__", alter_sys=True)
"""


class MeteredFreezer(LocalFreezer):
    """LocalFreezer whose site module reports its peak resident memory (VmHWM). The
    children's getrusage maximum would not do: a child's starts at its parent's, so it
    showed this benchmark's own memory whenever the module used less."""

    peak_kib = 0

    def command(self, argv: list[str]) -> list[str]:
        return [sys.executable, "-c", METERED, *argv]

    def _run(self, argv, stdout):
        done = super()._run(argv, stdout)
        for line in (done.stderr or b"").decode(errors="replace").splitlines():
            if line.startswith("site-peak-kib "):
                self.peak_kib = max(self.peak_kib, int(line.split()[1]))
        return done


# -- workload ------------------------------------------------------------------------------


def counts_csv(path: Path, size: int, seed: int) -> None:
    """A table of aggregate counts (every cell at least 20) of about `size` bytes."""
    regions = ["hokkaido", "tohoku", "kanto", "chubu", "kinki", "chugoku", "shikoku", "kyushu"]
    lines = ["stratum,region,sex,age_band,cases,controls,n\n"]
    total, k = len(lines[0]), seed
    while total < size:
        k += 1
        cases, controls = 20 + k * 7 % 500, 20 + k * 13 % 900
        line = (f"s{k},{regions[k % 8]},{'female' if k % 2 else 'male'},"
                f"{20 + k % 8 * 10}-{29 + k % 8 * 10},{cases},{controls},{cases + controls}\n")  # fmt: skip
        lines.append(line)
        total += len(line)
    path.write_text("".join(lines))


def png_file(path: Path, size: int, seed: int) -> None:
    """A valid RGB PNG of about `size` bytes (incompressible pixels, stored deflate)."""
    path.write_bytes(png_bytes(size, seed))


def png_bytes(size: int, seed: int) -> bytes:
    width = 1024
    row = 1 + width * 3
    height = max(1, size // row)
    raw = bytearray()
    block = os.urandom(row - 1)
    for y in range(height):
        raw += b"\x00" + block[y % 97 :] + block[: y % 97]
    data = zlib.compress(bytes(raw), 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data)
            + chunk(b"IEND", b""))  # fmt: skip


def sumstats_csv(path: Path, size: int) -> None:
    """GWAS summary statistics of about `size` bytes: one block of rows written again per
    chromosome label until the size is reached."""
    rows = []
    for i in range(60_000):
        beta = ((i * 7919) % 2001 - 1000) / 10000
        se = 0.01 + (i % 97) / 10000
        p = ((i * 104729) % 999_999 + 1) / 1e6
        rows.append(f"{1000 + i * 37},rs{100000 + i},{'ACGT'[i % 4]},{'GTAC'[i % 4]},"
                    f"{0.05 + (i % 90) / 100:.3f},{beta:.5f},{se:.5f},{p:.3e},{4000 + i % 50}\n")  # fmt: skip
    block = "".join(rows)
    header = "chrom,pos,rsid,ref,alt,eaf,beta,se,p,n\n"
    written = 0
    with open(path, "w") as f:
        f.write(header)
        c = 0
        while written < size:
            chrom = f"chr{c % 22 + 1}"
            text = "".join(chrom + "," + r for r in block.splitlines(keepends=True))
            if written + len(text) > size:  # whole rows only, up to the size
                text = (
                    text[: text.rfind("\n", 0, size - written) + 1] or text[: text.find("\n") + 1]
                )
            f.write(text)
            written += len(text)
            c += 1


def workload_files(folder: Path, files: list[tuple[str, int]]) -> list[Path]:
    """The workload's files in a new `folder`, by their names: PNGs, summary statistics,
    else tables of counts; their paths."""
    folder.mkdir(parents=True)
    paths = []
    for k, (name, size) in enumerate(files):
        path = folder / name
        if name.endswith(".png"):
            png_file(path, size, k)
        elif name.startswith("sumstats"):
            sumstats_csv(path, size)
        else:
            counts_csv(path, size, k * 100_000)
        paths.append(path)
    return paths


def write_cohort(folder: Path, n: int = 200) -> None:
    """A small synthetic dataset the recogniser learns its cohort from (as the guard's
    tests build one)."""
    from tests.unit.extensions.guard.test_recognise import write_dataset

    write_dataset(folder, [f"NIG-{i:06d}" for i in range(1, n + 1)])


# -- part 1: freeze and check ----------------------------------------------------------------


def reference_copy_hash(sources: list[Path], dest: Path) -> float:
    dest.mkdir(parents=True)
    t = time.perf_counter()
    subprocess.run(["cp", *map(str, sources), str(dest)], check=True)
    subprocess.run(["sha256sum", *(str(dest / s.name) for s in sources)], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    took = time.perf_counter() - t
    shutil.rmtree(dest)
    return took


def freeze_part(root: Path, workloads: dict[str, list[tuple[str, int]]], repeat: int) -> list:
    state, data = root / "state", root / "data"
    write_cohort(data / SITE / "JGAD000101")
    freezer = MeteredFreezer(state, data, timeout=3600)
    home = freezer.home(SITE, USER)
    rows = []
    for label, files in workloads.items():
        folder = home / label
        paths = workload_files(folder, files)
        nbytes = sum(p.stat().st_size for p in paths)
        biggest = max(p.stat().st_size for p in paths)
        rules = ExportRules(max_file_bytes=max(ExportRules.max_file_bytes, biggest + MB),
                            max_request_bytes=max(ExportRules.max_request_bytes, nbytes + MB))  # fmt: skip
        for p in paths:  # page cache warm for both
            with open(p, "rb") as f:
                while f.read(8 * MB):
                    pass
        ref, run, ok = [], [], True
        freezer.peak_kib = 0
        for r in range(repeat):
            ref.append(reference_copy_hash(paths, root / f"ref-{label}-{r}"))
            rid = f"b{label.replace('-', '')}{r}"
            t = time.perf_counter()
            manifest = freezer.freeze(rid, SITE, USER, [f"{label}/{p.name}" for p in paths],
                                      rules, ["JGAD000101"])  # fmt: skip
            run.append(time.perf_counter() - t)
            if manifest.error or len(manifest.files) != len(paths):
                raise SystemExit(f"{label}: the site refused the request: {manifest.error}")
            failed = [(f.name, c.check, c.detail) for f in manifest.files for c in f.checks
                      if not c.ok]  # fmt: skip
            ok = ok and not failed
            if failed:
                print(f"note: {label}: failed checks {failed[:3]}", file=sys.stderr)
            shutil.rmtree(freezer.export_dir(SITE) / rid)
        a, b = min(run), min(ref)
        rows.append({
            "part": "freeze", "row": f"{len(paths)} x {_mb(nbytes / len(paths))}",
            "files": len(paths),
            "bytes": nbytes, "airlock_s": a, "reference_s": b, "ratio": a / b,
            "airlock_mb_s": nbytes / MB / a, "reference_mb_s": nbytes / MB / b, "checks_ok": ok,
            "site_peak_mb": freezer.peak_kib / 1024,
        })  # fmt: skip
        shutil.rmtree(folder)
    return rows


def _mb(n: float) -> str:
    return f"{n / MB:.0f} MB" if n >= 10 * MB else f"{n / MB:.2g} MB"


# -- part 2: the reviewer's queue --------------------------------------------------------------


class FolderFreezer(Freezer):
    """Frozen files in <root>/<site>/<request id>/<name>, as the review pages read them back
    (the site's own read, a process or a container a file, is not timed)."""

    def __init__(self, root: Path):
        self.root = root

    def freeze(self, request_id, site, username, paths, rules, datasets=()):
        raise AssertionError("the services here only read what is frozen")

    def open_file(self, request_id, site, name):
        from hub.services.export.freezer import FreezeError

        try:
            return open(self.root / site / request_id / name, "rb")
        except OSError as e:
            raise FreezeError(str(e)) from None


def frozen_files(k: int) -> dict[str, bytes]:
    """Request k's three files: a table of counts and one of frequencies (60 rows each
    under their header) and a figure."""
    regions = ["hokkaido", "tohoku", "kanto", "chubu", "kinki", "chugoku", "shikoku", "kyushu"]
    counts = "stratum,region,sex,n\n" + "".join(
        f"s{60 * k + i + 1},{regions[i % 8]},{'female' if i % 2 else 'male'},{20 + i * 7}\n"
        for i in range(60)
    )
    freqs = "chrom\tpos\teaf\tn\n" + "".join(
        f"chr{i % 22 + 1}\t{1000 + i * 37}\t{0.05 + i % 90 / 100:.3f}\t{4000 + i}\n"
        for i in range(60)
    )
    return {f"results/table{k}.csv": counts.encode(), f"results/fig{k}.png": png_bytes(40_000, k),
            f"results/counts{k}.tsv": freqs.encode()}  # fmt: skip


def make_queue(root: Path, n: int):
    """The registry, audit and export stores on one SQLite file with `n` open requests of
    tanaka's at nig, each with its files frozen under root/frozen and a checked manifest."""
    from hub.platform.policy import load_policy_dir
    from hub.store.audit import AuditStore
    from hub.store.exports import ExportStore
    from hub.store.registry import ApprovalRegistry

    policy = root / "policy"
    shutil.copytree(DEMO_POLICY, policy)
    bundle = load_policy_dir(policy)
    clock = FixedClock(NOW)
    db = root / "export.sqlite"
    url = f"sqlite:///{db}"
    registry = ApprovalRegistry(url, clock=clock)
    registry.import_policy(bundle)
    audit = AuditStore(url, clock=clock)
    store = ExportStore(url, bundle.platform.export, audit, clock)
    checks = tuple(CheckResult(c, True) for c in ("kind", "size", "recogniser", "disclosure"))
    ids = []
    for k in range(n):
        files = frozen_files(k)
        req = store.create(USER, SITE, f"Table {k} of the paper", list(files))
        entries = []
        for name, data in files.items():
            path = root / "frozen" / SITE / req.id / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            media = "image/png" if name.endswith(".png") else "text/csv"
            sha = hashlib.sha256(data).hexdigest()
            entries.append(FrozenFile(name, len(data), sha, media, checks))
        store.record_manifest(req.id, Manifest(req.id, tuple(entries)))
        ids.append(req.id)
    return Queue(db, url, bundle, clock, registry, audit, store, ids, root / "frozen")


@dataclass
class Queue:
    db: Path
    url: str
    bundle: Any
    clock: Any
    registry: Any
    audit: Any
    store: Any
    ids: list[str]
    frozen: Path

    def close(self):
        self.store.close()
        self.audit.close()
        self.registry.close()


def stand_in_hub():
    """HubAuth and HubOAuth whose "whose token is this" is answered here: a token is the
    name of the person it belongs to, with the service's access scope."""
    from jupyterhub.services.auth import HubAuth, HubOAuth

    def user_for_token(self, token, use_cache=True, session_id="", *, sync=True):
        model = {"kind": "user", "name": token, "scopes": sorted(self.access_scopes)}
        if sync:
            return model

        async def answer():
            return model

        return answer()

    tokens = type("TokensOf", (HubAuth,), {"user_for_token": user_for_token})
    oauth = type("OAuthTokensOf", (HubOAuth,), {"user_for_token": user_for_token})
    return tokens, oauth


def bare(db: Path, one: str | None) -> float:
    """The reference: the bare SQL selects of the rows an answer shows, connection included
    (one request's, or the open queue's when `one` is None)."""
    t = time.perf_counter()
    con = sqlite3.connect(db)
    if one:
        con.execute("SELECT * FROM export_requests WHERE id = ?", (one,)).fetchall()
        con.execute("SELECT * FROM export_files WHERE request_id = ?", (one,)).fetchall()
        con.execute("SELECT * FROM export_reviews WHERE request_id = ?", (one,)).fetchall()
    else:
        con.execute("SELECT * FROM export_requests WHERE state IN ('checked', "
                    "'under-review') ORDER BY created_at").fetchall()  # fmt: skip
        con.execute("SELECT f.* FROM export_files f JOIN export_requests r ON "
                    "r.id = f.request_id WHERE r.state IN ('checked', "
                    "'under-review')").fetchall()  # fmt: skip
        con.execute("SELECT v.* FROM export_reviews v JOIN export_requests r ON "
                    "r.id = v.request_id WHERE r.state IN ('checked', "
                    "'under-review')").fetchall()  # fmt: skip
    con.close()
    return time.perf_counter() - t


def check_rest(what: str, body: bytes, q: Queue, one: str) -> None:
    doc = json.loads(body)
    if what == "list" and sorted(r["id"] for r in doc["requests"]) != sorted(q.ids):
        raise SystemExit(f"the queue has {len(doc['requests'])} requests, not the {len(q.ids)}")
    if what == "open" and len(doc["manifest"]["files"]) != 3:
        raise SystemExit("the request opened without its files")


def check_page(what: str, body: bytes, q: Queue, one: str) -> None:
    html = body.decode()
    if what == "page-list":
        listed = re.findall(r'<tr data-request="([A-Za-z0-9]+)"', html)
        if sorted(listed) != sorted(q.ids):
            raise SystemExit(f"the review page lists {len(listed)} requests, not {len(q.ids)}")
        return
    k = q.ids.index(one)
    shown = re.findall(r'<div class="file" data-file="([^"]+)"', html)
    if shown != list(frozen_files(k)) or 'class="error"' in html:
        raise SystemExit(f"the review page of {one} shows {shown}, or an error")
    # both tables rendered from the frozen bytes: 60 rows each under their header
    if html.count("<tr><td>") != 120 or f"<td>s{60 * k + 1}</td>" not in html:
        raise SystemExit(f"the review page of {one} does not show its tables")


async def timed_rounds(urls: dict, repeat: int, check) -> dict[str, list[float]]:
    """Each URL (a list of them: a page and what it shows) fetched in turn, `repeat` rounds
    after one that warms the apps; every answer checked."""
    from tornado.httpclient import AsyncHTTPClient

    http = AsyncHTTPClient()
    times: dict[str, list[float]] = {what: [] for what in urls}
    for _ in range(repeat + 1):
        for what, (token, fetches) in urls.items():
            headers = {"Authorization": f"token {token}"}
            t = time.perf_counter()
            answers = [await http.fetch(u, headers=headers, raise_error=False) for u in fetches]
            times[what].append(time.perf_counter() - t)
            for u, resp in zip(fetches, answers, strict=True):
                if resp.code != 200:
                    raise SystemExit(f"GET {u}: {resp.code} {resp.body[:300]!r}")
            check(what, answers)
    return {k: v[1:] for k, v in times.items()}


def queue_part(root: Path, n: int, repeat: int) -> list:
    os.environ["VISITING_STATE_DIR"] = str(root / "qstate")
    os.environ["VISITING_DATA_ROOT"] = str(root / "qdata")
    os.environ.pop("VISITING_DATABASE_URL", None)
    from hub.demo.ports import free_port
    from hub.platform.operations import Operations
    from hub.services.admin.application import make_app as admin_app
    from hub.services.admin.backend import Backend
    from hub.services.export.application import make_app as export_app
    from hub.services.export.desk import ExportDesk
    from hub.store.audit import AuditStore
    from hub.store.exports import ExportStore

    q = make_queue(root, n)
    one = q.ids[n // 2]
    freezer = FolderFreezer(q.frozen)
    desk = ExportDesk(q.store, q.registry, q.bundle.platform, freezer, q.clock)
    # the admin service's own stores over the same database, as at a hub
    audit = AuditStore(q.url, clock=q.clock)
    exports = ExportStore(q.url, q.bundle.platform.export, audit, q.clock)
    backend = Backend(Operations(q.registry, audit, q.bundle.platform, q.clock),
                      "http://127.0.0.1:1/hub/api", "admin-token", None)  # fmt: skip
    backend.desk = ExportDesk(exports, q.registry, q.bundle.platform, freezer, q.clock)
    tokens, oauth = stand_in_hub()
    auth = tokens(api_url="http://127.0.0.1:1/hub/api", api_token="export-token")
    oauth.instance(api_url="http://127.0.0.1:1/hub/api", api_token="admin-token",
                   access_scopes={"access:services!service=admin"}, cache_max_age=1)  # fmt: skip

    async def main():
        ports = free_port(), free_port()
        servers = [export_app(desk, auth, PREFIX).listen(ports[0], address="127.0.0.1"),
                   admin_app(backend, ADMIN_PREFIX, os.urandom(32)).listen(
                       ports[1], address="127.0.0.1")]  # fmt: skip
        api = f"http://127.0.0.1:{ports[0]}{PREFIX}api/requests"
        pages = f"http://127.0.0.1:{ports[1]}{ADMIN_PREFIX}review"
        png = f"{pages}/{one}/files/results/fig{q.ids.index(one)}.png"
        urls = {"list": (REVIEWER, [api + "?queue=1"]), "open": (REVIEWER, [f"{api}/{one}"]),
                "page-list": (REVIEWER, [pages]),
                "page-open": (REVIEWER, [f"{pages}/{one}", png])}  # fmt: skip

        def check(what, answers):
            if what in ("list", "open"):
                check_rest(what, answers[0].body, q, one)
            else:
                check_page(what, answers[0].body, q, one)
            if what == "page-open" and answers[1].body[:8] != b"\x89PNG\r\n\x1a\n":
                raise SystemExit("the review page's image is not the frozen PNG")

        try:
            return await timed_rounds(urls, repeat, check)
        finally:
            for server in servers:
                server.stop()

    times = asyncio.run(main())
    backend.pool.shutdown(wait=True)
    rows = []
    for what, part, label in (
        ("list", "queue", f"list the queue ({n} open)"),
        ("open", "queue", "open one request"),
        ("page-list", "review", f"review page: the queue ({n} open)"),
        ("page-open", "review", "review page: one request (2 tables shown) + its PNG"),
    ):
        sql_one = one if what in ("open", "page-open") else None
        bare(q.db, sql_one)
        a = statistics.median(times[what])
        b = statistics.median(bare(q.db, sql_one) for _ in range(max(repeat, 5)))
        rows.append({"part": part, "row": label, "files": None, "bytes": None,
                     "airlock_s": a, "reference_s": b, "ratio": a / b, "airlock_mb_s": None,
                     "reference_mb_s": None, "checks_ok": None, "site_peak_mb": None})  # fmt: skip
    exports.close()
    audit.close()
    q.close()
    return rows


# -- table --------------------------------------------------------------------------------------


def table(rows: list[dict]) -> str:
    out = ["| part | workload | airlock s | reference s | ratio | airlock MB/s | reference MB/s | site peak MB |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        ref = "cp + sha256sum" if r["part"] == "freeze" else "bare SQL select"
        mbs = ("", "", "")
        if r["bytes"]:
            mbs = (
                f"{r['airlock_mb_s']:.0f}",
                f"{r['reference_mb_s']:.0f}",
                f"{r['site_peak_mb']:.0f}",
            )
        out.append(f"| {r['part']} | {r['row']} (vs {ref}) | {r['airlock_s']:.4g} | "
                   f"{r['reference_s']:.4g} | {r['ratio']:.1f}x | {mbs[0]} | {mbs[1]} | {mbs[2]} |")  # fmt: skip
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--small-files", type=int, default=10)
    ap.add_argument("--small-mb", type=float, default=10)
    ap.add_argument("--large-mb", type=float, default=1024)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", help="also write the results as JSON to this file")
    ap.add_argument("--tmp", help="the folder for the temporary files (default: system's)")
    a = ap.parse_args(argv)
    if a.quick:
        a.small_files, a.small_mb, a.large_mb, a.requests, a.repeat = 3, 0.2, 2, 10, 1
    small = [(f"fig{k}.png" if k % 3 == 2 else f"counts{k}.csv", int(a.small_mb * MB))
             for k in range(a.small_files)]  # fmt: skip
    workloads = {"small": small, "large": [("sumstats.csv", int(a.large_mb * MB))]}
    with tempfile.TemporaryDirectory(prefix="bench-export-", dir=a.tmp) as tmp:
        root = Path(tmp)
        rows = freeze_part(root, workloads, a.repeat)
        rows += queue_part(root, a.requests, a.repeat)
    doc = {"sizes": {"small_files": a.small_files, "small_mb": a.small_mb,
                     "large_mb": a.large_mb, "requests": a.requests, "repeat": a.repeat},
           "cores": os.cpu_count(), "rows": rows}  # fmt: skip
    print(table(rows))
    if a.json:
        Path(a.json).write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
