"""Every tutorial, executed in tanaka's container at nig through the hub, and its results checked.

Rules checked: what the tutorials teach must hold on the running demo. Each
notebook is the copy the server put into ~/tutorials from the image, opened
and run as JupyterLab runs it (contents API, a session, execute_request on the
kernel's websocket through the hub's proxy with tanaka's own token; see
notebook_runner.py). Any error fails the test. The key results are then
compared with references computed here, independently, from the sites' files:
counts of people from the clinical tables, allele counts from the genotype
arrays, a pooled least-squares regression in numpy.

The executed notebooks and the seconds each took are kept in
tests/artifacts/notebooks/.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr

from .conftest import ModuleAudit, token_of
from .guard_server import wait_for
from .notebook_runner import ARTIFACTS, GUARD_NOTICE, run_notebook
from .test_gateway import _pooled_counts as pooled_counts
from .test_sites import Researcher

pytestmark = pytest.mark.integration

TANAKA_SITES = ["ncc", "ncgm", "nig", "tommo"]
ALL_SITES = ["imsut", "ncc", "ncgm", "nig", "tommo"]
TUTORIALS = sorted(
    p.name for p in (Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb")
)
SECONDS: dict[str, float] = {}


@pytest.fixture(scope="module")
def tut_stack(site_stack):
    """The session's site stack (conftest.py)."""
    yield site_stack
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "seconds.json").write_text(json.dumps(SECONDS, indent=1))


@pytest.fixture(scope="module")
def audit(tut_stack):
    """The audit store without the events of modules before this one."""
    return ModuleAudit(tut_stack)


def fresh_home(stack, user: str, site: str) -> None:
    """Remove the person's home volume at the site (kept between servers, and so between
    test runs): the first day of a newcomer, who finds only what the image brings."""
    import docker

    from hub.sites.plan import resolve_endpoint

    endpoint = resolve_endpoint(stack.bundle.platform.sites[site].docker_endpoint)
    client = docker.APIClient(base_url=endpoint, version="auto")
    try:
        client.remove_volume(f"visiting-home-{site}-{user}")
    except docker.errors.NotFound:
        pass


@pytest.fixture(scope="module")
def tanaka(tut_stack, audit):
    """tanaka's server at nig on his first day, as his browser reaches it, and his own token."""
    fresh_home(tut_stack, "tanaka", "nig")
    token = token_of(tut_stack, "tanaka")
    t = Researcher(tut_stack, "tanaka")
    r = t.start("nig")
    assert r.status_code in (201, 202), r.text
    t.wait_ready("nig")
    yield f"{tut_stack.config.hub_url}/user/tanaka/nig/", token
    t.stop("nig")


def run(tanaka, name: str):
    url, token = tanaka
    nb = run_notebook(url, token, f"tutorials/{name}", "tanaka")
    SECONDS[name] = round(nb.seconds, 1)
    return nb


def analysis_folder(stack, site: str) -> Path:
    platform = stack.bundle.platform
    ds = next(d for d in platform.sites[site].datasets if d.kind == "analysis")
    return platform.site_data_dir(site) / ds.id


def genotypes(stack, site: str) -> np.ndarray:
    return np.asarray(
        zarr.open(str(analysis_folder(stack, site) / "genotypes.vcf.zarr"))["call_genotype"]
    )


def people(stack, site: str) -> pd.DataFrame:
    return pd.read_csv(analysis_folder(stack, site) / "clinical.tsv", sep="\t")


def test_every_tutorial_is_in_his_home(tanaka):
    url, token = tanaka
    import requests

    r = requests.get(
        f"{url}api/contents/tutorials", headers={"Authorization": f"token {token}"}, timeout=30
    )
    assert r.status_code == 200, r.text[:300]
    names = {c["name"] for c in r.json()["content"]}
    assert len(TUTORIALS) == 6 and set(TUTORIALS) <= names, names


