"""Why a site gave the catalogue no count, through the real hub, proxy and gateways.

A stack of its own over cohorts of its own (small, written here), three sites
made to fail as sites fail: nig's gateway is down (its process killed, its port
held shut, so the hub's restarts cannot bind it), ncc's gateway fails (its VCF
Zarr store cannot be read), and ncgm's gateway refuses (the dataset has no
analysis-ready data there). tommo and imsut answer.

Rules checked: "Security" (a failure at a site reaches the hub's log with its
traceback; the catalogue logs which site failed and why), "No disclosure"
(the person reads the reason, the gateway's words and an error id, never the
exception's text), "Reporting" (the failed query is recorded by the gateway).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import time

import pytest
import requests

from hub.data.synth import generate_cohorts, site_specs
from hub.demo.processes import services_of
from hub.demo.stack import Stack, StackConfig
from hub.platform.policy import load_policy_dir
from hub.store.audit import AuditStore

from .conftest import hub_login, token_of
from .guard_server import wait_for

pytestmark = pytest.mark.integration

DOWN, FAILING, REFUSING = "nig", "ncc", "ncgm"
ANSWERING = ["imsut", "tommo"]


def analysis_dataset(platform, site: str) -> str:
    return next(d.id for d in platform.sites[site].datasets if d.kind == "analysis")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    state = tmp_path_factory.mktemp("no-answer-stack")
    data = state / "data"
    with pytest.MonkeyPatch.context() as mp:
        # the hub, its services and this process all read the sites' data from here
        mp.setenv("VISITING_DATA_ROOT", str(data))
        platform = load_policy_dir(StackConfig.platform_dir).platform
        generate_cohorts(
            data,
            site_specs(platform.sites.values()),
            samples_per_site=120,
            variants=40,
            raw_files=False,
            matrix_table=False,
        )
        broken = platform.site_data_dir(FAILING) / analysis_dataset(platform, FAILING)
        shutil.rmtree(broken / "genotypes.vcf.zarr")
        (broken / "genotypes.vcf.zarr").mkdir()  # a store that cannot be read
        missing = platform.site_data_dir(REFUSING) / analysis_dataset(platform, REFUSING)
        shutil.rmtree(missing / "genotypes.vcf.zarr")  # not analysis-ready: not here
        s = Stack(StackConfig.ephemeral(state))
        s.start()
        try:
            for site in s.bundle.platform.sites:
                wait_for(
                    lambda site=site: ok(f"{s.config.hub_url}/services/gateway-{site}/health"),
                    timeout=60,
                )
            with hold_down(s, DOWN):
                yield s
        finally:
            s.stop()


def ok(url):
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def gateway_pids(stack, site: str) -> list[int]:
    """The running gateway process of `site` (a hub-managed service of this stack)."""
    marker = f"JUPYTERHUB_SERVICE_NAME=gateway-{site}".encode()
    pids = []
    for pid in services_of(stack.state_dir):
        try:
            if marker in open(f"/proc/{pid}/environ", "rb").read().split(b"\0"):
                pids.append(pid)
        except OSError:
            pass
    return pids


class hold_down:
    """Kill a site's gateway and hold its port bound, not listening: connecting is refused,
    and the hub's restart of the gateway cannot bind it. Released at the end."""

    def __init__(self, stack, site: str):
        self.stack, self.site = stack, site
        self.port = stack.config.gateway_ports[site]
        self.sock = None

    def __enter__(self):
        deadline = time.monotonic() + 120
        while self.sock is None:
            for pid in gateway_pids(self.stack, self.site):
                os.kill(pid, signal.SIGKILL)
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", self.port))
                self.sock = sock
            except OSError:  # not gone yet, or restarted by the hub meanwhile
                sock.close()
                assert time.monotonic() < deadline, f"port {self.port} is never free"
                time.sleep(0.2)
        return self

    def __exit__(self, *exc):
        self.sock.close()


@pytest.fixture(scope="module")
def tanaka(stack):
    return token_of(stack, "tanaka")


@pytest.fixture(scope="module")
def counts(stack, tanaka):
    r = requests.get(
        f"{stack.config.hub_url}/services/catalogue/api/counts",
        params={"by": "sex"},
        headers={"Authorization": f"token {tanaka}"},
        timeout=300,
    )
    assert r.status_code == 200, r.text
    return {s["site"]: s for s in r.json()["sites"]}


