"""The annual data-usage report (and the final one, when an approval's period ends),
produced from the approval registry and the audit log: `visiting report`.

    doc = build_report(registry, audit, ReportRequest(fiscal_year=2026, lang="ja"))
    paths = write_report(doc, ["html", "pdf", "csv", "json"], "out/")

See docs/report.md for what each figure means and how it is checked.
"""

from hub.report.build import ReportError, ReportRequest, build_report
from hub.report.render import FORMATS, write_report

__all__ = ["FORMATS", "ReportError", "ReportRequest", "build_report", "write_report"]
