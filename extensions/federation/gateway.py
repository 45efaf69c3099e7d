"""The federation gateway of one site: allow-listed aggregate tasks, disclosure control, audit.

One gateway runs per site, registered with JupyterHub as the service
`gateway-<site>` (so the hub's proxy serves it at `/services/gateway-<site>/`)
and placed next to the site's data and Dask cluster. A request:

1. names its caller by the caller's own JupyterHub token (the hub's API says
   whose it is and what it may do; the token must allow access to this
   service) - no shared secret;
2. must hold an approval active now that covers the requested dataset here
   (the gateway asks the hub's audit service, which reads the registry; the
   registry never leaves the hub side). The one exception is a hub service
   named in VISITING_GATEWAY_SERVICES (default: the catalogue), which may ask
   for the counts of people (`cohort_counts`, under the same disclosure
   control) of any analysis dataset here, and nothing else; it names the
   person it asks for in the X-Visiting-On-Behalf-Of header, which the audit
   event records;
3. asks for a task on the allow-list, with parameters the task validates;
4. passes the query-set audit of the caller's approval on the dataset
   (`extensions.federation.audit_book`): the sets of people the answer would sum
   over are checked, before anything is computed, against every set the
   approval was answered on before; a query whose answer, added to or
   subtracted from earlier ones, would single out a person is refused (403,
   code "query_set_audit", naming the rule and the earlier queries by time
   and task). The catalogue's counts are audited per person it asks for (the
   person's approvals covering the dataset, or the person alone);
5. runs the task's per-site half on the site's engine (Dask or Hail), applies
   disclosure control at the site (and the audit's per-variant rule: variants
   at which this query and a near earlier one differ by the calls of too few
   people are withheld), records the sets in the audit (on disk, at the site)
   and only then returns aggregates;
6. is recorded as a `federation.query` event (user, approval, site, task,
   parameters, result size, suppressions) in the hub's audit store; refusals
   are recorded too, and so are failures.

A failure (a task or an import that raises) is the gateway's own error, not a
refusal: its exception and traceback go to the log (standard error: the hub's
log when the hub runs the gateway, the container's log at a site) under an
error id, and the caller gets a 500 naming the task, the exception's type and
that id (`code` "gateway_error"), never the exception's text, which may quote
the data.

Routes (under the service prefix):
    GET  api/datasets            the datasets here the caller may analyse, with versions
    POST api/tasks/<name>        {"dataset", "params", "state", "engine", "variants_known"}
                                 -> a SiteHalf: JSON, or the compact wire format
                                 (`extensions.federation.wire`) when the Accept header names
                                 it; without the variant keys when their digest is among
                                 `variants_known`. Errors are JSON.
    GET  health
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np
from tornado import ioloop, web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from extensions.contracts.clock import Clock, clock_from_env
from extensions.contracts.datasets import engine_ready, is_analysis_dataset
from extensions.contracts.environment import (
    AUDIT_URL,
    DISCLOSURE,
    GATEWAY_SERVICES,
    GATEWAY_TASKS,
    QUERY_AUDIT_DIR,
    SITE,
    SITE_DATA,
)
from extensions.contracts.events import FEDERATION_QUERY, QUERY_SET_AUDIT
from extensions.contracts.service import follow_the_hub, health_route, service_port

log = logging.getLogger("visiting.gateway")

#: a request's largest body: the later rounds of a logistic GWAS carry the fit of every variant
#: in `state` (about 40 bytes a variant per parameter, several MB at 100,000 variants)
MAX_BODY = 64 * 1024 * 1024

#: what a trusted hub service (the catalogue) may ask: counts of people, nothing else
SERVICE_TASKS = ("cohort_counts",)
ON_BEHALF_HEADER = "X-Visiting-On-Behalf-Of"
#: GatewayRefusal.code of a query the query-set audit refuses


class GatewayRefusal(web.HTTPError):
    """A refusal the caller reads: its message says what is wrong; it is audited.

    `code` is a machine-readable kind where one helps the caller ("small_query":
    the query selects fewer people than disclosure control allows;
    "query_set_audit": the approval's earlier answers and this one would single
    someone out); `details` go into the answer's JSON and the audit event."""

    def __init__(
        self, status: int, message: str, code: str | None = None, details: dict | None = None
    ):
        super().__init__(status, message.replace("%", "%%"))
        self.message = message
        self.code = code
        self.details = details or {}

    @classmethod
    def of_audit(cls, refused) -> GatewayRefusal:
        """The refusal of an `audit_book.AuditRefused`: the rule, the earlier queries, no people."""
        from extensions.federation.audit_book import refusal_text_ja

        v = refused.verdict
        details = {
            "audit": {
                "rule": v.rule,
                "scope": refused.scope.key,
                "collides_with": [m.to_json() for m in v.collides_with],
            }
        }
        return cls(403, f"{v.message} / {refusal_text_ja(v)}", QUERY_SET_AUDIT, details)


