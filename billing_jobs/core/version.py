"""The code's version as a run records it and `billing-jobs --version` prints it: standard
library only, so the version flag answers without loading pandas or SQLAlchemy."""

from __future__ import annotations

import functools
import subprocess
from importlib.metadata import version
from pathlib import Path


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """Package version, plus the git short sha (and '-dirty') when run from a checkout."""
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
