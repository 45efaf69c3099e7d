"""Who opens files under /data: a file-system watch (inotify) over the data folders.

A Python audit hook would see only the kernel's own `open` calls; the watch
sees every process in the container (kernels, terminals, Hail's JVM,
bcftools), which is what the activity log needs. Opens are counted per file
and reported once per window as one event with the count.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import struct
from collections import Counter
from collections.abc import Callable

log = logging.getLogger("visiting.guard.datawatch")

IN_OPEN = 0x00000020
IN_ISDIR = 0x40000000
IN_Q_OVERFLOW = 0x00004000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
_EVENT = struct.Struct("iIII")


class DataWatch:
    """Counts opens of files under `root`; `drain()` hands back and resets the counts."""

    def __init__(self, root: str, max_watches: int = 20000):
        self.root = os.path.realpath(root)
        self.counts: Counter[str] = Counter()
        self._dirs: dict[int, str] = {}
        self.fd = -1
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._libc = libc
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.fd = fd
        for dirpath, dirnames, _files in os.walk(self.root):
            if len(self._dirs) >= max_watches:
                log.warning("watching only the first %d folders under %s", max_watches, root)
                break
            wd = libc.inotify_add_watch(fd, dirpath.encode(), IN_OPEN)
            if wd >= 0:
                self._dirs[wd] = dirpath
            dirnames.sort()

    @property
    def watching(self) -> int:
        return len(self._dirs)

    def read_events(self) -> None:
        """Read what the kernel queued (non-blocking) into the counts."""
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno == errno.EBADF:
                    return  # closed already: the server is stopping
                raise
            if not buf:
                return
            i = 0
            while i + _EVENT.size <= len(buf):
                wd, mask, _cookie, length = _EVENT.unpack_from(buf, i)
                name = (
                    buf[i + _EVENT.size : i + _EVENT.size + length]
                    .rstrip(b"\0")
                    .decode(errors="replace")
                )
                i += _EVENT.size + length
                if mask & IN_Q_OVERFLOW:
                    self.counts["(events lost: the watch queue overflowed)"] += 1
                    continue
                if mask & IN_ISDIR or not name:
                    continue
                base = self._dirs.get(wd)
                if base is not None:
                    self.counts[os.path.join(base, name)] += 1

    def drain(self) -> dict[str, int]:
        self.read_events()
        out = dict(self.counts)
        self.counts.clear()
        return out

    def add_reader(self, loop, callback: Callable[[], None] | None = None) -> None:
        def ready():
            self.read_events()
            if callback:
                callback()

        loop.add_reader(self.fd, ready)

    def close(self, loop=None) -> None:
        if self.fd >= 0:
            if loop is not None:
                loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1
