"""The lock files (scripts/locks.py): the only source of versions, checked before any test."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def load_locks(root: Path):
    """scripts/locks.py as a module whose ROOT is `root` (a copy of the repository's inputs)."""
    spec = importlib.util.spec_from_file_location("locks_under_test", REPO / "scripts" / "locks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    module.ROOT = root
    return module


@pytest.fixture
def tree(tmp_path):
    """A copy of every input and lock, so a test can change one and ask `check`."""
    for name in (
        "pyproject.toml",
        "requirements",
        "images/singleuser/requirements.txt",
        "images/dask/requirements.txt",
        "images/wheels-from-sdist.txt",
    ):
        src, dest = REPO / name, tmp_path / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dest)
        else:
            shutil.copy(src, dest)
    return tmp_path


def test_the_committed_locks_match_their_inputs():
    locks = load_locks(REPO)
    assert locks.problems() == []


def test_dask_and_distributed_are_locked_to_one_version_everywhere():
    locks = load_locks(REPO)
    for lock in locks.LOCKS:
        entries = locks.read_lock(REPO / lock.path)
        assert entries["dask"].version == entries["distributed"].version, lock.path


def test_a_changed_requirement_names_the_stale_lock(tree):
    locks = load_locks(tree)
    req = tree / "images/dask/requirements.txt"
    req.write_text(req.read_text() + "scipy\n")
    found = locks.problems()
    stale = {line.split()[0] for line in found}
    # the wheelhouse and the dask image's lock read that file; the others do not
    assert stale == {"requirements/images.lock", "requirements/dask.lock"}
    assert all("run `make lock`" in line for line in found)


def test_a_changed_extra_in_pyproject_stales_the_host_lock_only(tree):
    locks = load_locks(tree)
    py = tree / "pyproject.toml"
    py.write_text(py.read_text().replace('"ruff>=0.6",', '"ruff>=0.6",\n    "hypothesis",'))
    assert [line.split()[0] for line in locks.problems()] == ["requirements/host.lock"]


def test_comments_and_tool_settings_are_not_inputs(tree):
    locks = load_locks(tree)
    req = tree / "images/singleuser/requirements.txt"
    req.write_text("# a new comment\n\n" + req.read_text())
    py = tree / "pyproject.toml"
    py.write_text(py.read_text().replace("line-length = 100", "line-length = 99"))
    assert locks.problems() == []


def test_a_hand_edited_version_in_an_image_lock_is_found(tree):
    locks = load_locks(tree)
    lock = tree / "requirements/dask.lock"
    text = lock.read_text()
    version = locks.read_lock(lock)["distributed"].version
    lock.write_text(text.replace(f"distributed=={version}", "distributed==2021.4.1"))
    found = locks.problems()
    assert found == [
        f"requirements/dask.lock has distributed==2021.4.1 but requirements/images.lock has "
        f"{version}: run `make lock`"
    ]


def test_a_missing_lock_and_an_unpinned_line_are_errors(tree):
    locks = load_locks(tree)
    (tree / "requirements/host.lock").unlink()
    lock = tree / "requirements/singleuser.lock"
    lock.write_text(lock.read_text() + "toolz>=1\n")
    found = locks.problems()
    assert "requirements/host.lock does not exist: run `make lock`" in found
    assert any("'toolz>=1' is not pinned with ==" in line for line in found)


def test_check_command_exits_non_zero_and_names_the_file(tree):
    req = tree / "images/singleuser/requirements.txt"
    req.write_text(req.read_text() + "scipy\n")
    script = tree / "scripts" / "locks.py"
    script.parent.mkdir()
    shutil.copy(REPO / "scripts" / "locks.py", script)
    run = subprocess.run([sys.executable, str(script), "check"], capture_output=True, text=True)
    assert run.returncode == 1
    assert "requirements/singleuser.lock does not match its inputs" in run.stderr


def test_select_prints_hash_checked_entries(capsys):
    locks = load_locks(REPO)
    assert locks.main(["select", str(REPO / "requirements/host.lock"), "pip", "setuptools"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split("==")[0] for line in out] == ["pip", "setuptools"]
    assert all("--hash=sha256:" in line for line in out)


def test_split_puts_source_only_packages_apart(tmp_path):
    locks = load_locks(REPO)
    binary, source = tmp_path / "b.txt", tmp_path / "s.txt"
    argv = [
        "split",
        str(REPO / "requirements/images.lock"),
        locks.SDIST_LIST,
        str(binary),
        str(source),
    ]
    assert locks.main(argv) == 0
    assert [line.split("==")[0] for line in source.read_text().splitlines()] == ["pyspark"]
    names = {line.split("==")[0] for line in binary.read_text().splitlines()}
    assert {"dask", "distributed", "hail"} <= names and "pyspark" not in names


def fake_wheel(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("pyspark/__init__.py", "")
    return path


def test_image_lock_takes_the_hash_of_the_wheel_built_on_the_host(tmp_path):
    locks = load_locks(REPO)
    version = locks.read_lock(REPO / "requirements/singleuser.lock")["pyspark"].version
    whl = fake_wheel(tmp_path / f"pyspark-{version}-py2.py3-none-any.whl")
    out = tmp_path / "requirements.lock"
    assert (
        locks.main(
            ["image-lock", str(REPO / "requirements/singleuser.lock"), str(tmp_path), str(out)]
        )
        == 0
    )
    entries = locks.read_lock(out)
    assert entries["pyspark"].hashes == [hashlib.sha256(whl.read_bytes()).hexdigest()]
    # every other entry keeps the lock's own hashes
    original = locks.read_lock(REPO / "requirements/singleuser.lock")
    assert entries["dask"].hashes == original["dask"].hashes


def test_image_lock_refuses_a_wheelhouse_without_the_built_wheel(tmp_path, capsys):
    locks = load_locks(REPO)
    out = tmp_path / "requirements.lock"
    assert (
        locks.main(["image-lock", str(REPO / "requirements/dask.lock"), str(tmp_path), str(out)])
        == 1
    )
    assert "has 0 wheels of pyspark" in capsys.readouterr().err
    assert not out.exists()


def test_extraneous_lists_what_the_lock_does_not_hold(monkeypatch, capsys):
    import io

    locks = load_locks(REPO)
    monkeypatch.setattr(
        sys, "stdin", io.StringIO("dask==1\nleftover-pkg==0.1\nvisiting-workspace==0.1.0\n")
    )
    assert (
        locks.main(["extraneous", str(REPO / "requirements/host.lock"), "visiting-workspace"]) == 0
    )
    assert capsys.readouterr().out.split() == ["leftover-pkg"]


def test_uv_is_asked_for_wheels_for_the_images_and_keeps_the_wheelhouse_versions():
    locks = load_locks(REPO)
    by_path = {lock.path: lock for lock in locks.LOCKS}
    argv = locks.uv_command("uv", by_path["requirements/dask.lock"], [])
    assert argv[argv.index("--only-binary") + 1] == ":all:"
    assert argv[argv.index("--no-binary") + 1] == "pyspark"
    assert argv[argv.index("-c") + 1] == "requirements/images.lock"
    host = locks.uv_command("uv", by_path["requirements/host.lock"], ["--upgrade"])
    assert "--only-binary" not in host and "--upgrade" in host
    assert [host[i + 1] for i, a in enumerate(host) if a == "--extra"] == list(locks.HOST_EXTRAS)
