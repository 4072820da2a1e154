"""One writer of job status: only ``app/service/job_status.py`` changes ``Job.status``; cancel never undoes a finish."""

import ast
from datetime import timedelta
from pathlib import Path

from sqlmodel import Session

from app.service import job_status
from app.service.db import get_engine
from app.service.tables import Job, JobStatus, utcnow
from tests.api.conftest import client_for, make_settings

ROOT = Path(__file__).resolve().parent.parent
WRITER = ROOT / "app" / "service" / "job_status.py"


def _status_writes(tree: ast.AST) -> list[int]:
    """Lines that assign ``x.status`` or pass ``status=`` (or a ``"status"`` key) to ``.values()`` or ``Job()``."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                elements = target.elts if isinstance(target, ast.Tuple) else [target]
                if any(isinstance(element, ast.Attribute) and element.attr == "status" for element in elements):
                    lines.append(node.lineno)
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if name == "setattr" and len(node.args) > 1 and getattr(node.args[1], "value", None) == "status":
                lines.append(node.lineno)
            if name not in ("values", "Job"):
                continue
            if any(keyword.arg == "status" for keyword in node.keywords):
                lines.append(node.lineno)
            for argument in [*node.args, *(keyword.value for keyword in node.keywords if keyword.arg is None)]:
                if isinstance(argument, ast.Dict) and any(
                    isinstance(key, ast.Constant) and key.value == "status" for key in argument.keys
                ):
                    lines.append(node.lineno)
    return lines


def test_only_the_job_status_module_writes_a_jobs_status():
    writers = {}
    for path in sorted([*(ROOT / "app").rglob("*.py"), *(ROOT / "worker").rglob("*.py")]):
        if path != WRITER and (lines := _status_writes(ast.parse(path.read_text(), str(path)))):
            writers[str(path.relative_to(ROOT))] = lines
    assert writers == {}
    assert len(_status_writes(ast.parse(WRITER.read_text()))) >= 7  # the scan sees the writer's own transitions


def test_the_scan_catches_each_form_of_write():
    source = (
        "job.status = JobStatus.failed\n"
        "a.status, a.stage = 1, 2\n"
        "update(Job).values(status=JobStatus.queued)\n"
        "update(Job).values(**{'status': 1})\n"
        "Job(kind='ptq', status=JobStatus.running)\n"
        "setattr(job, 'status', 1)\n"
        "Health(status='ok')\n"
    )
    assert _status_writes(ast.parse(source)) == [1, 2, 3, 4, 5, 6]


def test_cancel_keeps_a_job_a_worker_claimed_and_finished_since_it_was_read(tmp_path):
    settings = make_settings(tmp_path)
    with client_for(settings) as client:
        parent = client.post("/checkpoints/synthetic", json={"seed": 0}).json()["id"]
        job_id = client.post("/jobs/ptq", json={"checkpoint_id": parent}).json()["id"]
        engine = get_engine(settings)
        with Session(engine, expire_on_commit=False) as cancelling:
            seen = cancelling.get(Job, job_id)
            assert seen is not None and seen.status == JobStatus.queued
            cancelling.commit()  # on PostgreSQL nothing locks the row between a read and a write; here neither
            with Session(engine) as worker:  # between the read and the cancel, a worker runs the job to the end
                now = utcnow()
                claimed = job_status.claim(
                    worker, job_id, token="t", worker="host:1", now=now, stale_before=now - timedelta(seconds=60)
                )
                assert claimed is not None and claimed.kind == "ptq"
                assert job_status.finish(worker, job_id, "t", JobStatus.succeeded, None)
                worker.commit()
            job_status.cancel(cancelling, job_id)
            cancelling.commit()
        job = client.get(f"/jobs/{job_id}").json()
        assert (job["status"], job["progress"], job["stage"]) == ("succeeded", 1.0, "done")
        assert client.post(f"/jobs/{job_id}/cancel").status_code == 409


def test_cancel_stops_queued_at_once_and_flags_running(tmp_path):
    settings = make_settings(tmp_path)
    with client_for(settings) as client:
        parent = client.post("/checkpoints/synthetic", json={"seed": 0}).json()["id"]
        queued, running = (client.post("/jobs/ptq", json={"checkpoint_id": parent}).json()["id"] for _ in range(2))
        with Session(get_engine(settings)) as worker:
            now = utcnow()
            job_status.claim(worker, running, token="t", worker="host:1", now=now, stale_before=now)
            worker.commit()
        assert client.post(f"/jobs/{queued}/cancel").json()["status"] == "cancelled"
        assert client.post(f"/jobs/{running}/cancel").json()["status"] == "running"
        with Session(get_engine(settings)) as session:
            row = session.get(Job, running)
            assert row is not None and row.cancel_requested


def test_a_cancelled_parent_cannot_hold_its_row_to_create_children(tmp_path):
    settings = make_settings(tmp_path)
    with client_for(settings) as client:
        parent = client.post("/checkpoints/synthetic", json={"seed": 0}).json()["id"]
        job_id = client.post("/jobs/ptq", json={"checkpoint_id": parent}).json()["id"]
        engine = get_engine(settings)
        with Session(engine) as worker:
            now = utcnow()
            job_status.claim(worker, job_id, token="t", worker="host:1", now=now, stale_before=now)
            worker.commit()
            assert job_status.hold_for_children(worker, job_id, "t")
            assert not job_status.hold_for_children(worker, job_id, "another token")
            worker.commit()
        with Session(engine) as cancelling:
            job_status.cancel(cancelling, job_id)
            cancelling.commit()
        with Session(engine) as worker:
            assert not job_status.hold_for_children(worker, job_id, "t")
