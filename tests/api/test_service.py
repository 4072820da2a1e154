from tests.api.conftest import client_for, make_settings


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok", "checks": {}}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "broker": "ok"}


def test_readiness_is_503_when_the_database_is_unreachable(tmp_path):
    settings = make_settings(tmp_path)
    with client_for(settings) as client:
        client.app.state.settings = make_settings(tmp_path, database_url="postgresql+psycopg://nobody@127.0.0.1:1/none")
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"].startswith("unreachable")


def test_api_keys_guard_everything_but_health(tmp_path):
    with client_for(make_settings(tmp_path, api_keys="alpha,beta")) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        assert client.get("/jobs").status_code == 401
        assert client.get("/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/jobs", headers={"Authorization": "Bearer beta"}).status_code == 200
        assert client.post("/checkpoints/synthetic", json={"seed": 1}).status_code == 401


def test_openapi_documents_every_job_body(client):
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/jobs/ptq"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("/PtqParams")
    params = schema["components"]["schemas"]["PtqParams"]["properties"]
    assert params["calibration_batches"]["default"] == 10
    assert client.get("/docs").status_code == 200
