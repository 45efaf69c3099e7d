"""Every relative link and image of the README and the docs names a file of the repository
(a screenshot the README shows, a page a tutorial points to): a moved or missing file is a
failure here, not a broken page for a reader."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: [text](target) and ![alt](target); the target up to a space, a quote or ")"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s\"']+)")
PAGES = sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md"), *(REPO / "bench").glob("*.md")])


def relative_targets(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    out = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith(("#", "/", "<")):
            continue  # a URL, an anchor on the page, a path on the hub
        out.append(target.split("#", 1)[0])
    return [t for t in out if t]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_names_a_file(page):
    missing = [t for t in relative_targets(page) if not (page.parent / t).exists()]
    assert not missing, f"{page.relative_to(REPO)} links to missing files: {missing}"


def test_the_readme_shows_the_airlock_journey():
    images = [t for t in relative_targets(REPO / "README.md") if t.endswith(".png")]
    assert any("airlock" in t for t in images), images