def hub_log(stack) -> str:
    return (stack.state_dir / "logs" / "hub.log").read_text(errors="replace")


def logged(stack, text: str) -> str | None:
    """The hub's log once it holds `text`."""
    log = hub_log(stack)
    return log if text in log else None


def test_the_other_sites_answer(counts):
    for site in ANSWERING:
        assert counts[site]["status"] == "answered" and counts[site]["n"] == 120, counts[site]


def test_a_site_whose_gateway_is_down(counts):
    s = counts[DOWN]
    assert (s["status"], s["reason"], s["code"]) == ("unavailable", "site_down", None), s
    # the proxy cannot reach the gateway: the hub answers 503 for it
    assert "503" in s["message"], s
    assert s["label"]["en"] == "no answer: site down" and "サイト停止" in s["label"]["ja"]
    assert "nig" in s["text"]["ja"] and "is down or its gateway is not running" in s["text"]["en"]


def test_a_site_whose_gateway_fails(stack, counts):
    s = counts[FAILING]
    assert (s["status"], s["reason"], s["code"]) == (
        "unavailable",
        "gateway_error",
        "gateway_error",
    )
    m = re.fullmatch(
        r"the task cohort_counts failed with (\w+); error ([0-9a-f]{12}) in the gateway's log",
        s["message"],
    )
    assert m, s["message"]
    error, error_id = m.groups()
    assert "ゲートウェイで処理に失敗しました" in s["text"]["ja"] and error_id in s["text"]["en"]
    # the gateway logged the exception with its traceback, in the hub's log
    log = wait_for(lambda: logged(stack, error_id), timeout=30)
    after = log[log.index(f"(error {error_id})") :]
    assert f"failed at site {FAILING} (error {error_id}): {error}" in log
    assert "Traceback (most recent call last)" in after[:20000]
    # and the query is recorded as failed, with the same id
    audit = AuditStore(stack._database_url())
    failed = wait_for(
        lambda: [
            e
            for e in audit.events(user="catalogue")
            if e["site"] == FAILING and e["data"].get("outcome") == "failed"
        ],
        timeout=30,
    )
    assert failed[-1]["data"]["error_id"] == error_id
    assert failed[-1]["data"]["error"] == error


def test_a_site_whose_gateway_refuses(stack, counts):
    s = counts[REFUSING]
    assert (s["status"], s["reason"]) == ("unavailable", "refused"), s
    dataset = analysis_dataset(stack.bundle.platform, REFUSING)
    assert s["message"] == f"no analysis dataset {dataset} at site {REFUSING}"
    assert "照会を拒否しました" in s["text"]["ja"] and s["message"] in s["text"]["en"]


def test_the_catalogue_logs_which_site_failed_and_why(stack, counts):
    log = hub_log(stack)
    dataset = analysis_dataset(stack.bundle.platform, REFUSING)
    for pattern in (
        rf"\[catalogue WARNING [^\]]*\] site {DOWN} gave no count for \w+: site down: .*503",
        rf"\[catalogue ERROR [^\]]*\] site {FAILING} gave no count for \w+: gateway error "
        r"\[gateway_error\]: the task cohort_counts failed with \w+; error [0-9a-f]{12}",
        rf"\[catalogue WARNING [^\]]*\] site {REFUSING} gave no count for {dataset}: refused: "
        rf"no analysis dataset {dataset}",
    ):
        assert re.search(pattern, log), pattern


def test_the_page_says_why(stack, counts):
    session, r = hub_login(stack.config.hub_url, "tanaka", "tanaka-demo")
    assert r.status_code == 200
    page = session.get(f"{stack.config.hub_url}/services/catalogue/?by=sex", timeout=300)
    assert page.status_code == 200, page.text[:500]
    for site, reason, label in (
        (DOWN, "site_down", "応答なし（サイト停止） / no answer: site down"),
        (FAILING, "gateway_error", "応答なし（ゲートウェイのエラー） / no answer: gateway error"),
        (REFUSING, "refused", "応答なし（拒否） / no answer: refused"),
    ):
        row = page.text[page.text.index(f'<tr data-site="{site}">') :]
        row = row[: row.index("</tr>")]
        assert f'data-reason="{reason}">{label}</span>' in row, row
        assert f'<tr class="why" data-why="{site}" data-reason="{reason}">' in page.text
    assert "応答なし / no answer<" not in page.text
