"""The gate's web application: a reverse proxy that inspects everything going to the client.

Requests from the client go to the Jupyter server unchanged. Responses and
websocket messages from the server are judged (see policy.py) before they go
on: an HTTP response is read whole (up to the platform's download limit),
recognised, metered and then sent, refused (403) or withheld (429 at the cap);
a websocket message is parsed in its protocol (Jupyter's kernel protocols,
the terminal protocol, anything else as text or bytes), judged, and sent as it
is or with its content replaced by a notice.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import html
import json
import logging
import os
import re
import struct
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tornado import httpclient, web, websocket
from tornado.httputil import HTTPHeaders
from tornado.routing import Matcher, PathMatches, Rule

from . import STATE_DIR, UPSTREAM_PORT
from .policy import (
    CAPPED,
    CONTROL_TYPES,
    PASS,
    Decision,
    dumps,
    judge_download,
    judge_output,
    redact_notebook,
    text_of_content,
    withheld_content,
)

log = logging.getLogger("visiting.gate")

HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Content-Length",
        "Content-Encoding",
        "Accept-Encoding",
    )
)
WS_REQUEST_HEADERS_DROPPED = HOP_BY_HOP | {
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-protocol",
}
V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"
# what any response may be at the cap without being withheld: JupyterLab's own calls
CAP_SMALL_BYTES = 64 * 1024
CAP_SMALL_CONTROL_BYTES = 1024
# a websocket message larger than this is refused rather than parsed
MAX_MESSAGE_BYTES = 256 * 1024 * 1024

# a terminal's output within this many seconds of the previous chunk is one burst: the people
# it shows add up; each chunk is judged with the last TAIL_LINES lines before it (at most
# TAIL_BYTES), enough for the three-record rule to see records cut across chunks
BURST_SECONDS = 2.0
# once a burst had a chunk withheld, its later chunks of at least this many lines or bytes
# are withheld too (prompts and typing are shorter)
BULK_LINES = 3
BULK_BYTES = 80
TAIL_LINES = 2
TAIL_BYTES = 64 * 1024
# a chunk that passes alone but names people or would be withheld if the burst went on like it
# (the chunk three times over: one or two raw records, a few rows of a matrix) could be the start
# of more cut by the pty: it waits up to HOLD_SECONDS for the rest of its burst and is judged
# with it; a burst that stops there passes as it would have in one piece
HOLD_SECONDS = 1.0
HOLD_BYTES = 256 * 1024

KERNEL_WS = re.compile(r"api/kernels/[^/]+/channels$")
TERMINAL_WS = re.compile(r"terminals/websocket/[^/]+$")
TERMINAL_ROUTES = re.compile(r"(api/terminals|terminals/)")
CONTENT_ROUTES = re.compile(r"(files|nbconvert|view|edit|api/contents)/")


def is_bulk(text: str) -> bool:
    return text.count("\n") >= BULK_LINES or len(text) >= BULK_BYTES


def digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def digester():
    """`digest` a chunk at a time: update(chunk) ..., then digest()."""
    return hashlib.blake2b(digest_size=16)


_JSON_OBJECT = re.compile(rb"[ \t\n\r\x0b\x0c]*\{")  # what bytes.lstrip() strips, then {


@dataclass
class Gate:
    """Everything the handlers share: where the server is, how to judge, what to record."""

    prefix: str  # the server's base URL path, /user/<name>/<site>/
    recogniser: object
    rules: object  # extensions.contracts.egress.EgressRules
    meter: object  # meter.EgressMeter
    events: object  # GateEvents
    max_bytes: int = 50 * 1024**2
    terminals: str = "guarded"
    upstream: str = f"http://127.0.0.1:{UPSTREAM_PORT}"
    assets: set[bytes] = field(default_factory=set)
    stats: dict = field(default_factory=lambda: {"withheld": 0, "blocked": 0, "passed": 0})
    _verdicts: dict = field(default_factory=dict, repr=False)

    # -- helpers ------------------------------------------------------------------

    def route_of(self, path: str) -> str:
        """The path under the server's prefix (api/contents/..., files/..., lab, ...)."""
        return path[len(self.prefix) :] if path.startswith(self.prefix) else path.lstrip("/")

    def count(self, channel: str, data: bytes, people=(), data_digest: bytes | None = None) -> None:
        reading = self.meter.count(channel, data_digest or digest(data), len(data), people)
        for level in reading.crossed:
            self.events.level_crossed(level, reading)

    def withheld(self, channel: str, msg_type: str, decision, route=None) -> None:
        """An output replaced by a notice (or not passed on): counted and recorded."""
        self.stats["withheld"] += 1
        self.events.output_withheld(channel, msg_type, decision, route=route)

    @property
    def capped(self) -> bool:
        return bool(self.meter.withheld())

    # -- HTTP ---------------------------------------------------------------------

    def judge_response(
        self, method: str, path: str, status: int, body: bytes, body_digest: bytes | None = None
    ):
        """(status, body, decision, route) for one upstream response (`body_digest`: its
        digest when the caller has it already; every use below shares the one digest)."""
        route = self.route_of(path)
        if not body or method == "HEAD":
            return status, body, PASS, route
        body_digest = body_digest or digest(body)
        if body_digest in self.assets:
            # JupyterLab's own files, byte for byte as the image ships them: no egress
            return status, body, PASS, route
        content_route = bool(CONTENT_ROUTES.match(route)) or not route.startswith(
            ("api/", "lab", "static/", "visiting/", "tree", "login", "logout")
        )
        if self.capped and (content_route or len(body) > CAP_SMALL_BYTES):
            return 429, body, CAPPED, route
        if route.startswith("api/contents/") and method == "GET" and status == 200:
            notebook = self._notebook_view(body)
            if notebook is not None:
                new_body, withheld, people = notebook
                for decision in withheld:
                    self.withheld("contents", "notebook", decision, route=route)
                self.count("download", new_body, people)
                return status, new_body, PASS, route
        verdict = self._verdict_of(body, route, body_digest)
        decision = judge_download(verdict)
        if decision.withhold:
            return 403, body, decision, route
        if verdict.opaque or content_route:
            self.count("download", body, verdict.people, body_digest)
        else:
            self.count("other", body, verdict.people, body_digest)
        return status, body, PASS, route

    def _verdict_of(self, body: bytes, route: str, body_digest: bytes | None = None):
        """The recogniser's verdict on a body; the same bytes under the same route are judged once
        (a results file downloaded again, JupyterLab asking for the same model)."""
        key = (body_digest or digest(body), route)
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self.recogniser.bytes(body, name=route)
            if len(self._verdicts) >= 512:
                self._verdicts.pop(next(iter(self._verdicts)))
            self._verdicts[key] = verdict
        return verdict

    def _notebook_view(self, body: bytes):
        """A notebook opened in JupyterLab: its stored outputs are judged like live outputs."""
        if not _JSON_OBJECT.match(body):  # not body.lstrip(): no copy of a big body
            return None
        try:
            model = json.loads(body)
        except ValueError:
            return None
        if not (
            isinstance(model, dict)
            and model.get("type") == "notebook"
            and model.get("format") == "json"
            and isinstance(model.get("content"), dict)
        ):
            return None
        limit = self.rules.max_people_per_output

        def judge(text):
            verdict = self.recogniser.text(text)
            return judge_output(verdict, limit), verdict

        nb, withheld, people = redact_notebook(model["content"], judge)
        # what stays is judged again as a whole: raw records or a genotype matrix spread over
        # small outputs make the notebook a download to refuse; people add to the meter
        rest = self.recogniser.text(text_of_content(nb))
        if judge_download(rest).reason in ("raw-records", "genotype-matrix"):
            return None
        model["content"] = nb
        return dumps(model), withheld, people | set(rest.people)

    # -- websockets ---------------------------------------------------------------

    def judge_message(self, channel: str, msg_type: str, content, buffers=()) -> tuple:
        """(decision, verdict-people) for one message of a kernel, a terminal or other socket."""
        content, media = split_media(content)
        text = text_of_content(content)
        if self.capped:
            if msg_type in CONTROL_TYPES and len(text) < CAP_SMALL_CONTROL_BYTES:
                return PASS, ()
            return CAPPED, ()
        verdict = self.recogniser.text(text) if text else None
        people = set(verdict.people) if verdict else set()
        decision = judge_output(verdict, self.rules.max_people_per_output) if verdict else PASS
        for buf in [*media, *buffers]:
            if decision.withhold:
                break
            v = self.recogniser.bytes(bytes(buf))
            people |= set(v.people)
            decision = judge_output(v, self.rules.max_people_per_output)
        if not decision.withhold and len(people) > self.rules.max_people_per_output:
            decision = judge_output(_Counted(people), self.rules.max_people_per_output)
        return decision, people


