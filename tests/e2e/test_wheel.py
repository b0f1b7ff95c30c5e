"""A wheel carries everything a run needs (#26): the migrations, the report's templates and
assets. Built with uv, unpacked into a folder of its own and run from elsewhere, it migrates an
empty database and runs the demo."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).with_name("uv")


@pytest.mark.skipif(not UV.exists(), reason="uv is installed in the venv by `make install`")
def test_the_wheel_migrates_and_runs_the_demo(tmp_path):
    src = tmp_path / "src"  # a copy, so the build leaves no build/ or egg-info in the checkout
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "reports", "*.db", "__pycache__", "build", "*.egg-info", ".airflow"))
    out = tmp_path / "dist"
    subprocess.run([str(UV), "build", "--wheel", "-q", "-o", str(out), str(src)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = out.glob("billing_jobs-*.whl")
    unpacked = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        zf.extractall(unpacked)
    assert any(n.startswith("billing_jobs/migrations/versions/0010_") for n in names)
    assert any(n.startswith("billing_jobs/report/templates/") for n in names)
    assert not any(n.startswith("tests/") for n in names)
    db = tmp_path / "wheel.db"
    env = {**os.environ, "PYTHONPATH": str(unpacked), "BILLING_REPORT_DIR": str(tmp_path / "r")}
    res = subprocess.run([sys.executable, "-m", "billing_jobs.cli", "demo", "--db",
                          f"sqlite:///{db}"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    (report,) = (tmp_path / "r").glob("*/report.html")
    assert report.stat().st_size > 10_000
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM customers")).scalar() > 0
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() \
            == sorted(p.name[:4] for p in (unpacked / "billing_jobs/migrations/versions")
                      .glob("0*.py"))[-1]
    engine.dispose()
