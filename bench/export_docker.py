"""The export airlock at a site as it runs there: request to "checked" through DockerFreezer.

bench/export.py times the site's module as a process; at a site it runs in a short-lived
container of the site's image on no network, the researcher's home volume read-only and the
site's export volume writable (`hub.services.export.freezer.DockerFreezer`, what the export
service uses whenever it has site containers). This times that, through the project's own
Docker engine and image, against the floor of the same container life: a bare container of
the same image, on no network over the same two volumes, that copies the same files into the
export volume and runs `sha256sum` on the copies (create, start, wait, logs, remove, both).
The ratio is what the checks and the module cost on top of a container that only copies.

Workloads as bench/export.py's: --small-files files of --small-mb MB (tables of counts and
PNGs) and one CSV of GWAS summary statistics of --large-mb MB, checked against a synthetic
cohort mounted as the site's dataset. Best of --repeat. Builds the project's images where
their inputs changed (as `make images`), and starts the engine with scripts/docker.sh when
none answers, stopping only what it started. Its volumes (a home and an export area of a
bench site) are removed at the end.

    .venv/bin/python bench/export_docker.py [--small-files 10] [--small-mb 10]
                                            [--large-mb 1024] [--repeat 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.export import MB, _mb, workload_files, write_cohort  # noqa: E402
from extensions.contracts.export import EXPORT_MOUNT, HOME_MOUNT, ExportRules  # noqa: E402
from hub.services.export.freezer import DockerFreezer  # noqa: E402
from hub.sites.engine import build_images  # noqa: E402

IMAGE = "visiting/singleuser:latest"
SITE, USER, DATASET = "benchsite", "bench", "JGAD009901"
EXPORT_VOLUME = f"visiting-export-{SITE}-bench"


class BenchPlatform:
    """What DockerFreezer reads of a platform: the site's image and engine, its data."""

    def __init__(self, data_root: Path, image: str):
        self.data_root = data_root
        self.sites = {SITE: type("Site", (), {"default_image": image, "docker_endpoint": "local"})}

    def site_data_dir(self, site: str) -> Path:
        return self.data_root / site


class BenchFreezer(DockerFreezer):
    """DockerFreezer with an export volume of the benchmark's own (the demo's stays as is)."""

    @staticmethod
    def export_volume(site: str) -> str:
        return EXPORT_VOLUME


def engine_up() -> bool:
    """The engine answering; True when this run started it (and so stops it at the end)."""
    script = str(REPO / "scripts" / "docker.sh")
    if subprocess.run(["bash", script, "status"], capture_output=True).returncode == 0:
        return False
    subprocess.run(["bash", script, "up"], check=True)
    return True


def fill_home(client, source: Path) -> None:
    """The bench user's home volume holding `source`'s files, owned by the researcher."""
    volume = DockerFreezer.home_volume(SITE, USER)
    client.containers.run(
        IMAGE,
        [
            "sh",
            "-c",
            f"rm -rf {HOME_MOUNT}/* && cp -r /src/. {HOME_MOUNT}/ && "
            f"chown -R 1000:100 {HOME_MOUNT}",
        ],  # fmt: skip
        volumes={
            volume: {"bind": HOME_MOUNT, "mode": "rw"},
            str(source): {"bind": "/src", "mode": "ro"},
        },  # fmt: skip
        user="root",
        network_mode="none",
        remove=True,
    )


def bare_copy_hash(client, label: str, names: list[str], run: int) -> float:
    """A container of the same image, on no network over the same volumes, copying the
    files into the export volume and hashing the copies: the floor of the freeze."""
    dest = f"{EXPORT_MOUNT}/ref-{label}-{run}"
    sources = " ".join(f"{HOME_MOUNT}/{label}/{n}" for n in names)
    script = f"mkdir -p {dest} && cp {sources} {dest}/ && cd {dest} && sha256sum * && rm -rf {dest}"
    t = time.perf_counter()
    container = client.containers.create(
        IMAGE,
        ["sh", "-c", script],
        network_mode="none",
        volumes={
            DockerFreezer.home_volume(SITE, USER): {"bind": HOME_MOUNT, "mode": "ro"},
            EXPORT_VOLUME: {"bind": EXPORT_MOUNT, "mode": "rw"},
        },  # fmt: skip
        user="root",
        cap_drop=["ALL"],
        cap_add=["DAC_READ_SEARCH", "CHOWN", "FOWNER"],
        security_opt=["no-new-privileges"],
    )
    try:
        container.start()
        status = container.wait(timeout=3600).get("StatusCode", 1)
        out = container.logs(stdout=True, stderr=True).decode(errors="replace")
    finally:
        container.remove(force=True)
    took = time.perf_counter() - t
    if status != 0 or out.count("\n") < len(names):
        raise SystemExit(f"the reference container failed ({status}): {out[-500:]}")
    return took


