"""The catalogue's pure parts: its metadata file, filters, the guide pages, the client's view.

Rules checked: "Bad input" (a wrong filter or catalogue file names what is
wrong), "No disclosure" (the client shows withheld sites and cells as such),
"Security" (a site that gives no count says why, on the page, in the client and
in the log: down, its gateway failed, or its gateway refused).
"""

from __future__ import annotations

import logging
from datetime import datetime

import pandas as pd
import pytest
import yaml

from extensions.contracts.clock import JST, FixedClock
from extensions.federation.catalogue import Counts, site_answers
from hub.platform.messages import message
from hub.platform.policy import PolicyError, load_policy_dir
from hub.services import service_port
from hub.services.catalogue.answers import NoAnswer, SiteAnswer, gateway_body, no_answer
from hub.services.catalogue.catalogue import Catalogue, CatalogueError
from hub.services.catalogue.guide import guide_page
from hub.store.registry import ApprovalRegistry


def test_the_demo_catalogue_describes_every_dataset(policy_copy):
    bundle = load_policy_dir(policy_copy)
    assert set(bundle.catalogue) == set(bundle.platform.datasets)
    entry = bundle.catalogue["JGAD000101"].to_json()
    assert entry["site"] == "nig" and entry["kind"] == "analysis"
    assert entry["study"] == "JGAS000101" and entry["reference"] == "GRCh38"


def test_without_a_catalogue_file_datasets_keep_their_platform_titles(policy_copy):
    (policy_copy / "catalogue.yaml").unlink()
    bundle = load_policy_dir(policy_copy)
    assert bundle.catalogue["JGAD000201"].title == bundle.platform.datasets["JGAD000201"].title


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        (
            lambda d: d["datasets"].update(JGAD999999=d["datasets"]["JGAD000101"]),
            "datasets.JGAD999999",
            "no dataset JGAD999999",
        ),
        (
            lambda d: d["datasets"]["JGAD000101"].pop("study"),
            "datasets.JGAD000101.study",
            "missing",
        ),
        (
            lambda d: d["datasets"]["JGAD000101"].update(reference="hg19"),
            "datasets.JGAD000101.reference",
            "",
        ),
        (
            lambda d: d["datasets"]["JGAD000101"].update(release_date="April"),
            "datasets.JGAD000101.release_date",
            "",
        ),
    ],
)
def test_a_bad_catalogue_file_is_refused_naming_the_field(policy_copy, change, field, reason):
    path = policy_copy / "catalogue.yaml"
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    with pytest.raises(PolicyError) as e:
        load_policy_dir(policy_copy)
    issues = [i for i in e.value.issues if i.file.endswith("catalogue.yaml")]
    assert [i.field for i in issues] == [field], e.value.issues
    assert reason in issues[0].reason


def test_filters_are_checked_and_normalised():
    where, by = Catalogue.parse({"sex": ["female"], "icd10": ["E11"], "by": ["age_band"]})
    assert where == {"sex": ["female"], "icd10": ["E11"]} and by == "age_band"
    assert Catalogue.parse({"region": [""]}) == ({}, None)  # an empty filter is no filter


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"sex": ["x"]}, "sex"),
        ({"age_band": ["old"]}, "age_band"),
        ({"region": ["Atlantis"]}, "region"),
        ({"icd10": ["E1"]}, "icd10"),
        ({"by": ["prefecture"]}, "by"),
        ({"user": ["tanaka"]}, "user"),
    ],
)
def test_a_bad_filter_names_itself(args, field):
    with pytest.raises(CatalogueError) as e:
        Catalogue.parse(args)
    assert e.value.status_code == 400 and e.value.field == field and e.value.message


def test_only_a_person_with_an_active_approval_is_admitted(database_url, policy_copy):
    bundle = load_policy_dir(policy_copy)
    clock = FixedClock(datetime(2026, 11, 23, 12, 0, tzinfo=JST))
    registry = ApprovalRegistry(database_url, clock=clock)
    try:
        registry.import_policy(bundle)
        cat = Catalogue(bundle.platform, bundle.catalogue, registry, None, "http://hub", "t", clock)
        assert "JGAD000101" in cat.admit("tanaka")
        for nobody in ("sato", "suzuki", "takahashi"):  # ended, not begun, none
            with pytest.raises(CatalogueError) as e:
                cat.admit(nobody)
            assert e.value.status_code == 403 and "カタログ" in e.value.message
    finally:
        registry.close()


