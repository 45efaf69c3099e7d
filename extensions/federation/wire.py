"""The compact wire format of a site half: raw arrays, and the variant keys only when needed.

As JSON (`SiteHalf.to_json`) every number of a half is text and every answer
repeats the site's variant keys: a half of 100,000 variants is megabytes, and
the client spends longer parsing it than the site spent computing it. In this
format the arrays travel as their bytes, and the keys at most once: the client
names the variant lists it already holds by their digest (`variants_digest`),
and a site whose list is one of them sends the digest alone.

    offset       what
    0            magic, 7 bytes: b"\\x93VSHALF"
    7            format version, 1 byte (VERSION)
    8            header length H, uint32 little-endian
    12           header: H bytes of UTF-8 JSON (below)
    D            data: 12 + H rounded up to a multiple of ALIGN (zero padding between);
                 every offset of the header counts from D
    D + offset   each array's bytes: little-endian, C order, at a multiple of ALIGN
    D + offset   the variant keys, UTF-8, joined by "\\n" (absent when omitted)

The header holds what `SiteHalf.to_json` holds apart from the arrays and keys:

    {"site", "dataset", "engine", "counts", "suppressed", "meta",
     "variants": {"count": N, "digest": "<32 hex digits>", "offset": int | null, "length": int},
     "arrays": [{"name", "dtype": "<f8", "shape": [...], "offset", "length",
                 "stored": "<f4" (when narrower than dtype)}, ...]}

`variants.offset` is null when the keys were left out: the reader must hold the
list of that digest. Arrays are numbers only (bool, int, uint, float) and
withheld values are NaN, as in the half. A float array whose every value a
float32 holds exactly (counts are whole numbers, held exactly up to 2**24; NaN
too) travels as float32, named by
`stored`, and is read back as `dtype` with the very same values. A reader
refuses anything else with
a `WireError` naming what is wrong: another magic or version, a truncated
message, a header that is not JSON, an array outside the data or of a dtype
that is not numeric, keys that do not match their digest, or keys left out
whose digest it does not hold.

JSON stays: errors are always JSON, and so are small answers (`worth_binary`)
and answers to a client whose Accept header does not name `MEDIA_TYPE`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Mapping, Sequence

import numpy as np

from .tasks.base import SiteHalf, Suppression

MEDIA_TYPE = "application/vnd.visiting.site-half"
JSON_TYPE = "application/json"
MAGIC = b"\x93VSHALF"
VERSION = 1
#: every array starts at a multiple of this many bytes from the start of the data
ALIGN = 64
#: magic, version, header length
PREFIX = struct.Struct("<7sBI")
#: numpy dtype kinds an array may have: bool, signed and unsigned integers, floats
NUMERIC_KINDS = "biuf"
#: what a wider float array travels as when every value of it fits (widest first)
#: float32 only: float16 would hold counts up to 2048 only, so a site's answer would grow when its
#: people passed that; in float32 it stays the same size from a few people to 16 million
NARROW_FLOATS = (np.dtype("<f4"),)
DIGEST_RE = re.compile(r"^[0-9a-f]{32}$")
#: a half carrying fewer bytes than this (aggregates, and about 16 a variant key) goes as JSON
SMALL_ANSWER = 4096
#: the most digests a client may name in one request (`variants_known`)
MAX_KNOWN = 32


class WireError(ValueError):
    """Bytes that are not a site half in this format; the message says what is wrong."""


# ---------------------------------------------------------------------------
# digests


def variants_digest(keys: Sequence[str]) -> str:
    """The name of a variant list: BLAKE2b (16 bytes, hex) of the keys joined by newlines."""
    return _digest(_keys_blob(keys))


def _keys_blob(keys: Sequence[str]) -> bytes:
    blob = "\n".join(keys).encode("utf-8")
    if blob.count(b"\n") != max(len(keys) - 1, 0):
        raise ValueError("a variant key holds a newline")
    return blob


def _digest(blob: bytes) -> str:
    return hashlib.blake2b(blob, digest_size=16).hexdigest()


def known_digests(value) -> set[str]:
    """The digests a request's `variants_known` names; ValueError naming the field otherwise."""
    if value is None:
        return set()
    if (
        not isinstance(value, list)
        or len(value) > MAX_KNOWN
        or not all(isinstance(d, str) and DIGEST_RE.match(d) for d in value)
    ):
        raise ValueError(
            f"variants_known: a list of at most {MAX_KNOWN} variant-list digests "
            "(32 lower-case hex digits each)"
        )
    return set(value)


