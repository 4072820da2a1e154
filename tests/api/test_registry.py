"""The model registry: models, numbered versions, movable aliases, ``model@alias`` in job bodies, descendants."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlmodel import Session

from app.service import registry
from app.service.db import get_engine
from app.service.tables import RegisteredModel
from tests.api.conftest import finished_job_with_output


@pytest.fixture
def settings(sqlite_and_postgres_settings):
    """Every test here runs on SQLite and on PostgreSQL."""
    return sqlite_and_postgres_settings


def register(client, name: str, *checkpoint_ids: str) -> list[int]:
    assert client.post("/models", json={"name": name, "description": "lander"}).status_code == 201
    versions = []
    for checkpoint_id in checkpoint_ids:
        response = client.post(f"/models/{name}/versions", json={"checkpoint_id": checkpoint_id})
        assert response.status_code == 201, response.text
        versions.append(response.json()["version"])
    return versions


def test_versions_are_numbered_per_model_and_listed(client, settings, parent_id, int8_id):
    assert register(client, "lander", parent_id, int8_id, parent_id) == [1, 2, 3]
    assert register(client, "other", int8_id) == [1]
    listed = client.get("/models/lander/versions").json()
    assert listed["total"] == 3
    assert sorted((item["version"], item["checkpoint_id"]) for item in listed["items"]) == [
        (1, parent_id),
        (2, int8_id),
        (3, parent_id),
    ]
    model = client.get("/models/lander").json()
    assert (model["name"], model["description"], model["latest_version"], model["aliases"]) == (
        "lander",
        "lander",
        3,
        {},
    )
    models = client.get("/models", params={"limit": 1}).json()
    assert models["total"] == 2 and [item["name"] for item in models["items"]] == ["other"]  # newest first


def test_names_are_unique_and_checked(client, parent_id):
    assert client.post("/models", json={"name": "lander"}).status_code == 201
    taken = client.post("/models", json={"name": "lander"})
    assert taken.status_code == 409 and "lander" in taken.json()["detail"]
    for bad in ("with@at", "", "-leading-dash", "x" * 65, "sp ace"):
        assert client.post("/models", json={"name": bad}).status_code == 422, bad
    assert client.get("/models/missing").status_code == 404
    assert client.get("/models/with@at").status_code == 404
    unknown = client.post("/models/missing/versions", json={"checkpoint_id": parent_id})
    assert unknown.status_code == 404 and "missing" in unknown.json()["detail"]
    no_checkpoint = client.post("/models/lander/versions", json={"checkpoint_id": "ckpt_" + "f" * 20})
    assert no_checkpoint.status_code == 404 and "ckpt_ffff" in no_checkpoint.json()["detail"]


def test_concurrent_registrations_get_distinct_numbers(client, settings, parent_id):
    register(client, "lander")

    def add(_index: int) -> int:
        with Session(get_engine(settings), expire_on_commit=False) as session:
            return registry.add_version(session, "lander", parent_id, "").version

    with ThreadPoolExecutor(max_workers=4) as pool:
        numbers = sorted(pool.map(add, range(8)))
    assert numbers == list(range(1, 9))


def test_an_alias_points_at_a_version_moves_and_is_deleted(client, parent_id, int8_id):
    register(client, "lander", parent_id, int8_id)
    created = client.put("/models/lander/aliases/production", json={"version": 1})
    assert created.status_code == 200, created.text
    assert (created.json()["version"], created.json()["checkpoint"]["id"]) == (1, parent_id)
    moved = client.put("/models/lander/aliases/production", json={"version": 2}).json()
    assert (moved["version"], moved["checkpoint"]["id"], moved["checkpoint"]["format"]) == (2, int8_id, "int8")
    read = client.get("/models/lander/aliases/production").json()
    assert (read["model_name"], read["alias"], read["version"], read["checkpoint"]["id"]) == (
        "lander",
        "production",
        2,
        int8_id,
    )
    assert client.get("/models/lander").json()["aliases"] == {"production": 2}
    missing_version = client.put("/models/lander/aliases/production", json={"version": 7})
    assert missing_version.status_code == 404 and "7" in missing_version.json()["detail"]
    assert client.put("/models/lander/aliases/42", json={"version": 1}).status_code == 422  # would read as a version
    assert client.delete("/models/lander/aliases/production").status_code == 204
    gone = client.get("/models/lander/aliases/production")
    assert gone.status_code == 404 and "production" in gone.json()["detail"]
    assert client.delete("/models/lander/aliases/production").status_code == 404


def test_jobs_take_model_at_alias_and_record_the_checkpoint_id(client, parent_id, int8_id):
    register(client, "teacher", int8_id, parent_id)
    client.put("/models/teacher/aliases/production", json={"version": 2})
    job = client.post("/jobs/ptq", json={"checkpoint_id": "teacher@production"})
    assert job.status_code == 202, job.text
    assert job.json()["params"]["checkpoint_id"] == parent_id
    by_number = client.post("/jobs/crossover", json={"parent_a_id": "teacher@2", "parent_b_id": parent_id}).json()
    assert (by_number["params"]["parent_a_id"], by_number["params"]["parent_b_id"]) == (parent_id, parent_id)
    client.put("/models/teacher/aliases/production", json={"version": 1})  # moving it later changes no queued job
    assert client.get(f"/jobs/{job.json()['id']}").json()["params"]["checkpoint_id"] == parent_id
    # Version 1 is int8, which PTQ refuses: the checks run on the resolved checkpoint.
    refused = client.post("/jobs/ptq", json={"checkpoint_id": "teacher@production"})
    assert refused.status_code == 422 and int8_id in refused.json()["detail"]


def test_list_fields_take_model_at_alias_too(client, settings, parent_id):
    register(client, "founder", parent_id)
    client.put("/models/founder/aliases/best", json={"version": 1})
    evolve = client.post("/jobs/evolve", json={"population": ["founder@best", "founder@1"], "generations": 1})
    assert evolve.status_code == 202, evolve.text
    assert evolve.json()["params"]["population"] == [parent_id, parent_id]


def test_an_unknown_model_alias_or_version_is_404_naming_it(client, parent_id):
    register(client, "teacher", parent_id)
    for ref, named in (("nobody@production", "nobody"), ("teacher@staging", "staging"), ("teacher@9", "version 9")):
        response = client.post("/jobs/distill", json={"teacher_id": ref})
        assert response.status_code == 404, ref
        assert named in response.json()["detail"] and "teacher_id" in response.json()["detail"]
    malformed = client.post("/jobs/distill", json={"teacher_id": "teacher@"})
    assert malformed.status_code == 422 and "teacher_id" in malformed.json()["detail"]
    too_long = client.post("/jobs/distill", json={"teacher_id": "t" * 64 + "@" + "a" * 65})
    assert too_long.status_code == 422


def test_descendants_with_depth_and_role(client, settings, parent_id):
    _, student = finished_job_with_output(settings, {"teacher": parent_id}, seed=1)
    _, int8 = finished_job_with_output(settings, {"source": student}, seed=2, kind="ptq")
    _, child = finished_job_with_output(settings, {"parent_a": student, "parent_b": int8}, seed=3, kind="crossover")
    response = client.get(f"/checkpoints/{parent_id}/descendants")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["root"] == parent_id and body["truncated"] is False
    assert [
        (item["checkpoint"]["id"], item["depth"], item["parent"], item["role"]) for item in body["descendants"]
    ] == [
        (student, 1, parent_id, "teacher"),
        (int8, 2, student, "source"),
        (child, 2, student, "parent_a"),  # the shortest path: also a grandchild through int8
    ]
    assert sorted((edge["parent"], edge["child"], edge["role"]) for edge in body["edges"]) == sorted(
        [
            (parent_id, student, "teacher"),
            (student, int8, "source"),
            (student, child, "parent_a"),
            (int8, child, "parent_b"),
        ]
    )
    assert client.get(f"/checkpoints/{child}/descendants").json()["descendants"] == []
    assert client.get("/checkpoints/ckpt_00000000000000000000/descendants").status_code == 404


def test_model_rows_record_who_registered_them(client, settings):
    register(client, "lander")
    with Session(get_engine(settings)) as session:
        row = session.get(RegisteredModel, "lander")
        assert row is not None and row.created_by == ""  # the open API has no key fingerprint
