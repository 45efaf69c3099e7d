"""Load and validate platform files into typed models.

A policy directory holds `platform.yaml` (sites, datasets, rules), one file
per approved application under `approvals/`, and optionally `users.yaml`
(the demo IdP's accounts and the platform roles they hold) and
`catalogue.yaml`. Loading is all-or-nothing: every problem in every file is
collected and reported with the file, the field and the reason, and nothing is
returned unless the whole directory is valid.

The models are in hub.platform.policy_models, the reading of YAML and the
schema checks in hub.platform.policy_files, platform.yaml's own checks in
hub.platform.policy_platform; this module loads the directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from extensions.contracts.clock import Period
from hub.platform.policy_files import SCHEMA_DIR, check_schema, read_yaml
from hub.platform.policy_models import (
    MIN_DASK_WORKER_MEMORY,
    REVIEWER_ROLES,
    Account,
    Approval,
    CatalogueEntry,
    Dataset,
    DisclosureRules,
    DownloadRules,
    ExportPolicy,
    Platform,
    PolicyBundle,
    PolicyError,
    PolicyIssue,
    Quota,
    SanctionRules,
    Site,
    SiteDask,
)
from hub.platform.policy_platform import (
    DATA_ROOT_ENV,
    DATABASE_ENV,
    STATE_DIR_ENV,
    load_platform_file,
    parse_date,
    parse_quota,
    parse_size,
)

# what other modules import from here: the models live in hub.platform.policy_models
__all__ = [
    "CATALOGUE_FILE",
    "DATABASE_ENV",
    "DATA_ROOT_ENV",
    "MIN_DASK_WORKER_MEMORY",
    "REVIEWER_ROLES",
    "SCHEMA_DIR",
    "STATE_DIR_ENV",
    "Account",
    "Approval",
    "CatalogueEntry",
    "Dataset",
    "DisclosureRules",
    "DownloadRules",
    "ExportPolicy",
    "Platform",
    "PolicyBundle",
    "PolicyError",
    "PolicyIssue",
    "Quota",
    "SanctionRules",
    "Site",
    "SiteDask",
    "load_catalogue",
    "load_platform",
    "load_platform_file",
    "load_policy_dir",
    "parse_date",
    "parse_size",
    "read_yaml",
]

CATALOGUE_FILE = "catalogue.yaml"


def load_policy_dir(directory: str | os.PathLike) -> PolicyBundle:
    """Load and validate a whole policy directory, or raise PolicyError listing every problem."""
    directory = Path(directory)
    issues: list[PolicyIssue] = []
    if not directory.is_dir():
        raise PolicyError([PolicyIssue(str(directory), "", "not a directory")])
    platform = load_platform_file(directory / "platform.yaml", issues)
    approvals = _load_approvals(directory / "approvals", platform, issues)
    accounts, warnings = _load_accounts(directory / "users.yaml", approvals, platform, issues)
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


def load_platform(directory: str | os.PathLike) -> Platform:
    """Only the platform file of a policy directory (for processes that need no approvals)."""
    issues: list[PolicyIssue] = []
    platform = load_platform_file(Path(directory) / "platform.yaml", issues)
    if issues or platform is None:
        raise PolicyError(issues)
    return platform


def load_catalogue(directory: str | os.PathLike, platform: Platform) -> dict[str, CatalogueEntry]:
    """The catalogue of a policy directory (for the catalogue service), or PolicyError."""
    issues: list[PolicyIssue] = []
    entries = _load_catalogue_file(Path(directory) / CATALOGUE_FILE, platform, issues)
    if issues:
        raise PolicyError(issues)
    return entries


# ---------------------------------------------------------------------------
# approvals


def _load_approvals(
    approvals_dir: Path, platform: Platform | None, issues: list[PolicyIssue]
) -> dict[str, Approval]:
    """approval id -> approval, from `approvals/*.yaml` and `*.yml`; an id defined in two
    files is an issue."""
    approvals: dict[str, Approval] = {}
    files = sorted(approvals_dir.glob("*.yaml")) + sorted(approvals_dir.glob("*.yml"))
    for path in files:
        doc = read_yaml(path, issues)
        if doc is None:
            continue
        schema_issues = check_schema("approval", doc, str(path))
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
    return approvals


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
        quota=parse_quota(doc.get("quota")),
        source=file,
    )


# ---------------------------------------------------------------------------
# accounts and the catalogue


def _load_accounts(
    users_path: Path,
    approvals: dict[str, Approval],
    platform: Platform | None,
    issues: list[PolicyIssue],
) -> tuple[dict[str, Account], list[PolicyIssue]]:
    """The accounts of users.yaml (none when there is no such file), and a warning for each
    handler of an approval who has no account there."""
    accounts: dict[str, Account] = {}
    warnings: list[PolicyIssue] = []
    if not users_path.exists():
        return accounts, warnings
    doc = read_yaml(users_path, issues)
    if doc is not None:
        schema_issues = check_schema("users", doc, str(users_path))
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
    return accounts, warnings


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
            schema_issues = check_schema("catalogue", doc, str(path))
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
