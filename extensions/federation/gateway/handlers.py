"""The gateway's routes: the datasets a caller may analyse, and a task's per-site half."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass

from tornado import web

from extensions.contracts.datasets import engine_ready, is_analysis_dataset

from .decisions import Gateway
from .models import MAX_BODY, ON_BEHALF_HEADER, SERVICE_TASKS, Caller, GatewayRefusal, log


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


@dataclass
class Answer:
    """A task's per-site half, computed, disclosed and recorded in its audits, to send."""

    half: object  # a SiteHalf
    plan: object  # the audit book's plan: the sets the answer sums over
    scopes: list
    known: set[str]  # the digests of the variant lists the caller holds
    seconds: dict[str, float]  # where the site's time went, by phase
    event_id: str
    slot: tuple  # (dataset, engine, version): the digest cache's key of the variant list


class TaskHandler(GatewayHandler):
    """POST api/tasks/<name>: who asks, for what, then the answer; every outcome recorded."""

    async def post(self, name: str):
        g = self.gateway
        self.doing = f"the task {name}"
        caller = await g.caller(self.token())
        audit, on_behalf = self.audit_fields(caller, name)
        try:
            answer = await self.answer(name, caller, on_behalf, audit)
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
        await self.send(answer, audit)

    def audit_fields(self, caller: Caller, name: str) -> tuple[dict, str]:
        """The audit event's first fields, and the person a trusted service asks for ("")."""
        audit = {"user": caller.name, "task": name}
        on_behalf = ""
        if caller.is_service:
            audit["via"] = caller.name
            on_behalf = self.request.headers.get(ON_BEHALF_HEADER, "")[:64]
            if on_behalf:
                audit["on_behalf_of"] = on_behalf
        return audit, on_behalf

    async def answer(self, name: str, caller: Caller, on_behalf: str, audit: dict) -> Answer:
        """The request checked step by step (each step's refusal names what is wrong), then
        computed; `audit` gathers the event's fields on the way."""
        g = self.gateway
        body = self.body()
        dataset = body.get("dataset")
        if not isinstance(dataset, str) or not dataset:
            raise GatewayRefusal(400, "dataset: name one of the datasets at this site")
        audit["dataset"] = dataset
        scopes = await self.scopes(name, caller, on_behalf, dataset, audit)
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
        known = self.variants_known(body)
        half, plan, seconds, event_id = await self.computed(
            task, name, dataset, engine, params, body.get("state"), scopes
        )
        slot = (dataset, engine, half.meta.get("version"))
        return Answer(half, plan, scopes, known, seconds, event_id, slot)

    def body(self) -> dict:
        """The request's JSON object, within MAX_BODY."""
        if len(self.request.body) > MAX_BODY:
            raise GatewayRefusal(413, f"the request is larger than {MAX_BODY} bytes")
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError as e:
            raise GatewayRefusal(400, f"the request is not JSON: {e}") from None
        if not isinstance(body, dict):
            raise GatewayRefusal(400, "the request must be a JSON object")
        return body

    async def scopes(self, name: str, caller: Caller, on_behalf: str, dataset: str, audit: dict):
        """The query-set audits the query goes through: a trusted service's counts for the
        person it names, or the caller's approvals covering the dataset (at least one)."""
        g = self.gateway
        if caller.is_service:
            if name not in SERVICE_TASKS:
                raise GatewayRefusal(
                    403,
                    f"the service {caller.name} may ask only for "
                    f"{', '.join(SERVICE_TASKS)}, not {name!r}",
                )
            if not is_analysis_dataset(g.config.data_root / dataset):
                raise GatewayRefusal(404, f"no analysis dataset {dataset} at site {g.config.site}")
            if not on_behalf:
                raise GatewayRefusal(
                    400,
                    f"the service {caller.name} must name the person it asks for "
                    f"({ON_BEHALF_HEADER})",
                )
            return await g.scopes_for(on_behalf, dataset)
        approvals = await g.approval_for(caller.name, dataset)
        audit["approval_id"] = approvals[0]["approval_id"]
        return await g.scopes_for(caller.name, dataset, approvals)

    @staticmethod
    def variants_known(body: dict) -> set[str]:
        """The digests of the variant lists the caller holds (`variants_known`)."""
        from extensions.federation import wire

        try:
            return wire.known_digests(body.get("variants_known"))
        except ValueError as e:
            raise GatewayRefusal(400, str(e)) from None

    async def computed(self, task, name, dataset, engine, params, state, scopes):
        """(half, plan, seconds by phase, event id): the task run in the gateway's task
        thread, then recorded in its audits before the answer leaves."""
        from extensions.federation.audit_book import AuditRefused
        from extensions.federation.query_audit import QueryMeta
        from extensions.federation.tasks.base import TaskError

        g = self.gateway
        try:
            params = task.validate(params)
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
        return half, plan, seconds, event_id

    async def send(self, answer: Answer, audit: dict) -> None:
        """The answer encoded and recorded as answered, with where the site's time went."""
        half, seconds = answer.half, answer.seconds
        t = time.perf_counter()
        body, media_type = self.encoded(half, answer.known, answer.slot)
        seconds["encode"] = time.perf_counter() - t
        await self.gateway.record(
            answer.event_id,
            **audit,
            outcome="answered",
            audit={"scope": ",".join(s.key for s in answer.scopes), "sets": len(answer.plan.sets)},
            result_bytes=half.nbytes(),
            wire_bytes=len(body),
            suppressions=[s.to_json() for s in half.suppressed],
        )
        self.set_header("Content-Type", media_type)
        self.set_header("Vary", "Accept")
        # where the site's time went (W3C Server-Timing, milliseconds), for the client and tools
        self.set_header(
            "Server-Timing", ", ".join(f"{k};dur={v * 1000:.1f}" for k, v in seconds.items())
        )
        self.finish(body)

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