# outputs whose data is base64 of a binary file: judged as the file (a plot is read as a PNG
# in microseconds, not as 100 KB of base64 text)
BINARY_MIME = frozenset({"image/png", "image/jpeg", "image/gif", "application/pdf"})


def split_media(content):
    """(content without its binary media, the media decoded) for a display message."""
    data = content.get("data") if isinstance(content, dict) else None
    if not isinstance(data, dict) or not BINARY_MIME & data.keys():
        return content, []
    rest, media = {}, []
    for mime, value in data.items():
        if mime in BINARY_MIME and isinstance(value, str):
            try:
                media.append(base64.b64decode(value.strip(), validate=True))
                continue
            except (binascii.Error, ValueError):
                pass  # not base64 after all: read as text
        rest[mime] = value
    return {**content, "data": rest}, media


@dataclass(frozen=True)
class _Counted:
    """People counted over several parts of one message."""

    people: frozenset
    kind: None = None
    records: int = 0

    def __init__(self, people):
        object.__setattr__(self, "people", frozenset(people))


# -- kernel message framing (both protocols) ------------------------------------------


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


# -- handlers ---------------------------------------------------------------------------


class _GateMixin:
    @property
    def gate(self) -> Gate:
        return self.settings["gate"]

    def upstream_headers(self, dropped) -> dict:
        headers = HTTPHeaders()
        for name, value in self.request.headers.get_all():
            if name.lower() not in dropped:
                headers.add(name, value)
        return headers


