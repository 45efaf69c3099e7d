"""The catalogue: datasets to plan a study with, and how many people each site holds.

A hub-managed service at /services/catalogue/, open to every person with an
approval active now (not only for the datasets they are approved for: the
catalogue is where a study is planned). It answers

    GET api/datasets            every dataset: JGA-style metadata (catalogue.yaml),
                                its site, whether the caller is approved for it,
                                and the number of people at its site
    GET api/attributes          the levels of the four clinical attributes and of
                                the disease codes, for filters
    GET api/counts?sex=female&age_band=40-49&region=Kanto&icd10=E11&by=age_band
                                the people the filters select, per site and pooled,
                                and a table by one attribute
    GET /                       the same as a page (Japanese and English)
    GET guide/ | guide/<page>   the user guide for data handlers (docs/researchers)

The counts come from the sites, never from a copy held here: the service
asks each site's federation gateway for `cohort_counts` with its own
service token (the gateways let the catalogue ask for counts of people and
nothing else), so every count has passed the site's disclosure control. A
site whose selection is smaller than the platform's minimum count answers
nothing, and the catalogue shows that site's count as withheld; a cell under
the minimum count is withheld at the site, and so is a count that the
person's earlier counts (through this page or their approvals' analyses)
would combine with to single someone out (the gateway's query-set audit,
code `query_set_audit`). Answers are kept for a few minutes (CACHE_SECONDS),
per person, so a page reload does not ask five sites again.
Each request for counts is recorded as a `catalogue-query` event.

A site that gives no count says why, on the page and in the API's `reason`
(see `no_answer`): its site is down (the hub's proxy cannot reach its gateway,
or the gateway does not answer in time), its gateway failed (a 5xx: the
gateway logs the exception and names it), or its gateway refused the query (a
4xx with the gateway's code and message). Each is logged here with the site
and the cause. A site found down is not asked again for SITE_DOWN_SECONDS, so
one page does not wait for a dead site once per table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import re
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler, HubOAuthenticated
from markupsafe import Markup
from tornado import ioloop, web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from extensions.contracts.clock import Clock, clock_from_env
from extensions.contracts.events import CATALOGUE_QUERY, QUERY_SET_AUDIT
from hub.platform.messages import Message, message
from hub.platform.policy import CatalogueEntry, Platform, load_catalogue, load_platform
from hub.platform.traits import PLATFORM_ENV, REPO_ROOT
from hub.services import service_port
from hub.services._base import follow_the_hub, health_route
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
TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
GUIDE_DIR = REPO_ROOT / "docs" / "researchers"

#: the filters a count may take, as the page and the API name them
FILTERS = ("sex", "age_band", "region", "icd10")
#: the attributes a table of counts may be broken down by
BY = ("sex", "age_band", "region", "disease_name")

#: why a site gave no count (SiteAnswer.reason)
SITE_DOWN = "site_down"  # the proxy cannot reach its gateway, or no answer in time
GATEWAY_ERROR = "gateway_error"  # the gateway answered 5xx: it failed
REFUSED = "refused"  # the gateway answered 4xx: not allowed, not there, a bad request
#: statuses with which the hub's proxy says it could not reach a service
PROXY_UNREACHABLE = (502, 503, 504)


class CatalogueError(web.HTTPError):
    """A refusal the caller reads; `field` names the bad parameter."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(status, message.replace("%", "%%"))
        self.message = message
        self.field = field


@dataclass(frozen=True)
class NoAnswer:
    """Why a site gave no count: SITE_DOWN, GATEWAY_ERROR or REFUSED, the cause (an error,
    or the gateway's own message) and the gateway's code when it gave one."""

    reason: str
    cause: str
    code: str | None = None


def no_answer(status: int | None, body: dict | None, error: str) -> NoAnswer:
    """Why a request to a gateway gave no count.

    `status` is the HTTP status (None or 599: no HTTP answer at all: refused
    connection, timeout), `body` the answer's JSON when it is the gateway's own
    (it holds `status` and `message`), `error` the client's description of the failure.
    Without the gateway's JSON the hub or its proxy answered: 502-504 (and 404, no
    route) mean the gateway could not be reached.
    """
    if status is None or status == 599:
        return NoAnswer(SITE_DOWN, error)
    if body is not None:
        cause = str(body.get("message") or f"HTTP {status}")
        code = body.get("code") or None
        return NoAnswer(REFUSED if status < 500 else GATEWAY_ERROR, cause, code)
    if status in PROXY_UNREACHABLE or status == 404:
        return NoAnswer(SITE_DOWN, f"the hub's proxy answered {error or f'HTTP {status}'}")
    return NoAnswer(REFUSED if status < 500 else GATEWAY_ERROR, error or f"HTTP {status}")


