"""The sample a newcomer starts from: examples/*.csv and `demo --export DIR` (#30 item 11)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import sqlalchemy as sa

from billing_jobs.cli.app import main
from billing_jobs.demo.sample_data import generate, write_csv

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FILES = ("customers", "packages", "assignments", "usage")
# how examples/ was made; if the generator changes, re-run this and commit the files
RECIPE = dict(customers=6, assignments=24, calls=300, seed=11, as_of=date(2026, 11, 30))


def test_examples_are_the_documented_sample(tmp_path):
    made = write_csv(generate(**RECIPE), tmp_path)
    for name in FILES:
        assert (EXAMPLES / f"{name}.csv").read_bytes() == made[name].read_bytes(), (
            f"examples/{name}.csv is stale: regenerate with generate(**RECIPE) in "
            "tests/test_examples.py and write_csv(..., 'examples')")


def test_examples_import_and_bill(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'ex.db'}"
    args = ["import", "--db", url]
    for name in FILES:
        args += [f"--{name}", str(EXAMPLES / f"{name}.csv")]
    assert main(args) == 0
    assert main(["run", "--db", url, "--date", "2026-11-30", "--out", str(tmp_path / "r")]) == 0
    charges = (tmp_path / "r" / "charges.csv").read_text().splitlines()
    assert len(charges) > 1 and charges[0].startswith("run_date,customer_id")
    engine = sa.create_engine(url)
    with engine.connect() as conn:  # a simulation wrote nothing
        assert conn.execute(sa.text("SELECT count(*) FROM ledger")).scalar() == 0
    engine.dispose()


def test_demo_export_keeps_the_sample_and_never_overwrites(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    out = tmp_path / "sample"
    assert main(["demo", "--db", url, "--export", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.csv" for n in FILES)
    header = (out / "assignments.csv").read_text().splitlines()[0]
    assert header.startswith("assignment_id,customer_id,package_id,quantity")
    before = (out / "usage.csv").read_bytes()
    capsys.readouterr()
    assert main(["demo", "--db", f"sqlite:///{tmp_path / 'other.db'}",
                 "--export", str(out)]) == 2
    assert "already exist" in capsys.readouterr().err
    assert (out / "usage.csv").read_bytes() == before
