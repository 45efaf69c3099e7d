"""The export panel's relay: JupyterLab asks its own server, the server asks the hub.

JupyterLab's "Request export / 持ち出し申請" command and its exports panel
(labextension/src/export.js) call `<base_url>visiting/exports`, authenticated as
any request to this server is. The server passes the call on to the hub's export
service with its own token (extensions.guard.export.client), so the browser never
holds a hub token, and only for this server's site:

    GET  visiting/exports   -> {"site", "airlock", "requests": [the person's requests here]}
    POST visiting/exports   {"paths": [...], "purpose": "..."} -> the new request (201)

Paths are relative to the server's root folder (the home), as JupyterLab's file
browser names them. Input that is plainly wrong is refused here, before anything
reaches the hub, with a 400 naming the field; the site checks every path again
when it freezes the files. A refusal of the service is passed on with its status
and its message. Every refusal is `{"message": "日本語 / English", "field"}`.
"""

from __future__ import annotations

import asyncio
import json
import os
import posixpath
from typing import Any

from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web

from .export.client import ExportRequestError, export_requests, request_export

#: the most paths one request may name here (the platform's own limit is lower; this one
#: only keeps an absurd body from reaching the hub)
MAX_PATHS = 1000
#: the longest purpose, in characters
MAX_PURPOSE = 500

#: what the relay itself says, by key: (Japanese, English)
TEXTS: dict[str, tuple[str, str]] = {
    "body": (
        "リクエストの本文は JSON のオブジェクトにしてください。",
        "The request's body must be a JSON object.",
    ),
    "paths.not_list": (
        "paths はパス（文字列）のリストにしてください。",
        "paths must be a list of paths (strings).",
    ),
    "paths.none": (
        "持ち出すファイルかフォルダを1つ以上選んでください。",
        "Choose at least one file or folder to export.",
    ),
    "paths.too_many": (
        "1回の申請で選べるのは {max} 個までです（{count} 個選ばれています）。",
        "One request names at most {max} paths; this one names {count}.",
    ),
    "paths.not_text": (
        "{index} 番目のパスが文字列ではありません。",
        "Path number {index} is not a string.",
    ),
    "paths.empty": ("{index} 番目のパスが空です。", "Path number {index} is empty."),
    "paths.absolute": (
        "{path}: ホームフォルダからの相対パスで指定してください。",
        "{path}: give the path relative to your home folder.",
    ),
    "paths.parent": (
        "{path}: '..' を含むパスは指定できません。",
        "{path}: a path may not contain '..'.",
    ),
    "purpose.missing": (
        "持ち出しの目的（論文、発表など）を書いてください。",
        "Write what the files are for (a paper, a talk, ...).",
    ),
    "purpose.too_long": (
        "目的は {max} 文字以内で書いてください（{count} 文字あります）。",
        "Write the purpose in at most {max} characters (it has {count}).",
    ),
    "service.unavailable": (
        "持ち出し申請サービスに接続できません。しばらくしてからもう一度お試しください。",
        "The export service cannot be reached now; try again in a while.",
    ),
}


def text(key: str, **fields: Any) -> str:
    """The relay's text `key`, its fields filled in, as "日本語 / English"."""
    ja, en = TEXTS[key]
    return f"{ja.format(**fields)} / {en.format(**fields)}"


