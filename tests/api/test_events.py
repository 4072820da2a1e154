"""``GET /jobs/{id}/events``: one event per visible change, heartbeats, the end after a terminal status, auth."""

import json
from dataclasses import replace
from datetime import timedelta

import anyio
from sqlmodel import Session

from app.api.job_stream import JobSnapshot, job_event_stream
from app.service.db import get_engine
from app.service.tables import Job, JobStatus, Report, utcnow
from tests.api.conftest import client_for, make_settings

QUEUED = JobSnapshot("job_1", "distill", "queued", 0.0, "queued", None, None, 0, 0)


def collect(snapshots: list[JobSnapshot], heartbeat_interval_s: float = 3600.0) -> list:
    """Every event the stream yields while ``load_snapshot`` returns ``snapshots`` in turn."""
    remaining = iter(snapshots)

    async def run() -> list:
        return [
            event
            async for event in job_event_stream(
                lambda: next(remaining), poll_interval_s=0, heartbeat_interval_s=heartbeat_interval_s
            )
        ]

    return anyio.run(run)


def parse_stream(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if "data" in fields:
            events.append((fields.get("event"), json.loads(fields["data"])))
    return events


def add_job(settings, **values) -> str:
    with Session(get_engine(settings), expire_on_commit=False) as session:
        job = Job(kind="distill", params={}, **values)
        session.add(job)
        session.commit()
        return job.id


def test_only_changes_are_emitted_and_the_stream_ends_after_a_terminal_status():
    running = replace(QUEUED, status="running", progress=0.4, stage="distilling: epoch 4/10")
    done = replace(running, status="succeeded", progress=1.0, stage="done", report_id="rep_1")
    after_the_end = replace(done, stage="never read")
    events = collect([QUEUED, QUEUED, running, running, done, after_the_end])
    assert [event.event for event in events] == ["job", "job", "job"]
    assert [event.data["status"] for event in events] == ["queued", "running", "succeeded"]
    assert [event.id for event in events] == ["1", "2", "3"]
    assert events[1].data["stage"] == "distilling: epoch 4/10" and events[2].data["report_id"] == "rep_1"
    assert events[0].retry == 1000 and events[1].retry is None  # the reconnect delay is announced once


def test_an_unchanged_job_gets_heartbeat_comments_between_events():
    events = collect(
        [QUEUED, QUEUED, QUEUED, replace(QUEUED, status="cancelled", stage="cancelled")], heartbeat_interval_s=0
    )
    assert [(event.event, event.comment) for event in events] == [
        ("job", None),
        (None, "heartbeat"),
        (None, "heartbeat"),
        ("job", None),
    ]


def test_a_job_deleted_while_watched_ends_the_stream():
    events = collect([QUEUED, None])
    assert [event.event for event in events] == ["job", "gone"]


def test_a_finished_job_streams_its_final_state_with_report_and_children(client, settings):
    now = utcnow()
    parent_id = add_job(
        settings,
        status=JobStatus.succeeded,
        progress=1.0,
        stage="done",
        started_at=now - timedelta(seconds=2),
        finished_at=now,
    )
    add_job(settings, status=JobStatus.succeeded, parent_job_id=parent_id, child_key="trial-0")
    add_job(settings, status=JobStatus.running, parent_job_id=parent_id, child_key="trial-1")
    with Session(get_engine(settings)) as session:
        session.add(
            Report(
                id="rep_00000000000000000001",
                job_id=parent_id,
                kind="distill",
                schema_version="1.0",
                passed=True,
                body={},
            )
        )
        session.commit()
    response = client.get(f"/jobs/{parent_id}/events")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert parse_stream(response.text) == [
        (
            "job",
            {
                "id": parent_id,
                "kind": "distill",
                "status": "succeeded",
                "progress": 1.0,
                "stage": "done",
                "error": None,
                "report_id": "rep_00000000000000000001",
                "children_total": 2,
                "children_finished": 1,
            },
        )
    ]


def test_a_failed_job_streams_its_error(client, settings):
    job_id = add_job(
        settings, status=JobStatus.failed, stage="distilling: epoch 2/10", error="RuntimeError: loss is NaN"
    )
    ((event, data),) = parse_stream(client.get(f"/jobs/{job_id}/events").text)
    assert (event, data["status"], data["error"]) == ("job", "failed", "RuntimeError: loss is NaN")


def test_unknown_job_is_404_before_any_stream(client):
    response = client.get("/jobs/job_00000000000000000000/events")
    assert response.status_code == 404 and response.json()["detail"] == "job 'job_00000000000000000000' not found"
    assert client.get("/jobs/..%2F..%2Fetc/events").status_code == 404


def test_events_need_the_api_key_when_keys_are_set(tmp_path):
    settings = make_settings(tmp_path, api_keys="secret-key")
    with client_for(settings) as client:
        job_id = add_job(settings, status=JobStatus.cancelled, stage="cancelled")
        assert client.get(f"/jobs/{job_id}/events").status_code == 401
        assert (
            client.get("/jobs/job_00000000000000000000/events").status_code == 401
        )  # no key: not even whether it exists
        assert client.get(f"/jobs/{job_id}/events", headers={"Authorization": "Bearer wrong"}).status_code == 401
        allowed = client.get(f"/jobs/{job_id}/events", headers={"Authorization": "Bearer secret-key"})
        assert allowed.status_code == 200 and parse_stream(allowed.text)[0][1]["status"] == "cancelled"
