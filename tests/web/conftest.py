"""Browser tests of the web UI: a real ``vidsync serve`` process and Debian's headless Chromium,
driven by Playwright (its own browser downloads are not used).

The UI must be built first (``make web``, or ``npm ci && npm run build`` in ``web/``). Set
``VIDSYNC_SCREENSHOTS=docs/screenshots`` to save the screenshots shown in the READMEs.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from web_support import LATENCIES, ROOT, sign_in

from vidsync.testing import ServerProcess

STATIC_INDEX = ROOT / "src" / "vidsync" / "web" / "static" / "index.html"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]

def pytest_terminal_summary(terminalreporter) -> None:
    for label, values in LATENCIES.items():
        if values:
            what = label if "->" in label else f"POST files/update -> sync badge shown ({label})"
            terminalreporter.write_line(
                f"{what}, n={len(values)}: "
                f"min {min(values):.1f} ms, median {statistics.median(values):.1f} ms, "
                f"max {max(values):.1f} ms")


@pytest.fixture(scope="session")
def built_ui() -> None:
    if not STATIC_INDEX.is_file():
        pytest.fail("the web UI is not built: run `make web` (npm ci && npm run build in web/)")


# Per module, not per session: while sync Playwright runs, its event loop counts as running in
# this thread, so a later test's asyncio.run() in the same test process would fail.
@pytest.fixture(scope="module")
def browser(built_ui) -> Iterator:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """``start_server("--no-websocket")``: a new server on its own data dir, stopped afterwards.
    Ready once it serves the UI's page, not only /healthz."""
    servers: list[ServerProcess] = []

    def start(*args: str) -> ServerProcess:
        server = ServerProcess(tmp_path / f"server{len(servers)}", list(args), ready_path="/")
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


# Reports every Content-Security-Policy violation in any page of the context to the test.
REPORT_CSP_VIOLATIONS = """document.addEventListener('securitypolicyviolation', (e) =>
  window.reportCspViolation(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'}`
    + ` (${e.sourceFile}:${e.lineNumber})`));"""


@pytest.fixture
def new_page(browser) -> Iterator[Callable[..., object]]:
    """A page in a fresh browser context (own storage, so own login). ``token`` logs it in.

    Whatever the test does, the page must run under the server's CSP without a violation: each
    one is collected in ``page.csp_violations`` and fails the test at the end (a test that
    provokes one on purpose takes it out of the list)."""
    contexts = []
    pages = []

    def make(base_url: str, token: str | None = None, width: int = 1280, height: int = 900):
        context = browser.new_context(base_url=base_url,
                                      viewport={"width": width, "height": height})
        context.set_default_timeout(15_000)
        contexts.append(context)
        violations: list[str] = []
        context.expose_function("reportCspViolation", lambda v: violations.append(v))
        context.add_init_script(REPORT_CSP_VIOLATIONS)
        page = context.new_page()
        page.csp_violations = violations
        pages.append(page)
        if token:
            sign_in(page, base_url, token)
        return page

    yield make
    for context in contexts:
        context.close()
    found = [v for page in pages for v in page.csp_violations]
    assert not found, f"Content-Security-Policy violations: {found}"


@pytest.fixture
def screenshot() -> Callable[..., None]:
    """Saves a screenshot under $VIDSYNC_SCREENSHOTS when set; does nothing otherwise."""
    target = os.environ.get("VIDSYNC_SCREENSHOTS")

    def save(page, name: str, full_page: bool = True) -> None:
        if target:
            out = ROOT / target
            out.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out / f"{name}.png"), full_page=full_page,
                            animations="disabled")

    return save
