"""A site in airlock mode: no direct download of a file, JupyterLab itself still works.

Rule checked: "Publication" and "No disclosure" (results leave only as the platform
allows): where the platform sets a site's downloads to "airlock", files leave only
through an export request. The guard's file routes (files, nbconvert, view) and the
egress gate refuse every direct download, whatever the file holds, with a notice in
Japanese and English that names the export request, recorded as download-blocked
(reason airlock); the contents API that JupyterLab's editors use, its pages, assets
and settings keep working. In "direct" mode (the default) nothing changes.

The guard's routes are real GuardedRoute subclasses over small tornado handlers; the
gate is its real web application in front of a small upstream server.
"""

from __future__ import annotations

import asyncio
import json
import socket
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from tornado import httpclient, web
from tornado.httpserver import HTTPServer

from extensions.contracts.clock import Clock
from extensions.contracts.egress import EgressRules
from extensions.guard import airlock
from extensions.guard.context import GuardRules, ServerContext
from extensions.guard.downloads import DownloadGuard, GuardedContents, GuardedRoute, Refusal
from extensions.guard.gate.judge import Gate
from extensions.guard.gate.policy import judge_airlock
from extensions.guard.gate.proxy import make_app
from extensions.guard.meter import EgressMeter
from extensions.guard.recognise import Recogniser
from tests.aio import run

# -- the rule from the platform file ----------------------------------------------------


@pytest.mark.parametrize(
    "text,mode",
    [(None, "direct"), ("{}", "direct"), ('{"downloads": "direct"}', "direct"),
     ('{"downloads": "airlock", "max_bytes": 10}', "airlock")],
    ids=["unset", "empty", "direct", "airlock"],
)  # fmt: skip
def test_downloads_mode_is_read_from_the_guard_rules(text, mode):
    rules = GuardRules.from_json(text)
    assert rules.downloads == mode
    assert rules.airlock is (mode == "airlock")
    env = {"VISITING_GUARD_RULES": text} if text else {}
    assert ServerContext.from_env(env).rules.downloads == mode


@pytest.mark.parametrize("value", ["Airlock", "none", "", 1, None, ["airlock"]])
def test_a_bad_downloads_mode_is_refused_naming_the_field_and_the_modes(value):
    with pytest.raises(ValueError) as e:
        GuardRules.from_json(json.dumps({"downloads": value}))
    assert "VISITING_GUARD_RULES.downloads" in str(e.value)
    assert "direct, airlock" in str(e.value) and repr(value) in str(e.value)


# -- which routes are downloads -----------------------------------------------------------

REFUSED = ["files/results/fig.png", "files/a.csv?download=1", "nbconvert/html/analysis.ipynb",
           "nbconvert/pdf/analysis.ipynb", "view/report.html", "files"]  # fmt: skip
ALLOWED = ["lab", "lab/tree/analysis.ipynb", "lab/api/settings/@jupyterlab/notebook-extension:tracker",
           "static/lab/main.js", "lab/extensions/x/static/remoteEntry.js", "api/contents/analysis.ipynb",
           "api/contents/results/table.csv", "api/kernels", "api/sessions", "visiting/period",
           "edit/notes.txt", "tree", "api/contents/files/x.csv", "filesystem/x"]  # fmt: skip


@pytest.mark.parametrize("route", REFUSED)
def test_direct_downloads_are_airlocked(route):
    assert airlock.airlocked(route.split("?")[0])
    assert airlock.airlocked(route.split("?")[0], "HEAD")
    assert judge_airlock("GET", route, "airlock").withhold
    assert not judge_airlock("GET", route, "direct").withhold


@pytest.mark.parametrize("route", ALLOWED)
def test_jupyterlab_itself_is_not_airlocked(route):
    assert not airlock.airlocked(route)
    assert not judge_airlock("GET", route, "airlock").withhold


def test_only_reading_is_a_download():
    assert not airlock.airlocked("files/x.csv", "PUT")
    assert not judge_airlock("POST", "nbconvert/html/a.ipynb", "airlock").withhold


def test_the_notice_names_the_airlock_in_both_languages():
    text = airlock.notice("results/table.csv")
    ja, en = text.split("\n")
    assert "持ち出し申請（エアロック）" in ja and "「results/table.csv」" in ja
    assert "export request (the airlock)" in en and "'results/table.csv'" in en
    assert "python -m extensions.guard.export request" in en
    r = Refusal("airlock", "results/table.csv", "/home/jovyan/results/table.csv")
    assert r.message() == text and "export request" in r.detail
    assert judge_airlock("GET", "files/a%.csv", "airlock").notice_en == airlock.notice_en(
        "files/a%.csv"
    )


# -- the guard's routes ---------------------------------------------------------------------


class Recorder:
    """The GuardApp as the routes see it: its DownloadGuard and what it records."""

    def __init__(self, root, rules: GuardRules):
        self.downloads = DownloadGuard(root, root / "data", rules)
        self.blocked: list[tuple[str, Refusal]] = []
        self.allowed: list[tuple[str, str]] = []

    def note_data_access(self, real, channel):
        pass

    def record_block(self, refusal, route):
        self.blocked.append((route, refusal))

    def record_allowed(self, path, real, route):
        self.allowed.append((route, path))


class FileRoute(web.RequestHandler):
    def get_current_user(self):
        return "tanaka"

    def write_error(self, status_code, **kwargs):
        # as jupyter_server's error pages and API errors do: the refusal's message
        self.finish(kwargs["exc_info"][1].log_message % ())

    def get(self, path):
        with open(self.guard_app.downloads.resolve(path), "rb") as f:
            self.finish(f.read())


