"""The hub-managed services: audit intake, enforcer, admin, catalogue, federation gateways."""

from __future__ import annotations

from urllib.parse import urlsplit


def service_port(url: str) -> int:
    """The port a service listens on, from its JUPYTERHUB_SERVICE_URL (e.g. http://127.0.0.1:8084).

    A URL without an explicit port is refused: the hub always gives its services one.
    """
    try:
        port = urlsplit(url).port
    except ValueError as e:
        raise ValueError(f"JUPYTERHUB_SERVICE_URL {url!r}: {e}") from None
    if port is None:
        raise ValueError(f"JUPYTERHUB_SERVICE_URL {url!r} names no port")
    return port


#: the first of the gateways' loopback ports when they run beside the hub (no site containers)
FIRST_GATEWAY_PORT = 8090


def local_gateway_ports(site_ids, given: dict[str, int] | None = None) -> dict[str, int]:
    """site -> the port of its gateway beside the hub: as given, else 8090, 8091, ... in order."""
    given = given or {}
    return {site: given.get(site, FIRST_GATEWAY_PORT + i) for i, site in enumerate(site_ids)}
