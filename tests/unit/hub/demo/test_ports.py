"""A port that is taken is found, and so is the process holding it (from /proc, or from ss)."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

from hub.demo.ports import (
    PortHolder,
    describe_holders,
    free_port,
    holders_from_ss,
    holders_of_inodes,
    port_free,
    port_holders,
    socket_inodes,
)

ME = Path("/proc/self/comm").read_text().strip()


@pytest.fixture
def listening():
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_a_free_port_is_free():
    assert port_free(free_port())


def test_a_listening_port_is_taken_and_its_holder_named(listening):
    assert not port_free(listening)
    assert not port_free(listening, "0.0.0.0")  # a wildcard listener would clash too
    holders = port_holders(listening)
    assert PortHolder(os.getpid(), ME, holders[0].cmdline) in holders
    assert f"by pid {os.getpid()} ({ME}" in describe_holders(listening)


def test_a_bound_socket_that_does_not_listen_takes_the_port_too_unnamed():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert not port_free(port)
        # /proc/net/tcp lists listening and connected sockets only: no holder to name
        assert describe_holders(port).startswith(" (no process found holding it")


@pytest.mark.skipif(shutil.which("ss") is None, reason="ss is not installed")
def test_ss_names_the_listener(listening):
    assert os.getpid() in [h.pid for h in holders_from_ss(listening)]


def fake_proc(tmp_path: Path) -> Path:
    """/proc with one listener on 8083 (inode 555) held by pid 42, and a connection on 8083."""
    proc = tmp_path / "proc"
    (proc / "net").mkdir(parents=True)
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    (proc / "net" / "tcp").write_text(
        header
        + "   0: 0100007F:1F93 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 555 1 0 100 0 0 10 0\n"
        + "   1: 0100007F:1F93 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 556 1 0 100 0 0 10 0\n"
        + "   2: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0 100 0 0 10 0\n"
    )
    (proc / "net" / "tcp6").write_text(header)
    for pid, inode, comm in ((42, 555, "python3"), (43, 999, "node")):
        (proc / str(pid) / "fd").mkdir(parents=True)
        (proc / str(pid) / "fd" / "3").symlink_to(f"socket:[{inode}]")
        (proc / str(pid) / "comm").write_text(comm + "\n")
        (proc / str(pid) / "cmdline").write_bytes(b"python3\0-m\0hub.services.enforcer\0")
    return proc


def test_inodes_and_holders_from_proc(tmp_path):
    proc = fake_proc(tmp_path)
    assert socket_inodes(0x1F93, proc) == [555, 556]  # the listener first
    assert socket_inodes(8000, proc) == []
    (holder,) = holders_of_inodes([555, 556], proc)
    assert holder == PortHolder(42, "python3", "python3 -m hub.services.enforcer")
    assert holder.describe() == "pid 42 (python3: python3 -m hub.services.enforcer)"
