"""Variant keys ("contig:pos:ref:alt") and regions as a task's `variants` parameter names
them: their validation, the rows they select, and the key's columns."""

from __future__ import annotations

import re
from itertools import repeat

import numpy as np

from .base import TaskError

MAX_VARIANT_KEYS = 100_000
KEY_RE = re.compile(r"^[A-Za-z0-9_.]+:\d+:[A-Za-z*]+:[A-Za-z*,.<>]+$")
REGION_RE = re.compile(r"^([A-Za-z0-9_.]+)(?::(\d[\d,]*)-(\d[\d,]*))?$")


def parse_region(text: str) -> tuple[str, int, int]:
    """("chr20", start, end), 1-based inclusive, from "chr20" or "chr20:100-200"."""
    m = REGION_RE.match(text.strip())
    if not m:
        raise TaskError(
            f'variants: {text!r} is neither a list of keys nor a region like "chr20:100-200"',
            "variants",
        )
    contig, start, end = m.groups()
    if start is None:
        return contig, 1, 2**31 - 1
    lo, hi = int(start.replace(",", "")), int(end.replace(",", ""))
    if lo < 1 or hi < lo:
        raise TaskError(f"variants: region {text!r} must have 1 <= start <= end", "variants")
    return contig, lo, hi


def _validate_variants(raw):
    if raw is None:
        return None
    if isinstance(raw, str):
        contig, lo, hi = parse_region(raw)
        return f"{contig}:{lo}-{hi}"
    if not isinstance(raw, list | tuple) or not raw:
        raise TaskError("variants must be a region or a non-empty list of variant keys", "variants")
    if len(raw) > MAX_VARIANT_KEYS:
        raise TaskError(f"variants: at most {MAX_VARIANT_KEYS} keys per query", "variants")
    for k in raw:
        if not isinstance(k, str) or not KEY_RE.match(k):
            raise TaskError(f'variants: {k!r} is not a key like "chr20:12345:A:G"', "variants")
    return list(dict.fromkeys(raw))


def variant_rows(keys: list[str], variants) -> np.ndarray | None:
    """Row indices of the validated `variants` selection among `keys`; None for all rows."""
    if variants is None:
        return None
    if isinstance(variants, str):
        contig, lo, hi = parse_region(variants)
        rows = []
        for i, k in enumerate(keys):
            c, p, _ = k.split(":", 2)
            if c == contig and lo <= int(p) <= hi:
                rows.append(i)
        return np.asarray(rows, dtype=np.int64)
    wanted = set(variants)
    return np.asarray([i for i, k in enumerate(keys) if k in wanted], dtype=np.int64)


def key_columns(keys: list[str]) -> tuple[list[str], np.ndarray, list[str], list[str]]:
    """Contig, position, ref and alt of "contig:pos:ref:alt" keys (an alt holding ":", such as
    <DEL:ME>, whole); one split of all the keys at once where every key has four fields."""
    fields = ":".join(keys).split(":")
    colons = list(map(str.count, keys, repeat(":")))  # the count of 3s below, all in C
    if len(fields) != 4 * len(keys) or colons.count(3) != len(keys):
        parts = [k.split(":", 3) for k in keys]
        bad = next((k for k, p in zip(keys, parts, strict=True) if len(p) != 4), None)
        if bad is not None:
            raise TaskError(f"variant key {bad!r} is not contig:pos:ref:alt", "variants")
        fields = [f for p in parts for f in p]
    return fields[0::4], np.asarray(fields[1::4], dtype=np.int64), fields[2::4], fields[3::4]


def _objects(texts) -> np.ndarray:
    out = np.empty(len(texts), dtype=object)
    out[:] = texts
    return out
