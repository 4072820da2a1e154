"""Database engine and sessions, for SQLite (embedded) and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

from app.settings import Settings, get_settings

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Connections per engine (process): a pool of 10 that may grow by 10.
POOL_SIZE, POOL_OVERFLOW = 10, 10
POOL_CONNECTIONS = POOL_SIZE + POOL_OVERFLOW


def make_engine(url: str) -> Engine:
    """An engine that never reports "database is locked" under concurrent writers.

    SQLite runs in WAL mode (readers never block the writer) with a busy
    timeout, and every transaction starts with ``BEGIN IMMEDIATE``: a deferred
    transaction that reads and then writes fails at once with SQLITE_BUSY
    when another writer committed in between, and no timeout helps there.
    """
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        pool_size=POOL_SIZE,
        max_overflow=POOL_OVERFLOW,
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # let the "begin" hook below issue BEGIN
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@lru_cache
def engine_for(url: str) -> Engine:
    return make_engine(url)


def get_engine(settings: Settings | None = None) -> Engine:
    return engine_for((settings or get_settings()).resolved_database_url)


@contextmanager
def session_scope(settings: Settings | None = None) -> Iterator[Session]:
    """A session for worker code: commits are explicit, the session always closes."""
    with Session(get_engine(settings), expire_on_commit=False) as session:
        yield session


def commit_without_flush_wait(session: Session) -> None:
    """Make this transaction's commit return before PostgreSQL has flushed it to disk.

    Only for writes a crash may lose without harm: a claim is made again, a
    heartbeat or progress figure is refreshed. They then cost no disk wait.
    A no-op on SQLite, whose WAL mode with ``synchronous=NORMAL`` never waits at commit.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL synchronous_commit TO OFF"))


def concurrent_sessions(url: str) -> int:
    """How many request sessions may hold a transaction at once without any of them waiting for another.

    PostgreSQL: one per pooled connection. SQLite: one, since every
    transaction here begins IMMEDIATE and holds the database's write lock
    until it ends; a second would wait for the lock on a thread the first
    may need to finish its response.
    """
    return 1 if url.startswith("sqlite") else POOL_CONNECTIONS
