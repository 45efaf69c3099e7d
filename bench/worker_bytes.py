"""Dask worker preload for bench/federation.py: the bytes of results that leave the worker.

    dask worker ... --preload bench/worker_bytes.py   (BENCH_WORKER_BYTES=<file>)

Results leave a Dask worker only through its `get_data` handler: a client
gathering them (directly, or through the scheduler, which asks the worker the
same way) or another worker. This wraps that handler and counts what its
comm writes: distributed's TCP comm returns the bytes of the frames it
wrote (serialized and compressed, headers included), the body of what went
over the socket. After each answer it writes, atomically, to the file named
by BENCH_WORKER_BYTES:

    {"pid": <the worker process>, "get_data_bytes": ..., "get_data_calls": ...,
     "get_data_keys": ..., "result_nbytes": <distributed's sizes of those results>}

Scheduler traffic (task states, heartbeats) is not results and not counted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

ENV = "BENCH_WORKER_BYTES"


def dask_setup(worker) -> None:
    path = os.environ.get(ENV)
    if not path:
        return
    counts = {"pid": os.getpid(), "get_data_bytes": 0, "get_data_calls": 0}
    counts.update(get_data_keys=0, result_nbytes=0)
    original = worker.handlers["get_data"]

    def save() -> None:
        tmp = Path(f"{path}.tmp")
        tmp.write_text(json.dumps(counts))
        tmp.replace(path)

    async def get_data(comm, keys, who=None, serializers=None):
        write = comm.write

        async def counted(msg, *args, **kwargs):
            n = await write(msg, *args, **kwargs)
            if isinstance(msg, dict) and "data" in msg:
                counts["get_data_bytes"] += int(n or 0)
            return n

        comm.write = counted
        try:
            return await original(comm, keys=keys, who=who, serializers=serializers)
        finally:
            del comm.write  # the instance attribute; the comm's own method again
            counts["get_data_calls"] += 1
            counts["get_data_keys"] += len(keys)
            counts["result_nbytes"] += sum(
                worker.state.tasks[k].nbytes or 0 for k in keys if k in worker.state.tasks
            )
            save()

    worker.handlers["get_data"] = get_data
    save()
