"""The one table of texts a person reads (hub.platform.messages): each key in both
languages with the same fields, every key the code names exists, and no module of hub/
keeps Japanese/English pairs of its own.

Stray pairs are found the way tests/unit/extensions/contracts/test_contracts.py finds stray contracts: by
grepping the project's tracked Python files for the shapes a pair takes.
"""

from __future__ import annotations

import re
import string
import subprocess
from pathlib import Path

import pytest

from hub.platform import messages
from hub.platform.messages import LANGS, MESSAGES, message
from hub.platform.messages import access as access_part
from hub.platform.messages import export as export_part
from hub.platform.messages import report as report_part
from hub.platform.messages import services as services_part
from hub.report import layout, texts

REPO = Path(__file__).resolve().parents[4]
TABLE = "hub/platform/messages/"

#: modules whose texts have not moved into the table yet (a path, or a folder ending in /);
#: each is a place to look, and the list may only shrink
NOT_YET_IN_THE_TABLE: dict[str, str] = {}


def hub_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "hub/*.py"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    return [f for f in out if not f.startswith(TABLE) and (REPO / f).exists()]


def places(pattern: str) -> list[str]:
    found = []
    for rel in hub_files():
        for n, line in enumerate((REPO / rel).read_text(encoding="utf-8").splitlines(), 1):
            if not line.lstrip().startswith("#") and re.search(pattern, line):
                found.append(f"{rel}:{n}: {line.strip()}")
    return found


def pending(place: str) -> bool:
    path = place.split(":", 1)[0]
    return any(path == p or (p.endswith("/") and path.startswith(p)) for p in NOT_YET_IN_THE_TABLE)


def fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


# ---------------------------------------------------------------------------
# the table


@pytest.mark.parametrize("key", sorted(MESSAGES))
def test_every_key_has_both_languages_with_the_same_fields(key):
    texts_of = MESSAGES[key]
    assert tuple(texts_of) == LANGS, f"{key}: languages {tuple(texts_of)}"
    assert all(isinstance(v, str) and v.strip() for v in texts_of.values()), key
    assert fields(texts_of["ja"]) == fields(texts_of["en"]), key


def test_keys_are_dotted_names_each_in_one_part():
    for key in MESSAGES:
        assert re.fullmatch(r"[a-z][a-z_]*(\.[a-z0-9][a-z0-9_-]*)+", key), key
    assert all(k.startswith("report.") for k in report_part.TEXTS)
    assert not any(k.startswith("report.") for k in services_part.TEXTS)
    assert all(k.startswith("export.") for k in export_part.TEXTS)
    parts = (report_part, services_part, access_part, export_part)
    assert len(MESSAGES) == sum(len(part.TEXTS) for part in parts)


def test_a_key_written_in_two_parts_stops_the_import():
    with pytest.raises(ValueError, match="written twice: admin.service.up"):
        messages._one_table(services_part.TEXTS, {"admin.service.up": {"ja": "x", "en": "x"}})


def test_a_message_fills_its_fields_in_both_languages():
    m = message("admin.egress.title", days=30)
    assert (m.ja, m.en) == (
        "持ち出しの警告と上限（直近 30 日）",
        "Egress alerts and caps (last 30 days)",
    )
    assert str(m) == f"{m.ja} / {m.en}"
    with pytest.raises(KeyError):
        message("admin.egress.title")


# ---------------------------------------------------------------------------
# the keys the code names


def literal_keys(pattern: str, under: str) -> set[str]:
    found = set()
    for rel in hub_files():
        if rel.startswith(under):
            found |= set(re.findall(pattern, (REPO / rel).read_text(encoding="utf-8")))
    return found


def test_every_literal_key_the_hub_names_exists():
    named = literal_keys(r"\bmessage\(\s*[\"']([\w.-]+)[\"']", "hub/")
    assert named and named <= set(MESSAGES), sorted(named - set(MESSAGES))


def test_every_text_the_report_names_exists():
    named = literal_keys(r"\bt\(\s*[\"'](\w+)[\"']\s*[,)]", "hub/report/")
    assert len(named) > 50
    assert {f"report.{k}" for k in named} <= set(MESSAGES)
    for key in layout.RULES:
        assert texts.rule(key, "en")


def test_the_report_reads_its_texts_from_the_table():
    assert texts.t("title_annual", "en", year=2026) == "Annual data-usage report, fiscal year 2026"
    assert texts.t("provisional", "ja") == MESSAGES["report.provisional"]["ja"]  # unformatted
    assert texts.CHECKLIST[0] == "security-manager" and len(texts.CHECKLIST) == 8
    assert texts.checklist_item("changes", "en").startswith("Every change to the application")
    assert texts.block_reason("raw-name", "en") == "a raw-data file name (raw-name)"
    assert texts.block_reason("something-new", "ja") == "something-new"
    assert texts.rule_name("min_count", "en") == "too few people (min_count)"
    assert texts.rule_name("unknown_rule", "en") == "unknown_rule"
    assert texts.rule_name(None, "ja") == "-"


# ---------------------------------------------------------------------------
# no pairs elsewhere

PAIR_SHAPES = [
    ("a dict keyed by language", r"(^|[{,])\s*[\"'](ja|en)[\"']\s*:"),
    ("a text chosen by language", r"\bif\s+lang\s*==\s*[\"'](ja|en)[\"']\s+else\b"),
    # a person's or a site's name in two languages is data from the policy files
    ("fields or arguments in pairs", r"\b(?!name_)\w+_(ja|en)\s*=(?!=)"),
    ("Japanese text", r"[\u3040-\u30ff\u3400-\u9fff\uff00-\uffef]"),
]


@pytest.mark.parametrize("what, pattern", PAIR_SHAPES, ids=[w for w, _ in PAIR_SHAPES])
def test_no_module_of_hub_keeps_its_own_pairs(what, pattern):
    stray = [p for p in places(pattern) if not pending(p)]
    assert stray == [], f"{what} outside {TABLE}: put the text in the table and look it up by key"


def test_the_report_has_no_text_of_its_own():
    for shape, pattern in PAIR_SHAPES:
        assert [p for p in places(pattern) if p.startswith("hub/report/")] == [], shape
