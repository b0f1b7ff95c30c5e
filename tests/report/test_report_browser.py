"""report.html in headless Chromium with the network blocked: charts draw, no errors, tables work."""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: install it (apt-get install chromium); "
                    "the report's browser test needs it", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


class OfflinePage:
    """A page that refuses every non-file request and records console and page errors."""

    def __init__(self, browser):
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.errors: list[str] = []
        self.requested: list[str] = []
        self.page.on("console",
                     lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.route("**/*", self._route)

    def _route(self, route):
        url = route.request.url
        if url.startswith("file:"):
            route.continue_()
        else:
            self.requested.append(url)
            route.abort()

    def open(self, html: Path):
        self.page.goto(html.resolve().as_uri())
        self.page.wait_for_function(
            "document.querySelectorAll('.js-plotly-plot .main-svg').length >= 3", timeout=60_000)
        return self.page


def _matching(page, name: str) -> int:
    return int(page.get_attribute(f'[data-table="{name}"]', "data-matching"))


def test_report_opens_offline_draws_charts_and_has_no_errors(browser, report_dir):
    view = OfflinePage(browser)
    page = view.open(report_dir / "report.html")
    assert page.locator(".js-plotly-plot").count() == 4
    assert page.locator(".js-plotly-plot .main-svg").count() >= 3
    # bars were drawn in every chart
    assert page.locator("#chart-package .bars path").count() >= 7
    assert page.locator("#chart-utilisation .bars path").count() >= 4

    # headline and warnings
    assert page.locator('.card.money[data-currency="EUR"] .big').inner_text() == "35.88"
    assert page.locator('.card.money[data-currency="JPY"] .big').inner_text() == "1334"
    assert "2026-02-27" in page.locator("#unposted").inner_text()
    assert "billed past" in page.locator("#extended-flag").inner_text()

    # the lines table: search, filter, page
    lines = page.locator('[data-table="lines"]')
    assert lines.locator("tbody tr").count() == 7
    lines.locator(".dt-search").fill("jpy")
    assert _matching(page, "lines") == 2
    assert lines.locator("tbody tr").count() == 2
    lines.locator(".dt-search").fill("")
    lines.locator('select.dt-filter[data-column="status"]').select_option("invoiced")
    assert _matching(page, "lines") == 2
    assert set(lines.locator("tbody tr td:last-child").all_inner_texts()) == {"invoiced"}
    lines.locator('select.dt-filter[data-column="status"]').select_option("")

    # the rejected reason is shown as text, not run
    rejected = page.locator('[data-table="rejected"] tbody').inner_text()
    assert '<script>alert(1)</script>' in rejected

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    assert view.requested == [], "the page tried to fetch from the network"
    assert view.errors == []
    page.close()


def test_million_line_report_opens_and_pages(browser, big_report):
    view = OfflinePage(browser)
    page = view.open(big_report / "report.html")
    assert page.locator(".js-plotly-plot").count() == 4
    lines = page.locator('[data-table="lines"]')
    assert lines.locator(".dt-page").inner_text() == "page 1 of 40"
    assert lines.locator("tbody tr").count() == 50
    first = lines.locator("tbody tr").first.inner_text()
    lines.locator(".dt-next").click()
    assert lines.locator(".dt-page").inner_text() == "page 2 of 40"
    assert lines.locator("tbody tr").first.inner_text() != first
    assert "of the first 2000 of 1000000 rows" in lines.locator(".dt-status").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "report-1m.png"), full_page=True)
    assert view.requested == []
    assert view.errors == []
    page.close()


def _variant(tmp_path, name, status_of_lines, run_status, message=""):
    from billing_jobs.report import write_report
    from tests.report import scenario

    result = scenario.result()
    result.due_lines["status"] = status_of_lines
    info = scenario.run_info(mode="post", status=run_status)
    info["message"] = message
    return write_report(tmp_path / name, info, result, scenario.rejected(), scenario.TIMINGS)


@pytest.mark.parametrize("name,lines,status,message,badge,sentence", [
    ("repost", "already_posted", "succeeded", "", "NOTHING NEW POSTED",
     "Posted nothing new; 7 lines were already posted earlier, nothing charged twice."),
    ("failed", "not_posted", "failed", "gate failed: amount out of range for A1",
     "FAILED · nothing posted", "Failed: nothing posted, because gate failed"),
])
def test_repost_and_failed_pages_say_what_happened(browser, tmp_path, name, lines, status,
                                                   message, badge, sentence):
    out = _variant(tmp_path, name, lines, status, message)
    view = OfflinePage(browser)
    page = view.open(out / "report.html")
    assert badge in page.locator(".badges").inner_text()
    assert "POSTED" != page.locator(".badges .badge").first.inner_text()
    assert sentence in page.locator("#what-happened").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"report-{name}.png"), full_page=True)
    assert view.requested == [] and view.errors == []
    page.close()
