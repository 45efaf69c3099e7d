"""Documents: JSON, printed Python literals and notebooks, with their tables and strings."""

from __future__ import annotations

import ast
import base64
import binascii
import json
import re

from .content import MIB, _Src, json_cost, json_tokens
from .media import _KNOWN


class Documents:
    """Part of `_Scan`: a document's tables as rows, its strings as text, its images as images."""

    def json(self, data: bytes, chain, depth) -> bool:
        if json_cost(len(data), json_tokens(data)) > self.r.json_bytes:
            return False  # read as text, as a text too big to hold is
        try:
            doc = json.loads(data.removeprefix(b"\xef\xbb\xbf"))
        except (ValueError, RecursionError):
            doc = self.python_literal(data)
            if doc is None:
                return False
            self.json_doc(doc, (*chain, ("a Python literal", "Python のリテラル")), depth)
            return True
        if (
            isinstance(doc, dict)
            and isinstance(doc.get("content"), dict)
            and doc.get("type") == "notebook"
        ):
            doc = doc["content"]  # a contents-API model of a notebook
        if isinstance(doc, dict) and isinstance(doc.get("cells"), list):
            self.notebook(doc, chain, depth)
        else:
            self.json_doc(doc, (*chain, ("JSON", "JSON")), depth)
        return True

    def python_literal(self, data: bytes):
        """A printed dict or list (`print(df.to_dict())`, `print(g.tolist())`), read safely."""
        if len(data) > 2 * MIB:
            return None
        try:
            return ast.literal_eval(data.decode("utf-8", "replace").strip())
        except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError):
            return None

    def notebook(self, nb: dict, chain, depth) -> None:
        for i, cell in enumerate(nb["cells"]):
            if not isinstance(cell, dict) or self.raw_found:
                continue
            where = (f"cell {i + 1} of a notebook", f"ノートブックのセル {i + 1}")
            for out in cell.get("outputs") or []:
                if not isinstance(out, dict):
                    continue
                for label, value in _output_parts(out):
                    if self.raw_found:
                        return
                    link = (f"its output ({label})", f"その出力（{label}）")
                    if label.startswith("image/") and label != "image/svg+xml":
                        self.image(value, (*chain, where, link), depth)
                    else:
                        self.text_unit(
                            _Src.of(value.encode("utf-8", "surrogatepass")),
                            (*chain, where, link),
                            depth + 1,
                        )
            source = cell.get("source")
            source = "".join(source) if isinstance(source, list) else source
            if isinstance(source, str) and source:
                link = ("its source", "そのソース")
                self.text_unit(
                    _Src.of(source.encode("utf-8", "surrogatepass")),
                    (*chain, where, link),
                    depth + 1,
                )
            for att in (cell.get("attachments") or {}).values():
                if isinstance(att, dict):
                    for mime, value in att.items():
                        if isinstance(value, str):
                            self.image(
                                value,
                                (*chain, where, (f"an attachment ({mime})", f"添付（{mime}）")),
                                depth,
                            )
        if nb.get("metadata"):
            self.json_doc(
                nb["metadata"], (*chain, ("notebook metadata", "ノートブックのメタデータ")), depth
            )

    def image(self, value, chain, depth) -> None:
        """An image in a notebook: passed if it is one, read as encoded content if not."""
        if isinstance(value, list):
            value = "".join(map(str, value))
        if not isinstance(value, str):
            return
        raw = re.sub(rb"\s+", b"", value.encode("ascii", "replace"))
        try:
            start = base64.b64decode(raw[:64] + b"=" * (-len(raw[:64]) % 4))
        except (binascii.Error, ValueError):
            start = b""
        if start.startswith(b"\x89PNG"):
            try:
                image = base64.b64decode(raw + b"=" * (-len(raw) % 4))
            except (binascii.Error, ValueError):
                image = b""
            self.png(_Src.of(image), chain, depth)
        elif not (any(start.startswith(m) for m, _ in _KNOWN) or start[:4] == b"RIFF"):
            self.text_unit(_Src.of(raw), chain, depth + 1)

    def json_doc(self, doc, chain, depth) -> None:
        """Tables in JSON (records, rows, columns) and its strings, long ones one by one."""
        strings: list[str] = []
        budget = [self.allowance()]

        def walk(item, level: int) -> None:
            if budget[0] <= 0 or level > 64:
                return
            if isinstance(item, str):
                budget[0] -= len(item)
                strings.append(item)
                return
            rows = _json_table(item)
            if rows is not None:
                self.table(rows, (*chain, ("a JSON table", "JSON の表")), depth)
                return
            if isinstance(item, dict):
                for key, value in item.items():
                    strings.append(str(key))
                    walk(value, level + 1)
            elif isinstance(item, (list, tuple)):
                if item and all(isinstance(x, str) for x in item):
                    sep = "" if all(x.endswith("\n") for x in item[:-1]) else "\n"
                    joined = sep.join(item)
                    budget[0] -= len(joined)
                    strings.append(joined)
                    if sep and self.member():
                        rows = self.columns_to_rows(item)
                        if rows:
                            self.table(
                                rows,
                                (*chain, ("a JSON list", "JSON のリスト")),
                                depth,
                                header=False,
                            )
                    return
                for x in item:
                    walk(x, level + 1)

        walk(doc, 0)
        short = []
        for s in strings:
            if self.raw_found:
                return
            if len(s) >= 256 or "\n" in s:
                self.text_unit(
                    _Src.of(s.encode("utf-8", "surrogatepass")),
                    (*chain, ("a JSON string", "JSON の文字列")),
                    depth + 1,
                )
            else:
                short.append(s)
        if short:
            self.text_unit(
                _Src.of("\n".join(short).encode("utf-8", "surrogatepass")),
                (*chain, ("its short strings", "その短い文字列")),
                depth + 1,
            )


