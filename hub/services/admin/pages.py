"""The admin page (what a person's roles let them see and do, in Japanese and English, its
forms posting to the same operations as the API) and the data-usage report."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlencode

from markupsafe import Markup
from tornado import web

from extensions.contracts.clock import fiscal_year_of, jst_date
from hub.platform.access import SECRETARIAT
from hub.platform.messages import message
from hub.platform.operations import OperationError
from hub.services._base import HtmlPageHandler, page_templates
from hub.services.admin.figures import (
    EGRESS_DAYS,
    QUERY_AUDIT_DAYS,
    audit_rule,
    days_since,
    egress_alerts,
    egress_since,
    enforcer_up,
    jst_time,
    mib,
    query_audit_section,
)
from hub.services.admin.handlers import BaseHandler

log = logging.getLogger("visiting.admin")

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


class PageHandler(BaseHandler, HtmlPageHandler):
    """The admin page: what the person's roles let them see and do, ja/en."""

    env = page_templates(jst=jst_time, mib=mib, audit_rule=audit_rule)
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
