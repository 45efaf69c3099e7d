"""The admin service: the secretariat's and site admins' levers, as a REST API and a web page.

A hub-managed service at /services/admin/. People are identified by
JupyterHub OAuth (a browser's login, or `Authorization: token <their own
token>` for the API and the `visiting secretariat` / `visiting site-admin`
commands); what they may do is decided here, on the server, from the
platform roles in the approval registry (`secretariat`, `site-admin:<site>`),
never from what a page shows. Every action goes through `hub.platform.operations`,
which checks every field before anything changes and records the action in
the audit store.

    GET  api/me                                         who am I, which roles and sites
    GET  api/approvals | api/approvals/<id>             (secretariat)
    POST api/approvals/<id>/extend   {end, reason}
    POST api/approvals/<id>/revoke   {reason}
    POST api/approvals/<id>/query-audit/reset   {reason}   the sites' query-set audit of
                                                the approval starts afresh
    GET  api/suspensions
    POST api/suspend     {user | institution, reason, ban_until?, ban_indefinite?}
    POST api/reinstate   {user, reason}
    GET  api/sites/<site>                               (site admin of <site>)
    POST api/sites/<site>/images          {image, reason}  add to the allow-list
    POST api/sites/<site>/images/retire   {image, reason}
    POST api/sites/<site>/quota           {quota: {cpu, memory, home}, reason}
    POST api/sites/<site>/approvals/<id>/quota   {quota, reason}
    GET  api/sites/<site>/servers
    POST api/sites/<site>/servers/<user>/stop    {reason}

After a suspension or revocation the service asks the enforcer to act at
once (stop the people's servers, revoke a suspended person's tokens) and
answers with what it did. When the enforcer is down the answer says so:
the action holds anyway (login, spawn and the gateways read the registry)
and the enforcer stops the servers when it is back.

The page (GET /services/admin/) shows each person the parts of their roles,
in Japanese and English; its forms post to the same actions and show a
refused field's message next to the field.

    GET  api/services      (secretariat, site admins) each hub service: up or
                           down by its health check, pid, restarts since the hub started
    GET  api/egress?days=30  (secretariat) the egress alerts and caps of researchers'
                           servers in the last days, from the audit store: one row per
                           person, site and Japan-time day at its highest level
    GET  api/query-audit?days=30  (secretariat) per approval, the federated queries the
                           sites' query-set audit refused in the last days (time, user,
                           site, dataset, task, rule, the earlier queries it collides with
                           by time and task), newest first, and the audit's resets then

The page shows the same table to the secretariat and the site admins, and a
warning at its top while the enforcer does not answer (suspensions and
revocations then hold, but nobody stops the servers).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler, HubOAuthenticated
from markupsafe import Markup
from tornado import ioloop, web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from extensions.contracts.clock import JST, clock_from_env, fiscal_year_of, jst_date
from extensions.contracts.events import EGRESS_ALERT, EGRESS_CAP, FEDERATION_QUERY, QUERY_SET_AUDIT
from hub.platform.access import SECRETARIAT, approvals_at_site
from hub.platform.messages import MESSAGES, message
from hub.platform.operations import OperationError, Operations, check_reason
from hub.platform.policy import load_platform
from hub.platform.traits import PLATFORM_ENV, REPO_ROOT
from hub.plugins.service_restarts import read_service_status
from hub.services import service_port
from hub.services._base import follow_the_hub, health_route
from hub.sites.containers import resolve_endpoint
from hub.store.audit import AuditStore
from hub.store.registry import ApprovalRegistry, QueryAuditResetView

log = logging.getLogger("visiting.admin")

#: what the service asks of the hub: the servers at a site, and the enforcer
SCOPES = ["list:users", "read:users:name", "read:servers", "access:services!service=enforcer"]

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"

#: seconds a service may take to answer its health check before the page calls it down
HEALTH_TIMEOUT = 1.0

#: the egress meter's events the secretariat is shown, and their order
EGRESS_LEVELS = {EGRESS_ALERT: "alert", EGRESS_CAP: "cap"}
_LEVEL_RANK = {"alert": 1, "cap": 2}
#: days of egress alerts the page shows; the API takes ?days= up to a year
EGRESS_DAYS = 30


def egress_alerts(audit: AuditStore, since: datetime, until: datetime | None = None) -> list[dict]:
    """The egress alerts and caps of researchers' servers stored with a time in [since, until):
    one row per person, site and Japan-time day, at the highest level the day reached (with
    that event's bytes and people), the newest day first."""
    rows: dict[tuple[str, str, str], dict] = {}
    for schema, level in EGRESS_LEVELS.items():
        for r in audit.events(since=since, until=until, schema=schema):
            data = r["data"]
            day = data.get("day") or jst_date(datetime.fromisoformat(r["time"])).isoformat()
            key = (r["user"], r["site"], day)
            row = rows.get(key)
            if row is not None and _LEVEL_RANK[row["level"]] >= _LEVEL_RANK[level]:
                continue
            rows[key] = {
                "user": r["user"],
                "site": r["site"],
                "day": day,
                "level": level,
                "bytes": data.get("bytes"),
                "people": data.get("people"),
                "reached_by": data.get("reached_by") or [],
                "time": r["time"],
                "approval_id": r["approval_id"],
            }
    return sorted(rows.values(), key=lambda x: (x["day"], x["time"], x["user"]), reverse=True)


#: days of query-set audit refusals the page shows; the API takes ?days= up to a year
QUERY_AUDIT_DAYS = 30


def _scope_of(audit: dict, user: str) -> str | None:
    """The refusing audit's scope: an approval id, or the requesting person's own
    `person:<user>`; None for anything else (a refusal names no other person)."""
    scope = audit.get("scope")
    if not isinstance(scope, str) or not scope:
        return None
    if scope.startswith("person:") and scope != f"person:{user}":
        return None
    return scope


def query_audit_refusals(
    audit: AuditStore, since: datetime, until: datetime | None = None
) -> list[dict]:
    """The federated queries a site's query-set audit refused, stored with a time in
    [since, until), newest first: when, who asked, at which site, the dataset, the task,
    the rule, and the earlier queries it collides with (their time, task and event id).
    Only these fields are taken from the event: never its parameters (which may hold
    sample ids) nor its message."""
    rows = []
    for r in audit.events(since=since, until=until, schema=FEDERATION_QUERY):
        data = r["data"]
        if data.get("outcome") != "refused" or data.get("code") != QUERY_SET_AUDIT:
            continue
        verdict = data.get("audit") if isinstance(data.get("audit"), dict) else {}
        collisions = verdict.get("collides_with")
        rows.append(
            {
                "query_id": r["event_id"],
                "time": r["time"],
                "seq": r["seq"],
                "approval_id": r["approval_id"],
                "scope": _scope_of(verdict, r["user"]),
                "user": r["user"],
                "site": r["site"],
                "dataset": data.get("dataset"),
                "task": data.get("task"),
                "rule": verdict.get("rule"),
                "collides_with": [
                    {"time": c.get("time"), "task": c.get("task"), "query_id": c.get("query_id")}
                    for c in (collisions if isinstance(collisions, list) else [])
                    if isinstance(c, dict)
                ],
            }
        )
    rows.sort(key=lambda x: (x["time"], x.pop("seq")), reverse=True)
    return rows


def query_audit_by_approval(
    refusals: list[dict], resets: list[QueryAuditResetView], since: datetime
) -> list[dict]:
    """Refusals grouped by the audit that refused them (an approval, or a person's own
    audit when no approval covered the dataset), each with that approval's resets since
    `since`, newest first; approvals with a reset and no refusal in the period too."""
    groups: dict[str, dict] = {}

    def group(key: str) -> dict:
        if key not in groups:
            approval = None if key.startswith("person:") else key
            groups[key] = {"scope": key, "approval_id": approval, "refusals": [], "resets": []}
        return groups[key]

    for row in refusals:
        key = row["scope"] or row["approval_id"] or f"person:{row['user']}"
        group(key)["refusals"].append(row)
    for reset in sorted(resets, key=lambda x: (x.at, x.id), reverse=True):
        if reset.at >= since:
            group(reset.approval_id)["resets"].append(reset.to_json())
    return [groups[k] for k in sorted(groups)]


def query_audit_section(ops: Operations, since: datetime) -> list[dict]:
    """What the secretariat sees of the query-set audit since `since` (page and API)."""
    return query_audit_by_approval(
        query_audit_refusals(ops.audit, since), ops.registry.query_audit_resets(), since
    )


def days_since(now: datetime, days: int) -> datetime:
    """The first instant of the Japan-time day `days - 1` days before today: `days` whole days."""
    first = jst_date(now) - timedelta(days=days - 1)
    return datetime.combine(first, datetime.min.time(), tzinfo=JST)


#: the egress section's name for it (the same whole Japan-time days)
egress_since = days_since


def audit_rule(rule: str | None) -> str:
    """A query-set audit rule as the page shows it, in both languages; its id when the
    message table has no words for it."""
    key = f"query_audit.rule.{rule}"
    return str(message(key)) if key in MESSAGES else (rule or "—")


def mib(n: int | None) -> str:
    """Bytes as MiB with one decimal, for the page; '—' for none."""
    return "—" if n is None else f"{n / 1024**2:,.1f} MiB"


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


# ---------------------------------------------------------------------------
# handlers


class BaseHandler(HubOAuthenticated, web.RequestHandler):
    """Identifies the person by JupyterHub OAuth; roles come from the registry."""

    def initialize(self, backend: Backend):
        self.backend = backend
        self.ops = backend.ops

    @property
    def actor(self) -> str:
        return self.current_user["name"]


class ApiHandler(BaseHandler):
    """JSON in, JSON out; errors as {"status", "message", "field"}."""

    def check_xsrf_cookie(self):
        # the API is for tokens; a browser's cookie cannot reach it (see prepare)
        return

    async def prepare(self):
        header = self.request.headers.get("Authorization", "")
        if not header:
            raise web.HTTPError(401, "an Authorization: token header is needed")
        if self.current_user is None:
            raise web.HTTPError(403, "the hub does not accept this token (expired or revoked?)")

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None))[1]
        body = {"status": status_code, "message": self._reason, "field": None}
        if isinstance(exc, OperationError):
            body.update(exc.to_json())
        elif isinstance(exc, web.HTTPError) and exc.log_message:
            body["message"] = exc.log_message % exc.args if exc.args else exc.log_message
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(body)

    def _handle_request_exception(self, e):
        if isinstance(e, OperationError):
            self.send_error(e.status, exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)

    def body(self) -> dict:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise OperationError("the body is not JSON") from None
        if not isinstance(body, dict):
            raise OperationError("the body must be a JSON object")
        return body

    def days(self, default: int) -> int:
        """?days=N: whole Japan-time days back from today, 1 to 366."""
        days = self.get_argument("days", str(default))
        if not days.isdigit() or not 1 <= int(days) <= 366:
            raise OperationError(f"days: {days!r} is not a number of days from 1 to 366", "days")
        return int(days)


