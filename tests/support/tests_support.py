"""Test helpers shared by the unit and e2e suites: polling with a deadline (never a bare sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class PollTimeout(AssertionError):
    """What was polled never reached the wanted state; the message says what and the last value."""


def poll(
    fetch: Callable[[], T],
    *,
    until: Callable[[T], bool],
    timeout: float,
    what: str,
    interval: float = 0.2,
) -> T:
    """Call ``fetch`` until ``until(value)`` holds, returning that value; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    value: T | None = None
    error: BaseException | None = None
    while True:
        try:
            value = fetch()
            if until(value):
                return value
            error = None
        except Exception as e:  # transient API errors while things settle
            error = e
        if time.monotonic() >= deadline:
            raise PollTimeout(
                f"timed out after {timeout:.0f}s waiting for {what}; last value: {value!r}"
                + (f"; last error: {error!r}" if error else "")
            )
        time.sleep(interval)
