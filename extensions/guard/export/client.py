"""Asking for an export from inside a researcher's server (a notebook or a terminal).

    from extensions.guard.export import request_export, export_requests
    request_export(["results/figure1.png", "results/table2.csv"], "Figure 1 and Table 2 of the paper")
    export_requests()        # your requests and where they stand

The request goes to the hub's export service with the server's own token
(JUPYTERHUB_API_TOKEN) at the hub the spawner names (VISITING_HUB_URL), for the
site this server runs at (VISITING_SITE). Paths are relative to your home
folder; a path given from elsewhere (absolute, or relative to the folder you
are in) is turned into one when it lies in the home. The site checks every
path again when it freezes the files.
"""

from __future__ import annotations

import os
from typing import Any

from ...contracts.environment import HUB_URL, SITE
from ...contracts.export import HOME_MOUNT

#: the export service's requests, under the hub's URL
REQUESTS_PATH = "/services/export/api/requests"


class ExportRequestError(Exception):
    """The export service refused or could not answer; the message says why (in Japanese
    and English when the service says so), `status` the HTTP status, `field` the input."""

    def __init__(self, message: str, status: int | None = None, field: str | None = None):
        super().__init__(message)
        self.status = status
        self.field = field


def home_folder() -> str:
    return os.path.realpath(os.environ.get("HOME") or HOME_MOUNT)


def home_relative(path: str, home: str | None = None, cwd: str | None = None) -> str:
    """`path` as a name relative to the home (the form a request takes); ExportRequestError
    when it lies outside it."""
    home = home or home_folder()
    full = os.path.normpath(os.path.join(cwd or os.getcwd(), os.path.expanduser(path)))
    rel = os.path.relpath(full, home)
    if rel == "." or rel.startswith(".." + os.sep) or rel == "..":
        raise ExportRequestError(
            f"「{path}」はホームフォルダの外です / '{path}' is not inside your home folder ({home})",
            field="paths",
        )
    return rel.replace(os.sep, "/")


def _service(hub_url: str | None, token: str | None) -> tuple[str, str]:
    token = token or os.environ.get("JUPYTERHUB_API_TOKEN")
    hub_url = hub_url or os.environ.get(HUB_URL)
    if not (token and hub_url):
        raise ExportRequestError(
            "持ち出し申請にはハブが必要です（研究者のサーバーで実行してください） / "
            "an export request needs the hub: run it in a researcher's server, or pass "
            "hub_url and token"
        )
    return hub_url.rstrip("/") + REQUESTS_PATH, token


def _call(method: str, url: str, token: str, timeout: float, **kwargs) -> Any:
    import requests

    try:
        r = requests.request(
            method, url, headers={"Authorization": f"token {token}"}, timeout=timeout, **kwargs
        )
    except requests.RequestException as e:
        raise ExportRequestError(
            f"持ち出し申請サービスが応答しません / the export service did not answer: {e}"
        ) from None
    try:
        doc = r.json()
    except ValueError:
        doc = {"message": r.text[:300]}
    if not 200 <= r.status_code < 300:
        message = doc.get("message") if isinstance(doc, dict) else None
        if isinstance(message, dict) and message.get("ja") and message.get("en"):
            # the service's errors: {"error": key, "message": {"ja", "en"}, ...}
            message = f"{message['ja']} / {message['en']}"
        elif not isinstance(message, str):
            message = None
        raise ExportRequestError(
            message or f"the export service refused ({r.status_code})",
            r.status_code,
            doc.get("field") if isinstance(doc, dict) else None,
        )
    return doc


def request_export(
    paths: list[str] | str,
    purpose: str,
    site: str | None = None,
    *,
    hub_url: str | None = None,
    token: str | None = None,
    timeout: float = 300,
) -> dict:
    """Ask to take `paths` (files or folders in your home) out of the site, for `purpose`
    (what the files are for: the reviewer reads it). Returns the service's answer (the
    request, its id and state); ExportRequestError with the service's message if refused."""
    if isinstance(paths, str):
        paths = [paths]
    if not paths:
        raise ExportRequestError(
            "ファイルを指定してください / name at least one file", field="paths"
        )
    if not purpose or not purpose.strip():
        raise ExportRequestError(
            "持ち出しの目的を書いてください / say what the files are for (purpose)", field="purpose"
        )
    url, token = _service(hub_url, token)
    site = site or os.environ.get(SITE)
    body = {"site": site, "paths": [home_relative(p) for p in paths], "purpose": purpose.strip()}
    return _call("POST", url, token, timeout, json=body)


def export_requests(
    site: str | None = None,
    *,
    hub_url: str | None = None,
    token: str | None = None,
    timeout: float = 60,
) -> Any:
    """Your export requests as the service lists them (all sites, or one `site`)."""
    url, token = _service(hub_url, token)
    return _call("GET", url, token, timeout, params={"site": site} if site else None)
