"""Load and validate platform files into typed models.

A policy directory holds `platform.yaml` (sites, datasets, rules), one file
per approved application under `approvals/`, and optionally `users.yaml`
(the demo IdP's accounts and the platform roles they hold). Loading is
all-or-nothing: every problem in every file is collected and reported with
the file, the field and the reason, and nothing is returned unless the whole
directory is valid.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import referencing
import yaml

from extensions.contracts.clock import Period
from extensions.contracts.egress import EgressRules, EgressRulesError

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "policies" / "schema"

STATE_DIR_ENV = "VISITING_STATE_DIR"
DATA_ROOT_ENV = "VISITING_DATA_ROOT"
DATABASE_ENV = "VISITING_DATABASE_URL"

_SIZE_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([KMGT]?)$")
_SIZE_FACTORS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


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

    def to_env(self) -> str:
        """The rules as the JSON the guard reads from VISITING_GUARD_RULES."""
        return json.dumps(
            {
                "max_bytes": self.max_bytes,
                "extra_raw_patterns": list(self.extra_raw_patterns),
                "disabled_kinds": list(self.disabled_kinds),
                "period_warning_days": self.period_warning_days,
            },
            sort_keys=True,
        )


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


# ---------------------------------------------------------------------------
# YAML that keeps dates as text and refuses duplicate keys


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that keeps timestamps as strings (validated by us) and rejects duplicate keys."""


