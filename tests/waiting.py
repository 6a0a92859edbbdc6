"""Waiting for an event with a deadline, not for a fixed time: on two busy cores a test may get a third of a core and
be seconds late, so a fixed sleep followed by an assertion is a flaky test."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def until(check: Callable[[], T], what: str, timeout: float = 10.0, every: float = 0.02) -> T:
    """``check()``'s first truthy value, polled every ``every`` s; AssertionError naming ``what`` after ``timeout`` s.
    An exception inside ``check`` counts as not yet (a file being written, a connection not yet open)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = check()
        except Exception as exc:  # noqa: BLE001 - not ready yet; reported if the deadline passes
            value, last = None, exc
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout:g} s for {what}" + (f" (last error: {last!r})" if last else ""))
        time.sleep(every)
