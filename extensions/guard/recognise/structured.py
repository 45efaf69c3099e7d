"""Structured formats: which one a content is, and the tables of Parquet, Arrow and SQLite."""

from __future__ import annotations

import os
import tempfile
import time

from .content import _size, _Src


class Structured:
    """Part of `_Scan`: tables of a structured format are read as rows of cells."""

    def structured(self, src: _Src, head: bytes, chain, depth, name) -> bool:
        if head[:4] == b"PAR1":
            self.arrow(src, "Parquet", chain, depth)
            return True
        if head[:6] == b"ARROW1" or head[:4] == b"FEA1":
            self.arrow(src, "Arrow IPC" if head[:6] == b"ARROW1" else "Feather", chain, depth)
            return True
        if head[:4] == b"\xff\xff\xff\xff" and len(head) > 8:
            if self.arrow(src, "Arrow IPC stream", chain, depth, quiet=True):
                return True
        if head[:6] == b"\x93NUMPY":
            self.npy(src, chain, depth)
            return True
        if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
            self.pickle(src, chain, depth)
            return True
        if head[:16] == b"SQLite format 3\x00":
            self.sqlite(src, chain, depth)
            return True
        return False

    def arrow(self, src: _Src, label: str, chain, depth, quiet: bool = False) -> bool:
        link = (label, label)
        try:
            import pyarrow as pa
            import pyarrow.ipc as ipc
            import pyarrow.parquet as pq
        except ImportError:
            self.mark_opaque(
                f"{label} (cannot be read here)", f"{label}（ここでは読めない）", chain
            )
            return True
        rows = self.r.max_table_rows
        try:
            source = (
                pa.BufferReader(src.data) if src.data is not None else pa.memory_map(src.f.name)
            )
            if label == "Parquet":
                pf = pq.ParquetFile(source)
                columns = pf.schema_arrow.names[: self.r.max_table_columns]
                batch = next(pf.iter_batches(batch_size=rows, columns=columns), None)
                table = pa.Table.from_batches([batch]) if batch is not None else None
            elif label == "Feather":
                import pyarrow.feather as feather

                table = feather.read_table(source).slice(0, rows)
            elif label == "Arrow IPC":
                reader = ipc.open_file(source)
                table = (
                    pa.Table.from_batches([reader.get_batch(0)])
                    if reader.num_record_batches
                    else None
                )
            else:
                reader = ipc.open_stream(source)
                table = pa.Table.from_batches([reader.read_next_batch()])
            cells = _arrow_rows(table, rows, self.r.max_table_columns) if table is not None else []
        except (pa.ArrowException, OSError, ValueError, StopIteration, IndexError, SystemError):
            if quiet:
                return False
            self.mark_opaque(
                f"{label} that cannot be read here", f"ここでは読めない {label}", chain
            )
            return True
        self.table(cells, (*chain, link), depth)
        return True

    def sqlite(self, src: _Src, chain, depth) -> None:
        import sqlite3

        data = self.whole(src)
        if data is None:
            self.mark_opaque(
                f"an SQLite database too big to read here ({_size(src.size)})",
                f"ここで読むには大きすぎる SQLite データベース（{_size(src.size)}）",
                chain,
            )
            return
        deadline = time.monotonic() + self.r.sqlite_seconds
        with tempfile.TemporaryDirectory(prefix="visiting-recognise-") as tmp:
            path = os.path.join(tmp, "copy.sqlite")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            try:
                conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
            except sqlite3.Error:
                self.mark_opaque(
                    "an SQLite database that cannot be opened",
                    "開けない SQLite データベース",
                    chain,
                )
                return
            try:
                conn.set_progress_handler(lambda: time.monotonic() > deadline, 10000)
                names = [
                    n
                    for (n,) in conn.execute(
                        "SELECT name FROM sqlite_master WHERE type='table' LIMIT 64"
                    )
                ]
                for table in names:
                    if self.raw_found or not self.member():
                        return
                    quoted = '"' + table.replace('"', '""') + '"'
                    cur = conn.execute(f"SELECT * FROM {quoted} LIMIT {self.r.max_table_rows}")
                    header = [c[0] for c in cur.description or ()]
                    rows = [header, *cur.fetchall()]
                    link = (f"SQLite table {table!r}", f"SQLite の表 {table!r}")
                    self.table(rows, (*chain, link), depth)
            except sqlite3.Error:
                self.mark_opaque(
                    "an SQLite database that cannot be read here",
                    "ここでは読めない SQLite データベース",
                    chain,
                )
            finally:
                conn.close()


def _arrow_rows(table, rows: int, columns: int) -> list[list]:
    import pyarrow as pa
    import pyarrow.compute as pc

    table = table.slice(0, rows).select(list(range(min(columns, table.num_columns))))
    table.validate(full=True)  # damaged offsets or text raise here (ArrowInvalid), not below
    out_columns = []
    for col in table.columns:
        try:
            # through binary: text that is not UTF-8 is read with replacements, not refused
            raw = pc.cast(pc.cast(col, pa.string()), pa.binary()).to_pylist()
            values = [None if v is None else v.decode("utf-8", "replace") for v in raw]
        except (pa.ArrowException, NotImplementedError):
            values = [v if isinstance(v, (bytes, bytearray)) else str(v) for v in col.to_pylist()]
        out_columns.append(values)
    return [list(table.column_names)] + [list(r) for r in zip(*out_columns, strict=True)]
