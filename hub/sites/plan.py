"""A site's plan: the names and addresses of its infrastructure, derived from its /24.

Each site is one internal Docker network (no route out) whose host bridge has
a fixed name, so the host firewall (hub.sites.firewall) can speak of it:

- .1 is the host (the hub's API and proxy listen there, nothing else may be reached);
- .2 the site's Dask scheduler, .3 onwards its workers, which run the
  federation gateway's tasks over all the site's data (as many, and each as
  large, as the site's `dask:` block in the platform file says);
- .64 the site's federation gateway;
- .128-.255 researchers' servers, which may reach the hub and nothing else:
  not each other, not the site's Dask cluster or gateway, not other host ports.
  Each server runs its own Dask cluster inside its container
  (`SERVER_DASK_SCHEDULER`), next to exactly the data its approval mounts.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from hub.platform.policy import Site

ENDPOINT_FILE = Path("/run/visiting/docker-endpoint")
SCHEDULER_PORT = 8786
DASHBOARD_PORT = 8787
# a researcher's server's own Dask scheduler, started inside the container by
# images/singleuser/visiting-singleuser
SERVER_DASK_SCHEDULER = f"tcp://127.0.0.1:{SCHEDULER_PORT}"
GATEWAY_PORT = 8765


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
