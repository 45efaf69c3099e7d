"""jupyterhub_config.py stays thin: the wiring is a pure function tested on a bare Config()."""

from __future__ import annotations

import pytest
from traitlets.config import Config

from hub.plugins.config import ConfigError, HubSettings, configure, discover_oidc

DISCOVERY = {
    "authorization_endpoint": "http://127.0.0.1:9000/auth",
    "token_endpoint": "http://127.0.0.1:9000/token",
    "userinfo_endpoint": "http://127.0.0.1:9000/me",
    "end_session_endpoint": "http://127.0.0.1:9000/session/end",
}


def test_configure_on_bare_config(tmp_path):
    settings = HubSettings(
        platform_dir=tmp_path / "p", state_dir=tmp_path / "state", client_secret="s3cret"
    )
    c = Config()
    configure(c, settings, discovery=DISCOVERY)
    assert c.JupyterHub.authenticator_class == "hub.plugins.auth.VisitingAuthenticator"
    assert c.JupyterHub.bind_url == "http://127.0.0.1:8000"
    assert c.JupyterHub.allow_named_servers is True
    a = c.VisitingAuthenticator
    assert a.authorize_url == DISCOVERY["authorization_endpoint"]
    assert a.userdata_url == DISCOVERY["userinfo_endpoint"]
    assert a.oauth_callback_url == "http://127.0.0.1:8000/hub/oauth_callback"
    assert a.client_secret == "s3cret"
    assert a.refresh_pre_spawn is True and a.auth_refresh_strict is True
    assert len(c.CryptKeeper["keys"][0]) == 32
    # the auth_state key is made once and kept, private to the owner
    key_file = tmp_path / "state" / "auth_state.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    c2 = Config()
    configure(c2, settings, discovery=DISCOVERY)
    assert c2.CryptKeeper["keys"] == c.CryptKeeper["keys"]


def test_settings_from_env(tmp_path):
    s = HubSettings.from_env(
        {
            "VISITING_PLATFORM": str(tmp_path),
            "VISITING_STATE_DIR": str(tmp_path / "st"),
            "VISITING_HUB_URL": "http://127.0.0.1:18000",
            "VISITING_AUTH_REFRESH_AGE": "5",
        }
    )
    assert s.hub_url == "http://127.0.0.1:18000" and s.auth_refresh_age == 5
    with pytest.raises(ConfigError, match="VISITING_HUB_API_PORT='x'"):
        HubSettings.from_env(
            {
                "VISITING_PLATFORM": str(tmp_path),
                "VISITING_STATE_DIR": str(tmp_path),
                "VISITING_HUB_API_PORT": "x",
            }
        )


def test_discovery_failure_names_the_url():
    # port 9 (discard) on loopback: nothing listens there in the tests
    with pytest.raises(ConfigError, match=r"http://127.0.0.1:9/.well-known/openid-configuration"):
        discover_oidc("http://127.0.0.1:9", timeout=2)


def test_services_know_their_hub_and_the_admin_page_knows_every_service(tmp_path):
    import json
    import os

    from hub.platform.traits import REPO_ROOT

    settings = HubSettings(
        platform_dir=REPO_ROOT / "policies" / "demo",
        state_dir=tmp_path / "state",
        enforcer_port=18083,
        gateway_ports={"ncc": 18091},
    )
    c = Config()
    configure(c, settings, discovery=DISCOVERY)
    services = {s["name"]: s for s in c.JupyterHub.services}
    # every service the hub starts names the hub's pid, so it ends with the hub
    managed = [s for s in services.values() if s.get("command")]
    assert len(managed) == 10
    assert all(s["environment"]["VISITING_HUB_PID"] == str(os.getpid()) for s in managed)
    # gateways beside the hub: as given, else 8090, 8091, ... in the platform's order
    assert services["gateway-nig"]["url"] == "http://127.0.0.1:8090"
    assert services["gateway-ncc"]["url"] == "http://127.0.0.1:18091"
    health = json.loads(services["admin"]["environment"]["VISITING_SERVICE_HEALTH"])
    assert sorted(health) == sorted(services)
    assert health["enforcer"] == "http://127.0.0.1:18083/services/enforcer/health"
    # the export airlock: on its port, freezing over local folders without site containers
    assert services["export"]["url"] == "http://127.0.0.1:8086"
    assert services["export"]["command"][-2:] == ["-m", "hub.services.export"]
    assert "VISITING_SITES" not in services["export"]["environment"]
    # a person and a server's token may call it; the service itself holds no role
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    assert "access:services!service=export" in roles["user"]["scopes"]
    assert "access:services!service=export" in c.SiteSpawner.server_token_scopes
    assert not any("export" in r.get("services", []) for r in roles.values())


