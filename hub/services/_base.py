"""What every hub-managed service shares.

A service's life tied to the hub's and its health route are a contract with
the hub (and with a site's gateway, which is no hub service):
`extensions.contracts.service`.
"""

from __future__ import annotations

from extensions.contracts.service import (  # noqa: F401 - the services' one import
    HUB_PID_ENV,
    HealthHandler,
    follow_the_hub,
    health_route,
)