@dataclass(frozen=True)
class Caller:
    """Who asks: a person (kind "user") or a trusted hub service (kind "service")."""

    name: str
    kind: str

    @property
    def is_service(self) -> bool:
        return self.kind == "service"


@dataclass
class GatewayConfig:
    site: str
    data_root: Path  # the site's datasets: <data_root>/<dataset>/
    hub_api_url: str
    token: str  # the gateway's own service token
    audit_url: str | None  # the hub's audit intake (…/services/audit/)
    scheduler: str | None  # the site's Dask scheduler; None: computed in-process
    allowed_tasks: tuple[str, ...]  # "*": every task the package holds
    engines: tuple[str, ...] = ("dask", "hail")
    services: tuple[str, ...] = ("catalogue",)  # hub services that may ask SERVICE_TASKS
    audit_dir: Path | None = None  # the query-set audits' histories (None: memory only)

    @property
    def service_name(self) -> str:
        return f"gateway-{self.site}"


class Gateway:
    """The decisions, independent of HTTP: who, which approval, which task, then run it."""

    def __init__(self, config: GatewayConfig, rules, clock: Clock):
        self.config = config
        self.rules = rules
        self.clock = clock
        self.http = AsyncHTTPClient()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="task")
        self._dask_client = None
        from extensions.federation.audit_book import AuditBook
        from extensions.federation.wire import DigestCache

        self.book = AuditBook(config.audit_dir, rules.min_cell_count)
        #: (dataset, engine) -> (stamp, cohort): an open cohort keeps its tables, caches and
        #: variant keys between queries while the dataset's files are unchanged
        self._cohorts: dict[tuple[str, str], tuple[tuple, object]] = {}
        self._cohorts_lock = threading.Lock()
        #: the digests of the variant lists answered lately (the compact wire format)
        self.digests = DigestCache()

    # -- who ---------------------------------------------------------------------

    async def caller(self, token: str) -> Caller:
        """Whose token this is; refused unless it may use this service."""
        req = HTTPRequest(
            self.config.hub_api_url.rstrip("/") + "/user",
            headers={"Authorization": f"token {token}"},
            request_timeout=20,
        )
        try:
            resp = await self.http.fetch(req)
        except HTTPClientError as e:
            if e.code in (401, 403):
                raise GatewayRefusal(403, "the hub does not know this token") from None
            raise GatewayRefusal(502, f"the hub did not answer ({e.code})") from None
        except OSError as e:
            raise GatewayRefusal(502, f"the hub did not answer ({e})") from None
        model = json.loads(resp.body)
        kind = model.get("kind")
        if kind == "service" and model.get("name") in self.config.services:
            pass  # a trusted hub service: counts only (see TaskHandler)
        elif kind != "user":
            raise GatewayRefusal(403, "only a person's own token may query a site")
        scopes = set(model.get("scopes", []))
        wanted = {"access:services", f"access:services!service={self.config.service_name}"}
        if not scopes & wanted:
            raise GatewayRefusal(
                403, f"this token may not use the service {self.config.service_name}"
            )
        return Caller(model["name"], kind)

    async def approvals(self, user: str) -> list[dict]:
        """The caller's approvals active now at this site, from the hub's audit service.

        The registry stays on the hub side; the gateway asks with its own token and
        is told only about its own site.
        """
        if not self.config.audit_url:
            raise GatewayRefusal(503, "this gateway has no way to check approvals")
        req = HTTPRequest(
            f"{self.config.audit_url.rstrip('/')}/api/approvals/{quote(user)}",
            headers={"Authorization": f"token {self.config.token}"},
            request_timeout=20,
        )
        try:
            resp = await self.http.fetch(req)
        except HTTPClientError as e:
            raise GatewayRefusal(
                502, f"the hub did not say which approvals hold ({e.code})"
            ) from None
        except OSError as e:
            raise GatewayRefusal(502, f"the hub did not say which approvals hold ({e})") from None
        return json.loads(resp.body)["approvals"]

    async def approval_for(self, user: str, dataset: str) -> list[dict]:
        """The caller's approvals active now that cover `dataset` here (at least one)."""
        covering = [a for a in await self.approvals(user) if dataset in a["datasets"]]
        if covering:
            return covering
        raise GatewayRefusal(
            403,
            f"{user} holds no approval active now for dataset {dataset} at site {self.config.site}",
        )

    async def scopes_for(self, user: str, dataset: str, approvals: list[dict] | None = None):
        """The query-set audits a query of `user` on `dataset` goes through: each approval of
        theirs covering it here, or (a count the catalogue asks for) the person alone."""
        from extensions.federation.audit_book import Scope

        if approvals is None and self.config.audit_url:
            approvals = [a for a in await self.approvals(user) if dataset in a["datasets"]]
        if not approvals:
            return [Scope.person(user)]
        return [Scope(a["approval_id"], a.get("query_audit_reset")) for a in approvals]

    def analysis_datasets(self) -> list[dict]:
        """Every dataset here with analysis-ready data (what a trusted service may count)."""
        root = self.config.data_root
        folders = sorted(root.iterdir()) if root.is_dir() else []
        return [self._dataset_entry(f, None) for f in folders if is_analysis_dataset(f)]

    async def datasets(self, user: str) -> list[dict]:
        out, seen = [], set()
        for a in await self.approvals(user):
            for d in a["datasets"]:
                folder = self.config.data_root / d
                if d in seen or not is_analysis_dataset(folder):
                    continue
                seen.add(d)
                out.append(self._dataset_entry(folder, a["approval_id"]))
        return out

    def _dataset_entry(self, folder: Path, approval_id: str | None) -> dict:
        from extensions.federation.cohorts import dataset_version

        return {
            "dataset": folder.name,
            "approval_id": approval_id,
            "version": dataset_version(folder),
            "engines": [e for e in self.config.engines if engine_ready(folder, e)],
        }

    def task(self, name: str):
        from extensions.federation.tasks import TASKS

        allowed_here = (
            set(TASKS) if "*" in self.config.allowed_tasks else set(self.config.allowed_tasks)
        )
        if name not in allowed_here or name not in TASKS:
            allowed = ", ".join(sorted(allowed_here & set(TASKS)))
            raise GatewayRefusal(403, f"task {name!r} is not allowed here (allowed: {allowed})")
        return TASKS[name]()

    # -- run ---------------------------------------------------------------------

    def cohort(self, dataset: str, engine: str):
        """The dataset as a cohort on `engine`, opened once and kept while its files are
        unchanged (`cohorts.dataset_stamp`): a changed VCF, table or cache opens it anew."""
        from extensions.federation.cohorts import dataset_stamp, dataset_version, open_cohort

        folder = self.config.data_root / dataset
        stamp = dataset_stamp(folder)
        with self._cohorts_lock:
            held = self._cohorts.get((dataset, engine))
        if held is not None and held[0] == stamp:
            return held[1]
        cohort = open_cohort(folder, self.config.site, dataset, engine)
        cohort.version = dataset_version(folder)
        with self._cohorts_lock:
            self._cohorts[(dataset, engine)] = (stamp, cohort)
        return cohort

    def run(self, task, dataset: str, engine: str, params: dict, state: dict | None, scopes):
        """The audit's check, then the per-site half with disclosure control; in the task thread.

        Returns (half, held audits, plan, seconds by phase) for `Gateway.commit`; raises
        AuditRefused before anything is computed when the audit refuses.
        """
        from extensions.federation.audit_book import (
            as_positions,
            people_order,
            withhold_near_differences,
        )

        clock = time.perf_counter()
        seconds: dict[str, float] = {}

        def lap(phase: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            seconds[phase] = now - clock
            clock = now

        cohort = self.cohort(dataset, engine)
        if engine == "dask" and self.config.scheduler:
            self._ensure_dask_client()
        ids = cohort.samples.index
        lap("open")
        position, _ = people_order(ids)
        sets = as_positions(task.audited_sets(cohort, params, state, self.rules), position)
        held = self.book.open(scopes, dataset, ids)
        plan = self.book.check(held, sets)
        lap("audit")
        half = task.site_half(cohort, params, state)
        lap("half")
        half = task.disclose(half, self.rules)
        lap("disclose")
        if plan.near:
            if self.config.scheduler:
                self._ensure_dask_client()
            withhold_near_differences(
                half,
                task.variant_keys_of(half, cohort, state),
                task.per_variant_arrays(half),
                missing_calls(self.cohort(dataset, "dask")),
                plan.near,
                self.rules.min_cell_count,
            )
            lap("near")
        half.meta.setdefault("version", cohort.version)
        return half, held, plan, seconds

    def commit(self, held, plan, meta) -> None:
        """Record an answered query in its audits (on disk) before the answer leaves."""
        from extensions.federation.audit_book import AuditRefused

        try:
            self.book.record(held, plan, meta)
        except AuditRefused as e:
            raise GatewayRefusal.of_audit(e) from None

    def _ensure_dask_client(self):
        if self._dask_client is None:
            from distributed import Client

            self._dask_client = Client(self.config.scheduler, timeout="20s", set_as_default=True)
        return self._dask_client

    async def record(self, event_id: str | None = None, **data) -> None:
        """A federation.query event in the hub's audit store (best effort, logged otherwise)."""
        event = {
            "event_id": event_id or uuid.uuid4().hex,
            "user": data.pop("user"),
            "site": self.config.site,
            "approval_id": data.pop("approval_id", None),
            "time": self.clock.now().isoformat(),
            "schema": FEDERATION_QUERY,
            "version": 1,
            "data": data,
        }
        event = {k: v for k, v in event.items() if v is not None}
        if not self.config.audit_url:
            log.info("audit (no intake configured): %s", json.dumps(event))
            return
        req = HTTPRequest(
            self.config.audit_url.rstrip("/") + "/api/events",
            method="POST",
            body=json.dumps({"events": [event]}),
            headers={
                "Authorization": f"token {self.config.token}",
                "Content-Type": "application/json",
            },
            request_timeout=20,
        )
        try:
            await self.http.fetch(req)
        except Exception as e:  # the answer is not held back for the audit; it is logged
            log.error("audit event not delivered: %s: %s", e, json.dumps(event))


def missing_calls(cohort):
    """missing_of(keys, people) for the per-variant rule: whether each of `people` (positions
    in sorted sample-id order) has no call at each variant of `keys`, read from the dataset's
    Zarr store (`cohort`: its Dask cohort, kept open by the gateway; the same calls as the
    MatrixTable), a few columns only."""

    def missing_of(keys: list[str], people) -> np.ndarray:
        ids = np.asarray(cohort.sample_ids, dtype=object)
        columns = np.argsort(ids, kind="stable")[np.asarray(people, dtype=np.int64)]
        index = {k: i for i, k in enumerate(cohort.variant_keys())}
        rows = np.asarray([index[k] for k in keys], dtype=np.int64)
        gt = cohort.ds["call_genotype"].data[rows][:, columns, :]
        return np.asarray((gt == -1).any(axis=2).compute())

    return missing_of


# ---------------------------------------------------------------------------
# HTTP


def new_error_id() -> str:
    """The id under which a failure is logged, and which the caller is told."""
    return uuid.uuid4().hex[:12]


class GatewayHandler(web.RequestHandler):
    #: what the request does, for the message of a failure ("the task cohort_counts")
    doing = "the request"
    #: the failure's id in the log, once something failed
    error_id: str | None = None

    def initialize(self, gateway: Gateway):
        self.gateway = gateway

    def log_exception(self, typ, value, tb):
        """A refusal is tornado's one line; anything else is a failure of the gateway,
        logged with its traceback and an error id."""
        if isinstance(value, web.HTTPError):
            return super().log_exception(typ, value, tb)
        self.error_id = self.error_id or new_error_id()
        log.error(
            "%s failed at site %s (error %s): %s: %s; request %s",
            self.doing,
            self.gateway.config.site,
            self.error_id,
            typ.__name__,
            value,
            self._request_summary(),
            exc_info=(typ, value, tb),
        )

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None))[1]
        if exc is not None and not isinstance(exc, web.HTTPError):
            body = {
                "status": status_code,
                "code": "gateway_error",
                "message": f"{self.doing} failed with {type(exc).__name__}; "
                f"error {self.error_id} in the gateway's log",
                "error_id": self.error_id,
            }
        else:
            body = {"status": status_code, "message": getattr(exc, "message", None) or self._reason}
            if getattr(exc, "code", None):
                body["code"] = exc.code
            body.update(getattr(exc, "details", None) or {})
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def token(self) -> str:
        scheme, _, token = self.request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() not in ("token", "bearer") or not token:
            raise GatewayRefusal(
                401, "an Authorization: token header with your own token is needed"
            )
        return token


