"""Time from a spawn request to a ready server at one site, for 1, 5 and 10 concurrent spawns.

Runs the real stack (IdP, hub, proxy, Docker, site network) on free loopback
ports with ten benchmark handlers approved at `nig`, each logged in through
the IdP. The reference, measured in the same run, is a bare `docker run` of
the same image until its Jupyter server answers, with no hub in the way.
Also times the image build when nothing changed (and from scratch with
--scratch, which removes the images and the wheel cache first).

    .venv/bin/python bench/spawn.py [--levels 1,5,10] [--rounds 2] [--scratch]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hub.demo.stack import Stack, StackConfig  # noqa: E402
from hub.sites.engine import build_images  # noqa: E402
from hub.sites.plan import resolve_endpoint  # noqa: E402
from tests.integration.conftest import hub_login  # noqa: E402

SITE = "nig"


def bench_platform(tmp: Path, n: int) -> Path:
    """The demo platform plus `n` benchmark handlers approved at nig."""
    dest = tmp / "policy"
    shutil.copytree(REPO / "policies" / "demo", dest)
    users = yaml.safe_load((dest / "users.yaml").read_text())
    for i in range(1, n + 1):
        users["users"].append(
            {"username": f"bench{i:02d}", "password": f"bench{i:02d}-demo", "name": f"Bench {i}",
             "email": f"bench{i}@example.org", "roles": []}
        )  # fmt: skip
    (dest / "users.yaml").write_text(yaml.safe_dump(users))
    (dest / "approvals" / "J-DU000199.yaml").write_text(
        yaml.safe_dump(
            {
                "approval_id": "J-DU000199",
                "institution": "Benchmark",
                "purpose": "spawn benchmark",
                "handlers": [f"bench{i:02d}" for i in range(1, n + 1)],
                "datasets": ["JGAD000101"],
                "period": {"start": "2024-04-01", "end": "2035-03-31"},
                "quota": {"cpu": 0.5, "memory": "1G"},
            }
        )  # fmt: skip
    )
    return dest


class User:
    def __init__(self, hub: str, name: str):
        self.hub, self.name = hub, name
        self.session, r = hub_login(hub, name, f"{name}-demo")
        assert r.status_code == 200, f"{name} could not log in: {r.status_code}"

    def _h(self):
        return {"X-XSRFToken": self.session.cookies.get("_xsrf", path="/hub/") or ""}

    def spawn_seconds(self) -> float:
        t0 = time.perf_counter()
        r = self.session.post(
            f"{self.hub}/hub/api/users/{self.name}/servers/{SITE}", headers=self._h(), timeout=300
        )
        assert r.status_code in (201, 202), r.text
        while True:
            s = self.session.get(
                f"{self.hub}/hub/api/users/{self.name}", headers=self._h(), timeout=30
            ).json()
            server = s.get("servers", {}).get(SITE)
            if server and server.get("ready"):
                return time.perf_counter() - t0
            if time.perf_counter() - t0 > 300:
                raise TimeoutError(f"{self.name}: not ready after 300 s")
            time.sleep(0.1)

    def stop(self):
        self.session.delete(
            f"{self.hub}/hub/api/users/{self.name}/servers/{SITE}", headers=self._h(), timeout=120
        )
        while SITE in self.session.get(
            f"{self.hub}/hub/api/users/{self.name}", headers=self._h(), timeout=30
        ).json().get("servers", {}):
            time.sleep(0.2)


def concurrent_spawns(users: list[User]) -> list[float]:
    times: list[float] = [0.0] * len(users)
    errors: list[BaseException] = []

    def one(i):
        try:
            times[i] = users[i].spawn_seconds()
        except BaseException as e:  # reported after the join
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(users))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for u in users:
        u.stop()
    if errors:
        raise errors[0]
    return times


def bare_docker_seconds(image: str) -> float:
    """`docker run` of the image until its Jupyter server answers, on a throwaway bridge."""
    env = dict(os.environ, DOCKER_HOST=resolve_endpoint("local"))
    name = f"visiting-bench-bare-{os.getpid()}"
    t0 = time.perf_counter()
    subprocess.run(
        ["docker", "run", "-d", "--rm", "--name", name, image, "jupyter", "server", "--ServerApp.ip=0.0.0.0",
         "--IdentityProvider.token=", "--ServerApp.port=8888"],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    try:
        while True:
            r = subprocess.run(
                ["docker", "exec", name, "python3", "-c",
                 "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8888/api/status', timeout=1)"],
                env=env, capture_output=True,
            )  # fmt: skip
            if r.returncode == 0:
                return time.perf_counter() - t0
            time.sleep(0.1)
    finally:
        subprocess.run(["docker", "rm", "-f", name], env=env, capture_output=True)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(q * (len(values) - 1))))
    return values[k]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", default="1,5,10")
    ap.add_argument("--rounds", type=int, default=2, help="repetitions of each level")
    ap.add_argument("--scratch", action="store_true", help="also time the image build from scratch")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]

    rows = []
    if args.scratch:
        env = dict(os.environ, DOCKER_HOST=resolve_endpoint("local"))
        subprocess.run(
            "docker rmi -f $(docker images -q 'visiting/*') 2>/dev/null", shell=True, env=env
        )
        shutil.rmtree(
            Path(os.environ.get("VISITING_CACHE", Path.home() / ".cache" / "visiting")),
            ignore_errors=True,
        )
        t0 = time.perf_counter()
        build_images()
        rows.append(("make images, from scratch", time.perf_counter() - t0, None))
    t0 = time.perf_counter()
    build_images()
    rows.append(("make images, nothing changed", time.perf_counter() - t0, None))

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        policy = bench_platform(tmp, max(levels))
        os.environ.setdefault("VISITING_DATA_ROOT", str(REPO / "var" / "data"))
        stack = Stack(StackConfig.ephemeral(tmp / "state", platform_dir=policy, sites=True))
        stack.ensure_data()
        stack.start_sites()
        stack.start()
        try:
            users = [User(stack.config.hub_url, f"bench{i:02d}") for i in range(1, max(levels) + 1)]
            bare = [bare_docker_seconds("visiting/singleuser:latest") for _ in range(3)]
            ref = statistics.median(bare)
            rows.append(("bare docker run to ready (reference)", ref, 1.0))
            for n in levels:
                times = []
                for _ in range(args.rounds):
                    times += concurrent_spawns(users[:n])
                rows.append((f"{n} concurrent, p50", pct(times, 0.5), pct(times, 0.5) / ref))
                rows.append((f"{n} concurrent, p95", pct(times, 0.95), pct(times, 0.95) / ref))
        finally:
            stack.stop()

    print(
        f"\nspawn at site {SITE}: request to ready server (seconds), ratio to a bare docker run\n"
    )
    print("| measurement | seconds | ratio |")
    print("| --- | ---: | ---: |")
    for name, secs, ratio in rows:
        print(f"| {name} | {secs:.2f} | {'' if ratio is None else f'{ratio:.2f}'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
