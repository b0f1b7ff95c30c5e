"""upgrade() on a database already at head: one SELECT, no Alembic import (#13); behind head it
still migrates through Alembic."""

from __future__ import annotations

import subprocess
import sys

from alembic import command

from billing_jobs.store import db
from billing_jobs.store.db import _alembic_config, current_revision, head_revision


def test_head_from_the_files_is_alembics_head():
    assert db._script_head() == head_revision()


def test_upgrade_at_head_imports_no_alembic(tmp_path):
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    db.upgrade(db.make_engine(url))
    code = ("import sys\n"
            "from billing_jobs.store.db import make_engine, upgrade\n"
            f"upgrade(make_engine({url!r}))\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_upgrade_behind_head_or_unknown_revision_migrates(db_url):
    engine = db.make_engine(db_url)
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "0006")
    assert db._stored_revisions(engine) == ["0006"]
    db.upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert db._stored_revisions(engine) == [head_revision()]


def test_no_version_table_reads_as_none(db_url):
    assert db._stored_revisions(db.make_engine(db_url)) is None


def _versions(tmp_path, files: dict[str, str]):
    versions = tmp_path / "versions"
    versions.mkdir(parents=True)
    for name, text in files.items():
        (versions / name).write_text(text, encoding="utf-8")
    return tmp_path


def test_head_from_the_files_only_when_it_is_one_clear_head(tmp_path, monkeypatch):
    base = {"a.py": 'revision = "a"\ndown_revision = None\n',
            "b.py": 'revision: str = "b"\ndown_revision: str | None = "a"\n',
            "__init__.py": 'revision = "ignored"\ndown_revision = "b"\n'}
    monkeypatch.setattr(db, "ALEMBIC_DIR", _versions(tmp_path / "1", base))
    assert db._script_head() == "b"
    # two heads: Alembic decides (upgrade falls back to it)
    monkeypatch.setattr(db, "ALEMBIC_DIR", _versions(
        tmp_path / "2", {**base, "c.py": 'revision = "c"\ndown_revision = "a"\n'}))
    assert db._script_head() is None
    # a merge revision joins them again
    monkeypatch.setattr(db, "ALEMBIC_DIR", _versions(
        tmp_path / "3", {**base, "c.py": 'revision = "c"\ndown_revision = "a"\n',
                         "d.py": 'revision = "d"\ndown_revision = ("b", "c")\n'}))
    assert db._script_head() == "d"
    # anything not a plain literal, or missing, is not guessed at
    for i, text in enumerate(['revision = "x" + "y"\ndown_revision = "b"\n',
                              'revision = "x"\n', "def broken(:\n"]):
        monkeypatch.setattr(db, "ALEMBIC_DIR", _versions(tmp_path / f"bad{i}",
                                                        {**base, "x.py": text}))
        assert db._script_head() is None