class DatasetsHandler(GatewayHandler):
    doing = "listing the datasets"

    async def get(self):
        caller = await self.gateway.caller(self.token())
        if caller.is_service:
            datasets = self.gateway.analysis_datasets()
        else:
            datasets = await self.gateway.datasets(caller.name)
        self.finish({"site": self.gateway.config.site, "datasets": datasets})


class TaskHandler(GatewayHandler):
    async def post(self, name: str):
        g = self.gateway
        self.doing = f"the task {name}"
        caller = await g.caller(self.token())
        audit = {"user": caller.name, "task": name}
        on_behalf = ""
        if caller.is_service:
            audit["via"] = caller.name
            on_behalf = self.request.headers.get(ON_BEHALF_HEADER, "")[:64]
            if on_behalf:
                audit["on_behalf_of"] = on_behalf
        try:
            if len(self.request.body) > MAX_BODY:
                raise GatewayRefusal(413, f"the request is larger than {MAX_BODY} bytes")
            try:
                body = json.loads(self.request.body or b"{}")
            except ValueError as e:
                raise GatewayRefusal(400, f"the request is not JSON: {e}") from None
            if not isinstance(body, dict):
                raise GatewayRefusal(400, "the request must be a JSON object")
            dataset = body.get("dataset")
            if not isinstance(dataset, str) or not dataset:
                raise GatewayRefusal(400, "dataset: name one of the datasets at this site")
            audit["dataset"] = dataset
            if caller.is_service:
                if name not in SERVICE_TASKS:
                    raise GatewayRefusal(
                        403,
                        f"the service {caller.name} may ask only for "
                        f"{', '.join(SERVICE_TASKS)}, not {name!r}",
                    )
                if not is_analysis_dataset(g.config.data_root / dataset):
                    raise GatewayRefusal(
                        404, f"no analysis dataset {dataset} at site {g.config.site}"
                    )
                if not on_behalf:
                    raise GatewayRefusal(
                        400,
                        f"the service {caller.name} must name the person it asks for "
                        f"({ON_BEHALF_HEADER})",
                    )
                scopes = await g.scopes_for(on_behalf, dataset)
            else:
                approvals = await g.approval_for(caller.name, dataset)
                audit["approval_id"] = approvals[0]["approval_id"]
                scopes = await g.scopes_for(caller.name, dataset, approvals)
            task = g.task(name)
            engine = body.get("engine", "dask")
            if engine not in g.config.engines:
                raise GatewayRefusal(400, f"engine: one of {', '.join(g.config.engines)}")
            audit["engine"] = engine
            if not engine_ready(g.config.data_root / dataset, engine):
                raise GatewayRefusal(
                    400,
                    f"dataset {dataset} has no analysis-ready data for the {engine} engine "
                    f"at site {g.config.site}",
                )
            params = body.get("params") or {}
            if not isinstance(params, dict):
                raise GatewayRefusal(400, "params: must be an object")
            audit["parameters"] = params
            from extensions.federation import wire

            try:
                known = wire.known_digests(body.get("variants_known"))
            except ValueError as e:
                raise GatewayRefusal(400, str(e)) from None
            from extensions.federation.audit_book import AuditRefused
            from extensions.federation.query_audit import QueryMeta
            from extensions.federation.tasks.base import TaskError

            try:
                params = task.validate(params)
                state = body.get("state")
                loop = asyncio.get_running_loop()
                half, held, plan, seconds = await loop.run_in_executor(
                    g.pool, g.run, task, dataset, engine, params, state, scopes
                )
            except TaskError as e:
                raise GatewayRefusal(400, e.message, code=e.code) from None
            except AuditRefused as e:
                raise GatewayRefusal.of_audit(e) from None
            event_id = uuid.uuid4().hex
            t = time.perf_counter()
            g.commit(held, plan, QueryMeta.of(g.clock.now(), name, event_id))
            seconds["record"] = time.perf_counter() - t
        except GatewayRefusal as e:
            await g.record(
                **audit,
                outcome="refused",
                status=e.status_code,
                reason=e.message,
                **({"code": e.code} if e.code else {}),
                **e.details,
            )
            raise
        except Exception as e:  # logged with its traceback by log_exception
            self.error_id = new_error_id()
            await g.record(
                **audit,
                outcome="failed",
                status=500,
                error=type(e).__name__,
                error_id=self.error_id,
            )
            raise
        t = time.perf_counter()
        answer, media_type = self.encoded(half, known, (dataset, engine, half.meta.get("version")))
        seconds["encode"] = time.perf_counter() - t
        await g.record(
            event_id,
            **audit,
            outcome="answered",
            audit={"scope": ",".join(s.key for s in scopes), "sets": len(plan.sets)},
            result_bytes=half.nbytes(),
            wire_bytes=len(answer),
            suppressions=[s.to_json() for s in half.suppressed],
        )
        self.set_header("Content-Type", media_type)
        self.set_header("Vary", "Accept")
        # where the site's time went (W3C Server-Timing, milliseconds), for the client and tools
        self.set_header(
            "Server-Timing", ", ".join(f"{k};dur={v * 1000:.1f}" for k, v in seconds.items())
        )
        self.finish(answer)

    def encoded(self, half, known: set[str], slot) -> tuple[bytes, str]:
        """The answer's body and media type: the compact wire format when the caller accepts
        it and the half is not small, without the variant keys when the caller holds them
        (their digest is in `known`); JSON otherwise."""
        from extensions.federation import wire

        if wire.accepts_binary(self.request.headers.get("Accept")) and wire.worth_binary(half):
            digest = self.gateway.digests.digest(slot, half.variants)
            data = wire.encode_half(half, omit_variants=digest in known, digest=digest)
            return data, wire.MEDIA_TYPE
        return json.dumps(half.to_json()).encode(), wire.JSON_TYPE


