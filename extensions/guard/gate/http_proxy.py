"""HTTP through the gate: responses read whole and judged, refusals, the gate's status page."""

from __future__ import annotations

import html
import json
import os
import re

from tornado import httpclient, web
from tornado.httputil import HTTPHeaders

from .judge import Gate, digester
from .policy import Decision, dumps, judge_airlock

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
TERMINAL_ROUTES = re.compile(r"(api/terminals|terminals/)")


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
        airlock = judge_airlock(method, route, gate.downloads)
        if airlock.withhold:
            return self._refuse(403, airlock, route)
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
