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
    cap = Capture(open_source("synthetic:?fps=10&size=300x200")).start()
    loop = threading.Thread(target=run_loop, args=(clf, cap, [sink]), kwargs={"stop": stop}, daemon=True)
    loop.start()
    try:
        browser.get(f"http://127.0.0.1:{sink.port}/")
        assert browser.title == "edgecnn live"
        wait = WebDriverWait(browser, 15)
        wait.until(lambda b: b.find_element(By.ID, "label").text != "waiting...")
        first = browser.find_element(By.ID, "stats").text
        assert "FPS" in first and "inference" in first and "300x200 px" in first
        label = browser.find_element(By.ID, "label").text
        assert label.split()[0] in [str(i) for i in range(10)] and label.endswith("%")
        wait.until(lambda b: b.find_element(By.ID, "stats").text != first)  # the page keeps updating
        wait.until(lambda b: b.execute_script("return document.getElementById('video').naturalWidth") == 300)
        # a frame already 256 px wide or more is shown at its own size
        assert browser.find_element(By.ID, "video").rect["width"] == 300
    finally:
        stop.set()
        loop.join(timeout=5)
        cap.stop()
        sink.close()
        clf.close()


def test_live_page_screenshot_small_frame_scaled_up_overlay_off_picture_chart_with_axes(
    browser, lenet_artifacts, digits_test_split, tmp_path
):
    """What a user sees, checked on the pixels of a screenshot: the 64x64 frame at 256x256 with square pixels, the
    label beside it (not on it), a chart with tick labels on both axes."""
    import sys
    from pathlib import Path

    import cv2
    import numpy as np
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from edgecnn.host.data.video import write_video

    sys.path.insert(0, str(Path(__file__).parent))
    from live_page import LivePage

    digit = digits_test_split.images[19]
    video = write_video(digits_test_split.images[:20], tmp_path / "d.avi", size=(64, 64), fps=10)
    page = LivePage(lenet_artifacts / "tflite-fp32", f"file:{video}")
    try:
        page.wait_for_line("the source ended after 20 frames")
        browser.set_window_size(1200, 800)
        browser.get(page.url)
        WebDriverWait(browser, 15).until(lambda b: b.find_element(By.ID, "video").rect["width"] > 64)
        time.sleep(1.0)  # the chart and the picture settle on the last frame
        video_rect = browser.find_element(By.ID, "video").rect
        label_rect = browser.find_element(By.ID, "label").rect
        chart_rect = browser.find_element(By.ID, "chart").rect
        assert (video_rect["width"], video_rect["height"]) == (256, 256)
        assert label_rect["x"] >= video_rect["x"] + video_rect["width"] or label_rect["y"] >= video_rect["y"] + 256
        assert browser.execute_script("return window.devicePixelRatio") == 1
        shot = cv2.imdecode(np.frombuffer(browser.get_screenshot_as_png(), np.uint8), cv2.IMREAD_GRAYSCALE)
    finally:
        rc, _ = page.stop()
    assert rc == 0
    x, y = round(video_rect["x"]), round(video_rect["y"])
    picture = shot[y : y + 256, x : x + 256].astype(int)
    assert picture.std() > 20, "the picture area is blank"
    blocks = picture.reshape(64, 4, 64, 4).transpose(0, 2, 1, 3).reshape(64, 64, 16)
    uniform = float(np.mean(blocks.max(-1) - blocks.min(-1) <= 3))
    assert uniform > 0.97, f"only {uniform:.1%} of the 4x4 blocks are one colour: not scaled up with square pixels"
    # the picture is the digit itself (nothing drawn on it): its 64x64 pixels match the frame within JPEG's error
    shown = blocks.mean(-1)
    expected = cv2.resize(digit.reshape(digit.shape[:2]) if digit.ndim == 3 else digit, (64, 64), interpolation=cv2.INTER_NEAREST)
    assert np.corrcoef(shown.ravel(), expected.astype(float).ravel())[0, 1] > 0.95
    # the chart's axes carry text: tick labels left of the plot and under it, on a dark background
    cx, cy, cw, ch = (round(chart_rect[k]) for k in ("x", "y", "width", "height"))
    chart = shot[cy : cy + ch, cx : cx + cw]
    assert (chart[30 : ch - 40, :45] > 120).sum() > 40, "no y-axis tick labels"
    assert (chart[ch - 34 :, 60:] > 120).sum() > 40, "no x-axis labels"


