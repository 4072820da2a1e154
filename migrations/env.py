"""Alembic environment: the URL comes from ``recomb migrate`` or the same settings as the app."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlmodel import SQLModel

import app.service.tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from app.service.db import make_engine
from app.settings import get_settings

# Only Alembic's own command line reads alembic.ini; `recomb migrate` keeps the service's logging.
if context.config.config_file_name is not None:
    fileConfig(context.config.config_file_name)

target_metadata = SQLModel.metadata
url = context.config.attributes.get("database_url")
if url is None:  # Alembic's own command line: the service's settings, and its data dir as `recomb migrate` makes it
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.resolved_database_url


def run_migrations_online() -> None:
    engine = make_engine(url)
    sqlite = url.startswith("sqlite")
    with engine.connect() as connection:
        if sqlite:
            # A batch migration changes a SQLite table by copying it and dropping the original, which
            # enforced foreign keys refuse while other rows reference it. Off for the migration (the pragma
            # works only outside a transaction, so on the driver's connection before one begins), then every
            # reference is checked at the end.
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=sqlite)
        with context.begin_transaction():
            context.run_migrations()
            if sqlite and (broken := connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()):
                raise RuntimeError(f"the migration left rows referencing nothing: {broken[:10]}")
    engine.dispose()


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
