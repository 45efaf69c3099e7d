"""The egress suites' harness: a researcher's server at a site, seen from outside the site.

Everything here stands where the researcher's browser stands: the hub's proxy,
the person's own token, the server's REST routes, the kernel websocket (both
protocols, see kernel_client.py) and the terminal websocket. What arrives is
judged by a leak checker that knows the cohort from the stack's data, read on
the host; it never asks the gate (or its recogniser) what the data looks like.

- `platform_copy` (from conftest), `set_clock`, `forget_gate_state`: a private copy of
  the demo platform, the clock of the site stack (conftest's `site_stack`), the gate's
  state of a person at a site.
- `Server`: one person's server at one site: start/stop, downloads, kernels,
  terminals, a shell in its container (for set-up and for facts only root sees).
- `Terminal`: JupyterLab's terminal client (terminado's JSON messages).
- `Cohort`, `decode`, `inspect`, `Findings`: the leak checker.
- `AuditWatch`: waiting for events in the hub's audit store.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bz2
import html
import io
import json
import lzma
import re
import sqlite3
import tarfile
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from urllib.parse import urljoin, urlsplit, urlunsplit

import numpy as np
import requests
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from hub.demo.stack import Stack
from hub.store.audit import AuditStore

from .conftest import platform_copy, token_of, write_clock  # noqa: F401 (platform_copy: for the suites)
from .kernel_client import Kernel
from .test_sites import Researcher, container_of, sh

#: what every notice of the gate says, in both languages (the contract of issue 15)
NOTICE_EN = "Withheld by the egress gate"
NOTICE_JA = "持ち出し制御"
#: the old in-server guard's notice, for the record of what blocked what
OLD_GUARD_NOTICE = "[data guard]"
#: the most people one output may show (`rules.egress.max_people_per_output`, default 10)
MAX_PEOPLE = 10

CJK = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


# ---------------------------------------------------------------------------
# stacks


def set_clock(stack: Stack, instant: str) -> None:
    """Move the hub's (and the containers') clock; '' is the real time. Written in place: the
    file is bind-mounted into the containers, and a new file would not reach them."""
    write_clock(stack.config.clock_file, instant)


def forget_gate_state(stack: Stack, user: str, site: str) -> None:
    """Remove the person's gate volume at the site (the meter's day and the event spool
    outlive a server, and so a test run): each module starts from an empty meter and leaves
    no cap behind."""
    import docker

    from hub.sites.plan import resolve_endpoint

    endpoint = resolve_endpoint(stack.bundle.platform.sites[site].docker_endpoint)
    client = docker.APIClient(base_url=endpoint, version="auto")
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                client.remove_volume(f"visiting-gate-{site}-{user}", force=True)
                return
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as e:
                # in use: a container just stopped is removed a moment after the hub says so
                if e.status_code != 409 or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        client.close()


def engine_client():
    import docker

    from hub.sites.plan import resolve_endpoint

    return docker.DockerClient(base_url=resolve_endpoint("local"))


class Server:
    """`user`'s server at `site`, reached through the hub's proxy with the person's own token."""

    def __init__(self, stack: Stack, user: str, site: str, engine):
        self.stack = stack
        self.user = user
        self.site = site
        self.engine = engine
        self.url = f"{stack.config.hub_url}/user/{user}/{site}/"
        self.researcher = Researcher(stack, user)
        self.token = token_of(stack, user)
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"token {self.token}"

    # -- life

    def start(self, options: dict | None = None, timeout: float = 240) -> Server:
        r = self.researcher.start(self.site, options)
        assert r.status_code in (201, 202), r.text
        self.researcher.wait_ready(self.site, timeout)
        return self

    def running(self) -> bool:
        r = self.researcher.session.get(
            f"{self.stack.config.hub_url}/hub/api/users/{self.user}",
            headers=self.researcher._headers(),
            timeout=30,
        )
        return self.site in r.json().get("servers", {})

    def stop(self) -> None:
        if self.running():
            self.researcher.stop(self.site)

    def container(self):
        return container_of(self.engine, self.user, self.site)

    def sh(self, script: str, user: str = "1000") -> tuple[int, str]:
        """A shell in the container: set-up as the researcher (uid 1000), facts as root."""
        c = self.container()
        assert c is not None, f"{self.user} has no container at {self.site}"
        return sh(c, script, user=user)

    # -- channels

    def get(self, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 120)
        return self.http.get(urljoin(self.url, path), **kwargs)

    def kernel(self, protocol: str = "json", **kwargs) -> Kernel:
        return Kernel(self.url, self.token, username=self.user, protocol=protocol, **kwargs)

    def terminal(self) -> Terminal:
        return Terminal(self.url, self.token)