class MeHandler(ApiHandler):
    def get(self):
        roles = self.ops.registry.roles_of(self.actor)
        self.finish(
            {"user": self.actor, "roles": roles, "admin_sites": self.ops.admin_sites(self.actor)}
        )


class ApprovalsHandler(ApiHandler):
    def get(self, approval_id: str | None = None):
        self.ops.require_secretariat(self.actor)
        if approval_id:
            self.finish(self.ops.approval_state(approval_id))
        else:
            self.finish({"approvals": self.ops.approvals_state()})


class ApprovalActionHandler(ApiHandler):
    async def post(self, approval_id: str, action: str):
        body = self.body()
        if action == "extend":
            out = self.ops.extend(
                self.actor, approval_id=approval_id, end=body.get("end"), reason=body.get("reason")
            )
            result = out.to_json()
        else:
            out = self.ops.revoke(self.actor, approval_id=approval_id, reason=body.get("reason"))
            result = out.to_json()
            result["enforcement"] = await self.backend.enforce_after(out)
        self.finish(result)


class SuspensionsHandler(ApiHandler):
    def get(self):
        self.ops.require_secretariat(self.actor)
        now = self.ops.clock.now()
        self.finish(
            {
                "suspensions": [
                    s.to_json() | {"active": s.active_at(now)}
                    for s in self.ops.registry.suspensions()
                ]
            }
        )


