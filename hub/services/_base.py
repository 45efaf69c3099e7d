"""What every hub-managed service shares: its settings, its start, its errors, its health route.

Each service (audit intake, enforcer, admin, catalogue) is one `ServiceApp`, built like
jupyterhub-idle-culler's `IdleCuller`: every setting is a trait with help, its default read
from the environment the hub gives its services (here, and nowhere else), the command line
overrides it (`--port=8082`), and `start()` does the rest: logging, a life tied to the hub's,
the listening socket, the loop, a clean stop on SIGINT/SIGTERM.

A service's life tied to the hub's and its health route are a contract with the hub (and
with a site's gateway, which is no hub service): `extensions.contracts.service`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from tornado import web
from traitlets import Instance, Integer, Unicode, default, validate
from traitlets.config import Application, catch_config_error

from extensions.contracts.clock import clock_from_env
from extensions.contracts.service import (  # noqa: F401 - the services' one import
    HUB_PID_ENV,
    HealthHandler,
    follow_the_hub,
    health_route,
    service_port,
)
from hub.platform.traits import PLATFORM_ENV, REPO_ROOT, PlatformTraits

log = logging.getLogger("visiting.services")

#: the services' page templates (admin.html, catalogue.html, guide.html, error.html)
TEMPLATES = Path(__file__).resolve().parent / "templates"

SERVICE_URL_ENV = "JUPYTERHUB_SERVICE_URL"
SERVICE_PREFIX_ENV = "JUPYTERHUB_SERVICE_PREFIX"
API_URL_ENV = "JUPYTERHUB_API_URL"
API_TOKEN_ENV = "JUPYTERHUB_API_TOKEN"
#: JupyterHub's own default for JUPYTERHUB_API_URL
DEFAULT_API_URL = "http://127.0.0.1:8081/hub/api"


class ServiceConfigError(ValueError):
    """A setting a service cannot start with; the message names the setting and its source."""


def normal_prefix(prefix: str) -> str:
    """A URL prefix with one slash at each end ('services/audit' -> '/services/audit/')."""
    return "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"


def service_web_app(prefix: str, routes: list, **settings) -> web.Application:
    """A service's tornado application: its routes under `prefix`, and the health route."""
    return web.Application([*routes, health_route(normal_prefix(prefix))], **settings)


def page_templates(**filters) -> Environment:
    """The Jinja environment of the services' pages, with these filters."""
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"])
    )
    env.filters.update(filters)
    return env


class ServiceApp(PlatformTraits, Application):
    """One hub-managed service. A subclass names itself, gives its defaults and builds its
    tornado application in `make_web_app()`; one with work of its own besides answering
    requests (the enforcer's rounds) does it in `run()`."""

    name = "service"
    #: the URL the service listens on when the hub names none (None: it then listens nowhere)
    default_service_url: str | None = None
    #: the prefix of its routes when the hub names none
    default_prefix = "/"
    #: settings that must be non-empty to start, as trait names
    required: tuple[str, ...] = ()
    #: the listening server, once `serve()` listens
    http_server = None

    aliases = {
        **Application.aliases,
        "port": "ServiceApp.port",
        "ip": "ServiceApp.ip",
        "platform": "ServiceApp.platform_dir",
    }

    environ = Instance(
        Mapping,
        help="""The environment the defaults are read from. Default: this process's
        environment (the hub sets it for the services it starts). Tests give their own.""",
    )

    @default("environ")
    def _environ_default(self):
        return os.environ

    @default("platform_dir")
    def _platform_dir_default(self):
        return self.environ.get(PLATFORM_ENV, str(REPO_ROOT / "policies" / "demo"))

    @default("clock")
    def _clock_default(self):
        return clock_from_env(self.environ)

    service_url = Unicode(
        None,
        allow_none=True,
        help="""The URL the hub reaches this service at; the port is taken from it.

        Default: $JUPYTERHUB_SERVICE_URL (the hub sets it from the service's `url`), else the
        service's own (audit http://127.0.0.1:8082, admin :8084, catalogue :8085; the
        enforcer listens only when the hub names one). Example: `--AuditService.service_url=http://127.0.0.1:9082`.
        """,
    ).tag(config=True)

    @default("service_url")
    def _service_url_default(self):
        return self.environ.get(SERVICE_URL_ENV, self.default_service_url)

    port = Integer(
        None,
        allow_none=True,
        help="""The port to listen on. Default: the port of `service_url`
        ($JUPYTERHUB_SERVICE_URL), which must name one; none when there is no service URL.
        Example: `--port=8082`.""",
    ).tag(config=True)

    @default("port")
    def _port_default(self):
        if not self.service_url:
            return None
        try:
            return service_port(self.service_url)
        except ValueError as e:  # names JUPYTERHUB_SERVICE_URL and the reason
            raise ServiceConfigError(str(e)) from None

    ip = Unicode(
        "127.0.0.1",
        help="""The address to listen on. Default: 127.0.0.1 (the hub's proxy is on the same
        machine). Example: `--ip=0.0.0.0`.""",
    ).tag(config=True)

    service_prefix = Unicode(
        help="""The URL prefix of the service's routes. Default: $JUPYTERHUB_SERVICE_PREFIX,
        else /services/<name>/. Example: `--AdminService.service_prefix=/services/admin/`.""",
    ).tag(config=True)

    @default("service_prefix")
    def _service_prefix_default(self):
        return normal_prefix(self.environ.get(SERVICE_PREFIX_ENV, self.default_prefix))

    @validate("service_prefix")
    def _normal_prefix(self, proposal):
        return normal_prefix(proposal["value"])

    hub_api_url = Unicode(
        help=f"""The hub's REST API. Default: $JUPYTERHUB_API_URL, else JupyterHub's own
        default {DEFAULT_API_URL}. Example: `http://127.0.0.1:8081/hub/api`.""",
    ).tag(config=True)

    @default("hub_api_url")
    def _hub_api_url_default(self):
        return self.environ.get(API_URL_ENV, DEFAULT_API_URL)

    api_token = Unicode(
        help="""The service's own token for the hub's API (its scopes are those the hub's
        `load_roles` give it). Default: $JUPYTERHUB_API_TOKEN, else none.""",
    ).tag(config=True)

    @default("api_token")
    def _api_token_default(self):
        return self.environ.get(API_TOKEN_ENV, "")

    # -- start -----------------------------------------------------------------------

    @catch_config_error
    def initialize(self, argv=None):
        """Settings from the command line; the ones needed to start are checked here."""
        super().initialize(argv)
        self.check_settings()

    #: where each required setting comes from, for the message of a missing one
    env_names = {"api_token": API_TOKEN_ENV, "hub_api_url": API_URL_ENV}

    def check_settings(self) -> None:
        """Refuse to start without a required setting or with a service URL without a port."""
        _ = self.port  # a bad JUPYTERHUB_SERVICE_URL fails here, before the service starts
        for name in self.required:
            if not getattr(self, name):
                source = self.env_names.get(name)
                where = f" (${source})" if source else ""
                raise ServiceConfigError(f"{name}{where} is not set; the service needs it")

    def make_web_app(self) -> web.Application | None:
        """The service's tornado application (with `service_web_app`); built in the running
        loop, after follow_the_hub(). None: the service answers no requests."""
        raise NotImplementedError

    async def run(self) -> None:
        """The service's own work while it answers requests; by default none (wait)."""
        await asyncio.Event().wait()

    async def serve(self) -> None:
        app = self.make_web_app()
        if app is not None and self.port is not None:
            self.http_server = app.listen(self.port, address=self.ip, xheaders=True)
            log.info("%s on %s:%d%s", self.name, self.ip, self.port, self.service_prefix)
        await self.run()

    def start(self) -> int:
        """What `python -m hub.services.<name>` does after its settings: serve until stopped."""
        logging.basicConfig(
            level=logging.INFO, format=f"[{self.name} %(levelname)s %(asctime)s] %(message)s"
        )
        follow_the_hub(self.environ)
        try:
            asyncio.run(self.serve())
        except KeyboardInterrupt:  # the hub stops its services with SIGINT (SIGTERM: the contract)
            log.info("stopped")
        return 0

    @classmethod
    def main(cls, argv=None) -> int:
        """A service's entry (`main(argv)` of its application module): its exit status.
        `--help` prints the settings; a setting it cannot start with is named on stderr (2)."""
        app = cls()
        try:
            app.initialize(argv)
        except ServiceConfigError as e:
            print(f"{cls.name}: {e}", file=sys.stderr)
            return 2
        return app.start()


