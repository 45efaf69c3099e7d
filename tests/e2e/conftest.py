"""The e2e tier's one demo stack (IdP, hub, services, the five sites), started once for the
tier and shared by the browser journeys; each journey works as people of its own and stops
their servers (test_airlock_journey: yamada at ncc; test_journey: tanaka at nig, suspended
at its end). Package-scoped: the stack is gone when the tier's last test ends, before the
integration tier starts its own stack on the same sites (a stack kept to the session's end
left a server at ncc and two hubs' load on the machine while the integration tests ran)."""

from __future__ import annotations

import pytest

from hub.demo.stack import Stack, StackConfig


@pytest.fixture(scope="package")
def stack(tmp_path_factory):
    state = tmp_path_factory.mktemp("journey-stack")
    s = Stack(StackConfig.ephemeral(state, sites=True))
    s.ensure_data()
    s.start_sites()
    s.start()
    yield s
    s.stop()
