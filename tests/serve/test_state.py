"""The debounced state: exact sequences of changes for given classifications."""

from __future__ import annotations

import pytest

from edgecnn.errors import ConfigError
from edgecnn.serve.state import HISTORY, Debouncer


def feed(d: Debouncer, labels: str, *, p: float = 0.99, fps: float = 10.0) -> list[tuple[int, str]]:
    """Classify one frame per character; the (frame, new state) of each change."""
    changes = []
    for i, label in enumerate(labels):
        c = d.update([(label, p), ("x", 1 - p)], frame=i, now=i / fps, wall=1000 + i / fps)
        if c is not None:
            changes.append((c.frame, c.state))
    return changes


def test_a_label_becomes_the_state_after_n_consecutive_wins_and_single_flips_are_held():
    d = Debouncer("cam", debounce=3)
    assert feed(d, "aaabaaaabbbbab") == [(2, "a"), (10, "b")]
    assert d.state == "b" and d.changes == 2
    assert [(c.previous, c.state, c.seq) for c in d.history] == [(None, "a", 1), ("a", "b", 2)]


def test_two_frame_flips_are_held_with_debounce_3_and_reach_the_state_with_debounce_2():
    assert feed(Debouncer("cam", debounce=3), "aaabbaabbaa") == [(2, "a")]
    assert feed(Debouncer("cam", debounce=2), "aaabbaa") == [(1, "a"), (4, "b"), (6, "a")]


def test_debounce_1_follows_every_frame():
    assert feed(Debouncer("cam", debounce=1), "abba") == [(0, "a"), (1, "b"), (3, "a")]


def test_frames_below_the_confidence_floor_break_the_streak_and_never_win():
    d = Debouncer("cam", debounce=2, min_confidence=0.8)
    assert feed(d, "aaaa", p=0.7) == []
    assert d.update([("a", 0.9)], now=0) is None
    assert d.update([("a", 0.5)], now=0.1) is None  # breaks the streak
    assert d.update([("a", 0.9)], now=0.2) is None
    change = d.update([("a", 0.95)], now=0.3)
    assert change is not None and change.state == "a" and change.confidence == 0.95


def test_min_dwell_needs_the_label_to_keep_winning_for_that_long():
    d = Debouncer("cam", debounce=2, min_dwell=0.5)
    # 10 fps: the 2nd win is at 0.1 s, but the change waits until 0.5 s after the first win (frame 5)
    assert feed(d, "aaaaaaaa") == [(5, "a")]


def test_the_state_keeps_the_latest_agreeing_confidence_and_the_history_is_bounded():
    d = Debouncer("cam", debounce=1)
    for i in range(HISTORY + 10):
        d.update([("ab"[i % 2], 0.9)], now=i)
    assert d.changes == HISTORY + 10 and len(d.history) == HISTORY and d.history[-1].seq == HISTORY + 10
    d.update([(d.state, 0.6)], now=999)
    assert d.confidence == 0.6


@pytest.mark.parametrize(
    "kw,message",
    [
        ({"debounce": 0}, "debounce must be a whole number of at least 1; received 0"),
        ({"min_confidence": 1.5}, "min_confidence must be from 0 to 1; received 1.5"),
        ({"min_dwell": -1.0}, "min_dwell must be 0 or more seconds; received -1.0"),
    ],
)
def test_bad_settings_are_refused(kw, message):
    with pytest.raises(ConfigError, match=message):
        Debouncer("cam", **kw)
