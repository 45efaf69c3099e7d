"""The offline-built images on a real Docker engine.

A module fixture brings up the project's engine (scripts/docker.sh up) and
builds the images (scripts/images.sh), which is quick when nothing changed.
Every container here runs with no network, or on networks this module creates
and removes; the only traffic is between containers it started. Home volumes
it creates are removed after each test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import tomllib
import uuid
from pathlib import Path

import pytest

# A build from scratch (debootstrap, wheelhouse, two venvs) takes minutes.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(3600)]

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKER_SH = REPO_ROOT / "scripts" / "docker.sh"
IMAGES_SH = REPO_ROOT / "scripts" / "images.sh"
IMAGES = ["visiting/base", "visiting/singleuser", "visiting/dask"]
SINGLEUSER = "visiting/singleuser:latest"
DASK = "visiting/dask:latest"
BASE = "visiting/base:latest"
DOWNLOAD_PLUGINS = [
    "@jupyterlab/docmanager-extension:download",
    "@jupyterlab/filebrowser-extension:download",
    "@jupyterlab/filebrowser-extension:open-browser-tab",
]
DISABLED_PLUGINS = [
    *DOWNLOAD_PLUGINS,
    "@jupyterlab/notebook-extension:export",
    # it asks the internet for news, which a site's network never reaches
    "@jupyterlab/apputils-extension:announcements",
]
# Root-owned and first on the singleuser image's config path (JUPYTER_CONFIG_DIR).
CONFIG_DIR = "/etc/visiting/jupyter"
CONFIG_PATH = [CONFIG_DIR, "/opt/venv/etc/jupyter", "/usr/local/etc/jupyter", "/etc/jupyter"]
PAGE_CONFIG = f"{CONFIG_DIR}/labconfig/page_config.json"
BANNER = "@visiting/guard-banner"


def run(cmd, *, env=None, timeout=300, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(c) for c in cmd], env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
        )
    return proc


@pytest.fixture(scope="module")
def docker_env() -> dict[str, str]:
    run([DOCKER_SH, "up"], timeout=600)
    out = run([DOCKER_SH, "env"]).stdout.strip()
    m = re.fullmatch(r"export DOCKER_HOST=(\S+)", out)
    assert m, f"unexpected `docker.sh env` output: {out!r}"
    env = {**os.environ, "DOCKER_HOST": m.group(1)}
    run([IMAGES_SH], env=env, timeout=3300)
    return env


@pytest.fixture
def docker(docker_env):
    """`docker(args...)` against the project's engine; removes what the test names with `prefix`."""
    prefix = f"vt-{uuid.uuid4().hex[:8]}"

    def call(*args, check=True, timeout=300):
        return run(["docker", *args], env=docker_env, check=check, timeout=timeout)

    call.prefix = prefix
    yield call
    ids = call("ps", "-aq", "--filter", f"name={prefix}", check=False).stdout.split()
    if ids:
        call("rm", "-f", *ids, check=False)
    nets = call("network", "ls", "-q", "--filter", f"name={prefix}", check=False).stdout.split()
    if nets:
        call("network", "rm", *nets, check=False)


def test_docker_sh_records_and_reports_the_endpoint_in_use(docker_env):
    endpoint = docker_env["DOCKER_HOST"]
    run_dir = Path(os.environ.get("VISITING_RUN_DIR", "/run/visiting"))
    assert (run_dir / "docker-endpoint").read_text().strip() == endpoint
    assert run([DOCKER_SH, "status"]).stdout.startswith(f"{endpoint} answers")
    # a second `up` while the engine runs starts nothing
    again = run([DOCKER_SH, "up"])
    assert "started" not in again.stderr, again.stderr


def labels(docker, image: str) -> dict[str, str]:
    out = docker("image", "inspect", "-f", "{{json .Config.Labels}}", image).stdout
    return json.loads(out) or {}


def offline(docker, image: str, *cmd: str, timeout=300) -> subprocess.CompletedProcess:
    return docker("run", "--rm", "--network", "none", image, *cmd, timeout=timeout)


@pytest.mark.parametrize("repo", IMAGES)
def test_image_carries_version_inputs_and_wheels_labels(docker, repo):
    got = labels(docker, f"{repo}:latest")
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert got.get("org.visiting.project-version") == version
    inputs = got.get("org.visiting.inputs", "")
    assert re.fullmatch(r"[0-9a-f]{64}", inputs), got
    assert got.get("org.visiting.wheels"), got
    # :latest and :<short input hash> are the same image
    ids = {
        docker("image", "inspect", "-f", "{{.Id}}", ref).stdout.strip()
        for ref in (f"{repo}:latest", f"{repo}:{inputs[:12]}")
    }
    assert len(ids) == 1


