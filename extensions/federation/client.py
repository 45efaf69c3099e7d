"""The federation client: one call in a notebook, an analysis over every approved site.

    from extensions.federation import connect
    fed = connect()                       # the sites whose gateways say you may analyse there
    af = fed.allele_frequencies()         # xarray Dataset: pooled AC/AN/AF and per-site AF
    gwas = fed.gwas_linear(covariates=["sex", "age_band"])   # pandas DataFrame

Each call sends the task's parameters to every site's federation gateway
(through the hub's proxy, with your own token), collects the per-site
aggregates and combines them here with the task's combining half. A site
that fails or is down is an error naming the site, unless you ask for a
partial result (`partial=True`), which then says which sites are missing.
Results carry their provenance: sites, datasets and versions, engine,
suppressions by disclosure control, bytes received.

The sites answer in the compact wire format of `extensions.federation.wire`
(a gateway from before it answers JSON, read as well). The variant lists read
are held here by digest and named in every request, so a site whose list is
held sends none, and halves of one list share it (the combine's fast path).
"""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import requests

from ..contracts.environment import HUB_URL
from . import wire
from .tasks import TASKS
from .tasks.base import SiteHalf, TaskError

#: what a task request accepts: the compact wire format, or JSON (an older gateway's answer)
ACCEPT = f"{wire.MEDIA_TYPE}, {wire.JSON_TYPE}"


class FederationError(Exception):
    """A site could not answer; the message names the site and what it said."""

    def __init__(self, message: str, site: str | None = None, status: int | None = None):
        super().__init__(message)
        self.site = site
        self.status = status


@dataclass
class SiteGateway:
    site: str
    url: str  # the gateway's base URL, ending in /
    datasets: list[dict] = field(default_factory=list)

    def dataset_for(self, engine: str) -> dict | None:
        for d in self.datasets:
            if engine in d.get("engines", []):
                return d
        return None


class Progress:
    """Per-site progress: ipywidgets bars in a notebook, text lines elsewhere."""

    def __init__(self, title: str, sites: list[str], rounds: int):
        self.title = title
        self.rounds = max(rounds, 1)
        self.bars = None
        try:
            from IPython import get_ipython

            if get_ipython() is not None and "IPKernelApp" in get_ipython().config:
                import ipywidgets as w
                from IPython.display import display

                self.bars = {
                    s: w.IntProgress(value=0, min=0, max=self.rounds, description=s) for s in sites
                }
                display(w.VBox([w.HTML(f"<b>{title}</b>"), *self.bars.values()]))
        except ImportError:
            self.bars = None

    def step(self, site: str, done: int, note: str = "") -> None:
        if self.bars is not None:
            bar = self.bars[site]
            bar.value = min(done, bar.max)
            bar.bar_style = "danger" if note.startswith("failed") else ""
            return
        print(f"[{self.title}] {site}: {note or f'round {done}'}", file=sys.stderr)


