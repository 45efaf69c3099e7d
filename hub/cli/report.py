"""`visiting report`: the data-usage report of a fiscal year, or an approval's final one."""

from __future__ import annotations

from pathlib import Path

from hub.cli.base import DEMO_DIR, CommandError, load_policy, open_audit_store, open_registry


def add_parser(sub) -> None:
    p = sub.add_parser(
        "report",
        help="the data-usage report of a fiscal year, or --final when an approval's period ends",
    )
    p.add_argument(
        "--fiscal-year",
        metavar="YEAR",
        help="e.g. 2026: 1 April 2026 00:00 to 1 April 2027 00:00, Japan time",
    )
    p.add_argument("--approval", metavar="ID", help="one approval")
    p.add_argument("--institution", metavar="NAME", help="the approvals of one institution")
    p.add_argument(
        "--final",
        action="store_true",
        help="with --approval: the report due when its period ended, covering the whole period",
    )
    p.add_argument(
        "--format", default="html,pdf,csv,json", help="comma-separated: html,pdf,csv,json (all)"
    )
    p.add_argument("--lang", default="ja", help="ja or en (default ja)")
    p.add_argument("--output", metavar="DIR", help="folder to write the report to")
    p.add_argument("--dir", default=str(DEMO_DIR), help="policy directory (default: the demo)")
    p.add_argument("--database", help="SQLAlchemy URL (default: the platform file's registry)")
    p.set_defaults(func=cmd_report)


def _formats(text: str | None) -> list[str]:
    from hub.report import FORMATS

    formats = [f.strip() for f in (text or "").split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if not formats or unknown:
        raise CommandError(
            f"--format: unknown format {(unknown or [text])[0]!r} "
            f"(one or more of {', '.join(FORMATS)}, comma-separated)"
        )
    return formats


def _request(args):
    """The report asked for, checked before anything is opened."""
    from hub.report import ReportError, ReportRequest

    year = None
    if args.fiscal_year is not None:
        if not args.fiscal_year.isdigit() or not 2000 <= int(args.fiscal_year) <= 2100:
            raise CommandError(f"--fiscal-year: {args.fiscal_year!r} is not a year like 2026")
        year = int(args.fiscal_year)
    if not args.output:
        raise CommandError("--output DIR is required (the folder the report is written to)")
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise CommandError(f"--output: {out} exists and is not a folder")
    request = ReportRequest(
        fiscal_year=year,
        approval_id=args.approval,
        institution=args.institution,
        final=args.final,
        lang=args.lang,
    )
    try:
        request.check()
    except ReportError as e:
        raise CommandError(str(e)) from None
    return request, out


def cmd_report(args) -> int:
    from extensions.contracts.clock import clock_from_env
    from hub.report import ReportError, build_report, write_report

    formats = _formats(args.format)
    request, out = _request(args)
    bundle = load_policy(args.dir)
    audit = open_audit_store(bundle, args.database)
    registry = open_registry(bundle, args.database)
    try:
        doc = build_report(registry, audit, request, clock_from_env())
        paths = write_report(doc, formats, out)
    except ReportError as e:
        raise CommandError(str(e)) from None
    finally:
        audit.close()
        registry.close()
    for p in paths:
        print(f"wrote {p}")
    chain = doc["audit_chain"]
    print(
        f"{len(doc['approvals'])} approval(s), {chain['records_in_period']} events in "
        f"{doc['report']['label']}; {chain['message']}"
    )
    return 0
