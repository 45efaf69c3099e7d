"""Freezing a request: the files it names copied out of the home, hashed, made read-only.

A request names paths relative to the person's home. The whole request is refused
(`Manifest.error`, nothing copied) when any path is absolute, holds a `..`
segment, resolves (links included) outside the home or to the home itself, is
not a regular file or folder, or does not exist; and when it names more files
than `max_files`. A folder means its regular files, recursively; links inside it
are never followed (neither to files nor to folders), and other kinds of entry
(fifos, sockets, devices) are left out.

Each file is copied to `<export>/<request>/files/<name>`: read from a
descriptor opened without following a final link and checked to lie in the
home, written to a temporary name, hashed as it is written (the hash is the
copy's bytes, so a file that changes while it is read has a copy and a hash
that agree), then renamed. Then the checks run on the copies, never on the
originals, and `manifest.json` is written beside `files/`.

Sizes: a file over `max_file_bytes`, or one that would take the request over
`max_request_bytes`, is not copied: it is listed with its size, an empty hash,
a failed size check and the other checks "not checked". Refusing to copy it
is safer than copying bytes nobody may release.

The request is frozen in a hidden folder next to its final place and renamed
at the end, read-only (files 0444, folders 0555): a request is either frozen
whole or not at all. A request frozen already is not frozen again; running
again returns its manifest as it was written.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import sys
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ...contracts.export import CheckResult, ExportRules, FrozenFile, Manifest

MANIFEST = "manifest.json"
FILES = "files"
CHUNK = 1024 * 1024
REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

#: runs the checks on one frozen copy: (path of the copy, its name, its size) -> results
Checker = Callable[[Path, str, int], tuple[CheckResult, ...]]


class FreezeRefused(ValueError):
    """A request the site will not freeze at all; the message is for the requester."""


@dataclass(frozen=True)
class Wanted:
    """One file of a request: its name (relative to the home) and where it is now."""

    name: str
    real: str
    size: int


def valid_request_id(request_id: str) -> str:
    if not REQUEST_ID.fullmatch(request_id or "") or ".." in request_id:
        raise ValueError(
            f"a request id is letters, digits, '.', '_' and '-' (at most 128), got {request_id!r}"
        )
    return request_id


def request_dir(export_dir: str | os.PathLike, request_id: str) -> Path:
    return Path(export_dir) / valid_request_id(request_id)


# -- which files a request names ---------------------------------------------------------


def clean_name(path: str) -> str:
    """A requested path as a name relative to the home; FreezeRefused when it may not be one."""
    if not isinstance(path, str) or not path.strip() or "\x00" in path:
        raise FreezeRefused(f"{path!r} is not a path")
    if path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", path):
        raise FreezeRefused(f"'{path}' is absolute; name files relative to your home folder")
    parts = PurePosixPath(path.replace("\\", "/")).parts
    if ".." in parts:
        raise FreezeRefused(f"'{path}' goes up a folder ('..'); name files inside your home")
    parts = tuple(p for p in parts if p != ".")
    if not parts:
        raise FreezeRefused(f"'{path}' is the whole home folder; name files or folders in it")
    return "/".join(parts)


def _inside(real: str, home: str) -> bool:
    return real.startswith(home + os.sep)


def wanted_files(home: str | os.PathLike, paths: Iterable[str]) -> list[Wanted]:
    """Every file the request names, in the order named (a folder's files sorted by name);
    a file named twice is listed once. FreezeRefused for a path the request may not name."""
    home = os.path.realpath(home)
    out: dict[str, Wanted] = {}
    for path in paths:
        name = clean_name(path)
        real = os.path.realpath(os.path.join(home, name))
        if not _inside(real, home):
            raise FreezeRefused(f"'{path}' leads outside your home folder")
        try:
            st = os.stat(real)
        except FileNotFoundError:
            raise FreezeRefused(f"'{path}' does not exist") from None
        except OSError as e:
            raise FreezeRefused(f"'{path}' cannot be read: {e.strerror}") from None
        if stat.S_ISREG(st.st_mode):
            out.setdefault(name, Wanted(name, real, st.st_size))
        elif stat.S_ISDIR(st.st_mode):
            for rel, file_real, size in _folder_files(real):
                child = f"{name}/{rel}"
                out.setdefault(child, Wanted(child, file_real, size))
        else:
            raise FreezeRefused(f"'{path}' is neither a regular file nor a folder")
    return list(out.values())


def _folder_files(folder: str) -> list[tuple[str, str, int]]:
    """(name in the folder, path, size) of its regular files; links are not followed."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames.sort()
        # os.walk lists a link to a folder among dirnames but does not enter it; say so
        for d in dirnames:
            if os.path.islink(os.path.join(dirpath, d)):
                _note(f"left out {os.path.join(dirpath, d)}: a link")
        for f in sorted(filenames):
            p = os.path.join(dirpath, f)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                found.append((os.path.relpath(p, folder).replace(os.sep, "/"), p, st.st_size))
            elif stat.S_ISLNK(st.st_mode):
                _note(f"left out {p}: a link")
            else:
                _note(f"left out {p}: not a regular file")
    return found


def _note(text: str) -> None:
    print(f"visiting-export: {text}", file=sys.stderr)


# -- copying -------------------------------------------------------------------------------


def open_in_home(real: str, home: str) -> int:
    """A read-only descriptor of `real`, refused when its last part is a link or when what
    was opened is not a regular file in the home (a path changed since it was resolved)."""
    fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FreezeRefused(f"{real} is no longer a regular file")
        opened = f"/proc/self/fd/{fd}"
        if os.path.exists(opened) and not _inside(os.path.realpath(opened), home):
            raise FreezeRefused(f"{real} now leads outside the home folder")
    except BaseException:
        os.close(fd)
        raise
    return fd


def copy_and_hash(fd: int, dest: Path, limit: int) -> tuple[int, str] | None:
    """Copy what `fd` reads to `dest` (via a temporary name), hashing the bytes written;
    (size, sha256) of the copy, or None when more than `limit` bytes came (nothing kept)."""
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
    h = hashlib.sha256()
    size = 0
    try:
        with open(tmp, "xb") as out:
            while True:
                chunk = os.read(fd, CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    tmp.unlink()
                    return None
                out.write(chunk)
                h.update(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return size, h.hexdigest()


def not_frozen(name: str, size: int, why: str) -> FrozenFile:
    """A file listed but not copied: its size check fails with `why`, the rest not checked."""
    checks = [CheckResult("size", False, why)]
    checks += [
        CheckResult(c, False, "not checked: the file was not frozen")
        for c in ("kind", "recogniser", "disclosure")
    ]
    order = {"kind": 0, "size": 1, "recogniser": 2, "disclosure": 3}
    checks.sort(key=lambda c: order[c.check])
    return FrozenFile(name, size, "", "", tuple(checks))


# -- the request ---------------------------------------------------------------------------


def freeze(
    home: str | os.PathLike,
    export_dir: str | os.PathLike,
    request_id: str,
    paths: Iterable[str],
    rules: ExportRules,
    checker: Checker,
    media_type: Callable[[Path, str], str] = lambda path, name: "application/octet-stream",
) -> Manifest:
    """Freeze the files `paths` names (relative to `home`) for request `request_id` under
    `export_dir`, check each copy with `checker`, and return (and write) the manifest."""
    final = request_dir(export_dir, request_id)
    if (final / MANIFEST).is_file():
        return Manifest.from_json((final / MANIFEST).read_text())
    home = os.path.realpath(home)
    try:
        wanted = wanted_files(home, list(paths))
        if not wanted:
            raise FreezeRefused("the request names no file (its folders are empty)")
        if len(wanted) > rules.max_files:
            raise FreezeRefused(
                f"the request names {len(wanted)} files, more than the {rules.max_files} "
                "one request may hold"
            )
    except FreezeRefused as e:
        return Manifest(request_id, (), error=str(e))
    work = Path(export_dir) / f".{request_id}.{uuid.uuid4().hex[:8]}.partial"
    try:
        files = _freeze_files(home, wanted, work / FILES, rules, checker, media_type)
        manifest = Manifest(request_id, tuple(files))
        (work / MANIFEST).write_text(manifest.to_json())
        make_read_only(work)
        os.rename(work, final)
    except FreezeRefused as e:
        _remove(work)
        return Manifest(request_id, (), error=str(e))
    except BaseException:
        _remove(work)
        raise
    return manifest


def _freeze_files(home, wanted, files_dir: Path, rules, checker, media_type) -> list[FrozenFile]:
    files_dir.mkdir(parents=True)
    total = 0
    out = []
    for w in wanted:
        if w.size > rules.max_file_bytes:
            out.append(not_frozen(w.name, w.size, _over_file(w.size, rules)))
            continue
        if total + w.size > rules.max_request_bytes:
            out.append(not_frozen(w.name, w.size, _over_request(total + w.size, rules)))
            continue
        dest = files_dir / w.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd = open_in_home(w.real, home)
        try:
            limit = min(rules.max_file_bytes, rules.max_request_bytes - total)
            copied = copy_and_hash(fd, dest, limit)
        finally:
            os.close(fd)
        if copied is None:  # it grew while it was read
            grown = max(w.size, limit + 1)
            why = (
                _over_file(grown, rules)
                if grown > rules.max_file_bytes
                else _over_request(total + grown, rules)
            )
            out.append(not_frozen(w.name, grown, why))
            continue
        size, sha = copied
        total += size
        out.append(
            FrozenFile(w.name, size, sha, media_type(dest, w.name), checker(dest, w.name, size))
        )
    return out


def _over_file(size: int, rules: ExportRules) -> str:
    return f"{size} bytes, over the limit of {rules.max_file_bytes} bytes a file; not frozen"


def _over_request(total: int, rules: ExportRules) -> str:
    return (
        f"the request would hold {total} bytes with this file, over the limit of "
        f"{rules.max_request_bytes} bytes a request; not frozen"
    )


def make_read_only(root: Path) -> None:
    """Files 0444, folders 0555, deepest first (the top last)."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o444)
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), 0o555)
    os.chmod(root, 0o555)


def _remove(work: Path) -> None:
    if not work.exists():
        return
    for dirpath, dirnames, _ in os.walk(work):
        os.chmod(dirpath, 0o755)
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), 0o755)
    shutil.rmtree(work, ignore_errors=True)


# -- reading a frozen file back -------------------------------------------------------------


def frozen_file(
    export_dir: str | os.PathLike, request_id: str, name: str
) -> tuple[Path, FrozenFile]:
    """The path of one frozen file of a request and its manifest entry; LookupError when the
    request or the file is not frozen (a file over a limit is listed but has no copy)."""
    base = request_dir(export_dir, request_id)
    try:
        manifest = Manifest.from_json((base / MANIFEST).read_text())
    except FileNotFoundError:
        raise LookupError(f"request {request_id} is not frozen at this site") from None
    clean = clean_name(name)
    for f in manifest.files:
        if f.name == clean and f.sha256:
            return base / FILES / clean, f
    raise LookupError(f"request {request_id} holds no frozen file '{name}'")