def test_derived_images_share_one_wheel_set(docker):
    su, dk = labels(docker, SINGLEUSER), labels(docker, DASK)
    # same wheels: the notebook's Dask client matches the scheduler and workers
    assert su["org.visiting.wheels"] == dk["org.visiting.wheels"]
    assert re.fullmatch(r"[0-9a-f]{64}", su["org.visiting.wheels"])


def test_singleuser_runs_as_uid_1000(docker):
    assert offline(docker, SINGLEUSER, "id", "-u").stdout.strip() == "1000"
    assert offline(docker, SINGLEUSER, "sh", "-c", "echo $HOME && pwd").stdout.split() == [
        "/home/jovyan",
        "/home/jovyan",
    ]


def test_singleuser_imports_the_analysis_stack_offline(docker):
    mods = "hail, dask, distributed, xarray, zarr, pysam, ipywidgets, jupyterlab, extensions"
    out = offline(docker, SINGLEUSER, "python", "-c", f"import {mods}; print('ok')")
    assert out.stdout.strip() == "ok"


def image_modules() -> dict[str, list[str]]:
    """What each image's processes import: the list its own build checks (images/check-env.py)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(
        "check_env", REPO_ROOT / "images" / "check-env.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return {DASK: module.MODULES["dask"], SINGLEUSER: module.MODULES["singleuser"]}


IMAGE_LOCKS = {DASK: "requirements/dask.lock", SINGLEUSER: "requirements/singleuser.lock"}


@pytest.mark.parametrize("image", [DASK, SINGLEUSER], ids=["dask", "singleuser"])
def test_each_image_imports_what_its_processes_import(docker, image):
    script = (
        "import importlib, json, sys\n"
        f"for m in {image_modules()[image]!r}: importlib.import_module(m)\n"
        "import dask, distributed\n"
        "print(json.dumps([dask.__version__, distributed.__version__]))\n"
    )
    out = offline(docker, image, "python", "-c", script, timeout=600)
    dask_version, distributed_version = json.loads(out.stdout.strip().splitlines()[-1])
    # distributed pins dask exactly; a mismatch is the failure of a walked-back resolution
    assert dask_version == distributed_version


@pytest.mark.parametrize("image", [DASK, SINGLEUSER], ids=["dask", "singleuser"])
def test_each_image_holds_exactly_its_lock(docker, image):
    lock = REPO_ROOT / IMAGE_LOCKS[image]
    want = {}
    for line in lock.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        if m:
            want[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    out = offline(docker, image, "pip", "list", "--format=json", "--disable-pip-version-check")
    got = {re.sub(r"[-_.]+", "-", p["name"]).lower(): p["version"] for p in json.loads(out.stdout)}
    # the venv's seed packages (python3 -m venv) and the project's wheel are the only
    # things the lock does not name
    for seed in ("pip", "setuptools"):
        if seed not in want:
            got.pop(seed, None)
    assert got.pop("visiting-workspace")
    assert got == want
    check = offline(docker, image, "pip", "check", "--disable-pip-version-check")
    assert check.stdout.strip() == "No broken requirements found."


def test_singleuser_has_java(docker):
    out = offline(docker, SINGLEUSER, "java", "-version")
    assert "openjdk" in (out.stderr + out.stdout).lower()


def test_hail_runs_offline_on_the_base_jvm(docker):
    script = (
        "import hail as hl\n"
        "hl.init(quiet=True, master='local[1]', log='/tmp/hail.log')\n"
        "print('count', hl.utils.range_table(10).count())\n"
    )
    out = offline(docker, SINGLEUSER, "python", "-c", script, timeout=600)
    assert "count 10" in out.stdout, out.stderr[-2000:]


def test_singleuser_speaks_the_hubs_jupyterhub_version(docker):
    out = offline(docker, SINGLEUSER, "jupyterhub-singleuser", "--version")
    assert out.stdout.strip() == "6.1.1"


def test_jupyterlab_download_commands_are_disabled(docker):
    cfg = json.loads(offline(docker, SINGLEUSER, "cat", PAGE_CONFIG).stdout)
    disabled = cfg["disabledExtensions"]
    for plugin in DISABLED_PLUGINS:
        assert disabled.get(plugin) is True, plugin
    # locked too, so JupyterLab's plugin manager offers no way to turn them back on
    assert cfg["lockedExtensions"] == disabled
    # every id disabled is a plugin the installed JupyterLab really has
    found = offline(
        docker,
        SINGLEUSER,
        "python",
        "-c",
        "import glob, json, sys\n"
        "ids = json.loads(sys.argv[1])\n"
        "js = ''.join(open(f).read() for f in glob.glob('/opt/venv/share/jupyter/lab/static/*.js'))\n"
        "print(json.dumps([i for i in ids if f'\"{i}\"' in js]))\n",
        json.dumps(sorted(disabled)),
    ).stdout
    assert sorted(json.loads(found)) == sorted(disabled)


# --- the guard in the singleuser image ----------------------------------------------

# What a researcher could write in the home hoping Jupyter reads it: config that
# switches the guard off (and its managers back to the stock ones), and page
# config that turns JupyterLab's download commands back on.
GUARD_OFF = {
    "ServerApp": {
        "jpserver_extensions": {"extensions.guard": False},
        "contents_manager_class": "jupyter_server.services.contents.largefilemanager.AsyncLargeFileManager",
        "kernel_manager_class": "jupyter_server.services.kernels.kernelmanager.AsyncMappingKernelManager",
    }
}
GUARD_OFF_PY = (
    "c.ServerApp.jpserver_extensions = {'extensions.guard': False}\n"
    "c.ServerApp.contents_manager_class = "
    "'jupyter_server.services.contents.largefilemanager.AsyncLargeFileManager'\n"
)
LAB_ON = {"disabledExtensions": dict.fromkeys(DISABLED_PLUGINS, False)}
TAMPERED_HOME = {
    ".jupyter/jupyter_server_config.json": json.dumps(GUARD_OFF),
    ".jupyter/jupyter_server_config.py": GUARD_OFF_PY,
    ".jupyter/jupyter_server_config.d/zz-guard-off.json": json.dumps(GUARD_OFF),
    ".jupyter/jupyter_notebook_config.json": json.dumps(GUARD_OFF),
    ".jupyter/jupyter_config.json": json.dumps(GUARD_OFF),
    ".jupyter/labconfig/page_config.json": json.dumps(LAB_ON),
    # the user site's config folder (the venv has no user site)
    ".local/etc/jupyter/jupyter_server_config.json": json.dumps(GUARD_OFF),
    ".local/etc/jupyter/labconfig/page_config.json": json.dumps(LAB_ON),
    # the server's working directory
    "jupyter_server_config.json": json.dumps(GUARD_OFF),
    # jupyter_core copies IPython 3 config into the config folder unless told it migrated
    ".ipython/profile_default/ipython_notebook_config.py": GUARD_OFF_PY,
    # login shells; the image's command runs without one
    ".profile": "export JUPYTER_CONFIG_DIR=$HOME/.jupyter JUPYTER_CONFIG_PATH=$HOME/.jupyter\n",
    ".bashrc": "export JUPYTER_CONFIG_DIR=$HOME/.jupyter JUPYTER_CONFIG_PATH=$HOME/.jupyter\n",
}
WRITE_HOME = (
    "import json, pathlib, sys\n"
    "for rel, text in json.loads(sys.argv[1]).items():\n"
    "    p = pathlib.Path.home() / rel\n"
    "    p.parent.mkdir(parents=True, exist_ok=True)\n"
    "    p.write_text(text)\n"
)
# What DockerSpawner gives the container, with a hub that is not there.
HUB_ENV = {
    "JUPYTERHUB_API_TOKEN": "not-a-real-token",
    "JUPYTERHUB_API_URL": "http://127.0.0.1:8081/hub/api",
    "JUPYTERHUB_BASE_URL": "/",
    "JUPYTERHUB_USER": "tanaka",
    "JUPYTERHUB_SERVICE_PREFIX": "/user/tanaka/",
    "JUPYTERHUB_SERVICE_URL": "http://0.0.0.0:80/user/tanaka/",
    "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-tanaka",
    "JUPYTERHUB_OAUTH_CALLBACK_URL": "/user/tanaka/oauth_callback",
}
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# how the spawner starts a researcher's container (hub/plugins/spawner.py): as root with the four
# capabilities of the egress gate's launcher, which runs the server as uid 1000 behind the gate
AS_SPAWNED = (
    "--user", "0:0", "--cap-drop", "ALL",
    "--cap-add", "SETUID", "--cap-add", "SETGID", "--cap-add", "NET_BIND_SERVICE", "--cap-add", "KILL",
    "--sysctl", "net.ipv4.ip_unprivileged_port_start=1024",
    "--security-opt", "no-new-privileges",
)  # fmt: skip


@pytest.fixture(params=["clean-home", "tampered-home"])
def home(request, docker):
    """A researcher's home volume, as DockerSpawner mounts one; `tampered-home` holds TAMPERED_HOME."""
    volume = f"{docker.prefix}-home"
    docker("volume", "create", volume)
    files = {"tampered-home": TAMPERED_HOME, "own-tutorial": OWN_TUTORIAL}.get(request.param)
    if files:
        docker(
            "run", "--rm", "--network", "none", "--user", "1000:1000",
            "-v", f"{volume}:/home/jovyan", SINGLEUSER,
            "python", "-c", WRITE_HOME, json.dumps(files),
        )  # fmt: skip
    yield volume
    ids = docker("ps", "-aq", "--filter", f"name={docker.prefix}", check=False).stdout.split()
    if ids:
        docker("rm", "-f", *ids, check=False)
    docker("volume", "rm", volume, check=False)