def test_guide_pages_and_their_links():
    title, html = guide_page("")
    assert "データ利用者" in title
    for link in (
        "getting-access",
        "several-sites",
        "what-the-guard-blocks",
        "extensions-and-export",
    ):
        assert f'href="{link}"' in html
    _, html = guide_page("several-sites")
    assert "~/tutorials/02-catalogue.ipynb" in html and ".md" not in html.split("<pre>")[0]
    _, html = guide_page("docs-guard")
    assert "<h1>" in html
    for bad in ("nope", "../README", "docs-../../etc/passwd", "README.md"):
        with pytest.raises(CatalogueError) as e:
            guide_page(bad)
        assert e.value.status_code == 404


def test_service_port():
    assert service_port("http://127.0.0.1:8085") == 8085
    assert service_port("http://10.0.0.2:9000/services/x/") == 9000
    for bad in ("http://127.0.0.1", "http://127.0.0.1:port"):
        with pytest.raises(ValueError, match="JUPYTERHUB_SERVICE_URL"):
            service_port(bad)


def test_counts_show_withheld_sites_and_cells():
    c = Counts(
        filters={"icd10": ["E11"]},
        by="sex",
        total=40,
        complete=False,
        sites=pd.DataFrame(
            {
                "site": ["nig", "ncc"],
                "dataset": ["JGAD000101", "JGAD000201"],
                "status": ["answered", "withheld"],
                "n": [40, None],
            }
        ),
        table=pd.DataFrame({"value": ["female", "male"], "count_nig": [36.0, float("nan")]}),
        min_cell_count=5,
    )
    assert c.withheld_sites == ["ncc"]
    assert "at least" in repr(c)
    html = c._repr_html_()
    assert "withheld / 秘匿 (&lt; 5)" in html and "withheld / 秘匿</td>" in html


# ---------------------------------------------------------------------------
# a site that gives no count says why


@pytest.mark.parametrize(
    ("status", "body", "error", "reason", "code", "cause"),
    [
        (None, None, "[Errno 111] Connection refused", "site_down", None, "Connection refused"),
        (599, None, "Timeout during request", "site_down", None, "Timeout during request"),
        (503, None, "HTTP 503: Service Unavailable", "site_down", None, "proxy answered HTTP 503"),
        (502, None, "HTTP 502: Bad Gateway", "site_down", None, "HTTP 502"),
        (404, None, "HTTP 404: Not Found", "site_down", None, "HTTP 404"),
        (
            500,
            {"status": 500, "code": "gateway_error", "message": "the task failed with OSError"},
            "HTTP 500: Internal Server Error",
            "gateway_error",
            "gateway_error",
            "the task failed with OSError",
        ),
        (
            502,
            {"status": 502, "message": "the hub did not answer (599)"},
            "HTTP 502: Bad Gateway",
            "gateway_error",
            None,
            "the hub did not answer",
        ),
        (500, None, "HTTP 500: Internal Server Error", "gateway_error", None, "HTTP 500"),
        (
            403,
            {"status": 403, "message": "task 'cohort_counts' is not allowed here (allowed: )"},
            "HTTP 403: Forbidden",
            "refused",
            None,
            "is not allowed here",
        ),
        (
            404,
            {"status": 404, "message": "no analysis dataset JGAD000101 at site nig"},
            "HTTP 404: Not Found",
            "refused",
            None,
            "no analysis dataset",
        ),
        (
            400,
            {"status": 400, "code": "bad_parameter", "message": "where.sex: unknown"},
            "HTTP 400: Bad Request",
            "refused",
            "bad_parameter",
            "where.sex",
        ),
        (401, None, "HTTP 401: Unauthorized", "refused", None, "HTTP 401"),
    ],
    ids=[
        "connection-refused",
        "timeout",
        "proxy-503",
        "proxy-502",
        "no-route",
        "gateway-failed",
        "gateway-lost-the-hub",
        "5xx-without-the-gateways-words",
        "task-not-allowed",
        "no-such-dataset",
        "bad-parameter-with-code",
        "4xx-without-the-gateways-words",
    ],
)
def test_no_answer_says_why(status, body, error, reason, code, cause):
    why = no_answer(status, body, error)
    assert (why.reason, why.code) == (reason, code)
    assert cause in why.cause