def measure(client, freezer, workloads, source: Path, repeat: int) -> list[dict]:
    rows = []
    for label, files in workloads.items():
        names = [n for n, _ in files]
        sizes = [(source / label / n).stat().st_size for n in names]
        nbytes = sum(sizes)
        rules = ExportRules(max_file_bytes=max(ExportRules.max_file_bytes, max(sizes) + MB),
                            max_request_bytes=max(ExportRules.max_request_bytes, nbytes + MB))  # fmt: skip
        ref, run, ok = [], [], True
        for r in range(repeat):
            ref.append(bare_copy_hash(client, label, names, r))
            t = time.perf_counter()
            manifest = freezer.freeze(f"d{label}{r}{os.getpid()}", SITE, USER,
                                      [f"{label}/{n}" for n in names], rules, [DATASET])  # fmt: skip
            run.append(time.perf_counter() - t)
            if manifest.error or len(manifest.files) != len(names):
                raise SystemExit(f"{label}: the site refused the request: {manifest.error}")
            failed = [(f.name, c.check, c.detail) for f in manifest.files for c in f.checks
                      if not c.ok]  # fmt: skip
            if failed:
                ok = False
                print(f"note: {label}: failed checks {failed[:3]}", file=sys.stderr)
        a, b = min(run), min(ref)
        rows.append({"row": f"{len(names)} x {_mb(nbytes / len(names))}", "bytes": nbytes,
                     "airlock_s": a, "reference_s": b, "ratio": a / b, "checks_ok": ok,
                     "airlock_mb_s": nbytes / MB / a, "reference_mb_s": nbytes / MB / b})  # fmt: skip
    return rows


def table(rows: list[dict]) -> str:
    out = ["| workload | DockerFreezer s | bare container cp + sha256sum s | ratio | DockerFreezer MB/s | every check passed |",
           "|---|---:|---:|---:|---:|---|"]  # fmt: skip
    for r in rows:
        out.append(f"| {r['row']} | {r['airlock_s']:.3g} | {r['reference_s']:.3g} | "
                   f"{r['ratio']:.1f}x | {r['airlock_mb_s']:.0f} | {'yes' if r['checks_ok'] else 'no'} |")  # fmt: skip
    return "\n".join(out)


def main(argv=None) -> int:
    import docker

    from hub.sites.plan import resolve_endpoint

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small-files", type=int, default=10)
    ap.add_argument("--small-mb", type=float, default=10)
    ap.add_argument("--large-mb", type=float, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--image", default=IMAGE)
    ap.add_argument("--json", help="also write the results as JSON to this file")
    a = ap.parse_args(argv)
    small = [(f"fig{k}.png" if k % 3 == 2 else f"counts{k}.csv", int(a.small_mb * MB))
             for k in range(a.small_files)]  # fmt: skip
    workloads = {"small": small, "large": [("sumstats.csv", int(a.large_mb * MB))]}
    started = engine_up()
    if a.image == IMAGE:  # the project's image, rebuilt where its inputs changed (the site
        build_images()  # module in it must be this checkout's)
    client = docker.DockerClient(base_url=resolve_endpoint("local"), version="auto", timeout=600)
    try:
        client.images.get(a.image)
    except docker.errors.ImageNotFound:
        raise SystemExit(f"no image {a.image} on the engine: run `make images`") from None
    volumes = [DockerFreezer.home_volume(SITE, USER), EXPORT_VOLUME]
    try:
        with tempfile.TemporaryDirectory(prefix="bench-export-docker-") as tmp:
            root = Path(tmp)
            write_cohort(root / "data" / SITE / DATASET)
            for label, files in workloads.items():
                workload_files(root / "home" / label, files)
            fill_home(client, root / "home")
            freezer = BenchFreezer(BenchPlatform(root / "data", a.image), timeout=3600)
            rows = measure(client, freezer, workloads, root / "home", a.repeat)
    finally:
        for name in volumes:
            try:
                client.volumes.get(name).remove(force=True)
            except docker.errors.NotFound:
                pass
        client.close()
        if started:
            subprocess.run(["bash", str(REPO / "scripts" / "docker.sh"), "down"], check=False)
    print(table(rows))
    if a.json:
        Path(a.json).write_text(json.dumps({"repeat": a.repeat, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
