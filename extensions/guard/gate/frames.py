"""Kernel messages on a websocket, in both of Jupyter's protocols: parsed and packed again."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

from .policy import dumps

V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"


@dataclass
class KernelFrame:
    protocol: str  # "v1" or "legacy"
    channel: str
    header: dict
    parent_header: dict
    metadata: dict
    content: dict
    buffers: list
    raw_parts: list | None = None  # v1: the packed header/parent/metadata, kept byte for byte
    text: bool = False  # legacy: sent as a text frame

    @property
    def msg_type(self) -> str:
        return str(self.header.get("msg_type", ""))


def parse_kernel_frame(frame, protocol: str) -> KernelFrame:
    if protocol == V1_PROTOCOL:
        if not isinstance(frame, bytes):
            raise ValueError("a text frame on the v1 kernel protocol")
        n = int.from_bytes(frame[:8], "little")
        offsets = [int.from_bytes(frame[8 * (i + 1) : 8 * (i + 2)], "little") for i in range(n)]
        channel = frame[offsets[0] : offsets[1]].decode()
        parts = [frame[offsets[i] : offsets[i + 1]] for i in range(1, n - 1)]
        if len(parts) < 4:
            raise ValueError("a v1 kernel message with fewer than four parts")
        return KernelFrame(
            "v1",
            channel,
            json.loads(parts[0]),
            json.loads(parts[1]),
            json.loads(parts[2]),
            json.loads(parts[3]),
            list(parts[4:]),
            raw_parts=parts[:3],
        )
    if isinstance(frame, str):
        msg = json.loads(frame)
        buffers: list = []
        text = True
    else:
        nbufs = struct.unpack("!i", frame[:4])[0]
        offsets = list(struct.unpack("!" + "I" * nbufs, frame[4 : 4 * (nbufs + 1)]))
        offsets.append(len(frame))
        bufs = [frame[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
        msg = json.loads(bufs[0])
        buffers = bufs[1:]
        text = False
    return KernelFrame(
        "legacy",
        msg.get("channel", ""),
        msg.get("header") or {},
        msg.get("parent_header") or {},
        msg.get("metadata") or {},
        msg.get("content") if isinstance(msg.get("content"), dict) else {},
        buffers,
        text=text,
    )


def pack_kernel_frame(f: KernelFrame):
    if f.protocol == "v1":
        parts = list(f.raw_parts or [])
        parts.append(dumps(f.content))
        parts.extend(f.buffers)
        channel = f.channel.encode()
        offsets = [8 * (1 + 1 + len(parts) + 1)]
        offsets.append(offsets[-1] + len(channel))
        for p in parts:
            offsets.append(offsets[-1] + len(p))
        head = len(offsets).to_bytes(8, "little") + b"".join(
            o.to_bytes(8, "little") for o in offsets
        )
        return head + channel + b"".join(parts)
    msg = {
        "channel": f.channel,
        "header": f.header,
        "parent_header": f.parent_header,
        "metadata": f.metadata,
        "content": f.content,
    }
    if f.text or not f.buffers:
        return json.dumps(msg, ensure_ascii=False)
    bufs = [dumps(msg), *f.buffers]
    offsets = [4 * (len(bufs) + 1)]
    for b in bufs[:-1]:
        offsets.append(offsets[-1] + len(b))
    return struct.pack("!" + "I" * (len(bufs) + 1), len(bufs), *offsets) + b"".join(bufs)


def channel_of(msg_type: str) -> str:
    if msg_type.startswith("comm_"):
        return "widget"
    if msg_type.endswith("_reply") or msg_type.startswith("debug"):
        return "reply"
    return "kernel"
