"""What every hub-side class needs to know of the platform, declared once."""

from __future__ import annotations

import os
from pathlib import Path

from traitlets import HasTraits, Instance, Unicode, default

from extensions.contracts.clock import Clock, clock_from_env
from hub.platform.policy import Platform, load_platform
from hub.store.registry import ApprovalRegistry

REPO_ROOT = Path(__file__).resolve().parents[2]
PLATFORM_ENV = "VISITING_PLATFORM"

_platforms: dict[str, Platform] = {}


class PlatformTraits(HasTraits):
    """Mixin: the platform's policy folder, its registry and the clock, as configurable traits."""

    platform_dir = Unicode(
        help="""Folder of the platform's policy files (platform.yaml, approvals/, users.yaml).

        The registry database named there is where approvals are looked up.
        Default: $VISITING_PLATFORM, else the demo platform `policies/demo`.
        Example: `c.VisitingAuthenticator.platform_dir = "/etc/visiting/platform"`.
        """,
    ).tag(config=True)

    @default("platform_dir")
    def _platform_dir_default(self):
        return os.environ.get(PLATFORM_ENV, str(REPO_ROOT / "policies" / "demo"))

    clock = Instance(
        Clock,
        help="""Where "now" comes from. The real time unless $VISITING_CLOCK_FILE names a
        file holding an instant (test set-ups only).""",
    )

    @default("clock")
    def _clock_default(self):
        return clock_from_env()

    registry = Instance(ApprovalRegistry, help="The approval registry (built from platform_dir).")

    @default("registry")
    def _registry_default(self):
        return ApprovalRegistry.for_platform(self.platform, clock=self.clock)

    @property
    def platform(self) -> Platform:
        """The platform file, read once per process and folder."""
        if self.platform_dir not in _platforms:
            _platforms[self.platform_dir] = load_platform(self.platform_dir)
        return _platforms[self.platform_dir]
