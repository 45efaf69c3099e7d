"""Raw genomic records in text, by the sniffer's rules, and how a verdict names them."""

from __future__ import annotations

import re

from ..sniff import Finding


class Records:
    """Part of `_Scan`: the sniffer's findings, and the tables of a window that has none."""

    def lines_of(self, text: str, chain, partial_head: bool, partial_tail: bool) -> None:
        finding = self.r.sniffer.classify_lines(text, partial_head, partial_tail)
        if finding is not None:
            self.sniffed(finding, _count_records(finding.kind, text), chain)
            return
        lines = text.splitlines()
        if partial_head and lines:
            lines = lines[1:]
        if partial_tail and lines:
            lines = lines[:-1]
        self.table_lines(lines, chain, text)

    def sniffed(self, finding: Finding, records: int, chain) -> None:
        en, ja = _sniff_how(finding)
        self.hit(finding.kind, en, ja, records, chain)


def _count_records(kind: str, text: str) -> int:
    """Records of `kind` in a window of text, counted by a cheap line shape."""
    if kind == "fastq":
        return text.count("\n+")
    tabs = {"vcf": 7, "sam": 10, "genotype-table": 7}.get(kind, 4)
    return (
        sum(
            1
            for line in text.splitlines()
            if line and line[0] not in "#@" and line.count("\t") >= tabs
        )
        or 3
    )


def _sniff_how(finding: Finding) -> tuple[str, str]:
    by = finding.by
    m = re.match(r"(\d+) lines shaped like its records", by)
    if m:
        return by.replace(
            "its records", f"{finding.kind} records"
        ), f"{finding.kind} のレコードの形をした {m.group(1)} 行"
    m = re.match(r"its magic bytes \((.*)\)", by)
    if m:
        return by, f"マジックバイト（{m.group(1)}）"
    m = re.match(r"(\d+) FASTQ records", by)
    if m:
        return by, f"FASTQ レコード {m.group(1)} 件"
    if by.startswith("its name"):
        return f"{by} in an archive", "アーカイブの中の名前"
    if by.startswith("its place in the store"):
        return by, "ストアの中の位置"
    m = re.match(r"its (\w+) header", by)
    if m:
        return by, f"{m.group(1)} ヘッダー"
    return by, "内容の形"
