"""Archives: zip (and Excel workbooks, which are zips) and tar, member by member."""

from __future__ import annotations

import html
import lzma
import re
import tarfile
import zipfile
import zlib

from .content import KIB, MIB, _Src


class Archives:
    """Part of `_Scan`: members named like raw data are found by name, the rest read."""

    def archive(self, src: _Src, head: bytes, chain, depth, name) -> bool:
        if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
            self.zip(src, chain, depth)
            return True
        if len(head) >= 262 and head[257:262] == b"ustar":
            self.tar(src, chain, depth)
            return True
        return False

    def zip(self, src: _Src, chain, depth, fallback: bool = True) -> None:
        try:
            z = zipfile.ZipFile(src.fileobj())
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            if fallback:
                self.binary(src, src.read(0, 64 * KIB), chain, depth)
            return
        with z:
            names = set(z.namelist()[:10000])
            if "xl/workbook.xml" in names:
                self.xlsx(z, chain, depth)
                return
            for info in z.infolist():
                if self.raw_found or not self.member():
                    return
                if info.is_dir():
                    continue
                link = (f"zip member {info.filename!r}", f"zip のメンバー {info.filename!r}")
                found = self.r.sniffer.classify_name(info.filename)
                if found is not None and found.kind != "pattern":
                    self.sniffed(found, 0, (*chain, link))
                    return
                if info.flag_bits & 1:
                    self.mark_opaque(
                        "an encrypted zip member", "暗号化された zip のメンバー", (*chain, link)
                    )
                    continue
                try:
                    with z.open(info) as member:
                        data = member.read(self.allowance())
                except (zipfile.BadZipFile, OSError, ValueError, RuntimeError, EOFError,
                        NotImplementedError, zlib.error, lzma.LZMAError):  # fmt: skip
                    self.mark_opaque(
                        "a zip member that cannot be read here",
                        "ここでは読めない zip のメンバー",
                        (*chain, link),
                    )
                    continue
                self.spend(len(data))
                self.blob(_Src.of(data), (*chain, link), depth + 1, info.filename)

    def tar(self, src: _Src, chain, depth) -> None:
        try:
            with tarfile.open(fileobj=src.fileobj(), mode="r:") as t:
                for member in t:
                    if self.raw_found or not self.member():
                        return
                    if not member.isfile():
                        continue
                    link = (f"tar member {member.name!r}", f"tar のメンバー {member.name!r}")
                    found = self.r.sniffer.classify_name(member.name)
                    if found is not None and found.kind != "pattern":
                        self.sniffed(found, 0, (*chain, link))
                        return
                    if member.isreg() and not member.issparse():
                        # read where it lies: a tar cut short (one terminal chunk of
                        # `tar cf - f | base64`) still gives the part of the member it holds
                        at = member.offset_data
                        data = src.read(at, at + min(member.size, self.allowance()))
                    else:
                        f = t.extractfile(member)
                        if f is None:
                            continue
                        data = f.read(self.allowance())
                    self.spend(len(data))
                    self.blob(_Src.of(data), (*chain, link), depth + 1, member.name)
        except (tarfile.TarError, EOFError, OSError):
            return  # a tar cut short by a window or a budget ends here

    def xlsx(self, z: zipfile.ZipFile, chain, depth) -> None:
        def read(name: str) -> str:
            try:
                with z.open(name) as f:
                    data = f.read(min(self.allowance(), 8 * MIB))
            except (KeyError, zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError,
                    EOFError, zlib.error):  # fmt: skip
                self.mark_opaque(
                    f"an Excel part that cannot be read here ({name})",
                    f"ここでは読めない Excel の部分（{name}）",
                    chain,
                )
                return ""
            self.spend(len(data))
            return data.decode("utf-8", "replace")

        shared_xml = read("xl/sharedStrings.xml")
        shared = [
            html.unescape("".join(re.findall(r"<t\b[^>]*>(.*?)</t>", si, re.S)))
            for si in re.findall(r"<si>(.*?)</si>", shared_xml, re.S)
        ]
        self.ids(shared_xml.encode(), (*chain, ("Excel shared strings", "Excel の共有文字列")))
        sheets = sorted(n for n in z.namelist() if re.match(r"xl/worksheets/sheet\d+\.xml$", n))
        for name in sheets:
            if self.raw_found or not self.member():
                return
            rows = _xlsx_rows(read(name), shared, self.r.max_table_rows)
            sheet = name.rsplit("/", 1)[-1][:-4]
            self.table(rows, (*chain, (f"Excel {sheet}", f"Excel の {sheet}")), depth)


def _xlsx_rows(xml: str, shared: list[str], limit: int) -> list[list[str]]:
    rows = []
    for row in re.finditer(r"<row\b[^>]*>(.*?)</row>", xml, re.S):
        cells: dict[int, str] = {}
        for c in re.finditer(r"<c\b([^>]*?)(?:/>|>(.*?)</c>)", row.group(1), re.S):
            attrs, body = c.group(1), c.group(2) or ""
            ref = re.search(r'\br="([A-Z]+)', attrs)
            col = 0
            for ch in ref.group(1) if ref else "":
                col = col * 26 + ord(ch) - 64
            kind = re.search(r'\bt="(\w+)"', attrs)
            v = re.search(r"<v>(.*?)</v>", body, re.S)
            if kind and kind.group(1) == "s" and v:
                i = int(v.group(1)) if v.group(1).isdigit() else -1
                value = shared[i] if 0 <= i < len(shared) else ""
            elif kind and kind.group(1) == "inlineStr":
                value = "".join(re.findall(r"<t\b[^>]*>(.*?)</t>", body, re.S))
            else:
                value = v.group(1) if v else ""
            cells[col or len(cells) + 1] = html.unescape(value)
        if cells:
            rows.append([cells.get(i, "") for i in range(1, max(cells) + 1)])
        if len(rows) > limit:
            break
    return rows
