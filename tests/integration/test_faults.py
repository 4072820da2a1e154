"""Fault tolerance on the Redis + PostgreSQL stack, with the faults injected by the tests themselves.

A worker killed mid-job, Redis restarted without persistence, PostgreSQL
unreachable, a job whose code raises, and ``recomb up`` losing a worker or
being asked to stop. The stack reaches PostgreSQL through a TCP proxy the
test can cut, and uses a redis-server of its own that it can restart; the
machine's shared services are never stopped. Heartbeats time out after 6 s
(``RECOMB_HEARTBEAT_TIMEOUT_S`` in the stack's environment).
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.integration.faults import PrivateRedis, TcpProxy, child_pids, command_line, wait_until
from tests.integration.stack import RecombUp, Stack, postgres_stack

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

# 120 distillation epochs on 5000 states: a few seconds of work, long enough to be caught mid-run.
LONG_DISTILL = {"epochs": 120, "seed": 3}
JOB_TIMEOUT_S = 120.0
MID_RUN_PROGRESS = 0.2


def synthetic_parent(client: httpx.Client, seed: int) -> str:
    response = client.post("/checkpoints/synthetic", json={"seed": seed})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def submit(client: httpx.Client, kind: str, **body) -> str:
    response = client.post(f"/jobs/{kind}", json=body)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def job_record(client: httpx.Client, job_id: str) -> dict:
    return client.get(f"/jobs/{job_id}").json()


def wait_mid_run(client: httpx.Client, job_id: str) -> dict:
    return wait_until(
        lambda: (
            (job := job_record(client, job_id))["status"] == "running" and job["progress"] >= MID_RUN_PROGRESS and job
        ),
        JOB_TIMEOUT_S,
        f"job {job_id} to be running past {MID_RUN_PROGRESS:.0%}",
        interval_s=0.05,
    )


def wait_terminal(client: httpx.Client, job_id: str, timeout_s: float = JOB_TIMEOUT_S) -> dict:
    return wait_until(
        lambda: (job := job_record(client, job_id))["status"] in ("succeeded", "failed", "cancelled") and job,
        timeout_s,
        f"job {job_id} to finish",
    )


def artifact_files(artifact_dir: Path) -> dict[str, int]:
    """Every file under the artifact directory, by relative path, with its size."""
    return {
        str(path.relative_to(artifact_dir)): path.stat().st_size for path in artifact_dir.rglob("*") if path.is_file()
    }


def stored_hashes(client: httpx.Client) -> set[str]:
    """The sha256 of every checkpoint and state buffer the API knows."""
    hashes = set()
    for resource in ("/checkpoints", "/states"):
        page = client.get(resource, params={"limit": 500}).json()
        assert page["total"] <= 500
        hashes.update(item["sha256"] for item in page["items"])
    return hashes


@dataclass
class FaultyStack:
    """The API and one worker on PostgreSQL behind a cuttable proxy and a private Redis, with the `dir` artifact store."""

    stack: Stack
    proxy: TcpProxy
    redis: PrivateRedis
    workers_started: int = 1

    @property
    def client(self) -> httpx.Client:
        return self.stack.client

    @property
    def artifact_dir(self) -> Path:
        return Path(self.stack.env["RECOMB_ARTIFACT_DIR"])

    def live_workers(self) -> list[str]:
        return [
            name
            for name, process in self.stack.processes.items()
            if name.startswith("worker") and process.poll() is None
        ]

    def start_worker(self) -> str:
        self.workers_started += 1
        name = f"worker{self.workers_started}"
        self.stack.start_worker(name)
        return name

    def make_healthy(self) -> None:
        """Undo whatever an earlier test left broken: the proxy open, Redis up, one worker running."""
        self.proxy.restore()
        if self.redis.process is None:
            self.redis.start()
        if not self.live_workers():
            self.start_worker()


@pytest.fixture(scope="module")
def faulty_stack(postgres_and_redis, tmp_path_factory):
    root = tmp_path_factory.mktemp("faulty-stack")
    with ExitStack() as teardown:  # undone in reverse order, whatever failed
        private_redis = PrivateRedis(root / "redis")
        teardown.callback(private_redis.stop)
        private_redis.start()
        stack, drop_database = postgres_stack(root)
        teardown.callback(drop_database)
        direct_url = make_url(stack.env["RECOMB_DATABASE_URL"])
        proxy = TcpProxy(direct_url.host, direct_url.port)
        teardown.callback(proxy.close)
        stack.env |= {
            "RECOMB_DATABASE_URL": direct_url.set(port=proxy.port).render_as_string(hide_password=False),
            "RECOMB_BROKER_URL": private_redis.url,
            "RECOMB_ARTIFACT_STORE": "dir",
            "RECOMB_ARTIFACT_DIR": str(root / "var" / "artifacts"),
        }
        teardown.callback(stack.stop)
        stack.start(workers=1)
        yield FaultyStack(stack, proxy, private_redis)


@pytest.fixture
def faulty(faulty_stack):
    faulty_stack.make_healthy()
    return faulty_stack


def test_worker_killed_mid_job_runs_it_again_and_writes_its_outputs_once(faulty):
    client = faulty.client
    teacher_id = synthetic_parent(client, seed=101)
    job_id = submit(client, "distill", teacher_id=teacher_id, **LONG_DISTILL)
    wait_mid_run(client, job_id)
    (worker,) = faulty.live_workers()
    faulty.stack.kill(worker, signal.SIGKILL)
    orphaned = job_record(client, job_id)
    assert orphaned["status"] == "running" and orphaned["attempts"] == 1

    faulty.start_worker()  # its reconciler re-queues the job once the dead worker's heartbeat is 6 s old
    job = wait_terminal(client, job_id)

    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] == 2
    (student_id,) = job["output_checkpoint_ids"]
    assert client.get("/checkpoints", params={"created_by_job": job_id}).json()["total"] == 1
    assert client.get("/reports", params={"job_id": job_id}).json()["total"] == 1
    student = client.get(f"/checkpoints/{student_id}").json()
    files = artifact_files(faulty.artifact_dir)
    assert [name for name in files if name.endswith(student["sha256"])] == [
        f"{student['sha256'][:2]}/{student['sha256']}"
    ]
    assert files[f"{student['sha256'][:2]}/{student['sha256']}"] == student["size_bytes"]
    # Nothing else was left behind by the killed run: every file is a stored artifact.
    assert {Path(name).name for name in files} == stored_hashes(client)


def test_jobs_queued_when_redis_loses_its_queue_are_republished_and_all_succeed(faulty):
    client = faulty.client
    for worker in faulty.live_workers():
        faulty.stack.kill(worker, signal.SIGTERM)  # nobody consumes: the messages wait in Redis
    parent_id = synthetic_parent(client, seed=102)
    queued_before_restart = [submit(client, "ptq", checkpoint_id=parent_id) for _ in range(3)]
    assert faulty.redis.key_count() > 0

    faulty.redis.stop()
    # Redis down: the row is committed and the job accepted; its message cannot be published yet.
    submitted_while_down = submit(client, "ptq", checkpoint_id=parent_id)
    faulty.redis.start()
    assert faulty.redis.key_count() == 0  # no persistence: every queued message is gone
    submitted_after_restart = submit(client, "ptq", checkpoint_id=parent_id)
    faulty.start_worker()

    job_ids = [*queued_before_restart, submitted_while_down, submitted_after_restart]
    jobs = [wait_terminal(client, job_id) for job_id in job_ids]
    assert [job["status"] for job in jobs] == ["succeeded"] * 5, [job["error"] for job in jobs]
    assert [job["attempts"] for job in jobs] == [1] * 5
    assert [len(job["output_checkpoint_ids"]) for job in jobs] == [1] * 5
    assert client.get("/reports", params={"kind": "ptq", "limit": 500}).json()["total"] >= 5
    for job_id in job_ids:
        assert client.get("/reports", params={"job_id": job_id}).json()["total"] == 1


def test_database_outage_makes_readyz_503_then_every_job_finishes(faulty):
    client = faulty.client
    teacher_id = synthetic_parent(client, seed=103)
    long_job = submit(client, "distill", teacher_id=teacher_id, **LONG_DISTILL)
    waiting_jobs = [submit(client, "ptq", checkpoint_id=teacher_id) for _ in range(2)]
    wait_mid_run(client, long_job)

    faulty.proxy.cut()
    down = wait_until(
        lambda: (response := client.get("/readyz")).status_code == 503 and response, 30, "/readyz to answer 503"
    )
    assert down.json()["status"] == "unavailable"
    assert down.json()["checks"]["database"].startswith("unreachable")
    assert down.json()["checks"]["broker"] == "ok"
    during_outage = client.post("/jobs/ptq", json={"checkpoint_id": teacher_id})
    assert during_outage.status_code == 503, during_outage.text
    # Down until the worker, claiming the next job, has backed off three times (0.25 s, 0.5 s, 1 s).
    wait_until(
        lambda: "database unreachable; retrying in 1.00s" in faulty.stack.logs(tail=200_000),
        30,
        "a worker to retry with backoff",
    )

    faulty.proxy.restore()
    up = wait_until(
        lambda: (response := client.get("/readyz")).status_code == 200 and response, 30, "/readyz to answer 200"
    )
    assert up.json() == {"status": "ready", "checks": {"database": "ok", "broker": "ok"}}

    jobs = [wait_terminal(client, job_id) for job_id in (long_job, *waiting_jobs)]
    assert [job["status"] for job in jobs] == ["succeeded"] * 3, [job["error"] for job in jobs]
    assert all(len(job["output_checkpoint_ids"]) == 1 for job in jobs)
    assert client.get("/jobs", params={"status": "running"}).json()["total"] == 0


def test_job_whose_code_raises_fails_in_one_line_without_outputs_and_the_worker_goes_on(faulty):
    client = faulty.client
    corrupt_id = synthetic_parent(client, seed=104)
    corrupt = client.get(f"/checkpoints/{corrupt_id}").json()
    blob_path = faulty.artifact_dir / corrupt["sha256"][:2] / corrupt["sha256"]
    blob_path.write_bytes(blob_path.read_bytes()[: corrupt["size_bytes"] // 2])  # the stored file, truncated on disk
    files_before = artifact_files(faulty.artifact_dir)

    failed = wait_terminal(client, submit(client, "ptq", checkpoint_id=corrupt_id))

    assert failed["status"] == "failed"
    assert failed["error"].startswith("CheckpointError: corrupt or truncated safetensors file")
    assert "\n" not in failed["error"] and len(failed["error"]) <= 500
    assert failed["output_checkpoint_ids"] == [] and failed["report_id"] is None
    assert client.get("/checkpoints", params={"created_by_job": failed["id"]}).json()["total"] == 0
    assert client.get("/reports", params={"job_id": failed["id"]}).json()["total"] == 0
    assert artifact_files(faulty.artifact_dir) == files_before

    healthy_id = synthetic_parent(client, seed=105)
    later = wait_terminal(client, submit(client, "ptq", checkpoint_id=healthy_id))
    assert later["status"] == "succeeded", later["error"]
    assert len(faulty.live_workers()) == 1


@dataclass
class Supervised:
    """``recomb up`` with one worker on its own PostgreSQL database and Redis key prefix."""

    up: RecombUp
    database_url: str

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.up.url, timeout=30.0)

    def worker_pids(self) -> list[int]:
        return [pid for pid in child_pids(self.up.process.pid) if "worker" in command_line(pid)]

    def job_rows(self, *job_ids: str) -> dict[str, dict]:
        """Jobs read straight from the database (the API may be down)."""
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                rows = (
                    connection.execute(
                        text("SELECT id, status, attempts FROM jobs WHERE id = ANY(:ids)"), {"ids": list(job_ids)}
                    )
                    .mappings()
                    .all()
                )
        finally:
            engine.dispose()
        return {row["id"]: dict(row) for row in rows}


@pytest.fixture(scope="module")
def supervised(postgres_and_redis, tmp_path_factory):
    root = tmp_path_factory.mktemp("recomb-up")
    stack, drop_database = postgres_stack(
        root
    )  # its database and key prefix; `recomb up` migrates and starts the processes
    # The production heartbeat settings: a sweep would re-queue a dead worker's job only after 30 s.
    stack.env |= {
        "RECOMB_HEARTBEAT_INTERVAL_S": "5",
        "RECOMB_HEARTBEAT_TIMEOUT_S": "30",
        "RECOMB_RECONCILE_INTERVAL_S": "10",
    }
    up = RecombUp(root, stack.env, workers=1)
    try:
        up.start()
        yield Supervised(up, stack.env["RECOMB_DATABASE_URL"])
    finally:
        up.stop()
        drop_database()


def test_recomb_up_restarts_a_dead_worker_and_its_job_runs_again_at_once(supervised):
    with supervised.client() as client:
        teacher_id = synthetic_parent(client, seed=106)
        job_id = submit(client, "distill", teacher_id=teacher_id, **LONG_DISTILL)
        wait_mid_run(client, job_id)
        (worker_pid,) = supervised.worker_pids()
        os.kill(worker_pid, signal.SIGKILL)
        killed_at = time.monotonic()

        rerun = wait_until(
            lambda: (job := job_record(client, job_id))["attempts"] == 2 and job["status"] == "running" and job,
            30,
            "the job to run again",
            interval_s=0.05,
        )
        rerun_after_s = time.monotonic() - killed_at
        replacement = [pid for pid in supervised.worker_pids() if pid != worker_pid]
        job = wait_terminal(client, job_id)

    assert rerun_after_s < 10.0, rerun_after_s  # the heartbeat sweep alone would take over 30 s
    assert rerun["stage"] != "re-queued after worker loss"
    assert len(replacement) == 1
    log = supervised.up.log()
    assert "worker1 exited with code -9; restarting it" in log and "re-queued 1 job(s) of the dead worker" in log
    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] == 2 and len(job["output_checkpoint_ids"]) == 1


def test_sigterm_lets_the_running_job_finish_and_loses_no_queued_job(supervised):
    with supervised.client() as client:
        teacher_id = synthetic_parent(client, seed=107)
        running_id = submit(client, "distill", teacher_id=teacher_id, **LONG_DISTILL)
        queued_id = submit(client, "ptq", checkpoint_id=teacher_id)
        wait_mid_run(client, running_id)

    assert supervised.up.terminate() == 0
    assert "stopping: workers finish their current job" in supervised.up.log()
    at_shutdown = supervised.job_rows(running_id, queued_id)
    assert at_shutdown[running_id] == {"id": running_id, "status": "succeeded", "attempts": 1}
    assert at_shutdown[queued_id]["status"] in (
        "queued",
        "succeeded",
    )  # its message stays in Redis if it had not started

    supervised.up.start()
    with supervised.client() as client:
        queued = wait_terminal(client, queued_id)
    assert queued["status"] == "succeeded" and queued["attempts"] == 1
