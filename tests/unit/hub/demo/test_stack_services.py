"""Hub-managed services left behind by a hub that did not stop them are found and stopped."""

from __future__ import annotations

import os
import subprocess
import sys

from hub.demo.processes import services_of, stop_services_of


def _service(state_dir, name="audit", ignore_int=True):
    code = "import signal, time\n"
    if ignore_int:
        code += "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    code += "time.sleep(60)\n"
    env = dict(os.environ, VISITING_STATE_DIR=str(state_dir), JUPYTERHUB_SERVICE_NAME=name)
    return subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True)


def test_orphaned_services_of_this_state_folder_are_stopped(tmp_path):
    mine = _service(tmp_path / "a")
    other = _service(tmp_path / "b")
    plain = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env=dict(os.environ, VISITING_STATE_DIR=str(tmp_path / "a")),
    )
    try:
        found = services_of(tmp_path / "a")
        assert mine.pid in found
        assert other.pid not in found and plain.pid not in found  # another stack; not a service
        stop_services_of(tmp_path / "a", timeout=5)
        assert mine.wait(5) is not None
        assert other.poll() is None and plain.poll() is None
    finally:
        for p in (mine, other, plain):
            p.kill()
            p.wait()
