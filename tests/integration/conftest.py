import pytest

from tests.integration.stack import require_postgres_and_redis, running_stack


@pytest.fixture(scope="session")
def postgres_and_redis() -> None:
    """Skips the test (locally, or without the client libraries) or fails it (in CI) when PostgreSQL and Redis are unreachable."""
    require_postgres_and_redis()


@pytest.fixture(scope="session", params=["embedded", "postgres"])
def stack(request, tmp_path_factory):
    """The real service on each stack: embedded (SQLite + filesystem broker) and Redis + PostgreSQL."""
    with running_stack(request.param, tmp_path_factory.mktemp(f"stack-{request.param}")) as running:
        yield running
