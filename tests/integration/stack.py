"""Start the real service (``recomb api`` + ``recomb worker`` processes) for integration tests.

Each stack gets its own data directory, its own database (a fresh SQLite file,
or a fresh PostgreSQL database) and its own Redis key prefix and queue, so
runs never collide with each other or with a running deployment.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from app.cli.client import TERMINAL_STATUSES, RecombClient
from app.settings import Settings

POSTGRES_ADMIN_URL = os.environ.get("RECOMB_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("RECOMB_TEST_REDIS", "redis://127.0.0.1:6379/0")
STARTUP_TIMEOUT_S = 60.0
TERMINAL = TERMINAL_STATUSES


def require_postgres_and_redis() -> None:
    """Skip without the ``redis-postgres`` extra; when the machine's PostgreSQL or Redis is unreachable, skip locally and fail in CI."""
    for module in ("psycopg", "redis"):
        pytest.importorskip(
            module, reason="the redis-postgres extra is not installed (pip install -e '.[redis-postgres]')"
        )
    import psycopg
    import redis

    try:
        psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3).close()
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except Exception as error:
        problem = f"PostgreSQL/Redis unreachable: {type(error).__name__}: {error}"
        if os.environ.get("CI"):
            pytest.fail(f"{problem} (in CI)")
        pytest.skip(problem)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Stack:
    """A running API plus workers.

    ``recomb`` is the project's Python client of it; ``client`` is that client's
    HTTP connection, for tests that look at raw responses (status codes, headers).
    """

    name: str
    root: Path
    env: dict[str, str]
    port: int
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    recomb: RecombClient | None = None
    client: httpx.Client | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def settings(self) -> Settings:
        """The settings the stack's processes read from their environment."""
        names = ("data_dir", "database_url", "broker_url", "broker_key_prefix", "queue")
        return Settings(
            **{name: self.env[f"RECOMB_{name.upper()}"] for name in names if f"RECOMB_{name.upper()}" in self.env}
        )

    def run(self, *args: str) -> None:
        subprocess.run(
            [sys.executable, "-m", "app.cli.commands", *args],
            env=self.env,
            check=True,
            cwd=self.root,
            capture_output=True,
        )

    def spawn(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli.commands", *args],
            env=self.env,
            cwd=self.root,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes[name] = process
        return process

    def start_worker(self, name: str) -> subprocess.Popen:
        return self.spawn(name, "worker", "--name", f"{name}-{uuid.uuid4().hex[:6]}")

    def start(self, workers: int = 1, api_processes: int = 1) -> Stack:
        self.run("migrate")
        self.spawn("api", "api", "--port", str(self.port), "--processes", str(api_processes))
        for index in range(workers):
            self.start_worker(f"worker{index + 1}")
        self.recomb = RecombClient(self.url)
        self.client = self.recomb.http
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if self.client.get("/readyz").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.processes["api"].poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} stack did not become ready:\n{self.logs()}")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes.pop(name)
        process.send_signal(sig)
        process.wait(timeout=30)

    def stop(self) -> None:
        if self.recomb is not None:
            self.recomb.close()
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()

    def logs(self, tail: int = 4000) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-tail:]}" for path in sorted(self.root.glob("*.log"))
        )

    def wait_job(self, job_id: str, timeout: float = 60.0) -> dict:
        try:
            return self.recomb.wait_job(job_id, timeout_s=timeout)
        except TimeoutError as error:
            raise TimeoutError(f"{error}\n{self.logs()}") from error


class RecombUp:
    """``recomb up`` as a user runs it: one supervisor process that starts the API and its workers.

    It runs in a process group of its own so that teardown can end the
    supervisor and every child it started, even after a test killed some.
    """

    def __init__(self, root: Path, env: dict[str, str], workers: int, host: str = "127.0.0.1") -> None:
        self.root, self.env, self.workers, self.host = root, env, workers, host
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.log_path = root / "up.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RecombUp:
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        argv = [
            sys.executable,
            "-m",
            "app.cli.commands",
            "up",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]
        self.process = subprocess.Popen(
            argv, env=self.env, cwd=self.root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        with httpx.Client(base_url=self.url, timeout=5.0) as client:
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    if client.get("/readyz").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
        raise RuntimeError(f"recomb up did not become ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self, timeout: float = 90.0) -> int:
        """SIGTERM, as a service manager sends it; returns the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        """End the supervisor and everything in its process group, gracefully if it can."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # the group id is the supervisor's pid
        except ProcessLookupError:
            pass
        if self.process.poll() is None:
            self.process.wait(timeout=10)
        self.process = None


def embedded_stack(root: Path) -> Stack:
    env = _base_env(root)
    return Stack("embedded", root, env, free_port())


def postgres_stack(root: Path) -> tuple[Stack, callable]:
    """A stack on the machine's PostgreSQL and Redis, in a database and key prefix of its own."""
    import psycopg
    import redis

    suffix = uuid.uuid4().hex[:10]
    database = f"recomb_test_{suffix}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{database}"')
    prefix = f"recomb-test-{suffix}:"
    env = _base_env(root) | {
        "RECOMB_DATABASE_URL": sqlalchemy_url(database),
        "RECOMB_BROKER_URL": REDIS_URL,
        "RECOMB_BROKER_KEY_PREFIX": prefix,
        "RECOMB_QUEUE": f"recomb-{suffix}",
    }

    def cleanup() -> None:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)

    return Stack("postgres", root, env, free_port()), cleanup


def _base_env(root: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RECOMB_")}
    return env | {
        "RECOMB_DATA_DIR": str(root / "var"),
        "RECOMB_HEARTBEAT_INTERVAL_S": "1",
        "RECOMB_HEARTBEAT_TIMEOUT_S": "6",
        "RECOMB_RECONCILE_INTERVAL_S": "1",
        # Webhook tests' receivers listen on 127.0.0.1.
        "RECOMB_WEBHOOK_ALLOW_PRIVATE": "true",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "OMP_NUM_THREADS": "1",
    }


def sqlalchemy_url(database: str) -> str:
    """The psycopg URL of a database on the test PostgreSQL server."""
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{database}"


@contextmanager
def postgres_database(prefix: str) -> Iterator[str]:
    """A database of its own on the test PostgreSQL server; yields its URL and drops it on exit."""
    require_postgres_and_redis()
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield sqlalchemy_url(name)
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def running_stack(kind: str, root: Path, workers: int = 2) -> Iterator[Stack]:
    """The real service started on ``kind`` ("embedded": SQLite + filesystem broker, or "postgres": Redis +
    PostgreSQL in a database of its own), stopped and dropped on exit."""
    cleanup = None
    if kind == "embedded":
        running = embedded_stack(root)
    else:
        require_postgres_and_redis()
        running, cleanup = postgres_stack(root)
    try:
        running.start(workers=workers)
        yield running
    finally:
        running.stop()
        if cleanup:
            cleanup()
