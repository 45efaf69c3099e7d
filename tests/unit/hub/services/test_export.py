"""The export service over HTTP: requests, the review queue, reviews, withdrawal, release.

The service runs here in this process on loopback (a real ServiceApp's tornado app, the
registry, export and audit stores on SQLite); only the question "whose token is this" is
answered without a hub, by a HubAuth whose `user_for_token` knows the people of the demo
(the token is the person's name). The site's side is a `Freezer` built here that freezes
files from a folder in-process (`FolderFreezer`), and once the real `LocalFreezer` over the
site's module (`python -m extensions.guard.export`) with folders in tmp_path.

Rules checked: "Who may use" (only a data handler with an approval active at the site may
ask), "Publication" (files leave after one site admin of the site and one secretariat
member approve, as the exact frozen bytes with their hash, to the requester only, within
the release window), "No disclosure" (another person, or a site admin of another site,
does not even see a request), "Sanctions" (a suspended requester's request is frozen).
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from jupyterhub.services.auth import HubAuth
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from extensions.contracts.clock import JST
from extensions.contracts.export import CheckResult, FrozenFile, Manifest
from hub.demo.ports import free_port
from hub.services.export.application import ExportService, make_app
from hub.services.export.desk import ExportDesk
from hub.services.export.freezer import FreezeError, Freezer, LocalFreezer
from tests.aio import run as run_async
from tests.unit.hub.services.airlock_world import airlock_world

NOW = datetime(2026, 6, 2, 12, 0, tzinfo=JST)
PREFIX = "/services/export/"


class TokensOf(HubAuth):
    """The hub's answer to "whose token is this": here the token is the person's name."""

    people: set[str] = set()

    def user_for_token(self, token, use_cache=True, session_id="", *, sync=True):
        model = {"kind": "user", "name": token} if token in self.people else None
        if token == "service-token":
            model = {"kind": "service", "name": "catalogue"}
        if sync:
            return model

        async def answer():
            return model

        return answer()


class FolderFreezer(Freezer):
    """Freezes in-process: copies each file of <root>/homes/<site>/<user> into
    <root>/export/<site>/<id>/, hashes it; a file named `*small*` fails disclosure."""

    def __init__(self, root: Path):
        self.root = root
        self.broken = False

    def freeze(self, request_id, site, username, paths, rules, datasets=()):
        if self.broken:
            raise FreezeError("no engine")
        home = self.root / "homes" / site / username
        out = self.root / "export" / site / request_id
        files = []
        for name in paths:
            src = home / name
            if not src.is_file():
                return Manifest(request_id, (), error=f"'{name}' is not a file in your home")
            dest = out / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
            data = dest.read_bytes()
            ok = "small" not in name
            checks = (CheckResult("kind", True), CheckResult("disclosure", ok, "" if ok else "2"))
            sha = hashlib.sha256(data).hexdigest()
            files.append(FrozenFile(name, len(data), sha, "text/csv", checks))
        return Manifest(request_id, tuple(files))

    def open_file(self, request_id, site, name):
        path = self.root / "export" / site / request_id / name
        if not path.is_file():
            raise FreezeError("not frozen")
        return io.BytesIO(path.read_bytes())


@pytest.fixture
def world(tmp_path, policy_copy):
    """The demo's people plus a site admin of ncc, tanaka's home at nig with two results."""
    w = airlock_world(tmp_path, policy_copy, NOW)
    home = tmp_path / "site" / "homes" / "nig" / "tanaka" / "results"
    home.mkdir(parents=True)
    (home / "table.csv").write_text("age_band,n\n40-49,12\n50-59,17\n")
    (home / "small.csv").write_text("age_band,n\n90-99,2\n")
    TokensOf.people = {"tanaka", "yamada", "sato", "admin-nig", "admin-ncc", "jimu"}
    yield w.bundle.platform, w.registry, w.store, FolderFreezer(tmp_path / "site"), w.clock
    w.close()


class Client:
    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}{PREFIX}"
        self.http = AsyncHTTPClient()

    async def call(self, method, path, token="tanaka", body=None):
        headers = {"Authorization": f"token {token}"} if token else {}
        try:
            resp = await self.http.fetch(
                self.base + path,
                method=method,
                headers=headers,
                body=None
                if body is None
                else (body if isinstance(body, bytes) else json.dumps(body)),
                allow_nonstandard_methods=True,
            )
        except HTTPClientError as e:
            resp = e.response
        return resp

    async def api(self, method, path, token="tanaka", body=None):
        resp = await self.call(method, "api/" + path, token, body)
        return resp.code, json.loads(resp.body)


def serve(world, test, freezer=None):
    platform, registry, store, folder_freezer, clock = world

    async def main():
        desk = ExportDesk(store, registry, platform, freezer or folder_freezer, clock)
        auth = TokensOf(api_url="http://127.0.0.1:1/hub/api", api_token="export-token")
        port = free_port()
        server = make_app(desk, auth, PREFIX).listen(port, address="127.0.0.1")
        try:
            await test(Client(port))
        finally:
            server.stop()

    run_async(main())


PATHS = ["results/table.csv", "results/small.csv"]


async def submit(c, paths=PATHS, token="tanaka"):
    status, doc = await c.api("POST", "requests", token, {"site": "nig", "paths": paths,
                                                          "purpose": "Table 2 of the paper"})  # fmt: skip
    assert status == 201, doc
    return doc


def test_a_request_from_submission_to_download(world):
    _, _, store, _, clock = world

    async def test(c: Client):
        doc = await submit(c)
        rid = doc["id"]
        assert doc["state"] == "checked" and doc["requester"] == "tanaka"
        files = {f["name"]: f for f in doc["manifest"]["files"]}
        assert files["results/small.csv"]["ok"] is False and files["results/table.csv"]["ok"]
        # the reviewers' queue
        for who in ("admin-nig", "jimu"):
            status, q = await c.api("GET", "requests?queue=1", who)
            assert status == 200 and [r["id"] for r in q["requests"]] == [rid]
        status, q = await c.api("GET", "requests?queue=1", "admin-ncc")
        assert (status, q["requests"]) == (200, [])
        status, q = await c.api("GET", "requests?queue=1", "yamada")
        assert (status, q["error"]) == (403, "export.not_reviewer")
        # reviews: a failed check needs an override
        review = {"decision": "approve", "reason": "aggregate tables"}
        status, err = await c.api("POST", f"requests/{rid}/reviews", "admin-nig", review)
        assert (status, err["error"], err["field"]) == (400, "export.override_needed", "override")
        assert "results/small.csv" in err["message"]["en"] and err["message"]["ja"]
        review["override"] = "2 is a count of variants, not of people"
        status, doc = await c.api("POST", f"requests/{rid}/reviews", "admin-nig", review)
        assert (status, doc["state"]) == (200, "under-review")
        status, err = await c.api("POST", f"requests/{rid}/reviews", "admin-nig", review)
        assert (status, err["error"]) == (403, "export.already_reviewed")
        # no download before approval
        status, err = await c.api("GET", f"requests/{rid}/files/results/table.csv")
        assert (status, err["error"]) == (409, "export.not_approved")
        status, doc = await c.api("POST", f"requests/{rid}/reviews", "jimu", review)
        assert (status, doc["state"]) == (200, "approved")
        assert datetime.fromisoformat(doc["release_until"]) == NOW + timedelta(days=7)
        # the download: the exact frozen bytes, their hash, an attachment; only the requester
        status, err = await c.api("GET", f"requests/{rid}/files/results/table.csv", "jimu")
        assert (status, err["error"]) == (403, "export.not_requester")
        resp = await c.call("GET", f"api/requests/{rid}/files/results/table.csv")
        assert resp.code == 200
        want = b"age_band,n\n40-49,12\n50-59,17\n"
        assert resp.body == want
        assert resp.headers["X-Content-SHA256"] == hashlib.sha256(want).hexdigest()
        assert resp.headers["Content-Disposition"] == "attachment; filename*=UTF-8''table.csv"
        status, doc = await c.api("GET", f"requests/{rid}")
        assert doc["state"] == "released"
        assert datetime.fromisoformat(doc["released_at"]) == NOW
        status, err = await c.api("GET", f"requests/{rid}/files/results/other.csv")
        assert (status, err["error"]) == (404, "export.no_file")
        # after the window
        clock.advance(timedelta(days=7))
        status, err = await c.api("GET", f"requests/{rid}/files/results/table.csv")
        assert (status, err["error"]) == (409, "export.release_expired")

    serve(world, test)
    assert [e["schema"].rsplit("/", 1)[-1] for e in store.audit.events()] == [
        "export-request", "export-checked", "export-review", "export-review", "export-release"
    ]  # fmt: skip


def test_who_sees_a_request(world):
    async def test(c: Client):
        rid = (await submit(c))["id"]
        for who, status in (("tanaka", 200), ("admin-nig", 200), ("jimu", 200),
                            ("admin-ncc", 404), ("yamada", 404)):  # fmt: skip
            got, doc = await c.api("GET", f"requests/{rid}", who)
            assert got == status, (who, doc)
        got, doc = await c.api("GET", "requests/nosuchrequest", "jimu")
        assert (got, doc["error"]) == (404, "export.not_found")
        # hidden is hidden for every act
        got, doc = await c.api("POST", f"requests/{rid}/withdraw", "yamada")
        assert got == 404
        got, doc = await c.api("POST", f"requests/{rid}/reviews", "admin-ncc",
                               {"decision": "approve"})  # fmt: skip
        assert got == 404
        # one's own list
        _, mine = await c.api("GET", "requests")
        assert [r["id"] for r in mine["requests"]] == [rid]
        _, mine = await c.api("GET", "requests?site=ncc")
        assert mine["requests"] == []
        _, theirs = await c.api("GET", "requests", "yamada")
        assert theirs["requests"] == []

    serve(world, test)


BAD_REQUESTS = [
    ("no-site", {"paths": ["a.csv"], "purpose": "p"}, 400, "export.unknown_site", "site"),
    ("unknown-site", {"site": "mars", "paths": ["a.csv"], "purpose": "p"}, 400,
     "export.unknown_site", "site"),
    ("no-purpose", {"site": "nig", "paths": ["a.csv"]}, 400, "export.purpose_needed", "purpose"),
    ("no-paths", {"site": "nig", "paths": [], "purpose": "p"}, 400, "export.no_paths", "paths"),
    ("absolute-path", {"site": "nig", "paths": ["a.csv", "/etc/passwd"], "purpose": "p"}, 400,
     "export.path_absolute", "paths[1]"),
    ("parent-path", {"site": "nig", "paths": ["../yamada/a.csv"], "purpose": "p"}, 400,
     "export.path_parent", "paths[0]"),
    ("too-many", {"site": "nig", "paths": [f"{i}.csv" for i in range(51)], "purpose": "p"},
     400, "export.too_many_files", "paths"),
    ("not-json", b"{", 400, "export.bad_body", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "status", "key", "field"),
    [b[1:] for b in BAD_REQUESTS],
    ids=[b[0] for b in BAD_REQUESTS],
)
def test_a_bad_request_is_named(world, body, status, key, field):
    async def test(c: Client):
        got, doc = await c.api("POST", "requests", "tanaka", body)
        assert (got, doc["error"], doc["field"]) == (status, key, field), doc
        assert doc["message"]["ja"] and doc["message"]["en"]
        if field and field.startswith("paths["):
            assert body["paths"][int(field[6:-1])] in doc["message"]["en"]

    serve(world, test)
    assert world[2].list_for_requester("tanaka") == []


WHO_MAY_ASK = [
    ("no-token", None, 401, "export.login"),
    ("unknown-token", "nobody", 403, "export.login"),
    ("a-service", "service-token", 403, "export.login"),
    ("approval-ended", "sato", 403, "export.no_approval"),
    ("secretariat-without-approval", "jimu", 403, "export.no_approval"),
]


@pytest.mark.parametrize(
    ("token", "status", "key"), [w[1:] for w in WHO_MAY_ASK], ids=[w[0] for w in WHO_MAY_ASK]
)
def test_only_a_data_handler_approved_at_the_site_may_ask(world, token, status, key):
    async def test(c: Client):
        got, doc = await c.api("POST", "requests", token,
                               {"site": "nig", "paths": ["a.csv"], "purpose": "p"})  # fmt: skip
        assert (got, doc["error"]) == (status, key)

    serve(world, test)


def test_withdraw_reject_and_a_suspended_requester(world):
    _, registry, _, _, _ = world

    async def test(c: Client):
        rid = (await submit(c, ["results/table.csv"]))["id"]
        status, doc = await c.api("POST", f"requests/{rid}/withdraw", "jimu")
        assert (status, doc["error"]) == (403, "export.not_requester")
        status, doc = await c.api("POST", f"requests/{rid}/withdraw")
        assert (status, doc["state"]) == (200, "withdrawn")
        status, doc = await c.api("POST", f"requests/{rid}/withdraw")
        assert (status, doc["error"]) == (409, "export.closed")

        rid = (await submit(c, ["results/table.csv"]))["id"]
        status, doc = await c.api("POST", f"requests/{rid}/reviews", "tanaka",
                                  {"decision": "approve"})  # fmt: skip
        assert (status, doc["error"]) == (403, "export.own_request")
        status, doc = await c.api("POST", f"requests/{rid}/reviews", "jimu",
                                  {"decision": "reject"})  # fmt: skip
        assert (status, doc["error"], doc["field"]) == (400, "export.reason_needed", "reason")
        status, doc = await c.api("POST", f"requests/{rid}/reviews", "jimu",
                                  {"decision": "reject", "reason": "shows a rare disease"})  # fmt: skip
        assert (status, doc["state"]) == (200, "rejected")
        status, doc = await c.api("GET", f"requests/{rid}/files/results/table.csv")
        assert (status, doc["error"]) == (409, "export.not_approved")

        rid = (await submit(c, ["results/table.csv"]))["id"]
        registry.suspend("tanaka", reason="investigation", by="jimu")
        status, doc = await c.api("POST", f"requests/{rid}/reviews", "admin-nig",
                                  {"decision": "approve"})  # fmt: skip
        assert (status, doc["error"]) == (409, "export.frozen")
        registry.reinstate("tanaka", reason="cleared", by="jimu")
        status, doc = await c.api("POST", f"requests/{rid}/reviews", "admin-nig",
                                  {"decision": "approve"})  # fmt: skip
        assert (status, doc["state"]) == (200, "under-review")

    serve(world, test)


def test_a_site_that_cannot_freeze_is_shown_to_reviewers(world):
    freezer = world[3]
    freezer.broken = True

    async def test(c: Client):
        doc = await submit(c, ["results/table.csv"])
        assert doc["state"] == "checked"
        assert doc["manifest"]["error"] == "the site could not freeze the files"
        status, err = await c.api("POST", f"requests/{doc['id']}/reviews", "jimu",
                                  {"decision": "approve", "override": "x"})  # fmt: skip
        assert (status, err["error"]) == (409, "export.not_frozen")

    serve(world, test)


def test_the_real_site_module_freezes_over_local_folders(world, tmp_path):
    """LocalFreezer runs `python -m extensions.guard.export freeze` over the state folder's
    homes and export areas, and `read` for the bytes."""
    platform = world[0]
    state = tmp_path / "site"
    freezer = LocalFreezer(state, tmp_path / "data", timeout=120)
    assert freezer.home("nig", "tanaka") == state / "homes" / "nig" / "tanaka"

    async def test(c: Client):
        doc = await submit(c, ["results/table.csv"])
        assert doc["state"] == "checked", doc
        assert doc["manifest"]["error"] == "", doc["manifest"]
        [f] = doc["manifest"]["files"]
        want = (state / "homes/nig/tanaka/results/table.csv").read_bytes()
        assert (f["name"], f["sha256"]) == ("results/table.csv", hashlib.sha256(want).hexdigest())
        assert (state / "export" / "nig" / doc["id"]).is_dir()
        # a path the site refuses is the manifest's error, not a failure
        bad = await submit(c, ["results/nothing-here.csv"])
        assert bad["manifest"]["error"] and bad["manifest"]["files"] == []
        if not f["ok"]:
            pytest.skip(f"the site's checks fail the table: {f['checks']}")
        for who in ("admin-nig", "jimu"):
            status, _ = await c.api("POST", f"requests/{doc['id']}/reviews", who,
                                    {"decision": "approve"})  # fmt: skip
            assert status == 200
        resp = await c.call("GET", f"api/requests/{doc['id']}/files/results/table.csv")
        assert resp.code == 200 and resp.body == want

    assert platform.export.checks.max_files == 50
    serve(world, test, freezer)


def test_the_service_builds_its_freezer_from_the_environment(policy_copy):
    env = {"VISITING_PLATFORM": str(policy_copy)}
    app = ExportService(environ=env)
    assert isinstance(app.make_freezer(), LocalFreezer)
    assert app.port == 8086 and app.service_prefix == "/services/export/"
    app = ExportService(environ=env | {"VISITING_SITES": "1"})
    assert type(app.make_freezer()).__name__ == "DockerFreezer"


@pytest.mark.parametrize(
    ("username", "volume"),
    [
        ("tanaka", "visiting-home-ncc-tanaka"),
        ("admin-ncc", "visiting-home-ncc-admin-2dncc"),
        ("o.brien", "visiting-home-ncc-o-2ebrien"),
    ],
)
def test_the_docker_freezer_reads_the_home_volume_the_spawner_named(username, volume):
    """The spawner's volume template `visiting-home-<site>-{username}` is filled with
    DockerSpawner's escaped name; the freezer must name the same volume."""
    from dockerspawner import DockerSpawner

    from hub.services.export.freezer import DockerFreezer

    assert DockerFreezer.home_volume("ncc", username) == volume
    assert volume == f"visiting-home-ncc-{DockerSpawner._escape(username)}"
