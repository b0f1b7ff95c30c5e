"""Fault injection, the one place it lives: `BILLING_CRASH_AT=<point>:<n>` makes the process
SIGKILL itself when it reaches `<point>` for the n-th time, so tests can prove that a crash
at any step leaves every customer fully posted or not at all.

Points: `mid_batch`, `before_commit`, `after_commit` (store/post.py, n = posting batch) and
`correct_mid` (store/corrections.py, n = group of correction rows). Unset in production: a
single environment lookup per point.
"""

from __future__ import annotations

import os
import signal


def crash_point(point: str, n: int) -> None:
    """SIGKILL this process if BILLING_CRASH_AT names this point and count."""
    if os.environ.get("BILLING_CRASH_AT") == f"{point}:{n}":
        os.kill(os.getpid(), signal.SIGKILL)
