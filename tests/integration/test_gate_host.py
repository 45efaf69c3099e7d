"""The egress gate's logic end to end on this machine: a real jupyter_server, a real kernel, the gate
process in front (no Docker, no hub).

These prove the logic quickly; the claim that nothing leaves a site container
is proven through the hub's proxy in tests/integration/test_egress_*.py.
"""

from __future__ import annotations

import json
import shutil

import pytest
import requests

from hub.data.synth import SiteSpec, generate_cohorts

from .gate_rig import GateRig
from .guard_server import TOKEN, GuardServer, free_port, server_env
from .kernel_client import Kernel

pytestmark = pytest.mark.integration

CLINICAL = "/JGAD000101/clinical.tsv"


@pytest.fixture(scope="module")
def site_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("gate-data")
    generate_cohorts(
        out,
        [SiteSpec("nig", "JGAD000101", "JGAD000102", "Shizuoka")],
        samples_per_site=40,
        variants=300,
        matrix_table=False,
    )
    return out / "nig"


@pytest.fixture(scope="module")
def server(tmp_path_factory, site_data):
    root = tmp_path_factory.mktemp("gate-server")
    home = root / "home"
    home.mkdir()
    shutil.copy(site_data / "JGAD000101" / "clinical.tsv", home / "cohort_copy.txt")
    (home / "af.tsv").write_text(
        "chrom\tpos\tref\talt\tAC\tAN\tAF\n"
        + "".join(f"1\t{1000 + i}\tA\tG\t{i}\t80\t{i / 80:.4f}\n" for i in range(200))
    )
    port = free_port()
    clock = root / "now"
    clock.write_text("")
    env = server_env(root, home, site_data, root / "spool", clock, port)
    s = GuardServer(root, home, site_data, root / "spool", clock, port, env)
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def gate(server, site_data, tmp_path_factory):
    state = tmp_path_factory.mktemp("gate-state")
    with GateRig(server, site_data, state, datasets="JGAD000101,JGAD000102") as g:
        yield g


def test_a_copy_of_the_clinical_table_is_refused_and_a_summary_table_passes_byte_for_byte(gate):
    auth = {"Authorization": f"token {TOKEN}"}
    r = requests.get(f"{gate.url}/files/cohort_copy.txt", headers=auth, timeout=60)
    assert r.status_code == 403, r.text[:300]
    assert "持ち出し制御" in r.text and "egress gate" in r.text
    assert "NIG-0000" not in r.text
    ok = requests.get(f"{gate.url}/files/af.tsv", headers=auth, timeout=60)
    assert ok.status_code == 200
    assert ok.content == (gate.server.home / "af.tsv").read_bytes()
    assert [e["data"]["reason"] for e in gate.events("download-blocked")] == ["individual-level"]


@pytest.mark.parametrize("protocol", ["json", "v1"])
def test_a_table_of_people_in_a_cell_is_withheld_and_a_head_is_shown(gate, site_data, protocol):
    path = site_data / CLINICAL.lstrip("/")
    before = len(gate.events("output-withheld"))
    with Kernel(f"{gate.url}/", TOKEN, protocol=protocol) as k:
        whole = k.execute(f"print(open({str(path)!r}).read())")
        assert "Withheld by the egress gate" in whole.stdout
        assert "NIG-0000" not in whole.stdout
        head = k.execute(f"print(''.join(open({str(path)!r}).readlines()[:6]))").raise_for_error()
        assert head.stdout.count("NIG-0000") == 5
    after = gate.events("output-withheld")
    assert len(after) == before + 1
    assert after[-1]["data"]["channel"] == "kernel"


def test_the_gate_reports_its_meter_to_the_person_only(gate):
    r = requests.get(f"{gate.url}/visiting/gate", headers=gate.server.auth, timeout=30)
    assert r.status_code == 200
    doc = r.json()
    assert doc["cohort_people"] >= 40
    assert doc["meter"]["level"] == "ok"
    # what the tests above had refused and withheld (one table, one cell in each protocol)
    assert doc["stats"]["blocked"] == 1 and doc["stats"]["withheld"] == 2
    assert requests.get(f"{gate.url}/visiting/gate", timeout=30).status_code == 403


def test_at_the_cap_downloads_are_withheld(server, site_data, tmp_path):
    rules = {"alert_bytes": 20_000, "cap_bytes": 40_000, "alert_people": 5, "cap_people": 10}
    with GateRig(server, site_data, tmp_path / "state", rules=rules) as g:
        auth = server.auth
        levels = []
        for i in range(8):
            (server.home / f"noise{i}.bin").write_bytes(
                bytes((i * 7 + j) % 251 for j in range(9000))
            )
            r = requests.get(f"{g.url}/files/noise{i}.bin", headers=auth, timeout=60)
            levels.append(r.status_code)
        assert levels[:4] == [200] * 4
        assert 429 in levels
        assert "上限" in requests.get(f"{g.url}/files/noise0.bin", headers=auth, timeout=60).text
        names = [e["schema"].rsplit("/", 1)[-1] for e in g.events()]
        assert names.count("egress-alert") == 1 and names.count("egress-cap") == 1


def test_terminals_switched_off_are_refused(server, site_data, tmp_path):
    with GateRig(server, site_data, tmp_path / "state", terminals="off") as g:
        r = requests.post(f"{g.url}/api/terminals", headers=server.auth, timeout=30)
        assert r.status_code == 403
        assert "ターミナル" in r.json()["message"]
        assert json.loads(r.text)["reason"] == "terminals-off"
