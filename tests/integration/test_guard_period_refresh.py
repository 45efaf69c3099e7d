"""A running server learns of an extension, a revocation or a suspension without a restart.

Rules checked: "Period" (the banner shows the approval's end as the
secretariat set it; no kernel and no server after a revocation or a
suspension), "Who may use" (the hub answers a server only about its own
user, site and approval), and that a hub that does not answer never extends
a period.

Three parts: the parsing and the decisions, without a network; the hub's
answer (hub.services.audit.checks.period_of) over a real registry; and the real
audit service app (hub.services.audit.application.make_app, its registry on a SQLite
file with a FixedClock) in a thread, asked by the real guard server
(guard_server.py) with a token the real hub issued, the hub's HubAuth
checking it. Time moves by the clocks, never by sleeping.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from datetime import UTC, date, datetime, timedelta

import pytest
import requests

from extensions.contracts.clock import JST, FixedClock
from extensions.guard.context import GuardRules, ServerContext
from extensions.guard.period import HubAnswerError, HubPeriod, UsagePeriod, period_url
from hub.platform.operations import Operations
from hub.platform.policy import load_policy_dir
from hub.services.audit.application import make_app
from hub.services.audit.checks import period_of
from hub.store.audit import AuditStore
from hub.store.registry import ApprovalRegistry

from .conftest import hub_login
from .guard_server import GuardServer, free_port, server_env, wait_for

APPROVAL = "J-DU000101"  # tanaka's and yamada's; datasets at nig, ncc, ncgm, tommo
END = date(2035, 3, 31)
ENDS_BEFORE = datetime(2035, 3, 31, 15, 0, tzinfo=UTC)
NOW = datetime(2035, 3, 20, 10, 0, tzinfo=JST)  # 12 days left: the warning window
EXTENDED = date(2035, 9, 30)
SECRETARIAT = "jimu"


class FrozenClock:
    """The guard's clock interface, standing still."""

    def __init__(self, instant: datetime):
        self.instant = instant.astimezone(UTC)

    def now(self) -> datetime:
        return self.instant


def context(**kwargs) -> ServerContext:
    return ServerContext(
        user="tanaka",
        site="nig",
        approval_id=APPROVAL,
        approval_end=ENDS_BEFORE,
        end_date=END,
        rules=GuardRules(),
        **kwargs,
    )


def answer(**changes) -> dict:
    raw = {
        "approval_id": APPROVAL,
        "end_date": END.isoformat(),
        "ends_before": ENDS_BEFORE.isoformat(),
        "status": "active",
        "suspended": False,
    }
    return raw | changes


# ---------------------------------------------------------------------------
# the guard's side: reading the hub's answer and what it changes


def test_an_answer_is_read_with_its_instant_in_utc():
    hp = HubPeriod.from_json(
        '{"approval_id": "J-DU000101", "end_date": "2035-09-30", '
        '"ends_before": "2035-10-01T00:00:00+09:00", "status": "active", "suspended": false}',
        APPROVAL,
    )
    assert hp == HubPeriod(
        APPROVAL, EXTENDED, datetime(2035, 9, 30, 15, 0, tzinfo=UTC), "active", False
    )
    assert hp.ends_before.utcoffset() == timedelta(0)


BAD_ANSWERS = [
    ("not-json", b"<html>502 Bad Gateway</html>", "not JSON"),
    ("not-an-object", b"[1, 2]", "not a JSON object"),
    ("field-missing", {k: v for k, v in answer().items() if k != "ends_before"}, "lacks"),
    ("another-approval", answer(approval_id="J-DU000102"), "not 'J-DU000101'"),
    ("unknown-status", answer(status="paused"), "unknown status"),
    ("suspended-not-a-bool", answer(suspended="no"), "true or false"),
    ("suspended-disagrees", answer(status="suspended"), "disagree"),
    ("date-not-iso", answer(end_date="31/03/2035"), "ISO 8601"),
    ("date-not-a-string", answer(end_date=20350331), "ISO 8601"),
    ("instant-without-offset", answer(ends_before="2035-03-31T15:00:00"), "UTC offset"),
]


@pytest.mark.parametrize("body,why", [b[1:] for b in BAD_ANSWERS], ids=[b[0] for b in BAD_ANSWERS])
def test_an_unusable_answer_is_refused(body, why):
    with pytest.raises(HubAnswerError, match=why):
        HubPeriod.from_json(body, APPROVAL)


