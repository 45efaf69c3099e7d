"""Federated allele frequencies and linear GWAS against Hail, PLINK 2 and Dask on the pooled cohort.

Workload: the demo's five sites, each with N synthetic people and V variants
(`hub.synth.generate_cohorts`: VCF, VCF Zarr and Hail MatrixTable per site
through `hub.ingest`), and the same cohort pooled for the reference tools:
the sites' VCFs merged with `bcftools merge` and made a pgen with `plink2
--make-pgen`, the sites' Zarr stores joined by samples, the sites'
MatrixTables joined by columns. Generated once into
~/.cache/visiting/bench-federation/<sites>x<N>x<V>-seed<seed>/ and reused;
its generation time is reported apart. Run at N and again at 2N.

Measured, in one process per size (so the ratios share the machine's noise):

- federated `allele_frequencies` and `gwas_linear` on each engine: per site,
  the gateway's own `Gateway.run` (open_cohort, site_half, disclose with the
  demo platform's rules) and the JSON body it answers with, decoded as the
  client does (`SiteHalf.from_json`), the sites one after another; then
  `combine`. The slowest site plus combine is what sites on their own
  hardware, answering at once, would take;
- references on the pooled data: Dask on the pooled Zarr (AC/AN/AF; OLS per
  variant with the same covariates, mean-imputed dosage, written here
  independently of the tasks), Hail `variant_qc` and `linear_regression_rows`
  (site indicators, age decade, sex), `plink2 --freq` and `plink2 --glm`;
- bytes that left each site per task (the JSON body and `SiteHalf.nbytes()`),
  at N and 2N: they must not grow with the number of people;
- exactness in the same run: max |federated - Hail| for AF, max relative
  difference for beta, SE and p (also against the Dask and PLINK 2 answers);
- peak memory of what the benchmark runs (this process, the Hail JVM,
  plink2) and, when the demo is up, `docker stats` of its containers.

    .venv/bin/python bench/federation.py [--quick] [--samples N] [--variants V]
                                         [--no-double] [--engines dask,hail]

--quick is a smoke run (5 x 200 people x 2,000 variants). Every process it
starts (workers, Hail's JVM, plink2, bcftools) is stopped at the end, on
Ctrl-C and on SIGTERM; an interrupted generation leaves no cache behind.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SEED = 2026
TASKS = ("allele_frequencies", "gwas_linear")
ENGINES = ("dask", "hail")
COVARIATES = ["age_band", "sex"]
PLINK_MEMORY_MB = 3000
MIB = 1024**2
GNU_TIME = "/usr/bin/time" if Path("/usr/bin/time").exists() else None


class BenchError(Exception):
    """A step failed; the benchmark's numbers are not valid."""


@dataclass(frozen=True)
class Sizes:
    sites: int
    samples: int
    variants: int

    @property
    def name(self) -> str:
        return f"{self.sites}x{self.samples}x{self.variants}-seed{SEED}"

    @property
    def label(self) -> str:
        return f"{self.sites} sites x {self.samples:,} people x {self.variants:,} variants"


def cache_root() -> Path:
    base = Path(os.environ.get("VISITING_CACHE", Path.home() / ".cache" / "visiting"))
    return base / "bench-federation"


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def interrupted(_signum, _frame):
    """SIGTERM unwinds through the same clean-up as Ctrl-C."""
    raise KeyboardInterrupt


# ---------------------------------------------------------------------------
# subprocesses: waited for with wait4, so each one's peak RSS is known


def run_tool(cmd: list[str], peaks: dict | None = None) -> float:
    """Run `cmd` to the end; its seconds. Its peak RSS (bytes) goes to `peaks[cmd[0]]`.

    The peak comes from GNU time's %M: the rusage of a child this process forks
    would start from this process's own high-water mark (Linux keeps it across
    exec), so only a small parent in between gives the tool's own.
    """
    t0 = time.perf_counter()
    with tempfile.NamedTemporaryFile("r") as rss, tempfile.TemporaryFile() as err:
        wrap = [GNU_TIME, "-f", "%M", "-o", rss.name] if GNU_TIME else []
        p = subprocess.Popen([*wrap, *cmd], stdout=subprocess.DEVNULL, stderr=err)
        try:
            p.wait()
        except BaseException:
            p.kill()
            p.wait()
            raise
        if p.returncode != 0:
            err.seek(0)
            tail = err.read()[-2000:].decode(errors="replace")
            raise BenchError(f"{' '.join(cmd[:3])} ... failed ({p.returncode}):\n{tail}")
        seconds = time.perf_counter() - t0
        if peaks is not None and GNU_TIME:
            with suppress(ValueError, IndexError):
                kib = int(rss.read().split()[-1])
                peaks[cmd[0]] = max(peaks.get(cmd[0], 0), kib * 1024)
    return seconds


def self_peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def java_descendants() -> list[int]:
    """Pids of the JVMs this process started (Hail's), found through /proc."""
    parent: dict[int, int] = {}
    comm: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            pid = int(stat.parent.name)
            parent[pid] = int(text.rsplit(")", 1)[1].split()[1])
            comm[pid] = text[text.index("(") + 1 : text.rindex(")")]
        except (OSError, ValueError, IndexError):
            continue
    me, found = os.getpid(), []
    for pid, name in comm.items():
        if name != "java":
            continue
        p = parent.get(pid)
        while p and p != me:
            p = parent.get(p)
        if p == me:
            found.append(pid)
    return found


def vm_hwm(pid: int) -> int:
    """Peak RSS (bytes) of a live process (VmHWM)."""
    with suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


# ---------------------------------------------------------------------------
# the workload: five sites and the pooled cohort, generated once


def site_specs():
    from hub.policy import load_platform
    from hub.synth import site_specs as specs_of

    return specs_of(load_platform(REPO / "policies" / "demo").sites.values())