def test_live_page_names_the_run_counts_starts_with_history_and_says_when_classify_stopped(
    browser, lenet_artifacts, digits_test_split, tmp_path
):
    """Issue #31: the page did not name the model or the source, counted only the frame number, opened with an empty
    latency chart, and froze on the last FPS when classify stopped. Opened after the source ended, then classify
    stopped with Ctrl-C, all in a real Chromium."""
    import sys
    from pathlib import Path

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from edgecnn.host.data.video import write_video

    sys.path.insert(0, str(Path(__file__).parent))
    from live_page import LivePage

    video = write_video(digits_test_split.images[:20], tmp_path / "d.avi", size=(64, 64), fps=20)
    page = LivePage(lenet_artifacts / "tflite-fp32", f"file:{video}")
    try:
        page.wait_for_line("the source ended after 20 frames")
        browser.get(page.url)
        wait = WebDriverWait(browser, 15)
        wait.until(lambda b: b.find_element(By.ID, "label").text != "waiting...")
        text = {k: browser.find_element(By.ID, k).text for k in ("run", "counters", "classes", "banner", "stats")}
        assert text["run"] == f"model: {lenet_artifacts.name}/tflite-fp32 (tflite/fp32, litert on CPU) | source: file:{video}"
        assert text["counters"] == "classified 20 | read 20 | dropped 0 | corrupt 0 | reconnects 0", text
        counts = [int(c.rsplit(" x", 1)[1]) for c in text["classes"].removeprefix("top classes: ").split(", ")]
        assert text["classes"].startswith("top classes: ") and 1 <= len(counts) <= 5 and sum(counts) <= 20, text
        assert counts == sorted(counts, reverse=True) and counts[0] >= 2, text
        assert text["banner"].startswith("The source ended after 20 frames"), text
        assert "- FPS" in text["stats"], text  # no frame rate claimed for a source that has ended
        # the chart opened with the run's history, not empty: 20 points, the latencies the server measured
        assert browser.execute_script("return hist.length") == 20
        assert page.state()["history"] == browser.execute_script("return hist")
        rc, last = page.stop()
        assert rc == 0 and "stopped by SIGINT" in last
        wait.until(lambda b: "stopped" in b.find_element(By.ID, "banner").get_attribute("class"))
        banner = browser.find_element(By.ID, "banner")
        assert banner.is_displayed() and banner.text.startswith("The stream has stopped: edgecnn classify is no longer running")
        assert browser.execute_script("return document.body.className") == "stopped"
        assert "- FPS" in browser.find_element(By.ID, "stats").text
    finally:
        page.kill()


def test_live_page_stops_showing_a_frame_rate_when_a_live_source_is_stopped(browser, lenet_artifacts):
    """A camera-like source classified live, the page open, then SIGTERM: the page leaves the running FPS."""
    import sys
    from pathlib import Path

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    sys.path.insert(0, str(Path(__file__).parent))
    from live_page import LivePage

    page = LivePage(lenet_artifacts / "tflite-fp32", "synthetic:?fps=20&size=64x64")
    try:
        browser.get(page.url)
        wait = WebDriverWait(browser, 15)
        wait.until(lambda b: "classified" in b.find_element(By.ID, "counters").text)
        wait.until(lambda b: float(b.find_element(By.ID, "stats").text.split(" | ")[1].split()[0]) > 5)
        assert not browser.find_element(By.ID, "banner").is_displayed()
        assert browser.execute_script("return hist.length") > 0
        page.proc.terminate()
        assert page.proc.wait(timeout=10) == 0
        wait.until(lambda b: b.find_element(By.ID, "banner").is_displayed())
        assert browser.find_element(By.ID, "banner").text.startswith("The stream has stopped")
        assert browser.find_element(By.ID, "stats").text.split(" | ")[1] == "- FPS"
    finally:
        page.kill()
