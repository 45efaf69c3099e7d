"""Tables: rows of cells from a structured format or lines of text, for every rule on rows."""

from __future__ import annotations

from .content import KIB, _Src
from .records import _count_records
from .verdict import CLINICAL_ROWS, GENOTYPE_MATRIX


class Tables:
    """Part of `_Scan`: ids, records, genotype matrices and clinical rows of one table."""

    def table(self, rows: list, chain, depth, header: bool = True) -> None:
        """Rows of cells from a structured format: ids, records, genotype codes, clinical rows."""
        if not rows:
            return
        lines = [
            "\t".join("" if c is None else str(c) for c in row)
            for row in rows[: self.r.max_table_rows + 1]
        ]
        text = "\n".join(lines)
        data = text.encode("utf-8", "surrogatepass")
        self.ids(data, chain, table=True)
        finding = self.r.sniffer.classify_lines(text)
        if finding is not None:
            self.sniffed(finding, _count_records(finding.kind, text), chain)
            return
        self.table_lines(lines, chain)
        # cells holding content of their own (bytes, long text) are looked at too
        for row in rows[: self.r.max_table_rows]:
            for c in row:
                if isinstance(c, (bytes, bytearray)) and len(c) >= 64 and self.member():
                    self.blob(
                        _Src.of(bytes(c)), (*chain, ("a binary cell", "バイナリのセル")), depth + 1
                    )
                elif isinstance(c, str) and len(c) >= 256 and self.member():
                    self.text_unit(
                        _Src.of(c.encode("utf-8", "surrogatepass")),
                        (*chain, ("a text cell", "テキストのセル")),
                        depth + 1,
                    )
                if self.raw_found:
                    return

    def table_lines(self, lines: list[str], chain, text: str | None = None) -> None:
        """Genotype matrices and per-person clinical rows among `lines` (`text`: them joined)."""
        data = (text if text is not None else "\n".join(lines)).encode("utf-8", "replace").lower()
        matrix = self.genotype_lines(data)
        blocks: list[list[tuple]] = []
        current: list[tuple] = []
        maybe_rows = self.vocabulary_columns(data) >= 2
        for line in lines[: self.r.max_table_rows * 2] if maybe_rows else ():
            if len(line) > 64 * KIB:
                line = line[: 64 * KIB]
            if not line.strip():
                continue  # blank lines (HTML made text has many) neither start nor end a table
            row = self.clinical_row(line)
            if row is None:
                if current:
                    blocks.append(current)
                current = []
            else:
                current.append(row)
        if current:
            blocks.append(current)
        if matrix.found() and not self.cross_tabulation(matrix.labels):
            rows = matrix.wide if matrix.wide >= 3 else matrix.narrow
            self.hit(
                GENOTYPE_MATRIX,
                f"{rows} rows of genotype codes or dosages, up to {matrix.widest} a row",
                f"遺伝型コードまたはドーズの {rows} 行（1 行に最大 {matrix.widest}）",
                rows,
                chain,
            )
        person_rows = 0
        columns: set[str] = set()
        for block in blocks:
            if self.person_block(block):
                person_rows += len(block)
                for _, cols, _ in block:
                    columns |= cols
        if not person_rows and self.r._column_rx is not None and self.tokens & self.r._column_set:
            self.value_table(data, chain)  # the text's words (a set made in C) name a column
        if person_rows:
            names = ", ".join(sorted(columns))
            self.hit(
                CLINICAL_ROWS,
                f"{person_rows} rows of clinical attributes ({names}), one person a row",
                f"臨床属性（{names}）の {person_rows} 行、1 行に 1 人",
                person_rows,
                chain,
            )
