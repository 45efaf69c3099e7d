"""A site's Docker engine: started, and the project's images built, by the project's scripts;
a client of it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from hub.sites import SiteError
from hub.sites.plan import resolve_endpoint

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


def docker_client(endpoint: str):
    import docker

    return docker.DockerClient(base_url=resolve_endpoint(endpoint), version="auto", timeout=120)