# ---------------------------------------------------------------------------
# negotiation


def accepts_binary(accept: str | None) -> bool:
    """Whether an Accept header names MEDIA_TYPE (with a quality above zero)."""
    for item in (accept or "").split(","):
        kind, *params = (part.strip() for part in item.split(";"))
        if kind.lower() != MEDIA_TYPE:
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            return True
    return False


def worth_binary(half: SiteHalf) -> bool:
    """Whether `half` is large enough to go in this format rather than as JSON."""
    return half.nbytes() + 16 * len(half.variants) >= SMALL_ANSWER


# ---------------------------------------------------------------------------
# writing


def encode_half(half: SiteHalf, omit_variants: bool = False, digest: str | None = None) -> bytes:
    """`half` in this format; without its variant keys when `omit_variants` (the reader holds
    the list of their digest). `digest`: the half's `variants_digest`, if the caller has it."""
    blob = None if (omit_variants and digest) else _keys_blob(half.variants)
    digest = digest or _digest(blob)
    specs, parts, end = [], [], 0
    for name, value in half.arrays.items():
        a = np.asarray(value)
        if a.dtype.kind not in NUMERIC_KINDS:
            raise ValueError(f"array {name}: dtype {a.dtype} is not numeric")
        a = a.astype(a.dtype.newbyteorder("<"), order="C", copy=False)
        stored = _narrowest(a)
        offset = _aligned(end)
        spec = {
            "name": name,
            "dtype": a.dtype.str,
            "shape": list(a.shape),
            "offset": offset,
            "length": stored.nbytes,
        }
        if stored.dtype != a.dtype:
            spec["stored"] = stored.dtype.str
        specs.append(spec)
        parts.append((offset, memoryview(stored.reshape(-1).view(np.uint8))))
        end = offset + stored.nbytes
    variants = {"count": len(half.variants), "digest": digest, "offset": None, "length": 0}
    if not omit_variants:
        variants.update(offset=end, length=len(blob))
        parts.append((end, blob))
        end += len(blob)
    header = json.dumps(
        {
            "site": half.site,
            "dataset": half.dataset,
            "engine": half.engine,
            "counts": {k: int(v) for k, v in half.counts.items()},
            "suppressed": [s.to_json() for s in half.suppressed],
            "meta": half.meta,
            "variants": variants,
            "arrays": specs,
        },
        separators=(",", ":"),
    ).encode("utf-8")
    start = _aligned(PREFIX.size + len(header))
    out = bytearray(start + end)
    PREFIX.pack_into(out, 0, MAGIC, VERSION, len(header))
    out[PREFIX.size : PREFIX.size + len(header)] = header
    for offset, data in parts:
        out[start + offset : start + offset + len(data)] = data
    return bytes(out)


def _narrowest(a: np.ndarray) -> np.ndarray:
    """`a`, or `a` as float32 when that holds every value of it exactly.

    Counts (AC, AN, people) are whole numbers held as float64, NaN where
    withheld: float32 holds them exactly up to 2**24.
    """
    if a.dtype.kind != "f" or a.dtype.itemsize <= 4 or not a.size:
        return a
    with np.errstate(over="ignore", invalid="ignore"):
        narrow = a
        for dtype in NARROW_FLOATS:  # widest first: what one cannot hold, a narrower cannot
            candidate = a.astype(dtype)
            if not np.array_equal(candidate.astype(a.dtype), a, equal_nan=True):
                break
            narrow = candidate
    return narrow


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


# ---------------------------------------------------------------------------
# reading


def decode_half(data: bytes, known: Mapping[str, list[str]] | None = None) -> SiteHalf:
    """The half `encode_half` wrote; `known`: the variant lists the reader holds, by digest."""
    return read_half(data, known)[0]


