#!/usr/bin/env python3
"""The project's Python lock files: the only source of the versions any install uses.

    scripts/locks.py check                    every lock matches its inputs (make test runs it first)
    scripts/locks.py compile [--upgrade | --upgrade-package NAME ...]
                                              re-resolve with uv and print what changed (make lock)
    scripts/locks.py select LOCK NAME ...     the entries of LOCK for NAMEs (pip's bootstrap)
    scripts/locks.py split LOCK SDIST_LIST BINARY_OUT SOURCE_OUT
                                              LOCK's entries in two files: those PyPI ships as
                                              wheels, and those SDIST_LIST names (built on the host)
    scripts/locks.py image-lock LOCK WHEELHOUSE OUT
                                              LOCK with each host-built wheel's own hash, for the
                                              image's hash-checked, offline install
    scripts/locks.py extraneous LOCK KEEP ... installed packages (pip's freeze format on stdin)
                                              that LOCK does not hold, one name a line

Every lock is a requirements file that uv writes (`uv pip compile --generate-hashes`),
with one line of ours on top: the SHA-256 of its inputs. `check` computes that digest
again: a lock whose inputs changed since it was resolved names itself and the command
that re-resolves it. Nothing but `compile` resolves; every install reads a lock with
pip's --require-hashes. Only the standard library is used: this runs before the
project's environment exists.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The interpreter and platform every lock is resolved for: bookworm's CPython 3.11 on
#: x86_64 (glibc 2.36), which is both the images' Python and the hosts' this project runs on.
TARGET = ["--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_36"]
DIGEST_PREFIX = "# inputs-sha256: "
SDIST_LIST = "images/wheels-from-sdist.txt"
HOST_EXTRAS = ("hub", "singleuser", "analysis", "dev")


class LockError(Exception):
    """A lock is missing, stale or malformed; the message names the file and what to do."""


@dataclass(frozen=True)
class Lock:
    """One lock file: what it is resolved from and how."""

    path: str
    sources: tuple[str, ...]  # requirement files or pyproject.toml, as uv reads them
    constraints: tuple[str, ...] = ()  # locks whose versions this one must keep
    extras: tuple[str, ...] = ()  # pyproject.toml's extras
    wheels_only: bool = False  # images: PyPI's wheels, except what SDIST_LIST names
    what: str = ""

    @property
    def inputs(self) -> tuple[str, ...]:
        extra = (SDIST_LIST,) if self.wheels_only else ()
        return self.sources + self.constraints + extra


#: In the order `compile` resolves them: the wheelhouse first, since the others keep its
#: versions (one dask, one numpy, one jupyterhub on the host, in the notebook and at the site).
LOCKS = (
    Lock(
        "requirements/images.lock",
        ("images/singleuser/requirements.txt", "images/dask/requirements.txt"),
        wheels_only=True,
        what="the images' wheelhouse: singleuser and dask resolved together",
    ),
    Lock(
        "requirements/singleuser.lock",
        ("images/singleuser/requirements.txt",),
        ("requirements/images.lock",),
        wheels_only=True,
        what="what visiting/singleuser installs",
    ),
    Lock(
        "requirements/dask.lock",
        ("images/dask/requirements.txt",),
        ("requirements/images.lock",),
        wheels_only=True,
        what="what visiting/dask installs",
    ),
    Lock(
        "requirements/host.lock",
        ("pyproject.toml", "requirements/host.in"),
        ("requirements/images.lock",),
        extras=HOST_EXTRAS,
        what="the host's .venv: every extra the tests use, and the tools",
    ),
)


# --- reading ------------------------------------------------------------------


@dataclass
class Entry:
    """One pinned requirement of a lock, with its hashes and its text as written."""

    name: str
    version: str
    hashes: list[str] = field(default_factory=list)
    text: str = ""


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def logical_lines(text: str) -> list[str]:
    """Lines of a requirements file with continuations joined and comments dropped."""
    out, current = [], ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            out.append(" ".join(current.split()))
        current = ""
    if current.strip():
        out.append(" ".join(current.split()))
    return out


_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;]+)")


def read_lock(path: Path) -> dict[str, Entry]:
    """The entries of a lock by normalised name; a line that is no exact pin is an error."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise LockError(f"{rel(path)} does not exist: run `make lock`") from None
    entries: dict[str, Entry] = {}
    for line in logical_lines(text):
        m = _PIN.match(line)
        if not m:
            raise LockError(
                f"{rel(path)}: {line.split()[0]!r} is not pinned with == (run `make lock`)"
            )
        hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", line)
        if not hashes:
            raise LockError(f"{rel(path)}: {m.group(1)} has no --hash (run `make lock`)")
        entries[normalise(m.group(1))] = Entry(m.group(1), m.group(3), hashes, line)
    return entries


def sdist_names(path: Path | None = None) -> list[str]:
    """The packages built from source on the host: SDIST_LIST, or the list at `path`."""
    return [normalise(line) for line in logical_lines((path or ROOT / SDIST_LIST).read_text())]


