"""The server's contents and kernel managers, with the guard's checks where only they can see.

Configured as the server's `contents_manager_class` and `kernel_manager_class`
by the guard's enable file under jupyter_server_config.d.
"""

from __future__ import annotations

from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from tornado import web

from .downloads import Literal


class GuardedContentsManager(AsyncLargeFileManager):
    """Notebooks come out with outputs that hold raw records replaced by a notice."""

    guard_app = None  # set by the guard extension

    async def get(self, path, content=True, type=None, format=None, **kwargs):
        model = await super().get(path, content=content, type=type, format=format, **kwargs)
        app = self.guard_app
        if app is not None and content and model.get("type") == "notebook" and model["content"]:
            findings = app.downloads.redact_notebook(model["content"])
            if findings:
                app.record_hidden_outputs(path, findings)
        return model

    async def save(self, model, path=""):
        result = await super().save(model, path)
        if self.guard_app is not None and model.get("type") in ("notebook", "file"):
            self.guard_app.events.emit("notebook-save", path=path, kind=model.get("type"))
        return result


class PeriodEnded(web.HTTPError):
    def __init__(self, message: str):
        super().__init__(403, Literal(message), reason="Approval period ended")


class GuardedKernelManager(AsyncMappingKernelManager):
    """No kernel starts after the approval period; starts and stops are recorded."""

    guard_app = None  # set by the guard extension

    async def _async_start_kernel(self, *args, **kwargs):
        app = self.guard_app
        kernel_name = kwargs.get("kernel_name") or self.default_kernel_name
        if app is not None and app.period.ended():
            app.events.emit("kernel-refused", kernel_name=kernel_name)
            raise PeriodEnded(app.period.ended_message())
        kernel_id = await super()._async_start_kernel(*args, **kwargs)
        if app is not None and not kwargs.get("kernel_id"):
            app.events.emit("kernel-start", kernel_id=kernel_id, kernel_name=kernel_name)
        return kernel_id

    async def _async_shutdown_kernel(self, kernel_id, now=False, restart=False):
        result = await super()._async_shutdown_kernel(kernel_id, now=now, restart=restart)
        app = self.guard_app
        if app is not None:
            reason = "restart" if restart else ("period-end" if app.period.ended() else "shutdown")
            app.events.emit("kernel-stop", kernel_id=kernel_id, reason=reason)
        return result

    # jupyter_client calls the _async_ names internally (shutdown_all); both names lead here
    start_kernel = _async_start_kernel
    shutdown_kernel = _async_shutdown_kernel