def test_an_extension_moves_the_banner_and_the_end():
    before = context()
    clock = FrozenClock(NOW)
    assert UsagePeriod(before, clock).status().level == "warning"
    hp = HubPeriod.from_json(
        answer(end_date="2035-09-30", ends_before="2035-09-30T15:00:00+00:00"), APPROVAL
    )
    after = hp.apply_to(before)
    # a new context; the old one stays as it was (frozen)
    assert before.end_date == END and after.end_date == EXTENDED
    with pytest.raises(dataclasses.FrozenInstanceError):
        after.end_date = END
    period = UsagePeriod(after, clock)
    s = period.status()
    assert s.end_date == "2035-09-30" and s.level == "info"
    assert s.days_left == (EXTENDED - date(2035, 3, 20)).days + 1 == 195
    assert "195 days left (until 2035-09-30 JST)" in s.text_en
    assert "残り 195 日（2035-09-30 まで）" in s.text_ja
    # the old end passes and the period goes on
    assert not period.ended(datetime(2035, 4, 1, 0, 0, 1, tzinfo=JST))
    assert period.ended(datetime(2035, 10, 1, 0, 0, tzinfo=JST))


@pytest.mark.parametrize(
    "status,suspended,ends_before,en,ja",
    [
        (
            "revoked",
            False,
            "2035-03-20T01:00:00+00:00",
            "was revoked by the secretariat on 2035-03-20",
            "2035-03-20 に事務局により取り消されました",
        ),
        (
            "suspended",
            True,
            ENDS_BEFORE.isoformat(),
            "suspended by the secretariat",
            "利用が停止されました",
        ),
        ("ended", False, "2035-03-20T00:00:00+00:00", "ended on 2035-03-31", "終了しました"),
    ],
    ids=["revoked", "suspended", "ended-by-the-hub"],
)
def test_the_hub_ends_the_period_now(status, suspended, ends_before, en, ja):
    """Ended at once, even where the server's clock is behind the hub's."""
    hp = HubPeriod.from_json(
        answer(status=status, suspended=suspended, ends_before=ends_before), APPROVAL
    )
    after = hp.apply_to(context())
    assert after.halted == status
    behind = FrozenClock(datetime(2035, 3, 19, 9, 0, tzinfo=JST))
    period = UsagePeriod(after, behind)
    assert period.ended()
    s = period.status()
    assert s.level == "ended" and s.days_left == 0
    assert en in s.text_en and "server stops" in s.text_en
    assert ja in s.text_ja and "サーバーは停止します" in s.text_ja
    assert en in period.ended_message() and ja in period.ended_message()


def test_an_answer_that_the_approval_has_not_started_does_not_stop_the_server():
    hp = HubPeriod.from_json(answer(status="not-started"), APPROVAL)
    after = hp.apply_to(context())
    assert after.halted is None and after == context()


def test_the_question_names_the_approval():
    assert (
        period_url("http://172.30.1.1:8000/services/audit/", "J-DU 0001&x=1")
        == "http://172.30.1.1:8000/services/audit/api/period?approval_id=J-DU+0001%26x%3D1"
    )


# ---------------------------------------------------------------------------
# the hub's side: what a server is told, over a real registry


@pytest.fixture
def hub(tmp_path, policy_copy):
    """A registry and audit store on a SQLite file, the demo policy imported, a FixedClock."""
    clock = FixedClock(NOW)
    url = f"sqlite:///{tmp_path / 'registry.sqlite'}"
    bundle = load_policy_dir(policy_copy)
    registry = ApprovalRegistry(url, clock=clock)
    registry.import_policy(bundle)
    store = AuditStore(url, clock=clock)
    ops = Operations(registry, store, bundle.platform, clock)
    yield ops
    registry.close()
    store.close()


def told(ops: Operations, user: str, site: str, approval_id: str) -> dict | None:
    now = ops.clock.now()
    return period_of(
        ops.registry.approvals_of(user),
        ops.registry.suspension_of(user, now),
        site,
        approval_id,
        now,
    )


