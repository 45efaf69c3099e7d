"""A fiscal year of activity through the real event path, and the report made from it.

Everything here happens on the real platform (IdP, hub, proxy, Docker sites,
guard in the containers, gateways, enforcer, admin service), with the hub's
clock moved through FY2026: servers started and stopped at sites, data read,
a raw download blocked, a kernel started, federated queries, an extension, a
suspension with its enforcement stop, and a server started at 23:59:59 JST on
31 March and stopped at 00:00:00 JST on 1 April. The report's figures must
equal counts made here from `visiting audit export` of the year.

Rules checked: "Reporting" (the annual report, traceable to the audit log).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime

import pytest
import requests

from extensions.contracts.clock import FileClock
from hub.store.audit import AuditStore
from tests.unit.hub.report.test_report import evaluate

from .conftest import token_of
from .guard_server import wait_for
from .test_sites import Researcher, container_of, engine, sh  # noqa: F401  (engine: a fixture)

pytestmark = pytest.mark.integration

INSTITUTION = "Example University Graduate School of Medicine"


#: site_stack (conftest.py) runs its hub on a registry and audit store of this module's own:
#: the year written here is FY2026, which holds today, and the report must count its events
#: and no other module's; sato's approval is extended
SITE_STACK_VARIANT = {"platform": None}


@pytest.fixture(scope="module")
def year_stack(site_stack):
    """The session's site stack: the enforcer every 2 s, each data read reported."""
    return site_stack


