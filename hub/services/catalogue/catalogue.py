"""The catalogue's model: who may read it, the filters of a count, the sites' answers
(asked through their gateways, kept a few minutes), the pooled table, and the audit event
of every count. Independent of HTTP."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from dataclasses import dataclass, field

from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from extensions.contracts.clock import Clock
from extensions.contracts.events import CATALOGUE_QUERY, QUERY_SET_AUDIT
from hub.platform.messages import message
from hub.platform.policy import CatalogueEntry, Platform
from hub.services.catalogue.answers import (
    GATEWAY_ERROR,
    SITE_DOWN,
    NoAnswer,
    SiteAnswer,
    gateway_body,
    no_answer,
)
from hub.store.audit import AuditStore
from hub.store.registry import ApprovalRegistry

log = logging.getLogger("visiting.catalogue")

CACHE_SECONDS = 300
SITE_DOWN_SECONDS = 15
GATEWAY_TIMEOUT = 120
ON_BEHALF_HEADER = "X-Visiting-On-Behalf-Of"
#: a gateway's refusals shown as a withheld count with the gateway's message: too few people,
#: or the asker's earlier counts together with this one would single someone out
WITHHELD_CODES = ("small_query", QUERY_SET_AUDIT)

#: the filters a count may take, as the page and the API name them
FILTERS = ("sex", "age_band", "region", "icd10")
#: the attributes a table of counts may be broken down by
BY = ("sex", "age_band", "region", "disease_name")


class CatalogueError(web.HTTPError):
    """A refusal the caller reads; `field` names the bad parameter."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(status, message.replace("%", "%%"))
        self.message = message
        self.field = field