class SuspendHandler(ApiHandler):
    async def post(self):
        body = self.body()
        t0 = time.monotonic()
        out = self.ops.suspend(
            self.actor,
            user=body.get("user"),
            institution=body.get("institution"),
            reason=body.get("reason"),
            ban_until=body.get("ban_until"),
            ban_indefinite=body.get("ban_indefinite", False),
        )
        result = out.to_json()
        result["enforcement"] = await self.backend.enforce_after(out)
        result["seconds"] = round(time.monotonic() - t0, 3)
        self.finish(result)


class EgressHandler(ApiHandler):
    def get(self):
        self.ops.require_secretariat(self.actor)
        since = egress_since(self.ops.clock.now(), self.days(EGRESS_DAYS))
        self.finish({"since": since.isoformat(), "egress": egress_alerts(self.ops.audit, since)})


class QueryAuditHandler(ApiHandler):
    def get(self):
        self.ops.require_secretariat(self.actor)
        days = self.days(QUERY_AUDIT_DAYS)
        since = days_since(self.ops.clock.now(), days)
        self.finish(
            {
                "since": since.isoformat(),
                "days": days,
                "approvals": query_audit_section(self.ops, since),
            }
        )


class QueryAuditResetHandler(ApiHandler):
    def post(self, approval_id: str):
        body = self.body()
        out = self.ops.reset_query_audit(
            self.actor, approval_id=approval_id, reason=body.get("reason")
        )
        self.finish(out.to_json())


