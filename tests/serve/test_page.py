"""The page of ``sonofm serve`` in headless Chromium: open a phantom image, click (positive, then shift-click
negative), drag a box: the mask overlay appears and the downloadable mask equals the A-SAM's own for those prompts;
the automatic anatomy map; a classifier's probabilities as ``sonofm.load(...).predict`` gives them; a bad file
dropped on the page is named in a message. The screenshot goes to ``SONOFM_SCREENSHOT_DIR`` when set."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageStat

import sonofm
from sonofm.data.image_io import read_image
from sonofm.serve.app import ServeSettings, build_app
from sonofm.serve.models import load_served_models
from sonofm.serve.server import running_server

WAIT = 60  # seconds


@pytest.fixture(scope="module")
def page(serve_run, tmp_path_factory):
    """``(driver, url)``: headless Chromium on the page of a server with the A-SAM + prompter and the classifier."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_path = shutil.which("chromedriver")
    if not browser or not driver_path:
        pytest.skip("chromium or chromedriver not installed (scripts/install-browser.sh installs them)")
    models = load_served_models([serve_run("prompter"), serve_run("cls")], "32")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1100,640"):
        options.add_argument(flag)
    with running_server(build_app(models, ServeSettings())) as url:
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
        try:
            driver.get(url)
            yield driver, url
        finally:
            driver.quit()


def wait_for(driver, script: str):
    """The truthy value of ``script`` (a JS expression) once it has one."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT).until(lambda d: d.execute_script(f"return {script};"))


def results_after(driver, count: int) -> None:
    """Wait until the page has drawn its ``count``-th result and no request is pending."""
    wait_for(driver, f"Number(document.body.dataset.results) >= {count} && document.body.dataset.state !== 'busy'")
    assert driver.execute_script("return document.body.dataset.state;") == "ready", driver.find_element(
        "id", "error").text


def test_clicks_and_a_box_give_the_a_sam_mask_and_classes_their_probabilities(page, serve_run, sample_image,
                                                                                reference, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    driver, _ = page
    wait_for(driver, "document.body.dataset.state === 'ready'")
    Select(driver.find_element(By.ID, "model")).select_by_value("prompter")
    driver.find_element(By.ID, "file").send_keys(str(sample_image))
    wait_for(driver, "window.sonofm.upload && document.getElementById('base').naturalWidth === 72")
    canvas = driver.find_element(By.ID, "marks")
    width, height = driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.width, r.height];",
                                          canvas)

    def offset(x: float, y: float) -> tuple[int, int]:
        """Selenium's offset from the canvas centre to the centre of image pixel (x, y) of the 72 x 40 image."""
        return round((x + 0.5) * width / 72 - width / 2), round((y + 0.5) * height / 40 - height / 2)

    ActionChains(driver).move_to_element_with_offset(canvas, *offset(40, 20)).click().perform()
    results_after(driver, 1)
    assert driver.execute_script("return window.sonofm.clicks;") == [[40, 20, 1]]
    assert driver.find_element(By.ID, "overlay").is_displayed()
    (ActionChains(driver).key_down(Keys.SHIFT).move_to_element_with_offset(canvas, *offset(10, 30)).click()
     .key_up(Keys.SHIFT).perform())
    results_after(driver, 2)
    (ActionChains(driver).move_to_element_with_offset(canvas, *offset(20, 5)).click_and_hold()
     .move_to_element_with_offset(canvas, *offset(60, 35)).release().perform())
    results_after(driver, 3)
    clicks, box = driver.execute_script("return [window.sonofm.clicks, window.sonofm.box];")
    assert clicks == [[40, 20, 1], [10, 30, 0]] and box == [20, 5, 60, 35]
    link = driver.find_element(By.ID, "download")
    assert link.is_displayed() and link.get_attribute("download") == "scan_f0_prompter_mask.png"
    expected, anatomy = reference.sam(serve_run("prompter"), read_image(sample_image), clicks, box)
    assert np.array_equal(reference.png(link.get_attribute("href")), expected.astype(np.uint8))
    legend = driver.find_element(By.ID, "result").text
    assert f"mask: {int(expected.sum())} px²" in legend
    screenshot(driver, tmp_path)

    driver.find_element(By.ID, "auto").click()
    results_after(driver, 4)
    assert np.array_equal(reference.png(link.get_attribute("href")), anatomy)
    assert "class_1" in driver.find_element(By.ID, "result").text

    Select(driver.find_element(By.ID, "model")).select_by_value("cls")
    results_after(driver, 5)
    expected_probabilities = sonofm.load(serve_run("cls")).predict(read_image(sample_image))[0]
    shown = {row.get_attribute("data-class"): float(row.find_elements(By.TAG_NAME, "td")[1].text)
             for row in driver.find_elements(By.CSS_SELECTOR, "#result tr")}
    assert shown == {name: round(p, 4) for name, p in expected_probabilities.items()}
    assert driver.find_element(By.ID, "overlay").is_displayed()  # the Grad-CAM heatmap


def screenshot(driver, tmp_path: Path) -> None:
    """Save the page, check it is not blank, and copy it to ``SONOFM_SCREENSHOT_DIR`` (as serve_page.png) if set."""
    path = tmp_path / "serve_page.png"
    assert driver.save_screenshot(str(path))
    with Image.open(path) as picture:
        assert max(high - low for low, high in ImageStat.Stat(picture.convert("L")).extrema) > 50
    if os.environ.get("SONOFM_SCREENSHOT_DIR"):
        target = Path(os.environ["SONOFM_SCREENSHOT_DIR"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / "serve_page.png")


def test_a_bad_file_dropped_on_the_page_is_named_and_the_page_keeps_working(page):
    from selenium.webdriver.common.by import By

    driver, _ = page
    wait_for(driver, "document.body.dataset.state !== 'busy'")
    driver.execute_script("""
        const files = new DataTransfer();
        files.items.add(new File(["just some text"], "notes.png", {type: "image/png"}));
        document.dispatchEvent(new DragEvent("drop", {dataTransfer: files, bubbles: true, cancelable: true}));""")
    wait_for(driver, "document.body.dataset.state === 'error'")
    assert driver.find_element(By.ID, "error").text == "cannot read image notes.png: not an image file or " \
                                                       "unsupported format"
    driver.execute_script("""
        const files = new DataTransfer();
        files.items.add(new File([new Uint8Array(51 * 1024 * 1024)], "huge.png"));
        document.dispatchEvent(new DragEvent("drop", {dataTransfer: files, bubbles: true, cancelable: true}));""")
    assert "huge.png is 51.0 MB, over the limit of 50.0 MB" in driver.find_element(By.ID, "error").text