def as_researcher(docker, home: str, *cmd: str) -> str:
    """Run cmd offline as uid 1000 with the home volume; stdout and stderr, colours removed."""
    out = docker(
        "run", "--rm", "--network", "none", "--user", "1000:1000",
        "-v", f"{home}:/home/jovyan", SINGLEUSER, *cmd,
    )  # fmt: skip
    return ANSI.sub("", out.stdout + out.stderr)


def wait_for_log(docker, container: str, text: str, timeout=90) -> str:
    deadline = time.monotonic() + timeout
    while True:
        out = docker("logs", container, check=False)
        log = out.stdout + out.stderr
        if text in log:
            return log
        state = docker("inspect", "-f", "{{.State.Running}}", container, check=False).stdout
        if state.strip() != "true" or time.monotonic() > deadline:
            raise AssertionError(f"{container} never logged {text!r}:\n{log[-4000:]}")
        time.sleep(0.5)


def test_only_root_owned_config_is_on_the_path(docker):
    paths = json.loads(offline(docker, SINGLEUSER, "jupyter", "--paths", "--json").stdout)
    assert paths["config"] == CONFIG_PATH
    # nothing on the config path, nor any folder that would hold it, is writable by uid 1000
    script = (
        "import json, os, sys\n"
        "found = []\n"
        "for top in json.loads(sys.argv[1]):\n"
        "    d = top\n"
        "    while not os.path.exists(d):\n"
        "        d = os.path.dirname(d)\n"
        "    found += [d] if os.access(d, os.W_OK) else []\n"
        "    for root, dirs, files in os.walk(top):\n"
        "        found += [os.path.join(root, n) for n in dirs + files\n"
        "                  if os.access(os.path.join(root, n), os.W_OK)]\n"
        "print(json.dumps(found))\n"
    )
    writable = offline(docker, SINGLEUSER, "python", "-c", script, json.dumps(CONFIG_PATH)).stdout
    assert json.loads(writable) == []
    # JupyterLab's own settings and workspaces stay the researcher's
    lab_paths = offline(docker, SINGLEUSER, "jupyter", "lab", "paths").stdout
    assert "User Settings directory: /home/jovyan/.jupyter/lab/user-settings" in lab_paths
    assert "Workspaces directory: /home/jovyan/.jupyter/lab/workspaces" in lab_paths


