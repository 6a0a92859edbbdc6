"""The live page in a real headless Chromium: it loads, shows the MJPEG stream, and the label updates."""

from __future__ import annotations

import shutil
import threading
import time

import pytest

pytestmark = pytest.mark.browser


def _chromium():
    for exe in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(exe)
        if path:
            return path
    return None


@pytest.fixture()
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    chrome, driver = _chromium(), shutil.which("chromedriver")
    if not chrome or not driver:
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        opts.add_argument(flag)
    b = webdriver.Chrome(service=Service(driver), options=opts)
    yield b
    b.quit()


def test_live_page_shows_stream_and_updates_label(browser, lenet_artifacts):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from edgecnn.runtime import Classifier
    from edgecnn.stream.capture import Capture
    from edgecnn.stream.loop import run_loop
    from edgecnn.stream.sources import open_source
    from edgecnn.stream.web import WebSink

    sink = WebSink("http://127.0.0.1:0")
    stop = threading.Event()
    clf = Classifier(lenet_artifacts / "tflite-fp32")
    cap = Capture(open_source("synthetic:?fps=10&size=96x96")).start()
    loop = threading.Thread(target=run_loop, args=(clf, cap, [sink]), kwargs={"stop": stop}, daemon=True)
    loop.start()
    try:
        browser.get(f"http://127.0.0.1:{sink.port}/")
        assert browser.title == "edgecnn live"
        wait = WebDriverWait(browser, 15)
        wait.until(lambda b: b.find_element(By.ID, "label").text != "waiting...")
        first = browser.find_element(By.ID, "stats").text
        assert "FPS" in first and "inference" in first
        label = browser.find_element(By.ID, "label").text
        assert label.split()[0] in [str(i) for i in range(10)] and label.endswith("%")
        wait.until(lambda b: b.find_element(By.ID, "stats").text != first)  # the page keeps updating
        wait.until(lambda b: b.execute_script("return document.getElementById('video').naturalWidth") == 96)
        time.sleep(0.5)
        assert browser.execute_script(
            "return document.getElementById('chart').getContext('2d').getImageData(0,0,400,100).data.some(v => v > 0)"
        )
    finally:
        stop.set()
        loop.join(timeout=5)
        cap.stop()
        sink.close()
        clf.close()
