"""The sites' address plan, firewall rules and Dask workers (pure logic, and what is asked
of a stand-in Docker client; the real engine is in tests/integration)."""

from __future__ import annotations

import dataclasses
import ipaddress

import docker.errors
import pytest

from hub.platform.policy import SiteDask, load_platform
from hub.sites.containers import (
    LABEL,
    ONE_BLAS_THREAD,
    WORKER_PLAN_LABEL,
    ensure_dask,
    gateway_env,
    worker_plans,
)
from hub.sites.firewall import FORWARD_CHAIN, INPUT_CHAIN, firewall_rules
from hub.sites.plan import SitePlan, resolve_endpoint

NIG = SitePlan("nig", "visiting-site-nig", ipaddress.IPv4Network("172.30.1.0/24"))


def test_address_plan():
    assert NIG.bridge == "vis-nig"
    assert NIG.gateway == "172.30.1.1"
    assert NIG.scheduler_address == "tcp://172.30.1.2:8786"
    assert NIG.worker_ip(1) == "172.30.1.3"
    assert str(NIG.users_range) == "172.30.1.128/25"
    long = SitePlan("abcdefghijklmnop", "n", ipaddress.IPv4Network("10.9.0.0/24"))
    assert len(long.bridge) <= 15  # Linux interface names


def test_firewall_rules_in_order():
    rules = firewall_rules([NIG], [8081, 8000])
    inp = [" ".join(r) for r in rules[INPUT_CHAIN]]
    assert inp == [
        "-i vis-nig -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "-i vis-nig -p tcp --dport 8000 -j ACCEPT",
        "-i vis-nig -p tcp --dport 8081 -j ACCEPT",
        "-i vis-nig -j DROP",
    ]
    fwd = [" ".join(r) for r in rules[FORWARD_CHAIN]]
    # replies pass; researchers' servers reach nothing on the bridge (not each other, not the
    # site's Dask cluster, which runs only the gateway's tasks) and nothing off it
    assert fwd == [
        "-i vis-nig -o vis-nig -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN",
        "-i vis-nig -o vis-nig -s 172.30.1.128/25 -j DROP",
        "-i vis-nig -o vis-nig -d 172.30.1.128/25 -j DROP",
        "-i vis-nig ! -o vis-nig -j DROP",
    ]


