"""The browser tools work on this machine: Debian's Chromium under Playwright opens a
local page with Japanese text, runs its script on a click, and is screenshotted."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.e2e.browser import ARTIFACTS, LOCALE, chromium, new_page, screenshot

pytestmark = pytest.mark.e2e

PAGE = """<!doctype html>
<html lang="ja">
<head><meta charset="utf-8"><title>ブラウザの試験</title></head>
<body>
  <h1 id="greeting">こんにちは、日本語のページです</h1>
  <button id="press" type="button">押してください</button>
  <p id="status">まだ押されていません</p>
  <script>
    document.getElementById("press").addEventListener("click", () => {
      document.getElementById("status").textContent = "押されました：日本語 OK";
    });
  </script>
</body>
</html>
"""


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture
def site(tmp_path) -> Iterator[str]:
    """A static site on 127.0.0.1, on a port the system picks; its base URL."""
    (tmp_path / "index.html").write_text(PAGE, encoding="utf-8")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def platform_fonts(page, selector: str) -> set[str]:
    """The font families Chromium drew the element's text with (DevTools protocol)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument")["root"]["nodeId"]
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
    fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
    return {f["familyName"] for f in fonts}


def test_click_changes_japanese_text_and_screenshot(site):
    from playwright.sync_api import expect

    with chromium() as browser:
        page = new_page(browser)
        response = page.goto(f"{site}/index.html")
        assert response is not None and response.ok

        assert page.title() == "ブラウザの試験"
        expect(page.locator("#greeting")).to_have_text("こんにちは、日本語のページです")
        expect(page.locator("#status")).to_have_text("まだ押されていません")
        assert page.evaluate("navigator.language") == LOCALE

        page.get_by_role("button", name="押してください").click()
        expect(page.locator("#status")).to_have_text("押されました：日本語 OK")

        # the Japanese was drawn with a CJK font (fonts-noto-cjk), not as missing glyphs
        assert any("CJK" in family for family in platform_fonts(page, "#greeting"))

        path = screenshot(page, "browser_tools")
        assert path.parent == ARTIFACTS
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