def test_01_getting_started(tut_stack, tanaka, audit):
    nb = run(tanaka, "01-getting-started.ipynb")
    try:
        got = nb.result
    finally:
        nb.close()
    approval = tut_stack.bundle.approvals["J-DU000101"]
    here = [
        d.id for d in tut_stack.bundle.platform.sites["nig"].datasets if d.id in approval.datasets
    ]
    assert got["site"] == "nig" and got["approval"] == "J-DU000101"
    assert got["datasets"] == here
    assert got["data_writable"] is False
    assert got["raw_status"] == got["renamed_status"] == 403 and got["summary_status"] == 200
    # the refusal the reader reads is the guard's, in both languages
    assert "ダウンロードを禁止しました" in nb.stdout and "Download blocked" in nb.stdout
    # and both attempts are in the audit log

    def blocked():
        found = [
            e
            for e in audit.events(user="tanaka")
            if e["schema"].endswith("download-blocked") and e["site"] == "nig"
        ]
        return found if len(found) >= 2 else None

    events = wait_for(blocked, timeout=60)
    assert {Path(e["data"]["path"]).name for e in events} >= {"my-copy.vcf.gz", "summary.txt"}


def test_02_catalogue(tut_stack, tanaka):
    nb = run(tanaka, "02-catalogue.ipynb")
    try:
        got = nb.result
    finally:
        nb.close()
    tables = {s: people(tut_stack, s) for s in ALL_SITES}
    assert got["datasets"] == len(tut_stack.bundle.platform.datasets)
    assert got["people"] == sum(len(t) for t in tables.values())
    minimum = tut_stack.bundle.platform.disclosure.min_cell_count
    t2d = {s: int((t["icd10"] == "E11").sum()) for s, t in tables.items()}
    assert got["t2d"] == sum(n for n in t2d.values() if n >= minimum)
    assert got["t2d_complete"] == all(n >= minimum for n in t2d.values())
    narrow = {
        s: int(((t["age_band"] == "30-39") & (t["icd10"] == "E11")).sum())
        for s, t in tables.items()
    }
    assert got["narrow_withheld_sites"] == sorted(s for s, n in narrow.items() if n < minimum)
    assert got["narrow_total"] == sum(n for n in narrow.values() if n >= minimum)
    # no count under the minimum reached the notebook in any output
    assert GUARD_NOTICE not in nb.stderr


def test_03_hail_at_a_site(tut_stack, tanaka):
    nb = run(tanaka, "03-hail-at-a-site.ipynb")
    try:
        got = nb.result
    finally:
        nb.close()
    g = genotypes(tut_stack, "nig")
    called = (g >= 0).all(axis=2)
    ac = np.where(called, (g > 0).sum(axis=2), 0).sum(axis=1)
    an = 2 * called.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        af = np.where(an > 0, ac / an, np.nan)
    maf = np.minimum(af, 1 - af)
    passing = (called.mean(axis=1) >= 0.95) & (maf >= 0.01)
    assert (got["samples"], got["variants"]) == (g.shape[1], g.shape[0])
    assert got["passing"] == int(passing.sum())
    # the plot reached the notebook as an image
    images = [
        o
        for c in nb.notebook.cells
        for o in c.get("outputs", [])
        if "image/png" in o.get("data", {})
    ]
    assert images, "no plot in the executed notebook"


def test_04_pooled_allele_frequencies(tut_stack, tanaka):
    nb = run(tanaka, "04-pooled-allele-frequencies.ipynb")
    try:
        got = nb.result
        probe = nb.kernel.execute(
            "import json\n"
            "print(json.dumps([None if x != x else int(x) for x in ac.tolist()]))\n"
            "print(json.dumps([None if x != x else int(x) for x in an.tolist()]))\n"
        ).raise_for_error()
    finally:
        nb.close()
    assert got["sites"] == TANAKA_SITES
    lines = probe.stdout.strip().splitlines()
    got_ac = np.array([np.nan if x is None else x for x in json.loads(lines[-2])])
    got_an = np.array([np.nan if x is None else x for x in json.loads(lines[-1])])
    ac, an = pooled_counts(tut_stack, TANAKA_SITES)
    released = ~np.isnan(got_ac)
    assert released.sum() == got["released"] > 0.5 * len(ac)
    assert np.array_equal(got_ac[released], ac[released])
    assert np.array_equal(got_an[released], an[released])
    assert got["sum_AC"] == int(ac[released].sum())


