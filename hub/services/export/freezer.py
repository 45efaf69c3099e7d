"""Where the export service has a request's files frozen and checked: at the site.

A `Freezer` runs the site's side of the airlock (`python -m extensions.guard.export`, the
contract in extensions.contracts.export) and hands back its manifest, and later the
frozen bytes of one file. Two kinds: `LocalFreezer` over local folders (the hub without
site containers, as the local gateways run), `DockerFreezer` in a short-lived container
of the site's image on no network.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from extensions.contracts.export import (
    DATA_MOUNT,
    EXPORT_MOUNT,
    HOME_MOUNT,
    ExportRules,
    Manifest,
)

log = logging.getLogger("visiting.export")

#: the site's side of the airlock, as a module both kinds of freezer run
SITE_MODULE = "extensions.guard.export"
REPO_ROOT = Path(__file__).resolve().parents[3]


class FreezeError(Exception):
    """The site could not freeze a request, or give a frozen file back (it did not run, or
    it failed); the message is for the log, not for the researcher."""


class Freezer:
    """The site's side of the airlock, as the export service uses it."""

    def freeze(
        self,
        request_id: str,
        site: str,
        username: str,
        paths: Sequence[str],
        rules: ExportRules,
        datasets: Sequence[str] = (),
    ) -> Manifest:
        """Copy the files `paths` names (relative to `username`'s home at `site`) into the
        site's export area under `request_id`, hash and check them by `rules` (against the
        approval's `datasets` there), and return the site's manifest. A request the site
        refuses (a path outside the home, ...) is a manifest with `error`; FreezeError when
        the site's process could not run. Blocking: the service calls it in a thread."""
        raise NotImplementedError

    def open_file(self, request_id: str, site: str, name: str) -> IO[bytes]:
        """The frozen bytes of the file `name` of request `request_id`, as a binary stream
        at its start (the caller closes it); FreezeError when the site cannot give it back
        (not frozen, or no longer matching its hash). Blocking."""
        raise NotImplementedError


def freeze_argv(
    home: str,
    export_dir: str,
    data: str,
    request_id: str,
    paths: Sequence[str],
    rules: ExportRules,
    datasets: Sequence[str] = (),
) -> list[str]:
    """The arguments of `python -m extensions.guard.export freeze` (after the module)."""
    argv = ["freeze", "--home", home, "--export-dir", export_dir, "--data", data]
    argv += ["--request", request_id, "--rules", rules.to_json()]
    if datasets:
        argv += ["--datasets", ",".join(datasets)]
    return [*argv, "--", *paths]


def read_argv(export_dir: str, request_id: str, name: str) -> list[str]:
    """The arguments of `python -m extensions.guard.export read` (after the module)."""
    return ["read", "--export-dir", export_dir, "--request", request_id, "--name", name]


def parse_manifest(stdout: str | bytes, request_id: str) -> Manifest:
    """The manifest the site printed; FreezeError when it printed none, or another one."""
    text = stdout.decode() if isinstance(stdout, bytes) else stdout
    try:
        manifest = Manifest.from_json(text.strip().splitlines()[-1])
    except (IndexError, ValueError, KeyError, TypeError) as e:
        raise FreezeError(f"the site printed no manifest ({e}): {text[:300]!r}") from None
    if manifest.request_id != request_id:
        raise FreezeError(f"the site's manifest is of {manifest.request_id}, not {request_id}")
    return manifest


