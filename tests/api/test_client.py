"""The project's Python client (``app.cli.client``, what the CLI runs) against the real API served by uvicorn."""

import hashlib
import json
import io
import logging
import threading
import time
from collections.abc import Iterator

import numpy as np
import onnxruntime
import pytest
import uvicorn

import worker.tasks
from app.cli.client import EXIT_OK, ClientError, ProgressDisplay, RecombClient, follow, parse_params, watch_and_report
from app.cli.commands import main
from app.main import create_app
from migrations import upgrade
from tests.api.conftest import make_settings, state_dict_bytes
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


def test_the_client_uploads_synthesises_downloads_and_exports(served, tmp_path):
    url, _ = served
    client = RecombClient(url)
    network_file = tmp_path / "policy.pt"
    network_file.write_bytes(state_dict_bytes())
    uploaded = client.upload_checkpoint(network_file, name="uploaded")
    assert (uploaded["name"], uploaded["format"], uploaded["source_format"]) == ("uploaded", "float32", "reference")
    states_file = tmp_path / "states.npy"
    np.save(states_file, np.random.default_rng(0).standard_normal((40, 8)).astype(np.float32))
    actions_file = tmp_path / "actions.npy"
    np.save(actions_file, np.arange(40, dtype=np.int64) % 4)
    states = client.upload_states(states_file, actions=actions_file)
    assert (states["n"], states["dim"], states["has_actions"], states["name"]) == (40, 8, True, "states.npy")
    synthetic = client.create_synthetic(7, arch={"input_dim": 6, "hidden_sizes": [16], "output_dim": 3}, name="s7")
    assert synthetic["arch"]["hidden_sizes"] == [16] and synthetic["name"] == "s7"
    stored = client.download_checkpoint(synthetic["id"])
    assert hashlib.sha256(stored).hexdigest() == synthetic["sha256"]
    onnx_bytes = client.export_checkpoint(synthetic["id"], "onnx")
    session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    (q_values,) = session.run(None, {session.get_inputs()[0].name: np.zeros((5, 6), dtype=np.float32)})
    assert q_values.shape == (5, 3)
    assert client.export_checkpoint(uploaded["id"], "pt")[:2] == b"PK"  # torch.save's zip format
    with pytest.raises(ClientError) as unknown:
        client.export_checkpoint(synthetic["id"], "tflite")
    assert unknown.value.status_code == 422 and "format" in unknown.value.detail
    with pytest.raises(ClientError, match="cannot read") as unreadable:
        client.upload_checkpoint(tmp_path / "absent.pt")
    assert unreadable.value.status_code is None


def test_the_client_cancels_reruns_and_follows_a_jobs_log(served, caplog):
    caplog.set_level(logging.INFO)  # as `recomb worker` configures it (RECOMB_LOG_LEVEL)
    url, settings = served
    client = RecombClient(url)
    parent = client.create_synthetic(3)["id"]
    cancelled = client.cancel(client.submit("ptq", {"checkpoint_id": parent})["id"])
    assert cancelled["status"] == "cancelled"
    with pytest.raises(ClientError) as again:
        client.cancel(cancelled["id"])
    assert again.value.status_code == 409 and "already cancelled" in again.value.detail
    rerun = client.rerun(cancelled["id"])
    assert rerun["id"] != cancelled["id"] and rerun["params"] == cancelled["params"]
    assert run_job(rerun["id"], worker.tasks.HANDLERS["ptq"], settings) == "succeeded"
    assert client.wait_job(rerun["id"])["status"] == "succeeded"
    followed = [line["message"] for line in client.follow_logs(rerun["id"], poll_s=0.01)]
    assert followed[0] == f"job {rerun['id']}: ptq started" and followed[-1] == f"job {rerun['id']}: succeeded"
    page = client.logs(rerun["id"], limit=2)
    assert [line["message"] for line in page["items"]] == followed[:2]
    assert [line["message"] for line in client.logs(rerun["id"], after=page["next_after"])["items"]] == followed[2:]
    with pytest.raises(ClientError) as missing:
        client.rerun("job_00000000000000000000")
    assert (missing.value.status_code, missing.value.detail) == (404, "job 'job_00000000000000000000' not found")


