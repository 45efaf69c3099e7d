"""The gate's audit events: spooled under its own state folder, shipped with the server's token."""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

from . import STATE_DIR
from .policy import Decision

log = logging.getLogger("visiting.gate")


class GateEvents:
    """The gate's audit events, spooled under its own state folder and shipped with the server's token."""

    def __init__(self, context, clock, spool, shipper=None):
        self.context = context
        self.clock = clock
        self.spool = spool
        self.shipper = shipper

    def emit(self, name: str, at=None, **data) -> None:
        from ...contracts.events import guard_event

        record = {
            "event_id": uuid.uuid4().hex,
            "user": self.context.user,
            "site": self.context.site,
            "approval_id": self.context.approval_id,
            "time": (at or self.clock.now()).isoformat(),
            "schema": guard_event(name),
            "version": 1,
            "data": {k: v for k, v in data.items() if v is not None},
        }
        try:
            self.spool.append(record)
        except OSError:
            log.exception("could not spool the %s event", name)
        if self.shipper is not None:
            self.shipper.wake()

    def download_blocked(self, route: str, decision: Decision) -> None:
        self.emit(
            "download-blocked",
            path=route,
            route="gate",
            reason=(
                decision.reason
                if decision.reason in ("egress-cap", "airlock")
                else "individual-level"
            ),
            kind=decision.reason,
            detail=decision.what_en[:500],
        )

    def output_withheld(self, channel: str, msg_type: str, decision: Decision, route=None) -> None:
        self.emit(
            "output-withheld",
            channel=channel,
            msg_type=msg_type or None,
            kind=decision.reason,
            detail=decision.what_en[:500],
            route=route,
        )

    def level_crossed(self, level: str, reading) -> None:
        """`egress-alert` or `egress-cap`: the secretariat sees it on the admin page."""
        self.emit(f"egress-{level}", **reading.event_data(level))

    def tallies(self, meter, force: bool = False) -> None:
        """The ledger's lines due now (`egress-tally`), each at the instant of its last count."""
        for t in meter.tallies(force=force):
            self.emit("egress-tally", at=t.at, **t.event_data())


def spool_dir() -> Path:
    return Path(os.environ.get("VISITING_GATE_STATE", STATE_DIR)) / "spool"
