"""Publishing a plot and a table from the airlock site, in a real browser.

Debian's Chromium, driven by Playwright (see browser.py), against the demo stack, where
ncc keeps its files behind the export airlock:

1. yamada starts her server at ncc; her results are in her home (a plot and a table of
   counts per group);
2. she right-clicks the folder in JupyterLab's file browser, "Request export / 持ち出し申請",
   writes the purpose, and sees the request frozen and checked at once; the panel lists it;
3. a direct download of the same plot is refused and names the airlock;
4. admin-ncc (the site's admin) and jimu (the secretariat) each open the request on the
   review page, see the files rendered beside their checks, and approve with a reason;
5. she downloads the files from the hub's page: exactly the bytes frozen at the request,
   though she edited the table afterwards.

A screenshot of each step is kept in tests/artifacts/e2e/ (the README shows them). The
test asserts on text and attributes in the pages, never on pixels.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.integration.test_export_airlock_site import RESULTS_SCRIPT
from tests.integration.test_sites import (  # noqa: F401  (engine: a fixture)
    Researcher,
    container_of,
    engine,
    sh,
)
from tests.integration.test_tutorials_site import fresh_home

from .browser import chromium, new_page, screenshot
from .test_journey import log_in, text_of, wait_for_text

pytestmark = pytest.mark.e2e

SITE = "ncc"
USER = "yamada"
HOME = "/home/jovyan"
PURPOSE = "Figure 1 and Table 2 of our paper"
MAKE_RESULTS = RESULTS_SCRIPT + f"cd {HOME}/results && sha256sum figure1.png table2.csv\n"


def review(
    browser, hub: str, reviewer: str, request_id: str, reason: str, shot: str, state: str
) -> str:
    """`reviewer` opens the request on the review page (in `state`, as the page says in
    both languages) and approves it; the new state."""
    page = new_page(browser)
    page.set_default_timeout(60_000)
    log_in(page, hub, reviewer, f"/services/admin/review/{request_id}")
    page.wait_for_selector("#review-form", timeout=60_000)
    shown = text_of(page)
    assert "figure1.png" in shown and "table2.csv" in shown and PURPOSE in shown
    # the table is rendered as a table beside its checks
    assert "controls" in shown and "340" in shown
    assert state in text_of(page, "#request"), text_of(page, "#request")
    page.check('#review-form input[name=decision][value="approve"]')
    page.fill("#review-form textarea[name=reason]", reason)
    screenshot(page, shot)
    page.click("#review-form button[type=submit]")
    # back on the queue, which says what was done
    assert request_id in wait_for_text(page, request_id, "#flash", timeout=60)
    page.goto(f"{hub}/services/admin/review/{request_id}")
    state = page.get_attribute(f'#request[data-request="{request_id}"]', "data-state")
    page.context.close()
    return state


@pytest.fixture
def yamada_at_ncc(stack):
    """Her home at ncc as a newcomer's; her server there stopped when the journey ends."""
    fresh_home(stack, USER, SITE)
    yield
    yamada = Researcher(stack, USER)
    me = yamada.session.get(f"{yamada.hub}/hub/api/users/{USER}", headers=yamada._headers())
    if SITE in me.json().get("servers", {}):
        yamada.stop(SITE)


