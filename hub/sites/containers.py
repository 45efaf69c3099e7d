"""A site's containers on its Docker engine: network, Dask cluster, federation gateway,
their tokens and volumes; `sites_up` and `sites_down` bring every site up or down.

Addresses and names come from the site's plan (hub.sites.plan), the host
firewall from hub.sites.firewall, the engine and its client from hub.sites.engine.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from extensions.contracts.environment import AUDIT_URL, DISCLOSURE, QUERY_AUDIT_DIR, SITE, SITE_DATA
from hub.platform.policy import Platform, Site
from hub.sites import SiteError
from hub.sites.engine import docker_client
from hub.sites.firewall import FORWARD_CHAIN, INPUT_CHAIN, install_firewall, remove_firewall
from hub.sites.plan import DASHBOARD_PORT, GATEWAY_PORT, SCHEDULER_PORT, SitePlan

LABEL = "org.visiting.site"
# what a container was started with, as a digest: a running one with another is recreated
GATEWAY_ENV_LABEL = "org.visiting.gateway-env"
WORKER_PLAN_LABEL = "org.visiting.worker-plan"
#: One BLAS thread per Dask thread, so that a worker's threads times its BLAS threads are
#: its cores. distributed's nanny sets the same in the worker process
#: (`distributed.nanny.pre-spawn-environ`); set on the container it holds for every
#: process there, with or without a nanny, whatever Dask's configuration says.
ONE_BLAS_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
#: where a gateway container keeps its query-set audits (a volume per site)
QUERY_AUDIT_MOUNT = "/var/lib/visiting-query-audit"


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
