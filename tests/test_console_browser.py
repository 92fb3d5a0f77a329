"""The analyst console in a real headless Chromium (issue 13): `packetclip serve --replay` plays a lab capture on
a free port; the page shows DoS and Reconnaissance alerts as they arrive, opens one alert's detail, runs a search
and opens a flow, and a screenshot is written (to docs/img/console.png with PACKETCLIP_UPDATE_SCREENSHOT=1, the
picture the README shows; else to the test's temporary folder).

Uses Debian's chromium + chromium-driver (nothing is downloaded); skipped, saying why, where they are missing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from test_console_api import build_console_lab, console_lab  # noqa: F401  (the shared lab workspace)

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
REPO = Path(__file__).resolve().parents[1]

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e .[dev])")
if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
    pytest.skip(f"needs {CHROMIUM} and {CHROMEDRIVER} (Debian: apt-get install chromium chromium-driver)",
                allow_module_level=True)


class Served(str):
    """The console's URL, with the server's stderr so far (``log()``) for failure messages."""

    def __new__(cls, url: str, lines: list):
        obj = super().__new__(cls, url)
        obj.lines = lines
        return obj

    def log(self) -> str:
        return "".join(self.lines)


@pytest.fixture
def console_server(console_lab):  # noqa: F811
    """`packetclip serve --replay` on a free loopback port, replaying the lab capture at 4× its pace."""
    cmd = [sys.executable, "-c", "from packetclip.cli import main; main()", "serve",
           "--replay", str(console_lab / "capture.pcap"), "--workspace", str(console_lab),
           "--port", "0", "--speed", "4"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines: list[str] = []
    found = threading.Event()

    def read():
        for line in proc.stderr:
            lines.append(line)
            if "console: http" in line:
                found.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        if not found.wait(300):     # loads the alignment and the text encoder first
            pytest.fail(f"the console did not start: {''.join(lines)[-2000:]}")
        yield Served(re.search(r"(http://[^ ]+/)", "".join(lines)).group(1), lines)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--disable-extensions", "--no-first-run"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _explained(until, browser, server):
    """``WebDriverWait.until`` that, on timeout, says what the page and the server showed."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By

    def wrapped(condition):
        try:
            return until(condition)
        except TimeoutException:
            shown = {i: browser.find_element(By.ID, i).text for i in ("conn", "page-info", "detect-state",
                                                                       "search-info", "alert-explanation")}
            raise AssertionError(f"timed out at {browser.current_url}; page: {shown}; "
                                 f"console log: {browser.get_log('browser')}; server: {server.log()[-1500:]}") from None
    return wrapped


def test_live_alerts_detail_and_search_in_a_real_browser(console_server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60, poll_frequency=0.25)
    wait.until = _explained(wait.until, browser, console_server)
    browser.get(console_server)
    rows = "#alerts-table tbody tr"

    def missions(_):      # read in one script: the table is re-rendered while alerts stream in
        return set(browser.execute_script(
            f"return [...document.querySelectorAll('{rows}')].map(r => r.dataset.mission)"))

    first_seen = wait.until(lambda d: missions(d) or None)            # alerts stream in while the capture plays
    wait.until(lambda d: {"DoS", "Reconnaissance"} <= missions(d))
    assert browser.find_element(By.ID, "conn").text == "live"
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#chart-pps path.line"))
    time.sleep(1.5)                                                    # a few rate samples for the charts
    shot = REPO / "docs" / "img" / "console.png" if os.environ.get("PACKETCLIP_UPDATE_SCREENSHOT") == "1" \
        else tmp_path / "console.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    assert first_seen

    browser.execute_script(f"document.querySelector('{rows}[data-mission=\"Reconnaissance\"]').click()")
    wait.until(lambda d: d.find_element(By.ID, "alert-eve").text.strip().startswith("{"))
    assert '"event_type": "alert"' in browser.find_element(By.ID, "alert-eve").text
    assert browser.find_element(By.ID, "alert-explanation").text
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#alert-kg svg .lit"))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#alert-nearest tbody tr"))
    assert browser.find_elements(By.CSS_SELECTOR, "#alert-timeline line.fwd, #alert-timeline line.bwd")
    links = browser.find_elements(By.CSS_SELECTOR, "#alert-concepts a")
    assert links and all(a.get_attribute("href").startswith("https://attack.mitre.org/") for a in links)

    browser.find_element(By.ID, "nav-search").click()
    box = browser.find_element(By.ID, "search-q")
    box.send_keys("many half-open connections to one web server")
    browser.find_element(By.ID, "search-go").click()
    hits = "#search-results tbody tr"
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, hits)) >= 5)
    assert "flows in" in browser.find_element(By.ID, "search-info").text
    browser.find_elements(By.CSS_SELECTOR, hits)[0].click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#flow-timeline line.fwd"))
    assert browser.find_element(By.ID, "flow-tuple").text
    errors = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    assert not errors, errors                                          # no CSP violation, no script error
