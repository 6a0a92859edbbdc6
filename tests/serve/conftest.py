"""Fixtures for the service's tests: a real mosquitto broker, paho subscribers, the LeNet-5 artifact, digit videos
whose class changes at known frames."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from digit_videos import PLAN, schedule, sure_digits, write_video  # noqa: E402
from serve_helpers import MOSQUITTO, Broker, Subscriber  # noqa: E402


@pytest.fixture()
def broker(tmp_path):
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (Debian: apt install mosquitto)")
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


@pytest.fixture()
def subscriber(broker):
    subs: list[Subscriber] = []

    def make(topics: str = "#") -> Subscriber:
        s = Subscriber(broker.port, topics)
        subs.append(s)
        s.wait(lambda: s.client.is_connected(), 5)
        return s

    yield make
    for s in subs:
        s.close()


@pytest.fixture(scope="session")
def lenet_tflite(lenet_artifacts) -> Path:
    return lenet_artifacts / "tflite-int8"


@pytest.fixture(scope="session")
def digits(lenet_tflite):
    """label -> a 64x64 BGR frame of that digit the LeNet-5 artifact classifies right with p >= 0.9 after JPEG."""
    from edgecnn.runtime import Classifier

    with Classifier(lenet_tflite) as clf:
        found = sure_digits(lambda im: clf.classify(im), clf.labels)
    assert {"1", "3", "7"} <= set(found), sorted(found)
    return found


@pytest.fixture()
def digit_video(digits, tmp_path):
    return write_video(tmp_path / "digits.avi", schedule(digits, PLAN), fps=30)
