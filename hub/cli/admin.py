"""`visiting secretariat ...` and `visiting site-admin ...`: the admin service's API from a shell.

The commands act as the person whose token they carry (`--token`, or
JUPYTERHUB_API_TOKEN / VISITING_TOKEN; a token from the hub's Token page),
through the hub's proxy (`--hub-url`, or VISITING_HUB_URL, default
http://127.0.0.1:8000). The service checks the role and every field; a
refusal is printed as one line naming the field, and nothing changes.

    visiting secretariat suspend USER --reason TEXT [--ban-until DATE | --ban-indefinite]
    visiting secretariat suspend --institution NAME --reason TEXT
    visiting secretariat reinstate USER --reason TEXT
    visiting secretariat extend APPROVAL --end DATE --reason TEXT
    visiting secretariat revoke APPROVAL --reason TEXT
    visiting secretariat reset-query-audit APPROVAL --reason TEXT
    visiting secretariat list | show APPROVAL | suspensions
    visiting site-admin SITE show | servers
    visiting site-admin SITE add-image IMAGE --reason TEXT
    visiting site-admin SITE retire-image IMAGE --reason TEXT
    visiting site-admin SITE quota [--approval ID] [--cpu N] [--memory SIZE] [--home SIZE] --reason TEXT
    visiting site-admin SITE stop USER --reason TEXT
"""

from __future__ import annotations

import json
import os
import sys
from urllib.parse import quote

DEFAULT_HUB = "http://127.0.0.1:8000"


class AdminCommandError(Exception):
    """Printed as one line; exit status 2."""


def call(args, method: str, path: str, body: dict | None = None) -> dict:
    # here, not at the top: `visiting --help` builds these commands' parsers too
    import urllib.error
    import urllib.request

    token = args.token or os.environ.get("JUPYTERHUB_API_TOKEN") or os.environ.get("VISITING_TOKEN")
    if not token:
        raise AdminCommandError(
            "no token: give --token or set JUPYTERHUB_API_TOKEN (make one on the hub's Token page)"
        )
    hub = (args.hub_url or os.environ.get("VISITING_HUB_URL") or DEFAULT_HUB).rstrip("/")
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
            raise AdminCommandError(f"{method} {url}: HTTP {e.code}") from None
        where = f" ({err['field']})" if err.get("field") else ""
        raise AdminCommandError(f"refused{where}: {err.get('message', e.reason)}") from None
    except (urllib.error.URLError, OSError) as e:
        raise AdminCommandError(f"the hub does not answer at {hub}: {e}") from None


