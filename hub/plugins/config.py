"""Wiring of JupyterHub for the platform, as pure functions over a traitlets Config.

`jupyterhub_config.py` stays a few lines: it reads HubSettings (hub.plugins.settings)
from the environment and calls `configure(c, settings)`. Tests call the same
function on a bare `Config()`.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from extensions.contracts.environment import (
    AUDIT_URL,
    DISCLOSURE,
    HUB_URL,
    QUERY_AUDIT_DIR,
    SITE,
    SITE_DATA,
)
from hub.platform.policy import load_platform
from hub.platform.traits import PLATFORM_ENV
from hub.plugins.home import site_rows
from hub.plugins.settings import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    SERVICE_ENV,
    ConfigError,
    HubSettings,
)
from hub.services import local_gateway_ports
from hub.services._base import HUB_PID_ENV
from hub.services.admin.application import SCOPES as ADMIN_SCOPES
from hub.services.enforcer.application import SCOPES as ENFORCER_SCOPES

# what other modules import from here: the settings live in hub.plugins.settings
__all__ = [
    "DEMO_CLIENT_ID",
    "DEMO_CLIENT_SECRET",
    "SERVICE_ENV",
    "ConfigError",
    "HubSettings",
    "configure",
    "discover_oidc",
]


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
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    discovery = discovery if discovery is not None else discover_oidc(settings.idp_url)
    configure_hub(c, settings)
    configure_proxy(c, settings)
    configure_spawner(c, settings)
    configure_authenticator(c, settings, discovery)
    configure_services(c, settings)


def _hub_address(settings: HubSettings) -> tuple[str, int]:
    """The host and port of the hub's public address."""
    url = urlparse(settings.hub_url)
    return url.hostname or "127.0.0.1", url.port or 80


def configure_hub(c, settings: HubSettings) -> None:
    """Where the hub listens and keeps its state; servers outlive a hub restart."""
    state = settings.state_dir
    host, port = _hub_address(settings)
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


def configure_proxy(c, settings: HubSettings) -> None:
    host, _ = _hub_address(settings)
    c.ConfigurableHTTPProxy.api_url = f"http://{host}:{settings.proxy_api_port}"
    c.ConfigurableHTTPProxy.command = list(settings.proxy_command)
    c.ConfigurableHTTPProxy.pid_file = str(settings.state_dir / "proxy.pid")


def configure_spawner(c, settings: HubSettings) -> None:
    """One server per site, started by SiteSpawner; the home page lists the sites."""
    _, port = _hub_address(settings)
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


def configure_authenticator(c, settings: HubSettings, discovery: dict) -> None:
    """OIDC login through the provider's endpoints; approvals are looked up again before a
    spawn and on every request older than auth_refresh_age."""
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


# ---------------------------------------------------------------------------
# the hub-managed services


def configure_services(c, settings: HubSettings) -> None:
    """The hub-managed services, each with exactly the scopes it uses.

    Each service ends when the hub that started it ends (HUB_PID_ENV, see
    extensions.contracts.service); the hub restarts one whose process exits and records
    it for the admin page (hub.plugins.service_restarts).
    """
    from hub.plugins.service_restarts import watch_managed_services

    env = service_env(settings)
    watch_managed_services(settings.state_dir, settings.service_poll_seconds)
    c.JupyterHub.services = [
        audit_service(settings, env),
        enforcer_service(settings, env),
        admin_service(settings, env),
        catalogue_service(settings, env),
        export_service(settings, env),
    ]
    gateways = configure_gateways(c, settings, env)
    admin = next(s for s in c.JupyterHub.services if s["name"] == "admin")
    admin["environment"]["VISITING_SERVICE_HEALTH"] = json.dumps(
        service_health_urls(c.JupyterHub.services)
    )
    c.JupyterHub.load_roles = service_roles(gateways)
    c.SiteSpawner.server_token_scopes = server_token_scopes(gateways)


def service_env(settings: HubSettings) -> dict[str, str]:
    """The environment every service starts with: the hub's platform and state, and the
    hub's pid (this runs in the hub's process, the services' parent)."""
    env = dict(settings.service_environment)
    env[PLATFORM_ENV] = str(settings.platform_dir)
    env["VISITING_STATE_DIR"] = str(settings.state_dir)
    env[HUB_PID_ENV] = str(os.getpid())
    return env


def audit_service(settings: HubSettings, env: dict) -> dict:
    """The intake for the guard's events; a server's own token identifies the sender."""
    return {
        "name": "audit",
        "url": f"http://127.0.0.1:{settings.audit_port}",
        "command": [sys.executable, "-m", "hub.services.audit"],
        "environment": env,
        "display": False,
    }


def enforcer_service(settings: HubSettings, env: dict) -> dict:
    """Stops servers whose approval no longer allows them; the admin service asks it to
    act at once after a suspension or revocation."""
    return {
        "name": "enforcer",
        "url": f"http://127.0.0.1:{settings.enforcer_port}",
        "command": [
            sys.executable,
            "-m",
            "hub.services.enforcer.application",
            f"--interval={settings.enforcer_interval:g}",
        ],
        "environment": env,
        "display": False,
    }


