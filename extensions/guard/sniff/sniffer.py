"""The `Sniffer`: raw data by name, by a file's windows, by bytes through containers, by text."""

from __future__ import annotations

import fnmatch
import html
import io
import json
import lzma
import os
import re
import struct
import tarfile
import zipfile
from collections.abc import Iterable, Iterator

from . import records
from .findings import (
    COMPRESSION_SUFFIXES,
    DEFAULT_NAME_PATTERNS,
    KINDS,
    STORE_DIR_PATTERNS,
    Finding,
)
from .records import _FASTQ, _SAM_HEADERS, _VCF_HEADERS, _record_candidates, _record_kind
from .streams import _bunzip, _inflate, _unxz

_CONTROL_RUNS = re.compile(rb"[\x00-\x08\x0e-\x1f]+")
_STORE_RX = [(re.compile(fnmatch.translate(p)), kind) for p, kind in STORE_DIR_PATTERNS]
KIB = 1024
MIB = 1024 * KIB


class Sniffer:
    """Classifies names, bytes, text and files; every read is bounded.

    head_bytes / tail_bytes: the windows read from a file;
    decompressed_bytes: how much of a compressed stream is inflated;
    archive_members: how many members of a zip or tar are looked at;
    min_records: how many lines of one record shape make raw data.
    """

    def __init__(
        self,
        name_patterns: Iterable = DEFAULT_NAME_PATTERNS,
        head_bytes: int = 1 * MIB,
        tail_bytes: int = 256 * KIB,
        decompressed_bytes: int = 4 * MIB,
        archive_members: int = 256,
        max_depth: int = 4,
        min_records: int = 3,
        disabled_kinds: Iterable[str] = (),
    ):
        self.name_patterns: list[tuple[str, str]] = []
        for p in name_patterns:
            pattern, kind = (p, "pattern") if isinstance(p, str) else p
            self.name_patterns.append((pattern.lower(), kind))
        self._name_rx = [
            (re.compile(fnmatch.translate(p)), p, kind) for p, kind in self.name_patterns
        ]
        self.head_bytes = head_bytes
        self.tail_bytes = tail_bytes
        self.decompressed_bytes = decompressed_bytes
        self.archive_members = archive_members
        self.max_depth = max_depth
        self.min_records = min_records
        self.disabled = frozenset(disabled_kinds)
        unknown = self.disabled - set(KINDS)
        if unknown:
            raise ValueError(f"disabled_kinds: unknown kind(s) {sorted(unknown)}")

    def _found(self, kind: str, by: str, detail: str = "") -> Finding | None:
        return None if kind in self.disabled else Finding(kind, by, detail)

    # -- names ---------------------------------------------------------------

    def classify_name(self, name: str) -> Finding | None:
        """Raw data by its name: the base name, or a store folder on its path.

        Platform patterns are matched against the base name and the whole path.
        """
        if not name:
            return None
        path = name.replace("\\", "/").lower()
        parts = [p for p in path.split("/") if p]
        if not parts:
            return None
        base = parts[-1]
        stripped = base
        for suffix in COMPRESSION_SUFFIXES:
            if stripped.endswith(suffix):
                stripped = stripped[: -len(suffix)]
                break
        for rx, pattern, kind in self._name_rx:
            if kind == "pattern":
                if rx.match(base) or rx.match(path):
                    return self._found(kind, f"its name matching {pattern!r}")
            elif rx.match(stripped):
                return self._found(kind, f"its name ({pattern})")
        for part in parts:
            for rx, kind in _STORE_RX:
                if rx.match(part):
                    return self._found(kind, f"its place in the store {part!r}")
        return None

    # -- files ---------------------------------------------------------------

    def classify_path(self, path: str | os.PathLike) -> Finding | None:
        """Raw data by the content of a file (or the store it belongs to)."""
        path = os.fspath(path)
        finding = self._store_of(path)
        if finding is not None:
            return finding
        if os.path.isdir(path):
            return None
        try:
            size = os.path.getsize(path)
            with open(path, "rb") as f:
                head = f.read(self.head_bytes)
                if zipfile.is_zipfile(f) if head[:2] == b"PK" else False:
                    f.seek(0)
                    return self._zip(f, os.path.basename(path), 1)
                tail = b""
                if size > len(head):
                    f.seek(max(len(head), size - self.tail_bytes))
                    tail = f.read(self.tail_bytes)
        except OSError:
            return None
        finding = self.classify_bytes(head, os.path.basename(path), truncated=bool(tail))
        if finding is None and tail:
            finding = self._text(tail, partial_head=True)
            if finding is not None:
                finding = finding.inside("the end of the file")
        return finding

    def _store_of(self, path: str) -> Finding | None:
        """A Hail MatrixTable or VCF Zarr store that `path` is part of, by its metadata."""
        d = path if os.path.isdir(path) else os.path.dirname(path)
        for _ in range(6):
            if not d or d == os.path.dirname(d):
                return None
            try:
                names = set(os.listdir(d))
            except OSError:
                return None
            if "metadata.json.gz" in names and {"rows", "cols"} <= names:
                if self._hail_metadata(os.path.join(d, "metadata.json.gz")):
                    return self._found(
                        "hail-matrixtable", f"the MatrixTable metadata in {os.path.basename(d)!r}"
                    )
            if names & {".zgroup", "zarr.json"} and (
                "call_genotype" in names or "variant_position" in names
            ):
                return self._found("vcf-zarr", f"the VCF Zarr arrays in {os.path.basename(d)!r}")
            d = os.path.dirname(d)
        return None

    def _hail_metadata(self, path: str) -> bool:
        try:
            with open(path, "rb") as f:
                data = _inflate(f.read(64 * KIB), 256 * KIB)
        except (OSError, ValueError):
            return False
        return b"MatrixTableSpec" in data

    # -- bytes ---------------------------------------------------------------

    def classify_bytes(
        self, data: bytes, name: str = "", truncated: bool = False, depth: int = 0
    ) -> Finding | None:
        """Raw data in `data` (the first bytes of something, or all of it)."""
        if not data or depth > self.max_depth:
            return None
        magic = self._magic(data)
        if magic is not None:
            return magic
        if data[:2] == b"\x1f\x8b":
            bgzf = len(data) >= 18 and data[3] & 4 and data[12:14] == b"BC"
            try:
                inner = _inflate(data, self.decompressed_bytes)
            except ValueError:
                inner = b""
            if inner:
                container = "BGZF" if bgzf else "gzip"
                if inner[:4] == b"BAM\x01":
                    return self._found("bam", "its magic bytes (BAM in BGZF)")
                if inner[:3] == b"BCF" and inner[3:4] in (b"\x02", b"\x01"):
                    return self._found("bcf", "its magic bytes (BCF in BGZF)")
                if _is_tar(inner):
                    return self._tar(inner, name, depth + 1, container)
                found = self.classify_bytes(inner, _strip(name), True, depth + 1)
                return found.inside(container) if found else None
            return None
        for magic_bytes, container, decompress in (
            (b"BZh", "bzip2", _bunzip),
            (b"\xfd7zXZ\x00", "xz", _unxz),
        ):
            if data.startswith(magic_bytes):
                try:
                    inner = decompress(data, self.decompressed_bytes)
                except (OSError, ValueError, EOFError, lzma.LZMAError):
                    return None
                if _is_tar(inner):
                    return self._tar(inner, name, depth + 1, container)
                found = self.classify_bytes(inner, _strip(name), True, depth + 1)
                return found.inside(container) if found else None
        if data[:4] == b"PK\x03\x04":
            return self._zip(io.BytesIO(data), name, depth + 1)
        if _is_tar(data):
            return self._tar(data, name, depth + 1, "tar")
        return self._text(data, partial_tail=truncated)

    def classify_magic(self, data: bytes) -> Finding | None:
        """Raw data by the magic bytes at the start of `data` alone (no containers, no text)."""
        return self._magic(data)

    def _magic(self, data: bytes) -> Finding | None:
        if data[:4] == b"CRAM":
            return self._found("cram", "its magic bytes (CRAM)")
        if data[:4] == b"BAM\x01":
            return self._found("bam", "its magic bytes (BAM)")
        if data[:3] == b"BCF" and data[3:4] in (b"\x02", b"\x01"):
            return self._found("bcf", "its magic bytes (BCF)")
        if len(data) >= 20 and data[16:20] == b"bgen":
            offset, header = struct.unpack("<II", data[:8])
            if 20 <= header <= offset + 4:
                return self._found("bgen", "its magic bytes (BGEN)")
        if data[:2] == b"\x6c\x1b" and len(data) >= 3:
            if data[2] == 0x01:
                return self._found("plink", "its magic bytes (PLINK .bed)")
            if data[2] in (0x02, 0x03, 0x04, 0x10, 0x11, 0x20, 0x21):
                return self._found("plink", "its magic bytes (PLINK 2 .pgen)")
        return None

    # -- archives ------------------------------------------------------------

    def _zip(self, fileobj, name: str, depth: int) -> Finding | None:
        if depth > self.max_depth:
            return None
        try:
            z = zipfile.ZipFile(fileobj)
        except (zipfile.BadZipFile, OSError, ValueError):
            return None
        with z:
            for info in z.infolist()[: self.archive_members]:
                if info.is_dir():
                    continue
                where = f"zip member {info.filename!r}"
                found = self.classify_name(info.filename)
                if found is None:
                    try:
                        with z.open(info) as member:
                            data = member.read(self.head_bytes)
                    except (zipfile.BadZipFile, OSError, ValueError, RuntimeError, EOFError):
                        continue  # encrypted or damaged members are not readable here
                    truncated = info.file_size > len(data)
                    if data[:4] == b"PK\x03\x04" and not truncated:
                        found = self._zip(io.BytesIO(data), info.filename, depth + 1)
                    else:
                        found = self.classify_bytes(data, info.filename, truncated, depth)
                if found is not None:
                    return found.inside(where)
        return None

    def _tar(self, data: bytes, name: str, depth: int, container: str) -> Finding | None:
        if depth > self.max_depth:
            return None
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as t:
                for n, member in enumerate(t):
                    if n >= self.archive_members:
                        break
                    if not member.isfile():
                        continue
                    where = f"{container} member {member.name!r}"
                    found = self.classify_name(member.name)
                    if found is None:
                        f = t.extractfile(member)
                        if f is None:
                            continue
                        chunk = f.read(self.head_bytes)
                        found = self.classify_bytes(
                            chunk, member.name, member.size > len(chunk), depth
                        )
                    if found is not None:
                        return found.inside(where)
        except (tarfile.TarError, EOFError, OSError):
            return None  # a tar cut short by the decompression bound ends here
        return None

    # -- text ----------------------------------------------------------------

    def classify_text(self, text: str) -> Finding | None:
        return self._text(text.encode("utf-8", "surrogatepass"))

    def _text(
        self, data: bytes, partial_head: bool = False, partial_tail: bool = False
    ) -> Finding | None:
        if b"\x00" in data:
            # binary, or text behind NUL bytes: read what lies between them as lines
            data = _CONTROL_RUNS.sub(b"\n", data)
        text = data.decode("utf-8", "replace")
        stripped = text.lstrip("\ufeff \t\r\n")
        if stripped[:1] in "{[" and stripped:
            found = self._json(stripped)
            if found is not None:
                return found
        if re.search(r"<(html|pre|table|body|div|td)\b", text[:65536], re.I) or "&#9;" in text:
            found = self._lines(_html_text(text), partial_head, partial_tail)
            if found is not None:
                return found.inside("HTML text")
        return self._lines(text, partial_head, partial_tail)

    def _json(self, text: str) -> Finding | None:
        try:
            doc = json.loads(text)
        except ValueError:
            # cut off by a window: undo the string escapes and read it as text
            unescaped = text.replace("\\t", "\t").replace("\\n", "\n").replace('\\"', '"')
            found = self._lines(unescaped, False, True)
            return found.inside("JSON text") if found else None
        if isinstance(doc, dict) and isinstance(doc.get("cells"), list):
            return self._notebook(doc)
        strings = "\n".join(_json_strings(doc, budget=self.decompressed_bytes))
        found = self._lines(strings, False, False)
        return found.inside("JSON strings") if found else None

    def _notebook(self, nb: dict) -> Finding | None:
        cells = [c for c in nb["cells"] if isinstance(c, dict)]
        if "notebook-output" not in self.disabled:
            for cell in cells:
                for out in cell.get("outputs") or []:
                    if isinstance(out, dict):
                        found = self.classify_output(out)
                        if found is not None:
                            return found
        for cell in cells:
            source = cell.get("source")
            source = "".join(source) if isinstance(source, list) else source
            if isinstance(source, str):
                found = self._lines(source, False, False)
                if found is not None:
                    return found.inside(f"a {cell.get('cell_type', 'notebook')} cell")
        return None

    def classify_output(self, out: dict) -> Finding | None:
        """Raw records in one notebook output (stream, display data, error)."""
        if "notebook-output" in self.disabled:
            return None
        text = output_text(out)
        if not text:
            return None
        found = self._lines(text, False, False)
        if found is None and re.search(r"<(pre|table|td)\b", text, re.I):
            found = self._lines(_html_text(text), False, False)
        return found.inside("a notebook output") if found else None

    def classify_lines(
        self, text: str, partial_head: bool = False, partial_tail: bool = False
    ) -> Finding | None:
        """Raw records in plain text by headers and record shapes (no JSON, HTML or containers).

        partial_head / partial_tail: the text is a window cut inside a line at that end.
        """
        return self._lines(text, partial_head, partial_tail)

    def _lines(self, text: str, partial_head: bool, partial_tail: bool) -> Finding | None:
        """Raw data by headers and record shapes; only candidate lines are split and checked."""
        if partial_head:
            text = text[text.find("\n") + 1 :] if "\n" in text else ""
        if partial_tail and "\n" in text:
            text = text[: text.rfind("\n")]
        if not text:
            return None
        at_line_start = "\n" + text
        if any("\n" + h in at_line_start for h in _VCF_HEADERS):
            found = self._found("vcf", "its VCF header")
            if found:
                return found
        if any("\n" + h in at_line_start for h in _SAM_HEADERS):
            found = self._found("sam", "its SAM header")
            if found:
                return found
        kinds: dict[str, int] = {}
        for line in _record_candidates(text) if records.PREFILTER else text.splitlines():
            # a line worth a closer look: four tabs or more, or five spaces or more
            if line.count("\t") < 4 and line.count(" ") < 5:
                continue
            line = line.strip("\r")
            if line.startswith("#"):
                continue
            kind = _record_kind(line)
            if kind is None or kind in self.disabled:
                continue
            kinds[kind] = n = kinds.get(kind, 0) + 1
            if n >= self.min_records:
                return Finding(kind, f"{n} lines shaped like its records")
        if "\n+" in at_line_start and "\n@" in at_line_start:
            n = sum(1 for m in _FASTQ.finditer(text) if len(m.group(2)) == len(m.group(1)))
            if n >= 2:
                return self._found("fastq", f"{n} FASTQ records")
        return None


