"""The gate's web application: a reverse proxy that inspects everything going to the client.

Requests from the client go to the Jupyter server unchanged. Responses and
websocket messages from the server are judged (see policy.py) before they go
on: an HTTP response is read whole (up to the platform's download limit),
recognised, metered and then sent, refused (403) or withheld (429 at the cap);
a websocket message is parsed in its protocol (Jupyter's kernel protocols,
the terminal protocol, anything else as text or bytes), judged, and sent as it
is or with its content replaced by a notice.

The parts: `judge` (the `Gate` the handlers share, which judges a response or
a message), `http_proxy` (HTTP responses and the gate's status page),
`websocket_proxy` (kernel, terminal and other sockets), `frames` (the kernel
protocols' framing) and `events` (the gate's audit events).
"""

from __future__ import annotations

import re

from tornado import web
from tornado.routing import Matcher, PathMatches, Rule

from .http_proxy import GateStatusHandler, HTTPProxy
from .judge import Gate
from .websocket_proxy import MAX_MESSAGE_BYTES, WebSocketProxy


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
