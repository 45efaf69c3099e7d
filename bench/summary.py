"""Allele-frequency site halves of everyone from the summary cache against the genotype calls.

One site's dataset (default: made by `hub.data.synth`, which ingests it, at
2,000 people x 100,000 variants; or an ingested dataset folder given with
--folder). The cache is written anew (`summary.write_summary`, timed: what
ingest adds), then each row runs `AlleleFrequencies.site_half` on a fresh
cohort, as the gateway does for a query, once reading the cache and once
the genotypes (`allele_frequencies.USE_SUMMARY` off), and asserts the two
halves equal bit for bit. Dask runs with its threaded scheduler in this
process; Hail in local mode (started before the timings).

    .venv/bin/python bench/summary.py [--samples 2000] [--variants 100000]
                                      [--folder DIR] [--engines dask,hail] [--repeat 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from extensions.federation import packed, summary  # noqa: E402
from extensions.federation.cohorts import open_cohort  # noqa: E402
from extensions.federation.tasks import allele_frequencies as af  # noqa: E402

QUERIES = (
    ("everyone", {}),
    ("by sex", {"stratify_by": "sex"}),
    ("by age band", {"stratify_by": "age_band"}),
    ("by region", {"stratify_by": "region"}),
    ("by region, chr21", {"stratify_by": "region", "variants": "chr21"}),
)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=2_000)
    ap.add_argument("--variants", type=int, default=100_000)
    ap.add_argument("--folder", type=Path, help="an ingested dataset folder (else synth makes one)")
    ap.add_argument("--engines", default="dask,hail")
    ap.add_argument("--repeat", type=int, default=1, help="runs per path; the best is kept")
    return ap.parse_args(argv)


def make_dataset(args, root: Path) -> Path:
    from hub.data.synth import SiteSpec, generate_cohorts

    site = SiteSpec("nig", "JGADT1", None, "Shizuoka")
    generate_cohorts(
        root, [site], samples_per_site=args.samples, variants=args.variants, seed=11,
        raw_files=False, matrix_table="hail" in args.engines,
    )  # fmt: skip
    return root / site.site_id / site.analysis_dataset


def timed_half(folder: Path, engine: str, params: dict, use_summary: bool, repeat: int):
    task = af.AlleleFrequencies()
    af.USE_SUMMARY = packed.USE = use_summary
    best, half = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        cohort = open_cohort(folder, "nig", folder.name, engine)
        half = task.site_half(cohort, task.validate(params), None)
        best = min(best, time.perf_counter() - t)
    want = "summary" if use_summary else "genotypes"
    assert half.meta["source"] == want, f"{engine} {params}: read the {half.meta['source']}"
    return best, half


def same(a, b) -> bool:
    return (
        a.variants == b.variants
        and a.meta["strata"] == b.meta["strata"]
        and all(np.array_equal(a.arrays[k], b.arrays[k]) for k in a.arrays)
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    engines = args.engines.split(",")
    with tempfile.TemporaryDirectory(prefix="bench-summary-") as tmp:
        folder = args.folder or make_dataset(args, Path(tmp))
        if "hail" in engines:
            from extensions.federation.hail_session import ensure_hail

            ensure_hail()
        t = time.perf_counter()
        summary.write_summary(folder)
        write_s = time.perf_counter() - t
        path = folder / summary.SUMMARY
        cohort = open_cohort(folder, "nig", folder.name, "dask")
        n, v = len(cohort.sample_ids), cohort.n_variants
        print(f"{n:,} people x {v:,} variants: cache written in {write_s:.2f} s, "
              f"{path.stat().st_size / 1e6:.2f} MB on disk")  # fmt: skip
        print()
        print("| engine | query | genotypes s | summary s | speed-up | equal |")
        print("|---|---|---:|---:|---:|---|")
        for engine in engines:
            for name, params in QUERIES:
                slow, full = timed_half(folder, engine, params, False, args.repeat)
                fast, cached = timed_half(folder, engine, params, True, args.repeat)
                ok = same(full, cached)
                print(f"| {engine} | {name} | {slow:.2f} | {fast:.3f} | {slow / fast:.0f}x | "
                      f"{'yes' if ok else 'NO'} |", flush=True)  # fmt: skip
                if not ok:
                    return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
