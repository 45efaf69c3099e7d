"""A gateway's failures, answered as a gateway error; the format of its answers.

The gateway runs here in this process, over HTTP on loopback, as the hub runs
it (its routes under /services/gateway-nig/); only the question "whose token is
this" is answered without a hub (see `TrustedGateway`).

Rules checked: "Security" (a failure at a site reaches the log, with its cause,
where the hub's or the site's operators read it), "No disclosure" (the caller
reads the task, the exception's type and an error id, never the exception's
text, which may quote the data), "Reporting" (a failed query is recorded).

The format of an answer: JSON unless the caller names the compact wire format
(`extensions.federation.wire`), without the variant keys the caller holds, with
the bytes sent in the audit record; errors and small answers stay JSON; the
federation client reads both.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
from contextlib import contextmanager

import numpy as np
import pytest
import requests
import xarray as xr
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from extensions.contracts.clock import clock_from_env
from extensions.federation import wire
from extensions.federation.gateway import Caller, Gateway, GatewayConfig, make_app
from extensions.federation.tasks.base import DisclosureRules, SiteHalf
from hub.demo.ports import free_port
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
    monkeypatch.setitem(sys.modules, "extensions.federation.cohorts", None)
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
    from extensions.federation.client import FederationError

    with serving(gateway_over(broken_site(tmp_path), ResearchersGateway)) as url:
        fed = federation_at(url)
        with pytest.raises(FederationError) as e:
            fed._ask(SITE, "cohort_counts", {}, None, "dask", 60)
        assert e.value.status == 500 and e.value.site == SITE
        assert str(e.value).startswith(f"site {SITE} failed (500): the task cohort_counts failed")
        assert "in the gateway's log" in str(e.value)


# ---------------------------------------------------------------------------
# the answer's format: the compact wire format when the caller names it, JSON otherwise

ACCEPT_BINARY = {"Accept": f"{wire.MEDIA_TYPE}, application/json"}


@pytest.fixture(scope="module")
def site_data(tmp_path_factory):
    """The data folder of a site with one small analysis dataset (VCF Zarr, no MatrixTable)."""
    from hub.data.synth import SiteSpec, generate_cohorts

    root = tmp_path_factory.mktemp("site")
    generate_cohorts(
        root, [SiteSpec(SITE, DATASET, None, "Shizuoka")], samples_per_site=40, variants=300,
        seed=11, raw_files=False, matrix_table=False,
    )  # fmt: skip
    return root / SITE


async def exchange(root, asks, kind=ResearchersGateway):
    """The answers (tornado responses) of one gateway over `root` to (task, body, headers)."""
    gateway = gateway_over(root, kind)
    port = free_port()
    server = make_app(gateway, f"/services/gateway-{SITE}/").listen(port, address="127.0.0.1")
    out = []
    try:
        for task, body, headers in asks:
            url = f"http://127.0.0.1:{port}/services/gateway-{SITE}/api/tasks/{task}"
            try:
                resp = await AsyncHTTPClient().fetch(
                    url,
                    method="POST",
                    body=json.dumps({"dataset": DATASET, "engine": "dask", **body}),
                    headers={"Authorization": "token t", **headers},
                )
            except HTTPClientError as e:
                resp = e.response
            out.append(resp)
        return out
    finally:
        server.stop()
        gateway.pool.shutdown(wait=True)


def test_a_logistic_rounds_state_fits_and_a_larger_body_is_refused(site_data):
    """The state a logistic GWAS sends back in its later rounds grows with the variants (a
    100,000-variant fit is several MB); the body limit is named when a request passes it."""
    from extensions.federation.gateway import MAX_BODY

    state = {"phase": "newton", "fit": "A" * (8 * 1024 * 1024)}
    big = {"params": {}, "state": state}
    huge = {"params": {}, "pad": "A" * MAX_BODY}
    fits, too_large = run_async(
        exchange(site_data, [("gwas_logistic", big, {}), ("gwas_logistic", huge, {})])
    )
    assert fits.code == 400 and "larger than" not in fits.body.decode(), fits.body[:300]
    assert too_large.code == 413
    assert f"larger than {MAX_BODY} bytes" in json.loads(too_large.body)["message"]


def audit_events(caplog) -> list[dict]:
    """The federation.query events the gateway recorded (no intake here: they are logged)."""
    prefix = "audit (no intake configured): "
    return [
        json.loads(r.getMessage().removeprefix(prefix))["data"]
        for r in caplog.records
        if r.getMessage().startswith(prefix)
    ]


def media_type(resp) -> str:
    return resp.headers["Content-Type"].split(";")[0]


def assert_same_half(got: SiteHalf, want: SiteHalf):
    assert (got.site, got.dataset, got.engine) == (want.site, want.dataset, want.engine)
    assert got.variants == want.variants and got.counts == want.counts
    assert got.meta == want.meta and got.suppressed == want.suppressed
    assert list(got.arrays) == list(want.arrays)
    for name, a in want.arrays.items():
        np.testing.assert_array_equal(got.arrays[name], a, err_msg=name)  # NaN where NaN


def test_json_unless_the_caller_names_the_wire_format(site_data, caplog):
    caplog.set_level(logging.INFO)
    plain, as_json, binary = run_async(
        exchange(
            site_data,
            [
                ("allele_frequencies", {}, {}),
                ("allele_frequencies", {}, {"Accept": "application/json"}),
                ("allele_frequencies", {}, ACCEPT_BINARY),
            ],
        )
    )
    assert [r.code for r in (plain, as_json, binary)] == [200, 200, 200]
    assert media_type(plain) == media_type(as_json) == "application/json"
    assert media_type(binary) == wire.MEDIA_TYPE and binary.headers["Vary"] == "Accept"
    half = SiteHalf.from_json(json.loads(plain.body))
    assert np.isnan(half.arrays["ac"]).any()  # disclosure withheld some: NaN on both ways
    assert_same_half(wire.decode_half(binary.body), half)
    assert len(binary.body) < len(plain.body)
    # the audit record: the aggregates as before, and the bytes that were sent
    events = audit_events(caplog)
    assert [e["outcome"] for e in events] == ["answered"] * 3
    assert [e["wire_bytes"] for e in events] == [len(r.body) for r in (plain, as_json, binary)]
    assert {e["result_bytes"] for e in events} == {half.nbytes()}


def test_keys_are_left_out_when_the_caller_holds_the_list(site_data, caplog):
    caplog.set_level(logging.INFO)
    other = wire.variants_digest(["chr20:1:A:G"])
    [first] = run_async(exchange(site_data, [("allele_frequencies", {}, ACCEPT_BINARY)]))
    half, digest = wire.read_half(first.body)
    stranger, holder, plain = run_async(
        exchange(
            site_data,
            [
                ("allele_frequencies", {"variants_known": [other]}, ACCEPT_BINARY),
                ("allele_frequencies", {"variants_known": [other, digest]}, ACCEPT_BINARY),
                ("allele_frequencies", {"variants_known": [digest]}, {}),  # JSON: keys as ever
            ],
        )
    )
    assert stranger.body == first.body
    keys_bytes = len("\n".join(half.variants).encode())
    assert len(holder.body) <= len(first.body) - keys_bytes
    with pytest.raises(wire.WireError, match=f"left out for digest {digest}"):
        wire.decode_half(holder.body)
    held = list(half.variants)
    got = wire.decode_half(holder.body, {digest: held})
    assert got.variants is held
    assert_same_half(got, half)
    assert SiteHalf.from_json(json.loads(plain.body)).variants == half.variants
    assert [e["wire_bytes"] for e in audit_events(caplog)] == [
        len(r.body) for r in (first, stranger, holder, plain)
    ]


@pytest.mark.parametrize(
    "known",
    ["0" * 32, ["0" * 31], ["xyz"], [7], ["0" * 32] * 33],
    ids=["not-a-list", "short", "not-hex", "number", "too-many"],
)
def test_a_bad_variants_known_is_refused_naming_the_field(site_data, caplog, known):
    caplog.set_level(logging.INFO)
    [resp] = run_async(
        exchange(site_data, [("allele_frequencies", {"variants_known": known}, ACCEPT_BINARY)])
    )
    assert resp.code == 400 and media_type(resp) == "application/json"  # errors: JSON
    assert json.loads(resp.body)["message"].startswith("variants_known: a list of at most 32")
    [event] = audit_events(caplog)
    assert event["outcome"] == "refused" and event["reason"].startswith("variants_known")


def test_a_small_answer_stays_json(site_data):
    [resp] = run_async(exchange(site_data, [("cohort_counts", {}, ACCEPT_BINARY)]))
    assert resp.code == 200 and media_type(resp) == "application/json"
    assert SiteHalf.from_json(json.loads(resp.body)).arrays


@contextmanager
def serving(gateway: Gateway):
    """`gateway` listening on loopback in a thread of its own (a client blocks on requests);
    yields its base URL."""
    port, loop, ready = free_port(), asyncio.new_event_loop(), threading.Event()
    parts = {}

    async def start():
        parts["server"] = make_app(gateway, f"/services/gateway-{SITE}/").listen(
            port, address="127.0.0.1"
        )
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
        yield f"http://127.0.0.1:{port}/services/gateway-{SITE}/"
    finally:
        loop.call_soon_threadsafe(stop)
        thread.join(30)
        gateway.pool.shutdown(wait=True)
        loop.close()


def federation_at(url: str):
    from extensions.federation.client import Federation, SiteGateway

    fed = Federation("http://127.0.0.1:1/", "http://127.0.0.1:1/hub/api", "t")
    fed.gateways[SITE] = SiteGateway(SITE, url, [{"dataset": DATASET, "engines": ["dask"]}])
    return fed


def test_the_client_reads_the_wire_format_and_holds_the_sites_list(site_data):
    """Asked twice, a site sends its keys once; the results are the same, and so is what a
    JSON answer gives."""
    gateway = gateway_over(site_data, ResearchersGateway)
    with serving(gateway) as url:
        fed = federation_at(url)
        first = fed.allele_frequencies(stratify_by="sex")
        second = fed.allele_frequencies(stratify_by="sex")
        half, sent = fed._ask(SITE, "cohort_counts", {"by": None}, None, "dask", 60)
    xr.testing.assert_equal(first, second)
    transfer = {"bytes_from_sites", "aggregate_bytes_from_sites"}
    assert {k: v for k, v in first.attrs.items() if k not in transfer} == {
        k: v for k, v in second.attrs.items() if k not in transfer
    }
    [digest] = fed.known_variants.digests()
    assert list(first.variant.values) == fed.known_variants[digest]
    bytes_first = json.loads(first.attrs["bytes_from_sites"])[SITE]
    bytes_second = json.loads(second.attrs["bytes_from_sites"])[SITE]
    assert bytes_second < bytes_first
    aggregates = json.loads(first.attrs["aggregate_bytes_from_sites"])[SITE]
    assert aggregates == json.loads(second.attrs["aggregate_bytes_from_sites"])[SITE]
    assert bytes_second < aggregates  # counts as narrower floats, no keys
    assert half.meta["tables"] and sent > 0  # a small answer: JSON
    # the same result as from a JSON answer (a gateway from before the wire format)
    from extensions.federation.tasks.allele_frequencies import AlleleFrequencies

    task = AlleleFrequencies()
    params = task.validate({"stratify_by": "sex"})
    [resp] = run_async(exchange(site_data, [("allele_frequencies", {"params": params}, {})]))
    halves = [SiteHalf.from_json(json.loads(resp.body))]
    xr.testing.assert_equal(task.combine(halves, params, None).result, first)


def answered(content: bytes, content_type: str) -> requests.Response:
    r = requests.Response()
    r.status_code = 200
    r._content = content
    r.headers["Content-Type"] = content_type
    return r


def test_an_older_gateway_answering_json_still_works(monkeypatch):
    half = SiteHalf(
        SITE, DATASET, "dask", arrays={"ac": np.array([[1.0], [np.nan]])},
        counts={"n_selected": 40}, variants=["chr20:1:A:G", "chr20:2:C:T"],
    )  # fmt: skip
    fed = federation_at("http://127.0.0.1:1/services/gateway-nig/")
    sent = {}

    body = json.dumps(half.to_json()).encode()

    def post(url, **kwargs):
        sent.update(kwargs)
        return answered(body, "application/json; charset=UTF-8")

    monkeypatch.setattr(fed.session, "post", post)
    got, size = fed._ask(SITE, "allele_frequencies", {}, None, "dask", 60)
    assert_same_half(got, half)
    assert size == len(body)
    assert sent["headers"]["Accept"].startswith(wire.MEDIA_TYPE)
    assert sent["json"]["variants_known"] == []
    assert len(fed.known_variants) == 0  # JSON answers teach the client no list


def test_an_answer_the_client_cannot_read_names_the_site(monkeypatch):
    from extensions.federation.client import FederationError

    fed = federation_at("http://127.0.0.1:1/services/gateway-nig/")
    half = SiteHalf(SITE, DATASET, "dask", variants=["chr20:1:A:G"])
    for content in (b"\x93VSHALF\x07garbage", wire.encode_half(half, omit_variants=True)):
        monkeypatch.setattr(
            fed.session, "post", lambda *a, c=content, **k: answered(c, wire.MEDIA_TYPE)
        )
        with pytest.raises(FederationError) as e:
            fed._ask(SITE, "allele_frequencies", {}, None, "dask", 60)
        assert str(e.value).startswith(f"site {SITE} answered what this client cannot read")
        assert e.value.site == SITE


# ---------------------------------------------------------------------------
# an open cohort is kept while the dataset's files are unchanged


def test_an_open_cohort_serves_until_a_file_of_the_dataset_changes(site_data, tmp_path):
    """Two queries share one open cohort (its tables and caches) and the answer says where
    the site's time went; a corrected clinical.tsv opens the dataset anew, so the next
    query counts the sexes as they are now."""
    import shutil

    root = tmp_path / SITE
    shutil.copytree(site_data, root)
    gateway = gateway_over(root, ResearchersGateway)

    def correct_one_sex():
        clinical = root / DATASET / "clinical.tsv"
        lines = clinical.read_text().splitlines()
        header = lines[0].split("\t")
        row = lines[1].split("\t")
        at = header.index("sex")
        row[at] = "male" if row[at] == "female" else "female"
        lines[1] = "\t".join(row)
        clinical.write_text("\n".join(lines) + "\n")

    async def scenario():
        port = free_port()
        app = make_app(gateway, f"/services/gateway-{SITE}/")
        server = app.listen(port, address="127.0.0.1")
        url = f"http://127.0.0.1:{port}/services/gateway-{SITE}/api/tasks/allele_frequencies"
        body = json.dumps({"dataset": DATASET, "engine": "dask", "params": {"stratify_by": "sex"}})

        async def query():
            resp = await AsyncHTTPClient().fetch(
                url, method="POST", body=body, headers={"Authorization": "token t"}
            )
            return resp, SiteHalf.from_json(json.loads(resp.body))

        try:
            out = [await query(), await query()]
            out.append(gateway.cohort(DATASET, "dask"))
            out.append(gateway.cohort(DATASET, "dask"))
            return out
        finally:
            server.stop()

    try:
        (_, a), (second, b), cohort, again = run_async(scenario())
    finally:
        gateway.pool.shutdown(wait=True)
    assert again is cohort  # kept
    sexes = cohort.samples["sex"].copy()
    correct_one_sex()  # (a query now would differ by one person: the audit refuses that)
    reopened = gateway.cohort(DATASET, "dask")
    assert reopened is not cohort
    assert (reopened.samples["sex"] != sexes).sum() == 1  # the tables as they are now
    timing = second.headers["Server-Timing"]
    phases = [part.split(";")[0].strip() for part in timing.split(",")]
    always = ["open", "audit", "half", "disclose", "record", "encode"]
    assert [p for p in phases if p != "near"] == always, timing  # near: when the audit asks
    assert all(float(part.split("dur=")[1]) >= 0 for part in timing.split(","))
    assert a.arrays["n_people"].tolist() == b.arrays["n_people"].tolist()