def visiting(stack, *argv, clock=None):
    env = None
    if clock is not None:
        env = dict(os.environ, VISITING_CLOCK_FILE=str(clock))
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *argv],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def admin(stack, token, path, body):
    r = requests.post(
        f"{stack.config.hub_url}/services/admin/api/{path}",
        json=body,
        headers={"Authorization": f"token {token}"},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    return r.json()


def session_at(stack, engine, person: Researcher, site: str, reads: str):  # noqa: F811
    """Start, read some data (a data-access event), stop."""
    r = person.start(site)
    assert r.status_code in (201, 202), r.text
    person.wait_ready(site)
    c = container_of(engine, person.name, site)
    code, out = sh(c, f"head -c 4096 {reads} > /dev/null && sleep 2", user="1000")
    assert code == 0, out


def test_a_year_of_activity_reported_as_the_log_says(year_stack, engine, tmp_path):  # noqa: F811
    stack = year_stack
    hub = stack.config.hub_url
    clock = FileClock(stack.config.clock_file)
    audit = AuditStore(stack._database_url())
    jimu = token_of(stack, "jimu")
    # sato's approval (ended in 2021) is extended into the year: the second approval
    admin(stack, jimu, "approvals/J-DU000102/extend", {"end": "2027-03-31", "reason": "revision"})
    tanaka, yamada, sato = (Researcher(stack, n) for n in ("tanaka", "yamada", "sato"))

    # May: tanaka at nig reads data, a kernel starts, a raw file is refused
    clock.set(datetime.fromisoformat("2026-05-12T10:00:00+09:00"))
    session_at(stack, engine, tanaka, "nig", "/data/JGAD000101/clinical.tsv")
    token = token_of(stack, "tanaka")
    k = requests.post(
        f"{hub}/user/tanaka/nig/api/kernels",
        json={"name": "python3"},
        headers={"Authorization": f"token {token}"},
        timeout=60,
    )
    assert k.status_code == 201, k.text
    c = container_of(engine, "tanaka", "nig")
    assert sh(c, "cp /data/JGAD000101/genotypes.vcf.gz ~/results.csv", user="1000")[0] == 0
    blocked = requests.get(
        f"{hub}/user/tanaka/nig/files/results.csv",
        headers={"Authorization": f"token {token}"},
        timeout=60,
    )
    assert blocked.status_code == 403
    tanaka.stop("nig")

    # August: yamada at ncc; October: sato at ncc
    clock.set(datetime.fromisoformat("2026-08-20T14:00:00+09:00"))
    session_at(stack, engine, yamada, "ncc", "/data/JGAD000201/clinical.tsv")
    yamada.stop("ncc")
    clock.set(datetime.fromisoformat("2026-10-05T09:30:00+09:00"))
    session_at(stack, engine, sato, "ncc", "/data/JGAD000201/clinical.tsv")
    sato.stop("ncc")

    # December: tanaka's federated allele frequencies over his four sites
    clock.set(datetime.fromisoformat("2026-12-01T11:00:00+09:00"))
    from extensions.federation import connect

    connect(hub_url=hub, token=token_of(stack, "tanaka")).allele_frequencies()

    # January: yamada is suspended with a server running, then reinstated
    clock.set(datetime.fromisoformat("2027-01-15T16:00:00+09:00"))
    r = yamada.start("ncgm")
    assert r.status_code in (201, 202), r.text
    yamada.wait_ready("ncgm")
    admin(stack, jimu, "suspend", {"user": "yamada", "reason": "report overdue"})
    assert container_of(engine, "yamada", "ncgm") is None
    admin(stack, jimu, "reinstate", {"user": "yamada", "reason": "report received"})

    # the year's last second and the next year's first
    clock.set(datetime.fromisoformat("2027-03-31T23:59:59+09:00"))
    r = tanaka.start("nig")
    assert r.status_code in (201, 202), r.text
    tanaka.wait_ready("nig")
    clock.set(datetime.fromisoformat("2027-04-01T00:00:00+09:00"))
    tanaka.stop("nig")
    wait_for(
        lambda: [
            e
            for e in audit.events(user="tanaka")
            if e["schema"].endswith("server-stop") and e["time"].startswith("2027-03-31T15:00:00")
        ],
        timeout=30,
    )
    clock.set(datetime.fromisoformat("2027-04-02T09:00:00+09:00"))
    time.sleep(1)

    # the report, both approvals, and the export it must agree with
    common = ["--dir", str(stack.config.platform_dir), "--database", stack._database_url()]
    out = tmp_path / "report"
    made = visiting(
        stack,
        "report",
        "--fiscal-year",
        "2026",
        "--format",
        "json,pdf,html,csv",
        "--lang",
        "ja",
        "--output",
        str(out),
        *common,
        clock=stack.config.clock_file,
    )
    assert made.returncode == 0, made.stderr
    (doc_path,) = out.glob("*.json")
    doc = json.loads(doc_path.read_text())
    export = tmp_path / "fy2026.jsonl"
    ex = visiting(
        stack,
        "audit",
        "export",
        "--since",
        "2026-04-01",
        "--until",
        "2027-04-01",
        "--output",
        str(export),
        str(stack.config.platform_dir),
        "--database",
        stack._database_url(),
    )
    assert ex.returncode == 0, ex.stderr
    records = [json.loads(line) for line in export.read_text().splitlines()]

    assert doc["audit_chain"]["ok"]
    ids = {a["approval_id"] for a in doc["approvals"]}
    assert ids >= {"J-DU000101", "J-DU000102"}
    checked = 0
    for a in doc["approvals"]:
        for f in a["figures"]:
            if f["query"]["measure"] == "server-hours":
                continue
            assert evaluate(records, f["query"]) == f["value"], f["id"]
            checked += 1
    assert checked > 40

    # counted here once more, plainly, from the export
    def n(schema_end, **where):
        return sum(
            1
            for r in records
            if r["schema"].endswith(schema_end) and all(r.get(k) == v for k, v in where.items())
        )

    starts = {(r["user"], r["site"]) for r in records if r["schema"].endswith("server-start")}
    assert starts == {("tanaka", "nig"), ("yamada", "ncc"), ("sato", "ncc"), ("yamada", "ncgm")}
    assert n("server-start", user="tanaka", site="nig") == 2  # May and 31 March 23:59:59
    # the stop at 00:00:00 on 1 April belongs to the next year
    assert not any(
        r["schema"].endswith("server-stop") and r["time"].startswith("2027-03-31T15:00:00")
        for r in records
    )
    assert n("download-blocked", user="tanaka") >= 1
    assert n("kernel-start", user="tanaka") >= 1
    assert n("federation-query", user="tanaka") >= 4
    # the admin service's request and a periodic round may both have stopped it
    assert n("enforcement-stop", user="yamada", site="ncgm") >= 1
    assert n("secretariat-action", user="yamada") == 2
    for user in ("tanaka", "yamada", "sato"):
        assert n("data-access", user=user) >= 1, user

    # tanaka's institution, in Japanese and English: what jimu hands in
    for lang in ("ja", "en"):
        inst = visiting(
            stack,
            "report",
            "--fiscal-year",
            "2026",
            "--institution",
            INSTITUTION,
            "--format",
            "pdf,json",
            "--lang",
            lang,
            "--output",
            str(tmp_path / lang),
            *common,
            clock=stack.config.clock_file,
        )
        assert inst.returncode == 0, inst.stderr
        (pdf,) = (tmp_path / lang).glob("*.pdf")
        text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True).stdout
        assert ("データ利用報告書" if lang == "ja" else "data-usage report") in text
        assert "J-DU000101" in text