class LocalFreezer(Freezer):
    """The site's module as a subprocess over local folders: the home of user U at site S
    is <state_dir>/homes/<S>/<U>, the export area <state_dir>/export/<S>, the datasets
    <data_root>/<S>."""

    def __init__(self, state_dir: Path, data_root: Path, timeout: float = 600.0):
        self.state_dir = Path(state_dir)
        self.data_root = Path(data_root)
        self.timeout = timeout

    def home(self, site: str, username: str) -> Path:
        return self.state_dir / "homes" / site / username

    def export_dir(self, site: str) -> Path:
        path = self.state_dir / "export" / site
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    def command(self, argv: list[str]) -> list[str]:
        """The site module's command line, `argv` its arguments after the module (a
        benchmark wraps it to read the module's own peak memory)."""
        return [sys.executable, "-m", SITE_MODULE, *argv]

    def _run(self, argv: list[str], stdout) -> subprocess.CompletedProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        try:
            return subprocess.run(
                self.command(argv),
                stdout=stdout,
                stderr=subprocess.PIPE,
                env=env,
                cwd=REPO_ROOT,
                timeout=self.timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise FreezeError(f"{SITE_MODULE} {argv[0]} did not run: {e}") from None

    def freeze(self, request_id, site, username, paths, rules, datasets=()) -> Manifest:
        argv = freeze_argv(
            str(self.home(site, username)),
            str(self.export_dir(site)),
            str(self.data_root / site),
            request_id,
            paths,
            rules,
            datasets,
        )
        done = self._run(argv, subprocess.PIPE)
        if done.returncode != 0:
            raise FreezeError(_failed("freeze", done))
        return parse_manifest(done.stdout, request_id)

    def open_file(self, request_id, site, name) -> IO[bytes]:
        out = tempfile.TemporaryFile()
        try:
            done = self._run(read_argv(str(self.export_dir(site)), request_id, name), out)
            if done.returncode != 0:
                raise FreezeError(_failed("read", done))
        except BaseException:
            out.close()
            raise
        out.seek(0)
        return out


def _failed(what: str, done: subprocess.CompletedProcess) -> str:
    err = done.stderr.decode(errors="replace").strip() if done.stderr else ""
    return f"{SITE_MODULE} {what} exited with {done.returncode}: {err[-500:]}"


class DockerFreezer(Freezer):
    """The site's module in a short-lived container of the site's image, on no network:
    the person's home volume read-only at HOME_MOUNT, the site's export volume at
    EXPORT_MOUNT, the site's datasets read-only under DATA_MOUNT. A frozen file is taken
    back with the Docker API's get_archive from a stopped container that mounts the
    export volume (nothing of the researcher's runs)."""

    def __init__(self, platform, client_for=None, timeout: float = 600.0):
        self.platform = platform
        self.timeout = timeout
        self._client_for = client_for

    @staticmethod
    def home_volume(site: str, username: str) -> str:
        """The person's home volume at the site, named as the spawner names it: its
        `{username}` is DockerSpawner's escaped name (a `-` becomes `-2d`, upper case
        is escaped), so the freezer finds the volume the server wrote."""
        from dockerspawner import DockerSpawner

        return f"visiting-home-{site}-{DockerSpawner._escape(username)}"

    @staticmethod
    def export_volume(site: str) -> str:
        return f"visiting-export-{site}"

    def client(self, site: str):
        if self._client_for is not None:
            return self._client_for(site)
        from hub.sites.engine import docker_client

        return docker_client(self.platform.sites[site].docker_endpoint)

    def _image(self, site: str) -> str:
        return self.platform.sites[site].default_image

    def _data_volumes(self, site: str, datasets: Sequence[str]) -> dict[str, dict[str, str]]:
        data_dir = self.platform.site_data_dir(site)
        return {
            str(data_dir / ds): {"bind": f"{DATA_MOUNT}/{ds}", "mode": "ro"}
            for ds in datasets
            if (data_dir / ds).is_dir()
        }

    def freeze(self, request_id, site, username, paths, rules, datasets=()) -> Manifest:
        volumes = {
            self.home_volume(site, username): {"bind": HOME_MOUNT, "mode": "ro"},
            self.export_volume(site): {"bind": EXPORT_MOUNT, "mode": "rw"},
            **self._data_volumes(site, datasets),
        }
        argv = freeze_argv(HOME_MOUNT, EXPORT_MOUNT, DATA_MOUNT, request_id, paths, rules, datasets)
        client = self.client(site)
        container = client.containers.create(
            self._image(site),
            ["python", "-m", SITE_MODULE, *argv],
            name=f"visiting-export-{site}-{request_id}",
            network_mode="none",
            volumes=volumes,
            labels={"visiting.export": request_id, "visiting.site": site},
            user="root",  # reads the home whatever its owner, writes the export area
            cap_drop=["ALL"],
            cap_add=["DAC_READ_SEARCH", "CHOWN", "FOWNER"],
            security_opt=["no-new-privileges"],
        )
        try:
            container.start()
            status = container.wait(timeout=self.timeout).get("StatusCode", 1)
            stdout = container.logs(stdout=True, stderr=False)
            if status != 0:
                stderr = container.logs(stdout=False, stderr=True).decode(errors="replace")
                raise FreezeError(f"{SITE_MODULE} freeze exited with {status}: {stderr[-500:]}")
            return parse_manifest(stdout, request_id)
        except FreezeError:
            raise
        except Exception as e:  # the engine's errors: no such image, volume, timeout
            raise FreezeError(f"the freezing container at {site} failed: {e}") from None
        finally:
            container.remove(force=True)

    def open_file(self, request_id, site, name) -> IO[bytes]:
        """The bytes as the site froze them; the hash is checked by the caller against the
        manifest the service holds (get_archive reads the volume, not the site's module)."""
        import tarfile

        client = self.client(site)
        container = client.containers.create(
            self._image(site),
            ["true"],
            network_mode="none",
            volumes={self.export_volume(site): {"bind": EXPORT_MOUNT, "mode": "ro"}},
            labels={"visiting.export": request_id, "visiting.site": site},
        )
        out = tempfile.TemporaryFile()
        try:
            path = f"{EXPORT_MOUNT}/{request_id}/files/{name}"
            chunks, _ = container.get_archive(path)
            with tempfile.TemporaryFile() as tar_bytes:
                for chunk in chunks:
                    tar_bytes.write(chunk)
                tar_bytes.seek(0)
                with tarfile.open(fileobj=tar_bytes) as tar:
                    member = next(m for m in tar.getmembers() if m.isfile())
                    src = tar.extractfile(member)
                    while block := src.read(1024 * 1024):
                        out.write(block)
        except Exception as e:
            out.close()
            raise FreezeError(f"the frozen file {name} of {request_id} at {site}: {e}") from None
        finally:
            container.remove(force=True)
        out.seek(0)
        return out


def make_freezer(platform, sites: bool, timeout: float = 600.0) -> Freezer:
    """The freezer of a hub: in a container of the site's image when the sites run in
    containers (`sites`), else over the state folder's homes. The export service freezes
    with it, the admin service's review page reads frozen files back with it."""
    if sites:
        return DockerFreezer(platform, timeout=timeout)
    return LocalFreezer(platform.state_dir, platform.data_root, timeout=timeout)
