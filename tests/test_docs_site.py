"""The built documentation site, opened in a real headless browser (Debian's chromium through
chromedriver): from the home page, every navigation link is followed; every page must render
(its title, an h1 in the main content, text under it; not a 404 or a directory listing) and
every image on it must have loaded (``complete`` and ``naturalWidth > 0``), the study report
page's figures included, all of them. The site is served over HTTP from ``site/`` as a reader
would get it. It is built first (``scripts/build_docs.sh``) when it is missing or older than
its sources; that script runs the main job when there is no study report yet (minutes; CI
builds the site before the tests). Skipped, with the reason, only where chromium or
chromedriver is not installed (``apt-get install chromium chromium-driver``)."""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import threading
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "site"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
SOURCES = ["mkdocs.yml", "README.md", "CHANGELOG.md", "bench/README.md", "docs"]

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium "
           "chromium-driver; .ci/run installs them)")]


def _newest_source() -> float:
    files = [p for s in SOURCES for p in ([ROOT / s] if (ROOT / s).is_file()
                                          else (ROOT / s).rglob("*.md"))]
    return max(p.stat().st_mtime for p in files if "report" not in p.relative_to(ROOT).parts)


@pytest.fixture(scope="module")
def site_url():
    index = SITE / "index.html"
    if not index.is_file() or index.stat().st_mtime < _newest_source():
        subprocess.run(["bash", "scripts/build_docs.sh"], cwd=ROOT, check=True)
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # one line per request would bury the test's output
        pass


@pytest.fixture(scope="module")
def browser():
    try:  # the dev extra: with chromium installed, a missing selenium is a setup error
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed: pip install -e '.[dev]' (scripts/setup.sh)")

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    opts.page_load_strategy = "eager"  # the DOM is enough; images are waited for by _settled
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,900"):
        opts.add_argument(flag)
    # an explicit driver path: Selenium Manager is never asked to download anything
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


NAV_LINKS = "return [...document.querySelectorAll('nav.md-nav--primary a.md-nav__link')]" \
            ".map(a => a.href).filter(h => h)"
PAGE = """const main = document.querySelector('article.md-content__inner');
return {title: document.title, h1: main && main.querySelector('h1') ?
        main.querySelector('h1').textContent.trim() : null,
        text: main ? main.innerText.length : 0,
        images: [...document.images].map(i => ({src: i.currentSrc || i.src,
                 ok: i.complete && i.naturalWidth > 0}))};"""


def _settled(driver) -> None:
    """Wait (up to 30 s) until every image on the page has finished loading or failed."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return [...document.images].every(i => i.complete)"))


def crawl(driver, home: str) -> dict[str, dict]:
    """Every page reachable through the primary navigation from ``home``: url -> page facts."""
    seen, todo, pages = {home}, [home], {}
    while todo:
        url = todo.pop(0)
        driver.get(url)
        _settled(driver)
        pages[url] = driver.execute_script(PAGE)
        for href in driver.execute_script(NAV_LINKS):
            link = urldefrag(urljoin(url, href)).url
            if urlparse(link).netloc == urlparse(home).netloc and link not in seen:
                seen.add(link)
                todo.append(link)
    return pages


@pytest.fixture(scope="module")
def pages(browser, site_url):  # about a second a page on 2 busy cores
    return crawl(browser, site_url)


def test_every_navigation_page_renders(pages, site_url):
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    want = {site_url + re.sub(r"(index)?\.md$", "/", md).lstrip("/") for entry in nav
            for md in entry.values() if md.endswith(".md")}
    assert want <= set(pages), f"navigation pages not reached: {sorted(want - set(pages))}"
    api = {p.parent for p in (SITE / "api").rglob("index.html")
           if p.parent.name != "SUMMARY"}  # literate-nav's source, built but not a page
    assert sum("/api/" in url for url in pages) == len(api) > 20, "API pages not all reached"
    for url, page in pages.items():
        assert page["h1"], f"{url}: no h1 in the main content (404 or not a site page?)"
        assert "404" not in page["title"] and page["text"] > 40, f"{url}: {page}"
        assert page["title"].endswith("asgan-probe"), f"{url}: title {page['title']!r}"
    titles = {page["h1"] for page in pages.values()}
    for name in ("Attacks: how robust is D?", "The study", "Changelog", "Benchmarks"):
        assert any(name in t for t in titles), f"no page titled {name!r}: {sorted(titles)}"


def test_every_image_loads(pages):
    broken = [(url, i["src"]) for url, page in pages.items() for i in page["images"]
              if not i["ok"]]
    assert broken == [], f"images that did not load: {broken}"


def test_the_report_page_shows_every_figure(pages):
    report = [page for url, page in pages.items() if url.rstrip("/").endswith("report/report")]
    assert len(report) == 1, sorted(pages)
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (ROOT / "docs/report/report.md").read_text())
    assert len(figures) >= 5, "the report page has too few figures: was the report copied?"
    shown = {Path(urlparse(i["src"]).path).name for i in report[0]["images"] if i["ok"]}
    assert {Path(f).name for f in figures} <= shown
