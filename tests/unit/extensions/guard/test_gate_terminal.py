"""The egress gate's terminal judging, chunk by chunk, as a pty cuts output under load.

The claim is proven through the real proxy against a server in its site
container (tests/integration/test_egress_attacks.py, terminal rows); these
are the fast tests of the burst logic: raw records cut into chunks of one
record each never pass, and small outputs that pass whole still pass.
"""

from __future__ import annotations

import base64
import gzip
import json
import random
import zlib
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from extensions.contracts.clock import Clock
from extensions.contracts.egress import EgressRules
from extensions.guard.gate.judge import Gate
from extensions.guard.gate.websocket_proxy import WebSocketProxy
from extensions.guard.meter import EgressMeter
from extensions.guard.recognise import Cohort, Recogniser
from tests.unit.extensions.guard.test_recognise import CLINICAL, DOSAGE_TSV, IDS, VOCABULARY


class FixedClock(Clock):
    def now(self) -> datetime:
        return datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


class Events:
    def __init__(self):
        self.withheld = []

    def output_withheld(self, channel, msg_type, decision, route=None):
        self.withheld.append((channel, decision.reason))

    def level_crossed(self, level, reading):
        pass


@pytest.fixture(scope="module")
def recogniser():
    return Recogniser(Cohort.from_ids(IDS, VOCABULARY))


@pytest.fixture
def terminal(recogniser):
    rules = EgressRules()
    gate = Gate(
        prefix="/user/tanaka/nig/",
        recogniser=recogniser,
        rules=rules,
        meter=EgressMeter(rules, FixedClock(), None),
        events=Events(),
    )
    proxy = WebSocketProxy.__new__(WebSocketProxy)
    proxy.application = SimpleNamespace(settings={"gate": gate})
    proxy.kind = "terminal"
    return proxy


def feed(proxy, chunks) -> str:
    """What the browser is sent for `chunks` arriving one after another, then a quiet pty."""
    sent = []
    for chunk in chunks:
        out = proxy.inspect(json.dumps(["stdout", chunk]))
        sent += [o for o in (out if isinstance(out, list) else [out]) if o is not None]
    sent += proxy._release()
    return "".join(json.loads(m)[1] for m in sent)


READS = [f"@NIG-{i:06d}.read{i}/1\r\n{'ACGT' * 37}AC\r\n+\r\n{'I' * 150}\r\n" for i in range(1, 21)]


def test_reads_one_chunk_each_never_pass(terminal):
    shown = feed(terminal, ["$ zcat reads_R1.fastq.gz | head -80\r\n", *READS])
    assert "ACGTACGT" not in shown
    assert "Withheld by the egress gate" in shown
    assert "持ち出し制御" in shown


def test_a_dosage_matrix_a_few_rows_a_chunk_never_passes(terminal):
    lines = DOSAGE_TSV.replace("\n", "\r\n").splitlines(keepends=True)
    chunks = ["".join(lines[i : i + 2]) for i in range(0, len(lines), 2)]
    shown = feed(terminal, chunks)
    first = lines[0].split("\t")[0]
    assert first not in shown, shown[:400]


def test_base64_of_gzip_cut_anywhere_shows_no_more_than_a_few_people(terminal):
    encoded = base64.encodebytes(gzip.compress(CLINICAL.encode())).decode().replace("\n", "\r\n")
    rng = random.Random(5)
    chunks, at = [], 0
    while at < len(encoded):
        n = rng.randint(40, 400)
        chunks.append(encoded[at : at + n])
        at += n
    shown = feed(terminal, chunks)
    assert "Withheld by the egress gate" in shown
    before, _, after = shown.partition("\r\n持ち出し制御")
    rows = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(base64.b64decode(before))
    assert rows.count(b"\n") <= EgressRules().max_people_per_output, rows
    # after the notice, only pieces as short as a prompt or typing
    assert all(len(c) < 80 for c in chunks if c in after)


def test_one_read_alone_passes_once_its_burst_ends(terminal):
    shown = feed(terminal, [READS[0]])
    assert shown == READS[0]


def test_small_outputs_pass_at_once_and_in_order(terminal):
    listing = "total 8\r\n-rw-r--r-- 1 jovyan users 812 Dec  7 12:00 results.csv\r\n"
    out = terminal.inspect(json.dumps(["stdout", listing]))
    assert [json.loads(m)[1] for m in out] == [listing]
    assert terminal._pending == ()
    summary = "n=200 mean age band 40-49; 104 female, 96 male\r\n"
    assert feed(terminal, ["$ ", summary, "$ "]) == "$ " + summary + "$ "


def test_a_held_chunk_goes_before_a_setup_message(terminal):
    terminal.inspect(json.dumps(["stdout", READS[0]]))
    assert terminal._pending
    out = terminal.inspect(json.dumps(["disconnect", 1]))
    assert [json.loads(m)[0] for m in out] == ["stdout", "disconnect"]
