"""JupyterLab's export panel asks its own server; the guard relays to the hub's export service.

Rule checked: "No disclosure" (files leave only through the airlock): a request made
from JupyterLab reaches the export service only through the person's authenticated
Jupyter server, with the server's own token and for the server's site; input that is
plainly wrong never leaves the server; a refusal of the service reaches the person
with its status and its text in Japanese and English.

The server is a real jupyter_server with the guard's enable file, started as the
container starts it; the export service is a small tornado server on loopback that
records what it was asked and answers as it is told.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from tornado import web
from tornado.httpserver import HTTPServer

from extensions.guard.export.client import ExportRequestError
from extensions.guard.exports import MAX_PATHS, MAX_PURPOSE, RelayRefusal, read_paths

REPO = Path(__file__).resolve().parents[4]
ENABLE_FILE = REPO / "extensions" / "guard" / "jupyter-config" / "visiting-guard.json"
LABEXTENSION = REPO / "extensions" / "guard" / "labextension"
TOKEN = "relay-test-token"  # the person's, at their own server
SERVER_TOKEN = "server-hub-token"  # the server's own hub token (JUPYTERHUB_API_TOKEN)

pytestmark = pytest.mark.timeout(120)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the hub's export service, as the relay sees it ------------------------------------------


class ExportService:
    """What the stand-in was asked, and what it answers next."""

    def __init__(self):
        self.seen: list[dict] = []
        self.answer: tuple[int, dict] | None = None  # None: answer as the service would

    def reset(self) -> None:
        self.seen.clear()
        self.answer = None


class RequestsRoute(web.RequestHandler):
    def initialize(self, service: ExportService):
        self.service = service

    def record(self) -> None:
        self.service.seen.append(
            {
                "method": self.request.method,
                "path": self.request.path,
                "site": self.get_query_argument("site", None),
                "authorization": self.request.headers.get("Authorization"),
                "body": json.loads(self.request.body) if self.request.body else None,
            }
        )

    def reply(self, status: int, doc: dict) -> None:
        if self.service.answer is not None:
            status, doc = self.service.answer
        self.set_status(status)
        self.finish(doc)

    def get(self):
        self.record()
        self.reply(200, {"requests": [REQUEST]})

    def post(self):
        self.record()
        body = json.loads(self.request.body)
        self.reply(201, REQUEST | {"site": body["site"], "paths": body["paths"],
                                   "purpose": body["purpose"], "state": "checked"})  # fmt: skip


REQUEST = {
    "id": "E7Q2",
    "requester": "tanaka",
    "site": "nig",
    "purpose": "Figure 1 of the paper",
    "paths": ["results/fig1.png"],
    "state": "under-review",
    "round": 1,
    "created_at": "2026-12-07T03:00:00+00:00",
    "checked_at": "2026-12-07T03:00:05+00:00",
    "decided_at": None,
    "released_at": None,
    "manifest": {
        "ok": True,
        "error": None,
        "files": [
            {
                "name": "results/fig1.png",
                "bytes": 1234,
                "sha256": "0" * 64,
                "media_type": "image/png",
                "ok": True,
                "checks": [{"check": "kind", "ok": True, "detail": "a PNG image"}],
            }
        ],
    },
    "reviews": [],
    "release_until": None,
}


@pytest.fixture(scope="module")
def service():
    """The stand-in on its own thread and event loop, for the module."""
    service = ExportService()
    port = free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def serve():
        asyncio.set_event_loop(loop)
        app = web.Application(
            [(r"/services/export/api/requests", RequestsRoute, {"service": service})]
        )
        server = HTTPServer(app)
        server.listen(port, "127.0.0.1")
        started.set()
        loop.run_forever()
        server.stop()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(10)
    service.url = f"http://127.0.0.1:{port}"
    yield service
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


# -- the researcher's server ------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(service, tmp_path_factory):
    """A real jupyter_server with the guard, its root the home, started from another folder
    (the relay must name paths under the root, not under the folder it runs in)."""
    root = tmp_path_factory.mktemp("relay")
    home = root / "jovyan"
    (home / "results").mkdir(parents=True)
    (home / "results" / "fig1.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (home / "results" / "table2.csv").write_text("group,n\na,120\n")
    cfg = root / "jupyter-config"
    cfg.mkdir()
    port = free_port()
    config = json.loads(ENABLE_FILE.read_text())
    config["ServerApp"].update(
        {"port": port, "ip": "127.0.0.1", "root_dir": str(home), "open_browser": False,
         "allow_root": True}
    )  # fmt: skip
    config["IdentityProvider"] = {"token": TOKEN}
    (cfg / "jupyter_server_config.json").write_text(json.dumps(config))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JUPYTER", "VISITING_")) and k != "PYTHONPATH"
    }
    env.update(
        {
            "HOME": str(home),
            "PYTHONPATH": str(REPO),
            "JUPYTER_CONFIG_DIR": str(cfg),
            "JUPYTER_CONFIG_PATH": str(cfg),
            "JUPYTER_DATA_DIR": str(root / "jupyter-data"),
            "JUPYTER_RUNTIME_DIR": str(root / "jupyter-runtime"),
            "JUPYTER_PLATFORM_DIRS": "1",
            "JUPYTERHUB_USER": "tanaka",
            "JUPYTERHUB_API_TOKEN": SERVER_TOKEN,
            "VISITING_HUB_URL": service.url + "/",
            "VISITING_SITE": "nig",
            "VISITING_GUARD_RULES": json.dumps({"downloads": "airlock"}),
            "VISITING_AUDIT_SPOOL": str(root / "spool"),
            "VISITING_DATA_MOUNT": str(root / "data"),
        }
    )
    log_path = root / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", "--no-browser"],
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(proc, url, log_path)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until_answering(proc: subprocess.Popen, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited:\n{log_path.read_text()[-3000:]}")
        try:
            r = requests.get(f"{url}/api/status", headers=AUTH, timeout=2)
            if r.status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server did not answer:\n{log_path.read_text()[-3000:]}")


AUTH = {"Authorization": f"token {TOKEN}"}


@pytest.fixture(autouse=True)
def fresh(service):
    service.reset()
    yield


def relay(server: str, method: str = "GET", headers=AUTH, **kwargs) -> requests.Response:
    return requests.request(method, f"{server}/visiting/exports", headers=headers, timeout=60,
                            **kwargs)  # fmt: skip


# -- the relay ----------------------------------------------------------------------------------


def test_the_list_is_the_persons_requests_at_this_site_asked_with_the_servers_token(
    server, service
):
    r = relay(server)
    assert r.status_code == 200, r.text
    assert r.json() == {"site": "nig", "airlock": True, "requests": [REQUEST]}
    assert r.headers["Cache-Control"] == "no-store"
    [seen] = service.seen
    assert (seen["method"], seen["path"], seen["site"]) == (
        "GET", "/services/export/api/requests", "nig"
    )  # fmt: skip
    assert seen["authorization"] == f"token {SERVER_TOKEN}"


def test_a_request_names_files_and_folders_under_the_home_for_this_site(server, service):
    r = relay(server, "POST", json={"paths": ["results/fig1.png", "results"],
                                    "purpose": "  Figure 1 of the paper "})  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.json()["id"] == "E7Q2" and r.json()["state"] == "checked"
    [seen] = service.seen
    assert (seen["method"], seen["path"]) == ("POST", "/services/export/api/requests")
    assert seen["authorization"] == f"token {SERVER_TOKEN}"
    assert seen["body"] == {
        "site": "nig",
        "paths": ["results/fig1.png", "results"],
        "purpose": "Figure 1 of the paper",
    }


BAD_INPUT = [
    ("not an object", ["results/fig1.png"], "body"),
    ("no paths", {"purpose": "Figure 1"}, "paths"),
    ("paths not a list", {"paths": "results/fig1.png", "purpose": "Figure 1"}, "paths"),
    ("no path", {"paths": [], "purpose": "Figure 1"}, "paths"),
    ("a number", {"paths": [1], "purpose": "Figure 1"}, "paths"),
    ("empty", {"paths": ["results/fig1.png", " "], "purpose": "Figure 1"}, "paths"),
    ("absolute", {"paths": ["/etc/passwd"], "purpose": "Figure 1"}, "paths"),
    ("home", {"paths": ["~/results"], "purpose": "Figure 1"}, "paths"),
    ("parent", {"paths": ["results/../../etc"], "purpose": "Figure 1"}, "paths"),
    ("too many", {"paths": ["a.png"] * (MAX_PATHS + 1), "purpose": "Figure 1"}, "paths"),
    ("no purpose", {"paths": ["results/fig1.png"]}, "purpose"),
    ("blank purpose", {"paths": ["results/fig1.png"], "purpose": "   "}, "purpose"),
    ("purpose not text", {"paths": ["results/fig1.png"], "purpose": ["Figure 1"]}, "purpose"),
    ("long purpose", {"paths": ["a.png"], "purpose": "x" * (MAX_PURPOSE + 1)}, "purpose"),
]


@pytest.mark.parametrize("body,field", [b[1:] for b in BAD_INPUT], ids=[b[0] for b in BAD_INPUT])
def test_bad_input_is_refused_naming_the_field_and_nothing_reaches_the_hub(
    server, service, body, field
):
    r = relay(server, "POST", json=body)
    assert r.status_code == 400, r.text
    doc = r.json()
    assert doc["field"] == field
    ja, en = doc["message"].split(" / ")
    assert any("\u3040" <= ch <= "\u30ff" for ch in ja)  # kana: the Japanese half
    assert en.isascii()
    assert service.seen == []


def test_a_body_that_is_not_json_is_refused(server, service):
    r = relay(server, "POST", data=b"paths=results", headers=AUTH | {"Content-Type": "text/plain"})
    assert r.status_code == 400 and r.json()["field"] == "body"
    assert service.seen == []


REFUSALS = {
    "no approval": (403, "export.no_approval", None),
    "path twice": (400, "export.path_twice", "paths"),
    "site unavailable": (503, "export.site_unavailable", None),
}


@pytest.mark.parametrize("status,key,field", REFUSALS.values(), ids=REFUSALS.keys())
def test_a_refusal_of_the_service_is_relayed_with_its_status_and_both_languages(
    server, service, status, key, field
):
    texts = {
        "ja": "サイト nig で現在有効な承認がありません。",
        "en": "You hold no approval at nig.",
    }
    service.answer = (
        status,
        {"error": key, "message": texts, "status": status, "field": field},
    )
    r = relay(server, "POST", json={"paths": ["results/fig1.png"], "purpose": "Figure 1"})
    assert r.status_code == status
    assert r.json() == {"message": f"{texts['ja']} / {texts['en']}", "field": field}
    assert len(service.seen) == 1
    # the list passes a refusal on the same way, and still says where the server is
    r = relay(server)
    assert r.status_code == status
    assert r.json()["message"] == f"{texts['ja']} / {texts['en']}"
    assert (r.json()["site"], r.json()["airlock"]) == ("nig", True)


def test_the_servers_token_refused_is_a_bad_gateway_not_the_persons_login(server, service):
    service.answer = (401, {"error": "export.login", "message": {"ja": "x", "en": "y"}})
    r = relay(server)
    assert r.status_code == 502
    assert "export service cannot be reached" in r.json()["message"]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_without_the_persons_login_nothing_is_relayed(server, service, method):
    body = {"paths": ["results/fig1.png"], "purpose": "Figure 1"}
    r = relay(server, method, headers={}, json=body if method == "POST" else None)
    assert r.status_code in (401, 403)
    r = relay(server, method, headers={"Authorization": "token wrong"}, json=body)
    assert r.status_code in (401, 403)
    assert service.seen == []


def test_a_logged_in_browser_must_send_the_xsrf_token(server, service):
    """A page of another origin cannot post for the person: with the login cookie and no
    _xsrf token, jupyter_server refuses before the relay reads the body."""
    s = requests.Session()
    r = s.get(f"{server}/login?token={TOKEN}", allow_redirects=True, timeout=30)
    assert r.status_code == 200
    assert relay(server, headers={}, cookies=s.cookies).status_code == 200
    r = relay(server, "POST", headers={}, cookies=s.cookies,
              json={"paths": ["results/fig1.png"], "purpose": "Figure 1"})  # fmt: skip
    assert r.status_code == 403
    assert [seen["method"] for seen in service.seen] == ["GET"]
    xsrf = s.cookies.get("_xsrf")
    r = relay(server, "POST", headers={"X-XSRFToken": xsrf}, cookies=s.cookies,
              json={"paths": ["results/fig1.png"], "purpose": "Figure 1"})  # fmt: skip
    assert r.status_code == 201, r.text


# -- the pure parts ------------------------------------------------------------------------------


def test_paths_are_kept_as_names_under_the_home():
    assert read_paths(["results/fig1.png", "./results/", "a b/c.csv", "~old/d:e.txt"]) == [
        "results/fig1.png",
        "results",
        "a b/c.csv",
        "~old/d:e.txt",
    ]


@pytest.mark.parametrize(
    "error,status,field",
    [
        (ExportRequestError("outside", field="paths"), 400, "paths"),
        (ExportRequestError("did not answer"), 502, None),
        (ExportRequestError("token", 401), 502, None),
        (ExportRequestError("not yours", 404), 404, None),
        (ExportRequestError("wrong state", 409, "state"), 409, "state"),
        (ExportRequestError("odd", 302), 502, None),
    ],
    ids=["client check", "no answer", "token refused", "not found", "wrong state", "redirect"],
)
def test_which_refusals_of_the_service_are_the_platforms(error, status, field):
    refusal = RelayRefusal.from_service(error)
    assert (refusal.status, refusal.field) == (status, field)
    if status == 502:
        assert "接続できません" in refusal.message and "cannot be reached" in refusal.message
    else:
        assert refusal.message == str(error)


# -- the JupyterLab extension's packages ----------------------------------------------------------


def test_the_labextensions_lock_file_agrees_with_its_package_json():
    package = json.loads((LABEXTENSION / "package.json").read_text())
    lock = json.loads((LABEXTENSION / "package-lock.json").read_text())
    root = lock["packages"][""]
    assert root["dependencies"] == package["dependencies"]
    assert root.get("devDependencies", {}) == package.get("devDependencies", {})
    for name in package["dependencies"]:
        assert f"node_modules/{name}" in lock["packages"], name
    assert "@jupyterlab/filebrowser" in package["dependencies"]
