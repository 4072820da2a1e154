"""The migrations build exactly the schema the SQLModel tables describe, on SQLite and PostgreSQL, both ways.

Every revision in ``migrations/versions`` is walked, whatever is there: a
model changed without its migration (or a migration that does not match its
model) fails ``test_migrations_build_the_schema_the_models_describe``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Integer, MetaData, Table, inspect, text
from sqlmodel import SQLModel

import app.service.tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from app.cli.commands import main
from app.service.db import make_engine
from app.settings import get_settings
from migrations import alembic_config, current_revision, migrate, upgrade
from tests.integration.stack import postgres_database

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ScriptDirectory.from_config(alembic_config("sqlite://"))
# Oldest first: the order an empty database goes through them.
REVISIONS = [script.revision for script in reversed(list(SCRIPT.walk_revisions()))]
HEAD = SCRIPT.get_current_head()


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database(request, tmp_path) -> Iterator[str]:
    """The URL of a database with no tables: a fresh SQLite file, or a PostgreSQL database of its own (dropped after)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'recomb.db'}"
        return
    with postgres_database("recomb_migrations") as url:
        yield url


def schema_drift(database_url: str, metadata: MetaData = SQLModel.metadata) -> list:
    """What Alembic's autogenerate would add to make the database match ``metadata`` (empty: they agree)."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), metadata)
    finally:
        engine.dispose()


def table_names(database_url: str) -> set[str]:
    engine = make_engine(database_url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_revisions_form_one_line_from_base_to_head():
    assert REVISIONS and REVISIONS[-1] == HEAD
    assert SCRIPT.get_heads() == [HEAD], (
        "several heads: merge them (alembic merge heads) so `recomb migrate` has one target"
    )


def test_migrations_build_the_schema_the_models_describe(empty_database):
    for revision in REVISIONS:  # one step at a time, as databases of every age will go
        upgrade(empty_database, revision)
        assert current_revision(empty_database) == revision
    assert schema_drift(empty_database) == []
    assert table_names(empty_database) == set(SQLModel.metadata.tables) | {"alembic_version"}


def test_a_database_at_the_first_revision_upgrades_to_the_models(empty_database):
    upgrade(empty_database, REVISIONS[0])
    assert migrate(empty_database) == (REVISIONS[0], HEAD)
    assert schema_drift(empty_database) == []


def test_every_migration_downgrades_and_upgrades_again(empty_database):
    upgrade(empty_database)
    for expected in reversed([None, *REVISIONS[:-1]]):
        before, after = migrate(empty_database, "-1")
        assert after == expected, f"downgrade from {before} reached {after}"
    assert table_names(empty_database) == {"alembic_version"}
    # Every downgrade dropped what its upgrade made (PostgreSQL enum types too), or this upgrade fails.
    assert migrate(empty_database, "head") == (None, HEAD)
    assert schema_drift(empty_database) == []


def test_job_totals_are_back_filled_from_the_jobs_stored(empty_database):
    upgrade(empty_database, "0008")
    finished_at = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    stored = [  # (kind, status, run seconds or None: never started)
        ("distill", "succeeded", 0.2),
        ("distill", "succeeded", 4.0),
        ("distill", "failed", 40.0),
        ("ptq", "cancelled", None),
        ("ptq", "running", None),
    ]
    engine = make_engine(empty_database)
    try:
        jobs = Table("jobs", MetaData(), autoload_with=engine)
        with engine.begin() as connection:
            for index, (kind, status, seconds) in enumerate(stored):
                started_at = None if seconds is None else finished_at - timedelta(seconds=seconds)
                connection.execute(
                    jobs.insert().values(
                        id=f"job_{index:020d}", kind=kind, params={}, status=status, progress=1.0, stage="done",
                        attempts=1, cancel_requested=False, owner="", created_at=finished_at, started_at=started_at,
                        finished_at=None if status == "running" else finished_at,
                    )
                )  # fmt: skip
        upgrade(empty_database, "0009")
        with engine.connect() as connection:
            totals = connection.execute(
                text("SELECT kind, status, ended, ran, run_seconds, le_0_25, le_5, le_30, le_60 FROM job_totals")
            ).all()
    finally:
        engine.dispose()
    by_key = {(kind, status): tuple(counts) for kind, status, *counts in totals}
    assert by_key.keys() == {("distill", "succeeded"), ("distill", "failed"), ("ptq", "cancelled")}
    ended, ran, seconds, *buckets = by_key[("distill", "succeeded")]
    assert (ended, ran, buckets) == (2, 2, [1, 2, 2, 2]) and abs(seconds - 4.2) < 1e-9
    assert by_key[("distill", "failed")][:2] == (1, 1) and by_key[("distill", "failed")][3:] == (0, 0, 0, 1)
    assert by_key[("ptq", "cancelled")] == (1, 0, 0.0, 0, 0, 0, 0)  # counted as ended, with no duration


def test_the_drift_check_names_a_column_the_migrations_lack(tmp_path):
    database_url = f"sqlite:///{tmp_path / 'recomb.db'}"
    upgrade(database_url)
    models = MetaData()
    for table in SQLModel.metadata.tables.values():
        table.to_metadata(models)
    models.tables["jobs"].append_column(Column("priority", Integer, nullable=True))
    drift = schema_drift(database_url, models)
    assert [(change[0], change[2], change[3].name) for change in drift] == [("add_column", "jobs", "priority")]


def test_recomb_migrate_goes_to_a_target_revision_either_way(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("RECOMB_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("RECOMB_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        database_url = get_settings().resolved_database_url
        assert main(["migrate"]) == 0
        assert current_revision(database_url) == HEAD
        assert main(["migrate", "base"]) == 0
        assert current_revision(database_url) is None and table_names(database_url) == {"alembic_version"}
        assert main(["migrate", REVISIONS[0]]) == 0
        assert current_revision(database_url) == REVISIONS[0]
        assert main(["migrate", "no-such-revision"]) == 2
        assert "no-such-revision" in capfd.readouterr().err
        assert current_revision(database_url) == REVISIONS[0]
    finally:
        get_settings.cache_clear()


def test_alembic_commands_work_from_the_repository_root(tmp_path):
    env = {"RECOMB_DATA_DIR": str(tmp_path / "var"), "PATH": str(Path(sys.executable).parent)}
    alembic = [sys.executable, "-m", "alembic"]
    history = subprocess.run([*alembic, "history"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True)
    assert all(revision in history.stdout for revision in REVISIONS)
    subprocess.run([*alembic, "upgrade", "head"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True)
    current = subprocess.run([*alembic, "current"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True)
    assert current.stdout.split() == [HEAD, "(head)"]
    assert current_revision(f"sqlite:///{tmp_path / 'var' / 'recomb.db'}") == HEAD
