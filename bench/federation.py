"""Federated allele frequencies and GWAS through the demo's own path, against pooled references.

    .venv/bin/python bench/federation.py [--quick] [--sizes 2000,4000,10000] [--repeat 1]
        [--json FILE] [--references plink2,hail,numpy_pooled] [--ref-timeout 7200]
        [--no-ref REFERENCE/TASK=REASON ...]

Sizes (sites x people a site x variants): 2000 is 5 x 2,000 x 100,000, 4000
is 5 x 4,000 x 100,000 (the people double), 10000 is 5 x 10,000 x 200,000
(1e10 genotype calls, to show how cost grows); `--quick` is a smoke run of
5 x 200 x 2,000. No Docker; needs `plink2` on PATH (scripts/setup.sh).

Workload (bench/federation_data.py): the demo's five sites with `hub.data.synth`'s
people and genotypes, written once into
~/.cache/visiting/bench-federation/<sites>x<N>x<V>-seed2026-v3/: each site's
dataset as a gateway reads it (VCF Zarr in ingest's layout, the clinical and
phenotype tables, the summary cache), and the same people pooled for the
references (Zarr, pgen, MatrixTable). Generation time is printed apart and
is in no ratio.

Measured at each size, in one worker process (so the ratios share the
machine's noise), for `allele_frequencies` (everyone), the filtered
`allele_frequencies_where` (women aged 50 and over: two attributes, which no
per-attribute count of the summary cache answers), `gwas_linear`
(quant_trait) and `gwas_logistic` (case_status), covariates age band and sex:

- federated, the path the demo runs (bench/federation_sites.py): per site a
  Dask scheduler, the site's workers as the demo platform's `dask:` block
  plans them (one worker of 1G) with the cores of `--site-cores` (default
  this machine's: the sites are asked one after another, each on the cores
  the references use) and the real gateway over HTTP on
  loopback, the hub and audit service it asks stubbed in this process; the
  real client (`extensions.federation.client.Federation`) asking the sites one
  after another and combining. A site's time is its answer at the client;
  `federated_s` is their sum plus combine (what this 2-core machine does);
  "slowest site + combine" is what sites answering at once on their own
  hardware would take (per round for the logistic fit's rounds);
- bytes leaving each site (the answers' bodies on the wire) and each worker
  (results its gateway gathered, counted by bench/worker_bytes.py);
- the pooled references at their best, in the same run
  (bench/federation_refs.py): plink2 on the pgen, Hail on the MatrixTable
  (each task in a process of its own; the JVM's start is not timed), and the
  sites' own fused kernels over the pooled Zarr (`numpy_pooled`);
- exactness against each reference over the variants the federation
  released under the demo platform's disclosure rules;
- peak memory (VmHWM) of each site's processes (the worker's against its
  1 GiB), the client, plink2 and Hail's JVM.

A reference that cannot run (it did not finish within --ref-timeout, or
--no-ref names it with the reason) is "not run" with its reason, never a
number. `--json FILE` also writes the figures for machines to read (see
`json_document`). Every process the benchmark starts is stopped at the end,
on Ctrl-C and on SIGTERM; an interrupted generation leaves no cache.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.federation_data import Sizes, cache_root, refresh_summaries  # noqa: E402
from bench.federation_procs import (  # noqa: E402
    MIB,
    ONE_THREAD,
    BenchError,
    Timeout,
    descendants,
    in_worker,
    interrupted,
    say,
    self_peak,
    vm_hwm,
)

SCRIPT = Path(__file__).resolve()
TASKS = ("allele_frequencies", "allele_frequencies_where", "gwas_linear", "gwas_logistic")
REFERENCES = ("plink2", "hail", "numpy_pooled")
SIZES = {
    "2000": Sizes(5, 2000, 100_000),
    "4000": Sizes(5, 4000, 100_000),
    "10000": Sizes(5, 10_000, 200_000),
}
QUICK = Sizes(5, 200, 2000)
#: the filtered query: women aged 50 and over (about a third of everyone), over two
#: attributes, so no count kept per attribute answers it: the sites read their calls
WHERE = {"sex": "female", "age_band": ["50-59", "60-69", "70-79", "80-89"]}
#: the untimed warm-up's variants (a few chunks of calls)
WARM_UP_REGION = "chr22:1-5000000"
COVARIATES = ["age_band", "sex"]
GIB = 1024**3
#: the Hail references' driver heap (the demo's sessions have 1g; a reference at its best)
HAIL_MEMORY = "3g"

REF_CALL = {
    ("allele_frequencies", "plink2"): "plink2 --freq",
    ("allele_frequencies_where", "plink2"): "plink2 --freq --keep",
    ("gwas_linear", "plink2"): "plink2 --glm (linear)",
    ("gwas_logistic", "plink2"): "plink2 --glm no-firth (logistic)",
    ("allele_frequencies", "hail"): "hl.variant_qc",
    ("allele_frequencies_where", "hail"): "filter_cols, hl.variant_qc",
    ("gwas_linear", "hail"): "hl.linear_regression_rows",
    ("gwas_logistic", "hail"): "hl.logistic_regression_rows(wald)",
    ("allele_frequencies", "numpy_pooled"): "kernels.allele_counts",
    ("allele_frequencies_where", "numpy_pooled"): "kernels.allele_counts",
    ("gwas_linear", "numpy_pooled"): "kernels.linear_sums + solve",
    ("gwas_logistic", "numpy_pooled"): "kernels.score_fisher Newton",
}


def task_request(task: str) -> tuple[str, dict]:
    """The federated task's name and parameters of a benchmark task."""
    return {
        "allele_frequencies": ("allele_frequencies", {}),
        "allele_frequencies_where": ("allele_frequencies", {"where": WHERE}),
        "gwas_linear": ("gwas_linear", {"phenotype": "quant_trait", "covariates": COVARIATES}),
        "gwas_logistic": ("gwas_logistic", {"phenotype": "case_status", "covariates": COVARIATES}),
    }[task]


