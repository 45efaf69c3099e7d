"""Researchers' servers at the sites: real Docker, real hub and proxy, real IdP login.

Rules checked: "Where data lives" (data mounted read-only at its own site
only), "Who may use" and "Period" (no server at a site without an approval
there), "Security" (no egress, no reaching other people's servers, quotas).
"""

from __future__ import annotations

import json
import time

import docker
import pytest

from hub.sites.containers import ONE_BLAS_THREAD
from hub.sites.plan import SitePlan, resolve_endpoint

from .conftest import hub_login

pytestmark = pytest.mark.integration

GiB = 1024**3


# site_stack: the session's stack with the five sites (conftest.py)


@pytest.fixture(scope="module")
def engine():
    client = docker.DockerClient(base_url=resolve_endpoint("local"))
    yield client
    client.close()


class Researcher:
    """A logged-in person driving the hub's REST API as the home page's buttons do."""

    def __init__(self, stack, name):
        self.hub = stack.config.hub_url
        self.name = name
        self.session, r = hub_login(self.hub, name, f"{name}-demo")
        assert r.status_code == 200, r.text[:300]

    def _headers(self):
        # each single-user server sets an _xsrf cookie of its own under its path
        return {"X-XSRFToken": self.session.cookies.get("_xsrf", path="/hub/") or ""}

    def start(self, site, options=None):
        return self.session.post(
            f"{self.hub}/hub/api/users/{self.name}/servers/{site}",
            json=options or {},
            headers=self._headers(),
            timeout=60,
        )

    def wait_ready(self, site, timeout=180):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.session.get(
                f"{self.hub}/hub/api/users/{self.name}", headers=self._headers(), timeout=10
            )
            server = r.json().get("servers", {}).get(site)
            if server and server.get("ready"):
                return server
            if server is None and time.monotonic() > deadline - timeout + 5:
                raise AssertionError(f"{self.name}'s server at {site} is gone: {r.json()}")
            time.sleep(1)
        raise AssertionError(f"{self.name}'s server at {site} not ready after {timeout} s")

    def stop(self, site):
        r = self.session.delete(
            f"{self.hub}/hub/api/users/{self.name}/servers/{site}",
            headers=self._headers(),
            timeout=60,
        )
        assert r.status_code in (202, 204), r.text
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r = self.session.get(
                f"{self.hub}/hub/api/users/{self.name}", headers=self._headers(), timeout=10
            )
            if site not in r.json().get("servers", {}):
                return
            time.sleep(0.5)
        raise AssertionError(f"{site} did not stop")


def container_of(engine, user, site):
    import docker.errors

    labels = {"label": [f"org.visiting.user={user}", f"org.visiting.site={site}"]}
    for _ in range(5):
        try:
            found = engine.containers.list(all=True, filters=labels)
        except docker.errors.NotFound:
            continue  # removed between the listing and its inspection: ask again
        return found[0] if found else None
    return None


# the researcher's own user: the container itself starts as root for the egress gate's launcher
RESEARCHER = "1000:1000"


def sh(container, script, user=None):
    code, out = container.exec_run(["sh", "-c", script], user=user or RESEARCHER)
    return code, out.decode(errors="replace")


def py(container, code):
    rc, out = container.exec_run(["python3", "-c", code], user=RESEARCHER)
    return rc, out.decode(errors="replace")


@pytest.fixture(scope="module")
def tanaka_at_nig(site_stack, engine):
    tanaka = Researcher(site_stack, "tanaka")
    r = tanaka.start("nig")
    assert r.status_code in (201, 202), r.text
    tanaka.wait_ready("nig")
    # the container is looked up on each use: a test restarts the server
    yield tanaka, lambda: container_of(engine, "tanaka", "nig")
    if container_of(engine, "tanaka", "nig") is not None:
        tanaka.stop("nig")


