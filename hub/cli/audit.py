"""`visiting audit verify|export`: the audit store's hash chain and its events of a period."""

from __future__ import annotations

import sys

from hub.cli.base import DEMO_DIR, CommandError, instant, load_policy, open_audit_store


def add_parser(sub) -> None:
    audit = sub.add_parser("audit", help="the audit store").add_subparsers(
        dest="action", required=True
    )
    p = audit.add_parser("verify", help="check the hash chain; exit 1 at its first broken link")
    p.add_argument(
        "dir", nargs="?", default=str(DEMO_DIR), help="policy directory (default: the demo)"
    )
    p.add_argument("--database", help="SQLAlchemy URL (default: the platform file's registry)")
    p.add_argument("--since", type=instant, help="count events from DATE (YYYY-MM-DD JST or ISO)")
    p.add_argument("--until", type=instant, help="verify up to DATE, exclusive")
    p.set_defaults(func=cmd_audit_verify)
    p = audit.add_parser("export", help="write the events of a period as JSON lines or CSV")
    p.add_argument(
        "dir", nargs="?", default=str(DEMO_DIR), help="policy directory (default: the demo)"
    )
    p.add_argument("--database", help="SQLAlchemy URL (default: the platform file's registry)")
    p.add_argument(
        "--since", type=instant, required=True, help="YYYY-MM-DD (00:00 JST) or ISO 8601"
    )
    p.add_argument("--until", type=instant, required=True, help="exclusive, like --since")
    p.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    p.add_argument("--output", help="file to write (default: standard output)")
    p.set_defaults(func=cmd_audit_export)


def cmd_audit_verify(args) -> int:
    if args.since is not None and args.until is not None and args.until <= args.since:
        raise CommandError("--until: must be after --since")
    bundle = load_policy(args.dir)
    result = open_audit_store(bundle, args.database).verify(since=args.since, until=args.until)
    print(result.message())
    return 0 if result.ok else 1


def cmd_audit_export(args) -> int:
    if args.until <= args.since:
        raise CommandError("--until: must be after --since")
    store = open_audit_store(load_policy(args.dir), args.database)
    if not args.output:
        store.export(sys.stdout, since=args.since, until=args.until, format=args.format)
        return 0
    with open(args.output, "w", encoding="utf-8", newline="") as out:
        n = store.export(out, since=args.since, until=args.until, format=args.format)
    print(f"wrote {n} events to {args.output}")
    return 0
