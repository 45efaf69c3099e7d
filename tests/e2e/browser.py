"""A real browser for the end-to-end tests: Debian's Chromium, driven by Playwright.

`make setup` installs both: the Debian package `chromium` (scripts/setup.sh) and
Playwright for Python (the dev extra in pyproject.toml). Playwright's own browser
builds are never downloaded (`playwright install` is not run): the browser is
launched from Debian's binary with `executable_path=`.

`chromium()` yields a headless Browser; `new_page(browser)` opens a page with the
tests' locale and viewport; `screenshot(page, name)` keeps a full-page PNG in
tests/artifacts/e2e/ (gitignored) for a person to look at. Tests assert on the
page's text, never on pixels.

A missing Chromium or Playwright is a test failure, not a skip: `make setup`
installs them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: Where screenshots go; made on first use, ignored by git.
ARTIFACTS = REPO / "tests" / "artifacts" / "e2e"
#: Debian's launcher for its Chromium build (package `chromium`).
CHROMIUM = Path("/usr/bin/chromium")
LOCALE = "en-US"
VIEWPORT = {"width": 1280, "height": 800}
#: Extra command-line switches for Chromium. As root (as in the containers and on CI)
#: Chromium will not start with its sandbox, hence --no-sandbox; /dev/shm is small in
#: many containers, hence --disable-dev-shm-usage (shared memory goes to /tmp);
#: --lang sets the UI language and the default Accept-Language.
LAUNCH_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", f"--lang={LOCALE}"]


def chromium_path() -> Path:
    """Debian's Chromium; a test failure naming `make setup` when it is not installed."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"Chromium is not installed ({CHROMIUM} is missing): run `make setup`, "
            "which installs the Debian package `chromium`",
            pytrace=False,
        )
    return CHROMIUM


@contextmanager
def chromium(*, headless: bool = True) -> Iterator:
    """A headless Chromium (playwright.sync_api.Browser), closed when the block ends."""
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "Playwright for Python is not installed: run `make setup` (dev extra)",
            pytrace=False,
        )
    # LANG/LANGUAGE as well as --lang: Chromium on Linux also reads the locale from them.
    env = {**os.environ, "LANG": "en_US.UTF-8", "LANGUAGE": "en_US:en"}
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(executable),
            headless=headless,
            args=LAUNCH_ARGS,
            env=env,
        )
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser, **context_options):
    """A page in a fresh context with the tests' locale and viewport (overridable)."""
    options = {"locale": LOCALE, "viewport": VIEWPORT, **context_options}
    context = browser.new_context(**options)
    return context.new_page()


def screenshot(page, name: str) -> Path:
    """Save a full-page PNG of `page` as tests/artifacts/e2e/<name>.png; returns its path."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "screenshot"
    if not stem.endswith(".png"):
        stem += ".png"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / stem
    page.screenshot(path=str(path), full_page=True)
    return path
