"""A real, throwaway PostgreSQL server for the tests, and a fresh database per test.

`postgres_server()` runs Debian's server binaries (/usr/lib/postgresql/<ver>/bin):
`initdb` into a new temporary directory, then `pg_ctl start -w` with the server
listening only on a Unix socket inside that directory (no TCP port is opened).
Durability is switched off, since nothing outlives the test session; the server
is stopped (`pg_ctl stop -m fast`) and the directory removed when the context
ends, on failure too. PostgreSQL refuses to run as root, so as root the server
runs as the unprivileged `postgres` user (`runuser -u postgres --`).

`empty_database()` hands each test the same database with its schema dropped and
made anew.

A missing PostgreSQL is a test failure, not a skip: `make setup` installs it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import URL

#: Where Debian's postgresql package puts the server programs (not on PATH).
BIN_GLOB = "/usr/lib/postgresql/*/bin"

#: The OS user the server runs as when the tests run as root.
OS_USER = "postgres"

#: The database role the tests connect as (initdb's superuser, trust authentication).
ROLE = "postgres"

#: The database each test gets emptied (see PostgresServer.empty_database).
SHARED_DATABASE = "tests"

_SETTINGS = """
# written by tests/postgres.py: a throwaway server, on a private Unix socket only
listen_addresses = ''
unix_socket_directories = '{socket_dir}'
unix_socket_permissions = 0700
max_connections = 50
shared_buffers = 32MB
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
"""


class PostgresNotInstalled(RuntimeError):
    """The server programs or the Python driver are missing; the message says what to do."""


def find_bin_dir() -> Path:
    """The bin directory of the newest installed PostgreSQL server (and psycopg importable)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise PostgresNotInstalled(
            "the PostgreSQL driver psycopg is not installed in this environment; "
            "run `make setup` to install it (extras hub and dev)"
        ) from None

    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.name
        return tuple(int(p) for p in name.split(".") if p.isdigit())

    found = [p for p in glob.glob(BIN_GLOB) if Path(p, "initdb").exists()]
    if not found:
        raise PostgresNotInstalled(
            f"PostgreSQL is not installed (no initdb under {BIN_GLOB}); "
            "run `make setup` to install it (Debian package postgresql)"
        )
    return Path(max(found, key=version))


class PostgresServer:
    """A running server: `empty_database()` hands out the URL of an empty database."""

    def __init__(self, bin_dir: Path, root: Path):
        self.bin_dir = bin_dir
        self.root = root
        self.data_dir = root / "data"
        self.socket_dir = root  # the socket file is root/.s.PGSQL.5432
        self.log_file = root / "server.log"
        self._shared_created = False
        self._as_other_user = os.geteuid() == 0

    # -- running the server's programs --------------------------------------

    def _run(self, program: str, *args: str, timeout: float = 60) -> None:
        argv = [str(self.bin_dir / program), *args]
        if self._as_other_user:
            argv = ["runuser", "-u", OS_USER, "--", *argv]
        done = subprocess.run(
            argv, cwd=self.root, capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            log = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
            raise RuntimeError(
                f"{program} failed ({done.returncode}):\n{done.stdout}{done.stderr}\n{log}"
            )

    def init(self) -> None:
        if self._as_other_user:
            try:
                user = pwd.getpwnam(OS_USER)
            except KeyError:
                raise PostgresNotInstalled(
                    f"no OS user {OS_USER!r} to run PostgreSQL as; run `make setup`"
                ) from None
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self.root.chmod(0o700)
        self._run(
            "initdb",
            "--pgdata",
            str(self.data_dir),
            "--username",
            ROLE,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--no-sync",
            "--no-instructions",
        )
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(_SETTINGS.format(socket_dir=self.socket_dir))

    def start(self) -> None:
        self._run(
            "pg_ctl", "start", "--wait", "--pgdata", str(self.data_dir), "--log", str(self.log_file)
        )

    def stop(self) -> None:
        self._run("pg_ctl", "stop", "--wait", "--mode", "fast", "--pgdata", str(self.data_dir))

    # -- databases ------------------------------------------------------------

    def url(self, database: str) -> str:
        return URL.create(
            "postgresql+psycopg",
            username=ROLE,
            database=database,
            query={"host": str(self.socket_dir)},
        ).render_as_string(hide_password=False)

    def _connect(self, database: str):
        import psycopg

        return psycopg.connect(
            host=str(self.socket_dir), user=ROLE, dbname=database, autocommit=True
        )

    def empty_database(self) -> str:
        """The URL of the shared database `tests`, emptied (a few ms, where creating a
        database per test takes some 50 ms).

        Every other connection to it is ended first (a test may have left one open,
        and it could hold a lock), then schema public is dropped and created anew,
        so no table, row or sequence of an earlier test remains.
        """
        if not self._shared_created:
            with self._connect("postgres") as conn:
                conn.execute(f'CREATE DATABASE "{SHARED_DATABASE}"')
            self._shared_created = True
        with self._connect(SHARED_DATABASE) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
            conn.execute(f'CREATE SCHEMA public AUTHORIZATION "{ROLE}"')
        return self.url(SHARED_DATABASE)


def _scratch_dir() -> str:
    """Where the server's files go: memory (/dev/shm) when it has room, else /tmp.

    Both are short paths, as a Unix socket path may be at most 107 bytes long; in
    memory, creating and dropping tables (every test does) costs no disk writes.
    """
    try:
        free = shutil.disk_usage("/dev/shm").free
    except OSError:
        free = 0
    return "/dev/shm" if free > 512 * 2**20 and os.access("/dev/shm", os.W_OK) else "/tmp"


@contextmanager
def postgres_server(bin_dir: Path | None = None) -> Iterator[PostgresServer]:
    """Start a throwaway PostgreSQL server; stop it and delete its files at the end.

    Raises PostgresNotInstalled (with the advice to run `make setup`) when the
    server programs or the driver are missing.
    """
    bin_dir = bin_dir or find_bin_dir()
    root = Path(tempfile.mkdtemp(prefix="visiting-pg-", dir=_scratch_dir()))
    server = PostgresServer(bin_dir, root)
    try:
        server.init()
        server.start()
        yield server
    finally:
        try:
            # also after a start that failed half-way: a server may be up all the same
            if (server.data_dir / "postmaster.pid").exists():
                server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)
