"""Start and stop the demo platform's processes: the OIDC provider and the hub.

Used by `visiting demo run|up|down` (and so by `make demo`) and by the
integration tests, so the tests start exactly what a user starts. Each
process runs in its own session (process group) with a pid file in the state
folder; stopping signals that group (hub.demo.processes). The hub stops its proxy itself on
SIGTERM; should the hub have died hard, the proxy's own pid file (which
JupyterHub keeps in the state folder) lets `down` stop it too. Nothing the
stack did not start is touched.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from extensions.contracts.clock import CLOCK_FILE_ENV
from extensions.contracts.environment import HUB_URL
from hub.demo import StackError
from hub.demo.ports import describe_holders, free_ports, port_free
from hub.demo.processes import ManagedProcess, stop_pid_file, stop_services_of
from hub.platform.policy import load_policy_dir
from hub.platform.traits import PLATFORM_ENV, REPO_ROOT
from hub.services import local_gateway_ports
from hub.store.registry import ApprovalRegistry


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return 200 <= r.status < 300
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class StackConfig:
    """Where each part listens and keeps its state."""

    platform_dir: Path = REPO_ROOT / "policies" / "demo"
    state_dir: Path | None = None  # default: the platform file's state_dir
    host: str = "127.0.0.1"
    hub_port: int = 8000
    idp_port: int = 9000
    hub_api_port: int = 8081
    proxy_api_port: int = 8001
    audit_port: int = 8082
    enforcer_port: int = 8083
    admin_port: int = 8084
    catalogue_port: int = 8085
    export_port: int = 8086
    gateway_ports: dict[str, int] = field(default_factory=dict)  # site -> port, no containers
    auth_refresh_age: int = 60
    clock_file: Path | None = None  # tests only: a file holding "now"
    sites: bool = False  # Docker engine, images, site networks, Dask clusters, SiteSpawner
    # tests: the egress gates' state and the gateways' query-set audits of earlier stacks on
    # the same engine are removed at start
    fresh_gate_state: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def ephemeral(cls, state_dir: Path, **kwargs) -> StackConfig:
        """Free ports on loopback and a private state folder: a stack for one test session."""
        site_ids = list(
            load_policy_dir(kwargs.get("platform_dir", cls.platform_dir)).platform.sites
        )
        ports = free_ports(9 + len(site_ids))
        return cls(
            state_dir=state_dir,
            hub_port=ports[0],
            idp_port=ports[1],
            hub_api_port=ports[2],
            proxy_api_port=ports[3],
            audit_port=ports[4],
            enforcer_port=ports[5],
            admin_port=ports[6],
            catalogue_port=ports[7],
            export_port=ports[8],
            gateway_ports=dict(zip(site_ids, ports[9:], strict=True)),
            **{"fresh_gate_state": True, **kwargs},
        )

    @property
    def hub_url(self) -> str:
        return f"http://{self.host}:{self.hub_port}"

    @property
    def idp_url(self) -> str:
        return f"http://{self.host}:{self.idp_port}"


#: How long the hub may take to stop: it stops its services one after another (JupyterHub
#: polls each for about a second, more on a busy machine), then its proxy.
HUB_STOP_SECONDS = 60.0


#: The demo's synthetic cohorts: small enough to make in a minute, large enough for the
#: tutorials. Calls are 99.95 % complete, as in well-covered genomes after QC: at 200
#: people a site, a higher missing rate would leave most variants with 1 to 4 people
#: without a call at some site, which disclosure control withholds from a GWAS.
DEMO_COHORTS = {"samples_per_site": 200, "variants": 2000, "seed": 2026, "missing_rate": 0.0005}


class Stack:
    """The OIDC provider and the hub, started in order and stopped together."""

    def __init__(self, config: StackConfig):
        self.config = config
        self.bundle = load_policy_dir(config.platform_dir)
        self.state_dir = (config.state_dir or self.bundle.platform.state_dir).resolve()
        self.processes: list[ManagedProcess] = []

    # -- pieces -----------------------------------------------------------

    def client_secret(self) -> str:
        """The hub's OIDC client secret, random per state folder."""
        path = self.state_dir / "oidc_client_secret"
        if not path.exists():
            self.state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32))
        return path.read_text().strip()

    def base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                PLATFORM_ENV: str(self.config.platform_dir.resolve()),
                "VISITING_STATE_DIR": str(self.state_dir),
                # the hub reads the registry the stack imported the approvals into
                "VISITING_DATABASE_URL": self._database_url(),
            }
        )
        if self.config.clock_file:
            env[CLOCK_FILE_ENV] = str(self.config.clock_file)
        if self.config.sites:
            env["VISITING_SITES"] = "1"
        env.update(self.config.extra_env)
        return env

    def idp_process(self) -> ManagedProcess:
        c = self.config
        clients = self.state_dir / "oidc_clients.json"
        clients.write_text(
            json.dumps(
                [
                    {
                        "client_id": "visiting-hub",
                        "client_secret": self.client_secret(),
                        "redirect_uris": [f"{c.hub_url}/hub/oauth_callback"],
                        "post_logout_redirect_uris": [f"{c.hub_url}/hub/"],
                    }
                ],
                indent=2,
            )
        )
        users = c.platform_dir / "users.yaml"
        env = self.base_env() | {
            "VISITING_IDP_HOST": c.host,
            "VISITING_IDP_PORT": str(c.idp_port),
            "VISITING_IDP_ISSUER": c.idp_url,
            "VISITING_IDP_USERS": str(users.resolve()),
            "VISITING_IDP_CLIENTS": str(clients),
        }
        node = shutil.which("node")
        if node is None:
            raise StackError("node is not installed; run `make setup` first")
        return ManagedProcess(
            "idp", [node, str(REPO_ROOT / "idp" / "server.mjs")], env, self.state_dir, REPO_ROOT
        )

    def hub_process(self) -> ManagedProcess:
        c = self.config
        env = self.base_env() | {
            HUB_URL: c.hub_url,
            "VISITING_IDP_URL": c.idp_url,
            "VISITING_CLIENT_ID": "visiting-hub",
            "VISITING_CLIENT_SECRET": self.client_secret(),
            "VISITING_HUB_API_PORT": str(c.hub_api_port),
            "VISITING_PROXY_API_PORT": str(c.proxy_api_port),
            "VISITING_AUDIT_PORT": str(c.audit_port),
            "VISITING_ENFORCER_PORT": str(c.enforcer_port),
            "VISITING_ADMIN_PORT": str(c.admin_port),
            "VISITING_CATALOGUE_PORT": str(c.catalogue_port),
            "VISITING_EXPORT_PORT": str(c.export_port),
            "VISITING_GATEWAY_PORTS": json.dumps(self.gateway_ports()),
            "VISITING_AUTH_REFRESH_AGE": str(c.auth_refresh_age),
        }
        argv = [
            sys.executable,
            "-m",
            "jupyterhub",
            "-f",
            str(REPO_ROOT / "jupyterhub_config.py"),
        ]
        return ManagedProcess("hub", argv, env, self.state_dir, self.state_dir)

    def import_approvals(self):
        registry = ApprovalRegistry(self._database_url())
        try:
            return registry.import_policy(self.bundle)
        finally:
            registry.close()

    def _database_url(self) -> str:
        if self.config.state_dir is None:
            return self.bundle.platform.database_url
        return f"sqlite:///{self.state_dir / 'registry.sqlite'}"

    # -- whole stack ------------------------------------------------------

    def gateway_ports(self) -> dict[str, int]:
        """site -> port of its gateway when it runs beside the hub (no site containers)."""
        return local_gateway_ports(self.bundle.platform.sites, self.config.gateway_ports)

    def needed_ports(self) -> list[tuple[str, int, str]]:
        """(what, port, address it listens on) for every port the stack's processes take."""
        c = self.config
        # with sites, the hub's proxy and API listen on every address (see hub.plugins.config)
        public = "0.0.0.0" if c.sites else c.host
        ports = [
            ("hub", c.hub_port, public),
            ("OIDC provider", c.idp_port, c.host),
            ("hub API", c.hub_api_port, public),
            ("proxy API", c.proxy_api_port, c.host),
            ("audit", c.audit_port, c.host),
            ("enforcer", c.enforcer_port, c.host),
            ("admin", c.admin_port, c.host),
            ("catalogue", c.catalogue_port, c.host),
            ("export", c.export_port, c.host),
        ]
        if not c.sites:  # with sites, each gateway is a container on its site's network
            ports += [(f"gateway-{s}", p, c.host) for s, p in self.gateway_ports().items()]
        return ports

    def check_ports_free(self) -> None:
        """Refuse to start when a port is given twice or is taken, naming who holds it.

        Everything is checked before anything starts, so a refusal leaves nothing behind.
        """
        needed = self.needed_ports()
        given: dict[int, str] = {}
        for name, port, _ in needed:
            if port in given:
                raise StackError(f"port {port} is given to both {given[port]} and {name}")
            given[port] = name
        taken = [
            f"port {port} ({name}) on {host} is already in use{describe_holders(port)}"
            for name, port, host in needed
            if not port_free(port, host)
        ]
        if taken:
            raise StackError(
                "\n".join(taken) + "\nnothing was started; is a demo already running? "
                "(`make demo-down` stops one started by `make demo-up`; "
                "`visiting demo up --help` lists the flags that choose other ports)"
            )

    def service_health_urls(self) -> dict[str, str]:
        """name -> health route of each hub service, through the hub's proxy."""
        names = ["audit", "enforcer", "admin", "catalogue", "export"]
        names += [f"gateway-{s}" for s in self.bundle.platform.sites]
        return {n: f"{self.config.hub_url}/services/{n}/health" for n in names}

    def wait_services_healthy(self, hub: ManagedProcess, timeout: float) -> None:
        """Every service answers its health check through the proxy, or StackError naming those
        that do not (the hub answers its own health check before its services do)."""
        waiting = self.service_health_urls()
        deadline = time.monotonic() + timeout
        while waiting:
            waiting = {n: u for n, u in waiting.items() if not http_ok(u, timeout=2.0)}
            if not waiting:
                return
            if not hub.alive():
                raise StackError(
                    f"the hub exited with status {hub.proc.returncode} while its services "
                    f"started; last lines of {hub.log_file}:\n{hub.log_tail()}"
                )
            if time.monotonic() > deadline:
                break
            time.sleep(0.3)
        raise StackError(
            f"the hub is up, but {len(waiting)} of its services do not answer their health "
            f"check after {timeout:.0f} s: "
            + ", ".join(f"{n} ({u})" for n, u in waiting.items())
            + f"; last lines of {hub.log_file}:\n{hub.log_tail()}"
        )

    def ensure_data(self, say=lambda _msg: None) -> None:
        """The demo's synthetic cohorts under the platform's data root, written once.

        Cohorts made before are kept; ingest adds what they lack (a summary cache).
        """
        from hub.data.ingest import ingest_datasets
        from hub.data.synth import generate_cohorts, site_specs

        platform = self.bundle.platform
        specs = site_specs(platform.sites.values())
        truth = platform.data_root / "truth.json"
        if truth.exists():
            made = json.loads(truth.read_text())
            if all(made.get(k) == v for k, v in DEMO_COHORTS.items()):
                folders = [platform.data_root / s.site_id / s.analysis_dataset for s in specs]
                ingest_datasets([f for f in folders if f.is_dir()], say=say)
                return
            say("the demo's cohorts were made with other settings; making them anew ...")
        say(f"generating the synthetic cohorts in {platform.data_root} ...")
        generate_cohorts(platform.data_root, specs, **DEMO_COHORTS)

    def start_sites(self, say=lambda _msg: None) -> None:
        """Engine, images, and every site's network, firewall and Dask cluster (idempotent).

        Remembers whether it brought the sites up, so `stop` takes down only that.
        """
        from hub.sites import containers as sites
        from hub.sites.engine import build_images, ensure_engine
        from hub.sites.firewall import installed_hub_ports

        platform = self.bundle.platform
        say("Docker engine ...")
        ensure_engine()
        say("images (built only where something changed) ...")
        build_images()
        self.started_sites = not sites.sites_running(platform)
        say("site networks, firewall and Dask clusters ...")
        ports = (self.config.hub_port, self.config.hub_api_port)
        already = installed_hub_ports()
        for line in sites.sites_up(platform, ports):
            say(f"  {line}")
        self._opened_ports = tuple(p for p in ports if p not in already)
        if self.config.fresh_gate_state:
            for line in sites.remove_gate_volumes(platform):
                say(f"  {line}")
            for line in sites.remove_query_audit_volumes(platform):
                say(f"  {line}")

    def start(self, timeout: float = 90.0) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.check_ports_free()
        self.import_approvals()
        try:
            idp = self.idp_process()
            idp.start()
            self.processes.append(idp)
            idp.wait_ready(
                lambda: http_ok(f"{self.config.idp_url}/.well-known/openid-configuration"), timeout
            )
            if self.config.sites:
                # before the hub: it waits at start for the services it knows by address
                self.start_gateways()
            self.start_hub(timeout)
        except BaseException:
            self.stop()
            raise

    def start_gateways(self) -> None:
        """Each site's federation gateway container, configured for this hub (idempotent)."""
        from hub.sites import containers as sites
        from hub.sites.engine import docker_client

        platform = self.bundle.platform
        for site in platform.sites.values():
            env = sites.gateway_env(
                platform,
                site,
                self.config.hub_api_port,
                self.config.hub_port,
                sites.gateway_token(self.state_dir, site.id),
            )
            client = docker_client(site.docker_endpoint)
            try:
                sites.ensure_gateway(client, platform, site, "visiting/dask:latest", env)
            finally:
                client.close()

    def stop_hub(self) -> None:
        """Stop the hub, its proxy and its services; researchers' servers keep running."""
        for p in [p for p in self.processes if p.name == "hub"]:
            p.stop(timeout=HUB_STOP_SECONDS)
            self.processes.remove(p)
        stop_pid_file(self.state_dir / "proxy.pid")
        stop_services_of(self.state_dir)

    def start_hub(self, timeout: float = 90.0) -> None:
        """The hub, ready when it and every one of its services answer their health checks."""
        hub = self.hub_process()
        hub.start()
        self.processes.append(hub)
        hub.wait_ready(lambda: http_ok(f"{self.config.hub_url}/hub/health"), timeout)
        self.wait_services_healthy(hub, timeout)

    started_sites = False
    _opened_ports: tuple[int, ...] = ()

    def stop(self) -> None:
        for p in reversed(self.processes):
            p.stop(timeout=HUB_STOP_SECONDS if p.name == "hub" else 15.0)
        self.processes.clear()
        stop_pid_file(self.state_dir / "proxy.pid")
        stop_services_of(self.state_dir)
        if self.started_sites:
            from hub.sites.containers import sites_down

            sites_down(self.bundle.platform)
            self.started_sites = False
        elif self.config.sites and self._opened_ports:
            from hub.sites.containers import close_hub_ports

            close_hub_ports(self.bundle.platform, self._opened_ports)
        self._opened_ports = ()

    def stop_recorded(self) -> list[str]:
        """Stop what a previous `start` recorded in the state folder's pid files, and the
        hub's services left running; returns what was still running."""
        stopped = []
        for name in ("hub", "idp"):
            # the hub stops its services one after another, then its proxy
            if stop_pid_file(self.state_dir / "pids" / f"{name}.pid", timeout=HUB_STOP_SECONDS):
                stopped.append(name)
        # left behind only when the hub could not stop them (killed hard)
        if stop_pid_file(self.state_dir / "proxy.pid"):
            stopped.append("proxy")
        stopped += stop_services_of(self.state_dir)
        return stopped

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
