"""The gateway's tornado application, its configuration from the environment, and `main`."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from tornado import ioloop, web

from extensions.contracts.clock import clock_from_env
from extensions.contracts.environment import (
    AUDIT_URL,
    DISCLOSURE,
    GATEWAY_SERVICES,
    GATEWAY_TASKS,
    QUERY_AUDIT_DIR,
    SITE,
    SITE_DATA,
)
from extensions.contracts.service import follow_the_hub, health_route, service_port

from .decisions import Gateway
from .handlers import DatasetsHandler, TaskHandler
from .models import GatewayConfig, log

#: the command's description (the first line of the package's docstring)
DESCRIPTION = (
    "The federation gateway of one site: allow-listed aggregate tasks, disclosure control, audit."
)


def make_app(gateway: Gateway, prefix: str) -> web.Application:
    prefix = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
    args = {"gateway": gateway}
    return web.Application(
        [
            (prefix + "api/datasets", DatasetsHandler, args),
            (prefix + r"api/tasks/([a-z_]+)", TaskHandler, args),
            health_route(prefix),
        ]
    )


def config_from_env(environ=None) -> GatewayConfig:
    env = os.environ if environ is None else environ
    site = env[SITE]
    allowed = env.get(GATEWAY_TASKS, "*")
    return GatewayConfig(
        site=site,
        data_root=Path(env.get(SITE_DATA, "/data")),
        hub_api_url=env["JUPYTERHUB_API_URL"],
        token=env["JUPYTERHUB_API_TOKEN"],
        audit_url=env.get(AUDIT_URL) or None,
        scheduler=env.get("DASK_SCHEDULER_ADDRESS") or None,
        allowed_tasks=tuple(t.strip() for t in allowed.split(",") if t.strip()),
        services=tuple(
            t.strip() for t in env.get(GATEWAY_SERVICES, "catalogue").split(",") if t.strip()
        ),
        audit_dir=Path(env[QUERY_AUDIT_DIR]) if env.get(QUERY_AUDIT_DIR) else None,
    )


def disclosure_from_env(environ=None):
    """The platform's disclosure rules, from VISITING_DISCLOSURE (JSON); whoever starts the
    gateway sets it (`hub.sites.containers.gateway_env` in a site container, the hub's
    configuration beside the hub). A gateway without them does not start."""
    from extensions.federation.tasks.base import DisclosureRules

    env = os.environ if environ is None else environ
    if not env.get(DISCLOSURE):
        raise SystemExit(
            f"{DISCLOSURE} is not set: the gateway needs the platform's disclosure rules"
        )
    doc = json.loads(env[DISCLOSURE])
    return DisclosureRules(
        min_cell_count=int(doc["min_cell_count"]),
        min_minor_allele_count=int(doc["min_minor_allele_count"]),
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("--port", type=int, help="port (default: from JUPYTERHUB_SERVICE_URL)")
    parser.add_argument("--ip", default="127.0.0.1", help="address to listen on")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="[gateway %(levelname)s %(asctime)s] %(message)s"
    )
    follow_the_hub()
    config = config_from_env()
    gateway = Gateway(config, disclosure_from_env(), clock_from_env())
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", f"/services/{config.service_name}/")
    url = os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8090")
    port = args.port or service_port(url)
    make_app(gateway, prefix).listen(port, address=args.ip, xheaders=True)
    log.info("gateway of site %s on %s:%d%s", config.site, args.ip, port, prefix)
    try:
        ioloop.IOLoop.current().start()
    except KeyboardInterrupt:  # SIGINT from the hub (SIGTERM: extensions.contracts.service)
        log.info("stopped")
    return 0