# ---------------------------------------------------------------------------
# terminals

ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Z0-9]")


class TerminalRefused(AssertionError):
    """The server (or the gate) did not let a terminal be made or opened."""


class Terminal:
    """A terminal of a server, driven as JupyterLab's terminal drives it.

    POST api/terminals makes it; terminals/websocket/<name> carries terminado's
    JSON messages: ["stdin", text] in, ["stdout", text] out. Every frame that
    arrives is kept in `frames`.
    """

    def __init__(self, server_url: str, token: str, timeout: float = 60):
        self.server_url = server_url if server_url.endswith("/") else server_url + "/"
        self.token = token
        self.timeout = timeout
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"token {token}"
        self.name: str | None = None
        self.frames: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._ws = None
        self._inbox: asyncio.Queue | None = None
        self._sentinels = 0

    def __enter__(self) -> Terminal:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def create(self) -> requests.Response:
        return self.http.post(urljoin(self.server_url, "api/terminals"), timeout=self.timeout)

    def start(self) -> Terminal:
        r = self.create()
        if r.status_code != 200:
            raise TerminalRefused(f"POST api/terminals: {r.status_code} {r.text[:300]}")
        self.name = r.json()["name"]
        self._loop.run_until_complete(self.connect(self.name))
        return self

    def ws_url(self, name: str) -> str:
        parts = urlsplit(urljoin(self.server_url, f"terminals/websocket/{name}"))
        return urlunsplit(({"http": "ws", "https": "wss"}[parts.scheme], *parts[1:]))

    async def connect(self, name: str) -> None:
        self._inbox = asyncio.Queue()
        self._ws = await websocket_connect(
            HTTPRequest(
                self.ws_url(name),
                headers={"Authorization": f"token {self.token}"},
                connect_timeout=self.timeout,
                request_timeout=self.timeout,
            ),
            on_message_callback=self._inbox.put_nowait,
            max_message_size=256 * 1024 * 1024,
        )
        self._ws.write_message(json.dumps(["set_size", 50, 200, 800, 1600]))

    def try_open(self, name: str, wait: float = 5.0) -> list[str]:
        """Open the websocket of terminal `name` (which may not exist) and type into it; what
        arrives within `wait` seconds. Raises TerminalRefused when the socket is refused."""

        async def go():
            try:
                await self.connect(name)
            except Exception as e:  # refused at the handshake: 403, 404, closed
                raise TerminalRefused(f"websocket refused: {e!r}") from None
            self._ws.write_message(json.dumps(["stdin", "cat /etc/hostname\r"]))
            got = []
            deadline = time.monotonic() + wait
            while (left := deadline - time.monotonic()) > 0:
                try:
                    raw = await asyncio.wait_for(self._inbox.get(), left)
                except TimeoutError:
                    break
                if raw is None:
                    break
                got.append(raw)
            return got

        return self._loop.run_until_complete(go())

    def run(self, command: str, timeout: float = 120, quiet: float = 8.0) -> str:
        """Type `command`; what the terminal printed (ANSI codes and carriage returns removed)
        until it printed a sentinel after the command, or printed nothing for `quiet` s."""
        self._sentinels += 1
        n = 1000 + self._sentinels
        marker = f"__egress_done_{2 * n}__"
        command = command.rstrip()
        then = " " if command.endswith("&") else "; "  # `a &; b` is not shell
        line = f"{command}{then}sleep 1; echo __egress_done_$(( {n} * 2 ))__\r"
        return self._loop.run_until_complete(self._run(line, marker, timeout, quiet))

    async def _run(self, line: str, marker: str, timeout: float, quiet: float) -> str:
        before = len(self.frames)
        self._ws.write_message(json.dumps(["stdin", line]))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                raw = await asyncio.wait_for(self._inbox.get(), min(left, quiet))
            except TimeoutError:
                break  # nothing more comes: the gate may have withheld the sentinel too
            if raw is None:
                break
            self.frames.append(raw if isinstance(raw, str) else raw.decode(errors="replace"))
            if marker in self.text(self.frames[before:]):
                break
        return self.text(self.frames[before:])

    @staticmethod
    def text(frames: list[str]) -> str:
        out = []
        for raw in frames:
            try:
                msg = json.loads(raw)
            except ValueError:
                out.append(raw)
                continue
            if isinstance(msg, list) and msg and msg[0] == "stdout":
                out.append("".join(str(x) for x in msg[1:]))
            else:
                out.append(json.dumps(msg, ensure_ascii=False))
        return ANSI.sub("", "".join(out)).replace("\r", "")

    def close(self) -> None:
        try:
            if self._ws is not None:
                self._ws.close()
                self._ws = None
            if self.name is not None:
                self.http.delete(urljoin(self.server_url, f"api/terminals/{self.name}"), timeout=30)
                self.name = None
        finally:
            self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()


