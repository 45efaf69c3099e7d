"""SiteSpawner: one named server per site, a sandboxed container on that site's network.

A DockerSpawner customised through its template methods. The named
server's name is the site id (`/user/<name>/<site>/`). `start()` is where
the allow-lists are enforced, before any container exists: the person needs
an approval active now that covers a dataset at the site, and the image must
be on the site's list. The container then gets

- the approved datasets held at the site, read-only at `/data/<dataset>/`,
  and nothing else of the site's storage;
- a home volume kept per user per site;
- CPU and memory limits from the approval's quota over the site's default;
- the site's internal network, the hub reached at the site's host address,
  the site's Dask scheduler, no outside DNS;
- its site, approval id and approval end in the environment.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from dockerspawner import DockerSpawner
from tornado import web
from traitlets import Float, Int, default

from extensions.contracts.clock import CLOCK_FILE_ENV
from extensions.contracts.environment import (
    APPROVAL_END,
    APPROVAL_END_DATE,
    APPROVAL_ID,
    AUDIT_URL,
    DATASETS,
    EGRESS_RULES,
    GUARD_RULES,
    HOME_QUOTA,
    HUB_URL,
    PERIOD_CHECK_SECONDS,
    SITE,
    SITE_NAME,
    TERMINALS,
)
from hub.platform.access import approvals_at_site, decide_access
from hub.platform.messages import Message, message
from hub.platform.policy import Quota, Site
from hub.platform.traits import PlatformTraits
from hub.sites.plan import SERVER_DASK_SCHEDULER, SitePlan, resolve_endpoint
from hub.store.registry import ApprovalView

CONTAINER_CLOCK_FILE = "/run/visiting/clock"
# the port of a researcher's container that the proxy routes to: the egress gate's
GATE_PORT = 80


class SiteRefused(web.HTTPError):
    """A start refused before any container exists; the message is for the researcher."""

    def __init__(self, text: Message, status: int = 403):
        super().__init__(status, "%s", str(text), reason="Server not started")
        self.jupyterhub_message = str(text)


class SiteSpawner(PlatformTraits, DockerSpawner):
    """A researcher's server at one site, in a container on that site's network."""

    hub_api_port = Int(
        8081,
        help="""Port of the hub's API on the site's host address (the site network's .1),
        which is how a container reaches the hub. Example: 8081.""",
    ).tag(config=True)

    proxy_port = Int(
        8000,
        help="""Port of the hub's public proxy on the site's host address; the guard in the
        container sends its events to the audit intake behind it. Example: 8000.""",
    ).tag(config=True)

    stop_grace_seconds = Int(
        1,
        help="""Seconds a stopping container gets between SIGTERM and SIGKILL. The guard's
        events are spooled in the home volume, so a short grace loses none of them; a
        suspension's "every container gone within 2 seconds" needs it short. Example: 1.""",
    ).tag(config=True)

    period_check_seconds = Float(
        30.0,
        help="""How often the guard in the container checks the approval period (seconds).
        Example: 30.""",
    ).tag(config=True)

    # DockerSpawner's defaults that the platform sets differently
    @default("remove")
    def _remove_default(self):
        # the container goes on stop; the home volume stays
        return True

    @default("use_internal_ip")
    def _use_internal_ip_default(self):
        return True

    @default("prefix")
    def _prefix_default(self):
        return "visiting"

    @default("pull_policy")
    def _pull_policy_default(self):
        # images are built on the site's engine; there is no registry to pull from
        return "never"

    @default("cmd")
    def _cmd_default(self):
        # jupyterhub-singleuser, after copying the image's tutorials into ~/tutorials
        return ["visiting-singleuser"]

    @default("allowed_images")
    def _allowed_images_default(self):
        # the options form offers these when a site has several; start() checks again
        site = self.platform.sites.get(self.name)
        return self.site_images(site)["images"] if site else []

    # -- which engine ------------------------------------------------------

    _clients: dict = {}
    # DockerSpawner runs every Docker call of the hub on one thread; a suspension that stops
    # a person's servers at five sites would wait for each in turn
    _executor = ThreadPoolExecutor(8, thread_name_prefix="docker")

    @property
    def client(self):
        """One Docker API client per site engine (DockerSpawner keeps a single global one)."""
        import docker

        endpoint = resolve_endpoint(self.site.docker_endpoint) if self.name else None
        if endpoint is None:
            return super().client
        if endpoint not in SiteSpawner._clients:
            SiteSpawner._clients[endpoint] = docker.APIClient(base_url=endpoint, version="auto")
        return SiteSpawner._clients[endpoint]

    # -- the site and the approval ------------------------------------------

    @property
    def site(self) -> Site:
        site = self.platform.sites.get(self.name)
        if site is None:
            known = ", ".join(self.platform.sites)
            raise SiteRefused(message("spawn.no_such_site", site=self.name, known=known), 404)
        return site

    def site_approvals(self, site: Site) -> list[ApprovalView]:
        """The user's approvals active now that cover a dataset held at `site`, latest end first."""
        return approvals_at_site(
            self.registry.active_approvals(self.user.name, self.clock.now()), site.id
        )

    def refuse_unless_approved(self, site: Site) -> ApprovalView:
        approvals = self.site_approvals(site)
        if approvals:
            return approvals[0]
        now = self.clock.now()
        decision = decide_access(
            self.user.name,
            self.registry.approvals_of(self.user.name),
            [],
            now,
            contact=self.platform.contact,
            suspension=self.registry.suspension_of(self.user.name, now),
        )
        if decision.allowed:
            # active approvals exist, but none covers data at this site
            raise SiteRefused(
                message("spawn.not_at_site", site=site.id, name=site.name, name_ja=site.name_ja)
            )
        at = message("spawn.at_site", site=site.id)
        raise SiteRefused(Message(at.key, at.ja + decision.text.ja, at.en + decision.text.en))

    def site_images(self, site: Site) -> dict:
        """The site's image allow-list and default image now, as its site admins keep them."""
        settings = self.registry.site_settings(site.id)
        return {"images": settings["images"], "default_image": settings["default_image"]}

    def quota_for(self, site: Site, approval: ApprovalView) -> Quota:
        """The site admins' quota for this approval at the site, over the approval's own, over
        the site's default (as its admins set it, else the platform file's)."""
        site_default = Quota(**self.registry.site_settings(site.id)["quota"])
        at_site = self.registry.approval_quota(approval.approval_id, site.id) or Quota()
        return at_site.over(approval.quota or Quota()).over(site_default)

    # -- DockerSpawner's template methods -----------------------------------

    def get_env(self):
        env = super().get_env()
        site = self.site
        approval = self._approval
        plan = SitePlan.for_site(site)
        env.update(
            {
                SITE: site.id,
                SITE_NAME: site.name,
                APPROVAL_ID: approval.approval_id,
                APPROVAL_END: approval.ends_before.isoformat(),
                APPROVAL_END_DATE: approval.period.end.isoformat(),
                DATASETS: ",".join(approval.datasets_at(site.id)),
                "DASK_SCHEDULER_ADDRESS": SERVER_DASK_SCHEDULER,
                # the guard's download rules; at an airlock site, no direct download at all
                GUARD_RULES: self.platform.download.to_env(site.downloads),
                # the gate's egress meter and whether it lets terminals open at this site
                EGRESS_RULES: self.platform.egress.to_env(),
                TERMINALS: site.terminals,
                AUDIT_URL: f"http://{plan.gateway}:{self.proxy_port}/services/audit/",
                # the hub's proxy as this site sees it: the federation gateways are behind it
                HUB_URL: f"http://{plan.gateway}:{self.proxy_port}/",
                PERIOD_CHECK_SECONDS: f"{self.period_check_seconds:g}",
            }
        )
        home = self.quota_for(site, approval).home
        if home:
            # the guard refuses saves through Jupyter beyond it (see docs/admin.md)
            env[HOME_QUOTA] = str(home)
        if self._clock_file():
            env[CLOCK_FILE_ENV] = CONTAINER_CLOCK_FILE
        return env

    def _clock_file(self) -> str | None:
        """The hub's clock file when a test set-up moved the clock; None in production."""
        path = getattr(self.clock, "path", None)
        return str(path) if path is not None and os.path.isfile(path) else None

    def template_namespace(self):
        ns = super().template_namespace()
        ns["site"] = self.name
        return ns

    async def start(self):
        site = self.site
        approval = self.refuse_unless_approved(site)
        offered = self.site_images(site)
        requested = self.user_options.get("image") or offered["default_image"]
        if not requested or requested not in offered["images"]:
            offer = ", ".join(offered["images"]) or "none"
            raise SiteRefused(
                message("spawn.image_not_offered", image=requested, site=site.id, offered=offer)
            )
        self._approval = approval
        self._configure_container(site, approval, requested)
        self.log.info(
            "Starting %s's server at %s under %s with %s",
            self.user.name,
            site.id,
            approval.approval_id,
            requested,
        )
        return await super().start()

    def _configure_container(self, site: Site, approval: ApprovalView, image: str) -> None:
        """Everything about the container that follows from the site and the approval, read now."""
        plan = SitePlan.for_site(site)
        quota = self.quota_for(site, approval)
        self.image = image
        self.allowed_images = self.site_images(site)["images"]
        self.network_name = site.network
        self.hub_connect_url = f"http://{plan.gateway}:{self.hub_api_port}"
        self.mem_limit = quota.memory
        self.cpu_limit = quota.cpu
        volumes = {
            f"visiting-home-{site.id}-{{username}}": {"bind": "/home/jovyan", "mode": "rw"},
        }
        data_dir = self.platform.site_data_dir(site.id)
        for ds in approval.datasets_at(site.id):
            host = data_dir / ds
            if host.is_dir():
                volumes[str(host)] = {"bind": f"/data/{ds}", "mode": "ro"}
        clock_file = self._clock_file()
        if clock_file:
            # a test set-up's moved clock, read-only: the guard reads the hub's time
            volumes[str(clock_file)] = {"bind": CONTAINER_CLOCK_FILE, "mode": "ro"}
        # the egress gate's state (its meter and event spool) outlives a restart of the server,
        # so a restart does not reset the day's egress; only the gate's user can enter it
        volumes[f"visiting-gate-{site.id}-{{username}}"] = {
            "bind": "/var/lib/visiting-gate",
            "mode": "rw",
        }
        self.volumes = volumes
        # The container starts as root with four capabilities only, used by the gate's launcher
        # (extensions/guard/gate/launch.py): bind the gate's port below 1024, change to the
        # gate's and the researcher's users, stop them. The researcher's processes run without
        # any capability and cannot gain one (no-new-privileges); no user but root may bind a
        # port below 1024, so nothing in the container can take the gate's place.
        self.port = GATE_PORT
        self.extra_host_config = {
            "security_opt": ["no-new-privileges"],
            "cap_drop": ["ALL"],
            "cap_add": ["SETUID", "SETGID", "NET_BIND_SERVICE", "KILL"],
            "sysctls": {"net.ipv4.ip_unprivileged_port_start": "1024"},
            "pids_limit": 1024,
            # no outside names; the network's embedded resolver still answers for itself
            "dns": ["127.0.0.1"],
        }
        self.extra_create_kwargs = {
            "labels": {"org.visiting.site": site.id, "org.visiting.user": self.user.name},
            "user": "0:0",
            "stop_timeout": self.stop_grace_seconds,
        }
