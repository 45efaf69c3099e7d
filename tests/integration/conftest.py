"""A real demo stack (OIDC provider, JupyterHub, configurable-http-proxy) for the integration tier.

Started once per test session on free loopback ports with a private state
folder, and with a clock file so tests can move the hub's "now".
"""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import urljoin

import pytest
import requests

from hub.demo.stack import Stack, StackConfig

AUTH_REFRESH_AGE = 2  # seconds; small so a test sees the hub re-check an approval


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    state = tmp_path_factory.mktemp("stack")
    config = StackConfig.ephemeral(
        state, auth_refresh_age=AUTH_REFRESH_AGE, clock_file=state / "now"
    )
    s = Stack(config)
    s.start()
    yield s
    s.stop()


@pytest.fixture
def hub_clock(stack):
    """Moves the running hub's clock; put back to the real time after the test."""
    from extensions.contracts.clock import FileClock

    clock = FileClock(stack.config.clock_file)
    yield clock
    stack.config.clock_file.unlink(missing_ok=True)


FORM_RE = re.compile(r'<form[^>]*action="([^"]+)"', re.I)


def idp_login(session: requests.Session, page: requests.Response, username: str, password: str):
    """Fill in the IdP's login form on `page` as a browser would, following every redirect."""
    m = FORM_RE.search(page.text)
    assert m, f"no login form at {page.url}:\n{page.text[:500]}"
    action = urljoin(page.url, unescape(m.group(1)))
    return session.post(action, data={"username": username, "password": password}, timeout=30)


def as_browser(r: requests.Response) -> requests.Response:
    """Decode as a browser does: the pages declare UTF-8 in <meta charset>, not always in the header."""
    if "charset" not in r.headers.get("content-type", ""):
        r.encoding = "utf-8"
    return r


def hub_login(hub_url: str, username: str, password: str):
    """Open the hub, get sent to the IdP, log in there; returns (session, last response)."""
    session = requests.Session()
    session.hooks["response"].append(lambda r, *a, **k: as_browser(r))
    page = session.get(f"{hub_url}/hub/login", timeout=30)
    assert page.status_code == 200, page.text[:500]
    return session, idp_login(session, page, username, password)


def token_of(stack, name: str, expires_in: int = 3600) -> str:
    """An API token of `name`, made as a person makes one: log in, then ask the hub."""
    session, r = hub_login(stack.config.hub_url, name, f"{name}-demo")
    assert r.status_code == 200, r.text[:300]
    r = session.post(
        f"{stack.config.hub_url}/hub/api/users/{name}/tokens",
        json={"note": "test", "expires_in": expires_in},
        headers={"X-XSRFToken": session.cookies.get("_xsrf", path="/hub/") or ""},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    return r.json()["token"]
