"""Shared fixtures: the demo policy directory and copies of it to break."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = REPO_ROOT / "policies" / "demo"


@pytest.fixture
def policy_copy(tmp_path, monkeypatch) -> Path:
    """A private copy of the demo policy directory, with its state inside tmp_path."""
    dest = tmp_path / "policy"
    shutil.copytree(DEMO_DIR, dest)
    monkeypatch.setenv("VISITING_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("VISITING_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.delenv("VISITING_DATABASE_URL", raising=False)
    return dest