# ---------------------------------------------------------------------------
# handlers


def error_message(exc: BaseException | None, reason: str, public: tuple = ()) -> str:
    """What an API caller reads of an error: the `message` of a service's own refusal (one
    of the `public` types), else the HTTPError's message (formatted with its arguments),
    else the status's reason."""
    if public and isinstance(exc, public) and getattr(exc, "message", None):
        return exc.message
    if isinstance(exc, web.HTTPError) and exc.log_message:
        return exc.log_message % exc.args if exc.args else exc.log_message
    return reason


class ServiceHandler(web.RequestHandler):
    """A service's handler: its own refusals (`public_errors`, each with `message`,
    `status`, and maybe `field`) are answered with their status like tornado's HTTPError,
    and their message is what the caller reads."""

    public_errors: tuple[type[Exception], ...] = ()

    def _handle_request_exception(self, e):
        if isinstance(e, self.public_errors) and not isinstance(e, web.HTTPError):
            self.send_error(e.status, exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)


class JsonApiHandler(ServiceHandler):
    """A service's JSON API: errors as {"status", "message"}, and "field" (the input that
    is wrong, else null) where the service names its refusals' fields (`public_errors`)."""

    def error_body(self, status_code: int, exc: BaseException | None) -> dict:
        message = error_message(exc, self._reason, self.public_errors)
        body = {"status": status_code, "message": message}
        if self.public_errors:
            public = isinstance(exc, self.public_errors)
            body["field"] = getattr(exc, "field", None) if public else None
        return body

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None))[1]
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(self.error_body(status_code, exc)))

    def bad_request(self, text: str) -> Exception:
        """The refusal of a bad request (400) in this service's own type."""
        return web.HTTPError(400, text)

    def json_body(self) -> dict:
        """The request's body, a JSON object ({} when empty); `bad_request` otherwise."""
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise self.bad_request("the body is not JSON") from None
        if not isinstance(body, dict):
            raise self.bad_request("the body must be a JSON object")
        return body


class HtmlPageHandler(ServiceHandler):
    """A service's page: an error is one page in both languages (error.html), with the
    status's reason, or the message of a refusal the person may read (`public_errors`)."""

    env = page_templates()

    def error_text(self, exc: BaseException | None) -> str:
        if self.public_errors and isinstance(exc, self.public_errors):
            return error_message(exc, self._reason, self.public_errors)
        return self._reason

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None))[1]
        self.render_error(status_code, self.error_text(exc))

    def render_error(self, status_code: int, text: str) -> None:
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        page = self.env.get_template("error.html")
        self.finish(page.render(status=status_code, reason=self._reason, text=text))
