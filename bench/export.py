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
  module's peak resident memory (the children's maximum RSS).
- **A reviewer's queue.** --requests open requests made through `ExportStore` on SQLite
  (each with a checked manifest of three files); the real tornado app of the export
  service on loopback (only "whose token is this" answered without a hub), a site admin
  listing the queue (GET api/requests?queue=1) and opening one request (GET
  api/requests/<id>). Reference: the bare SQL select of the same rows (the requests and
  their files) with sqlite3.

    .venv/bin/python bench/export.py [--quick] [--small-files 10] [--small-mb 10]
                                     [--large-mb 1024] [--requests 100] [--repeat 3]
                                     [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from extensions.contracts.clock import JST, FixedClock  # noqa: E402
from extensions.contracts.export import CheckResult, ExportRules, FrozenFile, Manifest  # noqa: E402
from hub.services.export.freezer import LocalFreezer  # noqa: E402

MB = 1024 * 1024
NOW = datetime(2026, 6, 2, 12, 0, tzinfo=JST)
PREFIX = "/services/export/"
SITE, USER, REVIEWER = "nig", "tanaka", "admin-nig"
DEMO_POLICY = REPO / "policies" / "demo"


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
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data)
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
    freezer = LocalFreezer(state, data, timeout=3600)
    home = freezer.home(SITE, USER)
    rows = []
    for label, files in workloads.items():
        folder = home / label
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
        nbytes = sum(p.stat().st_size for p in paths)
        biggest = max(p.stat().st_size for p in paths)
        rules = ExportRules(max_file_bytes=max(ExportRules.max_file_bytes, biggest + MB),
                            max_request_bytes=max(ExportRules.max_request_bytes, nbytes + MB))  # fmt: skip
        for p in paths:  # page cache warm for both
            with open(p, "rb") as f:
                while f.read(8 * MB):
                    pass
        ref, run, ok = [], [], True
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
            # the children's running maximum: workloads go smallest first, cp and
            # sha256sum stay far below the site's module
            "site_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        })  # fmt: skip
        shutil.rmtree(folder)
    return rows


def _mb(n: float) -> str:
    return f"{n / MB:.0f} MB" if n >= 10 * MB else f"{n / MB:.2g} MB"


# -- part 2: the reviewer's queue --------------------------------------------------------------


def queue_part(root: Path, n: int, repeat: int) -> list:
    os.environ["VISITING_STATE_DIR"] = str(root / "qstate")
    os.environ["VISITING_DATA_ROOT"] = str(root / "qdata")
    os.environ.pop("VISITING_DATABASE_URL", None)
    from jupyterhub.services.auth import HubAuth
    from tornado.httpclient import AsyncHTTPClient

    from hub.demo.ports import free_port
    from hub.platform.policy import load_policy_dir
    from hub.services.export.application import make_app
    from hub.services.export.desk import ExportDesk
    from hub.store.audit import AuditStore
    from hub.store.exports import ExportStore
    from hub.store.registry import ApprovalRegistry

    class TokensOf(HubAuth):
        def user_for_token(self, token, use_cache=True, session_id="", *, sync=True):
            model = {"kind": "user", "name": token}
            if sync:
                return model

            async def answer():
                return model

            return answer()

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
        names = [f"results/table{k}.csv", f"results/fig{k}.png", f"results/counts{k}.tsv"]
        req = store.create(USER, SITE, f"Table {k} of the paper", names)
        files = tuple(FrozenFile(nm, 1000 + k, f"{k:064x}", "text/csv", checks) for nm in names)
        store.record_manifest(req.id, Manifest(req.id, files))
        ids.append(req.id)
    desk = ExportDesk(store, registry, bundle.platform, LocalFreezer(root, root), clock)
    auth = TokensOf(api_url="http://127.0.0.1:1/hub/api", api_token="export-token")
    one = ids[n // 2]

    def bare(sql_one: bool) -> float:
        t = time.perf_counter()
        con = sqlite3.connect(db)
        if sql_one:
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

    async def main():
        port = free_port()
        server = make_app(desk, auth, PREFIX).listen(port, address="127.0.0.1")
        http = AsyncHTTPClient()
        base = f"http://127.0.0.1:{port}{PREFIX}api/requests"
        headers = {"Authorization": f"token {REVIEWER}"}
        times = {"list": [], "open": []}
        try:
            for _ in range(repeat + 1):  # the first round warms the app
                for what, url_ in (("list", base + "?queue=1"), ("open", f"{base}/{one}")):
                    t = time.perf_counter()
                    resp = await http.fetch(url_, headers=headers)
                    times[what].append(time.perf_counter() - t)
                    doc = json.loads(resp.body)
                    if what == "list" and len(doc["requests"]) != n:
                        raise SystemExit(f"the queue has {len(doc['requests'])} requests, not {n}")
                    if what == "open" and len(doc["manifest"]["files"]) != 3:
                        raise SystemExit("the request opened without its files")
        finally:
            server.stop()
        return {k: v[1:] for k, v in times.items()}

    times = asyncio.run(main())
    rows = []
    for what, label, sql_one in (("list", f"list the queue ({n} open)", False),
                                 ("open", "open one request", True)):  # fmt: skip
        bare(sql_one)
        a = statistics.median(times[what])
        b = statistics.median(bare(sql_one) for _ in range(max(repeat, 5)))
        rows.append({"part": "queue", "row": label, "files": None, "bytes": None,
                     "airlock_s": a, "reference_s": b, "ratio": a / b, "airlock_mb_s": None,
                     "reference_mb_s": None, "checks_ok": None, "site_peak_mb": None})  # fmt: skip
    store.close()
    audit.close()
    registry.close()
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
