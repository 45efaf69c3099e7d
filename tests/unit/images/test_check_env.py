"""images/check-env.py: the check every image's build runs after pip check."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def load():
    spec = importlib.util.spec_from_file_location("check_env", REPO / "images" / "check-env.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_dask_and_distributed_of_different_releases_are_named(monkeypatch):
    check = load()
    versions = {"dask": "2026.8.0", "distributed": "2021.4.1"}
    monkeypatch.setattr(check, "version", versions.get)
    monkeypatch.setitem(check.MODULES, "dask", [])
    assert check.problems("dask") == [
        "dask 2026.8.0 and distributed 2021.4.1 do not match: each distributed release "
        "works with the dask release of the same version"
    ]


def test_a_module_that_does_not_import_is_named_with_its_error(monkeypatch):
    check = load()
    monkeypatch.setitem(check.MODULES, "dask", ["json", "no_such_module_here"])
    found = check.problems("dask")
    assert len(found) == 1
    assert found[0].startswith(
        "import no_such_module_here fails: ModuleNotFoundError: No module named 'no_such_module_here'"
    )


def test_an_unknown_image_is_a_usage_error(capsys):
    check = load()
    assert check.main(["nope"]) == 2
    assert "usage: check-env.py dask|singleuser" in capsys.readouterr().err
