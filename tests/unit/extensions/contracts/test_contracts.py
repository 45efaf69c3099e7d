"""Each contract both sides rely on has one definition (extensions.contracts); no stray copies.

A copy is found the way a newcomer would find it: by the literal text of the
contract (an event id, the audit's refusal code, the clock's variable, Japan's
offset) in the project's Python files outside extensions/contracts.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from extensions.contracts import clock, datasets, events
from extensions.guard.events import SCHEMA_DIR

REPO = Path(__file__).resolve().parents[4]
CONTRACTS = "extensions/contracts/"


def python_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    return [REPO / f for f in out if not f.startswith(CONTRACTS) and (REPO / f).exists()]


def copies(pattern: str, skip_tests: bool = True) -> list[str]:
    found = []
    for path in python_files():
        rel = path.relative_to(REPO).as_posix()
        if skip_tests and rel.startswith("tests/"):
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(pattern, line):
                found.append(f"{rel}:{n}: {line.strip()}")
    return found


@pytest.mark.parametrize(
    "what, pattern",
    [
        ("an event id", r"visiting\.example/events"),
        ("the query-set audit's refusal code", r"[=(,]\s*[\"']query_set_audit[\"']"),
        ("the clock file's variable", r"[\"']VISITING_CLOCK_FILE[\"']"),
        ("Japan's offset", r"timedelta\(hours=9\)|[\"']Asia/Tokyo[\"']"),
        (
            "a dataset file name",
            r"[\"']genotypes\.(vcf\.gz|vcf\.gz\.tbi|vcf\.zarr|mt|summary\.npz)[\"']"
            r"|[\"'](clinical|phenotypes)\.tsv[\"']",
        ),
        (
            "an environment variable the hub sets in a container",
            r"([\"']|\b)VISITING_(SITE|SITE_NAME|APPROVAL_ID|APPROVAL_END|APPROVAL_END_DATE"
            r"|DATASETS|GUARD_RULES|EGRESS_RULES|TERMINALS|HOME_QUOTA|SITE_DATA|QUERY_AUDIT_DIR"
            r"|DISCLOSURE|GATEWAY_TASKS|GATEWAY_SERVICES|AUDIT_URL|HUB_URL)([\"']|\s*=(?!=))",
        ),
        ("the hub's pid for its services", r"\bVISITING_HUB_PID\b"),
        ("a service's life with the hub", r"PR_SET_PDEATHSIG\s*=|^def follow_the_hub\b"),
        ("the egress or export rules", r"^class (EgressRules|ExportRules)\b"),
        ("a clock of its own", r"^class \w*Clock\b"),
        ("fiscal years of their own", r"month >= 4|date\(\w+, 4, 1\)"),
    ],
)
def test_no_stray_copy(what, pattern):
    assert copies(pattern) == [], f"{what} defined outside {CONTRACTS}"


def test_every_guard_event_has_its_schema_file_and_id():
    files = sorted(p.stem for p in SCHEMA_DIR.glob("*.yaml"))
    assert files == sorted(events.GUARD_EVENTS)
    for name in events.GUARD_EVENTS:
        doc = yaml.safe_load((SCHEMA_DIR / f"{name}.yaml").read_text())
        assert doc["$id"] == events.guard_event(name)


def test_an_unknown_guard_event_is_named():
    with pytest.raises(ValueError, match="no guard event 'server-started'"):
        events.guard_event("server-started")


def test_the_hub_events_are_under_the_hub_base():
    ids = [
        v
        for k, v in vars(events).items()
        if k.isupper() and k != "HUB_BASE" and isinstance(v, str) and v.startswith(events.HUB_BASE)
    ]
    assert len(ids) == 10 and len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[a-z]+(-[a-z]+)+", i.removeprefix(events.HUB_BASE)) for i in ids)


def test_japan_time_is_the_zone():
    assert str(clock.JST) == "Asia/Tokyo"


def test_the_engines_read_their_stores(tmp_path):
    (tmp_path / datasets.ZARR).mkdir()
    assert datasets.is_analysis_dataset(tmp_path)
    assert datasets.engine_ready(tmp_path, "dask")
    assert not datasets.engine_ready(tmp_path, "hail")
    assert not datasets.engine_ready(tmp_path, "spark")
