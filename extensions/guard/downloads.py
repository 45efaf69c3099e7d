"""The download guard: raw data never reaches the browser as a file.

Two layers, because the threat is a channel, not a route:

1. Every server route known to hand a named file's bytes to the browser
   (`/files/`, the contents API, `/nbconvert/`, `/view/`) gets a check in
   `prepare()`, before any byte is read: the requested name is resolved the
   way the file system resolves it (dot segments, repeated slashes, links),
   and refused when it lies under /data, is named like raw data, is raw data
   by content, or is larger than the platform allows.
2. Every other response, from any route an installed extension adds, passes
   an output transform that looks at the bytes about to leave and refuses
   raw data it recognises (HTTP 403 when the first chunk shows it; a cut-off
   response when a later chunk does).

At a site in airlock mode (GuardRules.downloads == "airlock") the file routes
refuse every file, whatever it holds (airlock.py); the contents API stays open
for JupyterLab's editors, under the checks above.

Refusals are HTTP 403 with a message in Japanese and English, and an audit
event. Classification results are cached by the file's identity (device,
inode, size, mtime, ctime), so a file is read at most once until it changes.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from tornado import web
from tornado.web import OutputTransform

from . import airlock
from .context import GuardRules
from .sniff import DEFAULT_NAME_PATTERNS, Finding, Sniffer

MIB = 1024 * 1024


@dataclass(frozen=True)
class Refusal:
    """Why a path or response may not go to the browser."""

    reason: str  # under-data, raw-name, raw-content, too-large, raw-response, airlock
    path: str
    real_path: str | None = None
    finding: Finding | None = None
    size: int | None = None
    limit: int | None = None

    @property
    def kind(self) -> str | None:
        return self.finding.kind if self.finding else None

    @property
    def detail(self) -> str:
        if self.reason == "under-data":
            return f"resolves to {self.real_path}, under the site's data folder"
        if self.reason == "too-large":
            return f"{self.size} bytes, over the download limit of {self.limit} bytes"
        if self.reason == airlock.AIRLOCK_REASON:
            return "direct downloads are off at this site: files leave by export request only"
        return self.finding.detail if self.finding else ""

    def message_en(self) -> str:
        if self.reason == airlock.AIRLOCK_REASON:
            return airlock.notice_en(self.path)
        what = f"'{self.path}'"
        if self.reason == "under-data":
            why = "it is the site's controlled-access data (under /data)"
        elif self.reason == "too-large":
            why = f"it is larger than the platform's download limit of {self.limit / MIB:.0f} MiB"
        else:
            why = f"it is raw genomic data: {self.finding.describe_en()}"
        return (
            f"Download blocked: {what}, because {why}. Raw data may not leave the site as a "
            "file; analyse it here and take out results only (summary tables, plots). "
            "This attempt is recorded in the audit log."
        )

    def message_ja(self) -> str:
        if self.reason == airlock.AIRLOCK_REASON:
            return airlock.notice_ja(self.path)
        what = f"「{self.path}」"
        if self.reason == "under-data":
            why = "サイトの制限公開データ（/data 以下）"
        elif self.reason == "too-large":
            why = f"ダウンロード上限（{self.limit / MIB:.0f} MiB）を超えるファイル"
        else:
            why = f"ゲノムの生データ（{self.finding.describe_ja()}）"
        return (
            f"ダウンロードを禁止しました: {what} は{why}です。生データはファイルとしてサイトの外に"
            "持ち出せません。ここで解析し、結果（集計表・図）のみを持ち出してください。"
            "この操作は監査ログに記録されました。"
        )

    def message(self) -> str:
        return f"{self.message_ja()}\n{self.message_en()}"


class Literal(str):
    """A message that `%` formatting leaves as it is.

    The server's HTML error page formats `log_message % args`, its API error
    replies send `log_message` as it is; a path may hold a `%` of its own.
    """

    def __mod__(self, _args):
        return str(self)


class DownloadBlocked(web.HTTPError):
    """A 403 whose message is for the researcher, in Japanese and English."""

    def __init__(self, refusal: Refusal):
        super().__init__(403, Literal(refusal.message()), reason="Blocked by the data guard")
        self.refusal = refusal


class DownloadGuard:
    """Decides whether a named file, or bytes about to leave, may go to the browser."""

    def __init__(
        self,
        root_dir: str | os.PathLike,
        data_root: str | os.PathLike = "/data",
        rules: GuardRules | None = None,
        cache_size: int = 4096,
    ):
        self.rules = rules or GuardRules()
        self.root_dir = os.path.realpath(root_dir)
        self.data_root = os.path.realpath(data_root)
        self.sniffer = Sniffer(
            name_patterns=tuple(DEFAULT_NAME_PATTERNS) + tuple(self.rules.extra_raw_patterns),
            disabled_kinds=frozenset(self.rules.disabled_kinds),
        )
        self._cache: OrderedDict[tuple, Finding | None] = OrderedDict()
        self._cache_size = cache_size

    # -- names -------------------------------------------------------------

    def resolve(self, requested: str) -> str:
        """The file a request names, as the server would open it (links and `..` resolved)."""
        rel = requested.replace("\\", "/").lstrip("/")
        return os.path.realpath(os.path.join(self.root_dir, rel))

    def under_data(self, real_path: str) -> bool:
        return real_path == self.data_root or real_path.startswith(self.data_root + os.sep)

    # -- checks ------------------------------------------------------------

    @property
    def airlock(self) -> bool:
        """Whether the site lets files leave only through export requests."""
        return self.rules.airlock

    def check_airlock(self, requested: str, real: str | None, download: bool) -> Refusal | None:
        """The airlock's refusal of a direct download (`download`: the route hands a file's
        bytes to the browser as a download), or None where the site allows downloads."""
        if download and self.airlock:
            return Refusal(airlock.AIRLOCK_REASON, requested, real)
        return None

    def check_path(self, requested: str, real: str | None = None) -> Refusal | None:
        """A refusal for handing the bytes of `requested` (relative to the server's root) to the
        browser, or None when they may go. `real`: the resolved path, when known already."""
        real = real or self.resolve(requested)
        if self.under_data(real):
            return Refusal("under-data", requested, real)
        for name in (requested, real):
            finding = self.sniffer.classify_name(name)
            if finding is not None:
                return Refusal("raw-name", requested, real, finding)
        try:
            st = os.stat(real)
        except OSError:
            return None  # the route answers 404 itself
        finding = self._classify(real, st)
        if finding is not None:
            return Refusal("raw-content", requested, real, finding)
        if stat.S_ISREG(st.st_mode) and st.st_size > self.rules.max_bytes:
            return Refusal(
                "too-large", requested, real, size=st.st_size, limit=self.rules.max_bytes
            )
        return None

    def _classify(self, real: str, st: os.stat_result) -> Finding | None:
        key = (real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        finding = self.sniffer.classify_path(real)
        self._cache[key] = finding
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return finding

    def check_bytes(self, data: bytes, name: str = "") -> Finding | None:
        return self.sniffer.classify_bytes(data, name)

    def check_json_content(self, body: bytes) -> Finding | None:
        """Raw data inside a JSON response's `content` field (a contents-API-like model)."""
        try:
            model = json.loads(body)
        except ValueError:
            return None
        if not isinstance(model, dict) or not isinstance(model.get("content"), str):
            return None
        content = model["content"]
        if model.get("format") == "base64":
            try:
                return self.check_bytes(base64.b64decode(content), str(model.get("name", "")))
            except ValueError:
                return None
        return self.sniffer.classify_text(content)

    # -- notebooks ---------------------------------------------------------

    def redact_notebook(self, nb) -> list[Finding]:
        """Replace outputs that hold raw records with a notice; returns what was found."""
        found = []
        for cell in nb.get("cells", []):
            outputs = cell.get("outputs") or []
            for i, out in enumerate(outputs):
                finding = self.sniffer.classify_output(out)
                if finding is None:
                    continue
                found.append(finding)
                outputs[i] = _notice_output(finding)
        return found


def _notice_output(finding: Finding) -> dict:
    from nbformat import v4

    return v4.new_output(
        "stream",
        name="stderr",
        text=(
            f"[データガード] この出力は生データ（{finding.describe_ja()}）を含むため表示しません。\n"
            f"[data guard] This output is hidden: it holds raw data ({finding.describe_en()}). "
            "Print summaries instead of records.\n"
        ),
    )


# ---------------------------------------------------------------------------
# the routes


class GuardedRoute:
    """Mixin for a file-serving handler: refuse raw data in `prepare()`, before any byte is read.

    Subclasses (made by `guard_routes`) set `guard_route` (a name for the
    audit log) and `guard_path_arg` (which URL group names the file).
    """

    guard_route = "files"
    guard_path_arg = 0
    guard_app = None  # the GuardApp, set when the routes are guarded
    # a direct download of a file, which a site in airlock mode refuses (see airlock.py)
    guard_airlock = True

    def guard_wants_content(self) -> bool:
        return True

    def guard_path(self) -> str:
        """The file the request names, as the route's pattern captured it."""
        if self.path_kwargs.get("path") is not None:
            return self.path_kwargs["path"]
        if len(self.path_args) > self.guard_path_arg:
            return self.path_args[self.guard_path_arg] or ""
        return ""

    async def prepare(self):
        result = super().prepare()
        if result is not None:
            await result
        if self.request.method not in ("GET", "HEAD") or self._finished:
            return
        if not self.current_user:
            return  # the route's own authentication answers
        app = self.guard_app
        path = self.guard_path()
        self.request._visiting_checked = True
        real = self._guard_real = app.downloads.resolve(path)
        if app.downloads.under_data(real):
            app.note_data_access(real, channel="contents")
        if not self.guard_wants_content():
            return  # names and metadata only; no file bytes in this answer
        refusal = app.downloads.check_airlock(path, real, self.guard_airlock)
        refusal = refusal or app.downloads.check_path(path, real)
        if refusal is not None:
            app.record_block(refusal, route=self.guard_route)
            raise DownloadBlocked(refusal)
        app.record_allowed(path, real, route=self.guard_route)


class GuardedContents(GuardedRoute):
    guard_route = "contents"
    # JupyterLab's editors open files through the contents API: it stays open in airlock
    # mode, under the raw-data checks (and the egress gate's)
    guard_airlock = False

    def guard_wants_content(self) -> bool:
        if self.get_query_argument("content", "1") == "0":
            return False
        real = self._guard_real
        if os.path.isdir(real):
            return False  # a listing: names, not bytes
        if (
            real.endswith(".ipynb")
            and self.get_query_argument("format", None) is None
            and self.get_query_argument("type", "notebook") == "notebook"
        ):
            # a notebook model: raw outputs are hidden by the contents manager instead
            self._visiting_notebook = True
            return False
        return True


class GuardedNbconvert(GuardedRoute):
    guard_route = "nbconvert"
    guard_path_arg = 1


class GuardedView(GuardedRoute):
    guard_route = "view"


def guard_routes(web_app, app) -> list[str]:
    """Swap the server's file-serving handler classes for guarded subclasses; returns route names."""
    from jupyter_server.base.handlers import AuthenticatedFileHandler
    from jupyter_server.files.handlers import FilesHandler
    from jupyter_server.nbconvert.handlers import NbconvertFileHandler
    from jupyter_server.services.contents.handlers import ContentsHandler
    from jupyter_server.view.handlers import ViewHandler

    mixins = [
        (AuthenticatedFileHandler, GuardedRoute),
        (FilesHandler, GuardedRoute),
        (ContentsHandler, GuardedContents),
        (NbconvertFileHandler, GuardedNbconvert),
        (ViewHandler, GuardedView),
    ]
    guarded = []

    def visit(router):
        for rule in getattr(router, "rules", []):
            target = rule.target
            if isinstance(target, type):
                for base, mixin in mixins:
                    if issubclass(target, base) and not issubclass(target, GuardedRoute):
                        rule.target = type(
                            f"Guarded{target.__name__}", (mixin, target), {"guard_app": app}
                        )
                        guarded.append(f"{rule.matcher.regex.pattern} ({target.__name__})")
                        break
            else:
                visit(target)

    visit(web_app.default_router)
    visit(web_app.wildcard_router)
    return guarded


# ---------------------------------------------------------------------------
# every other response


# Routes that serve the application itself or carry no file bytes: the transform skips them.
SKIPPED_PREFIXES = (
    "static/",
    "lab/static/",
    "lab/extensions/",
    "lab/api/",
    "api/kernels",
    "api/kernelspecs",
    "api/sessions",
    "api/terminals",
    "api/status",
    "api/me",
    "api/events",
    "api/metrics",
    "kernelspecs/",
    "visiting/",
)


class RawResponseTransform(OutputTransform):
    """Looks at the bytes of every response not already checked, from any route."""

    app = None  # the GuardApp, set by install_transform
    base_url = "/"
    scan_bytes = 4 * MIB

    def __init__(self, request):
        super().__init__(request)
        self.request = request
        rel = request.path[len(self.base_url) :] if request.path.startswith(self.base_url) else ""
        self.active = self.app is not None and not rel.startswith(SKIPPED_PREFIXES)
        self.cut = False

    def _checked(self) -> bool:
        return getattr(self.request, "_visiting_checked", False)

    def transform_first_chunk(self, status_code, headers, chunk, finishing):
        if not self.active or status_code != 200 or self._checked() or not chunk:
            self.active = self.active and not self._checked()
            return status_code, headers, chunk
        data = bytes(chunk[: self.scan_bytes])
        ctype = headers.get("Content-Type", "")
        finding = None
        if "json" in ctype and finishing:
            finding = self.app.downloads.check_json_content(data)
        if finding is None:
            finding = self.app.downloads.check_bytes(data, _name_of(self.request.path))
        if finding is None:
            return status_code, headers, chunk
        refusal = Refusal("raw-response", self.request.path, None, finding)
        self.app.record_block(refusal, route="response")
        self.cut = True
        body = (refusal.message() + "\n").encode()
        for h in ("Content-Disposition", "Etag", "Content-Encoding", "Last-Modified"):
            headers.pop(h, None)
        headers["Content-Type"] = "text/plain; charset=UTF-8"
        headers["Content-Length"] = str(len(body))
        return 403, headers, body

    def transform_chunk(self, chunk, finishing):
        if self.cut:
            return b""
        if self.active and chunk:
            finding = self.app.downloads.check_bytes(bytes(chunk[: self.scan_bytes]))
            if finding is not None:
                # headers are gone already: cut the response short instead
                refusal = Refusal("raw-response", self.request.path, None, finding)
                self.app.record_block(refusal, route="response")
                self.cut = True
                self.request.connection.close() if hasattr(self.request, "connection") else None
                return b""
        return chunk


def _name_of(url_path: str) -> str:
    from urllib.parse import unquote

    return Path(unquote(url_path)).name


def install_transform(web_app, app, base_url: str) -> None:
    """Put the response check first, so it sees bytes before any compression."""
    transform = type("GuardResponseTransform", (RawResponseTransform,), {})
    transform.app = app
    transform.base_url = base_url
    web_app.transforms.insert(0, transform)
