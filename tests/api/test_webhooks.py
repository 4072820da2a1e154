"""Webhooks against a real receiver on 127.0.0.1: one signed POST per job ending, retries recorded, addresses checked.

Jobs end through ``app.service.job_status`` (what workers and the cancel route call); deliveries are sent by
``worker.webhook_sender.deliver_due``, what every worker's sender thread runs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from datetime import datetime

import pytest
from sqlmodel import Session, col, select

from app.service import job_status
from app.service.db import get_engine
from app.service.tables import JobStatus, Report, WebhookDelivery, utcnow
from tests.api.conftest import client_for, make_settings
from tests.webhook_receiver import running_receiver
from worker.webhook_sender import deliver_due

SECRET = "s3cret-shared-with-the-receiver"
ALL_EVENTS = ["job.succeeded", "job.failed", "job.cancelled"]


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path, webhook_allow_private=True, webhook_base_delay_s=0.01, webhook_timeout_s=2.0)


def register(client, url: str, events=None, secret: str = SECRET) -> dict:
    response = client.post("/webhooks", json={"url": url, "events": events or ALL_EVENTS, "secret": secret})
    assert response.status_code == 201, response.text
    return response.json()


def queue_job(client, parent_id: str) -> str:
    response = client.post("/jobs/ptq", json={"checkpoint_id": parent_id})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def end_job(settings, job_id: str, status: JobStatus, passed: bool | None = None) -> None:
    """Claim the job and finish it as a worker does, with a report when ``passed`` is given."""
    token = uuid.uuid4().hex
    with Session(get_engine(settings)) as session:
        now = utcnow()
        assert job_status.claim(session, job_id, token=token, worker="test:1", now=now, stale_before=now) is not None
        assert job_status.finish(session, job_id, token, status, "RuntimeError: boom" if status == "failed" else None)
        if passed is not None:
            session.add(Report(job_id=job_id, kind="ptq", schema_version="2.0", passed=passed, body={"passed": passed}))
        session.commit()
        # A second finish of the same run (a redelivered message) changes nothing and adds no event.
        assert not job_status.finish(session, job_id, token, status, None)
        session.commit()


def outbox(settings) -> list[WebhookDelivery]:
    with Session(get_engine(settings)) as session:
        return list(session.exec(select(WebhookDelivery).order_by(col(WebhookDelivery.created_at))).all())


def deliver_until_settled(settings, rounds: int = 20) -> None:
    """Run the sender until nothing waits in the outbox (retries become due after their short backoff)."""
    for _ in range(rounds):
        deliver_due(settings)
        if all(delivery.sent_at is not None for delivery in outbox(settings)):
            return
        time.sleep(0.02)
    raise AssertionError(f"deliveries still pending: {outbox(settings)}")


def test_a_finished_job_is_posted_once_signed_to_each_subscribed_webhook(client, settings, parent_id):
    with running_receiver() as receiver, running_receiver() as failures_only:
        webhook = register(client, receiver.url, ["job.succeeded"])
        register(client, failures_only.url, ["job.failed"])
        job_id = queue_job(client, parent_id)
        end_job(settings, job_id, JobStatus.succeeded, passed=True)
        deliver_until_settled(settings)
        deliver_due(settings)  # nothing is left to send twice

        (post,) = receiver.posts
        assert failures_only.posts == []
    expected = "sha256=" + hmac.new(SECRET.encode(), post.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(post.headers["x-recomb-signature"], expected)
    body = json.loads(post.body)
    report_id = client.get(f"/jobs/{job_id}").json()["report_id"]
    assert body["event"] == "job.succeeded" and post.headers["x-recomb-event"] == "job.succeeded"
    assert (body["job_id"], body["kind"], body["status"]) == (job_id, "ptq", "succeeded")
    assert (body["report_id"], body["passed"]) == (report_id, True)
    assert body["event_id"] == post.headers["x-recomb-event-id"] and body["event_id"].startswith("evt_")
    assert body["finished_at"] >= body["started_at"] >= body["created_at"]
    assert post.headers["content-type"] == "application/json" and post.path == "/hook"

    deliveries = client.get(f"/webhooks/{webhook['id']}/deliveries").json()
    assert deliveries["total"] == 1
    (attempt,) = deliveries["items"]
    assert (attempt["event"], attempt["job_id"], attempt["attempt"]) == ("job.succeeded", job_id, 1)
    assert (attempt["status_code"], attempt["error"]) == (200, None)
    assert attempt["duration_ms"] > 0 and attempt["sent_at"] is not None
    assert attempt["event_id"] == body["event_id"]


def test_a_receiver_answering_500_then_200_gets_two_attempts_with_one_event_id(client, settings, parent_id):
    with running_receiver(statuses=[500, 200]) as receiver:
        webhook = register(client, receiver.url)
        job_id = queue_job(client, parent_id)
        end_job(settings, job_id, JobStatus.failed)
        deliver_until_settled(settings)
        posts = receiver.posts
    assert len(posts) == 2
    assert posts[0].body == posts[1].body  # a retry sends the same bytes, so the same signature verifies
    assert posts[0].headers["x-recomb-event-id"] == posts[1].headers["x-recomb-event-id"]
    assert json.loads(posts[1].body)["event"] == "job.failed"
    assert json.loads(posts[1].body)["report_id"] is None
    items = client.get(f"/webhooks/{webhook['id']}/deliveries").json()["items"]
    first, second = sorted(items, key=lambda item: item["attempt"])
    assert (first["attempt"], first["status_code"], first["error"]) == (1, 500, "HTTP 500")
    assert (second["attempt"], second["status_code"], second["error"]) == (2, 200, None)
    assert first["event_id"] == second["event_id"] and first["job_id"] == second["job_id"] == job_id
    backoff_s = (_time(second["due_at"]) - _time(first["sent_at"])).total_seconds()
    assert backoff_s >= settings.webhook_base_delay_s


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_attempts_stop_at_the_setting(tmp_path, client, parent_id):
    limited = make_settings(tmp_path, webhook_allow_private=True, webhook_base_delay_s=0.01, webhook_attempts=3)
    with running_receiver(statuses=[503]) as receiver:
        webhook = register(client, receiver.url)
        end_job(limited, queue_job(client, parent_id), JobStatus.succeeded, passed=False)
        deliver_until_settled(limited)
        assert len(receiver.posts) == 3
        assert json.loads(receiver.posts[0].body)["passed"] is False
    attempts = client.get(f"/webhooks/{webhook['id']}/deliveries").json()["items"]
    assert sorted(item["attempt"] for item in attempts) == [1, 2, 3]
    assert all(item["error"] == "HTTP 503" and item["status_code"] == 503 for item in attempts)


def test_a_timeout_is_a_failed_attempt_and_the_retry_waits_its_backoff(tmp_path, client, parent_id):
    impatient = make_settings(tmp_path, webhook_allow_private=True, webhook_base_delay_s=600, webhook_timeout_s=0.3)
    with running_receiver(delay_s=1.5) as slow:
        webhook = register(client, slow.url, ["job.cancelled"])
        job_id = queue_job(client, parent_id)
        assert client.post(f"/jobs/{job_id}/cancel").status_code == 202
        assert deliver_due(impatient) == 1
        assert deliver_due(impatient) == 0  # the retry is not due for 600 s
    first, retry = sorted(
        client.get(f"/webhooks/{webhook['id']}/deliveries").json()["items"], key=lambda item: item["attempt"]
    )
    assert (first["attempt"], first["status_code"]) == (1, None)
    assert first["error"] == "timed out after 0.3 s (RECOMB_WEBHOOK_TIMEOUT_S)"
    assert (retry["attempt"], retry["sent_at"], retry["event_id"]) == (2, None, first["event_id"])
    assert (_time(retry["due_at"]) - _time(first["sent_at"])).total_seconds() == pytest.approx(600, abs=1)


def test_cancelling_emits_one_event_per_cancelled_job(client, settings, parent_id):
    with running_receiver() as receiver:
        register(client, receiver.url)
        job_id = queue_job(client, parent_id)
        assert client.post(f"/jobs/{job_id}/cancel").status_code == 202
        assert client.post(f"/jobs/{job_id}/cancel").status_code == 409  # already ended: no second event
        deliver_until_settled(settings)
        (post,) = receiver.posts
    body = json.loads(post.body)
    assert (body["event"], body["job_id"], body["status"], body["started_at"]) == (
        "job.cancelled",
        job_id,
        "cancelled",
        None,
    )


@pytest.mark.parametrize(
    "url, kind",
    [
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://localhost/hook", "loopback"),
        ("http://[::1]/hook", "loopback"),
        ("http://10.1.2.3/hook", "private"),
        ("https://192.168.0.10/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://0.0.0.0/hook", "unspecified"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),
    ],
)
def test_registration_refuses_non_public_addresses_without_the_setting(tmp_path, url, kind):
    with client_for(make_settings(tmp_path)) as client:
        response = client.post("/webhooks", json={"url": url, "secret": SECRET})
        assert response.status_code == 422, response.text
        assert f"a {kind} address" in response.json()["detail"]
        assert "RECOMB_WEBHOOK_ALLOW_PRIVATE" in response.json()["detail"]
        assert client.get("/webhooks").json()["total"] == 0
        assert client.get("/audit").json()["total"] == 0


@pytest.mark.parametrize(
    "url, detail",
    [
        ("ftp://example.com/x", "url must be an http:// or https:// URL with a host"),
        ("http:///no-host", "url must be an http:// or https:// URL with a host"),
        ("http://host.invalid/x", "url host 'host.invalid' does not resolve"),
        ("http://[::1/x", "url is not a valid URL"),
    ],
)
def test_registration_refuses_urls_it_cannot_use(client, url, detail):
    response = client.post("/webhooks", json={"url": url, "secret": SECRET})
    assert response.status_code == 422 and response.json()["detail"].startswith(detail), response.text


def test_the_address_is_checked_again_at_delivery(tmp_path, client, settings, parent_id):
    """A host that was allowed at registration and resolves to a loopback address when sent to gets nothing."""
    strict = make_settings(tmp_path, webhook_base_delay_s=0.01)  # same database, private addresses refused
    with running_receiver() as receiver:
        webhook = register(client, receiver.url)
        end_job(settings, queue_job(client, parent_id), JobStatus.succeeded)
        deliver_due(strict)
        assert receiver.posts == []
    (attempt, retry) = sorted(
        client.get(f"/webhooks/{webhook['id']}/deliveries").json()["items"], key=lambda item: item["attempt"]
    )
    assert attempt["error"].startswith("refused: url host '127.0.0.1' resolves to 127.0.0.1, a loopback address")
    assert attempt["status_code"] is None and retry["sent_at"] is None


def test_the_secret_is_never_returned_and_deleting_drops_pending_deliveries(client, settings, parent_id):
    with running_receiver() as receiver:
        created = register(client, receiver.url, ["job.cancelled", "job.cancelled"])
        assert created["events"] == ["job.cancelled"]
        listed = client.get("/webhooks").json()
        read = client.get(f"/webhooks/{created['id']}").json()
        assert SECRET not in json.dumps([created, listed, read])
        assert set(created) == {"id", "url", "events", "created_by", "created_at"}
        job_id = queue_job(client, parent_id)
        client.post(f"/jobs/{job_id}/cancel")
        assert [delivery.job_id for delivery in outbox(settings)] == [job_id]
        assert client.delete(f"/webhooks/{created['id']}").status_code == 204
        assert outbox(settings) == []
        deliver_due(settings)
        assert receiver.posts == []
    assert client.get(f"/webhooks/{created['id']}").status_code == 404
    assert client.get(f"/webhooks/{created['id']}/deliveries").status_code == 404
    assert client.delete(f"/webhooks/{created['id']}").status_code == 404
    assert client.get("/webhooks/wh_00000000000000000000").json()["detail"] == (
        "webhook 'wh_00000000000000000000' not found"
    )
    actions = [(event["action"], event["target_id"]) for event in client.get("/audit").json()["items"]]
    assert sorted(actions) == [("webhook.create", created["id"]), ("webhook.delete", created["id"])]


def test_bad_bodies_are_422_naming_the_field(client):
    short = client.post("/webhooks", json={"url": "http://127.0.0.1/x", "secret": "short"})
    assert short.status_code == 422 and short.json()["detail"][0]["loc"] == ["body", "secret"]
    unknown = client.post("/webhooks", json={"url": "http://127.0.0.1/x", "secret": SECRET, "events": ["job.done"]})
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"] == ["body", "events", 0]
    none = client.post("/webhooks", json={"url": "http://127.0.0.1/x", "secret": SECRET, "events": []})
    assert none.status_code == 422 and none.json()["detail"][0]["loc"] == ["body", "events"]


def test_an_idempotent_registration_returns_the_first_webhook(client):
    headers = {"Idempotency-Key": "hook-1"}
    body = {"url": "http://127.0.0.1:9/x", "secret": SECRET}
    first = client.post("/webhooks", json=body, headers=headers)
    again = client.post("/webhooks", json=body, headers=headers)
    assert first.status_code == again.status_code == 201 and first.json()["id"] == again.json()["id"]
    assert client.get("/webhooks").json()["total"] == 1
    assert client.get("/audit", params={"action": "webhook.create"}).json()["total"] == 1
    assert first.json()["created_by"] == ""  # the API is open: no key made it
