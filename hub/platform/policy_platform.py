"""platform.yaml into a Platform: sites, datasets, rules and where the state goes.

The schema has checked the kinds; this module cross-checks what a schema cannot
(a default image among the images, a dataset held by one site, a network or
subnet used once, the sanctions' range, the egress rules) and reports each
problem with the file and the field.
"""

from __future__ import annotations

import ipaddress
import os
import re
from datetime import date
from pathlib import Path
from typing import Any

from extensions.contracts.egress import EgressRules, EgressRulesError
from extensions.contracts.export import ExportRules
from hub.platform.policy_files import check_schema, read_yaml
from hub.platform.policy_models import (
    MIN_DASK_WORKER_MEMORY,
    Dataset,
    DisclosureRules,
    DownloadRules,
    ExportPolicy,
    Platform,
    PolicyIssue,
    Quota,
    SanctionRules,
    Site,
    SiteDask,
)

#: where the platform's files and databases go, overriding platform.yaml (test set-ups)
STATE_DIR_ENV = "VISITING_STATE_DIR"
DATA_ROOT_ENV = "VISITING_DATA_ROOT"
DATABASE_ENV = "VISITING_DATABASE_URL"


_SIZE_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([KMGT]?)$")
_SIZE_FACTORS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


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


def parse_quota(raw: dict[str, Any] | None) -> Quota | None:
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


def _resolve(base: Path, value: str | None, override: str | None, default: Path) -> Path:
    """`override` (from the environment) if set, else `value` relative to `base`, else
    `default`."""
    if override:
        return Path(override).resolve()
    if value is None:
        return default
    p = Path(value)
    return (p if p.is_absolute() else base / p).resolve()


# ---------------------------------------------------------------------------
# the platform file


def _build_platform(doc: dict[str, Any], path: Path, issues: list[PolicyIssue]) -> Platform | None:
    """The Platform of a schema-valid platform.yaml; problems go to `issues`."""
    file = str(path)
    sites = _build_sites(doc["sites"], file, issues)
    p = doc["platform"]
    rules = doc.get("rules", {})
    sanctions = _sanction_rules(rules.get("sanctions", {}), file, issues)
    egress = _egress_rules(rules.get("egress", {}), file, issues)
    export = _export_policy(rules.get("export", {}), file, issues)
    state_dir, data_root, database_url = _locations(p, path.parent)
    return Platform(
        name=p["name"],
        name_ja=p.get("name_ja", p["name"]),
        contact=p.get("contact", ""),
        state_dir=state_dir,
        data_root=data_root,
        database_url=database_url,
        disclosure=DisclosureRules(**rules.get("disclosure", {})),
        sanctions=sanctions,
        download=_download_rules(rules.get("download", {})),
        sites=sites,
        egress=egress,
        export=export,
    )


def _build_sites(
    raw_sites: list[dict[str, Any]], file: str, issues: list[PolicyIssue]
) -> dict[str, Site]:
    """The sites in file order; a site listed twice is an issue (and left out), and so
    is a network or subnet that two sites share."""
    sites: dict[str, Site] = {}
    dataset_owner: dict[str, str] = {}  # dataset -> the site that holds it
    for i, s in enumerate(raw_sites):
        where = f"sites[{i}]"
        if s["id"] in sites:
            issues.append(PolicyIssue(file, f"{where}.id", f"site {s['id']!r} is listed twice"))
            continue
        sites[s["id"]] = _build_site(s, where, dataset_owner, file, issues)
    networks = [s.network for s in sites.values()]
    for net in {n for n in networks if networks.count(n) > 1}:
        issues.append(PolicyIssue(file, "sites", f"network {net!r} is used by more than one site"))
    subnets = [s.subnet for s in sites.values() if s.subnet is not None]
    for net in {str(n) for n in subnets if subnets.count(n) > 1}:
        issues.append(PolicyIssue(file, "sites", f"subnet {net} is used by more than one site"))
    return sites


def _build_site(
    s: dict[str, Any],
    where: str,
    dataset_owner: dict[str, str],
    file: str,
    issues: list[PolicyIssue],
) -> Site:
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
    datasets = _build_datasets(s, where, dataset_owner, file, issues)
    return Site(
        id=s["id"],
        name=s["name"],
        name_ja=s.get("name_ja", s["name"]),
        region=s.get("region", ""),
        docker_endpoint=s["docker"]["endpoint"],
        network=s["docker"]["network"],
        subnet=subnet,
        images=tuple(s["images"]),
        default_image=s["default_image"],
        quota=parse_quota(s["quota"]) or Quota(),
        datasets=datasets,
        # YAML 1.1 reads a bare `off` as false; the schema lets both mean "off"
        terminals="off" if s.get("terminals") is False else s.get("terminals", "guarded"),
        dask=_site_dask(s.get("dask"), where, file, issues),
        downloads=s.get("downloads", "direct"),
    )