def test_guard_server_extension_is_enabled_and_validated(docker, home):
    out = as_researcher(docker, home, "jupyter", "server", "extension", "list")
    blocks = dict(
        (b.split("\n", 1) + [""])[:2] for b in re.split(r"^Config dir: ", out, flags=re.M)[1:]
    )
    assert CONFIG_DIR in blocks, out
    assert re.search(r"^\s+extensions\.guard enabled$", blocks[CONFIG_DIR], re.M), out
    assert re.search(r"^\s+extensions\.guard\s+OK$", blocks[CONFIG_DIR], re.M), out
    assert not re.search(r"extensions\.guard\s+disabled", out), out
    assert "Traceback" not in out, out


def test_banner_is_enabled_and_download_plugins_are_disabled(docker, home):
    out = as_researcher(docker, home, "jupyter", "labextension", "list")
    assert re.search(rf"^\s+{re.escape(BANNER)} v\S+ enabled OK\s*$", out, re.M), out
    disabled = out.split("Disabled extensions:", 1)
    assert len(disabled) == 2, out
    listed = {line.split()[0] for line in disabled[1].splitlines() if line.strip()}
    assert set(DISABLED_PLUGINS) <= listed, out


@pytest.mark.parametrize("home", ["tampered-home"], indirect=True)
def test_a_server_in_a_tampered_home_runs_the_guard_and_the_page_config(docker, home):
    name = f"{docker.prefix}-server"
    docker(
        "run", "-d", "--name", name, "--network", "none", "--user", "1000:1000",
        "-v", f"{home}:/home/jovyan", SINGLEUSER,
        "jupyter", "server", "--ip=127.0.0.1", "--port=8888", "--IdentityProvider.token=t",
    )  # fmt: skip
    wait_for_log(docker, name, "file routes guarded")
    script = (
        "import json, re, sys, urllib.request\n"
        "get = lambda p: urllib.request.urlopen('http://127.0.0.1:8888/' + p + '?token=t').read()\n"
        "guard = json.loads(get('visiting/guard'))\n"
        "page = re.search(rb'id=\"jupyter-config-data\"[^>]*>(.*?)</script>', get('lab'), re.S)\n"
        "print(json.dumps({'guard': guard, 'page': json.loads(page.group(1))}))\n"
    )
    got = json.loads(docker("exec", name, "python", "-c", script).stdout)
    assert got["guard"]["routes"], got["guard"]
    page = got["page"]
    assert set(DISABLED_PLUGINS) <= set(page["disabledExtensions"]), page["disabledExtensions"]
    assert BANNER in {e["name"] for e in page["federated_extensions"]}


