"""A site in airlock mode: no file leaves the server as a direct download.

Where the platform file sets a site's downloads to "airlock" (GuardRules.downloads,
contracts DOWNLOAD_MODES), files leave only through an export request
(extensions.guard.export): frozen at the site, checked, reviewed, then released by
the hub's export service. The guard (downloads.GuardedRoute) and the egress gate
(gate/http_proxy.py) both refuse the routes that hand a named file's bytes to the
browser, with the one notice below. JupyterLab itself keeps working: its pages,
static assets, settings and the contents API (which the notebook and file editors
open files with; the guard's raw-data checks and the gate still judge what it returns).
"""

from __future__ import annotations

import re

#: the server's download routes, under its base URL: the file handler (JupyterLab's
#: "Download" and a notebook's links), nbconvert's exports and the view page
AIRLOCK_ROUTES = re.compile(r"(files|nbconvert|view)(/|$)")

#: the refusal's reason in the download-blocked event
AIRLOCK_REASON = "airlock"

HOW_TO_REQUEST = 'python -m extensions.guard.export request --purpose "..." PATH'

NOTICE_JA = (
    "このサイトではファイルは持ち出し申請（エアロック）からのみ持ち出せます。"
    "「{path}」を直接ダウンロードすることはできません。持ち出し申請は JupyterLab の"
    "ファイルブラウザで右クリックして「持ち出し申請」、端末では "
    f"`{HOW_TO_REQUEST}`、ノートブックでは "
    "`from extensions.guard.export import request_export` で行い、審査の後にハブの"
    "「あなたの持ち出し申請」ページから受け取れます。"
    "この操作は監査ログに記録されました。"
)
NOTICE_EN = (
    "At this site files leave only through an export request (the airlock): "
    "'{path}' cannot be downloaded directly. Ask for it with \"Request export\" in the "
    "file browser's context menu in JupyterLab, `" + HOW_TO_REQUEST + "` in a terminal or "
    "`from extensions.guard.export import request_export` in a notebook; reviewers check it, "
    'then you download it from the hub\'s "Your export requests" page. This attempt is '
    "recorded in the audit log."
)


def airlocked(route: str, method: str = "GET") -> bool:
    """Whether a request for `route` (the path under the server's base URL) is a direct
    download the airlock refuses."""
    return method in ("GET", "HEAD") and bool(AIRLOCK_ROUTES.match(route.lstrip("/")))


def notice_ja(path: str) -> str:
    return NOTICE_JA.format(path=path)


def notice_en(path: str) -> str:
    return NOTICE_EN.format(path=path)


def notice(path: str) -> str:
    """The refusal as the researcher reads it, Japanese then English."""
    return f"{notice_ja(path)}\n{notice_en(path)}"
