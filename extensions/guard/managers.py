"""The server's contents and kernel managers, with the guard's checks where only they can see.

Configured as the server's `contents_manager_class` and `kernel_manager_class`
by the guard's enable file under jupyter_server_config.d.
"""

from __future__ import annotations

from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
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


# the kernel's outputs on their way to the browser

OUTPUT_MSG_TYPES = ("stream", "display_data", "execute_result", "update_display_data", "error")
# how much earlier output of the same request is read together with a new chunk, so that
# records printed a few lines at a time are still recognised
STREAM_MEMORY = 16 * 1024


class GuardedKernelWebsocketConnection(ZMQChannelsWebsocketConnection):
    """Outputs holding raw records are replaced by a notice before they reach the browser.

    A notebook's outputs on disk are redacted when the contents API hands the
    notebook out; this covers the live channel: what a kernel prints while the
    researcher watches. Raw records printed one or two lines per request stay
    below the sniffer's threshold and pass; the site's network rules and the
    audit of data access are the controls there.
    """

    guard_app = None  # set by the guard extension

    def handle_outgoing_message(self, stream, outgoing_msg):
        app = self.guard_app
        channel = self.channels.get(stream) if isinstance(stream, str) else stream
        if app is None or getattr(channel, "channel", None) != "iopub":
            return super().handle_outgoing_message(stream, outgoing_msg)
        _idents, parts = self.session.feed_identities(outgoing_msg)
        header = self.session.unpack(parts[1])
        if header.get("msg_type") not in OUTPUT_MSG_TYPES:
            return super().handle_outgoing_message(stream, outgoing_msg)
        # unpacked by hand: Session.deserialize remembers signatures and would refuse the
        # message when the server deserializes it again on its way out
        unpack = self.session.unpack
        msg = {
            "header": header,
            "parent_header": unpack(parts[2]),
            "metadata": unpack(parts[3]),
            "content": unpack(parts[4]),
        }
        notice = self._guard_output(msg)
        if notice is None:
            return super().handle_outgoing_message(stream, outgoing_msg)
        replaced = self.session.msg(
            "stream", content=notice, parent=msg["parent_header"], metadata=msg["metadata"]
        )
        return super().handle_outgoing_message(stream, self.session.serialize(replaced))

    def _guard_output(self, msg) -> dict | None:
        """The stream content to send instead of `msg`, or None when it may go as it is."""
        content = msg["content"]
        msg_type = msg["header"]["msg_type"]
        out = dict(content, output_type=msg_type)
        parent = (msg.get("parent_header") or {}).get("msg_id", "")
        if msg_type == "stream":
            memory = self.__dict__.setdefault("_guard_streams", {})
            seen = memory.get(parent, "") + str(content.get("text", ""))
            memory.clear()  # only the request that is running now is remembered
            memory[parent] = seen[-STREAM_MEMORY:]
            out = {"output_type": "stream", "text": seen[-STREAM_MEMORY:]}
        finding = self.guard_app.downloads.sniffer.classify_output(out)
        if finding is None:
            return None
        self.guard_app.record_live_output(self.kernel_id, msg_type, finding)
        return {
            "name": "stderr",
            "text": (
                f"[データガード] この出力は生データ（{finding.describe_ja()}）を含むため"
                "表示しません。\n"
                f"[data guard] This output is hidden: it holds raw data "
                f"({finding.describe_en()}). Print summaries instead of records.\n"
            ),
        }
