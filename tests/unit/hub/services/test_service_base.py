"""A hub-managed service ends with the hub that started it, however the hub ends, and stops
promptly on SIGTERM (extensions.contracts.service); its settings come from the hub's
environment and its command line, and its errors have one shape (hub.services._base)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tornado import httpserver, web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from tornado.testing import bind_unused_port

from hub.services._base import (
    HtmlPageHandler,
    JsonApiHandler,
    ServiceConfigError,
    service_web_app,
)
from hub.services.admin.application import AdminService
from hub.services.audit.application import AuditService
from hub.services.catalogue.application import CatalogueService
from hub.services.enforcer.application import EnforcerService
from tests.aio import run as run_async

REPO = Path(__file__).resolve().parents[4]

SERVICE = textwrap.dedent(
    """
    import sys, time
    import extensions.contracts.service as base
    if "--no-prctl" in sys.argv:
        base.die_with_parent = lambda *a: False
    base.follow_the_hub()
    try:
        print("serving", flush=True)
        while True:
            time.sleep(0.1)
    except KeyboardInterrupt:
        print("stopped", flush=True)
    """
)

# a stand-in for the hub: starts the service as JupyterHub does (a session of its own,
# VISITING_HUB_PID naming itself), prints the service's pid, and waits to be killed
HUB = textwrap.dedent(
    """
    import os, subprocess, sys, time
    env = dict(os.environ, VISITING_HUB_PID=str(os.getpid()))
    child = subprocess.Popen(
        [sys.executable, "-c", sys.argv[1], *sys.argv[2:]], env=env, start_new_session=True
    )
    print(child.pid, flush=True)
    time.sleep(120)
    """
)


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and running(pid):
        time.sleep(0.05)
    return not running(pid)


def env() -> dict[str, str]:
    e = dict(os.environ, PYTHONPATH=str(REPO))
    e.pop("VISITING_HUB_PID", None)
    return e


@pytest.mark.parametrize(
    "how", ["parent-death-signal", "pid-watch"], ids=["parent-death-signal", "pid-watch"]
)
def test_a_service_ends_when_its_hub_is_killed(how):
    args = ["--no-prctl"] if how == "pid-watch" else []
    hub = subprocess.Popen(
        [sys.executable, "-c", HUB, SERVICE, *args],
        env=env(),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    service = int(hub.stdout.readline())
    try:
        time.sleep(1.0)  # the service is up and watching
        assert running(service)
        hub.kill()
        hub.wait()
        assert wait_gone(service, 5), "the service outlived its hub"
    finally:
        if running(service):
            os.kill(service, signal.SIGKILL)


def test_a_service_whose_hub_is_already_gone_does_not_start():
    # pid 1 is not this service's parent: its hub is gone before it started
    r = subprocess.run(
        [sys.executable, "-c", SERVICE],
        env=env() | {"VISITING_HUB_PID": "1"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 1 and "serving" not in r.stdout
    assert "the hub that started this service (pid 1) is gone; not starting" in r.stderr


def test_a_service_without_a_hub_runs_on_its_own_and_sigterm_stops_it():
    p = subprocess.Popen(
        [sys.executable, "-c", SERVICE], env=env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert p.stdout.readline().strip() == "serving"
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        assert p.wait(5) == 0 and time.monotonic() - t0 < 2
        assert p.stdout.read().strip() == "stopped"
    finally:
        p.kill()
        p.wait()


def test_a_service_stuck_after_sigterm_ends_after_the_grace():
    stuck = textwrap.dedent(
        """
        import time
        from extensions.contracts.service import stop_on_sigterm
        stop_on_sigterm(grace=0.5)
        serving = False
        while True:
            try:
                if not serving:
                    print("serving", flush=True)
                    serving = True
                time.sleep(0.1)
            except KeyboardInterrupt:
                pass  # a thread, a library that swallows it: still running
        """
    )
    p = subprocess.Popen([sys.executable, "-c", stuck], env=env(), stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline().strip() == b"serving"
        p.send_signal(signal.SIGTERM)
        assert p.wait(5) == 128 + signal.SIGTERM
    finally:
        p.kill()
        p.wait()


# ---------------------------------------------------------------------------
# hub.services._base: the services' settings, their errors and their health route

HUB_ENV = {
    "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:9182",
    "JUPYTERHUB_SERVICE_PREFIX": "/services/audit",
    "JUPYTERHUB_API_URL": "http://127.0.0.1:9081/hub/api",
    "JUPYTERHUB_API_TOKEN": "secret-token",
    "VISITING_PLATFORM": "/etc/visiting/platform",
}


def test_settings_default_to_the_environment_the_hub_gives():
    app = AuditService(environ=HUB_ENV)
    assert app.service_url == "http://127.0.0.1:9182"
    assert app.port == 9182
    assert app.ip == "127.0.0.1"
    assert app.service_prefix == "/services/audit/"
    assert app.hub_api_url == "http://127.0.0.1:9081/hub/api"
    assert app.api_token == "secret-token"
    assert app.platform_dir == "/etc/visiting/platform"


@pytest.mark.parametrize(
    "cls,port,prefix",
    [
        (AuditService, 8082, "/services/audit/"),
        (AdminService, 8084, "/services/admin/"),
        (CatalogueService, 8085, "/services/catalogue/"),
        (EnforcerService, None, "/services/enforcer/"),
    ],
    ids=["audit", "admin", "catalogue", "enforcer-listens-only-where-named"],
)
def test_without_the_hub_each_service_has_its_own_defaults(cls, port, prefix):
    app = cls(environ={})
    assert (app.port, app.service_prefix) == (port, prefix)
    assert app.hub_api_url == "http://127.0.0.1:8081/hub/api" and app.api_token == ""
    assert app.platform_dir.endswith("policies/demo")


def test_the_services_own_settings_default_to_their_variables():
    admin = AdminService(
        environ={
            "VISITING_ENFORCER_URL": "http://127.0.0.1:8083/services/enforcer/",
            "VISITING_SERVICE_HEALTH": '{"audit": "http://127.0.0.1:8082/services/audit/health"}',
            "VISITING_STATE_DIR": "/var/lib/visiting",
        }
    )
    assert admin.enforcer_url == "http://127.0.0.1:8083/services/enforcer/"
    assert admin.service_health == {"audit": "http://127.0.0.1:8082/services/audit/health"}
    assert admin.state_dir == "/var/lib/visiting"
    assert AdminService(environ={}).enforcer_url == ""
    catalogue = CatalogueService(environ={"VISITING_HUB_URL": "http://127.0.0.1:8000"})
    assert catalogue.hub_url == "http://127.0.0.1:8000"
    assert EnforcerService(environ={}).interval == 30.0


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1", "http://127.0.0.1:port"], ids=["no-port", "not-a-port"]
)
def test_a_service_url_without_a_port_is_named_at_start(url):
    app = AuditService(environ={"JUPYTERHUB_SERVICE_URL": url})
    with pytest.raises(ServiceConfigError, match=f"JUPYTERHUB_SERVICE_URL '{url}'"):
        app.initialize([])


def test_main_names_the_bad_setting_and_fails(monkeypatch, capsys):
    monkeypatch.setenv("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1")
    from hub.services.audit.application import main

    assert main([]) == 2
    assert (
        "audit: JUPYTERHUB_SERVICE_URL 'http://127.0.0.1' names no port" in capsys.readouterr().err
    )


def test_a_missing_required_setting_is_named(monkeypatch, capsys):
    app = EnforcerService(environ={})
    with pytest.raises(ServiceConfigError, match=r"api_token \(\$JUPYTERHUB_API_TOKEN\)"):
        app.initialize([])
    app = CatalogueService(environ={"JUPYTERHUB_API_TOKEN": "t"})
    with pytest.raises(ServiceConfigError, match=r"hub_url \(\$VISITING_HUB_URL\)"):
        app.initialize([])


@pytest.mark.parametrize(
    "argv", [["--port=9999", "--ip=0.0.0.0"], ["--port", "9999", "--ip", "0.0.0.0"]]
)
def test_the_command_line_overrides_the_environment(argv):
    # a bad service URL is not even read when the port is given
    app = AuditService(environ=dict(HUB_ENV, JUPYTERHUB_SERVICE_URL="http://x"))
    app.initialize(argv)
    assert (app.port, app.ip) == (9999, "0.0.0.0")


def test_the_enforcers_interval_from_the_command_line_is_checked():
    app = EnforcerService(environ=HUB_ENV)
    app.initialize(["--interval=5"])
    assert app.interval == 5.0 and app.port == 9182
    with pytest.raises(SystemExit) as e:
        EnforcerService(environ=HUB_ENV).initialize(["--interval=0"])
    assert e.value.code == 1


class Refusal(Exception):
    """A service's own refusal, as hub.platform.operations.OperationError is."""

    def __init__(self, message, field=None, status=400):
        super().__init__(message)
        self.message, self.field, self.status = message, field, status