def generate(sizes: Sizes, dest: Path) -> dict:
    """Write the sites and the pooled references into `dest` (via a partial folder)."""
    from hub.synth import generate_cohorts

    specs = site_specs()[: sizes.sites]
    if len(specs) < sizes.sites:
        raise BenchError(f"the demo platform has {len(specs)} sites with an analysis dataset")
    work = dest.with_name(f"{dest.name}.partial-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    seconds: dict[str, float] = {}
    peaks: dict[str, int] = {}
    try:
        t0 = time.perf_counter()
        generate_cohorts(
            work / "sites", specs, samples_per_site=sizes.samples, variants=sizes.variants,
            seed=SEED, raw_files=False, progress=lambda m: say(f"synth: {m}"),
        )  # fmt: skip
        seconds["sites: VCF, VCF Zarr, MatrixTable (hub.synth + hub.ingest)"] = (
            time.perf_counter() - t0
        )
        folders = {s.site_id: work / "sites" / s.site_id / s.analysis_dataset for s in specs}
        pooled = work / "pooled"
        pooled.mkdir()
        vcf = pooled / "pooled.vcf.gz"
        t = run_tool(
            ["bcftools", "merge", "--no-version", "--threads", "2", "-Oz", "-o", str(vcf),
             *(str(f / "genotypes.vcf.gz") for f in folders.values())], peaks,
        )  # fmt: skip
        t2 = run_tool(["bcftools", "index", "-t", str(vcf)], peaks)
        seconds["pooled VCF (bcftools merge, index)"] = t + t2
        say("pooled VCF written")
        seconds["pooled pgen (plink2 --make-pgen)"] = run_tool(
            ["plink2", "--vcf", str(vcf), "--make-pgen", "--threads", "2",
             "--memory", str(PLINK_MEMORY_MB), "--out", str(pooled / "pooled")], peaks,
        )  # fmt: skip
        say("pooled pgen written")
        t0 = time.perf_counter()
        samples = write_pooled_tables(folders, pooled)
        seconds["pooled phenotype and covariate tables"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        write_pooled_zarr(folders, pooled / "pooled.vcf.zarr")
        seconds["pooled VCF Zarr (site stores joined by samples)"] = time.perf_counter() - t0
        say("pooled Zarr written")
        t0 = time.perf_counter()
        write_pooled_matrix_table(folders, pooled / "pooled.mt")
        seconds["pooled MatrixTable (site MatrixTables joined by columns)"] = (
            time.perf_counter() - t0
        )
        say("pooled MatrixTable written")
        manifest = {
            "sizes": sizes.__dict__,
            "seed": SEED,
            "sites": {s.site_id: s.analysis_dataset for s in specs},
            "pooled_people": int(len(samples)),
            "seconds": seconds,
            "peak_rss": {"generator": self_peak(), **peaks},
            "written": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(dest, ignore_errors=True)
        work.rename(dest)
        return manifest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def model_columns(samples) -> tuple[np.ndarray, np.ndarray]:
    """Age as the band's lower bound in decades and sex as male = 1 (the tasks' encoding)."""
    age = np.array([int(str(b).split("-")[0]) / 10 for b in samples["age_band"]], dtype=float)
    sex = (samples["sex"] == "male").to_numpy(dtype=float)
    return age, sex


def write_pooled_tables(folders: dict[str, Path], out: Path):
    """samples.tsv (sample_id, site, quant_trait, age, sex) and PLINK's pheno and covar files."""
    import pandas as pd

    from extensions.analysis.cohorts import ZarrCohort

    parts = []
    for site, folder in folders.items():
        s = ZarrCohort(folder, site, folder.name).samples.copy()
        s["site"] = site
        parts.append(s)
    samples = pd.concat(parts)
    age, sex = model_columns(samples)
    table = pd.DataFrame(
        {"site": samples["site"], "quant_trait": samples["quant_trait"], "age": age, "sex": sex},
        index=samples.index,
    )
    table.to_csv(out / "samples.tsv", sep="\t")
    ids = table.index.to_series(name="#IID")
    pd.DataFrame({"#IID": ids, "quant_trait": table["quant_trait"]}).to_csv(
        out / "pheno.tsv", sep="\t", index=False
    )
    covar = pd.DataFrame({"#IID": ids})
    # PLINK adds its own intercept: indicators of every site but the first
    for site in list(folders)[1:]:
        covar[f"site_{site}"] = (table["site"] == site).astype(int).to_numpy()
    covar["age"] = age
    covar["sex"] = sex
    covar.to_csv(out / "covar.tsv", sep="\t", index=False)
    return table


def write_pooled_zarr(folders: dict[str, Path], out: Path) -> None:
    """The sites' Zarr stores joined by samples (the variants are the same rows everywhere)."""
    import warnings

    import xarray as xr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        stores = [
            xr.open_zarr(f / "genotypes.vcf.zarr", chunks={}, consolidated=False)
            for f in folders.values()
        ]
    first = stores[0]
    for ds in stores[1:]:
        if not np.array_equal(ds["variant_position"].values, first["variant_position"].values):
            raise BenchError("the sites' variants differ; the pooled store needs the same rows")
    gt = xr.concat([ds["call_genotype"] for ds in stores], dim="samples")

    def text(var):  # small string arrays, loaded and stored with a fixed width
        return var.copy(data=np.asarray(var.values).astype(object).astype(str))

    sample_id = xr.concat([text(ds["sample_id"]) for ds in stores], dim="samples")
    pooled = xr.Dataset(
        {
            "call_genotype": gt,
            "sample_id": sample_id,
            "variant_position": first["variant_position"],
            "variant_contig": first["variant_contig"],
            "variant_allele": text(first["variant_allele"]),
            "contig_id": text(first["contig_id"]),
        }
    )
    vchunk = int(first["call_genotype"].data.chunksize[0])
    pooled = pooled.chunk({"variants": vchunk, "samples": -1})
    for v in pooled.variables.values():
        v.encoding = {}
    with warnings.catch_warnings():
        # fixed-width text (sample ids, alleles) has no Zarr v3 spec yet; read back here only
        warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification")
        pooled.to_zarr(out, mode="w", consolidated=False)


def write_pooled_matrix_table(folders: dict[str, Path], out: Path) -> None:
    from extensions.analysis.hail_session import ensure_hail

    hl = ensure_hail()
    mts = [
        hl.read_matrix_table(str(f / "genotypes.mt")).annotate_cols(site=site)
        for site, f in folders.items()
    ]
    pooled = mts[0]
    for mt in mts[1:]:
        pooled = pooled.union_cols(mt)
    pooled.write(str(out), overwrite=True)


# ---------------------------------------------------------------------------
# federated: the gateway's code per site, then the client's combine


class Federation:
    def __init__(self, root: Path, manifest: dict):
        from hub.services.gateway import GatewayConfig, disclosure_from_env

        self.root = root
        self.sites: dict[str, str] = manifest["sites"]
        # the demo platform's rules, as a gateway started by the demo reads them
        self.rules = disclosure_from_env({})
        self.gateways = {
            site: SimpleNamespace(
                config=GatewayConfig(
                    site=site,
                    data_root=root / "sites" / site,
                    hub_api_url="",
                    token="",
                    audit_url=None,
                    scheduler=None,
                    allowed_tasks=("*",),
                ),
                rules=self.rules,
            )  # fmt: skip
            for site in self.sites
        }

    @staticmethod
    def task(name: str):
        from extensions.analysis.tasks.allele_frequencies import AlleleFrequencies
        from extensions.analysis.tasks.gwas_linear import GwasLinear

        return {"allele_frequencies": AlleleFrequencies, "gwas_linear": GwasLinear}[name]()

    def run(self, name: str, params: dict, engine: str) -> dict:
        """The task over every site in turn: results, timings and bytes per site.

        `result` is the answer under the platform's rules (the timed path);
        `unrestricted` combines the same halves disclosed with every threshold
        at 0 (what the exactness figures compare; not timed).
        """
        from extensions.analysis.tasks.base import DisclosureRules, SiteHalf
        from hub.services.gateway import Gateway

        task = KeepsUndisclosed(self.task(name))
        t_all = time.perf_counter()
        state = task.initial_state(task.validate(params))
        site_seconds = dict.fromkeys(self.sites, 0.0)
        sent = {s: {"json": 0, "nbytes": 0} for s in self.sites}
        combine_seconds = 0.0
        for _ in range(task.max_rounds):
            halves = []
            task.kept.clear()
            for site, dataset in self.sites.items():
                t0, copying = time.perf_counter(), task.copy_seconds
                # what TaskHandler.post does with the request, then its answer's body
                checked = task.validate(params)
                half = Gateway.run(self.gateways[site], task, dataset, engine, checked, state)
                task.kept[-1].meta.setdefault("version", half.meta.get("version"))
                body = json.dumps(half.to_json())
                # what the client does with the answer
                halves.append(SiteHalf.from_json(json.loads(body)))
                site_seconds[site] += time.perf_counter() - t0 - (task.copy_seconds - copying)
                sent[site]["json"] += len(body.encode())
                sent[site]["nbytes"] += half.nbytes()
            t0 = time.perf_counter()
            step = task.combine(halves, task.validate(params), state)
            combine_seconds += time.perf_counter() - t0
            if step.done:
                break
            state = json.loads(json.dumps(step.state))
        else:
            raise BenchError(f"{name} did not finish in {task.max_rounds} rounds")
        seconds = time.perf_counter() - t_all - task.copy_seconds

        open_rules = DisclosureRules(min_cell_count=0, min_minor_allele_count=0)
        unrestricted, open_json = [], {}
        for kept in task.kept:
            body = json.dumps(task.disclose_only(kept, open_rules).to_json())
            open_json[kept.site] = len(body.encode())
            unrestricted.append(SiteHalf.from_json(json.loads(body)))
        return {
            "result": step.result,
            "unrestricted": task.combine(unrestricted, task.validate(params), state).result,
            "seconds": seconds,
            "site_seconds": site_seconds,
            "combine_seconds": combine_seconds,
            "bytes": sent,
            "json_unrestricted": open_json,
            "suppressions": sum(s.count for h in halves for s in h.suppressed),
        }


class KeepsUndisclosed:
    """A task as the gateway runs it, whose `disclose` first keeps a copy of the half.

    The copy lets the exactness check combine the same halves with every
    threshold at 0 without running them again; its time is left out.
    """

    def __init__(self, task):
        self._task = task
        self.kept: list = []
        self.copy_seconds = 0.0

    def __getattr__(self, name):
        return getattr(self._task, name)

    def disclose(self, half, rules):
        t0 = time.perf_counter()
        self.kept.append(copy.deepcopy(half))
        self.copy_seconds += time.perf_counter() - t0
        return self._task.disclose(half, rules)

    def disclose_only(self, half, rules):
        return self._task.disclose(copy.deepcopy(half), rules)


# ---------------------------------------------------------------------------
# references on the pooled data


def zarr_keys(ds) -> list[str]:
    contigs = np.asarray(ds["contig_id"].values).astype(object)[np.asarray(ds["variant_contig"])]
    alleles = np.asarray(ds["variant_allele"].values).astype(object)
    pos = np.asarray(ds["variant_position"].values)
    return [f"{c}:{p}:{a[0]}:{a[1]}" for c, p, a in zip(contigs, pos, alleles, strict=True)]


def open_pooled_zarr(path: Path):
    import warnings

    import xarray as xr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return xr.open_zarr(path, chunks={}, consolidated=False)


def dask_pooled_af(path: Path, rows: int | None = None):
    """AC, AN, AF per variant with dask over the pooled store's call_genotype (first `rows`)."""
    import dask.array as da
    import pandas as pd

    ds = open_pooled_zarr(path)
    if rows is not None:
        ds = ds.isel(variants=slice(0, rows))
    gt = ds["call_genotype"].data
    missing = (gt < 0).any(axis=2)
    alt = (gt > 0).sum(axis=2, dtype=np.int64)
    ac, an = da.compute(
        da.where(missing, 0, alt).sum(axis=1), 2 * (~missing).sum(axis=1, dtype=np.int64)
    )
    return pd.DataFrame({"AC": ac, "AN": an, "AF": ac / an}, index=zarr_keys(ds))


def dask_pooled_ols(path: Path, samples_tsv: Path, block: int):
    """Per-variant OLS of quant_trait on [site indicators, age, sex, dosage] with dask.

    The covariates are projected out with an orthonormal basis Q of their
    columns; a missing dosage is the variant's mean over the called people
    (Hail's rule). t with n - k - 1 degrees of freedom, p from scipy.
    """
    import dask
    import pandas as pd
    from scipy import stats

    ds = open_pooled_zarr(path)
    table = pd.read_csv(samples_tsv, sep="\t", index_col=0)
    ids = [str(s) for s in ds["sample_id"].values]
    table = table.loc[ids]
    sites = sorted(table["site"].unique())
    C = np.column_stack(
        [(table["site"] == s).to_numpy(float) for s in sites]
        + [table["age"].to_numpy(float), table["sex"].to_numpy(float)]
    )
    y = table["quant_trait"].to_numpy(float)
    keep = np.isfinite(y) & np.isfinite(C).all(axis=1)
    C, y = C[keep], y[keep]
    n, k = C.shape
    df = n - k - 1
    Q, _ = np.linalg.qr(C)
    yr = y - Q @ (Q.T @ y)
    yy = float(yr @ yr)

    gt = ds["call_genotype"].data[:, np.flatnonzero(keep), :]
    gt = gt.rechunk({0: block, 1: -1, 2: -1})

    def fit(g: np.ndarray) -> np.ndarray:
        missing = (g < 0).any(axis=2)
        x = (g > 0).sum(axis=2).astype(np.float64)
        called = (~missing).sum(axis=1)
        mean = np.where(
            called > 0, np.where(missing, 0.0, x).sum(axis=1) / np.maximum(called, 1), 0
        )
        x = np.where(missing, mean[:, None], x)
        xr = x - (x @ Q) @ Q.T
        xx = np.einsum("ij,ij->i", xr, xr)
        xy = xr @ yr
        with np.errstate(invalid="ignore", divide="ignore"):
            beta = xy / xx
            se = np.sqrt((yy / xx - beta * beta) / df)
            t = beta / se
        return np.column_stack([beta, se, t, 2 * stats.t.sf(np.abs(t), df)])

    parts = dask.compute(*[dask.delayed(fit)(b) for b in gt.to_delayed().ravel()])
    out = np.concatenate(parts)
    return pd.DataFrame(
        out, columns=["beta", "standard_error", "t_stat", "p_value"], index=zarr_keys(ds)
    )


def hail_key(hl, t):
    return hl.delimit([t.locus.contig, hl.str(t.locus.position), t.alleles[0], t.alleles[1]], ":")


def hail_pooled_af(hl, path: Path):
    mt = hl.variant_qc(hl.read_matrix_table(str(path)))
    rows = mt.rows()
    rows = rows.select(
        key=hail_key(hl, rows),
        AC=rows.variant_qc.AC[1],
        AN=rows.variant_qc.AN,
        AF=rows.variant_qc.AF[1],
    )
    return rows.key_by().drop("locus", "alleles").to_pandas().set_index("key")


def hail_pooled_ols(hl, path: Path, sites: list[str]):
    mt = hl.read_matrix_table(str(path))
    age = hl.float64(hl.int32(mt.age_band.split("-")[0])) / 10
    sex = hl.if_else(mt.sex == "male", 1.0, 0.0)
    covariates = [hl.if_else(mt.site == s, 1.0, 0.0) for s in sites] + [age, sex]
    ht = hl.linear_regression_rows(
        y=mt.quant_trait, x=hl.float64(mt.GT.n_alt_alleles()), covariates=covariates
    )
    ht = ht.select(
        key=hail_key(hl, ht),
        beta=ht.beta,
        standard_error=ht.standard_error,
        t_stat=ht.t_stat,
        p_value=ht.p_value,
    )
    return ht.key_by().drop("locus", "alleles").to_pandas().set_index("key")


def plink(pooled: Path, out: Path, args: list[str], peaks: dict) -> float:
    return run_tool(
        ["plink2", "--pfile", str(pooled / "pooled"), *args, "--threads", "2",
         "--memory", str(PLINK_MEMORY_MB), "--out", str(out)], peaks,
    )  # fmt: skip


def read_plink_freq(prefix: Path):
    import pandas as pd

    t = pd.read_csv(f"{prefix}.afreq", sep="\t")
    return t.set_index("ID")


def read_plink_glm(prefix: Path):
    import pandas as pd

    [path] = Path(prefix).parent.glob(f"{Path(prefix).name}*.glm.linear")
    t = pd.read_csv(path, sep="\t")
    t = t[t["TEST"] == "ADD"].set_index("ID")
    flip = np.where(t["A1"] == t["ALT"], 1.0, -1.0)
    t["BETA"] = t["BETA"] * flip
    return t


# ---------------------------------------------------------------------------
# exactness


def max_abs(a, b) -> tuple[float, int]:
    """Max |a - b| over the pairs where both are defined (equal infinities count as 0)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = ~np.isnan(a) & ~np.isnan(b)
    with np.errstate(invalid="ignore"):
        d = np.where(a[ok] == b[ok], 0.0, np.abs(a[ok] - b[ok]))
    return (float(np.max(d)) if ok.any() else float("nan")), int(ok.sum())


def max_rel(a, b) -> tuple[float, int]:
    """Max |a - b| / |b| over the pairs where both are defined; equal values (0 and 0, as
    for a p-value both sides underflow) count as 0, a 0 against a non-zero as 1."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if not ok.any():
        return float("nan"), 0
    a, b = a[ok], b[ok]
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.where(a == b, 0.0, np.abs(a - b) / np.maximum(np.abs(a), np.abs(b)))
        d = np.where(b != 0, np.abs(a - b) / np.abs(b), d)
    return float(np.max(d)), int(ok.sum())


def compare_af(fed, ref, column="AF") -> dict:
    af = fed["AF"].to_series()
    other = ref[column].reindex(af.index)
    diff, n = max_abs(af.to_numpy(), other.to_numpy())
    out = {"AF": diff, "n": n}
    if "AC" in ref:
        ac = fed["AC"].to_series()
        same = np.isfinite(ac.to_numpy())
        out["AC_AN_identical"] = bool(
            np.array_equal(ac.to_numpy()[same], ref["AC"].reindex(ac.index).to_numpy()[same])
            and np.array_equal(
                fed["AN"].to_series().to_numpy()[same], ref["AN"].reindex(ac.index).to_numpy()[same]
            )
        )
    return out


def compare_plink_glm(fed, ref) -> dict:
    """plink2 --glm drops a person whose call is missing (no imputation), so it cannot equal
    the pooled answer; how far it is: beta in units of the SE, SE relative, p as log10."""
    ref = ref.reindex(fed.index)
    beta, n = max_abs(fed["beta"] / fed["standard_error"], ref["BETA"] / fed["standard_error"])
    se, _ = max_rel(fed["standard_error"].to_numpy(), ref["SE"].to_numpy())
    with np.errstate(divide="ignore"):
        logp, _ = max_abs(np.log10(fed["p_value"]), np.log10(ref["P"]))
    return {"beta": beta, "standard_error": se, "p_value": logp, "n": n, "units": "plink"}


def compare_gwas(fed, ref, columns=None) -> dict:
    columns = columns or ("beta", "standard_error", "p_value")
    ref = ref.reindex(fed.index)
    out = {}
    for mine, theirs in zip(("beta", "standard_error", "p_value"), columns, strict=True):
        out[mine], n = max_rel(fed[mine].to_numpy(), ref[theirs].to_numpy())
        out["n"] = min(out.get("n", n), n)
    return out


# ---------------------------------------------------------------------------
# one size, in a worker process


def timed(fn, repeat: int):
    """(fastest of `repeat` runs in seconds, the last run's value)."""
    best, value = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


def warm_up(engine: str, root: Path, manifest: dict, hl=None) -> None:
    """Untimed: imports and the first compiled code paths, on a corner of one site."""
    site = sorted(manifest["sites"])[0]
    folder = root / "sites" / site / manifest["sites"][site]
    if engine == "dask":
        import dask.array  # noqa: F401
        import scipy.stats  # noqa: F401

        from extensions.analysis.cohorts import ZarrCohort

        cohort = ZarrCohort(folder, site, folder.name)
        next(cohort.dosage_blocks(block=100))
        dask_pooled_af(root / "pooled" / "pooled.vcf.zarr", rows=100)
    else:
        warm = hl.read_matrix_table(str(folder / "genotypes.mt")).head(500)
        hl.variant_qc(warm).rows().variant_qc.AF.collect()
        hl.linear_regression_rows(
            y=warm.quant_trait, x=hl.float64(warm.GT.n_alt_alleles()), covariates=[1.0]
        ).beta.collect()


def pooled_references(engine: str, hl, pooled: Path, sites: list[str]) -> list[tuple]:
    """(task, function, arguments) of the pooled references on one engine."""
    zarr, mt = pooled / "pooled.vcf.zarr", pooled / "pooled.mt"
    if engine == "dask":
        return [
            ("allele_frequencies", dask_pooled_af, (zarr,)),
            ("gwas_linear", dask_pooled_ols, (zarr, pooled / "samples.tsv", 1000)),
        ]
    return [
        ("allele_frequencies", hail_pooled_af, (hl, mt)),
        ("gwas_linear", hail_pooled_ols, (hl, mt, sites)),
    ]


def bench(sizes: Sizes, engines: list[str], repeat: int) -> dict:
    root = cache_root() / sizes.name
    manifest = json.loads((root / "manifest.json").read_text())
    pooled = root / "pooled"
    sites = sorted(manifest["sites"])
    fed = Federation(root, manifest)
    params = {"allele_frequencies": {}, "gwas_linear": {"phenotype": "quant_trait", "covariates": COVARIATES}}  # fmt: skip
    times: dict[str, dict] = {t: {} for t in TASKS}
    federated: dict[str, dict] = {}
    answers: dict[str, dict] = {t: {} for t in TASKS}  # pooled references' answers
    results: dict[str, tuple] = {}  # "task/engine" -> (under the rules, unrestricted)
    peaks: dict[str, int] = {}
    hl = None
    out = {"sizes": sizes.__dict__, "load_start": os.getloadavg(), "rules": fed.rules.__dict__}
    out["repeat"] = repeat
    try:
        for engine in engines:
            if engine == "hail":
                from extensions.analysis.hail_session import ensure_hail

                t0 = time.perf_counter()
                hl = ensure_hail()
                out["hail_start_seconds"] = time.perf_counter() - t0
            warm_up(engine, root, manifest, hl)
            # the pooled references first, then the federated runs, on the same engine
            for name, fn, args in pooled_references(engine, hl, pooled, sites):
                times[name][f"{engine}_pooled"], answers[name][engine] = timed(
                    lambda f=fn, a=args: f(*a), repeat
                )
                say(f"{engine} pooled {name}: {times[name][f'{engine}_pooled']:.1f} s")
            for name in TASKS:
                runs = [fed.run(name, params[name], engine) for _ in range(repeat)]
                r = min(runs, key=lambda x: x["seconds"])
                times[name][f"federated_{engine}"] = r["seconds"]
                results[f"{name}/{engine}"] = (r.pop("result"), r.pop("unrestricted"))
                federated[f"{name}/{engine}"] = r
                say(f"federated {name} on {engine}: {r['seconds']:.1f} s")

        # PLINK 2 on the pooled pgen
        plink_dir = Path(tempfile.mkdtemp(prefix="visiting-bench-plink-"))
        try:
            glm = ["--glm", "hide-covar", "--pheno", str(pooled / "pheno.tsv"),
                   "--pheno-name", "quant_trait", "--covar", str(pooled / "covar.tsv")]  # fmt: skip
            for name, args, read in (
                ("allele_frequencies", ["--freq"], read_plink_freq),
                ("gwas_linear", glm, read_plink_glm),
            ):
                prefix = plink_dir / name
                times[name]["plink2"], _ = timed(lambda a=args, p=prefix: plink(pooled, p, a, peaks), repeat)  # fmt: skip
                answers[name]["plink2"] = read(prefix)
                say(f"plink2 {args[0]}: {times[name]['plink2']:.1f} s")
        finally:
            shutil.rmtree(plink_dir, ignore_errors=True)

        out["exact"] = exactness(results, answers)
        for key, (ruled, _) in results.items():
            federated[key]["variants"], federated[key]["no_pooled_answer"] = withheld(ruled)
        memory = {"python": self_peak(), "plink2": peaks.get("plink2", 0)}
        if hl is not None:
            memory["hail_jvm"] = max((vm_hwm(p) for p in java_descendants()), default=0)
    finally:
        if hl is not None:
            with suppress(Exception):  # after an interrupt the JVM may be gone already
                hl.stop()
    out.update(times=times, federated=federated, memory=memory, load_end=os.getloadavg())
    return out


def withheld(result) -> tuple[int, int]:
    """(variants, variants without a pooled answer) of a federated result."""
    if hasattr(result, "data_vars"):  # allele_frequencies: an xarray Dataset
        return int(result.sizes["variant"]), int(np.isnan(result["AF"].values).sum())
    return len(result), int(np.isnan(result["beta"].to_numpy()).sum())


def exactness(results: dict, answers: dict) -> dict:
    """Federated (every threshold at 0) against each pooled answer; and the answer under the
    platform's rules against the unrestricted one where it released a value."""
    exact = {}
    for key, (ruled, unrestricted) in results.items():
        name, engine = key.split("/")
        if name == "allele_frequencies":
            for ref, answer in answers[name].items():
                col = "ALT_FREQS" if ref == "plink2" else "AF"
                exact[f"{key}/vs_{ref}"] = compare_af(unrestricted, answer, col)
            exact[f"{key}/released"] = compare_af(
                ruled, unrestricted[["AC", "AN", "AF"]].to_dataframe()
            )
        else:
            for ref, answer in answers[name].items():
                compare = compare_plink_glm if ref == "plink2" else compare_gwas
                exact[f"{key}/vs_{ref}"] = compare(unrestricted, answer)
            exact[f"{key}/released"] = compare_gwas(ruled, unrestricted)
    return exact


# ---------------------------------------------------------------------------
# the parent: workers per size, then the tables


class Worker:
    """A worker process in its own session, so it and everything it starts stop together."""

    def __init__(self, args: list[str]):
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), *args], start_new_session=True
        )

    def wait(self) -> int:
        return self.proc.wait()

    def stop(self) -> None:
        """SIGTERM to the worker alone (it stops Hail and its tools itself), then whatever
        of its session outlives it (a JVM, plink2) by the session's process group."""
        if self.proc.poll() is None:
            with suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        deadline = time.monotonic() + 10
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return  # nothing of the session is left
            while time.monotonic() < deadline:
                time.sleep(0.2)
                try:
                    os.killpg(self.proc.pid, 0)
                except ProcessLookupError:
                    return


