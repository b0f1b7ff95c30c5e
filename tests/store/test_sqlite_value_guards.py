"""#17 item 7: values written into SQLite by another tool are refused with their true reason
(migration 0005), never crash a run, become 1 micro or drop a call silently."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command

from billing_jobs.store.db import _alembic_config, upgrade
from tests.store.helpers import fresh_engine

GOOD = {"call_id": "K1", "customer_id": "C1", "start_time": "2027-01-01 10:00:00.000000",
        "destination": "44", "duration_s": 60, "charge_micros": 300_000}


@pytest.mark.parametrize("column, value, message", [
    ("charge_micros", "x", "usage.charge_micros must be an integer number of micro-units"),
    ("charge_micros", 1.5, "usage.charge_micros must be an integer number of micro-units"),
    ("charge_micros", 1e20, "usage.charge_micros must be an integer number of micro-units"),
    ("duration_s", "60s", "usage.duration_s must be a whole number of seconds"),
    ("start_time", "not a time", "usage.start_time must be a timestamp"),
    ("start_time", 1767261600, "usage.start_time must be a timestamp"),
])
def test_a_bad_stored_value_is_refused_on_write(tmp_path, column, value, message):
    engine = fresh_engine(f"sqlite:///{tmp_path / 'b.db'}")
    row = dict(GOOD, **{column: value})
    with pytest.raises(sa.exc.IntegrityError, match=message):
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO usage (call_id, customer_id, start_time, destination, duration_s, "
                "charge_micros) VALUES (:call_id, :customer_id, :start_time, :destination, "
                ":duration_s, :charge_micros)"), row)
    with engine.begin() as conn:  # the good row goes in, and cannot be updated to a bad value
        conn.execute(sa.text(
            "INSERT INTO usage VALUES (:call_id, :customer_id, :start_time, :destination, "
            ":duration_s, :charge_micros)"), GOOD)
    with pytest.raises(sa.exc.IntegrityError, match=message):
        with engine.begin() as conn:
            conn.execute(sa.text(f"UPDATE usage SET {column} = :v"), {"v": value})
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT charge_micros, start_time FROM usage")).one() == (
            300_000, "2027-01-01 10:00:00.000000")
    engine.dispose()


def test_upgrade_refuses_a_database_already_holding_bad_values(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "0004")
        conn.execute(sa.text("INSERT INTO usage VALUES ('K9', 'C1', '2027-01-01 10:00:00', '', "
                             "60, 1.5)"))
    with pytest.raises(Exception, match=r"usage call_id='K9': charge_micros = 1\.5 must be an "
                                        r"integer number of micro-units"):
        upgrade(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE usage SET charge_micros = 1500000"))
    upgrade(engine)  # fixed: the upgrade goes through, the guards are in place
    with pytest.raises(sa.exc.IntegrityError):
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE usage SET charge_micros = 'x'"))
    engine.dispose()