def test_jupyterlab_answers_through_the_proxy(site_stack, tanaka_at_nig):
    tanaka, _ = tanaka_at_nig
    r = tanaka.session.get(f"{site_stack.config.hub_url}/user/tanaka/nig/lab", timeout=60)
    assert r.status_code == 200
    assert "JupyterLab" in r.text
    api = tanaka.session.get(f"{site_stack.config.hub_url}/user/tanaka/nig/api/status", timeout=30)
    assert api.status_code == 200


def test_data_is_exactly_the_approved_datasets_read_only(tanaka_at_nig):
    _, current = tanaka_at_nig
    c = current()
    code, out = sh(c, "ls /data")
    assert code == 0 and out.split() == ["JGAD000101", "JGAD000102"]
    code, out = sh(c, "ls /data/JGAD000101")
    assert "genotypes.vcf.gz" in out.split()
    code, out = sh(c, "touch /data/JGAD000101/x 2>&1; echo rc=$?")
    assert "Read-only file system" in out and "rc=1" in out
    code, out = sh(
        c, "id -u; echo $VISITING_SITE $VISITING_APPROVAL_ID $VISITING_APPROVAL_END_DATE"
    )
    assert out.split() == ["1000", "nig", "J-DU000101", "2035-03-31"]


def test_quota_from_the_approval(tanaka_at_nig):
    _, current = tanaka_at_nig
    c = current()
    c.reload()
    host = c.attrs["HostConfig"]
    assert host["Memory"] == 4 * GiB  # J-DU000101's quota, over nig's default of 2G
    assert host["CpuQuota"] / host["CpuPeriod"] == 2.0
    code, out = sh(
        c,
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us",
    )
    limit, quota, period = (int(x) for x in out.split())
    assert limit == 4 * GiB and quota / period == 2.0


def test_home_persists_across_stop_and_start(engine, tanaka_at_nig):
    tanaka, current = tanaka_at_nig
    c = current()
    assert sh(c, "echo kept > ~/note.txt")[0] == 0
    tanaka.stop("nig")
    assert container_of(engine, "tanaka", "nig") is None, "the container goes on stop"
    assert tanaka.start("nig").status_code in (201, 202)
    tanaka.wait_ready("nig")
    c2 = container_of(engine, "tanaka", "nig")
    assert c2.id != c.id
    assert sh(c2, "cat ~/note.txt")[1].strip() == "kept"


def test_site_without_approval_is_refused_before_any_container(site_stack, engine):
    tanaka = Researcher(site_stack, "tanaka")
    r = tanaka.start("imsut")
    assert r.status_code == 403, r.text
    message = r.json()["message"]
    assert "no approval for data at site imsut" in message
    assert "imsut" in message and "利用承認がありません" in message
    assert container_of(engine, "tanaka", "imsut") is None


def test_unknown_site_is_refused(site_stack, engine):
    tanaka = Researcher(site_stack, "tanaka")
    r = tanaka.start("osaka")
    assert r.status_code == 404 and "There is no site 'osaka'" in r.json()["message"]
    assert container_of(engine, "tanaka", "osaka") is None


def test_image_not_on_the_allow_list_is_refused(site_stack, engine):
    tanaka = Researcher(site_stack, "tanaka")
    r = tanaka.start("ncc", {"image": "visiting/dask:latest"})
    assert r.status_code == 403, r.text
    assert "'visiting/dask:latest' is not offered at site ncc" in r.json()["message"]
    assert container_of(engine, "tanaka", "ncc") is None


PROBE = """
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(); s.settimeout(3)
try:
    s.connect((host, port)); print("open")
except OSError as e:
    print("closed", type(e).__name__)
"""


def probe(container, host, port):
    rc, out = container.exec_run(["python3", "-c", PROBE, host, str(port)], user=RESEARCHER)
    return out.decode().split()[0]


