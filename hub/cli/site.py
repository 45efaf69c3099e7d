"""`visiting site ingest SITE`: VCF Zarr, Hail MatrixTable and summary cache of a site's data."""

from __future__ import annotations

from hub.cli.base import DEMO_DIR, CommandError, load_policy


def add_parser(sub) -> None:
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


def _dataset_folders(platform, site_id: str, dataset: str | None):
    """The site's id and the folders of its analysis datasets to ingest (or the one asked for)."""
    site = platform.sites.get(site_id)
    if site is None:
        raise CommandError(f"unknown site {site_id!r} (known: {', '.join(platform.sites)})")
    analysis = [d.id for d in site.datasets if d.kind == "analysis"]
    if dataset:
        if dataset not in analysis:
            raise CommandError(
                f"--dataset: {dataset!r} is not an analysis dataset of {site.id} "
                f"({', '.join(analysis) or 'it has none'})"
            )
        analysis = [dataset]
    if not analysis:
        raise CommandError(f"site {site.id!r} holds no analysis dataset to ingest")
    folders = [platform.site_data_dir(site.id) / d for d in analysis]
    absent = [f for f in folders if not f.is_dir()]
    if absent:
        raise CommandError(
            f"no dataset folder {absent[0]} (put the site's genotypes.vcf.gz, clinical.tsv "
            "and phenotypes.tsv there, or run `visiting synth`)"
        )
    return site.id, folders


def cmd_site_ingest(args) -> int:
    from hub.data import IngestError
    from hub.data.ingest import ingest_datasets

    site_id, folders = _dataset_folders(
        load_policy(args.platform).platform, args.site, args.dataset
    )
    say = (lambda msg: print(msg, flush=True)) if not args.quiet else (lambda _msg: None)
    try:
        results = ingest_datasets(folders, force=args.force, say=say)
    except IngestError as e:
        raise CommandError(f"{e}\nnothing was changed") from None
    for r in results:
        if not r.skipped:
            print(
                f"{site_id}/{r.dataset_id}: {r.samples} samples x {r.variants} variants, "
                f"version {r.version}: {r.zarr}, {r.matrix_table}"
            )
    return 0
