"""Pickles: their strings, numbers and buffers, by walking the opcodes; never loaded."""

from __future__ import annotations

import io
import math
import re
import struct

from .content import KIB, _Src

_PICKLE_STRINGS = frozenset(
    {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING",
     "SHORT_BINSTRING"}
)  # fmt: skip
_PICKLE_BYTES = frozenset({"SHORT_BINBYTES", "BINBYTES", "BINBYTES8", "BYTEARRAY8"})
_PICKLE_INTS = frozenset({"BININT", "BININT1", "BININT2", "INT", "LONG1", "LONG", "LONG4"})
_DTYPE = re.compile(r"^[<>|=]?([iuf])([1248])$")


class Pickles:
    """Part of `_Scan`: a pickle's strings as text and columns, its arrays as arrays."""

    def pickle(self, src: _Src, chain, depth) -> None:
        """Strings, numbers and buffers of a pickle, by walking its opcodes; never loaded."""
        import pickletools

        link = ("pickle", "pickle")
        data = self.whole(src) or src.read(0, self.allowance())
        strings: list[str] = []
        events: list[tuple[str, object]] = []
        memo: dict[int, object] = {}
        last: object = None
        try:
            for k, (op, arg, _pos) in enumerate(pickletools.genops(io.BytesIO(data))):
                if k >= 2_000_000:
                    break
                name = op.name
                if name in _PICKLE_STRINGS:
                    s = arg if isinstance(arg, str) else bytes(arg).decode("latin-1")
                    strings.append(s)
                    events.append(("s", s))
                    last = s
                elif name in _PICKLE_BYTES:
                    events.append(("b", bytes(arg)))
                    last = None
                elif name in _PICKLE_INTS and isinstance(arg, int):
                    events.append(("i", arg))
                    last = None
                elif name in ("TUPLE1", "TUPLE2", "TUPLE3", "TUPLE"):
                    events.append(("t", name))
                    last = None
                elif name == "MARK":
                    events.append(("m", None))
                elif name == "MEMOIZE":
                    memo[len(memo)] = last
                elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
                    memo[int(arg)] = last
                elif name in ("BINGET", "LONG_BINGET", "GET"):
                    got = memo.get(int(arg))
                    if isinstance(got, str):
                        strings.append(got)
                        events.append(("s", got))
                    last = got
                elif name == "STOP":
                    break
                elif name not in ("FRAME", "PROTO"):
                    last = None
        except (ValueError, EOFError, struct.error, UnicodeDecodeError):
            pass  # a pickle cut short: what was read stands
        self.spend(len(data))
        chain = (*chain, link)
        self.pickled_arrays(events, chain, depth)
        if strings:
            text = "\n".join(s for s in strings if len(s) < 64 * KIB)
            self.text_unit(
                _Src.of(text.encode("utf-8", "surrogatepass")),
                (*chain, ("its strings", "その文字列")),
                depth + 1,
            )
            rows = self.columns_to_rows(strings)
            if rows:
                self.table(
                    rows, (*chain, ("its string columns", "その文字列の列")), depth, header=False
                )

    def pickled_arrays(self, events: list, chain, depth) -> None:
        try:
            import numpy as np
        except ImportError:
            return

        shapes: list[tuple[int, tuple]] = []
        dtypes: list[tuple[int, str]] = []
        for k, (kind, value) in enumerate(events):
            if kind == "t":
                take = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}.get(value)
                if take is None:  # TUPLE: back to the MARK
                    j = k - 1
                    while j >= 0 and events[j][0] == "i":
                        j -= 1
                    take = k - 1 - j if j >= 0 and events[j][0] == "m" else 0
                prev = events[k - take : k] if take else []
                if prev and all(e[0] == "i" for e in prev):
                    shapes.append((k, tuple(int(e[1]) for e in prev)))
            elif kind == "s" and _DTYPE.match(value):
                dtypes.append((k, value))
        for k, (kind, value) in enumerate(events):
            if self.raw_found:
                return
            raw = value if kind == "b" else None
            if kind == "s" and len(value) >= 60 and max(map(ord, value[:4096])) < 256:
                raw = value.encode("latin-1")  # protocol 2 writes buffers as latin-1 text
            if raw is None or len(raw) < 60:
                continue
            near = [d for j, d in dtypes if abs(j - k) <= 64]
            matched = False
            for code in near:
                dtype = np.dtype(code)
                n = len(raw) // dtype.itemsize
                for j, shape in shapes:
                    if (
                        abs(j - k) <= 64
                        and math.prod(shape) == n
                        and n * dtype.itemsize == len(raw)
                    ):
                        self.ndarray(
                            raw,
                            dtype,
                            shape,
                            (*chain, ("a NumPy buffer", "NumPy のバッファ")),
                            depth,
                        )
                        matched = True
                        break
                if matched:
                    break
            if not matched and kind == "b" and self.member():
                self.blob(_Src.of(raw), (*chain, ("pickled bytes", "pickle のバイト列")), depth + 1)