def make_app(gateway: Gateway, prefix: str) -> web.Application:
    prefix = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
    args = {"gateway": gateway}
    return web.Application(
        [
            (prefix + "api/datasets", DatasetsHandler, args),
            (prefix + r"api/tasks/([a-z_]+)", TaskHandler, args),
            health_route(prefix),
        ]
    )


def config_from_env(environ=None) -> GatewayConfig:
    env = os.environ if environ is None else environ
    site = env[SITE]
    allowed = env.get(GATEWAY_TASKS, "*")
    return GatewayConfig(
        site=site,
        data_root=Path(env.get(SITE_DATA, "/data")),
        hub_api_url=env["JUPYTERHUB_API_URL"],
        token=env["JUPYTERHUB_API_TOKEN"],
        audit_url=env.get(AUDIT_URL) or None,
        scheduler=env.get("DASK_SCHEDULER_ADDRESS") or None,
        allowed_tasks=tuple(t.strip() for t in allowed.split(",") if t.strip()),
        services=tuple(
            t.strip() for t in env.get(GATEWAY_SERVICES, "catalogue").split(",") if t.strip()
        ),
        audit_dir=Path(env[QUERY_AUDIT_DIR]) if env.get(QUERY_AUDIT_DIR) else None,
    )


def disclosure_from_env(environ=None):
    """The platform's disclosure rules, from VISITING_DISCLOSURE (JSON); whoever starts the
    gateway sets it (`hub.sites.containers.gateway_env` in a site container, the hub's
    configuration beside the hub). A gateway without them does not start."""
    from extensions.federation.tasks.base import DisclosureRules

    env = os.environ if environ is None else environ
    if not env.get(DISCLOSURE):
        raise SystemExit(
            f"{DISCLOSURE} is not set: the gateway needs the platform's disclosure rules"
        )
    doc = json.loads(env[DISCLOSURE])
    return DisclosureRules(
        min_cell_count=int(doc["min_cell_count"]),
        min_minor_allele_count=int(doc["min_minor_allele_count"]),
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, help="port (default: from JUPYTERHUB_SERVICE_URL)")
    parser.add_argument("--ip", default="127.0.0.1", help="address to listen on")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="[gateway %(levelname)s %(asctime)s] %(message)s"
    )
    follow_the_hub()
    config = config_from_env()
    gateway = Gateway(config, disclosure_from_env(), clock_from_env())
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", f"/services/{config.service_name}/")
    url = os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8090")
    port = args.port or service_port(url)
    make_app(gateway, prefix).listen(port, address=args.ip, xheaders=True)
    log.info("gateway of site %s on %s:%d%s", config.site, args.ip, port, prefix)
    try:
        ioloop.IOLoop.current().start()
    except KeyboardInterrupt:  # the hub stops its services with SIGINT (SIGTERM: _base)
        log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