def read_half(data: bytes, known: Mapping[str, list[str]] | None = None) -> tuple[SiteHalf, str]:
    """(half, the digest of its variant keys) from `data`; WireError naming what is wrong.

    Where `known` holds the list of the half's digest, the half's `variants` is
    that very list (sent or not), so halves with the same keys share one list
    and a combine tells them alike at once (`tasks.base.shared_variants`).
    """
    view = memoryview(data).cast("B")
    if len(view) < PREFIX.size:
        raise WireError(f"truncated: {len(view)} bytes, less than the {PREFIX.size}-byte prefix")
    magic, version, header_length = PREFIX.unpack_from(view, 0)
    if magic != MAGIC:
        raise WireError(f"not a site half: magic {magic!r}, expected {MAGIC!r}")
    if version != VERSION:
        raise WireError(f"format version {version}; this reader knows version {VERSION}")
    end = PREFIX.size + header_length
    if end > len(view):
        raise WireError(
            f"truncated: a header of {header_length} bytes, "
            f"{len(view) - PREFIX.size} bytes after the prefix"
        )
    try:
        header = json.loads(bytes(view[PREFIX.size : end]))
    except ValueError as e:  # UnicodeDecodeError is one
        raise WireError(f"header: not JSON ({e})") from None
    if not isinstance(header, dict):
        raise WireError("header: not a JSON object")
    start = _aligned(end)
    if start > len(view):
        raise WireError(f"truncated: the data start at byte {start}, the message has {len(view)}")
    body = view[start:]
    arrays = {}
    for spec in _field(header, "arrays", list):
        name, a = _read_array(spec, body)
        if name in arrays:
            raise WireError(f"array {name}: named twice")
        arrays[name] = a
    keys, digest = _read_variants(_field(header, "variants", dict), body, known)
    site, dataset, engine = (_field(header, k, str) for k in ("site", "dataset", "engine"))
    counts, meta = _field(header, "counts", dict), _field(header, "meta", dict)
    suppressed = _field(header, "suppressed", list)
    try:
        counts = {str(k): int(v) for k, v in counts.items()}
        suppressed = [Suppression(**s) for s in suppressed]
    except (TypeError, ValueError) as e:
        raise WireError(f"header: counts or suppressed malformed ({e})") from None
    half = SiteHalf(site, dataset, engine, arrays, counts, keys, suppressed, meta)
    return half, digest


def _field(doc: dict, name: str, kind: type, where: str = "header"):
    value = doc.get(name)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise WireError(f"{where}: {name} must be {_KIND_NAMES[kind]}")
    return value


_KIND_NAMES = {str: "a string", int: "a whole number", list: "a list", dict: "an object"}


def _span(spec: dict, where: str, body: memoryview) -> tuple[int, int]:
    offset = _field(spec, "offset", int, where)
    length = _field(spec, "length", int, where)
    if offset < 0 or length < 0 or offset + length > len(body):
        raise WireError(
            f"{where}: bytes {offset} to {offset + length} lie outside the {len(body)} bytes of data"
        )
    return offset, length


def _read_array(spec, body: memoryview) -> tuple[str, np.ndarray]:
    if not isinstance(spec, dict):
        raise WireError("arrays: each entry must be an object")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise WireError("arrays: an entry without a name")
    where = f"array {name}"
    dtype = _dtype(spec.get("dtype"), f"{where}: dtype")
    stored = dtype
    if "stored" in spec:
        stored = _dtype(spec["stored"], f"{where}: stored as")
        if not (stored.kind == dtype.kind == "f" and stored.itemsize < dtype.itemsize):
            raise WireError(f"{where}: stored as {stored.str}, which does not widen to {dtype.str}")
    shape = spec.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
    ):
        raise WireError(f"{where}: shape must be a list of whole numbers")
    offset, length = _span(spec, where, body)
    count = math.prod(shape)
    if length != count * stored.itemsize:
        raise WireError(
            f"{where}: {length} bytes, but shape {shape} of {stored.str} needs "
            f"{count * stored.itemsize}"
        )
    a = (
        np.frombuffer(body, dtype=stored, count=count, offset=offset)
        if count
        else np.empty(0, stored)
    )
    # a native copy: writable, and free of the message's buffer
    return name, a.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def _dtype(text, where: str) -> np.dtype:
    try:
        dtype = np.dtype(text) if isinstance(text, str) else None
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind not in NUMERIC_KINDS or dtype.str[0] not in "<|":
        raise WireError(f"{where} {text!r} is not a little-endian number (bool, int, float)")
    return dtype