class Federation:
    """The sites a person may analyse, and the tasks as methods."""

    def __init__(self, hub_url: str, api_url: str, token: str, engine: str = "dask"):
        self.hub_url = hub_url.rstrip("/") + "/"
        self.api_url = api_url.rstrip("/")
        self.engine = engine
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {token}"
        self.gateways: dict[str, SiteGateway] = {}
        #: the sites' variant lists held here by digest: a site whose list is one of them
        #: answers without its keys (`wire`)
        self.known_variants = wire.KnownVariants()

    # -- discovery -----------------------------------------------------------------

    def discover(self, timeout: float = 30) -> Federation:
        """Ask the hub for the gateways and each gateway for the datasets you may analyse."""
        r = self.session.get(f"{self.api_url}/services", timeout=timeout)
        if r.status_code != 200:
            raise FederationError(f"the hub did not list its services: {r.status_code} {r.text}")
        for name, model in sorted(r.json().items()):
            if not name.startswith("gateway-"):
                continue
            site = name.removeprefix("gateway-")
            url = urljoin(self.hub_url, model.get("prefix") or f"/services/{name}/")
            try:
                d = self.session.get(urljoin(url, "api/datasets"), timeout=timeout)
            except requests.RequestException:
                continue  # an unreachable gateway is reported when a task needs it
            if d.status_code == 200 and d.json().get("datasets"):
                self.gateways[site] = SiteGateway(site, url, d.json()["datasets"])
        return self

    @property
    def sites(self) -> list[str]:
        return sorted(self.gateways)

    def __repr__(self) -> str:
        parts = [
            f"{s}: {', '.join(d['dataset'] for d in g.datasets)}"
            for s, g in sorted(self.gateways.items())
        ]
        return f"<Federation {len(parts)} sites; " + "; ".join(parts) + ">"

    # -- running -------------------------------------------------------------------

    def run(
        self,
        task_name: str,
        params: dict | None = None,
        sites: list[str] | None = None,
        partial: bool = False,
        engine: str | None = None,
        timeout: float = 600,
    ) -> Any:
        """Run a task at every (chosen) site and combine; the result carries its provenance."""
        if task_name not in TASKS:
            raise TaskError(f"no task {task_name!r}; tasks: {', '.join(sorted(TASKS))}", "task")
        task = TASKS[task_name]()
        params = task.validate(dict(params or {}))
        engine = engine or self.engine
        chosen = sites or self.sites
        unknown = [s for s in chosen if s not in self.gateways]
        if unknown:
            raise FederationError(
                f"no approved dataset at site(s) {', '.join(unknown)} "
                f"(you may analyse at: {', '.join(self.sites) or 'no site'})"
            )
        if not chosen:
            raise FederationError("you hold no approval for an analysis dataset at any site")
        progress = Progress(task_name, chosen, task.max_rounds)
        state = task.initial_state(params)
        missing: dict[str, str] = {}
        halves_meta: dict[str, dict] = {}
        received: dict[str, dict[str, int]] = {}
        for rnd in range(1, task.max_rounds + 1):
            live = [s for s in chosen if s not in missing]
            with ThreadPoolExecutor(max_workers=len(live) or 1) as pool:
                futures = {
                    s: pool.submit(self._ask, s, task_name, params, state, engine, timeout)
                    for s in live
                }
                halves = []
                for s, f in futures.items():
                    try:
                        half, wire_bytes = f.result()
                    except FederationError as e:
                        progress.step(s, rnd, f"failed: {e}")
                        if not partial:
                            raise
                        missing[s] = str(e)
                        continue
                    progress.step(s, rnd, f"round {rnd} answered ({wire_bytes} bytes)")
                    halves.append(half)
                    got = received.setdefault(s, {"wire": 0, "aggregates": 0})
                    got["wire"] += wire_bytes
                    got["aggregates"] += half.nbytes()
                    halves_meta[s] = {
                        "dataset": half.dataset,
                        "version": half.meta.get("version"),
                        "engine": half.engine,
                    }
            if not halves:
                raise FederationError("no site answered: " + json.dumps(missing))
            step = task.combine(halves, params, state)
            if step.done:
                return self._provenance(
                    step.result, task_name, halves, halves_meta, missing, engine, received
                )
            state = step.state
        raise FederationError(f"{task_name} did not finish within {task.max_rounds} rounds")

    def _ask(self, site, task_name, params, state, engine, timeout) -> tuple[SiteHalf, int]:
        """(the site's half, the bytes of its answer on the wire)."""
        g = self.gateways[site]
        d = g.dataset_for(engine)
        if d is None:
            raise FederationError(f"site {site}: no dataset ready for the {engine} engine", site)
        body = {
            "dataset": d["dataset"],
            "params": params,
            "state": state,
            "engine": engine,
            "variants_known": self.known_variants.digests(),
        }
        try:
            r = self.session.post(
                urljoin(g.url, f"api/tasks/{task_name}"),
                json=body,
                headers={"Accept": ACCEPT},
                timeout=timeout,
            )
        except requests.RequestException as e:
            raise FederationError(f"site {site} did not answer: {e}", site) from None
        if r.status_code != 200:
            try:
                message = r.json().get("message", r.text)
            except ValueError:
                message = r.text[:300]
            # a 5xx is the gateway failing (its message names the error id in its log)
            what = "refused" if r.status_code < 500 else "failed"
            raise FederationError(
                f"site {site} {what} ({r.status_code}): {message}", site, r.status_code
            )
        return self._decode(site, r), len(r.content)

    def _decode(self, site: str, r: requests.Response) -> SiteHalf:
        """The half in a gateway's answer: the compact wire format (its variant list then
        held here) or JSON, by the answer's Content-Type."""
        media_type = r.headers.get("Content-Type", "").split(";")[0].strip().lower()
        try:
            if media_type == wire.MEDIA_TYPE:
                half, digest = wire.read_half(r.content, self.known_variants)
                if half.variants:
                    half.variants = self.known_variants.add(digest, half.variants)
                return half
            return SiteHalf.from_json(r.json())
        except (ValueError, KeyError, TypeError) as e:  # WireError is a ValueError
            raise FederationError(
                f"site {site} answered what this client cannot read ({media_type}): {e}", site
            ) from None

    @staticmethod
    def _provenance(result, task_name, halves, meta, missing, engine, received):
        provenance = {
            "task": task_name,
            "engine": engine,
            "sites": sorted(meta),
            "datasets": {s: f"{m['dataset']}@{m['version']}" for s, m in sorted(meta.items())},
            "suppressions": [s.to_json() for h in halves for s in h.suppressed],
            "missing_sites": missing,
            # every round's answers: as received, and the aggregates they carried
            "bytes_from_sites": {s: r["wire"] for s, r in sorted(received.items())},
            "aggregate_bytes_from_sites": {s: r["aggregates"] for s, r in sorted(received.items())},
        }
        attrs = getattr(result, "attrs", None)
        if isinstance(attrs, dict):
            # xarray attrs must be netCDF-friendly; keep them JSON text where nested
            for k, v in provenance.items():
                attrs[k] = v if isinstance(v, str) else json.dumps(v)
        return result

    # -- the tasks as methods --------------------------------------------------------

    def allele_frequencies(self, stratify_by=None, where=None, variants=None, **kw):
        """Pooled AC, AN, AF and per-site AF per variant; optionally by sex, age_band or region,
        for the people `where` selects, over `variants` (keys or a region like "chr20:1-2000000")."""
        given = {"stratify_by": stratify_by, "where": where, "variants": variants}
        params = {k: v for k, v in given.items() if v}
        return self.run("allele_frequencies", params, **kw)

    def cohort_counts(self, by=None, **kw):
        """People by the clinical attributes, for study planning (small cells suppressed)."""
        return self.run("cohort_counts", {"by": by} if by else {}, **kw)

    def gwas_linear(self, phenotype="quant_trait", covariates=("sex", "age_band"), **kw):
        """Exact pooled linear regression per variant with covariates and per-site intercepts."""
        return self.run(
            "gwas_linear", {"phenotype": phenotype, "covariates": list(covariates)}, **kw
        )

    def gwas_logistic(self, phenotype="case_status", covariates=("sex", "age_band"), **kw):
        """Logistic regression of the binary phenotype per variant (see the task for the method)."""
        return self.run(
            "gwas_logistic", {"phenotype": phenotype, "covariates": list(covariates)}, **kw
        )


def connect(
    hub_url: str | None = None,
    token: str | None = None,
    api_url: str | None = None,
    engine: str = "dask",
) -> Federation:
    """The sites you may analyse, found through the hub's API with your own token.

    In a researcher's container everything comes from the environment the
    spawner set (the hub's address as the site sees it, the server's token).
    """
    token = token or os.environ.get("JUPYTERHUB_API_TOKEN")
    api_url = api_url or os.environ.get("JUPYTERHUB_API_URL")
    hub_url = hub_url or os.environ.get(HUB_URL)
    if hub_url and not api_url:
        api_url = hub_url.rstrip("/") + "/hub/api"
    if not (token and api_url and hub_url):
        raise FederationError(
            "connect() needs the hub: run it in a researcher's server, or pass hub_url and token"
        )
    return Federation(hub_url, api_url, token, engine).discover()