# ---------------------------------------------------------------------------
# one size, in a worker process


#: a measurement whose first run takes under SHORT_S seconds runs SHORT_RUNS times in all
#: (or --repeat, if more) and the fastest counts; the same rule for the federated path and
#: every reference, since a sub-second figure is mostly the machine's noise otherwise
SHORT_S = 3.0
SHORT_RUNS = 5


def runs_for(first_s: float, repeat: int) -> int:
    """How many runs a measurement gets in all, from its first run's seconds."""
    return max(repeat, SHORT_RUNS) if first_s < SHORT_S else repeat


def timed(fn, repeat: int):
    """(fastest of the runs `runs_for` gives, in seconds; the last run's value)."""
    times, value = [], None
    while not times or len(times) < runs_for(times[0], repeat):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return min(times), value


def run_federated(
    root: Path, manifest: dict, work: Path, repeat: int, progress, site_cores: float
) -> dict:
    """Every task through the sites' processes, its figures saved into `progress` as it is
    measured (and the sites' memory, the audit events at the end); the results by task."""
    from bench.federation_sites import Sites
    from extensions.federation.client import FederationError
    from extensions.federation.tasks.base import TaskError

    figures: dict[str, dict] = {}
    results: dict[str, object] = {}
    with Sites(root, manifest["sites"], work / "sites", site_cores) as sites:
        fed = sites.client()
        # untimed: the gateways' and workers' imports and first code paths (the summary
        # cache's and the calls'), on a few variants
        fed.allele_frequencies(variants=WARM_UP_REGION)
        fed.allele_frequencies(where=WHERE, variants=WARM_UP_REGION)
        for task in TASKS:
            name, params = task_request(task)
            runs = []
            try:
                while not runs or len(runs) < runs_for(runs[0]["federated_s"], repeat):
                    result, f = fed.measure(name, params, sites)
                    runs.append(f)
                    results[task] = result
            except (FederationError, TaskError) as e:
                # a refusal or a failure at a site is a finding, not the end of the run
                figures[task] = {"error": f"{type(e).__name__}: {e}"[:500]}
                say(f"federated {task}: failed: {figures[task]['error']}")
                progress.out["tasks"][task] = figures[task]
                progress.save()
                continue
            figures[task] = min(runs, key=lambda f: f["federated_s"])
            progress.out["tasks"][task] = figures[task]
            progress.save()
            say(
                f"federated {task}: {figures[task]['federated_s']:.2f} s "
                f"(slowest site + combine {figures[task]['slowest_site_plus_combine_s']:.2f} s)"
            )
        progress.out["memory"].update(sites=sites.peaks(), client=self_peak())
        progress.out["audit_events"] = {
            "answered": sum(e["data"].get("outcome") == "answered" for e in sites.hub.events),
            "all": len(sites.hub.events),
        }
        progress.save()
    return results


class Progress:
    """A size's figures so far, written to `dest` after every measurement (atomically), so a
    run stopped half-way keeps what it measured; what it did not reach is "not run"."""

    NOT_REACHED = "not reached: the run was stopped before it"

    def __init__(self, sizes: Sizes, dest: Path):
        self.dest = dest
        self.t0 = time.perf_counter()
        self.answers: dict[str, dict] = {r: {} for r in REFERENCES}
        self.out: dict = {
            "sizes": sizes.__dict__,
            "load_start": os.getloadavg()[0],
            "complete": False,
            "tasks": {},
            "memory": {},
            "references": {r: {} for r in REFERENCES},
            "not_run": {r: dict.fromkeys(TASKS, self.NOT_REACHED) for r in REFERENCES},
            "exact": {},
        }

    def reference(self, ref: str, task: str, seconds=None, answer=None, reason=None) -> None:
        """A reference's seconds (and answer, for exactness), or why it did not run."""
        if reason is None:
            self.out["references"][ref][task] = seconds
            self.out["not_run"][ref].pop(task, None)
            self.answers[ref][task] = answer
            say(f"{ref} {task}: {seconds:.2f} s")
        else:
            self.out["not_run"][ref][task] = reason
            say(f"{ref} {task}: not run ({reason})")
        self.save()

    def save(self) -> None:
        self.out["load_end"] = os.getloadavg()[0]
        self.out["run_s"] = time.perf_counter() - self.t0
        tmp = self.dest.with_name(self.dest.name + ".tmp")
        tmp.write_text(json.dumps(self.out))
        tmp.replace(self.dest)


