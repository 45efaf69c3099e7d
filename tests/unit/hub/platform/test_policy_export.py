"""The platform file's export airlock: a site's `downloads` and `rules.export`.

Rules checked: "Publication" (results leave through the airlock where a site requires it,
with the checks' thresholds and the reviewers the file names), "Bad input" (a bad field
stops the platform at start-up naming the file and the field).
"""

from __future__ import annotations

import pytest
import yaml

from extensions.contracts.export import ExportRules
from hub.platform.policy import ExportPolicy, PolicyError, load_policy_dir


def _edit_platform(d, change):
    path = d / "platform.yaml"
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))


def test_the_demo_has_one_airlock_site_with_the_default_export_rules(policy_copy):
    bundle = load_policy_dir(policy_copy)
    p = bundle.platform
    assert {s.id: s.downloads for s in p.sites.values()} == {
        "nig": "direct",
        "ncc": "airlock",
        "ncgm": "direct",
        "tommo": "direct",
        "imsut": "direct",
    }
    # the airlock site's own admin, who reviews with the secretariat
    assert bundle.accounts["admin-ncc"].roles == ("site-admin:ncc",)
    assert p.export == ExportPolicy()
    assert p.export.reviewers == ("site-admin", "secretariat") and p.export.release_days == 7
    assert p.export.checks == ExportRules()


def test_a_site_with_an_airlock_and_its_rules(policy_copy):
    def change(doc):
        doc["sites"][1]["downloads"] = "airlock"
        doc.setdefault("rules", {})["export"] = {
            "allowed_suffixes": [".PNG", ".csv"],
            "max_file_bytes": "10M",
            "max_request_bytes": 50 * 1024**2,
            "max_files": 3,
            "min_cell_count": 10,
            "dominance_share": 0.8,
            "reviewers": ["secretariat"],
            "release_days": 14,
        }

    _edit_platform(policy_copy, change)
    p = load_policy_dir(policy_copy).platform
    site = list(p.sites.values())[1]
    assert site.downloads == "airlock"
    assert [s.downloads for s in p.sites.values()].count("airlock") == 1
    checks = p.export.checks
    assert checks.allowed_suffixes == (".png", ".csv")
    assert (checks.max_file_bytes, checks.max_request_bytes) == (10 * 1024**2, 50 * 1024**2)
    assert (checks.max_files, checks.min_cell_count, checks.dominance_share) == (3, 10, 0.8)
    assert checks.min_minor_allele_count == ExportRules().min_minor_allele_count  # left out
    assert p.export.reviewers == ("secretariat",) and p.export.release_days == 14
    # what the site's checks read is the contract's own JSON
    assert ExportRules.from_json(checks.to_json()) == checks


BAD = [
    ("downloads-unknown-mode", lambda d: d["sites"][0].update(downloads="email"),
     "sites[0].downloads", "'email' is not one of"),
    ("reviewer-unknown-role", lambda d: d["rules"].update(export={"reviewers": ["pi"]}),
     "rules.export.reviewers[0]", "'pi' is not one of"),
    ("reviewers-none", lambda d: d["rules"].update(export={"reviewers": []}),
     "rules.export.reviewers", ""),
    ("reviewer-twice", lambda d: d["rules"].update(
        export={"reviewers": ["secretariat", "secretariat"]}),
     "rules.export.reviewers", ""),
    ("release-days-zero", lambda d: d["rules"].update(export={"release_days": 0}),
     "rules.export.release_days", "minimum of 1"),
    ("max-files-not-a-number", lambda d: d["rules"].update(export={"max_files": "many"}),
     "rules.export.max_files", ""),
    ("file-size-nonsense", lambda d: d["rules"].update(export={"max_file_bytes": "huge"}),
     "rules.export.max_file_bytes", ""),
    ("suffix-without-dot", lambda d: d["rules"].update(export={"allowed_suffixes": ["csv"]}),
     "rules.export.allowed_suffixes[0]", ""),
    ("share-over-one", lambda d: d["rules"].update(export={"dominance_share": 1.5}),
     "rules.export.dominance_share", ""),
    ("unknown-rule", lambda d: d["rules"].update(export={"max_people": 3}),
     "rules.export", "max_people"),
    ("request-smaller-than-a-file", lambda d: d["rules"].update(
        export={"max_file_bytes": "10M", "max_request_bytes": "1M"}),
     "rules.export.max_request_bytes", "less than max_file_bytes"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "field", "reason"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_a_bad_export_field_is_refused_naming_it(policy_copy, change, field, reason):
    _edit_platform(policy_copy, lambda doc: (doc.setdefault("rules", {}), change(doc)))
    with pytest.raises(PolicyError) as e:
        load_policy_dir(policy_copy)
    issues = [i for i in e.value.issues if i.file.endswith("platform.yaml")]
    assert [i.field for i in issues] == [field], e.value.issues
    assert reason in issues[0].reason