def test_only_the_gateways_own_json_is_its_answer():
    assert gateway_body(b'{"status": 403, "message": "no"}') == {"status": 403, "message": "no"}
    for other in (None, b"", b"<html>503 Service Unavailable</html>", b'{"error": 1}', b"[1]"):
        assert gateway_body(other) is None


@pytest.mark.parametrize(
    ("reason", "ja", "en"),
    [
        ("site_down", "サイト停止", "site down"),
        ("gateway_error", "ゲートウェイのエラー", "gateway error"),
        ("refused", "拒否", "refused"),
    ],
)
def test_each_reason_reads_in_japanese_and_english(reason, ja, en):
    a = SiteAnswer("ncgm", "JGAD000301", "unavailable", why=NoAnswer(reason, "the cause", "c1"))
    doc = a.to_json()
    assert doc["reason"] == reason and doc["code"] == "c1"
    assert ja in doc["label"]["ja"] and en in doc["label"]["en"]
    for lang in ("ja", "en"):
        assert "ncgm" in doc["text"][lang] and "the cause" in doc["text"][lang]
    assert str(a.text) == f"{doc['text']['ja']} / {doc['text']['en']}"
    answered = SiteAnswer("nig", "JGAD000101", "answered", n=200).to_json()
    assert answered["reason"] is None and answered["text"] is None


def test_a_message_needs_its_fields():
    assert str(message("catalogue.refused.label")) == "応答なし（拒否） / no answer: refused"
    with pytest.raises(KeyError):
        message("catalogue.refused")  # {site} and {cause} not given
    with pytest.raises(KeyError):
        message("no.such.text")


def _gateway_over(root, site):
    from extensions.federation.gateway import Caller, Gateway, GatewayConfig
    from extensions.federation.tasks.base import DisclosureRules

    class TrustedGateway(Gateway):  # every token is the catalogue's: no hub to ask
        async def caller(self, token):
            return Caller("catalogue", "service")

    config = GatewayConfig(site, root, "http://127.0.0.1:1/hub/api", "t", None, None, ("*",))
    return TrustedGateway(config, DisclosureRules(5, 5), FixedClock(datetime.now(JST)))


def _catalogue_at(bundle, url):
    """The catalogue asking the gateways under `url` (the hub's proxy, in the platform)."""
    clock = FixedClock(datetime.now(JST))
    return Catalogue(bundle.platform, bundle.catalogue, None, None, url, "t", clock)


SITES3 = ("ncc", "ncgm", "nig")
EVERYONE = {"by": "sex", "where": {}}


async def _ask_each(bundle, tmp_path):
    """What the catalogue hears from three sites: one whose gateway fails (its Zarr store
    cannot be read), one whose gateway refuses (no such dataset there), one that is down
    (nothing listens). The gateways run here, over loopback, under the routes the hub's
    proxy serves them at."""
    from extensions.federation.gateway import make_app
    from hub.demo.ports import free_port

    entries = {s: next(e for e in bundle.catalogue.values() if e.site == s) for s in SITES3}
    (tmp_path / "ncc" / entries["ncc"].dataset / "genotypes.vcf.zarr").mkdir(parents=True)
    (tmp_path / "ncgm").mkdir()
    answers, servers, gateways = {}, [], []
    try:
        for site in ("ncc", "ncgm"):
            gateways.append(g := _gateway_over(tmp_path / site, site))
            port = free_port()
            app = make_app(g, f"/services/gateway-{site}/")
            servers.append(app.listen(port, address="127.0.0.1"))
            cat = _catalogue_at(bundle, f"http://127.0.0.1:{port}")
            answers[site] = await cat.ask(entries[site], EVERYONE, "tanaka")
        down = _catalogue_at(bundle, f"http://127.0.0.1:{free_port()}")
        answers["nig"] = await down.ask(entries["nig"], EVERYONE, "tanaka")
        female = {"by": "sex", "where": {"sex": ["female"]}}
        again = await down.ask(entries["nig"], female, "tanaka")
        down.site_down_seconds = 0
        once_more = await down.ask(entries["nig"], EVERYONE, "tanaka")
    finally:
        for s in servers:
            s.stop()
        for g in gateways:
            g.pool.shutdown(wait=True)
    return answers, again, once_more