@pytest.mark.parametrize("home", ["tampered-home"], indirect=True)
def test_the_images_own_command_loads_the_guard_in_a_tampered_home(docker, home):
    """The image's CMD (visiting-singleuser, which execs jupyterhub-singleuser), as DockerSpawner
    starts it.

    With no hub to answer, the server gets as far as loading its extensions; the
    guard loads only with the guarded managers set (it refuses to otherwise).
    """
    name = f"{docker.prefix}-singleuser"
    env = [a for k, v in HUB_ENV.items() for a in ("-e", f"{k}={v}")]
    docker(
        "run", "-d", "--name", name, "--network", "none", *env, *AS_SPAWNED,
        "-v", f"{home}:/home/jovyan", SINGLEUSER,
    )  # fmt: skip
    log = wait_for_log(docker, name, "extensions.guard | extension was successfully loaded")
    assert "extensions.guard | extension failed" not in log, log[-4000:]


def test_the_images_command_started_as_the_researcher_refuses_to_serve_without_its_gate(docker):
    """A container started the old way (as uid 1000, no gate) never serves: the hub's proxy
    would reach the Jupyter server directly."""
    env = [a for k, v in HUB_ENV.items() for a in ("-e", f"{k}={v}")]
    out = docker(
        "run", "--rm", "--network", "none", "--user", "1000:1000", *env, SINGLEUSER,
        check=False,
    )  # fmt: skip
    assert out.returncode == 2, out
    assert "behind its egress gate" in out.stderr, out.stderr


