"""The user guide for data handlers (docs/researchers), rendered for the browser."""

from __future__ import annotations

import re

from hub.platform.traits import REPO_ROOT
from hub.services.catalogue.catalogue import CatalogueError

GUIDE_DIR = REPO_ROOT / "docs" / "researchers"


def guide_page(name: str) -> tuple[str, str]:
    """(title, HTML) of one page of the user guide; CatalogueError 404 for an unknown one.

    The guide is docs/researchers/*.md; it links to the project's technical
    pages (docs/*.md, served here as `docs-<name>`) and the README (`readme`).
    """
    import mistune

    if not re.fullmatch(r"[a-z0-9-]*", name):
        raise CatalogueError(404, f"no guide page {name!r}")
    if name == "readme":
        path = REPO_ROOT / "README.md"
    elif name.startswith("docs-"):
        path = GUIDE_DIR.parent / f"{name.removeprefix('docs-')}.md"
    else:
        path = GUIDE_DIR / f"{name or 'README'}.md"
    if not path.is_file():
        raise CatalogueError(404, f"no guide page {name!r}")
    text = path.read_text(encoding="utf-8")
    # a tutorial is in the reader's own JupyterLab, under ~/tutorials
    text = re.sub(r"\[([^\]]+)\]\((?:\.\./)*notebooks/([^)]*)\)", r"\1 (`~/tutorials/\2`)", text)
    # links between pages work in the browser too
    text = re.sub(r"\]\((?:\.\./)+README\.md\)", "](readme)", text)
    text = re.sub(r"\]\(\.\./([a-z0-9-]+)\.md(#[^)]*)?\)", r"](docs-\1\2)", text)
    if name == "readme":
        text = re.sub(r"\]\(docs/researchers/([a-z0-9-]+)\.md(#[^)]*)?\)", r"](\1\2)", text)
        text = re.sub(r"\]\(docs/researchers/?\)", "](./)", text)
        text = re.sub(r"\]\(docs/([a-z0-9-]+)\.md(#[^)]*)?\)", r"](docs-\1\2)", text)
    elif path.parent == GUIDE_DIR:
        text = re.sub(r"\]\((?:\./)?([a-z0-9-]+)\.md(#[^)]*)?\)", r"](\1\2)", text)
    else:  # a technical page: its neighbours are docs-<name>, the guide is researchers/
        text = re.sub(r"\]\(researchers/([a-z0-9-]+)\.md(#[^)]*)?\)", r"](\1\2)", text)
        text = re.sub(r"\]\((?:\./)?([a-z0-9-]+)\.md(#[^)]*)?\)", r"](docs-\1\2)", text)
    text = text.replace("](README)", "](./)")
    title = next((ln.lstrip("# ").strip() for ln in text.splitlines() if ln.startswith("# ")), name)
    return title, mistune.html(text)