@pytest.mark.parametrize(
    "user,site,approval_id,status",
    [
        ("tanaka", "nig", APPROVAL, "active"),
        ("yamada", "tommo", APPROVAL, "active"),
        ("sato", "ncc", "J-DU000102", "ended"),
        ("suzuki", "imsut", "J-DU000103", "not-started"),
        ("tanaka", "imsut", APPROVAL, None),  # no dataset of it at imsut
        ("tanaka", "ncc", "J-DU000102", None),  # not his approval
        ("sato", "nig", APPROVAL, None),  # not his approval
        ("tanaka", "nig", "J-DU999999", None),  # no such approval
    ],
    ids=[
        "handler-at-a-covered-site",
        "other-handler-other-site",
        "ended-approval",
        "not-started-approval",
        "site-not-covered",
        "approval-not-naming-him",
        "approval-of-someone-else",
        "unknown-approval",
    ],
)
def test_who_is_told_what(hub, user, site, approval_id, status):
    out = told(hub, user, site, approval_id)
    if status is None:
        assert out is None
    else:
        assert out["approval_id"] == approval_id and out["status"] == status
        assert out["suspended"] is False


def test_the_answer_follows_the_secretariat(hub):
    assert told(hub, "tanaka", "nig", APPROVAL) == answer()
    hub.extend(SECRETARIAT, approval_id=APPROVAL, end="2035-09-30", reason="more samples")
    assert told(hub, "tanaka", "nig", APPROVAL) == answer(
        end_date="2035-09-30", ends_before="2035-09-30T15:00:00+00:00"
    )
    hub.suspend(SECRETARIAT, user="tanaka", reason="shared his password")
    assert told(hub, "tanaka", "nig", APPROVAL)["status"] == "suspended"
    assert told(hub, "yamada", "nig", APPROVAL)["status"] == "active"  # only he is suspended
    hub.reinstate(SECRETARIAT, user="tanaka", reason="cleared")
    assert told(hub, "tanaka", "nig", APPROVAL)["status"] == "active"
    hub.clock.advance(timedelta(hours=1))
    hub.revoke(SECRETARIAT, approval_id=APPROVAL, reason="consent withdrawn")
    out = told(hub, "tanaka", "nig", APPROVAL)
    revoked_at = NOW.astimezone(UTC) + timedelta(hours=1)
    assert out == answer(
        end_date="2035-09-30", ends_before=revoked_at.isoformat(), status="revoked"
    )
    # what the hub says, the guard reads
    hp = HubPeriod.from_json(out, APPROVAL)
    assert hp.ends_before == revoked_at and hp.status == "revoked"


# ---------------------------------------------------------------------------
# the real audit service and the real guard server, through the real hub's tokens

PREFIX = "/services/audit/"