class ContentsRoute(FileRoute):
    def get(self, path):
        self.finish({"name": path, "type": "file", "format": "text", "content": "x"})


class LabRoute(FileRoute):
    def get(self, path=""):
        self.finish("<html>JupyterLab</html>")


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def fetch_all(app: web.Application, paths: list[str]) -> list[httpclient.HTTPResponse]:
    port = unused_port()
    server = HTTPServer(app)
    server.listen(port, "127.0.0.1")
    client = httpclient.AsyncHTTPClient(force_instance=True)
    try:
        return [
            await client.fetch(f"http://127.0.0.1:{port}/{p}", raise_error=False) for p in paths
        ]
    finally:
        client.close()
        server.stop()
        await asyncio.sleep(0)


def guard_app(recorder) -> web.Application:
    def guarded(mixin, handler, name):
        return type(name, (mixin, handler), {"guard_app": recorder})

    return web.Application(
        [
            (r"/files/(.*)", guarded(GuardedRoute, FileRoute, "GuardedFiles")),
            (r"/api/contents/(.*)", guarded(GuardedContents, ContentsRoute, "GuardedC")),
            (r"/lab/?(.*)", LabRoute),
        ]
    )


@pytest.fixture
def home(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "table.csv").write_text("sex,n\nfemale,120\nmale,98\n")
    return tmp_path


def test_airlock_refuses_every_direct_download_and_records_it(home):
    rec = Recorder(home, GuardRules(downloads="airlock"))
    paths = ["files/results/table.csv", "files/results/table.csv?download=1", "files/missing.txt"]
    answers = run(fetch_all(guard_app(rec), paths))
    for resp in answers:
        assert resp.code == 403
        body = resp.body.decode()
        assert "持ち出し申請（エアロック）" in body and "export request (the airlock)" in body
    assert [(route, r.reason) for route, r in rec.blocked] == [("files", "airlock")] * 3
    assert rec.blocked[0][1].path == "results/table.csv"
    assert rec.allowed == []


def test_airlock_keeps_jupyterlab_and_its_contents_api(home):
    rec = Recorder(home, GuardRules(downloads="airlock"))
    answers = run(
        fetch_all(guard_app(rec), ["api/contents/results/table.csv", "lab", "lab/tree/x"])
    )
    assert [r.code for r in answers] == [200, 200, 200]
    assert rec.blocked == [] and rec.allowed == [("contents", "results/table.csv")]


def test_direct_mode_downloads_as_before(home):
    rec = Recorder(home, GuardRules())
    [resp] = run(fetch_all(guard_app(rec), ["files/results/table.csv"]))
    assert resp.code == 200 and resp.body.startswith(b"sex,n")
    assert rec.allowed == [("files", "results/table.csv")]


# -- the egress gate -------------------------------------------------------------------------


class FixedClock(Clock):
    def now(self) -> datetime:
        return datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


class GateEventsSeen:
    def __init__(self):
        self.blocked = []

    def download_blocked(self, route, decision):
        self.blocked.append((route, decision.reason))

    def level_crossed(self, level, reading):
        pass


class Upstream(web.RequestHandler):
    def get(self, path):
        self.finish({"served": path})


async def through_gate(downloads: str, paths: list[str]):
    upstream_port = unused_port()
    upstream = HTTPServer(web.Application([(r"/(.*)", Upstream)]))
    upstream.listen(upstream_port, "127.0.0.1")
    rules = EgressRules()
    events = GateEventsSeen()
    gate = Gate(
        prefix="/user/tanaka/nig/",
        recogniser=Recogniser(None),
        rules=rules,
        meter=EgressMeter(rules, FixedClock(), None),
        events=events,
        downloads=downloads,
        upstream=f"http://127.0.0.1:{upstream_port}",
    )
    try:
        answers = await fetch_all(make_app(gate), [f"user/tanaka/nig/{p}" for p in paths])
    finally:
        upstream.stop()
    return answers, events.blocked


def test_the_gate_refuses_direct_downloads_in_airlock_mode():
    paths = ["files/results/table.csv", "nbconvert/html/a.ipynb", "view/r.html"]
    answers, blocked = run(through_gate("airlock", paths))
    assert [r.code for r in answers] == [403, 403, 403]
    page = answers[0].body.decode()
    assert "エアロック" in page and "export request (the airlock)" in page
    assert blocked == [(p, "airlock") for p in paths]


def test_the_gate_passes_jupyterlab_in_airlock_mode_and_files_in_direct_mode():
    lab = ["lab", "api/contents/results/table.csv", "lab/api/settings/x", "static/lab/main.js"]
    answers, blocked = run(through_gate("airlock", lab))
    assert [r.code for r in answers] == [200] * len(lab) and blocked == []
    answers, blocked = run(through_gate("direct", ["files/results/table.csv"]))
    assert answers[0].code == 200 and blocked == []


def test_the_gate_event_records_the_airlock_reason():
    from extensions.guard.gate.events import GateEvents

    spooled = []
    context = SimpleNamespace(user="tanaka", site="nig", approval_id="A-1")
    events = GateEvents(context, FixedClock(), SimpleNamespace(append=spooled.append))
    events.download_blocked("files/a.csv", judge_airlock("GET", "files/a.csv", "airlock"))
    assert spooled[0]["data"]["reason"] == "airlock"
    assert spooled[0]["data"]["route"] == "gate" and spooled[0]["data"]["path"] == "files/a.csv"
