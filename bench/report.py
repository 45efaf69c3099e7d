"""Time to produce a fiscal year's data-usage report from a large audit log.

Writes --events events (default 1,000,000) of fiscal year 2026 into a temporary SQLite
audit store through `AuditStore.append` (batches of 5000, hash-chained as in
production): the guard's events of tanaka and yamada at four sites (servers, kernels,
data opened, downloads, notebook saves), federation queries and a few secretariat
actions. Then, in the same run and on the same store:

- the report: `build_report` (the chain verified from seq 1, one pass over the year's
  events) and all four formats rendered (HTML, PDF, CSV, JSON);
- the reference: `visiting audit export` of the same year (JSON lines to a file), the
  one pass over the log any check of it needs.

Prints both times, their ratio, and the peak resident memory of the process.

    .venv/bin/python bench/report.py [--events 1000000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import random
import resource
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from extensions.contracts.clock import FixedClock, fiscal_year_bounds  # noqa: E402
from extensions.contracts.datasets import CLINICAL, PHENOTYPES, VCF  # noqa: E402
from extensions.contracts.events import FEDERATION_QUERY, SECRETARIAT_ACTION, guard_event  # noqa: E402
from hub.platform.policy import load_policy_dir  # noqa: E402
from hub.report import ReportRequest, build_report, write_report  # noqa: E402
from hub.store.audit import AuditStore  # noqa: E402
from hub.store.registry import ApprovalRegistry  # noqa: E402

SITES = {"nig": "JGAD000101", "ncc": "JGAD000201", "ncgm": "JGAD000301", "tommo": "JGAD000401"}
USERS = ("tanaka", "yamada")
BATCH = 5000


def events(n: int, seed: int = 7):
    """n events spread over FY2026: sessions of a few hundred events each."""
    rng = random.Random(seed)
    since, until = fiscal_year_bounds(2026)
    span = (until - since).total_seconds()
    made = 0
    i = 0
    while made < n:
        user, site = rng.choice(USERS), rng.choice(list(SITES))
        dataset = SITES[site]
        start = since + timedelta(seconds=rng.uniform(0, span - 86400))
        per = min(rng.randint(100, 400), n - made)
        step = timedelta(seconds=rng.uniform(2, 30))
        common = {"user": user, "site": site, "approval_id": "J-DU000101", "version": 1}
        for k in range(per):
            at = start + k * step
            if k == 0:
                schema, data = "server-start", {"approval_end": "2035-03-31T15:00:00+00:00"}
            elif k == per - 1:
                schema, data = "server-stop", {"reason": "shutdown"}
            else:
                roll = rng.random()
                if roll < 0.55:
                    schema = "data-access"
                    name = rng.choice([VCF, CLINICAL, PHENOTYPES])
                    data = {
                        "path": f"/data/{dataset}/{name}",
                        "dataset": dataset,
                        "channel": "process",
                        "count": rng.randint(1, 50),
                    }
                elif roll < 0.70:
                    schema, data = "kernel-start", {"kernel_id": f"k{i}-{k}"}
                elif roll < 0.80:
                    schema, data = "notebook-save", {"path": "analysis.ipynb", "kind": "notebook"}
                elif roll < 0.88:
                    schema = "download-allowed"
                    data = {"path": "plot.png", "route": "files", "size": rng.randint(1e3, 1e6)}
                elif roll < 0.92:
                    schema = "download-blocked"
                    data = {
                        "path": f"/data/{dataset}/genotypes.vcf.gz",
                        "route": "files",
                        "reason": rng.choice(["raw-name", "raw-content", "under-data"]),
                    }
                else:
                    yield common | {
                        "event_id": f"e{i}-{k}",
                        "schema": FEDERATION_QUERY,
                        "time": at.isoformat(),
                        "data": {
                            "task": rng.choice(["allele_frequencies", "gwas_linear"]),
                            "dataset": dataset,
                            "engine": "dask",
                            "outcome": "answered",
                            "suppressions": [
                                {"site": site, "what": "variant", "count": 3, "rule": "mac=5"}
                            ],
                        },
                    }
                    continue
            yield common | {
                "event_id": f"e{i}-{k}",
                "schema": guard_event(schema),
                "time": at.isoformat(),
                "data": data,
            }
        made += per
        i += 1
        if i % 500 == 0:  # now and then the secretariat acts on someone
            yield {
                "event_id": f"s{i}",
                "schema": SECRETARIAT_ACTION,
                "version": 1,
                "time": (start + timedelta(hours=1)).isoformat(),
                "user": user,
                "actor": "jimu",
                "data": {"action": "suspend", "reason": "bench", "changed": False},
            }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--keep", help="keep the store and the report in this folder")
    args = parser.parse_args()
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-report-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        since, until = fiscal_year_bounds(2026)
        clock = FixedClock(until + timedelta(days=10))
        url = f"sqlite:///{tmp / 'registry.sqlite'}"
        registry = ApprovalRegistry(url, clock=clock)
        registry.import_policy(load_policy_dir(REPO / "policies" / "demo"))
        store = AuditStore(url, clock=clock)
        t0 = time.perf_counter()
        batch = []
        for e in events(args.events):
            batch.append(e)
            if len(batch) == BATCH:
                store.append(batch)
                batch = []
        if batch:
            store.append(batch)
        stored = store.count()
        print(f"wrote {stored:,} events in {time.perf_counter() - t0:.1f} s ({url})")

        t0 = time.perf_counter()
        with open(tmp / "export.jsonl", "w", encoding="utf-8") as out:
            exported = store.export(out, since=since, until=until)
        t_export = time.perf_counter() - t0
        print(f"reference: visiting audit export of FY2026: {exported:,} events, {t_export:.1f} s")

        t0 = time.perf_counter()
        doc = build_report(registry, store, ReportRequest(fiscal_year=2026, lang="ja"), clock)
        t_build = time.perf_counter() - t0
        paths = write_report(doc, ["html", "pdf", "csv", "json"], tmp / "out")
        t_report = time.perf_counter() - t0
        a = doc["approvals"][0]
        print(
            f"report: FY2026, {doc['audit_chain']['records_in_period']:,} events, "
            f"{a['usage']['sessions']:,} sessions, {a['usage']['server_hours']:,.0f} server hours; "
            f"build (verify + one pass) {t_build:.1f} s, with the four formats {t_report:.1f} s "
            f"({', '.join(f'{p.suffix[1:]} {p.stat().st_size // 1024} KiB' for p in paths)})"
        )
        print(f"ratio report / export: {t_report / t_export:.2f}")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak resident memory of this process: {peak:.0f} MiB")
        registry.close()
        store.close()
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
