"""Activity events: versioned schemas, emitted through jupyter_server's event logger,
spooled on disk and shipped to the hub's audit intake.

Each event carries the user, site, approval id, time and an event id. The
spool survives a hub that is away (and a restart of the server: it lives in
the home volume); the intake stores an event id once, so a batch sent twice
is harmless.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from ..contracts.clock import Clock
from ..contracts.events import GUARD_BASE, guard_event
from .context import ServerContext

SCHEMA_DIR = Path(__file__).parent / "events"

log = logging.getLogger("visiting.guard.events")


def schema_id(name: str) -> str:
    return guard_event(name)


class ActivityEvents:
    """Emits the guard's events with the fields every event carries."""

    def __init__(self, event_logger, context: ServerContext, clock: Clock):
        self.event_logger = event_logger
        self.context = context
        self.clock = clock
        for path in sorted(SCHEMA_DIR.glob("*.yaml")):
            if schema_id(path.stem) not in event_logger.schemas.schema_ids:
                event_logger.register_event_schema(path)

    def emit(self, name: str, at: datetime | None = None, **data) -> str:
        """Emit one event (that happened `at`, default now); returns its id."""
        event_id = uuid.uuid4().hex
        payload = {
            "event_id": event_id,
            "user": self.context.user,
            "site": self.context.site,
            "approval_id": self.context.approval_id,
            "time": (at or self.clock.now()).isoformat(),
            **{k: v for k, v in data.items() if v is not None},
        }
        self.event_logger.emit(schema_id=schema_id(name), data=payload)
        return event_id


def to_audit_record(capsule: dict) -> dict | None:
    """An emitted event as the audit store takes it; None for events that are not ours."""
    sid = capsule.get("__schema__", "")
    if not sid.startswith(GUARD_BASE):
        return None
    data = {k: v for k, v in capsule.items() if not k.startswith("__")}
    common = {k: data.pop(k, None) for k in ("event_id", "user", "site", "approval_id", "time")}
    return {
        **common,
        "schema": sid,
        "version": int(capsule.get("__schema_version__", 1)),
        "data": data,
    }


class EventSpool:
    """Events on disk until the intake has them: `queue.jsonl` fills, `batch-*.jsonl` drain."""

    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.queue = self.dir / "queue.jsonl"

    def append(self, record: dict) -> None:
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        with open(self.queue, "a", encoding="utf-8") as f:
            f.write(line)

    def seal(self) -> None:
        """Move what is queued into a batch file, so new events go to a fresh queue."""
        try:
            if self.queue.stat().st_size == 0:
                return
        except FileNotFoundError:
            return
        os.replace(self.queue, self.dir / f"batch-{time.time_ns():020d}.jsonl")

    def batches(self) -> list[Path]:
        return sorted(self.dir.glob("batch-*.jsonl"))

    def pending(self) -> int:
        """Events not yet delivered."""
        n = 0
        for p in [*self.batches(), self.queue]:
            try:
                with open(p, encoding="utf-8") as f:
                    n += sum(1 for line in f if line.strip())
            except FileNotFoundError:
                pass
        return n

    @staticmethod
    def read(path: Path) -> list[dict]:
        out = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    out.append(json.loads(line))
                except ValueError:
                    # a line cut short by a crash; the rest of the batch still goes
                    log.warning("skipping an unreadable spooled event in %s", path)
        return out


class SpoolHandler(logging.Handler):
    """A jupyter_events handler: every event of the guard's schemas goes to the spool."""

    def __init__(self, spool: EventSpool, on_event: Callable[[dict], None] | None = None):
        super().__init__()
        self.spool = spool
        self.on_event = on_event

    def emit(self, record: logging.LogRecord) -> None:
        capsule = record.msg if isinstance(record.msg, dict) else None
        if capsule is None:
            return
        audit = to_audit_record(capsule)
        if audit is None:
            return
        try:
            self.spool.append(audit)
        except OSError:
            self.handleError(record)
        if self.on_event:
            self.on_event(audit)


class EventShipper:
    """Delivers spooled events to the hub's audit intake, in order, retrying while it is away."""

    def __init__(
        self,
        spool: EventSpool,
        url: str | None,
        token: str | None,
        batch_size: int = 500,
        interval: float = 1.0,
        max_backoff: float = 30.0,
    ):
        self.spool = spool
        self.url = url.rstrip("/") + "/api/events" if url else None
        self.token = token
        self.batch_size = batch_size
        self.interval = interval
        self.max_backoff = max_backoff
        self.delivered = 0
        self.failures = 0
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def deliver_once(self, timeout: float = 10.0) -> bool:
        """Send every sealed batch; True when the spool is empty afterwards."""
        if not self.url:
            return False
        from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

        self.spool.seal()
        client = AsyncHTTPClient()
        for path in self.spool.batches():
            events = EventSpool.read(path)
            for i in range(0, len(events), self.batch_size):
                body = json.dumps({"events": events[i : i + self.batch_size]}, ensure_ascii=False)
                req = HTTPRequest(
                    self.url,
                    method="POST",
                    body=body,
                    headers={
                        "Authorization": f"token {self.token}",
                        "Content-Type": "application/json",
                    },
                    request_timeout=timeout,
                    connect_timeout=min(timeout, 5.0),
                )
                try:
                    await client.fetch(req)
                except HTTPClientError as e:
                    if e.code in (400, 422):
                        # the intake refuses these events for good; keep them aside for a person
                        log.error("audit intake refused events in %s: %s", path, e)
                        os.replace(path, path.with_suffix(".refused"))
                        break
                    raise
            else:
                path.unlink(missing_ok=True)
                self.delivered += len(events)
        return not self.spool.batches()

    async def run(self) -> None:
        backoff = self.interval
        while True:
            try:
                await self.deliver_once()
                backoff = self.interval
            except Exception as e:  # the hub is away: keep the spool, try again later
                self.failures += 1
                log.info(
                    "audit intake unreachable (%s); %d events spooled", e, self.spool.pending()
                )
                backoff = min(backoff * 2, self.max_backoff)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            except TimeoutError:
                pass

    def start(self) -> None:
        if self.url and self._task is None:
            self._task = asyncio.ensure_future(self.run())

    async def stop(self, flush_timeout: float = 3.0) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self.url:
            try:
                await asyncio.wait_for(self.deliver_once(timeout=flush_timeout), flush_timeout + 1)
            except Exception as e:
                log.info("audit events stay spooled for the next start: %s", e)