def run_numpy(pooled: Path, repeat: int, progress: Progress) -> None:
    import dask

    from bench import federation_refs as refs

    with dask.config.set(scheduler="threads", num_workers=2):
        refs.numpy_allele_frequencies(pooled, WHERE)  # untimed: imports, first code paths
        for task in TASKS:
            fn = refs.NUMPY[task] or (lambda p: refs.numpy_allele_frequencies(p, WHERE))
            seconds, answer = timed(lambda f=fn: f(pooled), repeat)
            progress.reference("numpy_pooled", task, seconds, answer)
    progress.out["memory"]["numpy_pooled"] = self_peak()


def run_plink(pooled: Path, repeat: int, timeout: float, progress: Progress) -> None:
    from bench import federation_refs as refs

    peaks: dict[str, int] = {}
    for task in TASKS:
        try:
            times, answer = [], None
            while not times or len(times) < runs_for(times[0], repeat):
                seconds, answer = refs.plink(pooled, task, WHERE, peaks, timeout)
                times.append(seconds)
            best = min(times)
        except Timeout as e:
            progress.reference("plink2", task, reason=str(e))
            continue
        progress.out["memory"]["plink2"] = peaks.get("plink2", 0)
        progress.reference("plink2", task, best, answer)


def run_hail(sizes: Sizes, work: Path, repeat: int, timeout: float, skip: dict, progress) -> None:
    """Each Hail reference in a process of its own (a JVM each; its start is not timed)."""
    hail = progress.out["hail"] = {"jvm_start_s": [], "jvm_peak": 0, "python_peak": 0}
    for task in TASKS:
        if task in skip:
            progress.reference("hail", task, reason=skip[task])
            continue
        dest = work / f"hail-{task}.pkl"
        args = ["--worker", "hail", "--task", task, "--out", str(dest)]
        args += ["--size", f"{sizes.sites}x{sizes.samples}x{sizes.variants}"]
        args += ["--repeat", str(repeat)]
        try:
            in_worker(SCRIPT, args, f"Hail {task}", timeout=timeout)
        except Timeout as e:
            progress.reference("hail", task, reason=str(e))
            continue
        got = pickle.loads(dest.read_bytes())
        dest.unlink()
        hail["jvm_start_s"].append(got["jvm_start_s"])
        hail["jvm_peak"] = max(hail["jvm_peak"], got["jvm_peak"])
        hail["python_peak"] = max(hail["python_peak"], got["python_peak"])
        progress.out["memory"]["hail_jvm"] = hail["jvm_peak"]
        progress.reference("hail", task, got["seconds"], got["answer"])


def hail_worker(sizes: Sizes, task: str, repeat: int, dest: Path) -> None:
    from bench import federation_refs as refs
    from extensions.federation.hail_session import ensure_hail

    mt = cache_root() / sizes.name / "pooled" / "pooled.mt"
    t0 = time.perf_counter()
    hl = ensure_hail()
    try:
        start = time.perf_counter() - t0
        refs.hail_warm_up(hl, mt)
        seconds, answer = timed(lambda: refs.hail_reference(hl, mt, task, WHERE), repeat)
        jvm = max((vm_hwm(p) for p in descendants(os.getpid(), "java")), default=0)
        doc = {"seconds": seconds, "answer": answer, "jvm_start_s": start, "jvm_peak": jvm}
        doc["python_peak"] = self_peak()
        dest.write_bytes(pickle.dumps(doc))
    finally:
        hl.stop()