def with_sites(settings: HubSettings, env: dict) -> dict:
    """A service's environment, saying when the sites run in containers: the export service
    freezes files there, and the admin service reads the frozen files from there."""
    return dict(env, VISITING_SITES="1") if settings.sites else dict(env)


def admin_service(settings: HubSettings, env: dict) -> dict:
    """The secretariat's and site admins' API and page; roles are checked inside."""
    enforcer_url = f"http://127.0.0.1:{settings.enforcer_port}/services/enforcer/"
    return {
        "name": "admin",
        "url": f"http://127.0.0.1:{settings.admin_port}",
        "command": [sys.executable, "-m", "hub.services.admin"],
        "environment": dict(with_sites(settings, env), VISITING_ENFORCER_URL=enforcer_url),
        "oauth_no_confirm": True,
        "display": True,
    }


def catalogue_service(settings: HubSettings, env: dict) -> dict:
    """Datasets and counts of people for planning a study, and the user guide; asks the
    gateways for counts with its own token."""
    from hub.sites.containers import service_token

    return {
        "name": "catalogue",
        "url": f"http://127.0.0.1:{settings.catalogue_port}",
        "command": [sys.executable, "-m", "hub.services.catalogue"],
        "environment": dict(env, **{HUB_URL: settings.hub_url}),
        "api_token": service_token(settings.state_dir, "catalogue"),
        "oauth_no_confirm": True,
        "display": True,
    }


def export_service(settings: HubSettings, env: dict) -> dict:
    """The export airlock: requests to take files out of a site, their review and release;
    it freezes files in site containers when the sites run in containers."""
    environment = with_sites(settings, env)
    return {
        "name": "export",
        "url": f"http://127.0.0.1:{settings.export_port}",
        "command": [sys.executable, "-m", "hub.services.export"],
        "environment": environment,
        "display": False,
    }


def service_roles(gateways: list[str]) -> list[dict]:
    """The hub's roles: each service's exact scopes, and what every person may open."""
    gateway_access = [f"access:services!service={g}" for g in gateways]
    return [
        {"name": "enforcer", "services": ["enforcer"], "scopes": list(ENFORCER_SCOPES)},
        {"name": "admin-service", "services": ["admin"], "scopes": list(ADMIN_SCOPES)},
        # the catalogue asks every site's gateway for counts of people (and nothing else:
        # the gateways decide that)
        {"name": "catalogue-service", "services": ["catalogue"], "scopes": gateway_access},
        # the export service checks a caller's token with the token itself and reads the
        # rest from the registry: it has no role (hub.services.export.application.SCOPES)
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
                "access:services!service=export",
            ]
            + gateway_access,
        },
    ]


def server_token_scopes(gateways: list[str]) -> list[str]:
    """The token in a researcher's container: the server's own, plus the gateways."""
    return [
        "users:activity!user",
        "access:servers!server",
        "read:users:name!user",
        "list:services",
        "read:services",
        "access:services!service=catalogue",
        # the export airlock's requests from inside the server (extensions.guard.export)
        "access:services!service=export",
    ] + [f"access:services!service={g}" for g in gateways]


def service_health_urls(services: list[dict]) -> dict[str, str]:
    """name -> the health route of each service the hub knows by address, for the admin page."""
    return {
        s["name"]: f"{s['url'].rstrip('/')}/services/{s['name']}/health"
        for s in services
        if s.get("url")
    }


# ---------------------------------------------------------------------------
# the sites' federation gateways


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
    names = []
    for site in platform.sites.values():
        if settings.sites:
            service = site_gateway_service(settings, site)
        else:
            service = local_gateway_service(settings, env, platform, site, ports[site.id])
        c.JupyterHub.services.append(service)
        names.append(service["name"])
    return names


def site_gateway_service(settings: HubSettings, site) -> dict:
    """A gateway in its site's container, known to the hub by its address and token."""
    from hub.sites.containers import gateway_token
    from hub.sites.plan import GATEWAY_PORT, SitePlan

    plan = SitePlan.for_site(site)
    return {
        "name": f"gateway-{site.id}",
        "url": f"http://{plan.federation_ip}:{GATEWAY_PORT}",
        "api_token": gateway_token(settings.state_dir, site.id),
        "display": False,
    }


def local_gateway_service(settings: HubSettings, env: dict, platform, site, port: int) -> dict:
    """A gateway as a hub-managed process beside the hub, over the site's data folder."""
    from hub.sites.containers import disclosure_json

    return {
        "name": f"gateway-{site.id}",
        "url": f"http://127.0.0.1:{port}",
        "command": [sys.executable, "-m", "extensions.federation.gateway"],
        "environment": dict(
            env,
            **{
                SITE: site.id,
                SITE_DATA: str(platform.site_data_dir(site.id)),
                AUDIT_URL: f"{settings.hub_url.rstrip('/')}/services/audit/",
                QUERY_AUDIT_DIR: str(settings.state_dir / "query-audit" / site.id),
                DISCLOSURE: disclosure_json(platform),
            },
        ),
        "display": False,
    }
