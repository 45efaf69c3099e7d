"""`Gateway`: the decisions, independent of HTTP (who, which approval, which task, then
run it and record it), and the reader of missing calls for the per-variant rule."""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import numpy as np
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from extensions.contracts.clock import Clock
from extensions.contracts.datasets import engine_ready, is_analysis_dataset
from extensions.contracts.events import FEDERATION_QUERY

from .models import Caller, GatewayConfig, GatewayRefusal, log


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
