"""The federated side of bench/federation.py: the demo's site processes and the real client.

Per site, as the demo runs a site (`hub.sites.containers.ensure_dask`, `ensure_gateway`)
but as processes on loopback instead of containers:

- `dask scheduler`, and the site's `dask worker`s as `hub.sites.containers.worker_plans`
  plans them from the demo platform's `dask:` block (the demo: one worker of
  one thread and 1G a site, BLAS on one thread; a nanny and its worker
  process), with the preload `bench/worker_bytes.py`, which counts the bytes
  of results a worker sends (see there);
- the site's gateway, `python -m extensions.federation.gateway`, with the environment
  `hub.sites.containers.gateway_env` gives the demo's (the site, the platform's
  disclosure rules, one BLAS thread, the service prefix and token), its
  addresses this machine's: the data folder, the scheduler, a query-set
  audit folder of its own, and the hub API and audit service, both answered
  by `StubHub` in this process (whose token is whose, and one approval
  covering the site's dataset, in the shapes the hub's `/hub/api/user` and
  the audit service's `api/approvals/<user>` give them; audit events are
  accepted and counted).

The client is `extensions.federation.client.Federation` itself, its gateways
set directly (each asked for `api/datasets` with the researcher's token, as
`discover` would through the proxy): its rounds, wire decoding and
`combine` are the real ones. `MeasuredFederation` asks the sites one at a
time (the machine's cores are not shared between sites) and times each
site's answer at the client: the request, the site's work, the body read
and decoded. `combine` is the rest of `Federation.run`'s wall time: the
combining half and the client's own overhead.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

from bench.federation_procs import BenchError, Service, free_port, say, vm_hwm
from extensions.contracts.environment import AUDIT_URL, QUERY_AUDIT_DIR, SITE_DATA
from extensions.contracts.service import HUB_PID_ENV
from extensions.federation.client import Federation, FederationError, SiteGateway

REPO = Path(__file__).resolve().parent.parent
PRELOAD = Path(__file__).resolve().parent / "worker_bytes.py"
USER = "bench-researcher"
USER_TOKEN = "bench-researcher-token"
APPROVAL = "J-DU-BENCH-1"


# ---------------------------------------------------------------------------
# the hub's API and audit service, as a gateway asks them


class StubHub:
    """The two hub endpoints a gateway asks, on loopback, in a thread of this process.

    GET  /hub/api/user                               the caller's token -> its model
    GET  /services/audit/api/approvals/<user>        a gateway's token -> approvals there
    POST /services/audit/api/events                  federation.query events, counted

    `datasets` maps each site to its dataset; each gateway has a token of its
    own (`gateway_token`) and is told only about its site, as the audit
    service does. The researcher holds one approval covering every site's
    dataset, active, never reset.
    """

    def __init__(self, datasets: dict[str, str]):
        self.datasets = dict(datasets)
        self.events: list[dict] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def gateway_token(site: str) -> str:
        return f"bench-gateway-{site}-token"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/hub/api"

    @property
    def audit_url(self) -> str:
        return f"{self.url}/services/audit/"

    def __enter__(self) -> StubHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- the answers ---------------------------------------------------------------

    def user_model(self, token: str) -> dict | None:
        """GET /hub/api/user: the researcher's token may use every site's gateway."""
        if token != USER_TOKEN:
            return None
        scopes = [f"access:services!service=gateway-{s}" for s in sorted(self.datasets)]
        return {"kind": "user", "name": USER, "scopes": scopes, "admin": False}

    def approvals(self, token: str, user: str) -> dict | None:
        """GET api/approvals/<user>: only a gateway's token, about its own site."""
        site = next((s for s in self.datasets if token == self.gateway_token(s)), None)
        if site is None:
            return None
        approvals = []
        if user == USER:
            approvals.append(
                {
                    "approval_id": APPROVAL,
                    "datasets": [self.datasets[site]],
                    "end": "2099-03-31",
                    "query_audit_reset": None,
                }
            )
        return {"user": user, "site": site, "approvals": approvals}

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet: the benchmark prints its own lines
                pass

            def token(self) -> str:
                scheme, _, token = self.headers.get("Authorization", "").partition(" ")
                return token if scheme.lower() in ("token", "bearer") else ""

            def answer(self, status: int, doc: dict) -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                path = urlparse(self.path).path
                if path == "/hub/api/user":
                    model = hub.user_model(self.token())
                    return self.answer(403 if model is None else 200, model or {"status": 403})
                prefix = "/services/audit/api/approvals/"
                if path.startswith(prefix):
                    doc = hub.approvals(self.token(), unquote(path[len(prefix) :]))
                    return self.answer(403 if doc is None else 200, doc or {"status": 403})
                return self.answer(404, {"status": 404})

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if urlparse(self.path).path == "/services/audit/api/events":
                    events = json.loads(body or b"{}").get("events", [])
                    hub.events.extend(events)
                    return self.answer(200, {"stored": len(events), "duplicates": 0})
                return self.answer(404, {"status": 404})

        return Handler


