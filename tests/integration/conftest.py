import os

import pytest

from tests.integration.stack import embedded_stack, postgres_stack


def _services_reachable() -> str | None:
    try:
        import psycopg
        import redis

        from tests.integration.stack import POSTGRES_ADMIN_URL, REDIS_URL

        psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3).close()
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except Exception as error:  # report why, below
        return f"{type(error).__name__}: {error}"
    return None


@pytest.fixture(scope="session")
def postgres_and_redis() -> None:
    """Skips the test (locally) or fails it (in CI) when the machine's PostgreSQL and Redis are unreachable."""
    problem = _services_reachable()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL/Redis unreachable in CI: {problem}")
        pytest.skip(f"PostgreSQL/Redis unreachable: {problem}")


@pytest.fixture(scope="session", params=["embedded", "postgres"])
def stack(request, tmp_path_factory):
    """The real service on each stack: embedded (SQLite + filesystem broker) and Redis + PostgreSQL."""
    root = tmp_path_factory.mktemp(f"stack-{request.param}")
    cleanup = None
    if request.param == "embedded":
        running = embedded_stack(root)
    else:
        problem = _services_reachable()
        if problem:
            if os.environ.get("CI"):
                pytest.fail(f"PostgreSQL/Redis unreachable in CI: {problem}")
            pytest.skip(f"PostgreSQL/Redis unreachable: {problem}")
        running, cleanup = postgres_stack(root)
    try:
        running.start(workers=2)
        yield running
    finally:
        running.stop()
        if cleanup:
            cleanup()