def test_a_plot_and_a_table_leave_ncc_through_the_airlock(stack, engine, yamada_at_ncc):  # noqa: F811
    hub = stack.config.hub_url
    with chromium() as browser:
        page = new_page(browser, accept_downloads=True)
        page.set_default_timeout(60_000)

        # 1. her server at ncc, and her results in her home
        log_in(page, hub, USER)
        page.wait_for_selector(f"#start-{SITE}", timeout=60_000)
        page.click(f"#start-{SITE}")
        page.wait_for_url(f"**/user/{USER}/{SITE}/lab**", timeout=240_000)
        page.wait_for_selector("#jp-main-dock-panel", timeout=120_000)
        code, out = sh(container_of(engine, USER, SITE), MAKE_RESULTS, user="1000")
        assert code == 0, out
        made = {line.split()[1]: line.split()[0] for line in out.strip().splitlines()[-2:]}
        assert set(made) == {"figure1.png", "table2.csv"}, out

        # 2. the request from the file browser's context menu
        page.locator('[data-command="filebrowser:refresh"]').first.click()
        folder = page.locator(".jp-DirListing-item", has_text="results").first
        folder.wait_for(timeout=30_000)
        folder.click(button="right")
        item = page.locator('.lm-Menu [data-command="visiting:request-export"]')
        assert "Request export / 持ち出し申請" in item.first.inner_text()
        item.first.click()
        page.wait_for_selector("#visiting-export-purpose", timeout=30_000)
        page.fill("#visiting-export-purpose", PURPOSE)
        screenshot(page, "11-airlock-request-dialog")
        page.click("button.visiting-export-submit")
        result = page.wait_for_selector(".visiting-export-result[data-export-id]", timeout=300_000)
        request_id = result.get_attribute("data-export-id")
        assert result.get_attribute("data-export-state") == "checked", text_of(page, ".jp-Dialog")
        screenshot(page, "12-airlock-request-checked")
        page.click(".jp-Dialog button.jp-mod-accept")
        # the panel opens by itself after a request; else its tab in the left bar opens it
        if not page.locator("#visiting-exports-panel").is_visible():
            page.locator('.lm-TabBar-tab[data-id="visiting-exports-panel"]').first.click()
        row = f'#visiting-exports-panel li[data-export-id="{request_id}"]'
        page.wait_for_selector(row, timeout=60_000)
        assert page.get_attribute(row, "data-export-state") == "checked"
        assert PURPOSE in text_of(page, row)
        screenshot(page, "13-airlock-panel")

        # 3. no direct download at an airlock site
        tab = page.context.new_page()
        response = tab.goto(f"{hub}/user/{USER}/{SITE}/files/results/figure1.png")
        assert response.status == 403
        refused = text_of(tab)
        assert "持ち出し申請（エアロック）" in refused and "the airlock" in refused
        screenshot(tab, "14-airlock-direct-download-refused")
        tab.close()

        # she edits the table after asking: what is released is what was frozen
        code, out = sh(
            container_of(engine, USER, SITE),
            f"echo 'D,1,2' >> {HOME}/results/table2.csv",
            user="1000",
        )
        assert code == 0, out

        # 4. two reviewers, neither of them her
        first = review(browser, hub, "admin-ncc", request_id, "counts per group of 80 and more",
                       "15-airlock-review-site-admin",
                       "自動チェック済み・審査待ち / checked, awaiting review")  # fmt: skip
        assert first == "under-review"
        second = review(browser, hub, "jimu", request_id, "fine to publish",
                        "16-airlock-review-secretariat", "審査中 / under review")  # fmt: skip
        assert second == "approved"
        page.click('#visiting-exports-panel button[data-action="refresh"]')
        page.wait_for_selector(f'{row}[data-export-state="approved"]', timeout=60_000)
        screenshot(page, "17-airlock-panel-approved")

        # 5. her download, from the hub's page outside her container
        page.goto(f"{hub}/services/admin/exports")
        section = f'section[data-export-id="{request_id}"]'
        page.wait_for_selector(f"{section} a.export-download", timeout=60_000)
        screenshot(page, "18-airlock-release-page")
        links = page.locator(f"{section} a.export-download")
        got = {}
        for i in range(links.count()):
            link = links.nth(i)
            with page.expect_download() as download:
                link.click()
            data = Path(download.value.path()).read_bytes()
            got[download.value.suggested_filename] = hashlib.sha256(data).hexdigest()
            assert got[download.value.suggested_filename] == link.get_attribute("data-sha256")
        assert got == made
        page.reload()
        wait_for_text(page, "released", section, timeout=30)