def gateway_body(raw: bytes | None) -> dict | None:
    """The gateway's JSON error (with `status` and `message`), or None for anything else
    (the hub's error page, an empty body)."""
    try:
        doc = json.loads(raw) if raw else None
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and "message" in doc and "status" in doc else None


@dataclass
class SiteAnswer:
    """What one site said about one selection: counts, withheld, or no answer and why."""

    site: str
    dataset: str
    status: str  # "answered", "withheld" (fewer people than the rule), "unavailable"
    n: int | None = None
    half: object | None = None  # the SiteHalf when answered
    message: str = ""
    why: NoAnswer | None = None  # when unavailable

    @property
    def label(self) -> Message | None:
        """A short text for a table cell: "no answer: site down"."""
        return message(f"catalogue.{self.why.reason}.label") if self.why else None

    @property
    def text(self) -> Message | None:
        """What happened, with the site and the cause."""
        if self.why is None:
            return None
        return message(f"catalogue.{self.why.reason}", site=self.site, cause=self.why.cause)

    def to_json(self) -> dict:
        return {
            "site": self.site,
            "dataset": self.dataset,
            "status": self.status,
            "n": self.n,
            "message": self.message,
            "reason": self.why.reason if self.why else None,
            "code": self.why.code if self.why else None,
            "label": self.label.to_json() if self.why else None,
            "text": self.text.to_json() if self.why else None,
        }


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


# ---------------------------------------------------------------------------
# the user guide (docs/researchers), rendered for the browser


def guide_page(name: str) -> tuple[str, str]:
    """(title, HTML) of one page of the user guide; CatalogueError 404 for an unknown one.

    The guide is docs/researchers/*.md; it links to the project's technical
    pages (docs/*.md, served here as `docs-<name>`) and the README (`readme`).
    """
    import mistune

    if not re.fullmatch(r"[a-z0-9-]*", name):
        raise CatalogueError(404, f"no guide page {name!r}")
    if name == "readme":
        path = REPO_ROOT / "README.md"
    elif name.startswith("docs-"):
        path = GUIDE_DIR.parent / f"{name.removeprefix('docs-')}.md"
    else:
        path = GUIDE_DIR / f"{name or 'README'}.md"
    if not path.is_file():
        raise CatalogueError(404, f"no guide page {name!r}")
    text = path.read_text(encoding="utf-8")
    # a tutorial is in the reader's own JupyterLab, under ~/tutorials
    text = re.sub(r"\[([^\]]+)\]\((?:\.\./)*notebooks/([^)]*)\)", r"\1 (`~/tutorials/\2`)", text)
    # links between pages work in the browser too
    text = re.sub(r"\]\((?:\.\./)+README\.md\)", "](readme)", text)
    text = re.sub(r"\]\(\.\./([a-z0-9-]+)\.md(#[^)]*)?\)", r"](docs-\1\2)", text)
    if name == "readme":
        text = re.sub(r"\]\(docs/researchers/([a-z0-9-]+)\.md(#[^)]*)?\)", r"](\1\2)", text)
        text = re.sub(r"\]\(docs/researchers/?\)", "](./)", text)
        text = re.sub(r"\]\(docs/([a-z0-9-]+)\.md(#[^)]*)?\)", r"](docs-\1\2)", text)
    elif path.parent == GUIDE_DIR:
        text = re.sub(r"\]\((?:\./)?([a-z0-9-]+)\.md(#[^)]*)?\)", r"](\1\2)", text)
    else:  # a technical page: its neighbours are docs-<name>, the guide is researchers/
        text = re.sub(r"\]\(researchers/([a-z0-9-]+)\.md(#[^)]*)?\)", r"](\1\2)", text)
        text = re.sub(r"\]\((?:\./)?([a-z0-9-]+)\.md(#[^)]*)?\)", r"](docs-\1\2)", text)
    text = text.replace("](README)", "](./)")
    title = next((ln.lstrip("# ").strip() for ln in text.splitlines() if ln.startswith("# ")), name)
    return title, mistune.html(text)


# ---------------------------------------------------------------------------
# HTTP


class BaseHandler(HubOAuthenticated, web.RequestHandler):
    def initialize(self, catalogue: Catalogue, prefix: str):
        self.catalogue = catalogue
        self.prefix = prefix

    @property
    def user(self) -> str:
        return self.current_user["name"]

    def query_args(self) -> dict[str, list[str]]:
        return {k: [v.decode() for v in vs] for k, vs in self.request.query_arguments.items()}


