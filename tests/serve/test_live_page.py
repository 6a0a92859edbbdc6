"""The live page under ``edgecnn serve`` (a real headless Chromium): the debounced state and its history of changes
beside the frames."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from serve_helpers import service_thread

from edgecnn.serve.config import ServeConfig, SourceConfig

sys.path.insert(0, str(Path(__file__).parents[1] / "stream"))
from test_web_browser import browser  # noqa: E402, F401 - the fixture

pytestmark = pytest.mark.browser


def test_the_live_page_shows_the_state_and_its_history(browser, lenet_tflite, digit_video):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    cfg = ServeConfig(
        artifact=str(lenet_tflite),
        sources=[SourceConfig(uri=str(digit_video), name="door", sinks=["http://127.0.0.1:0"])],
    )
    with service_thread(cfg) as (service, outcome):
        page = service.runners[0].sinks[0]
        browser.get(f"http://127.0.0.1:{page.port}/")
        wait = WebDriverWait(browser, 20)
        wait.until(lambda b: b.find_element(By.ID, "service").text.startswith("state: 7"))
        assert browser.find_element(By.ID, "service").text.endswith("(2 changes)")
        items = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#history li")]
        assert [re.sub(r"^\d\d:\d\d:\d\d ", "", i) for i in items] == ["3 → 7 (100%)", "unknown → 3 (100%)"]
        assert page.state()["service"]["state"] == "7"
    assert "error" not in outcome
