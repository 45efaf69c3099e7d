"""Wiring of JupyterHub for the platform, as pure functions over a traitlets Config.

`jupyterhub_config.py` stays a few lines: it reads HubSettings from the
environment and calls `configure(c, settings)`. Tests call the same
function on a bare `Config()`.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from extensions.contracts.clock import CLOCK_FILE_ENV
from hub.platform.policy import load_platform
from hub.platform.traits import PLATFORM_ENV, REPO_ROOT
from hub.plugins.home import site_rows
from hub.services import local_gateway_ports
from hub.services._base import HUB_PID_ENV
from hub.services.admin.application import SCOPES as ADMIN_SCOPES
from hub.services.enforcer.application import SCOPES as ENFORCER_SCOPES

DEMO_CLIENT_ID = "visiting-hub"
DEMO_CLIENT_SECRET = "visiting-demo-secret"


class ConfigError(Exception):
    """The hub cannot be configured; the message names what is missing."""


@dataclass(frozen=True)
class HubSettings:
    """Everything the hub's wiring depends on; each field has an environment variable."""

    platform_dir: Path
    state_dir: Path
    hub_url: str = "http://127.0.0.1:8000"
    idp_url: str = "http://127.0.0.1:9000"
    client_id: str = DEMO_CLIENT_ID
    client_secret: str = DEMO_CLIENT_SECRET
    hub_api_port: int = 8081
    proxy_api_port: int = 8001
    auth_refresh_age: int = 60
    audit_port: int = 8082
    enforcer_port: int = 8083
    admin_port: int = 8084
    catalogue_port: int = 8085
    enforcer_interval: float = 30.0
    # how often the hub looks whether a managed service's process has exited (to restart it)
    service_poll_seconds: int = 2
    period_check_seconds: float = 30.0
    # extra environment for researchers' containers (test set-ups: short guard intervals)
    container_env: dict = field(default_factory=dict)
    # site -> port of the site's federation gateway when it runs beside the hub (no site
    # containers); default 8090, 8091, ... in the platform file's site order
    gateway_ports: dict = field(default_factory=dict)
    # site containers need the hub's API and proxy on the sites' host addresses
    sites: bool = False
    proxy_command: tuple[str, ...] = field(
        default=(str(REPO_ROOT / "node_modules" / ".bin" / "configurable-http-proxy"),)
    )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> HubSettings:
        env = os.environ if environ is None else environ
        platform_dir = Path(env.get(PLATFORM_ENV, REPO_ROOT / "policies" / "demo")).resolve()
        state_dir = env.get("VISITING_STATE_DIR")
        kwargs = {}
        for name, var, conv in (
            ("hub_url", "VISITING_HUB_URL", str),
            ("idp_url", "VISITING_IDP_URL", str),
            ("client_id", "VISITING_CLIENT_ID", str),
            ("client_secret", "VISITING_CLIENT_SECRET", str),
            ("hub_api_port", "VISITING_HUB_API_PORT", int),
            ("proxy_api_port", "VISITING_PROXY_API_PORT", int),
            ("auth_refresh_age", "VISITING_AUTH_REFRESH_AGE", int),
            ("audit_port", "VISITING_AUDIT_PORT", int),
            ("enforcer_port", "VISITING_ENFORCER_PORT", int),
            ("admin_port", "VISITING_ADMIN_PORT", int),
            ("catalogue_port", "VISITING_CATALOGUE_PORT", int),
            ("enforcer_interval", "VISITING_ENFORCER_INTERVAL", float),
            ("period_check_seconds", "VISITING_PERIOD_CHECK_SECONDS", float),
            ("service_poll_seconds", "VISITING_SERVICE_POLL_SECONDS", int),
        ):
            if env.get(var):
                try:
                    kwargs[name] = conv(env[var])
                except ValueError as e:
                    raise ConfigError(f"{var}={env[var]!r} is not valid: {e}") from None
        kwargs["sites"] = env.get("VISITING_SITES", "") == "1"
        if env.get("VISITING_CONTAINER_ENV"):
            try:
                kwargs["container_env"] = dict(json.loads(env["VISITING_CONTAINER_ENV"]))
            except (ValueError, TypeError) as e:
                raise ConfigError(f"VISITING_CONTAINER_ENV is not a JSON object: {e}") from None
        if env.get("VISITING_GATEWAY_PORTS"):
            try:
                kwargs["gateway_ports"] = {
                    str(k): int(v) for k, v in json.loads(env["VISITING_GATEWAY_PORTS"]).items()
                }
            except (ValueError, TypeError, AttributeError) as e:
                raise ConfigError(
                    f"VISITING_GATEWAY_PORTS is not a JSON object of ports: {e}"
                ) from None
        return cls(
            platform_dir=platform_dir,
            state_dir=Path(state_dir).resolve()
            if state_dir
            else load_platform(platform_dir).state_dir,
            **kwargs,
        )


