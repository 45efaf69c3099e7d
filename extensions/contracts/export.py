"""The export airlock's contract between the hub's export service and a site.

The hub's export service (hub/services/export) takes a researcher's request to
take files out of their home at a site. The files are frozen at the site: a
short-lived process there (`python -m extensions.guard.export`, in a container
on no network with the person's home read-only, the site's export area and the
site's datasets read-only) copies them into the site's export area, out of the
researcher's reach, hashes them and runs the automatic checks. It prints one
manifest (JSON) on stdout; the service keeps it with the request.

Both sides read the rules and the manifest through the classes here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

#: how a site lets files leave: direct downloads through the guard, or only through requests
DOWNLOAD_MODES = ("direct", "airlock")

#: the states of a request, in the order a request normally passes them
STATES = (
    "submitted",
    "checked",
    "under-review",
    "changes-requested",
    "approved",
    "rejected",
    "released",
    "withdrawn",
)
#: states in which a request is still open (a reviewer may act, the requester may withdraw)
OPEN_STATES = ("submitted", "checked", "under-review", "changes-requested")
#: a reviewer's decisions
DECISIONS = ("approve", "reject", "changes")

#: the automatic checks, each one result per file
CHECKS = ("kind", "size", "recogniser", "disclosure")

#: where a site's export area is mounted in the freezing container, and the home
EXPORT_MOUNT = "/export"
HOME_MOUNT = "/home/jovyan"
DATA_MOUNT = "/data"


@dataclass(frozen=True)
class ExportRules:
    """What the platform file lets out (`rules.export`), as the site's checks apply them."""

    allowed_suffixes: tuple[str, ...] = (
        ".png",
        ".jpg",
        ".jpeg",
        ".svg",
        ".pdf",
        ".csv",
        ".tsv",
        ".txt",
        ".md",
        ".html",
        ".ipynb",
        ".json",
    )
    max_file_bytes: int = 100 * 1024**2
    max_request_bytes: int = 2 * 1024**3
    max_files: int = 50
    min_cell_count: int = 5
    min_minor_allele_count: int = 5
    #: a count cell fails when one contributor (a person, a site) makes up more than this
    #: share of it, where the table names its contributors
    dominance_share: float = 0.9

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ExportRules:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("export rules must be a JSON object")
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"export rules: unknown fields {', '.join(sorted(unknown))}")
        if "allowed_suffixes" in raw:
            raw["allowed_suffixes"] = tuple(raw["allowed_suffixes"])
        return cls(**raw)


@dataclass(frozen=True)
class CheckResult:
    """One automatic check of one file: passed or not, and what it found (for the reviewer)."""

    check: str  # one of CHECKS
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class FrozenFile:
    """A file as frozen at the site: its name in the request, size, hash and checks."""

    name: str  # the path relative to the home, as requested
    bytes: int
    sha256: str
    media_type: str
    checks: tuple[CheckResult, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


@dataclass(frozen=True)
class Manifest:
    """What the site's freezing process prints: every file of the request, or why it could not."""

    request_id: str
    files: tuple[FrozenFile, ...]
    error: str = ""  # a request the site could not freeze at all (a path outside the home, ...)

    @property
    def ok(self) -> bool:
        return not self.error and all(f.ok for f in self.files)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        raw = json.loads(text)
        files = tuple(
            FrozenFile(
                **{k: v for k, v in f.items() if k != "checks"},
                checks=tuple(CheckResult(**c) for c in f.get("checks", ())),
            )
            for f in raw.get("files", ())
        )
        return cls(request_id=raw["request_id"], files=files, error=raw.get("error", ""))
