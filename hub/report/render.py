"""The report document (hub/report/build.py) in four formats: JSON, CSV, HTML and PDF.

What a person reads is laid out once, as a list of blocks (`blocks`), and drawn by two
renderers: HTML (charts as embedded PNG) and PDF (matplotlib pages, the charts as
vectors). JSON is the document itself; CSV is its figures, one a row, with their queries.
Everything is rendered in memory first and written only when every format succeeded.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from extensions.contracts.clock import JST
from hub.report.texts import block_reason, rule, rule_name, t

FORMATS = ("html", "pdf", "csv", "json")


# ---------------------------------------------------------------------------
# formatting


def fmt_time(iso: str | None) -> str:
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).astimezone(JST).strftime("%Y-%m-%d %H:%M JST")


def fmt_num(value: float | int) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    return f"{value:,}"


def fmt_bytes(n: int) -> str:
    size, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            break
        size /= 1024
    short = f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
    return f"{short} ({n:,} bytes)" if unit != "B" else short


def fmt_quota(quotas: list[dict]) -> str:
    parts = []
    for q in quotas:
        cpu = "-" if q["cpu"] is None else f"{q['cpu']:g}"
        mem = "-" if q["memory"] is None else fmt_bytes(q["memory"]).split(" (")[0]
        parts.append(f"{cpu} / {mem}")
    return ", ".join(parts) or "-"


def file_stem(doc: dict[str, Any]) -> str:
    r = doc["report"]
    tag = f"FY{r['fiscal_year']}" if r["kind"] == "annual" else "final"
    scope = r["scope"]
    if "approval_id" in scope:
        name = scope["approval_id"]
    elif "institution" in scope:
        slug = re.sub(r"[^A-Za-z0-9]+", "-", scope["institution"]).strip("-")[:60]
        digest = hashlib.sha256(scope["institution"].encode()).hexdigest()[:8]
        name = slug or f"institution-{digest}"
    else:
        name = "all"
    return f"usage-report-{tag}-{name}-{r['lang']}"


# ---------------------------------------------------------------------------
# the blocks a person reads


def blocks(doc: dict[str, Any]) -> list[tuple]:
    r = doc["report"]
    lang = r["lang"]
    out: list[tuple] = [("title", r["title"])]
    scope = r["scope"]
    scope_text = scope.get("approval_id") or scope.get("institution") or t("scope_all", lang)
    out.append(
        (
            "kv",
            [
                (t("platform", lang), t("platform_name", lang)),
                (
                    t("covers", lang),
                    f"{r['label']} ({t('japan_time', lang)})",
                ),
                (t("scope", lang), scope_text),
                (t("generated", lang), fmt_time(r["generated_at"])),
            ],
        )
    )
    if r["provisional"]:
        out.append(("para", t("provisional", lang, now=fmt_time(r["generated_at"])), "alert"))
    chain = doc["audit_chain"]
    out.append(("para", f"{t('sec_audit', lang)}: {_audit_line(chain, lang)}", "ok"))
    if not r["activity"]:
        out.append(("para", t("no_activity", lang), "alert"))
    if not doc["approvals"]:
        out.append(("para", t("no_approvals", lang), "alert"))
    for a in doc["approvals"]:
        out += _approval_blocks(a, lang)
    if doc["notes"]:
        out.append(("heading", 1, "Notes"))
        out += [("para", n, "muted") for n in doc["notes"]]
    out.append(("heading", 1, t("sec_rules", lang)))
    for key in (
        "window",
        "sessions",
        "server-hours",
        "cpu-hours",
        "egress-ledger",
        "query-audit",
        "attribution",
    ):
        out.append(("para", rule(key, lang), "normal"))
    for a in doc["approvals"]:
        out += _source_blocks(a, lang)
    return out


def _audit_line(chain: dict, lang: str) -> str:
    if not chain["records_in_period"]:
        return t("audit_ok_empty", lang)
    return t(
        "audit_ok",
        lang,
        records=f"{chain['records_in_period']:,}",
        first=chain["first_seq_in_period"],
        last=chain["last_seq_in_period"],
    )


def _approval_blocks(a: dict, lang: str) -> list[tuple]:
    out: list[tuple] = [("heading", 1, f"{t('approval_id', lang)} {a['approval_id']}")]
    p = a["period"]
    period = f"{p['start']} .. {p['end']}"
    if p["extended"]:
        period += t("extended_from", lang, end=p["approved_end"])
    kv = [
        (t("institution", lang), a["institution"]),
        (t("purpose", lang), a["purpose"]),
        (t("approval_id", lang), a["approval_id"]),
        (t("period", lang), period),
    ]
    if p["revoked_at"]:
        kv.append((t("revoked_at", lang), fmt_time(p["revoked_at"])))
    w = a["in_window"]
    kv.append(
        (
            t("period_in_window", lang),
            f"{fmt_time(w['from'])} .. {fmt_time(w['until'])}" if w else t("none", lang),
        )
    )
    kv.append((t("handlers", lang), ", ".join(a["handlers_in_window"]) or t("none", lang)))
    out.append(("kv", kv))
    out.append(("heading", 2, t("handler_changes", lang)))
    if a["changes"]:
        rows = []
        for c in a["changes"]:
            what = []
            if c.get("handlers_added"):
                what.append(
                    f"{t('handlers', lang)} {t('added', lang)}: {', '.join(c['handlers_added'])}"
                )
            if c.get("handlers_removed"):
                what.append(
                    f"{t('handlers', lang)} {t('removed', lang)}: {', '.join(c['handlers_removed'])}"
                )
            for field, (old, new) in c["changes"].items():
                if field != "handlers":
                    what.append(f"{field}: {old} → {new}")
            rows.append([fmt_time(c["at"]), c["kind"], "; ".join(what) or "-"])
        out.append(("table", ["", "", ""], rows, [0.25, 0.12, 0.63], 0))
    else:
        out.append(("para", t("no_changes", lang), "muted"))
    out.append(("heading", 2, t("datasets_sites", lang)))
    out.append(
        (
            "table",
            [t("dataset", lang), t("site", lang), t("used", lang)],
            [
                [d["dataset"], d["site"] or "-", t("yes", lang) if d["used"] else t("no", lang)]
                for d in a["datasets"]
            ],
            [0.4, 0.4, 0.2],
            0,
        )
    )

    u = a["usage"]
    out.append(("heading", 1, f"{t('sec_usage', lang)} ({a['approval_id']})"))
    if not a["activity"]:
        out.append(("para", t("no_activity", lang), "alert"))
    out.append(
        (
            "kv",
            [
                (t("sessions", lang), fmt_num(u["sessions"])),
                (t("server_hours", lang), fmt_num(float(u["server_hours"]))),
                (t("cpu_hours", lang), fmt_num(float(u["cpu_hours"]))),
                (t("memory_hours", lang), fmt_num(float(u["memory_gib_hours"]))),
                (t("kernel_starts", lang), fmt_num(sum(s["kernel_starts"] for s in u["by_site"]))),
            ],
        )
    )
    out.append(("heading", 2, t("usage_by_site", lang)))
    out.append(
        (
            "table",
            [
                t("site", lang),
                t("sessions", lang),
                t("server_hours", lang),
                t("cpu_hours", lang),
                t("memory_hours", lang),
                t("kernel_starts", lang),
                t("quota", lang),
            ],
            [
                [
                    s["site"],
                    fmt_num(s["sessions"]),
                    fmt_num(float(s["server_hours"])),
                    fmt_num(float(s["cpu_hours"])),
                    fmt_num(float(s["memory_gib_hours"])),
                    fmt_num(s["kernel_starts"]),
                    fmt_quota(s["quotas"]),
                ]
                for s in u["by_site"]
            ],
            [0.1, 0.12, 0.15, 0.15, 0.17, 0.13, 0.18],
            0,
        )
    )
    out.append(("heading", 2, t("usage_by_user", lang)))
    out.append(
        (
            "table",
            [t("user", lang), t("sessions", lang), t("server_hours", lang)],
            [
                [s["user"], fmt_num(s["sessions"]), fmt_num(float(s["server_hours"]))]
                for s in u["by_user"]
            ],
            [0.4, 0.3, 0.3],
            0,
        )
    )
    out.append(("heading", 2, t("data_access", lang)))
    if u["data_access"]:
        out.append(
            (
                "table",
                [t("dataset", lang), t("site", lang), t("files", lang), t("opens", lang)],
                [
                    [
                        d["dataset"] or "-",
                        d["site"] or "-",
                        fmt_num(d["files"]),
                        fmt_num(d["opens"]),
                    ]
                    for d in u["data_access"]
                ],
                [0.35, 0.25, 0.2, 0.2],
                0,
            )
        )
    else:
        out.append(("para", t("none", lang), "muted"))
    out.append(("heading", 2, t("federation", lang)))
    if u["federation"]:
        out.append(
            (
                "table",
                [
                    t("task", lang),
                    t("site", lang),
                    t("queries", lang),
                    t("refused", lang),
                    t("suppressions", lang),
                    t("suppressed_items", lang),
                ],
                [
                    [
                        f["task"],
                        f["site"],
                        fmt_num(f["queries"]),
                        fmt_num(f["refused"]),
                        fmt_num(f["suppressions"]),
                        fmt_num(f["suppressed_items"]),
                    ]
                    for f in u["federation"]
                ],
                [0.22, 0.14, 0.14, 0.14, 0.18, 0.18],
                0,
            )
        )
    else:
        out.append(("para", t("none", lang), "muted"))
    out.append(("heading", 2, t("downloads", lang)))
    allowed = u["downloads_allowed"]
    out.append(
        (
            "kv",
            [
                (t("downloads_allowed", lang), fmt_num(allowed["count"])),
                (t("downloads_allowed_bytes", lang), fmt_bytes(allowed["bytes"])),
                (t("downloads_blocked", lang), fmt_num(u["downloads_blocked_total"])),
            ],
        )
    )
    if u["downloads_blocked"]:
        out.append(
            (
                "table",
                [t("reason", lang), t("count", lang)],
                [[block_reason(k, lang), fmt_num(v)] for k, v in u["downloads_blocked"].items()],
                [0.7, 0.3],
                0,
            )
        )
    if a["activity"]:
        out.append(("heading", 2, t("sec_charts", lang)))
        for key in ("server_hours", "federation", "blocked"):
            out.append(("chart", key, u["monthly"]))
    out.append(("heading", 1, f"{t('sec_egress', lang)} ({a['approval_id']})"))
    out += _egress_blocks(a.get("egress"), lang)
    out.append(("heading", 1, f"{t('sec_query_audit', lang)} ({a['approval_id']})"))
    out += _query_audit_blocks(a.get("query_audit"), lang)

    s = a["security"]
    out.append(("heading", 1, f"{t('sec_security', lang)} ({a['approval_id']})"))
    out.append(("heading", 2, t("suspensions", lang)))
    if s["suspensions"]:
        out.append(
            (
                "table",
                [
                    t("user", lang),
                    t("suspended_from", lang),
                    t("suspended_until", lang),
                    t("reason", lang),
                ],
                [
                    [
                        x["username"],
                        fmt_time(x["suspended_at"]),
                        fmt_time(x["lifted_at"]) if x["lifted_at"] else t("still_suspended", lang),
                        x["reason"],
                    ]
                    for x in s["suspensions"]
                ],
                [0.15, 0.25, 0.25, 0.35],
                0,
            )
        )
    else:
        out.append(("para", t("none", lang), "muted"))
    out.append(
        (
            "kv",
            [
                (t("suspension_actions", lang), fmt_num(s["suspension_actions"])),
                (t("reinstatements", lang), fmt_num(s["reinstatements"])),
                (t("enforcement_stops", lang), fmt_num(s["enforcement_stops_total"])),
                (t("kernel_refused", lang), fmt_num(s["kernel_refused"])),
                (t("period_end_events", lang), fmt_num(s["period_end"])),
            ],
        )
    )

    out.append(("heading", 1, f"{t('sec_publications', lang)} ({a['approval_id']})"))
    out.append(("para", t("publications_intro", lang), "muted"))
    out.append(
        (
            "table",
            [t(k, lang) for k in ("pub_title", "pub_authors", "pub_venue", "pub_date", "pub_doi")],
            [],
            [0.3, 0.2, 0.2, 0.1, 0.2],
            3,
        )
    )
    out.append(("heading", 1, f"{t('sec_checklist', lang)} ({a['approval_id']})"))
    out.append(("para", t("checklist_intro", lang), "muted"))
    out.append(
        (
            "table",
            ["#", t("sec_checklist", lang), t("answer", lang), t("note", lang)],
            [[str(i + 1), c["item"], "", ""] for i, c in enumerate(a["self_assessment"])],
            [0.05, 0.55, 0.12, 0.28],
            0,
        )
    )
    return out


def _egress_blocks(e: dict | None, lang: str) -> list[tuple]:
    """The egress ledger and the alerts, caps and blocks per handler and site."""
    out: list[tuple] = [("para", t("egress_intro", lang), "muted")]
    if not e or not (e["ledger"] or e["by_user_site"]):
        return out + [("para", t("none", lang), "muted")]
    out.append(("heading", 2, t("egress_ledger", lang)))
    out.append(
        (
            "table",
            [
                t("user", lang),
                t("site", lang),
                t("channel", lang),
                t("egress_bytes", lang),
                t("egress_contents", lang),
                t("egress_people", lang),
                t("egress_days", lang),
            ],
            [
                [
                    r["user"],
                    r["site"],
                    r["channel"],
                    fmt_bytes(r["bytes"]),
                    fmt_num(r["contents"]),
                    fmt_num(r["people"]),
                    fmt_num(r["days"]),
                ]
                for r in e["ledger"]
            ],
            [0.12, 0.1, 0.1, 0.32, 0.12, 0.12, 0.12],
            0,
        )
    )
    out.append(("heading", 2, t("egress_levels", lang)))
    out.append(
        (
            "table",
            [
                t("user", lang),
                t("site", lang),
                t("egress_bytes", lang),
                t("egress_days_alert", lang),
                t("egress_days_cap", lang),
                t("outputs_withheld", lang),
                t("downloads_blocked", lang),
            ],
            [
                [
                    r["user"],
                    r["site"],
                    fmt_bytes(r["bytes"]),
                    fmt_num(r["days_alert"]),
                    fmt_num(r["days_cap"]),
                    fmt_num(r["outputs_withheld"]),
                    fmt_num(r["downloads_blocked"]),
                ]
                for r in e["by_user_site"]
            ],
            [0.12, 0.1, 0.3, 0.12, 0.12, 0.12, 0.12],
            0,
        )
    )
    return out


def _query_audit_blocks(qa: dict | None, lang: str) -> list[tuple]:
    """Queries answered, refused by the query-set audit per rule, and the audit's resets."""
    out: list[tuple] = [("para", t("qa_intro", lang), "muted")]
    if qa is None:  # a document made before the section existed
        return out + [("para", t("none", lang), "muted")]
    out.append(
        (
            "kv",
            [
                (t("qa_answered", lang), fmt_num(qa["answered"])),
                (t("qa_refused", lang), fmt_num(qa["refused_total"])),
                (t("qa_resets", lang), fmt_num(len(qa["resets"]))),
            ],
        )
    )
    if qa["refused"]:
        out.append(
            (
                "table",
                [t("qa_rule", lang), t("qa_refused", lang)],
                [[rule_name(r["rule"], lang), fmt_num(r["queries"])] for r in qa["refused"]],
                [0.7, 0.3],
                0,
            )
        )
    out.append(("heading", 2, t("qa_resets", lang)))
    if qa["resets"]:
        out.append(
            (
                "table",
                [t("qa_reset_at", lang), t("reason", lang)],
                [[fmt_time(r["at"]), r["reason"]] for r in qa["resets"]],
                [0.3, 0.7],
                0,
            )
        )
    else:
        out.append(("para", t("none", lang), "muted"))
    return out


