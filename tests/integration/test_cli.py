"""The client commands against the real service: submit --watch, report, lineage, ls, logs, rerun."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def recomb(stack, *args: str) -> subprocess.CompletedProcess:
    env = stack.env | {"RECOMB_URL": stack.url}
    return subprocess.run(
        [sys.executable, "-m", "app.cli.commands", *args],
        env=env,
        cwd=stack.root,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_submit_watch_follows_a_distillation_to_its_report(stack):
    teacher = stack.client.post("/checkpoints/synthetic", json={"seed": 21}).json()["id"]
    watched = recomb(
        stack,
        "submit",
        "distill",
        "--param",
        f"teacher_id={teacher}",
        "-p",
        "epochs=4",
        "-p",
        "states.synthetic.n_states=2000",
        "-p",
        "states.synthetic.seed=3",
        "--watch",
    )
    assert watched.returncode == 0, watched.stderr
    job_id = watched.stdout.splitlines()[0]
    job = stack.client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and job["params"]["epochs"] == 4
    assert job["params"]["states"] == {"synthetic": {"n_states": 2000, "seed": 3}}
    progress = watched.stderr.splitlines()
    assert progress[-1].startswith(f"{job_id}  distill  [########################]  100%  succeeded")
    assert f"report {job['report_id']}  distill  job {job_id}  PASSED" in watched.stdout
    assert "held_out.action_agreement" in watched.stdout

    report = recomb(stack, "report", job_id)
    assert report.returncode == 0 and f"report {job['report_id']}" in report.stdout

    (student,) = job["output_checkpoint_ids"]
    lineage = recomb(stack, "lineage", student)
    assert lineage.stdout.splitlines()[1].startswith(f"└── teacher: {teacher}")

    listing = recomb(stack, "ls", "jobs", "--kind", "distill", "--limit", "100")
    assert any(line.startswith(f"{job_id}  distill") and "succeeded" in line for line in listing.stdout.splitlines())


def test_an_unknown_job_is_a_one_line_error(stack):
    watched = recomb(stack, "watch", "job_00000000000000000000")
    assert (watched.returncode, watched.stderr) == (2, "recomb: job 'job_00000000000000000000' not found (404)\n")


def test_a_real_jobs_logs_come_back_and_a_rerun_reproduces_it(stack):
    client = stack.recomb
    teacher = client.create_synthetic(23)["id"]
    params = {"teacher_id": teacher, "epochs": 3, "states": {"synthetic": {"n_states": 1000, "seed": 4}}}
    job = stack.wait_job(client.submit("distill", params)["id"], timeout=120)
    assert job["status"] == "succeeded", job["error"]

    lines = list(client.follow_logs(job["id"], poll_s=0.2))
    messages = [line["message"] for line in lines]
    assert messages[0] == f"job {job['id']}: distill started"
    assert [message for message in messages if message.startswith("distilling: epoch")] == [
        "distilling: epoch 1/3",
        "distilling: epoch 2/3",
        "distilling: epoch 3/3",
    ]
    assert messages[-1] == f"job {job['id']}: succeeded"
    assert {line["logger"] for line in lines} == {"recomb.worker"}
    printed = recomb(stack, "logs", job["id"], "--follow")
    assert printed.returncode == 0, printed.stderr
    assert [line.split(": ", 1)[1] for line in printed.stdout.splitlines() if ": " in line][0] == messages[0]
    assert len(printed.stdout.splitlines()) == len(messages)

    rerun = stack.wait_job(client.rerun(job["id"])["id"], timeout=120)
    assert rerun["id"] != job["id"] and rerun["status"] == "succeeded", rerun["error"]
    assert rerun["params"] == job["params"]
    # Same params, same seeds: the same student, byte for byte, and the same report figures.
    original_output, rerun_output = (client.get_checkpoint(run["output_checkpoint_ids"][0]) for run in (job, rerun))
    assert rerun_output["sha256"] == original_output["sha256"]
    agreements = [
        {figure["name"]: figure["value"] for figure in client.report_for(run["id"])["body"]["figures"]}
        for run in (job, rerun)
    ]
    assert agreements[0]["held_out.action_agreement"] == agreements[1]["held_out.action_agreement"] > 0
    rerun_messages = [line["message"] for line in client.follow_logs(rerun["id"], poll_s=0.2)]
    assert rerun_messages[0] == f"job {rerun['id']}: distill started"
