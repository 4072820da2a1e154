"""Real reports of every job kind, made by running real jobs in this process.

Jobs are queued through the API (a ``TestClient``) and run by the worker's
own ``run_job`` with the real task handlers, children included, so every
report is exactly what a worker stores. Sizes are small to keep this quick.
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from app.service.db import get_engine
from app.service.tables import Job, JobStatus
from app.settings import Settings
from worker.runner import run_job
from worker.tasks import HANDLERS

SMALL_STATES = {"synthetic": {"n_states": 300, "seed": 3}}
SMALL_EVAL_STATES = {"synthetic": {"n_states": 200, "seed": 7919}}
MAX_RUNS = 500


def run_queued(settings: Settings) -> int:
    """Run queued jobs (woken parents and their children too) until none is queued; how many runs it took."""
    runs = 0
    while True:
        with Session(get_engine(settings)) as session:
            queued = session.exec(select(Job.id, Job.kind).where(Job.status == JobStatus.queued)).all()
        if not queued:
            return runs
        for job_id, kind in queued:
            run_job(job_id, HANDLERS[kind], settings)
            runs += 1
        if runs > MAX_RUNS:
            raise RuntimeError(f"jobs still queued after {runs} runs")


def run(client: TestClient, settings: Settings, kind: str, **params: Any) -> tuple[dict, dict]:
    """Queue one job, run it and everything it starts; the finished job and its report."""
    response = client.post(f"/jobs/{kind}", json=params)
    assert response.status_code == 202, response.text
    run_queued(settings)
    job = client.get(f"/jobs/{response.json()['id']}").json()
    assert job["status"] == "succeeded", job
    return job, client.get(f"/reports/{job['report_id']}").json()


def synthetic(client: TestClient, seed: int, hidden_size: int = 16) -> str:
    arch = {"input_dim": 8, "hidden_size": hidden_size, "output_dim": 4}
    response = client.post("/checkpoints/synthetic", json={"arch": arch, "seed": seed})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def every_kind(client: TestClient, settings: Settings) -> dict[str, dict]:
    """One stored report per job kind (children's kinds included), keyed by kind."""
    parent_a, parent_b = synthetic(client, 0), synthetic(client, 1)
    reports: dict[str, dict] = {}

    def keep(kind: str, **params: Any) -> dict:
        job, report = run(client, settings, kind, **params)
        reports[kind] = report
        return job

    distill = keep("distill", teacher_id=parent_a, epochs=2, states=SMALL_STATES, eval_states=SMALL_EVAL_STATES)
    student = distill["output_checkpoint_ids"][0]
    keep("validate-distillation", student_id=student, teacher_id=parent_a, states=SMALL_EVAL_STATES)
    ptq = keep("ptq", checkpoint_id=parent_a, eval_states=SMALL_EVAL_STATES)
    keep("qat", checkpoint_id=student, teacher_id=parent_a, epochs=2, states=SMALL_STATES)
    keep(
        "quantize",
        checkpoint_id=parent_b,
        teacher_id=parent_b,
        min_agreement=1.0,
        states=SMALL_STATES,
        eval_states=SMALL_EVAL_STATES,
    )
    keep(
        "validate-quantized",
        float_id=parent_a,
        quant_id=ptq["output_checkpoint_ids"][0],
        states=SMALL_EVAL_STATES,
    )
    crossover = keep("crossover", parent_a_id=parent_a, parent_b_id=parent_b)
    child = crossover["output_checkpoint_ids"][0]
    keep("finetune", checkpoint_id=child, reference_b_id=parent_b, epochs=2, states=SMALL_STATES)
    keep("validate-recombination", child_id=child, parent_a_id=parent_a, parent_b_id=parent_b, states=SMALL_EVAL_STATES)
    keep("search", parent_a_id=parent_a, parent_b_id=parent_b, preset="minimal", max_runs=2, n_states=200)
    keep(
        "evolve",
        population=[parent_a, parent_b],
        population_size=3,
        generations=1,
        elite=1,
        finetune_epochs=1,
        n_states=200,
    )
    keep(
        "pipeline",
        parent_a_id=parent_a,
        parent_b_id=parent_b,
        states=SMALL_STATES,
        eval_states=SMALL_EVAL_STATES,
        overrides={"distill": {"epochs": 2}, "finetune": {"epochs": 2}},
    )
    for child_kind in ("search-trial", "evolve-child"):
        listed = client.get("/reports", params={"kind": child_kind, "limit": 1}).json()["items"]
        assert listed, child_kind
        reports[child_kind] = client.get(f"/reports/{listed[0]['id']}").json()
    return reports
