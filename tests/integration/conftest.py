"""Real demo stacks (OIDC provider, JupyterHub, configurable-http-proxy) for the integration tier.

- `stack`: no sites (gateways beside the hub), started once per session on free
  loopback ports with a private state folder and a clock file.
- `site_stack`: the five sites too (Docker engine, site networks, Dask clusters,
  gateway containers, SiteSpawner), started once per session by `start_site_stack`
  and shared by every module that needs the sites (see SITE_STACK_MODULES). Each
  module gets it through a module-scoped fixture that leaves it as it found it.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager, nullcontext
from html import unescape
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests
import yaml

from hub.demo.stack import Stack, StackConfig
from hub.platform.policy import load_policy_dir

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


# ---------------------------------------------------------------------------
# the session's stack with the five sites

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_PLATFORM = REPO_ROOT / "policies" / "demo"

#: the site stack's enforcer round, in seconds: short, so a test sees the enforcer act
#: (an approval ended with the clock moved, the catch-up after it was down) within seconds
SITE_ENFORCER_INTERVAL = 2
#: the hub's configuration under which every site module tests what it claims:
#: - the enforcer runs every 2 s (test_guard_site, test_operations_site, test_report_site
#:   time its stops; the others never end an approval with a server running);
#: - a container's own period check stays slow (600 s), so where an approval ends with a
#:   server running, the enforcer is what acts (test_guard_site);
#: - the guard reports each read of a data file at most once a second, not once a minute,
#:   so every short session reads data "now" (test_guard_site, test_report_site);
#: - a clock file is always there, empty (the real time) unless a test moves it.
SITE_STACK_ENV = {
    "VISITING_ENFORCER_INTERVAL": str(SITE_ENFORCER_INTERVAL),
    "VISITING_PERIOD_CHECK_SECONDS": "600",
    "VISITING_CONTAINER_ENV": json.dumps({"VISITING_DATA_ACCESS_WINDOW": "1"}),
}

#: an approval the shared site stack's platform adds to the demo's: takahashi at nig and
#: imsut, the person test_egress_gate_reach works as (no other site module uses takahashi)
GATE_REACH_APPROVAL = {
    "approval_id": "J-DU009901",
    "institution": "Example University",
    "purpose": "Egress gate tests: a handler at nig and at imsut",
    "handlers": ["takahashi"],
    "datasets": ["JGAD000101", "JGAD000501"],
    "period": {"start": "2024-04-01", "end": "2035-03-31"},
}

#: the modules on the session's site stack. Three of them restart its hub (only the hub:
#: the IdP, the sites, the Dask clusters and the gateway containers stay) onto a registry
#: and audit store of their own for the module, declared by SITE_STACK_VARIANT in the
#: module, and restart it back onto the shared one after:
#: - test_operations_site revokes sato's approval, changes J-DU000101's quota at nig,
#:   and counts the secretariat's actions in the whole log;
#: - test_report_site extends sato's approval and writes a fiscal year (FY2026, which
#:   holds today) whose every event its report must count, and no other module's;
#: - test_egress_meter runs on a platform of its own (small egress rules, an approval of
#:   takahashi's at nig only).
SITE_STACK_MODULES = (
    "test_sites",
    "test_federation_site",
    "test_guard_site",
    "test_operations_site",
    "test_report_site",
    "test_tutorials_site",
    "test_egress_attacks",
    "test_egress_normal_use",
    "test_egress_gate_reach",
    "test_egress_meter",
    "test_export_airlock_site",
)

#: a single-user server's container is labelled with its person and site
USER_LABEL, SITE_LABEL = "org.visiting.user", "org.visiting.site"


def platform_copy(
    dest: Path,
    edit: Callable[[dict], None] | None = None,
    approvals: Iterable[dict] = (),
) -> Path:
    """A private copy of the demo platform folder at `dest` (which may exist, empty), its data
    root the demo's (so the synthetic cohorts are shared), `edit` applied to platform.yaml's
    document, and `approvals` added as approval files."""
    shutil.copytree(DEMO_PLATFORM, dest, dirs_exist_ok=True)
    demo = load_policy_dir(DEMO_PLATFORM).platform
    path = dest / "platform.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["platform"]["data_root"] = str(demo.data_root)
    doc["platform"]["state_dir"] = str(dest / "state")
    if edit is not None:
        edit(doc)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    for a in approvals:
        (dest / "approvals" / f"{a['approval_id']}.yaml").write_text(
            yaml.safe_dump(a, allow_unicode=True, sort_keys=False)
        )
    return dest


def write_clock(path: Path, instant: str) -> None:
    """Set a clock file in place ('' is the real time): it is bind-mounted into the site
    containers, which a new file (write by rename, unlink) would not reach."""
    with open(path, "r+") as f:
        f.seek(0)
        f.write(instant)
        f.truncate()


class SiteStack(Stack):
    """A stack with sites whose hub can be restarted onto another platform folder and a
    registry and audit store of its own (`variant`), and put back as it was (`tidy`)."""

    database_file: Path | None = None

    def _database_url(self) -> str:
        if self.database_file is not None:
            return f"sqlite:///{self.database_file}"
        return super()._database_url()

    def hub_alive(self) -> bool:
        return any(p.name == "hub" and p.alive() for p in self.processes)

    def restart_hub(self) -> None:
        self.stop_hub()
        self.start_gateways()  # recreated only where their environment changed
        self.start_hub()

    @contextmanager
    def variant(self, folder: Path, platform_dir: Path | None = None):
        """The hub restarted onto a new registry and audit store in `folder` (the approvals
        of `platform_dir`, or of the stack's platform, imported into it) for the block, and
        back onto the shared ones after. The IdP, the sites and the hub's own database
        (people, tokens, servers) stay."""
        saved = (self.config.platform_dir, self.bundle, self.database_file)
        self.stop_hub()
        try:
            if platform_dir is not None:
                self.config.platform_dir = platform_dir
                self.bundle = load_policy_dir(platform_dir)
            folder.mkdir(parents=True, exist_ok=True)
            self.database_file = folder / "registry.sqlite"
            self.import_approvals()
            self.start_gateways()
            self.start_hub()
            yield self
        finally:
            self.stop_hub()
            self.config.platform_dir, self.bundle, self.database_file = saved
            self.start_gateways()
            self.start_hub()

    def tidy(self) -> list[str]:
        """Leave the stack as a module found it: the real time on the clock, the hub running,
        nobody suspended, no researcher's server running. Returns what had to be undone."""
        from hub.store.registry import ApprovalRegistry

        undone = []
        if self.config.clock_file.read_text().strip():
            undone.append("the clock was moved")
        write_clock(self.config.clock_file, "")
        if not self.hub_alive():
            undone.append("the hub was down")
            self.restart_hub()
        registry = ApprovalRegistry(self._database_url())
        try:
            # an institution's suspension is one per person too
            suspended = sorted({s.username for s in registry.suspensions() if s.lifted_at is None})
        finally:
            registry.close()
        if suspended:
            jimu = token_of(self, "jimu")
            for user in suspended:
                r = requests.post(
                    f"{self.config.hub_url}/services/admin/api/reinstate",
                    json={"user": user, "reason": "the test module is over"},
                    headers={"Authorization": f"token {jimu}"},
                    timeout=120,
                )
                assert r.status_code == 200, r.text
                undone.append(f"{user} was suspended")
        for user, site in self.running_servers():
            undone.append(f"{user}'s server at {site} was running")
            self.stop_server(user, site)
        return undone

    def running_servers(self) -> list[tuple[str, str]]:
        import docker

        from hub.sites.plan import resolve_endpoint

        client = docker.DockerClient(base_url=resolve_endpoint("local"))
        try:
            found = client.containers.list(all=True, filters={"label": [USER_LABEL]})
            return sorted({(c.labels[USER_LABEL], c.labels.get(SITE_LABEL, "")) for c in found})
        finally:
            client.close()

    def stop_server(self, user: str, site: str) -> None:
        """Stop `user`'s server at `site` as the person does (the hub forgets it), or, when
        the person cannot log in, remove its container (the hub notices on its next poll)."""
        session, r = hub_login(self.config.hub_url, user, f"{user}-demo")
        if r.status_code == 200:
            xsrf = {"X-XSRFToken": session.cookies.get("_xsrf", path="/hub/") or ""}
            url = f"{self.config.hub_url}/hub/api/users/{user}"
            session.delete(f"{url}/servers/{site}", headers=xsrf, timeout=60)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if site not in session.get(url, headers=xsrf, timeout=10).json().get("servers", {}):
                    return
                time.sleep(0.5)
        import docker

        from hub.sites.plan import resolve_endpoint

        client = docker.DockerClient(base_url=resolve_endpoint("local"))
        try:
            labels = [f"{USER_LABEL}={user}", f"{SITE_LABEL}={site}"]
            for c in client.containers.list(all=True, filters={"label": labels}):
                c.remove(force=True)
        finally:
            client.close()


def start_site_stack(
    tmp_path_factory, name: str, platform_dir: Path | None = None, **env
) -> SiteStack:
    """A stack with the five sites and an (empty, so real-time) clock file, started: the
    factory of the session's site stack. `env` is added to the hub's environment."""
    state = tmp_path_factory.mktemp(name)
    clock = state / "now"
    clock.write_text("")
    kwargs = {"platform_dir": platform_dir} if platform_dir is not None else {}
    config = StackConfig.ephemeral(
        state, sites=True, clock_file=clock, extra_env=dict(env), **kwargs
    )
    s = SiteStack(config)
    s.ensure_data()
    try:
        s.start_sites()
        s.start()
    except BaseException:
        s.stop()
        raise
    return s


@pytest.fixture(scope="session")
def shared_site_stack(tmp_path_factory):
    """The session's stack with the five sites, on the demo platform with
    GATE_REACH_APPROVAL added, under SITE_STACK_ENV; stopped at the session's end (also
    after SIGTERM or Ctrl-C, see tests/conftest.py), whatever a module did to it. Modules
    use it through `site_stack`."""
    platform = platform_copy(
        tmp_path_factory.mktemp("site-platform"), approvals=[GATE_REACH_APPROVAL]
    )
    s = start_site_stack(tmp_path_factory, "site-stack", platform_dir=platform, **SITE_STACK_ENV)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def site_stack(shared_site_stack, request, tmp_path_factory):
    """The session's site stack for one module, left as the module found it (`tidy`).

    A module that sets SITE_STACK_VARIANT = {"platform": f} (f: a folder -> the platform
    folder to run on, or None for the stack's own) gets the hub restarted onto a registry
    and audit store of its own for the module (see SITE_STACK_MODULES)."""
    s = shared_site_stack
    variant = getattr(request.module, "SITE_STACK_VARIANT", None)
    if variant is None:
        context = nullcontext(s)
    else:
        folder = tmp_path_factory.mktemp(f"{request.module.__name__.rsplit('.', 1)[-1]}-variant")
        make = variant.get("platform")
        context = s.variant(folder / "state", make(folder / "platform") if make else None)
    with context:
        try:
            yield s
        finally:
            undone = s.tidy()
            if undone:
                print(f"\n{request.module.__name__} left the site stack changed: {undone}")


class ModuleAudit:
    """The audit store as one module sees it: events recorded before it was made (by other
    modules on the same stack) are left out of `events`; everything else is the store's."""

    def __init__(self, stack: Stack):
        from hub.store.audit import AuditStore

        self.store = AuditStore(stack._database_url())
        self.before = {e["event_id"] for e in self.store.events()}

    def events(self, *args, **kwargs):
        return [e for e in self.store.events(*args, **kwargs) if e["event_id"] not in self.before]

    def __getattr__(self, name):
        return getattr(self.store, name)


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
