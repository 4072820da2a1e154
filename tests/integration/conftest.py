import pytest

from tests.integration.stack import embedded_stack, postgres_stack, require_postgres_and_redis


@pytest.fixture(scope="session")
def postgres_and_redis() -> None:
    """Skips the test (locally, or without the client libraries) or fails it (in CI) when PostgreSQL and Redis are unreachable."""
    require_postgres_and_redis()


@pytest.fixture(scope="session", params=["embedded", "postgres"])
def stack(request, tmp_path_factory):
    """The real service on each stack: embedded (SQLite + filesystem broker) and Redis + PostgreSQL."""
    root = tmp_path_factory.mktemp(f"stack-{request.param}")
    cleanup = None
    if request.param == "embedded":
        running = embedded_stack(root)
    else:
        require_postgres_and_redis()
        running, cleanup = postgres_stack(root)
    try:
        running.start(workers=2)
        yield running
    finally:
        running.stop()
        if cleanup:
            cleanup()
