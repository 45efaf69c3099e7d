"""GuardApp: the Jupyter server extension that carries the guard's three jobs.

1. downloads: raw data never reaches the browser as a file (see `downloads`);
2. the usage period: a banner, kernels refused and the server stopped at the end, with the end
   refreshed from the hub (an extension, a revocation, a suspension) while the server runs;
3. activity events, spooled and shipped to the hub's audit intake.

It also relays JupyterLab's export requests to the hub's export service (see `exports`).
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from pathlib import Path

from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.application import ExtensionApp
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web
from tornado.ioloop import IOLoop, PeriodicCallback
from traitlets import Float, Unicode, default

from ..contracts.clock import clock_from_env
from ..contracts.environment import AUDIT_URL, PERIOD_CHECK_SECONDS
from .context import ServerContext
from .datawatch import DataWatch
from .downloads import DownloadGuard, Refusal, guard_routes, install_transform
from .events import ActivityEvents, EventShipper, EventSpool, SpoolHandler
from .exports import ExportsHandler
from .managers import (
    GuardedContentsManager,
    GuardedKernelManager,
    GuardedKernelWebsocketConnection,
    HomeUsage,
)
from .period import HubPeriodSource, UsagePeriod

# seconds between an allowed download and its event, so the event is off the request's path
ALLOWED_EMIT_DELAY = 0.2


class PeriodHandler(ExtensionHandlerMixin, APIHandler):
    """GET the period banner's content (used by the JupyterLab banner)."""

    @web.authenticated
    def get(self):
        app = self.extensionapp
        refresh = max(1, min(60, int(app.period_check_seconds)))
        self.finish(app.period.status().to_json(refresh))


class GuardStatusHandler(ExtensionHandlerMixin, APIHandler):
    """GET what the guard is doing: guarded routes, spooled and delivered events, the home's
    bytes in use and its quota."""

    @web.authenticated
    async def get(self):
        app = self.extensionapp
        used = await app.home_usage.used()
        self.finish(
            {
                "routes": app.guarded_routes,
                "pending_events": app.spool.pending(),
                "delivered_events": app.shipper.delivered,
                "data_watch": app.datawatch.watching if app.datawatch else 0,
                "audit_url": app.audit_url or None,
                "period": {
                    "source": "hub" if app.period_checked_at else "environment",
                    "checked_at": (
                        app.period_checked_at.isoformat() if app.period_checked_at else None
                    ),
                    "refresh_failures": app.period_refresh_failures,
                },
                "home": {"used": used, "quota": app.context.home_quota},
            }
        )


def _env_float(name: str, fallback: float) -> float:
    try:
        return float(os.environ.get(name, fallback))
    except ValueError:
        return fallback


