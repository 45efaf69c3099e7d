"""Is a TCP port free to listen on, and if not, which process holds it; free ports for a test.

`visiting demo up` asks before it starts anything, so that a port left taken
(another demo, a stack a test left behind, any other program) is named with
the process holding it instead of a service that exits with "Address
already in use" while the demo says it is up. The holder is read from
/proc/net/tcp{,6} (the socket's inode) and /proc/<pid>/fd (which process has
that socket open); `ss -ltnp` answers where /proc does not tell.
"""

from __future__ import annotations

import errno
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TCP_LISTEN = "0A"


@dataclass(frozen=True)
class PortHolder:
    """A process that has a socket on the port open."""

    pid: int
    name: str  # the command name (/proc/<pid>/comm)
    cmdline: str = ""

    def describe(self) -> str:
        what = f"pid {self.pid} ({self.name}"
        if self.cmdline and self.cmdline != self.name:
            what += f": {self.cmdline}"
        return what + ")"


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when a server could listen on host:port now (as tornado and node do: SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def socket_inodes(port: int, proc: Path = PROC) -> list[int]:
    """Inodes of the TCP sockets bound to `port` (listening ones first)."""
    listening, other = [], []
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10:
                continue
            local, state, inode = fields[1], fields[3], int(fields[9])
            if int(local.rsplit(":", 1)[1], 16) != port or inode == 0:
                continue
            (listening if state == TCP_LISTEN else other).append(inode)
    return listening + other


def holders_of_inodes(inodes: list[int], proc: Path = PROC) -> list[PortHolder]:
    """The processes that have any of these sockets open, in the order of `inodes`."""
    wanted = {f"socket:[{i}]": i for i in inodes}
    found: dict[int, list[PortHolder]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:  # gone, or another user's
            continue
        for fd in fds:
            try:
                target = fd.readlink().name
            except OSError:
                continue
            if target in wanted:
                found.setdefault(wanted[target], []).append(_holder(entry))
                break
    return [h for i in inodes for h in found.get(i, [])]


def cmdline_of(pid: int, proc: Path = PROC) -> str:
    """A process's command line as one string; '' when it is gone or unreadable."""
    try:
        argv = (proc / str(pid) / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    except OSError:
        return ""
    return " ".join(a.decode(errors="replace") for a in argv if a)


def _holder(entry: Path) -> PortHolder:
    try:
        name = (entry / "comm").read_text().strip()
    except OSError:
        name = "?"
    cmdline = cmdline_of(int(entry.name), entry.parent)
    if len(cmdline) > 160:
        cmdline = cmdline[:157] + "..."
    return PortHolder(int(entry.name), name, cmdline)


SS_USER = re.compile(r'\("([^"]*)",pid=(\d+)')


def holders_from_ss(port: int) -> list[PortHolder]:
    """The listeners on `port` as `ss -ltnp` names them; [] without ss."""
    ss = shutil.which("ss")
    if ss is None:
        return []
    try:
        out = subprocess.run(
            [ss, "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    holders = []
    for name, pid in SS_USER.findall(out):
        holder = _holder(PROC / pid) if (PROC / pid).exists() else PortHolder(int(pid), name)
        if holder not in holders:
            holders.append(holder)
    return holders


def port_holders(port: int) -> list[PortHolder]:
    """Who holds `port`: from /proc, else from ss; [] when neither can tell."""
    return holders_of_inodes(socket_inodes(port)) or holders_from_ss(port)


def describe_holders(port: int) -> str:
    """' by pid 123 (python3: python -m ...)', or why no holder is named."""
    holders = port_holders(port)
    if not holders:
        # the kernel lists listening and connected sockets, not those only bound
        return (
            " (no process found holding it: a socket bound but not listening, "
            "or one of another user or network namespace)"
        )
    return " by " + ", ".join(h.describe() for h in holders)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """`n` different free ports: each held open until all are chosen, so none repeats."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            socks.append(s)
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0
