"""API tests: the real app on a throwaway SQLite database and a filesystem broker; no workers."""

import io

import pytest
import torch
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from core import artifacts
from core.networks import QNetwork, QNetworkArch, init_network
from core.quantize import quantize_dynamic
from migrations import upgrade


def make_settings(tmp_path, **overrides) -> Settings:
    values = {
        "data_dir": tmp_path / "var",
        "database_url": None,
        "broker_url": None,
        "api_keys": "",
        "artifact_store": "db",
    }
    return Settings(**(values | overrides))


def client_for(settings: Settings) -> TestClient:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    return TestClient(create_app(settings))


@pytest.fixture
def settings(tmp_path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def client(settings):
    with client_for(settings) as test_client:
        yield test_client


@pytest.fixture
def parent_id(client) -> str:
    response = client.post(
        "/checkpoints/synthetic", json={"arch": {"input_dim": 8, "hidden_size": 64, "output_dim": 4}, "seed": 0}
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


@pytest.fixture
def int8_id(client) -> str:
    parent = artifacts.float_checkpoint(init_network(QNetworkArch(), 1).state_dict())
    data = artifacts.encode(quantize_dynamic(parent).checkpoint)
    response = client.post("/checkpoints", files={"file": ("int8.safetensors", data)})
    assert response.status_code == 201, response.text
    assert response.json()["format"] == "int8"
    return response.json()["id"]


def state_dict_bytes(arch: QNetworkArch = QNetworkArch()) -> bytes:
    buffer = io.BytesIO()
    torch.save(QNetwork(arch).state_dict(), buffer)
    return buffer.getvalue()


def finished_job_with_output(
    settings: Settings,
    parents: dict[str, str],
    *,
    seed: int,
    kind: str = "distill",
    finished_days_ago: float = 0.0,
    parent_job_id: str | None = None,
) -> tuple[str, str]:
    """A succeeded job (as a worker leaves it, without running one) whose one output checkpoint was made from
    ``parents`` (``{role: checkpoint_id}``); returns ``(job_id, checkpoint_id)``. The output's bytes differ per seed.
    """
    from datetime import timedelta

    from sqlmodel import Session

    from app.service import crud
    from app.service.db import get_engine
    from app.service.store import get_store
    from app.service.tables import Job, JobStatus, utcnow
    from core import checkpoint_file

    finished_at = utcnow() - timedelta(days=finished_days_ago)
    arch = QNetworkArch(input_dim=8, hidden_sizes=(16,), output_dim=4)
    with Session(get_engine(settings), expire_on_commit=False) as session:
        job = Job(
            kind=kind,
            params={"teacher_id": next(iter(parents.values()))} if parents else {},
            status=JobStatus.succeeded,
            parent_job_id=parent_job_id,
            created_at=finished_at - timedelta(seconds=5),
            started_at=finished_at - timedelta(seconds=4),
            finished_at=finished_at,
        )
        session.add(job)
        session.flush()
        output = crud.create_checkpoint(
            session,
            get_store(settings),
            checkpoint_file.float_file(checkpoint_file.init_arrays(arch, seed), arch),
            job_id=job.id,
        )
        session.flush()
        for role, parent in parents.items():
            crud.add_lineage(session, parent, output.id, role, job.id)
        session.commit()
        return job.id, output.id


@pytest.fixture(params=["sqlite", "postgres"])
def sqlite_and_postgres_settings(request, tmp_path):
    """Settings on a fresh SQLite file, then on a PostgreSQL database of its own (dropped after)."""
    if request.param == "sqlite":
        yield make_settings(tmp_path)
        return
    from app.service.db import engine_for
    from tests.integration.stack import postgres_database

    with postgres_database("recomb_api") as url:
        try:
            yield make_settings(tmp_path, database_url=url)
        finally:
            engine_for(url).dispose()
