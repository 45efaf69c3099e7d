"""The egress gate in front of a Jupyter server on this machine's loopback (no Docker).

For the gate's fast logic tests and for bench/guard.py (gate on and off against
the same server). The security claim is proven in the site container
(tests/integration/test_egress_*.py); here the gate runs as the same user as
the server, which proves the logic only.

    server = GuardServer(...); server.start()
    with GateRig(server, data_root, tmp) as gate:
        requests.get(gate.url + "/files/x.csv", headers=server.auth)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from .guard_server import stop_process, tail_of

REPO = Path(__file__).resolve().parents[2]


class GateRig:
    def __init__(
        self,
        server,
        data_root: Path,
        state: Path,
        datasets: str = "",
        rules: dict | None = None,
        terminals: str = "guarded",
        clock_file: Path | None = None,
        audit_url: str | None = None,
    ):
        self.server = server
        self.data_root = Path(data_root)
        self.state = Path(state)
        self.datasets = datasets
        self.rules = rules or {}
        self.terminals = terminals
        self.clock_file = clock_file
        self.audit_url = audit_url
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.log_path = self.state / "gate.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> GateRig:
        self.state.mkdir(parents=True, exist_ok=True)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("VISITING_", "JUPYTERHUB_"))
        }
        env.update(
            {
                "PYTHONPATH": str(REPO),
                "JUPYTERHUB_USER": "tanaka",
                "VISITING_SITE": "nig",
                "VISITING_APPROVAL_ID": "J-DU000101",
                "VISITING_DATASETS": self.datasets,
                "VISITING_DATA_ROOT": str(self.data_root),
                "VISITING_GATE_STATE": str(self.state),
                "VISITING_GATE_UPSTREAM": self.server.url,
                "VISITING_EGRESS_RULES": json.dumps(self.rules),
                "VISITING_TERMINALS": self.terminals,
            }
        )
        if self.clock_file:
            env["VISITING_CLOCK_FILE"] = str(self.clock_file)
        if self.audit_url:
            env["VISITING_AUDIT_URL"] = self.audit_url
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "extensions.guard.gate",
                    "serve",
                    "--fd",
                    str(sock.fileno()),
                    "--prefix",
                    "/",
                ],
                env=env,
                pass_fds=[sock.fileno()],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        sock.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the gate exited:\n{self.log_tail()}")
            try:
                r = requests.get(f"{self.url}/api/status", headers=self.server.auth, timeout=5)
                if r.status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the gate did not answer:\n{self.log_tail()}")

    def stop(self) -> None:
        stop_process(self.proc)

    def log_tail(self, n: int = 40) -> str:
        return tail_of(self.log_path, n)

    def events(self, name: str | None = None) -> list[dict]:
        out = []
        spool = self.state / "spool"
        for p in sorted(spool.glob("batch-*.jsonl")) + [spool / "queue.jsonl"]:
            if p.exists():
                out += [json.loads(line) for line in p.read_text().splitlines() if line]
        if name:
            out = [e for e in out if e["schema"].endswith("/" + name)]
        return out

    def __enter__(self) -> GateRig:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
