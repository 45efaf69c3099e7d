"""The contract every federated task keeps: a per-site half and a combining half.

A cross-site analysis runs like this:

    client                         gateway at each site
    ------                         --------------------
    task.validate(params)  ──────► task.validate(params)        (refuses bad input)
                                   cohort = SiteCohort for the dataset
                                   half = task.site_half(cohort, params, state)
                                   half, suppressed = task.disclose(half, rules)
    halves ◄────────────────────── SiteHalf (aggregates only, JSON-able)
    step = task.combine(halves, params, state)
    if step.done: result          else: another round with step.state

Each task is one module holding both halves, so its maths lives in one place.
A site half returns aggregates whose size does not grow with the number of
people: per-variant sums, per-stratum counts, small matrices. It never returns
a value of one person.

Both halves run on either engine: Dask/xarray over the site's VCF Zarr
("dask") or Hail over its MatrixTable ("hail"); a task implements
`site_half_dask` and `site_half_hail` and the two must give identical halves.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ENGINES = ("dask", "hail")

# the four clinical attributes every site holds, and how they may stratify a query
CLINICAL_ATTRIBUTES = ("age_band", "sex", "prefecture", "disease_name")
STRATIFY_BY = ("sex", "age_band", "region")


class TaskError(Exception):
    """A request a task refuses: bad parameters, too few people. The message is for the user."""

    def __init__(self, message: str, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        #: a machine-readable kind for callers that treat it specially ("small_query")
        self.code = code


def check_parameter_names(params, known) -> None:
    """Refuse a non-object or an unknown parameter (named), rather than ignore it."""
    if not isinstance(params, dict):
        raise TaskError("parameters must be an object", "params")
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise TaskError(
            f"{unknown[0]}: no such parameter (parameters: {', '.join(known)})", unknown[0]
        )


@dataclass(frozen=True)
class DisclosureRules:
    """Small-count rules applied at each site before anything leaves it.

    min_cell_count: any released count of people must be at least this (or 0);
    min_minor_allele_count: a variant's statistics leave a site only when its
    minor allele count there is at least this;
    min_people: a query selecting fewer people at a site is refused there.
    """

    min_cell_count: int = 5
    min_minor_allele_count: int = 5

    @property
    def min_people(self) -> int:
        return self.min_cell_count


@dataclass
class Suppression:
    """One thing withheld by disclosure control, reported in the result's metadata."""

    site: str
    what: str  # "variant", "cell", "query"
    count: int  # how many variants or cells
    rule: str  # e.g. "min_minor_allele_count=5"
    detail: str = ""

    def to_json(self) -> dict:
        return {
            "site": self.site,
            "what": self.what,
            "count": self.count,
            "rule": self.rule,
            "detail": self.detail,
        }


@dataclass
class SiteHalf:
    """What one site returns: named arrays of aggregates, and scalars.

    `arrays` hold numbers only (numpy arrays; per variant or per stratum);
    `counts` hold scalar counts (people selected, cases, ...); `variants` are
    the site's variant keys in array order ("chr20:12345:A:G").
    """

    site: str
    dataset: str
    engine: str
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    variants: list[str] = field(default_factory=list)
    suppressed: list[Suppression] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "site": self.site,
            "dataset": self.dataset,
            "engine": self.engine,
            "arrays": {
                k: {"dtype": str(v.dtype), "shape": list(v.shape), "data": v.ravel().tolist()}
                for k, v in self.arrays.items()
            },
            "counts": {k: int(v) for k, v in self.counts.items()},
            "variants": list(self.variants),
            "suppressed": [s.to_json() for s in self.suppressed],
            "meta": self.meta,
        }

    @classmethod
    def from_json(cls, doc: dict) -> SiteHalf:
        arrays = {
            k: np.asarray(
                [np.nan if x is None else x for x in v["data"]], dtype=v["dtype"]
            ).reshape(v["shape"])
            for k, v in doc.get("arrays", {}).items()
        }
        return cls(
            site=doc["site"],
            dataset=doc["dataset"],
            engine=doc["engine"],
            arrays=arrays,
            counts=dict(doc.get("counts", {})),
            variants=list(doc.get("variants", [])),
            suppressed=[Suppression(**s) for s in doc.get("suppressed", [])],
            meta=dict(doc.get("meta", {})),
        )

    def nbytes(self) -> int:
        """Bytes of aggregates this half carries (what left the site, before encoding)."""
        return int(sum(a.nbytes for a in self.arrays.values())) + 8 * len(self.counts)


def shared_variants(variant_lists: list[list[str]]) -> list[str] | None:
    """The one variant list every half holds, or None when they differ (the combine then
    matches them key by key).

    Halves the client read against a list it holds (`extensions.federation.wire`:
    the same digest) hold that very list, so they are told alike by identity;
    lists that are merely equal are compared.
    """
    if not variant_lists:
        return None
    first = variant_lists[0]
    if all(v is first or v == first for v in variant_lists[1:]):
        return first
    return None


@dataclass
class Step:
    """What `combine` decided: the final result, or the state for another round."""

    done: bool
    result: Any = None
    state: dict | None = None


