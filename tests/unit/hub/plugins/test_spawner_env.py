"""What the spawner tells a site's server about egress: the platform's rules and the site's
terminal mode, under the names the gate reads (extensions/guard/context.py).

Rule checked: "Security" (POLICY.md): the gate in every researcher's container applies the
platform file's egress rules, and terminals are off where the site says so.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from types import SimpleNamespace

import pytest
from dockerspawner import DockerSpawner

from extensions.contracts.egress import EgressRules
from extensions.contracts.environment import EGRESS_RULES, GUARD_RULES, TERMINALS
from extensions.guard.context import GuardRules, terminals_from_env
from hub.platform.policy import Quota, load_platform
from hub.plugins.spawner import SiteSpawner
from tests.conftest import DEMO_DIR


def env_at(site: str, monkeypatch) -> dict[str, str]:
    monkeypatch.setattr(DockerSpawner, "get_env", lambda self: {})
    monkeypatch.delenv("VISITING_CLOCK_FILE", raising=False)
    spawner = SiteSpawner(
        platform_dir=str(DEMO_DIR), orm_spawner=SimpleNamespace(name=site, server=None)
    )
    spawner._approval = SimpleNamespace(
        approval_id="J-DU000101",
        ends_before=datetime(2030, 1, 1, tzinfo=UTC),
        period=SimpleNamespace(end=date(2029, 12, 31)),
        datasets_at=lambda site_id: ["JGAD000101"],
    )
    spawner.quota_for = lambda site, approval: Quota()
    return spawner.get_env()


@pytest.mark.parametrize(
    "site,terminals",
    [
        ("nig", "guarded"),
        ("ncc", "guarded"),
        ("ncgm", "guarded"),
        ("tommo", "guarded"),
        ("imsut", "off"),
    ],  # fmt: skip
)
def test_the_gate_gets_the_rules_and_the_sites_terminal_mode(site, terminals, monkeypatch):
    env = env_at(site, monkeypatch)
    assert EgressRules.from_env(env[EGRESS_RULES]) == EgressRules()
    assert env[TERMINALS] == terminals
    assert terminals_from_env(env) == terminals


def test_the_guard_learns_whether_its_site_lets_files_out_only_through_the_airlock(monkeypatch):
    """Rule "Publication": at a site whose `downloads` is `airlock` the guard refuses every
    direct download; the demo keeps direct downloads everywhere."""
    env = env_at("nig", monkeypatch)
    assert GuardRules.from_json(env[GUARD_RULES]).downloads == "direct"
    platform = load_platform(DEMO_DIR)
    nig = replace(platform.sites["nig"], downloads="airlock")
    airlock = replace(platform, sites={**platform.sites, "nig": nig})
    monkeypatch.setattr(SiteSpawner, "platform", property(lambda self: airlock))
    rules = GuardRules.from_json(env_at("nig", monkeypatch)[GUARD_RULES])
    assert rules.airlock and rules.max_bytes == platform.download.max_bytes
