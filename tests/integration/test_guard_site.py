"""The guard in a real site container, through the real hub and proxy; events into the audit store.

Rules checked: "No disclosure" (tanaka at nig cannot take raw data to his
browser; his plot downloads), "Period" (the banner; the enforcer stops a
server whose approval has ended), "Reporting" (every event of his session is
in the verified audit log, once, also across a hub restart).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from extensions.contracts.clock import FileClock

from . import guard_server
from .conftest import SITE_ENFORCER_INTERVAL, ModuleAudit, write_clock
from .test_sites import Researcher, container_of, engine, sh  # noqa: F401  (engine: a fixture)

pytestmark = pytest.mark.integration

ENFORCER_INTERVAL = SITE_ENFORCER_INTERVAL


@pytest.fixture(scope="module")
def guard_stack(site_stack):
    """The session's site stack (conftest.py): the enforcer every 2 s, the containers' own
    period check slow (600 s), so the enforcer is what acts; data reads reported each."""
    assert site_stack.config.extra_env["VISITING_PERIOD_CHECK_SECONDS"] == "600"
    return site_stack


@pytest.fixture(scope="module")
def audit(guard_stack):
    """The audit store without the events of modules before this one (tanaka's servers
    elsewhere): every event of tanaka checked here is of this module's session at nig."""
    return ModuleAudit(guard_stack)


class Browser(Researcher):
    """tanaka with his browser session, talking to his server at a site through the proxy."""

    def server_get(self, site, path, **kwargs):
        return self.session.get(f"{self.hub}/user/{self.name}/{site}/{path}", timeout=60, **kwargs)


@pytest.fixture(scope="module")
def tanaka(guard_stack, engine, audit):  # noqa: F811  (audit: its snapshot comes first)
    t = Browser(guard_stack, "tanaka")
    r = t.start("nig")
    assert r.status_code in (201, 202), r.text
    t.wait_ready("nig")
    # the OAuth round trip that gives the browser its cookie for the server
    r = t.server_get("nig", "lab")
    assert r.status_code == 200, r.text[:300]
    c = container_of(engine, "tanaka", "nig")
    code, out = sh(
        c,
        "cp /data/JGAD000101/genotypes.vcf.gz ~/results.csv && "
        "ln -sfn /data ~/data && "
        "python3 -c \"import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt; "
        "plt.plot([1,2,3]); plt.savefig('/home/jovyan/plot.png')\"",
        user="1000",
    )
    assert code == 0, out
    yield t
    t.stop("nig") if "nig" in t.session.get(
        f"{t.hub}/hub/api/users/tanaka", headers=t._headers(), timeout=10
    ).json().get("servers", {}) else None


def events_of(audit, user="tanaka", schema_end=None):
    evs = list(audit.events(user=user))
    return [e for e in evs if schema_end is None or e["schema"].endswith(schema_end)]


def wait_for(fn, timeout=30.0, interval=0.5):
    return guard_server.wait_for(fn, timeout, interval)


SITE_ATTEMPTS = [
    ("files-data", "files/data/JGAD000102/reads_R1.fastq.gz"),
    ("files-data-encoded", "files/data/JGAD000101/genotypes%2Evcf%2Egz"),
    ("files-disguised-copy", "files/results.csv"),
    ("contents-base64-disguised", "api/contents/results.csv?type=file&format=base64"),
    ("contents-data-text", "api/contents/data/JGAD000101/clinical.tsv?type=file&format=text"),
    ("view-data", "view/data/JGAD000102/aligned.bam"),
    ("nbconvert-data", "nbconvert/html/data/JGAD000101/genotypes.vcf.gz"),
]


@pytest.mark.parametrize("path", [a[1] for a in SITE_ATTEMPTS], ids=[a[0] for a in SITE_ATTEMPTS])
def test_raw_data_is_blocked_through_the_proxy(tanaka, audit, path):
    r = tanaka.server_get("nig", path)
    assert r.status_code == 403, r.text[:300]
    text = (
        r.json()["message"] if r.headers["Content-Type"].startswith("application/json") else r.text
    )
    assert "ダウンロードを禁止しました" in text and "Download blocked" in text


def test_his_plot_downloads(tanaka, audit):
    r = tanaka.server_get("nig", "files/plot.png")
    assert r.status_code == 200
    assert r.content.startswith(b"\x89PNG")
    ev = wait_for(lambda: events_of(audit, schema_end="/download-allowed"))[-1]
    assert ev["data"]["path"] == "plot.png" and ev["data"]["size"] == len(r.content)


def test_banner(tanaka):
    r = tanaka.server_get("nig", "visiting/period")
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["approval_id"] == "J-DU000101" and b["site"] == "nig"
    assert b["level"] == "info" and "2035-03-31" in b["text_en"] and "残り" in b["text_ja"]


def test_events_reach_the_audit_store(tanaka, audit):
    for _ in range(2):
        tanaka.server_get("nig", "files/results.csv")
    names = wait_for(
        lambda: (
            n
            if {"server-start", "download-blocked", "download-allowed"}
            <= (n := {e["schema"].rsplit("/", 1)[1] for e in events_of(audit)})
            else None
        )
    )
    assert names
    blocked = events_of(audit, schema_end="/download-blocked")
    assert all(e["site"] == "nig" and e["approval_id"] == "J-DU000101" for e in blocked)
    assert audit.verify().ok


