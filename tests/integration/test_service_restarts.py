"""A hub-managed service that exits is restarted by the hub, the restart is in the hub's log,
and the admin page shows the secretariat and the site admins each service's state: up or
down, restarts and the last one. While the enforcer does not answer, the page says so at
its top, in Japanese and English.

A stack of its own (no sites): these tests kill and stop its services.
"""

from __future__ import annotations

import os
import signal
import time
from html import unescape

import pytest
import requests

from hub.demo.processes import processes_of
from hub.demo.stack import Stack, StackConfig, http_ok
from hub.platform.messages import message
from hub.plugins.service_restarts import read_service_status

from .conftest import token_of

pytestmark = pytest.mark.integration

SERVICES = ["audit", "enforcer", "admin", "catalogue", "export"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(StackConfig.ephemeral(tmp_path_factory.mktemp("restarts-stack")))
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def jimu(stack):
    return token_of(stack, "jimu")


def service_pid(stack, name: str) -> int:
    (pid,) = [
        pid
        for pid, env in processes_of(stack.state_dir).items()
        if env.get("JUPYTERHUB_SERVICE_NAME") == name
    ]
    return pid


def admin(stack, token, path=""):
    return requests.get(
        f"{stack.config.hub_url}/services/admin/{path}",
        headers={"Authorization": f"token {token}"},
        timeout=30,
    )


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def test_every_service_answers_and_none_was_restarted(stack, jimu):
    r = admin(stack, jimu, "api/services")
    assert r.status_code == 200, r.text
    rows = {s["name"]: s for s in r.json()["services"]}
    assert set(SERVICES) <= set(rows)
    assert all(s["up"] and s["restarts"] == 0 and s["pid"] for s in rows.values()), rows
    assert r.json()["enforcer_up"] is True


def test_a_killed_service_is_restarted_logged_and_shown(stack, jimu):
    old = service_pid(stack, "enforcer")
    os.kill(old, signal.SIGKILL)
    health = f"{stack.config.hub_url}/services/enforcer/health"
    assert wait_until(
        lambda: (
            read_service_status(stack.state_dir).get("enforcer", {}).get("pid") not in (None, old)
        ),
        30,
    ), "the hub did not restart the enforcer"
    assert wait_until(lambda: http_ok(health), 30)
    record = read_service_status(stack.state_dir)["enforcer"]
    assert record["restarts"] == 1 and record["last_exit_status"] == -signal.SIGKILL
    assert record["pid"] == service_pid(stack, "enforcer")

    log = (stack.state_dir / "logs" / "hub.log").read_text(errors="replace")
    assert "Service enforcer exited with status -9; restarting it (restart 1" in log

    rows = {s["name"]: s for s in admin(stack, jimu, "api/services").json()["services"]}
    assert rows["enforcer"]["up"] and rows["enforcer"]["restarts"] == 1
    assert rows["enforcer"]["last_restart"] == record["last_restart"]
    assert all(rows[n]["restarts"] == 0 for n in SERVICES if n != "enforcer")

    page = admin(stack, jimu)
    assert page.status_code == 200
    assert 'data-service="enforcer" data-up="yes" data-restarts="1"' in page.text
    assert 'id="enforcer-down"' not in page.text


def test_the_enforcer_not_answering_is_shown_at_once(stack, jimu):
    enforcer = service_pid(stack, "enforcer")
    os.kill(enforcer, signal.SIGSTOP)  # alive but not answering: nothing restarts it
    try:
        page = admin(stack, jimu)
        assert page.status_code == 200
        banner = unescape(page.text.split('id="enforcer-down"', 1)[1].split("</div>", 1)[0])
        warning = message("admin.enforcer_down")
        assert warning.ja in banner and warning.en in banner
        assert "執行サービス（enforcer）が応答していません" in warning.ja
        assert 'data-service="enforcer" data-up="no"' in page.text
        answer = admin(stack, jimu, "api/services").json()
        assert answer["enforcer_up"] is False and answer["warning"] == warning.to_json()
    finally:
        os.kill(enforcer, signal.SIGCONT)
    assert wait_until(lambda: 'id="enforcer-down"' not in admin(stack, jimu).text, 10)


def test_site_admins_see_the_services_and_researchers_do_not(stack):
    r = admin(stack, token_of(stack, "admin-nig"), "api/services")
    assert r.status_code == 200 and r.json()["enforcer_up"] is True
    refused = admin(stack, token_of(stack, "tanaka"), "api/services")
    assert refused.status_code == 403
    assert "neither secretariat nor a site admin" in refused.json()["message"]
