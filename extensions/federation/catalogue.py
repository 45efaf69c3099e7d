"""The catalogue from a notebook: datasets to plan a study with, and counts of people.

    from extensions.federation import catalogue
    cat = catalogue()                       # your own token, from the server's environment
    cat.datasets()                          # pandas DataFrame: JGA-style metadata, site, people
    c = cat.counts(sex="female", icd10="E11", by="age_band")
    c.total, c.sites, c.table               # pooled count, per site, broken down by age band
    cat.widget()                            # the same with drop-down filters (ipywidgets)

The counts come from the hub's catalogue service, which asks every site for
them; what a site returns has passed its disclosure control: a site whose
selection holds fewer people than the platform's minimum shows as withheld,
and so does a cell of a table under the minimum (NaN here). The total is then
a lower bound, and `complete` says so. A site that gave no answer says why
(`reason`: site_down, gateway_error or refused; `why`: the service's words in
Japanese and English), as `c.no_answer` lists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import requests

from ..contracts.environment import HUB_URL

FILTERS = ("sex", "age_band", "region", "icd10")
BY = ("sex", "age_band", "region", "disease_name")


class CatalogueError(Exception):
    """The catalogue refused or could not answer; the message says why (and `field` what)."""

    def __init__(self, message: str, field: str | None = None, status: int | None = None):
        super().__init__(message)
        self.field = field
        self.status = status


@dataclass
class Counts:
    """People a selection holds: pooled (`total`), per site (`sites`), and by one attribute."""

    filters: dict
    by: str
    total: int
    complete: bool
    sites: pd.DataFrame  # site, dataset, status (answered / withheld / unavailable), n,
    # reason (site_down / gateway_error / refused when unavailable), why (ja / en)
    table: pd.DataFrame  # value, icd10, count_<site>..., count, withheld_sites, complete
    min_cell_count: int
    suppressions: list = field(default_factory=list)

    def __post_init__(self):
        missing = [c for c in ("reason", "why") if c not in self.sites]
        if missing:  # an answer from a service that does not say why
            self.sites = self.sites.assign(**dict.fromkeys(missing))

    @property
    def withheld_sites(self) -> list[str]:
        return sorted(self.sites.loc[self.sites["status"] == "withheld", "site"])

    @property
    def no_answer(self) -> pd.DataFrame:
        """The sites that gave no answer: site, dataset, reason, why."""
        rows = self.sites[self.sites["status"] == "unavailable"]
        return rows[["site", "dataset", "reason", "why"]].reset_index(drop=True)

    def __repr__(self) -> str:
        bound = "" if self.complete else " (at least: some sites withheld or gave no answer)"
        silent = ", ".join(f"{r.site}: {r.reason}" for r in self.no_answer.itertuples())
        return (
            f"<Counts {self.filters or 'everyone'}: {self.total} people{bound}; "
            f"{len(self.sites)} sites{f' (no answer from {silent})' if silent else ''}; "
            f"by {self.by}>"
        )

    def _repr_html_(self) -> str:
        bound = "" if self.complete else " <i>(at least / 以上)</i>"
        sites = self.sites.copy()
        sites["n"] = [
            n
            if s == "answered"
            else f"withheld / 秘匿 (< {self.min_cell_count})"
            if s == "withheld"
            else why or "no answer / 応答なし"
            for s, n, why in zip(sites["status"], sites["n"], sites["why"], strict=True)
        ]
        return (
            f"<p><b>{self.total}</b> people / 人{bound} — filters: {self.filters or 'none'}</p>"
            + sites[["site", "dataset", "n"]].to_html(index=False)
            + self.table.to_html(index=False, na_rep="withheld / 秘匿")
        )


def site_answers(rows: list[dict]) -> pd.DataFrame:
    """The service's per-site answers as a table: site, dataset, status, n, reason, and why
    (what the service says happened, Japanese / English) for a site that gave no answer."""
    df = pd.DataFrame(
        [
            {
                "site": r["site"],
                "dataset": r["dataset"],
                "status": r["status"],
                "n": r.get("n"),
                "reason": r.get("reason"),
                "why": f"{r['text']['ja']} / {r['text']['en']}"
                if r.get("text")
                else (r.get("message") or None)
                if r["status"] == "unavailable"
                else None,
            }
            for r in rows
        ],
        columns=["site", "dataset", "status", "n", "reason", "why"],
    )
    return df.astype({"n": "Int64"})


class Catalogue:
    """The hub's catalogue service, asked with your own token."""

    def __init__(self, hub_url: str, token: str, timeout: float = 300):
        self.base = hub_url.rstrip("/") + "/services/catalogue/"
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {token}"

    def _get(self, path: str, params: dict | None = None) -> Any:
        try:
            r = self.session.get(self.base + path, params=params, timeout=self.timeout)
        except requests.RequestException as e:
            raise CatalogueError(f"the catalogue did not answer: {e}") from None
        try:
            doc = r.json()
        except ValueError:
            doc = {"message": r.text[:300]}
        if r.status_code != 200:
            raise CatalogueError(
                f"the catalogue refused ({r.status_code}): {doc.get('message')}",
                doc.get("field"),
                r.status_code,
            )
        return doc

    def datasets(self) -> pd.DataFrame:
        """Every dataset: id, site, kind, JGA-style metadata, your approval, people at its site."""
        rows = self._get("api/datasets")["datasets"]
        df = pd.DataFrame(rows)
        first = ["dataset", "site", "kind", "title", "people", "approved", "study", "access"]
        return df[[c for c in first if c in df] + [c for c in df if c not in first]]

    def attributes(self) -> dict:
        """The values each filter takes (diseases with their ICD-10 codes)."""
        return self._get("api/attributes")

    def counts(
        self,
        sex: str | None = None,
        age_band: str | None = None,
        region: str | None = None,
        icd10: str | None = None,
        by: str = "sex",
    ) -> Counts:
        """The people the filters select, per site and pooled, broken down `by` one attribute."""
        given = {"sex": sex, "age_band": age_band, "region": region, "icd10": icd10}
        params = {k: v for k, v in given.items() if v}
        if by not in BY:
            raise CatalogueError(f"by: {by!r} is not one of {', '.join(BY)}", "by")
        doc = self._get("api/counts", {**params, "by": by})
        table = pd.DataFrame(doc["table"])
        for c in table.columns:
            if c.startswith("count"):
                table[c] = pd.to_numeric(table[c], errors="coerce")
        return Counts(
            filters=doc["filters"],
            by=doc["by"],
            total=doc["total"]["n"],
            complete=doc["total"]["complete"],
            sites=site_answers(doc["sites"]),
            table=table,
            min_cell_count=doc["rule"]["min_cell_count"],
            suppressions=doc.get("suppressions", []),
        )

    def widget(self):
        """Drop-down filters over the four clinical attributes and the disease code, and the
        counts they select (ipywidgets; the table updates when a filter changes)."""
        import ipywidgets as w
        from IPython.display import display

        attrs = self.attributes()
        options = {
            "sex": [("all / すべて", "")] + [(v, v) for v in attrs["sex"]],
            "age_band": [("all / すべて", "")] + [(v, v) for v in attrs["age_band"]],
            "region": [("all / すべて", "")] + [(v, v) for v in attrs["region"]],
            "icd10": [("all / すべて", "")]
            + [(f"{d['code']} {d['name']}", d["code"]) for d in attrs["icd10"]],
        }
        labels = {
            "sex": "性別 / Sex",
            "age_band": "年齢 / Age",
            "region": "地域 / Region",
            "icd10": "疾患 / Disease",
        }
        pickers = {
            k: w.Dropdown(options=opts, value="", description=labels[k])
            for k, opts in options.items()
        }
        by = w.Dropdown(options=list(BY), value="sex", description="内訳 / By")
        out = w.Output()
        box = w.VBox(
            [w.HBox(list(pickers.values())[:2]), w.HBox(list(pickers.values())[2:]), by, out]
        )
        box.last = None  # the Counts shown now, for a notebook to read

        def update(*_):
            with out:
                out.clear_output(wait=True)
                try:
                    box.last = self.counts(
                        **{k: p.value or None for k, p in pickers.items()}, by=by.value
                    )
                    display(box.last)
                except CatalogueError as e:
                    print(e)

        for p in (*pickers.values(), by):
            p.observe(update, names="value")
        update()
        return box


def catalogue(hub_url: str | None = None, token: str | None = None) -> Catalogue:
    """The catalogue, found through the hub with your own token (in your server: from its
    environment)."""
    token = token or os.environ.get("JUPYTERHUB_API_TOKEN")
    hub_url = hub_url or os.environ.get(HUB_URL)
    if not (token and hub_url):
        raise CatalogueError(
            "catalogue() needs the hub: run it in a researcher's server, or pass hub_url and token"
        )
    return Catalogue(hub_url, token)