def hub_token(stack, user: str, scopes: list[str] | None = None) -> str:
    session, r = hub_login(stack.config.hub_url, user, f"{user}-demo")
    assert r.status_code == 200, r.text[:300]
    body = {"note": "period refresh test", "expires_in": 3600}
    if scopes is not None:
        body["scopes"] = scopes
    r = session.post(
        f"{stack.config.hub_url}/hub/api/users/{user}/tokens",
        json=body,
        headers={"X-XSRFToken": session.cookies.get("_xsrf", path="/hub/") or ""},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    return r.json()["token"]


def server_scopes(user: str, site: str) -> list[str]:
    """What the spawner gives a server's token (hub.plugins.config's server_token_scopes), spelled out."""
    return [
        f"access:servers!server={user}/{site}",
        f"users:activity!user={user}",
        f"read:users:name!user={user}",
    ]


@pytest.fixture(scope="module")
def tokens(stack):
    """Tokens the real hub issued: tanaka's server at nig and at imsut, and tanaka himself."""
    return {
        "server-nig": hub_token(stack, "tanaka", server_scopes("tanaka", "nig")),
        "server-imsut": hub_token(stack, "tanaka", server_scopes("tanaka", "imsut")),
        "user": hub_token(stack, "tanaka"),
    }


class Intake:
    """The audit service's app (make_app) on a loopback port, in a thread with its own loop.

    Its registry and store are its own objects on the test's database and clock, as the
    hub-managed service has its own; HubAuth asks the real hub about every token.
    """

    def __init__(self, database_url: str, clock: FixedClock, hub_api_url: str):
        self.database_url = database_url
        self.clock = clock
        self.hub_api_url = hub_api_url
        self.port = free_port()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PREFIX}"

    def start(self) -> None:
        from jupyterhub.services.auth import HubAuth

        ready = threading.Event()
        failed: list[BaseException] = []

        def run():
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            registry = ApprovalRegistry(self.database_url, clock=self.clock)
            store = AuditStore(self.database_url, clock=self.clock)
            try:
                auth = HubAuth(api_url=self.hub_api_url, api_token="unused", cache_max_age=60)
                server = make_app(store, auth, PREFIX, registry).listen(
                    self.port, address="127.0.0.1"
                )
            except BaseException as e:
                failed.append(e)
                ready.set()
                return
            self._loop = loop
            ready.set()
            try:
                loop.run_forever()
            finally:
                server.stop()
                loop.run_until_complete(server.close_all_connections())
                loop.close()
                registry.close()
                store.close()

        self._thread = threading.Thread(target=run, name="audit-intake", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failed:
            raise failed[0]
        wait_for(lambda: requests.get(self.url + "health", timeout=2).ok, timeout=10)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(15)
            self._loop = None


class Clocks:
    """The hub's clock (a FixedClock) and the server's (its clock file), moved together."""

    def __init__(self, hub_clock: FixedClock, clock_file):
        self.hub = hub_clock
        self.file = clock_file
        self.set(NOW)

    def set(self, when: datetime) -> None:
        self.hub.move_to(when)
        self.file.write_text(when.astimezone(UTC).isoformat())


@pytest.fixture
def clocks(hub, tmp_path):
    return Clocks(hub.clock, tmp_path / "now")


@pytest.fixture
def intake(hub, stack):
    i = Intake(hub.registry.database_url, hub.clock, f"{stack.config.hub_url}/hub/api")
    i.start()
    yield i
    i.stop()


@pytest.fixture
def guard(request, tmp_path, clocks):
    """Starts real guard servers of tanaka at nig that ask the `intake` with his server's
    token, or another audit url with another token."""
    servers: list[GuardServer] = []

    def start(audit_url: str | None = None, token: str | None = None) -> GuardServer:
        if audit_url is None:
            audit_url = request.getfixturevalue("intake").url
            token = request.getfixturevalue("tokens")["server-nig"]
        root = tmp_path / f"server-{len(servers)}"
        home, data, spool = root / "home", root / "data", root / "spool"
        home.mkdir(parents=True)
        data.mkdir()
        port = free_port()
        env = server_env(
            root,
            home,
            data,
            spool,
            clocks.file,
            port,
            VISITING_AUDIT_URL=audit_url,
            JUPYTERHUB_API_TOKEN=token,
        )
        s = GuardServer(root, home, data, spool, clocks.file, port, env)
        servers.append(s)
        s.start()
        return s

    yield start
    for s in servers:
        s.stop()


def banner(s: GuardServer) -> dict:
    r = s.api("GET", "/visiting/period")
    assert r.status_code == 200, r.text
    return r.json()


def refresh(s: GuardServer) -> dict:
    r = s.api("GET", "/visiting/guard")
    assert r.status_code == 200, r.text
    return r.json()["period"]


def events(store_url: str, name: str) -> list[dict]:
    store = AuditStore(store_url)
    try:
        return [e for e in store.events(user="tanaka") if e["schema"].endswith("/" + name)]
    finally:
        store.close()


def start_kernel(s: GuardServer) -> str:
    r = s.api("POST", "/api/kernels", json={"name": "python3"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def ask(intake: Intake, token: str | None, approval_id: str | None = APPROVAL):
    params = {} if approval_id is None else {"approval_id": approval_id}
    headers = {"Authorization": f"token {token}"} if token else {}
    return requests.get(intake.url + "api/period", params=params, headers=headers, timeout=30)


@pytest.mark.integration
@pytest.mark.parametrize(
    "token,approval_id,status,message",
    [
        ("server-nig", APPROVAL, 200, None),
        ("server-nig", None, 400, "approval_id is needed"),
        ("server-nig", "J-DU000102", 403, "does not name tanaka"),
        ("server-imsut", APPROVAL, 403, "covers no dataset at imsut"),
        ("user", APPROVAL, 403, "server's own token"),
        ("not-a-token", APPROVAL, 403, "not valid"),
        (None, APPROVAL, 401, "Authorization"),
    ],
    ids=[
        "his-server-his-approval",
        "no-approval-named",
        "an-approval-not-his",
        "his-server-at-a-site-it-does-not-cover",
        "his-own-token-not-a-server",
        "a-token-the-hub-does-not-know",
        "no-token",
    ],
)
def test_only_a_server_is_told_about_its_own_approval(
    intake, tokens, token, approval_id, status, message
):
    r = ask(intake, tokens.get(token, token), approval_id)
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    if status == 200:
        assert r.json() == answer()
        assert r.headers["Cache-Control"] == "no-store"
    else:
        assert r.json()["status"] == status and message in r.json()["message"]


@pytest.mark.integration
def test_an_extension_reaches_the_running_server(hub, clocks, guard):
    s = guard()
    b = banner(s)
    assert b["end_date"] == "2035-03-31" and b["level"] == "warning" and b["days_left"] == 12
    hub.extend(SECRETARIAT, approval_id=APPROVAL, end="2035-09-30", reason="more samples")
    b = wait_for(lambda: (b := banner(s))["end_date"] == "2035-09-30" and b)
    assert b["level"] == "info" and b["days_left"] == 195
    assert "until 2035-09-30 JST" in b["text_en"] and "2035-09-30 まで" in b["text_ja"]
    assert refresh(s)["source"] == "hub"
    # the end the server was started with passes; it runs on and takes kernels
    clocks.set(datetime(2035, 4, 1, 0, 0, 1, tzinfo=JST))
    wait_for(lambda: banner(s)["days_left"] == 183)
    start_kernel(s)
    assert s.proc.poll() is None
    assert "last day 2035-03-31 -> 2035-09-30" in s.log_path.read_text()


@pytest.mark.integration
def test_a_revocation_stops_kernels_and_the_server(hub, clocks, guard):
    s = guard()
    kid = start_kernel(s)
    clocks.set(NOW + timedelta(hours=1))
    hub.revoke(SECRETARIAT, approval_id=APPROVAL, reason="consent withdrawn")
    assert s.proc.wait(timeout=60) == 0
    log = s.log_path.read_text()
    assert f"approval {APPROVAL} revoked; shutting down 1 kernels" in log
    url = hub.registry.database_url
    end = wait_for(lambda: events(url, "period-end"))[0]
    assert end["data"] == {"kernels_stopped": 1, "end_date": "2035-03-31"}
    stop = wait_for(lambda: events(url, "kernel-stop"))[0]
    assert stop["data"] == {"kernel_id": kid, "reason": "period-end"}
    server_stop = wait_for(lambda: events(url, "server-stop"))[0]
    assert server_stop["data"] == {"reason": "period-end"}


@pytest.mark.integration
def test_a_suspension_stops_the_server(hub, clocks, guard):
    s = guard()
    start_kernel(s)
    hub.suspend(SECRETARIAT, user="tanaka", reason="shared his password")
    assert s.proc.wait(timeout=60) == 0
    assert f"approval {APPROVAL} suspended; shutting down 1 kernels" in s.log_path.read_text()
    url = hub.registry.database_url
    assert wait_for(lambda: events(url, "period-end"))[0]["data"]["kernels_stopped"] == 1


@pytest.mark.integration
def test_a_hub_that_does_not_answer_changes_nothing(hub, clocks, intake, guard):
    s = guard()
    hub.extend(SECRETARIAT, approval_id=APPROVAL, end="2035-09-30", reason="more samples")
    wait_for(lambda: banner(s)["end_date"] == "2035-09-30")
    intake.stop()
    failures = refresh(s)["refresh_failures"]
    # past the end the server started with: what the hub said last holds
    clocks.set(datetime(2035, 4, 2, 9, 0, tzinfo=JST))
    wait_for(lambda: refresh(s)["refresh_failures"] >= failures + 3)
    b = banner(s)
    assert b["end_date"] == "2035-09-30" and b["level"] == "info" and b["days_left"] == 182
    assert s.proc.poll() is None
    assert "no answer from the hub about approval J-DU000101" in s.log_path.read_text()
    # revoked while the hub is away: the server learns of it when the hub answers again
    hub.revoke(SECRETARIAT, approval_id=APPROVAL, reason="consent withdrawn")
    intake.start()
    assert s.proc.wait(timeout=60) == 0
    assert f"approval {APPROVAL} revoked" in s.log_path.read_text()


@pytest.mark.integration
def test_a_server_that_never_reached_the_hub_ends_at_the_end_it_was_given(clocks, guard):
    dead = f"http://127.0.0.1:{free_port()}{PREFIX}"
    clocks.set(datetime(2035, 3, 31, 23, 59, 0, tzinfo=JST))
    s = guard(audit_url=dead, token="a-token-no-hub-knows")
    wait_for(lambda: refresh(s)["refresh_failures"] >= 2)
    p = refresh(s)
    assert p["source"] == "environment" and p["checked_at"] is None
    assert banner(s)["end_date"] == "2035-03-31"
    clocks.set(datetime(2035, 4, 1, 0, 0, 1, tzinfo=JST))
    assert s.proc.wait(timeout=60) == 0
    assert f"approval {APPROVAL} ended; shutting down" in s.log_path.read_text()