def discover_oidc(idp_url: str, timeout: float = 10.0) -> dict:
    """The provider's discovery document; a clear error when the IdP does not answer."""
    url = idp_url.rstrip("/") + "/.well-known/openid-configuration"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return json.load(r)
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise ConfigError(f"the OIDC provider does not answer at {url}: {e}") from None


def crypt_key(state_dir: Path) -> str:
    """The key that encrypts auth_state, created once and kept in the state folder."""
    path = state_dir / "auth_state.key"
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip()


def _cookie_requests_can_fail_refresh() -> None:
    """JupyterHub 6.1 reads `_token_authenticated` when a refresh before a spawn fails, but
    sets it only on token-authenticated requests: a browser (cookie) request to start a
    server after the approval ended answered 500. With a class default of False it answers
    403 and asks for a new login, as JupyterHub means to."""
    from jupyterhub.handlers.base import BaseHandler

    if not hasattr(BaseHandler, "_token_authenticated"):
        BaseHandler._token_authenticated = False


def configure(c, settings: HubSettings, discovery: dict | None = None) -> None:
    """Fill a JupyterHub Config for the platform."""
    _cookie_requests_can_fail_refresh()
    state = settings.state_dir
    state.mkdir(parents=True, exist_ok=True)
    discovery = discovery if discovery is not None else discover_oidc(settings.idp_url)

    host = urlparse(settings.hub_url).hostname or "127.0.0.1"
    port = urlparse(settings.hub_url).port or 80
    if settings.sites:
        # reachable from the site networks' host addresses; the host firewall lets site
        # containers reach these two ports and nothing else of the host
        c.JupyterHub.bind_url = f"http://0.0.0.0:{port}"
        c.JupyterHub.hub_bind_url = f"http://0.0.0.0:{settings.hub_api_port}"
        c.JupyterHub.hub_connect_url = f"http://{host}:{settings.hub_api_port}"
    else:
        c.JupyterHub.bind_url = settings.hub_url
        c.JupyterHub.hub_port = settings.hub_api_port
    c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(state / "jupyterhub.pid")
    c.JupyterHub.allow_named_servers = True
    # a hub restart (an upgrade, a crash) must not stop researchers' servers
    c.JupyterHub.cleanup_servers = False
    c.JupyterHub.default_url = "/hub/home"
    # item access: `keys` would be the Config section's dict method
    c.CryptKeeper["keys"] = [bytes.fromhex(crypt_key(state))]

    c.ConfigurableHTTPProxy.api_url = f"http://{host}:{settings.proxy_api_port}"
    c.ConfigurableHTTPProxy.command = list(settings.proxy_command)
    c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")

    c.JupyterHub.spawner_class = "hub.plugins.spawner.SiteSpawner"
    c.JupyterHub.named_server_limit_per_user = 0  # one per site; the spawner refuses others
    c.JupyterHub.template_paths = [str(Path(__file__).parent / "templates")]
    c.JupyterHub.template_vars = {"visiting_sites": site_rows}
    c.SiteSpawner.platform_dir = str(settings.platform_dir)
    c.SiteSpawner.hub_api_port = settings.hub_api_port
    c.SiteSpawner.proxy_port = port
    c.SiteSpawner.period_check_seconds = settings.period_check_seconds
    if settings.container_env:
        c.SiteSpawner.environment = dict(settings.container_env)
    c.SiteSpawner.start_timeout = 180
    c.SiteSpawner.http_timeout = 120

    c.JupyterHub.authenticator_class = "hub.plugins.auth.VisitingAuthenticator"
    a = c.VisitingAuthenticator
    a.platform_dir = str(settings.platform_dir)
    a.client_id = settings.client_id
    a.client_secret = settings.client_secret
    a.oauth_callback_url = settings.hub_url.rstrip("/") + "/hub/oauth_callback"
    a.authorize_url = discovery["authorization_endpoint"]
    a.token_url = discovery["token_endpoint"]
    a.userdata_url = discovery["userinfo_endpoint"]
    if discovery.get("end_session_endpoint"):
        a.logout_redirect_url = discovery["end_session_endpoint"]
    a.basic_auth = True  # client_secret_basic, the OIDC default
    a.auto_login = True
    a.auth_refresh_age = settings.auth_refresh_age
    a.refresh_pre_spawn = True
    # a token-authenticated request must not outlive an approval either
    a.auth_refresh_strict = True

    configure_services(c, settings)


