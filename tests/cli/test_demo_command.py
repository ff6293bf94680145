"""``sonofm demo --quick``: every stage's run folder, the rerun that reuses them, and report.html in a real browser.

With ``SONOFM_DEMO_REPORT`` pointing at an existing report.html (CI runs the README's full demo first), the browser
test checks that report instead of a quick one.
"""

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from sonofm.cli.main import main
from sonofm.tasks.demo import STAGES

MIN_IMAGES = 9  # 2 confusion matrices, 2 + 2 training curves, 2 overlays, reconstructions (+ pretraining loss)


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "out"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    return out


def test_quick_demo_writes_every_stage_and_a_report(quick_demo, capsys):
    for stage in STAGES:
        assert (quick_demo / stage / "metrics.json").is_file(), stage
    page = (quick_demo / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= MIN_IMAGES
    assert "balanced_accuracy" in page and "dice" in page and "hd95" in page
    assert "src=\"http" not in page and "<script" not in page
    assert main(["demo", "--quick", "--out", str(quick_demo), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("already finished, reusing") == len(STAGES)
    assert f"report: {quick_demo / 'report.html'}" in printed and "pretrained" in printed


def test_seg_data_without_data_is_an_error(cli_error, tmp_path):
    assert "--seg-data needs --data" in cli_error(["demo", "--seg-data", str(tmp_path), "--out", str(tmp_path / "o")])


def _browser_report(request) -> Path:
    given = os.environ.get("SONOFM_DEMO_REPORT")
    if given and Path(given).is_file():
        return Path(given)
    return request.getfixturevalue("quick_demo") / "report.html"


def test_report_renders_in_headless_chromium(request, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_path = shutil.which("chromedriver")
    if not browser or not driver_path:
        pytest.skip("chromium or chromedriver not installed (scripts/install-browser.sh installs them)")
    report = _browser_report(request)
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,2000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        driver.get(report.resolve().as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.getAttribute('alt')]);")
        assert len(images) >= MIN_IMAGES
        broken = [alt for complete, width, alt in images if not (complete and width > 0)]
        assert not broken, f"images that did not load: {broken}"
        cells = driver.execute_script(
            "return Array.from(document.querySelectorAll('td.num')).map(td => td.textContent);")
        assert len(cells) >= 8 and all(float(cell) == float(cell) or cell == "nan" for cell in cells)
        headings = driver.execute_script("return Array.from(document.querySelectorAll('h2')).map(h => h.textContent);")
        assert {"Summary", "Classification", "MIM pretraining"} <= set(headings)
        screenshot = tmp_path / "report.png"
        assert driver.save_screenshot(str(screenshot))
    finally:
        driver.quit()
    with Image.open(screenshot) as picture:
        assert picture.format == "PNG" and picture.width > 100
        assert max(high - low for low, high in ImageStat.Stat(picture.convert("L")).extrema) > 50  # not blank
    if os.environ.get("SONOFM_SCREENSHOT_DIR"):
        target = Path(os.environ["SONOFM_SCREENSHOT_DIR"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, target / "demo_report.png")
