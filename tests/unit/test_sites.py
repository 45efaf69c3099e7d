"""The sites' address plan and firewall rules (pure logic; the real engine is in tests/integration)."""

from __future__ import annotations

import ipaddress

import pytest

from hub.sites import FORWARD_CHAIN, INPUT_CHAIN, SitePlan, firewall_rules, resolve_endpoint

NIG = SitePlan("nig", "visiting-site-nig", ipaddress.IPv4Network("172.30.1.0/24"))


def test_address_plan():
    assert NIG.bridge == "vis-nig"
    assert NIG.gateway == "172.30.1.1"
    assert NIG.scheduler_address == "tcp://172.30.1.2:8786"
    assert NIG.worker_ip(1) == "172.30.1.3"
    assert str(NIG.users_range) == "172.30.1.128/25"
    long = SitePlan("abcdefghijklmnop", "n", ipaddress.IPv4Network("10.9.0.0/24"))
    assert len(long.bridge) <= 15  # Linux interface names


def test_firewall_rules_in_order():
    rules = firewall_rules([NIG], [8081, 8000])
    inp = [" ".join(r) for r in rules[INPUT_CHAIN]]
    assert inp == [
        "-i vis-nig -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "-i vis-nig -p tcp --dport 8000 -j ACCEPT",
        "-i vis-nig -p tcp --dport 8081 -j ACCEPT",
        "-i vis-nig -j DROP",
    ]
    fwd = [" ".join(r) for r in rules[FORWARD_CHAIN]]
    # replies pass; researchers' servers reach nothing on the bridge (not each other, not the
    # site's Dask cluster, which runs only the gateway's tasks) and nothing off it
    assert fwd == [
        "-i vis-nig -o vis-nig -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN",
        "-i vis-nig -o vis-nig -s 172.30.1.128/25 -j DROP",
        "-i vis-nig -o vis-nig -d 172.30.1.128/25 -j DROP",
        "-i vis-nig ! -o vis-nig -j DROP",
    ]


@pytest.mark.parametrize(
    "env,expected",
    [
        pytest.param({"VISITING_DOCKER_HOST": "unix:///x.sock"}, "unix:///x.sock", id="override"),
        pytest.param({}, None, id="recorded-or-default"),
    ],
)
def test_resolve_endpoint(monkeypatch, env, expected):
    monkeypatch.delenv("VISITING_DOCKER_HOST", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert resolve_endpoint("tcp://site:2376") == "tcp://site:2376"
    got = resolve_endpoint("local")
    assert got == expected if expected else got.startswith("unix://")
