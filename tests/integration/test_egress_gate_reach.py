"""The egress gate is out of reach of the code it polices (issue 15, part 6).

Rule checked: "Security" (the controls that keep data at the site cannot be
switched off by the researcher) for "No disclosure".

In each researcher container the gate runs as its own user (`gate`, uid 990)
on the port the hub's proxy routes to; the Jupyter server (jovyan, uid 1000)
listens on the container's loopback behind it. From a kernel and from a
terminal of the researcher's own server, as the researcher, every way to reach
the gate is tried and must fail: reading or writing its memory, tracing it,
signalling it, reading its environment, changing its modules, its
configuration or its meter's state, taking its port, and starting a gate or a
server of one's own in its place. The facts the test needs about the gate (its
pid, its files' digests) are read as root with `docker exec`; the attempts run
as the researcher, in the researcher's processes.

The researcher is takahashi, given an approval for the nig and imsut cohorts
on a private copy of the demo platform (no demo handler is approved at imsut
today, and no other suite starts takahashi's servers). At imsut the demo turns
terminals off: none can be made, and a terminal's websocket gets nothing.
"""

from __future__ import annotations

import re
import time

import pytest

from hub.platform.policy import load_policy_dir

from .conftest import DEMO_PLATFORM, GATE_REACH_APPROVAL
from .egress_client import (
    Cohort,
    Server,
    TerminalRefused,
    engine_client,
    forget_gate_state,
    inspect,
    message_blobs,
    withheld_notice,
)

pytestmark = pytest.mark.integration

#: takahashi at nig and imsut: the shared site stack's platform holds this approval
APPROVAL = GATE_REACH_APPROVAL
(USER,) = APPROVAL["handlers"]
GATE_UID, SERVER_UID = 990, 1000
CLINICAL = "/data/JGAD000101/clinical.tsv"

