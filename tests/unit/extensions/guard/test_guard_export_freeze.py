"""Freezing an export request at the site: what is copied, what is refused, what is recorded.

Rules checked: "No disclosure" and "Security" (files leave only through an export
request, and what a reviewer approves is byte for byte what leaves): a request
names files in the person's home only (no absolute path, no '..', no link out of
the home, nothing but regular files and folders); the copies are hashed as they
are written, read-only, out of the researcher's reach, and a file changed after
freezing leaves the frozen bytes and hash as they were; the platform's limits on
files and bytes hold (a file over a limit is listed, not copied).
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from extensions.contracts.export import CHECKS, CheckResult, ExportRules, Manifest
from extensions.guard.export import freeze as fz


def passing(path: Path, name: str, size: int):
    return tuple(CheckResult(c, True, f"seen {size} bytes") for c in CHECKS)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def site(tmp_path):
    home = tmp_path / "home"
    (home / "results" / "plots").mkdir(parents=True)
    (home / "results" / "table.csv").write_text("sex,n\nfemale,120\nmale,98\n")
    (home / "results" / "plots" / "fig1.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"p" * 100)
    (home / "notes.md").write_text("# notes\n")
    export = tmp_path / "export"
    export.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "clinical.tsv").write_text("sample_id\tsex\nNIG-000001\tfemale\n")
    return home, export, outside


def run_freeze(home, export, paths, rules=None, request="r-1"):
    return fz.freeze(home, export, request, paths, rules or ExportRules(), passing)


def test_files_and_folders_are_frozen_hashed_and_read_only(site):
    home, export, _ = site
    m = run_freeze(home, export, ["notes.md", "results"])
    assert m.error == "" and m.ok
    names = [f.name for f in m.files]
    assert names == ["notes.md", "results/table.csv", "results/plots/fig1.png"]
    for f in m.files:
        copy = export / "r-1" / "files" / f.name
        data = copy.read_bytes()
        assert data == (home / f.name).read_bytes()
        assert f.sha256 == sha(data) and f.bytes == len(data)
        assert [c.check for c in f.checks] == list(CHECKS)
        assert stat.S_IMODE(copy.stat().st_mode) == 0o444
    assert stat.S_IMODE((export / "r-1").stat().st_mode) == 0o555
    assert stat.S_IMODE((export / "r-1" / "files" / "results").stat().st_mode) == 0o555
    stored = Manifest.from_json((export / "r-1" / "manifest.json").read_text())
    assert stored == m
    assert not [p for p in export.iterdir() if p.name.startswith(".")]  # no work folder left


def test_a_file_named_twice_is_frozen_once_and_dot_segments_are_dropped(site):
    home, export, _ = site
    m = run_freeze(home, export, ["results/table.csv", "./results", "results/./table.csv"])
    assert [f.name for f in m.files] == ["results/table.csv", "results/plots/fig1.png"]


@pytest.mark.parametrize(
    "path,why",
    [
        ("/etc/passwd", "is absolute"),
        ("\\results\\table.csv", "is absolute"),
        ("C:/x.csv", "is absolute"),
        ("../outside/clinical.tsv", "goes up a folder"),
        ("results/../../outside/clinical.tsv", "goes up a folder"),
        ("results/..", "goes up a folder"),
        ("missing.csv", "does not exist"),
        ("results/missing/", "does not exist"),
        (".", "whole home folder"),
        ("", "is not a path"),
        ("a\x00b", "is not a path"),
    ],
    ids=["absolute", "backslash-absolute", "drive-letter", "dot-dot", "dot-dot-deep",
         "dot-dot-last", "missing-file", "missing-folder", "the-home", "empty", "nul"],
)  # fmt: skip
def test_a_path_the_request_may_not_name_refuses_the_whole_request(site, path, why):
    home, export, _ = site
    m = run_freeze(home, export, ["notes.md", path])
    assert m.files == () and why in m.error and not m.ok
    assert list(export.iterdir()) == []  # nothing copied, no work folder


def test_a_link_out_of_the_home_is_refused(site):
    home, export, outside = site
    (home / "clinical.tsv").symlink_to(outside / "clinical.tsv")
    (home / "data").symlink_to(outside, target_is_directory=True)
    for path in ("clinical.tsv", "data", "data/clinical.tsv"):
        m = run_freeze(home, export, [path])
        assert "leads outside your home folder" in m.error, path
    assert list(export.iterdir()) == []


def test_a_link_inside_the_home_is_frozen_under_its_requested_name(site):
    home, export, _ = site
    (home / "latest.csv").symlink_to(home / "results" / "table.csv")
    m = run_freeze(home, export, ["latest.csv"])
    assert [f.name for f in m.files] == ["latest.csv"]
    assert (export / "r-1" / "files" / "latest.csv").read_bytes().startswith(b"sex,n")


def test_links_inside_a_folder_are_never_followed(site):
    home, export, outside = site
    (home / "results" / "leak.tsv").symlink_to(outside / "clinical.tsv")
    (home / "results" / "more").symlink_to(outside, target_is_directory=True)
    (home / "results" / "same.csv").symlink_to(home / "results" / "table.csv")
    m = run_freeze(home, export, ["results"])
    assert [f.name for f in m.files] == ["results/table.csv", "results/plots/fig1.png"]
    copied = {p.name for p in (export / "r-1" / "files").rglob("*")}
    assert not copied & {"leak.tsv", "more", "clinical.tsv", "same.csv"}


def test_what_is_not_a_regular_file_or_folder_is_refused(site):
    home, export, _ = site
    os.mkfifo(home / "pipe.csv")
    m = run_freeze(home, export, ["pipe.csv"])
    assert "neither a regular file nor a folder" in m.error
    m = run_freeze(home, export, ["results"])  # inside a folder: left out
    assert [f.name for f in m.files] == ["results/table.csv", "results/plots/fig1.png"]


def test_an_empty_folder_is_no_request(site):
    home, export, _ = site
    (home / "empty").mkdir()
    assert "names no file" in run_freeze(home, export, ["empty"]).error


def test_the_frozen_bytes_and_hash_stay_when_the_original_changes(site):
    home, export, _ = site
    original = (home / "results" / "table.csv").read_bytes()
    m = run_freeze(home, export, ["results/table.csv"])
    (home / "results" / "table.csv").write_text("sex,n\nfemale,2\n")
    (home / "results" / "table.csv").unlink()
    frozen = export / "r-1" / "files" / "results" / "table.csv"
    assert frozen.read_bytes() == original and m.files[0].sha256 == sha(original)
    path, entry = fz.frozen_file(export, "r-1", "results/table.csv")
    assert path == frozen and entry.sha256 == sha(original)


def test_the_hash_is_of_the_bytes_copied_when_the_file_changes_while_it_is_read(site, monkeypatch):
    home, export, _ = site
    target = home / "results" / "table.csv"
    real_read = os.read
    grown = []

    def read_then_change(fd, n):
        chunk = real_read(fd, 8)  # small reads, the file rewritten between them
        if not grown:
            grown.append(True)
            target.write_bytes(b"REWRITTEN" * 3)
        return chunk

    monkeypatch.setattr(fz.os, "read", read_then_change)
    m = run_freeze(home, export, ["results/table.csv"])
    monkeypatch.undo()
    copy = (export / "r-1" / "files" / "results" / "table.csv").read_bytes()
    assert m.files[0].sha256 == sha(copy) and m.files[0].bytes == len(copy)


def test_a_request_is_frozen_once(site):
    home, export, _ = site
    first = run_freeze(home, export, ["notes.md"])
    (home / "notes.md").write_text("changed\n")
    again = run_freeze(home, export, ["notes.md", "results"])
    assert again == first


def test_a_crashed_freeze_leaves_nothing_behind(site):
    home, export, _ = site

    def broken(path, name, size):
        raise RuntimeError("checker crashed")

    with pytest.raises(RuntimeError):
        fz.freeze(home, export, "r-1", ["results"], ExportRules(), broken)
    assert list(export.iterdir()) == []


# -- limits ------------------------------------------------------------------------------


def test_more_files_than_allowed_refuses_the_request(site):
    home, export, _ = site
    m = run_freeze(home, export, ["notes.md", "results"], ExportRules(max_files=2))
    assert "names 3 files, more than the 2" in m.error and list(export.iterdir()) == []


def test_a_file_over_the_size_limit_is_listed_not_copied(site):
    home, export, _ = site
    (home / "big.csv").write_bytes(b"x" * 2000)
    m = run_freeze(home, export, ["notes.md", "big.csv"], ExportRules(max_file_bytes=1000))
    big = m.files[1]
    assert big.name == "big.csv" and big.bytes == 2000 and big.sha256 == "" and not big.ok
    size = {c.check: c for c in big.checks}["size"]
    assert not size.ok and "2000 bytes, over the limit of 1000 bytes a file" in size.detail
    assert all(not c.ok for c in big.checks) and [c.check for c in big.checks] == list(CHECKS)
    assert not (export / "r-1" / "files" / "big.csv").exists()
    assert m.files[0].ok and not m.ok
    with pytest.raises(LookupError):
        fz.frozen_file(export, "r-1", "big.csv")


def test_files_past_the_request_limit_are_listed_not_copied(site):
    home, export, _ = site
    for name in ("a.txt", "b.txt", "c.txt"):
        (home / name).write_bytes(b"y" * 400)
    m = run_freeze(home, export, ["a.txt", "b.txt", "c.txt"], ExportRules(max_request_bytes=1000))
    assert [f.sha256 != "" for f in m.files] == [True, True, False]
    detail = {c.check: c for c in m.files[2].checks}["size"].detail
    assert "1200 bytes with this file, over the limit of 1000 bytes a request" in detail


def test_a_file_that_grows_past_the_limit_while_it_is_read_is_not_kept(site, monkeypatch):
    home, export, _ = site
    target = home / "grows.txt"
    target.write_bytes(b"z" * 10)
    real_read = os.read

    def read_more(fd, n):
        return b"z" * 600 if real_read(fd, n) else b""

    monkeypatch.setattr(fz.os, "read", read_more)
    m = run_freeze(home, export, ["grows.txt"], ExportRules(max_file_bytes=500))
    monkeypatch.undo()
    assert m.files[0].sha256 == "" and not m.files[0].ok
    assert not list((export / "r-1" / "files").iterdir())


@pytest.mark.parametrize("request_id", ["", "../x", "a/b", ".hidden", "a..b", "x" * 129])
def test_a_bad_request_id_is_refused(site, request_id):
    home, export, _ = site
    with pytest.raises(ValueError, match="request id"):
        run_freeze(home, export, ["notes.md"], request=request_id)
