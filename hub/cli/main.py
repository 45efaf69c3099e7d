"""The `visiting` command: platform files, approvals, synthetic data and its ingest, the demo stack.

The parser is built from the standard library alone, so `visiting --help` and a
mistyped option answer at once; each command imports what it needs when it runs
(the registry, the report, Docker, Hail, ...). tests/unit/test_cli_startup.py
holds the list of modules the parser must not import.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

# hub.platform.traits.REPO_ROOT names the same folder, but importing it brings the registry
DEMO_DIR = Path(__file__).resolve().parents[2] / "policies" / "demo"

# What each demo account shows, for the start-up banner.
DEMO_OUTCOMES = {
    "tanaka": "data handler, approved at nig, ncc, ncgm, tommo (logs in)",
    "yamada": "tanaka's co-handler on the same approval (logs in)",
    "sato": "data handler whose approval ended (refused)",
    "suzuki": "data handler whose approval has not started (refused)",
    "takahashi": "no approval (refused)",
    "admin-nig": "site admin of nig",
    "jimu": "secretariat",
}


class CommandError(Exception):
    """A command that cannot do what was asked; printed as one line, exit status 2."""


# ---------------------------------------------------------------------------
# policy


def cmd_policy_check(args) -> int:
    bundle = _load(args.dir)
    for w in bundle.warnings:
        print(f"warning: {w}")
    p = bundle.platform
    print(
        f"{args.dir}: valid: {len(p.sites)} sites, {len(p.datasets)} datasets, "
        f"{len(bundle.approvals)} approvals, {len(bundle.accounts)} accounts"
    )
    return 0


def _load(directory):
    from hub.platform.policy import PolicyError, load_policy_dir

    try:
        return load_policy_dir(directory)
    except PolicyError as e:
        lines = [str(i) for i in e.issues] or ["invalid policy directory"]
        raise CommandError(
            f"{directory}: {len(lines)} problem(s); nothing was loaded\n" + "\n".join(lines)
        ) from None


def _registry(bundle, database: str | None):
    from hub.store.registry import ApprovalRegistry

    return ApprovalRegistry(database or bundle.platform.database_url)


# ---------------------------------------------------------------------------
# approvals


def cmd_approvals_import(args) -> int:
    from hub.store.registry import RegistryError

    bundle = _load(args.dir)
    registry = _registry(bundle, args.database)
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

    bundle = _load(args.dir)
    registry = _registry(bundle, args.database)
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

    bundle = _load(args.dir)
    registry = _registry(bundle, args.database)
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


# ---------------------------------------------------------------------------
# audit


def _instant(text: str):
    from hub.store.audit import parse_instant

    try:
        return parse_instant(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _audit_store(bundle, database: str | None):
    """The audit store to read; a SQLite file that does not exist is an error, not a new store."""
    from sqlalchemy.engine import make_url

    from hub.store.audit import AuditStore

    url = database or bundle.platform.database_url
    try:
        parsed = make_url(url)
    except Exception as e:  # sqlalchemy raises ArgumentError for a malformed URL
        raise CommandError(f"--database: {e}") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        if not Path(parsed.database).exists():
            raise CommandError(f"no audit store at {parsed.database} (database {url})")
    return AuditStore(url)


def cmd_audit_verify(args) -> int:
    if args.since is not None and args.until is not None and args.until <= args.since:
        raise CommandError("--until: must be after --since")
    bundle = _load(args.dir)
    result = _audit_store(bundle, args.database).verify(since=args.since, until=args.until)
    print(result.message())
    return 0 if result.ok else 1


def cmd_audit_export(args) -> int:
    if args.until <= args.since:
        raise CommandError("--until: must be after --since")
    store = _audit_store(_load(args.dir), args.database)
    if not args.output:
        store.export(sys.stdout, since=args.since, until=args.until, format=args.format)
        return 0
    with open(args.output, "w", encoding="utf-8", newline="") as out:
        n = store.export(out, since=args.since, until=args.until, format=args.format)
    print(f"wrote {n} events to {args.output}")
    return 0


# ---------------------------------------------------------------------------
# the data-usage report


def cmd_report(args) -> int:
    from extensions.contracts.clock import clock_from_env
    from hub.report import FORMATS, ReportError, ReportRequest, build_report, write_report

    formats = [f.strip() for f in (args.format or "").split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if not formats or unknown:
        raise CommandError(
            f"--format: unknown format {(unknown or [args.format])[0]!r} "
            f"(one or more of {', '.join(FORMATS)}, comma-separated)"
        )
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
    bundle = _load(args.dir)
    audit = _audit_store(bundle, args.database)
    registry = _registry(bundle, args.database)
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


# ---------------------------------------------------------------------------
# synthetic data and ingest


def cmd_synth(args) -> int:
    from hub.data.ingest import IngestError
    from hub.data.synth import generate_cohorts, site_specs

    bundle = _load(args.platform)
    wanted = args.sites.split(",") if args.sites else list(bundle.platform.sites)
    unknown = [s for s in wanted if s not in bundle.platform.sites]
    if unknown:
        raise CommandError(
            f"--sites: unknown site {unknown[0]!r} (known: {', '.join(bundle.platform.sites)})"
        )
    sites = site_specs(bundle.platform.sites[s] for s in wanted)
    empty = [s for s in wanted if s not in {spec.site_id for spec in sites}]
    if empty:
        raise CommandError(f"site {empty[0]!r} holds no analysis dataset to write a cohort into")
    out = Path(args.out) if args.out else bundle.platform.data_root
    try:
        result = generate_cohorts(
            out,
            sites,
            samples_per_site=args.samples,
            variants=args.variants,
            seed=args.seed,
            fst=args.fst,
            raw_files=not args.no_raw,
            zarr=not args.no_zarr,
            matrix_table=not args.no_mt,
            missing_rate=args.missing_rate,
            progress=(lambda msg: print(msg, flush=True)) if not args.quiet else None,
        )
    except (ValueError, IngestError) as e:
        raise CommandError(str(e)) from None
    print(
        f"wrote {len(sites)} sites x {args.samples} samples x {result.variants} variants to {out}"
    )
    return 0


def cmd_site_ingest(args) -> int:
    from hub.data.ingest import IngestError, ingest_datasets

    platform = _load(args.platform).platform
    site = platform.sites.get(args.site)
    if site is None:
        raise CommandError(f"unknown site {args.site!r} (known: {', '.join(platform.sites)})")
    analysis = [d.id for d in site.datasets if d.kind == "analysis"]
    if args.dataset:
        if args.dataset not in analysis:
            raise CommandError(
                f"--dataset: {args.dataset!r} is not an analysis dataset of {site.id} "
                f"({', '.join(analysis) or 'it has none'})"
            )
        analysis = [args.dataset]
    if not analysis:
        raise CommandError(f"site {site.id!r} holds no analysis dataset to ingest")
    folders = [platform.site_data_dir(site.id) / d for d in analysis]
    absent = [f for f in folders if not f.is_dir()]
    if absent:
        raise CommandError(
            f"no dataset folder {absent[0]} (put the site's genotypes.vcf.gz, clinical.tsv "
            "and phenotypes.tsv there, or run `visiting synth`)"
        )
    say = (lambda msg: print(msg, flush=True)) if not args.quiet else (lambda _msg: None)
    try:
        results = ingest_datasets(folders, force=args.force, say=say)
    except IngestError as e:
        raise CommandError(f"{e}\nnothing was changed") from None
    for r in results:
        if not r.skipped:
            print(
                f"{site.id}/{r.dataset_id}: {r.samples} samples x {r.variants} variants, "
                f"version {r.version}: {r.zarr}, {r.matrix_table}"
            )
    return 0


# ---------------------------------------------------------------------------
# demo


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
}


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

    c = stack.config
    # the demo passwords live only in the IdP's users file; the hub side never loads them
    users = yaml.safe_load((c.platform_dir / "users.yaml").read_text())["users"]
    lines = [
        "",
        f"  Visiting workspace demo is up: {c.hub_url}/",
        f"  OIDC provider: {c.idp_url}/.well-known/openid-configuration",
        f"  user guide: {c.hub_url}/services/catalogue/guide/   "
        f"catalogue: {c.hub_url}/services/catalogue/   admin: {c.hub_url}/services/admin/",
        "  tutorials: ~/tutorials/ in every researcher's server (notebooks/ here)",
        f"  logs: {stack.state_dir / 'logs'}",
        "",
        "  Demo accounts (DEMO ONLY passwords / デモ専用):",
    ]
    for u in users:
        what = DEMO_OUTCOMES.get(u["username"], ", ".join(u.get("roles", [])))
        lines.append(f"    {u['username']:<11} {u['password']:<16} {what}")
    return "\n".join(lines) + "\n"


def cmd_demo_run(args) -> int:
    from hub.demo.stack import StackError
    from hub.sites.containers import SiteError

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
    from hub.demo.stack import StackError
    from hub.sites.containers import SiteError

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
    stack = _demo_stack(args)
    stopped = stack.stop_recorded()
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    if args.sites:
        cmd_sites_down(args)
    return 0


def cmd_sites_up(args) -> int:
    from hub.sites.containers import SiteError, build_images, ensure_engine, sites_up

    platform = _load(args.platform).platform
    try:
        print(f"Docker engine: {ensure_engine()}")
        print(build_images().strip())
        for line in sites_up(platform, [args.hub_port, args.hub_api_port]):
            print(line)
    except SiteError as e:
        raise CommandError(str(e)) from None
    return 0


def cmd_sites_down(args) -> int:
    from hub.sites.containers import SiteError, sites_down

    platform = _load(args.platform).platform
    try:
        for line in sites_down(platform):
            print(line)
    except SiteError as e:
        raise CommandError(str(e)) from None
    return 0


# ---------------------------------------------------------------------------


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1024 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is outside 1024-65535")
    return port


def _site_port(text: str) -> tuple[str, int]:
    site, sep, port = text.partition("=")
    if not sep or not site:
        raise argparse.ArgumentTypeError(f"{text!r} is not SITE=PORT (e.g. nig=18090)")
    return site, _port(port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="visiting",
        description="Visiting compute workspace for controlled-access genomic data.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    policy = sub.add_parser("policy", help="platform files").add_subparsers(
        dest="action", required=True
    )
    p = policy.add_parser("check", help="validate a policy directory; print every problem")
    p.add_argument("dir", help="folder with platform.yaml, approvals/ and users.yaml")
    p.set_defaults(func=cmd_policy_check)

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

    audit = sub.add_parser("audit", help="the audit store").add_subparsers(
        dest="action", required=True
    )
    p = audit.add_parser("verify", help="check the hash chain; exit 1 at its first broken link")
    p.add_argument(
        "dir", nargs="?", default=str(DEMO_DIR), help="policy directory (default: the demo)"
    )
    p.add_argument("--database", help="SQLAlchemy URL (default: the platform file's registry)")
    p.add_argument("--since", type=_instant, help="count events from DATE (YYYY-MM-DD JST or ISO)")
    p.add_argument("--until", type=_instant, help="verify up to DATE, exclusive")
    p.set_defaults(func=cmd_audit_verify)
    p = audit.add_parser("export", help="write the events of a period as JSON lines or CSV")
    p.add_argument(
        "dir", nargs="?", default=str(DEMO_DIR), help="policy directory (default: the demo)"
    )
    p.add_argument("--database", help="SQLAlchemy URL (default: the platform file's registry)")
    p.add_argument(
        "--since", type=_instant, required=True, help="YYYY-MM-DD (00:00 JST) or ISO 8601"
    )
    p.add_argument("--until", type=_instant, required=True, help="exclusive, like --since")
    p.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    p.add_argument("--output", help="file to write (default: standard output)")
    p.set_defaults(func=cmd_audit_export)

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

    p = sub.add_parser("synth", help="generate synthetic cohorts for a platform's sites")
    p.add_argument("--platform", default=str(DEMO_DIR), help="policy directory (default: the demo)")
    p.add_argument("--out", help="output folder (default: the platform's data_root)")
    p.add_argument("--sites", help="comma-separated site ids (default: all)")
    p.add_argument("--samples", type=int, default=200, help="samples per site (default 200)")
    p.add_argument("--variants", type=int, default=2000, help="variants (default 2000)")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--fst", type=float, default=0.01, help="Fst between sites (default 0.01)")
    p.add_argument(
        "--missing-rate",
        type=float,
        default=0.005,
        help="chance of a missing call per person and variant (default 0.005; the demo uses 0.0005)",
    )
    p.add_argument("--no-raw", action="store_true", help="skip FASTQ/BAM/CRAM files")
    p.add_argument(
        "--no-zarr",
        action="store_true",
        help="VCF and tables only: no VCF Zarr, no MatrixTable (no Java needed)",
    )
    p.add_argument("--no-mt", action="store_true", help="skip the Hail MatrixTables")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_synth)

    site = sub.add_parser("site", help="one site's data").add_subparsers(
        dest="action", required=True
    )
    p = site.add_parser(
        "ingest",
        help="VCF Zarr and Hail MatrixTable from a site's VCF and tables (skips what is up to date)",
    )
    p.add_argument("site", help="site id, e.g. nig")
    p.add_argument("--dataset", help="one analysis dataset of the site (default: all of them)")
    p.add_argument("--platform", default=str(DEMO_DIR), help="policy directory (default: the demo)")
    p.add_argument("--force", action="store_true", help="rewrite outputs that are up to date")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_site_ingest)

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
            p.add_argument(
                "--no-data", action="store_true", help="do not generate synthetic cohorts"
            )
            p.add_argument(
                "--no-sites",
                action="store_true",
                help="hub and IdP only: no Docker, no site containers",
            )
            for opt, default in DEMO_PORTS.items():
                p.add_argument(f"--{opt}", type=_port, help=f"loopback port (default {default})")
            p.add_argument(
                "--gateway-port",
                type=_site_port,
                action="append",
                metavar="SITE=PORT",
                help="loopback port of a site's gateway with --no-sites "
                "(default 8090, 8091, ... in the platform file's order); repeat for each site",
            )
        p.set_defaults(func=func)
    sites = sub.add_parser(
        "sites", help="site networks, firewall and Dask clusters"
    ).add_subparsers(dest="action", required=True)
    p = sites.add_parser(
        "up", help="engine, images, networks, firewall, Dask clusters (idempotent)"
    )
    p.add_argument("--platform", default=str(DEMO_DIR))
    p.add_argument("--hub-port", type=_port, default=8000)
    p.add_argument("--hub-api-port", type=_port, default=8081)
    p.set_defaults(func=cmd_sites_up)
    p = sites.add_parser("down", help="remove the sites' containers, networks and firewall rules")
    p.add_argument("--platform", default=str(DEMO_DIR))
    p.set_defaults(func=cmd_sites_down)
    from hub.cli.admin import add_parsers

    add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from hub.cli.admin import AdminCommandError

    try:
        return args.func(args)
    except (CommandError, AdminCommandError) as e:
        print(f"visiting: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