# the environment of the hub that its own services need too
SERVICE_ENV = (
    PLATFORM_ENV,
    "VISITING_STATE_DIR",
    "VISITING_DATA_ROOT",
    "VISITING_DATABASE_URL",
    CLOCK_FILE_ENV,
    "PATH",
)


def configure_services(c, settings: HubSettings) -> None:
    """The hub-managed services, each with exactly the scopes it uses.

    Each service ends when the hub that started it ends (VISITING_HUB_PID, see
    hub.services._base); the hub restarts one whose process exits and records
    it for the admin page (hub.plugins.service_restarts).
    """
    from hub.plugins.service_restarts import watch_managed_services
    from hub.sites.containers import service_token

    env = {var: os.environ[var] for var in SERVICE_ENV if os.environ.get(var)}
    env[PLATFORM_ENV] = str(settings.platform_dir)
    env["VISITING_STATE_DIR"] = str(settings.state_dir)
    # this function runs in the hub's process, the services' parent
    env[HUB_PID_ENV] = str(os.getpid())
    watch_managed_services(settings.state_dir, settings.service_poll_seconds)
    python = sys.executable
    c.JupyterHub.services = [
        {
            # the intake for the guard's events; a server's own token identifies the sender
            "name": "audit",
            "url": f"http://127.0.0.1:{settings.audit_port}",
            "command": [python, "-m", "hub.services.audit"],
            "environment": env,
            "display": False,
        },
        {
            # stops servers whose approval no longer allows them; the admin service asks it
            # to act at once after a suspension or revocation
            "name": "enforcer",
            "url": f"http://127.0.0.1:{settings.enforcer_port}",
            "command": [
                python,
                "-m",
                "hub.services.enforcer.application",
                f"--interval={settings.enforcer_interval:g}",
            ],
            "environment": env,
            "display": False,
        },
        {
            # the secretariat's and site admins' API and page; roles are checked inside
            "name": "admin",
            "url": f"http://127.0.0.1:{settings.admin_port}",
            "command": [python, "-m", "hub.services.admin"],
            "environment": dict(
                env,
                VISITING_ENFORCER_URL=f"http://127.0.0.1:{settings.enforcer_port}/services/enforcer/",
            ),
            "oauth_no_confirm": True,
            "display": True,
        },
        {
            # datasets and counts of people for planning a study, and the user guide;
            # asks the gateways for counts with its own token
            "name": "catalogue",
            "url": f"http://127.0.0.1:{settings.catalogue_port}",
            "command": [python, "-m", "hub.services.catalogue"],
            "environment": dict(env, VISITING_HUB_URL=settings.hub_url),
            "api_token": service_token(settings.state_dir, "catalogue"),
            "oauth_no_confirm": True,
            "display": True,
        },
    ]
    gateways = configure_gateways(c, settings, env)
    admin = next(s for s in c.JupyterHub.services if s["name"] == "admin")
    admin["environment"]["VISITING_SERVICE_HEALTH"] = json.dumps(
        service_health_urls(c.JupyterHub.services)
    )
    c.JupyterHub.load_roles = [
        {"name": "enforcer", "services": ["enforcer"], "scopes": list(ENFORCER_SCOPES)},
        {"name": "admin-service", "services": ["admin"], "scopes": list(ADMIN_SCOPES)},
        # the catalogue asks every site's gateway for counts of people (and nothing else:
        # the gateways decide that)
        {
            "name": "catalogue-service",
            "services": ["catalogue"],
            "scopes": [f"access:services!service={g}" for g in gateways],
        },
        # a person may use every site's gateway and open the admin service and the
        # catalogue; each decides by approval or platform role
        {
            "name": "user",
            "scopes": [
                "self",
                "list:services",
                "read:services",
                "access:services!service=admin",
                "access:services!service=catalogue",
            ]
            + [f"access:services!service={g}" for g in gateways],
        },
    ]
    # the token in a researcher's container: the server's own, plus the gateways
    c.SiteSpawner.server_token_scopes = [
        "users:activity!user",
        "access:servers!server",
        "read:users:name!user",
        "list:services",
        "read:services",
        "access:services!service=catalogue",
    ] + [f"access:services!service={g}" for g in gateways]