class Plain(JsonApiHandler):
    def get(self, what):
        if what == "http":
            raise web.HTTPError(403, "no %s here", "entry")
        if what == "crash":
            raise RuntimeError("internal detail")
        self.finish({"ok": True})

    def post(self, what):
        self.finish(self.json_body())


class WithFields(Plain):
    public_errors = (Refusal,)

    def get(self, what):
        if what == "refusal":
            raise Refusal("quota.cpu: not a number", field="quota.cpu", status=422)
        super().get(what)


class Page(HtmlPageHandler):
    public_errors = (Refusal,)

    def get(self, what):
        if what == "refusal":
            raise Refusal("利用できません / not for you", status=403)
        raise web.HTTPError(404, "internal: no row 17")


async def _ask(app: web.Application, requests: list[tuple[str, str, bytes | None]]):
    sock, port = bind_unused_port()
    server = httpserver.HTTPServer(app)
    server.add_sockets([sock])
    client = AsyncHTTPClient(force_instance=True)
    out = []
    try:
        for method, path, body in requests:
            try:
                resp = await client.fetch(
                    f"http://127.0.0.1:{port}{path}", method=method, body=body
                )
            except HTTPClientError as e:
                resp = e.response
            out.append((resp.code, resp.headers.get("Content-Type"), resp.body.decode()))
    finally:
        client.close()
        server.stop()
    return out