def _where_text(query: dict) -> str:
    parts = []
    for k, v in query["where"].items():
        if k == "schema":
            v = [s.rsplit("/", 1)[1] for s in v] if isinstance(v, list) else v.rsplit("/", 1)[1]
        parts.append(f"{k}={json.dumps(v, ensure_ascii=False)}")
    return f"{query['measure']} where " + ", ".join(parts)


def _source_blocks(a: dict, lang: str) -> list[tuple]:
    rows = [
        [f["id"].split("/", 1)[1], fmt_num(f["value"]), _where_text(f["query"])]
        for f in a["figures"]
        if "query" in f and not f["id"].split("/", 2)[1].startswith("monthly")
    ]
    return [
        ("heading", 1, f"{t('sec_sources', lang)} ({a['approval_id']})"),
        ("para", t("sources_intro", lang), "muted"),
        (
            "sources",
            [t("figure", lang), t("value", lang), t("query", lang), t("recheck", lang)],
            rows,
            a["figures"],
        ),
    ]


# ---------------------------------------------------------------------------
# JSON and CSV


def render_json(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode()


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


# ---------------------------------------------------------------------------
# HTML

CSS = """
body{font-family:"Noto Sans CJK JP","Noto Sans JP","Hiragino Sans",sans-serif;max-width:60rem;
margin:2rem auto;padding:0 1rem;color:#111;line-height:1.5}
h1{font-size:1.6rem}h2{border-bottom:1px solid #123;margin-top:2rem;font-size:1.25rem}
h3{font-size:1.05rem;margin-top:1.2rem}
table{border-collapse:collapse;margin:.4rem 0;width:100%}
th,td{border-bottom:1px solid #ccc;padding:.2rem .4rem;text-align:left;vertical-align:top}
th{border-bottom:2px solid #333}table.kv th{width:30%;border-bottom:1px solid #ccc}
td.fill{height:1.6rem}.muted{color:#555}.alert{color:#a61e1e;font-weight:bold}
.ok{color:#1b5e20}img{max-width:100%}code{font-size:.75rem;word-break:break-all}
details{margin:.5rem 0}
"""


def render_html(doc: dict[str, Any]) -> bytes:
    from hub.report.charts import CHARTS, png_base64

    draw = dict(CHARTS)
    lang = doc["report"]["lang"]
    e = html.escape
    parts = [
        f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{e(doc['report']['title'])}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
    ]
    for block in blocks(doc):
        kind = block[0]
        if kind == "title":
            parts.append(f"<h1>{e(block[1])}</h1>\n")
        elif kind == "heading":
            parts.append(f"<h{block[1] + 1}>{e(block[2])}</h{block[1] + 1}>\n")
        elif kind == "para":
            parts.append(f'<p class="{block[2]}">{e(block[1])}</p>\n')
        elif kind == "kv":
            rows = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in block[1])
            parts.append(f'<table class="kv">{rows}</table>\n')
        elif kind == "table":
            _, headers, rows, _widths, empty = block
            head = "".join(f"<th>{e(h)}</th>" for h in headers) if any(headers) else ""
            body = "".join(
                "<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in rows
            )
            body += ("<tr>" + '<td class="fill"></td>' * len(headers) + "</tr>") * empty
            parts.append(
                f"<table><tr>{head}</tr>{body}</table>\n" if head else f"<table>{body}</table>\n"
            )
        elif kind == "chart":
            img = png_base64(draw[block[1]], block[2], lang)
            parts.append(f'<p><img alt="{e(block[1])}" src="data:image/png;base64,{img}"></p>\n')
        elif kind == "sources":
            _, headers, _rows, figures = block
            head = "".join(f"<th>{e(h)}</th>" for h in headers)
            body = "".join(
                f"<tr><td>{e(f['id'].split('/', 1)[1])}<br>"
                f'<span class="muted">{e(f["label"])}</span></td>'
                f"<td>{e(fmt_num(f['value']))}</td>"
                f"<td>{e(_where_text(f['query']) if 'query' in f else f['source'])}</td>"
                f"<td><code>{e(f.get('recheck', ''))}</code></td></tr>"
                for f in figures
            )
            parts.append(
                f"<details><summary>{len(figures)} {e(headers[0])}</summary>"
                f"<table><tr>{head}</tr>{body}</table>"
                "</details>\n"
            )
    parts.append("</body>\n</html>\n")
    return "".join(parts).encode()


