"""The sites' infrastructure on a Docker engine: networks, host firewall, Dask clusters.

Each site is one internal Docker network (no route out) whose host bridge has
a fixed name, so the host firewall can speak of it:

- .1 is the host (the hub's API and proxy listen there, nothing else may be reached);
- .2 the site's Dask scheduler, .3 onwards its workers, which run the
  federation gateway's tasks over all the site's data (as many, and each as
  large, as the site's `dask:` block in the platform file says);
- .64 the site's federation gateway;
- .128-.255 researchers' servers, which may reach the hub and nothing else:
  not each other, not the site's Dask cluster or gateway, not other host ports.
  Each server runs its own Dask cluster inside its container
  (`SERVER_DASK_SCHEDULER`), next to exactly the data its approval mounts.

The firewall lives in two chains of its own, `VISITING-INPUT` (container to
host) and `VISITING-FORWARD` (container to container, hooked into Docker's
`DOCKER-USER`), so installing is idempotent and removing takes exactly what
was added.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from extensions.contracts.environment import AUDIT_URL, DISCLOSURE, QUERY_AUDIT_DIR, SITE, SITE_DATA
from hub.platform.policy import Platform, Site

ENDPOINT_FILE = Path("/run/visiting/docker-endpoint")
INPUT_CHAIN = "VISITING-INPUT"
FORWARD_CHAIN = "VISITING-FORWARD"
SCHEDULER_PORT = 8786
DASHBOARD_PORT = 8787
# a researcher's server's own Dask scheduler, started inside the container by
# images/singleuser/visiting-singleuser
SERVER_DASK_SCHEDULER = f"tcp://127.0.0.1:{SCHEDULER_PORT}"
LABEL = "org.visiting.site"
# what a container was started with, as a digest: a running one with another is recreated
GATEWAY_ENV_LABEL = "org.visiting.gateway-env"
WORKER_PLAN_LABEL = "org.visiting.worker-plan"
GATEWAY_PORT = 8765
#: One BLAS thread per Dask thread, so that a worker's threads times its BLAS threads are
#: its cores. distributed's nanny sets the same in the worker process
#: (`distributed.nanny.pre-spawn-environ`); set on the container it holds for every
#: process there, with or without a nanny, whatever Dask's configuration says.
ONE_BLAS_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
#: where a gateway container keeps its query-set audits (a volume per site)
QUERY_AUDIT_MOUNT = "/var/lib/visiting-query-audit"


class SiteError(Exception):
    """A site could not be set up; the message names the site and the part."""


def resolve_endpoint(endpoint: str) -> str:
    """The Docker endpoint to talk to: 'local' means the engine the project's scripts run."""
    if endpoint != "local":
        return endpoint
    if os.environ.get("VISITING_DOCKER_HOST"):
        return os.environ["VISITING_DOCKER_HOST"]
    try:
        return ENDPOINT_FILE.read_text().strip()
    except FileNotFoundError:
        return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


@dataclass(frozen=True)
class SitePlan:
    """Addresses and names of one site's infrastructure, derived from its /24."""

    site: str
    network: str
    subnet: ipaddress.IPv4Network

    @property
    def bridge(self) -> str:
        # Linux interface names hold at most 15 characters; site ids at most 16, so cut
        return f"vis-{self.site}"[:15]

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)

    @property
    def scheduler_ip(self) -> str:
        return str(self.subnet.network_address + 2)

    def worker_ip(self, n: int) -> str:
        return str(self.subnet.network_address + 2 + n)

    @property
    def federation_ip(self) -> str:
        """The site's federation gateway, below the researchers' range."""
        return str(self.subnet.network_address + 64)

    @property
    def gateway_name(self) -> str:
        return f"visiting-gateway-{self.site}"

    @property
    def users_range(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"{self.subnet.network_address + 128}/25")

    @property
    def scheduler_address(self) -> str:
        return f"tcp://{self.scheduler_ip}:{SCHEDULER_PORT}"

    @property
    def scheduler_name(self) -> str:
        return f"visiting-dask-{self.site}-scheduler"

    @property
    def worker_prefix(self) -> str:
        """What the names of the site's worker containers start with."""
        return f"visiting-dask-{self.site}-worker-"

    def worker_name(self, n: int) -> str:
        return f"{self.worker_prefix}{n}"

    @classmethod
    def for_site(cls, site: Site) -> SitePlan:
        return cls(site=site.id, network=site.network, subnet=site.subnet)


