"""Websockets through the gate: kernel messages, terminal output in bursts, other sockets."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time

from tornado import httpclient, web, websocket

from .frames import V1_PROTOCOL, channel_of, pack_kernel_frame, parse_kernel_frame
from .http_proxy import HOP_BY_HOP, _GateMixin
from .judge import _Counted
from .policy import CAPPED, Decision, judge_output, text_of_content, withheld_content

log = logging.getLogger("visiting.gate")


WS_REQUEST_HEADERS_DROPPED = HOP_BY_HOP | {
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-protocol",
}
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


def is_bulk(text: str) -> bool:
    return text.count("\n") >= BULK_LINES or len(text) >= BULK_BYTES


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
