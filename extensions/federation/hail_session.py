"""One Hail session per process, configured the same on the host and in the images.

Hail runs Spark in local mode next to the data: on the host (`visiting synth`,
`visiting site ingest`, the tests), in a researcher's container and on a
site's Dask workers. Every caller goes through `ensure_hail`, so a process
never starts two JVMs and never gets a configuration that depends on which
module happened to import Hail first.

The session is sized for the demo, where five sites each run one next to
their Dask cluster and the whole demo must fit in 16 GiB: a modest driver
heap (`VISITING_HAIL_MEMORY`, default 1g; in local mode the driver is the
only executor), at most four cores, no Spark UI, everything bound to the
loopback interface (the images set SPARK_LOCAL_IP=127.0.0.1, as with
`--network none` the container's own hostname does not resolve).
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import socket
import tempfile
import threading
import warnings
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_REFERENCE = "GRCh38"
DEFAULT_DRIVER_MEMORY = "1g"
MAX_DEFAULT_CORES = 4

# Spark's start-up chatter (hostname, native Hadoop, spark.local.dir), before
# Hail takes over the logging: errors only, to standard error. The repl logger
# (PySpark's gateway) at the root's level keeps Spark from announcing a "default
# log level".
LOG4J_CONFIG = """\
rootLogger.level = error
logger.repl.name = org.apache.spark.api.python.PythonGatewayServer
logger.repl.level = error
rootLogger.appenderRef.stderr.ref = stderr
appender.stderr.type = Console
appender.stderr.name = stderr
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = %d{yyyy-MM-dd HH:mm:ss} %p %c{1}: %m%n
"""

_lock = threading.Lock()
_session: dict = {}


def ensure_hail(
    tmp_dir: str | os.PathLike | None = None,
    cores: int | None = None,
    log: str | os.PathLike | None = None,
):
    """Start Hail once in this process (later calls return at once); return the `hail` module.

    tmp_dir: folder for Hail's and Spark's temporary files; default a new
    folder under the system's temp dir, removed when the process exits.
    cores: Spark's local[cores]; default the CPUs this process may use, at
    most 4. log: Hail's log file; default `hail.log` in tmp_dir.
    Arguments of a later call are ignored: the first call configures the
    session (`session_info()` says how).
    The default reference genome is GRCh38, the sites' build.
    """
    import hail as hl

    with _lock:
        if _running(hl):
            return hl
        if tmp_dir is None:
            root = Path(tempfile.mkdtemp(prefix="visiting-hail-"))
            atexit.register(shutil.rmtree, root, ignore_errors=True)
        else:
            root = Path(tmp_dir).resolve()
        (root / "spark").mkdir(parents=True, exist_ok=True)
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        log_file = Path(log).resolve() if log else root / "hail.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        n = int(cores) if cores else min(_cpus(), MAX_DEFAULT_CORES)
        if n < 1:
            raise ValueError(f"cores: {cores} must be positive")
        memory = os.environ.get("VISITING_HAIL_MEMORY") or DEFAULT_DRIVER_MEMORY
        with warnings.catch_warnings():
            # The images carry OpenJDK 17, on which Hail 0.2.139 works (the
            # integration tests show it); its "built with Java 11" notice would
            # open every notebook's output.
            warnings.filterwarnings("ignore", message="Hail was built and tested with Java 11")
            hl.init(
                master=f"local[{n}]",
                app_name="visiting",
                quiet=True,
                log=str(log_file),
                tmp_dir=f"file://{root / 'tmp'}",
                local_tmpdir=f"file://{root / 'spark'}",
                idempotent=True,
                spark_conf=_spark_conf(memory, n, root),
            )
        hl.default_reference(DEFAULT_REFERENCE)
        _session.update(tmp_dir=str(root), log=str(log_file), cores=n, driver_memory=memory)
        _log_started()
    return hl


def session_info() -> dict:
    """How this process's session was started (empty before `ensure_hail`)."""
    return dict(_session)


def _running(hl) -> bool:
    # Hail has no public "is it running"; Env is what hl.init itself checks.
    # A session someone else started (hl.init directly) counts too.
    from hail.utils.java import Env

    return Env.is_fully_initialized()


def _spark_conf(memory: str, cores: int, root: Path) -> dict[str, str]:
    host = os.environ.get("SPARK_LOCAL_IP", "127.0.0.1")
    log4j = root / "log4j2.properties"
    log4j.write_text(LOG4J_CONFIG)
    # read before Hail points the JVM's logging at its log file
    java_options = [f"-Dlog4j2.configurationFile=file:{log4j}"]
    hosts = _hosts_file(root)
    if hosts:
        java_options.append(f"-Djdk.net.hosts.file={hosts}")
    return {
        "spark.driver.memory": memory,
        "spark.driver.extraJavaOptions": " ".join(java_options),
        "spark.driver.host": host,
        "spark.driver.bindAddress": host,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        # few cores and small partitions: Spark's default of 200 shuffle
        # partitions is mostly scheduling overhead here
        "spark.sql.shuffle.partitions": str(max(4, 2 * cores)),
        "spark.default.parallelism": str(max(2, cores)),
    }


def _hosts_file(root: Path) -> Path | None:
    """A hosts file naming this machine, for a JVM where its own name does not resolve.

    In a container with `--network none` or on an `--internal` network the
    hostname is unknown, and log4j asks for it at every reconfiguration
    (printing a stack trace each time). The JVM then resolves from this file
    only, which is all a local-mode session on local files needs.
    """
    name = socket.gethostname()
    try:
        socket.gethostbyname(name)
        return None
    except OSError:
        path = root / "hosts"
        path.write_text(f"127.0.0.1 localhost {name}\n::1 localhost\n")
        return path


def _log_started() -> None:
    logger.info(
        "Hail started: local[%s], driver memory %s, tmp %s, log %s",
        _session["cores"],
        _session["driver_memory"],
        _session["tmp_dir"],
        _session["log"],
    )


def _cpus() -> int:
    """CPUs this process may use: the affinity mask, capped by a container's CPU quota
    (docker --cpus; cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        n = min(n, max(1, int(quota)))
    return max(1, n)


def _cgroup_quota() -> float | None:
    cg = Path("/sys/fs/cgroup")
    try:
        quota, period = (cg / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((cg / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((cg / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None
