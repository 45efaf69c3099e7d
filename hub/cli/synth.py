"""`visiting synth`: synthetic cohorts for a platform's sites (VCF, tables, VCF Zarr, Hail)."""

from __future__ import annotations

from pathlib import Path

from hub.cli.base import DEMO_DIR, CommandError, load_policy


def add_parser(sub) -> None:
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


def _site_specs(bundle, sites: str | None):
    """The specs of the sites asked for, each holding an analysis dataset."""
    from hub.data.synth import site_specs

    known = bundle.platform.sites
    wanted = sites.split(",") if sites else list(known)
    unknown = [s for s in wanted if s not in known]
    if unknown:
        raise CommandError(f"--sites: unknown site {unknown[0]!r} (known: {', '.join(known)})")
    specs = site_specs(known[s] for s in wanted)
    empty = [s for s in wanted if s not in {spec.site_id for spec in specs}]
    if empty:
        raise CommandError(f"site {empty[0]!r} holds no analysis dataset to write a cohort into")
    return specs


def cmd_synth(args) -> int:
    from hub.data import IngestError
    from hub.data.synth import generate_cohorts

    bundle = load_policy(args.platform)
    sites = _site_specs(bundle, args.sites)
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
