"""The full OIDC login through the real IdP, hub and proxy, for every demo account.

Rules checked: "Who may use" (only named handlers with an approval), "Period"
(use only within the approved period; an approval that ends while someone is
logged in stops working), "Partner sites" (one login for the platform).
"""

from __future__ import annotations

from datetime import datetime

import pytest
import requests

from extensions.contracts.clock import JST

from .conftest import AUTH_REFRESH_AGE, hub_login

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "username",
    [
        pytest.param("tanaka", id="handler-with-active-approval"),
        pytest.param("admin-nig", id="site-admin"),
        pytest.param("jimu", id="secretariat"),
    ],
)
def test_admitted(stack, username):
    session, r = hub_login(stack.config.hub_url, username, f"{username}-demo")
    assert r.status_code == 200, r.text[:800]
    assert r.url == f"{stack.config.hub_url}/hub/home"
    assert username in r.text
    user = _api_user(session, stack, username)
    assert user["name"] == username


@pytest.mark.parametrize(
    "username,english,japanese",
    [
        pytest.param(
            "sato",
            "Your approval J-DU000102 ended on 2021-03-31",
            "2021-03-31 に終了しました",
            id="approval-ended",
        ),
        pytest.param(
            "suzuki",
            "Your approval J-DU000103 starts on 2040-04-01",
            "2040-04-01 に始まります",
            id="approval-not-started",
        ),
        pytest.param(
            "takahashi",
            "User takahashi has no approved application",
            "承認された利用申請がありません",
            id="no-approval",
        ),
    ],
)
def test_refused_with_reason(stack, username, english, japanese):
    _, r = hub_login(stack.config.hub_url, username, f"{username}-demo")
    assert r.status_code == 403 and r.reason == "Access refused"
    assert "403 : Access refused" in r.text
    assert r.url.startswith(f"{stack.config.hub_url}/hub/oauth_callback")
    assert english in r.text
    assert japanese in r.text
    assert stack.bundle.platform.contact in r.text


def test_wrong_password_stays_at_the_idp(stack):
    _, r = hub_login(stack.config.hub_url, "tanaka", "not-the-password")
    assert r.status_code == 401
    assert r.url.startswith(stack.config.idp_url)
    assert "ユーザー名またはパスワードが違います" in r.text


def test_roles_become_groups(stack):
    session, r = hub_login(stack.config.hub_url, "admin-nig", "admin-nig-demo")
    assert r.status_code == 200
    assert _api_user(session, stack, "admin-nig")["groups"] == ["site-admin-nig"]


def test_approval_ending_while_logged_in(stack, hub_clock):
    """tanaka is logged in; the clock passes the end of J-DU000101; his next request is refused."""
    hub = stack.config.hub_url
    session, r = hub_login(hub, "tanaka", "tanaka-demo")
    assert r.status_code == 200
    token = _new_token(session, stack, "tanaka")
    api = {"Authorization": f"token {token}"}
    assert requests.get(f"{hub}/hub/api/user", headers=api, timeout=10).status_code == 200

    hub_clock.set(datetime(2035, 3, 31, 23, 59, 0, tzinfo=JST))
    _wait_refresh_interval()
    assert session.get(f"{hub}/hub/home", timeout=30).status_code == 200, "last day still works"

    hub_clock.set(datetime(2035, 4, 1, 0, 0, 0, tzinfo=JST))
    _wait_refresh_interval()
    r = session.get(f"{hub}/hub/home", timeout=30)
    assert r.status_code == 403
    assert "Your approval J-DU000101 ended on 2035-03-31" in r.text
    assert "2035-03-31 に終了しました" in r.text
    # his API token stops too, not only the browser session
    assert requests.get(f"{hub}/hub/api/user", headers=api, timeout=10).status_code == 403


def _wait_refresh_interval():
    # JupyterHub re-checks auth at most once per auth_refresh_age (its own monotonic
    # clock); the approval's time is moved through the clock file, not waited for.
    import time

    time.sleep(AUTH_REFRESH_AGE + 0.5)


def _xsrf_headers(session: requests.Session) -> dict:
    token = session.cookies.get("_xsrf")
    return {"X-XSRFToken": token} if token else {}


def _api_user(session: requests.Session, stack, username: str) -> dict:
    r = session.get(
        f"{stack.config.hub_url}/hub/api/users/{username}",
        headers=_xsrf_headers(session),
        timeout=10,
    )
    assert r.status_code == 200, r.text[:500]
    return r.json()


def _new_token(session: requests.Session, stack, username: str) -> str:
    r = session.post(
        f"{stack.config.hub_url}/hub/api/users/{username}/tokens",
        json={"note": "test", "expires_in": 3600},
        headers=_xsrf_headers(session),
        timeout=10,
    )
    assert r.status_code == 201, r.text[:500]
    return r.json()["token"]
