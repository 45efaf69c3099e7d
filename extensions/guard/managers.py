"""The server's contents and kernel managers, with the guard's checks where only they can see.

Configured as the server's `contents_manager_class` and `kernel_manager_class`
by the guard's enable file under jupyter_server_config.d.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import nbformat
from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from tornado import web

from .downloads import Literal

# the home quota

# seconds a measure of the home is trusted; the guard's own saves keep it up to date meanwhile
HOME_USAGE_MAX_AGE = 10.0
# a save is refused only on a measure this young, so files just deleted in a terminal count
REFUSAL_MAX_AGE = 1.0


def human_bytes(n: int) -> str:
    """1.5 GiB, 300 MiB, 12 KiB, 80 bytes: what a researcher reads in a quota message."""
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(n) >= size:
            return f"{n / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


def home_bytes(root: str | os.PathLike) -> int:
    """Bytes in the regular files under `root`, the way a volume's quota would count them.

    Symbolic links are not followed (the data folder's link is not the home's), other file
    systems mounted below are not entered, a file with several hard links counts once, and
    what cannot be read is skipped.
    """
    try:
        device = os.stat(root).st_dev
    except OSError:
        return 0
    total = 0
    linked: set[tuple[int, int]] = set()
    folders = [os.fspath(root)]
    while folders:
        try:
            entries = os.scandir(folders.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if entry.stat(follow_symlinks=False).st_dev == device:
                            folders.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        st = entry.stat(follow_symlinks=False)
                        if st.st_nlink > 1:
                            if (st.st_dev, st.st_ino) in linked:
                                continue
                            linked.add((st.st_dev, st.st_ino))
                        total += st.st_size
                except OSError:
                    continue  # gone since the listing, or not ours to read
    return total


class HomeUsage:
    """How many bytes the home holds: measured now and then, kept up to date by the guard's saves.

    A measure walks the whole home, so a storm of saves (a chunked upload, autosaves) must
    not walk it each time: a measure is trusted for `max_age` seconds, and what the guard
    saves meanwhile is added to it. Writes the guard does not see (kernels, terminals) are
    counted at the next measure.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        max_age: float = HOME_USAGE_MAX_AGE,
        now: Callable[[], float] = time.monotonic,
        measure: Callable[[str], int] = home_bytes,
    ):
        self.root = os.fspath(root)
        self.max_age = max_age
        self.now = now
        self.measure = measure
        self._used: int | None = None
        self._measured_at = 0.0
        self._measuring: asyncio.Future | None = None

    def cached(self, max_age: float | None = None) -> int | None:
        """The bytes in use if measured within `max_age` seconds (default: self.max_age)."""
        max_age = self.max_age if max_age is None else max_age
        if self._used is None or self.now() - self._measured_at > max_age:
            return None
        return self._used

    def measured(self, total: int) -> int:
        """Hold a measure just taken."""
        self._used = total
        self._measured_at = self.now()
        return total

    def add(self, delta: int) -> None:
        """Count what the guard itself just wrote (negative: freed) into the measure held."""
        if self._used is not None:
            self._used = max(0, self._used + delta)

    def forget(self) -> None:
        """The next question measures again (after a deletion, a folder copy)."""
        self._used = None

    async def used(self, max_age: float | None = None) -> int:
        """The bytes in use, measured (off the event loop) when the measure held is too old."""
        cached = self.cached(max_age)
        if cached is not None:
            return cached
        if self._measuring is None:
            self._measuring = asyncio.ensure_future(asyncio.to_thread(self.measure, self.root))
            self._measuring.add_done_callback(self._measure_done)
        # several saves at once wait for one walk of the home
        return await asyncio.shield(self._measuring)

    def _measure_done(self, future: asyncio.Future) -> None:
        self._measuring = None
        if not future.cancelled() and future.exception() is None:
            self.measured(future.result())


@dataclass(frozen=True)
class HomeQuotaCheck:
    """Whether a save fits the home quota: `replaced` bytes go, `incoming` bytes come."""

    quota: int
    used: int
    replaced: int  # the size of the file the save replaces (0: a new file or an append)
    incoming: int

    @property
    def after(self) -> int:
        return self.used - self.replaced + self.incoming

    @property
    def fits(self) -> bool:
        # a save that does not grow the home passes even over the quota: it is how one gets back
        return self.incoming <= self.replaced or self.after <= self.quota