class GuardApp(ExtensionApp):
    """The platform's guard in a researcher's Jupyter server."""

    name = "visiting_guard"
    load_other_extensions = True

    data_root = Unicode(
        help="""Where the site's approved datasets are mounted read-only. Nothing under it goes
        to the browser. Default: $VISITING_DATA_MOUNT or /data.""",
    ).tag(config=True)

    @default("data_root")
    def _data_root_default(self):
        return os.environ.get("VISITING_DATA_MOUNT", "/data")

    spool_dir = Unicode(
        help="""Where events wait until the hub's audit intake has them; in the home volume so
        they survive a restart. Default: $VISITING_AUDIT_SPOOL or
        ~/.local/share/visiting/audit-spool.""",
    ).tag(config=True)

    @default("spool_dir")
    def _spool_dir_default(self):
        return os.environ.get(
            "VISITING_AUDIT_SPOOL",
            str(Path.home() / ".local" / "share" / "visiting" / "audit-spool"),
        )

    audit_url = Unicode(
        help="""The hub's audit intake, e.g. http://172.30.1.1:8000/services/audit/. Events are
        only spooled while it is empty. Default: $VISITING_AUDIT_URL.""",
    ).tag(config=True)

    @default("audit_url")
    def _audit_url_default(self):
        return os.environ.get(AUDIT_URL, "")

    period_check_seconds = Float(
        help="""How often the approval period is checked (and, with an audit_url, asked of the
        hub, so an extension, a revocation or a suspension reaches a running server); at its
        end kernels are shut down and the server stops. Default:
        $VISITING_PERIOD_CHECK_SECONDS or 30.""",
    ).tag(config=True)

    @default("period_check_seconds")
    def _period_check_default(self):
        return _env_float(PERIOD_CHECK_SECONDS, 30.0)

    data_access_window = Float(
        help="""Opens of a file under the data folder within this many seconds are one
        data-access event with a count. Default: $VISITING_DATA_ACCESS_WINDOW or 60.""",
    ).tag(config=True)

    @default("data_access_window")
    def _data_access_window_default(self):
        return _env_float("VISITING_DATA_ACCESS_WINDOW", 60.0)

    # -- set-up ----------------------------------------------------------------

    def initialize_settings(self):
        server = self.serverapp
        self.context = ServerContext.from_env()
        self.clock = clock_from_env()
        self.period = UsagePeriod(self.context, self.clock)
        self.spool = EventSpool(self.spool_dir)
        self.events = ActivityEvents(server.event_logger, self.context, self.clock)
        server.event_logger.register_handler(SpoolHandler(self.spool, self._on_event))
        token = os.environ.get("JUPYTERHUB_API_TOKEN")
        self.shipper = EventShipper(self.spool, self.audit_url or None, token)
        # the hub's word on the approval, asked with the same token as the events are sent
        self.period_source = (
            HubPeriodSource(self.audit_url, token) if self.audit_url and token else None
        )
        self.period_checked_at = None  # when the hub last answered
        self.period_refresh_failures = 0
        self._refresh_failing = False
        self.downloads = DownloadGuard(
            server.contents_manager.root_dir, self.data_root, self.context.rules
        )
        self._check_managers()
        # the home's bytes, for its quota (see GuardedContentsManager.save)
        self.home_usage = HomeUsage(server.contents_manager.root_dir)
        GuardedContentsManager.guard_app = self
        GuardedKernelManager.guard_app = self
        GuardedKernelWebsocketConnection.guard_app = self
        self._data_counts: Counter[str] = Counter()
        self._allowed: list[tuple] = []
        self.datawatch: DataWatch | None = None
        self._stopping = False
        self._warned_day: str | None = None
        self._callbacks: list[PeriodicCallback] = []
        # guard what exists now; extensions loaded later are guarded again at start, and the
        # response transform covers them in between
        install_transform(server.web_app, self, server.base_url)
        self.guarded_routes = guard_routes(server.web_app, self)

    def _check_managers(self):
        """Refuse to run where the contents or kernel manager is not the guarded one."""
        server = self.serverapp
        for what, obj, cls in (
            ("contents_manager_class", server.contents_manager, GuardedContentsManager),
            ("kernel_manager_class", server.kernel_manager, GuardedKernelManager),
        ):
            if not isinstance(obj, cls):
                raise RuntimeError(
                    f"the guard needs ServerApp.{what} = {cls.__module__}.{cls.__name__}, "
                    f"got {type(obj).__name__}; its enable file sets it"
                )
        ws = server.kernel_websocket_connection_class
        if not (isinstance(ws, type) and issubclass(ws, GuardedKernelWebsocketConnection)):
            raise RuntimeError(
                "the guard needs ServerApp.kernel_websocket_connection_class = "
                "extensions.guard.managers.GuardedKernelWebsocketConnection; its enable file "
                "sets it"
            )

    def initialize_handlers(self):
        self.handlers.extend(
            [
                (r"/visiting/period", PeriodHandler),
                (r"/visiting/guard", GuardStatusHandler),
                # JupyterLab's export panel, relayed to the hub's export service
                (r"/visiting/exports", ExportsHandler),
            ]
        )

    async def _start_jupyter_server_extension(self, serverapp):
        # every extension has added its routes by now
        self.guarded_routes += guard_routes(serverapp.web_app, self)
        self.log.info("guard: %d file routes guarded", len(self.guarded_routes))
        self.events.emit(
            "server-start",
            approval_end=(
                self.context.approval_end.isoformat() if self.context.approval_end else "none"
            ),
        )
        self._start_datawatch()
        self.shipper.start()
        self._every(self.period_check_seconds, self.check_period)
        self._every(self.data_access_window, self.flush_data_access)
        self.judge_period()
        if self.period_source is not None:
            IOLoop.current().spawn_callback(self.check_period)

    def _every(self, seconds: float, fn) -> None:
        cb = PeriodicCallback(fn, max(seconds, 0.1) * 1000)
        cb.start()
        self._callbacks.append(cb)

    def _start_datawatch(self) -> None:
        if not os.path.isdir(self.data_root):
            return
        try:
            self.datawatch = DataWatch(self.data_root)
        except OSError as e:
            self.log.warning("guard: no file-system watch over %s: %s", self.data_root, e)
            return
        self.datawatch.add_reader(asyncio.get_event_loop())
        self.log.info(
            "guard: watching %d folders under %s", self.datawatch.watching, self.data_root
        )

    # -- what the routes and managers report --------------------------------------

    def _on_event(self, record: dict) -> None:
        self.shipper.wake()

    def record_block(self, refusal: Refusal, route: str) -> None:
        self.log.warning("guard: blocked %s %s: %s", route, refusal.path, refusal.detail)
        self.events.emit(
            "download-blocked",
            path=refusal.path,
            real_path=refusal.real_path,
            route=route,
            reason=refusal.reason,
            kind=refusal.kind,
            detail=refusal.detail[:500],
        )

    def record_allowed(self, path: str, real: str, route: str) -> None:
        """Noted now, emitted just after: validating and spooling an event is most of what the
        guard would otherwise add to an allowed download's latency."""
        try:
            size = os.stat(real).st_size
        except OSError:
            return  # the route answers 404
        self._allowed.append((self.clock.now(), path, route, size))
        if len(self._allowed) == 1:
            IOLoop.current().call_later(ALLOWED_EMIT_DELAY, self.flush_allowed)

    def flush_allowed(self) -> None:
        allowed, self._allowed = self._allowed, []
        for at, path, route, size in allowed:
            self.events.emit("download-allowed", at=at, path=path, route=route, size=size)

    def record_hidden_outputs(self, path: str, findings) -> None:
        first = findings[0]
        self.log.warning("guard: hid %d outputs of %s: %s", len(findings), path, first.detail)
        self.events.emit(
            "download-blocked",
            path=path,
            route="contents",
            reason="raw-outputs-hidden",
            kind=first.kind,
            detail=f"{len(findings)} output(s) hidden; first: {first.detail}"[:500],
        )

    def record_live_output(self, kernel_id: str, msg_type: str, finding) -> None:
        self.log.warning(
            "guard: hid a %s output of kernel %s: %s", msg_type, kernel_id, finding.detail
        )
        self.events.emit(
            "download-blocked",
            path=f"kernel {kernel_id}",
            route="kernel-output",
            reason="raw-outputs-hidden",
            kind=finding.kind,
            detail=f"a {msg_type} message; {finding.detail}"[:500],
        )

    def note_data_access(self, real: str, channel: str) -> None:
        self._data_counts[(real, channel)] += 1

    def flush_data_access(self) -> None:
        counts = self._data_counts
        self._data_counts = Counter()
        if self.datawatch is not None:
            for path, n in self.datawatch.drain().items():
                counts[(path, "process")] += n
        root = os.path.realpath(self.data_root)
        for (path, channel), n in sorted(counts.items()):
            rel = os.path.relpath(path, root) if path.startswith(root) else path
            self.events.emit(
                "data-access",
                path=path,
                dataset=rel.split(os.sep, 1)[0] if not rel.startswith("..") else None,
                channel=channel,
                count=n,
            )

    # -- the period ----------------------------------------------------------------

    async def check_period(self) -> None:
        """Judge the period by the clock, ask the hub how the approval stands, judge again."""
        self.judge_period()  # first: a hub that is slow to answer must not delay the end
        if self._stopping or self.period_source is None:
            return
        await self.refresh_period()
        self.judge_period()

    async def refresh_period(self) -> None:
        """Take the hub's answer about the approval's end; keep what is known without one.

        An answer can extend the period, end it (a revocation, a suspension) or leave it
        as it is; no answer never extends it, and the clock goes on ending it at the end
        known last.
        """
        c = self.context
        try:
            answer = await self.period_source.fetch(c.approval_id)
        except Exception as e:
            self.period_refresh_failures += 1
            # a warning when the hub stops answering, then quieter until it answers again
            say = self.log.warning if not self._refresh_failing else self.log.info
            self._refresh_failing = True
            say(
                "guard: no answer from the hub about approval %s (%s); keeping the end %s",
                c.approval_id,
                e,
                c.approval_end.isoformat() if c.approval_end else "none",
            )
            return
        if self._refresh_failing:
            self._refresh_failing = False
            self.log.info("guard: the hub answers again about approval %s", c.approval_id)
        self.period_checked_at = self.clock.now()
        after = answer.apply_to(c)
        if after == c:
            return
        # no event schema says "the end moved"; the log does, and period-end records the end
        self.log.warning(
            "guard: approval %s now %s: last day %s -> %s, ends before %s -> %s",
            c.approval_id,
            answer.status,
            c.end_date,
            after.end_date,
            c.approval_end.isoformat() if c.approval_end else "none",
            after.approval_end.isoformat(),
        )
        self.set_context(after)

    def set_context(self, context: ServerContext) -> None:
        """Hold a new context (it is immutable): the period and the events read it from now."""
        self.context = context
        self.period = UsagePeriod(context, self.clock)
        self.events.context = context
        self._warned_day = None  # a new end warns again, with its own date

    def judge_period(self) -> None:
        if self._stopping:
            return
        status = self.period.status()
        if status.level == "ended":
            self._stopping = True
            asyncio.ensure_future(self.end_of_period())
        elif status.level == "warning":
            today = self.clock.now().date().isoformat()
            if self._warned_day != today:
                self._warned_day = today
                self.events.emit(
                    "period-warning", days_left=status.days_left, end_date=status.end_date
                )

    async def end_of_period(self) -> None:
        """Shut every kernel down, record it, and stop the server."""
        km = self.serverapp.kernel_manager
        kernels = list(km.list_kernel_ids())
        self.log.warning(
            "guard: approval %s %s; shutting down %d kernels and stopping the server",
            self.context.approval_id,
            self.context.halted or "ended",
            len(kernels),
        )
        self.events.emit(
            "period-end", kernels_stopped=len(kernels), end_date=self.period.status().end_date
        )
        await km.shutdown_all()
        self.serverapp.stop()

    async def stop_extension(self):
        """Runs once however often the server is stopped (its own period end and a SIGTERM
        can both stop it): a second call waits for the first, so the last events are
        spooled and shipped before the server's loop ends."""
        if self._extension_stop is None:
            self._extension_stop = asyncio.ensure_future(self._stop_extension_once())
        await self._extension_stop

    _extension_stop: asyncio.Future | None = None

    async def _stop_extension_once(self):
        for cb in self._callbacks:
            cb.stop()
        self.flush_data_access()
        self.flush_allowed()
        self.events.emit("server-stop", reason="period-end" if self.period.ended() else "shutdown")
        if self.datawatch is not None:
            self.datawatch.close(asyncio.get_event_loop())
        await self.shipper.stop()