# ---------------------------------------------------------------------------
# the cohort, as the test knows it from the data on the host

#: genotype windows: WINDOW consecutive calls of one variant (or of one person) with at least
#: MIN_CARRIERS calls that are not 0/0. Short, sparse windows recur by chance (a printed 0/1
#: mask matches many), so a record counts as shown only when two windows of the same row or
#: column match at the same alignment at least WINDOW calls apart: 2 x WINDOW calls in order.
WINDOW = 32
MIN_CARRIERS = 6
_WEIGHTS = (np.uint64(4) ** np.arange(WINDOW - 1, -1, -1, dtype=np.uint64)).astype(np.uint64)
GT_CODES = {
    "0/0": 0,
    "0|0": 0,
    "0/1": 1,
    "1/0": 1,
    "0|1": 1,
    "1|0": 1,
    "1/1": 2,
    "1|1": 2,
    "./.": 3,
    ".|.": 3,
    ".": 3,
    "0": 0,
    "1": 1,
    "2": 2,
    "0.": 0,
    "1.": 1,
    "2.": 2,
    "-1": 3,
    "nan": 3,
    "NaN": 3,
    "NA": 3,
    "<NA>": 3,
}
PHENO_RE = re.compile(r"-?\d+\.\d{6}(?!\d)")
ESCAPE_RE = re.compile(r"\\([tnr])")
ESCAPES = {"t": "\t", "n": "\n", "r": "\r"}
BASES_RE = re.compile(r"[ACGTN]{40,}")
TOKEN_RE = re.compile(r"[^\s,;\"'\[\](){}<>]+")
VCF_LINE_RE = re.compile(r"^(chr[0-9XYM]+|[0-9]{1,2})\t(\d+)\t", re.M)


