"""The catalogue's pure parts: its metadata file, filters, the guide pages, the client's view.

Rules checked: "Bad input" (a wrong filter or catalogue file names what is
wrong), "No disclosure" (the client shows withheld sites and cells as such).
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest
import yaml

from extensions.analysis.catalogue import Counts
from hub.periods import JST, FixedClock
from hub.policy import PolicyError, load_policy_dir
from hub.registry import ApprovalRegistry
from hub.services import service_port
from hub.services.catalogue import Catalogue, CatalogueError, guide_page


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
