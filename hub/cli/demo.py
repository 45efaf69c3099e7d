"""`visiting demo run|up|down`: the demo platform's processes (what `make demo` starts)."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from hub.cli.base import DEMO_DIR, CommandError, port, site_port

# What each demo account shows, for the start-up banner.
DEMO_OUTCOMES = {
    "tanaka": "data handler, approved at nig, ncc, ncgm, tommo (logs in)",
    "yamada": "tanaka's co-handler on the same approval (logs in)",
    "sato": "data handler whose approval ended (refused)",
    "suzuki": "data handler whose approval has not started (refused)",
    "takahashi": "no approval (refused)",
    "admin-nig": "site admin of nig",
    "admin-ncc": "site admin of ncc, the airlock site: reviews its export requests",
    "jimu": "secretariat (also the second reviewer of export requests)",
}

# `demo up|run` flag -> default: a port for every process of the stack (and --gateway-port)
DEMO_PORTS = {
    "hub-port": 8000,
    "idp-port": 9000,
    "hub-api-port": 8081,
    "proxy-api-port": 8001,
    "audit-port": 8082,
    "enforcer-port": 8083,
    "admin-port": 8084,
    "catalogue-port": 8085,
    "export-port": 8086,
}


def add_parser(sub) -> None:
    demo = sub.add_parser("demo", help="the demo platform").add_subparsers(
        dest="action", required=True
    )
    for name, func, text in (
        ("run", cmd_demo_run, "start the demo in the foreground; Ctrl-C stops it"),
        ("up", cmd_demo_up, "start the demo in the background"),
        ("down", cmd_demo_down, "stop what `demo up` started"),
    ):
        p = demo.add_parser(name, help=text)
        p.add_argument("--platform", default=str(DEMO_DIR))
        if name == "down":
            p.add_argument(
                "--sites",
                action="store_true",
                help="also remove the site networks, Dask clusters and firewall rules",
            )
        else:
            _add_start_flags(p)
        p.set_defaults(func=func)


def _add_start_flags(p) -> None:
    """The flags of `demo run` and `demo up`: what to prepare, and the ports."""
    p.add_argument("--no-data", action="store_true", help="do not generate synthetic cohorts")
    p.add_argument(
        "--no-sites",
        action="store_true",
        help="hub and IdP only: no Docker, no site containers",
    )
    for opt, default in DEMO_PORTS.items():
        p.add_argument(f"--{opt}", type=port, help=f"loopback port (default {default})")
    p.add_argument(
        "--gateway-port",
        type=site_port,
        action="append",
        metavar="SITE=PORT",
        help="loopback port of a site's gateway with --no-sites "
        "(default 8090, 8091, ... in the platform file's order); repeat for each site",
    )


def _demo_stack(args):
    from hub.demo.stack import Stack, StackConfig

    ports = {
        name: getattr(args, name)
        for name in (flag.replace("-", "_") for flag in DEMO_PORTS)
        if getattr(args, name, None)
    }
    config = StackConfig(
        platform_dir=Path(args.platform).resolve(),
        gateway_ports=dict(getattr(args, "gateway_port", None) or []),
        sites=not getattr(args, "no_sites", True),
        **ports,
    )
    stack = Stack(config)
    unknown = sorted(set(config.gateway_ports) - set(stack.bundle.platform.sites))
    if unknown:
        raise CommandError(
            f"--gateway-port: unknown site {unknown[0]!r} "
            f"(known: {', '.join(stack.bundle.platform.sites)})"
        )
    return stack


def _prepare(stack, args) -> None:
    """Data and sites before the hub starts, as `make demo` wants them."""
    say = lambda msg: print(msg, flush=True)  # noqa: E731
    if not args.no_data:
        stack.ensure_data(say)
    if not args.no_sites:
        stack.config.sites = True
        stack.start_sites(say)


def _banner(stack) -> str:
    import yaml

    from hub.platform.messages import message

    accounts = message("demo.accounts")
    c = stack.config
    # the demo passwords live only in the IdP's users file; the hub side never loads them
    users = yaml.safe_load((c.platform_dir / "users.yaml").read_text())["users"]
    lines = [
        "",
        f"  Visiting workspace demo is up: {c.hub_url}/",
        f"  OIDC provider: {c.idp_url}/.well-known/openid-configuration",
        f"  user guide: {c.hub_url}/services/catalogue/guide/   "
        f"catalogue: {c.hub_url}/services/catalogue/   admin: {c.hub_url}/services/admin/",
        f"  export requests: {c.hub_url}/services/admin/exports (yours)   "
        f"review: {c.hub_url}/services/admin/review (reviewers; ncc is the airlock site)",
        "  tutorials: ~/tutorials/ in every researcher's server (notebooks/ here)",
        f"  logs: {stack.state_dir / 'logs'}",
        "",
        f"  Demo accounts ({accounts.en} / {accounts.ja}):",
    ]
    for u in users:
        what = DEMO_OUTCOMES.get(u["username"], ", ".join(u.get("roles", [])))
        lines.append(f"    {u['username']:<11} {u['password']:<16} {what}")
    return "\n".join(lines) + "\n"


def cmd_demo_run(args) -> int:
    from hub.demo import StackError
    from hub.sites import SiteError

    stack = _demo_stack(args)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stack.check_ports_free()
        _prepare(stack, args)
        stack.start()
    except (StackError, SiteError) as e:
        stack.stop()
        raise CommandError(str(e)) from None
    print(_banner(stack) + "\n  Ctrl-C stops everything this command started.", flush=True)
    try:
        while not stop.wait(1.0):
            for p in stack.processes:
                if not p.alive():
                    print(f"{p.name} stopped unexpectedly; see {p.log_file}", file=sys.stderr)
                    stop.set()
    finally:
        print("stopping ...", flush=True)
        stack.stop()
    return 0


def cmd_demo_up(args) -> int:
    from hub.demo import StackError
    from hub.sites import SiteError

    stack = _demo_stack(args)
    try:
        stack.check_ports_free()
        _prepare(stack, args)
        stack.start()
    except (StackError, SiteError) as e:
        raise CommandError(str(e)) from None
    print(_banner(stack) + "\n  `make demo-down` stops it.", flush=True)
    return 0


def cmd_demo_down(args) -> int:
    from hub.cli.sites import cmd_sites_down

    stack = _demo_stack(args)
    stopped = stack.stop_recorded()
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    if args.sites:
        cmd_sites_down(args)
    return 0
