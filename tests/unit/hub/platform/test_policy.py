"""Platform files: the demo validates; every kind of bad input is named with file, field and reason.

Rule checked: "Changes" and "Who may use" (POLICY.md) start from platform files that
either load whole or not at all.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from extensions.contracts.egress import EgressRules
from hub.platform.policy import PolicyError, SiteDask, load_policy_dir, parse_size


def test_demo_platform_loads(policy_copy):
    bundle = load_policy_dir(policy_copy)
    p = bundle.platform
    assert sorted(p.sites) == ["imsut", "ncc", "ncgm", "nig", "tommo"]
    assert p.datasets["JGAD000101"].site == "nig"
    assert p.datasets["JGAD000102"].kind == "raw"
    assert set(bundle.approvals) == {"J-DU000101", "J-DU000102", "J-DU000103"}
    tanaka = bundle.approvals["J-DU000101"]
    sites = {p.datasets[d].site for d in tanaka.datasets}
    assert len(sites) >= 3
    assert bundle.approvals["J-DU000101"].handlers == ("tanaka", "yamada")
    assert bundle.accounts["admin-nig"].roles == ("site-admin:nig",)
    assert bundle.accounts["jimu"].roles == ("secretariat",)
    assert p.sites["nig"].quota.memory == 2 * 1024**3
    assert bundle.warnings == ()


def _edit_yaml(path: Path, change):
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))


def _approval(d, change):
    _edit_yaml(d / "approvals" / "J-DU000101.yaml", change)


def _platform(d, change):
    _edit_yaml(d / "platform.yaml", change)


def _users(d, change):
    _edit_yaml(d / "users.yaml", change)


def _write(rel, text):
    def apply(d):
        (d / rel).write_text(text)

    return apply


def _set_period(start, end):
    def change(doc):
        doc["period"] = {"start": start, "end": end}

    return change


# (id, how to break the directory, file the error names, field, reason pattern)
BAD_INPUTS = [
    (
        "unknown-dataset",
        lambda d: _approval(d, lambda a: a["datasets"].append("JGAD000999")),
        "J-DU000101.yaml",
        "datasets[5]",
        "unknown dataset 'JGAD000999'",
    ),
    (
        "end-before-start",
        lambda d: _approval(d, _set_period("2030-01-01", "2029-12-31")),
        "J-DU000101.yaml",
        "period.end",
        "before the start",
    ),
    (
        "impossible-date",
        lambda d: _approval(d, _set_period("2024-02-30", "2030-01-01")),
        "J-DU000101.yaml",
        "period.start",
        "not a valid date",
    ),
    (
        "date-not-iso",
        lambda d: _approval(d, _set_period("1 April 2024", "2030-01-01")),
        "J-DU000101.yaml",
        "period.start",
        "expected form",
    ),
    (
        "duplicate-approval-id",
        _write(
            "approvals/copy.yaml",
            (
                Path(__file__).resolve().parents[4] / "policies/demo/approvals/J-DU000101.yaml"
            ).read_text(),
        ),
        "copy.yaml",
        "approval_id",
        "also defined in",
    ),
    (
        "handler-listed-twice",
        lambda d: _approval(d, lambda a: a["handlers"].append("tanaka")),
        "J-DU000101.yaml",
        "handlers[2]",
        "listed twice",
    ),
    (
        "dataset-listed-twice",
        lambda d: _approval(d, lambda a: a["datasets"].append("JGAD000101")),
        "J-DU000101.yaml",
        "datasets[5]",
        "listed twice",
    ),
    (
        "missing-purpose",
        lambda d: _approval(d, lambda a: a.pop("purpose")),
        "J-DU000101.yaml",
        "purpose",
        "missing field",
    ),
    (
        "missing-period-end",
        lambda d: _approval(d, lambda a: a["period"].pop("end")),
        "J-DU000101.yaml",
        "period.end",
        "missing field",
    ),
    (
        "empty-handlers",
        lambda d: _approval(d, lambda a: a.update(handlers=[])),
        "J-DU000101.yaml",
        "handlers",
        "should be non-empty",
    ),
    (
        "unknown-field",
        lambda d: _approval(d, lambda a: a.update(colour="blue")),
        "J-DU000101.yaml",
        "(top level)",
        "colour",
    ),
    (
        "bad-handler-name",
        lambda d: _approval(d, lambda a: a.update(handlers=["Tanaka Hiroshi"])),
        "J-DU000101.yaml",
        "handlers[0]",
        "expected form",
    ),
    (
        "bad-quota-size",
        lambda d: _approval(d, lambda a: a.update(quota={"memory": "lots"})),
        "J-DU000101.yaml",
        "quota.memory",
        "not a size",
    ),
    (
        "zero-cpu",
        lambda d: _approval(d, lambda a: a.update(quota={"cpu": 0})),
        "J-DU000101.yaml",
        "quota.cpu",
        "less than or equal",
    ),
    (
        "yaml-does-not-parse",
        _write("approvals/broken.yaml", "approval_id: [J-DU9\nperiod: {"),
        "broken.yaml",
        "line",
        "YAML does not parse",
    ),
    (
        "duplicate-yaml-key",
        _write("approvals/dup.yaml", "approval_id: A-1\napproval_id: A-2\n"),
        "dup.yaml",
        "line 2",
        "duplicate key 'approval_id'",
    ),
    (
        "approval-not-a-mapping",
        _write("approvals/list.yaml", "- a\n- b\n"),
        "list.yaml",
        "(top level)",
        "is not of type 'object'",
    ),
    (
        "platform-missing",
        lambda d: (d / "platform.yaml").unlink(),
        "platform.yaml",
        "",
        "file not found",
    ),
    (
        "site-listed-twice",
        lambda d: _platform(d, lambda p: p["sites"].append(dict(p["sites"][0], datasets=[]))),
        "platform.yaml",
        "sites[5].id",
        "listed twice",
    ),
    (
        "dataset-at-two-sites",
        lambda d: _platform(
            d, lambda p: p["sites"][1]["datasets"].append(p["sites"][0]["datasets"][0])
        ),
        "platform.yaml",
        "sites[1].datasets[2].id",
        "already held by site 'nig'",
    ),
    (
        "default-image-not-allowed",
        lambda d: _platform(d, lambda p: p["sites"][0].update(default_image="evil:latest")),
        "platform.yaml",
        "sites[0].default_image",
        "not in the site's images",
    ),
    (
        "network-shared",
        lambda d: _platform(
            d, lambda p: p["sites"][1]["docker"].update(network="visiting-site-nig")
        ),
        "platform.yaml",
        "sites",
        "used by more than one site",
    ),
    (
        "bad-site-id",
        lambda d: _platform(d, lambda p: p["sites"][0].update(id="NIG!")),
        "platform.yaml",
        "sites[0].id",
        "expected form",
    ),
    (
        "bad-dataset-id",
        lambda d: _platform(d, lambda p: p["sites"][0]["datasets"][0].update(id="DS-1")),
        "platform.yaml",
        "sites[0].datasets[0].id",
        "expected form",
    ),
    (
        "bad-dataset-kind",
        lambda d: _platform(d, lambda p: p["sites"][0]["datasets"][0].update(kind="secret")),
        "platform.yaml",
        "sites[0].datasets[0].kind",
        "not one of",
    ),
    (
        "subnet-shared",
        lambda d: _platform(d, lambda p: p["sites"][1]["docker"].update(subnet="172.30.1.0/24")),
        "platform.yaml",
        "sites",
        "subnet 172.30.1.0/24 is used by more than one site",
    ),
    (
        "subnet-host-bits-set",
        lambda d: _platform(d, lambda p: p["sites"][0]["docker"].update(subnet="172.30.1.7/24")),
        "platform.yaml",
        "sites[0].docker.subnet",
        "not a network: 172.30.1.7/24 has host bits set",
    ),
    (
        "subnet-not-a-24",
        lambda d: _platform(d, lambda p: p["sites"][0]["docker"].update(subnet="10.0.0.0/8")),
        "platform.yaml",
        "sites[0].docker.subnet",
        "expected form",
    ),
    (
        "bad-docker-endpoint",
        lambda d: _platform(d, lambda p: p["sites"][0]["docker"].update(endpoint="docker.sock")),
        "platform.yaml",
        "sites[0].docker.endpoint",
        "expected form",
    ),
    (
        "missing-site-quota",
        lambda d: _platform(d, lambda p: p["sites"][0].pop("quota")),
        "platform.yaml",
        "sites[0].quota",
        "missing field",
    ),
    (
        "ban-range-inverted",
        lambda d: _platform(d, lambda p: p["rules"]["sanctions"].update(ban_months_min=13)),
        "platform.yaml",
        "rules.sanctions",
        "larger than",
    ),
    (
        "egress-alert-over-cap",
        lambda d: _platform(d, lambda p: p["rules"]["egress"].update(alert_bytes="1G")),
        "platform.yaml",
        "rules.egress.alert_bytes",
        r"the alert \(1,073,741,824 bytes\) is above the cap \(268,435,456\)",
    ),
    (
        "egress-people-alert-over-cap",
        lambda d: _platform(d, lambda p: p["rules"]["egress"].update(cap_people=20)),
        "platform.yaml",
        "rules.egress.alert_people",
        r"the alert \(30 people\) is above the cap \(20\)",
    ),
    (
        "egress-size-nonsense",
        lambda d: _platform(d, lambda p: p["rules"]["egress"].update(cap_bytes="lots")),
        "platform.yaml",
        "rules.egress.cap_bytes",
        "not a size",
    ),
    (
        "egress-zero-people",
        lambda d: _platform(d, lambda p: p["rules"]["egress"].update(alert_people=0)),
        "platform.yaml",
        "rules.egress.alert_people",
        "less than the minimum of 1",
    ),
    (
        "egress-unknown-rule",
        lambda d: _platform(d, lambda p: p["rules"]["egress"].update(daily_bytes=5)),
        "platform.yaml",
        "rules.egress",
        "daily_bytes",
    ),
    (
        "terminals-unknown-mode",
        lambda d: _platform(d, lambda p: p["sites"][1].update(terminals="open")),
        "platform.yaml",
        "sites[1].terminals",
        "'open' is not one of",
    ),
    (
        "dask-no-workers",
        lambda d: _platform(d, lambda p: p["sites"][0]["dask"].update(workers=0)),
        "platform.yaml",
        "sites[0].dask.workers",
        "0 is less than the minimum of 1",
    ),
    (
        "dask-more-workers-than-addresses",
        lambda d: _platform(d, lambda p: p["sites"][2]["dask"].update(workers=14)),
        "platform.yaml",
        "sites[2].dask.workers",
        "14 is greater than the maximum of 13",
    ),
    (
        "dask-fractional-workers",
        lambda d: _platform(d, lambda p: p["sites"][0]["dask"].update(workers=1.5)),
        "platform.yaml",
        "sites[0].dask.workers",
        "1.5 is not of type 'integer'",
    ),
    (
        "dask-no-cores",
        lambda d: _platform(d, lambda p: p["sites"][0]["dask"].update(cores=0)),
        "platform.yaml",
        "sites[0].dask.cores",
        "0 is less than the minimum of 0.01",
    ),
    (
        "dask-cores-in-words",
        lambda d: _platform(d, lambda p: p["sites"][0]["dask"].update(cores="two")),
        "platform.yaml",
        "sites[0].dask.cores",
        "'two' is not of type 'number'",
    ),
    (
        "dask-too-many-cores",
        lambda d: _platform(d, lambda p: p["sites"][0]["dask"].update(cores=512)),
        "platform.yaml",
        "sites[0].dask.cores",
        "512 is greater than the maximum of 256",
    ),
    (
        "dask-memory-nonsense",
        lambda d: _platform(d, lambda p: p["sites"][0]["dask"].update(memory="lots")),
        "platform.yaml",
        "sites[0].dask.memory",
        "'lots' is not a size",
    ),
    (
        "dask-memory-zero",
        lambda d: _platform(d, lambda p: p["sites"][0]["dask"].update(memory=0)),
        "platform.yaml",
        "sites[0].dask.memory",
        "0 is not a size",
    ),
    (
        "dask-memory-too-small",
        lambda d: _platform(d, lambda p: p["sites"][3]["dask"].update(memory="128M")),
        "platform.yaml",
        "sites[3].dask.memory",
        r"'128M' is below the 256M a Dask worker needs",
    ),
    (
        "dask-unknown-key",
        lambda d: _platform(d, lambda p: p["sites"][0]["dask"].update(threads=2)),
        "platform.yaml",
        "sites[0].dask",
        "'threads' was unexpected",
    ),
    (
        "dask-not-a-mapping",
        lambda d: _platform(d, lambda p: p["sites"][0].update(dask=2)),
        "platform.yaml",
        "sites[0].dask",
        "2 is not of type 'object'",
    ),
    (
        "user-listed-twice",
        lambda d: _users(d, lambda u: u["users"].append(dict(u["users"][0]))),
        "users.yaml",
        "users[8].username",
        "listed twice",
    ),
    (
        "role-unknown-site",
        lambda d: _users(d, lambda u: u["users"][5].update(roles=["site-admin:osaka"])),
        "users.yaml",
        "users[5].roles[0]",
        "unknown site 'osaka'",
    ),
    (
        "role-not-a-role",
        lambda d: _users(d, lambda u: u["users"][6].update(roles=["root"])),
        "users.yaml",
        "users[6].roles[0]",
        "expected form",
    ),
    (
        "user-without-password",
        lambda d: _users(d, lambda u: u["users"][0].pop("password")),
        "users.yaml",
        "users[0].password",
        "missing field",
    ),
]


@pytest.mark.parametrize(
    "breaker,file,field,reason",
    [pytest.param(*case[1:], id=case[0]) for case in BAD_INPUTS],
)
def test_bad_input_is_named(policy_copy, breaker, file, field, reason):
    breaker(policy_copy)
    with pytest.raises(PolicyError) as info:
        load_policy_dir(policy_copy)
    issues = info.value.issues
    matching = [
        i
        for i in issues
        if i.file.endswith(file) and i.field.startswith(field) and re.search(reason, i.reason)
    ]
    assert matching, f"expected {file}: {field}: {reason!r}; got:\n{info.value}"


def test_demo_egress_rules_and_terminals(policy_copy):
    """The demo keeps the default egress rules; terminals guarded at four sites, off at imsut."""
    p = load_policy_dir(policy_copy).platform
    assert p.egress == EgressRules()
    assert json.loads(p.egress.to_env()) == {
        "alert_bytes": 64 * 1024**2,
        "cap_bytes": 256 * 1024**2,
        "alert_people": 30,
        "cap_people": 100,
        "max_people_per_output": 10,
    }
    assert EgressRules.from_env(p.egress.to_env()) == p.egress
    assert {s.id: s.terminals for s in p.sites.values()} == {
        "nig": "guarded",
        "ncc": "guarded",
        "ncgm": "guarded",
        "tommo": "guarded",
        "imsut": "off",
    }


def test_egress_rules_and_terminals_when_left_out(policy_copy):
    def drop(p):
        del p["rules"]["egress"]
        del p["sites"][4]["terminals"]

    _platform(policy_copy, drop)
    p = load_policy_dir(policy_copy).platform
    assert p.egress == EgressRules() and p.sites["imsut"].terminals == "guarded"


def test_egress_sizes_and_a_bare_off(policy_copy):
    def change(p):
        p["rules"]["egress"] = {"alert_bytes": "1.5M", "cap_bytes": 4194304}

    _platform(policy_copy, change)
    path = policy_copy / "platform.yaml"
    path.write_text(path.read_text().replace("terminals: 'off'", "terminals: off"))
    assert "terminals: off\n" in path.read_text()
    p = load_policy_dir(policy_copy).platform
    assert (p.egress.alert_bytes, p.egress.cap_bytes) == (int(1.5 * 1024**2), 4 * 1024**2)
    assert p.sites["imsut"].terminals == "off"


def test_demo_site_dask(policy_copy):
    """Each demo site runs one worker of one core and 1G, one Dask thread each."""
    p = load_policy_dir(policy_copy).platform
    for site in p.sites.values():
        assert site.dask == SiteDask(workers=1, cores=1.0, memory=1024**3), site.id
        assert site.dask.threads == 1


def test_site_dask_when_left_out_is_one_worker_of_one_core_and_1G(policy_copy):
    def drop(p):
        del p["sites"][0]["dask"]
        p["sites"][1]["dask"] = {}
        p["sites"][2]["dask"] = {"cores": 4}

    _platform(policy_copy, drop)
    sites = load_policy_dir(policy_copy).platform.sites
    assert sites["nig"].dask == sites["ncc"].dask == SiteDask() == SiteDask(1, 1.0, 1024**3)
    assert sites["ncgm"].dask == SiteDask(workers=1, cores=4.0, memory=1024**3)
    assert sites["ncgm"].dask.threads == 4


@pytest.mark.parametrize(
    "block,workers,cores,threads,memory",
    [
        pytest.param(
            {"workers": 3, "cores": 2, "memory": "4G"}, 3, 2.0, 2, 4 * 1024**3, id="whole"
        ),
        # threads: the cores rounded down, at least one; the CPU quota keeps the fraction
        pytest.param({"cores": 2.5}, 1, 2.5, 2, 1024**3, id="fractional-cores"),
        pytest.param({"cores": 0.5}, 1, 0.5, 1, 1024**3, id="half-a-core-one-thread"),
        pytest.param({"memory": "1.5G"}, 1, 1.0, 1, int(1.5 * 1024**3), id="memory-suffix"),
        pytest.param({"memory": 536870912}, 1, 1.0, 1, 512 * 1024**2, id="memory-bytes"),
        pytest.param({"memory": "256M"}, 1, 1.0, 1, 256 * 1024**2, id="memory-smallest"),
        pytest.param({"workers": 13}, 13, 1.0, 1, 1024**3, id="most-workers"),
    ],
)
def test_site_dask_values(policy_copy, block, workers, cores, threads, memory):
    _platform(policy_copy, lambda p: p["sites"][0].update(dask=block))
    d = load_policy_dir(policy_copy).platform.sites["nig"].dask
    assert (d.workers, d.cores, d.threads, d.memory) == (workers, cores, threads, memory)


def test_every_problem_is_reported_not_only_the_first(policy_copy):
    _approval(policy_copy, _set_period("2030-01-01", "2029-12-31"))
    _write("approvals/broken.yaml", "approval_id: [\n")(policy_copy)
    _users(policy_copy, lambda u: u["users"].append(dict(u["users"][0])))
    with pytest.raises(PolicyError) as info:
        load_policy_dir(policy_copy)
    files = {Path(i.file).name for i in info.value.issues}
    assert files == {"J-DU000101.yaml", "broken.yaml", "users.yaml"}


def test_handler_without_account_is_a_warning(policy_copy):
    _approval(policy_copy, lambda a: a["handlers"].append("kimura"))
    bundle = load_policy_dir(policy_copy)
    assert [str(w) for w in bundle.warnings] == [
        f"{policy_copy / 'approvals' / 'J-DU000101.yaml'}: handlers: 'kimura' has no account in users.yaml"
    ]


def test_not_a_directory(tmp_path):
    with pytest.raises(PolicyError, match="not a directory"):
        load_policy_dir(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "text,expected",
    [
        ("2G", 2 * 1024**3),
        ("512M", 512 * 1024**2),
        ("1.5G", int(1.5 * 1024**3)),
        (4096, 4096),
        ("100", 100),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


def test_parse_size_rejects_nonsense():
    with pytest.raises(ValueError, match="not a size"):
        parse_size("2 gigabytes")
