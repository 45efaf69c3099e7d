"""The audit-event query behind each figure of a report, in a form anyone can re-run.

A query names a slice of the audit log, `[since, until)` on event time and
`seq <= until_seq` (so that events that arrive after the report was made do
not change the answer), a `where` of field conditions, and a `measure` over
the records that match:

    where:   {"schema": S, "approval_id": A, "site": "nig", "data.reason": "raw-name"}
             a scalar means equal, a list means one of, null means missing or null;
             "data.x" reads a field of the event's data.
    measure: "count"                    records that match
             "sum:data.size"            the sum of a numeric data field
             "distinct:data.path"       distinct values of a field
             "sum-len:data.suppressions"  the sum of the lengths of a list field
             "sum-each:data.suppressions.count"  the sum of a field of each list item
             "server-hours"             derived by the pairing rule (see docs/report.md)
             "median-hours"             derived by a named rule from the records listed (the
                                        export airlock's time from request to decision)
             "sum-daily-last:data.bytes"  egress-tally lines are cumulative for their day: the
                                        sum of the last line (by time, then seq) of each
                                        user, site, data.channel and data.day

`recheck()` spells the query as a shell line over `visiting audit export`
(JSON lines) and jq, which is how the secretariat re-runs it.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Any

MEASURES = (
    "count",
    "sum",
    "distinct",
    "sum-len",
    "sum-each",
    "server-hours",
    "sum-daily-last",
    "median-hours",
)
#: what a cumulative line is the last of (the egress ledger: one server's channel on one day)
DAILY_GROUP = "[.user, .site, .data.channel, .data.day]"


@dataclass(frozen=True)
class Query:
    since: str
    until: str
    until_seq: int | None
    where: dict[str, Any]
    measure: str = "count"
    rule: str | None = None  # for derived measures: the rule's name in docs/report.md

    def to_json(self) -> dict[str, Any]:
        out = {
            "since": self.since,
            "until": self.until,
            "until_seq": self.until_seq,
            "where": self.where,
            "measure": self.measure,
        }
        if self.rule:
            out["rule"] = self.rule
        return out

    def jq_filter(self) -> str:
        """The jq condition a record of the export must meet."""
        parts = [f".seq <= {self.until_seq if self.until_seq is not None else 0}"]
        for name, value in self.where.items():
            path = "." + ".".join(p if p.isidentifier() else json.dumps(p) for p in name.split("."))
            if isinstance(value, list):
                values = json.dumps(value, ensure_ascii=False)
                parts.append(f"({path} as $v | any({values}[]; . == $v))")
            else:
                parts.append(f"{path} == {json.dumps(value, ensure_ascii=False)}")
        return " and ".join(parts)

    def recheck(self) -> str:
        """A shell line that prints the figure again from the audit log."""
        select = f"[.[] | select({self.jq_filter()})"
        kind, _, arg = self.measure.partition(":")
        if kind in ("count", "server-hours", "median-hours"):
            # derived measures: the line lists the records the rule reads
            program = f"{select}] | length" if kind == "count" else f"{select}]"
        elif kind == "sum":
            program = f"{select} | .{arg} // 0] | add // 0"
        elif kind == "distinct":
            program = f"{select} | .{arg}] | unique | length"
        elif kind == "sum-len":
            program = f"{select} | (.{arg} // []) | length] | add // 0"
        elif kind == "sum-each":
            lst, _, item = arg.rpartition(".")
            program = f"{select} | (.{lst} // [])[] | .{item} // 0] | add // 0"
        elif kind == "sum-daily-last":
            program = (
                f"{select}] | group_by({DAILY_GROUP}) "
                f"| map(sort_by(.time, .seq) | last | .{arg} // 0) | add // 0"
            )
        else:  # pragma: no cover - guarded by MEASURES
            raise ValueError(self.measure)
        return (
            f"visiting audit export --since {self.since} --until {self.until} "
            f"| jq -s {shlex.quote(program)}"
        )


@dataclass
class Figure:
    """One number of the report and where it comes from."""

    id: str
    label: str
    value: float | int
    unit: str
    approval_id: str | None
    query: Query | None = None
    source: str = "audit"  # audit | registry
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = {
            "id": self.id,
            "approval_id": self.approval_id,
            "label": self.label,
            "value": self.value,
            "unit": self.unit,
            "source": self.source,
        }
        if self.query is not None:
            out["query"] = self.query.to_json()
            out["recheck"] = self.query.recheck()
        if self.note:
            out["note"] = self.note
        out.update(self.extra)
        return out


@dataclass
class Figures:
    """The figures of one approval's section as they are made, each with the query that
    recounts it from the audit store (`q`: over the report's window unless a span is given)."""

    aid: str
    since_iso: str
    until_iso: str
    until_seq: int
    lang: str
    figures: list[Figure] = field(default_factory=list)

    def q(self, where: dict, measure: str = "count", rule: str | None = None, span=None) -> Query:
        s, u = span or (self.since_iso, self.until_iso)
        return Query(s, u, self.until_seq, where, measure, rule)

    def fig(self, fid, label, value, unit, query=None, **extra) -> Figure:
        f = Figure(f"{self.aid}/{fid}", label, value, unit, self.aid, query, extra=extra)
        self.figures.append(f)
        return f
