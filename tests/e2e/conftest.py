"""The e2e tier's one demo stack (IdP, hub, services, the five sites), started once for the
session and shared by the browser journeys; each journey works as people of its own
(test_airlock_journey: yamada at ncc; test_journey: tanaka at nig, suspended at its end)."""

from __future__ import annotations

import pytest

from hub.demo.stack import Stack, StackConfig


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    state = tmp_path_factory.mktemp("journey-stack")
    s = Stack(StackConfig.ephemeral(state, sites=True))
    s.ensure_data()
    s.start_sites()
    s.start()
    yield s
    s.stop()