# what the researcher's own code tries; one line "RESULT <name> <outcome>" per attempt
REACH = r"""
import ctypes, errno, importlib.util, os, signal, socket, subprocess, sys, tempfile


def outcome(fn):
    try:
        got = fn()
    except OSError as e:
        return "denied:" + errno.errorcode.get(e.errno, str(e.errno))
    except subprocess.TimeoutExpired:
        return "ALLOWED:still-running"
    return "ALLOWED:" + repr(got)[:120].replace(" ", "_")


libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.restype = ctypes.c_long
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]


def ptrace(request, pid):
    if libc.ptrace(request, pid, None, None) == -1:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    libc.ptrace(17, pid, None, None)  # PTRACE_DETACH: leave it as it was
    return "attached"


class iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def vm_read(pid):
    buf = ctypes.create_string_buffer(16)
    local = iovec(ctypes.cast(buf, ctypes.c_void_p), 16)
    remote = iovec(0x400000, 16)
    n = libc.process_vm_readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    if n == -1:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return buf.raw


def read(path, n=64):
    with open(path, "rb") as f:
        return f.read(n)


def mem_read(pid):
    with open(f"/proc/{pid}/mem", "rb") as f:
        f.seek(0x400000)
        return f.read(16)


def mem_write(pid):
    with open(f"/proc/{pid}/mem", "r+b") as f:
        f.seek(0x400000)
        return f.write(b"\x90")


def append(path):
    with open(path, "ab") as f:
        return f.write(b"")


def create(path):
    with open(path, "x") as f:
        return f.write("import os\n")


def bind(host, port, family=socket.AF_INET, reuse=False):
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        if reuse:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((host, port))
        s.listen()
        return f"listening on {host}:{port}"
    finally:
        s.close()


def own_ip():
    return socket.gethostbyname(socket.gethostname())  # the container's address on its network


def second_gate_launch():
    env = dict(os.environ, VISITING_EGRESS_RULES='{"cap_bytes": 1099511627776}')
    r = subprocess.run(
        [sys.executable, "-m", "extensions.guard.gate", "launch", "--", "sleep", "30"],
        env=env, capture_output=True, timeout=60,
    )
    if r.returncode != 0:
        raise OSError(errno.EPERM, f"exit {r.returncode}")
    return r.returncode


gate_dir = os.path.dirname(importlib.util.find_spec("extensions.guard.gate").origin)
site_dir = os.path.dirname(os.path.dirname(os.path.dirname(gate_dir)))
ATTEMPTS = {
    "read-mem": lambda p: mem_read(p),
    "write-mem": lambda p: mem_write(p),
    "read-maps": lambda p: read(f"/proc/{p}/maps"),
    "read-environ": lambda p: read(f"/proc/{p}/environ"),
    "read-fd-dir": lambda p: os.listdir(f"/proc/{p}/fd"),
    "ptrace-attach": lambda p: ptrace(16, p),
    "ptrace-seize": lambda p: ptrace(0x4206, p),
    "process-vm-readv": lambda p: vm_read(p),
    "signal-0": lambda p: os.kill(p, 0),
    "signal-stop": lambda p: os.kill(p, signal.SIGSTOP),
    "signal-term": lambda p: os.kill(p, signal.SIGTERM),
    "signal-kill": lambda p: os.kill(p, signal.SIGKILL),
    "write-gate-module": lambda p: append(os.path.join(gate_dir, "proxy.py")),
    "write-gate-package-init": lambda p: append(os.path.join(gate_dir, "__init__.py")),
    "add-module-beside-gate": lambda p: create(os.path.join(gate_dir, "policy2.py")),
    "add-sitecustomize": lambda p: create(os.path.join(site_dir, "sitecustomize.py")),
    "add-pth-file": lambda p: create(os.path.join(site_dir, "zz-egress.pth")),
    "write-recogniser": lambda p: append(os.path.join(os.path.dirname(gate_dir), "recognise", "__init__.py")),
    "write-meter-module": lambda p: append(os.path.join(os.path.dirname(gate_dir), "meter.py")),
    "write-server-config": lambda p: append("/etc/visiting/jupyter/jupyter_server_config.json"),
    "add-server-config": lambda p: create("/etc/visiting/jupyter/jupyter_server_config.py"),
    "write-launcher-script": lambda p: append("/usr/local/bin/visiting-singleuser"),
    "list-gate-state": lambda p: os.listdir("/var/lib/visiting-gate"),
    "write-meter-state": lambda p: append("/var/lib/visiting-gate/meter.json"),
    "replace-meter-state": lambda p: create("/var/lib/visiting-gate/meter.json.new"),
    "write-gate-spool": lambda p: create("/var/lib/visiting-gate/spool/forged.jsonl"),
    "bind-port-80": lambda p: bind("0.0.0.0", 80),
    "bind-port-80-reuseport": lambda p: bind("0.0.0.0", 80, reuse=True),
    "bind-port-80-own-ip": lambda p: bind(own_ip(), 80, reuse=True),
    "bind-port-80-ipv6": lambda p: bind("::", 80, socket.AF_INET6, reuse=True),
    "start-second-gate": lambda p: second_gate_launch(),
}
pid, names = int(sys.argv[1]), sys.argv[2:] or list(ATTEMPTS)
for name in names:
    print("RESULT", name, outcome(lambda: ATTEMPTS[name](pid)), flush=True)
"""
REACH_NAMES = re.findall(r'^    "([a-z0-9-]+)": lambda', REACH, re.M)
RESULT = re.compile(r"RESULT (\S+) (\S+)")
REFUSED = {"denied:EACCES", "denied:EPERM", "denied:EADDRINUSE", "denied:EROFS"}


@pytest.fixture(scope="module")
def stack(site_stack):
    """The session's site stack (conftest.py), whose platform holds APPROVAL."""
    assert APPROVAL["approval_id"] in site_stack.bundle.approvals
    return site_stack


@pytest.fixture(scope="module")
def engine():
    e = engine_client()
    yield e
    e.close()


