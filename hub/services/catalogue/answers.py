"""What a site said to the catalogue about one selection: counts, withheld, or no answer
and why (its site is down, its gateway failed, its gateway refused)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from hub.platform.messages import Message, message

#: why a site gave no count (SiteAnswer.reason)
SITE_DOWN = "site_down"  # the proxy cannot reach its gateway, or no answer in time
GATEWAY_ERROR = "gateway_error"  # the gateway answered 5xx: it failed
REFUSED = "refused"  # the gateway answered 4xx: not allowed, not there, a bad request
#: statuses with which the hub's proxy says it could not reach a service
PROXY_UNREACHABLE = (502, 503, 504)


@dataclass(frozen=True)
class NoAnswer:
    """Why a site gave no count: SITE_DOWN, GATEWAY_ERROR or REFUSED, the cause (an error,
    or the gateway's own message) and the gateway's code when it gave one."""

    reason: str
    cause: str
    code: str | None = None


def no_answer(status: int | None, body: dict | None, error: str) -> NoAnswer:
    """Why a request to a gateway gave no count.

    `status` is the HTTP status (None or 599: no HTTP answer at all: refused
    connection, timeout), `body` the answer's JSON when it is the gateway's own
    (it holds `status` and `message`), `error` the client's description of the failure.
    Without the gateway's JSON the hub or its proxy answered: 502-504 (and 404, no
    route) mean the gateway could not be reached.
    """
    if status is None or status == 599:
        return NoAnswer(SITE_DOWN, error)
    if body is not None:
        cause = str(body.get("message") or f"HTTP {status}")
        code = body.get("code") or None
        return NoAnswer(REFUSED if status < 500 else GATEWAY_ERROR, cause, code)
    if status in PROXY_UNREACHABLE or status == 404:
        return NoAnswer(SITE_DOWN, f"the hub's proxy answered {error or f'HTTP {status}'}")
    return NoAnswer(REFUSED if status < 500 else GATEWAY_ERROR, error or f"HTTP {status}")


def gateway_body(raw: bytes | None) -> dict | None:
    """The gateway's JSON error (with `status` and `message`), or None for anything else
    (the hub's error page, an empty body)."""
    try:
        doc = json.loads(raw) if raw else None
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and "message" in doc and "status" in doc else None


@dataclass
class SiteAnswer:
    """What one site said about one selection: counts, withheld, or no answer and why."""

    site: str
    dataset: str
    status: str  # "answered", "withheld" (fewer people than the rule), "unavailable"
    n: int | None = None
    half: object | None = None  # the SiteHalf when answered
    message: str = ""
    why: NoAnswer | None = None  # when unavailable

    @property
    def label(self) -> Message | None:
        """A short text for a table cell: "no answer: site down"."""
        return message(f"catalogue.{self.why.reason}.label") if self.why else None

    @property
    def text(self) -> Message | None:
        """What happened, with the site and the cause."""
        if self.why is None:
            return None
        return message(f"catalogue.{self.why.reason}", site=self.site, cause=self.why.cause)

    def to_json(self) -> dict:
        return {
            "site": self.site,
            "dataset": self.dataset,
            "status": self.status,
            "n": self.n,
            "message": self.message,
            "reason": self.why.reason if self.why else None,
            "code": self.why.code if self.why else None,
            "label": self.label.to_json() if self.why else None,
            "text": self.text.to_json() if self.why else None,
        }
