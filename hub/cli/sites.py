"""`visiting sites up|down`: the sites' Docker side (engine, images, networks, firewall, Dask)."""

from __future__ import annotations

from hub.cli.base import DEMO_DIR, CommandError, load_policy, port


def add_parser(sub) -> None:
    sites = sub.add_parser(
        "sites", help="site networks, firewall and Dask clusters"
    ).add_subparsers(dest="action", required=True)
    p = sites.add_parser(
        "up", help="engine, images, networks, firewall, Dask clusters (idempotent)"
    )
    p.add_argument("--platform", default=str(DEMO_DIR))
    p.add_argument("--hub-port", type=port, default=8000)
    p.add_argument("--hub-api-port", type=port, default=8081)
    p.set_defaults(func=cmd_sites_up)
    p = sites.add_parser("down", help="remove the sites' containers, networks and firewall rules")
    p.add_argument("--platform", default=str(DEMO_DIR))
    p.set_defaults(func=cmd_sites_down)


def cmd_sites_up(args) -> int:
    from hub.sites import SiteError
    from hub.sites.containers import sites_up
    from hub.sites.engine import build_images, ensure_engine

    platform = load_policy(args.platform).platform
    try:
        print(f"Docker engine: {ensure_engine()}")
        print(build_images().strip())
        for line in sites_up(platform, [args.hub_port, args.hub_api_port]):
            print(line)
    except SiteError as e:
        raise CommandError(str(e)) from None
    return 0


def cmd_sites_down(args) -> int:
    from hub.sites import SiteError
    from hub.sites.containers import sites_down

    platform = load_policy(args.platform).platform
    try:
        for line in sites_down(platform):
            print(line)
    except SiteError as e:
        raise CommandError(str(e)) from None
    return 0