def incoming_bytes(model: dict) -> int | None:
    """Bytes a save of `model` writes: the notebook as the server writes it, the file's or
    chunk's decoded content. None when the server would refuse the model itself (it answers
    400 with its own reason)."""
    content = model.get("content")
    if model.get("type") == "notebook":
        if not isinstance(content, dict):
            return None
        try:
            major = int(content.get("nbformat", 4))
            # the writer without the validation the save does anyway
            text = nbformat.versions[major].writes_json(nbformat.from_dict(content))
        except Exception:
            text = json.dumps(content, indent=1, ensure_ascii=False)
        return len(text.encode("utf-8")) + 1  # nbformat.write ends the file with a newline
    if model.get("type") != "file" or not isinstance(content, str):
        return None
    if model.get("format") == "text":
        return len(content.encode("utf-8"))
    if model.get("format") == "base64":
        # counted, not decoded: a chunk's bytes need not be held twice
        digits = len(content) - sum(content.count(c) for c in "\r\n \t")
        padding = len(content.rstrip()) - len(content.rstrip().rstrip("="))
        return max(0, digits * 3 // 4 - padding)
    return None


def home_quota_message(path: str, check: HomeQuotaCheck) -> str:
    """What the researcher reads when a save is refused: Japanese first, then English."""
    quota, used, size = (
        human_bytes(check.quota),
        human_bytes(check.used),
        human_bytes(check.incoming),
    )
    ja = (
        f"保存できません: 「{path}」（{size}）を保存するとホーム領域の容量上限 {quota} を超えます"
        f"（現在の使用量 {used}）。不要なファイルを削除するか、サイト管理者に上限の引き上げを"
        "依頼してください。JupyterLab で削除したファイルはホームのゴミ箱"
        "（~/.local/share/Trash）に残り、使用量に数えられます。"
    )
    en = (
        f"Not saved: '{path}' ({size}) would take your home folder over its quota of {quota} "
        f"({used} in use now). Delete files you no longer need, or ask your site admin to "
        "raise the quota. Files deleted in JupyterLab stay in the trash in your home "
        "(~/.local/share/Trash) and still count."
    )
    return f"{ja}\n{en}"


class HomeQuotaExceeded(web.HTTPError):
    """A 507 whose message is for the researcher, in Japanese and English."""

    def __init__(self, path: str, check: HomeQuotaCheck):
        super().__init__(
            507, Literal(home_quota_message(path, check)), reason="Home quota exceeded"
        )
        self.check = check


class GuardedContentsManager(AsyncLargeFileManager):
    """Notebooks come out with outputs that hold raw records replaced by a notice; saves that
    would take the home over its quota are refused."""

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
        target = await self._check_home_quota(model, path)
        result = await super().save(model, path)
        if target is not None:
            real, before = target
            self.guard_app.home_usage.add(_file_size(real) - before)
        if self.guard_app is not None and model.get("type") in ("notebook", "file"):
            self.guard_app.events.emit("notebook-save", path=path, kind=model.get("type"))
        return result

    async def copy(self, from_path, to_path=None):
        """Folders are copied on disk, not through save: their size is checked here."""
        app = self.guard_app
        quota = app.context.home_quota if app is not None else None
        if quota is None or not await self.dir_exists(from_path):
            return await super().copy(from_path, to_path)
        size = await asyncio.to_thread(home_bytes, self._get_os_path(from_path.strip("/")))
        check = HomeQuotaCheck(quota, await app.home_usage.used(), 0, size)
        await self._refuse_over_quota(from_path.strip("/"), check)
        try:
            return await super().copy(from_path, to_path)
        finally:
            app.home_usage.forget()

    async def delete_file(self, path):
        await super().delete_file(path)
        if self.guard_app is not None:
            self.guard_app.home_usage.forget()

    async def _check_home_quota(self, model, path) -> tuple[str, int] | None:
        """Refuse a save that would take the home over its quota.

        Returns the file the save writes (symbolic links resolved) and its size before, for
        counting the save afterwards; None when the quota does not apply: no quota, a
        folder, a file outside the home, a model the server refuses itself.
        """
        app = self.guard_app
        quota = app.context.home_quota if app is not None else None
        if quota is None or model.get("type") not in ("file", "notebook"):
            return None
        try:
            real = os.path.realpath(self._get_os_path(path.strip("/")))
        except web.HTTPError:
            return None  # outside the root: the save answers for itself
        root = os.path.realpath(self.root_dir)
        if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
            return None  # written through a link to another volume, not into the home
        before = _file_size(real)
        incoming = await asyncio.to_thread(incoming_bytes, model)
        if incoming is None:
            return None
        # the first chunk of an upload replaces the file, later ones append to it
        replaced = before if model.get("chunk") in (None, 1) else 0
        used = await app.home_usage.used()
        check = HomeQuotaCheck(quota, used, replaced, incoming)
        await self._refuse_over_quota(path.strip("/"), check)
        return real, before

    async def _refuse_over_quota(self, path: str, check: HomeQuotaCheck) -> None:
        if check.fits:
            return
        # refuse on a young measure only: files deleted in a terminal count at once
        check = replace(check, used=await self.guard_app.home_usage.used(REFUSAL_MAX_AGE))
        if check.fits:
            return
        self.log.warning(
            "guard: refused to save %s: %d bytes would take the home to %d of its %d-byte quota",
            path,
            check.incoming,
            check.after,
            check.quota,
        )
        raise HomeQuotaExceeded(path, check)


def _file_size(path: str) -> int:
    """The size of a regular file, 0 for anything else or nothing."""
    try:
        st = os.stat(path)
    except OSError:
        return 0
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


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