class Servers:
    """takahashi's servers, (re)started when a test needs one that is not running."""

    def __init__(self, stack, engine):
        self.stack, self.engine = stack, engine
        self.open: dict[str, Server] = {}

    def at(self, site: str) -> Server:
        s = self.open.get(site)
        if s is None:
            forget_gate_state(self.stack, USER, site)
            s = self.open[site] = Server(self.stack, USER, site, self.engine)
        if s.running() and not self.answers(s):
            s.stop()  # it ended (a test killed its server) before the hub noticed
        if not s.running():
            s.start()
            code, out = s.sh(
                f"cat > ~/reach.py <<'EOF'\n{REACH}\nEOF\n"
                f"cp {CLINICAL} ~/reach-copy.tsv 2>/dev/null; echo written"
            )
            assert "written" in out, out
        return s

    @staticmethod
    def answers(s: Server) -> bool:
        if s.container() is None:
            return False
        try:
            return s.get("api/status", timeout=10).status_code == 200
        except Exception:  # noqa: BLE001 - nothing answers
            return False

    def close(self) -> None:
        for site, s in self.open.items():
            s.stop()
            forget_gate_state(self.stack, USER, site)


@pytest.fixture(scope="module")
def servers(stack, engine):
    s = Servers(stack, engine)
    yield s
    s.close()


def processes(server: Server) -> list[tuple[int, int, str]]:
    """(pid, uid, command line) of every process in the container, read as root."""
    code, out = server.sh(
        "for p in /proc/[0-9]*; do "
        'printf "%s %s " "${p#/proc/}" "$(stat -c %u "$p")"; '
        "tr '\\0' ' ' < \"$p/cmdline\"; echo; done 2>/dev/null",
        user="0",
    )
    rows = []
    for line in out.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit():
            rows.append((int(parts[0]), int(parts[1]), parts[2].strip()))
    return rows


def gate_pid(server: Server) -> int:
    found = [p for p, uid, cmd in processes(server) if uid == GATE_UID and "gate serve" in cmd]
    assert len(found) == 1, processes(server)
    return found[0]


def server_pid(server: Server) -> int:
    found = [
        p
        for p, uid, cmd in processes(server)
        if uid == SERVER_UID and "jupyterhub-singleuser" in cmd and "sh -c" not in cmd
    ]
    assert found, processes(server)
    return min(found)


def gate_state(server: Server, pid: int) -> tuple[str, str]:
    """The gate process's state letter (R, S; T when stopped) and its files' digest, as root."""
    code, out = server.sh(
        f"cut -d' ' -f3 /proc/{pid}/stat; "
        "cd /opt/venv/lib/python3*/site-packages/extensions/guard && "
        "cat gate/*.py recognise/*.py sniff/*.py meter.py ../contracts/*.py | sha256sum",
        user="0",
    )
    lines = out.split()
    return lines[0], lines[1]


def results(text: str) -> dict[str, str]:
    return dict(RESULT.findall(text))


@pytest.fixture(scope="module")
def kernel_at_nig(servers):
    k = servers.at("nig").kernel(timeout=180).start()
    yield k
    try:
        k.shutdown()
    except Exception:  # noqa: BLE001 - the server may be gone by then
        pass


def test_the_gate_runs_as_its_own_user_in_front_of_the_server(servers):
    """The facts the rest relies on: who runs what, who owns the gate's state."""
    s = servers.at("nig")
    rows = processes(s)
    gate = [(p, uid, cmd) for p, uid, cmd in rows if "gate serve" in cmd]
    assert gate and gate[0][1] == GATE_UID, rows
    assert [r for r in rows if "jupyterhub-singleuser" in r[2] and r[1] == SERVER_UID], rows
    code, out = s.sh("stat -c '%U %a' /var/lib/visiting-gate", user="0")
    assert out.split() == ["gate", "700"], out
    # the kernels and terminals run as the researcher, without a capability
    code, out = s.sh("id -u; grep CapEff /proc/self/status", user="1000")
    assert out.split()[0] == "1000" and out.split()[-1] == "0000000000000000", out