class RelayRefusal(Exception):
    """What the person reads when the relay or the service says no: `message` in both
    languages, the HTTP `status`, and the input that is wrong (`field`, or None)."""

    def __init__(self, message: str, status: int = 400, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field

    @classmethod
    def bad(cls, field: str, key: str, **fields: Any) -> RelayRefusal:
        return cls(text(key, **fields), 400, field)

    @classmethod
    def from_service(cls, error: ExportRequestError) -> RelayRefusal:
        """The service's refusal as it stands, except where the fault is the platform's: no
        answer (or no hub to ask), or this server's own token refused (a 401 here would read
        to JupyterLab as the person's own login gone). Those are a bad gateway with a plain
        text; what went wrong goes to the log (see ExportsHandler.from_service)."""
        status = error.status
        if status is None and error.field:  # the client's own check: a path outside the home
            return cls(str(error), 400, error.field)
        if status is None or status == 401 or not 400 <= status < 600:
            return cls(text("service.unavailable"), 502)
        return cls(str(error), status, error.field)

    def to_json(self) -> dict[str, Any]:
        return {"message": self.message, "field": self.field}


def read_paths(value: Any) -> list[str]:
    """The paths of a new request, as names under the home; RelayRefusal when one is not."""
    if not isinstance(value, list):
        raise RelayRefusal.bad("paths", "paths.not_list")
    if not value:
        raise RelayRefusal.bad("paths", "paths.none")
    if len(value) > MAX_PATHS:
        raise RelayRefusal.bad("paths", "paths.too_many", max=MAX_PATHS, count=len(value))
    paths = []
    for index, path in enumerate(value, 1):
        if not isinstance(path, str):
            raise RelayRefusal.bad("paths", "paths.not_text", index=index)
        if not path.strip() or "\x00" in path:
            raise RelayRefusal.bad("paths", "paths.empty", index=index)
        if path.startswith(("/", "\\")) or path == "~" or path.startswith("~/"):
            raise RelayRefusal.bad("paths", "paths.absolute", path=path)
        if ".." in path.replace("\\", "/").split("/"):
            raise RelayRefusal.bad("paths", "paths.parent", path=path)
        paths.append(posixpath.normpath(path))
    return paths


def read_purpose(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RelayRefusal.bad("purpose", "purpose.missing")
    purpose = value.strip()
    if len(purpose) > MAX_PURPOSE:
        raise RelayRefusal.bad("purpose", "purpose.too_long", max=MAX_PURPOSE, count=len(purpose))
    return purpose


class ExportsHandler(ExtensionHandlerMixin, APIHandler):
    """GET this site's export requests of the person; POST a new one (see the module)."""

    @property
    def site(self) -> str:
        return self.extensionapp.context.site

    def where(self) -> dict[str, Any]:
        """This server's site and whether files leave it only through the airlock."""
        return {"site": self.site, "airlock": self.extensionapp.context.rules.airlock}

    def refuse(self, refusal: RelayRefusal, **extra: Any) -> None:
        self.log.info(
            "guard: export relay refused (%s, field %s): %s",
            refusal.status,
            refusal.field,
            refusal.message,
        )
        self.set_status(refusal.status)
        self.set_header("Cache-Control", "no-store")
        self.finish(refusal.to_json() | extra)

    def from_service(self, error: ExportRequestError) -> RelayRefusal:
        refusal = RelayRefusal.from_service(error)
        if refusal.status == 502:
            self.log.warning("guard: the export service failed (%s): %s", error.status, error)
        return refusal

    @web.authenticated
    async def get(self):
        try:
            answer = await asyncio.to_thread(export_requests, site=self.site)
        except ExportRequestError as e:
            return self.refuse(self.from_service(e), **self.where())
        requests = answer.get("requests") if isinstance(answer, dict) else None
        self.set_header("Cache-Control", "no-store")
        self.finish(self.where() | {"requests": requests if isinstance(requests, list) else []})

    @web.authenticated
    async def post(self):
        try:
            paths, purpose = self.read_body()
            # names under the root folder, as full paths: the client makes each one a name
            # under the home (and refuses one outside it) whatever the folder it runs in
            root = os.path.realpath(self.contents_manager.root_dir)
            full = [os.path.join(root, *p.split("/")) for p in paths]
            try:
                answer = await asyncio.to_thread(request_export, full, purpose, self.site)
            except ExportRequestError as e:
                raise self.from_service(e) from None
        except RelayRefusal as refusal:
            return self.refuse(refusal)
        self.log.info(
            "guard: export request %s at %s: %s",
            answer.get("id") if isinstance(answer, dict) else None,
            self.site,
            answer.get("state") if isinstance(answer, dict) else None,
        )
        self.set_status(201)
        self.set_header("Cache-Control", "no-store")
        self.finish(answer)

    def read_body(self) -> tuple[list[str], str]:
        try:
            body = json.loads(self.request.body or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise RelayRefusal.bad("body", "body")
        return read_paths(body.get("paths")), read_purpose(body.get("purpose"))
