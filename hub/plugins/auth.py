"""VisitingAuthenticator: OpenID Connect login, admitted only with an approval active now.

A GenericOAuthenticator that overrides stages, not the template
(`get_authenticated_user` and `authenticate` stay as oauthenticator wrote
them):

- `update_auth_model` asks the registry about the person and stores the
  decision and the approvals found in auth_state;
- `get_user_groups` turns platform roles into JupyterHub groups;
- `check_allowed` admits or raises a 403 whose message says why, in
  Japanese and English;
- `refresh_user` asks again, so an approval that ends while someone is
  logged in stops working at the next refresh without a new login.
"""

from __future__ import annotations

from oauthenticator.generic import GenericOAuthenticator
from tornado import web
from traitlets import default

from hub.platform.access import AccessDecision, decide_access, role_group
from hub.platform.messages import message
from hub.platform.traits import PlatformTraits


class ApprovalRefused(web.HTTPError):
    """A 403 whose message a person reads on the hub's error page."""

    def __init__(self, decision: AccessDecision):
        # `reason` is the page's headline and the HTTP status line, so it stays short and ASCII;
        # the bilingual explanation is the page body
        super().__init__(403, "%s", decision.message, reason="Access refused")
        self.decision = decision
        self.jupyterhub_message = decision.message
        self.jupyterhub_html_message = (
            f'<p lang="ja">{web.escape.xhtml_escape(decision.message_ja)}</p>'
            f'<p lang="en">{web.escape.xhtml_escape(decision.message_en)}</p>'
        )


class VisitingAuthenticator(PlatformTraits, GenericOAuthenticator):
    """Log in through the platform's OIDC provider; admit data handlers with an active approval."""

    # oauthenticator's defaults that an OIDC provider wants differently
    @default("username_claim")
    def _username_claim_default(self):
        return "preferred_username"

    @default("scope")
    def _scope_default(self):
        return ["openid", "profile", "email"]

    @default("enable_auth_state")
    def _enable_auth_state_default(self):
        # the approvals found at login live in auth_state; refresh_user needs it
        return True

    @default("manage_groups")
    def _manage_groups_default(self):
        return True

    @default("login_service")
    def _login_service_default(self):
        text = message("login.service")
        return f"{text.en} / {text.ja}"

    def decide(self, username: str) -> AccessDecision:
        """Ask the registry whether `username` may use the platform now."""
        now = self.clock.now()
        return decide_access(
            username,
            self.registry.approvals_of(username),
            self.registry.roles_of(username),
            now,
            contact=self.platform.contact,
            suspension=self.registry.suspension_of(username, now),
        )

    async def update_auth_model(self, auth_model):
        """Called by authenticate and refresh_user: record what the registry says now."""
        decision = self.decide(auth_model["name"])
        state = decision.auth_state(self.clock.now())
        if not decision.allowed:
            state["message"] = decision.text.to_json()
        auth_model["auth_state"]["visiting"] = state
        return auth_model

    async def get_user_groups(self, auth_state):
        """Platform roles become groups ('secretariat', 'site-admin-nig'), which services check."""
        return {role_group(r) for r in auth_state.get("visiting", {}).get("roles", [])}

    async def check_allowed(self, username, auth_model):
        """Admit only what update_auth_model found allowed; otherwise say why (403)."""
        if auth_model is None:
            # JupyterHub < 5 called this without a model when loading allowed_users
            return True
        state = (auth_model.get("auth_state") or {}).get("visiting")
        if state is None:
            state = {"allowed": False}
        if state.get("allowed"):
            return True
        decision = self.decide(username)
        self.log.warning("Refusing %s: %s", username, decision.reason)
        raise ApprovalRefused(decision)

    async def refresh_user(self, user, handler=None, **kwargs):
        """Refresh the OIDC token as oauthenticator does, then require the approval again."""
        refreshed = await super().refresh_user(user, handler, **kwargs)
        if not isinstance(refreshed, dict):
            return refreshed
        state = refreshed["auth_state"].get("visiting", {})
        if not state.get("allowed"):
            self.log.warning(
                "%s is no longer admitted (%s); a new login is required",
                user.name,
                state.get("reason"),
            )
            return False
        return refreshed
