"""The egress meter bounds what no recogniser sees (issue 15, part 4).

Rules checked: "No disclosure" and "Security" (a bulk transfer in an encoding
nobody can read is cut at the platform's daily cap, and the secretariat is told
at the alert and at the cap).

A private copy of the demo platform sets small `rules.egress` values. The
researcher (takahashi, approved at nig on that copy only) XORs the cohort's VCF
text with a keystream in his container (random-looking bytes no recogniser can
read) and downloads it in 32 KiB pieces through the proxy: the meter reaches
the alert (an `egress-alert` event, the banner and the period route say so),
then the cap (429 in Japanese and English, outputs withheld with the notice, an
`egress-cap` event), and the transfer is cut there. Downloading the same piece
again adds nothing. Moving the test clock past midnight in Japan starts a new
day: downloads and outputs pass again. On that day rows of ten people at a time
(each output within the per-output limit) add up to the people alert and cap.
Time is moved with the stack's clock file, never by sleeping.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from .egress_client import (
    CJK,
    NOTICE_EN,
    NOTICE_JA,
    AuditWatch,
    Server,
    egress_level,
    engine_client,
    event_name,
    forget_gate_state,
    platform_copy,
    set_clock,
)

pytestmark = pytest.mark.integration

USER, SITE = "takahashi", "nig"
KiB = 1024
CHUNK = 32 * KiB
RULES = {
    "alert_bytes": 256 * KiB,
    "cap_bytes": 640 * KiB,
    "alert_people": 15,
    "cap_people": 25,
    "max_people_per_output": 10,
}
#: bytes the meter may count besides the pieces: kernel messages, the level polls
SLACK = 64 * KiB
APPROVAL = {
    "approval_id": "J-DU009902",
    "institution": "Example University",
    "purpose": "Egress meter tests",
    "handlers": [USER],
    "datasets": ["JGAD000101"],
    "period": {"start": "2024-04-01", "end": "2035-03-31"},
}
DAY1 = "2030-06-01T21:00:00+09:00"
DAY2 = "2030-06-02T00:00:30+09:00"  # past midnight in Japan (15:00:30 UTC the day before)

ENCRYPT = r"""
import hashlib, os
text = __import__("gzip").decompress(open("/data/JGAD000101/genotypes.vcf.gz", "rb").read())
key = hashlib.sha256(b"only I know this").digest()
stream = b"".join(hashlib.sha256(key + i.to_bytes(8, "big")).digest() for i in range(len(text) // 32 + 1))
sealed = bytes(a ^ b for a, b in zip(text, stream))
out = os.path.expanduser("~/bulk")
os.makedirs(out, exist_ok=True)
for i in range(0, len(sealed) // {chunk}):
    with open(f"{{out}}/piece-{{i:03d}}.bin", "wb") as f:
        f.write(sealed[i * {chunk} : (i + 1) * {chunk}])
print("pieces", len(sealed) // {chunk})
"""


def small_rules(doc):
    doc.setdefault("rules", {})["egress"] = dict(RULES)


#: site_stack (conftest.py) runs its hub on this module's own platform (small egress rules,
#: takahashi's approval at nig only) and a registry and audit store of its own
SITE_STACK_VARIANT = {
    "platform": lambda folder: platform_copy(folder, edit=small_rules, approvals=[APPROVAL])
}


@pytest.fixture(scope="module")
def stack(site_stack):
    assert APPROVAL["approval_id"] in site_stack.bundle.approvals
    return site_stack


ARTIFACT = Path(__file__).resolve().parents[1] / "artifacts" / "egress" / "meter.json"
FIGURES: dict = {"rules": RULES, "chunk": CHUNK}


@pytest.fixture(scope="module", autouse=True)
def figures():
    yield FIGURES
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(json.dumps(FIGURES, indent=1))


@pytest.fixture(scope="module")
def audit(stack):
    w = AuditWatch(stack, USER)
    yield w
    w.close()


@pytest.fixture(scope="module")
def server(stack):
    engine = engine_client()
    forget_gate_state(stack, USER, SITE)
    set_clock(stack, DAY1)
    s = Server(stack, USER, SITE, engine).start()
    yield s
    s.stop()
    set_clock(stack, "")
    forget_gate_state(stack, USER, SITE)
    engine.close()


@pytest.fixture(scope="module")
def pieces(server):
    code, out = server.sh(f"python3 - <<'EOF'\n{ENCRYPT.format(chunk=CHUNK)}\nEOF")
    assert code == 0 and "pieces" in out, out
    n = int(out.split()[-1])
    assert n * CHUNK > RULES["cap_bytes"] + 4 * CHUNK, n
    return [f"files/bulk/piece-{i:03d}.bin" for i in range(n)]


class Transfer:
    """What the module learnt about the first day, for the tests that follow."""

    downloaded = 0  # bytes of pieces that arrived
    alert_at: int | None = None
    cap_at: int | None = None
    sent: tuple[str, ...] = ()


def test_the_platform_rules_reach_the_gate(server):
    r = server.get("visiting/gate")
    assert r.status_code == 200, r.text[:300]
    meter = r.json()["meter"]
    assert {k: meter[k] for k in RULES if k in meter} == {k: RULES[k] for k in RULES if k in meter}
    assert meter["level"] == "ok" and meter["day"] == "2030-06-01", meter


def test_a_bulk_transfer_reaches_the_alert_then_the_cap_and_is_cut(server, pieces, audit):
    mark = audit.mark()
    assert egress_level(server) == "ok"
    for i, path in enumerate(pieces):
        r = server.get(path)
        if r.status_code == 429:
            Transfer.cap_at = Transfer.downloaded
            body = r.text
            assert CJK.search(body) and re.search(r"[A-Za-z]{4}", body), body[:300]
            break
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
        assert len(r.content) == CHUNK
        Transfer.downloaded += CHUNK
        Transfer.sent += (path,)
        level = egress_level(server)
        if level == "alert" and Transfer.alert_at is None:
            Transfer.alert_at = Transfer.downloaded
        if i == 2:
            # the same piece again and again: one content, counted once
            for _ in range(25):  # 25 x 32 KiB = 800 KiB, above the cap if each counted
                again = server.get(pieces[0])
                assert again.status_code == 200 and len(again.content) == CHUNK
            assert egress_level(server) == "ok"
    FIGURES.update(
        alert_at=Transfer.alert_at, cap_at=Transfer.cap_at, downloaded=Transfer.downloaded
    )
    assert Transfer.alert_at is not None, f"no alert after {Transfer.downloaded} bytes"
    assert RULES["alert_bytes"] - SLACK <= Transfer.alert_at <= RULES["alert_bytes"] + CHUNK
    assert Transfer.cap_at is not None, f"no 429 after {Transfer.downloaded} bytes"
    # cut at the cap: what arrived is the cap (and at most the piece that crossed it)
    assert RULES["cap_bytes"] - SLACK <= Transfer.downloaded <= RULES["cap_bytes"] + CHUNK
    alert = audit.wait(mark, lambda e: event_name(e) == "egress-alert", timeout=30)
    cap = audit.wait(mark, lambda e: event_name(e) == "egress-cap", timeout=30)
    names = [event_name(e) for e in audit.since(mark)]
    assert alert["site"] == SITE and cap["site"] == SITE, names
    assert names.count("egress-alert") == 1, names  # once a day


def test_at_the_cap_the_banner_says_so(server):
    r = server.get("visiting/period")
    assert r.status_code == 200
    doc = r.json()
    assert doc["egress"]["level"] == "cap", doc
    assert "egress" in doc["text_en"].lower() and "持ち出し" in doc["text_ja"], doc


def test_at_the_cap_downloads_and_outputs_are_withheld_for_the_day(server, pieces):
    assert Transfer.cap_at is not None
    # a new piece, and one that passed before
    assert server.get(pieces[len(Transfer.sent) + 1]).status_code == 429
    assert server.get(Transfer.sent[0]).status_code == 429
    with server.kernel(timeout=180) as k:
        run = k.execute("import os\nprint(os.urandom(2048).hex())")
    assert NOTICE_EN in run.stdout and NOTICE_JA in run.stdout, run.stdout[:300]
    assert not re.search(r"[0-9a-f]{512}", run.stdout), "an output passed at the cap"


def test_the_next_day_in_japan_starts_afresh(server, pieces, audit):
    set_clock(server.stack, DAY2)
    assert egress_level(server) == "ok"
    r = server.get(pieces[-1])
    assert r.status_code == 200 and len(r.content) == CHUNK
    with server.kernel(timeout=180) as k:
        run = k.execute(
            "import hashlib\nx = hashlib.sha256(b'day two').hexdigest() * 64\nprint(x)"
        ).raise_for_error()
    assert hashlib.sha256(b"day two").hexdigest() * 64 in run.stdout
    meter = server.get("visiting/gate").json()["meter"]
    assert meter["day"] == "2030-06-02" and meter["level"] == "ok", meter


def test_rows_ten_people_at_a_time_add_up_to_the_people_cap(server, audit):
    """Each output shows ten people (allowed one at a time); the same ten again add nobody;
    new people add up to the alert (15) and the cap (25), and then nothing is shown."""
    mark = audit.mark()
    shown: set[str] = set()
    with server.kernel(timeout=180) as k:
        k.execute(
            "import pandas as pd\ndf = pd.read_csv('/data/JGAD000101/clinical.tsv', sep='\\t')",
            silent=True,
        ).raise_for_error()
        for _ in range(3):  # the same ten people, three times
            run = k.execute("print(df.iloc[0:10].to_string())").raise_for_error()
            assert NOTICE_EN not in run.stdout, run.stdout[:300]
            shown |= set(re.findall(r"NIG-\d{6}", run.stdout))
        assert len(shown) == 10 and egress_level(server) == "ok"
        for block in range(1, 8):
            run = k.execute(f"print(df.iloc[{block * 10}:{block * 10 + 10}].to_string())")
            shown |= set(re.findall(r"NIG-\d{6}", run.stdout))
        after = k.execute("df.head(5)")
        assert NOTICE_EN in str(after.results) + after.stdout, after.results
    FIGURES["people_shown_day2"] = len(shown)
    # cut at the people cap: at most one output's people beyond it reached the client
    assert len(shown) <= RULES["cap_people"] + RULES["max_people_per_output"], len(shown)
    assert egress_level(server) == "cap"
    audit.wait(mark, lambda e: event_name(e) == "egress-alert", timeout=30)
    audit.wait(mark, lambda e: event_name(e) == "egress-cap", timeout=30)
