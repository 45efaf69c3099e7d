"""Data access: the files read and the opens of each dataset."""

from __future__ import annotations

from extensions.contracts.events import DATA_ACCESS
from hub.report.blocks import fmt_num, heading, para, table
from hub.report.query import Figures
from hub.report.tally import ApprovalTally
from hub.report.texts import t


def build(F: Figures, tally: ApprovalTally, dataset_site: dict[str, str]) -> list[dict]:
    """One row per dataset (files outside a dataset last), with its two figures."""
    aid, lang, q = F.aid, F.lang, F.q
    rows = []
    for dataset in sorted(set(tally.files) | set(tally.opens), key=lambda d: (d is None, d or "")):
        where = {"schema": DATA_ACCESS, "approval_id": aid, "data.dataset": dataset}
        row = {
            "dataset": dataset,
            "site": dataset_site.get(dataset or ""),
            "files": len(tally.files.get(dataset, ())),
            "opens": tally.opens.get(dataset, 0),
        }
        rows.append(row)
        name = dataset or "(outside a dataset)"
        F.fig(
            f"data_access/{name}/files",
            f"{t('files', lang)} {name}",
            row["files"],
            "files",
            q(where, "distinct:data.path"),
        )
        F.fig(
            f"data_access/{name}/opens",
            f"{t('opens', lang)} {name}",
            row["opens"],
            "opens",
            q(where, "sum:data.count"),
        )
    return rows


def blocks(a: dict, lang: str) -> list[tuple]:
    u = a["usage"]
    out = [heading(2, t("data_access", lang))]
    if not u["data_access"]:
        return out + [para(t("none", lang), "muted")]
    rows = [
        [d["dataset"] or "-", d["site"] or "-", fmt_num(d["files"]), fmt_num(d["opens"])]
        for d in u["data_access"]
    ]
    headers = [t(c, lang) for c in ("dataset", "site", "files", "opens")]
    return out + [table(headers, rows, [0.35, 0.25, 0.2, 0.2])]
