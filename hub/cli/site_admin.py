"""`visiting site-admin SITE ...`: a site admin's images, quotas and servers.

The commands, each acting as the site admin whose token it carries (hub.cli.admin):

    visiting site-admin SITE show | servers
    visiting site-admin SITE add-image IMAGE --reason TEXT
    visiting site-admin SITE retire-image IMAGE --reason TEXT
    visiting site-admin SITE quota [--approval ID] [--cpu N] [--memory SIZE] [--home SIZE] --reason TEXT
    visiting site-admin SITE stop USER --reason TEXT
"""

from __future__ import annotations

from urllib.parse import quote

from hub.cli.admin import add_connection_flags, add_reason_flag, call, show


def add_parser(sub) -> None:
    site = sub.add_parser("site-admin", help="images, quotas and servers of your site")
    site.add_argument("site", help="the site you administer (e.g. nig)")
    acts = site.add_subparsers(dest="action", required=True)
    p = acts.add_parser("show", help="the site's images, default quota and approvals' quotas")
    add_connection_flags(p)
    p.set_defaults(func=cmd_site_show)
    p = acts.add_parser("servers", help="running servers: user, approval, image, uptime, use")
    add_connection_flags(p)
    p.set_defaults(func=cmd_site_servers)
    for name, retire, text in (
        ("add-image", False, "offer an image present on the site's engine"),
        ("retire-image", True, "stop offering an image"),
    ):
        p = acts.add_parser(name, help=text)
        p.add_argument("image")
        add_reason_flag(p)
        add_connection_flags(p)
        p.set_defaults(func=cmd_site_image, retire=retire)
    p = acts.add_parser("quota", help="the site's default quota, or one approval's with --approval")
    p.add_argument("--approval", metavar="ID")
    p.add_argument("--cpu", help="cores, e.g. 2")
    p.add_argument("--memory", help="e.g. 4G")
    p.add_argument("--home", help="e.g. 20G")
    add_reason_flag(p)
    add_connection_flags(p)
    p.set_defaults(func=cmd_site_quota)
    p = acts.add_parser("stop", help="stop a person's server at the site")
    p.add_argument("user")
    add_reason_flag(p)
    add_connection_flags(p)
    p.set_defaults(func=cmd_site_stop)


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
