"""The `visiting` command: policy check, approvals import/list/show; bad input changes nothing."""

from __future__ import annotations

import json

import pytest
import yaml

from hub.cli.main import main
from hub.store.registry import ApprovalRegistry


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_policy_check_valid(capsys, policy_copy):
    code, out, _ = run(capsys, "policy", "check", str(policy_copy))
    assert code == 0
    assert out.strip().endswith("valid: 5 sites, 10 datasets, 3 approvals, 8 accounts")


def test_policy_check_prints_every_problem(capsys, policy_copy):
    (policy_copy / "approvals" / "broken.yaml").write_text("approval_id: [\n")
    a = policy_copy / "approvals" / "J-DU000102.yaml"
    doc = yaml.safe_load(a.read_text())
    doc["period"]["end"] = "2018-01-01"
    a.write_text(yaml.safe_dump(doc))
    code, out, err = run(capsys, "policy", "check", str(policy_copy))
    assert code == 2 and out == ""
    assert "2 problem(s); nothing was loaded" in err
    assert "broken.yaml: line 2, column 1: YAML does not parse" in err
    assert "J-DU000102.yaml: period.end: the end 2018-01-01 is before the start 2019-04-01" in err


def test_import_is_idempotent_and_reports_changes(capsys, policy_copy, tmp_path):
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    code, out, _ = run(capsys, "approvals", "import", str(policy_copy), "--database", db)
    assert code == 0 and out.strip().endswith("3 created, 0 updated, 0 unchanged")
    code, out, _ = run(capsys, "approvals", "import", str(policy_copy), "--database", db)
    assert out.strip() == "0 created, 0 updated, 3 unchanged"

    a = policy_copy / "approvals" / "J-DU000101.yaml"
    doc = yaml.safe_load(a.read_text())
    doc["purpose"] = "A changed purpose"
    a.write_text(yaml.safe_dump(doc))
    code, out, _ = run(capsys, "approvals", "import", str(policy_copy), "--database", db)
    assert "updated  J-DU000101: purpose" in out and "'A changed purpose'" in out

    code, out, _ = run(
        capsys, "approvals", "show", "J-DU000101", "--dir", str(policy_copy), "--database", db
    )
    shown = json.loads(out)
    assert [c["kind"] for c in shown["changes"]] == ["created", "updated"]


def test_bad_directory_leaves_registry_untouched(capsys, policy_copy, tmp_path):
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    assert run(capsys, "approvals", "import", str(policy_copy), "--database", db)[0] == 0
    registry = ApprovalRegistry(db)
    before = registry.snapshot()

    # one good change and one bad file: nothing of either may land
    a = policy_copy / "approvals" / "J-DU000101.yaml"
    doc = yaml.safe_load(a.read_text())
    doc["period"]["end"] = "2040-03-31"
    a.write_text(yaml.safe_dump(doc))
    (policy_copy / "approvals" / "bad.yaml").write_text(
        "approval_id: J-DU000199\ninstitution: x\npurpose: y\nhandlers: [sato]\n"
        "datasets: [JGAD000999]\nperiod: {start: 2026-01-01, end: 2027-01-01}\n"
    )
    code, _, err = run(capsys, "approvals", "import", str(policy_copy), "--database", db)
    assert code == 2
    assert "bad.yaml: datasets[0]: unknown dataset 'JGAD000999'" in err
    assert registry.snapshot() == before


def test_list_shows_status_now(capsys, policy_copy, tmp_path, monkeypatch):
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    run(capsys, "approvals", "import", str(policy_copy), "--database", db)
    clock = tmp_path / "now"
    clock.write_text("2030-01-01T00:00:00+09:00")
    monkeypatch.setenv("VISITING_CLOCK_FILE", str(clock))
    code, out, _ = run(
        capsys, "approvals", "list", "--dir", str(policy_copy), "--database", db, "--json"
    )
    status = {a["approval_id"]: a["status"] for a in json.loads(out)}
    assert status == {"J-DU000101": "active", "J-DU000102": "ended", "J-DU000103": "not-started"}


def test_unknown_approval(capsys, policy_copy, tmp_path):
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    code, _, err = run(
        capsys, "approvals", "show", "J-DU404", "--dir", str(policy_copy), "--database", db
    )
    assert code == 2 and "unknown approval 'J-DU404'" in err


