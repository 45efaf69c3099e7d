"""A gateway's failures: logged with their traceback, answered as a gateway error.

The gateway runs here in this process, over HTTP on loopback, as the hub runs
it (its routes under /services/gateway-nig/); only the question "whose token is
this" is answered without a hub (see `TrustedGateway`).

Rules checked: "Security" (a failure at a site reaches the log, with its cause,
where the hub's or the site's operators read it), "No disclosure" (the caller
reads the task, the exception's type and an error id, never the exception's
text, which may quote the data), "Reporting" (a failed query is recorded).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from extensions.analysis.tasks.base import DisclosureRules
from hub.periods import clock_from_env
from hub.services.gateway import Caller, Gateway, GatewayConfig, make_app
from hub.stack import free_port
from tests.aio import run as run_async

SITE = "nig"
DATASET = "JGAD000101"


class TrustedGateway(Gateway):
    """The gateway with every token taken as the catalogue's (no hub to ask)."""

    async def caller(self, token: str) -> Caller:
        return Caller("catalogue", "service")


class ResearchersGateway(Gateway):
    """The gateway with every token taken as a researcher's with an approval for the dataset."""

    async def caller(self, token: str) -> Caller:
        return Caller("tanaka", "user")

    async def approvals(self, user: str) -> list[dict]:
        return [{"approval_id": "J-DU000101", "datasets": [DATASET], "query_audit_reset": None}]


def broken_site(root):
    """A site whose dataset has a VCF Zarr store that cannot be read (an empty folder)."""
    (root / DATASET / "genotypes.vcf.zarr").mkdir(parents=True)
    (root / DATASET / "clinical.tsv").write_text("sample_id\tsex\nPERSON-0042\tfemale\n")
    return root


def gateway_over(root, kind=TrustedGateway) -> Gateway:
    config = GatewayConfig(
        site=SITE,
        data_root=root,
        hub_api_url="http://127.0.0.1:1/hub/api",
        token="gateway-token",
        audit_url=None,
        scheduler=None,
        allowed_tasks=("*",),
    )
    return kind(config, DisclosureRules(5, 5), clock_from_env())


async def ask(root, dataset=DATASET, task="cohort_counts"):
    """(status, JSON body) of one task request to a gateway over `root`."""
    gateway = gateway_over(root)
    port = free_port()
    server = make_app(gateway, f"/services/gateway-{SITE}/").listen(port, address="127.0.0.1")
    try:
        url = f"http://127.0.0.1:{port}/services/gateway-{SITE}/api/tasks/{task}"
        body = json.dumps({"dataset": dataset, "params": {}, "engine": "dask"})
        try:
            resp = await AsyncHTTPClient().fetch(
                url,
                method="POST",
                body=body,
                headers={"Authorization": "token t", "X-Visiting-On-Behalf-Of": "tanaka"},
            )
        except HTTPClientError as e:
            resp = e.response
        return resp.code, json.loads(resp.body)
    finally:
        server.stop()
        gateway.pool.shutdown(wait=True)


def failures(caplog):
    return [
        r for r in caplog.records if r.name == "visiting.gateway" and r.levelno >= logging.ERROR
    ]


def test_a_failing_task_is_logged_with_its_traceback_and_answered_as_a_gateway_error(
    tmp_path, caplog
):
    caplog.set_level(logging.INFO)
    status, body = run_async(ask(broken_site(tmp_path)))
    assert status == 500, body
    assert body["code"] == "gateway_error"
    error_id = body["error_id"]
    assert body["message"].startswith("the task cohort_counts failed with ")
    assert f"error {error_id} in the gateway's log" in body["message"]
    # the exception's own text (a path here; it could be a person's row) stays in the log
    assert "genotypes.vcf.zarr" not in body["message"] and str(tmp_path) not in json.dumps(body)

    [logged] = failures(caplog)
    assert logged.exc_info is not None  # the traceback goes with it
    text = logged.getMessage()
    assert error_id in text and "the task cohort_counts failed at site nig" in text
    assert "POST /services/gateway-nig/api/tasks/cohort_counts" in text
    # recorded as a failed query (no audit intake here: the event is logged)
    [event] = [
        json.loads(r.getMessage().split(": ", 1)[1])
        for r in caplog.records
        if r.getMessage().startswith("audit (no intake configured)")
    ]
    assert event["data"]["outcome"] == "failed" and event["data"]["error_id"] == error_id
    assert event["data"]["via"] == "catalogue" and event["data"]["dataset"] == DATASET


def test_an_import_that_fails_is_a_gateway_error(tmp_path, caplog, monkeypatch):
    """A module the task needs cannot be imported at the site (a broken image)."""
    caplog.set_level(logging.INFO)
    monkeypatch.setitem(sys.modules, "extensions.analysis.cohorts", None)
    status, body = run_async(ask(broken_site(tmp_path)))
    assert status == 500 and body["code"] == "gateway_error", body
    assert "failed with ModuleNotFoundError" in body["message"]
    [logged] = failures(caplog)
    assert logged.exc_info[0] is ModuleNotFoundError
    assert body["error_id"] in logged.getMessage()


@pytest.mark.parametrize(
    ("dataset", "task", "status", "words"),
    [
        ("JGAD000999", "cohort_counts", 404, "no analysis dataset JGAD000999 at site nig"),
        (DATASET, "gwas_linear", 403, "may ask only for cohort_counts"),
    ],
    ids=["no-such-dataset", "task-not-for-the-catalogue"],
)
def test_a_refusal_is_one_line_with_the_gateways_words(
    tmp_path, caplog, dataset, task, status, words
):
    got, body = run_async(ask(broken_site(tmp_path), dataset=dataset, task=task))
    assert got == status and words in body["message"], body
    assert "error_id" not in body
    assert failures(caplog) == []


def test_a_researchers_client_reads_a_failure_as_the_sites_failure(tmp_path):
    """The federation client (requests, in the researcher's kernel) says the site failed, and
    passes on the gateway's words with the error id to quote."""
    from extensions.analysis.client import Federation, FederationError, SiteGateway

    port, loop, ready = free_port(), asyncio.new_event_loop(), threading.Event()
    parts = {}

    async def start():
        parts["gateway"] = gateway_over(broken_site(tmp_path), ResearchersGateway)
        app = make_app(parts["gateway"], f"/services/gateway-{SITE}/")
        parts["server"] = app.listen(port, address="127.0.0.1")
        ready.set()

    def serve():
        loop.run_until_complete(start())
        loop.run_forever()

    def stop():
        parts["server"].stop()
        loop.stop()

    thread = threading.Thread(target=serve, name="gateway", daemon=True)
    thread.start()
    try:
        assert ready.wait(30)
        fed = Federation("http://127.0.0.1:1/", "http://127.0.0.1:1/hub/api", "t")
        fed.gateways[SITE] = SiteGateway(
            SITE,
            f"http://127.0.0.1:{port}/services/gateway-{SITE}/",
            [{"dataset": DATASET, "engines": ["dask"]}],
        )
        with pytest.raises(FederationError) as e:
            fed._ask(SITE, "cohort_counts", {}, None, "dask", 60)
        assert e.value.status == 500 and e.value.site == SITE
        assert str(e.value).startswith(f"site {SITE} failed (500): the task cohort_counts failed")
        assert "in the gateway's log" in str(e.value)
    finally:
        loop.call_soon_threadsafe(stop)
        thread.join(30)
        parts["gateway"].pool.shutdown(wait=True)
        loop.close()
