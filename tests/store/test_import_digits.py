"""Money written with digits other than ASCII 0-9, or with no digit at all, is refused (never
read as 0) - issue #17 item 1."""

from __future__ import annotations

import pytest

from billing_jobs.core.money import parse_micros, parse_micros_series
from billing_jobs.core.errors import ImportFailed
from billing_jobs.ingest.importer import import_csv

from tests.store.helpers import dump, fresh_engine

NOT_MONEY = ["١٢٣.٤٥", "５", "𝟗", "۳", "१२", ".", "+.", "+", "1.٥", "٠"]


@pytest.mark.parametrize("text", NOT_MONEY)
def test_parser_refuses_non_ascii_digits_and_digitless_text(text):
    with pytest.raises(ValueError):
        parse_micros(text)
    import pandas as pd

    micros, bad = parse_micros_series(pd.Series([text, "1.5"]))
    assert list(bad) == [True, False] and micros.iloc[1] == 1_500_000


@pytest.mark.parametrize("value", ["١٢٣.٤٥", "５", "𝟗", ".", "+."])
def test_import_refuses_them_naming_row_and_column(db_url, tmp_path, value):
    engine = fresh_engine(db_url)
    good = tmp_path / "ok.csv"
    good.write_text("customer_id,name,currency,balance\nC1,A,EUR,10\n", encoding="utf-8")
    import_csv(engine, "customers", good)
    before = dump(engine)
    for entity, text in [
        ("customers", f"customer_id,name,currency,balance\nC1,A,EUR,10\nC2,B,EUR,{value}\n"),
        ("usage", "call_id,customer_id,start_time,destination,duration_s,charge\n"
                  f"X1,C1,2027-01-01T10:00:00Z,44,60,{value}\n"),
    ]:
        path = tmp_path / f"{entity}.csv"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ImportFailed) as info:
            import_csv(engine, entity, path)
        message = str(info.value)
        assert "row 3" in message or "row 2" in message, message
        assert ("balance" if entity == "customers" else "charge") in message, message
        assert dump(engine) == before
    engine.dispose()
