"""A small pooled cohort for the federated tasks' integration tests, with the reference tools' inputs.

`build_pooled_cohort(root)` writes three synthetic sites with
`hub.data.synth.generate_cohorts` (VCF, VCF Zarr and Hail MatrixTable per site,
through hub.data.ingest), then the pooled data the reference tools read: the
sites' VCFs merged with `bcftools merge` and that merge as a PLINK 2 pgen.
The pooled MatrixTable is the sites' MatrixTables joined by columns
(`pooled_matrix_table()`).

Use the session fixture in a test module (imported under its function's
name, so the tests' `pooled_cohort` argument shadows no import):

    from tests.integration.cohort_fixtures import pooled_cohort_fixture  # noqa: F401

    def test_something(pooled_cohort):
        cohort = pooled_cohort.cohort("nig", "hail")

Every module that imports it shares one cohort per test session.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hub.data.synth import SiteSpec, SynthResult, generate_cohorts

SITES = (
    SiteSpec("nig", "JGAD900001", None, "Shizuoka"),
    SiteSpec("ncc", "JGAD900002", None, "Tokyo"),
    SiteSpec("tommo", "JGAD900003", None, "Miyagi"),
)
SAMPLES_PER_SITE = 150
VARIANTS = 400
SEED = 515


@dataclass
class PooledCohort:
    """Where the sites' datasets and the pooled reference files are."""

    root: Path
    synth: SynthResult
    folders: dict[str, Path]  # site -> dataset folder
    datasets: dict[str, str]  # site -> dataset id
    pooled_vcf: Path
    pooled_pfile: Path  # the pgen's prefix (pooled.pgen, .pvar, .psam)
    _pooled_mt: object = field(default=None, repr=False)
    _cohorts: dict = field(default_factory=dict, repr=False)

    @property
    def sites(self) -> list[str]:
        return list(self.folders)

    def cohort(self, site: str, engine: str):
        """The site's dataset on `engine`; one object per (site, engine), so what it reads once
        (people, variant keys) is read once per session."""
        from extensions.federation.cohorts import open_cohort

        if (site, engine) not in self._cohorts:
            self._cohorts[site, engine] = open_cohort(
                self.folders[site], site, self.datasets[site], engine
            )
        return self._cohorts[site, engine]

    def pooled_matrix_table(self):
        """The sites' MatrixTables joined by columns (rows: the variants every site holds),
        written once to `pooled/pooled.mt` and read from there."""
        if self._pooled_mt is None:
            from extensions.federation.hail_session import ensure_hail

            hl = ensure_hail()
            path = self.root / "pooled" / "pooled.mt"
            if not path.exists():
                mts = [hl.read_matrix_table(str(f / "genotypes.mt")) for f in self.folders.values()]
                pooled = mts[0]
                for mt in mts[1:]:
                    pooled = pooled.union_cols(mt)
                pooled.write(str(path))
            self._pooled_mt = hl.read_matrix_table(str(path))
        return self._pooled_mt

    def plink2(self, *args: str, out: str) -> Path:
        """Run plink2 on the pooled pgen; returns the output prefix."""
        prefix = self.root / "plink" / out
        prefix.parent.mkdir(exist_ok=True)
        run([
            "plink2", "--pfile", str(self.pooled_pfile), *args,
            "--threads", "2", "--memory", "2000", "--out", str(prefix),
        ])  # fmt: skip
        return prefix


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done


def build_pooled_cohort(
    root: Path,
    sites=SITES,
    samples_per_site: int = SAMPLES_PER_SITE,
    variants: int = VARIANTS,
    seed: int = SEED,
) -> PooledCohort:
    """Write the sites' datasets under `root/<site>/<dataset>/` and the pooled VCF and pgen."""
    for tool in ("bcftools", "plink2"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not on PATH (scripts/setup.sh installs it)")
    root = Path(root)
    synth = generate_cohorts(
        root, sites, samples_per_site=samples_per_site, variants=variants, seed=seed,
        raw_files=False,
    )  # fmt: skip
    folders = {s.site_id: root / s.site_id / s.analysis_dataset for s in sites}
    pooled_dir = root / "pooled"
    pooled_dir.mkdir(exist_ok=True)
    pooled_vcf = pooled_dir / "pooled.vcf.gz"
    run([
        "bcftools", "merge", "--no-version", "-Oz", "-o", str(pooled_vcf),
        *(str(f / "genotypes.vcf.gz") for f in folders.values()),
    ])  # fmt: skip
    run(["bcftools", "index", "-t", str(pooled_vcf)])
    pfile = pooled_dir / "pooled"
    run([
        "plink2", "--vcf", str(pooled_vcf), "--make-pgen", "--threads", "2",
        "--memory", "2000", "--out", str(pfile),
    ])  # fmt: skip
    return PooledCohort(
        root=root,
        synth=synth,
        folders=folders,
        datasets={s.site_id: s.analysis_dataset for s in sites},
        pooled_vcf=pooled_vcf,
        pooled_pfile=pfile,
    )


_built: dict[str, PooledCohort] = {}


@pytest.fixture(scope="session", name="pooled_cohort")
def pooled_cohort_fixture(tmp_path_factory) -> PooledCohort:
    """Three sites x 150 samples x 400 variants, their pooled VCF and pgen.

    Built once per session, however many modules import the fixture (pytest
    keeps one cache per module that defines it, hence the module-level one).
    """
    if "cohort" not in _built:
        _built["cohort"] = build_pooled_cohort(tmp_path_factory.mktemp("pooled-cohort"))
    return _built["cohort"]