def test_the_json_errors_have_one_shape():
    app = service_web_app(
        "/services/x",
        [(r"/services/x/plain/(\w+)", Plain), (r"/services/x/fields/(\w+)", WithFields)],
    )
    answers = run_async(
        _ask(
            app,
            [
                ("GET", "/services/x/plain/http", None),
                ("GET", "/services/x/plain/crash", None),
                ("POST", "/services/x/plain/body", b"[1]"),
                ("GET", "/services/x/fields/refusal", None),
                ("GET", "/services/x/fields/http", None),
                ("POST", "/services/x/fields/body", b"{not json"),
                ("GET", "/services/x/health", None),
            ],
        )
    )
    bodies = [(code, json.loads(text)) for code, _, text in answers]
    assert all(ctype.startswith("application/json") for _, ctype, _ in answers)
    assert bodies == [
        (403, {"status": 403, "message": "no entry here"}),
        (500, {"status": 500, "message": "Internal Server Error"}),
        (400, {"status": 400, "message": "the body must be a JSON object"}),
        (422, {"status": 422, "message": "quota.cpu: not a number", "field": "quota.cpu"}),
        (403, {"status": 403, "message": "no entry here", "field": None}),
        (400, {"status": 400, "message": "the body is not JSON", "field": None}),
        (200, {"status": "ok"}),
    ]


def test_a_page_error_is_one_page_that_shows_only_what_a_person_may_read():
    app = service_web_app("/services/x/", [(r"/services/x/page/(\w+)", Page)])
    (refused, missing) = run_async(
        _ask(app, [("GET", "/services/x/page/refusal", None), ("GET", "/services/x/page/x", None)])
    )
    assert refused[0] == 403 and refused[1].startswith("text/html")
    assert "利用できません / not for you" in refused[2] and "エラー / Error 403" in refused[2]
    assert missing[0] == 404 and "Not Found" in missing[2] and "row 17" not in missing[2]


def test_a_service_serves_its_health_route_on_its_port(policy_copy):
    sock, port = bind_unused_port()
    sock.close()
    app = AuditService(environ=dict(HUB_ENV, VISITING_PLATFORM=str(policy_copy)), port=port)

    async def scenario():
        serving = asyncio.ensure_future(app.serve())
        client = AsyncHTTPClient(force_instance=True)
        try:
            for _ in range(50):
                try:
                    resp = await client.fetch(f"http://127.0.0.1:{port}/services/audit/health")
                    return json.loads(resp.body)
                except OSError:
                    await asyncio.sleep(0.05)
        finally:
            client.close()
            serving.cancel()
            if app.http_server is not None:
                app.http_server.stop()

    assert run_async(scenario()) == {"status": "ok"}