@pytest.mark.parametrize(
    "argv,message",
    [
        pytest.param(
            ["synth", "--sites", "osaka"], "--sites: unknown site 'osaka'", id="synth-unknown-site"
        ),
        pytest.param(
            ["policy", "check", "/nonexistent"],
            "/nonexistent: not a directory",
            id="check-missing-dir",
        ),
    ],
)
def test_bad_arguments(capsys, policy_copy, argv, message):
    if argv[0] == "synth":
        argv = [*argv, "--platform", str(policy_copy)]
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err


@pytest.mark.parametrize(
    "argv,expected",
    [
        pytest.param(["demo", "up"], {"no_data": False, "no_sites": False}, id="up-defaults"),
        pytest.param(["demo", "run", "--no-sites"], {"no_sites": True}, id="run-no-sites"),
        pytest.param(["demo", "down", "--sites"], {"sites": True}, id="down-sites"),
        pytest.param(
            ["sites", "up", "--hub-port", "18000"],
            {"hub_port": 18000, "hub_api_port": 8081},
            id="sites-up",
        ),
    ],
)
def test_demo_and_sites_flags(argv, expected):
    from hub.cli.main import build_parser

    args = vars(build_parser().parse_args(argv))
    assert {k: args[k] for k in expected} == expected


# `visiting site ingest`: what it refuses before any data is read (the ingest
# itself, with Hail, is in tests/integration/test_ingest.py)


@pytest.mark.parametrize(
    "argv,message",
    [
        pytest.param(
            ["nowhere"],
            "unknown site 'nowhere' (known: nig, ncc, ncgm, tommo, imsut)",
            id="unknown-site",
        ),
        pytest.param(
            ["nig", "--dataset", "JGAD000102"],
            "--dataset: 'JGAD000102' is not an analysis dataset of nig (JGAD000101)",
            id="raw-dataset",
        ),
        pytest.param(
            ["nig", "--dataset", "JGAD000201"],
            "--dataset: 'JGAD000201' is not an analysis dataset of nig",
            id="other-sites-dataset",
        ),
        pytest.param(["nig"], "no dataset folder ", id="no-folder"),
    ],
)
def test_site_ingest_refuses(capsys, policy_copy, argv, message):
    code, out, err = run(capsys, "site", "ingest", *argv, "--platform", str(policy_copy))
    assert code == 2 and out == ""
    assert message in err


def test_site_ingest_names_missing_inputs(capsys, policy_copy, tmp_path):
    folder = tmp_path / "data" / "nig" / "JGAD000101"
    folder.mkdir(parents=True)
    (folder / "clinical.tsv").write_text("sample_id\n")
    code, _, err = run(capsys, "site", "ingest", "nig", "--platform", str(policy_copy))
    assert code == 2
    assert f"{folder}: missing genotypes.vcf.gz, phenotypes.tsv" in err
    assert sorted(p.name for p in folder.iterdir()) == ["clinical.tsv"]


def test_site_ingest_and_synth_flags():
    from hub.cli.main import build_parser

    args = build_parser().parse_args(["site", "ingest", "ncc", "--dataset", "D", "--force"])
    assert (args.site, args.dataset, args.force, args.quiet) == ("ncc", "D", True, False)
    args = build_parser().parse_args(["synth", "--no-mt"])
    assert (args.no_mt, args.no_zarr) == (True, False)


def test_the_demo_banner_says_what_every_account_shows_and_where_exports_are(tmp_path):
    from types import SimpleNamespace

    from hub.cli.base import DEMO_DIR
    from hub.cli.demo import DEMO_OUTCOMES, _banner

    users = yaml.safe_load((DEMO_DIR / "users.yaml").read_text())["users"]
    assert {u["username"] for u in users} == set(DEMO_OUTCOMES)
    config = SimpleNamespace(
        hub_url="http://127.0.0.1:8000", idp_url="http://127.0.0.1:9000", platform_dir=DEMO_DIR
    )
    text = _banner(SimpleNamespace(config=config, state_dir=tmp_path))
    assert "http://127.0.0.1:8000/services/admin/exports" in text
    assert "http://127.0.0.1:8000/services/admin/review" in text
    line = next(x for x in text.splitlines() if x.strip().startswith("admin-ncc"))
    assert "admin-ncc-demo" in line and "airlock" in line
