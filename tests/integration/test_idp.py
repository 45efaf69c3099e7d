"""The demo OIDC provider on its own: discovery, the code flow, the login form, bad set-up files.

Runs the real `node idp/server.mjs` on a free loopback port.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
import requests
import yaml

from hub.stack import free_port, http_ok

from .conftest import FORM_RE, as_browser

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
USERS = yaml.safe_load((REPO / "policies/demo/users.yaml").read_text())["users"]
REDIRECT = "http://127.0.0.1:1/callback"  # never followed: the test reads the code off the Location


def start_idp(tmp_path: Path, users: Path | None = None, clients: list | str | None = None):
    port = free_port()
    env = dict(os.environ, VISITING_IDP_PORT=str(port))
    if users:
        env["VISITING_IDP_USERS"] = str(users)
    if clients is not None:
        path = tmp_path / "clients.json"
        path.write_text(clients if isinstance(clients, str) else json.dumps(clients))
        env["VISITING_IDP_CLIENTS"] = str(path)
    proc = subprocess.Popen(
        ["node", str(REPO / "idp/server.mjs")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, f"http://127.0.0.1:{port}"


CLIENTS = [
    {"client_id": "basic", "client_secret": "s1", "redirect_uris": [REDIRECT]},
    {
        "client_id": "post",
        "client_secret": "s2",
        "redirect_uris": [REDIRECT],
        "token_endpoint_auth_method": "client_secret_post",
    },
]


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    proc, url = start_idp(tmp_path_factory.mktemp("idp"), clients=CLIENTS)
    deadline = time.monotonic() + 30
    while not http_ok(f"{url}/.well-known/openid-configuration"):
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "IdP did not start in 30 s"
        time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(10)


def authorize(idp, session, client_id="basic", pkce=None):
    params = {
        "client_id": client_id,
        "response_type": "code",
        "scope": "openid profile email",
        "redirect_uri": REDIRECT,
        "state": secrets.token_urlsafe(8),
    }
    if pkce:
        params |= {"code_challenge": pkce, "code_challenge_method": "S256"}
    return follow(session, session.get(f"{idp}/auth?{urlencode(params)}", allow_redirects=False))


def follow(session, r):
    """Follow redirects inside the IdP; stop at the client's redirect URI as a browser would hand over."""
    while r.is_redirect and not r.headers["location"].startswith(REDIRECT):
        r = session.get(
            requests.compat.urljoin(r.url, r.headers["location"]), allow_redirects=False
        )
    return as_browser(r)


def submit(idp, session, page, username, password):
    action = FORM_RE.search(page.text).group(1)
    r = session.post(
        requests.compat.urljoin(page.url, action),
        data={"username": username, "password": password},
        allow_redirects=False,
    )
    return follow(session, r)


def code_from(r):
    assert r.is_redirect, f"{r.status_code}: {r.text[:300]}"
    return parse_qs(urlparse(r.headers["location"]).query)["code"][0]


def test_discovery(idp):
    doc = requests.get(f"{idp}/.well-known/openid-configuration", timeout=5).json()
    assert doc["issuer"] == idp
    for key in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"):
        assert doc[key].startswith(idp)
    assert {"openid", "profile", "email"} <= set(doc["scopes_supported"])


@pytest.mark.parametrize("user", USERS, ids=[u["username"] for u in USERS])
def test_code_flow_for_every_demo_account(idp, user):
    s = requests.Session()
    page = authorize(idp, s)
    assert page.status_code == 200 and "Demo accounts only" in page.text and "デモ専用" in page.text
    code = code_from(submit(idp, s, page, user["username"], user["password"]))
    token = requests.post(
        f"{idp}/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
        auth=("basic", "s1"),
        timeout=5,
    )
    assert token.status_code == 200, token.text
    info = requests.get(
        f"{idp}/me", headers={"Authorization": f"Bearer {token.json()['access_token']}"}, timeout=5
    ).json()
    assert info["preferred_username"] == user["username"]
    assert info["name"] == user["name"] and info["email"] == user["email"]


