"""Processes of the federation benchmark: started, measured (peak memory) and always stopped.

Everything the benchmark starts stays in the process group of the worker
process that runs one size (`SizeWorker`, its own session), so stopping that
group stops whatever is left; each part is also stopped on its own, in order,
at the end of its phase, on Ctrl-C and on SIGTERM.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path

MIB = 1024**2
GNU_TIME = "/usr/bin/time" if Path("/usr/bin/time").exists() else None
#: BLAS and OpenMP on one thread, as in a site's worker (and in the references' own code)
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class BenchError(Exception):
    """A step failed; the benchmark's numbers are not valid."""


class Timeout(BenchError):
    """A reference did not finish within its time limit (the table says so)."""


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def interrupted(_signum, _frame):
    """SIGTERM unwinds through the same clean-up as Ctrl-C."""
    raise KeyboardInterrupt


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------
# memory


def self_peak() -> int:
    """This process's peak RSS in bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def vm_hwm(pid: int) -> int:
    """Peak RSS (bytes) of a live process (VmHWM); 0 when it is gone."""
    with suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command name) of every process, from /proc."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            rest = text.rsplit(")", 1)[1].split()
            out[int(stat.parent.name)] = (
                int(rest[1]),
                text[text.index("(") + 1 : text.rindex(")")],
            )
        except (OSError, ValueError, IndexError):
            continue
    return out


def descendants(root: int, name: str | None = None) -> list[int]:
    """Pids below `root` (optionally only those whose command is `name`)."""
    table = process_table()
    found = []
    for pid, (_, comm) in table.items():
        if name is not None and comm != name:
            continue
        p = table.get(pid, (0, ""))[0]
        while p and p != root:
            p = table.get(p, (0, ""))[0]
        if p == root:
            found.append(pid)
    return found


# ---------------------------------------------------------------------------
# tools run to the end


def run_tool(cmd: list[str], peaks: dict | None = None, timeout: float | None = None) -> float:
    """Run `cmd` to the end; its seconds. Its peak RSS (bytes) goes to `peaks[cmd[0]]`.

    The peak comes from GNU time's %M: the rusage of a child this process forks
    would start from this process's own high-water mark (Linux keeps it across
    exec), so only a small parent in between gives the tool's own. Raises
    Timeout (after stopping it) when it runs longer than `timeout` seconds.
    """
    t0 = time.perf_counter()
    with tempfile.NamedTemporaryFile("r") as rss, tempfile.TemporaryFile() as err:
        wrap = [GNU_TIME, "-f", "%M", "-o", rss.name] if GNU_TIME else []
        p = subprocess.Popen([*wrap, *cmd], stdout=subprocess.DEVNULL, stderr=err)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_process(p)
            raise Timeout(f"{Path(cmd[0]).name} did not finish within {timeout:.0f} s") from None
        except BaseException:
            stop_process(p)
            raise
        if p.returncode != 0:
            err.seek(0)
            tail = err.read()[-2000:].decode(errors="replace")
            raise BenchError(f"{' '.join(cmd[:3])} ... failed ({p.returncode}):\n{tail}")
        seconds = time.perf_counter() - t0
        if peaks is not None and GNU_TIME:
            with suppress(ValueError, IndexError):
                kib = int(rss.read().split()[-1])
                name = Path(cmd[0]).name
                peaks[name] = max(peaks.get(name, 0), kib * 1024)
    return seconds


def stop_process(p: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; waited for."""
    if p.poll() is None:
        with suppress(ProcessLookupError):
            p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                p.kill()
            p.wait()


class Service:
    """A long-running process (a Dask scheduler or worker, a gateway), output to a log file.

    It stays in this process's group (see the module doc); `stop` ends it and
    then any process it started that outlived it.
    """

    def __init__(self, name: str, cmd: list[str], env: dict, log: Path, cwd: Path | None = None):
        self.name = name
        self.log = log
        self._out = open(log, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=self._out, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def pids(self) -> list[int]:
        """Its own pid and those of the processes it started (a nanny's worker)."""
        return [self.pid, *descendants(self.pid)] if self.alive() else []

    def tail(self, n: int = 3000) -> str:
        with suppress(OSError):
            return self.log.read_bytes()[-n:].decode(errors="replace")
        return ""

    def stop(self, grace: float = 15) -> None:
        children = self.pids()[1:]
        stop_process(self.proc, grace)
        for pid in children:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._out.close()


# ---------------------------------------------------------------------------
# a worker process per size


class SizeWorker:
    """This script in a worker process of its own session, so it and everything it starts
    (site services, tools, JVMs) stop together."""

    def __init__(self, script: Path, args: list[str], env: dict | None = None):
        self.proc = subprocess.Popen(
            [sys.executable, str(script), *args], start_new_session=True, env=env
        )

    def wait(self) -> int:
        return self.proc.wait()

    def stop(self) -> None:
        """SIGTERM to the worker alone (it stops its services and tools itself), then
        whatever of its session outlives it, by the session's process group. Another Ctrl-C
        or SIGTERM meanwhile does not cut this short (it ends in SIGKILL at worst)."""
        shielded = {
            sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            self._stop()
        finally:
            for sig, handler in shielded.items():
                signal.signal(sig, handler)

    def _stop(self) -> None:
        stop_process(self.proc, grace=90)
        deadline = time.monotonic() + 10
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return  # nothing of the session is left
            while time.monotonic() < deadline:
                time.sleep(0.2)
                try:
                    os.killpg(self.proc.pid, 0)
                except ProcessLookupError:
                    return
            deadline = time.monotonic() + 5


def in_worker(script: Path, args: list[str], what: str, timeout: float | None = None) -> None:
    """Run this script with `args` in a SizeWorker to the end; BenchError if it fails,
    Timeout (after stopping it) if it runs longer than `timeout` seconds."""
    w = SizeWorker(script, args)
    try:
        try:
            code = w.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Timeout(f"{what} did not finish within {timeout:.0f} s") from None
        if code != 0:
            raise BenchError(f"{what} failed (exit {code}); see above")
    finally:
        w.stop()