def in_worker(args: list[str], what: str) -> None:
    w = Worker(args)
    try:
        if w.wait() != 0:
            raise BenchError(f"{what} failed (exit {w.proc.returncode}); see above")
    finally:
        w.stop()


def docker_stats() -> str:
    """Memory of the demo's running visiting-* containers, from `docker stats --no-stream`."""
    from hub.sites import resolve_endpoint

    env = dict(os.environ, DOCKER_HOST=resolve_endpoint("local"))
    try:
        r = subprocess.run(
            ["docker", "stats", "--no-stream", "--format", "{{.Name}}\t{{.MemUsage}}"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"docker stats: not available ({e})"
    if r.returncode != 0:
        return f"docker stats: not available ({r.stderr.strip()[:200]})"
    total, names = 0.0, []
    units = {"B": 1, "KiB": 1024, "MiB": MIB, "GiB": 1024**3, "kB": 1e3, "MB": 1e6, "GB": 1e9}
    for line in r.stdout.splitlines():
        name, _, usage = line.partition("\t")
        if not name.startswith("visiting-"):
            continue
        used = usage.split("/")[0].strip()
        for unit in sorted(units, key=len, reverse=True):
            if used.endswith(unit):
                total += float(used[: -len(unit)]) * units[unit]
                break
        names.append(name)
    if not names:
        return (
            "docker stats: no visiting-* container running (the demo is not up; not started here)"
        )
    return (
        f"docker stats --no-stream: {len(names)} visiting-* containers, "
        f"{total / 1024**3:.2f} GiB in total ({', '.join(sorted(names))})"
    )


def fmt_s(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}"


def fmt_ratio(a: float | None, b: float | None) -> str:
    return "" if a is None or not b else f"{a / b:.2f}"


def fmt_bytes(n: float) -> str:
    return f"{n / MIB:.2f} MiB" if n >= MIB else f"{n / 1024:.1f} KiB"


def fmt_diff(x: float) -> str:
    return "n/a" if x != x else ("0" if x == 0 else f"{x:.1e}")


REF_LABEL = {
    "dask_pooled": "Dask on pooled Zarr",
    "hail_pooled": "Hail on pooled MatrixTable",
    "plink2": "PLINK 2 on pooled pgen",
}
REF_CALL = {
    ("allele_frequencies", "dask_pooled"): "AC/AN/AF with dask.array",
    ("allele_frequencies", "hail_pooled"): "hl.variant_qc",
    ("allele_frequencies", "plink2"): "plink2 --freq",
    ("gwas_linear", "dask_pooled"): "OLS per variant with dask.array",
    ("gwas_linear", "hail_pooled"): "hl.linear_regression_rows",
    ("gwas_linear", "plink2"): "plink2 --glm",
}


def print_times(res: dict, gen: dict, engines: list[str]) -> None:
    sizes = Sizes(**res["sizes"])
    print(f"\n### {sizes.label}\n")
    print(
        "Wall time in seconds; ratio = federated / reference (reference runs in the same process).\n"
    )
    refs = [
        r
        for r in ("dask_pooled", "hail_pooled", "plink2")
        if any(r in res["times"][t] for t in TASKS)
    ]
    print(
        "| task | run | seconds | slowest site + combine | "
        + " | ".join(f"/ {REF_LABEL[r]}" for r in refs)
        + " |"
    )
    print("| --- | --- | ---: | ---: | " + " | ".join("---:" for _ in refs) + " |")
    for task in TASKS:
        t = res["times"][task]
        for engine in engines:
            f = res["federated"][f"{task}/{engine}"]
            secs = t[f"federated_{engine}"]
            par = max(f["site_seconds"].values()) + f["combine_seconds"]
            cells = [fmt_ratio(secs, t.get(r)) for r in refs]
            print(
                f"| {task} | federated, {engine} engine, 5 sites in turn | {secs:.2f} | {par:.2f} | "
                + " | ".join(cells)
                + " |"
            )
        for r in refs:
            if r in t:
                cells = ["1.00" if r == x else "" for x in refs]
                print(
                    f"| {task} | reference: {REF_CALL[(task, r)]} | {t[r]:.2f} | | "
                    + " | ".join(cells)
                    + " |"
                )
    extra = []
    if "hail_start_seconds" in res:
        extra.append(f"Hail JVM start {res['hail_start_seconds']:.1f} s (not in any row)")
    extra.append(
        "generation (once, then cached; not in any row): "
        + "; ".join(f"{k} {v:.0f} s" for k, v in gen["seconds"].items())
        + f"; total {sum(gen['seconds'].values()):.0f} s"
    )
    for e in extra:
        print(f"\n{e}")


def print_bytes(results: list[dict], engines: list[str]) -> None:
    heads = [Sizes(**r["sizes"]) for r in results]
    rules = results[0]["rules"]
    print("\n### Bytes that left each site per task\n")
    print(
        "The JSON body of each site's answer and `SiteHalf.nbytes()` (its arrays), min..max over "
        f"the five sites; under the demo platform's rules ({rules['min_cell_count']}, "
        f"{rules['min_minor_allele_count']}: withheld values are NaN, shapes stay) and with every "
        "threshold at 0 (the same halves, nothing withheld).\n"
    )
    people = [f"{s.samples:,}/site" for s in heads]
    print(
        "| task | engine | rules | "
        + " | ".join(f"JSON, {p}" for p in people)
        + " | "
        + " | ".join(f"nbytes, {p}" for p in people)
        + " |"
    )
    print("| --- | --- | --- | " + " | ".join("---:" for _ in range(2 * len(heads))) + " |")

    def span(values) -> str:
        values = list(values)
        return (
            f"{min(values):,}"
            if min(values) == max(values)
            else f"{min(values):,}..{max(values):,}"
        )

    for task in TASKS:
        for engine in engines:
            fed = [r["federated"][f"{task}/{engine}"] for r in results]
            ruled = [span(x["json"] for x in f["bytes"].values()) for f in fed]
            nb = [span(x["nbytes"] for x in f["bytes"].values()) for f in fed]
            opened = [span(f["json_unrestricted"].values()) for f in fed]
            print(f"| {task} | {engine} | platform | " + " | ".join(ruled + nb) + " |")
            print(f"| {task} | {engine} | all 0 | " + " | ".join(opened + nb) + " |")
    if len(results) > 1:
        print()
        for task in TASKS:
            for engine in engines:
                fed = [r["federated"][f"{task}/{engine}"] for r in results]
                a, b = (sum(f["json_unrestricted"].values()) for f in (fed[0], fed[-1]))
                print(
                    f"- {task} on {engine}, all five sites, thresholds 0: {fmt_bytes(a)} at "
                    f"{heads[0].samples:,}/site, {fmt_bytes(b)} at {heads[-1].samples:,}/site "
                    f"(x{b / a:.4f} for x{heads[-1].samples / heads[0].samples:.0f} the people)"
                )


def print_exact(res: dict, engines: list[str]) -> None:
    sizes = Sizes(**res["sizes"])
    rules = res["rules"]
    print(f"\n### Exactness, {sizes.label}\n")
    print(
        "The federated answer from halves disclosed with every threshold at 0 (the whole "
        "cohort) against each pooled answer; then the answer under the demo platform's rules "
        f"(min_cell_count {rules['min_cell_count']}, min_minor_allele_count "
        f"{rules['min_minor_allele_count']}) against that one, over the variants it released. "
        "AF: max absolute difference; beta, SE, p: max relative difference.\n"
    )
    print(
        "| federated | against | AF | AC, AN identical | beta | SE | p | variants compared (AF / GWAS) |"
    )
    print("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |")
    against = {
        "hail": "Hail variant_qc / linear_regression_rows",
        "dask": "Dask on pooled Zarr",
        "plink2": "plink2 --freq / --glm",
        "released": "the same, thresholds 0",
    }
    for engine in engines:
        for ref, label in against.items():
            af = res["exact"].get(
                f"allele_frequencies/{engine}/{'' if ref == 'released' else 'vs_'}{ref}"
            )
            gw = res["exact"].get(f"gwas_linear/{engine}/{'' if ref == 'released' else 'vs_'}{ref}")
            if af is None or gw is None:
                continue
            same = af.get("AC_AN_identical")
            b, se, p = (fmt_diff(gw[k]) for k in ("beta", "standard_error", "p_value"))
            if gw.get("units") == "plink":
                b, p = f"{b} SE", f"{p} in log10 p"
            who = f"{engine} engine" + (", platform rules" if ref == "released" else "")
            print(
                f"| {who} | {label} | {fmt_diff(af['AF'])} | "
                f"{'' if same is None else ('yes' if same else 'NO')} | {b} | {se} | {p} | "
                f"{af['n']:,} / {gw['n']:,} |"
            )
    print(
        "\nVariants without a pooled answer under the platform's rules (withheld at a site): "
        + "; ".join(
            f"{k.replace('/', ' on ')} {v['no_pooled_answer']:,} of {v['variants']:,}"
            for k, v in res["federated"].items()
        )
        + ". plink2 --freq prints AF to 6 significant digits. plink2 --glm leaves out a "
        "person whose call is missing where Hail and the tasks mean-impute, so it agrees, not "
        "equals: its row gives max |beta difference| in units of the SE, and p as log10."
    )


def print_memory(results: list[dict], gens: list[dict]) -> None:
    print("\n### Peak memory\n")
    print(
        "| size | benchmark process (Dask, numpy) | Hail JVM | plink2 | sum of peaks | generation: python / bcftools / plink2 |"
    )
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for r, g in zip(results, gens, strict=True):
        m = r["memory"]
        total = m["python"] + m.get("hail_jvm", 0) + m["plink2"]
        gp = g.get("peak_rss", {})
        print(
            f"| {Sizes(**r['sizes']).label} | {fmt_bytes(m['python'])} | {fmt_bytes(m.get('hail_jvm', 0))} | "
            f"{fmt_bytes(m['plink2'])} | {fmt_bytes(total)} | "
            f"{fmt_bytes(gp.get('generator', 0))} / {fmt_bytes(gp.get('bcftools', 0))} / {fmt_bytes(gp.get('plink2', 0))} |"
        )  # fmt: skip
    print(f"\n{docker_stats()}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick", action="store_true", help="a smoke run: 5 x 200 people x 2,000 variants"
    )
    ap.add_argument("--samples", type=int, default=2000, help="people per site (default 2000)")
    ap.add_argument("--variants", type=int, default=100_000, help="variants (default 100000)")
    ap.add_argument("--no-double", action="store_true", help="skip the run with twice the people")
    ap.add_argument("--engines", default="dask,hail", help="engines to run (default dask,hail)")
    ap.add_argument(
        "--repeat", type=int, default=1, help="runs of each measurement; the fastest counts"
    )
    ap.add_argument("--worker", choices=("generate", "run"), help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.samples, args.variants = 200, 2000
    engines = [e for e in args.engines.split(",") if e]
    if not engines or any(e not in ENGINES for e in engines):
        ap.error(f"--engines: a comma-separated list of {', '.join(ENGINES)}")
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    if args.worker:
        sizes = Sizes(5, args.samples, args.variants)
        try:
            if args.worker == "generate":
                generate(sizes, cache_root() / sizes.name)
            else:
                res = bench(sizes, engines, args.repeat)
                Path(args.out).write_text(json.dumps(res))
        except KeyboardInterrupt:
            return 130
        return 0

    for tool in ("bcftools", "plink2"):
        if shutil.which(tool) is None:
            print(f"{tool} is not on PATH (scripts/setup.sh installs it)", file=sys.stderr)
            return 1
    started = time.perf_counter()
    load_start = os.getloadavg()
    all_sizes = [Sizes(5, args.samples, args.variants)]
    if not args.no_double:
        all_sizes.append(Sizes(5, 2 * args.samples, args.variants))
    results, gens, took = [], [], []
    tmp = Path(tempfile.mkdtemp(prefix="visiting-bench-federation-"))
    common = ["--engines", ",".join(engines), "--repeat", str(args.repeat)]
    try:
        for sizes in all_sizes:
            dims = ["--samples", str(sizes.samples), "--variants", str(sizes.variants)]
            manifest = cache_root() / sizes.name / "manifest.json"
            if manifest.exists():
                say(f"{sizes.label}: cached in {manifest.parent}")
            else:
                say(f"{sizes.label}: generating into {manifest.parent}")
                in_worker(["--worker", "generate", *dims], f"generating {sizes.label}")
            gens.append(json.loads(manifest.read_text()))
            out = tmp / f"{sizes.name}.json"
            t0 = time.perf_counter()
            in_worker(
                ["--worker", "run", *dims, *common, "--out", str(out)],
                f"benchmark at {sizes.label}",
            )
            took.append(time.perf_counter() - t0)
            results.append(json.loads(out.read_text()))
    except BenchError as e:
        print(f"federation benchmark failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print("\n## federation: federated allele frequencies and linear GWAS against pooled references")
    for r, g in zip(results, gens, strict=True):
        print_times(r, g, engines)
    print_bytes(results, engines)
    for r in results:
        print_exact(r, engines)
    print_memory(results, gens)
    print(
        f"\nmachine: {os.cpu_count()} CPUs; load average {load_start[0]:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end; benchmark runs "
        + ", ".join(f"{s.samples:,}/site {t:.0f} s" for s, t in zip(all_sizes, took, strict=True))
        + f"; took {time.perf_counter() - started:.0f} s in all"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