class ReinstateHandler(ApiHandler):
    def post(self):
        body = self.body()
        out = self.ops.reinstate(self.actor, user=body.get("user"), reason=body.get("reason"))
        self.finish(out.to_json())


class ServicesHandler(ApiHandler):
    async def get(self):
        roles = self.ops.registry.roles_of(self.actor)
        if SECRETARIAT not in roles and not self.ops.admin_sites(self.actor):
            raise OperationError(
                f"{self.actor} is neither secretariat nor a site admin", field=None, status=403
            )
        services = await self.backend.services_status()
        answer = {"services": services, "enforcer_up": enforcer_up(services)}
        if not answer["enforcer_up"]:
            answer["warning"] = message("admin.enforcer_down").to_json()
        self.finish(answer)


def enforcer_up(services: list[dict]) -> bool:
    """False when the enforcer is configured and does not answer (no enforcer: nothing to warn of)."""
    return all(s["up"] for s in services if s["name"] == "enforcer")


class SiteHandler(ApiHandler):
    def get(self, site: str):
        self.ops.require_site_admin(self.actor, site)
        self.finish(
            self.ops.registry.site_settings(site)
            | {"approval_quotas": self.ops.registry.approval_quotas(site)}
        )


class SiteImagesHandler(ApiHandler):
    def post(self, site: str, retire: str | None = None):
        body = self.body()
        action = self.ops.retire_image if retire else self.ops.add_image
        out = action(self.actor, site=site, image=body.get("image"), reason=body.get("reason"))
        self.finish(out.to_json())


