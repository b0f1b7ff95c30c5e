"""The code's version as a run records it and `billing-jobs --version` prints it: standard
library only, so the version flag answers without loading pandas or SQLAlchemy."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """Package version, plus the git short sha (and '-dirty') when run from a checkout."""
    from importlib.metadata import version  # ~10 ms of imports (email...): not for --help

    try:
        ver = version("billing-jobs")
    except Exception:  # pragma: no cover - not installed
        ver = "unknown"
    root = Path(__file__).resolve().parents[2]
    if (root / ".git").exists():
        try:
            sha = subprocess.run(
                ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                capture_output=True, text=True, timeout=5, check=True,
            ).stdout.strip()
            if sha:
                ver = f"{ver}+g{sha}"
        except (OSError, subprocess.SubprocessError):
            pass
    return ver


def version_line() -> str:
    """What `billing-jobs --version` prints."""
    return f"billing-jobs {code_version()}"