OWN_TUTORIAL = {"tutorials/01-getting-started.ipynb": "my own notes"}
TUTORIALS = sorted(p.name for p in (REPO_ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("home", ["own-tutorial"], indirect=True)
def test_the_server_puts_the_tutorials_in_the_home_and_keeps_the_researchers_own(docker, home):
    """The image's command copies the tutorials into ~/tutorials before the server starts;
    a tutorial the researcher already has (changed, here) stays as it is."""
    assert len(TUTORIALS) == 6, TUTORIALS
    name = f"{docker.prefix}-singleuser"
    env = [a for k, v in HUB_ENV.items() for a in ("-e", f"{k}={v}")]
    docker(
        "run", "-d", "--name", name, "--network", "none", *env, *AS_SPAWNED,
        "-v", f"{home}:/home/jovyan", SINGLEUSER,
    )  # fmt: skip
    wait_for_log(docker, name, "extensions.guard | extension was successfully loaded")
    listing = docker("exec", name, "ls", "/home/jovyan/tutorials").stdout.split()
    assert set(TUTORIALS) <= set(listing), listing
    own = docker("exec", name, "cat", "/home/jovyan/tutorials/01-getting-started.ipynb").stdout
    assert own == "my own notes"
    shipped = docker(
        "exec", name, "cat", "/home/jovyan/tutorials/04-pooled-allele-frequencies.ipynb"
    )
    assert (
        shipped.stdout
        == (REPO_ROOT / "notebooks" / "04-pooled-allele-frequencies.ipynb").read_text()
    )


def test_dask_image_runs_the_scheduler_offline(docker):
    out = offline(docker, DASK, "dask", "scheduler", "--version")
    assert "version" in out.stdout
    assert offline(docker, DASK, "id", "-u").stdout.strip() != "0"
    cmd = docker("image", "inspect", "-f", "{{json .Config.Cmd}}", DASK).stdout
    assert json.loads(cmd) == ["dask", "scheduler"]
    offline(docker, DASK, "python", "-c", "import distributed, hail, pysam, zarr, extensions")


def test_notebook_client_computes_on_a_site_cluster_on_an_internal_network(docker):
    net = f"{docker.prefix}-site"
    docker("network", "create", "--internal", net)
    sched = f"{docker.prefix}-scheduler"
    docker("run", "-d", "--name", sched, "--network", net, DASK)
    docker(
        "run", "-d", "--name", f"{docker.prefix}-worker", "--network", net, DASK,
        "dask", "worker", f"tcp://{sched}:8786", "--nthreads", "1", "--memory-limit", "1GB",
    )  # fmt: skip
    script = (
        "from distributed import Client\n"
        f"c = Client('tcp://{sched}:8786', timeout=60)\n"
        "c.wait_for_workers(1, timeout=120)\n"
        "c.get_versions(check=True)\n"  # raises if client and cluster differ
        "print('sum', c.submit(sum, [1, 2, 3]).result())\n"
    )
    out = docker("run", "--rm", "--network", net, SINGLEUSER, "python", "-c", script, timeout=300)
    assert "sum 6" in out.stdout


def _http_get(docker, network: str, url: str) -> subprocess.CompletedProcess:
    script = (
        "import sys, urllib.request\n"
        "try:\n"
        "    print(urllib.request.urlopen(sys.argv[1], timeout=4).status)\n"
        "except OSError as e:\n"
        "    print('unreachable', e); sys.exit(3)\n"
    )
    return docker(
        "run", "--rm", "--network", network, BASE, "python3", "-c", script, url, check=False
    )


def _start_decoy(docker, name: str, network: str) -> str:
    docker(
        "run", "-d", "--name", name, "--network", network, BASE,
        "python3", "-m", "http.server", "8080",
    )  # fmt: skip
    ip = docker(
        "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name
    ).stdout.strip()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        probe = docker("exec", name, "python3", "-c",
                       "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/', timeout=2)",
                       check=False)  # fmt: skip
        if probe.returncode == 0:
            return ip
        time.sleep(0.5)
    raise AssertionError(f"decoy {name} did not start serving")


def test_internal_network_reaches_its_own_network_and_nothing_else(docker):
    other = f"{docker.prefix}-other"
    internal = f"{docker.prefix}-internal"
    docker("network", "create", other)
    docker("network", "create", "--internal", internal)
    decoy_elsewhere = _start_decoy(docker, f"{docker.prefix}-decoy-other", other)
    _start_decoy(docker, f"{docker.prefix}-decoy-local", internal)

    local = _http_get(docker, internal, f"http://{docker.prefix}-decoy-local:8080/")
    assert local.returncode == 0 and local.stdout.strip() == "200", local.stdout + local.stderr

    elsewhere = _http_get(docker, internal, f"http://{decoy_elsewhere}:8080/")
    assert elsewhere.returncode == 3, elsewhere.stdout + elsewhere.stderr
    assert "unreachable" in elsewhere.stdout

    # the decoy itself is up: a container on its own network gets an answer
    same = _http_get(docker, other, f"http://{decoy_elsewhere}:8080/")
    assert same.stdout.strip() == "200", same.stdout + same.stderr


def test_a_second_build_builds_nothing(docker_env):
    started = time.monotonic()
    out = run([IMAGES_SH], env=docker_env, timeout=600)
    took = time.monotonic() - started
    log = out.stdout + out.stderr
    assert "built: nothing" in log, log
    skipped = re.search(r"up to date \(skipped\): (.*)", log)
    assert skipped and set(skipped.group(1).split()) == set(IMAGES), log
    assert took < 60, f"an up-to-date images.sh took {took:.0f}s"
