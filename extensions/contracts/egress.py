"""The platform's egress rules, as the hub writes them and the gate reads them.

The hub reads them from the platform file (`egress:`) and the spawner passes
them as JSON in VISITING_EGRESS_RULES; the gate's meter (extensions.guard.meter)
measures each server's day against them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from .environment import EGRESS_RULES

MIB = 1024**2
#: the largest number of distinct people a rule may name (the meter keeps their digests)
MAX_PEOPLE_RULE = 100_000


class EgressRulesError(ValueError):
    """A bad egress rule: `field` names it (alert_bytes, ...), `reason` says what is wrong."""

    def __init__(self, field_name: str, reason: str):
        self.field = field_name
        self.reason = reason
        super().__init__(f"{field_name}: {reason}")


@dataclass(frozen=True)
class EgressRules:
    """The platform's egress rules (platform file `rules.egress`, docs/platform-files.md).

    Defaults, from normal use (measured in docs/platform-files.md): the six tutorials
    end to end send about 1.3 MB to a browser and show nobody's rows, so the alert at
    64 MiB is about fifty tutorial runs; a heavy day of interactive work (200 plots
    at the GWAS tutorial's 73 KB, summary tables, a few result files) stays below it.
    The cap at 256 MiB is five downloads of the largest file the guard serves
    (50 MiB) and about two people's whole-genome VCFs: it bounds what an encoding no
    recogniser sees can carry out in a day, and the alert reaches the secretariat
    well before it. People: `head()` shows 5, pandas 10 rows of a long frame; the
    tutorials show none. The alert at 30 distinct people a day is three full frames
    of different people; the cap at 100 is ten.
    """

    alert_bytes: int = 64 * MIB
    cap_bytes: int = 256 * MIB
    alert_people: int = 30
    cap_people: int = 100
    max_people_per_output: int = 10

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise EgressRulesError(f.name, f"must be a whole number, got {value!r}")
            least = 0 if f.name == "max_people_per_output" else 1
            if value < least:
                raise EgressRulesError(f.name, f"must be at least {least}, got {value}")
        for name in ("alert_people", "cap_people", "max_people_per_output"):
            if getattr(self, name) > MAX_PEOPLE_RULE:
                raise EgressRulesError(
                    name, f"must be at most {MAX_PEOPLE_RULE:,}, got {getattr(self, name):,}"
                )
        if self.alert_bytes > self.cap_bytes:
            raise EgressRulesError(
                "alert_bytes",
                f"the alert ({self.alert_bytes:,} bytes) is above the cap ({self.cap_bytes:,})",
            )
        if self.alert_people > self.cap_people:
            raise EgressRulesError(
                "alert_people",
                f"the alert ({self.alert_people} people) is above the cap ({self.cap_people})",
            )

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> EgressRules:
        """Rules from a mapping of some of the fields; the others keep their defaults.
        EgressRulesError names an unknown or bad field."""
        known = {f.name for f in fields(cls)}
        for name in raw:
            if name not in known:
                raise EgressRulesError(
                    str(name), f"is not an egress rule (known: {', '.join(sorted(known))})"
                )
        return cls(**dict(raw))

    @classmethod
    def from_env(cls, value: str | None) -> EgressRules:
        """Rules from the JSON the spawner passes in VISITING_EGRESS_RULES; missing (None or
        empty) gives the defaults; anything else that is not valid raises ValueError naming
        the variable and the field."""
        if value is None or not value.strip():
            return cls()
        try:
            raw = json.loads(value)
        except ValueError as e:
            raise ValueError(f"{EGRESS_RULES} is not JSON: {e}") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{EGRESS_RULES} must be a JSON object, got {value!r}")
        try:
            return cls.from_mapping(raw)
        except EgressRulesError as e:
            raise ValueError(f"{EGRESS_RULES}.{e.field}: {e.reason}") from None

    def to_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to_env(self) -> str:
        """The rules as the JSON the gate reads from VISITING_EGRESS_RULES."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def level(self, total_bytes: int, people: int) -> str:
        """The level of a day that sent `total_bytes` and showed `people` distinct people."""
        if total_bytes >= self.cap_bytes or people >= self.cap_people:
            return "cap"
        if total_bytes >= self.alert_bytes or people >= self.alert_people:
            return "alert"
        return "ok"

    def reached_by(self, level: str, total_bytes: int, people: int) -> tuple[str, ...]:
        """Which measures ("bytes", "people") are at or over `level`'s threshold."""
        if level == "ok":
            return ()
        limit_bytes, limit_people = (
            (self.cap_bytes, self.cap_people)
            if level == "cap"
            else (self.alert_bytes, self.alert_people)
        )
        out = []
        if total_bytes >= limit_bytes:
            out.append("bytes")
        if people >= limit_people:
            out.append("people")
        return tuple(out)
