"""The hub's record of its services' starts and restarts, which the admin page shows."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

from hub.plugins.service_restarts import (
    _WATCH,
    SERVICE_STATUS_FILE,
    ServiceRecord,
    _recorded_exit,
    read_service_status,
    watch_managed_services,
)
from hub.services.admin.figures import enforcer_up, jst_time


class Ticking:
    def __init__(self):
        self.t = datetime(2026, 4, 1, 3, 0, tzinfo=UTC)

    def __call__(self):
        self.t += timedelta(seconds=1)
        return self.t


def test_starts_and_restarts_are_counted(tmp_path):
    record = ServiceRecord(tmp_path / SERVICE_STATUS_FILE, hub_pid=100, now=Ticking())
    record.started("enforcer", 11)
    record.started("audit", 12)
    assert record.exited("enforcer", -9) == 1
    record.started("enforcer", 13)
    assert record.exited("enforcer", 1) == 2
    record.started("enforcer", 14)
    status = read_service_status(tmp_path)
    assert status["audit"] == {
        "pid": 12,
        "started": "2026-04-01T03:00:02+00:00",
        "restarts": 0,
        "last_restart": None,
        "last_exit_status": None,
    }
    assert status["enforcer"] == {
        "pid": 14,
        "started": "2026-04-01T03:00:06+00:00",
        "restarts": 2,
        "last_restart": "2026-04-01T03:00:05+00:00",
        "last_exit_status": 1,
    }


def test_a_new_hub_starts_the_record_afresh(tmp_path):
    ServiceRecord(tmp_path / SERVICE_STATUS_FILE, hub_pid=100).exited("enforcer", -9)
    ServiceRecord(tmp_path / SERVICE_STATUS_FILE, hub_pid=200).started("audit", 5)
    assert set(read_service_status(tmp_path)) == {"audit"}


def test_no_record_or_a_broken_one_reads_as_empty(tmp_path):
    assert read_service_status(tmp_path) == {}
    (tmp_path / SERVICE_STATUS_FILE).write_text("{not json")
    assert read_service_status(tmp_path) == {}
    (tmp_path / SERVICE_STATUS_FILE).write_text(json.dumps({"services": []}))
    assert read_service_status(tmp_path) == {}


def test_an_exit_is_recorded_and_logged_before_jupyterhub_restarts_it(tmp_path, caplog):
    from jupyterhub.services.service import Service

    watch_managed_services(tmp_path, poll_seconds=2)
    watch_managed_services(tmp_path, poll_seconds=3)  # once per process: no double wrapping
    assert Service._visiting_watched and _WATCH["poll_seconds"] == 3
    assert not hasattr(Service.start.__wrapped__, "__wrapped__")

    class Proc:
        returncode = -9

    class FakeService:
        name = "enforcer"
        proc = Proc()
        log = logging.getLogger("test.hub")

    restarted = []
    with caplog.at_level(logging.ERROR, "test.hub"):
        _recorded_exit(lambda self: restarted.append(self.name))(FakeService())
    assert restarted == ["enforcer"]
    assert "Service enforcer exited with status -9; restarting it (restart 1" in caplog.text
    assert read_service_status(tmp_path)["enforcer"]["restarts"] == 1


def test_the_page_shows_japan_time_and_warns_only_when_the_enforcer_is_down():
    assert jst_time("2026-04-01T03:00:05+00:00") == "2026-04-01 12:00:05 JST"
    assert jst_time(None) == "—"
    assert enforcer_up([{"name": "enforcer", "up": True}, {"name": "audit", "up": False}])
    assert not enforcer_up([{"name": "enforcer", "up": False}])
    assert enforcer_up([])  # no enforcer configured: nothing to warn of