def _output_parts(out: dict) -> list[tuple[str, str]]:
    parts = []
    text = out.get("text")
    if text:
        parts.append(("stream", text if isinstance(text, str) else "".join(map(str, text))))
    for mime, value in (out.get("data") or {}).items():
        if isinstance(value, list):
            value = "".join(map(str, value))
        if not isinstance(value, str):
            value = json.dumps(value)
        parts.append((mime, value))
    if out.get("traceback"):
        parts.append(("traceback", "\n".join(map(str, out["traceback"]))))
    return parts


def _scalar(x) -> bool:
    return x is None or isinstance(x, (str, int, float, bool))


def _json_table(item) -> list | None:
    """Rows of a JSON table: records, rows, or columns (pandas' orients); None if not one."""
    if isinstance(item, (list, tuple)) and len(item) >= 2:
        if all(isinstance(x, dict) for x in item[:50]) and all(
            all(_scalar(v) for v in x.values()) for x in item[:50]
        ):
            keys = list(item[0].keys())
            return [keys] + [list(x.values()) for x in item if isinstance(x, dict)]
        if all(isinstance(x, (list, tuple)) for x in item[:50]) and all(
            all(_scalar(v) for v in x[:100]) for x in item[:50]
        ):
            return [list(x) for x in item if isinstance(x, (list, tuple))]
    if isinstance(item, dict) and len(item) >= 2:
        values = list(item.values())
        if all(isinstance(v, (list, tuple)) and all(_scalar(x) for x in v[:50]) for v in values):
            n = len(values[0])
            if n >= 2 and all(len(v) == n for v in values):
                return [list(item.keys())] + [list(r) for r in zip(*values, strict=True)]
        if all(isinstance(v, dict) for v in values) and all(
            all(_scalar(x) for x in list(v.values())[:50]) for v in values
        ):
            index = list(values[0].keys())
            if len(index) >= 2 and all(list(v.keys()) == index for v in values[:50]):
                return [list(item.keys())] + [[v.get(i) for v in values] for i in index]
    return None
