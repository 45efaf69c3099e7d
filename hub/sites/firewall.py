"""The host firewall of the sites: pure rule lists, then applying them with iptables.

The rules live in two chains of the project's own, `VISITING-INPUT` (container to
host) and `VISITING-FORWARD` (container to container, hooked into Docker's
`DOCKER-USER`), so installing is idempotent and removing takes exactly what
was added.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable

from hub.sites import SiteError
from hub.sites.plan import SitePlan

INPUT_CHAIN = "VISITING-INPUT"
FORWARD_CHAIN = "VISITING-FORWARD"


def firewall_rules(
    plans: Iterable[SitePlan], hub_ports: Iterable[int]
) -> dict[str, list[list[str]]]:
    """iptables rules (without the `-A CHAIN` prefix) for both chains, in order."""
    inp: list[list[str]] = []
    fwd: list[list[str]] = []
    ports = sorted(set(hub_ports))
    for p in plans:
        br, users = p.bridge, str(p.users_range)
        inp.append(
            ["-i", br, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"]
        )
        for port in ports:
            inp.append(["-i", br, "-p", "tcp", "--dport", str(port), "-j", "ACCEPT"])
        # everything else a site container sends to the host: DNS, other services, decoys
        inp.append(["-i", br, "-j", "DROP"])

        fwd.append(
            [
                "-i",
                br,
                "-o",
                br,
                "-m",
                "conntrack",
                "--ctstate",
                "ESTABLISHED,RELATED",
                "-j",
                "RETURN",
            ]
        )
        fwd.append(["-i", br, "-o", br, "-s", users, "-j", "DROP"])
        fwd.append(["-i", br, "-o", br, "-d", users, "-j", "DROP"])
        # whatever leaves the bridge for anywhere else (the internal network already has
        # no route out; this holds even if a network is recreated without --internal)
        fwd.append(["-i", br, "!", "-o", br, "-j", "DROP"])
    return {INPUT_CHAIN: inp, FORWARD_CHAIN: fwd}


def _iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    exe = shutil.which("iptables")
    if exe is None:
        raise SiteError("iptables is not installed (scripts/docker.sh installs it with the engine)")
    r = subprocess.run([exe, "-w", *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise SiteError(f"iptables {' '.join(args)}: {r.stderr.strip()}")
    return r


def installed_hub_ports() -> set[int]:
    """The hub ports the installed rules already open (another stack on this machine may use them)."""
    r = _iptables("-S", INPUT_CHAIN, check=False)
    if r.returncode != 0:
        return set()
    ports = set()
    for line in r.stdout.splitlines():
        parts = line.split()
        if "--dport" in parts and parts[-1] == "ACCEPT":
            ports.add(int(parts[parts.index("--dport") + 1]))
    return ports


def install_firewall(
    plans: Iterable[SitePlan], hub_ports: Iterable[int], closing: Iterable[int] = ()
) -> int:
    """Replace the project's chains with the rules for `plans`; returns the number of rules.

    Hub ports already opened stay open, so a second stack on the machine (the
    tests beside a running demo) does not cut the first one off; a stack that
    stops names its own ports in `closing`.
    """
    ports = (set(hub_ports) | installed_hub_ports()) - set(closing)
    rules = firewall_rules(plans, ports)
    for chain, hook in ((INPUT_CHAIN, "INPUT"), (FORWARD_CHAIN, "DOCKER-USER")):
        if _iptables("-n", "-L", chain, check=False).returncode != 0:
            _iptables("-N", chain)
        _iptables("-F", chain)
        for rule in rules[chain]:
            _iptables("-A", chain, *rule)
        if _iptables("-C", hook, "-j", chain, check=False).returncode != 0:
            _iptables("-I", hook, "1", "-j", chain)
    return sum(len(r) for r in rules.values())


def remove_firewall() -> None:
    for chain, hook in ((INPUT_CHAIN, "INPUT"), (FORWARD_CHAIN, "DOCKER-USER")):
        while _iptables("-D", hook, "-j", chain, check=False).returncode == 0:
            pass
        if _iptables("-n", "-L", chain, check=False).returncode == 0:
            _iptables("-F", chain)
            _iptables("-X", chain)
