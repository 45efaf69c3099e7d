"""Fail an image's build when its Python packages do not work together.

    python check-env.py singleuser|dask

Run by each image's Dockerfile after the locked packages and the project's wheel are
installed, after `pip check`. pip check sees only declared requirements, and some
declarations are too loose to catch a broken set: distributed 2021.4.1 asks only for
dask>=2021.03.0, installs beside today's dask, and fails at import. So this imports
every module the image's processes import, and holds dask and distributed to the same
version (each distributed release is made for the dask released with it). The error
names the packages and versions.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import sys
import traceback

#: What each image's processes import. visiting/dask runs the site's Dask scheduler and
#: workers (the federation's tasks) and the federation gateway; visiting/singleuser a
#: researcher's Jupyter server, its kernels and its own Dask cluster.
#: The analysis stack both images run: Dask and its arrays over VCF Zarr, Hail, pysam.
ANALYSIS = [
    "distributed",
    "dask.array",
    "dask.dataframe",
    "xarray",
    "zarr",
    "numpy",
    "pandas",
    "pysam",
    "hail",
    "extensions.federation.tasks",
    "extensions.federation.cohorts",
]
MODULES = {
    "dask": [*ANALYSIS, "extensions.federation.gateway"],
    "singleuser": [
        *ANALYSIS,
        "ipywidgets",
        "ipykernel",
        "matplotlib.pyplot",
        "jupyterlab",
        "jupyter_server",
        "jupyterhub.singleuser",
        "extensions.guard.app",
        "extensions.federation.client",
        "extensions.federation.catalogue",
    ],
}
#: Packages released together, whose versions must be equal.
RELEASED_TOGETHER = [("dask", "distributed")]


def version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def problems(image: str) -> list[str]:
    found = []
    for first, second in RELEASED_TOGETHER:
        a, b = version(first), version(second)
        if a and b and a != b:
            found.append(
                f"{first} {a} and {second} {b} do not match: each {second} release works "
                f"with the {first} release of the same version"
            )
    for module in MODULES[image]:
        try:
            importlib.import_module(module)
        except Exception as e:  # noqa: BLE001 - every failure is reported, with its cause
            where = traceback.extract_tb(e.__traceback__)[-1]
            found.append(f"import {module} fails: {type(e).__name__}: {e} ({where.filename})")
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in MODULES:
        print(f"usage: check-env.py {'|'.join(MODULES)}", file=sys.stderr)
        return 2
    found = problems(argv[0])
    for line in found:
        print(f"check-env: {line}", file=sys.stderr)
    if not found:
        versions = ", ".join(f"{n} {version(n)}" for pair in RELEASED_TOGETHER for n in pair)
        print(f"check-env: {len(MODULES[argv[0]])} modules import; {versions}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
