"""The demo OIDC provider on its own: discovery, the code flow, the login form, logout, bad set-up files.

Runs the real `node idp/server.mjs` on a free loopback port; nothing is mocked.
The client's redirect URI is never followed: a test reads the code off the
Location header, as the hub would receive it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urljoin, urlparse

import pytest
import requests
import yaml

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
USERS = yaml.safe_load((REPO / "policies/demo/users.yaml").read_text())["users"]
REDIRECT = "http://127.0.0.1:1/hub/oauth_callback"
LOGGED_OUT = "http://127.0.0.1:1/hub/"
CLIENT_ID, CLIENT_SECRET = "test-hub", secrets.token_urlsafe(16)
CLIENTS = [
    {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uris": [REDIRECT],
        "post_logout_redirect_uris": [LOGGED_OUT],
    }
]
FORM_RE = re.compile(r'<form[^>]*method="post"[^>]*action="([^"]+)"', re.I)
START_TIMEOUT = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Idp:
    proc: subprocess.Popen
    url: str
    output: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)

    def drain(self):
        # the IdP logs every login; an unread pipe would stall it once full
        for line in self.proc.stdout:
            self.output.append(line)
            if line.strip() == f"visiting-idp listening on {self.url}":
                self.ready.set()

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(10)


def start_idp(tmp_path: Path, **env_overrides: str) -> Idp:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VISITING_IDP_")}
    env |= {"VISITING_IDP_PORT": str(port)} | env_overrides
    proc = subprocess.Popen(
        ["node", str(REPO / "idp/server.mjs")],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    idp = Idp(proc, f"http://127.0.0.1:{port}")
    threading.Thread(target=idp.drain, daemon=True).start()
    if not idp.ready.wait(START_TIMEOUT):
        proc.kill()
        pytest.fail(f"IdP not listening after {START_TIMEOUT} s:\n{''.join(idp.output)}")
    return idp


def write_clients(tmp_path: Path, clients) -> str:
    path = tmp_path / "clients.json"
    path.write_text(clients if isinstance(clients, str) else json.dumps(clients))
    return str(path)


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("idp")
    server = start_idp(tmp, VISITING_IDP_CLIENTS=write_clients(tmp, CLIENTS))
    yield server.url
    assert server.stop() == 0, "SIGTERM should end the IdP cleanly"


# -- a browser, as far as the IdP can tell ----------------------------------


def utf8(r: requests.Response) -> requests.Response:
    if "charset" not in r.headers.get("content-type", ""):
        r.encoding = "utf-8"
    return r


def follow(session: requests.Session, r: requests.Response, stop_at: str = REDIRECT):
    """Follow redirects inside the IdP; stop where the browser would hand over to the client."""
    while r.is_redirect and not r.headers["location"].startswith(stop_at):
        r = session.get(urljoin(r.url, r.headers["location"]), allow_redirects=False, timeout=10)
    return utf8(r)


def authorize(idp, session, client_id=CLIENT_ID, redirect_uri=REDIRECT, **extra):
    params = {
        "client_id": client_id,
        "response_type": "code",
        "scope": "openid profile email",
        "redirect_uri": redirect_uri,
        "state": secrets.token_urlsafe(8),
    } | extra
    r = session.get(f"{idp}/auth?{urlencode(params)}", allow_redirects=False, timeout=10)
    return follow(session, r, redirect_uri)


def submit_login(session, page, username, password, stop_at=REDIRECT):
    m = FORM_RE.search(page.text)
    assert m, f"no login form at {page.url}:\n{page.text[:500]}"
    r = session.post(
        urljoin(page.url, unescape(m.group(1))),
        data={"username": username, "password": password},
        allow_redirects=False,
        timeout=10,
    )
    return follow(session, r, stop_at)


def code_from(r: requests.Response) -> str:
    assert r.is_redirect, f"{r.status_code}: {r.text[:300]}"
    assert r.headers["location"].startswith(REDIRECT)
    return parse_qs(urlparse(r.headers["location"]).query)["code"][0]


def login_code(idp, session, username="tanaka", password="tanaka-demo", **extra) -> str:
    page = authorize(idp, session, **extra)
    assert page.status_code == 200, page.text[:300]
    return code_from(submit_login(session, page, username, password))


def exchange(idp, code, auth_method="client_secret_basic", secret=CLIENT_SECRET, **extra):
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT} | extra
    if auth_method == "client_secret_post":
        return requests.post(
            f"{idp}/token",
            data=data | {"client_id": CLIENT_ID, "client_secret": secret},
            timeout=10,
        )
    return requests.post(f"{idp}/token", data=data, auth=(CLIENT_ID, secret), timeout=10)


def jwt_claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


# -- tests --------------------------------------------------------------------


def test_discovery(idp):
    doc = requests.get(f"{idp}/.well-known/openid-configuration", timeout=10).json()
    assert doc["issuer"] == idp
    for key in (
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "jwks_uri",
        "end_session_endpoint",
    ):
        assert doc[key].startswith(f"{idp}/"), key
    assert {"openid", "profile", "email"} <= set(doc["scopes_supported"])
    assert {"client_secret_basic", "client_secret_post"} <= set(
        doc["token_endpoint_auth_methods_supported"]
    )
    assert "S256" in doc["code_challenge_methods_supported"]
    keys = requests.get(doc["jwks_uri"], timeout=10).json()["keys"]
    assert keys and all("d" not in k for k in keys), "only public keys are published"


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
@pytest.mark.parametrize("user", USERS, ids=[u["username"] for u in USERS])
def test_code_flow(idp, user, auth_method):
    s = requests.Session()
    page = authorize(idp, s)
    assert page.status_code == 200
    assert "Demo accounts only — デモ専用" in page.text
    code = code_from(submit_login(s, page, user["username"], user["password"]))

    token = exchange(idp, code, auth_method)
    assert token.status_code == 200, token.text
    tokens = token.json()
    expected = {
        "sub": user["username"],
        "preferred_username": user["username"],
        "name": user["name"],
        "email": user["email"],
        "email_verified": True,
    }
    info = requests.get(
        f"{idp}/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=10
    )
    assert info.status_code == 200, info.text
    assert info.json().items() >= expected.items()
    id_token = jwt_claims(tokens["id_token"])
    assert id_token.items() >= expected.items()
    assert id_token["iss"] == idp and id_token["aud"] == CLIENT_ID


def test_pkce_s256(idp):
    verifier = secrets.token_urlsafe(48)
    s = requests.Session()
    challenge = {"code_challenge": s256(verifier), "code_challenge_method": "S256"}

    code = login_code(idp, s, **challenge)
    wrong = exchange(idp, code, code_verifier="x" * 43)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"

    # the session at the IdP answers the second request without a login
    code = code_from(authorize(idp, s, **challenge))
    missing = exchange(idp, code)
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_grant"

    code = code_from(authorize(idp, s, **challenge))
    ok = exchange(idp, code, "client_secret_post", code_verifier=verifier)
    assert ok.status_code == 200, ok.text


def test_code_is_single_use(idp):
    code = login_code(idp, requests.Session())
    assert exchange(idp, code).status_code == 200
    again = exchange(idp, code)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
def test_wrong_client_secret(idp, auth_method):
    code = login_code(idp, requests.Session())
    r = exchange(idp, code, auth_method, secret="wrong")
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    "username,password,status,message",
    [
        pytest.param(
            "tanaka",
            "wrong",
            401,
            "Wrong user name or password / ユーザー名またはパスワードが違います",
            id="wrong-password",
        ),
        pytest.param(
            "nobody",
            "tanaka-demo",
            401,
            "Wrong user name or password / ユーザー名またはパスワードが違います",
            id="unknown-user",
        ),
        pytest.param(
            "tanaka",
            "",
            400,
            "Enter your password / パスワードを入力してください",
            id="empty-password",
        ),
        pytest.param(
            "", "x", 400, "Enter your user name / ユーザー名を入力してください", id="empty-username"
        ),
    ],
)
def test_bad_login(idp, username, password, status, message):
    s = requests.Session()
    page = authorize(idp, s)
    r = submit_login(s, page, username, password)
    assert r.status_code == status
    assert message in r.text
    assert FORM_RE.search(r.text), "the form is shown again"
    # and the same form still accepts the right password afterwards
    assert code_from(submit_login(s, r, "tanaka", "tanaka-demo"))


def test_second_authorization_needs_no_login(idp):
    s = requests.Session()
    login_code(idp, s)
    again = authorize(idp, s)
    assert again.is_redirect, f"login form shown again: {again.status_code}"
    assert exchange(idp, code_from(again)).status_code == 200


def test_end_session_logs_out(idp):
    s = requests.Session()
    login_code(idp, s)
    params = {"client_id": CLIENT_ID, "post_logout_redirect_uri": LOGGED_OUT}
    confirm = utf8(s.get(f"{idp}/session/end", params=params, timeout=10))
    assert confirm.status_code == 200 and "ログアウト / Log out" in confirm.text
    form = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', confirm.text))
    action = FORM_RE.search(confirm.text).group(1)
    r = s.post(
        urljoin(confirm.url, unescape(action)),
        data=form | {"logout": "yes"},
        allow_redirects=False,
        timeout=10,
    )
    assert follow(s, r, LOGGED_OUT).headers["location"].startswith(LOGGED_OUT)
    page = authorize(idp, s)
    assert page.status_code == 200 and FORM_RE.search(page.text), "a new login is asked for"


def test_unknown_redirect_uri_is_refused(idp):
    page = authorize(idp, requests.Session(), redirect_uri="http://127.0.0.1:1/elsewhere")
    assert page.status_code == 400 and "redirect_uri" in page.text


def test_default_client(tmp_path):
    """Without VISITING_IDP_CLIENTS the demo hub's client is registered."""
    server = start_idp(tmp_path, VISITING_IDP_DEFAULT_SECRET="from-env")
    try:
        hub_callback = "http://127.0.0.1:8000/hub/oauth_callback"
        s = requests.Session()
        page = authorize(server.url, s, client_id="visiting-hub", redirect_uri=hub_callback)
        r = submit_login(s, page, "sato", "sato-demo", stop_at=hub_callback)
        assert r.is_redirect, f"{r.status_code}: {r.text[:300]}"
        location = r.headers["location"]
        code = parse_qs(urlparse(location).query)["code"][0]
        token = requests.post(
            f"{server.url}/token",
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": hub_callback},
            auth=("visiting-hub", "from-env"),
            timeout=10,
        )
        assert token.status_code == 200, token.text
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize(
    "users_text,clients,message",
    [
        pytest.param(None, None, "file not found", id="missing-file"),
        pytest.param("users: [\n", None, "cannot be read as YAML", id="not-yaml"),
        pytest.param(
            "users:\n  - {username: a, name: A, email: a@x}\n",
            None,
            "users[0].password: missing field",
            id="user-without-password",
        ),
        pytest.param(
            "users:\n  - {username: a, password: p}\n  - {username: a, password: q}\n",
            None,
            "users[1].username: user 'a' is listed twice",
            id="duplicate-username",
        ),
        pytest.param(
            "users:\n  - {username: a, password: 1234}\n",
            None,
            "users[0].password: must be a string",
            id="password-not-a-string",
        ),
        pytest.param("users: []\n", "{not json", "not JSON", id="clients-not-json"),
        pytest.param(
            "users: []\n",
            [{"client_id": "x", "redirect_uris": [REDIRECT]}],
            "[0].client_secret: missing field",
            id="client-without-secret",
        ),
        pytest.param(
            "users: []\n",
            [{"client_id": "x", "client_secret": "s", "redirect_uris": ["not a uri"]}],
            "redirect_uris must only contain valid uris",
            id="client-bad-redirect-uri",
        ),
    ],
)
def test_bad_setup_files_stop_the_idp(tmp_path, users_text, clients, message):
    users = tmp_path / "users.yaml"
    if users_text is not None:
        users.write_text(users_text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VISITING_IDP_")}
    env |= {"VISITING_IDP_PORT": str(free_port()), "VISITING_IDP_USERS": str(users)}
    culprit = users
    if clients is not None:
        culprit = Path(write_clients(tmp_path, clients))
        env["VISITING_IDP_CLIENTS"] = str(culprit)
    proc = subprocess.run(
        ["node", str(REPO / "idp/server.mjs")],
        env=env,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
    )
    assert proc.returncode != 0
    assert "listening" not in proc.stdout
    # oidc-provider may print its own warnings; ours is the one line that names the file
    ours = [line for line in proc.stderr.splitlines() if line.startswith("visiting-idp: ")]
    assert len(ours) == 1, proc.stderr
    assert f"{culprit}: " in ours[0] and message in ours[0]
