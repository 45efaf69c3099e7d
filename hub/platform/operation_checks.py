"""Checks of the fields an action of the secretariat or a site admin takes, and the error
that names the field a person got wrong.

Each check takes what a form or a JSON body gave (anything) and returns the
typed value, or raises OperationError with the field and, for the admin
service, the HTTP status to answer with.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from hub.platform.policy_models import Quota, SanctionRules
from hub.platform.policy_platform import parse_size

MAX_REASON = 2000
MAX_CPU = 64.0
MAX_MEMORY = 1024**4  # 1 TiB
MAX_HOME = 16 * 1024**4
MAX_IMAGE_NAME = 300


class OperationError(Exception):
    """A refused action. `field` names the input that is wrong (None: the request as a whole);
    `status` is the HTTP status the admin service answers with."""

    def __init__(self, message: str, field: str | None = None, status: int = 400):
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status

    def to_json(self) -> dict[str, Any]:
        return {"message": self.message, "field": self.field}


def check_reason(reason: Any) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise OperationError("a reason is required for every action", field="reason")
    reason = reason.strip()
    if len(reason) > MAX_REASON:
        raise OperationError(f"the reason is longer than {MAX_REASON} characters", field="reason")
    return reason


def check_date(value: Any, name: str) -> date:
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not value.strip():
        raise OperationError(f"{name} is required (a date, YYYY-MM-DD)", field=name)
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise OperationError(f"{name} {value!r} is not a date (YYYY-MM-DD)", field=name) from None


def add_months(day: date, months: int) -> date:
    """The same day `months` later (the month's last day when it has fewer days)."""
    y, m = divmod(day.month - 1 + months, 12)
    year, month = day.year + y, m + 1
    for d in (day.day, 30, 29, 28):
        try:
            return date(year, month, min(day.day, d))
        except ValueError:
            continue
    raise AssertionError("unreachable")


def check_quota(raw: Any, name: str = "quota") -> Quota:
    """A quota from a form or JSON: cpu (cores), memory and home (bytes or 2G); at least one."""
    if not isinstance(raw, dict):
        raise OperationError(f"{name} must be an object with cpu, memory and/or home", field=name)
    unknown = sorted(set(raw) - {"cpu", "memory", "home"})
    if unknown:
        raise OperationError(
            f"{name} has unknown field(s) {', '.join(unknown)}; allowed: cpu, memory, home",
            field=f"{name}.{unknown[0]}",
        )
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if value is None or value == "":
            continue
        where = f"{name}.{key}"
        if key == "cpu":
            try:
                cpu = float(value)
            except (TypeError, ValueError):
                raise OperationError(f"{where} {value!r} is not a number of cores", where) from None
            if not 0 < cpu <= MAX_CPU:
                raise OperationError(f"{where} must be more than 0 and at most {MAX_CPU:g}", where)
            values["cpu"] = cpu
        else:
            if isinstance(value, bool):
                raise OperationError(f"{where} {value!r} is not a size", where)
            try:
                size = parse_size(value)
            except (TypeError, ValueError) as e:
                raise OperationError(f"{where}: {e}", where) from None
            limit = MAX_MEMORY if key == "memory" else MAX_HOME
            if not 64 * 1024**2 <= size <= limit:
                raise OperationError(f"{where} must be between 64M and {limit // 1024**4}T", where)
            values[key] = size
    if not values:
        raise OperationError(f"{name} sets nothing: give cpu, memory or home", field=name)
    return Quota(**values)


def check_image(image: Any) -> str:
    """An image name as a site admin gave it (a name and tag, no spaces)."""
    if not isinstance(image, str) or not image.strip():
        raise OperationError("an image name is required", field="image")
    image = image.strip()
    if len(image) > MAX_IMAGE_NAME or any(c.isspace() for c in image):
        raise OperationError(f"{image!r} is not an image name", field="image")
    return image


def check_ban(
    ban_until: Any, ban_indefinite: Any, rules: SanctionRules, today: date
) -> tuple[date | None, bool]:
    """(last day of the ban or None, whether indefinite) within the platform's sanction
    rules, counted from `today` (Japan time); (None, False) when no ban is asked for."""
    indefinite = bool(ban_indefinite) and ban_indefinite not in ("", "0", "false")
    if ban_until in (None, "") and not indefinite:
        return None, False
    if indefinite:
        if ban_until not in (None, ""):
            raise OperationError(
                "give either a ban end date or an indefinite ban, not both", "ban_until"
            )
        if not rules.allow_indefinite:
            raise OperationError(
                "the platform's rules do not allow an indefinite ban", "ban_indefinite"
            )
        return None, True
    until = check_date(ban_until, "ban_until")
    earliest = add_months(today, rules.ban_months_min)
    latest = add_months(today, rules.ban_months_max)
    if not earliest <= until <= latest:
        raise OperationError(
            f"ban_until {until} is outside the range the platform's rules allow: "
            f"{rules.ban_months_min} to {rules.ban_months_max} months from today "
            f"({earliest} .. {latest})" + (", or indefinite" if rules.allow_indefinite else ""),
            "ban_until",
        )
    return until, False