def _build_datasets(
    s: dict[str, Any],
    where: str,
    dataset_owner: dict[str, str],
    file: str,
    issues: list[PolicyIssue],
) -> tuple[Dataset, ...]:
    """A site's datasets; one another site already holds is an issue (and left out)."""
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
    return tuple(datasets)


def _sanction_rules(raw: dict[str, Any], file: str, issues: list[PolicyIssue]) -> SanctionRules:
    sanctions = SanctionRules(**raw)
    if sanctions.ban_months_min > sanctions.ban_months_max:
        issues.append(
            PolicyIssue(file, "rules.sanctions", "ban_months_min is larger than ban_months_max")
        )
    return sanctions


def _download_rules(raw: dict[str, Any]) -> DownloadRules:
    return DownloadRules(
        max_bytes=raw.get("max_bytes", DownloadRules.max_bytes),
        extra_raw_patterns=tuple(raw.get("extra_raw_patterns", ())),
        disabled_kinds=tuple(raw.get("disabled_kinds", ())),
        period_warning_days=raw.get("period_warning_days", DownloadRules.period_warning_days),
    )


def _locations(p: dict[str, Any], base: Path) -> tuple[Path, Path, str]:
    """The state folder, the data root and the registry's database URL: the environment's
    (STATE_DIR_ENV, DATA_ROOT_ENV, DATABASE_ENV), else the file's (relative to its folder),
    else beside it in `state/`."""
    env = {name: os.environ.get(name) for name in (STATE_DIR_ENV, DATA_ROOT_ENV, DATABASE_ENV)}
    state_dir = _resolve(base, p.get("state_dir"), env[STATE_DIR_ENV], base / "state")
    data_root = _resolve(base, p.get("data_root"), env[DATA_ROOT_ENV], state_dir / "data")
    database_url = (
        env[DATABASE_ENV]
        or (p.get("registry") or {}).get("database")
        or f"sqlite:///{state_dir / 'registry.sqlite'}"
    )
    return state_dir, data_root, database_url


def _egress_rules(raw: dict[str, Any], file: str, issues: list[PolicyIssue]) -> EgressRules:
    """`rules.egress` with sizes in bytes; a rule that does not hold is an issue naming it."""
    values = {k: parse_size(v) if k.endswith("_bytes") else v for k, v in raw.items()}
    try:
        return EgressRules.from_mapping(values)
    except EgressRulesError as e:
        issues.append(PolicyIssue(file, f"rules.egress.{e.field}", e.reason))
        return EgressRules()


def _export_policy(raw: dict[str, Any], file: str, issues: list[PolicyIssue]) -> ExportPolicy:
    """`rules.export` with sizes in bytes (the schema has checked the kinds); a request
    limit smaller than the file limit is an issue naming it."""
    checks = {k: v for k, v in raw.items() if k not in ("reviewers", "release_days")}
    for name in ("max_file_bytes", "max_request_bytes"):
        if name in checks:
            checks[name] = parse_size(checks[name])
    if "allowed_suffixes" in checks:
        checks["allowed_suffixes"] = tuple(s.lower() for s in checks["allowed_suffixes"])
    rules = ExportRules(**checks)
    if rules.max_request_bytes < rules.max_file_bytes:
        issues.append(
            PolicyIssue(
                file,
                "rules.export.max_request_bytes",
                f"{rules.max_request_bytes} bytes is less than max_file_bytes "
                f"({rules.max_file_bytes}): no request could hold the largest file",
            )
        )
    return ExportPolicy(
        checks=rules,
        reviewers=tuple(raw.get("reviewers", ExportPolicy.reviewers)),
        release_days=raw.get("release_days", ExportPolicy.release_days),
    )


def load_platform_file(path: Path, issues: list[PolicyIssue]) -> Platform | None:
    doc = read_yaml(path, issues)
    if doc is None:
        return None
    schema_issues = check_schema("platform", doc, str(path))
    if schema_issues:
        issues.extend(schema_issues)
        return None
    return _build_platform(doc, path, issues)