def _window_keys(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each window of WINDOW codes (0..3) as one 64-bit number, and whether it is informative."""
    if codes.size < WINDOW:
        return np.empty(0, np.uint64), np.empty(0, bool)
    v = np.lib.stride_tricks.sliding_window_view(codes.astype(np.uint64), WINDOW)
    keys = v @ _WEIGHTS
    informative = ((v == 1) | (v == 2)).sum(axis=1) >= MIN_CARRIERS
    return keys, informative


@dataclass
class Cohort:
    """The people of the datasets a server can read, from their files on the host."""

    ids: frozenset[str]
    tails: dict[str, frozenset[str]]  # a clinical row without its id -> whose row it is
    pheno: dict[str, str]  # a quant_trait value as written -> whose it is
    variants: dict[tuple[str, int], int]  # (contig, position) -> row of `genotypes`
    sample_order: list[str]
    genotypes: np.ndarray  # variants x people, codes 0, 1, 2, 3 (missing)
    window_keys: np.ndarray  # sorted
    window_owner: np.ndarray  # >= 0: a variant row; < 0: -(person + 1)
    window_offset: np.ndarray  # where in its row or column the window starts
    read_names: frozenset[str]
    read_starts: frozenset[str]  # the first 40 bases of each read

    @cached_property
    def id_re(self) -> re.Pattern:
        """Sample ids as the cohort writes them (NIG-000001), wherever they stand: after an
        escape (`\\tNIG-...`), a letter or a byte of a binary format."""
        prefixes = sorted({i.rsplit("-", 1)[0] for i in self.ids}) or ["NONE"]
        return re.compile("(?:" + "|".join(map(re.escape, prefixes)) + r")-\d{6}")

    @cached_property
    def read_re(self) -> re.Pattern:
        prefixes = sorted({n.rsplit(":", 1)[0] for n in self.read_names}) or ["NONE"]
        return re.compile("(?:" + "|".join(map(re.escape, prefixes)) + r"):\d+")

    @classmethod
    def of(cls, folders: Iterable[Path]) -> Cohort:
        import gzip

        ids: set[str] = set()
        tails: dict[str, set[str]] = {}
        pheno: dict[str, str] = {}
        variants: dict[tuple[str, int], int] = {}
        order: list[str] = []
        rows: list[np.ndarray] = []
        names: set[str] = set()
        starts: set[str] = set()
        for folder in folders:
            clinical = folder / "clinical.tsv"
            if clinical.exists():
                lines = clinical.read_text().splitlines()
                for line in lines[1:]:
                    f = line.split("\t")
                    ids.add(f[0])
                    tails.setdefault(normalise(" ".join(f[1:])), set()).add(f[0])
            phen = folder / "phenotypes.tsv"
            if phen.exists():
                for line in phen.read_text().splitlines()[1:]:
                    f = line.split("\t")
                    if f[1] not in ("", "NA", "nan"):
                        pheno[f[1]] = f[0]
            vcf = folder / "genotypes.vcf.gz"
            if vcf.exists():
                with gzip.open(vcf, "rt") as fh:
                    for line in fh:
                        if line.startswith("##"):
                            continue
                        f = line.rstrip("\n").split("\t")
                        if line.startswith("#CHROM"):
                            order += f[9:]
                            continue
                        variants[(f[0], int(f[1]))] = len(rows)
                        rows.append(np.array([GT_CODES.get(g, 3) for g in f[9:]], np.uint8))
            for fq in sorted(folder.glob("*.fastq.gz")):
                with gzip.open(fq, "rt") as fh:
                    for i, line in enumerate(fh):
                        if i % 4 == 0:
                            names.add(line[1:].split()[0].split("/")[0])
                        elif i % 4 == 1:
                            starts.add(line.strip()[:40])
        g = np.vstack(rows) if rows else np.zeros((0, 0), np.uint8)
        keys, owners, offsets = [], [], []
        lines = [(v, g[v]) for v in range(g.shape[0])]
        lines += [(-(p + 1), g[:, p]) for p in range(g.shape[1])]
        for owner, line in lines:
            k, ok = _window_keys(line)
            keys.append(k[ok])
            owners.append(np.full(int(ok.sum()), owner, np.int32))
            offsets.append(np.nonzero(ok)[0].astype(np.int32))
        keys_a = np.concatenate(keys) if keys else np.empty(0, np.uint64)
        owners_a = np.concatenate(owners) if owners else np.empty(0, np.int32)
        offsets_a = np.concatenate(offsets) if offsets else np.empty(0, np.int32)
        sort = np.argsort(keys_a, kind="stable")
        return cls(
            ids=frozenset(ids),
            tails={t: frozenset(p) for t, p in tails.items()},
            pheno=pheno,
            variants=variants,
            sample_order=order,
            genotypes=g,
            window_keys=keys_a[sort],
            window_owner=owners_a[sort],
            window_offset=offsets_a[sort],
            read_names=frozenset(names),
            read_starts=frozenset(starts),
        )

    @classmethod
    def of_server(cls, stack: Stack, site: str, datasets: Iterable[str]) -> Cohort:
        root = stack.bundle.platform.site_data_dir(site)
        return cls.of(root / d for d in datasets)


# ---------------------------------------------------------------------------
# what arrived: findings


@dataclass
class Findings:
    """What of the cohort a client received."""

    ids: set[str] = field(default_factory=set)  # sample ids named
    tails: set[str] = field(default_factory=set)  # clinical rows shown without their id
    pheno_of: set[str] = field(default_factory=set)  # people whose phenotype value was shown
    variants: set[int] = field(default_factory=set)  # variants whose genotype row was shown
    genotyped: set[int] = field(default_factory=set)  # people whose genotype column was shown
    reads: set[str] = field(default_factory=set)  # sequencing reads shown

    def add(self, other: Findings) -> Findings:
        for name in ("ids", "tails", "pheno_of", "variants", "genotyped", "reads"):
            getattr(self, name).update(getattr(other, name))
        return self

    @property
    def people(self) -> int:
        """Distinct people the client could tell apart (a lower bound)."""
        return max(len(self.ids | self.pheno_of), len(self.tails), len(self.genotyped))

    @property
    def records(self) -> int:
        """Raw genomic records: genotype rows of variants or of people, sequencing reads."""
        return len(self.variants) + len(self.genotyped) + len(self.reads)

    def leaked(self, max_people: int = MAX_PEOPLE) -> bool:
        return self.records > 0 or self.people > max_people

    def summary(self) -> str:
        return (
            f"{self.people} people ({len(self.ids)} ids, {len(self.tails)} clinical rows without "
            f"id, {len(self.pheno_of)} phenotype values), {self.records} raw records "
            f"({len(self.variants)} variant rows, {len(self.genotyped)} people's genotype "
            f"columns, {len(self.reads)} reads); e.g. ids {sorted(self.ids)[:3]}"
        )


TAG_RE = re.compile(r"<[^>]{0,400}>")


def normalise(text: str) -> str:
    """Text as a reader sees it: tags and entities gone, every separator one space."""
    text = ANSI.sub("", text)
    if "<" in text:
        text = TAG_RE.sub(" ", text)
    if "&" in text:
        text = html.unescape(text)
    return re.sub(r"[\s,;|\"'\\]+", " ", text).strip()


def _genotype_runs(text: str) -> Iterable[np.ndarray]:
    run: list[int] = []
    for tok in TOKEN_RE.findall(text):
        if tok == "|":
            continue
        code = GT_CODES.get(tok)
        if code is None:
            try:
                x = float(tok)
            except ValueError:
                x = None
            if x is not None:
                code = 3 if x != x or x == -1 else (int(x) if x in (0.0, 1.0, 2.0) else None)
        if code is None:
            if len(run) >= WINDOW:
                yield np.array(run, np.uint8)
            run = []
        else:
            run.append(code)
    if len(run) >= WINDOW:
        yield np.array(run, np.uint8)


def _matching_lines(run: np.ndarray, cohort: Cohort) -> set[int]:
    """Owners (variant rows, -(person + 1) columns) of which `run` shows 2 x WINDOW calls in
    order: two informative windows on one alignment, WINDOW or more apart."""
    keys, ok = _window_keys(run)
    pos = np.nonzero(ok)[0]
    keys = keys[ok]
    if not keys.size:
        return set()
    lo = np.searchsorted(cohort.window_keys, keys, "left")
    hi = np.searchsorted(cohort.window_keys, keys, "right")
    n = hi - lo
    if not n.any():
        return set()
    first = np.repeat(lo, n)
    within = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    entries = first + within
    at = np.repeat(pos, n)
    owner = cohort.window_owner[entries].astype(np.int64)
    diagonal = cohort.window_offset[entries].astype(np.int64) - at
    groups, inverse = np.unique(np.stack([owner, diagonal]), axis=1, return_inverse=True)
    inverse = inverse.ravel()
    lowest = np.full(groups.shape[1], np.iinfo(np.int64).max)
    highest = np.full(groups.shape[1], -1)
    np.minimum.at(lowest, inverse, at)
    np.maximum.at(highest, inverse, at)
    return set(groups[0, highest - lowest >= WINDOW].tolist())


def findings(blob: bytes | str, cohort: Cohort) -> Findings:
    """The cohort's people and records in one piece of text or bytes."""
    raw = blob if isinstance(blob, str) else blob.decode("utf-8", "replace")
    latin = raw if isinstance(blob, str) else blob.decode("latin-1")
    if "\\" in raw:  # a repr or JSON text: its escaped tabs and newlines are separators
        raw = ESCAPE_RE.sub(lambda m: ESCAPES[m.group(1)], raw)
    f = Findings()
    f.ids = {m for m in cohort.id_re.findall(latin) if m in cohort.ids}
    f.pheno_of = {cohort.pheno[m] for m in PHENO_RE.findall(raw) if m in cohort.pheno}
    f.reads = {m for m in cohort.read_re.findall(latin) if m in cohort.read_names}
    f.reads |= {m[:40] for m in BASES_RE.findall(latin) if m[:40] in cohort.read_starts}
    norm = normalise(raw)
    f.tails = {t for t in cohort.tails if t in norm}
    for m in VCF_LINE_RE.finditer(raw):
        v = cohort.variants.get((m.group(1), int(m.group(2))))
        end = raw.find("\n", m.end())
        if v is not None and raw[m.end() : end if end > 0 else None].count("\t") >= 8:
            f.variants.add(v)
    if cohort.window_keys.size:
        text = norm if "<" in raw or "&" in raw else raw
        for run in _genotype_runs(text):
            for owner in _matching_lines(run, cohort):
                if owner >= 0:
                    f.variants.add(owner)
                else:
                    f.genotyped.add(-owner - 1)
    return f


# ---------------------------------------------------------------------------
# decoding what arrived, with the encoding the attempt used


def _strings(value, out: list[str]) -> list[str]:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for v in value.values():
            _strings(v, out)
    elif isinstance(value, list):
        if value and all(isinstance(v, str) for v in value):
            out.append("".join(value))  # a notebook's multi-line string
        for v in value:
            _strings(v, out)
    return out


def _json(b: bytes) -> list[bytes]:
    return [s.encode() for s in _strings(json.loads(b.decode("utf-8")), [])]


def _html(b: bytes) -> list[bytes]:
    return [html.unescape(TAG_RE.sub(" ", b.decode("utf-8", "replace"))).encode()]


def _runs(pattern: str, b: bytes, minimum: int) -> list[bytes]:
    text = b.decode("latin-1")
    return [
        re.sub(r"\s+", "", m.group(0)).encode()
        for m in re.finditer(pattern, text)
        if len(m.group(0)) >= minimum
    ]


def _b64(b: bytes) -> list[bytes]:
    out = []
    for run in _runs(r"[A-Za-z0-9+/=\r\n]{24,}", b, 24):
        run = run.rstrip(b"=")
        run = run[: len(run) - len(run) % 4] if len(run) % 4 == 1 else run
        out.append(base64.b64decode(run + b"=" * (-len(run) % 4)))
    return out


def _b32(b: bytes) -> list[bytes]:
    out = []
    for run in _runs(r"[A-Z2-7=\r\n]{24,}", b, 24):
        run = run.rstrip(b"=")
        run = run[: len(run) - len(run) % 8]
        try:
            out.append(base64.b32decode(run))
        except binascii.Error:
            pass
    return out


def _hex(b: bytes) -> list[bytes]:
    out = []
    for run in _runs(r"(?:[0-9a-fA-F]{2}[ \t\r\n]*){16,}", b, 32):
        out.append(binascii.unhexlify(run[: len(run) - len(run) % 2]))
    return out


def _stream(make, b: bytes) -> list[bytes]:
    """Decompress as far as the bytes go (a cut stream still gives its start); all members."""
    out = []
    while b:
        d = make()
        try:
            out.append(d.decompress(b))
        except (zlib.error, OSError, EOFError, lzma.LZMAError):
            break
        if not getattr(d, "eof", False):
            break
        b = d.unused_data
    return [b"".join(out)] if out and any(out) else []


def _gzip(b: bytes) -> list[bytes]:
    return _stream(lambda: zlib.decompressobj(16 + zlib.MAX_WBITS), b)


def _zlib(b: bytes) -> list[bytes]:
    return _stream(zlib.decompressobj, b) or _stream(lambda: zlib.decompressobj(-15), b)


def _bz2(b: bytes) -> list[bytes]:
    return _stream(bz2.BZ2Decompressor, b)


def _xz(b: bytes) -> list[bytes]:
    return _stream(lzma.LZMADecompressor, b)


def _zip(b: bytes) -> list[bytes]:
    try:
        with zipfile.ZipFile(io.BytesIO(b)) as z:
            return [z.read(n) for n in z.namelist()]
    except (zipfile.BadZipFile, OSError, EOFError):
        pass
    out = []  # a cut archive: each local file's data, inflated as far as it goes
    for m in re.finditer(rb"PK\x03\x04", b):
        head = b[m.start() : m.start() + 30]
        if len(head) < 30:
            break
        method = int.from_bytes(head[8:10], "little")
        n, e = int.from_bytes(head[26:28], "little"), int.from_bytes(head[28:30], "little")
        data = b[m.start() + 30 + n + e :]
        out += _stream(lambda: zlib.decompressobj(-15), data) if method == 8 else [data]
    return out


def _tar(b: bytes) -> list[bytes]:
    out = []
    try:
        with tarfile.open(fileobj=io.BytesIO(b), mode="r:*") as t:
            for m in t:
                if m.isfile():
                    out.append(t.extractfile(m).read())
    except (tarfile.TarError, OSError, EOFError):
        pass
    return out


def _table_text(df) -> bytes:
    return df.to_csv(sep="\t", index=True).encode()


def _parquet(b: bytes) -> list[bytes]:
    import pyarrow.parquet as pq

    return [_table_text(pq.read_table(io.BytesIO(b)).to_pandas())]


def _feather(b: bytes) -> list[bytes]:
    import pyarrow.feather as feather

    return [_table_text(feather.read_table(io.BytesIO(b)).to_pandas())]


def _npy(b: bytes) -> list[bytes]:
    a = np.load(io.BytesIO(b), allow_pickle=False)
    if a.ndim == 2:
        return ["\n".join("\t".join(str(x) for x in row) for row in a.tolist()).encode()]
    return ["\t".join(str(x) for x in a.ravel().tolist()).encode()]


def _pickle(b: bytes) -> list[bytes]:
    import pickle

    import pandas as pd

    obj = pickle.loads(b)  # noqa: S301 - the test's own file, made by the test in its container
    return [_table_text(obj) if isinstance(obj, pd.DataFrame) else repr(obj).encode()]


def _sqlite(b: bytes) -> list[bytes]:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "db.sqlite"
        p.write_bytes(b)
        con = sqlite3.connect(p)
        try:
            out = []
            for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'"):
                rows = con.execute(f'SELECT * FROM "{name}"').fetchall()
                out.append("\n".join("\t".join(str(x) for x in r) for r in rows).encode())
            return out
        finally:
            con.close()


def _xlsx(b: bytes) -> list[bytes]:
    import xml.etree.ElementTree as ET

    ns = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
    with zipfile.ZipFile(io.BytesIO(b)) as z:
        shared = []
        if "xl/sharedStrings.xml" in z.namelist():
            root = ET.fromstring(z.read("xl/sharedStrings.xml"))
            shared = ["".join(t.text or "" for t in si.iter(ns + "t")) for si in root]
        out = []
        for name in z.namelist():
            if not name.startswith("xl/worksheets/"):
                continue
            lines = []
            for row in ET.fromstring(z.read(name)).iter(ns + "row"):
                cells = []
                for c in row.iter(ns + "c"):
                    v = c.find(ns + "v")
                    if c.get("t") == "s" and v is not None:
                        cells.append(shared[int(v.text)])
                    elif c.get("t") == "inlineStr":
                        cells.append("".join(t.text or "" for t in c.iter(ns + "t")))
                    else:
                        cells.append(v.text if v is not None else "")
                lines.append("\t".join(cells))
            out.append("\n".join(lines).encode())
        return out


DECODERS: dict[str, Callable[[bytes], list[bytes]]] = {
    "json": _json,
    "notebook": _json,
    "html": _html,
    "base64": _b64,
    "base32": _b32,
    "hex": _hex,
    "gzip": _gzip,
    "bgzf": _gzip,
    "zlib": _zlib,
    "bz2": _bz2,
    "xz": _xz,
    "zip": _zip,
    "tar": _tar,
    "parquet": _parquet,
    "feather": _feather,
    "npy": _npy,
    "pickle": _pickle,
    "sqlite": _sqlite,
    "xlsx": _xlsx,
}

#: what is unwrapped whatever the attempt said: containers recognised by their first bytes
MAGIC: list[tuple[bytes, str]] = [
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"PK\x03\x04", "zip"),
    (b"PAR1", "parquet"),
    (b"ARROW1", "feather"),
    (b"\x93NUMPY", "npy"),
    (b"SQLite format 3\x00", "sqlite"),
    (b"x\x9c", "zlib"),
    (b"x\x01", "zlib"),
    (b"x\xda", "zlib"),
]


