"""The client commands against the real service: submit --watch, report, lineage, ls."""

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
