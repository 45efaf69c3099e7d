"""The figures the secretariat reads on the admin page and in its API: egress alerts and
caps, the query-set audit's refusals and resets, and how the page writes times and sizes.
Pure functions over the audit store and the registry."""

from __future__ import annotations

from datetime import datetime, timedelta

from extensions.contracts.clock import JST, jst_date
from extensions.contracts.events import EGRESS_ALERT, EGRESS_CAP, FEDERATION_QUERY, QUERY_SET_AUDIT
from hub.platform.messages import MESSAGES, message
from hub.platform.operations import Operations
from hub.store.audit import AuditStore
from hub.store.registry import QueryAuditResetView

#: the egress meter's events the secretariat is shown, and their order
EGRESS_LEVELS = {EGRESS_ALERT: "alert", EGRESS_CAP: "cap"}
_LEVEL_RANK = {"alert": 1, "cap": 2}
#: days of egress alerts the page shows; the API takes ?days= up to a year
EGRESS_DAYS = 30


def egress_alerts(audit: AuditStore, since: datetime, until: datetime | None = None) -> list[dict]:
    """The egress alerts and caps of researchers' servers stored with a time in [since, until):
    one row per person, site and Japan-time day, at the highest level the day reached (with
    that event's bytes and people), the newest day first."""
    rows: dict[tuple[str, str, str], dict] = {}
    for schema, level in EGRESS_LEVELS.items():
        for r in audit.events(since=since, until=until, schema=schema):
            data = r["data"]
            day = data.get("day") or jst_date(datetime.fromisoformat(r["time"])).isoformat()
            key = (r["user"], r["site"], day)
            row = rows.get(key)
            if row is not None and _LEVEL_RANK[row["level"]] >= _LEVEL_RANK[level]:
                continue
            rows[key] = {
                "user": r["user"],
                "site": r["site"],
                "day": day,
                "level": level,
                "bytes": data.get("bytes"),
                "people": data.get("people"),
                "reached_by": data.get("reached_by") or [],
                "time": r["time"],
                "approval_id": r["approval_id"],
            }
    return sorted(rows.values(), key=lambda x: (x["day"], x["time"], x["user"]), reverse=True)


#: days of query-set audit refusals the page shows; the API takes ?days= up to a year
QUERY_AUDIT_DAYS = 30


def _scope_of(audit: dict, user: str) -> str | None:
    """The refusing audit's scope: an approval id, or the requesting person's own
    `person:<user>`; None for anything else (a refusal names no other person)."""
    scope = audit.get("scope")
    if not isinstance(scope, str) or not scope:
        return None
    if scope.startswith("person:") and scope != f"person:{user}":
        return None
    return scope


def query_audit_refusals(
    audit: AuditStore, since: datetime, until: datetime | None = None
) -> list[dict]:
    """The federated queries a site's query-set audit refused, stored with a time in
    [since, until), newest first: when, who asked, at which site, the dataset, the task,
    the rule, and the earlier queries it collides with (their time, task and event id).
    Only these fields are taken from the event: never its parameters (which may hold
    sample ids) nor its message."""
    rows = []
    for r in audit.events(since=since, until=until, schema=FEDERATION_QUERY):
        data = r["data"]
        if data.get("outcome") != "refused" or data.get("code") != QUERY_SET_AUDIT:
            continue
        verdict = data.get("audit") if isinstance(data.get("audit"), dict) else {}
        collisions = verdict.get("collides_with")
        rows.append(
            {
                "query_id": r["event_id"],
                "time": r["time"],
                "seq": r["seq"],
                "approval_id": r["approval_id"],
                "scope": _scope_of(verdict, r["user"]),
                "user": r["user"],
                "site": r["site"],
                "dataset": data.get("dataset"),
                "task": data.get("task"),
                "rule": verdict.get("rule"),
                "collides_with": [
                    {"time": c.get("time"), "task": c.get("task"), "query_id": c.get("query_id")}
                    for c in (collisions if isinstance(collisions, list) else [])
                    if isinstance(c, dict)
                ],
            }
        )
    rows.sort(key=lambda x: (x["time"], x.pop("seq")), reverse=True)
    return rows


def query_audit_by_approval(
    refusals: list[dict], resets: list[QueryAuditResetView], since: datetime
) -> list[dict]:
    """Refusals grouped by the audit that refused them (an approval, or a person's own
    audit when no approval covered the dataset), each with that approval's resets since
    `since`, newest first; approvals with a reset and no refusal in the period too."""
    groups: dict[str, dict] = {}

    def group(key: str) -> dict:
        if key not in groups:
            approval = None if key.startswith("person:") else key
            groups[key] = {"scope": key, "approval_id": approval, "refusals": [], "resets": []}
        return groups[key]

    for row in refusals:
        key = row["scope"] or row["approval_id"] or f"person:{row['user']}"
        group(key)["refusals"].append(row)
    for reset in sorted(resets, key=lambda x: (x.at, x.id), reverse=True):
        if reset.at >= since:
            group(reset.approval_id)["resets"].append(reset.to_json())
    return [groups[k] for k in sorted(groups)]


def query_audit_section(ops: Operations, since: datetime) -> list[dict]:
    """What the secretariat sees of the query-set audit since `since` (page and API)."""
    return query_audit_by_approval(
        query_audit_refusals(ops.audit, since), ops.registry.query_audit_resets(), since
    )


def days_since(now: datetime, days: int) -> datetime:
    """The first instant of the Japan-time day `days - 1` days before today: `days` whole days."""
    first = jst_date(now) - timedelta(days=days - 1)
    return datetime.combine(first, datetime.min.time(), tzinfo=JST)


#: the egress section's name for it (the same whole Japan-time days)
egress_since = days_since


def audit_rule(rule: str | None) -> str:
    """A query-set audit rule as the page shows it, in both languages; its id when the
    message table has no words for it."""
    key = f"query_audit.rule.{rule}"
    return str(message(key)) if key in MESSAGES else (rule or "—")


def mib(n: int | None) -> str:
    """Bytes as MiB with one decimal, for the page; '—' for none."""
    return "—" if n is None else f"{n / 1024**2:,.1f} MiB"


def jst_time(instant: str | None) -> str:
    """An ISO instant as Japan time to the second, for the page; '—' for none."""
    if not instant:
        return "—"
    return datetime.fromisoformat(instant).astimezone(JST).strftime("%Y-%m-%d %H:%M:%S JST")


def enforcer_up(services: list[dict]) -> bool:
    """False when the enforcer is configured and does not answer (no enforcer: nothing to warn of)."""
    return all(s["up"] for s in services if s["name"] == "enforcer")