def _auto(blob: bytes, depth: int = 0) -> list[bytes]:
    if depth > 3 or len(blob) < 4:
        return []
    out = []
    steps = [name for magic, name in MAGIC if blob.startswith(magic)]
    if len(blob) > 262 and blob[257:262] == b"ustar":
        steps.append("tar")
    if blob[:1] in (b"{", b"["):
        steps.append("json")
    for step in steps:
        try:
            got = DECODERS[step](blob)
        except Exception:  # noqa: BLE001 - not what it looked like
            continue
        for g in got:
            out.append(g)
            out += _auto(g, depth + 1)
    return out


def decode(blob: bytes, chain: Iterable[str]) -> list[bytes]:
    """`blob` and every layer of it under `chain` (each step applied to every piece the previous
    step gave), plus the containers recognised by their magic bytes in each."""
    layers = [blob]
    current = [blob]
    for step in chain:
        nxt = []
        for b in current:
            try:
                nxt += DECODERS[step](b)
            except Exception:  # noqa: BLE001 - an attempt whose bytes did not arrive whole
                continue
        layers += nxt
        current = nxt
    for b in list(layers):
        layers += _auto(b)
    return layers


def inspect(blobs: Iterable[bytes | str], chain: Iterable[str], cohort: Cohort) -> Findings:
    """Everything of the cohort in what a client received, decoded with `chain`."""
    chain = list(chain)
    total = Findings()
    for blob in blobs:
        b = blob.encode() if isinstance(blob, str) else blob
        for layer in decode(b, chain):
            total.add(findings(layer, cohort))
    return total