def rel(path: Path | str) -> str:
    p = Path(path)
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


# --- the digest of a lock's inputs ----------------------------------------------


def pyproject_inputs(path: Path) -> str:
    """The parts of pyproject.toml that decide a resolution; its tool settings do not."""
    data = tomllib.loads(path.read_text())
    project = data.get("project", {})
    wanted = {
        "requires-python": project.get("requires-python"),
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
        "build-system": data.get("build-system", {}).get("requires", []),
    }
    return json.dumps(wanted, sort_keys=True)


def input_text(name: str) -> str:
    path = ROOT / name
    if not path.exists():
        raise LockError(f"{name}, an input of a lock, does not exist")
    if path.name == "pyproject.toml":
        return pyproject_inputs(path)
    # comments and layout are not inputs: editing a comment needs no new lock
    return "\n".join(logical_lines(path.read_text()))


def digest(lock: Lock) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"target": TARGET, "extras": list(lock.extras)}).encode())
    for name in lock.inputs:
        h.update(f"\0{name}\0".encode())
        h.update(input_text(name).encode())
    return h.hexdigest()


def recorded_digest(path: Path) -> str | None:
    try:
        with path.open() as f:
            first = f.readline()
    except FileNotFoundError:
        return None
    return first[len(DIGEST_PREFIX) :].strip() if first.startswith(DIGEST_PREFIX) else None


# --- check ------------------------------------------------------------------------


def problems() -> list[str]:
    """What is wrong with the committed locks, one sentence each; empty when all is well."""
    found = []
    for lock in LOCKS:
        path = ROOT / lock.path
        if not path.exists():
            found.append(f"{lock.path} does not exist: run `make lock`")
            continue
        try:
            want = digest(lock)
            read_lock(path)
        except LockError as e:
            found.append(str(e))
            continue
        if recorded_digest(path) != want:
            found.append(
                f"{lock.path} does not match its inputs ({', '.join(lock.inputs)}): "
                f"run `make lock` to re-resolve it"
            )
    if found:
        return found
    # the images' locks keep the wheelhouse's versions (they were resolved with it as a
    # constraint); a hand edit of one of them would break that
    wheelhouse = read_lock(ROOT / LOCKS[0].path)
    for lock in LOCKS[1:]:
        for name, entry in read_lock(ROOT / lock.path).items():
            other = wheelhouse.get(name)
            if other is not None and other.version != entry.version:
                found.append(
                    f"{lock.path} has {entry.name}=={entry.version} but {LOCKS[0].path} has "
                    f"{other.version}: run `make lock`"
                )
            if other is None and lock.wheels_only:
                found.append(
                    f"{lock.path} has {entry.name}, which {LOCKS[0].path} lacks: run `make lock`"
                )
    return found


def cmd_check(_args) -> int:
    found = problems()
    for line in found:
        print(f"[locks] error: {line}", file=sys.stderr)
    if not found:
        print(f"[locks] {len(LOCKS)} lock files match their inputs")
    return 1 if found else 0


# --- compile --------------------------------------------------------------------------


