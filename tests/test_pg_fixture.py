import sqlalchemy as sa


def test_both_databases_answer(db_url):
    eng = sa.create_engine(db_url)
    with eng.connect() as conn:
        assert conn.execute(sa.text("select 1 + 1")).scalar() == 2
    eng.dispose()