@pytest.fixture
def decoys(engine, tmp_path):
    """An HTTP server on another Docker network and one on a host port that is not the hub's."""
    import http.server
    import socketserver
    import threading

    net = engine.networks.create(f"visiting-test-decoy-{tmp_path.name[-8:]}", driver="bridge")
    container = engine.containers.run(
        "visiting/dask:latest",
        ["python3", "-m", "http.server", "8080"],
        network=net.name,
        detach=True,
        remove=True,
    )
    container.reload()
    decoy_ip = container.attrs["NetworkSettings"]["Networks"][net.name]["IPAddress"]
    server = socketserver.TCPServer(("0.0.0.0", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield decoy_ip, server.server_address[1]
    server.shutdown()
    container.remove(force=True)
    net.remove()


def test_egress(site_stack, tanaka_at_nig, decoys):
    _, current = tanaka_at_nig
    c = current()
    decoy_ip, host_port = decoys
    nig = SitePlan.for_site(site_stack.bundle.platform.sites["nig"])
    ncc = SitePlan.for_site(site_stack.bundle.platform.sites["ncc"])
    assert probe(c, nig.gateway, site_stack.config.hub_api_port) == "open", "the hub's API"
    assert probe(c, nig.gateway, site_stack.config.hub_port) == "open", "the hub's proxy"
    # the site's Dask cluster and gateway run only the gateway's tasks, over all the site's data
    assert probe(c, nig.scheduler_ip, 8786) == "closed", "the site's Dask scheduler"
    assert probe(c, nig.federation_ip, 8765) == "closed", "the site's gateway, except by the hub"
    assert probe(c, decoy_ip, 8080) == "closed", "a server on another Docker network"
    assert probe(c, nig.gateway, host_port) == "closed", "a host port that is not the hub's"
    assert probe(c, ncc.scheduler_ip, 8786) == "closed", "another site's scheduler"
    assert probe(c, nig.worker_ip(1), 22) == "closed", "the site's workers directly"
    rc, out = py(
        c,
        "import socket\ntry:\n    print(socket.gethostbyname('example.org'))\nexcept OSError as e:\n    print('fails', type(e).__name__)",
    )
    assert out.startswith("fails"), out


LIST_DATA_ON_THE_WORKER = """
import os
from distributed import Client

c = Client(os.environ["DASK_SCHEDULER_ADDRESS"], timeout=60)
c.wait_for_workers(1, timeout=60)
workers = c.scheduler_info()["workers"]
assert all(w["host"] == "127.0.0.1" for w in workers.values()), workers
on_worker = c.submit(lambda: sorted(os.listdir("/data")), pure=False).result()
print(on_worker == sorted(os.listdir("/data")), ",".join(on_worker), len(workers))
"""


def test_dask_runs_in_the_server_next_to_the_approved_data_only(site_stack, engine, tanaka_at_nig):
    """A researcher's Dask code runs on a cluster inside their own server: its worker sees
    the datasets the approval mounts at the site and no other (at ncc, tanaka's approval
    covers JGAD000201, not JGAD000202); the site's own cluster and other sites' are refused.

    Rules checked: "Who may use", "No disclosure" (only approved data, per person)."""
    _, current = tanaka_at_nig
    c = current()
    rc, out = py(c, LIST_DATA_ON_THE_WORKER)
    assert out.strip().splitlines()[-1] == "True JGAD000101,JGAD000102 1", out
    platform = site_stack.bundle.platform
    for site in ("nig", "ncc"):
        address = SitePlan.for_site(platform.sites[site]).scheduler_address
        rc, out = py(
            c,
            f"from distributed import Client\ntry:\n    Client('{address}', timeout=5)\n"
            "    print('reached')\nexcept OSError as e:\n    print('refused', type(e).__name__)",
        )
        assert "refused" in out, (site, out)

    at_ncc = Researcher(site_stack, "tanaka")
    # the image named: the hub keeps the options of the last start at ncc, which an earlier
    # test made with an image the site does not offer
    r = at_ncc.start("ncc", {"image": "visiting/singleuser:latest"})
    assert r.status_code in (201, 202), r.text
    try:
        at_ncc.wait_ready("ncc")
        assert sorted(d.name for d in (platform.site_data_dir("ncc")).iterdir() if d.is_dir()) == [
            "JGAD000201",
            "JGAD000202",
        ]
        rc, out = py(container_of(engine, "tanaka", "ncc"), LIST_DATA_ON_THE_WORKER)
        assert out.strip().splitlines()[-1] == "True JGAD000201 1", out
    finally:
        at_ncc.stop("ncc")


OWN_WORKER_THREADS = """
import json, os
from distributed import Client

c = Client(os.environ["DASK_SCHEDULER_ADDRESS"], timeout=60)
c.wait_for_workers(1, timeout=60)
(w,) = c.scheduler_info()["workers"].values()
blas = c.run(lambda: {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
print(json.dumps({"nthreads": w["nthreads"], "blas": list(blas.values())}))
"""


def test_own_dask_worker_runs_a_thread_per_core_of_the_quota(tanaka_at_nig):
    """The server's own worker runs as many Dask threads as the container's CPU quota has
    whole cores (J-DU000101 gives tanaka 2 at nig; no more than the CPUs the container may
    run on), each with one BLAS thread (issue 17: sized to the site, not oversubscribed).

    Rule checked: "Security" (a server stays within its quota)."""
    _, current = tanaka_at_nig
    c = current()
    c.reload()
    host = c.attrs["HostConfig"]
    quota = host["CpuQuota"] // host["CpuPeriod"]
    assert quota == 2
    code, cpus = sh(c, "nproc")
    assert code == 0, cpus
    rc, out = py(c, OWN_WORKER_THREADS)
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["nthreads"] == max(1, min(quota, int(cpus))), out
    assert seen["blas"] == [ONE_BLAS_THREAD], out


def test_two_users_cannot_reach_each_other(site_stack, engine, tanaka_at_nig):
    tanaka, current = tanaka_at_nig
    c_tanaka = current()
    yamada = Researcher(site_stack, "yamada")
    assert yamada.start("nig").status_code in (201, 202)
    yamada.wait_ready("nig")
    c_yamada = container_of(engine, "yamada", "nig")
    c_yamada.reload()
    ip = c_yamada.attrs["NetworkSettings"]["Networks"]["visiting-site-nig"]["IPAddress"]
    assert probe(c_tanaka, ip, 8888) == "closed", "directly over the site network"
    hub = site_stack.config.hub_url
    # a browser opening the other person's JupyterLab goes through the hub's OAuth, which refuses
    r = tanaka.session.get(f"{hub}/user/yamada/nig/lab", timeout=30)
    assert r.status_code == 403, "through the proxy"
    assert tanaka.session.get(f"{hub}/user/yamada/nig/api/contents", timeout=30).status_code == 403
    # while the owner gets in the same way
    assert yamada.session.get(f"{hub}/user/yamada/nig/lab", timeout=30).status_code == 200
    assert yamada.session.get(f"{hub}/user/yamada/nig/api/status", timeout=30).status_code == 200
    yamada.stop("nig")


def test_home_page_lists_the_approved_sites(stack):
    """One row per site with approved data: datasets, approval end, start button; no other site."""
    import re

    session, r = hub_login(stack.config.hub_url, "tanaka", "tanaka-demo")
    assert r.status_code == 200 and r.url.endswith("/hub/home")
    rows = dict(
        re.findall(
            r'<tr class="home-server-row visiting-site" data-server-name="(\w+)">(.*?)</tr>',
            r.text,
            re.S,
        )
    )
    assert sorted(rows) == ["ncc", "ncgm", "nig", "tommo"]
    assert "JGAD000101" in rows["nig"] and "JGAD000102" in rows["nig"]
    assert "JGAD000201" in rows["ncc"] and "JGAD000202" not in rows["ncc"]
    for site, row in rows.items():
        assert "2035-03-31" in row
        assert f'href="/hub/spawn/tanaka/{site}"' in row
        assert "起動 / Start" in row and "停止 / Stop" in row


def test_home_page_without_sites(stack):
    _, r = hub_login(stack.config.hub_url, "jimu", "jimu-demo")
    assert r.status_code == 200
    assert "There is no site where you can start a server now." in r.text