def find_uv() -> str:
    for candidate in (os.environ.get("UV"), str(ROOT / ".venv" / "bin" / "uv"), shutil.which("uv")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise LockError("uv is not installed: run `make setup` (requirements/host.lock brings it)")


def uv_command(uv: str, lock: Lock, upgrade: list[str]) -> list[str]:
    argv = [uv, "pip", "compile", "--quiet", *TARGET, "--generate-hashes"]
    argv += ["--custom-compile-command", "make lock"]
    argv += list(lock.sources)
    for extra in lock.extras:
        argv += ["--extra", extra]
    for c in lock.constraints:
        argv += ["-c", c]
    if lock.wheels_only:
        # the images install offline from wheels for their Python: a version with only a
        # source archive must fail the resolution here, not the image build
        argv += ["--only-binary", ":all:"]
        for name in sdist_names():
            argv += ["--no-binary", name]
    argv += upgrade
    argv += ["-o", lock.path]
    return argv


def changes(before: dict[str, Entry], after: dict[str, Entry]) -> list[str]:
    lines = []
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        if old is None:
            lines.append(f"  + {new.name} {new.version}")
        elif new is None:
            lines.append(f"  - {old.name} {old.version}")
        elif old.version != new.version:
            lines.append(f"  ~ {new.name} {old.version} -> {new.version}")
        elif set(old.hashes) != set(new.hashes):
            lines.append(f"  # {new.name} {new.version}: other files or hashes")
    return lines


def compile_lock(uv: str, lock: Lock, upgrade: list[str]) -> list[str]:
    path = ROOT / lock.path
    path.parent.mkdir(parents=True, exist_ok=True)
    before = read_lock(path) if path.exists() else {}
    run = subprocess.run(uv_command(uv, lock, upgrade), cwd=ROOT, capture_output=True, text=True)
    if run.returncode != 0:
        raise LockError(f"uv could not resolve {lock.path}:\n{run.stderr.strip()}")
    body = path.read_text()
    if body.startswith(DIGEST_PREFIX):
        body = body.split("\n", 1)[1]
    path.write_text(f"{DIGEST_PREFIX}{digest(lock)}\n{body}")
    return changes(before, read_lock(path))


def cmd_compile(args) -> int:
    uv = find_uv()
    upgrade = ["--upgrade"] if args.upgrade else []
    for name in args.upgrade_package or []:
        upgrade += ["--upgrade-package", name]
    print(
        f"[locks] resolving with {subprocess.run([uv, '--version'], capture_output=True, text=True).stdout.strip()}"
    )
    for lock in LOCKS:
        lines = compile_lock(uv, lock, upgrade)
        count = len(read_lock(ROOT / lock.path))
        print(
            f"[locks] {lock.path} ({lock.what}): {count} packages, "
            + (f"{len(lines)} changed" if lines else "unchanged")
        )
        for line in lines:
            print(line)
    return 0


# --- helpers for the installers -------------------------------------------------------------


def cmd_select(args) -> int:
    entries = read_lock(Path(args.lock))
    for name in args.names:
        entry = entries.get(normalise(name))
        if entry is None:
            raise LockError(
                f"{rel(args.lock)} has no {name}: add it to its inputs and run `make lock`"
            )
        print(entry.text)
    return 0


def cmd_split(args) -> int:
    entries = read_lock(Path(args.lock))
    from_source = set(sdist_names(Path(args.sdist_list)))
    missing = sorted(from_source - entries.keys())
    if missing:
        raise LockError(
            f"{args.sdist_list} names {missing[0]}, which {rel(args.lock)} does not hold"
        )
    Path(args.binary_out).write_text(
        "".join(e.text + "\n" for n, e in entries.items() if n not in from_source)
    )
    Path(args.source_out).write_text(
        "".join(e.text + "\n" for n, e in entries.items() if n in from_source)
    )
    return 0


def wheel_name(filename: str) -> tuple[str, str]:
    name, version = filename.split("-")[:2]
    return normalise(name), version


def cmd_image_lock(args) -> int:
    """The lock with the hash of each wheel built on the host in place of the sdist's."""
    entries = read_lock(Path(args.lock))
    from_source = set(sdist_names())
    built = {}
    for whl in Path(args.wheelhouse).glob("*.whl"):
        name, version = wheel_name(whl.name)
        if name in from_source:
            built.setdefault(name, []).append((version, whl))
    out = []
    for name, entry in entries.items():
        text = entry.text
        if name in from_source:
            candidates = [w for v, w in built.get(name, []) if v == entry.version]
            if len(candidates) != 1:
                raise LockError(
                    f"the wheelhouse {args.wheelhouse} has {len(candidates)} wheels of "
                    f"{entry.name} {entry.version}, built on the host; it needs exactly one"
                )
            sha = hashlib.sha256(candidates[0].read_bytes()).hexdigest()
            text = re.sub(r"( --hash=sha256:[0-9a-f]{64})+", f" --hash=sha256:{sha}", text)
        out.append(text)
    Path(args.out).write_text("".join(line + "\n" for line in out))
    return 0


def cmd_extraneous(args) -> int:
    """Names in `pip list --format=freeze` (on stdin) that the lock does not hold."""
    entries = read_lock(Path(args.lock))
    keep = {normalise(k) for k in args.keep}
    for line in sys.stdin.read().splitlines():
        name = line.split("==", 1)[0].strip()
        if name and normalise(name) not in entries and normalise(name) not in keep:
            print(name)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/locks.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="every lock matches its inputs").set_defaults(func=cmd_check)
    p = sub.add_parser("compile", help="re-resolve every lock with uv and print what changed")
    p.add_argument("--upgrade", action="store_true", help="take the newest versions allowed")
    p.add_argument(
        "--upgrade-package", action="append", metavar="NAME", help="take the newest NAME"
    )
    p.set_defaults(func=cmd_compile)
    p = sub.add_parser("select", help="the entries of a lock for some names")
    p.add_argument("lock")
    p.add_argument("names", nargs="+")
    p.set_defaults(func=cmd_select)
    p = sub.add_parser("split", help="wheels from PyPI apart from those built on the host")
    p.add_argument("lock")
    p.add_argument("sdist_list")
    p.add_argument("binary_out")
    p.add_argument("source_out")
    p.set_defaults(func=cmd_split)
    p = sub.add_parser("image-lock", help="a lock with the hashes of host-built wheels")
    p.add_argument("lock")
    p.add_argument("wheelhouse")
    p.add_argument("out")
    p.set_defaults(func=cmd_image_lock)
    p = sub.add_parser("extraneous", help="installed packages that the lock does not hold")
    p.add_argument("lock")
    p.add_argument("keep", nargs="*")
    p.set_defaults(func=cmd_extraneous)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except LockError as e:
        print(f"[locks] error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
