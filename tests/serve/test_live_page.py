"""The live page under ``edgecnn serve`` (a real headless Chromium): the debounced state and its history of changes
beside the frames."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from digit_videos import PLAN, schedule, write_video
from serve_helpers import service_thread

from edgecnn.serve.config import ServeConfig, SourceConfig

sys.path.insert(0, str(Path(__file__).parents[1] / "stream"))
from test_web_browser import browser  # noqa: E402, F401 - the fixture

pytestmark = pytest.mark.browser


def test_the_live_page_shows_the_state_and_its_history(browser, lenet_tflite, digits, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # the digit video, and 30 s more of its last 7: a browser slow to start (a busy machine) still sees the page
    video = write_video(tmp_path / "digits.avi", schedule(digits, PLAN + [("7", 900)]), fps=30)
    cfg = ServeConfig(
        artifact=str(lenet_tflite),
        sources=[SourceConfig(uri=str(video), name="door", sinks=["http://127.0.0.1:0"])],
    )
    with service_thread(cfg) as (service, outcome):
        page = service.runners[0].sinks[0]
        browser.get(f"http://127.0.0.1:{page.port}/")
        wait = WebDriverWait(browser, 20)
        wait.until(lambda b: b.find_element(By.ID, "service").text.startswith("state: 7"))
        assert browser.find_element(By.ID, "service").text.endswith("(2 changes)")
        # read in one go: the page rebuilds the list four times a second
        items = browser.execute_script("return [...document.querySelectorAll('#history li')].map(li => li.textContent)")
        assert [re.sub(r"^\d\d:\d\d:\d\d ", "", i) for i in items] == ["3 → 7 (100%)", "unknown → 3 (100%)"]
        assert page.state()["service"]["state"] == "7"
    assert "error" not in outcome
