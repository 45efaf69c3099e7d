"""`python -m extensions.guard.export` end to end, as a process, and the request client.

Rules checked: "No disclosure" (files leave only through an export request): the
freezing process the hub's export service runs at a site prints one manifest that
the hub reads with contracts Manifest.from_json; it exits 0 whenever it ran (failed
checks and refused requests are in the manifest), and non-zero with a message only
when it could not run; `read` hands over a frozen file only while it matches its
hash. The client asks the hub's export service with the server's own token and
carries the service's bilingual refusal to the researcher.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from extensions.contracts.export import CHECKS, ExportRules, Manifest
from extensions.guard.export import ExportRequestError, export_requests, request_export
from extensions.guard.export.client import home_relative
from tests.unit.extensions.guard.test_recognise import png, write_dataset

REPO = Path(__file__).resolve().parents[4]


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "extensions.guard.export", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        capture_output=True,
        timeout=120,
    )


@pytest.fixture
def site(tmp_path):
    home, export, data = tmp_path / "home", tmp_path / "export", tmp_path / "data"
    (home / "results").mkdir(parents=True)
    export.mkdir()
    write_dataset(data / "ds-nig", [f"NIG-{i:06d}" for i in range(1, 31)])
    (home / "results" / "fig1.png").write_bytes(png())
    (home / "results" / "counts.csv").write_text("sex,n\nfemale,120\nmale,3\n")
    (home / "results" / "outliers.txt").write_text("outlier: NIG-000012\n")
    return home, export, data


def freeze_args(home, export, data, request, rules, *paths):
    return ("freeze", "--home", str(home), "--export-dir", str(export), "--data", str(data),
            "--request", request, "--rules", rules, "--", *paths)  # fmt: skip


def test_freeze_prints_a_manifest_the_hub_reads(site):
    home, export, data = site
    rules = ExportRules(min_cell_count=5).to_json()
    p = cli(*freeze_args(home, export, data, "req-1", rules, "results"))
    assert p.returncode == 0, p.stderr.decode()
    m = Manifest.from_json(p.stdout.decode())
    assert m.request_id == "req-1" and m.error == "" and not m.ok
    files = {f.name: f for f in m.files}
    assert set(files) == {"results/counts.csv", "results/fig1.png", "results/outliers.txt"}
    assert files["results/fig1.png"].ok and files["results/fig1.png"].media_type == "image/png"
    counts = {c.check: c for c in files["results/counts.csv"].checks}
    assert [c.check for c in files["results/counts.csv"].checks] == list(CHECKS)
    assert not counts["disclosure"].ok and "row 2, column n: 3" in counts["disclosure"].detail
    outliers = {c.check: c for c in files["results/outliers.txt"].checks}
    assert not outliers["recogniser"].ok and "1 person" in outliers["recogniser"].detail
    assert Manifest.from_json((export / "req-1" / "manifest.json").read_text()) == m
    frozen = export / "req-1" / "files" / "results" / "fig1.png"
    assert stat.S_IMODE(frozen.stat().st_mode) == 0o444

    # read: the frozen bytes, as hashed
    r = cli("read", "--export-dir", str(export), "--request", "req-1", "--name", "results/fig1.png")
    assert r.returncode == 0 and r.stdout == png()


def test_a_refused_request_is_a_manifest_error_and_exit_zero(site):
    home, export, data = site
    p = cli(*freeze_args(home, export, data, "req-2", "{}", "results", "../data/ds-nig"))
    assert p.returncode == 0
    m = Manifest.from_json(p.stdout.decode())
    assert m.files == () and "goes up a folder" in m.error
    assert not (export / "req-2").exists()


def test_rules_may_come_from_a_file(site, tmp_path):
    home, export, data = site
    (tmp_path / "rules.json").write_text(json.dumps({"max_files": 1}))
    p = cli(*freeze_args(home, export, data, "req-3", f"@{tmp_path / 'rules.json'}", "results"))
    assert p.returncode == 0 and "more than the 1" in Manifest.from_json(p.stdout.decode()).error


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda a: a.__setitem__(a.index("--rules") + 1, "{not json"), "cannot read the rules"),
        (lambda a: a.__setitem__(a.index("--rules") + 1, '{"colour": 1}'), "unknown fields"),
        (lambda a: a.__setitem__(a.index("--rules") + 1, "@/nonexistent.json"), "cannot read"),
        (lambda a: a.__setitem__(a.index("--home") + 1, "/nonexistent"), "--home"),
        (lambda a: a.__setitem__(a.index("--export-dir") + 1, "/nonexistent"), "--export-dir"),
        (lambda a: a.__setitem__(a.index("--request") + 1, "../x"), "request id"),
    ],
    ids=["rules-not-json", "rules-unknown-field", "rules-file-missing", "no-home",
         "no-export-area", "bad-request-id"],
)  # fmt: skip
def test_a_freeze_that_cannot_run_exits_non_zero_with_a_message(site, change, message):
    home, export, data = site
    args = list(freeze_args(home, export, data, "req-4", "{}", "results"))
    change(args)
    p = cli(*args)
    assert p.returncode == 1 and p.stdout == b""
    assert message in p.stderr.decode()


def test_bad_flags_exit_with_usage(site):
    p = cli("freeze", "--home", "x")
    assert p.returncode == 2 and b"usage" in p.stderr


def test_read_refuses_a_file_not_frozen_or_changed(site):
    home, export, data = site
    assert cli(*freeze_args(home, export, data, "req-5", "{}", "results")).returncode == 0
    base = ("read", "--export-dir", str(export), "--request", "req-5", "--name")
    p = cli(*base, "results/none.csv")
    assert p.returncode == 1 and b"holds no frozen file" in p.stderr and p.stdout == b""
    p = cli(*base, "../../etc/passwd")
    assert p.returncode == 1 and p.stdout == b""
    p = cli("read", "--export-dir", str(export), "--request", "req-9", "--name", "a.csv")
    assert p.returncode == 1 and b"not frozen" in p.stderr
    frozen = export / "req-5" / "files" / "results" / "counts.csv"
    os.chmod(frozen, 0o644)
    frozen.write_text("sex,n\nfemale,1\n")
    p = cli(*base, "results/counts.csv")
    assert p.returncode == 1 and b"no longer matches its hash" in p.stderr and p.stdout == b""


# -- the client -----------------------------------------------------------------------------


class ExportService(BaseHTTPRequestHandler):
    """The hub's export service, as the client sees it."""

    seen: list = []
    answer: tuple[int, dict] = (201, {})

    def _reply(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        type(self).seen.append((self.command, self.path, self.headers["Authorization"], body))
        status, doc = type(self).answer
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _reply

    def log_message(self, *args):
        pass


@pytest.fixture
def service():
    ExportService.seen = []
    server = HTTPServer(("127.0.0.1", 0), ExportService)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def server_env(monkeypatch, tmp_path, service):
    home = tmp_path / "jovyan"
    (home / "results").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "server-token")
    monkeypatch.setenv("VISITING_HUB_URL", service + "/")
    monkeypatch.setenv("VISITING_SITE", "nig")
    monkeypatch.chdir(home / "results")
    return home


