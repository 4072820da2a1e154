"""Alembic migrations: the only place the schema is created or changed."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from app.service.db import make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def current_revision(database_url: str) -> str | None:
    """The revision the database is at (None: no migration applied)."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def migrate(database_url: str, target: str = "head") -> tuple[str | None, str | None]:
    """Bring the database to ``target``, upgrading or downgrading; returns the revisions before and after.

    ``target`` is a revision id (or a unique prefix), ``head``, ``base`` (no
    tables), or a step relative to the current revision (``-1``, ``+1``).
    Raises ``alembic.util.CommandError`` naming an unknown revision.
    """
    config = alembic_config(database_url)
    before = current_revision(database_url)
    if target.startswith("-") or _is_below(ScriptDirectory.from_config(config), target, before):
        command.downgrade(config, target)
    else:
        command.upgrade(config, target)
    return before, current_revision(database_url)


def _is_below(script: ScriptDirectory, target: str, current: str | None) -> bool:
    """Whether ``target`` is an ancestor of ``current`` (reaching it means downgrading)."""
    if current is None or target.startswith("+"):
        return False
    if target == "base":
        return True
    resolved = script.get_revision(target)  # raises CommandError for an unknown or ambiguous id
    if resolved is None or resolved.revision == current:
        return False
    return resolved.revision in {revision.revision for revision in script.iterate_revisions(current, "base")}
