"""What the guard knows about the server it runs in: who, where, under which approval, until when.

Everything here comes from the environment the hub's spawner set for the
container; while the server runs, the approval's end is refreshed from the
hub (see period.HubPeriod), never from anything the user can change. The
hub, the spawner and the enforcer check the same facts again on their side.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from ..contracts.clock import JST
from ..contracts.environment import (
    APPROVAL_END,
    APPROVAL_END_DATE,
    APPROVAL_ID,
    DATASETS,
    GUARD_RULES,
    HOME_QUOTA,
    SITE,
    TERMINAL_MODES,
    TERMINALS,
)
from ..contracts.export import DOWNLOAD_MODES


@dataclass(frozen=True)
class GuardRules:
    """The platform's download rules, passed by the spawner as JSON in VISITING_GUARD_RULES.

    downloads: how files leave the server: "direct" (downloads through the guard's checks,
    the default) or "airlock" (no direct download of a file at all; files leave only through
    an export request, see extensions.guard.export).
    """

    max_bytes: int = 50 * 1024**2
    extra_raw_patterns: tuple[str, ...] = ()
    disabled_kinds: frozenset[str] = frozenset()
    period_warning_days: int = 14
    downloads: str = "direct"

    @property
    def airlock(self) -> bool:
        return self.downloads == "airlock"

    @classmethod
    def from_json(cls, text: str | None) -> GuardRules:
        """Rules from the spawner's JSON; missing fields keep the safe defaults."""
        if not text:
            return cls()
        try:
            raw = json.loads(text)
        except ValueError as e:
            raise ValueError(f"VISITING_GUARD_RULES is not JSON: {e}") from None
        if not isinstance(raw, dict):
            raise ValueError("VISITING_GUARD_RULES must be a JSON object")
        unknown = set(raw) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise ValueError(
                f"VISITING_GUARD_RULES has unknown fields: {', '.join(sorted(unknown))}"
            )
        kwargs = {}
        if "max_bytes" in raw:
            if not isinstance(raw["max_bytes"], int) or raw["max_bytes"] < 0:
                raise ValueError("VISITING_GUARD_RULES.max_bytes must be a non-negative integer")
            kwargs["max_bytes"] = raw["max_bytes"]
        if "extra_raw_patterns" in raw:
            kwargs["extra_raw_patterns"] = tuple(str(p) for p in raw["extra_raw_patterns"])
        if "disabled_kinds" in raw:
            kwargs["disabled_kinds"] = frozenset(str(k) for k in raw["disabled_kinds"])
        if "period_warning_days" in raw:
            kwargs["period_warning_days"] = int(raw["period_warning_days"])
        if "downloads" in raw:
            if raw["downloads"] not in DOWNLOAD_MODES:
                raise ValueError(
                    f"VISITING_GUARD_RULES.downloads must be one of {', '.join(DOWNLOAD_MODES)}, "
                    f"got {raw['downloads']!r}"
                )
            kwargs["downloads"] = raw["downloads"]
        return cls(**kwargs)


@dataclass(frozen=True)
class ServerContext:
    """The user, site and approval of this server, from the spawner's environment."""

    user: str
    site: str
    approval_id: str
    approval_end: datetime | None  # first instant after the period, UTC
    end_date: date | None  # last day of the period, Japan time
    datasets: tuple[str, ...] = ()
    rules: GuardRules = field(default_factory=GuardRules)
    # set from the hub's answer (see period.HubPeriod): 'revoked', 'suspended' or 'ended'
    # means the period is over now, whatever the dates say
    halted: str | None = None
    # bytes the home may hold, set by the site admins; None: no quota
    home_quota: int | None = None

    @classmethod
    def from_env(cls, environ=None) -> ServerContext:
        env = os.environ if environ is None else environ
        end = env.get(APPROVAL_END)
        end_date = env.get(APPROVAL_END_DATE)
        approval_end = datetime.fromisoformat(end).astimezone(UTC) if end else None
        if end_date:
            last_day = date.fromisoformat(end_date)
        elif approval_end is not None:
            last_day = (approval_end.astimezone(JST) - timedelta(seconds=1)).date()
        else:
            last_day = None
        return cls(
            user=env.get("JUPYTERHUB_USER") or env.get("USER") or "unknown",
            site=env.get(SITE, "local"),
            approval_id=env.get(APPROVAL_ID, "none"),
            approval_end=approval_end,
            end_date=last_day,
            datasets=tuple(d for d in env.get(DATASETS, "").split(",") if d),
            rules=GuardRules.from_json(env.get(GUARD_RULES)),
            home_quota=home_quota_from_text(env.get(HOME_QUOTA)),
        )


def home_quota_from_text(text: str | None) -> int | None:
    """The home quota in bytes from the spawner's VISITING_HOME_QUOTA; None when it is unset."""
    if text is None or not text.strip():
        return None
    if not re.fullmatch(r"[0-9]+", text.strip()):
        raise ValueError(f"{HOME_QUOTA} must be a whole number of bytes, got {text!r}")
    quota = int(text)
    if quota <= 0:
        # the spawner leaves the variable out when no quota is set; a zero is a mistake
        raise ValueError(f"{HOME_QUOTA} must be more than 0 bytes, got {text!r}")
    return quota


def terminals_from_env(environ=None) -> str:
    """The site's terminal mode from the spawner's VISITING_TERMINALS: "guarded" (the
    default, when unset) or "off"; anything else is a ValueError (the gate does not start)."""
    env = os.environ if environ is None else environ
    text = (env.get(TERMINALS) or "").strip()
    if not text:
        return "guarded"
    if text not in TERMINAL_MODES:
        raise ValueError(f"{TERMINALS} must be one of {', '.join(TERMINAL_MODES)}, got {text!r}")
    return text
