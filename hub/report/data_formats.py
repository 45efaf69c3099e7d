"""The report's machine-readable formats: the document itself as JSON, and its figures as
CSV, one a row, with their queries."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

CSV_FIELDS = (
    "approval_id",
    "figure",
    "label",
    "value",
    "unit",
    "source",
    "since",
    "until",
    "until_seq",
    "measure",
    "rule",
    "where",
    "recheck",
)


def render_json(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode()


def render_csv(doc: dict[str, Any]) -> bytes:
    """One row per figure with its query. UTF-8 with a byte-order mark, so that a
    spreadsheet opens the Japanese labels as they are."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for a in doc["approvals"]:
        for f in a["figures"]:
            q = f.get("query") or {}
            w.writerow(
                [
                    f["approval_id"],
                    f["id"],
                    f["label"],
                    f["value"],
                    f["unit"],
                    f["source"],
                    q.get("since", ""),
                    q.get("until", ""),
                    q.get("until_seq", ""),
                    q.get("measure", ""),
                    q.get("rule", ""),
                    json.dumps(q.get("where", {}), ensure_ascii=False),
                    f.get("recheck", ""),
                ]
            )
    return buf.getvalue().encode("utf-8-sig")