@dataclass
class Catalogue:
    """The decisions and the sites' answers, independent of HTTP."""

    platform: Platform
    entries: dict[str, CatalogueEntry]
    registry: ApprovalRegistry
    audit: AuditStore | None
    hub_url: str  # where the gateways are reached: <hub_url>/services/gateway-<site>/
    token: str  # the catalogue's own service token
    clock: Clock
    cache_seconds: float = CACHE_SECONDS
    site_down_seconds: float = SITE_DOWN_SECONDS
    _cache: dict = field(default_factory=dict)
    _down: dict = field(default_factory=dict)  # site -> (monotonic time, NoAnswer)

    def __post_init__(self):
        self.http = AsyncHTTPClient()

    # -- who -----------------------------------------------------------------------

    def admit(self, user: str) -> set[str]:
        """The datasets `user` is approved for now; refused without any active approval."""
        active = self.registry.active_approvals(user, self.clock.now())
        if not active:
            raise CatalogueError(403, str(message("catalogue.not_admitted")))
        return {d for a in active for d in a.datasets}

    # -- parameters ------------------------------------------------------------------

    @staticmethod
    def parse(args: dict[str, list[str]]) -> tuple[dict, str | None]:
        """(where, by) from query arguments; CatalogueError naming a bad one."""
        from extensions.federation.cohorts import validate_where
        from extensions.federation.tasks.base import TaskError

        unknown = sorted(set(args) - set(FILTERS) - {"by"})
        if unknown:
            raise CatalogueError(
                400,
                f"{unknown[0]}: not a filter here (filters: {', '.join(FILTERS)}; by)",
                unknown[0],
            )
        where = {}
        for key in FILTERS:
            values = [v.strip() for v in args.get(key, []) if v.strip()]
            if values:
                where[key] = values
        try:
            checked = validate_where(where, field="filter")
        except TaskError as e:
            name = (e.field or "").removeprefix("filter.") or None
            raise CatalogueError(400, e.message.replace("filter.", ""), name) from None
        by = (args.get("by") or [""])[-1].strip() or None
        if by is not None and by not in BY:
            raise CatalogueError(400, f"by: {by!r} is not one of {', '.join(BY)}", "by")
        return {k: list(v) for k, v in checked.items()}, by

    # -- the sites ---------------------------------------------------------------------

    def analysis_datasets(self) -> list[CatalogueEntry]:
        return [e for e in self.entries.values() if e.kind == "analysis"]

    async def ask(self, entry: CatalogueEntry, params: dict, user: str) -> SiteAnswer:
        """One site's counts for `params` (cohort_counts), from the cache when fresh."""
        from extensions.federation.tasks.base import SiteHalf

        # per person: each answer is checked against the asker's own query-set audit
        key = (user, entry.site, entry.dataset, json.dumps(params, sort_keys=True))
        hit = self._cache.get(key)
        if hit and time.monotonic() - hit[0] < self.cache_seconds:
            return hit[1]
        down = self._down.get(entry.site)
        if down and time.monotonic() - down[0] < self.site_down_seconds:
            return SiteAnswer(
                entry.site, entry.dataset, "unavailable", message=down[1].cause, why=down[1]
            )
        url = f"{self.hub_url.rstrip('/')}/services/gateway-{entry.site}/api/tasks/cohort_counts"
        req = HTTPRequest(
            url,
            method="POST",
            body=json.dumps({"dataset": entry.dataset, "params": params, "engine": "dask"}),
            headers={
                "Authorization": f"token {self.token}",
                "Content-Type": "application/json",
                ON_BEHALF_HEADER: user,
            },
            request_timeout=GATEWAY_TIMEOUT,
        )
        try:
            resp = await self.http.fetch(req)
        except HTTPClientError as e:
            body = gateway_body(e.response.body if e.response is not None else None)
            if body is not None and body.get("code") in WITHHELD_CODES:
                answer = SiteAnswer(entry.site, entry.dataset, "withheld", message=body["message"])
            else:
                error = f"HTTP {e.code}: {e.message}" if e.code != 599 else e.message
                return self.no_answer(entry, no_answer(e.code, body, error))
        except OSError as e:  # the hub's proxy itself did not answer
            return self.no_answer(entry, no_answer(None, None, str(e) or type(e).__name__))
        else:
            half = SiteHalf.from_json(json.loads(resp.body))
            n = int(half.counts.get("n_selected", 0))
            answer = SiteAnswer(entry.site, entry.dataset, "answered", n=n, half=half)
        self._cache[key] = (time.monotonic(), answer)
        return answer

    def no_answer(self, entry: CatalogueEntry, why: NoAnswer) -> SiteAnswer:
        """A site's no-answer, logged with its cause; a site found down is remembered for
        `site_down_seconds`."""
        code = f" [{why.code}]" if why.code else ""
        level = logging.ERROR if why.reason == GATEWAY_ERROR else logging.WARNING
        log.log(
            level,
            "site %s gave no count for %s: %s%s: %s",
            entry.site,
            entry.dataset,
            why.reason.replace("_", " "),
            code,
            why.cause,
        )
        if why.reason == SITE_DOWN:
            self._down[entry.site] = (time.monotonic(), why)
        else:
            self._down.pop(entry.site, None)
        return SiteAnswer(entry.site, entry.dataset, "unavailable", message=why.cause, why=why)

    async def counts(self, user: str, where: dict, by: str | None) -> dict:
        """The people `where` selects at every site, pooled, and a table by `by` (for `user`,
        admitted by the caller)."""
        from extensions.federation.tasks.cohort_counts import CohortCounts

        task = CohortCounts()
        params = task.validate({"by": by or "sex", "where": where})
        entries = self.analysis_datasets()
        answers = await asyncio.gather(*(self.ask(e, params, user) for e in entries))
        answered = [a for a in answers if a.status == "answered"]
        table, suppressions = [], []
        if answered:
            df = task.combine([a.half for a in answered], params, None).result
            for row in df.to_dict(orient="records"):
                table.append({k: _json_number(v) for k, v in row.items()})
            suppressions = json.loads(df.attrs.get("suppressions", "[]"))
        doc = {
            "filters": where,
            "by": by or "sex",
            "rule": {"min_cell_count": self.platform.disclosure.min_cell_count},
            "sites": [a.to_json() for a in answers],
            "total": {
                "n": sum(a.n for a in answered),
                "complete": len(answered) == len(answers),
                "withheld_sites": sorted(a.site for a in answers if a.status == "withheld"),
                "unavailable_sites": sorted(a.site for a in answers if a.status == "unavailable"),
            },
            "table": table,
            "suppressions": suppressions,
        }
        self.record(user, where, by, answers)
        return doc

    async def datasets(self, user: str, approved: set[str]) -> list[dict]:
        """Every dataset with its metadata, whether it is among the `approved` datasets of
        `user` (from `admit`), and the people at its site."""
        from extensions.federation.tasks.cohort_counts import CohortCounts

        params = CohortCounts().validate({"by": "sex"})
        answers = await asyncio.gather(
            *(self.ask(e, params, user) for e in self.analysis_datasets())
        )
        everyone = {a.dataset: a for a in answers}
        out = []
        for e in self.entries.values():
            site = self.platform.sites[e.site]
            a = everyone.get(e.dataset)
            out.append(
                {
                    **e.to_json(),
                    "site_name": site.name,
                    "site_name_ja": site.name_ja,
                    "approved": e.dataset in approved,
                    "people": a.n if a else None,
                    "people_status": a.status if a else "not counted (raw data)",
                    "people_reason": a.why.reason if a and a.why else None,
                    "people_label": str(a.label) if a and a.why else None,
                    "people_note": str(a.text) if a and a.why else None,
                }
            )
        return out

    async def attributes(self, user: str) -> dict:
        """The levels to filter on: sexes, age bands, regions, and diseases with their codes."""
        from extensions.federation.cohorts import REGIONS, SEXES
        from extensions.federation.tasks.cohort_counts import CohortCounts

        levels: dict[str, set] = {"age_band": set(), "disease": set()}
        for attribute in ("age_band", "disease_name"):
            params = CohortCounts().validate({"by": attribute})
            for a in await asyncio.gather(
                *(self.ask(e, params, user) for e in self.analysis_datasets())
            ):
                if a.status != "answered":
                    continue
                for t in a.half.meta["tables"]:
                    for lv in t["levels"]:
                        levels["age_band" if attribute == "age_band" else "disease"].add(tuple(lv))
        return {
            "sex": list(SEXES),
            "age_band": sorted(lv[0] for lv in levels["age_band"]),
            "region": list(REGIONS),
            "icd10": [
                {"code": code, "name": name}
                for name, code in sorted(levels["disease"], key=lambda t: (t[1], t[0]))
            ],
        }

    def record(self, user: str, where: dict, by: str | None, answers: list[SiteAnswer]) -> None:
        if self.audit is None:
            return
        event = {
            "event_id": uuid.uuid4().hex,
            "schema": CATALOGUE_QUERY,
            "version": 1,
            "user": user,
            "time": self.clock.now().isoformat(),
            "data": {
                "filters": where,
                "by": by,
                "answered": [a.site for a in answers if a.status == "answered"],
                "withheld": [a.site for a in answers if a.status == "withheld"],
                "unavailable": [a.site for a in answers if a.status == "unavailable"],
            },
        }
        try:
            self.audit.append([event])
        except Exception as e:  # the answer is not held back for the audit; it is logged
            log.error("audit event not stored: %s: %s", e, json.dumps(event))


def _json_number(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    if hasattr(v, "item"):
        v = v.item()
        if isinstance(v, float) and math.isnan(v):
            return None
    return v