class SiteCohort(ABC):
    """One site's analysis dataset as a per-site half sees it.

    `samples` is a pandas DataFrame indexed by sample_id with the clinical
    attributes (age_band, sex, prefecture, disease_name, icd10) and the
    phenotypes (quant_trait, case_status), in the genotype matrix's column
    order.
    """

    site: str
    dataset: str
    engine: str

    @property
    @abstractmethod
    def samples(self):
        """pandas.DataFrame of the site's people (see the class docstring)."""

    @abstractmethod
    def variant_keys(self) -> list[str]:
        """ "contig:pos:ref:alt" of every variant, in row order."""

    @property
    def summary(self):
        """The site's summary cache of everyone's counts (`summary.SiteSummary`), or None.

        None unless a valid cache is there (a cohort without files has none):
        the halves that could read it then count from the genotype calls.
        """
        return None

    @property
    def packed(self):
        """The site's calls packed two bits each (`packed`, a memory map), or None (a cohort
        without files has none: halves then read the calls another way)."""
        return None

    def reduce_packed(self, masks, rows=None) -> dict:
        """`packed.packed_counts` over the packed calls; only where `packed` is not None."""
        raise NotImplementedError(f"{type(self).__name__} holds no packed calls")

    def reduce_calls(
        self,
        kernel,
        columns: np.ndarray | None = None,
        rows: np.ndarray | None = None,
        column_args: tuple = (),
        row_args: tuple = (),
    ) -> dict[str, np.ndarray]:
        """Per-variant sums of a kernel of `extensions.federation.kernels` over the genotype calls.

        kernel(codes, *column_args, *row_args) -> {name: per-variant sums};
        columns: positions of the people summed over, in the order the kernel
        wants them (None: everyone), `column_args` one row per such person;
        rows: positions of the variants (None: all), `row_args` one row per
        such variant. Returns {name: array with one row per variant of `rows`}.

        This default serves a cohort held as dosages (`dosage_blocks`, as an
        in-memory cohort in the tests gives them), in this process; the Zarr
        cohort runs one task per chunk of calls on the site's workers.
        """
        from ..kernels import reduce_dosage_blocks

        blocks = getattr(self, "dosage_blocks", None)
        if blocks is None:
            raise NotImplementedError(f"{type(self).__name__} has no genotype calls to reduce")
        return reduce_dosage_blocks(
            blocks(columns=columns, rows=rows), kernel, column_args, row_args
        )


class Task(ABC):
    """A federated analysis: validate, per-site half on either engine, combine.

    Subclasses set `name` (the allow-list key) and implement the abstract
    methods. `rounds` > 1 tasks (iterative fits) carry their state between
    rounds in `Step.state`; the gateway is stateless.
    """

    name: str = ""
    max_rounds: int = 1

    @abstractmethod
    def validate(self, params: dict) -> dict:
        """Checked, normalised parameters; raise TaskError naming the field otherwise."""

    def site_half(self, cohort: SiteCohort, params: dict, state: dict | None) -> SiteHalf:
        """The per-site half on the cohort's engine."""
        if cohort.engine == "dask":
            return self.site_half_dask(cohort, params, state)
        if cohort.engine == "hail":
            return self.site_half_hail(cohort, params, state)
        raise TaskError(f"engine {cohort.engine!r} is not one of {ENGINES}", "engine")

    @abstractmethod
    def site_half_dask(self, cohort: SiteCohort, params: dict, state: dict | None) -> SiteHalf:
        """The per-site half with Dask/xarray over the VCF Zarr store."""

    @abstractmethod
    def site_half_hail(self, cohort: SiteCohort, params: dict, state: dict | None) -> SiteHalf:
        """The per-site half with Hail over the MatrixTable."""

    @abstractmethod
    def disclose(self, half: SiteHalf, rules: DisclosureRules) -> SiteHalf:
        """The half with what the rules forbid withheld and listed in `half.suppressed`.

        Runs at the site, after the half and before anything leaves. Withheld
        values become NaN (arrays) so that shapes stay; nothing is dropped silently.
        """

    @abstractmethod
    def combine(self, halves: list[SiteHalf], params: dict, state: dict | None) -> Step:
        """Pool the sites' halves: the final result, or the state of the next round."""

    def initial_state(self, params: dict) -> dict | None:
        return None

    def audited_sets(
        self, cohort: SiteCohort, params: dict, state: dict | None, rules: DisclosureRules
    ) -> list[np.ndarray]:
        """The sets of people the released answer sums over, before anything is computed.

        Boolean masks over the rows of `cohort.samples`: every set whose sums
        (counts, allele counts, a model's sufficient statistics) the answer
        releases once disclosure control has run (a stratum or cell withheld
        whole is not one). The gateway's query-set audit checks them against
        the sets the approval was answered on before, and records them before
        the answer leaves. A query selecting too few people raises the same
        TaskError as `disclose`. A task that cannot say is never answered.
        """
        raise NotImplementedError(f"task {self.name} does not name the sets it sums over")

    def variant_keys_of(self, half: SiteHalf, cohort: SiteCohort, state: dict | None) -> list[str]:
        """The variant of each row of the half's per-variant arrays (`per_variant_arrays`)."""
        return list(half.variants)

    def per_variant_arrays(self, half: SiteHalf) -> list[str]:
        """The arrays of `half` whose first axis is its variants (`variant_keys_of`)."""
        return list(half.meta.get("per_variant", []))