def blocked_body(decision: Decision, status: int, route: str, as_json: bool) -> bytes:
    message = decision.notice
    if as_json:
        return dumps(
            {
                "message": message,
                "message_ja": decision.notice_ja,
                "message_en": decision.notice_en,
                "reason": decision.reason,
                "status": status,
                "path": route,
            }
        )
    page = (
        "<!DOCTYPE html><html lang='ja'><head><meta charset='utf-8'>"
        f"<title>{status}: 持ち出し制御 / Egress gate</title></head><body>"
        f"<h1>{status}</h1><p lang='ja'>{html.escape(decision.notice_ja, quote=False)}</p>"
        f"<p lang='en'>{html.escape(decision.notice_en, quote=False)}</p></body></html>"
    )
    return page.encode()


class HTTPProxy(_GateMixin, web.RequestHandler):
    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

    def check_xsrf_cookie(self):  # the server behind checks its own
        pass

    async def _forward(self):
        gate = self.gate
        route = gate.route_of(self.request.path)
        if gate.terminals == "off" and TERMINAL_ROUTES.match(route):
            return self._refuse(
                403,
                Decision(
                    True,
                    "terminals-off",
                    "terminals are switched off at this site",
                    "このサイトではターミナルを使えません",
                ),
                route,
                event=False,
            )
        method = self.request.method
        body = (self.request.body or b"") if method in ("POST", "PUT", "PATCH") else None
        # the body is taken as it streams in and digested chunk by chunk meanwhile (the
        # server goes on sending while the gate hashes); it is judged once it is whole
        chunks: list[bytes] = []
        hasher = digester()

        def take(chunk: bytes) -> None:
            chunks.append(chunk)
            hasher.update(chunk)

        req = httpclient.HTTPRequest(
            gate.upstream + self.request.uri,
            method=method,
            headers=self.upstream_headers(HOP_BY_HOP),
            body=body,
            follow_redirects=False,
            allow_nonstandard_methods=True,
            connect_timeout=20,
            request_timeout=3600,
            decompress_response=True,
            streaming_callback=take,
        )
        try:
            resp = await httpclient.AsyncHTTPClient().fetch(req, raise_error=False)
        except Exception as e:  # the body is larger than the gate reads, or the server is gone
            if "body" in str(e).lower() or "size" in str(e).lower():
                d = Decision(
                    True,
                    "too-large",
                    f"the response is larger than the download limit of {gate.max_bytes} bytes",
                    f"応答がダウンロードの上限（{gate.max_bytes} バイト）を超えています",
                )
                return self._refuse(403, d, route)
            raise web.HTTPError(502, f"the server behind the gate did not answer: {e}") from None
        if resp.code == 599:
            raise web.HTTPError(502, "the server behind the gate did not answer")
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        status, body, decision, route = gate.judge_response(
            method, self.request.path, resp.code, body, hasher.digest() if body else None
        )
        if decision.withhold:
            return self._refuse(status, decision, route)
        if route == "visiting/period" and status == 200:
            body = self._with_meter(body)
        gate.stats["passed"] += 1
        self.set_status(resp.code, resp.reason)
        self._clear_representation_headers()
        for name, value in resp.headers.get_all():
            if name.lower() in HOP_BY_HOP:
                continue
            if name.lower() == "set-cookie":
                self.add_header(name, value)
            else:
                self.set_header(name, value)
        if method != "HEAD" and body:
            self.write(body)
        await self.finish()

    def _clear_representation_headers(self):
        for name in ("Content-Type", "Server", "Date"):
            self.clear_header(name)

    def _with_meter(self, body: bytes) -> bytes:
        """The period banner's answer, with the egress meter's level when it is not ok."""
        try:
            doc = json.loads(body)
        except ValueError:
            return body
        if not isinstance(doc, dict):
            return body
        level = self.gate.meter.reading().level
        doc["egress"] = {"level": level}
        if level in ("alert", "cap"):
            from .policy import CAP_EN, CAP_JA

            if level == "cap":
                en, ja = CAP_EN, CAP_JA
            else:
                en = (
                    "Egress alert: this server has sent much more than usual today; "
                    "the secretariat has been told."
                )
                ja = "持ち出し量の警告: このサーバーは本日、通常より多くを送信しました。事務局に通知されています。"
            doc["text_en"] = f"{doc.get('text_en', '')} {en}".strip()
            doc["text_ja"] = f"{doc.get('text_ja', '')} {ja}".strip()
            if doc.get("level") == "info":
                doc["level"] = "warning"
        return dumps(doc)

    def _refuse(self, status: int, decision: Decision, route: str, event: bool = True):
        gate = self.gate
        gate.stats["blocked"] += 1
        if event:
            gate.events.download_blocked(route, decision)
        as_json = route.startswith("api/") or "json" in self.request.headers.get("Accept", "")
        self.clear()
        self.set_status(status)
        self.set_header(
            "Content-Type", "application/json" if as_json else "text/html; charset=UTF-8"
        )
        self.set_header("Cache-Control", "no-store")
        self.finish(blocked_body(decision, status, route, as_json))

    get = post = put = patch = delete = head = options = _forward


