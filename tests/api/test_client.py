"""The project's Python client (``app.cli.client``, what the CLI runs) against the real API served by uvicorn."""

import io
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

import worker.tasks
from app.cli.client import EXIT_OK, ClientError, ProgressDisplay, RecombClient, follow, parse_params, watch_and_report
from app.main import create_app
from migrations import upgrade
from tests.api.conftest import make_settings
from worker.runner import run_job

STARTUP_TIMEOUT_S = 30.0


def serve(settings) -> Iterator[str]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True, name="uvicorn")
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def served(tmp_path):
    settings = make_settings(tmp_path)
    for url in serve(settings):
        yield url, settings


def test_the_client_submits_follows_and_reads_a_report(served):
    url, settings = served
    client = RecombClient(url)
    parent = client.http.post("/checkpoints/synthetic", json={"seed": 5}).json()["id"]
    job = client.submit("ptq", parse_params([f"checkpoint_id={parent}", "mode=static"]))
    assert (job["kind"], job["status"], job["params"]["mode"]) == ("ptq", "queued", "static")
    assert client.get("/jobs", kind="ptq")["total"] == 1
    with pytest.raises(ClientError, match=f"job {job['id']} has no report \\(queued"):
        client.report_for(job["id"])
    # A worker's run, in this process: the client then sees what any worker would have written.
    assert run_job(job["id"], worker.tasks.HANDLERS["ptq"], settings) == "succeeded"
    final = follow(client, job["id"], ProgressDisplay(io.StringIO()))
    assert final["status"] == "succeeded" and final["report_id"]
    report = client.report_for(job["id"])
    assert report["kind"] == "ptq" and report["job_id"] == job["id"] and report["id"] == final["report_id"]
    out, err = io.StringIO(), io.StringIO()
    assert watch_and_report(client, job["id"], out, err) == (EXIT_OK if report["passed"] else 1)
    assert "ptq" in out.getvalue()


def test_the_client_names_what_the_server_refused(served):
    url, _ = served
    client = RecombClient(url)
    with pytest.raises(ClientError, match="checkpoint_id") as missing:
        client.submit("ptq", {})
    assert "(422)" in str(missing.value)
    with pytest.raises(ClientError, match="unknown job kind 'ptqq'.*valid kinds: distill") as unknown:
        client.submit("ptqq", {})
    assert "(404)" in str(unknown.value)
    with pytest.raises(ClientError, match="lr.*greater than 0"):
        client.submit("distill", {"teacher_id": "ckpt_00000000000000000000", "lr": 0})


def test_every_path_the_client_uses_is_in_the_schema(served):
    url, _ = served
    paths = RecombClient(url).get("/openapi.json")["paths"]
    for path in ("/jobs/ptq", "/jobs", "/jobs/{job_id}", "/reports/{report_id}", "/jobs/{job_id}/events"):
        assert path in paths, path
    assert paths["/reports/{report_id}"]["get"]["operationId"] == "get_report"


def test_the_client_asks_for_a_key_the_server_wants(tmp_path):
    for url in serve(make_settings(tmp_path, api_keys="alpha")):
        with pytest.raises(ClientError, match="needs an API key: set RECOMB_API_KEY"):
            RecombClient(url).get("/jobs")
        assert RecombClient(url, api_key="alpha").get("/jobs")["total"] == 0
