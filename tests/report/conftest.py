"""Report fixtures: the hand-built scenario's folder and one shared million-line run."""

from __future__ import annotations

import pytest

from billing_jobs.report import write_report
from tests.report import scenario

BIG_LINES = 1_000_000


@pytest.fixture
def report_dir(tmp_path):
    return write_report(tmp_path / "run", scenario.run_info(), scenario.result(),
                        scenario.rejected(), scenario.TIMINGS)


@pytest.fixture(scope="session")
def big_run():
    return scenario.big_result(BIG_LINES)


@pytest.fixture(scope="session")
def big_report(tmp_path_factory, big_run):
    out = tmp_path_factory.mktemp("big") / "run"
    return write_report(out, scenario.run_info(), big_run, scenario.rejected(), scenario.TIMINGS)
