"""The built documentation, opened in a real headless browser (Chromium).

Needs a built site (``bash docs/build.sh`` builds it and then runs this test)
and Chromium with its driver (Debian: ``apt-get install chromium
chromium-driver``). Without them the test is skipped, with the reason,
unless ``CNNJAX_REQUIRE_BROWSER=1`` (what ``docs/build.sh`` sets), where a
missing site or browser is a failure.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
HTML = pathlib.Path(os.environ.get("CNNJAX_DOCS_HTML", ROOT / "docs" / "_build" / "html"))
REQUIRED = os.environ.get("CNNJAX_REQUIRE_BROWSER") == "1"
CHROMIUM = next(filter(None, map(shutil.which, ["chromium", "chromium-browser", "google-chrome"])), None)
DRIVER = shutil.which("chromedriver")

TUTORIAL = "tutorials/pooling_and_receptive_fields.html"
API = "api/generated/cnnjax.ops.html"


def _missing() -> str | None:
  if not (HTML / "index.html").exists():
    return f"no built site at {HTML} (bash docs/build.sh builds it, then runs this test)"
  if CHROMIUM is None or DRIVER is None:
    return "Chromium or chromedriver not installed (apt-get install chromium chromium-driver)"
  try:
    import selenium  # noqa: F401, PLC0415
  except ImportError:
    return "selenium not installed (pip install -e '.[docs]')"
  return None


@pytest.fixture(scope="module")
def browser():
  reason = _missing()
  if reason:
    if REQUIRED:
      pytest.fail(reason)
    pytest.skip(reason)
  from selenium import webdriver  # noqa: PLC0415
  from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  profile = tempfile.mkdtemp(prefix="cnnjax-docs-chromium-")
  for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--no-first-run", f"--user-data-dir={profile}", "--window-size=1400,1000"]:
    options.add_argument(flag)
  driver = webdriver.Chrome(service=Service(DRIVER), options=options)
  driver.set_page_load_timeout(60)
  yield driver
  driver.quit()
  shutil.rmtree(profile, ignore_errors=True)


def _open(driver, page: str) -> None:
  driver.get((HTML / page).as_uri())
  assert driver.execute_script("return document.readyState") == "complete"


def _navigation(driver) -> dict[str, str]:
  links = driver.find_elements("css selector", ".sidebar-tree a.reference")
  return {a.get_attribute("textContent").strip(): a.get_attribute("href") for a in links}


@pytest.mark.slow
def test_tutorial_page_has_navigation_code_and_its_plot(browser):
  _open(browser, TUTORIAL)
  assert "Pooling and receptive fields" in browser.title
  nav = _navigation(browser)
  for entry in ["Getting started", "Convolution by hand, then with cnnjax.ops", "API reference",
                "Shift equivariance", "Reliability"]:
    assert entry in nav, f"navigation lacks {entry!r}; it has {sorted(nav)}"
  # Executed at build time: the cells' source, their printed output, and a
  # figure embedded as an image the browser actually decoded.
  cells = browser.find_elements("css selector", "div.cell")
  assert len(cells) >= 5
  outputs = " ".join(e.get_attribute("textContent") for e in browser.find_elements("css selector", "div.cell_output"))
  assert "measured 44 x 44 - computed 44" in outputs
  sizes = browser.execute_script(
      "return Array.from(document.querySelectorAll('div.cell_output img'))"
      ".map(i => [i.complete, i.naturalWidth, i.naturalHeight]);")
  assert sizes, "no figure in the tutorial's outputs"
  assert all(done and w > 100 and h > 100 for done, w, h in sizes), sizes


@pytest.mark.slow
def test_api_page_lists_the_module_with_signatures_and_docstrings(browser):
  _open(browser, API)
  nav = _navigation(browser)
  for module in ["cnnjax.ops", "cnnjax.layers", "cnnjax.models", "cnnjax.train", "cnnjax.testing"]:
    assert module in nav, f"API navigation lacks {module}; it has {sorted(nav)}"
  entries = {e.get_attribute("id") for e in browser.find_elements("css selector", "dl.py dt[id]")}
  for name in ["cnnjax.ops.conv", "cnnjax.ops.conv_reference", "cnnjax.ops.max_pool",
               "cnnjax.ops.receptive_field", "cnnjax.ops.ReceptiveField"]:
    assert name in entries, f"{name} missing from {API}"
  conv = browser.find_element("css selector", "dt[id='cnnjax.ops.conv']")
  assert "padding" in conv.text and "strides" in conv.text
  body = browser.find_element("xpath", "//dt[@id='cnnjax.ops.conv']/following-sibling::dd").text
  assert "lax.conv_general_dilated" in body
  # The summary table links each name to its entry.
  table_links = browser.find_elements("css selector", "table.autosummary a[href='#cnnjax.ops.conv']")
  assert table_links
