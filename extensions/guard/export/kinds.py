"""What a frozen file is by its content, and whether that agrees with its suffix.

A results file is named for what it is: a `.png` starts like a PNG, a `.csv` is
text, a `.ipynb` is a notebook. The content is sniffed from its first bytes
(signatures of images, documents, compressed streams, archives and databases)
and, for the text kinds, by decoding it; a `.png` that is a gzip'd VCF fails.
A suffix the platform allows but this module knows no signature for passes when
the content is none of the known other kinds.

Only the head is read (`HEAD`, `TEXT_PROBE`), except a JSON document or a notebook, which
is parsed whole within `bounded.JSON_BUDGET` (`sniff` raises TooLarge beyond it).
"""

from __future__ import annotations

from pathlib import Path

from .bounded import TooLarge, read_json

HEAD = 64 * 1024
TEXT_PROBE = 1024 * 1024

# (signature, offset, kind, media type): what the first bytes say a content is
SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", 0, "PNG image", "image/png"),
    (b"\xff\xd8\xff", 0, "JPEG image", "image/jpeg"),
    (b"GIF87a", 0, "GIF image", "image/gif"),
    (b"GIF89a", 0, "GIF image", "image/gif"),
    (b"%PDF-", 0, "PDF document", "application/pdf"),
    (b"\x1f\x8b", 0, "gzip data", "application/gzip"),
    (b"PK\x03\x04", 0, "zip archive", "application/zip"),
    (b"PK\x05\x06", 0, "zip archive", "application/zip"),
    (b"BZh", 0, "bzip2 data", "application/x-bzip2"),
    (b"\xfd7zXZ\x00", 0, "xz data", "application/x-xz"),
    (b"\x28\xb5\x2f\xfd", 0, "zstd data", "application/zstd"),
    (b"\x04\x22\x4d\x18", 0, "lz4 data", "application/x-lz4"),
    (b"7z\xbc\xaf\x27\x1c", 0, "7-zip archive", "application/x-7z-compressed"),
    (b"ustar", 257, "tar archive", "application/x-tar"),
    (b"CRAM", 0, "CRAM file", "application/octet-stream"),
    (b"BCF", 0, "BCF file", "application/octet-stream"),
    (b"BAM\x01", 0, "BAM file", "application/octet-stream"),
    (b"SQLite format 3\x00", 0, "SQLite database", "application/vnd.sqlite3"),
    (b"PAR1", 0, "Parquet file", "application/vnd.apache.parquet"),
    (b"ARROW1", 0, "Arrow file", "application/vnd.apache.arrow.file"),
    (b"\x93NUMPY", 0, "NumPy array", "application/octet-stream"),
    (b"\x89HDF\r\n\x1a\n", 0, "HDF5 file", "application/x-hdf5"),
    (b"\x7fELF", 0, "program", "application/octet-stream"),
)
# suffix -> the kind its content must be (text kinds are checked by decoding)
BINARY_SUFFIXES = {
    ".png": "PNG image",
    ".jpg": "JPEG image",
    ".jpeg": "JPEG image",
    ".gif": "GIF image",
    ".pdf": "PDF document",
}
TEXT_SUFFIXES = {
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".ipynb": "application/x-ipynb+json",
}


def signature(head: bytes) -> tuple[str, str] | None:
    """(kind, media type) the first bytes show, or None."""
    for sig, offset, kind, media in SIGNATURES:
        if head[offset : offset + len(sig)] == sig:
            return kind, media
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "Python pickle", "application/octet-stream"
    return None


def read_text(path: Path, limit: int = TEXT_PROBE) -> str | None:
    """The file's first `limit` bytes as text (UTF-8, with or without a BOM), or None when
    they are not text (a NUL, control bytes, or bytes UTF-8 cannot decode)."""
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    cut = len(data) > limit
    data = data[:limit]
    if b"\x00" in data:
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        if not (cut and e.start >= len(data) - 4):  # a character cut at the probe's end
            return None
        text = data[: e.start].decode("utf-8-sig")
    controls = sum(1 for c in text[:HEAD] if ord(c) < 32 and c not in "\t\n\r\f\v")
    return None if controls > 8 else text


def sniff(path: Path, name: str) -> tuple[bool, str, str]:
    """(whether the content agrees with the suffix of `name`, what it is, its media type);
    TooLarge for a JSON document too large to parse within the bound."""
    suffix = Path(name).suffix.lower()
    with open(path, "rb") as f:
        head = f.read(HEAD)
    found = signature(head)
    if suffix in BINARY_SUFFIXES:
        want = BINARY_SUFFIXES[suffix]
        if found and found[0] == want:
            return True, want, found[1]
        if found:
            return False, found[0], found[1]
        if read_text(path) is not None:
            return False, "text", "text/plain"
        return False, "no known format", "application/octet-stream"
    if suffix in TEXT_SUFFIXES:
        if found:
            return False, found[0], found[1]
        text = read_text(path)
        if text is None:
            return False, "binary content", "application/octet-stream"
        ok, what = _text_agrees(suffix, text, path)
        return ok, what, TEXT_SUFFIXES[suffix] if ok else "text/plain"
    if found:
        return False, found[0], found[1]
    return (
        True,
        f"no known other format (no signature is known for '{suffix}')",
        "application/octet-stream",
    )


def _text_agrees(suffix: str, text: str, path: Path) -> tuple[bool, str]:
    start = text.lstrip()[:4096].lower()
    if suffix == ".svg":
        return (
            "<svg" in start,
            "SVG image" if "<svg" in start else "text without an <svg> element",
        )
    if suffix in (".html", ".htm"):
        return (start.startswith("<"), "HTML" if start.startswith("<") else "text, not HTML")
    if suffix in (".json", ".ipynb"):
        try:
            doc = read_json(path)
        except TooLarge:
            raise
        except (ValueError, UnicodeDecodeError, RecursionError):
            return False, "text that is not JSON"
        if suffix == ".ipynb":
            is_nb = isinstance(doc, dict) and isinstance(doc.get("cells"), list)
            return is_nb, "a notebook" if is_nb else "JSON that is not a notebook"
        return True, "JSON"
    return True, "text"
