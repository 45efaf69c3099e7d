"""Time from a suspension to each of its four outcomes, for a person with 1 and with 5 servers.

Runs the real platform (IdP, hub, proxy, Docker sites, Dask clusters, gateways,
the enforcer and the admin service) on free loopback ports. `tanaka` gets an
extra approval at the fifth site so he can hold a server at every site. Per
run: his servers start (a kernel running in the first), the secretariat
(`jimu`, by her own token) posts the suspension to the admin service, and
four watchers, started just before, note when each outcome first holds:

- containers: none of his containers is left on the sites' engine;
- token: his API token is answered 403 by the hub;
- login: a fresh login through the IdP is refused (403) by the hub;
- federation: a query to the nig gateway with his token is refused.

The reference, in the same run: the same servers stopped by their owner
through JupyterHub's API (one DELETE after another, as the home page's stop
buttons do) until the containers are gone;
the ratio says what the suspension path adds over JupyterHub's own stop.
Median of --runs runs (default 5).

Also the memory of the whole demo while it runs (five sites' Dask clusters and
gateways, the hub and its services, the IdP, and tanaka's servers, with one
federated allele-frequency run and linear GWAS over his sites): the peak of
the machine's used memory (MemTotal - MemAvailable) above what it used before
the demo started, sampled every 0.5 s, against the 16 GiB the demo must fit in.

    .venv/bin/python bench/suspend.py [--runs 5] [--servers 1,5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import docker
import requests
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hub.demo.stack import Stack, StackConfig  # noqa: E402
from hub.sites.plan import resolve_endpoint  # noqa: E402
from tests.integration.conftest import hub_login, token_of  # noqa: E402

SITES = ["nig", "ncc", "ncgm", "tommo", "imsut"]
OUTCOMES = ("containers", "token", "login", "federation")
LIMIT = 60.0  # seconds a watcher waits before calling the outcome missed


def bench_platform(tmp: Path) -> Path:
    """The demo platform, with tanaka also approved for the fifth site's cohort."""
    dest = tmp / "policy"
    shutil.copytree(REPO / "policies" / "demo", dest)
    (dest / "approvals" / "J-DU000198.yaml").write_text(
        yaml.safe_dump(
            {
                "approval_id": "J-DU000198",
                "institution": "Example University Graduate School of Medicine",
                "purpose": "suspension benchmark: a fifth site",
                "handlers": ["tanaka"],
                "datasets": ["JGAD000501"],
                "period": {"start": "2024-04-01", "end": "2035-03-31"},
                "quota": {"cpu": 0.5, "memory": "1G"},
            }
        )
    )
    return dest


class Person:
    def __init__(self, hub: str, name: str):
        self.hub, self.name = hub, name
        self.session, r = hub_login(hub, name, f"{name}-demo")
        assert r.status_code == 200, f"{name} could not log in: {r.status_code}"

    def _h(self):
        return {"X-XSRFToken": self.session.cookies.get("_xsrf", path="/hub/") or ""}

    def servers(self) -> dict:
        r = self.session.get(f"{self.hub}/hub/api/users/{self.name}", headers=self._h(), timeout=30)
        return r.json().get("servers", {}) if r.status_code == 200 else {}

    def start(self, sites: list[str]) -> None:
        for site in sites:
            r = self.session.post(
                f"{self.hub}/hub/api/users/{self.name}/servers/{site}",
                headers=self._h(),
                timeout=300,
            )
            assert r.status_code in (201, 202), r.text
        deadline = time.monotonic() + 300
        while not all((self.servers().get(s) or {}).get("ready") for s in sites):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}'s servers not ready: {self.servers()}")
            time.sleep(0.3)

    def stop_all(self, sites: list[str]) -> None:
        for site in sites:
            self.session.delete(
                f"{self.hub}/hub/api/users/{self.name}/servers/{site}",
                headers=self._h(),
                timeout=120,
            )


