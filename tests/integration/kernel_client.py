"""A notebook kernel driven as JupyterLab drives it: the server's REST API and the kernel's websocket.

    with Kernel(f"{hub_url}/user/tanaka/nig/", token) as k:
        run = k.execute("print(1 + 1)")
        assert run.stdout == "2\\n"

The kernel is started with POST api/kernels (or, given a notebook's path, with
POST api/sessions as JupyterLab does when it opens a notebook: the kernel then
runs in the notebook's folder), code goes to it as a Jupyter
`execute_request` (message protocol 5.3) over ws(s)://.../api/kernels/<id>/channels,
and what the kernel sends back on iopub for that request (streams, results,
errors) is collected until it reports `idle`. Everything goes through the
hub's proxy with the person's own token in an `Authorization: token` header,
so the single-user server's own checks (and the data guard's) apply.

Both websocket protocols JupyterLab speaks are available: the JSON one
(`protocol="json"`, the default; a message with buffers then comes as a
binary frame) and `v1.kernel.websocket.jupyter.org` (`protocol="v1"`, every
message a binary frame of offsets, channel and parts). Every message the
kernel sends, on every channel, is kept in `Kernel.received` in the order it
arrived; `request()` sends any shell message (inspect, complete, history,
comm, debug) and returns every message answering it, and `execute()` can
answer `input()` prompts and ask for `user_expressions`.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

PROTOCOL_VERSION = "5.3"
V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"


def _json_default(obj):
    if isinstance(obj, datetime):
        return obj.isoformat()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def serialize_v1(msg: dict, channel: str) -> bytes:
    """A message as the v1 protocol frames it: offsets (little-endian 64-bit), channel, parts."""
    parts = [
        json.dumps(msg[k], default=_json_default).encode()
        for k in ("header", "parent_header", "metadata", "content")
    ] + [bytes(b) for b in msg.get("buffers", [])]
    name = channel.encode()
    offsets = [8 * (1 + 1 + len(parts) + 1)]
    offsets.append(offsets[-1] + len(name))
    for part in parts:
        offsets.append(offsets[-1] + len(part))
    head = len(offsets).to_bytes(8, "little") + b"".join(o.to_bytes(8, "little") for o in offsets)
    return head + name + b"".join(parts)


def deserialize_v1(frame: bytes) -> dict:
    """A v1 frame back into a message dict with `channel` and `buffers` (bytes)."""
    n = int.from_bytes(frame[:8], "little")
    offsets = [int.from_bytes(frame[8 * (i + 1) : 8 * (i + 2)], "little") for i in range(n)]
    channel = frame[offsets[0] : offsets[1]].decode()
    parts = [frame[offsets[i] : offsets[i + 1]] for i in range(1, n - 1)]
    msg = {
        k: json.loads(parts[i]) if i < len(parts) else {}
        for i, k in enumerate(("header", "parent_header", "metadata", "content"))
    }
    msg["buffers"] = [bytes(b) for b in parts[4:]]
    msg["channel"] = channel
    return msg


def deserialize_legacy_binary(frame: bytes) -> dict:
    """A binary frame of the JSON protocol (a message with buffers): a 32-bit big-endian count,
    offsets, the JSON message, then the buffers."""
    import struct

    nbufs = struct.unpack("!I", frame[:4])[0]
    offsets = list(struct.unpack("!" + "I" * nbufs, frame[4 : 4 * (nbufs + 1)])) + [None]
    chunks = [frame[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    msg = json.loads(chunks[0])
    msg["buffers"] = [bytes(c) for c in chunks[1:]]
    return msg


@dataclass
class Reply:
    """Every message answering one request (any channel), and the shell reply's content."""

    msg_id: str
    reply: dict | None = None
    reply_type: str = ""
    messages: list[dict] = field(default_factory=list)