class SiteQuotaHandler(ApiHandler):
    def post(self, site: str, approval_id: str | None = None):
        body = self.body()
        if approval_id:
            out = self.ops.set_approval_quota(
                self.actor,
                site=site,
                approval_id=approval_id,
                quota=body.get("quota"),
                reason=body.get("reason"),
            )
        else:
            out = self.ops.set_site_quota(
                self.actor, site=site, quota=body.get("quota"), reason=body.get("reason")
            )
        self.finish(out.to_json())

    put = post


class SiteServersHandler(ApiHandler):
    async def get(self, site: str):
        self.ops.require_site_admin(self.actor, site)
        self.finish({"site": site, "servers": await self.backend.servers_at(site)})


class StopServerHandler(ApiHandler):
    async def post(self, site: str, user: str):
        reason = self.body().get("reason")
        self.finish(await self.backend.stop_server(self.actor, site, user, reason))


# -- the page -------------------------------------------------------------------

FORMS = {
    # form name -> (operation, fields taken from the form)
    "suspend": ("suspend", ("user", "institution", "reason", "ban_until", "ban_indefinite")),
    "reinstate": ("reinstate", ("user", "reason")),
    "extend": ("extend", ("approval_id", "end", "reason")),
    "revoke": ("revoke", ("approval_id", "reason")),
    "reset-query-audit": ("reset_query_audit", ("approval_id", "reason")),
    "add-image": ("add_image", ("site", "image", "reason")),
    "retire-image": ("retire_image", ("site", "image", "reason")),
    "site-quota": ("set_site_quota", ("site", "quota.cpu", "quota.memory", "quota.home", "reason")),
    "approval-quota": (
        "set_approval_quota",
        ("site", "approval_id", "quota.cpu", "quota.memory", "quota.home", "reason"),
    ),
    "stop-server": (None, ("site", "user", "reason")),
}


def jst_time(instant: str | None) -> str:
    """An ISO instant as Japan time to the second, for the page; '—' for none."""
    if not instant:
        return "—"
    return datetime.fromisoformat(instant).astimezone(JST).strftime("%Y-%m-%d %H:%M:%S JST")