def test_events_spooled_while_the_hub_is_down_arrive_once(guard_stack, tanaka, audit, engine):  # noqa: F811
    c = container_of(engine, "tanaka", "nig")
    before = {e["event_id"] for e in events_of(audit)}
    guard_stack.stop_hub()
    try:
        # the researcher keeps working in his container: these reads become data-access events
        for name in ("clinical.tsv", "phenotypes.tsv", "genotypes.vcf.gz.tbi"):
            code, out = sh(c, f"cat /data/JGAD000101/{name} > /dev/null", user="1000")
            assert code == 0, out
        spool = "/home/jovyan/.local/share/visiting/audit-spool"
        wait_for(
            lambda: "phenotypes.tsv" in sh(c, f"cat {spool}/*.jsonl 2>/dev/null")[1], timeout=20
        )
    finally:
        guard_stack.start_hub()
    new = wait_for(
        lambda: [
            e
            for e in events_of(audit, schema_end="/data-access")
            if e["event_id"] not in before and e["data"]["path"].endswith("phenotypes.tsv")
        ],
        timeout=90,
    )
    assert new[0]["data"]["channel"] == "process"
    ids = [e["event_id"] for e in events_of(audit)]
    assert len(ids) == len(set(ids))
    assert audit.verify().ok


def test_enforcer_stops_a_server_whose_approval_ended(guard_stack, tanaka, audit, engine):  # noqa: F811
    clock = FileClock(guard_stack.config.clock_file)
    clock.set(datetime(2035, 4, 1, 0, 0, 5, tzinfo=UTC).astimezone(UTC))
    try:
        t0 = time.monotonic()
        wait_for(
            lambda: container_of(engine, "tanaka", "nig") is None, timeout=ENFORCER_INTERVAL * 10
        )
        took = time.monotonic() - t0
        assert took < ENFORCER_INTERVAL * 5, took
        stop = wait_for(lambda: events_of(audit, schema_end="/enforcement-stop"))[-1]
        assert stop["actor"] == "enforcer" and stop["site"] == "nig"
        assert "J-DU000101" in stop["data"]["reason"]
        # and the spawner refuses a new start after the end
        r = tanaka.start("nig")
        assert r.status_code == 403, r.text
    finally:
        write_clock(guard_stack.config.clock_file, "")


# ---------------------------------------------------------------------------
# every event type, through the real intake, with the right fields


def _server_token(tanaka) -> str:
    """A token of tanaka's server at nig only: the kind the intake accepts."""
    r = tanaka.session.post(
        f"{tanaka.hub}/hub/api/users/tanaka/tokens",
        json={
            "note": "guard test",
            "expires_in": 600,
            "scopes": ["access:servers!server=tanaka/nig"],
        },
        headers=tanaka._headers(),
        timeout=30,
    )
    assert r.status_code == 201, r.text
    return r.json()["token"]


def _local_guard(tmp_path, guard_stack, tanaka, check_seconds):
    """A guard server outside Docker, shipping to the hub's intake; its clock is its own, so
    the hub's enforcer does not see it and the container-side period flow runs alone."""
    from .guard_server import GuardServer, free_port, server_env

    data = guard_stack.bundle.platform.data_root / "nig"
    home = tmp_path / "home"
    home.mkdir(parents=True)
    clock = tmp_path / "now"
    port = free_port()
    env = server_env(
        tmp_path,
        home,
        data,
        tmp_path / "spool",
        clock,
        port,
        VISITING_PERIOD_CHECK_SECONDS=check_seconds,
        VISITING_AUDIT_URL=f"{guard_stack.config.hub_url.rstrip('/')}/services/audit/",
        JUPYTERHUB_API_TOKEN=_server_token(tanaka),
    )
    return GuardServer(tmp_path, home, data, tmp_path / "spool", clock, port, env)


def test_period_end_and_refusal_events_reach_the_store(tmp_path, guard_stack, tanaka, audit):
    before = {e["event_id"] for e in events_of(audit)}
    # a kernel refused after the end (the server's own check is an hour away)
    s = _local_guard(tmp_path / "a", guard_stack, tanaka, "3600")
    s.clock_file.write_text("2035-03-31T23:59:00+09:00")
    s.start()
    try:
        # the guard checks the period once as it starts (the hub's answer, then the end):
        # move the clock past the end only after that check, or it stops the server
        wait_for(lambda: s.api("GET", "/visiting/guard").json()["period"]["checked_at"])
        s.clock_file.write_text("2035-04-01T00:00:30+09:00")
        assert s.api("POST", "/api/kernels", json={"name": "python3"}).status_code == 403
        r = s.api(
            "PUT",
            "/api/contents/notes.txt",
            json={"type": "file", "format": "text", "content": "n=200"},
        )
        assert r.status_code == 201, r.text
    finally:
        s.stop()
    # the end reached while a kernel runs: kernels stop, the server stops itself
    s = _local_guard(tmp_path / "b", guard_stack, tanaka, "0.5")
    s.clock_file.write_text("2035-03-31T23:59:00+09:00")
    s.start()
    try:
        assert s.api("POST", "/api/kernels", json={"name": "python3"}).status_code == 201
        s.clock_file.write_text("2035-04-01T00:00:01+09:00")
        s.proc.wait(timeout=60)
    finally:
        s.stop()
    wanted = {"kernel-refused", "notebook-save", "period-warning", "period-end", "server-stop"}
    got = wait_for(
        lambda: (
            n
            if wanted
            <= (
                n := {
                    e["schema"].rsplit("/", 1)[1]
                    for e in events_of(audit)
                    if e["event_id"] not in before
                }
            )
            else None
        ),
        timeout=60,
    )
    assert got