class ApiHandler(BaseHandler):
    def check_xsrf_cookie(self):
        return  # GET only; a token in the header is the caller

    async def prepare(self):
        if self.current_user is None:
            raise CatalogueError(401, "log in, or send Authorization: token <your own token>")
        self.approved = self.catalogue.admit(self.user)

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None))[1]
        body = {"status": status_code, "message": self._reason, "field": None}
        if isinstance(exc, CatalogueError):
            body.update(message=exc.message, field=exc.field)
        elif isinstance(exc, web.HTTPError) and exc.log_message:
            body["message"] = exc.log_message % exc.args if exc.args else exc.log_message
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(body)


class DatasetsHandler(ApiHandler):
    async def get(self):
        self.finish({"datasets": await self.catalogue.datasets(self.user, self.approved)})


class AttributesHandler(ApiHandler):
    async def get(self):
        self.finish(await self.catalogue.attributes(self.user))


class CountsHandler(ApiHandler):
    async def get(self):
        where, by = self.catalogue.parse(self.query_args())
        self.finish(await self.catalogue.counts(self.user, where, by))


class PageHandler(BaseHandler):
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"])
    )

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None))[1]
        message = exc.message if isinstance(exc, CatalogueError) else self._reason
        self.render_template(status_code, error=message)

    def render_template(self, status: int = 200, **ctx):
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        ctx.setdefault("user", self.current_user["name"] if self.current_user else "")
        ctx.setdefault("platform", self.catalogue.platform)
        ctx.setdefault("prefix", self.prefix)
        self.finish(self.env.get_template("catalogue.html").render(**ctx))

    @web.authenticated
    async def get(self):
        c = self.catalogue
        approved = c.admit(self.user)
        args = self.query_args()
        values = {k: (args.get(k) or [""])[-1] for k in (*FILTERS, "by")}
        ctx = {"values": values, "errors": {}, "counts": None, "filters": FILTERS}
        try:
            where, by = c.parse({k: v for k, v in args.items() if v != [""]})
        except CatalogueError as e:
            ctx["errors"][e.field or "form"] = e.message
            where, by = None, None
        ctx["attributes"] = await c.attributes(self.user)
        ctx["datasets"] = await c.datasets(self.user, approved)
        if where is not None:
            ctx["counts"] = await c.counts(self.user, where, by)
        status = 400 if ctx["errors"] else 200
        self.render_template(status, **ctx, query=urlencode(values))


class GuideHandler(BaseHandler):
    env = PageHandler.env

    @web.authenticated
    def get(self, name: str = ""):
        try:
            title, body = guide_page(name.strip("/"))
        except CatalogueError as e:
            raise web.HTTPError(404, e.message) from None
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(
            self.env.get_template("guide.html").render(
                title=title, body=Markup(body), prefix=self.prefix, platform=self.catalogue.platform
            )
        )


def make_app(catalogue: Catalogue, prefix: str, cookie_secret: bytes) -> web.Application:
    prefix = "/" + prefix.strip("/") + "/"
    args = {"catalogue": catalogue, "prefix": prefix}
    routes = [
        (prefix + "api/datasets", DatasetsHandler, args),
        (prefix + "api/attributes", AttributesHandler, args),
        (prefix + "api/counts", CountsHandler, args),
        health_route(prefix),
        (prefix + "oauth_callback", HubOAuthCallbackHandler),
        (prefix + r"guide/?([a-z0-9-]*)", GuideHandler, args),
        (prefix + "?", PageHandler, args),
    ]
    return web.Application(routes, cookie_secret=cookie_secret, xsrf_cookies=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, help="port (default: from JUPYTERHUB_SERVICE_URL)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="[catalogue %(levelname)s %(asctime)s] %(message)s"
    )
    follow_the_hub()
    platform_dir = os.environ.get(PLATFORM_ENV, REPO_ROOT / "policies" / "demo")
    platform = load_platform(platform_dir)
    clock = clock_from_env()
    catalogue = Catalogue(
        platform=platform,
        entries=load_catalogue(platform_dir, platform),
        registry=ApprovalRegistry(platform.database_url, clock=clock),
        audit=AuditStore(platform.database_url, clock=clock),
        hub_url=os.environ["VISITING_HUB_URL"],
        token=os.environ["JUPYTERHUB_API_TOKEN"],
        clock=clock,
    )
    # an approval that ends or a token that is revoked stops working here within a second
    HubOAuth.instance(cache_max_age=1)
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/catalogue/")
    url = os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8085")
    port = args.port or service_port(url)
    make_app(catalogue, prefix, os.urandom(32)).listen(port, address="127.0.0.1", xheaders=True)
    log.info("catalogue on 127.0.0.1:%d%s", port, prefix)
    try:
        ioloop.IOLoop.current().start()
    except KeyboardInterrupt:  # the hub stops its services with SIGINT (SIGTERM: _base)
        log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
