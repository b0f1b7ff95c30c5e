"""Report folders appear whole or not at all: written into a temporary folder beside the
target, then renamed into place (a run's report and a forecast's alike)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def current_umask() -> int:
    """The process's umask, read without changing it where the system says it (Linux
    /proc/self/status); elsewhere set and restored at once."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temporary_beside(out_dir: Path) -> Path:
    """A new empty folder next to `out_dir` (same file system, so the rename is atomic).

    `mkdtemp` makes it 0700 whatever the umask; it becomes the report folder, so it gets the
    mode any folder made under the umask gets (0755 under umask 022, #30 item 14): the
    report is as readable as the files in it."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    os.chmod(tmp, 0o777 & ~current_umask())
    return tmp


def move_into_place(tmp: Path, out_dir: Path) -> Path:
    """Rename the finished `tmp` to `out_dir`, replacing an existing folder there (the CLI
    refused a non-empty one unless --force)."""
    out_dir = Path(out_dir)
    old = None
    if out_dir.is_dir():
        old = out_dir.parent / f".{out_dir.name}.old-{tmp.name[-8:]}"
        out_dir.rename(old)
    tmp.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out_dir


@contextmanager
def building(out_dir: Path) -> Iterator[Path]:
    """A temporary folder beside `out_dir` to write a report into; removed if writing fails."""
    tmp = temporary_beside(out_dir)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def finish(tmp: Path, out_dir: Path, summary: dict) -> Path:
    """Write `summary.json` into `tmp`, then move the folder into place."""
    (tmp / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n",
                                      encoding="utf-8")
    return move_into_place(tmp, out_dir)


def finish_into(tmp: Path, out_dir: Path, summary: dict) -> Path:
    """Move the finished report in `tmp` into the existing folder `out_dir` (which holds other
    files, e.g. an Airflow run's hand-offs), each file by one rename, `summary.json` last:
    a folder with a summary holds the whole report."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stale = out_dir / "summary.json"
    if stale.exists():  # an earlier try's report: not whole any more once files move
        stale.unlink()
    for entry in sorted(tmp.iterdir()):
        target = out_dir / entry.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        entry.replace(target)
    (tmp / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n",
                                      encoding="utf-8")
    (tmp / "summary.json").replace(out_dir / "summary.json")
    shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
