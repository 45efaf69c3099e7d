"""Execute a notebook of a running single-user server the way a person does in JupyterLab.

    run = run_notebook(server_url, token, "tutorials/01-getting-started.ipynb", "tanaka")
    run.result            # the dict the notebook's last cell printed after "OK"
    run.kernel.execute(…) # more code in the same kernel, to read what the notebook computed
    run.close()

The notebook is read from the server through the contents API (the copy the
server holds, as JupyterLab opens it), a kernel is started for it with POST
api/sessions (so it runs in the notebook's folder), and each code cell is sent
as an execute_request over the kernel's websocket, through the hub's proxy
with the person's own token. Outputs are put back into the notebook (nbformat
v4); a cell that raises stops the run with the cell, its source and its
traceback. The executed notebook is written to tests/artifacts/notebooks/
either way, to look at.
"""

from __future__ import annotations

import ast
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urljoin

import nbformat
from nbformat.v4 import new_output

from .kernel_client import Execution, Kernel

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "notebooks"
GUARD_NOTICE = "[data guard]"


class NotebookFailed(AssertionError):
    """A cell of the notebook raised (or timed out); the message shows which and why."""


@dataclass
class NotebookRun:
    path: str
    notebook: nbformat.NotebookNode
    kernel: Kernel
    seconds: float
    cell_seconds: list[float] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""

    @property
    def result(self) -> dict:
        """What the last cell printed after "OK " (a Python dict literal)."""
        for line in reversed(self.stdout.splitlines()):
            if line.startswith("OK "):
                return ast.literal_eval(line[3:])
        raise AssertionError(f"{self.path}: no 'OK' line; stdout ends:\n{self.stdout[-2000:]}")

    def close(self) -> None:
        self.kernel.shutdown()


def _outputs(run: Execution, count: int) -> list:
    out = []
    for o in run.outputs:
        kind, c = o["type"], o["content"]
        if kind == "stream":
            out.append(new_output("stream", name=c.get("name", "stdout"), text=c.get("text", "")))
        elif kind == "execute_result":
            out.append(
                new_output(
                    "execute_result",
                    data=c.get("data", {}),
                    metadata=c.get("metadata", {}),
                    execution_count=count,
                )
            )
        elif kind == "display_data":
            out.append(
                new_output("display_data", data=c.get("data", {}), metadata=c.get("metadata", {}))
            )
        elif kind == "error":
            out.append(
                new_output(
                    "error",
                    ename=c.get("ename", ""),
                    evalue=c.get("evalue", ""),
                    traceback=c.get("traceback", []),
                )
            )
    return out


def read_notebook(server_url: str, kernel: Kernel, path: str) -> nbformat.NotebookNode:
    r = kernel.http.get(
        urljoin(server_url, f"api/contents/{quote(path)}"),
        params={"content": "1", "type": "notebook"},
        timeout=60,
    )
    if r.status_code != 200:
        raise AssertionError(f"GET api/contents/{path}: {r.status_code} {r.text[:500]}")
    return nbformat.from_dict(r.json()["content"])


def run_notebook(
    server_url: str, token: str, path: str, username: str, cell_timeout: float = 900
) -> NotebookRun:
    """Execute every code cell of the server's notebook at `path`; see the module doc."""
    server_url = server_url if server_url.endswith("/") else server_url + "/"
    kernel = Kernel(server_url, token, username=username, timeout=180, notebook_path=path)
    notebook = read_notebook(server_url, kernel, path)
    kernel.start()
    start = time.monotonic()
    run = NotebookRun(path, notebook, kernel, 0.0)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    target = ARTIFACTS / Path(path).name
    count = 0
    try:
        for i, cell in enumerate(notebook.cells):
            if cell.cell_type != "code":
                continue
            count += 1
            t0 = time.monotonic()
            try:
                ex = kernel.execute(cell.source, timeout=cell_timeout)
            except AssertionError as e:  # no answer in time
                raise NotebookFailed(f"{path}, cell {i}: {e}\n--- source:\n{cell.source}") from None
            run.cell_seconds.append(time.monotonic() - t0)
            cell.outputs = _outputs(ex, count)
            cell.execution_count = count
            run.stdout += ex.stdout
            run.stderr += ex.stderr
            if ex.status != "ok" or ex.error:
                tb = "\n".join((ex.error or {}).get("traceback", []))
                raise NotebookFailed(
                    f"{path}, cell {i} failed ({ex.status}): "
                    f"{(ex.error or {}).get('ename')}: {(ex.error or {}).get('evalue')}\n"
                    f"--- source:\n{cell.source}\n--- traceback:\n{tb}\n"
                    f"--- stderr:\n{ex.stderr[-3000:]}"
                )
    except BaseException:
        kernel.shutdown()
        raise
    finally:
        run.seconds = time.monotonic() - start
        nbformat.write(notebook, target)
    return run