def show(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return
    if "action" in result:
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
        return
    print(json.dumps(result, indent=2, ensure_ascii=False))


# -- secretariat ------------------------------------------------------------------


def cmd_suspend(args) -> int:
    if bool(args.user) == bool(args.institution):
        raise AdminCommandError("name either a USER or --institution NAME")
    body = {"user": args.user, "institution": args.institution, "reason": args.reason}
    if args.ban_until:
        body["ban_until"] = args.ban_until
    if args.ban_indefinite:
        body["ban_indefinite"] = True
    show(call(args, "POST", "suspend", body), args.json)
    return 0


def cmd_reinstate(args) -> int:
    show(call(args, "POST", "reinstate", {"user": args.user, "reason": args.reason}), args.json)
    return 0


def cmd_extend(args) -> int:
    body = {"end": args.end, "reason": args.reason}
    show(call(args, "POST", f"approvals/{quote(args.approval_id)}/extend", body), args.json)
    return 0


def cmd_revoke(args) -> int:
    body = {"reason": args.reason}
    show(call(args, "POST", f"approvals/{quote(args.approval_id)}/revoke", body), args.json)
    return 0


def cmd_reset_query_audit(args) -> int:
    body = {"reason": args.reason}
    path = f"approvals/{quote(args.approval_id)}/query-audit/reset"
    result = call(args, "POST", path, body)
    show(result, args.json)
    reset = (result.get("detail") or {}).get("reset")
    if reset and not args.json:
        print(
            f"  the sites' query-set audit of {args.approval_id} starts afresh from {reset['at']}"
        )
    return 0


def cmd_list(args) -> int:
    result = call(args, "GET", "approvals")
    if args.json:
        show(result, True)
        return 0
    for a in result["approvals"]:
        suspended = f"  suspended: {','.join(a['suspended_now'])}" if a["suspended_now"] else ""
        print(
            f"{a['approval_id']:<12} {a['status']:<11} {a['start']} .. {a['end']}  "
            f"{','.join(a['handlers']):<20} {','.join(a['sites'])}{suspended}"
        )
    return 0


def cmd_show(args) -> int:
    show(call(args, "GET", f"approvals/{quote(args.approval_id)}"), True)
    return 0


def cmd_suspensions(args) -> int:
    result = call(args, "GET", "suspensions")
    if args.json:
        show(result, True)
        return 0
    for s in result["suspensions"]:
        state = "IN FORCE" if s["active"] else f"lifted {s['lifted_at'][:10]} by {s['lifted_by']}"
        ban = "indefinite" if s["ban_indefinite"] else (s["ban_until"] or "-")
        print(
            f"{s['username']:<12} {s['suspended_at'][:10]} by {s['suspended_by']:<8} "
            f"ban {ban:<10} {state}: {s['reason']}"
        )
    return 0


# -- site admin ---------------------------------------------------------------------


def cmd_site_show(args) -> int:
    show(call(args, "GET", f"sites/{quote(args.site)}"), True)
    return 0


def cmd_site_servers(args) -> int:
    result = call(args, "GET", f"sites/{quote(args.site)}/servers")
    if args.json:
        show(result, True)
        return 0
    for s in result["servers"]:
        mem = f"{(s['memory'] or 0) / 2**20:.0f}/{(s['memory_limit'] or 0) / 2**20:.0f} MiB"
        up = f"{(s['uptime_seconds'] or 0) // 60} min"
        print(
            f"{s['user']:<12} {s['approval_id'] or '-':<12} {s['image'] or '-':<28} "
            f"up {up:<8} cpu {s['cpu_percent'] if s['cpu_percent'] is not None else '-'}% mem {mem}"
        )
    if not result["servers"]:
        print(f"no servers running at {args.site}")
    return 0


def cmd_site_image(args) -> int:
    path = f"sites/{quote(args.site)}/images" + ("/retire" if args.retire else "")
    show(call(args, "POST", path, {"image": args.image, "reason": args.reason}), args.json)
    return 0


def cmd_site_quota(args) -> int:
    quota = {
        k: v for k, v in (("cpu", args.cpu), ("memory", args.memory), ("home", args.home)) if v
    }
    path = f"sites/{quote(args.site)}/quota"
    if args.approval:
        path = f"sites/{quote(args.site)}/approvals/{quote(args.approval)}/quota"
    show(call(args, "POST", path, {"quota": quota, "reason": args.reason}), args.json)
    return 0


def cmd_site_stop(args) -> int:
    path = f"sites/{quote(args.site)}/servers/{quote(args.user)}/stop"
    result = call(args, "POST", path, {"reason": args.reason})
    if args.json:
        show(result, True)
    else:
        state = "stopped" if result.get("stopped") else "was not running"
        print(f"{args.user}'s server at {args.site}: {state}")
    return 0


def add_parsers(sub) -> None:
    """The two command groups, added to `visiting`'s subcommands."""

    def common(p):
        p.add_argument("--hub-url", help=f"the hub (default $VISITING_HUB_URL or {DEFAULT_HUB})")
        p.add_argument("--token", help="your API token (default $JUPYTERHUB_API_TOKEN)")
        p.add_argument("--json", action="store_true", help="print the service's JSON answer")

    def reason(p):
        p.add_argument("--reason", required=True, help="why (recorded in the audit log)")

    sec = sub.add_parser(
        "secretariat",
        help="suspend, reinstate, extend, revoke, reset a query-set audit (the secretariat role)",
    ).add_subparsers(dest="action", required=True)
    p = sec.add_parser("suspend", help="suspend a data handler or every handler of an institution")
    p.add_argument("user", nargs="?")
    p.add_argument("--institution")
    reason(p)
    ban = p.add_mutually_exclusive_group()
    ban.add_argument("--ban-until", metavar="DATE", help="no new applications until DATE")
    ban.add_argument("--ban-indefinite", action="store_true", help="no new applications, ever")
    common(p)
    p.set_defaults(func=cmd_suspend)
    p = sec.add_parser("reinstate", help="lift a suspension")
    p.add_argument("user")
    reason(p)
    common(p)
    p.set_defaults(func=cmd_reinstate)
    p = sec.add_parser("extend", help="a new, later end date for an approval")
    p.add_argument("approval_id")
    p.add_argument("--end", required=True, metavar="DATE", help="the new last day (YYYY-MM-DD)")
    reason(p)
    common(p)
    p.set_defaults(func=cmd_extend)
    p = sec.add_parser("revoke", help="end an approval now")
    p.add_argument("approval_id")
    reason(p)
    common(p)
    p.set_defaults(func=cmd_revoke)
    p = sec.add_parser(
        "reset-query-audit",
        help="start an approval's query-set audit afresh at every site (earlier answers archived)",
    )
    p.add_argument("approval_id")
    reason(p)
    common(p)
    p.set_defaults(func=cmd_reset_query_audit)
    p = sec.add_parser("list", help="approvals, their state and suspended handlers")
    common(p)
    p.set_defaults(func=cmd_list)
    p = sec.add_parser("show", help="an approval: state, handlers, sites, period, history")
    p.add_argument("approval_id")
    common(p)
    p.set_defaults(func=cmd_show)
    p = sec.add_parser("suspensions", help="every suspension, in force and lifted")
    common(p)
    p.set_defaults(func=cmd_suspensions)

    site = sub.add_parser("site-admin", help="images, quotas and servers of your site")
    site.add_argument("site", help="the site you administer (e.g. nig)")
    acts = site.add_subparsers(dest="action", required=True)
    p = acts.add_parser("show", help="the site's images, default quota and approvals' quotas")
    common(p)
    p.set_defaults(func=cmd_site_show)
    p = acts.add_parser("servers", help="running servers: user, approval, image, uptime, use")
    common(p)
    p.set_defaults(func=cmd_site_servers)
    for name, retire, text in (
        ("add-image", False, "offer an image present on the site's engine"),
        ("retire-image", True, "stop offering an image"),
    ):
        p = acts.add_parser(name, help=text)
        p.add_argument("image")
        reason(p)
        common(p)
        p.set_defaults(func=cmd_site_image, retire=retire)
    p = acts.add_parser("quota", help="the site's default quota, or one approval's with --approval")
    p.add_argument("--approval", metavar="ID")
    p.add_argument("--cpu", help="cores, e.g. 2")
    p.add_argument("--memory", help="e.g. 4G")
    p.add_argument("--home", help="e.g. 20G")
    reason(p)
    common(p)
    p.set_defaults(func=cmd_site_quota)
    p = acts.add_parser("stop", help="stop a person's server at the site")
    p.add_argument("user")
    reason(p)
    common(p)
    p.set_defaults(func=cmd_site_stop)


if __name__ == "__main__":  # pragma: no cover - `visiting` is the entry point
    sys.exit("use: visiting secretariat ... | visiting site-admin SITE ...")