def output_text(out: dict) -> str:
    """The text of a notebook output: streams, text and HTML data, tracebacks."""
    parts = []
    text = out.get("text")
    if text:
        parts.append(text if isinstance(text, str) else "".join(map(str, text)))
    for mime, value in (out.get("data") or {}).items():
        if mime.startswith("image/") and mime != "image/svg+xml":
            continue
        if isinstance(value, list):
            value = "".join(map(str, value))
        parts.append(value if isinstance(value, str) else json.dumps(value))
    if out.get("traceback"):
        parts.append("\n".join(map(str, out["traceback"])))
    return "\n".join(parts)


def _json_strings(doc, budget: int) -> Iterator[str]:
    stack = [doc]
    used = 0
    while stack and used < budget:
        item = stack.pop()
        if isinstance(item, str):
            used += len(item)
            yield item
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            if item and all(isinstance(x, str) for x in item):
                # notebook-style lines keep their newlines; other lists are one item each
                sep = "" if all(x.endswith("\n") for x in item[:-1]) else "\n"
                joined = sep.join(item)
                used += len(joined)
                yield joined
            else:
                stack.extend(reversed(item))


def _html_text(text: str) -> str:
    text = re.sub(r"(?i)</t[dh]>\s*<t[dh][^>]*>", "\t", text)
    text = re.sub(r"(?i)</tr>|<br\s*/?>", "\n", text)
    text = re.sub(r"<[^>]*>", "", text)
    return html.unescape(text)


def _strip(name: str) -> str:
    lower = name.lower()
    for suffix in COMPRESSION_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _is_tar(data: bytes) -> bool:
    return len(data) >= 262 and data[257:262] == b"ustar"
