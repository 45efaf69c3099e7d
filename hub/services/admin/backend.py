"""What the admin service's handlers share: the platform's operations, the hub's API, the
enforcer, the sites' Docker engines, and the hub services' health."""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from hub.platform.access import approvals_at_site
from hub.platform.operations import OperationError, Operations, check_reason
from hub.plugins.service_restarts import read_service_status
from hub.sites.plan import resolve_endpoint

log = logging.getLogger("visiting.admin")

#: seconds a service may take to answer its health check before the page calls it down
HEALTH_TIMEOUT = 1.0


class Backend:
    """What the handlers share: operations, the hub's API, the enforcer, the sites' engines."""

    def __init__(
        self,
        ops: Operations,
        hub_api_url: str,
        token: str,
        enforcer_url: str | None,
        prefix: str = "/services/admin/",
        service_health: dict[str, str] | None = None,
        state_dir: Path | None = None,
    ):
        self.ops = ops
        self.service_health = dict(service_health or {})
        self.state_dir = state_dir
        self.prefix = "/" + prefix.strip("/") + "/"
        self.hub_api_url = hub_api_url.rstrip("/")
        self.token = token
        self.enforcer_url = enforcer_url.rstrip("/") + "/" if enforcer_url else None
        self.http = AsyncHTTPClient()
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="docker")
        self._docker: dict[str, object] = {}
        #: the export airlock's desk (hub.services.export.desk.ExportDesk) for the review
        #: pages; None: the pages answer 404
        self.desk = None

    # -- the sites' Docker engines ------------------------------------------------

    def docker(self, site: str):
        import docker

        endpoint = resolve_endpoint(self.ops.platform.sites[site].docker_endpoint)
        if endpoint not in self._docker:
            self._docker[endpoint] = docker.APIClient(base_url=endpoint, version="auto", timeout=20)
        return self._docker[endpoint]

    def image_present(self, site: str, image: str) -> bool:
        import docker

        try:
            self.docker(site).inspect_image(image)
            return True
        except docker.errors.ImageNotFound:
            return False

    def containers(self, site: str) -> dict[str, dict]:
        """user -> {image, id, cpu, memory, memory_limit} of the site's researcher containers."""
        client = self.docker(site)
        out = {}
        for c in client.containers(filters={"label": f"org.visiting.site={site}"}):
            user = c["Labels"].get("org.visiting.user")
            if not user:
                continue
            entry = {"image": c["Image"], "container": c["Id"][:12], "state": c["State"]}
            try:
                stats = client.stats(c["Id"], stream=False)
                mem = stats.get("memory_stats", {})
                entry["memory"] = mem.get("usage")
                entry["memory_limit"] = mem.get("limit")
                cpu, pre = stats.get("cpu_stats", {}), stats.get("precpu_stats", {})
                d_cpu = cpu.get("cpu_usage", {}).get("total_usage", 0) - pre.get(
                    "cpu_usage", {}
                ).get("total_usage", 0)
                d_sys = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
                ncpu = cpu.get("online_cpus") or 1
                entry["cpu_percent"] = round(100.0 * d_cpu / d_sys * ncpu, 1) if d_sys > 0 else 0.0
            except Exception as e:  # a container that went away meanwhile
                entry["stats_error"] = str(e)
            out[user] = entry
        return out

    def home_usage(self, site: str) -> dict[str, int]:
        """user -> bytes in their home volume at the site."""
        prefix = f"visiting-home-{site}-"
        out = {}
        for v in self.docker(site).df().get("Volumes") or []:
            if v["Name"].startswith(prefix):
                out[v["Name"][len(prefix) :]] = (v.get("UsageData") or {}).get("Size", -1)
        return out

    # -- the hub ------------------------------------------------------------------

    async def hub(self, path: str):
        req = HTTPRequest(
            self.hub_api_url + path,
            headers={"Authorization": f"token {self.token}"},
            request_timeout=30,
        )
        resp = await self.http.fetch(req)
        return json.loads(resp.body)

    async def servers_at(self, site: str) -> list[dict]:
        """The running and pending servers at `site`, with user, approval, image, uptime and use."""
        users = await self.hub("/users?state=active")
        items = users["items"] if isinstance(users, dict) else users
        loop = asyncio.get_running_loop()
        containers, homes = await asyncio.gather(
            loop.run_in_executor(self.pool, self.containers, site),
            loop.run_in_executor(self.pool, self.home_usage, site),
        )
        now = datetime.now(UTC)
        rows = []
        for u in items:
            server = (u.get("servers") or {}).get(site)
            if server is None:
                continue
            started = server.get("started")
            uptime = None
            if started:
                uptime = int(
                    (now - datetime.fromisoformat(started.replace("Z", "+00:00"))).total_seconds()
                )
            approvals = approvals_at_site(
                self.ops.registry.active_approvals(u["name"], self.ops.clock.now()), site
            )
            c = containers.get(u["name"], {})
            rows.append(
                {
                    "user": u["name"],
                    "approval_id": approvals[0].approval_id if approvals else None,
                    "ready": server.get("ready"),
                    "pending": server.get("pending"),
                    "started": started,
                    "uptime_seconds": uptime,
                    "last_activity": server.get("last_activity"),
                    "image": c.get("image"),
                    "cpu_percent": c.get("cpu_percent"),
                    "memory": c.get("memory"),
                    "memory_limit": c.get("memory_limit"),
                    "home": homes.get(u["name"]),
                }
            )
        return sorted(rows, key=lambda r: r["user"])

    # -- the hub's services -------------------------------------------------------

    async def answers_health(self, url: str) -> bool:
        try:
            await self.http.fetch(url, request_timeout=HEALTH_TIMEOUT)
            return True
        except (HTTPClientError, OSError) as e:
            log.warning("%s does not answer: %s", url, e)
            return False

    async def services_status(self) -> list[dict]:
        """Each hub service: up (its health check answers now), and from the hub's record its
        pid, start, restarts since the hub started, last restart and the exit status before it."""
        names = list(self.service_health)
        answers = await asyncio.gather(
            *(self.answers_health(self.service_health[n]) for n in names)
        )
        record = read_service_status(self.state_dir) if self.state_dir else {}
        rows = []
        for name, up in zip(names, answers, strict=True):
            entry = record.get(name, {})
            rows.append(
                {
                    "name": name,
                    "up": up,
                    "pid": entry.get("pid"),
                    "started": entry.get("started"),
                    "restarts": entry.get("restarts", 0),
                    "last_restart": entry.get("last_restart"),
                    "last_exit_status": entry.get("last_exit_status"),
                }
            )
        return rows

    # -- the enforcer ---------------------------------------------------------------

    async def enforcer(self, path: str, body: dict) -> dict:
        """Ask the enforcer; an answer that says what happened, also when it is down."""
        if self.enforcer_url is None:
            return {"error": "no enforcer is configured"}
        down = {
            "error": "the enforcer is not answering; the action holds (login, spawn and the "
            "gateways refuse already), and the servers are stopped when the enforcer is back"
        }
        try:
            # a quick look first: a hung enforcer must not hold the secretariat's answer
            await self.http.fetch(self.enforcer_url + "health", request_timeout=1.0)
        except (HTTPClientError, OSError) as e:
            log.warning("the enforcer does not answer its health check: %s", e)
            return down
        req = HTTPRequest(
            self.enforcer_url + path,
            method="POST",
            body=json.dumps(body),
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
            request_timeout=60,
        )
        try:
            resp = await self.http.fetch(req)
        except (HTTPClientError, OSError) as e:
            log.warning("the enforcer did not act on %s: %s", body, e)
            return down | {"detail": str(e)}
        return json.loads(resp.body)

    async def enforce_after(self, out) -> dict:
        """After a suspension or a revocation: the enforcer acts on the people it concerns."""
        if out.action == "suspend":
            users = sorted(out.detail["suspensions"])
        else:
            users = list(out.detail["approval"]["handlers"])
        return await self.enforcer("api/enforce", {"users": users})

    async def stop_server(self, actor: str, site: str, user: str, reason) -> dict:
        """A site admin's stop of one server: checked, done by the enforcer, recorded."""
        self.ops.require_site_admin(actor, site)
        reason = check_reason(reason)
        done = await self.enforcer(
            "api/stop", {"user": user, "site": site, "reason": reason, "actor": actor}
        )
        if "error" in done:
            raise OperationError(done["error"], status=503)
        self.ops.record_server_stop(
            actor, site=site, user=user, reason=reason, stopped=bool(done.get("stopped"))
        )
        return {"site": site, "user": user} | done