def test_the_commands_upload_download_export_cancel_rerun_and_print_logs(served, tmp_path, capsys, caplog, monkeypatch):
    caplog.set_level(logging.INFO)
    url, settings = served

    def recomb(*args: str) -> tuple[int, str, str]:
        code = main([*args, "--url", url])
        out, err = capsys.readouterr()
        return code, out, err

    code, out, _ = recomb("synthetic", "--seed", "4", "--arch", '{"hidden_sizes": [32, 32]}')
    parent = out.split()[0]
    assert code == 0 and out.split()[1:] == ["float32", "8-32-32-4", "layernorm", "relu"]
    network_file = tmp_path / "policy.pt"
    network_file.write_bytes(state_dict_bytes())
    code, out, _ = recomb("upload", "checkpoint", str(network_file), "--name", "mine")
    assert code == 0 and out.split()[1:] == ["float32", "8-64-64-4", "layernorm", "relu", "from", "reference"]
    states_file = tmp_path / "states.npy"
    np.save(states_file, np.zeros((10, 8), dtype=np.float32))
    code, out, _ = recomb("upload", "states", str(states_file))
    assert code == 0 and out.split()[1:] == ["10", "x", "8"]

    target = tmp_path / "parent.safetensors"
    code, out, _ = recomb("download", parent, "-o", str(target))
    assert code == 0 and out == f"{target}  {target.stat().st_size} bytes\n"
    assert hashlib.sha256(target.read_bytes()).hexdigest() == RecombClient(url).get_checkpoint(parent)["sha256"]
    monkeypatch.chdir(tmp_path)  # the export lands in the working directory
    code, out, _ = recomb("export", parent, "--format", "onnx")
    assert code == 0 and (tmp_path / f"{parent}.onnx").stat().st_size > 1000

    code, out, _ = recomb("submit", "ptq", "-p", f"checkpoint_id={parent}", "-p", "mode=static")
    job_id = out.strip()
    code, out, _ = recomb("cancel", job_id)
    assert code == 0 and out == f"{job_id}  cancelled\n"
    code, out, err = recomb("cancel", job_id)
    assert code == 2 and err == f"recomb: job {job_id} already cancelled (409)\n"
    code, out, _ = recomb("rerun", job_id)
    rerun_id = out.strip()
    assert code == 0 and RecombClient(url).get_job(rerun_id)["params"]["mode"] == "static"
    run_job(rerun_id, worker.tasks.HANDLERS["ptq"], settings)
    code, out, _ = recomb("logs", rerun_id)
    lines = out.splitlines()
    assert code == 0 and lines[0].endswith(f"INFO recomb.worker: job {rerun_id}: ptq started")
    assert lines[-1].endswith(f"INFO recomb.worker: job {rerun_id}: succeeded")
    code, followed, _ = recomb("logs", rerun_id, "--follow")
    assert code == 0 and followed == out
    code, _, err = recomb("logs", "job_00000000000000000000")
    assert code == 2 and err == "recomb: job 'job_00000000000000000000' not found (404)\n"


def test_the_client_and_commands_file_tag_compare_and_register(served, tmp_path, capsys):
    url, settings = served
    client = RecombClient(url)

    def recomb(*args: str) -> tuple[int, str, str]:
        code = main([*args, "--url", url])
        out, err = capsys.readouterr()
        return code, out, err

    parent = client.create_synthetic(6, experiment="lander", tags=["seeded"])
    assert (parent["experiment"], parent["tags"]) == ("lander", ["seeded"])
    network_file = tmp_path / "policy.pt"
    network_file.write_bytes(state_dict_bytes())
    code, out, _ = recomb("upload", "checkpoint", str(network_file), "--experiment", "lander", "-t", "b", "-t", "a")
    uploaded = client.get_checkpoint(out.split()[0])
    assert code == 0 and (uploaded["experiment"], uploaded["tags"]) == ("lander", ["a", "b"])
    code, _, err = recomb("upload", "states", str(network_file), "--tag", "x")
    assert code == 2 and "a state buffer takes neither" in err

    job_ids = []
    for mode in ("dynamic", "static"):
        code, out, _ = recomb(
            "submit", "ptq", "-p", f"checkpoint_id={parent['id']}", "-p", f"mode={mode}", "--experiment", "lander"
        )
        job_ids.append(out.strip())
        assert run_job(job_ids[-1], worker.tasks.HANDLERS["ptq"], settings) == "succeeded"
    renamed = client.tag_job(job_ids[0], tags=["kept"], name="first")
    assert (renamed["name"], renamed["tags"], renamed["experiment"]) == ("first", ["kept"], "lander")
    code, out, _ = recomb("tag", "checkpoint", uploaded["id"], "--clear")
    assert code == 0 and json.loads(out)["tags"] == []
    assert [job["id"] for job in client.get("/jobs", experiment="lander", tag="kept")["items"]] == [job_ids[0]]

    reports = [client.get_job(job_id)["report_id"] for job_id in job_ids]
    comparison = client.compare_reports(reports)
    code, out, _ = recomb("compare", *reports)
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["figure", *reports, "diff", reports[1]]
    numeric = next(f for f in comparison["figures"] if all(isinstance(v, float) for v in f["values"]))
    row = next(line.split() for line in lines[1:] if line.split()[0] == numeric["name"])
    assert row[1:] == [
        f"{numeric['values'][0]:.4g}",
        f"{numeric['values'][1]:.4g}",
        f"{numeric['differences'][1]:+.4g}",
    ]

    int8_output = client.get_job(job_ids[1])["output_checkpoint_ids"][0]
    assert recomb("models", "create", "lander")[0] == 0
    code, out, _ = recomb("models", "add-version", "lander", int8_output)
    assert code == 0 and json.loads(out)["version"] == 1
    assert recomb("models", "set-alias", "lander", "prod", "1")[0] == 0
    code, out, _ = recomb("models", "alias", "lander", "prod")
    assert code == 0 and json.loads(out)["checkpoint"]["id"] == int8_output
    code, _, err = recomb("models", "alias", "lander", "missing")
    assert code == 2 and "404" in err
    validation = client.submit("validate-quantized", {"float_id": parent["id"], "quant_id": "lander@prod"})
    assert validation["params"]["quant_id"] == int8_output