def _read_variants(doc: dict, body: memoryview, known) -> tuple[list[str], str]:
    count = _field(doc, "count", int, "variants")
    digest = _field(doc, "digest", str, "variants")
    if count < 0:
        raise WireError("variants: count must not be negative")
    if not DIGEST_RE.match(digest):
        raise WireError("variants: digest must be 32 lower-case hex digits")
    held = known.get(digest) if known is not None else None
    if held is not None and len(held) != count:
        held = None  # the empty list and [""] share a digest; nothing else does
    if doc.get("offset") is None:
        if held is None:
            raise WireError(
                f"variants: the keys were left out for digest {digest}, "
                "a variant list this reader does not hold"
            )
        return held, digest
    offset, length = _span(doc, "variants", body)
    blob = body[offset : offset + length]
    if _digest(blob) != digest:
        raise WireError("variants: the keys do not match their digest")
    if held is not None:
        return held, digest
    try:
        keys = str(blob, "utf-8").split("\n") if count else []
    except UnicodeDecodeError as e:
        raise WireError(f"variants: the keys are not UTF-8 ({e})") from None
    if len(keys) != count or (not count and length):
        raise WireError(f"variants: {len(keys) if length else 0} keys, the header says {count}")
    return keys, digest


# ---------------------------------------------------------------------------
# what each side holds


class KnownVariants(Mapping):
    """The variant lists a client holds, by digest; bounded, least recently used out first.

    Lists are shared by every half that has them: read them, never change them.
    """

    def __init__(self, max_lists: int = 8, max_keys: int = 2_000_000):
        self.max_lists = max_lists
        self.max_keys = max_keys
        self._lists: OrderedDict[str, list[str]] = OrderedDict()
        self._keys = 0
        self._lock = threading.Lock()

    def __getitem__(self, digest: str) -> list[str]:
        with self._lock:
            keys = self._lists[digest]
            self._lists.move_to_end(digest)
            return keys

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(reversed(self._lists)))

    def __len__(self) -> int:
        return len(self._lists)

    def add(self, digest: str, keys: list[str]) -> list[str]:
        """Hold `keys` (read by `read_half`, which checked their digest); the list now held."""
        with self._lock:
            if digest in self._lists:
                self._lists.move_to_end(digest)
                return self._lists[digest]
            self._lists[digest] = keys
            self._keys += len(keys)
            while len(self._lists) > self.max_lists or (
                self._keys > self.max_keys and len(self._lists) > 1
            ):
                _, old = self._lists.popitem(last=False)
                self._keys -= len(old)
            return keys

    def digests(self) -> list[str]:
        """What a request names in `variants_known`: the most recently used first."""
        return list(self)[:MAX_KNOWN]


class DigestCache:
    """A gateway's digests of the variant lists it answered lately, one per slot
    (dataset, engine, version): a list equal to the slot's is not hashed again.

    The lists are compared, not trusted, so a slot whose data changed costs a
    digest, never a wrong one.
    """

    def __init__(self, max_slots: int = 16):
        self.max_slots = max_slots
        self._slots: OrderedDict[Hashable, tuple[list[str], str]] = OrderedDict()
        self._lock = threading.Lock()

    def digest(self, slot: Hashable, keys: list[str]) -> str:
        with self._lock:
            held = self._slots.get(slot)
        if held is not None and held[0] == keys:
            return held[1]
        digest = variants_digest(keys)
        with self._lock:
            self._slots[slot] = (list(keys), digest)
            self._slots.move_to_end(slot)
            while len(self._slots) > self.max_slots:
                self._slots.popitem(last=False)
        return digest