class PageHandler(BaseHandler):
    """The admin page: what the person's roles let them see and do, ja/en."""

    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"])
    )
    env.filters["jst"] = jst_time
    env.filters["mib"] = mib
    env.filters["audit_rule"] = audit_rule
    env.globals["text"] = message

    async def context(self) -> dict:
        roles = self.ops.registry.roles_of(self.actor)
        ctx = {
            "user": self.actor,
            "roles": roles,
            "platform": self.ops.platform,
            "prefix": self.backend.prefix,
            "xsrf": Markup(self.xsrf_form_html()),
            "flash": self.get_argument("done", ""),
            "secretariat": SECRETARIAT in roles,
            "today": jst_date(self.ops.clock.now()).isoformat(),
            "fiscal_year": fiscal_year_of(self.ops.clock.now()),
            "sites": [],
            "services": None,
        }
        if ctx["secretariat"] or self.ops.admin_sites(self.actor):
            ctx["services"] = await self.backend.services_status()
            ctx["enforcer_up"] = enforcer_up(ctx["services"])
        if ctx["secretariat"]:
            ctx["approvals"] = self.ops.approvals_state()
            now = self.ops.clock.now()
            ctx["suspensions"] = [
                s.to_json() | {"active": s.active_at(now)} for s in self.ops.registry.suspensions()
            ]
            ctx["institutions"] = self.ops.registry.institutions()
            ctx["egress_days"] = EGRESS_DAYS
            ctx["egress"] = egress_alerts(self.ops.audit, egress_since(now, EGRESS_DAYS))
            ctx["query_audit_days"] = QUERY_AUDIT_DAYS
            ctx["query_audit"] = query_audit_section(self.ops, days_since(now, QUERY_AUDIT_DAYS))
        for site in self.ops.admin_sites(self.actor):
            settings = self.ops.registry.site_settings(site)
            try:
                servers = await self.backend.servers_at(site)
            except Exception as e:
                log.warning("cannot list servers at %s: %s", site, e)
                servers = None
            ctx["sites"].append(
                {
                    "id": site,
                    "name": self.ops.platform.sites[site].name,
                    "name_ja": self.ops.platform.sites[site].name_ja,
                    "settings": settings,
                    "approval_quotas": self.ops.registry.approval_quotas(site),
                    "approvals": [
                        a.approval_id for a in self.ops.registry.approvals() if site in a.sites
                    ],
                    "servers": servers,
                }
            )
        return ctx

    async def render_page(self, status: int = 200, form: str = "", errors=None, values=None):
        ctx = await self.context()
        ctx.update(form=form, errors=errors or {}, values=values or {})
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(self.env.get_template("admin.html").render(**ctx))

    @web.authenticated
    async def get(self):
        await self.render_page()

    @web.authenticated
    async def post(self, name: str):
        if name not in FORMS:
            raise web.HTTPError(404, "no such form")
        op, fields = FORMS[name]
        values = {f: self.get_body_argument(f, "") for f in fields}
        kwargs: dict = {}
        quota = {}
        for f, v in values.items():
            if f.startswith("quota."):
                quota[f.split(".", 1)[1]] = v
            else:
                kwargs[f] = v
        if quota:
            kwargs["quota"] = quota
        if name == "suspend":
            kwargs["ban_indefinite"] = values.get("ban_indefinite") == "on"
            kwargs = {
                k: (v or None) if k in ("user", "institution") else v for k, v in kwargs.items()
            }
        try:
            if name == "stop-server":
                await self.backend.stop_server(
                    self.actor, kwargs["site"], kwargs["user"], kwargs["reason"]
                )
                message = f"stop-server {kwargs['user']}@{kwargs['site']}"
            else:
                out = getattr(self.ops, op)(self.actor, **kwargs)
                if name in ("suspend", "revoke"):
                    await self.backend.enforce_after(out)
                message = f"{name}: {'done' if out.changed else 'no change'}"
        except OperationError as e:
            if e.status == 403:
                raise web.HTTPError(403, "%s", e.message) from None
            field = e.field or "_form"
            await self.render_page(400, form=name, errors={field: e.message}, values=values)
            return
        self.redirect(self.request.path.rsplit("do/", 1)[0] + "?" + urlencode({"done": message}))


class ReportHandler(BaseHandler):
    """GET report?fiscal_year=2026&approval=ID|institution=NAME&final=1&lang=ja&format=pdf:
    the data-usage report (see hub/report), for the secretariat, from the page or a token."""

    TYPES = {
        "html": "text/html; charset=UTF-8",
        "pdf": "application/pdf",
        "csv": "text/csv; charset=UTF-8",
        "json": "application/json; charset=UTF-8",
    }

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None))[1]
        message = getattr(exc, "message", None) or (
            exc.log_message if isinstance(exc, web.HTTPError) and exc.log_message else self._reason
        )
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        self.finish(f"{status_code}: {message}\n")

    @web.authenticated
    async def get(self):
        from hub.report import ReportError, ReportRequest, build_report
        from hub.report import render as report_render

        try:
            self.ops.require_secretariat(self.actor)
        except OperationError as e:
            raise web.HTTPError(403, "%s", e.message) from None
        fmt = self.get_argument("format", "html")
        if fmt not in self.TYPES:
            raise web.HTTPError(400, "format: one of %s", ", ".join(self.TYPES))
        year = self.get_argument("fiscal_year", "")
        if year and not (year.isdigit() and 2000 <= int(year) <= 2100):
            raise web.HTTPError(400, "fiscal_year: %r is not a year like 2026", year)
        request = ReportRequest(
            fiscal_year=int(year) if year else None,
            approval_id=self.get_argument("approval", "") or None,
            institution=self.get_argument("institution", "") or None,
            final=self.get_argument("final", "") in ("1", "on", "true"),
            lang=self.get_argument("lang", "ja"),
        )
        render = getattr(report_render, f"render_{fmt}")

        def produce():
            request.check()
            doc = build_report(self.ops.registry, self.ops.audit, request, self.ops.clock)
            return report_render.file_stem(doc), render(doc)

        try:
            stem, body = await asyncio.get_running_loop().run_in_executor(
                self.backend.pool, produce
            )
        except ReportError as e:
            raise web.HTTPError(400, "%s", str(e)) from None
        self.set_header("Content-Type", self.TYPES[fmt])
        if fmt != "html":
            self.set_header("Content-Disposition", f'attachment; filename="{stem}.{fmt}"')
        self.finish(body)


