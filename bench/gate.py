"""The egress gate's cost on what a researcher does: gate on against gate off, same server, same run.

A real jupyter_server with the guard extension and a real kernel on this
machine's loopback; the gate process (`python -m extensions.guard.gate serve`)
in front of it, as in a site container. Every figure is the median time
through the gate over the median time straight to the same server, requests
alternating between the two so they share the machine's noise:

- a cell printing 10 MB of summary text (a per-variant table);
- a cell showing 200 plots (PNG);
- a terminal printing a 10 MB summary file (`cat`);
- downloads of results: a 20 MB summary table and a PNG through /files/.

    .venv/bin/python bench/gate.py [--quick]

bench/guard.py runs it as its gate section.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import requests  # noqa: E402
from tornado.httpclient import HTTPRequest  # noqa: E402
from tornado.websocket import websocket_connect  # noqa: E402

from extensions.contracts.environment import GUARD_RULES  # noqa: E402
from hub.data.synth import SiteSpec, generate_cohorts  # noqa: E402
from tests.integration.gate_rig import GateRig  # noqa: E402
from tests.integration.guard_server import TOKEN, GuardServer, free_port, server_env  # noqa: E402
from tests.integration.kernel_client import Kernel  # noqa: E402

MIB = 1024**2
SUMMARY_CELL = (
    "import sys\n"
    "rows = ''.join(f'1\\t{1000 + i}\\trs{i}\\tA\\tG\\t{i % 160}\\t160\\t{(i % 160) / 160:.6f}\\n' "
    "for i in range(320000))\n"
    "sys.stdout.write(rows[: 10 * 1024 * 1024])\n"
)
PLOTS_CELL = (
    "import io\nimport matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
    "from IPython.display import Image, display\n"
    "for i in range(200):\n"
    "    fig, ax = plt.subplots(figsize=(3, 2)); ax.plot(range(20), [(j * i) % 7 for j in range(20)])\n"
    "    buf = io.BytesIO(); fig.savefig(buf, format='png'); plt.close(fig)\n"
    "    display(Image(buf.getvalue()))\n"
)


def summary_table(n_bytes: int) -> bytes:
    line = "1\t{pos}\trs{pos}\tA\tG\t{ac}\t4000\t{af:.6f}\t{beta:.5f}\t{p:.3e}\n"
    out, i = [], 0
    size = 0
    while size < n_bytes:
        s = line.format(
            pos=1000 + i, ac=i % 4000, af=(i % 4000) / 4000, beta=(i % 97) / 1000, p=1 / (i + 2)
        )
        out.append(s)
        size += len(s)
        i += 1
    return ("chrom\tpos\tid\tref\talt\tAC\tAN\tAF\tbeta\tp\n" + "".join(out)).encode()


def png(n: int = 40_000) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 6))
    ax.plot(range(n // 100), [(i * 13) % 17 for i in range(n // 100)])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def arrived(run, cell: str):
    """The cell ran and its whole output reached the client (no rate limit, nothing withheld)."""
    run.raise_for_error()
    if cell is SUMMARY_CELL and len(run.stdout) < 10 * MIB:
        raise SystemExit(f"only {len(run.stdout)} bytes of the 10 MB output arrived")
    if cell is PLOTS_CELL and sum("image/png" in r for r in run.results) < 200:
        raise SystemExit(f"only {sum('image/png' in r for r in run.results)} plots arrived")
    return run


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def pair(fn_on, fn_off, repeat: int) -> tuple[float, float]:
    """Median seconds through the gate and straight to the server, alternating."""
    fn_on(), fn_off()  # warm: kernels started, files cached by the guard
    on, off = [], []
    for _ in range(repeat):
        on += timed(fn_on, 1)
        off += timed(fn_off, 1)
    return statistics.median(on), statistics.median(off)


async def _terminal_cat(base: str, name: str, path: str) -> int:
    url = base.replace("http", "ws", 1) + f"/terminals/websocket/{name}"
    ws = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {TOKEN}"}))
    marker = f"__END{time.time_ns()}__"
    ws.write_message(json.dumps(["stdin", f"cat {path}; echo {marker[:3]}''{marker[3:]}\r"]))
    got = 0
    while True:
        msg = await ws.read_message()
        if msg is None:
            break
        got += len(msg)
        if marker in msg:
            break
    ws.close()
    return got


def run(quick: bool = False) -> list[tuple[str, float, float]]:
    repeat = 3 if quick else 7
    with tempfile.TemporaryDirectory(prefix="bench-gate-") as tmp:
        root = Path(tmp)
        generate_cohorts(
            root / "data",
            [SiteSpec("nig", "JGAD000101", "JGAD000102", "Shizuoka")],
            samples_per_site=2000,
            variants=500,
            matrix_table=False,
        )
        data = root / "data" / "nig"
        home = root / "home"
        home.mkdir()
        (home / "results.tsv").write_bytes(summary_table(20 * MIB))
        (home / "summary10.tsv").write_bytes(summary_table(10 * MIB))
        (home / "plot.png").write_bytes(png())
        port = free_port()
        clock = root / "now"
        clock.write_text("")
        env = server_env(
            root,
            home,
            data,
            root / "spool",
            clock,
            port,
            **{GUARD_RULES: json.dumps({"max_bytes": 64 * MIB})},
        )
        # the whole 10 MB must reach the client: jupyter_server's IOPub rate limit off
        cfg = root / "jupyter-config" / "jupyter_server_config.json"
        config = json.loads(cfg.read_text())
        config["ZMQChannelsWebsocketConnection"] = {"iopub_data_rate_limit": 0}
        config["ServerApp"]["iopub_data_rate_limit"] = 0
        cfg.write_text(json.dumps(config))
        server = GuardServer(root, home, data, root / "spool", clock, port, env)
        server.start()
        big = {
            "alert_bytes": 1 << 40,
            "cap_bytes": 1 << 41,
            "alert_people": 10**5,
            "cap_people": 10**5,
        }
        try:
            with GateRig(server, data, root / "gate", datasets="JGAD000101", rules=big) as gate:
                rows = []
                with (
                    Kernel(f"{gate.url}/", TOKEN) as k_on,
                    Kernel(f"{server.url}/", TOKEN) as k_off,
                ):
                    for name, cell in (
                        ("kernel: 10 MB summary text", SUMMARY_CELL),
                        ("kernel: 200 plots", PLOTS_CELL),
                    ):
                        on, off = pair(
                            lambda c=cell: arrived(k_on.execute(c, timeout=600), c),
                            lambda c=cell: arrived(k_off.execute(c, timeout=600), c),
                            max(2, repeat // 2),
                        )
                        rows.append((name, on, off))
                t = requests.post(
                    f"{server.url}/api/terminals", headers=server.auth, timeout=30
                ).json()["name"]
                loop = asyncio.new_event_loop()
                path = str(home / "summary10.tsv")
                on, off = pair(
                    lambda: loop.run_until_complete(_terminal_cat(gate.url, t, path)),
                    lambda: loop.run_until_complete(_terminal_cat(server.url, t, path)),
                    max(2, repeat // 2),
                )
                rows.append(("terminal: cat 10 MB summary", on, off))
                loop.close()
                table = summary_table(20 * MIB)
                for size, label in ((20 * MIB, "20 MB"), (1 * MIB, "1 MB")):
                    # a file never downloaded before through either path: the gate and the
                    # server's own guard both judge it afresh
                    on, off = [], []
                    for rep in range(repeat):
                        for which, base, out in (("on", gate.url, on), ("off", server.url, off)):
                            name = f"fresh-{label[:-3]}-{rep}-{which}.tsv"
                            head = f"# run {rep} {which}\n".encode()
                            (home / name).write_bytes(head + table[:size])
                            t0 = time.perf_counter()
                            requests.get(
                                f"{base}/files/{name}", headers=server.auth, timeout=120
                            ).raise_for_status()
                            out.append(time.perf_counter() - t0)
                    rows.append(
                        (
                            f"download: {label} summary table, first time",
                            statistics.median(on),
                            statistics.median(off),
                        )
                    )
                for name, f in (
                    ("download: 20 MB summary table, again", "results.tsv"),
                    ("download: PNG plot", "plot.png"),
                ):
                    on, off = pair(
                        lambda f=f: requests.get(
                            f"{gate.url}/files/{f}", headers=server.auth, timeout=120
                        ).raise_for_status(),
                        lambda f=f: requests.get(
                            f"{server.url}/files/{f}", headers=server.auth, timeout=120
                        ).raise_for_status(),
                        repeat,
                    )
                    rows.append((name, on, off))
                withheld = gate.events("output-withheld") + gate.events("download-blocked")
                if withheld:
                    raise SystemExit(f"the gate withheld normal use: {withheld}")
        finally:
            server.stop()
    return rows


def table(rows) -> str:
    lines = [
        "| what | through the gate | straight to the server | ratio |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, on, off in rows:
        lines.append(f"| {name} | {on * 1000:.0f} ms | {off * 1000:.0f} ms | {on / off:.2f} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    print(table(run(args.quick)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