def bench_size(sizes: Sizes, args, dest: Path) -> None:
    """One size into `dest`: federated, then the references, then exactness (see the module
    doc); `dest` holds the figures so far after every step (`Progress`)."""
    root = cache_root() / sizes.name
    manifest = json.loads((root / "manifest.json").read_text())
    refresh_summaries(root, manifest, say)
    pooled = root / "pooled"
    progress = Progress(sizes, dest)
    out = progress.out
    for (ref, task), reason in args.no_ref.items():
        out["not_run"][ref][task] = reason
    for ref in REFERENCES:
        if ref not in args.references:
            out["not_run"][ref] = dict.fromkeys(TASKS, "not asked for (--references)")
    if "hail" in args.references and not manifest.get("matrix_table", True):
        out["not_run"]["hail"] = dict.fromkeys(
            TASKS, "this workload was generated without the pooled MatrixTable (a run that "
            "did not ask for Hail); remove its folder to generate it whole",
        )  # fmt: skip
        args.references = [r for r in args.references if r != "hail"]
    skip = {task: reason for (ref, task), reason in args.no_ref.items() if ref == "hail"}
    work = Path(tempfile.mkdtemp(prefix="visiting-bench-federation-"))
    try:
        out["site_cores"] = args.site_cores
        results = run_federated(root, manifest, work, args.repeat, progress, args.site_cores)
        if "numpy_pooled" in args.references:
            run_numpy(pooled, args.repeat, progress)
        if "plink2" in args.references:
            run_plink(pooled, args.repeat, args.ref_timeout, progress)
        if "hail" in args.references:
            run_hail(sizes, work, args.repeat, args.ref_timeout, skip, progress)
        out["exact"] = exactness(results, progress.answers)
        out["complete"] = True
        progress.save()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def exactness(results: dict, answers: dict) -> dict:
    """Federated answers against each reference's (bench/federation_refs.py)."""
    from bench import federation_refs as refs

    exact: dict[str, dict] = {}
    for task, result in results.items():
        for ref, by_task in answers.items():
            if task not in by_task:
                continue
            if task.startswith("allele_frequencies"):
                got = refs.compare_frequencies(refs.frequencies_frame(result), by_task[task], ref)
            else:
                got = refs.compare_regression(result, by_task[task], ref, task)
            exact[f"{task}/{ref}"] = got
    return exact


# ---------------------------------------------------------------------------
# the figures for machines: --json


def json_document(results: list[dict], gens: list[dict], started: float) -> dict:
    """Per size (`sites`, `samples`, `variants`) and task: `federated_s` (the sites' answers in
    turn plus combine), `slowest_site_plus_combine_s`, `references` (seconds of plink2, hail,
    numpy_pooled, measured in the same run; null when not run, with `not_run` saying why),
    the sites' own seconds and bytes, and per size memory and exactness."""
    sizes = []
    for r, g in zip(results, gens, strict=True):
        tasks = {}
        for task in TASKS:
            f = figures_of(r, task)
            if "error" in f:
                tasks[task] = {
                    "federated_s": None,
                    "slowest_site_plus_combine_s": None,
                    "error": f["error"],
                    "references": {
                        ref: r["references"].get(ref, {}).get(task) for ref in REFERENCES
                    },
                }
                continue
            tasks[task] = {
                "federated_s": f["federated_s"],
                "slowest_site_plus_combine_s": f["slowest_site_plus_combine_s"],
                "references": {ref: r["references"].get(ref, {}).get(task) for ref in REFERENCES},
                "not_run": {
                    ref: r["not_run"][ref][task] for ref in REFERENCES if task in r["not_run"][ref]
                },
                "site_s": f["site_s"],
                "combine_s": f["combine_s"],
                "rounds": f["rounds"],
                "site_bytes": f["site_bytes"],
                "worker_bytes": {s: w["get_data_bytes"] for s, w in f["worker_bytes"].items()},
            }
        sizes.append(
            {
                **r["sizes"],
                "tasks": tasks,
                "memory": memory_figures(r),
                "exact": r.get("exact", {}),
                "complete": r.get("complete", True),
                "generation_s": sum(g["seconds"].values()),
            }
        )
    return {
        "benchmark": "bench/federation.py",
        "cpus": os.cpu_count(),
        "seconds": time.perf_counter() - started,
        "sizes": sizes,
    }


def memory_figures(r: dict) -> dict:
    """Peaks in bytes: each site's worker, the sites' processes together, the rest."""
    sites = r["memory"].get("sites", {})
    workers = {s: p.get("worker", 0) for s, p in sites.items()}
    parts = ("scheduler", "nanny", "workers", "gateway")
    total = sum(p.get(k, 0) for p in sites.values() for k in parts)
    return {
        "worker_max": max(workers.values(), default=0),
        "workers": workers,
        "sites_total": total,
        "client": r["memory"].get("client", 0),
        "demo_total": total + r["memory"].get("client", 0),
        "numpy_pooled": r["memory"].get("numpy_pooled"),
        "plink2": r["memory"].get("plink2"),
        "hail_jvm": r["memory"].get("hail_jvm"),
    }


# ---------------------------------------------------------------------------
# tables


def fmt_s(x: float | None) -> str:
    if x is None:
        return "not run"
    return f"{x:.2f}" if x < 100 else f"{x:.0f}"