def service_health_urls(services: list[dict]) -> dict[str, str]:
    """name -> the health route of each service the hub knows by address, for the admin page."""
    return {
        s["name"]: f"{s['url'].rstrip('/')}/services/{s['name']}/health"
        for s in services
        if s.get("url")
    }


def configure_gateways(c, settings: HubSettings, env: dict) -> list[str]:
    """One federation gateway service per site; returns their service names.

    Without site containers (the tests of the hub alone) each gateway runs as a
    hub-managed process beside the hub, over the site's data folder. With site
    containers the gateway is a container on the site's network (see
    hub.sites.containers.ensure_gateway), and the hub knows it by its address and token.
    """
    if not (settings.platform_dir / "platform.yaml").exists():
        return []  # no platform yet: nothing to federate (the authenticator says what is missing)
    platform = load_platform(settings.platform_dir)
    ports = local_gateway_ports(platform.sites, settings.gateway_ports)
    from hub.sites.containers import disclosure_json

    names = []
    for site in platform.sites.values():
        name = f"gateway-{site.id}"
        names.append(name)
        if settings.sites:
            from hub.sites.containers import GATEWAY_PORT, SitePlan, gateway_token

            plan = SitePlan.for_site(site)
            c.JupyterHub.services.append(
                {
                    "name": name,
                    "url": f"http://{plan.federation_ip}:{GATEWAY_PORT}",
                    "api_token": gateway_token(settings.state_dir, site.id),
                    "display": False,
                }
            )
            continue
        port = ports[site.id]
        c.JupyterHub.services.append(
            {
                "name": name,
                "url": f"http://127.0.0.1:{port}",
                "command": [sys.executable, "-m", "extensions.federation.gateway"],
                "environment": dict(
                    env,
                    VISITING_SITE=site.id,
                    VISITING_SITE_DATA=str(platform.site_data_dir(site.id)),
                    VISITING_AUDIT_URL=f"{settings.hub_url.rstrip('/')}/services/audit/",
                    VISITING_QUERY_AUDIT_DIR=str(settings.state_dir / "query-audit" / site.id),
                    VISITING_DISCLOSURE=disclosure_json(platform),
                ),
                "display": False,
            }
        )
    return names
