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
