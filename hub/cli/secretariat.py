"""`visiting secretariat ...`: the secretariat's actions through the admin service.

The commands, each acting as the secretariat whose token it carries (hub.cli.admin):

    visiting secretariat suspend USER --reason TEXT [--ban-until DATE | --ban-indefinite]
    visiting secretariat suspend --institution NAME --reason TEXT
    visiting secretariat reinstate USER --reason TEXT
    visiting secretariat extend APPROVAL --end DATE --reason TEXT
    visiting secretariat revoke APPROVAL --reason TEXT
    visiting secretariat reset-query-audit APPROVAL --reason TEXT
    visiting secretariat list | show APPROVAL | suspensions
"""

from __future__ import annotations

from urllib.parse import quote

from hub.cli.admin import add_connection_flags, add_reason_flag, call, show
from hub.cli.base import CommandError


def add_parser(sub) -> None:
    sec = sub.add_parser(
        "secretariat",
        help="suspend, reinstate, extend, revoke, reset a query-set audit (the secretariat role)",
    ).add_subparsers(dest="action", required=True)
    p = sec.add_parser("suspend", help="suspend a data handler or every handler of an institution")
    p.add_argument("user", nargs="?")
    p.add_argument("--institution")
    add_reason_flag(p)
    ban = p.add_mutually_exclusive_group()
    ban.add_argument("--ban-until", metavar="DATE", help="no new applications until DATE")
    ban.add_argument("--ban-indefinite", action="store_true", help="no new applications, ever")
    add_connection_flags(p)
    p.set_defaults(func=cmd_suspend)
    p = sec.add_parser("reinstate", help="lift a suspension")
    p.add_argument("user")
    add_reason_flag(p)
    add_connection_flags(p)
    p.set_defaults(func=cmd_reinstate)
    p = sec.add_parser("extend", help="a new, later end date for an approval")
    p.add_argument("approval_id")
    p.add_argument("--end", required=True, metavar="DATE", help="the new last day (YYYY-MM-DD)")
    add_reason_flag(p)
    add_connection_flags(p)
    p.set_defaults(func=cmd_extend)
    for name, func, text in (
        ("revoke", cmd_revoke, "end an approval now"),
        (
            "reset-query-audit",
            cmd_reset_query_audit,
            "start an approval's query-set audit afresh at every site (earlier answers archived)",
        ),
    ):
        p = sec.add_parser(name, help=text)
        p.add_argument("approval_id")
        add_reason_flag(p)
        add_connection_flags(p)
        p.set_defaults(func=func)
    _add_reading_parsers(sec)


def _add_reading_parsers(sec) -> None:
    """The commands that only read: list, show, suspensions."""
    p = sec.add_parser("list", help="approvals, their state and suspended handlers")
    add_connection_flags(p)
    p.set_defaults(func=cmd_list)
    p = sec.add_parser("show", help="an approval: state, handlers, sites, period, history")
    p.add_argument("approval_id")
    add_connection_flags(p)
    p.set_defaults(func=cmd_show)
    p = sec.add_parser("suspensions", help="every suspension, in force and lifted")
    add_connection_flags(p)
    p.set_defaults(func=cmd_suspensions)


def cmd_suspend(args) -> int:
    if bool(args.user) == bool(args.institution):
        raise CommandError("name either a USER or --institution NAME")
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
