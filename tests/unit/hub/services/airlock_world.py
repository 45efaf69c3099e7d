"""The export airlock's world for the service tests: the demo's people (ncc's site admin
among them), and an export store over the registry's database (SQLite), at a fixed time."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from extensions.contracts.clock import FixedClock
from hub.platform.policy import load_policy_dir
from hub.store.audit import AuditStore
from hub.store.exports import ExportStore
from hub.store.registry import ApprovalRegistry


@dataclass
class AirlockWorld:
    bundle: object
    clock: FixedClock
    registry: ApprovalRegistry
    audit: AuditStore
    store: ExportStore

    def close(self) -> None:
        self.store.close()
        self.audit.close()
        self.registry.close()


def airlock_world(tmp_path: Path, policy_copy: Path, now) -> AirlockWorld:
    bundle = load_policy_dir(policy_copy)
    clock = FixedClock(now)
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    registry = ApprovalRegistry(url, clock=clock)
    registry.import_policy(bundle)
    audit = AuditStore(url, clock=clock)
    store = ExportStore(url, bundle.platform.export, audit, clock)
    return AirlockWorld(bundle, clock, registry, audit, store)