# ---------------------------------------------------------------------------
# one site's processes


def demo_platform():
    from hub.platform.policy import load_platform

    return load_platform(REPO / "policies" / "demo")


def with_site_cores(platform, cores: float):
    """The platform with every site's `dask:` block given `cores` (its memory kept)."""
    sites = {
        name: dataclasses.replace(spec, dask=dataclasses.replace(spec.dask, cores=cores))
        for name, spec in platform.sites.items()
    }
    return dataclasses.replace(platform, sites=sites)


def worker_command(plan, address: str, local_directory: Path) -> list[str]:
    """A worker plan's `dask worker` command (`hub.sites.containers.worker_plans`) on loopback: this
    scheduler, this host, a directory of its own, the byte-counting preload."""
    where = {"--host": "127.0.0.1", "--local-directory": str(local_directory)}
    cmd = [str(Path(sys.executable).with_name("dask")), "worker", address]
    args = list(plan.command[3:])
    for i in range(0, len(args), 2):
        cmd += [args[i], where.get(args[i], args[i + 1])]
    return [*cmd, "--dashboard-address", "127.0.0.1:0", "--preload", str(PRELOAD)]


@dataclass
class Site:
    site: str
    dataset: str
    data_root: Path
    work: Path  # this site's logs, audit folder, scheduler file, workers' directories
    services: list[Service] = field(default_factory=list)
    gateway_url: str = ""

    def bytes_files(self) -> list[Path]:
        return sorted(self.work.glob("worker-*-bytes.json"))

    def worker_counts(self) -> dict:
        """The preloads' counters (see bench/worker_bytes.py), summed over the site's workers;
        `pids` lists the worker processes."""
        total: dict = {"pids": []}
        for path in self.bytes_files():
            try:
                counts = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            total["pids"].append(counts.pop("pid"))
            for k, v in counts.items():
                total[k] = total.get(k, 0) + v
        return total

    def peaks(self) -> dict[str, int]:
        """VmHWM of the site's processes now: scheduler, nannies, workers (the largest in
        `worker`, all of them in `workers`), gateway."""
        out: dict[str, int] = {}
        for s in self.services:
            pids = s.pids()
            if pids:
                out[s.name] = out.get(s.name, 0) + vm_hwm(pids[0])
        workers = [vm_hwm(pid) for pid in self.worker_counts()["pids"]]
        out["workers"] = sum(workers)
        out["worker"] = max(workers, default=0)
        return out

    def start(self, hub: StubHub, platform) -> None:
        from hub.sites.containers import gateway_env, worker_plans

        spec = platform.sites[self.site]
        self.work.mkdir(parents=True)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        scheduler_file = self.work / "scheduler.json"
        self.services.append(
            Service(
                "scheduler",
                [str(Path(sys.executable).with_name("dask")), "scheduler", "--host", "127.0.0.1",
                 "--port", "0", "--dashboard-address", "127.0.0.1:0",
                 "--scheduler-file", str(scheduler_file)],
                env, self.work / "scheduler.log",
            )
        )  # fmt: skip
        address = wait_for(lambda: read_address(scheduler_file), f"{self.site}'s scheduler", self)
        plans = worker_plans(spec)
        for n, plan in enumerate(plans, start=1):
            counts = self.work / f"worker-{n}-bytes.json"
            self.services.append(
                Service(
                    "nanny",
                    worker_command(plan, address, self.work / f"worker-{n}"),
                    {**env, **plan.environment, "BENCH_WORKER_BYTES": str(counts)},
                    self.work / f"worker-{n}.log",
                )
            )
        port = free_port()
        # the demo's gateway environment, its addresses those of this machine's loopback
        genv = gateway_env(platform, spec, 0, 0, StubHub.gateway_token(self.site))
        genv.update(
            {
                SITE_DATA: str(self.data_root),
                "DASK_SCHEDULER_ADDRESS": address,
                "JUPYTERHUB_API_URL": hub.api_url,
                AUDIT_URL: hub.audit_url,
                QUERY_AUDIT_DIR: str(self.work / "query-audit"),
                # the gateway's life tied to this process's, as to the hub's
                HUB_PID_ENV: str(os.getpid()),
            }
        )
        (self.work / "query-audit").mkdir()
        self.services.append(
            Service(
                "gateway",
                [sys.executable, "-m", "extensions.federation.gateway", "--ip", "127.0.0.1",
                 "--port", str(port)],
                {**env, **genv}, self.work / "gateway.log", cwd=REPO,
            )
        )  # fmt: skip
        self.gateway_url = f"http://127.0.0.1:{port}{genv['JUPYTERHUB_SERVICE_PREFIX']}"
        wait_for(lambda: health(self.gateway_url), f"{self.site}'s gateway", self)
        wait_for(
            lambda: len(self.worker_counts()["pids"]) == len(plans), f"{self.site}'s workers", self
        )

    def stop(self) -> None:
        for s in reversed(self.services):  # gateway, workers, then scheduler
            s.stop()
        self.services.clear()

    def logs(self) -> str:
        return "\n".join(f"--- {s.name} ({s.log}):\n{s.tail()}" for s in self.services)