@pytest.mark.parametrize("via", ["kernel", "terminal"])
@pytest.mark.parametrize("attempt", REACH_NAMES)
def test_the_researcher_cannot_reach_the_gate(servers, kernel_at_nig, attempt, via):
    s = servers.at("nig")
    pid = gate_pid(s)
    before = gate_state(s, pid)
    if via == "kernel":
        run = kernel_at_nig.execute(
            f"import sys, os\nsys.argv = ['reach', '{pid}', '{attempt}']\n"
            "exec(open(os.path.expanduser('~/reach.py')).read(), {'__name__': 'reach'})",
            timeout=120,
        ).raise_for_error()
        got = results(run.stdout)
    else:
        with s.terminal() as t:
            got = results(t.run(f"/opt/venv/bin/python ~/reach.py {pid} {attempt}", timeout=120))
    assert attempt in got, f"no result for {attempt} via {via}"
    # refused for want of the right, not missed (a wrong path would say ENOENT)
    assert got[attempt] in REFUSED, f"{attempt} via {via}: {got[attempt]}"
    # the gate is the same process, running, with the same code
    assert gate_pid(s) == pid
    state, digest = gate_state(s, pid)
    assert state in ("R", "S", "D") and digest == before[1], (state, digest, before)


def withheld_through_the_proxy(server: Server, cohort: Cohort) -> None:
    """A raw output and a download of the clinical table, tried through the proxy: neither
    arrives."""
    with server.kernel(timeout=180) as k:
        run = k.execute(f"print(open('{CLINICAL}').read())")
    found = inspect(message_blobs(run.messages), (), cohort)
    assert not found.leaked(), found.summary()
    assert withheld_notice(run.stdout), run.stdout[:300]
    r = server.get("files/reach-copy.tsv")
    assert r.status_code in (403, 429), r.status_code
    assert not inspect([r.content], (), cohort).leaked()


@pytest.fixture(scope="module")
def cohort(stack):
    return Cohort.of_server(stack, "nig", ["JGAD000101"])


def test_a_second_gate_with_other_settings_takes_nothing(servers, kernel_at_nig, cohort):
    """The researcher starts the gate's own code as herself, with a cap of a terabyte and its
    state in her home, on a port of her choosing: it runs, and nothing reaches it."""
    s = servers.at("nig")
    pid = gate_pid(s)
    run = kernel_at_nig.execute(
        "import os, socket, subprocess, sys, time\n"
        "sock = socket.socket(); sock.bind(('0.0.0.0', 8890)); sock.listen(); "
        "sock.set_inheritable(True)\n"
        'env = dict(os.environ, VISITING_EGRESS_RULES=\'{"cap_bytes": 1099511627776, '
        '"alert_bytes": 1099511627776, "max_people_per_output": 100000, '
        '"alert_people": 100000, "cap_people": 100000}\', '
        "VISITING_GATE_STATE=os.path.expanduser('~/my-gate'))\n"
        "second = subprocess.Popen([sys.executable, '-m', 'extensions.guard.gate', 'serve', "
        "'--fd', str(sock.fileno()), '--prefix', os.environ['JUPYTERHUB_SERVICE_PREFIX']], "
        "env=env, pass_fds=[sock.fileno()], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "time.sleep(5)\nprint('second gate', second.poll())",
        timeout=120,
    ).raise_for_error()
    assert "second gate" in run.stdout
    try:
        withheld_through_the_proxy(s, cohort)
        assert gate_pid(s) == pid
    finally:
        kernel_at_nig.execute("second.kill(); second.wait(); sock.close()", timeout=60)


KILL_AND_REPLACE = r"""
sleep 2
kill -TERM {server}
for i in $(seq 1 50); do kill -0 {server} 2>/dev/null || break; sleep 0.1; done
kill -KILL {server} 2>/dev/null
mkdir -p /tmp/unguarded-config
for i in $(seq 1 100); do
  JUPYTER_CONFIG_DIR=/tmp/unguarded-config /opt/venv/bin/jupyter server --no-browser \
    --ip=127.0.0.1 --port=8888 --ServerApp.port_retries=0 --ServerApp.base_url={prefix} \
    --IdentityProvider.token= --ServerApp.password= --ServerApp.disable_check_xsrf=True \
    --ServerApp.root_dir=/home/jovyan >>/tmp/unguarded.log 2>&1
  sleep 0.2
done
"""


