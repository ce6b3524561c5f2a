"""A real headless Chromium (Debian's, installed by .ci/run) driven by Playwright; its
screenshots are kept in ``test-artifacts/``."""
import pathlib

import pytest

from server import ROOT

CHROMIUM = pathlib.Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


ARTIFACTS = ROOT / "test-artifacts"
# A page init script: every text a chart draws on its canvas is kept in window.chartTexts.
RECORD_CHART_TEXT = """
window.chartTexts = new Set();
const fillText = CanvasRenderingContext2D.prototype.fillText;
CanvasRenderingContext2D.prototype.fillText = function (text, ...rest) {
  window.chartTexts.add(String(text));
  (this.canvas.texts ??= new Set()).add(String(text));  // what this one chart drew
  return fillText.call(this, text, ...rest);
};
"""


@pytest.fixture
def screenshot(request):
    """Keep a full-page screenshot named after the test."""
    def take(page, what):
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / f"{request.node.name}-{what}.png", full_page=True)
    return take


@pytest.fixture(scope="session")
def chromium():
    """One Chromium for the whole run (starting one takes a second or two); each test has
    its own contexts (cookies, storage) in it."""
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def open_page(chromium):
    """Opens a page in a real Chromium, with Playwright's context options (a phone's
    viewport unless told, e.g. ``locale="de-DE"``); the page keeps its console's errors."""
    contexts = []

    def open_page(**options):
        contexts.append(chromium.new_context(**dict({"viewport": {"width": 390, "height": 844}}, **options)))
        page = contexts[-1].new_page()
        page.console_errors = []
        page.on("console", lambda message: message.type == "error" and page.console_errors.append(message.text))
        page.on("pageerror", lambda error: page.console_errors.append(str(error)))
        return page

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def browser_page(open_page):
    return open_page()
