"""The typed models a policy directory loads into, and the error that lists its problems.

Built by hub.platform.policy from `platform.yaml`, `approvals/*.yaml`,
`users.yaml` and `catalogue.yaml`; frozen, so a loaded platform is a value every
part of the hub can share.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from extensions.contracts.clock import Period
from extensions.contracts.egress import EgressRules
from extensions.contracts.export import ExportRules

# ---------------------------------------------------------------------------
# errors


@dataclass(frozen=True)
class PolicyIssue:
    """One problem in a policy file: where it is and what is wrong."""

    file: str
    field: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.field}" if self.field else self.file
        return f"{where}: {self.reason}"


class PolicyError(Exception):
    """A policy directory that does not validate. `issues` lists every problem found."""

    def __init__(self, issues: Iterable[PolicyIssue]):
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


# ---------------------------------------------------------------------------
# models


@dataclass(frozen=True)
class Quota:
    """Resource limits. None means "not set here" (a default from elsewhere applies)."""

    cpu: float | None = None
    memory: int | None = None  # bytes
    home: int | None = None  # bytes

    def over(self, base: Quota) -> Quota:
        """This quota with the unset fields taken from `base`."""
        return Quota(
            cpu=self.cpu if self.cpu is not None else base.cpu,
            memory=self.memory if self.memory is not None else base.memory,
            home=self.home if self.home is not None else base.home,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"cpu": self.cpu, "memory": self.memory, "home": self.home}


@dataclass(frozen=True)
class SiteDask:
    """A site's Dask workers (its `dask:` block): how many, and what each one may use.

    The workers run the federation gateway's tasks over all the site's data, one
    task per chunk of calls, so what a worker holds at once is its threads times
    a chunk, whatever the size of the cohort.
    """

    workers: int = 1
    # a worker container's CPU quota; may be fractional (Docker's --cpus)
    cores: float = 1.0
    memory: int = 1024**3  # bytes, per worker: Dask's memory limit and the container's

    @property
    def threads(self) -> int:
        """Dask threads per worker: the cores rounded down, at least one. Each runs one
        BLAS thread, so a worker never runs more compute threads than its whole cores
        (one when it has less than a core)."""
        return max(1, int(self.cores))


#: below this a Dask worker cannot work: its own process takes about 150M before it
#: holds any data, and it pauses at 80% of its limit
MIN_DASK_WORKER_MEMORY = 256 * 1024**2


@dataclass(frozen=True)
class Dataset:
    id: str
    site: str
    kind: str  # "raw" or "analysis"
    title: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class Site:
    id: str
    name: str
    name_ja: str
    region: str
    docker_endpoint: str
    network: str
    subnet: ipaddress.IPv4Network
    images: tuple[str, ...]
    default_image: str
    quota: Quota
    datasets: tuple[Dataset, ...]
    # "guarded": terminals open and their output passes the egress gate; "off": none opens
    terminals: str = "guarded"
    dask: SiteDask = field(default_factory=SiteDask)
    # how files leave: "direct" (downloads through the guard) or "airlock" (export requests)
    downloads: str = "direct"


@dataclass(frozen=True)
class DisclosureRules:
    min_cell_count: int = 5
    min_minor_allele_count: int = 5


@dataclass(frozen=True)
class SanctionRules:
    ban_months_min: int = 1
    ban_months_max: int = 12
    allow_indefinite: bool = True


@dataclass(frozen=True)
class DownloadRules:
    """What the guard in each researcher's container treats as raw data and may not serve."""

    max_bytes: int = 50 * 1024**2
    extra_raw_patterns: tuple[str, ...] = ()
    disabled_kinds: tuple[str, ...] = ()
    period_warning_days: int = 14

    def to_env(self, downloads: str = "direct") -> str:
        """The rules as the JSON the guard reads from VISITING_GUARD_RULES, with how files
        leave the server's site (`downloads`: direct, or only through the export airlock)."""
        return json.dumps(
            {
                "downloads": downloads,
                "max_bytes": self.max_bytes,
                "extra_raw_patterns": list(self.extra_raw_patterns),
                "disabled_kinds": list(self.disabled_kinds),
                "period_warning_days": self.period_warning_days,
            },
            sort_keys=True,
        )


#: the roles whose approvals an export request may need: a site admin of the request's site,
#: a member of the secretariat
REVIEWER_ROLES = ("site-admin", "secretariat")


@dataclass(frozen=True)
class ExportPolicy:
    """The export airlock (`rules.export`): the checks the site applies (the contract's
    ExportRules), whose approvals a request needs, and how long released files stay
    downloadable after approval."""

    checks: ExportRules = field(default_factory=ExportRules)
    reviewers: tuple[str, ...] = REVIEWER_ROLES
    release_days: int = 7


@dataclass(frozen=True)
class Platform:
    name: str
    name_ja: str
    contact: str
    state_dir: Path
    data_root: Path
    database_url: str
    disclosure: DisclosureRules
    sanctions: SanctionRules
    download: DownloadRules
    sites: dict[str, Site]
    # the egress meter's rules (extensions.contracts.egress.EgressRules, one definition for the
    # hub and the gate); to_env() is what the spawner passes in VISITING_EGRESS_RULES
    egress: EgressRules = field(default_factory=EgressRules)
    export: ExportPolicy = field(default_factory=ExportPolicy)

    @property
    def datasets(self) -> dict[str, Dataset]:
        return {d.id: d for s in self.sites.values() for d in s.datasets}

    def site_data_dir(self, site_id: str) -> Path:
        return self.data_root / site_id


@dataclass(frozen=True)
class Approval:
    """One approved application."""

    approval_id: str
    institution: str
    purpose: str
    handlers: tuple[str, ...]
    datasets: tuple[str, ...]
    period: Period
    quota: Quota | None
    source: str  # the file it came from

    def content(self) -> dict[str, Any]:
        """What the application states, in a canonical form (for change detection)."""
        return {
            "approval_id": self.approval_id,
            "institution": self.institution,
            "purpose": self.purpose,
            "handlers": sorted(self.handlers),
            "datasets": sorted(self.datasets),
            "start": self.period.start.isoformat(),
            "end": self.period.end.isoformat(),
            "quota": self.quota.to_dict() if self.quota else None,
        }


@dataclass(frozen=True)
class Account:
    username: str
    name: str
    name_ja: str
    email: str
    institution: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class CatalogueEntry:
    """One dataset in the catalogue: its JGA-style metadata (catalogue.yaml) and where it is.

    `metadata` holds the file's fields as written (study, nbdc_research_id,
    policy, title, title_ja, description, data_types, platform, library,
    reference, target, access, release_date, keywords).
    """

    dataset: str
    site: str
    kind: str
    metadata: dict[str, Any]

    @property
    def title(self) -> str:
        return self.metadata["title"]

    def to_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "site": self.site, "kind": self.kind, **self.metadata}


@dataclass(frozen=True)
class PolicyBundle:
    """A validated policy directory."""

    directory: Path
    platform: Platform
    approvals: dict[str, Approval]
    accounts: dict[str, Account] = field(default_factory=dict)
    warnings: tuple[PolicyIssue, ...] = ()
    catalogue: dict[str, CatalogueEntry] = field(default_factory=dict)