GUARD_EVENTS = {
    "server-start",
    "server-stop",
    "kernel-start",
    "kernel-stop",
    "kernel-refused",
    "data-access",
    "notebook-save",
    "download-allowed",
    "download-blocked",
    "period-warning",
    "period-end",
}


def test_every_event_type_is_in_the_store_with_its_fields(audit):
    """Every guard event type arrived for tanaka, each valid against its versioned schema."""
    from pathlib import Path

    import jsonschema
    import yaml

    schema_dir = Path(__file__).parents[2] / "extensions" / "guard" / "events"
    schemas = {}
    for p in schema_dir.glob("*.yaml"):
        doc = yaml.safe_load(p.read_text())
        schemas[doc["$id"]] = doc
    events = [e for e in events_of(audit) if e["schema"] in schemas]
    assert {e["schema"].rsplit("/", 1)[1] for e in events} >= GUARD_EVENTS
    for ev in events:
        assert ev["user"] == "tanaka" and ev["site"] == "nig" and ev["approval_id"] == "J-DU000101"
        flat = {k: ev[k] for k in ("event_id", "user", "site", "approval_id", "time")} | ev["data"]
        jsonschema.validate(flat, {k: v for k, v in schemas[ev["schema"]].items() if k != "$id"})
        assert ev["version"] == int(schemas[ev["schema"]]["version"])
    ids = [e["event_id"] for e in events_of(audit)]
    assert len(ids) == len(set(ids))
    assert audit.verify().ok


# ---------------------------------------------------------------------------
# the intake refuses what a server may not send, and stores nothing of it


def _event(**over):
    ev = {
        "event_id": "0" * 31 + "1",
        "user": "tanaka",
        "site": "nig",
        "approval_id": "J-DU000101",
        "time": "2026-11-23T01:00:00+00:00",
        "schema": "https://visiting.example/events/guard/notebook-save",
        "version": 1,
        "data": {"path": "a.ipynb", "kind": "notebook"},
    }
    ev.update(over)
    return {k: v for k, v in ev.items() if v is not None}


INTAKE_REFUSALS = [
    # (id, which token, body, status, words in the message)
    ("no-token", None, {"events": [_event()]}, 401, "Authorization"),
    ("a-user-token-not-a-server-token", "user", {"events": [_event()]}, 403, "server's own token"),
    (
        "events-about-another-user",
        "server",
        {"events": [_event(user="yamada")]},
        403,
        "events[0].user",
    ),
    (
        "events-about-another-site",
        "server",
        {"events": [_event(site="ncc")]},
        403,
        "events[0].site",
    ),
    ("an-actor-only-the-hub-sets", "server", {"events": [_event(actor="enforcer")]}, 400, "actor"),
    (
        "a-second-event-without-time",
        "server",
        {"events": [_event(), _event(event_id="f" * 32, time=None)]},
        400,
        "time",
    ),
    ("events-not-a-list", "server", {"events": {"a": 1}}, 400, "must be a list"),
    ("not-json", "server", b"{events:", 400, "not JSON"),
]


@pytest.mark.parametrize(
    "which,body,status,words", [c[1:] for c in INTAKE_REFUSALS], ids=[c[0] for c in INTAKE_REFUSALS]
)
def test_the_intake_refuses_and_stores_nothing(
    guard_stack, tanaka, audit, which, body, status, words
):
    import requests

    before = audit.count()
    headers = {}
    if which == "server":
        headers["Authorization"] = f"token {_server_token(tanaka)}"
    elif which == "user":
        r = tanaka.session.post(
            f"{tanaka.hub}/hub/api/users/tanaka/tokens",
            json={"note": "not a server", "expires_in": 600, "scopes": ["read:users:name!user"]},
            headers=tanaka._headers(),
            timeout=30,
        )
        assert r.status_code == 201, r.text
        headers["Authorization"] = f"token {r.json()['token']}"
    url = f"{guard_stack.config.hub_url.rstrip('/')}/services/audit/api/events"
    if isinstance(body, bytes):
        r = requests.post(url, data=body, headers=headers, timeout=30)
    else:
        r = requests.post(url, json=body, headers=headers, timeout=30)
    assert r.status_code == status, r.text
    assert words in r.json()["message"], r.text
    assert audit.count() == before