def make_app(backend: Backend, prefix: str, cookie_secret: bytes) -> web.Application:
    prefix = "/" + prefix.strip("/") + "/"
    args = {"backend": backend}
    api = prefix + "api/"
    routes = [
        (api + "me", MeHandler, args),
        (api + "approvals", ApprovalsHandler, args),
        (api + r"approvals/([^/]+)", ApprovalsHandler, args),
        (api + r"approvals/([^/]+)/(extend|revoke)", ApprovalActionHandler, args),
        (api + r"approvals/([^/]+)/query-audit/reset", QueryAuditResetHandler, args),
        (api + "suspensions", SuspensionsHandler, args),
        (api + "suspend", SuspendHandler, args),
        (api + "reinstate", ReinstateHandler, args),
        (api + "services", ServicesHandler, args),
        (api + "egress", EgressHandler, args),
        (api + "query-audit", QueryAuditHandler, args),
        (api + r"sites/([^/]+)", SiteHandler, args),
        (api + r"sites/([^/]+)/images(/retire)?", SiteImagesHandler, args),
        (api + r"sites/([^/]+)/quota", SiteQuotaHandler, args),
        (api + r"sites/([^/]+)/approvals/([^/]+)/quota", SiteQuotaHandler, args),
        (api + r"sites/([^/]+)/servers", SiteServersHandler, args),
        (api + r"sites/([^/]+)/servers/([^/]+)/stop", StopServerHandler, args),
        (prefix + "report", ReportHandler, args),
        health_route(prefix),
        (prefix + "oauth_callback", HubOAuthCallbackHandler),
        (prefix + r"do/([a-z-]+)", PageHandler, args),
        (prefix + "?", PageHandler, args),
    ]
    return web.Application(routes, cookie_secret=cookie_secret, xsrf_cookies=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, help="port (default: from JUPYTERHUB_SERVICE_URL)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[admin %(levelname)s %(asctime)s] %(message)s")
    follow_the_hub()
    platform = load_platform(os.environ.get(PLATFORM_ENV, REPO_ROOT / "policies" / "demo"))
    clock = clock_from_env()
    registry = ApprovalRegistry(platform.database_url, clock=clock)
    audit = AuditStore(platform.database_url, clock=clock)
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/admin/")
    backend = Backend(
        Operations(registry, audit, platform, clock),
        os.environ["JUPYTERHUB_API_URL"],
        os.environ["JUPYTERHUB_API_TOKEN"],
        os.environ.get("VISITING_ENFORCER_URL"),
        prefix,
        service_health=json.loads(os.environ.get("VISITING_SERVICE_HEALTH") or "{}"),
        state_dir=Path(os.environ["VISITING_STATE_DIR"])
        if os.environ.get("VISITING_STATE_DIR")
        else None,
    )
    backend.ops.image_present = backend.image_present
    # a revoked or expired token stops working here within a second (0 would mean "forever")
    # (the one instance the page, the API and the OAuth callback share)
    HubOAuth.instance(cache_max_age=1)
    url = os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8084")
    port = args.port or service_port(url)
    app = make_app(backend, prefix, os.urandom(32))
    app.listen(port, address="127.0.0.1", xheaders=True)
    log.info("admin service on 127.0.0.1:%d%s", port, prefix)
    try:
        ioloop.IOLoop.current().start()
    except KeyboardInterrupt:  # the hub stops its services with SIGINT (SIGTERM: _base)
        log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