def test_client_secret_post_and_pkce(idp):
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    s = requests.Session()
    code = code_from(
        submit(idp, s, authorize(idp, s, "post", pkce=challenge), "tanaka", "tanaka-demo")
    )
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": "post",
        "client_secret": "s2",
    }
    wrong = requests.post(f"{idp}/token", data=data | {"code_verifier": "x" * 43}, timeout=5)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    # a code is single-use, so the wrong verifier burnt it: log in again for the right one
    code = code_from(authorize(idp, s, "post", pkce=challenge))
    ok = requests.post(
        f"{idp}/token", data=data | {"code": code, "code_verifier": verifier}, timeout=5
    )
    assert ok.status_code == 200, ok.text


def test_wrong_client_secret(idp):
    s = requests.Session()
    code = code_from(submit(idp, s, authorize(idp, s), "tanaka", "tanaka-demo"))
    r = requests.post(
        f"{idp}/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
        auth=("basic", "wrong"),
        timeout=5,
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    "username,password,status,message",
    [
        pytest.param(
            "tanaka",
            "wrong",
            401,
            "ユーザー名またはパスワードが違います / Wrong user name or password",
            id="wrong-password",
        ),
        pytest.param("nobody", "x", 401, "Wrong user name or password", id="unknown-user"),
        pytest.param(
            "tanaka",
            "",
            400,
            "パスワードを入力してください / Enter your password",
            id="empty-password",
        ),
        pytest.param("", "x", 400, "Enter your user name", id="empty-user"),
    ],
)
def test_bad_login(idp, username, password, status, message):
    s = requests.Session()
    r = submit(idp, s, authorize(idp, s), username, password)
    assert r.status_code == status
    assert message in r.text
    assert FORM_RE.search(r.text), "the form is shown again"


def test_second_authorization_needs_no_login(idp):
    s = requests.Session()
    code_from(submit(idp, s, authorize(idp, s), "tanaka", "tanaka-demo"))
    again = authorize(idp, s)
    assert again.is_redirect and "code=" in again.headers["location"]


def test_unknown_redirect_uri_is_refused(idp):
    r = requests.get(
        f"{idp}/auth",
        params={
            "client_id": "basic",
            "response_type": "code",
            "scope": "openid",
            "redirect_uri": "http://127.0.0.1:1/elsewhere",
        },
        allow_redirects=False,
        timeout=5,
    )
    assert r.status_code == 400 and "redirect_uri" in r.text


@pytest.mark.parametrize(
    "users_text,clients,message",
    [
        pytest.param(None, None, "file not found", id="missing-users-file"),
        pytest.param("users: [\n", None, "cannot be read as YAML", id="users-not-yaml"),
        pytest.param(
            "users:\n  - {username: a, name: A, email: a@x}\n",
            None,
            "users[0].password: missing field",
            id="user-without-password",
        ),
        pytest.param(
            "users:\n  - {username: a, password: p, name: A, email: a@x}\n  - {username: a, password: q, name: B, email: b@x}\n",
            None,
            "users[1].username: user 'a' is listed twice",
            id="duplicate-username",
        ),
        pytest.param("users: []\n", "{not json", "not JSON", id="clients-not-json"),
        pytest.param(
            "users: []\n",
            [{"client_id": "x"}],
            "[0].client_secret: missing field",
            id="client-without-secret",
        ),
    ],
)
def test_bad_setup_files_stop_the_idp(tmp_path, users_text, clients, message):
    users = tmp_path / "users.yaml"
    if users_text is not None:
        users.write_text(users_text)
    proc, _ = start_idp(tmp_path, users=users, clients=clients)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2
    name = "clients.json" if "client" in message or "JSON" in message else "users.yaml"
    assert f"{name}: " in out and message in out