# ---------------------------------------------------------------------------
# firewall: pure rule lists, then applying them


def firewall_rules(
    plans: Iterable[SitePlan], hub_ports: Iterable[int]
) -> dict[str, list[list[str]]]:
    """iptables rules (without the `-A CHAIN` prefix) for both chains, in order."""
    inp: list[list[str]] = []
    fwd: list[list[str]] = []
    ports = sorted(set(hub_ports))
    for p in plans:
        br, users = p.bridge, str(p.users_range)
        inp.append(
            ["-i", br, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"]
        )
        for port in ports:
            inp.append(["-i", br, "-p", "tcp", "--dport", str(port), "-j", "ACCEPT"])
        # everything else a site container sends to the host: DNS, other services, decoys
        inp.append(["-i", br, "-j", "DROP"])

        fwd.append(
            [
                "-i",
                br,
                "-o",
                br,
                "-m",
                "conntrack",
                "--ctstate",
                "ESTABLISHED,RELATED",
                "-j",
                "RETURN",
            ]
        )
        fwd.append(["-i", br, "-o", br, "-s", users, "-j", "DROP"])
        fwd.append(["-i", br, "-o", br, "-d", users, "-j", "DROP"])
        # whatever leaves the bridge for anywhere else (the internal network already has
        # no route out; this holds even if a network is recreated without --internal)
        fwd.append(["-i", br, "!", "-o", br, "-j", "DROP"])
    return {INPUT_CHAIN: inp, FORWARD_CHAIN: fwd}


def _iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    exe = shutil.which("iptables")
    if exe is None:
        raise SiteError("iptables is not installed (scripts/docker.sh installs it with the engine)")
    r = subprocess.run([exe, "-w", *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise SiteError(f"iptables {' '.join(args)}: {r.stderr.strip()}")
    return r


def installed_hub_ports() -> set[int]:
    """The hub ports the installed rules already open (another stack on this machine may use them)."""
    r = _iptables("-S", INPUT_CHAIN, check=False)
    if r.returncode != 0:
        return set()
    ports = set()
    for line in r.stdout.splitlines():
        parts = line.split()
        if "--dport" in parts and parts[-1] == "ACCEPT":
            ports.add(int(parts[parts.index("--dport") + 1]))
    return ports


def install_firewall(
    plans: Iterable[SitePlan], hub_ports: Iterable[int], closing: Iterable[int] = ()
) -> int:
    """Replace the project's chains with the rules for `plans`; returns the number of rules.

    Hub ports already opened stay open, so a second stack on the machine (the
    tests beside a running demo) does not cut the first one off; a stack that
    stops names its own ports in `closing`.
    """
    ports = (set(hub_ports) | installed_hub_ports()) - set(closing)
    rules = firewall_rules(plans, ports)
    for chain, hook in ((INPUT_CHAIN, "INPUT"), (FORWARD_CHAIN, "DOCKER-USER")):
        if _iptables("-n", "-L", chain, check=False).returncode != 0:
            _iptables("-N", chain)
        _iptables("-F", chain)
        for rule in rules[chain]:
            _iptables("-A", chain, *rule)
        if _iptables("-C", hook, "-j", chain, check=False).returncode != 0:
            _iptables("-I", hook, "1", "-j", chain)
    return sum(len(r) for r in rules.values())


def remove_firewall() -> None:
    for chain, hook in ((INPUT_CHAIN, "INPUT"), (FORWARD_CHAIN, "DOCKER-USER")):
        while _iptables("-D", hook, "-j", chain, check=False).returncode == 0:
            pass
        if _iptables("-n", "-L", chain, check=False).returncode == 0:
            _iptables("-F", chain)
            _iptables("-X", chain)


# ---------------------------------------------------------------------------
# the engine and the images, from the project's scripts

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _script(*argv: str, what: str) -> str:
    r = subprocess.run(["bash", str(SCRIPTS / argv[0]), *argv[1:]], capture_output=True, text=True)
    if r.returncode != 0:
        tail = "\n".join((r.stdout + r.stderr).splitlines()[-15:])
        raise SiteError(f"{what} failed (scripts/{argv[0]}):\n{tail}")
    return r.stdout + r.stderr


def ensure_engine() -> str:
    """A Docker engine answering (the machine's, or one the project starts); its endpoint."""
    _script("docker.sh", "up", what="starting the Docker engine")
    return resolve_endpoint("local")


def build_images() -> str:
    """The project's images, rebuilt only where their inputs changed; the script's report."""
    return _script("images.sh", what="building the images")


def sites_running(platform: Platform) -> bool:
    """True when every site's Dask scheduler is running (someone already brought the sites up)."""
    import docker

    for site in platform.sites.values():
        client = docker_client(site.docker_endpoint)
        try:
            c = client.containers.get(SitePlan.for_site(site).scheduler_name)
            if c.status != "running":
                return False
        except docker.errors.NotFound:
            return False
        finally:
            client.close()
    return True


# ---------------------------------------------------------------------------
# Docker objects


def docker_client(endpoint: str):
    import docker

    return docker.DockerClient(base_url=resolve_endpoint(endpoint), version="auto", timeout=120)


def ensure_network(client, plan: SitePlan):
    """The site's internal network, created if missing; an existing one must match the plan."""
    import docker

    try:
        net = client.networks.get(plan.network)
    except docker.errors.NotFound:
        ipam = docker.types.IPAMConfig(
            pool_configs=[
                docker.types.IPAMPool(
                    subnet=str(plan.subnet), gateway=plan.gateway, iprange=str(plan.users_range)
                )
            ]
        )
        return client.networks.create(
            plan.network,
            driver="bridge",
            internal=True,
            ipam=ipam,
            options={"com.docker.network.bridge.name": plan.bridge},
            labels={LABEL: plan.site},
        )
    configs = net.attrs.get("IPAM", {}).get("Config") or [{}]
    if configs[0].get("Subnet") != str(plan.subnet) or not net.attrs.get("Internal"):
        raise SiteError(
            f"site {plan.site}: network {plan.network} exists with subnet "
            f"{configs[0].get('Subnet')} (internal={net.attrs.get('Internal')}); the platform file "
            f"says {plan.subnet}, internal. Remove it (`visiting sites down`) and start again."
        )
    return net


def gateway_token(state_dir: Path, site_id: str) -> str:
    """The API token of a site's federation gateway service, random and kept per state folder."""
    return _kept_token(Path(state_dir) / "gateway-tokens", site_id)


def service_token(state_dir: Path, name: str) -> str:
    """The API token of a hub-managed service that a test or an operator must be able to
    name (the catalogue), random and kept per state folder."""
    return _kept_token(Path(state_dir) / "service-tokens", name)


def _kept_token(folder: Path, name: str) -> str:
    import secrets

    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / name
    if not path.exists():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip()
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip()


def _data_binds(platform: Platform, site: Site) -> dict[str, dict[str, str]]:
    binds = {}
    for ds in site.datasets:
        host = platform.site_data_dir(site.id) / ds.id
        if host.is_dir():
            binds[str(host)] = {"bind": f"/data/{ds.id}", "mode": "ro"}
    return binds


def _digest(value) -> str:
    """A short digest of what a container is started with, for a label."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def _run(client, name: str, image: str, command: list[str], plan: SitePlan, ip: str, **kwargs):
    """A container, kept if it runs with the labels it would be created with, else (re)created.

    A label may hold a digest of the container's settings (`GATEWAY_ENV_LABEL`,
    `WORKER_PLAN_LABEL`): a container started with other settings is recreated.
    """
    import docker

    labels = kwargs.pop("labels", None) or {LABEL: plan.site}
    try:
        existing = client.containers.get(name)
    except docker.errors.NotFound:
        existing = None
    if existing is not None:
        same = all(existing.labels.get(k) == v for k, v in labels.items())
        if same and existing.status == "running":
            return existing
        existing.remove(force=True)
    container = client.containers.create(
        image,
        command,
        name=name,
        hostname=name,
        labels=labels,
        network=plan.network,
        networking_config={plan.network: client.api.create_endpoint_config(ipv4_address=ip)},
        detach=True,
        security_opt=["no-new-privileges"],
        cap_drop=["ALL"],
        # external names must not resolve; the embedded resolver still answers for the network
        dns=["127.0.0.1"],
        **kwargs,
    )
    container.start()
    return container


@dataclass(frozen=True)
class WorkerPlan:
    """One Dask worker container of a site: what `ensure_dask` asks Docker for."""

    name: str
    ip: str
    command: tuple[str, ...]
    environment: dict[str, str]
    mem_limit: int  # bytes
    nano_cpus: int  # Docker's --cpus in billionths


def worker_plans(site: Site) -> list[WorkerPlan]:
    """The site's Dask workers as its `dask:` block sizes them.

    Each worker runs `threads` Dask threads (its cores rounded down, at least
    one) of one BLAS thread each, within a CPU quota of its cores; its memory
    is both Dask's limit (spill, pause, restart) and the container's.
    """
    plan = SitePlan.for_site(site)
    d = site.dask
    workers = []
    for n in range(1, d.workers + 1):
        command = ("dask", "worker", plan.scheduler_address, "--host", plan.worker_ip(n),
                   "--nthreads", str(d.threads), "--memory-limit", str(d.memory),
                   "--name", f"{site.id}-{n}", "--local-directory", "/tmp")  # fmt: skip
        workers.append(
            WorkerPlan(
                name=plan.worker_name(n),
                ip=plan.worker_ip(n),
                command=command,
                environment=dict(ONE_BLAS_THREAD),
                mem_limit=d.memory,
                nano_cpus=round(d.cores * 1_000_000_000),
            )
        )
    return workers


def ensure_dask(client, platform: Platform, site: Site, image: str) -> None:
    """The site's Dask scheduler and workers, next to the site's data (read-only).

    A worker started with other settings than the plan's (a changed platform
    file, a dataset folder added) is recreated; workers beyond the planned
    number are removed.
    """
    plan = SitePlan.for_site(site)
    volumes = _data_binds(platform, site)
    _run(
        client,
        plan.scheduler_name,
        image,
        ["dask", "scheduler", "--host", plan.scheduler_ip, "--port", str(SCHEDULER_PORT),
         "--dashboard-address", f":{DASHBOARD_PORT}"],
        plan,
        plan.scheduler_ip,
        mem_limit="512m",
        volumes=volumes,
    )  # fmt: skip
    workers = worker_plans(site)
    _remove_other_workers(client, site, {w.name for w in workers})
    for w in workers:
        digest = _digest(
            [image, w.command, w.environment, w.mem_limit, w.nano_cpus, sorted(volumes.items())]
        )
        _run(
            client,
            w.name,
            image,
            list(w.command),
            plan,
            w.ip,
            labels={LABEL: plan.site, WORKER_PLAN_LABEL: digest},
            environment=w.environment,
            mem_limit=w.mem_limit,
            nano_cpus=w.nano_cpus,
            volumes=volumes,
        )


def _remove_other_workers(client, site: Site, keep: set[str]) -> None:
    """Remove the site's worker containers that are not in `keep` (fewer workers planned)."""
    import docker.errors

    prefix = SitePlan.for_site(site).worker_prefix
    for c in client.api.containers(all=True, filters={"label": f"{LABEL}={site.id}"}):
        names = [n.lstrip("/") for n in c.get("Names") or ()]
        if any(n.startswith(prefix) and n not in keep for n in names):
            try:
                client.api.remove_container(c["Id"], force=True)
            except docker.errors.NotFound:
                pass


def disclosure_json(platform: Platform) -> str:
    """The platform's disclosure rules as a gateway reads them (VISITING_DISCLOSURE)."""
    return json.dumps(
        {
            "min_cell_count": platform.disclosure.min_cell_count,
            "min_minor_allele_count": platform.disclosure.min_minor_allele_count,
        }
    )


def gateway_env(platform: Platform, site: Site, hub_api_port: int, proxy_port: int, token: str):
    """The environment of a site's federation gateway container."""
    plan = SitePlan.for_site(site)
    return {
        # the gateway's own numpy work (disclosure control, the query-set audit) runs one
        # BLAS thread, like each thread of a worker
        **ONE_BLAS_THREAD,
        SITE: site.id,
        SITE_DATA: "/data",
        "JUPYTERHUB_API_URL": f"http://{plan.gateway}:{hub_api_port}/hub/api",
        "JUPYTERHUB_API_TOKEN": token,
        "JUPYTERHUB_SERVICE_PREFIX": f"/services/gateway-{site.id}/",
        AUDIT_URL: f"http://{plan.gateway}:{proxy_port}/services/audit/",
        "DASK_SCHEDULER_ADDRESS": plan.scheduler_address,
        QUERY_AUDIT_DIR: QUERY_AUDIT_MOUNT,
        DISCLOSURE: disclosure_json(platform),
    }


def ensure_gateway(client, platform: Platform, site: Site, image: str, env: dict) -> None:
    """The site's federation gateway on the site's network, next to its data (read-only).

    Recreated when its environment changed (another hub, a new token), so a
    stack always talks to a gateway that knows it.
    """
    plan = SitePlan.for_site(site)
    _run(
        client,
        plan.gateway_name,
        image,
        [
            "python",
            "-m",
            "extensions.federation.gateway",
            "--ip",
            "0.0.0.0",
            "--port",
            str(GATEWAY_PORT),
        ],
        plan,
        plan.federation_ip,
        environment=env,
        labels={LABEL: plan.site, GATEWAY_ENV_LABEL: _digest(env)},
        mem_limit="3g",
        volumes={
            **_data_binds(platform, site),
            query_audit_volume(site.id): {"bind": QUERY_AUDIT_MOUNT, "mode": "rw"},
        },
    )


def query_audit_volume(site_id: str) -> str:
    """The volume of a site's query-set audits: kept across restarts of its gateway."""
    return f"visiting-query-audit-{site_id}"


def remove_query_audit_volumes(platform: Platform) -> list[str]:
    """Remove each site's gateway container and its query-set audit volume, so that a test
    stack starts with no history (the stack starts the gateways again)."""
    import docker.errors

    done = []
    for site in platform.sites.values():
        client = docker_client(site.docker_endpoint)
        try:
            try:
                client.containers.get(SitePlan.for_site(site).gateway_name).remove(force=True)
            except docker.errors.NotFound:
                pass
            try:
                client.volumes.get(query_audit_volume(site.id)).remove()
                done.append(f"{site.id}: removed volume {query_audit_volume(site.id)}")
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError:
                pass  # in use by a running gateway
        finally:
            client.close()
    return done


def sites_up(
    platform: Platform, hub_ports: Iterable[int], dask_image: str = "visiting/dask:latest"
) -> list[str]:
    """Networks, firewall and Dask clusters for every site; returns what was done, one line each."""
    done = []
    plans = []
    for site in platform.sites.values():
        client = docker_client(site.docker_endpoint)
        try:
            ensure_network(client, SitePlan.for_site(site))
            ensure_dask(client, platform, site, dask_image)
        except SiteError:
            raise
        except Exception as e:  # the Docker SDK's errors carry what the engine said
            raise SiteError(f"site {site.id}: {e}") from None
        finally:
            client.close()
        plans.append(SitePlan.for_site(site))
        d = site.dask
        done.append(
            f"{site.id}: network {site.network} ({site.subnet}), Dask at "
            f"{plans[-1].scheduler_address}: {d.workers} x {d.threads} threads, "
            f"{d.cores:g} cores, {d.memory / 1024**3:g} GiB"
        )
    n = install_firewall(plans, hub_ports)
    done.append(f"firewall: {n} rules in {INPUT_CHAIN} and {FORWARD_CHAIN}")
    return done


def close_hub_ports(platform: Platform, ports: Iterable[int]) -> None:
    """Stop letting site containers reach `ports` (a stack that shares the sites is stopping)."""
    plans = [SitePlan.for_site(s) for s in platform.sites.values()]
    install_firewall(plans, (), closing=ports)


def sites_down(platform: Platform, remove_servers: bool = True) -> list[str]:
    """Remove the sites' Dask containers and networks (and researchers' containers on them)."""
    done = []
    for site in platform.sites.values():
        client = docker_client(site.docker_endpoint)
        try:
            for c in client.containers.list(all=True, filters={"label": f"{LABEL}={site.id}"}):
                c.remove(force=True)
                done.append(f"{site.id}: removed {c.name}")
            try:
                net = client.networks.get(site.network)
            except Exception:
                continue
            net.reload()
            for cid in list((net.attrs.get("Containers") or {}).keys()):
                if remove_servers:
                    client.containers.get(cid).remove(force=True)
            net.remove()
            done.append(f"{site.id}: removed network {site.network}")
        finally:
            client.close()
    remove_firewall()
    done.append("firewall: removed")
    return done


def remove_gate_volumes(platform: Platform) -> list[str]:
    """Remove the egress gates' state volumes no container uses (a test stack starts afresh).

    A gate's volume keeps the day's egress across restarts of a server; a test
    stack must not inherit the meter of an earlier one on the same engine.
    """
    import docker.errors

    done = []
    for site in platform.sites.values():
        client = docker_client(site.docker_endpoint)
        try:
            for v in client.volumes.list(filters={"name": f"visiting-gate-{site.id}-"}):
                try:
                    v.remove()
                    done.append(f"{site.id}: removed volume {v.name}")
                except docker.errors.APIError:
                    pass  # in use by a running server
        finally:
            client.close()
    return done