@pytest.mark.parametrize(
    "env,expected",
    [
        pytest.param({"VISITING_DOCKER_HOST": "unix:///x.sock"}, "unix:///x.sock", id="override"),
        pytest.param({}, None, id="recorded-or-default"),
    ],
)
def test_resolve_endpoint(monkeypatch, env, expected):
    monkeypatch.delenv("VISITING_DOCKER_HOST", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert resolve_endpoint("tcp://site:2376") == "tcp://site:2376"
    got = resolve_endpoint("local")
    assert got == expected if expected else got.startswith("unix://")


# ---------------------------------------------------------------------------
# the site's Dask workers, sized by the platform file's `dask:` block

GiB = 1024**3


@pytest.fixture
def platform(policy_copy):
    return load_platform(policy_copy)


def sized(platform, site_id, **dask):
    return dataclasses.replace(platform.sites[site_id], dask=SiteDask(**dask))


def test_demo_worker_is_todays_one_thread_one_core_1g(platform):
    (w,) = worker_plans(platform.sites["nig"])
    assert (w.name, w.ip) == ("visiting-dask-nig-worker-1", "172.30.1.3")
    assert w.command == (
        "dask", "worker", "tcp://172.30.1.2:8786", "--host", "172.30.1.3",
        "--nthreads", "1", "--memory-limit", str(GiB),
        "--name", "nig-1", "--local-directory", "/tmp",
    )  # fmt: skip
    assert (w.mem_limit, w.nano_cpus) == (GiB, 1_000_000_000)
    assert w.environment == {
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


@pytest.mark.parametrize(
    "cores,threads,nano_cpus",
    [
        pytest.param(2, 2, 2_000_000_000, id="whole-cores"),
        pytest.param(2.5, 2, 2_500_000_000, id="fraction-in-the-quota-only"),
        pytest.param(0.5, 1, 500_000_000, id="half-a-core-one-thread"),
    ],
)
def test_workers_sized_to_the_site(platform, cores, threads, nano_cpus):
    """Threads are the cores rounded down (at least one), each with one BLAS thread, so
    threads x BLAS threads never exceed the cores (a quota under one core still runs one
    thread); the quota keeps the fraction; memory is Dask's limit and the container's."""
    workers = worker_plans(sized(platform, "ncc", workers=3, cores=cores, memory=4 * GiB))
    assert [w.name for w in workers] == [f"visiting-dask-ncc-worker-{n}" for n in (1, 2, 3)]
    assert [w.ip for w in workers] == ["172.30.2.3", "172.30.2.4", "172.30.2.5"]
    for n, w in enumerate(workers, start=1):
        args = dict(zip(w.command[3::2], w.command[4::2], strict=True))
        assert args == {
            "--host": w.ip,
            "--nthreads": str(threads),
            "--memory-limit": str(4 * GiB),
            "--name": f"ncc-{n}",
            "--local-directory": "/tmp",
        }
        assert (w.mem_limit, w.nano_cpus) == (4 * GiB, nano_cpus)
        blas = {int(w.environment[k]) for k in ONE_BLAS_THREAD}
        assert blas == {1} and threads * max(blas) <= max(cores, 1)


def test_gateway_runs_one_blas_thread(platform):
    env = gateway_env(platform, platform.sites["nig"], 8081, 8000, "t")
    assert {k: env[k] for k in ONE_BLAS_THREAD} == ONE_BLAS_THREAD


class FakeContainer:
    def __init__(self, engine, name, labels, kwargs):
        self.engine, self.name, self.labels, self.kwargs = engine, name, labels, kwargs
        self.id, self.status = f"id-{name}", "created"

    def start(self):
        self.status = "running"

    def remove(self, force=False):
        self.engine.removed.append(self.name)
        del self.engine.by_name[self.name]


class FakeContainers:
    """`client.containers`: by name, and created."""

    def __init__(self, engine):
        self.engine = engine

    def get(self, name):
        try:
            return self.engine.by_name[name]
        except KeyError:
            raise docker.errors.NotFound(name) from None

    def create(self, image, command, name, labels, **kwargs):
        kwargs = {"image": image, "command": command, **kwargs}
        c = self.engine.by_name[name] = FakeContainer(self.engine, name, labels, kwargs)
        self.engine.created.append(name)
        return c


class FakeApi:
    """`client.api`: containers listed by label and removed by id; endpoint configs."""

    def __init__(self, engine):
        self.engine = engine

    def containers(self, all, filters):  # noqa: A002 - the Docker SDK's parameter
        key, _, value = filters["label"].partition("=")
        return [
            {"Id": c.id, "Names": [f"/{c.name}"]}
            for c in self.engine.by_name.values()
            if c.labels.get(key) == value
        ]

    def remove_container(self, container_id, force=False):
        (c,) = [c for c in self.engine.by_name.values() if c.id == container_id]
        c.remove(force=force)

    def create_endpoint_config(self, ipv4_address):
        return {"IPAMConfig": {"IPv4Address": ipv4_address}}


class FakeEngine:
    """What ensure_dask asks of a Docker client, recorded."""

    def __init__(self):
        self.by_name: dict[str, FakeContainer] = {}
        self.created: list[str] = []
        self.removed: list[str] = []
        self.containers = FakeContainers(self)
        self.api = FakeApi(self)


@pytest.fixture
def engine():
    return FakeEngine()


def test_ensure_dask_asks_docker_for_the_planned_workers(engine, platform):
    site = sized(platform, "tommo", workers=2, cores=2, memory=3 * GiB)
    ensure_dask(engine, platform, site, "visiting/dask:latest")
    assert engine.created == [
        "visiting-dask-tommo-scheduler",
        "visiting-dask-tommo-worker-1",
        "visiting-dask-tommo-worker-2",
    ]
    for w in worker_plans(site):
        c = engine.by_name[w.name]
        assert c.status == "running"
        assert c.kwargs["command"] == list(w.command)
        assert c.kwargs["environment"] == ONE_BLAS_THREAD
        assert (c.kwargs["mem_limit"], c.kwargs["nano_cpus"]) == (3 * GiB, 2_000_000_000)
        assert c.labels[LABEL] == "tommo" and c.labels[WORKER_PLAN_LABEL]


def test_ensure_dask_recreates_workers_only_when_the_plan_changed(engine, platform):
    """The same platform file keeps the running workers; a changed `dask:` block recreates
    them (not the scheduler), and workers beyond the new number are removed."""
    image = "visiting/dask:latest"
    ensure_dask(engine, platform, sized(platform, "nig", workers=3), image)
    engine.created.clear()
    ensure_dask(engine, platform, sized(platform, "nig", workers=3), image)
    assert engine.created == [] and engine.removed == []

    ensure_dask(engine, platform, sized(platform, "nig", workers=2, cores=2), image)
    assert sorted(engine.removed) == [
        "visiting-dask-nig-worker-1",
        "visiting-dask-nig-worker-2",
        "visiting-dask-nig-worker-3",
    ]
    assert engine.created == ["visiting-dask-nig-worker-1", "visiting-dask-nig-worker-2"]
    assert sorted(engine.by_name) == [
        "visiting-dask-nig-scheduler",
        "visiting-dask-nig-worker-1",
        "visiting-dask-nig-worker-2",
    ]
    command = engine.by_name["visiting-dask-nig-worker-1"].kwargs["command"]
    assert command[5:7] == ["--nthreads", "2"]


def test_ensure_dask_restarts_a_stopped_worker(engine, platform):
    site = platform.sites["nig"]
    ensure_dask(engine, platform, site, "visiting/dask:latest")
    engine.by_name["visiting-dask-nig-worker-1"].status = "exited"
    engine.created.clear()
    ensure_dask(engine, platform, site, "visiting/dask:latest")
    assert engine.created == ["visiting-dask-nig-worker-1"]
