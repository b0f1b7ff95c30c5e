"""Fault injection, the one place it lives: `BILLING_CRASH_AT=<point>:<n>` makes the process
SIGKILL itself when it reaches `<point>` for the n-th time, so tests can prove that a crash
at any step leaves every customer fully posted or not at all.

Points: `mid_batch`, `before_commit`, `after_commit` (store/post.py, n = posting batch) and
`correct_mid` (store/corrections.py, n = group of correction rows). Unset in production: a
single environment lookup per point.

`BILLING_PAUSE_AT=<point>:<file>` makes the process write its pid to `<file>` when it reaches
`<point>`, then wait (up to a minute) so that a test can signal it mid-run. Points:
`before_settle` (run/local.py: computed and gated, nothing posted yet).
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


def pause_point(point: str) -> None:
    """Write this pid to the file BILLING_PAUSE_AT names for this point, then wait."""
    spec = os.environ.get("BILLING_PAUSE_AT")
    if not spec or not spec.startswith(f"{point}:"):
        return
    path = spec[len(point) + 1:]
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        fh.write(str(os.getpid()))
    os.replace(path + ".tmp", path)  # whole or absent: the test reads a complete pid
    deadline = time.monotonic() + PAUSE_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.05)  # a signal's handler runs here (KeyboardInterrupt on SIGINT)