def fmt_ratio(a: float | None, b: float | None) -> str:
    """a / b as "0.42x"; empty when either is missing."""
    if a is None or not b:
        return ""
    q = a / b
    return f"{q:.2f}x" if q < 10 else f"{q:.0f}x"


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return ""
    if n >= GIB:
        return f"{n / GIB:.2f} GiB"
    return f"{n / MIB:.2f} MiB" if n >= MIB else f"{n / 1024:.1f} KiB"


def fmt_diff(x: float | None) -> str:
    if x is None:
        return ""
    return "n/a" if x != x else ("0" if x == 0 else f"{x:.1e}")


def span(values) -> str:
    values = list(values)
    lo, hi = min(values), max(values)
    return f"{lo:,}" if lo == hi else f"{lo:,}..{hi:,}"


def print_times(r: dict, g: dict) -> None:
    sizes = Sizes(**r["sizes"])
    print(f"\n### {sizes.label} (sites x people a site x variants)\n")
    if not r.get("complete", True):
        print("The run was stopped before its end: what it did not reach is not run.\n")
    print(
        "Seconds; federated = the five sites' answers at the client, asked one after another, "
        "plus combine; a ratio is federated / reference (below 1: federated is faster).\n"
    )
    print(
        "| task | federated | slowest site + combine | plink2 | / plink2 | Hail | / Hail "
        "| numpy_pooled | / numpy_pooled |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for task in TASKS:
        f = figures_of(r, task)
        cells = []
        for ref in REFERENCES:
            s = r["references"].get(ref, {}).get(task)
            cells += [fmt_s(s), fmt_ratio(f.get("federated_s"), s)]
        if "error" in f:
            first = (
                "not reached | | " if f["error"] == Progress.NOT_REACHED else "failed (below) | | "
            )
        else:
            first = f"{fmt_s(f['federated_s'])} | {fmt_s(f['slowest_site_plus_combine_s'])} | "
        print(f"| {task} | {first}" + " | ".join(cells) + " |")
    done = [t for t in TASKS if "error" not in figures_of(r, t)]
    if done:
        print("\nPer site (seconds at the client, all rounds), combine, rounds:\n")
        sites = list(figures_of(r, done[0])["site_s"]) if done else []
        print("| task | " + " | ".join(sites) + " | combine | rounds |")
        print("| --- | " + " | ".join("---:" for _ in sites) + " | ---: | ---: |")
        for task in done:
            f = figures_of(r, task)
            print(
                f"| {task} | "
                + " | ".join(fmt_s(f["site_s"][s]) for s in sites)
                + f" | {fmt_s(f['combine_s'])} | {f['rounds']} |"
            )
    notes = [
        f"federated {t} failed: {figures_of(r, t)['error']}"
        for t in TASKS
        if t not in done and figures_of(r, t)["error"] != Progress.NOT_REACHED
    ]
    for ref in REFERENCES:
        reasons: dict[str, list[str]] = {}
        for task, reason in r["not_run"].get(ref, {}).items():
            reasons.setdefault(reason, []).append(task)
        notes += [f"{ref} not run for {', '.join(t)}: {why}" for why, t in reasons.items()]
    if r.get("hail", {}).get("jvm_start_s"):
        starts = r["hail"]["jvm_start_s"]
        notes.append(f"Hail's JVM start {min(starts):.0f}..{max(starts):.0f} s (not in any row)")
    notes.append(
        "generation (once, then cached; in no row): "
        + "; ".join(f"{k} {v:.0f} s" for k, v in g["seconds"].items())
    )
    for n in notes:
        print(f"\n{n}")


def print_bytes(results: list[dict]) -> None:
    heads = [Sizes(**r["sizes"]) for r in results]
    print("\n### Bytes leaving each site and each worker\n")
    print(
        "Site: the gateway's answers' bodies on the wire (all rounds), min..max over the sites "
        "(the first site's answer also carries the variant keys, which the client then holds). "
        "Worker: the results the site's workers sent its gateway (bench/worker_bytes.py), max "
        "over the sites. Into the site: the client's requests (parameters; for the logistic "
        "fit, each round's state), max over the sites.\n"
    )
    cols = [f"{h.samples:,} x {h.variants:,}" for h in heads]
    groups = ("site", "worker", "into the site")
    print("| task | " + " | ".join(f"{g}, {c}" for g in groups for c in cols) + " |")
    print("| --- | " + " | ".join("---:" for _ in range(len(groups) * len(heads))) + " |")
    for task in answered(results):
        fs = [figures_of(r, task) for r in results]
        site = [span(f["site_bytes"].values()) for f in fs]
        worker = [f"{max(w['get_data_bytes'] for w in f['worker_bytes'].values()):,}" for f in fs]
        # figures kept before requests were counted have none
        into = [
            f"{max(f['request_bytes'].values()):,}" if f.get("request_bytes") else "" for f in fs
        ]
        print(f"| {task} | " + " | ".join(site + worker + into) + " |")
    for a, b in doubling_pairs(results):
        print()
        for task in answered([a, b]):
            x, y = (sum(figures_of(r, task)["site_bytes"].values()) for r in (a, b))
            print(
                f"- {task}, all sites: {fmt_bytes(x)} at {a['sizes']['samples']:,} a site, "
                f"{fmt_bytes(y)} at {b['sizes']['samples']:,} (x{y / x:.4f} for "
                f"x{b['sizes']['samples'] / a['sizes']['samples']:.0f} the people)"
            )


def figures_of(r: dict, task: str) -> dict:
    """A size's federated figures of `task`; {"error": ...} when it failed or was not reached."""
    return r["tasks"].get(task, {"error": Progress.NOT_REACHED})


def answered(results: list[dict]) -> list[str]:
    """The tasks the federation answered at every one of these sizes."""
    return [t for t in TASKS if all("error" not in figures_of(r, t) for r in results)]


def doubling_pairs(results: list[dict]) -> list[tuple[dict, dict]]:
    """Pairs of sizes with the same variants and twice the people."""
    return [
        (a, b)
        for a in results
        for b in results
        if a["sizes"]["variants"] == b["sizes"]["variants"]
        and b["sizes"]["samples"] == 2 * a["sizes"]["samples"]
    ]


def print_memory(results: list[dict]) -> None:
    print("\n### Peak memory (VmHWM)\n")
    print(
        "A site's worker is the Dask worker process (limit 1 GiB); the sites' processes are "
        "five schedulers, nannies, workers and gateways, each process's own peak summed; the "
        "demo adds the client.\n"
    )
    print(
        "| size | a site's worker (max) | the sites' processes | client | demo in all "
        "| numpy_pooled (this process) | plink2 | Hail JVM |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        m = memory_figures(r)
        print(
            f"| {Sizes(**r['sizes']).label} | {fmt_bytes(m['worker_max'])} | "
            f"{fmt_bytes(m['sites_total'])} | {fmt_bytes(m['client'])} | "
            f"{fmt_bytes(m['demo_total'])} | {fmt_bytes(m['numpy_pooled'])} | "
            f"{fmt_bytes(m['plink2'])} | {fmt_bytes(m['hail_jvm'])} |"
        )


def print_exact(r: dict) -> None:
    print(f"\n### Exactness, {Sizes(**r['sizes']).label}\n")
    print(
        "Over the variants the federation released under the demo platform's rules. AF: max "
        "|difference|; beta, SE, p: max relative difference (plink2: beta in units of the SE, "
        "p as |log10 difference|: it leaves out a missing call where the others mean-impute).\n"
    )
    print(
        "| task | against | released / variants | AF | AC, AN identical | beta | SE | p "
        "| converged, exploded identical |"
    )
    print("| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | --- |")
    for key, e in r.get("exact", {}).items():
        task, ref = key.split("/")
        same = e.get("AC_AN_identical", e.get("AN_identical"))
        flags = e.get("flags_identical")
        print(
            f"| {task} | {ref} | {e['released']:,} / {e['variants']:,} | {fmt_diff(e.get('AF'))} | "
            f"{'' if same is None else ('yes' if same else 'NO')} | {fmt_diff(e.get('beta'))} | "
            f"{fmt_diff(e.get('standard_error'))} | {fmt_diff(e.get('p_value'))} | "
            f"{'' if flags is None else ('yes' if flags else 'NO')} |"
        )


# ---------------------------------------------------------------------------
# the targets


def targets(results: list[dict]) -> list[tuple[str, str, str, bool | None]]:
    """(target, size, measured, met) for each of the issue's targets that was measured."""
    rows = []

    def ratio(r, task, ref, inverse=False):
        s = r["references"].get(ref, {}).get(task)
        f = figures_of(r, task).get("federated_s")
        if s is None or f is None:
            return None
        return s / f if inverse else f / s

    for r in results:
        label = Sizes(**r["sizes"]).label
        checks = [
            ("allele_frequencies <= 1.0x plink2 --freq", ratio(r, "allele_frequencies", "plink2"), 1.0, "x"),
            ("allele_frequencies where <= 3x plink2 --freq --keep", ratio(r, "allele_frequencies_where", "plink2"), 3.0, "x"),
            ("allele_frequencies >= 10x faster than Hail variant_qc", ratio(r, "allele_frequencies", "hail", True), 10.0, "faster"),
            ("gwas_linear <= 0.5x plink2 --glm", ratio(r, "gwas_linear", "plink2"), 0.5, "x"),
            ("gwas_linear <= 0.5x Hail linear_regression_rows", ratio(r, "gwas_linear", "hail"), 0.5, "x"),
            ("gwas_logistic faster than Hail logistic_regression_rows", ratio(r, "gwas_logistic", "hail"), 1.0, "x<"),
        ]  # fmt: skip
        for name, value, bound, kind in checks:
            if value is None:
                continue
            if kind == "faster":
                rows.append((name, label, f"{value:.1f}x faster", value >= bound))
            elif kind == "x<":
                rows.append((name, label, f"{value:.2f}x", value < bound))
            else:
                rows.append((name, label, f"{value:.2f}x", value <= bound))
        e = r.get("exact", {}).get("gwas_linear/hail")
        if e:
            worst = max(e["beta"], e["standard_error"], e["p_value"])
            rows.append(
                ("gwas_linear exact to 1e-6 relative (Hail)", label, f"{worst:.1e}", worst <= 1e-6)
            )
        e = r.get("exact", {}).get("gwas_logistic/hail")
        if e:
            rows.append(("gwas_logistic same convergence flags (Hail)", label, "identical" if e["flags_identical"] else "differ", e["flags_identical"]))  # fmt: skip
        for task in answered([r]):
            f = figures_of(r, task)
            over = [
                s for s, w in f["worker_bytes"].items() if w["get_data_bytes"] > f["site_bytes"][s]
            ]
            worst = max(
                w["get_data_bytes"] / f["site_bytes"][s] for s, w in f["worker_bytes"].items()
            )
            rows.append((f"{task}: worker -> gateway <= the answer", label, f"{worst:.2f}x the answer (max over sites)", not over))  # fmt: skip
        if r["sizes"]["samples"] >= 10_000:
            m = memory_figures(r)["worker_max"]
            rows.append(("a site's worker peak <= 1 GiB", label, fmt_bytes(m), m <= GIB))
    for a, b in doubling_pairs(results):
        for task in answered([a, b]):
            x, y = (sum(figures_of(r, task)["site_bytes"].values()) for r in (a, b))
            pair = f"{Sizes(**a['sizes']).label} -> {Sizes(**b['sizes']).label}"
            rows.append((f"{task}: bytes leaving the sites when people double <= 1.05", pair, f"x{y / x:.4f}", y / x <= 1.05))  # fmt: skip
    return rows


def print_targets(results: list[dict]) -> None:
    print("\n### The issue's targets, as measured in this run\n")
    print("| target | size | measured | met |")
    print("| --- | --- | --- | --- |")
    for name, label, value, met in targets(results):
        print(f"| {name} | {label} | {value} | {'yes' if met else 'NO'} |")


# ---------------------------------------------------------------------------
# main


def parse_sizes(text: str) -> list[Sizes]:
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part in SIZES:
            out.append(SIZES[part])
            continue
        try:
            sites, samples, variants = (int(x) for x in part.split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{part!r}: one of {', '.join(SIZES)} or SITESxPEOPLExVARIANTS"
            ) from None
        out.append(Sizes(sites, samples, variants))
    return out


def parse_no_ref(items: list[str]) -> dict[tuple[str, str], str]:
    out = {}
    for item in items:
        what, _, reason = item.partition("=")
        ref, _, task = what.partition("/")
        if ref not in REFERENCES or task not in TASKS or not reason.strip():
            raise argparse.ArgumentTypeError(
                f"--no-ref {item!r}: REFERENCE/TASK=REASON with REFERENCE one of "
                f"{', '.join(REFERENCES)} and TASK one of {', '.join(TASKS)}"
            )
        out[(ref, task)] = reason.strip()
    return out


def arguments(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run: 5 x 200 x 2,000")
    ap.add_argument(
        "--sizes",
        default="2000,4000,10000",
        help="comma-separated: 2000 (5 x 2,000 x 100,000), 4000 (5 x 4,000 x 100,000), "
        "10000 (5 x 10,000 x 200,000), or SITESxPEOPLExVARIANTS (default: all three)",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help=f"runs of each measurement (one under {SHORT_S:g} s runs at least {SHORT_RUNS} "
        "times); the fastest counts",
    )
    ap.add_argument(
        "--site-cores",
        type=float,
        default=float(os.cpu_count() or 1),
        help="the cores of each site's Dask (its `dask:` block), the sites asked one after "
        "another as the references run, on this machine's cores (default: all of them)",
    )
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE")
    ap.add_argument(
        "--references",
        default=",".join(REFERENCES),
        help=f"the references to run (default {','.join(REFERENCES)})",
    )
    ap.add_argument(
        "--ref-timeout",
        type=float,
        default=7200,
        help="seconds a plink2 or Hail reference may take before it is stopped and "
        "reported as not run (default 7200)",
    )
    ap.add_argument(
        "--no-ref",
        action="append",
        default=[],
        metavar="REFERENCE/TASK=REASON",
        help="leave a reference out, with the reason the table prints, e.g. "
        '"hail/gwas_logistic=estimated 5 h at this size"',
    )
    ap.add_argument(
        "--from-results",
        nargs="+",
        metavar="FILE",
        help="print the tables (and --json) of sizes measured before, from the figures a run "
        "keeps in ~/.cache/visiting/bench-federation/<size>/results/",
    )
    ap.add_argument("--worker", choices=("generate", "run", "hail"), help=argparse.SUPPRESS)
    ap.add_argument("--size", help=argparse.SUPPRESS)
    ap.add_argument("--task", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    try:
        args.sizes = [QUICK] if args.quick else parse_sizes(args.sizes)
        args.no_ref = parse_no_ref(args.no_ref)
    except argparse.ArgumentTypeError as e:
        ap.error(str(e))
    args.references = [r for r in args.references.split(",") if r]
    if any(r not in REFERENCES for r in args.references):
        ap.error(f"--references: a comma-separated list of {', '.join(REFERENCES)}")
    return args


def worker_main(args) -> int:
    from bench.federation_data import generate

    os.environ.update(ONE_THREAD)
    os.environ.setdefault("VISITING_HAIL_MEMORY", HAIL_MEMORY)
    [sizes] = parse_sizes(args.size)
    try:
        if args.worker == "generate":
            # the pooled MatrixTable only for a run that asks for Hail (an hour at 1e10 calls)
            generate(sizes, cache_root() / sizes.name, say, hail="hail" in args.references)
        elif args.worker == "hail":
            hail_worker(sizes, args.task, args.repeat, Path(args.out))
        else:
            bench_size(sizes, args, Path(args.out))
    except KeyboardInterrupt:
        return 130
    return 0


def pass_on(args) -> list[str]:
    """The options a size worker needs."""
    out = ["--repeat", str(args.repeat), "--ref-timeout", str(args.ref_timeout)]
    out += ["--site-cores", str(args.site_cores)]
    out += ["--references", ",".join(args.references) or ","]
    for (ref, task), reason in args.no_ref.items():
        out += ["--no-ref", f"{ref}/{task}={reason}"]
    return out


def result_file(sizes: Sizes) -> Path:
    """Where a run keeps a size's figures, beside its workload: written as they are measured,
    so they outlive the run's tables, and the run itself."""
    dest = cache_root() / sizes.name / "results" / time.strftime("%Y%m%d-%H%M%S.json")
    dest.parent.mkdir(exist_ok=True)
    return dest


def report(results: list[dict], gens: list[dict], started: float, json_file: str | None) -> None:
    """The tables (and --json) of the sizes measured."""
    print(
        "\n## federation: federated analyses through the sites' gateways, against pooled references"
    )
    for r, g in zip(results, gens, strict=True):
        print_times(r, g)
    print_bytes(results)
    print_memory(results)
    for r in results:
        print_exact(r)
    print_targets(results)
    print(
        f"\nmachine: {os.cpu_count()} CPUs; load average "
        + ", ".join(
            f"{Sizes(**r['sizes']).label}: {r['load_start']:.1f} -> {r['load_end']:.1f}"
            for r in results
        )
        + "; each size ran in "
        + ", ".join(f"{r['run_s']:.0f} s" for r in results)
    )
    if json_file:
        doc = json_document(results, gens, started)
        Path(json_file).write_text(json.dumps(doc, indent=2) + "\n")
        say(f"figures written to {json_file}")


def main(argv=None) -> int:
    args = arguments(argv)
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.worker:
        return worker_main(args)
    if args.from_results:
        results = [json.loads(Path(f).read_text()) for f in args.from_results]
        gens = [
            json.loads((cache_root() / Sizes(**r["sizes"]).name / "manifest.json").read_text())
            for r in results
        ]
        report(results, gens, time.perf_counter(), args.json)
        return 0
    if shutil.which("plink2") is None:
        print("plink2 is not on PATH (scripts/setup.sh installs it)", file=sys.stderr)
        return 1
    started = time.perf_counter()
    results, gens = [], []
    try:
        for sizes in args.sizes:
            size = ["--size", f"{sizes.sites}x{sizes.samples}x{sizes.variants}"]
            manifest = cache_root() / sizes.name / "manifest.json"
            if manifest.exists():
                say(f"{sizes.label}: cached in {manifest.parent}")
            else:
                say(f"{sizes.label}: generating into {manifest.parent}")
                in_worker(
                    SCRIPT, ["--worker", "generate", *size, *pass_on(args)],
                    f"generating {sizes.label}",
                )  # fmt: skip
            gens.append(json.loads(manifest.read_text()))
            out = result_file(sizes)
            say(f"{sizes.label}: running; its figures go to {out} (--from-results prints them)")
            try:
                in_worker(
                    SCRIPT,
                    ["--worker", "run", *size, *pass_on(args), "--out", str(out)],
                    f"benchmark at {sizes.label}",
                )
            finally:
                if out.exists():  # what was measured, also when the run was stopped
                    results.append(json.loads(out.read_text()))
    except BenchError as e:
        print(f"federation benchmark failed: {e}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        status = 130
    else:
        status = 0
    if results:
        report(results, gens[: len(results)], started, args.json)
    return status


if __name__ == "__main__":
    sys.exit(main())