def message_blobs(messages: Iterable[dict]) -> list[bytes]:
    """What a client received in kernel messages: every string of each content and metadata,
    every buffer, and each stream's text joined in order (an encoding split across messages)."""
    blobs: list[bytes] = []
    streams: dict[str, list[str]] = {}
    for m in messages:
        kind = m.get("header", {}).get("msg_type", "")
        content = m.get("content", {})
        if kind == "stream":
            streams.setdefault(content.get("name", "stdout"), []).append(content.get("text", ""))
        blobs += [s.encode() for s in _strings(content, []) + _strings(m.get("metadata", {}), [])]
        blobs += [bytes(b) for b in m.get("buffers", [])]
    blobs += ["".join(parts).encode() for parts in streams.values()]
    return blobs


# the server's own guard (inside the Jupyter server, defence in depth) hides raw records in
# live outputs and in notebooks before the gate sees them, with its own notice and event
GUARD_NOTICE_EN = "[data guard] This output is hidden"
GUARD_NOTICE_JA = "[データガード]"


def withheld_notice(text: str) -> bool:
    return (NOTICE_EN in text and NOTICE_JA in text) or (
        GUARD_NOTICE_EN in text and GUARD_NOTICE_JA in text
    )


# ---------------------------------------------------------------------------
# the audit store


