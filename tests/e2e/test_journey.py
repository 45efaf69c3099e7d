"""A data handler's day in a real browser, and the secretariat ending it.

Debian's Chromium, driven by Playwright (see browser.py), against the demo
stack with its five sites:

1. tanaka logs in at the IdP and sees his sites on the hub's home page;
2. starts his server at nig and JupyterLab opens, with the period banner;
3. opens tutorial 01 and runs all its cells; the notebook prints its OK line
   and the guard's bilingual refusal;
4. makes a copy of a raw file and tries to take it out: opening it from the
   file browser and downloading it by its URL are both refused with the
   guard's message;
5. jimu, the secretariat, suspends him on the admin page, and his open
   JupyterLab loses its server.

A screenshot of each step is kept in tests/artifacts/e2e/. The test asserts on
text in the pages, never on pixels.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.integration.test_tutorials_site import fresh_home

from .browser import chromium, new_page, screenshot

pytestmark = pytest.mark.e2e

TANAKA_SITES = ["ncc", "ncgm", "nig", "tommo"]
BLOCKED_JA = "ダウンロードを禁止しました"
BLOCKED_EN = "Download blocked"
NOTEBOOK = "tutorials/01-getting-started.ipynb"


def log_in(page, hub: str, user: str, path: str = "/hub/home"):
    """Open `path` at the hub; the hub sends the browser to the IdP, where the person logs in."""
    page.goto(f"{hub}{path}")
    page.wait_for_selector("input[name=username]", timeout=60_000)
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", f"{user}-demo")
    page.click("button[type=submit]")


def text_of(page, selector: str = "body") -> str:
    """All text under `selector`, including what JupyterLab keeps out of view."""
    return page.eval_on_selector(selector, "e => e.textContent")


def wait_for_text(page, needle: str, selector: str = "body", timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            text = text_of(page, selector)
        except Exception:  # the page is navigating; ask again
            text = ""
        if needle in text:
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"no {needle!r} in {selector} after {timeout} s:\n{text[-3000:]}")
        page.wait_for_timeout(500)


def test_a_day_at_the_platform_and_a_suspension(stack):
    hub = stack.config.hub_url
    lab_url = f"{hub}/user/tanaka/nig/lab"
    fresh_home(stack, "tanaka", "nig")
    with chromium() as browser:
        page = new_page(browser)
        page.set_default_timeout(60_000)

        # 1. log in at the IdP, land on the home page with his sites
        log_in(page, hub, "tanaka")
        page.wait_for_selector("#visiting-sites", timeout=60_000)
        screenshot(page, "01-home")
        rows = page.eval_on_selector_all(
            "#visiting-sites tr.visiting-site", "rs => rs.map(r => r.dataset.serverName)"
        )
        assert sorted(rows) == TANAKA_SITES
        home = text_of(page)
        assert "J-DU000101" in home and "User guide" in home
        assert page.get_attribute("#visiting-exports", "href") == "/services/admin/exports"

        # 2. start the server at nig; JupyterLab opens with the period banner
        page.click("#start-nig")
        page.wait_for_url(re.compile(r".*/user/tanaka/nig/lab.*"), timeout=240_000)
        page.wait_for_selector("#jp-main-dock-panel", timeout=120_000)
        banner = wait_for_text(page, "J-DU000101", "#visiting-period-banner", timeout=60)
        assert "2035-03-31" in banner or "days" in banner, banner
        screenshot(page, "02-lab-with-banner")

        # 3. the first tutorial, run all
        page.goto(f"{lab_url}/tree/{NOTEBOOK}")
        page.wait_for_selector(".jp-Notebook", timeout=120_000)
        wait_for_text(page, "Idle", ".jp-StatusBar-Item, #jp-main-statusbar", timeout=120)
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        notebook = wait_for_text(page, "OK {'site': 'nig'", ".jp-Notebook", timeout=300)
        assert BLOCKED_JA in notebook and BLOCKED_EN in notebook
        assert "Traceback" not in notebook
        screenshot(page, "03-tutorial-01-run")

        # 4. a raw file in his home cannot be taken out: not opened from the file browser...
        page.locator(".jp-Notebook .jp-Cell").last.click()
        page.keyboard.press("Escape")
        page.keyboard.press("b")
        page.keyboard.press("Enter")
        page.keyboard.type(
            "import os, shutil\n"
            "d = [x for x in os.environ['VISITING_DATASETS'].split(',') "
            "if os.path.exists(f'/data/{x}/genotypes.vcf.gz')][0]\n"
            "shutil.copy(f'/data/{d}/genotypes.vcf.gz', 'cohort.vcf.gz'); print('copied')"
        )
        page.keyboard.press("Shift+Enter")
        wait_for_text(page, "copied", ".jp-Notebook", timeout=60)
        page.locator('[data-command="filebrowser:refresh"]').first.click()
        item = page.locator(".jp-DirListing-item", has_text="cohort.vcf.gz")
        item.first.wait_for(timeout=30_000)
        item.first.dblclick()
        dialog = wait_for_text(page, BLOCKED_JA, ".jp-Dialog", timeout=60)
        assert BLOCKED_EN in dialog and "cohort.vcf.gz" in dialog
        screenshot(page, "04-open-raw-file-blocked")
        page.keyboard.press("Escape")

        # ...nor downloaded by its URL
        tab = page.context.new_page()
        response = tab.goto(f"{hub}/user/tanaka/nig/files/tutorials/cohort.vcf.gz?download=1")
        assert response.status == 403
        refused = text_of(tab)
        assert BLOCKED_JA in refused and BLOCKED_EN in refused
        screenshot(tab, "05-download-raw-file-blocked")
        tab.close()

        # 5. the secretariat suspends him on the admin page
        jimu = new_page(browser)
        log_in(jimu, hub, "jimu", "/services/admin/")
        jimu.wait_for_selector("#suspend-form", timeout=60_000)
        jimu.fill("#suspend-form input[name=user]", "tanaka")
        jimu.fill("#suspend-form input[name=reason]", "browser journey: shared his account")
        jimu.click("#suspend-form button")
        wait_for_text(jimu, "suspend", "#flash", timeout=60)
        row = wait_for_text(jimu, "browser journey", '#suspensions tr[data-user="tanaka"].active')
        assert "jimu" in row and "停止中 / in force" in row
        screenshot(jimu, "06-secretariat-suspends")

        # his open JupyterLab loses its server
        lost = ""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            lost = text_of(page)
            if re.search(
                r"not running|unreachable|Server Not Running|Server unavailable", lost, re.I
            ):
                break
            page.wait_for_timeout(1000)
        screenshot(page, "07-lab-lost-its-server")
        assert re.search(r"not running|unreachable|Server unavailable", lost, re.I), lost[-2000:]