def containers_of(engine, user: str) -> list:
    return engine.containers.list(filters={"label": f"org.visiting.user={user}"})


def watch(outcomes: dict, name: str, t0_box: list, check, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            if t0_box and check():
                outcomes[name] = time.perf_counter() - t0_box[0]
                return
        except requests.RequestException:
            pass
        time.sleep(0.02)


def one_suspension(stack, engine, jimu: str, sites: list[str]) -> dict[str, float]:
    hub = stack.config.hub_url
    tanaka = Person(hub, "tanaka")
    tanaka.start(sites)
    token = token_of(stack, "tanaka")
    r = requests.post(
        f"{hub}/user/tanaka/{sites[0]}/api/kernels",
        headers={"Authorization": f"token {token}"},
        json={"name": "python3"},
        timeout=60,
    )
    assert r.status_code == 201, r.text
    auth = {"Authorization": f"token {token}"}
    checks = {
        "containers": lambda: not containers_of(engine, "tanaka"),
        "token": lambda: (
            requests.get(f"{hub}/hub/api/user", headers=auth, timeout=10).status_code == 403
        ),
        "login": lambda: hub_login(hub, "tanaka", "tanaka-demo")[1].status_code == 403,
        "federation": lambda: (
            requests.post(
                f"{hub}/services/gateway-nig/api/tasks/cohort_counts",
                json={"dataset": "JGAD000101", "params": {"by": "sex"}},
                headers=auth,
                timeout=30,
            ).status_code
            == 403
        ),
    }
    outcomes: dict[str, float] = {}
    t0: list[float] = []
    stop = threading.Event()
    watchers = [
        threading.Thread(target=watch, args=(outcomes, n, t0, c, stop), daemon=True)
        for n, c in checks.items()
    ]
    for w in watchers:
        w.start()
    t0.append(time.perf_counter())
    r = requests.post(
        f"{hub}/services/admin/api/suspend",
        json={"user": "tanaka", "reason": "benchmark"},
        headers={"Authorization": f"token {jimu}"},
        timeout=120,
    )
    outcomes["answer"] = time.perf_counter() - t0[0]
    assert r.status_code == 200, r.text
    for w in watchers:
        w.join(LIMIT)
    stop.set()
    r = requests.post(
        f"{hub}/services/admin/api/reinstate",
        json={"user": "tanaka", "reason": "benchmark run over"},
        headers={"Authorization": f"token {jimu}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    missed = [o for o in OUTCOMES if o not in outcomes]
    if missed:
        raise RuntimeError(f"outcomes not reached within {LIMIT:.0f} s: {missed}")
    return outcomes


def used_memory() -> int:
    info = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, value = line.split(":", 1)
        info[key] = int(value.split()[0]) * 1024
    return info["MemTotal"] - info["MemAvailable"]


class MemorySampler(threading.Thread):
    """The peak of the machine's used memory above a baseline, sampled twice a second."""

    def __init__(self):
        super().__init__(daemon=True)
        self.baseline = used_memory()
        self.peak = 0
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            self.peak = max(self.peak, used_memory() - self.baseline)
            time.sleep(0.5)


def federated_load(stack, sites: list[str]) -> dict[str, float]:
    """One federated allele-frequency run and one linear GWAS over tanaka's sites, timed."""
    from extensions.federation import connect

    tanaka = Person(stack.config.hub_url, "tanaka")
    tanaka.start(sites)
    fed = connect(hub_url=stack.config.hub_url, token=token_of(stack, "tanaka"))
    t0 = time.perf_counter()
    fed.allele_frequencies()
    t1 = time.perf_counter()
    fed.gwas_linear(covariates=["sex", "age_band"])
    t2 = time.perf_counter()
    tanaka.stop_all(sites)
    return {"allele_frequencies": t1 - t0, "gwas_linear": t2 - t1}


def one_plain_stop(stack, engine, sites: list[str]) -> float:
    tanaka = Person(stack.config.hub_url, "tanaka")
    tanaka.start(sites)
    t0 = time.perf_counter()
    tanaka.stop_all(sites)
    while containers_of(engine, "tanaka"):
        time.sleep(0.02)
    return time.perf_counter() - t0


def _interrupt(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per size (default 5)")
    ap.add_argument("--servers", default="1,5", help="numbers of servers (default 1,5)")
    args = ap.parse_args()
    try:
        sizes = [int(x) for x in args.servers.split(",")]
    except ValueError:
        ap.error("--servers takes numbers separated by commas, e.g. 1,5")
    if args.runs < 1 or not sizes or not all(1 <= n <= len(SITES) for n in sizes):
        ap.error(f"--runs must be at least 1 and --servers between 1 and {len(SITES)}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-suspend-"))
    os.environ.setdefault("VISITING_DATA_ROOT", str(REPO / "var" / "data"))
    stack = Stack(
        StackConfig.ephemeral(tmp / "state", sites=True, platform_dir=bench_platform(tmp))
    )
    engine_was_up = (
        subprocess.run(["bash", str(REPO / "scripts/docker.sh"), "status"], capture_output=True)
    ).returncode == 0
    engine = None
    results: dict[int, dict[str, list[float]]] = {}
    sampler = MemorySampler()
    sampler.start()
    try:
        print("starting the platform ...", flush=True)
        stack.ensure_data()
        stack.start_sites()
        engine = docker.DockerClient(base_url=resolve_endpoint("local"))
        stack.start()
        jimu = token_of(stack, "jimu")
        load = federated_load(stack, SITES[:4])
        # Ctrl-C and SIGTERM end the runs and take the platform down (the analysis client's
        # imports may have put other handlers in place)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _interrupt)
        print(
            "  federated load over 4 sites: "
            + ", ".join(f"{k} {v:.1f} s" for k, v in load.items()),
            flush=True,
        )
        for n in sizes:
            sites = SITES[:n]
            per = results.setdefault(n, {k: [] for k in (*OUTCOMES, "answer", "plain stop")})
            for i in range(args.runs):
                out = one_suspension(stack, engine, jimu, sites)
                for k, v in out.items():
                    per[k].append(v)
                per["plain stop"].append(one_plain_stop(stack, engine, sites))
                print(
                    f"  {n} server(s), run {i + 1}: "
                    + ", ".join(f"{k} {v:.2f} s" for k, v in sorted(out.items())),
                    flush=True,
                )
    finally:
        sampler.done.set()
        stack.stop()
        if engine is not None:
            engine.close()
        if not engine_was_up:  # leave the machine as found
            subprocess.run(["bash", str(REPO / "scripts/docker.sh"), "down"], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(f"Suspension to outcome, median of {args.runs} runs (seconds; ratio to a plain stop)")
    head = "| outcome | " + " | ".join(f"{n} server{'s' if n > 1 else ''}" for n in sizes) + " |"
    print(head)
    print("|" + "---|" * (len(sizes) + 1))
    for k in ("answer", *OUTCOMES, "plain stop"):
        cells = []
        for n in sizes:
            med = statistics.median(results[n][k])
            ref = statistics.median(results[n]["plain stop"])
            cells.append(f"{med:.2f} s ({med / ref:.2f}x)")
        print(f"| {k} | " + " | ".join(cells) + " |")
    worst = max(statistics.median(results[n][k]) for n in sizes for k in OUTCOMES)
    print(f"\nslowest outcome (median): {worst:.2f} s; target: under 2 s")
    gib = sampler.peak / 1024**3
    print(
        f"peak memory of the whole demo (five sites' Dask clusters and gateways, hub, services, "
        f"IdP, up to {max(sizes)} servers, a federated run): {gib:.2f} GiB of 16 GiB "
        f"({gib / 16:.2f}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