# ---------------------------------------------------------------------------
# PDF


def render_pdf(doc: dict[str, Any]) -> bytes:
    import matplotlib
    from matplotlib.backends.backend_pdf import PdfPages

    from hub.report.charts import CHARTS, rc
    from hub.report.pdf import PdfLayout

    draw = dict(CHARTS)
    r = doc["report"]
    lang = r["lang"]
    buf = io.BytesIO()
    with matplotlib.rc_context(rc(lang)), PdfPages(buf, metadata=_pdf_metadata(doc)) as pdf:
        page = PdfLayout(pdf, f"{r['title']} — {r['label']}")
        for block in blocks(doc):
            kind = block[0]
            if kind == "title":
                page.heading(block[1], level=0)
            elif kind == "heading":
                page.heading(block[2], level=block[1])
            elif kind == "para":
                color = {"alert": "#a61e1e", "ok": "#1b5e20", "muted": "#555"}.get(block[2], "#000")
                page.para(block[1], color=color)
            elif kind == "kv":
                page.table(["", ""], [[k, v] for k, v in block[1]], [0.35, 0.65])
            elif kind == "table":
                _, headers, rows, widths, empty = block
                page.table(headers, rows, widths, empty_rows=empty)
            elif kind == "chart":
                page.chart(draw[block[1]], block[2], lang)
            elif kind == "sources":
                _, headers, rows, _figures = block
                page.table(headers[:3], rows, [0.32, 0.12, 0.56], size=6.5)
        page.close()
    return buf.getvalue()


def _pdf_metadata(doc: dict[str, Any]) -> dict[str, Any]:
    r = doc["report"]
    return {
        "Title": r["title"],
        "Subject": r["label"],
        "Creator": "visiting report",
        # the same document for the same log: no wall-clock date in the file
        "CreationDate": datetime.fromisoformat(r["generated_at"]),
    }


RENDERERS = {"json": render_json, "csv": render_csv, "html": render_html, "pdf": render_pdf}


def write_report(doc: dict[str, Any], formats: list[str], out_dir: str | os.PathLike) -> list[Path]:
    """Render every format in memory, then write them to `out_dir` (created if missing)."""
    rendered = {fmt: RENDERERS[fmt](doc) for fmt in formats}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    stem = file_stem(doc)
    for fmt, content in rendered.items():
        path = out / f"{stem}.{fmt}"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(content)
        os.replace(tmp, path)
        paths.append(path)
    return paths
