"""The hub's settings: one traitlets object whose every setting has help and an
environment variable, read in one place.

`jupyterhub_config.py` calls `HubSettings.from_env()` and hands the result to
hub.plugins.config.configure.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from traitlets import Bool, Dict, Float, Instance, Integer, List, TraitType, Unicode, default
from traitlets.config import Configurable

from extensions.contracts.clock import CLOCK_FILE_ENV
from extensions.contracts.environment import HUB_URL
from hub.platform.policy import load_platform
from hub.platform.traits import PLATFORM_ENV, REPO_ROOT

DEMO_CLIENT_ID = "visiting-hub"
DEMO_CLIENT_SECRET = "visiting-demo-secret"

# the environment of the hub that its own services need too
SERVICE_ENV = (
    PLATFORM_ENV,
    "VISITING_STATE_DIR",
    "VISITING_DATA_ROOT",
    "VISITING_DATABASE_URL",
    CLOCK_FILE_ENV,
    "PATH",
)


class ConfigError(Exception):
    """The hub cannot be configured; the message names what is missing."""


class PathTrait(TraitType):
    """A filesystem path; a string is taken as one."""

    info_text = "a filesystem path"

    def validate(self, obj, value):
        if isinstance(value, str | os.PathLike):
            return Path(value)
        self.error(obj, value)


def _json_object(raw: str) -> dict:
    return dict(json.loads(raw))


def _json_ports(raw: str) -> dict[str, int]:
    return {str(k): int(v) for k, v in json.loads(raw).items()}


class HubSettings(Configurable):
    """Everything the hub's wiring depends on.

    Each setting may be given when the object is made (tests), in a config file, or by
    its environment variable, read lazily by its @default method through `_env`: the one
    place the environment is read. `from_env()` reads and checks every one at once.
    """

    environ = Instance(
        Mapping,
        help="""The environment the defaults are read from. Default: os.environ; tests
        pass a dict to `HubSettings.from_env`.""",
    )

    @default("environ")
    def _environ_default(self):
        return os.environ

    def _env(
        self,
        var: str,
        fallback: Any = None,
        convert: Callable[[str], Any] = str,
        invalid: str = "{var}={raw!r} is not valid: {error}",
    ) -> Any:
        """The value of environment variable `var` converted, or `fallback` when it is
        unset or empty; ConfigError (`invalid`) naming the variable when it does not
        convert."""
        raw = self.environ.get(var)
        if not raw:
            return fallback
        try:
            return convert(raw)
        except (ValueError, TypeError, AttributeError) as e:
            raise ConfigError(invalid.format(var=var, raw=raw, error=e)) from None

    # -- where the platform is -----------------------------------------------------

    platform_dir = PathTrait(
        help="""Folder of the platform's policy files (platform.yaml, approvals/, users.yaml).
        Default: $VISITING_PLATFORM, else the demo platform `policies/demo`.
        Example: `/etc/visiting/platform`.""",
    ).tag(config=True)

    @default("platform_dir")
    def _platform_dir_default(self):
        return Path(self._env(PLATFORM_ENV, REPO_ROOT / "policies" / "demo")).resolve()

    state_dir = PathTrait(
        help="""Folder of the hub's state: its database, cookie secret, auth_state key,
        service tokens and pid files. Default: $VISITING_STATE_DIR, else the `state_dir`
        of the platform file. Example: `/var/lib/visiting`.""",
    ).tag(config=True)

    @default("state_dir")
    def _state_dir_default(self):
        state_dir = self._env("VISITING_STATE_DIR")
        if state_dir:
            return Path(state_dir).resolve()
        return load_platform(self.platform_dir).state_dir

    # -- addresses and the identity provider ---------------------------------------------

    hub_url = Unicode(
        help="""The hub's public address, where browsers reach it. Default:
        $VISITING_HUB_URL, else `http://127.0.0.1:8000`.""",
    ).tag(config=True)

    @default("hub_url")
    def _hub_url_default(self):
        return self._env(HUB_URL, "http://127.0.0.1:8000")

    idp_url = Unicode(
        help="""The OIDC provider, whose discovery document names its endpoints. Default:
        $VISITING_IDP_URL, else the demo IdP `http://127.0.0.1:9000`.""",
    ).tag(config=True)

    @default("idp_url")
    def _idp_url_default(self):
        return self._env("VISITING_IDP_URL", "http://127.0.0.1:9000")

    client_id = Unicode(
        help=f"""The hub's OIDC client id. Default: $VISITING_CLIENT_ID, else the demo
        IdP's `{DEMO_CLIENT_ID}`.""",
    ).tag(config=True)

    @default("client_id")
    def _client_id_default(self):
        return self._env("VISITING_CLIENT_ID", DEMO_CLIENT_ID)

    client_secret = Unicode(
        help="""The hub's OIDC client secret. Default: $VISITING_CLIENT_SECRET, else the
        demo IdP's secret.""",
    ).tag(config=True)

    @default("client_secret")
    def _client_secret_default(self):
        return self._env("VISITING_CLIENT_SECRET", DEMO_CLIENT_SECRET)

    hub_api_port = Integer(
        help="""Port of the hub's API (what servers and services call). Default:
        $VISITING_HUB_API_PORT, else 8081.""",
    ).tag(config=True)

    @default("hub_api_port")
    def _hub_api_port_default(self):
        return self._env("VISITING_HUB_API_PORT", 8081, int)

    proxy_api_port = Integer(
        help="""Port of the proxy's API. Default: $VISITING_PROXY_API_PORT, else 8001.""",
    ).tag(config=True)

    @default("proxy_api_port")
    def _proxy_api_port_default(self):
        return self._env("VISITING_PROXY_API_PORT", 8001, int)

    proxy_command = List(
        Unicode(),
        help="""The command that starts configurable-http-proxy. Default: the one npm
        installed under `node_modules/.bin` of the repository.""",
    ).tag(config=True)

    @default("proxy_command")
    def _proxy_command_default(self):
        return [str(REPO_ROOT / "node_modules" / ".bin" / "configurable-http-proxy")]

    # -- how often things are checked ------------------------------------------------------

    auth_refresh_age = Integer(
        help="""Seconds after which a person's approvals are looked up again on a request.
        Default: $VISITING_AUTH_REFRESH_AGE, else 60. Example: 5 in tests.""",
    ).tag(config=True)

    @default("auth_refresh_age")
    def _auth_refresh_age_default(self):
        return self._env("VISITING_AUTH_REFRESH_AGE", 60, int)

    enforcer_interval = Float(
        help="""Seconds between the enforcer's rounds over running servers. Default:
        $VISITING_ENFORCER_INTERVAL, else 30.""",
    ).tag(config=True)

    @default("enforcer_interval")
    def _enforcer_interval_default(self):
        return self._env("VISITING_ENFORCER_INTERVAL", 30.0, float)

    period_check_seconds = Float(
        help="""Seconds between a server's checks that its approval still holds. Default:
        $VISITING_PERIOD_CHECK_SECONDS, else 30.""",
    ).tag(config=True)

    @default("period_check_seconds")
    def _period_check_seconds_default(self):
        return self._env("VISITING_PERIOD_CHECK_SECONDS", 30.0, float)

    service_poll_seconds = Integer(
        help="""Seconds between the hub's looks at whether a managed service's process has
        exited (to restart it). Default: $VISITING_SERVICE_POLL_SECONDS, else 2.""",
    ).tag(config=True)

    @default("service_poll_seconds")
    def _service_poll_seconds_default(self):
        return self._env("VISITING_SERVICE_POLL_SECONDS", 2, int)

    # -- the hub's services -------------------------------------------------------------

    audit_port = Integer(
        help="Port of the audit intake service. Default: $VISITING_AUDIT_PORT, else 8082.",
    ).tag(config=True)

    @default("audit_port")
    def _audit_port_default(self):
        return self._env("VISITING_AUDIT_PORT", 8082, int)

    enforcer_port = Integer(
        help="Port of the enforcer service. Default: $VISITING_ENFORCER_PORT, else 8083.",
    ).tag(config=True)

    @default("enforcer_port")
    def _enforcer_port_default(self):
        return self._env("VISITING_ENFORCER_PORT", 8083, int)

    admin_port = Integer(
        help="Port of the admin service. Default: $VISITING_ADMIN_PORT, else 8084.",
    ).tag(config=True)

    @default("admin_port")
    def _admin_port_default(self):
        return self._env("VISITING_ADMIN_PORT", 8084, int)

    catalogue_port = Integer(
        help="Port of the catalogue service. Default: $VISITING_CATALOGUE_PORT, else 8085.",
    ).tag(config=True)

    @default("catalogue_port")
    def _catalogue_port_default(self):
        return self._env("VISITING_CATALOGUE_PORT", 8085, int)

    export_port = Integer(
        help="Port of the export airlock service. Default: $VISITING_EXPORT_PORT, else 8086.",
    ).tag(config=True)

    @default("export_port")
    def _export_port_default(self):
        return self._env("VISITING_EXPORT_PORT", 8086, int)

    gateway_ports = Dict(
        help="""site -> port of the site's federation gateway when it runs beside the hub
        (no site containers). Default: $VISITING_GATEWAY_PORTS (a JSON object), else
        8090, 8091, ... in the platform file's site order. Example: `{"ncc": 18091}`.""",
    ).tag(config=True)

    @default("gateway_ports")
    def _gateway_ports_default(self):
        return self._env(
            "VISITING_GATEWAY_PORTS",
            {},
            _json_ports,
            invalid="{var} is not a JSON object of ports: {error}",
        )

    service_environment = Dict(
        help=f"""The hub's environment that its own services get too (those of
        {", ".join(SERVICE_ENV)} that are set). Default: read from the environment.""",
    ).tag(config=True)

    @default("service_environment")
    def _service_environment_default(self):
        values = {var: self._env(var) for var in SERVICE_ENV}
        return {var: value for var, value in values.items() if value}

    # -- researchers' containers and the sites ----------------------------------------------

    container_env = Dict(
        help="""Extra environment for researchers' containers (test set-ups: short guard
        intervals). Default: $VISITING_CONTAINER_ENV (a JSON object), else none.
        Example: `{"VISITING_DATA_ACCESS_WINDOW": "1"}`.""",
    ).tag(config=True)

    @default("container_env")
    def _container_env_default(self):
        return self._env(
            "VISITING_CONTAINER_ENV",
            {},
            _json_object,
            invalid="{var} is not a JSON object: {error}",
        )

    sites = Bool(
        help="""Whether servers run in site containers, which need the hub's API and proxy on
        the sites' host addresses. Default: True when $VISITING_SITES is `1`.""",
    ).tag(config=True)

    @default("sites")
    def _sites_default(self):
        return self._env("VISITING_SITES", "") == "1"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> HubSettings:
        """Settings from `environ` (default: os.environ), every one read and checked now, so
        that a bad value stops the hub at start-up naming its variable. The state folder
        comes last: without $VISITING_STATE_DIR it is read from the platform file."""
        settings = cls() if environ is None else cls(environ=environ)
        names = sorted(settings.trait_names(config=True), key=lambda n: n == "state_dir")
        for name in names:
            getattr(settings, name)
        return settings