def test_the_catalogue_hears_why_and_logs_it(policy_copy, tmp_path, caplog):
    from tests.aio import run as run_async

    caplog.set_level(logging.INFO)
    bundle = load_policy_dir(policy_copy)
    answers, again, once_more = run_async(_ask_each(bundle, tmp_path))
    assert {s: a.status for s, a in answers.items()} == dict.fromkeys(SITES3, "unavailable")
    failed, refused, down = answers["ncc"], answers["ncgm"], answers["nig"]

    assert failed.why.reason == "gateway_error" and failed.why.code == "gateway_error"
    assert "the task cohort_counts failed with GroupNotFoundError" in failed.why.cause
    assert refused.why.reason == "refused"
    assert "no analysis dataset" in refused.why.cause and "at site ncgm" in refused.why.cause
    assert down.why.reason == "site_down" and "Connection refused" in down.why.cause

    def said(site):
        return [
            r
            for r in caplog.records
            if r.name == "visiting.catalogue" and r.args and r.args[0] == site
        ]

    # one line each, naming the site and the cause, with lazy arguments
    [line] = said("ncc")
    assert line.levelno == logging.ERROR and "GroupNotFoundError" in line.getMessage()
    [line] = said("ncgm")
    assert line.levelno == logging.WARNING and "refused" in line.getMessage()
    assert "no analysis dataset" in line.getMessage()
    # the site found down is not asked again at once (another selection too), then it is
    assert again.why == down.why
    assert [r.levelno for r in said("nig")] == [logging.WARNING, logging.WARNING]
    assert once_more.why.reason == "site_down"
    # the failing gateway logged its traceback (here: the same process)
    assert any(
        r.name == "visiting.gateway" and r.exc_info and r.levelno == logging.ERROR
        for r in caplog.records
    )


def test_the_page_says_why_each_site_gave_no_answer(policy_copy):
    from markupsafe import escape

    from hub.services.catalogue.handlers import PageHandler

    bundle = load_policy_dir(policy_copy)
    sites = [
        SiteAnswer("nig", "JGAD000101", "answered", n=200),
        SiteAnswer("ncc", "JGAD000201", "withheld"),
        SiteAnswer("ncgm", "JGAD000301", "unavailable", why=NoAnswer("site_down", "timeout")),
        SiteAnswer(
            "tommo",
            "JGAD000401",
            "unavailable",
            why=NoAnswer("gateway_error", "the task cohort_counts failed with OSError"),
        ),
        SiteAnswer(
            "imsut",
            "JGAD000501",
            "unavailable",
            why=NoAnswer("refused", "task 'cohort_counts' is not allowed here", "not_allowed"),
        ),
    ]
    counts = {
        "filters": {},
        "by": "sex",
        "rule": {"min_cell_count": 5},
        "sites": [a.to_json() for a in sites],
        "total": {"n": 200, "complete": False},
        "table": [],
        "suppressions": [],
    }
    html = PageHandler.env.get_template("catalogue.html").render(
        user="tanaka",
        platform=bundle.platform,
        prefix="/services/catalogue/",
        values={},
        errors={},
        counts=counts,
        filters=("sex",),
        attributes={"sex": [], "age_band": [], "region": [], "icd10": []},
        datasets=[],
        query="",
    )
    for a in sites[2:]:
        assert f'<span class="error" data-reason="{a.why.reason}">' in html
        assert f"{a.label.ja} / {a.label.en}" in html
        assert escape(a.text.ja) in html and escape(a.text.en) in html
    assert "応答なし（サイト停止） / no answer: site down" in html
    assert "(not_allowed)" in html
    assert "応答なし / no answer" not in html


def test_the_client_shows_why_a_site_gave_no_answer():
    rows = [
        {"site": "nig", "dataset": "JGAD000101", "status": "answered", "n": 40},
        SiteAnswer(
            "ncgm", "JGAD000301", "unavailable", why=NoAnswer("site_down", "timeout")
        ).to_json(),
    ]
    c = Counts(
        filters={},
        by="sex",
        total=40,
        complete=False,
        sites=site_answers(rows),
        table=pd.DataFrame({"value": ["female"], "count_nig": [40.0]}),
        min_cell_count=5,
    )
    assert c.no_answer.to_dict(orient="records") == [
        {
            "site": "ncgm",
            "dataset": "JGAD000301",
            "reason": "site_down",
            "why": str(message("catalogue.site_down", site="ncgm", cause="timeout")),
        }
    ]
    assert "no answer from ncgm: site_down" in repr(c)
    assert "サイト ncgm のゲートウェイに接続できません" in c._repr_html_()
