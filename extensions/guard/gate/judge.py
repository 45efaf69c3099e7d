"""The `Gate`: what the gate's handlers share, and how a response or a message is judged."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, field

from . import UPSTREAM_PORT
from .policy import (
    CAPPED,
    CONTROL_TYPES,
    PASS,
    dumps,
    judge_download,
    judge_output,
    redact_notebook,
    text_of_content,
)

# what any response may be at the cap without being withheld: JupyterLab's own calls
CAP_SMALL_BYTES = 64 * 1024
CAP_SMALL_CONTROL_BYTES = 1024
CONTENT_ROUTES = re.compile(r"(files|nbconvert|view|edit|api/contents)/")


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
    downloads: str = "direct"  # contracts.export DOWNLOAD_MODES; "airlock": no file downloads
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
