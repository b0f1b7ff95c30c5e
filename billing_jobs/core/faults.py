"""Fault injection, the one place it lives: `BILLING_CRASH_AT=<point>:<n>` makes the process
SIGKILL itself when it reaches `<point>` for the n-th time, so tests can prove that a crash
at any step leaves every customer fully posted or not at all.

Points: `mid_batch`, `before_commit`, `after_commit` (store/post.py, n = posting batch) and
`correct_mid` (store/corrections.py, n = group of correction rows). Unset in production: a
single environment lookup per point.

`BILLING_PAUSE_AT=<point>:<n>:<file>` makes the process write its pid to `<file>` when it
reaches `<point>` for the n-th time, then wait (up to a minute) so that a test can signal it
mid-run. Points: `before_settle` (run/local.py: a date computed and gated, nothing of it
posted yet; n = the date of a backfill).
"""

from __future__ import annotations

import os
import signal
import time


def crash_point(point: str, n: int) -> None:
    """SIGKILL this process if BILLING_CRASH_AT names this point and count."""
    if os.environ.get("BILLING_CRASH_AT") == f"{point}:{n}":
        os.kill(os.getpid(), signal.SIGKILL)


PAUSE_SECONDS = 60.0


_reached: dict[str, int] = {}


def pause_point(point: str) -> None:
    """At the n-th reach of this point, write this pid to the file BILLING_PAUSE_AT names,
    then wait."""
    spec = os.environ.get("BILLING_PAUSE_AT")
    if not spec or not spec.startswith(f"{point}:"):
        return
    n, _, path = spec[len(point) + 1:].partition(":")
    _reached[point] = _reached.get(point, 0) + 1
    if not n.isdigit() or _reached[point] != int(n):
        return
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        fh.write(str(os.getpid()))
    os.replace(path + ".tmp", path)  # whole or absent: the test reads a complete pid
    deadline = time.monotonic() + PAUSE_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.05)  # a signal's handler runs here (KeyboardInterrupt on SIGINT)
