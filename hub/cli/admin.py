"""The admin service's API from a shell, for `visiting secretariat` and `visiting site-admin`.

The commands act as the person whose token they carry (`--token`, or
JUPYTERHUB_API_TOKEN / VISITING_TOKEN; a token from the hub's Token page),
through the hub's proxy (`--hub-url`, or VISITING_HUB_URL, default
http://127.0.0.1:8000). The service checks the role and every field; a
refusal is printed as one line naming the field, and nothing changes.
"""

from __future__ import annotations

import json
import os

from hub.cli.base import CommandError

DEFAULT_HUB = "http://127.0.0.1:8000"


def add_connection_flags(p) -> None:
    """--hub-url, --token and --json, which every admin command takes."""
    p.add_argument("--hub-url", help=f"the hub (default $VISITING_HUB_URL or {DEFAULT_HUB})")
    p.add_argument("--token", help="your API token (default $JUPYTERHUB_API_TOKEN)")
    p.add_argument("--json", action="store_true", help="print the service's JSON answer")


def add_reason_flag(p) -> None:
    p.add_argument("--reason", required=True, help="why (recorded in the audit log)")


def call(args, method: str, path: str, body: dict | None = None) -> dict:
    # here, not at the top: `visiting --help` builds these commands' parsers too
    import urllib.error
    import urllib.request

    from extensions.contracts.environment import HUB_URL

    token = args.token or os.environ.get("JUPYTERHUB_API_TOKEN") or os.environ.get("VISITING_TOKEN")
    if not token:
        raise CommandError(
            "no token: give --token or set JUPYTERHUB_API_TOKEN (make one on the hub's Token page)"
        )
    hub = (args.hub_url or os.environ.get(HUB_URL) or DEFAULT_HUB).rstrip("/")
    url = f"{hub}/services/admin/api/{path}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        try:
            err = json.load(e)
        except ValueError:
            raise CommandError(f"{method} {url}: HTTP {e.code}") from None
        where = f" ({err['field']})" if err.get("field") else ""
        raise CommandError(f"refused{where}: {err.get('message', e.reason)}") from None
    except (urllib.error.URLError, OSError) as e:
        raise CommandError(f"the hub does not answer at {hub}: {e}") from None


def show(result: dict, as_json: bool) -> None:
    if as_json or "action" not in result:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return
    state = "done" if result["changed"] else "no change (already so)"
    print(f"{result['action']} {json.dumps(result['target'], ensure_ascii=False)}: {state}")
    for note in (result.get("detail") or {}).get("note", "").splitlines():
        print(f"  {note}")
    enforcement = result.get("enforcement")
    if enforcement:
        if "error" in enforcement:
            print(f"  enforcer: {enforcement['error']}")
        for user, done in (enforcement.get("users") or {}).items():
            print(
                f"  {user}: servers stopped {', '.join(done['stopped']) or 'none'}; "
                f"tokens revoked {done['tokens_revoked']}"
            )
    print(f"  audit: {', '.join(result.get('audit_event_ids', []))}")
