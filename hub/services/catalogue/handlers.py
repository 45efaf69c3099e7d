"""The catalogue's API (datasets, attributes, counts), its page and the user guide's pages;
a person is identified by JupyterHub OAuth and admitted with an approval active now."""

from __future__ import annotations

from urllib.parse import urlencode

from jupyterhub.services.auth import HubOAuthenticated
from markupsafe import Markup
from tornado import web

from hub.services._base import HtmlPageHandler, JsonApiHandler, page_templates
from hub.services.catalogue.catalogue import FILTERS, Catalogue, CatalogueError
from hub.services.catalogue.guide import guide_page


class BaseHandler(HubOAuthenticated, web.RequestHandler):
    def initialize(self, catalogue: Catalogue, prefix: str):
        self.catalogue = catalogue
        self.prefix = prefix

    @property
    def user(self) -> str:
        return self.current_user["name"]

    def query_args(self) -> dict[str, list[str]]:
        return {k: [v.decode() for v in vs] for k, vs in self.request.query_arguments.items()}


class ApiHandler(BaseHandler, JsonApiHandler):
    """JSON out; errors as {"status", "message", "field"}."""

    public_errors = (CatalogueError,)

    def check_xsrf_cookie(self):
        return  # GET only; a token in the header is the caller

    async def prepare(self):
        if self.current_user is None:
            raise CatalogueError(401, "log in, or send Authorization: token <your own token>")
        self.approved = self.catalogue.admit(self.user)


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


class PageHandler(BaseHandler, HtmlPageHandler):
    """The catalogue page; a refusal is shown on the page itself."""

    env = page_templates()
    public_errors = (CatalogueError,)

    def render_error(self, status_code: int, text: str) -> None:
        self.render_template(status_code, error=text)

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


class GuideHandler(BaseHandler, HtmlPageHandler):
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
