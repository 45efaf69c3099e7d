"""The hub-managed services: audit intake, enforcer, admin, catalogue, federation gateways."""

from __future__ import annotations

from extensions.contracts.service import service_port  # noqa: F401

#: the first of the gateways' loopback ports when they run beside the hub (no site containers)
FIRST_GATEWAY_PORT = 8090


def local_gateway_ports(site_ids, given: dict[str, int] | None = None) -> dict[str, int]:
    """site -> the port of its gateway beside the hub: as given, else 8090, 8091, ... in order."""
    given = given or {}
    return {site: given.get(site, FIRST_GATEWAY_PORT + i) for i, site in enumerate(site_ids)}