def test_request_export_posts_to_the_service_with_the_servers_token(server_env):
    ExportService.answer = (201, {"id": "req-7", "state": "submitted"})
    answer = request_export(["fig1.png", str(server_env / "results" / "t.csv")], " Figure 1 ")
    assert answer == {"id": "req-7", "state": "submitted"}
    [(method, path, auth, body)] = ExportService.seen
    assert (method, path, auth) == ("POST", "/services/export/api/requests", "token server-token")
    assert body == {"site": "nig", "paths": ["results/fig1.png", "results/t.csv"],
                    "purpose": "Figure 1"}  # fmt: skip


def test_a_refusal_carries_the_services_bilingual_message(server_env):
    # the export service's error shape: the key, the text by language, the status, the field
    texts = {
        "ja": "持ち出し申請は受け付けられません",
        "en": "the site does not take export requests",
    }
    ExportService.answer = (
        403,
        {"error": "export.site", "message": texts, "status": 403, "field": "site"},
    )
    with pytest.raises(ExportRequestError) as e:
        request_export("fig1.png", "Figure 1", site="ncc")
    assert str(e.value) == f"{texts['ja']} / {texts['en']}"
    assert e.value.status == 403 and e.value.field == "site"
    assert ExportService.seen[0][3]["site"] == "ncc"


def test_export_requests_lists_them(server_env):
    ExportService.answer = (200, {"requests": [{"id": "req-7"}]})
    assert export_requests() == {"requests": [{"id": "req-7"}]}
    assert ExportService.seen[0][:2] == ("GET", "/services/export/api/requests")


def test_the_client_refuses_what_the_service_would(server_env, monkeypatch):
    with pytest.raises(ExportRequestError, match="purpose"):
        request_export(["fig1.png"], "  ")
    with pytest.raises(ExportRequestError, match="not inside your home"):
        request_export(["/etc/passwd"], "x")
    with pytest.raises(ExportRequestError, match="not inside your home"):
        home_relative("../..", str(server_env), str(server_env / "results"))
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN")
    with pytest.raises(ExportRequestError, match="needs the hub"):
        request_export(["fig1.png"], "x")
    assert ExportService.seen == []


def test_the_request_command_prints_the_answer_or_the_refusal(server_env, service):
    env = {"HOME": str(server_env), "JUPYTERHUB_API_TOKEN": "t", "VISITING_HUB_URL": service,
           "VISITING_SITE": "nig"}  # fmt: skip
    ExportService.answer = (201, {"id": "req-8", "state": "submitted"})
    p = cli("request", "--purpose", "Table 2", str(server_env / "results" / "t.csv"), env=env)
    assert p.returncode == 0 and json.loads(p.stdout) == {"id": "req-8", "state": "submitted"}
    texts = {"ja": "目的が短すぎます", "en": "too short"}
    ExportService.answer = (400, {"error": "export.purpose", "message": texts, "status": 400})
    p = cli("request", "--purpose", "x", str(server_env / "results" / "t.csv"), env=env)
    assert p.returncode == 1 and "目的が短すぎます / too short" in p.stderr.decode()
