"""`visiting approvals import|list|show`: the approval registry from a policy directory."""

from __future__ import annotations

import json

from hub.cli.base import DEMO_DIR, CommandError, load_policy, open_registry


def add_parser(sub) -> None:
    approvals = sub.add_parser("approvals", help="the approval registry").add_subparsers(
        dest="action", required=True
    )
    p = approvals.add_parser("import", help="import a policy directory (idempotent)")
    p.add_argument("dir")
    p.add_argument("--database", help="SQLAlchemy URL (default: the platform file's registry)")
    p.set_defaults(func=cmd_approvals_import)
    p = approvals.add_parser("list", help="list approvals and their status now")
    p.add_argument("--dir", default=str(DEMO_DIR), help="policy directory (default: the demo)")
    p.add_argument("--database")
    p.add_argument("--user", help="only approvals naming this data handler")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_approvals_list)
    p = approvals.add_parser("show", help="one approval with its recorded changes")
    p.add_argument("approval_id")
    p.add_argument("--dir", default=str(DEMO_DIR))
    p.add_argument("--database")
    p.set_defaults(func=cmd_approvals_show)


def cmd_approvals_import(args) -> int:
    from hub.store.registry import RegistryError

    bundle = load_policy(args.dir)
    registry = open_registry(bundle, args.database)
    try:
        report = registry.import_policy(bundle)
    except RegistryError as e:
        raise CommandError(str(e)) from None
    for a in report.created:
        print(f"created  {a}")
    for a, changes in report.updated.items():
        print(
            f"updated  {a}: " + ", ".join(f"{k} {v[0]!r} -> {v[1]!r}" for k, v in changes.items())
        )
    for a in report.not_in_directory:
        print(f"kept     {a} (in the registry, not in {args.dir}; revoke it to end it)")
    print(
        f"{len(report.created)} created, {len(report.updated)} updated, "
        f"{len(report.unchanged)} unchanged"
    )
    return 0


def cmd_approvals_list(args) -> int:
    from extensions.contracts.clock import clock_from_env

    bundle = load_policy(args.dir)
    registry = open_registry(bundle, args.database)
    now = clock_from_env().now()
    rows = registry.approvals_of(args.user) if args.user else registry.approvals()
    if args.json:
        print(json.dumps([a.to_json() | {"status": a.status_at(now)} for a in rows], indent=2))
        return 0
    for a in rows:
        print(
            f"{a.approval_id:<12} {a.status_at(now):<11} {a.period.start} .. {a.period.end}  "
            f"{','.join(a.handlers):<20} {','.join(a.sites)}"
        )
    return 0


def cmd_approvals_show(args) -> int:
    from hub.store.registry import RegistryError

    bundle = load_policy(args.dir)
    registry = open_registry(bundle, args.database)
    try:
        view = registry.approval(args.approval_id)
    except RegistryError as e:
        raise CommandError(str(e)) from None
    print(
        json.dumps(
            view.to_json() | {"changes": registry.changes(args.approval_id)},
            indent=2,
            ensure_ascii=False,
        )
    )
    return 0