_StrictLoader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: Path, issues: list[PolicyIssue]) -> Any | None:
    """Parse one YAML file; a parse error becomes an issue and None."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        issues.append(PolicyIssue(str(path), "", "file not found"))
        return None
    except (OSError, UnicodeDecodeError) as e:
        issues.append(PolicyIssue(str(path), "", f"cannot be read: {e}"))
        return None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        issues.append(PolicyIssue(str(path), where, f"YAML does not parse: {problem}"))
        return None


# ---------------------------------------------------------------------------
# schemas


@cache
def _schemas() -> tuple[dict[str, Any], referencing.Registry]:
    schema_dir = Path(os.environ.get("VISITING_SCHEMA_DIR", SCHEMA_DIR))
    schemas = {}
    resources = []
    for name in ("platform", "approval", "users", "catalogue"):
        doc = json.loads((schema_dir / f"{name}.schema.json").read_text())
        schemas[name] = doc
        resource = referencing.Resource.from_contents(doc)
        resources.append((f"{name}.schema.json", resource))
        resources.append((doc["$id"], resource))
    registry = referencing.Registry().with_resources(resources)
    return schemas, registry


def _field_path(parts: Iterable[Any]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _schema_issues(kind: str, doc: Any, file: str) -> list[PolicyIssue]:
    schemas, registry = _schemas()
    validator = jsonschema.Draft202012Validator(schemas[kind], registry=registry)
    issues = []
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        path = list(err.absolute_path)
        if err.validator == "required":
            missing = err.message.split("'")[1] if "'" in err.message else err.message
            issues.append(PolicyIssue(file, _field_path([*path, missing]), "missing field"))
        elif err.validator == "additionalProperties":
            issues.append(PolicyIssue(file, _field_path(path), err.message))
        else:
            issues.append(PolicyIssue(file, _field_path(path), _short_message(err)))
    return issues


def _short_message(err: jsonschema.ValidationError) -> str:
    if err.validator == "pattern":
        return f"{err.instance!r} does not have the expected form ({err.validator_value})"
    if err.validator == "enum":
        return f"{err.instance!r} is not one of {err.validator_value}"
    if err.validator == "oneOf" and isinstance(err.instance, str | int):
        return f"{err.instance!r} is not a size (bytes, or a number with K, M, G or T)"
    return err.message


# ---------------------------------------------------------------------------
# value parsing


def parse_size(value: int | str) -> int:
    """Bytes from 2147483648, '2G', '512M', '1.5G'."""
    if isinstance(value, int):
        return value
    m = _SIZE_RE.match(str(value).strip())
    if not m:
        raise ValueError(f"{value!r} is not a size (bytes, or a number with K, M, G or T)")
    return int(float(m.group(1)) * _SIZE_FACTORS[m.group(2)])


def parse_date(value: str) -> date:
    return date.fromisoformat(value)


def _quota(raw: dict[str, Any] | None) -> Quota | None:
    if raw is None:
        return None
    return Quota(
        cpu=float(raw["cpu"]) if "cpu" in raw else None,
        memory=parse_size(raw["memory"]) if "memory" in raw else None,
        home=parse_size(raw["home"]) if "home" in raw else None,
    )


def _site_dask(
    raw: dict[str, Any] | None, where: str, file: str, issues: list[PolicyIssue]
) -> SiteDask:
    """A site's `dask:` block (the schema has checked the kinds); the defaults are one
    worker with one core and 1G."""
    raw = raw or {}
    dask = SiteDask(
        workers=raw.get("workers", SiteDask.workers),
        cores=float(raw.get("cores", SiteDask.cores)),
        memory=parse_size(raw["memory"]) if "memory" in raw else SiteDask.memory,
    )
    if dask.memory < MIN_DASK_WORKER_MEMORY:
        issues.append(
            PolicyIssue(
                file,
                f"{where}.dask.memory",
                f"{raw['memory']!r} is below the 256M a Dask worker needs "
                "(its own process takes about 150M before it holds any data)",
            )
        )
    return dask


def _resolve(base: Path, value: str | None, env_name: str, default: Path) -> Path:
    override = os.environ.get(env_name)
    if override:
        return Path(override).resolve()
    if value is None:
        return default
    p = Path(value)
    return (p if p.is_absolute() else base / p).resolve()


# ---------------------------------------------------------------------------
# loading


def _build_platform(doc: dict[str, Any], path: Path, issues: list[PolicyIssue]) -> Platform | None:
    file = str(path)
    base = path.parent
    sites: dict[str, Site] = {}
    dataset_owner: dict[str, str] = {}
    for i, s in enumerate(doc["sites"]):
        where = f"sites[{i}]"
        if s["id"] in sites:
            issues.append(PolicyIssue(file, f"{where}.id", f"site {s['id']!r} is listed twice"))
            continue
        if s["default_image"] not in s["images"]:
            issues.append(
                PolicyIssue(
                    file,
                    f"{where}.default_image",
                    f"{s['default_image']!r} is not in the site's images {s['images']}",
                )
            )
        if len(set(s["images"])) != len(s["images"]):
            issues.append(PolicyIssue(file, f"{where}.images", "an image is listed twice"))
        try:
            subnet = ipaddress.IPv4Network(s["docker"]["subnet"])
        except ValueError as e:
            issues.append(PolicyIssue(file, f"{where}.docker.subnet", f"not a network: {e}"))
            subnet = None
        datasets = []
        for j, d in enumerate(s["datasets"]):
            if d["id"] in dataset_owner:
                issues.append(
                    PolicyIssue(
                        file,
                        f"{where}.datasets[{j}].id",
                        f"dataset {d['id']!r} is already held by site {dataset_owner[d['id']]!r}",
                    )
                )
                continue
            dataset_owner[d["id"]] = s["id"]
            datasets.append(
                Dataset(
                    id=d["id"],
                    site=s["id"],
                    kind=d["kind"],
                    title=d.get("title", ""),
                    files=tuple(d["files"]),
                )
            )
        sites[s["id"]] = Site(
            id=s["id"],
            name=s["name"],
            name_ja=s.get("name_ja", s["name"]),
            region=s.get("region", ""),
            docker_endpoint=s["docker"]["endpoint"],
            network=s["docker"]["network"],
            subnet=subnet,
            images=tuple(s["images"]),
            default_image=s["default_image"],
            quota=_quota(s["quota"]) or Quota(),
            datasets=tuple(datasets),
            # YAML 1.1 reads a bare `off` as false; the schema lets both mean "off"
            terminals="off" if s.get("terminals") is False else s.get("terminals", "guarded"),
            dask=_site_dask(s.get("dask"), where, file, issues),
        )
    networks = [s.network for s in sites.values()]
    for net in {n for n in networks if networks.count(n) > 1}:
        issues.append(PolicyIssue(file, "sites", f"network {net!r} is used by more than one site"))
    subnets = [s.subnet for s in sites.values() if s.subnet is not None]
    for net in {str(n) for n in subnets if subnets.count(n) > 1}:
        issues.append(PolicyIssue(file, "sites", f"subnet {net} is used by more than one site"))

    p = doc["platform"]
    rules = doc.get("rules", {})
    sanctions = SanctionRules(**rules.get("sanctions", {}))
    if sanctions.ban_months_min > sanctions.ban_months_max:
        issues.append(
            PolicyIssue(file, "rules.sanctions", "ban_months_min is larger than ban_months_max")
        )
    download_raw = rules.get("download", {})
    egress = _egress_rules(rules.get("egress", {}), file, issues)
    state_dir = _resolve(base, p.get("state_dir"), STATE_DIR_ENV, base / "state")
    data_root = _resolve(base, p.get("data_root"), DATA_ROOT_ENV, state_dir / "data")
    database_url = (
        os.environ.get(DATABASE_ENV)
        or (p.get("registry") or {}).get("database")
        or f"sqlite:///{state_dir / 'registry.sqlite'}"
    )
    return Platform(
        name=p["name"],
        name_ja=p.get("name_ja", p["name"]),
        contact=p.get("contact", ""),
        state_dir=state_dir,
        data_root=data_root,
        database_url=database_url,
        disclosure=DisclosureRules(**rules.get("disclosure", {})),
        sanctions=sanctions,
        download=DownloadRules(
            max_bytes=download_raw.get("max_bytes", DownloadRules.max_bytes),
            extra_raw_patterns=tuple(download_raw.get("extra_raw_patterns", ())),
            disabled_kinds=tuple(download_raw.get("disabled_kinds", ())),
            period_warning_days=download_raw.get(
                "period_warning_days", DownloadRules.period_warning_days
            ),
        ),
        sites=sites,
        egress=egress,
    )


def _egress_rules(raw: dict[str, Any], file: str, issues: list[PolicyIssue]) -> EgressRules:
    """`rules.egress` with sizes in bytes; a rule that does not hold is an issue naming it."""
    values = {k: parse_size(v) if k.endswith("_bytes") else v for k, v in raw.items()}
    try:
        return EgressRules.from_mapping(values)
    except EgressRulesError as e:
        issues.append(PolicyIssue(file, f"rules.egress.{e.field}", e.reason))
        return EgressRules()


def _build_approval(
    doc: dict[str, Any], path: Path, platform: Platform | None, issues: list[PolicyIssue]
) -> Approval | None:
    file = str(path)
    before = len(issues)
    dates = {}
    for key in ("start", "end"):
        try:
            dates[key] = parse_date(doc["period"][key])
        except ValueError:
            issues.append(
                PolicyIssue(file, f"period.{key}", f"{doc['period'][key]!r} is not a valid date")
            )
    if len(dates) == 2 and dates["end"] < dates["start"]:
        issues.append(
            PolicyIssue(
                file,
                "period.end",
                f"the end {dates['end']} is before the start {dates['start']}",
            )
        )
    for key in ("handlers", "datasets"):
        seen = set()
        for i, value in enumerate(doc[key]):
            if value in seen:
                what = "handler" if key == "handlers" else "dataset"
                issues.append(PolicyIssue(file, f"{key}[{i}]", f"{what} {value!r} is listed twice"))
            seen.add(value)
    if platform is not None:
        known = platform.datasets
        for i, ds in enumerate(doc["datasets"]):
            if ds not in known:
                issues.append(
                    PolicyIssue(
                        file, f"datasets[{i}]", f"unknown dataset {ds!r} (no site holds it)"
                    )
                )
    if len(issues) > before:
        return None
    return Approval(
        approval_id=doc["approval_id"],
        institution=doc["institution"].strip(),
        purpose=doc["purpose"].strip(),
        handlers=tuple(doc["handlers"]),
        datasets=tuple(doc["datasets"]),
        period=Period(dates["start"], dates["end"]),
        quota=_quota(doc.get("quota")),
        source=file,
    )


def _build_accounts(
    doc: dict[str, Any], path: Path, platform: Platform | None, issues: list[PolicyIssue]
) -> dict[str, Account]:
    file = str(path)
    accounts: dict[str, Account] = {}
    for i, u in enumerate(doc["users"]):
        if u["username"] in accounts:
            issues.append(
                PolicyIssue(file, f"users[{i}].username", f"user {u['username']!r} is listed twice")
            )
            continue
        for j, role in enumerate(u.get("roles", [])):
            site = role.partition(":")[2]
            if site and platform is not None and site not in platform.sites:
                issues.append(
                    PolicyIssue(
                        file, f"users[{i}].roles[{j}]", f"unknown site {site!r} in {role!r}"
                    )
                )
        accounts[u["username"]] = Account(
            username=u["username"],
            name=u["name"],
            name_ja=u.get("name_ja", u["name"]),
            email=u["email"],
            institution=u.get("institution", ""),
            roles=tuple(dict.fromkeys(u.get("roles", []))),
        )
    return accounts


def load_platform_file(path: Path, issues: list[PolicyIssue]) -> Platform | None:
    doc = read_yaml(path, issues)
    if doc is None:
        return None
    schema_issues = _schema_issues("platform", doc, str(path))
    if schema_issues:
        issues.extend(schema_issues)
        return None
    return _build_platform(doc, path, issues)


def load_policy_dir(directory: str | os.PathLike) -> PolicyBundle:
    """Load and validate a whole policy directory, or raise PolicyError listing every problem."""
    directory = Path(directory)
    issues: list[PolicyIssue] = []
    if not directory.is_dir():
        raise PolicyError([PolicyIssue(str(directory), "", "not a directory")])

    platform = load_platform_file(directory / "platform.yaml", issues)

    approvals: dict[str, Approval] = {}
    approvals_dir = directory / "approvals"
    files = sorted(approvals_dir.glob("*.yaml")) + sorted(approvals_dir.glob("*.yml"))
    for path in files:
        doc = read_yaml(path, issues)
        if doc is None:
            continue
        schema_issues = _schema_issues("approval", doc, str(path))
        if schema_issues:
            issues.extend(schema_issues)
            continue
        approval = _build_approval(doc, path, platform, issues)
        if approval is None:
            continue
        if approval.approval_id in approvals:
            issues.append(
                PolicyIssue(
                    str(path),
                    "approval_id",
                    f"approval {approval.approval_id!r} is also defined in "
                    f"{approvals[approval.approval_id].source}",
                )
            )
            continue
        approvals[approval.approval_id] = approval

    accounts: dict[str, Account] = {}
    warnings: list[PolicyIssue] = []
    users_path = directory / "users.yaml"
    if users_path.exists():
        doc = read_yaml(users_path, issues)
        if doc is not None:
            schema_issues = _schema_issues("users", doc, str(users_path))
            issues.extend(schema_issues)
            if not schema_issues:
                accounts = _build_accounts(doc, users_path, platform, issues)
        if accounts:
            for a in approvals.values():
                for h in a.handlers:
                    if h not in accounts:
                        warnings.append(
                            PolicyIssue(a.source, "handlers", f"{h!r} has no account in users.yaml")
                        )

    catalogue = _load_catalogue_file(directory / CATALOGUE_FILE, platform, issues)

    if issues or platform is None:
        raise PolicyError(issues)
    return PolicyBundle(
        directory=directory.resolve(),
        platform=platform,
        approvals=approvals,
        accounts=accounts,
        warnings=tuple(warnings),
        catalogue=catalogue,
    )


CATALOGUE_FILE = "catalogue.yaml"


def _load_catalogue_file(
    path: Path, platform: Platform | None, issues: list[PolicyIssue]
) -> dict[str, CatalogueEntry]:
    """The catalogue's entries, one per dataset of the platform.

    The file is optional; a dataset it does not describe is listed with the
    title platform.yaml gives it. A dataset id the platform does not hold is
    an issue (a typo would otherwise hide a dataset's metadata).
    """
    described: dict[str, dict] = {}
    if path.exists():
        doc = read_yaml(path, issues)
        if doc is not None:
            schema_issues = _schema_issues("catalogue", doc, str(path))
            issues.extend(schema_issues)
            if not schema_issues:
                described = doc["datasets"]
    if platform is None:
        return {}
    for dataset_id in described:
        if dataset_id not in platform.datasets:
            issues.append(
                PolicyIssue(
                    str(path),
                    f"datasets.{dataset_id}",
                    f"no dataset {dataset_id} in platform.yaml "
                    f"(known: {', '.join(sorted(platform.datasets))})",
                )
            )
    entries = {}
    for dataset_id, d in platform.datasets.items():
        metadata = dict(described.get(dataset_id) or {"title": d.title})
        entries[dataset_id] = CatalogueEntry(dataset_id, d.site, d.kind, metadata)
    return entries


def load_catalogue(directory: str | os.PathLike, platform: Platform) -> dict[str, CatalogueEntry]:
    """The catalogue of a policy directory (for the catalogue service), or PolicyError."""
    issues: list[PolicyIssue] = []
    entries = _load_catalogue_file(Path(directory) / CATALOGUE_FILE, platform, issues)
    if issues:
        raise PolicyError(issues)
    return entries


def load_platform(directory: str | os.PathLike) -> Platform:
    """Only the platform file of a policy directory (for processes that need no approvals)."""
    issues: list[PolicyIssue] = []
    platform = load_platform_file(Path(directory) / "platform.yaml", issues)
    if issues or platform is None:
        raise PolicyError(issues)
    return platform