@dataclass
class Execution:
    """What one execute_request produced, as a notebook cell would show it."""

    status: str = ""  # the execute_reply's: ok, error, aborted
    stdout: str = ""
    stderr: str = ""
    results: list[dict] = field(default_factory=list)  # execute_result / display_data `data`
    error: dict | None = None  # ename, evalue, traceback
    outputs: list[dict] = field(default_factory=list)  # every output message's type and content
    reply: dict | None = None  # the execute_reply's content (user_expressions, payload)
    messages: list[dict] = field(default_factory=list)  # every message answering it, any channel

    def raise_for_error(self) -> Execution:
        if self.status != "ok" or self.error:
            tb = "\n".join((self.error or {}).get("traceback", []))
            raise AssertionError(
                f"the cell failed ({self.status}): {self.error}\n{tb}\n"
                f"stdout:\n{self.stdout[-3000:]}\nstderr:\n{self.stderr[-3000:]}"
            )
        return self


class Kernel:
    """A kernel of a running single-user server, reached at `server_url` (ending in /)."""

    def __init__(
        self,
        server_url: str,
        token: str,
        username: str = "",
        kernel_name: str = "python3",
        timeout: float = 120,
        notebook_path: str | None = None,
        protocol: str = "json",
    ):
        if protocol not in ("json", "v1"):
            raise ValueError(f"protocol is 'json' or 'v1', not {protocol!r}")
        self.protocol = protocol
        self.server_url = server_url if server_url.endswith("/") else server_url + "/"
        self.token = token
        self.username = username
        self.kernel_name = kernel_name
        self.timeout = timeout
        self.session_id = uuid.uuid4().hex
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"token {token}"
        self.kernel_id: str | None = None
        self.notebook_path = notebook_path
        self.session_model_id: str | None = None
        self._loop = asyncio.new_event_loop()
        self._ws = None
        self._inbox: asyncio.Queue | None = None
        #: every message the kernel sent, decoded, in the order it arrived
        self.received: list[dict] = []
        #: the websocket subprotocol the server chose (None: the JSON protocol)
        self.selected_subprotocol: str | None = None

    # -- life ----------------------------------------------------------------------------

    def start(self) -> Kernel:
        if self.notebook_path:
            r = self.http.post(
                urljoin(self.server_url, "api/sessions"),
                json={
                    "path": self.notebook_path,
                    "name": self.notebook_path.rsplit("/", 1)[-1],
                    "type": "notebook",
                    "kernel": {"name": self.kernel_name},
                },
                timeout=self.timeout,
            )
            if r.status_code != 201:
                raise AssertionError(f"POST api/sessions: {r.status_code} {r.text[:500]}")
            self.session_model_id = r.json()["id"]
            self.kernel_id = r.json()["kernel"]["id"]
        else:
            r = self.http.post(
                urljoin(self.server_url, "api/kernels"),
                json={"name": self.kernel_name},
                timeout=self.timeout,
            )
            if r.status_code != 201:
                raise AssertionError(f"POST api/kernels: {r.status_code} {r.text[:500]}")
            self.kernel_id = r.json()["id"]
        self._run(self._connect())
        return self

    def shutdown(self) -> None:
        try:
            if self._ws is not None:
                self._ws.close()
                self._ws = None
            if self.session_model_id is not None:
                r = self.http.delete(
                    urljoin(self.server_url, f"api/sessions/{self.session_model_id}"),
                    timeout=self.timeout,
                )
                if r.status_code not in (204, 404):
                    raise AssertionError(f"DELETE api/sessions: {r.status_code} {r.text[:500]}")
                self.session_model_id = self.kernel_id = None
            if self.kernel_id is not None:
                r = self.http.delete(
                    urljoin(self.server_url, f"api/kernels/{self.kernel_id}"),
                    timeout=self.timeout,
                )
                if r.status_code not in (204, 404):
                    raise AssertionError(f"DELETE api/kernels: {r.status_code} {r.text[:500]}")
                self.kernel_id = None
        finally:
            self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

    def __enter__(self) -> Kernel:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.shutdown()

    # -- code ----------------------------------------------------------------------------

    def execute(
        self,
        code: str,
        timeout: float = 600,
        *,
        allow_stdin: bool = False,
        input_reply: str = "",
        user_expressions: dict | None = None,
        silent: bool = False,
        store_history: bool = True,
    ) -> Execution:
        """Run `code` as a notebook cell; returns its outputs once the kernel is idle again.

        With `allow_stdin`, each `input_request` is answered with `input_reply`.
        """
        return self._run(
            self._execute(
                code,
                timeout,
                allow_stdin=allow_stdin,
                input_reply=input_reply,
                user_expressions=user_expressions or {},
                silent=silent,
                store_history=store_history,
            )
        )

    def request(
        self, msg_type: str, content: dict, channel: str = "shell", timeout: float = 60
    ) -> Reply:
        """Send any request (inspect_request, complete_request, history_request, comm_open,
        comm_msg, debug_request, ...) and collect every message whose parent it is until
        the kernel has replied and is idle again (or, for a message without a reply such
        as comm_msg, until the kernel is idle)."""
        return self._run(self._request(msg_type, content, channel, timeout))

    def drain(self, seconds: float = 1.0) -> list[dict]:
        """Wait `seconds` for messages that arrive on their own; returns those."""
        before = len(self.received)

        async def wait():
            deadline = time.monotonic() + seconds
            while (left := deadline - time.monotonic()) > 0:
                try:
                    await self._receive(left)
                except TimeoutError:
                    break

        self._run(wait())
        return self.received[before:]

    # -- the websocket -------------------------------------------------------------------

    def _run(self, coro):
        return self._loop.run_until_complete(coro)

    def _channels_url(self) -> str:
        parts = urlsplit(urljoin(self.server_url, f"api/kernels/{self.kernel_id}/channels"))
        scheme = {"http": "ws", "https": "wss"}[parts.scheme]
        query = f"session_id={self.session_id}"
        return urlunsplit((scheme, parts.netloc, parts.path, query, ""))

    async def _connect(self) -> None:
        request = HTTPRequest(
            self._channels_url(),
            headers={"Authorization": f"token {self.token}"},
            request_timeout=self.timeout,
            connect_timeout=self.timeout,
        )
        # messages are queued by a callback: a read that times out then loses none of them
        self._inbox = asyncio.Queue()
        self._ws = await websocket_connect(
            request,
            on_message_callback=self._inbox.put_nowait,
            max_message_size=256 * 1024 * 1024,
            subprotocols=[V1_PROTOCOL] if self.protocol == "v1" else None,
        )
        self.selected_subprotocol = self._ws.selected_subprotocol
        if self.protocol == "v1" and self.selected_subprotocol != V1_PROTOCOL:
            raise AssertionError(
                f"asked for {V1_PROTOCOL}, the server chose {self.selected_subprotocol!r}"
            )
        # as JupyterLab does on connecting: ask for kernel_info until the kernel answers
        deadline = time.monotonic() + self.timeout
        while True:
            msg_id = self._send("kernel_info_request", {})
            try:
                await self._until(
                    lambda m, msg_id=msg_id: (
                        m["channel"] == "shell"
                        and m["header"]["msg_type"] == "kernel_info_reply"
                        and m["parent_header"].get("msg_id") == msg_id
                    ),
                    min(5.0, max(deadline - time.monotonic(), 0.1)),
                )
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"kernel {self.kernel_id} did not answer within {self.timeout} s"
                    ) from None

    def _message(self, msg_type: str, content: dict, channel: str = "shell") -> dict:
        return {
            "header": {
                "msg_id": uuid.uuid4().hex,
                "username": self.username,
                "session": self.session_id,
                "msg_type": msg_type,
                "version": PROTOCOL_VERSION,
                "date": datetime.now(UTC).isoformat(),
            },
            "parent_header": {},
            "metadata": {},
            "content": content,
            "buffers": [],
            "channel": channel,
        }

    def _send(
        self, msg_type: str, content: dict, channel: str = "shell", parent: dict | None = None
    ) -> str:
        msg = self._message(msg_type, content, channel)
        if parent is not None:
            msg["parent_header"] = parent
        if self.selected_subprotocol == V1_PROTOCOL:
            self._ws.write_message(serialize_v1(msg, channel), binary=True)
        else:
            self._ws.write_message(json.dumps(msg, default=_json_default))
        return msg["header"]["msg_id"]

    def _decode(self, raw) -> dict:
        if isinstance(raw, bytes):
            if self.selected_subprotocol == V1_PROTOCOL:
                return deserialize_v1(raw)
            return deserialize_legacy_binary(raw)
        msg = json.loads(raw)
        msg.setdefault("buffers", [])
        return msg

    async def _receive(self, timeout: float) -> dict:
        """The next message, decoded whatever its framing; kept in `received`."""
        raw = await asyncio.wait_for(self._inbox.get(), timeout)
        if raw is None:
            raise AssertionError(f"the websocket of kernel {self.kernel_id} closed")
        msg = self._decode(raw)
        self.received.append(msg)
        return msg

    async def _request(self, msg_type: str, content: dict, channel: str, timeout: float):
        msg_id = self._send(msg_type, content, channel)
        out = Reply(msg_id)
        expects_reply = msg_type.endswith("_request")
        replied = not expects_reply
        idle = False
        deadline = time.monotonic() + timeout
        while not (replied and idle):
            left = deadline - time.monotonic()
            if left <= 0:
                if replied:
                    break  # some requests never make the kernel busy; the reply is what counts
                raise AssertionError(
                    f"no {msg_type[:-8]}_reply within {timeout} s; got {out.messages[-5:]}"
                )
            try:
                msg = await self._receive(min(left, 5.0) if replied else left)
            except TimeoutError:
                if replied:
                    break
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            out.messages.append(msg)
            kind = msg["header"]["msg_type"]
            if kind == "status" and msg["channel"] == "iopub":
                idle = msg["content"].get("execution_state") == "idle"
            elif kind.endswith("_reply") and msg["channel"] in ("shell", "control"):
                out.reply, out.reply_type, replied = msg["content"], kind, True
        return out

    async def _until(self, done, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            msg = await self._receive(left)
            if done(msg):
                return msg

    async def _execute(
        self,
        code: str,
        timeout: float,
        allow_stdin: bool = False,
        input_reply: str = "",
        user_expressions: dict | None = None,
        silent: bool = False,
        store_history: bool = True,
    ) -> Execution:
        msg_id = self._send(
            "execute_request",
            {
                "code": code,
                "silent": silent,
                "store_history": store_history,
                "user_expressions": user_expressions or {},
                "allow_stdin": allow_stdin,
                "stop_on_error": True,
            },
        )
        run = Execution()
        idle = replied = False
        deadline = time.monotonic() + timeout
        while not (idle and replied):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"no answer within {timeout} s; so far: {run.outputs[-5:]}\n"
                    f"stdout: {run.stdout[-2000:]}\nstderr: {run.stderr[-2000:]}"
                )
            try:
                msg = await self._receive(left)
            except TimeoutError:
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            run.messages.append(msg)
            kind, content = msg["header"]["msg_type"], msg["content"]
            if msg["channel"] == "shell" and kind == "execute_reply":
                run.status = content.get("status", "")
                run.reply = content
                replied = True
            elif msg["channel"] == "stdin" and kind == "input_request":
                self._send("input_reply", {"value": input_reply}, "stdin", parent=msg["header"])
            elif msg["channel"] != "iopub":
                continue
            elif kind == "status":
                idle = content.get("execution_state") == "idle"
            elif kind == "stream":
                run.outputs.append({"type": kind, "content": content})
                if content.get("name") == "stderr":
                    run.stderr += content.get("text", "")
                else:
                    run.stdout += content.get("text", "")
            elif kind in ("execute_result", "display_data"):
                run.outputs.append({"type": kind, "content": content})
                run.results.append(content.get("data", {}))
            elif kind == "error":
                run.outputs.append({"type": kind, "content": content})
                run.error = content
        return run