@pytest.mark.parametrize("via", ["kernel", "terminal"])
def test_killing_the_server_and_starting_an_unguarded_one_gives_nothing(
    servers, stack, engine, cohort, via
):
    """The researcher stops her Jupyter server and starts one without the guard on its
    address (127.0.0.1:8888), no token asked: the proxy reaches only the gate, so either
    nothing answers (the container ends with its server) or the gate still withholds."""
    s = servers.at("nig")
    pid = gate_pid(s)
    prefix = f"/user/{USER}/nig/"
    script = KILL_AND_REPLACE.format(server=server_pid(s), prefix=prefix)
    s.sh(f"cat > ~/replace.sh <<'EOF'\n{script}\nEOF")
    command = "setsid sh ~/replace.sh </dev/null >/dev/null 2>&1 &"
    if via == "kernel":
        with s.kernel(timeout=180) as k:
            k.execute(f"import subprocess\nsubprocess.run({command!r}, shell=True)", timeout=60)
    else:
        with s.terminal() as t:
            t.run(command, timeout=30)
    # she may stop her own server (it runs as her): the attempt happened
    target = int(script.split("kill -TERM ", 1)[1].split()[0])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and s.container() is not None:
        try:
            if target not in [p for p, _, _ in processes(s)]:
                break
        except Exception:  # noqa: BLE001 - the container is going
            break
        time.sleep(0.5)
    else:
        if s.container() is not None:
            raise AssertionError(f"the server ({target}) was not stopped: {processes(s)}")
    deadline = time.monotonic() + 60
    seen = []  # what the test met on the way, for the record
    while time.monotonic() < deadline:
        c = s.container()
        if c is None or c.status != "running":
            seen.append("container gone")
            break  # the container ended with its server: nothing is left to reach
        try:
            if any(
                "jupyter server" in cmd or "jupyter-server" in cmd for _, _, cmd in processes(s)
            ):
                seen.append("unguarded server running behind the gate")
            r = s.get("files/reach-copy.tsv", timeout=30)
            seen.append(f"files {r.status_code}")
            assert not inspect([r.content], (), cohort).leaked(), r.status_code
            with s.kernel(timeout=30) as k:
                run = k.execute(f"print(open('{CLINICAL}').read())", timeout=60)
        except AssertionError as e:
            if "leaked" in str(e) or "people" in str(e):
                raise
            seen.append(f"no kernel: {str(e)[:80]}")
            time.sleep(1)
            continue  # nothing answered (the server is going or coming): nothing arrived
        except Exception as e:  # noqa: BLE001 - the gate answers 502 while nothing is behind it
            seen.append(f"no answer: {type(e).__name__} {str(e)[:60]}")
            time.sleep(1)
            continue
        found = inspect(message_blobs(run.messages), (), cohort)
        seen.append(f"kernel output withheld: {withheld_notice(run.stdout)}")
        assert not found.leaked(), (found.summary(), seen)
        time.sleep(1)
    print("\n".join(dict.fromkeys(seen)))
    # afterwards there is no server there, or its gate is the one it had
    c = s.container()
    assert c is None or c.status != "running" or gate_pid(s) == pid, seen


def test_terminals_are_off_at_imsut(servers):
    assert load_policy_dir(DEMO_PLATFORM).platform.sites["imsut"].terminals == "off"
    s = servers.at("imsut")
    t = s.terminal()
    try:
        r = t.create()
        assert r.status_code in (403, 404), (r.status_code, r.text[:300])
        listed = s.get("api/terminals")
        assert listed.status_code in (403, 404) or listed.json() == [], listed.text[:300]
        try:
            got = t.try_open("1")
        except TerminalRefused:
            got = []
        assert not any("stdout" in g or "setup" in g for g in got), got
    finally:
        t.close()
    # the notebooks work there as anywhere
    with s.kernel(timeout=180) as k:
        assert k.execute("print(6 * 7)").raise_for_error().stdout.strip() == "42"