class WebSocketProxy(_GateMixin, websocket.WebSocketHandler):
    """Both ends of one websocket: the client's and the server's; server messages are judged."""

    upstream_ws = None
    protocol = None
    kind = "other"
    _tail = ""
    _held: Decision | None = None
    _burst_people: set = frozenset()
    _last_output = 0.0
    _pending: tuple = ()  # terminal messages held back: (messages, their text)

    def check_origin(self, origin):  # the server behind checks the origin itself
        return True

    def get_compression_options(self):
        return None

    def select_subprotocol(self, subprotocols):
        return self.protocol if self.protocol in subprotocols else None

    async def get(self, *args, **kwargs):
        gate = self.gate
        route = gate.route_of(self.request.path)
        if KERNEL_WS.search(route):
            self.kind = "kernel"
        elif TERMINAL_WS.search(route):
            self.kind = "terminal"
            if gate.terminals == "off":
                raise web.HTTPError(403, "terminals are switched off at this site")
        offered = [
            p.strip()
            for p in self.request.headers.get("Sec-WebSocket-Protocol", "").split(",")
            if p.strip()
        ]
        if self.kind == "kernel":
            self.protocol = V1_PROTOCOL if V1_PROTOCOL in offered else None
            subprotocols = [self.protocol] if self.protocol else None
        else:
            self.protocol = offered[0] if offered else None
            subprotocols = offered or None
        url = "ws" + gate.upstream[len("http") :] + self.request.uri
        req = httpclient.HTTPRequest(
            url,
            headers=self.upstream_headers(WS_REQUEST_HEADERS_DROPPED),
            connect_timeout=20,
            request_timeout=60,
        )
        try:
            self.upstream_ws = await websocket.websocket_connect(
                req, subprotocols=subprotocols, max_message_size=MAX_MESSAGE_BYTES
            )
        except httpclient.HTTPClientError as e:
            raise web.HTTPError(e.code, "the server refused the websocket") from None
        except Exception as e:
            raise web.HTTPError(502, f"the server behind the gate did not answer: {e}") from None
        if self.kind == "kernel" and self.protocol:
            chosen = self.upstream_ws.selected_subprotocol
            if chosen != self.protocol:
                self.protocol = None if chosen is None else chosen
        await super().get(*args, **kwargs)

    def open(self, *args, **kwargs):
        asyncio.ensure_future(self._pump())

    async def _pump(self):
        try:
            reading = None
            while True:
                if reading is None:
                    reading = asyncio.ensure_future(self.upstream_ws.read_message())
                if self._pending:
                    done, _ = await asyncio.wait({reading}, timeout=HOLD_SECONDS)
                    if not done:
                        # the rest of a held chunk's burst did not come: it passes as it is
                        for out in self._release():
                            await self.write_message(out)
                        continue
                msg = await reading
                reading = None
                if msg is None:
                    break
                out = self.inspect(msg)
                for item in out if isinstance(out, list) else [out]:
                    if item is not None:
                        await self.write_message(item, binary=isinstance(item, bytes))
        except websocket.WebSocketClosedError:
            pass
        except Exception:
            log.exception("the gate stopped a websocket after a message it could not judge")
        finally:
            self.close()
            if self.upstream_ws is not None:
                self.upstream_ws.close()

    def on_message(self, message):
        if self.upstream_ws is not None:
            self.upstream_ws.write_message(message, binary=isinstance(message, bytes))

    def on_close(self):
        if self.upstream_ws is not None:
            self.upstream_ws.close()

    # -- judging ------------------------------------------------------------------

    def inspect(self, msg):
        gate = self.gate
        raw = msg if isinstance(msg, bytes) else msg.encode()
        if self.kind == "kernel":
            return self._kernel(msg, raw)
        if self.kind == "terminal":
            return self._terminal(msg, raw)
        # any other socket: judged as one piece of text or bytes; withheld means closed
        if isinstance(msg, bytes):
            verdict = gate.recogniser.bytes(msg)
        else:
            verdict = gate.recogniser.text(msg)
        decision = (
            CAPPED if gate.capped else judge_output(verdict, gate.rules.max_people_per_output)
        )
        if decision.withhold:
            gate.withheld("other", "", decision, route=gate.route_of(self.request.path))
            self.close(1008, "withheld by the egress gate")
            return None
        gate.count("other", raw, verdict.people)
        return msg

    def _kernel(self, msg, raw):
        gate = self.gate
        try:
            frame = parse_kernel_frame(msg, self.protocol)
        except Exception:
            # a frame the gate cannot read is not passed on
            decision = Decision(
                True,
                "unreadable",
                "a kernel message the gate cannot read",
                "読めないカーネルメッセージ",
            )
            gate.withheld("kernel", "", decision, route=gate.route_of(self.request.path))
            return None
        decision, people = gate.judge_message(
            "kernel", frame.msg_type, frame.content, frame.buffers
        )
        if decision.withhold:
            frame.content = withheld_content(frame.msg_type, frame.content, decision)
            frame.buffers = []
            if isinstance(frame.content.get("data"), dict):
                frame.content["data"].pop("buffer_paths", None)
            gate.withheld(channel_of(frame.msg_type), frame.msg_type, decision)
            out = pack_kernel_frame(frame)
            gate.count("kernel", out if isinstance(out, bytes) else out.encode())
            return out
        gate.count("kernel", raw, people)
        return msg

    def _terminal(self, msg, raw):
        gate = self.gate
        try:
            doc = json.loads(msg)
        except (ValueError, TypeError):
            doc = None
        if not (isinstance(doc, list) and doc and isinstance(doc[0], str)):
            decision = Decision(
                True,
                "unreadable",
                "a terminal message the gate cannot read",
                "読めない端末メッセージ",
            )
            gate.withheld("terminal", "", decision)
            return [*self._release(), None]
        if doc[0] != "stdout":
            # setup and disconnect: what was held goes first, in order
            return [*self._release(), msg]
        text = text_of_content(doc[1:])
        now = time.monotonic()
        if now - self._last_output > BURST_SECONDS and not self._pending:
            self._tail, self._burst_people, self._held = "", set(), None
        self._last_output = now
        held, held_text = self._pending or ([], "")
        self._pending = ()
        messages, text = [*held, msg], held_text + text
        # a chunk is judged with the last lines before it, so records cut across chunks (or
        # two here and one there) still make three; people add up over the burst
        judged = self._tail + text
        decision, people = self._decide(text, judged)
        if not decision.withhold and len(text) < HOLD_BYTES and self._could_grow(judged, people):
            self._pending = (messages, text)
            return None
        return self._settle(messages, judged, decision, people)

    def _could_grow(self, judged: str, people) -> bool:
        """Whether output that passes could be the start of more that would not: it names
        people, or three times over it would be withheld (raw records, rows of a matrix)."""
        if people:
            return True
        if not is_bulk(judged):
            return False
        return self.gate.judge_message("terminal", "stdout", judged * 3)[0].withhold

    def _decide(self, text, judged):
        gate = self.gate
        decision, people = gate.judge_message("terminal", "stdout", judged)
        shown = self._burst_people | people
        if not decision.withhold and len(shown) > gate.rules.max_people_per_output:
            decision = judge_output(_Counted(shown), gate.rules.max_people_per_output)
        if not decision.withhold and self._held is not None and is_bulk(text):
            # the rest of a burst that was withheld: its small pieces in between are withheld too
            decision = self._held
        return decision, people

    def _settle(self, messages, judged, decision, people):
        """Pass `messages` (judged together as `judged`) or a notice in their place."""
        gate = self.gate
        if decision.withhold:
            self._held = decision
        cut = len(judged)
        for _ in range(TAIL_LINES + 1):
            cut = judged.rfind("\n", 0, cut)
            if cut < 0:
                break
        self._tail = judged[cut + 1 :][-TAIL_BYTES:]
        if decision.withhold:
            gate.withheld("terminal", "stdout", decision)
            notice = decision.notice.replace("\n", "\r\n")
            out = json.dumps(["stdout", f"\r\n{notice}\r\n"], ensure_ascii=False)
            gate.count("terminal", out.encode())
            return [out]
        self._burst_people = self._burst_people | people
        for m in messages:
            gate.count("terminal", m.encode() if isinstance(m, str) else m, people)
            people = ()
        return messages

    def _release(self) -> list:
        """What was held back, passed on: its burst ended without more of it."""
        if not self._pending:
            return []
        messages, text = self._pending
        self._pending = ()
        judged = self._tail + text
        decision, people = self._decide(text, judged)
        return self._settle(messages, judged, decision, people)