def test_every_setting_has_help_and_its_variable():
    settings = HubSettings(environ={})
    names = settings.trait_names(config=True)
    assert {"platform_dir", "state_dir", "hub_url", "gateway_ports", "container_env"} <= set(names)
    for name in names:
        assert settings.traits()[name].help.strip(), f"{name} has no help"


@pytest.mark.parametrize(
    "var,value,message",
    [
        ("VISITING_CONTAINER_ENV", "[1, 2]", "VISITING_CONTAINER_ENV is not a JSON object"),
        ("VISITING_GATEWAY_PORTS", '{"nig": "x"}', "VISITING_GATEWAY_PORTS is not a JSON object"),
        ("VISITING_ENFORCER_INTERVAL", "soon", "VISITING_ENFORCER_INTERVAL='soon' is not valid"),
    ],
    ids=["container-env-not-object", "gateway-port-not-number", "interval-not-number"],
)
def test_a_bad_variable_fails_at_start_naming_it(tmp_path, var, value, message):
    env = {"VISITING_PLATFORM": str(tmp_path), "VISITING_STATE_DIR": str(tmp_path), var: value}
    with pytest.raises(ConfigError, match=message):
        HubSettings.from_env(env)


def test_settings_from_env_json_and_flags(tmp_path):
    s = HubSettings.from_env(
        {
            "VISITING_PLATFORM": str(tmp_path),
            "VISITING_STATE_DIR": str(tmp_path / "st"),
            "VISITING_CONTAINER_ENV": '{"VISITING_DATA_ACCESS_WINDOW": "1"}',
            "VISITING_GATEWAY_PORTS": '{"nig": "18090"}',
            "VISITING_SITES": "1",
            "PATH": "/usr/bin",
        }
    )
    assert s.container_env == {"VISITING_DATA_ACCESS_WINDOW": "1"}
    assert s.gateway_ports == {"nig": 18090}
    assert s.sites is True
    assert s.state_dir == (tmp_path / "st").resolve()
    # the hub's own services get the hub's platform, state and PATH
    assert s.service_environment == {
        "VISITING_PLATFORM": str(tmp_path),
        "VISITING_STATE_DIR": str(tmp_path / "st"),
        "PATH": "/usr/bin",
    }


def test_state_dir_defaults_to_the_platform_files():
    from hub.platform.policy import load_platform
    from hub.platform.traits import REPO_ROOT

    demo = REPO_ROOT / "policies" / "demo"
    s = HubSettings.from_env({"VISITING_PLATFORM": str(demo)})
    assert s.platform_dir == demo.resolve()
    assert s.state_dir == load_platform(demo).state_dir
    assert s.hub_url == "http://127.0.0.1:8000" and s.hub_api_port == 8081


def test_with_sites_in_containers_the_airlock_services_know_it(tmp_path):
    from hub.platform.traits import REPO_ROOT

    def environments(sites: bool) -> dict:
        settings = HubSettings(
            platform_dir=REPO_ROOT / "policies" / "demo", state_dir=tmp_path / "state", sites=sites
        )
        c = Config()
        configure(c, settings, discovery=DISCOVERY)
        return {s["name"]: s.get("environment", {}) for s in c.JupyterHub.services}

    for name in ("export", "admin"):
        assert environments(True)[name]["VISITING_SITES"] == "1", name
        assert "VISITING_SITES" not in environments(False)[name], name
