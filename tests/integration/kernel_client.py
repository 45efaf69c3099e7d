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


@dataclass
class Execution:
    """What one execute_request produced, as a notebook cell would show it."""

    status: str = ""  # the execute_reply's: ok, error, aborted
    stdout: str = ""
    stderr: str = ""
    results: list[dict] = field(default_factory=list)  # execute_result / display_data `data`
    error: dict | None = None  # ename, evalue, traceback
    outputs: list[dict] = field(default_factory=list)  # every output message's type and content

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
    ):
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

    def execute(self, code: str, timeout: float = 600) -> Execution:
        """Run `code` as a notebook cell; returns its outputs once the kernel is idle again."""
        return self._run(self._execute(code, timeout))

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

    def _send(self, msg_type: str, content: dict) -> str:
        msg = self._message(msg_type, content)
        self._ws.write_message(json.dumps(msg))
        return msg["header"]["msg_id"]

    async def _receive(self, timeout: float) -> dict | None:
        """The next JSON message; None for a binary frame (buffers of widgets, not needed here)."""
        raw = await asyncio.wait_for(self._inbox.get(), timeout)
        if raw is None:
            raise AssertionError(f"the websocket of kernel {self.kernel_id} closed")
        if isinstance(raw, bytes):
            return None
        return json.loads(raw)

    async def _until(self, done, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            msg = await self._receive(left)
            if msg is not None and done(msg):
                return msg

    async def _execute(self, code: str, timeout: float) -> Execution:
        msg_id = self._send(
            "execute_request",
            {
                "code": code,
                "silent": False,
                "store_history": True,
                "user_expressions": {},
                "allow_stdin": False,
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
            if msg is None or msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["header"]["msg_type"], msg["content"]
            if msg["channel"] == "shell" and kind == "execute_reply":
                run.status = content.get("status", "")
                replied = True
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