class GateStatusHandler(_GateMixin, web.RequestHandler):
    """GET <server>/visiting/gate: the gate's state, for the person whose server it is."""

    async def get(self):
        gate = self.gate
        # only someone the server itself lets in may see it: ask the server with the same headers
        req = httpclient.HTTPRequest(
            gate.upstream + gate.prefix + "api/status",
            headers=self.upstream_headers(HOP_BY_HOP),
            request_timeout=20,
        )
        resp = await httpclient.AsyncHTTPClient().fetch(req, raise_error=False)
        if resp.code != 200:
            raise web.HTTPError(403)
        reading = gate.meter.reading()
        self.set_header("Content-Type", "application/json")
        self.finish(
            dumps(
                {
                    "gate": {"pid": os.getpid(), "uid": os.getuid(), "terminals": gate.terminals},
                    "meter": reading.to_json() if hasattr(reading, "to_json") else vars(reading),
                    "cohort_people": len(getattr(gate.recogniser, "cohort", None) or ()),
                    "stats": gate.stats,
                },
            )
        )


class UpgradeMatcher(Matcher):
    def match(self, request):
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return {}
        return None


def make_app(gate: Gate) -> web.Application:
    prefix = re.escape(gate.prefix)
    return web.Application(
        [
            Rule(PathMatches(prefix + "visiting/gate/?"), GateStatusHandler),
            Rule(UpgradeMatcher(), WebSocketProxy),
            Rule(PathMatches(".*"), HTTPProxy),
        ],
        gate=gate,
        websocket_max_message_size=MAX_MESSAGE_BYTES,
        compress_response=False,
    )