def pooled_ols(stack, sites) -> pd.DataFrame:
    """beta and SE of quant_trait ~ site indicators + male + age decade + dosage, per variant,
    on the pooled people (missing dosages mean-imputed with the pooled mean), in numpy."""
    ys, cs, xs = [], [], []
    for k, site in enumerate(sites):
        folder = analysis_folder(stack, site)
        z = zarr.open(str(folder / "genotypes.vcf.zarr"))
        ids = [str(s) for s in np.asarray(z["sample_id"])]
        clin = pd.read_csv(folder / "clinical.tsv", sep="\t").set_index("sample_id").loc[ids]
        phen = pd.read_csv(folder / "phenotypes.tsv", sep="\t").set_index("sample_id").loc[ids]
        y = phen["quant_trait"].to_numpy(dtype=float)
        male = (clin["sex"] == "male").to_numpy(dtype=float)
        decade = clin["age_band"].str.split("-").str[0].astype(float).to_numpy() / 10
        keep = np.isfinite(y)
        g = np.asarray(z["call_genotype"])[:, keep, :]
        x = np.where((g >= 0).all(axis=2), (g > 0).sum(axis=2), np.nan).T  # people x variants
        site_cols = np.zeros((keep.sum(), len(sites)))
        site_cols[:, k] = 1
        ys.append(y[keep])
        cs.append(np.column_stack([site_cols, male[keep], decade[keep]]))
        xs.append(x)
    y, C, X = np.concatenate(ys), np.vstack(cs), np.vstack(xs)
    X = np.where(np.isnan(X), np.nanmean(X, axis=0), X)
    Q, _ = np.linalg.qr(C)
    yr = y - Q @ (Q.T @ y)
    Xr = X - Q @ (Q.T @ X)
    xx = (Xr * Xr).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):  # monomorphic variants: NaN
        beta = (Xr.T @ yr) / xx
        resid = yr[:, None] - Xr * beta
        df = len(y) - C.shape[1] - 1
        se = np.sqrt((resid * resid).sum(axis=0) / df / xx)
    return pd.DataFrame({"beta": beta, "se": se})


def test_05_federated_gwas(tut_stack, tanaka):
    nb = run(tanaka, "05-federated-gwas.ipynb")
    try:
        got = nb.result
        probe = nb.kernel.execute(
            "import json\n"
            "print(json.dumps([None if x != x else float(x) for x in gwas['beta'].tolist()]))\n"
            "print(json.dumps([None if x != x else float(x) for x in gwas['standard_error'].tolist()]))\n"
        ).raise_for_error()
    finally:
        nb.close()
    assert got["sites"] == TANAKA_SITES
    assert (
        got["max_rel_diff_beta_vs_hail_here"] < 1e-6 and got["max_rel_diff_se_vs_hail_here"] < 1e-6
    )
    lines = probe.stdout.strip().splitlines()
    beta = np.array([np.nan if x is None else x for x in json.loads(lines[-2])])
    se = np.array([np.nan if x is None else x for x in json.loads(lines[-1])])
    ref = pooled_ols(tut_stack, TANAKA_SITES)
    released = ~np.isnan(beta)
    assert released.sum() == got["variants_tested"] > 0
    rel_beta = np.abs(beta[released] - ref["beta"].to_numpy()[released]) / np.maximum(
        np.abs(ref["beta"].to_numpy()[released]), 1e-12
    )
    rel_se = np.abs(se[released] - ref["se"].to_numpy()[released]) / ref["se"].to_numpy()[released]
    assert rel_beta.max() < 1e-6 and rel_se.max() < 1e-6, (rel_beta.max(), rel_se.max())


def test_06_dask_at_scale(tut_stack, tanaka):
    nb = run(tanaka, "06-dask-at-scale.ipynb")
    try:
        got = nb.result
    finally:
        nb.close()
    g = genotypes(tut_stack, "nig")
    called = (g >= 0).all(axis=2)
    ac = np.where(called, (g > 0).sum(axis=2), 0).sum(axis=1)
    assert got["equal_to_numpy"] is True and got["workers"] >= 1
    assert got["variants"] == g.shape[0] and got["sum_AC"] == int(ac.sum())
    assert "dashboard" in nb.stdout