def read_address(path: Path) -> str | None:
    try:
        return json.loads(path.read_text())["address"]
    except (OSError, ValueError, KeyError):
        return None


def health(url: str) -> bool:
    import requests

    try:
        return requests.get(url + "health", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def wait_for(check, what: str, site: Site, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        dead = [s.name for s in site.services if not s.alive()]
        if dead:
            raise BenchError(f"{what}: {', '.join(dead)} exited\n{site.logs()}")
        time.sleep(0.2)
    raise BenchError(f"{what} not ready within {timeout:.0f} s\n{site.logs()}")


class Sites:
    """Every site's processes and the stub hub; a context manager that stops them all."""

    def __init__(
        self, root: Path, datasets: dict[str, str], work: Path, cores: float | None = None
    ):
        self.hub = StubHub(datasets)
        self.cores = cores  # each site's Dask cores; None: the demo platform's
        self.sites = [
            Site(site, dataset, root / "sites" / site, work / site)
            for site, dataset in datasets.items()
        ]

    def __enter__(self) -> Sites:
        self.hub.__enter__()
        try:
            platform = demo_platform()
            if self.cores is not None:
                platform = with_site_cores(platform, self.cores)
            for s in self.sites:
                s.start(self.hub, platform)
                say(f"{s.site}: scheduler, worker and gateway up ({s.gateway_url})")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        for s in self.sites:
            s.stop()
        self.hub.__exit__()

    def client(self) -> MeasuredFederation:
        return MeasuredFederation(self.hub, {s.site: s.gateway_url for s in self.sites})

    def worker_counts(self) -> dict[str, dict]:
        return {s.site: s.worker_counts() for s in self.sites}

    def peaks(self) -> dict[str, dict[str, int]]:
        return {s.site: s.peaks() for s in self.sites}


# ---------------------------------------------------------------------------
# the client


@dataclass
class Answer:
    """One site's answer in one round, as the client saw it."""

    site: str
    round: int
    seconds: float
    body_bytes: int  # the response's body on the wire
    request_bytes: int  # what the client sent (parameters, a round's state)
    #: the gateway's seconds by phase (its Server-Timing header: open, audit, half, ...)
    phases: dict[str, float] = field(default_factory=dict)


class MeasuredFederation(Federation):
    """The real client, asking one site at a time and timing each answer (see the module doc)."""

    def __init__(self, hub: StubHub, urls: dict[str, str]):
        super().__init__(hub.url, hub.api_url, USER_TOKEN, engine="dask")
        self.answers: list[Answer] = []
        self._turn = threading.Lock()
        self._last: dict = {}
        self.session.hooks["response"].append(self._record)
        for site, url in urls.items():
            r = self.session.get(url + "api/datasets", timeout=60)
            if r.status_code != 200 or not r.json().get("datasets"):
                raise FederationError(f"site {site}: no dataset to analyse ({r.status_code})")
            self.gateways[site] = SiteGateway(site, url, r.json()["datasets"])

    def _record(self, r, *args, **kwargs):
        length = r.headers.get("Content-Length")
        self._last = {
            "body": int(length) if length is not None else len(r.content),
            "request": len(r.request.body or b""),
            "phases": server_timing(r.headers.get("Server-Timing", "")),
        }
        return r

    def _ask(self, site, *args, **kwargs):
        with self._turn:
            t0 = time.perf_counter()
            half = super()._ask(site, *args, **kwargs)
            seconds = time.perf_counter() - t0
            n = sum(1 for a in self.answers if a.site == site)
            self.answers.append(
                Answer(
                    site, n + 1, seconds, self._last["body"], self._last["request"],
                    self._last["phases"],
                )
            )  # fmt: skip
        return half

    def measure(self, task: str, params: dict, sites: Sites) -> tuple[object, dict]:
        """(result, figures) of one federated run: per site and round seconds and bytes,
        combine, the bytes each site's worker sent, the wall time."""
        self.answers = []
        before = sites.worker_counts()
        t0 = time.perf_counter()
        result = self.run(task, params, timeout=24 * 3600)
        wall = time.perf_counter() - t0
        after = sites.worker_counts()
        return result, figures(self.answers, wall, before, after)


def server_timing(header: str) -> dict[str, float]:
    """{phase: seconds} of a Server-Timing header ("half;dur=12.5, encode;dur=0.4")."""
    out: dict[str, float] = {}
    for part in header.split(","):
        name, _, rest = part.strip().partition(";")
        dur = next((p[4:] for p in rest.split(";") if p.strip().startswith("dur=")), None)
        if name and dur is not None:
            try:
                out[name] = float(dur.strip()) / 1000
            except ValueError:
                continue
    return out


def figures(answers: list[Answer], wall: float, before: dict, after: dict) -> dict:
    """The measurement of one run from its answers (see `MeasuredFederation.measure`)."""
    phases: dict[str, float] = {}
    for a in answers:
        for k, v in a.phases.items():
            phases[k] = phases.get(k, 0.0) + v
    site_s: dict[str, float] = {}
    body: dict[str, int] = {}
    request: dict[str, int] = {}
    rounds: dict[int, list[float]] = {}
    for a in answers:
        site_s[a.site] = site_s.get(a.site, 0.0) + a.seconds
        body[a.site] = body.get(a.site, 0) + a.body_bytes
        request[a.site] = request.get(a.site, 0) + a.request_bytes
        rounds.setdefault(a.round, []).append(a.seconds)
    combine = max(0.0, wall - sum(site_s.values()))
    worker = {
        site: {
            k: after.get(site, {}).get(k, 0) - before.get(site, {}).get(k, 0)
            for k in ("get_data_bytes", "get_data_calls", "result_nbytes")
        }
        for site in site_s
    }
    return {
        "site_s": site_s,
        "combine_s": combine,
        "rounds": len(rounds),
        "federated_s": sum(site_s.values()) + combine,
        "slowest_site_plus_combine_s": sum(max(v) for v in rounds.values()) + combine,
        "wall_s": wall,
        "site_bytes": body,
        "request_bytes": request,
        "worker_bytes": worker,
        # summed over the sites' answers: where the gateways' time went
        "gateway_phases_s": phases,
    }