# -- events ---------------------------------------------------------------------------


class GateEvents:
    """The gate's audit events, spooled under its own state folder and shipped with the server's token."""

    def __init__(self, context, clock, spool, shipper=None):
        self.context = context
        self.clock = clock
        self.spool = spool
        self.shipper = shipper

    def emit(self, name: str, at=None, **data) -> None:
        from ...contracts.events import guard_event

        record = {
            "event_id": uuid.uuid4().hex,
            "user": self.context.user,
            "site": self.context.site,
            "approval_id": self.context.approval_id,
            "time": (at or self.clock.now()).isoformat(),
            "schema": guard_event(name),
            "version": 1,
            "data": {k: v for k, v in data.items() if v is not None},
        }
        try:
            self.spool.append(record)
        except OSError:
            log.exception("could not spool the %s event", name)
        if self.shipper is not None:
            self.shipper.wake()

    def download_blocked(self, route: str, decision: Decision) -> None:
        self.emit(
            "download-blocked",
            path=route,
            route="gate",
            reason="egress-cap" if decision.reason == "egress-cap" else "individual-level",
            kind=decision.reason,
            detail=decision.what_en[:500],
        )

    def output_withheld(self, channel: str, msg_type: str, decision: Decision, route=None) -> None:
        self.emit(
            "output-withheld",
            channel=channel,
            msg_type=msg_type or None,
            kind=decision.reason,
            detail=decision.what_en[:500],
            route=route,
        )

    def level_crossed(self, level: str, reading) -> None:
        """`egress-alert` or `egress-cap`: the secretariat sees it on the admin page."""
        self.emit(f"egress-{level}", **reading.event_data(level))

    def tallies(self, meter, force: bool = False) -> None:
        """The ledger's lines due now (`egress-tally`), each at the instant of its last count."""
        for t in meter.tallies(force=force):
            self.emit("egress-tally", at=t.at, **t.event_data())


def spool_dir() -> Path:
    return Path(os.environ.get("VISITING_GATE_STATE", STATE_DIR)) / "spool"