def event_name(e: dict) -> str:
    return e["schema"].rsplit("/", 1)[-1]


class AuditWatch:
    """Events of one person in the stack's audit store, as they arrive."""

    def __init__(self, stack: Stack, user: str):
        self.store = AuditStore(stack._database_url())
        self.user = user

    def mark(self) -> int:
        return self.store.count(user=self.user)

    def since(self, mark: int) -> list[dict]:
        return list(self.store.events(user=self.user))[mark:]

    def wait(self, mark: int, match: Callable[[dict], bool], timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            new = self.since(mark)
            for e in new:
                if match(e):
                    return e
            if time.monotonic() > deadline:
                seen = ", ".join(f"{event_name(e)} {json.dumps(e['data'])[:160]}" for e in new)
                raise AssertionError(
                    f"no matching event within {timeout:.0f} s; new events: {seen or 'none'}"
                )
            time.sleep(0.5)

    def close(self) -> None:
        self.store.close()


# ---------------------------------------------------------------------------
# the meter's level, as the researcher's browser reads it


def egress_level(server: Server) -> str | None:
    """The egress meter's level (ok, alert, cap) as the server's routes report it: the period
    banner's `egress.level`, `/visiting/guard`'s, or the gate's own status page."""
    for path, keys in (
        ("visiting/period", (("egress", "level"),)),
        ("visiting/guard", (("egress", "level"), ("meter", "level"))),
        ("visiting/gate", (("meter", "level"), ("egress", "level"))),
    ):
        r = server.get(path, timeout=30)
        if r.status_code != 200:
            continue
        try:
            doc = r.json()
        except ValueError:
            continue
        for a, b in keys:
            if isinstance(doc.get(a), dict) and "level" in doc[a]:
                return doc[a][b]
    return None
